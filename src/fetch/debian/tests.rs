//! The chain end to end against a fake archive held in memory and signed by a throwaway key:
//! each kind of broken link must be refused with a message naming it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Write;

use super::deb::tests::{build_deb, build_tar};
use super::openpgp::tests::{clearsign, public_bytes, throwaway_key};
use super::*;
use pgp::types::KeyDetails;

const MIRROR: &str = "http://mirror.test/debian";
const DEB_PATH: &str = "pool/main/d/debian-installer-netboot-images/debian-installer-12-netboot-amd64_20230607+deb12u15_all.deb";
const IMAGES: &str = "usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64";

/// Canned responses by URL; anything else is a 404.
#[derive(Default)]
struct Memory {
    files: RefCell<HashMap<String, Vec<u8>>>,
    requests: RefCell<Vec<String>>,
}

impl Memory {
    fn put(&self, path: &str, data: Vec<u8>) {
        self.files
            .borrow_mut()
            .insert(format!("{MIRROR}/{path}"), data);
    }
    fn remove(&self, path: &str) {
        self.files.borrow_mut().remove(&format!("{MIRROR}/{path}"));
    }
    fn edit(&self, path: &str, f: impl FnOnce(&mut Vec<u8>)) {
        f(self
            .files
            .borrow_mut()
            .get_mut(&format!("{MIRROR}/{path}"))
            .unwrap());
    }
}

