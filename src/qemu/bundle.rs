//! ferry's portable QEMU: a tarball built by `scripts/build-qemu-bundle.sh` from Debian's
//! packages, or the same layout assembled from Debian's archive ([`super::archive`]), holding
//! the binary, its whole shared-library closure down to glibc's loader, the TCG module and the
//! firmware. Unpacked into the cache, it runs on any Linux of its architecture as
//! `QEMU_MODULE_DIR=B/lib/qemu B/lib/ld-linux-x86-64.so.2 --library-path B/lib
//! B/bin/qemu-system-x86_64 -L B/share/qemu ...` (the aarch64 loader and binary on arm64).

use std::fs::File;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};

use super::{QemuBinary, QemuError, checked_version};
use crate::arch::Arch;

/// Files without which a bundle of `arch` cannot run a guest.
fn required(arch: Arch) -> Vec<String> {
    let mut files = vec![
        binary(arch),
        loader(arch),
        "lib/libc.so.6".to_string(),
        format!("lib/qemu/accel-tcg-{}.so", arch.name()),
    ];
    let firmware: &[&str] = match arch {
        Arch::X86_64 => &["bios-256k.bin", "linuxboot_dma.bin"],
        Arch::Aarch64 => &["AAVMF_CODE.fd", "AAVMF_VARS.fd"],
    };
    files.extend(firmware.iter().map(|f| format!("share/qemu/{f}")));
    files
}

/// glibc's dynamic loader, run directly so the bundle never depends on the host's.
pub fn loader(arch: Arch) -> String {
    format!("lib/{}", arch.loader())
}

pub fn binary(arch: Arch) -> String {
    format!("bin/{}", arch.qemu_system())
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: cannot unpack the QEMU bundle: {source}", tarball.display())]
    Unpack { tarball: PathBuf, source: io::Error },
    #[error("{}: not a QEMU bundle: {missing} is missing", path.display())]
    Incomplete { path: PathBuf, missing: String },
}

/// An unpacked bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub root: PathBuf,
    /// The architecture its QEMU runs on (and emulates).
    pub arch: Arch,
}

impl Bundle {
    /// Unpacks a bundle tarball (`.tar.xz`, already verified by its download: `sha256_hex` is
    /// its digest) into `cache_dir/qemu-HASH/`, HASH being the start of the digest, and
    /// returns it.
    /// An existing complete unpacking of the same tarball is reused. The unpacking happens in
    /// a temporary directory beside the destination and is renamed into place only when
    /// complete, so an interrupted unpack never leaves a half bundle under the final name.
    pub fn unpack(
        tarball: &Path,
        sha256_hex: &str,
        cache_dir: &Path,
    ) -> Result<Bundle, BundleError> {
        let dest = Bundle::dir_for(cache_dir, sha256_hex);
        Bundle::assemble(&dest, |temp| {
            let file = File::open(tarball).map_err(|source| BundleError::Io {
                path: tarball.to_path_buf(),
                source,
            })?;
            let xz = lzma_rust2::XzReader::new(BufReader::with_capacity(1 << 16, file), true);
            let mut archive = tar::Archive::new(xz);
            archive.set_preserve_permissions(true);
            archive.unpack(temp).map_err(|source| BundleError::Unpack {
                tarball: tarball.to_path_buf(),
                source,
            })
        })
        .map_err(|e| match e {
            BundleError::Incomplete { missing, .. } => BundleError::Incomplete {
                path: tarball.to_path_buf(),
                missing,
            },
            e => e,
        })
    }

