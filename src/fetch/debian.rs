//! Debian's archive chain of trust, as apt walks it: `InRelease`, signed by a Debian archive
//! key built into ferry, pins the SHA-256 of the `Packages` index and of the installer's
//! `SHA256SUMS`; those pin the `.deb` files and installer images. Every link is checked before
//! the next one is used, and a broken link is refused with a message naming it.
//!
//! The HTTP side is a [`Transport`] supplied by the caller, so this module only decides *what*
//! to fetch and whether it may be trusted. A transport that already verifies downloads is
//! welcome; this module checks everything again anyway.

pub mod deb;
pub mod openpgp;
pub mod packages;
pub mod release;
pub mod resolve;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use super::progress::{Progress, Quiet};

pub use deb::DebError;
pub use openpgp::{Keyring, OpenPgpError, Signer};
pub use packages::{Package, Pin};
pub use release::{IndexEntry, Release, ReleaseError};

/// Debian's CDN; the only archive ferry's build machines can reach.
pub const DEBIAN_MIRROR: &str = "http://deb.debian.org/debian";

/// What a [`Transport`] reports when a transfer fails.
pub type TransportError = Box<dyn std::error::Error + Send + Sync>;

/// The content a download must have.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// Lower-case hex.
    pub sha256: &'a str,
    pub size: Option<u64>,
}

/// Moving bytes: implemented by ferry's HTTP client (with its cache, resume, retries and
/// mirrors), or by a map of canned responses in tests.
pub trait Transport {
    /// The whole body of a small file (an index).
    fn get(&self, url: &str) -> Result<Vec<u8>, TransportError>;
    /// Stores `url` at `dest`. A transport should verify `expected` on the way and leave
    /// nothing at `dest` on failure; the caller checks the file again either way.
    /// Bytes as they come go to `progress`.
    fn download(
        &self,
        url: &str,
        dest: &Path,
        expected: &Expected<'_>,
        progress: &mut dyn Progress,
    ) -> Result<(), TransportError>;
}

