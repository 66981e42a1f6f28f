//! QEMU assembled from Debian's archive: the packages of a pinned release (`qemu-system-x86` or
//! `qemu-system-arm`, their `Depends` closure, the UEFI firmware), each verified through the
//! archive's signed chain ([`crate::fetch::debian`]), unpacked into the cache in the portable
//! bundle's layout and run through its own loader exactly like a bundle ([`Bundle`]).
//!
//! The resolved set (names, versions, SHA-256) is written to `qemu-debian/SUITE-ARCH.json` in
//! the cache, and the unit is unpacked to `qemu-debian/SUITE-ARCH-HASH/` (HASH: of the set), so
//! a later run finds it without a request. A catalog entry may pin the set instead.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::bundle::Bundle;
use super::{QemuBinary, QemuError};
use crate::arch::Arch;
use crate::fetch::catalog::{Entry, Kind};
use crate::fetch::debian::deb::{self, Link};
use crate::fetch::debian::resolve::ResolveError;
use crate::fetch::debian::{Archive, DebianError, Pin, Transport};
use crate::fetch::progress::{Progress, Set};

/// The Debian release ferry's QEMU comes from: its QEMU is the one ferry is tested with.
pub const SUITE: &str = "bookworm";

/// Where the packages come from and, optionally, exactly which.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Source {
    pub suite: String,
    pub arch: Arch,
    /// The QEMU package; the set is it, the architecture's UEFI firmware, and their closure.
    pub package: String,
    /// The exact set, from a catalog entry: no index is read, each `.deb` is checked against
    /// its pinned SHA-256.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pinned: Option<Vec<Pin>>,
}

impl Source {
    /// Debian 12's QEMU for `arch`.
    pub fn default_for(arch: Arch) -> Source {
        Source {
            suite: SUITE.to_string(),
            arch,
            package: super::debian_package(arch).to_string(),
            pinned: None,
        }
    }

    /// What a catalog `qemu` entry with `[debian]` names, and the archive's URL.
    pub fn from_catalog(entry: &Entry) -> Option<(Source, String)> {
        let debian = entry.debian.as_ref().filter(|_| entry.kind == Kind::Qemu)?;
        let source = Source {
            suite: debian.suite.clone(),
            arch: entry.arch,
            package: debian.package.clone(),
            pinned: (!entry.pins.is_empty()).then(|| entry.pins.clone()),
        };
        Some((source, debian.archive.clone()))
    }

    /// The packages asked for; the rest is their `Depends` closure. SeaBIOS and iPXE come
    /// through `qemu-system-x86`'s `Depends`; UEFI firmware is only recommended, so named here.
    pub fn roots(&self) -> Vec<&str> {
        let firmware = match self.arch {
            Arch::X86_64 => "ovmf",
            Arch::Aarch64 => "qemu-efi-aarch64",
        };
        vec![self.package.as_str(), firmware]
    }

    fn record_path(&self, cache_dir: &Path) -> PathBuf {
        base(cache_dir).join(format!("{}-{}.json", self.suite, self.arch.debian()))
    }

    fn unit_dir(&self, cache_dir: &Path, set: &[Pin]) -> PathBuf {
        let mut hasher = Sha256::new();
        for p in set {
            hasher.update(format!("{} {} {}\n", p.name, p.version, p.sha256));
        }
        let hash: String = hasher.finalize()[..8]
            .iter()
            .fold(String::new(), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            });
        base(cache_dir).join(format!("{}-{}-{hash}", self.suite, self.arch.debian()))
    }

    /// The set to install: pinned, else as resolved by an earlier run.
    fn known_set(&self, cache_dir: &Path) -> Option<Vec<Pin>> {
        if let Some(pinned) = &self.pinned {
            return Some(pinned.clone());
        }
        let text = std::fs::read(self.record_path(cache_dir)).ok()?;
        let record: Record = serde_json::from_slice(&text)
            .inspect_err(|e| tracing::warn!("ignoring the unreadable QEMU package record: {e}"))
            .ok()?;
        (record.suite == self.suite && record.arch == self.arch).then_some(record.packages)
    }
}

fn base(cache_dir: &Path) -> PathBuf {
    cache_dir.join(crate::fetch::cache::QEMU_DIR)
}

