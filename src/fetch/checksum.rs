//! SHA-256 digests, where a download's expected digest comes from, and checksum files.

use std::fmt;

use serde::{Deserialize, Serialize};
use url::Url;

/// A SHA-256 digest; displays and parses as 64 hexadecimal digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256Digest(pub [u8; 32]);

impl Sha256Digest {
    /// Parses 64 hexadecimal digits (either case).
    pub fn parse(hex: &str) -> Option<Sha256Digest> {
        let hex = hex.as_bytes();
        if hex.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in hex.chunks(2).enumerate() {
            let digit = |c: u8| (c as char).to_digit(16);
            out[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
        }
        Some(Sha256Digest(out))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Digest({})", self.to_hex())
    }
}

string_schema!(Sha256Digest, { "pattern": "^[0-9a-f]{64}$" });

impl Serialize for Sha256Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Sha256Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Sha256Digest::parse(&text)
            .ok_or_else(|| serde::de::Error::custom("`sha256` must be 64 hexadecimal digits"))
    }
}

/// Where the expected digest of a download comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChecksumSource {
    /// Known in advance: from the catalog, a profile's `sha256`, or `--sha256`.
    Sha256(Sha256Digest),
    /// A checksum file: an absolute URL, or a reference relative to each mirror's URL (so
    /// `"SHA256SUMS"` is the file next to the image on every mirror). Formats: GNU
    /// (`HEX  name`), BSD (`SHA256 (name) = HEX`), productmd's `.treeinfo` (`path = sha256:HEX`
    /// in its `[checksums]`), or a lone digest.
    SumsFile(String),
    /// Look next to the image for `SHA256SUMS`, then `NAME.sha256`; refuse if neither exists.
    Discover,
    /// The Debian archive's chain of trust: the archive keyring signs `InRelease`, which holds
    /// the digest of `Packages`, which holds the digest of the package; the package's current
    /// file in the pool is found in `Packages` too.
    Debian(DebianPackage),
    /// Not verified: the operator passed `--insecure-no-checksum`.
    Unverified,
}

impl ChecksumSource {
    /// One line for `ferry plan` and the catalog table.
    pub fn describe(&self) -> String {
        match self {
            ChecksumSource::Sha256(d) => format!("sha256 {d}"),
            ChecksumSource::SumsFile(r) => format!("sha256 from {r}"),
            ChecksumSource::Discover => "sha256 from SHA256SUMS next to the image".into(),
            ChecksumSource::Debian(p) => {
                format!("Debian archive chain of trust ({} {})", p.suite, p.package)
            }
            ChecksumSource::Unverified => "NOT VERIFIED (--insecure-no-checksum)".into(),
        }
    }
}

/// A package in a Debian archive, located and verified through the archive's signed
/// `InRelease`, then `Packages`, then the package's own digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DebianPackage {
    /// The archive's base URL, e.g. `https://deb.debian.org/debian`.
    pub archive: String,
    /// The suite or codename, e.g. `bookworm`.
    pub suite: String,
    #[serde(default = "main_component")]
    pub component: String,
    /// The `binary-ARCH` index that lists the package (`amd64`; `all` packages are listed there too).
    pub arch: String,
    pub package: String,
}

fn main_component() -> String {
    "main".into()
}

/// Finds the digest for `image_url` in a checksum file fetched from `sums_url`.
///
/// An entry matches when its name equals the image's path relative to the checksum file's
/// directory (`./netboot/mini.iso` in Debian's `images/SHA256SUMS`), or else its file name
/// (when only one entry has it). A file named `IMAGE.sha256` holding one entry applies to the
/// image whatever name it lists (NixOS lists the versioned name behind a `latest-` link).
pub fn find_in_sums(text: &str, sums_url: &Url, image_url: &Url) -> Option<Sha256Digest> {
    let entries: Vec<(String, Sha256Digest)> = text.lines().filter_map(parse_sums_line).collect();
    let image_name = last_segment(image_url);
    let sums_name = last_segment(sums_url);
    if entries.len() == 1
        && (sums_name == format!("{image_name}.sha256")
            || sums_name == format!("{image_name}.sha256sum"))
    {
        return Some(entries[0].1);
    }
    let sums_dir = sums_url.path().rsplit_once('/').map_or("", |(dir, _)| dir);
    let relative = image_url
        .path()
        .strip_prefix(sums_dir)
        .and_then(|rest| rest.strip_prefix('/'))
        .map(percent_decode);
    if let Some(relative) = relative
        && let Some((_, d)) = entries.iter().find(|(name, _)| *name == relative)
    {
        return Some(*d);
    }
    let mut by_name = entries
        .iter()
        .filter(|(name, _)| name.rsplit('/').next() == Some(image_name.as_str()));
    match (by_name.next(), by_name.next()) {
        (Some((_, d)), None) => Some(*d),
        _ => None,
    }
}