impl Transport for &Memory {
    fn get(&self, url: &str) -> Result<Vec<u8>, TransportError> {
        self.requests.borrow_mut().push(url.to_string());
        self.files
            .borrow()
            .get(url)
            .cloned()
            .ok_or_else(|| "HTTP 404 Not Found".into())
    }
    /// Deliberately does not verify: the chain must catch a bad file by itself.
    fn download(
        &self,
        url: &str,
        dest: &Path,
        _expected: &Expected<'_>,
        _progress: &mut dyn crate::fetch::Progress,
    ) -> Result<(), TransportError> {
        let data = self.get(url)?;
        std::fs::write(dest, data)?;
        Ok(())
    }
}

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn kernel() -> Vec<u8> {
    let mut k = vec![0u8; 0x400];
    k[0x202..0x206].copy_from_slice(b"HdrS");
    k
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn xz(data: &[u8]) -> Vec<u8> {
    let mut w =
        lzma_rust2::XzWriter::new(Vec::new(), lzma_rust2::XzOptions::with_preset(1)).unwrap();
    w.write_all(data).unwrap();
    w.finish().unwrap()
}

struct Fake {
    key: pgp::composed::SignedSecretKey,
    memory: Memory,
    dir: tempfile::TempDir,
}

impl Fake {
    /// A bookworm-like archive: InRelease → Packages.{xz,gz} → the netboot .deb, and
    /// InRelease → SHA256SUMS → netboot/mini.iso. `release_extra` goes into InRelease.
    fn new(codename: &str, release_extra: &str) -> Fake {
        let key = throwaway_key("Test Archive Signing Key <test@example.org>");
        let memory = Memory::default();
        let tar = build_tar(&[
            (&format!("./{IMAGES}/linux"), &kernel()),
            (&format!("./{IMAGES}/initrd.gz"), &gzip(b"070701 cpio")),
        ]);
        let deb = build_deb("data.tar.xz", &xz(&tar));
        let packages = format!(
            "Package: hello\nVersion: 2.10-3\nArchitecture: amd64\nFilename: pool/main/h/hello/hello_2.10-3_amd64.deb\n\
             Size: 1\nSHA256: {zero}\n\n\
             Package: debian-installer-12-netboot-amd64\nSource: debian-installer-netboot-images\n\
             Version: 20230607+deb12u15\nArchitecture: all\nDescription: netboot images\n multi-line\n\
             Filename: {DEB_PATH}\nSize: {}\nSHA256: {}\n\n",
            deb.len(),
            sha(&deb),
            zero = "0".repeat(64)
        );
        let (packages_xz, packages_gz) = (xz(packages.as_bytes()), gzip(packages.as_bytes()));
        let mini = b"mini.iso contents".to_vec();
        let sums = format!(
            "{}  ./netboot/mini.iso\n{}  ./netboot/gtk/mini.iso\n",
            sha(&mini),
            sha(b"gtk")
        );
        let release = format!(
            "Origin: Debian\nSuite: oldstable\nVersion: 12.15\nCodename: {codename}\n\
             Date: Sat, 11 Jul 2026 10:16:37 UTC\n{release_extra}Components: main\nArchitectures: amd64\nSHA256:\n \
             {} {} main/binary-amd64/Packages.xz\n {} {} main/binary-amd64/Packages.gz\n \
             {} {} main/installer-amd64/current/images/SHA256SUMS\n",
            sha(&packages_xz),
            packages_xz.len(),
            sha(&packages_gz),
            packages_gz.len(),
            sha(sums.as_bytes()),
            sums.len()
        );
        memory.put("dists/bookworm/InRelease", clearsign(&key, &release));
        memory.put("dists/bookworm/main/binary-amd64/Packages.xz", packages_xz);
        memory.put("dists/bookworm/main/binary-amd64/Packages.gz", packages_gz);
        memory.put(
            "dists/bookworm/main/installer-amd64/current/images/SHA256SUMS",
            sums.into_bytes(),
        );
        memory.put(
            "dists/bookworm/main/installer-amd64/current/images/netboot/mini.iso",
            mini,
        );
        memory.put(DEB_PATH, deb);
        Fake {
            key,
            memory,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn archive(&self) -> Archive<&Memory> {
        let keyring = Keyring::from_bytes("test", &public_bytes(&self.key)).unwrap();
        Archive::new(MIRROR, keyring, &self.memory)
            .at_time(parse_date("Sun, 12 Jul 2026 00:00:00 UTC"))
    }

    fn netboot(&self) -> Result<Netboot, DebianError> {
        self.archive().netboot("bookworm", "amd64", self.dir.path())
    }
}

fn parse_date(text: &str) -> SystemTime {
    release::parse_date(text).unwrap()
}

#[test]
fn the_whole_chain_yields_kernel_and_initrd() {
    let fake = Fake::new("bookworm", "");
    let netboot = fake.netboot().unwrap();
    assert_eq!(netboot.package.version, "20230607+deb12u15");
    assert_eq!(netboot.suite.release.codename, "bookworm");
    assert_eq!(
        netboot.suite.signers[0].uid,
        "Test Archive Signing Key <test@example.org>"
    );
    assert_eq!(std::fs::read(&netboot.kernel).unwrap(), kernel());
    assert!(
        std::fs::read(&netboot.initrd)
            .unwrap()
            .starts_with(&[0x1f, 0x8b])
    );
    assert_eq!(
        netboot.deb,
        fake.dir.path().join(DEB_PATH.rsplit('/').next().unwrap())
    );
    assert_eq!(
        netboot.kernel,
        fake.dir
            .path()
            .join("debian-installer-12-netboot-amd64_20230607+deb12u15/linux")
    );
    // xz is preferred: the .gz index was never asked for
    assert!(
        !fake
            .memory
            .requests
            .borrow()
            .iter()
            .any(|u| u.ends_with("Packages.gz"))
    );

    let archive = fake.archive();
    let suite = archive.suite("bookworm").unwrap();
    let iso = fake.dir.path().join("mini.iso");
    archive
        .download_installer_file(&suite, "amd64", "netboot/mini.iso", &iso)
        .unwrap();
    assert_eq!(std::fs::read(&iso).unwrap(), b"mini.iso contents");
}

#[test]
fn tampered_in_release_is_refused() {
    let fake = Fake::new("bookworm", "");
    fake.memory.edit("dists/bookworm/InRelease", |data| {
        let at = data.windows(9).position(|w| w == b"oldstable").unwrap();
        data[at] = b'O';
    });
    let e = fake.netboot().unwrap_err().to_string();
    assert!(
        e.starts_with("dists/bookworm/InRelease: bad signature by key 0x"),
        "{e}"
    );
    assert!(
        e.contains("(Test Archive Signing Key <test@example.org>)"),
        "{e}"
    );
}

#[test]
fn in_release_signed_by_an_unknown_key_is_refused() {
    let fake = Fake::new("bookworm", "");
    let stranger = throwaway_key("Stranger <x@example.org>");
    let archive = Archive::new(
        MIRROR,
        Keyring::from_bytes("other", &public_bytes(&stranger)).unwrap(),
        &fake.memory,
    )
    .at_time(parse_date("Sun, 12 Jul 2026 00:00:00 UTC"));
    let e = archive.suite("bookworm").unwrap_err().to_string();
    let signer = format!("{:X}", fake.key.secret_subkeys[0].key.fingerprint());
    assert_eq!(
        e,
        format!("dists/bookworm/InRelease: signature by unknown key 0x{signer}")
    );
    // and Debian's real keys do not trust the throwaway key either
    let archive = Archive::debian(&fake.memory);
    let archive = Archive {
        mirror: MIRROR.to_string(),
        ..archive
    };
    let e = archive.suite("bookworm").unwrap_err().to_string();
    assert_eq!(
        e,
        format!("dists/bookworm/InRelease: signature by unknown key 0x{signer}")
    );
}

#[test]
fn in_release_of_another_suite_or_expired_is_refused() {
    let fake = Fake::new("trixie", "");
    let e = fake.netboot().unwrap_err().to_string();
    assert_eq!(
        e,
        "dists/bookworm/InRelease: is for suite oldstable (codename trixie), not bookworm"
    );

    let fake = Fake::new("bookworm", "Valid-Until: Sat, 11 Jul 2026 12:00:00 UTC\n");
    let e = fake.netboot().unwrap_err().to_string();
    assert_eq!(
        e,
        "dists/bookworm/InRelease: expired on 2026-07-11 12:00:00 UTC (Valid-Until); the mirror is stale or replays an old file"
    );
    let archive = fake
        .archive()
        .at_time(parse_date("Sat, 11 Jul 2026 11:00:00 UTC"));
    archive.suite("bookworm").unwrap();
}

#[test]
fn tampered_packages_index_is_refused() {
    let fake = Fake::new("bookworm", "");
    fake.memory
        .edit("dists/bookworm/main/binary-amd64/Packages.xz", |data| {
            let last = data.len() - 20;
            data[last] ^= 1;
        });
    let e = fake.netboot().unwrap_err().to_string();
    assert_eq!(
        e,
        "dists/bookworm/main/binary-amd64/Packages.xz: sha256 does not match the one dists/bookworm/InRelease lists"
    );
    fake.memory
        .edit("dists/bookworm/main/binary-amd64/Packages.xz", |data| {
            data.push(0)
        });
    let e = fake.netboot().unwrap_err().to_string();
    assert!(
        e.ends_with("Packages.xz: size does not match the one dists/bookworm/InRelease lists"),
        "{e}"
    );
}

#[test]
fn missing_xz_index_falls_back_to_gz() {
    let fake = Fake::new("bookworm", "");
    fake.memory
        .remove("dists/bookworm/main/binary-amd64/Packages.xz");
    let netboot = fake.netboot().unwrap();
    assert_eq!(netboot.package.name, "debian-installer-12-netboot-amd64");
    fake.memory
        .remove("dists/bookworm/main/binary-amd64/Packages.gz");
    let e = fake.netboot().unwrap_err().to_string();
    assert!(
        e.starts_with(
            "dists/bookworm/main/binary-amd64/Packages.gz: download from http://mirror.test/"
        ),
        "{e}"
    );
    assert!(e.ends_with("failed: HTTP 404 Not Found"), "{e}");
}

#[test]
fn deb_that_does_not_match_the_index_is_refused_and_removed() {
    let fake = Fake::new("bookworm", "");
    fake.memory.edit(DEB_PATH, |data| {
        let at = data.len() / 2;
        data[at] ^= 0xff;
    });
    let e = fake.netboot().unwrap_err().to_string();
    assert_eq!(
        e,
        "debian-installer-12-netboot-amd64_20230607+deb12u15_all.deb: sha256 does not match the one the Packages index lists"
    );
    assert_eq!(
        std::fs::read_dir(fake.dir.path()).unwrap().count(),
        0,
        "the bad .deb was left behind"
    );
}

#[test]
fn package_missing_from_the_index_is_named() {
    let fake = Fake::new("bookworm", "");
    let archive = fake.archive();
    let suite = archive.suite("bookworm").unwrap();
    let e = archive
        .package(&suite, "main", "amd64", "debian-installer-13-netboot-amd64")
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "debian-installer-13-netboot-amd64: not in the Packages index (dists/bookworm/main/binary-amd64)"
    );
    let e = archive
        .packages(&suite, "contrib", "amd64", &["x"])
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "dists/bookworm/contrib/binary-amd64/Packages: not listed in dists/bookworm/InRelease"
    );
}

#[test]
fn installer_images_are_checked_against_sha256sums() {
    let fake = Fake::new("bookworm", "");
    let archive = fake.archive();
    let suite = archive.suite("bookworm").unwrap();
    let iso = fake.dir.path().join("mini.iso");
    fake.memory.edit(
        "dists/bookworm/main/installer-amd64/current/images/netboot/mini.iso",
        |d| d[0] ^= 1,
    );
    let e = archive
        .download_installer_file(&suite, "amd64", "netboot/mini.iso", &iso)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "netboot/mini.iso: sha256 does not match the one dists/bookworm/main/installer-amd64/current/images/SHA256SUMS lists"
    );
    assert!(!iso.exists());
    let e = archive
        .download_installer_file(&suite, "amd64", "netboot/other.iso", &iso)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "netboot/other.iso: not listed in dists/bookworm/main/installer-amd64/current/images/SHA256SUMS"
    );
    fake.memory.edit(
        "dists/bookworm/main/installer-amd64/current/images/SHA256SUMS",
        |d| d[0] = b'0',
    );
    let e = archive
        .download_installer_file(&suite, "amd64", "netboot/mini.iso", &iso)
        .unwrap_err();
    assert!(
        e.to_string().ends_with("current/images/SHA256SUMS: sha256 does not match the one dists/bookworm/InRelease lists"),
        "{e}"
    );
}