/// The resolved set as written in the cache.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    suite: String,
    arch: Arch,
    packages: Vec<Pin>,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("QEMU from Debian's archive: {0}")]
    Chain(#[from] DebianError),
    #[error("QEMU from Debian's archive: resolving {roots} in {index}: {source}")]
    Resolve {
        roots: String,
        index: String,
        source: Box<ResolveError>,
    },
    #[error("QEMU from Debian's archive: {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where QEMU will come from, said without touching the network (for `plan` and `doctor`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Origin {
    /// Unpacked by an earlier run.
    Cached { root: PathBuf, packages: usize },
    /// The set is known (pinned or recorded) but not unpacked: its `.deb`s will be downloaded.
    Known { packages: usize, bytes: u64 },
    /// The archive's indexes will be read to resolve the set first.
    Resolve { suite: String, arch: Arch },
}

impl Origin {
    pub fn of(source: &Source, cache_dir: &Path) -> Origin {
        match source.known_set(cache_dir) {
            Some(set) => {
                let root = source.unit_dir(cache_dir, &set);
                match Bundle::open(&root) {
                    Ok(_) => Origin::Cached {
                        root,
                        packages: set.len(),
                    },
                    Err(_) => Origin::Known {
                        packages: set.len(),
                        bytes: set.iter().map(|p| p.size).sum(),
                    },
                }
            }
            None => Origin::Resolve {
                suite: source.suite.clone(),
                arch: source.arch,
            },
        }
    }

    /// One line: where QEMU comes from.
    pub fn describe(&self) -> String {
        match self {
            Origin::Cached { root, packages } => format!(
                "Debian's QEMU ({packages} packages), unpacked in {}",
                root.display()
            ),
            Origin::Known { packages, bytes } => format!(
                "Debian's QEMU: {packages} packages ({} MB) to download, each checked against its recorded SHA-256",
                bytes.div_ceil(1_000_000)
            ),
            Origin::Resolve { suite, arch } => format!(
                "Debian's QEMU: {suite}'s {arch} packages, resolved and verified through the archive's signed InRelease"
            ),
        }
    }
}

/// A QEMU assembled from the archive, ready to run.
#[derive(Debug, Clone)]
pub struct QemuInstall {
    pub bundle: Bundle,
    pub qemu: QemuBinary,
    pub packages: Vec<Pin>,
    /// Whether this call downloaded it (false: the cache had it).
    pub downloaded: bool,
}

/// The QEMU of `source`: from the cache if an earlier run unpacked it (no request at all),
/// else resolved through `archive`'s signed chain (or taken from the pinned set), every `.deb`
/// downloaded and verified before any is unpacked, unpacked into the cache as one unit, and
/// its `--version` checked through the bundled loader. `say` hears each step, `progress` the
/// packages' bytes as one transfer (see [`Set`]).
pub fn ensure<T: Transport>(
    archive: &Archive<T>,
    source: &Source,
    cache_dir: &Path,
    say: &mut dyn FnMut(&str),
    progress: &mut dyn Progress,
) -> Result<QemuInstall, QemuError> {
    if let Some(done) = cached(source, cache_dir) {
        return done;
    }
    let set = match source.known_set(cache_dir) {
        Some(set) => set,
        None => resolve(archive, source, say)?,
    };
    let debs = base(cache_dir).join("debs");
    std::fs::create_dir_all(&debs).map_err(|e| io_err(&debs, e))?;
    let total = set.iter().map(|p| p.size).sum::<u64>();
    say(&format!(
        "downloading {} packages ({} MB) into {}",
        set.len(),
        total.div_ceil(1_000_000),
        debs.display()
    ));
    let mut files = Vec::new();
    let mut packages = Set::new(progress, total);
    for pin in &set {
        let file = archive.download_package(&pin.package(), &debs, &mut packages);
        files.push(file.map_err(ArchiveError::from)?);
        packages.file_done(pin.size);
    }
    progress.finish();
    let dest = source.unit_dir(cache_dir, &set);
    say(&format!("unpacking QEMU into {}", dest.display()));
    let arch = source.arch;
    let bundle = Bundle::assemble(&dest, |temp| -> Result<(), QemuError> {
        let mut links = Vec::new();
        for file in &files {
            links.extend(
                deb::unpack_mapped(file, |path| place(arch, path).map(|p| temp.join(p)))
                    .map_err(DebianError::from)
                    .map_err(ArchiveError::from)?,
            );
        }
        make_links(temp, arch, &links)?;
        // Run it before it gets its final name: a unit that cannot start is never reused.
        Bundle::open(temp)?.qemu_binary()?;
        Ok(())
    })?;
    if source.pinned.is_none() {
        write_record(source, cache_dir, &set)?;
    }
    for file in &files {
        let _ = std::fs::remove_file(file);
    }
    finish(bundle, set, true)
}

