//! The fields of a verified `InRelease`: which suite it is, how long it is valid, and the
//! SHA-256 and size of every index file it pins.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::openpgp::format_date;

/// How far in the future a `Date:` may lie before the file is refused as "not valid yet"
/// (a rescue system's clock may be slightly off).
const MAX_FUTURE: Duration = Duration::from_secs(10 * 60);

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("no {0} field")]
    MissingField(&'static str),
    #[error("bad {field} field: {value:?}")]
    BadField { field: &'static str, value: String },
    #[error("is for suite {suite} (codename {codename}), not {wanted}")]
    WrongSuite {
        suite: String,
        codename: String,
        wanted: String,
    },
    #[error("expired on {until} (Valid-Until); the mirror is stale or replays an old file")]
    Expired { until: String },
    #[error("is dated {date}, in the future; is this machine's clock right?")]
    NotYetValid { date: String },
}

/// An index file an `InRelease` pins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// Lower-case hex.
    pub sha256: String,
    pub size: u64,
}

/// A parsed, not yet checked `InRelease` (see [`Release::check`]).
#[derive(Debug, Clone)]
pub struct Release {
    pub suite: String,
    pub codename: String,
    /// `12.5` for a stable release; absent for testing and unstable.
    pub version: Option<String>,
    pub date: Option<SystemTime>,
    pub valid_until: Option<SystemTime>,
    pub components: Vec<String>,
    pub architectures: Vec<String>,
    /// Path relative to `dists/SUITE/` → its SHA-256 and size.
    pub files: BTreeMap<String, IndexEntry>,
}

impl Release {
    /// Parses the signed text of an `InRelease` (one deb822 paragraph).
    pub fn parse(text: &str) -> Result<Release, ReleaseError> {
        let mut fields: BTreeMap<&str, String> = BTreeMap::new();
        let mut current: Option<&str> = None;
        for line in text.lines() {
            if line.starts_with([' ', '\t']) {
                if let Some(name) = current {
                    let value = fields.entry(name).or_default();
                    value.push('\n');
                    value.push_str(line.trim());
                }
                continue;
            }
            if line.trim().is_empty() {
                // A Release file is one paragraph; anything after a blank line is not part of it.
                break;
            }
            let Some((name, value)) = line.split_once(':') else {
                return Err(ReleaseError::BadField {
                    field: "paragraph",
                    value: line.to_string(),
                });
            };
            fields.insert(name.trim(), value.trim().to_string());
            current = Some(name.trim());
        }
        let get = |name: &'static str| fields.get(name).map(String::as_str);
        let date = |field: &'static str| -> Result<Option<SystemTime>, ReleaseError> {
            get(field)
                .map(|v| {
                    parse_date(v).ok_or_else(|| ReleaseError::BadField {
                        field,
                        value: v.to_string(),
                    })
                })
                .transpose()
        };
        let mut files = BTreeMap::new();
        for line in get("SHA256")
            .ok_or(ReleaseError::MissingField("SHA256"))?
            .lines()
        {
            let words: Vec<&str> = line.split_whitespace().collect();
            let bad = || ReleaseError::BadField {
                field: "SHA256",
                value: line.to_string(),
            };
            match words[..] {
                [] => continue,
                [hash, size, path]
                    if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) =>
                {
                    let size = size.parse().map_err(|_| bad())?;
                    files.insert(
                        path.to_string(),
                        IndexEntry {
                            sha256: hash.to_ascii_lowercase(),
                            size,
                        },
                    );
                }
                _ => return Err(bad()),
            }
        }
        let words = |name: &'static str| {
            get(name)
                .map(|v| v.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        };
        Ok(Release {
            suite: get("Suite")
                .ok_or(ReleaseError::MissingField("Suite"))?
                .to_string(),
            codename: get("Codename")
                .ok_or(ReleaseError::MissingField("Codename"))?
                .to_string(),
            version: get("Version").map(str::to_string),
            date: date("Date")?,
            valid_until: date("Valid-Until")?,
            components: words("Components"),
            architectures: words("Architectures"),
            files,
        })
    }

    /// Whether this is the suite that was asked for (by codename or suite name) and valid at
    /// `now`. A mismatch means the mirror served another suite's file, perhaps an old one.
    pub fn check(&self, wanted: &str, now: SystemTime) -> Result<(), ReleaseError> {
        if wanted != self.codename && wanted != self.suite {
            return Err(ReleaseError::WrongSuite {
                suite: self.suite.clone(),
                codename: self.codename.clone(),
                wanted: wanted.to_string(),
            });
        }
        if let Some(until) = self.valid_until.filter(|&t| t < now) {
            return Err(ReleaseError::Expired {
                until: format_time(until),
            });
        }
        if let Some(date) = self.date.filter(|&t| t > now + MAX_FUTURE) {
            return Err(ReleaseError::NotYetValid {
                date: format_time(date),
            });
        }
        Ok(())
    }

    /// The major release number, from `Version:` (`12.5` → `12`).
    pub fn major_version(&self) -> Option<u32> {
        self.version.as_deref()?.split('.').next()?.parse().ok()
    }
}

fn format_time(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    format!(
        "{} {:02}:{:02}:{:02} UTC",
        format_date(secs),
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60
    )
}