/// A broken link in the chain, or a failure to follow it. `what` names the file.
#[derive(Debug, thiserror::Error)]
pub enum DebianError {
    #[error("{what}: download from {url} failed: {source}")]
    Transport {
        what: String,
        url: String,
        source: TransportError,
    },
    #[error("{what}: {source}")]
    Signature { what: String, source: OpenPgpError },
    #[error("{what}: {source}")]
    Release { what: String, source: ReleaseError },
    #[error("{what}: {field} does not match the one {authority} lists")]
    Mismatch {
        what: String,
        field: &'static str,
        authority: String,
    },
    #[error("{what}: not listed in {authority}")]
    NotListed { what: String, authority: String },
    #[error("{name}: not in the Packages index ({index})")]
    NoPackage { name: String, index: String },
    #[error("{what}: {reason}")]
    Content { what: String, reason: String },
    #[error(transparent)]
    Deb(#[from] DebError),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// A suite whose `InRelease` verified and passed its checks.
#[derive(Debug, Clone)]
pub struct Suite {
    /// The name it was asked for (`bookworm`, `stable`, ...), as used in `dists/NAME/`.
    pub name: String,
    pub release: Release,
    pub signers: Vec<Signer>,
}

impl Suite {
    fn in_release(&self) -> String {
        format!("dists/{}/InRelease", self.name)
    }
}

/// Debian-installer's netboot kernel and initrd, taken from a verified
/// `debian-installer-N-netboot-ARCH` package.
#[derive(Debug, Clone)]
pub struct Netboot {
    pub suite: Suite,
    pub package: Package,
    pub deb: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

/// A Debian archive (a mirror URL) and the keys trusted to sign it.
pub struct Archive<T> {
    mirror: String,
    keyring: Keyring,
    transport: T,
    now: Option<SystemTime>,
}

impl<T: Transport> Archive<T> {
    pub fn new(mirror: &str, keyring: Keyring, transport: T) -> Archive<T> {
        Archive {
            mirror: mirror.trim_end_matches('/').to_string(),
            keyring,
            transport,
            now: None,
        }
    }

    /// `http://deb.debian.org/debian` with Debian's archive keys.
    pub fn debian(transport: T) -> Archive<T> {
        Archive::new(DEBIAN_MIRROR, Keyring::debian(), transport)
    }

    /// Judge signatures and `Valid-Until` at `now` instead of the current time.
    pub fn at_time(mut self, now: SystemTime) -> Archive<T> {
        self.now = Some(now);
        self
    }

    fn now(&self) -> SystemTime {
        self.now.unwrap_or_else(SystemTime::now)
    }

    fn get(&self, what: &str, url: String) -> Result<Vec<u8>, DebianError> {
        self.transport
            .get(&url)
            .map_err(|source| DebianError::Transport {
                what: what.to_string(),
                url,
                source,
            })
    }

    /// Fetches `dists/NAME/InRelease`, verifies its signature against the keyring, and checks
    /// that it is the suite asked for and still valid.
    pub fn suite(&self, name: &str) -> Result<Suite, DebianError> {
        let what = format!("dists/{name}/InRelease");
        let data = self.get(&what, format!("{}/{what}", self.mirror))?;
        let verified = self
            .keyring
            .verify_clearsigned(&data, self.now())
            .map_err(|source| DebianError::Signature {
                what: what.clone(),
                source,
            })?;
        let release = Release::parse(&verified.text).map_err(|source| DebianError::Release {
            what: what.clone(),
            source,
        })?;
        release
            .check(name, self.now())
            .map_err(|source| DebianError::Release {
                what: what.clone(),
                source,
            })?;
        tracing::debug!(suite = name, signers = ?verified.signers, "InRelease verified");
        Ok(Suite {
            name: name.to_string(),
            release,
            signers: verified.signers,
        })
    }

    /// An index file the suite's `InRelease` lists (path relative to `dists/NAME/`), fetched
    /// and checked against the size and SHA-256 listed there.
    pub fn index(&self, suite: &Suite, path: &str) -> Result<Vec<u8>, DebianError> {
        let what = format!("dists/{}/{path}", suite.name);
        let entry = suite
            .release
            .files
            .get(path)
            .ok_or_else(|| DebianError::NotListed {
                what: what.clone(),
                authority: suite.in_release(),
            })?;
        let data = self.get(&what, format!("{}/{what}", self.mirror))?;
        let mismatch = |field| DebianError::Mismatch {
            what: what.clone(),
            field,
            authority: suite.in_release(),
        };
        if data.len() as u64 != entry.size {
            return Err(mismatch("size"));
        }
        if hex::encode(Sha256::digest(&data)) != entry.sha256 {
            return Err(mismatch("sha256"));
        }
        Ok(data)
    }

    /// The newest version of each of `names` in `COMPONENT/binary-ARCH/Packages` (reading the
    /// `.xz`, `.gz` or plain index, whichever `InRelease` lists and the mirror serves).
    pub fn packages(
        &self,
        suite: &Suite,
        component: &str,
        arch: &str,
        names: &[&str],
    ) -> Result<BTreeMap<String, Package>, DebianError> {
        self.read_packages(suite, component, arch, |name| names.contains(&name))
    }

    /// The whole `COMPONENT/binary-ARCH/Packages` index, for resolving dependencies.
    pub fn index_of(
        &self,
        suite: &Suite,
        component: &str,
        arch: &str,
    ) -> Result<resolve::Index, DebianError> {
        Ok(resolve::Index::new(self.read_packages(
            suite,
            component,
            arch,
            |_| true,
        )?))
    }

    fn read_packages(
        &self,
        suite: &Suite,
        component: &str,
        arch: &str,
        keep: impl FnMut(&str) -> bool,
    ) -> Result<BTreeMap<String, Package>, DebianError> {
        let base = format!("{component}/binary-{arch}/Packages");
        let mut last_error = None;
        for ext in [".xz", ".gz", ""] {
            let path = format!("{base}{ext}");
            if !suite.release.files.contains_key(&path) {
                continue;
            }
            let data = match self.index(suite, &path) {
                Ok(data) => data,
                Err(e @ DebianError::Transport { .. }) => {
                    tracing::debug!("{e}; trying another compression");
                    last_error = Some(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let reader: Box<dyn Read> = match ext {
                ".xz" => Box::new(lzma_rust2::XzReader::new(&data[..], true)),
                ".gz" => Box::new(flate2::read::MultiGzDecoder::new(&data[..])),
                _ => Box::new(&data[..]),
            };
            return packages::read_index(BufReader::with_capacity(1 << 16, reader), keep).map_err(
                |e| DebianError::Content {
                    what: format!("dists/{}/{path}", suite.name),
                    reason: e.to_string(),
                },
            );
        }
        Err(last_error.unwrap_or_else(|| DebianError::NotListed {
            what: format!("dists/{}/{base}", suite.name),
            authority: suite.in_release(),
        }))
    }

    /// One package, by name.
    pub fn package(
        &self,
        suite: &Suite,
        component: &str,
        arch: &str,
        name: &str,
    ) -> Result<Package, DebianError> {
        self.packages(suite, component, arch, &[name])?
            .remove(name)
            .ok_or_else(|| DebianError::NoPackage {
                name: name.to_string(),
                index: format!("dists/{}/{component}/binary-{arch}", suite.name),
            })
    }

    /// Downloads a package's `.deb` into `dir` (named as in the pool) and checks it against
    /// the size and SHA-256 the `Packages` index lists, its bytes reported to `progress`.
    pub fn download_package(
        &self,
        package: &Package,
        dir: &Path,
        progress: &mut dyn Progress,
    ) -> Result<PathBuf, DebianError> {
        let base = package.filename.rsplit('/').next().unwrap_or_default();
        if base.is_empty()
            || base.starts_with('.')
            || package.filename.split('/').any(|c| c == "..")
        {
            return Err(DebianError::Content {
                what: package.name.clone(),
                reason: format!(
                    "unsafe Filename {:?} in the Packages index",
                    package.filename
                ),
            });
        }
        let dest = dir.join(base);
        let url = format!("{}/{}", self.mirror, package.filename);
        let expected = Expected {
            sha256: &package.sha256,
            size: Some(package.size),
        };
        self.download_checked(base, &url, &dest, &expected, "the Packages index", progress)?;
        Ok(dest)
    }

    /// `SHA256SUMS` of the installer images (`main/installer-ARCH/current/images/`), checked
    /// against `InRelease`: path (e.g. `netboot/mini.iso`) → SHA-256.
    pub fn installer_sums(
        &self,
        suite: &Suite,
        arch: &str,
    ) -> Result<BTreeMap<String, String>, DebianError> {
        let path = format!("main/installer-{arch}/current/images/SHA256SUMS");
        let data = self.index(suite, &path)?;
        let text = String::from_utf8(data).map_err(|_| DebianError::Content {
            what: path.clone(),
            reason: "not text".to_string(),
        })?;
        Ok(packages::parse_sha256sums(&text))
    }

    /// Downloads an installer image (`netboot/mini.iso`) to `dest`, checked against
    /// `SHA256SUMS`, itself checked against `InRelease`.
    pub fn download_installer_file(
        &self,
        suite: &Suite,
        arch: &str,
        path: &str,
        dest: &Path,
    ) -> Result<(), DebianError> {
        let sums = self.installer_sums(suite, arch)?;
        let images = format!("dists/{}/main/installer-{arch}/current/images", suite.name);
        let authority = format!("{images}/SHA256SUMS");
        let sha256 = sums.get(path).ok_or_else(|| DebianError::NotListed {
            what: path.to_string(),
            authority: authority.clone(),
        })?;
        let url = format!("{}/{images}/{path}", self.mirror);
        self.download_checked(
            path,
            &url,
            dest,
            &Expected { sha256, size: None },
            &authority,
            &mut Quiet,
        )
    }

    fn download_checked(
        &self,
        what: &str,
        url: &str,
        dest: &Path,
        expected: &Expected<'_>,
        authority: &str,
        progress: &mut dyn Progress,
    ) -> Result<(), DebianError> {
        self.transport
            .download(url, dest, expected, progress)
            .map_err(|source| DebianError::Transport {
                what: what.to_string(),
                url: url.to_string(),
                source,
            })?;
        let mismatch = check_file(dest, expected).map_err(|source| DebianError::Io {
            path: dest.to_path_buf(),
            source,
        })?;
        if let Some(field) = mismatch {
            let _ = std::fs::remove_file(dest);
            return Err(DebianError::Mismatch {
                what: what.to_string(),
                field,
                authority: authority.to_string(),
            });
        }
        Ok(())
    }

    /// The whole chain for debian-installer's netboot kernel and initrd: verify the suite,
    /// find `debian-installer-N-netboot-ARCH` (N from the release's version) in the Packages
    /// index, download and check the `.deb` into `dir`, and extract `linux` and `initrd.gz`
    /// into `dir/PACKAGE_VERSION/`.
    pub fn netboot(
        &self,
        suite_name: &str,
        arch: &str,
        dir: &Path,
    ) -> Result<Netboot, DebianError> {
        let suite = self.suite(suite_name)?;
        let major = suite.release.major_version().ok_or_else(|| DebianError::Content {
            what: suite.in_release(),
            reason: "no Version field, so no debian-installer-N-netboot package to pick (testing and unstable have none)"
                .to_string(),
        })?;
        let name = format!("debian-installer-{major}-netboot-{arch}");
        let package = self.package(&suite, "main", arch, &name)?;
        let deb = self.download_package(&package, dir, &mut Quiet)?;
        let out = dir.join(format!("{}_{}", package.name, package.version));
        let (kernel, initrd) = extract_netboot(&deb, &major.to_string(), arch, &out)?;
        Ok(Netboot {
            suite,
            package,
            deb,
            kernel,
            initrd,
        })
    }
}

/// Takes debian-installer's text netboot `linux` and `initrd.gz` for Debian `major` out of a
/// verified `debian-installer-MAJOR-netboot-ARCH` package into `out`, and checks that they
/// look like what they are.
pub fn extract_netboot(
    deb: &Path,
    major: &str,
    arch: &str,
    out: &Path,
) -> Result<(PathBuf, PathBuf), DebianError> {
    std::fs::create_dir_all(out).map_err(|source| DebianError::Io {
        path: out.to_path_buf(),
        source,
    })?;
    let (kernel, initrd) = (out.join("linux"), out.join("initrd.gz"));
    let images =
        format!("usr/lib/debian-installer/images/{major}/{arch}/text/debian-installer/{arch}");
    deb::extract(
        deb,
        &[
            (&format!("{images}/linux"), &kernel),
            (&format!("{images}/initrd.gz"), &initrd),
        ],
    )?;
    // x86's boot protocol header, or arm64's `Image` header (QEMU boots either directly).
    let (offset, magic, reason) = match crate::arch::Arch::parse(arch) {
        Some(crate::arch::Arch::Aarch64) => {
            (0x38, b"ARMd", "not an arm64 Linux Image (no ARMd at 0x38)")
        }
        _ => (0x202, b"HdrS", "not a Linux kernel (no HdrS at 0x202)"),
    };
    check_magic(&kernel, offset, magic, reason)?;
    check_magic(&initrd, 0, &[0x1f, 0x8b], "not gzip-compressed")?;
    Ok((kernel, initrd))
}

/// Whether `path` has the expected size and SHA-256: `None` if so, else the field that differs.
pub fn check_file(path: &Path, expected: &Expected<'_>) -> io::Result<Option<&'static str>> {
    let mut file = File::open(path)?;
    if let Some(size) = expected.size
        && file.metadata()?.len() != size
    {
        return Ok(Some("size"));
    }
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher)?;
    Ok(
        (hex::encode(hasher.finalize()) != expected.sha256.to_ascii_lowercase())
            .then_some("sha256"),
    )
}

fn check_magic(path: &Path, offset: u64, magic: &[u8], reason: &str) -> Result<(), DebianError> {
    let io_err = |source| DebianError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io_err)?;
    let mut buf = vec![0u8; magic.len()];
    let ok = io::Seek::seek(&mut file, io::SeekFrom::Start(offset)).is_ok()
        && file.read_exact(&mut buf).is_ok();
    if !ok || buf != magic {
        return Err(DebianError::Content {
            what: path.display().to_string(),
            reason: reason.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