#[test]
fn deb_without_the_images_is_refused() {
    let fake = Fake::new("bookworm", "");
    let archive = fake.archive();
    let suite = archive.suite("bookworm").unwrap();
    let package = archive
        .package(&suite, "main", "amd64", "debian-installer-12-netboot-amd64")
        .unwrap();
    let deb = archive
        .download_package(
            &package,
            fake.dir.path(),
            &mut crate::fetch::progress::Quiet,
        )
        .unwrap();
    std::fs::write(
        &deb,
        build_deb("data.tar", &build_tar(&[("./usr/share/doc/x", b"x")])),
    )
    .unwrap();
    let out = fake.dir.path().join("linux");
    let e = deb::extract(&deb, &[(&format!("{IMAGES}/linux"), &out)]).unwrap_err();
    assert!(
        e.to_string()
            .ends_with(&format!("{IMAGES}/linux is not in the package")),
        "{e}"
    );
}

/// An arm64 netboot package holds a plain `Image` (ARMd at 0x38), not an x86 bzImage; each
/// architecture's kernel is checked by its own header.
#[test]
fn arm64_netboot_kernel_is_checked_by_its_image_header() {
    let dir = tempfile::tempdir().unwrap();
    let images = "usr/lib/debian-installer/images/12/arm64/text/debian-installer/arm64";
    let mut image = vec![0u8; 0x40];
    image[0x38..0x3c].copy_from_slice(b"ARMd");
    let package = |kernel: &[u8]| {
        let deb = dir.path().join("netboot-arm64.deb");
        let tar = build_tar(&[
            (&format!("./{images}/linux"), kernel),
            (&format!("./{images}/initrd.gz"), &gzip(b"070701 cpio")),
        ]);
        std::fs::write(&deb, build_deb("data.tar", &tar)).unwrap();
        deb
    };

    let out = dir.path().join("arm64");
    let (linux, _) = extract_netboot(&package(&image), "12", "arm64", &out).unwrap();
    assert_eq!(std::fs::read(linux).unwrap(), image);

    let e = extract_netboot(&package(&kernel()), "12", "arm64", &out).unwrap_err();
    assert!(
        e.to_string()
            .contains("not an arm64 Linux Image (no ARMd at 0x38)"),
        "{e}"
    );
}
