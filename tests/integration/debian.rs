//! Debian's real archive through ferry's chain of trust. Tests named `network_` need
//! http://deb.debian.org/debian (the only outside host ferry's build machines reach); they
//! download about 135 MB each.

use std::path::Path;

use ferry::fetch::debian::release::parse_date;
use ferry::fetch::debian::{Archive, DebianError, Expected, Keyring, Transport, TransportError};
use ferry::fetch::{FetchOptions, Fetcher};

/// ferry's own HTTP client, as `ferry install` uses it for the chain.
fn fetcher() -> Fetcher {
    Fetcher::new(FetchOptions::default()).unwrap()
}

/// The real archive, except that `InRelease` comes from `in_release`.
struct Replaced(Vec<u8>, Fetcher);

impl Transport for Replaced {
    fn get(&self, url: &str) -> Result<Vec<u8>, TransportError> {
        if url.ends_with("/InRelease") {
            Ok(self.0.clone())
        } else {
            (&self.1).get(url)
        }
    }
    fn download(
        &self,
        url: &str,
        dest: &Path,
        expected: &Expected<'_>,
        progress: &mut dyn ferry::fetch::Progress,
    ) -> Result<(), TransportError> {
        (&self.1).download(url, dest, expected, progress)
    }
}

fn netboot(suite: &str, major: u32) {
    let dir = tempfile::tempdir().unwrap();
    let fetcher = fetcher();
    let archive = Archive::debian(&fetcher);
    let netboot = archive
        .netboot(suite, "amd64", dir.path())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(netboot.suite.release.codename, suite);
    assert!(
        netboot
            .suite
            .signers
            .iter()
            .any(|s| s.uid.contains(&format!("({major}/{suite})"))),
        "{:?}",
        netboot.suite.signers
    );
    assert_eq!(
        netboot.package.name,
        format!("debian-installer-{major}-netboot-amd64")
    );
    let kernel = std::fs::read(&netboot.kernel).unwrap();
    assert_eq!(&kernel[0x202..0x206], b"HdrS", "bzImage header magic");
    assert!(kernel.len() > 4 << 20, "kernel of {} bytes", kernel.len());
    let initrd = std::fs::read(&netboot.initrd).unwrap();
    assert_eq!(&initrd[..2], &[0x1f, 0x8b], "gzip magic");
    assert!(initrd.len() > 10 << 20, "initrd of {} bytes", initrd.len());
    eprintln!(
        "{suite}: {} {} → {} ({} bytes), {} ({} bytes); signed by {:?}",
        netboot.package.name,
        netboot.package.version,
        netboot.kernel.display(),
        kernel.len(),
        netboot.initrd.display(),
        initrd.len(),
        netboot
            .suite
            .signers
            .iter()
            .map(|s| &s.uid)
            .collect::<Vec<_>>()
    );
}

#[test]
fn network_debian_12_netboot_kernel_and_initrd_through_the_signed_chain() {
    netboot("bookworm", 12);
    // The installer images' SHA256SUMS, pinned by InRelease, lists the netboot mini.iso. (Not
    // checked for trixie: this archive copy serves a stale trixie SHA256SUMS, which the chain
    // rightly refuses: "sha256 does not match the one dists/trixie/InRelease lists".)
    let fetcher = fetcher();
    let archive = Archive::debian(&fetcher);
    let suite = archive.suite("bookworm").unwrap();
    let sums = archive
        .installer_sums(&suite, "amd64")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        sums.contains_key("netboot/mini.iso"),
        "{:?}",
        sums.keys().take(5).collect::<Vec<_>>()
    );
}

#[test]
fn network_debian_13_netboot_kernel_and_initrd_through_the_signed_chain() {
    netboot("trixie", 13);
}

#[test]
fn network_debian_in_release_tampered_or_judged_after_key_expiry_is_refused() {
    let real = (&fetcher())
        .get("http://deb.debian.org/debian/dists/bookworm/InRelease")
        .unwrap();
    // One changed byte in the signed text.
    let text = String::from_utf8(real.clone()).unwrap();
    let tampered = text
        .replacen("Codename: bookworm", "Codename: bookwork", 1)
        .into_bytes();
    assert_ne!(tampered, real);
    let e = Archive::debian(Replaced(tampered, fetcher()))
        .suite("bookworm")
        .unwrap_err();
    assert!(matches!(e, DebianError::Signature { .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with("dists/bookworm/InRelease: bad signature by key 0x"),
        "{e}"
    );

    // Debian's keys, but judged in the future: bookworm's and trixie's automatic signing subkeys
    // differ in expiry (2031 and 2035); the stable release key expires in 2031. So in 2032 the
    // trixie key still vouches for bookworm's InRelease; in 2036 nothing does.
    let at = |year: u64| parse_date(&format!("1 Jun {year} 00:00:00 UTC")).unwrap();
    Archive::debian(Replaced(real.clone(), fetcher()))
        .at_time(at(2032))
        .suite("bookworm")
        .unwrap();
    let e = Archive::debian(Replaced(real.clone(), fetcher()))
        .at_time(at(2036))
        .suite("bookworm")
        .unwrap_err();
    let e = e.to_string();
    assert!(
        e.starts_with("dists/bookworm/InRelease: no usable signature: signature by key 0x"),
        "{e}"
    );
    assert!(e.contains("which expired on 2031-01-19"), "{e}");

    // A keyring without the signers' keys: the signature is by an unknown key.
    let stable_only = Keyring::from_bytes(
        "bullseye",
        include_bytes!("../../keys/debian-archive-bullseye-automatic.gpg"),
    )
    .unwrap();
    let archive = Archive::new(
        "http://deb.debian.org/debian",
        stable_only,
        Replaced(real, fetcher()),
    );
    let e = archive.suite("bookworm").unwrap_err().to_string();
    assert!(
        e.starts_with("dists/bookworm/InRelease: signature by unknown key 0x"),
        "{e}"
    );
    assert!(
        e.contains("0x4CB50190207B4758A3F73A796ED0E7B82643E131"),
        "{e}"
    );
}
