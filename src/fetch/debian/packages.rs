//! Reading a `Packages` index (streamed: bookworm's main/amd64 is 50 MB uncompressed) and an
//! installer `SHA256SUMS` file; comparing Debian versions.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::io::{self, BufRead};

use serde::{Deserialize, Serialize};

/// A binary package as the index describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub architecture: String,
    /// Path relative to the mirror root, e.g. `pool/main/d/.../x_1_all.deb`.
    pub filename: String,
    pub size: u64,
    /// Lower-case hex.
    pub sha256: String,
    /// `Pre-Depends` and `Depends` as written (comma-separated, `|` between alternatives);
    /// [`super::resolve::parse_relations`] reads them.
    pub depends: String,
    /// `Provides` as written: the virtual packages this one stands for.
    pub provides: String,
    /// `Essential: yes`: dpkg's own tools, on every Debian system.
    pub essential: bool,
}

/// A package pinned by name, version, pool path, size and SHA-256, as a `Packages` index lists
/// it: what a resolved set records, and what a catalog entry can name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    pub name: String,
    pub version: String,
    /// Path in the archive, `pool/main/...`.
    pub filename: String,
    pub size: u64,
    pub sha256: String,
}

impl From<&Package> for Pin {
    fn from(p: &Package) -> Pin {
        Pin {
            name: p.name.clone(),
            version: p.version.clone(),
            filename: p.filename.clone(),
            size: p.size,
            sha256: p.sha256.clone(),
        }
    }
}

impl Pin {
    /// The package as [`super::Archive::download_package`] takes it.
    pub fn package(&self) -> Package {
        Package {
            name: self.name.clone(),
            version: self.version.clone(),
            architecture: String::new(),
            filename: self.filename.clone(),
            size: self.size,
            sha256: self.sha256.clone(),
            depends: String::new(),
            provides: String::new(),
            essential: false,
        }
    }
}

/// The newest version of each wanted package found in a `Packages` index. Paragraphs that name
/// a wanted package but lack `Filename`, `Size` or a well-formed `SHA256` are skipped (such a
/// package cannot be fetched with its hash checked).
pub fn find_packages(
    index: impl BufRead,
    wanted: &[&str],
) -> io::Result<BTreeMap<String, Package>> {
    read_index(index, |name| wanted.contains(&name))
}

/// The newest version of every package in a `Packages` index whose name `keep` accepts.
pub fn read_index(
    index: impl BufRead,
    mut keep: impl FnMut(&str) -> bool,
) -> io::Result<BTreeMap<String, Package>> {
    let mut found: BTreeMap<String, Package> = BTreeMap::new();
    let mut fields: BTreeMap<String, String> = BTreeMap::new();
    let mut lines = index.split(b'\n');
    loop {
        let line = lines.next().transpose()?;
        let end_of_paragraph = line.as_ref().is_none_or(|l| l.trim_ascii().is_empty());
        if end_of_paragraph {
            if let Some(p) = package_from(&fields).filter(|p| keep(&p.name)) {
                let newer = found
                    .get(&p.name)
                    .is_none_or(|old| compare_versions(&p.version, &old.version).is_gt());
                if newer {
                    found.insert(p.name.clone(), p);
                }
            }
            fields.clear();
            if line.is_none() {
                return Ok(found);
            }
            continue;
        }
        let line = line.unwrap_or_default();
        if line.starts_with(b" ") || line.starts_with(b"\t") {
            continue; // continuation of a multi-line field (Description); none we need
        }
        let line = String::from_utf8_lossy(&line);
        if let Some((name, value)) = line.split_once(':')
            && matches!(
                name,
                "Package"
                    | "Version"
                    | "Architecture"
                    | "Filename"
                    | "Size"
                    | "SHA256"
                    | "Depends"
                    | "Pre-Depends"
                    | "Provides"
                    | "Essential"
            )
        {
            fields.insert(name.to_string(), value.trim().to_string());
        }
    }
}

fn package_from(fields: &BTreeMap<String, String>) -> Option<Package> {
    let sha256 = fields.get("SHA256")?;
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(Package {
        name: fields.get("Package")?.clone(),
        version: fields.get("Version")?.clone(),
        architecture: fields.get("Architecture").cloned().unwrap_or_default(),
        filename: fields.get("Filename")?.clone(),
        size: fields.get("Size")?.parse().ok()?,
        sha256: sha256.to_ascii_lowercase(),
        depends: [fields.get("Pre-Depends"), fields.get("Depends")]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", "),
        provides: fields.get("Provides").cloned().unwrap_or_default(),
        essential: fields.get("Essential").is_some_and(|e| e == "yes"),
    })
}

/// `SHA256SUMS` as Debian's installer images directory has it: `HASH  ./netboot/mini.iso`.
/// Returns path (without `./`) → lower-case hash.
pub fn parse_sha256sums(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let (hash, path) = line.split_once(char::is_whitespace)?;
            let path = path.trim_start().trim_start_matches('*');
            let path = path.strip_prefix("./").unwrap_or(path);
            (hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) && !path.is_empty())
                .then(|| (path.to_string(), hash.to_ascii_lowercase()))
        })
        .collect()
}

