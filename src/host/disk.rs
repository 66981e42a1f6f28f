//! The target disk: what it is, and whether it is safe to hand to an installer.

use std::fs::OpenOptions;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("{}: no such disk; name a block device, or pass --size (e.g. --size 8G) to create a disk image file", path.display())]
    Missing { path: PathBuf },
    #[error("{}: not a block device or a regular file", path.display())]
    NotADisk { path: PathBuf },
    #[error("{} is mounted at {mountpoint}; unmount it first", path.display())]
    Mounted { path: PathBuf, mountpoint: String },
    #[error("invalid size `{0}`: expected e.g. 8G, 512M, 2T")]
    BadSize(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} was not confirmed; nothing was written (pass --yes to skip the question)", path.display())]
    NotConfirmed { path: PathBuf },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// A disk image file (the demonstration and test path).
    File,
    BlockDevice,
}

/// The disk the installer will write to.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub path: PathBuf,
    pub kind: TargetKind,
    pub size_bytes: u64,
    /// A disk image that does not exist yet and will be created with this size.
    pub create: bool,
}

impl Target {
    /// Looks at the disk without changing anything. A missing path is a disk image to be
    /// created when `size` is given.
    pub fn inspect(path: &Path, size: Option<u64>) -> Result<Target, DiskError> {
        let io = |source| DiskError::Io {
            path: path.to_path_buf(),
            source,
        };
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let size_bytes = size.ok_or_else(|| DiskError::Missing {
                    path: path.to_path_buf(),
                })?;
                return Ok(Target {
                    path: path.to_path_buf(),
                    kind: TargetKind::File,
                    size_bytes,
                    create: true,
                });
            }
            Err(e) => return Err(io(e)),
        };
        let kind = if meta.file_type().is_block_device() {
            TargetKind::BlockDevice
        } else if meta.is_file() {
            TargetKind::File
        } else {
            return Err(DiskError::NotADisk {
                path: path.to_path_buf(),
            });
        };
        if let Some(mountpoint) = mounted_at(path) {
            return Err(DiskError::Mounted {
                path: path.to_path_buf(),
                mountpoint,
            });
        }
        let size_bytes = match kind {
            TargetKind::File => meta.len(),
            TargetKind::BlockDevice => block_device_size(path).map_err(io)?,
        };
        Ok(Target {
            path: path.to_path_buf(),
            kind,
            size_bytes,
            create: false,
        })
    }

    /// Creates the disk image if it is to be created (sparse).
    pub fn create_if_needed(&self) -> Result<(), DiskError> {
        if !self.create {
            return Ok(());
        }
        let io = |source| DiskError::Io {
            path: self.path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&self.path)
            .map_err(io)?;
        file.set_len(self.size_bytes).map_err(io)
    }

    /// Writes what the guest wrote through to stable storage.
    pub fn flush(&self) -> Result<(), DiskError> {
        let io = |source| DiskError::Io {
            path: self.path.clone(),
            source,
        };
        OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(io)?
            .sync_all()
            .map_err(io)
    }

    pub fn describe(&self) -> String {
        let what = match (self.kind, self.create) {
            (TargetKind::File, true) => "new disk image",
            (TargetKind::File, false) => "disk image",
            (TargetKind::BlockDevice, _) => "block device",
        };
        format!(
            "{} ({what}, {})",
            self.path.display(),
            human_bytes(self.size_bytes)
        )
    }
}

/// Where `path` (or a partition of it) is mounted, from /proc/self/mounts.
fn mounted_at(path: &Path) -> Option<String> {
    let canonical = std::fs::canonicalize(path).ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    let device = canonical.to_string_lossy().into_owned();
    mounts.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (source, target) = (fields.next()?, fields.next()?);
        let source_path = std::fs::canonicalize(source).ok()?;
        let s = source_path.to_string_lossy();
        let is_partition = s.strip_prefix(device.as_str()).is_some_and(|rest| {
            let rest = rest.strip_prefix('p').unwrap_or(rest);
            !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit())
        });
        (s == device.as_str() || is_partition).then(|| format!("{target} (as {source})"))
    })
}

fn block_device_size(path: &Path) -> std::io::Result<u64> {
    use std::io::{Seek, SeekFrom};
    std::fs::File::open(path)?.seek(SeekFrom::End(0))
}

/// `8G`, `512M`, `2T`, or plain bytes.
pub fn parse_size(text: &str) -> Result<u64, DiskError> {
    let bad = || DiskError::BadSize(text.to_string());
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let n: u64 = t[..split].parse().map_err(|_| bad())?;
    let shift = match t[split..].to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(bad()),
    };
    n.checked_shl(shift)
        .filter(|&b| b > 0 && b >> shift == n)
        .ok_or_else(bad)
}

pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("2G").unwrap(), 2 << 30);
        assert_eq!(parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("2X").is_err());
        assert!(parse_size("0").is_err());
        assert_eq!(human_bytes(2 << 30), "2.0 GiB");
    }

    #[test]
    fn image_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.img");
        let e = Target::inspect(&path, None).unwrap_err();
        assert!(
            e.to_string()
                .contains("no such disk; name a block device, or pass --size")
        );
        let t = Target::inspect(&path, Some(1 << 20)).unwrap();
        assert!(t.create && !path.exists(), "inspecting creates nothing");
        t.create_if_needed().unwrap();
        let t = Target::inspect(&path, Some(5)).unwrap();
        assert_eq!(
            (t.kind, t.size_bytes, t.create),
            (TargetKind::File, 1 << 20, false)
        );
        let e = Target::inspect(dir.path(), None).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("not a block device or a regular file")
        );
    }
}