/// An RFC 2822 date as Release files write it: `Sat, 11 Jul 2026 10:16:37 UTC` (also `+0000`
/// style offsets, and without the weekday).
pub fn parse_date(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    let text = match text.split_once(',') {
        Some((_weekday, rest)) => rest.trim(),
        None => text,
    };
    let words: Vec<&str> = text.split_whitespace().collect();
    let [day, month, year, time, zone] = words[..] else {
        return None;
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(month))? as u32 + 1;
    let day: u32 = day.parse().ok()?;
    let year: i64 = year.parse().ok()?;
    let hms: Vec<i64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, s] = hms[..] else { return None };
    if !(1..=31).contains(&day)
        || !(0..24).contains(&h)
        || !(0..60).contains(&m)
        || !(0..=60).contains(&s)
    {
        return None;
    }
    let offset = match zone {
        "UTC" | "GMT" | "Z" => 0,
        z if z.len() == 5 && (z.starts_with('+') || z.starts_with('-')) => {
            let hours: i64 = z[1..3].parse().ok()?;
            let minutes: i64 = z[3..5].parse().ok()?;
            let sign = if z.starts_with('-') { -1 } else { 1 };
            sign * (hours * 3600 + minutes * 60)
        }
        _ => return None,
    };
    let utc = humantime::parse_rfc3339(&format!(
        "{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z"
    ))
    .ok()?;
    let secs = utc.duration_since(UNIX_EPOCH).ok()?.as_secs() as i64 - offset;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Origin: Debian\nLabel: Debian\nSuite: oldstable\nVersion: 12.15\nCodename: bookworm\n\
Date: Sat, 11 Jul 2026 10:16:37 UTC\nArchitectures: all amd64 arm64\nComponents: main contrib\n\
MD5Sum:\n 0ed6d4c8891eb86358b94bb35d9e4da4  1484322 contrib/Contents-all\n\
SHA256:\n 9e0b5aabb2465b3d2e7a7fe27f9913846277833f7a2826e7767acccff5b588c5  8790396 main/binary-amd64/Packages.xz\n \
8E0A94D8488F7C60F5FE6723E69B450EC5D7000F592CCDB169481F4BFE863B62    78509 main/installer-amd64/current/images/SHA256SUMS\n";

    fn at(text: &str) -> SystemTime {
        parse_date(text).unwrap()
    }

    #[test]
    fn parses_fields_and_sha256_list() {
        let r = Release::parse(SAMPLE).unwrap();
        assert_eq!(
            (r.suite.as_str(), r.codename.as_str(), r.major_version()),
            ("oldstable", "bookworm", Some(12))
        );
        assert_eq!(r.components, ["main", "contrib"]);
        assert_eq!(r.files.len(), 2, "MD5Sum entries are not taken");
        let e = &r.files["main/installer-amd64/current/images/SHA256SUMS"];
        assert_eq!(
            e.sha256,
            "8e0a94d8488f7c60f5fe6723e69b450ec5d7000f592ccdb169481f4bfe863b62"
        );
        assert_eq!(e.size, 78509);
        assert_eq!(r.date, Some(at("11 Jul 2026 10:16:37 +0000")));
        assert!(r.valid_until.is_none());
    }

    #[test]
    fn suite_and_validity_checks() {
        let r = Release::parse(SAMPLE).unwrap();
        let now = at("Sun, 12 Jul 2026 00:00:00 UTC");
        r.check("bookworm", now).unwrap();
        r.check("oldstable", now).unwrap();
        assert_eq!(
            r.check("trixie", now).unwrap_err().to_string(),
            "is for suite oldstable (codename bookworm), not trixie"
        );
        let e = r
            .check("bookworm", at("Sat, 11 Jul 2026 09:00:00 UTC"))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "is dated 2026-07-11 10:16:37 UTC, in the future; is this machine's clock right?"
        );

        let valid = SAMPLE.replace("Date:", "Valid-Until: Sat, 18 Jul 2026 10:16:37 UTC\nDate:");
        let r = Release::parse(&valid).unwrap();
        r.check("bookworm", now).unwrap();
        let e = r
            .check("bookworm", at("Sun, 19 Jul 2026 00:00:00 UTC"))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "expired on 2026-07-18 10:16:37 UTC (Valid-Until); the mirror is stale or replays an old file"
        );
    }

    #[test]
    fn malformed_release_files() {
        assert_eq!(
            Release::parse("Suite: x\nCodename: y\n")
                .unwrap_err()
                .to_string(),
            "no SHA256 field"
        );
        let bad = SAMPLE.replace("8790396", "many");
        assert!(
            Release::parse(&bad)
                .unwrap_err()
                .to_string()
                .starts_with("bad SHA256 field")
        );
        let bad = SAMPLE.replace("Sat, 11 Jul 2026", "someday");
        assert!(
            Release::parse(&bad)
                .unwrap_err()
                .to_string()
                .starts_with("bad Date field")
        );
    }

    #[test]
    fn dates() {
        assert_eq!(at("Thu, 01 Jan 1970 00:00:00 UTC"), UNIX_EPOCH);
        assert_eq!(at("Thu, 01 Jan 1970 01:00:00 +0100"), UNIX_EPOCH);
        assert_eq!(
            at("Sat, 11 Jul 2026 10:17:11 UTC"),
            UNIX_EPOCH + Duration::from_secs(1_783_765_031)
        );
        assert!(parse_date("Sat, 32 Jul 2026 10:16:37 UTC").is_none());
        assert!(parse_date("Sat, 11 Jul 2026 10:16:37 CEST").is_none());
    }
}