/// Debian version comparison (deb-version(7)): epoch, then upstream version and revision by
/// the dpkg algorithm, where `~` sorts before everything, even the end of the string.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    fn split(v: &str) -> (u64, &str, &str) {
        let (epoch, rest) = match v.split_once(':') {
            Some((e, rest)) if e.bytes().all(|c| c.is_ascii_digit()) => {
                (e.parse().unwrap_or(0), rest)
            }
            _ => (0, v),
        };
        match rest.rsplit_once('-') {
            Some((upstream, revision)) => (epoch, upstream, revision),
            None => (epoch, rest, ""),
        }
    }
    let (ea, ua, ra) = split(a);
    let (eb, ub, rb) = split(b);
    ea.cmp(&eb)
        .then_with(|| compare_part(ua, ub))
        .then_with(|| compare_part(ra, rb))
}

fn compare_part(a: &str, b: &str) -> Ordering {
    fn order(c: Option<u8>) -> i32 {
        match c {
            None => 0,
            Some(b'~') => -1,
            Some(c) if c.is_ascii_alphabetic() => i32::from(c),
            Some(c) => i32::from(c) + 256,
        }
    }
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    while !a.is_empty() || !b.is_empty() {
        // Non-digit prefix, character by character.
        loop {
            let (ca, cb) = (
                a.first().copied().filter(|c| !c.is_ascii_digit()),
                b.first().copied().filter(|c| !c.is_ascii_digit()),
            );
            if ca.is_none() && cb.is_none() {
                break;
            }
            let ord = order(ca).cmp(&order(cb));
            if ord.is_ne() {
                return ord;
            }
            a = &a[1..];
            b = &b[1..];
        }
        // Digit run, numerically.
        let da = a.iter().take_while(|c| c.is_ascii_digit()).count();
        let db = b.iter().take_while(|c| c.is_ascii_digit()).count();
        let na = std::str::from_utf8(&a[..da])
            .unwrap_or("0")
            .trim_start_matches('0');
        let nb = std::str::from_utf8(&b[..db])
            .unwrap_or("0")
            .trim_start_matches('0');
        let ord = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
        if ord.is_ne() {
            return ord;
        }
        a = &a[da..];
        b = &b[db..];
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = "Package: foo\nVersion: 1.0-1\nArchitecture: amd64\nDescription: a foo\n more text\n \
.\nFilename: pool/main/f/foo/foo_1.0-1_amd64.deb\nSize: 1234\n\
SHA256: 499e4609976bfd47c1b3025382fb5dddeb023350921142b919c89c4d24bd7f9b\n\n\
Package: bar\nVersion: 2\nFilename: pool/main/b/bar/bar_2_all.deb\nSize: 10\n\
SHA256: 0000000000000000000000000000000000000000000000000000000000000000\n\n\
Package: foo\nVersion: 1.0-1+deb12u1\nArchitecture: amd64\nFilename: pool/main/f/foo/foo_1.0-1+deb12u1_amd64.deb\n\
Size: 1300\nSHA256: 1111111111111111111111111111111111111111111111111111111111111111\n\n\
Package: foo\nVersion: 1.0~rc1-1\nFilename: pool/old.deb\nSize: 1\n\
SHA256: 2222222222222222222222222222222222222222222222222222222222222222\n\n\
Package: nohash\nVersion: 1\nFilename: pool/n.deb\nSize: 1\n";

    #[test]
    fn finds_the_newest_version_of_wanted_packages() {
        let found = find_packages(INDEX.as_bytes(), &["foo", "nohash", "missing"]).unwrap();
        assert_eq!(found.len(), 1);
        let foo = &found["foo"];
        assert_eq!(foo.version, "1.0-1+deb12u1");
        assert_eq!(foo.filename, "pool/main/f/foo/foo_1.0-1+deb12u1_amd64.deb");
        assert_eq!(foo.size, 1300);
        assert_eq!(foo.architecture, "amd64");
        // no trailing blank line after the last paragraph
        let found = find_packages(INDEX.trim_end().as_bytes(), &["bar"]).unwrap();
        assert_eq!(found["bar"].size, 10);
    }

    #[test]
    fn versions() {
        use Ordering::*;
        for (a, b, ord) in [
            ("1.0", "1.0", Equal),
            ("1.0", "1.1", Less),
            ("1.10", "1.9", Greater),
            ("1.0~rc1", "1.0", Less),
            ("1.0", "1.0+deb12u1", Less),
            ("1:0.1", "9.9", Greater),
            ("20230607+deb12u15", "20230607+deb12u9", Greater),
            ("1.0-1", "1.0-1~bpo1", Greater),
            ("1.0a", "1.0", Greater),
            ("1.0a", "1.0+", Less),
            ("007", "7", Equal),
        ] {
            assert_eq!(compare_versions(a, b), ord, "{a} vs {b}");
            assert_eq!(compare_versions(b, a), ord.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn sha256sums() {
        let sums = parse_sha256sums(
            "c9a88f81bfe7c20e62bcb3d1347e723e45ad5e35254af9f77f2686a52aee880d  ./netboot/mini.iso\n\
             D8808AA4CA188560DA1E6D749DCB930C87A5FD8B11EBFF1F3FA6D728AF35203D *netboot/debian-installer/amd64/linux\n\
             garbage line\n",
        );
        assert_eq!(sums.len(), 2);
        assert_eq!(
            sums["netboot/mini.iso"],
            "c9a88f81bfe7c20e62bcb3d1347e723e45ad5e35254af9f77f2686a52aee880d"
        );
        assert!(sums["netboot/debian-installer/amd64/linux"].starts_with("d8808aa4"));
    }
}