    /// The bundle at `dest`, made by `fill` (which writes the bundle's files into the
    /// directory it is given) unless `dest` already holds a complete one. `fill` works in a
    /// temporary directory beside `dest`, renamed into place only once complete, so an
    /// interrupted or failed fill never leaves a half bundle under the final name.
    pub(crate) fn assemble<E: From<BundleError>>(
        dest: &Path,
        fill: impl FnOnce(&Path) -> Result<(), E>,
    ) -> Result<Bundle, E> {
        if let Ok(bundle) = Bundle::open(dest) {
            return Ok(bundle);
        }
        let parent = dest.parent().unwrap_or(Path::new("."));
        let io_err = |path: &Path, source| BundleError::Io {
            path: path.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(parent).map_err(|e| io_err(parent, e))?;
        let name = dest.file_name().unwrap_or_default().to_string_lossy();
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{name}-"))
            .suffix(".partial")
            .tempdir_in(parent)
            .map_err(|e| io_err(parent, e))?;
        fill(temp.path())?;
        Bundle::open(temp.path())?;

        let unpacked = temp.keep();
        match std::fs::rename(&unpacked, dest) {
            Ok(()) => Ok(Bundle::open(dest)?),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&unpacked);
                // Another ferry made the same bundle first: use theirs.
                Ok(Bundle::open(dest).map_err(|_| io_err(dest, e))?)
            }
        }
    }

    /// Where the tarball whose SHA-256 is `sha256_hex` is unpacked.
    fn dir_for(cache_dir: &Path, sha256_hex: &str) -> PathBuf {
        cache_dir.join(format!("qemu-{}", &sha256_hex[..16]))
    }

    /// The unpacked bundle of the tarball whose SHA-256 is `sha256_hex`, if the cache has it
    /// (tarballs are unpacked only once verified).
    pub fn cached(cache_dir: &Path, sha256_hex: &str) -> Option<Bundle> {
        Bundle::open(&Bundle::dir_for(cache_dir, sha256_hex)).ok()
    }

    /// A bundle already unpacked at `root`, of the architecture whose QEMU binary it holds.
    pub fn open(root: &Path) -> Result<Bundle, BundleError> {
        let arch = Arch::ALL
            .into_iter()
            .find(|a| root.join(binary(*a)).is_file())
            .unwrap_or_else(Arch::host);
        for file in required(arch) {
            if !root.join(&file).is_file() {
                return Err(BundleError::Incomplete {
                    path: root.to_path_buf(),
                    missing: file,
                });
            }
        }
        Ok(Bundle {
            root: root.to_path_buf(),
            arch,
        })
    }

    /// The firmware directory (QEMU's `-L`), which also holds OVMF.
    pub fn share_dir(&self) -> PathBuf {
        self.root.join("share/qemu")
    }

    /// How to run this QEMU: its own loader as the program, then `--library-path B/lib
    /// B/bin/qemu-system-ARCH -L B/share/qemu` ahead of ferry's arguments, and
    /// `QEMU_MODULE_DIR` (without it TCG is missing: "could not load module for type
    /// 'tcg-accel-ops'"). Checks its version (see [`checked_version`]).
    pub fn qemu_binary(&self) -> Result<QemuBinary, QemuError> {
        let program = self.root.join(loader(self.arch));
        let unusable = |reason: String| QemuError::Unusable {
            path: program.clone(),
            reason,
        };
        let text = |p: PathBuf| {
            p.to_str()
                .map(str::to_string)
                .ok_or_else(|| unusable("path is not UTF-8".to_string()))
        };
        let pre_args = vec![
            "--library-path".to_string(),
            text(self.root.join("lib"))?,
            text(self.root.join(binary(self.arch)))?,
            "-L".to_string(),
            text(self.share_dir())?,
        ];
        let env = vec![(
            "QEMU_MODULE_DIR".to_string(),
            text(self.root.join("lib/qemu"))?,
        )];
        let version = checked_version(&program, &pre_args, &env)?;
        Ok(QemuBinary {
            program,
            pre_args,
            env,
            version,
            source: format!("portable bundle {}", self.root.display()),
            firmware_dir: Some(self.share_dir()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn sha256_hex(path: &Path) -> String {
        crate::fetch::hash_file(path).unwrap().0.to_hex()
    }

    /// A tar.xz with `files` (path, contents).
    fn tar_xz(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, contents) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(contents.len() as u64);
            header.set_mode(0o755);
            header.set_cksum();
            builder.append_data(&mut header, path, *contents).unwrap();
        }
        let tar = builder.into_inner().unwrap();
        let mut w =
            lzma_rust2::XzWriter::new(Vec::new(), lzma_rust2::XzOptions::with_preset(1)).unwrap();
        w.write_all(&tar).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn unpacks_atomically_and_reuses_the_result() {
        let dir = tempfile::tempdir().unwrap();
        let required = required(Arch::X86_64);
        let files: Vec<(&str, &[u8])> = required
            .iter()
            .map(|f| (f.as_str(), b"x".as_slice()))
            .collect();
        let tarball = dir.path().join("qemu.tar.xz");
        std::fs::write(&tarball, tar_xz(&files)).unwrap();
        let cache = dir.path().join("cache");
        let bundle = Bundle::unpack(&tarball, &sha256_hex(&tarball), &cache).unwrap();
        assert!(
            bundle
                .root
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("qemu-")
        );
        assert_eq!(bundle.arch, Arch::X86_64);
        assert_eq!(
            std::fs::read(bundle.root.join(binary(Arch::X86_64))).unwrap(),
            b"x"
        );
        let entries: Vec<_> = std::fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(entries.len(), 1, "no temporary directory left: {entries:?}");
        // unpacking again reuses it (a marker file survives)
        std::fs::write(bundle.root.join("marker"), b"").unwrap();
        let again = Bundle::unpack(&tarball, &sha256_hex(&tarball), &cache).unwrap();
        assert_eq!(again.root, bundle.root);
        assert!(again.root.join("marker").exists());
    }

    #[test]
    fn incomplete_or_corrupt_bundles_are_refused_and_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let tarball = dir.path().join("qemu.tar.xz");
        std::fs::write(&tarball, tar_xz(&[(&binary(Arch::X86_64), b"x")])).unwrap();
        let e = Bundle::unpack(&tarball, &sha256_hex(&tarball), &cache).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: not a QEMU bundle: lib/ld-linux-x86-64.so.2 is missing",
                tarball.display()
            )
        );
        std::fs::write(&tarball, b"not xz").unwrap();
        let e = Bundle::unpack(&tarball, &sha256_hex(&tarball), &cache).unwrap_err();
        assert!(
            e.to_string().starts_with(&format!(
                "{}: cannot unpack the QEMU bundle: ",
                tarball.display()
            )),
            "{e}"
        );
        assert_eq!(
            std::fs::read_dir(&cache).unwrap().count(),
            0,
            "temporary directories were left behind"
        );
    }
}