/// One line of a checksum file: GNU `HEX  name` / `HEX *name`, BSD `SHA256 (name) = HEX`,
/// productmd's `path = sha256:HEX` (an install tree's `.treeinfo`; its other lines are no
/// checksums), or a lone `HEX` (an empty name).
fn parse_sums_line(line: &str) -> Option<(String, Sha256Digest)> {
    let line = line.trim_end();
    if let Some(rest) = line.strip_prefix("SHA256 (") {
        let (name, hex) = rest.rsplit_once(") = ")?;
        return Some((clean_name(name), Sha256Digest::parse(hex.trim())?));
    }
    if let Some((name, value)) = line.split_once(" = ") {
        let hex = value.trim().strip_prefix("sha256:")?;
        return Some((clean_name(name.trim()), Sha256Digest::parse(hex)?));
    }
    let (hex, name) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let digest = Sha256Digest::parse(hex)?;
    let name = name.trim_start();
    Some((clean_name(name.strip_prefix('*').unwrap_or(name)), digest))
}

fn clean_name(name: &str) -> String {
    name.trim_start_matches("./").to_string()
}

fn last_segment(url: &Url) -> String {
    percent_decode(url.path().rsplit('/').next().unwrap_or_default())
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "c9a88f81bfe7c20e62bcb3d1347e723e45ad5e35254af9f77f2686a52aee880d";
    const B: &str = "9de9992bc8e63aa0f4e8e20975d94e4812bc4ec41939c93a849759eb7ee70e44";

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn d(hex: &str) -> Option<Sha256Digest> {
        Sha256Digest::parse(hex)
    }

    #[test]
    fn digest_parses_and_prints() {
        assert_eq!(d(&A.to_uppercase()).unwrap().to_string(), A);
        assert!(d(&A[..63]).is_none());
        assert!(d(&format!("{}g", &A[..63])).is_none());
    }

    #[test]
    fn debian_sums_with_relative_paths() {
        // The format of dists/bookworm/main/installer-amd64/current/images/SHA256SUMS.
        let text = format!(
            "{A}  ./netboot/mini.iso\n{B}  ./netboot/netboot.tar.gz\n{B}  ./cdrom/mini.iso\n"
        );
        let sums = url(
            "https://deb.debian.org/debian/dists/bookworm/main/installer-amd64/current/images/SHA256SUMS",
        );
        let image = sums.join("netboot/mini.iso").unwrap();
        assert_eq!(find_in_sums(&text, &sums, &image), d(A));
        // Two entries share the file name: without the relative path, no guess.
        let elsewhere = url("https://mirror.example/mini.iso");
        assert_eq!(find_in_sums(&text, &sums, &elsewhere), None);
    }

    #[test]
    fn gnu_binary_bsd_and_lone_formats() {
        let image = url("http://h/pub/os.iso");
        assert_eq!(
            find_in_sums(
                &format!("{B} *other.iso\n{A} *os.iso\n"),
                &url("http://h/pub/SHA256SUMS"),
                &image
            ),
            d(A)
        );
        let bsd = format!("SHA256 (other.iso) = {B}\nSHA256 (os.iso) = {A}\n");
        assert_eq!(
            find_in_sums(&bsd, &url("http://h/pub/SHA256"), &image),
            d(A)
        );
        assert_eq!(
            find_in_sums(
                &format!("{A}\n"),
                &url("http://h/pub/os.iso.sha256"),
                &image
            ),
            d(A)
        );
        assert_eq!(
            find_in_sums(
                &format!("{A}  os-1.2.3.iso\n"),
                &url("http://h/pub/os.iso.sha256"),
                &image
            ),
            d(A)
        );
        assert_eq!(
            find_in_sums(
                &format!("{A}  other.iso\n"),
                &url("http://h/pub/SHA256SUMS"),
                &image
            ),
            None
        );
        assert_eq!(
            find_in_sums("garbage\n\n", &url("http://h/pub/SHA256SUMS"), &image),
            None
        );
    }

    #[test]
    fn treeinfo_checksums_by_path_in_the_tree() {
        // An install tree's .treeinfo as productmd writes it (Rocky, Alma, Fedora).
        let text = format!(
            "[checksums]\nimages/install.img = sha256:{B}\nimages/pxeboot/vmlinuz = sha256:{A}\n\n\
             [general]\narch = x86_64\n\n[images-x86_64]\nkernel = images/pxeboot/vmlinuz\n"
        );
        let tree = url("https://dl.rockylinux.org/pub/rocky/9/BaseOS/x86_64/os/");
        let sums = tree.join(".treeinfo").unwrap();
        let kernel = tree.join("images/pxeboot/vmlinuz").unwrap();
        assert_eq!(find_in_sums(&text, &sums, &kernel), d(A));
        let missing = tree.join("images/pxeboot/initrd.img").unwrap();
        assert_eq!(find_in_sums(&text, &sums, &missing), None);
    }

    #[test]
    fn names_are_percent_decoded() {
        let image = url("http://h/a%20b.iso");
        assert_eq!(
            find_in_sums(
                &format!("{A}  a b.iso\n"),
                &url("http://h/SHA256SUMS"),
                &image
            ),
            d(A)
        );
    }
}