/// The QEMU of `source` as an earlier run unpacked it, if it did: no request.
pub fn cached(source: &Source, cache_dir: &Path) -> Option<Result<QemuInstall, QemuError>> {
    let set = source.known_set(cache_dir)?;
    let dir = source.unit_dir(cache_dir, &set);
    let bundle = Bundle::open(&dir).ok()?;
    // In use: `ferry cache prune` keeps what was used last.
    crate::fetch::cache::touch(&dir);
    Some(finish(bundle, set, false))
}

fn finish(bundle: Bundle, packages: Vec<Pin>, downloaded: bool) -> Result<QemuInstall, QemuError> {
    let mut qemu = bundle.qemu_binary()?;
    qemu.source = format!(
        "Debian's QEMU ({} packages) in {}",
        packages.len(),
        bundle.root.display()
    );
    Ok(QemuInstall {
        bundle,
        qemu,
        packages,
        downloaded,
    })
}

fn io_err(path: &Path, source: std::io::Error) -> ArchiveError {
    ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The set through the chain: `InRelease` verified, `Packages` checked against it, closure.
fn resolve<T: Transport>(
    archive: &Archive<T>,
    source: &Source,
    say: &mut dyn FnMut(&str),
) -> Result<Vec<Pin>, ArchiveError> {
    say(&format!(
        "resolving QEMU's packages in Debian {} ({})",
        source.suite,
        source.arch.debian()
    ));
    let suite = archive.suite(&source.suite)?;
    let index = archive.index_of(&suite, "main", source.arch.debian())?;
    let set = index
        .closure(&source.roots())
        .map_err(|e| ArchiveError::Resolve {
            roots: source.roots().join(", "),
            index: format!(
                "dists/{}/main/binary-{}",
                source.suite,
                source.arch.debian()
            ),
            source: Box::new(e),
        })?;
    Ok(set.iter().map(Pin::from).collect())
}

fn write_record(source: &Source, cache_dir: &Path, set: &[Pin]) -> Result<(), ArchiveError> {
    let path = source.record_path(cache_dir);
    let record = Record {
        suite: source.suite.clone(),
        arch: source.arch,
        packages: set.to_vec(),
    };
    let text = serde_json::to_vec_pretty(&record).expect("a record serializes");
    let partial = path.with_extension("json.partial");
    std::fs::write(&partial, text)
        .and_then(|()| std::fs::rename(&partial, &path))
        .map_err(|e| io_err(&path, e))
}

/// Where a file of a package goes in the bundle layout (relative), if QEMU needs it: the
/// binary, every shared library of the architecture's library directories, QEMU's modules,
/// and the firmware (SeaBIOS, iPXE ROMs, OVMF/AAVMF, QEMU's own ROMs) in `share/qemu`.
fn place(arch: Arch, path: &str) -> Option<PathBuf> {
    if path == format!("usr/bin/{}", arch.qemu_system()) {
        return Some(PathBuf::from(super::bundle::binary(arch)));
    }
    for dir in ["lib", "usr/lib"] {
        let Some(rest) = path.strip_prefix(&format!("{dir}/{}/", arch.triplet())) else {
            continue;
        };
        if let Some(module) = rest.strip_prefix("qemu/") {
            return (!module.contains('/') && module.ends_with(".so"))
                .then(|| Path::new("lib/qemu").join(module));
        }
        return (!rest.contains('/') && rest.contains(".so")).then(|| Path::new("lib").join(rest));
    }
    const FIRMWARE: &[&str] = &[
        "usr/share/qemu/",
        "usr/share/seabios/",
        "usr/lib/ipxe/qemu/",
        "usr/share/OVMF/",
        "usr/share/AAVMF/",
    ];
    FIRMWARE.iter().find_map(|dir| {
        let rest = path.strip_prefix(dir)?;
        (!rest.is_empty()).then(|| Path::new("share/qemu").join(rest))
    })
}

/// Makes the packages' symbolic links whose targets landed in the bundle, as hard links (the
/// layout is flatter than the packages', so relative link texts would not fit). A link whose
/// target is a link too waits for it; a link to something left out is dropped.
fn make_links(root: &Path, arch: Arch, links: &[Link]) -> Result<(), ArchiveError> {
    let mut pending: Vec<&Link> = links.iter().filter(|l| !l.dest.exists()).collect();
    loop {
        let before = pending.len();
        let mut waiting = Vec::new();
        for link in pending {
            let target = place(arch, &link.target).map(|p| root.join(p));
            match target {
                Some(target) if target.is_file() => {
                    if !link.dest.exists() {
                        if let Some(dir) = link.dest.parent() {
                            std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
                        }
                        std::fs::hard_link(&target, &link.dest)
                            .map_err(|e| io_err(&link.dest, e))?;
                    }
                }
                Some(_) => waiting.push(link),
                None => tracing::debug!(?link, "link to a file left out of the bundle"),
            }
        }
        if waiting.is_empty() || waiting.len() == before {
            for link in waiting {
                tracing::debug!(?link, "link to a file no package provides");
            }
            return Ok(());
        }
        pending = waiting;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let x86 = |p| place(Arch::X86_64, p).map(|p| p.display().to_string());
        assert_eq!(
            x86("usr/bin/qemu-system-x86_64").unwrap(),
            "bin/qemu-system-x86_64"
        );
        assert_eq!(x86("usr/bin/qemu-system-i386"), None);
        assert_eq!(
            x86("lib/x86_64-linux-gnu/libc.so.6").unwrap(),
            "lib/libc.so.6"
        );
        assert_eq!(
            x86("lib/x86_64-linux-gnu/ld-linux-x86-64.so.2").unwrap(),
            "lib/ld-linux-x86-64.so.2"
        );
        assert_eq!(x86("lib64/ld-linux-x86-64.so.2"), None);
        assert_eq!(
            x86("usr/lib/x86_64-linux-gnu/libslirp.so.0.4.0").unwrap(),
            "lib/libslirp.so.0.4.0"
        );
        assert_eq!(x86("usr/lib/x86_64-linux-gnu/gconv/UTF-16.so"), None);
        assert_eq!(
            x86("usr/lib/x86_64-linux-gnu/qemu/accel-tcg-x86_64.so").unwrap(),
            "lib/qemu/accel-tcg-x86_64.so"
        );
        assert_eq!(x86("usr/lib/aarch64-linux-gnu/libc.so.6"), None);
        assert_eq!(
            x86("usr/share/seabios/bios-256k.bin").unwrap(),
            "share/qemu/bios-256k.bin"
        );
        assert_eq!(
            x86("usr/lib/ipxe/qemu/efi-virtio.rom").unwrap(),
            "share/qemu/efi-virtio.rom"
        );
        assert_eq!(
            x86("usr/share/OVMF/OVMF_CODE_4M.fd").unwrap(),
            "share/qemu/OVMF_CODE_4M.fd"
        );
        assert_eq!(x86("usr/share/doc/qemu/copyright"), None);
        let arm = |p| place(Arch::Aarch64, p).map(|p| p.display().to_string());
        assert_eq!(
            arm("usr/bin/qemu-system-aarch64").unwrap(),
            "bin/qemu-system-aarch64"
        );
        assert_eq!(
            arm("lib/aarch64-linux-gnu/ld-linux-aarch64.so.1").unwrap(),
            "lib/ld-linux-aarch64.so.1"
        );
        assert_eq!(
            arm("usr/share/AAVMF/AAVMF_CODE.fd").unwrap(),
            "share/qemu/AAVMF_CODE.fd"
        );
    }

    #[test]
    fn links_become_hard_links_in_dependency_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("lib")).unwrap();
        std::fs::create_dir_all(root.join("share/qemu")).unwrap();
        std::fs::write(root.join("lib/libz.so.1.2.13"), b"z").unwrap();
        std::fs::write(root.join("share/qemu/bios-256k.bin"), b"real").unwrap();
        let link = |dest: &str, target: &str| Link {
            dest: root.join(dest),
            target: target.to_string(),
        };
        let links = [
            // a link to a link, listed first
            link("lib/libz.so", "lib/x86_64-linux-gnu/libz.so.1"),
            link("lib/libz.so.1", "lib/x86_64-linux-gnu/libz.so.1.2.13"),
            // the real file already holds that name: left alone
            link(
                "share/qemu/bios-256k.bin",
                "usr/share/seabios/bios-256k.bin",
            ),
            // into a directory the bundle leaves out
            link("share/qemu/x.rom", "usr/share/doc/x.rom"),
            // to nothing
            link(
                "lib/libgone.so.1",
                "usr/lib/x86_64-linux-gnu/libgone.so.1.0",
            ),
        ];
        make_links(root, Arch::X86_64, &links).unwrap();
        assert_eq!(std::fs::read(root.join("lib/libz.so")).unwrap(), b"z");
        assert_eq!(std::fs::read(root.join("lib/libz.so.1")).unwrap(), b"z");
        assert_eq!(
            std::fs::read(root.join("share/qemu/bios-256k.bin")).unwrap(),
            b"real"
        );
        assert!(!root.join("share/qemu/x.rom").exists());
        assert!(!root.join("lib/libgone.so.1").exists());
    }

    #[test]
    fn origin_without_network() {
        let dir = tempfile::tempdir().unwrap();
        let mut source = Source::default_for(Arch::X86_64);
        let origin = Origin::of(&source, dir.path());
        assert_eq!(
            origin,
            Origin::Resolve {
                suite: "bookworm".into(),
                arch: Arch::X86_64
            }
        );
        assert!(
            origin.describe().contains("bookworm's x86_64 packages"),
            "{}",
            origin.describe()
        );
        source.pinned = Some(vec![Pin {
            name: "qemu-system-x86".into(),
            version: "1".into(),
            filename: "pool/q.deb".into(),
            size: 12_500_000,
            sha256: "0".repeat(64),
        }]);
        assert_eq!(
            Origin::of(&source, dir.path()).describe(),
            "Debian's QEMU: 1 packages (13 MB) to download, each checked against its recorded SHA-256"
        );
    }

    #[test]
    fn a_catalog_entry_names_the_archive_and_may_pin_the_set() {
        use crate::fetch::catalog::Catalog;
        let catalog = Catalog::load(None).unwrap();
        let (source, mirror) =
            Source::from_catalog(catalog.qemu_archive(Arch::Aarch64).unwrap()).unwrap();
        assert_eq!(source, Source::default_for(Arch::Aarch64));
        assert_eq!(source.roots(), ["qemu-system-arm", "qemu-efi-aarch64"]);
        assert_eq!(mirror, "https://deb.debian.org/debian");

        let dir = tempfile::tempdir().unwrap();
        let entry = |sha256: &str| {
            format!(
                "name = \"q\"\ndescription = \"d\"\nos = \"debian\"\nversion = \"12\"\narch = \"x86_64\"\n\
                 kind = \"qemu\"\nurls = [\"http://m/debian\"]\n\
                 [debian]\narchive = \"http://m/debian\"\nsuite = \"bookworm\"\narch = \"amd64\"\npackage = \"qemu-system-x86\"\n\
                 [[pin]]\nname = \"seabios\"\nversion = \"1.16.2-1\"\nfilename = \"pool/main/s/seabios/seabios_1.16.2-1_all.deb\"\n\
                 size = 170000\nsha256 = \"{sha256}\"\n"
            )
        };
        std::fs::write(dir.path().join("q.toml"), entry(&"ab".repeat(32))).unwrap();
        let catalog = Catalog::load(Some(dir.path())).unwrap();
        let (source, mirror) =
            Source::from_catalog(catalog.qemu_archive(Arch::X86_64).unwrap()).unwrap();
        assert_eq!(mirror, "http://m/debian");
        let pinned = source.pinned.unwrap();
        assert_eq!(pinned.len(), 1);
        assert_eq!(pinned[0].name, "seabios");
        assert!(catalog.qemu_archive(Arch::Aarch64).is_none());

        std::fs::write(dir.path().join("q.toml"), entry("12")).unwrap();
        let e = Catalog::load(Some(dir.path())).unwrap_err().to_string();
        assert!(
            e.contains("q.toml:18:")
                && e.ends_with("`pin` seabios: `sha256` must be 64 hexadecimal digits"),
            "{e}"
        );
    }
}
