//! The target disk: what it is, and whether it is safe to hand to an installer.

use std::fs::OpenOptions;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::Root;
use super::disks::{BlockDevices, DiskInfo, HolderKind, human_list};

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("{}: no such disk; name a block device, or pass --size (e.g. --size 8G) to create a disk image file", path.display())]
    Missing { path: PathBuf },
    #[error("{}: not a block device or a regular file", path.display())]
    NotADisk { path: PathBuf },
    #[error("{} is a partition of /dev/{disk}; name the whole disk", path.display())]
    Partition { path: PathBuf, disk: String },
    #[error("{} holds the running system's root file system; ferry cannot install onto the disk it runs from (boot the rescue system first)", path.display())]
    BacksRoot { path: PathBuf },
    #[error("{} is in use: mounted at {mounts}; unmount it first", path.display())]
    Mounted { path: PathBuf, mounts: String },
    #[error("{} is in use: active swap on {devices}; run swapoff first", path.display())]
    Swap { path: PathBuf, devices: String },
    #[error("{} is in use: {member} is a member of the {array}; stop the array first (mdadm --stop)", path.display())]
    RaidMember {
        path: PathBuf,
        member: String,
        array: String,
    },
    #[error("{} is in use: {member} holds {holder}; deactivate it first (vgchange -an, cryptsetup close, dmsetup remove)", path.display())]
    DeviceMapper {
        path: PathBuf,
        member: String,
        holder: String,
    },
    #[error("invalid size `{0}`: expected e.g. 8G, 512M, 2T")]
    BadSize(String),
    #[error("--size {}: too small for a disk image; at least {} (no installer fits in less)", human_bytes(*size), human_bytes(MIN_IMAGE_BYTES))]
    SizeTooSmall { size: u64 },
    #[error("{} is a disk image of only {}, smaller than the {} an install needs (an empty file may be left from a failed creation); delete it, then pass --size", path.display(), human_bytes(*size), human_bytes(MIN_IMAGE_BYTES))]
    ImageTooSmall { path: PathBuf, size: u64 },
    #[error("{} is an empty block device (0 bytes; an unattached loop device?); name a disk", path.display())]
    EmptyDevice { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} was not confirmed; nothing was written (pass --yes to skip the question)", path.display())]
    NotConfirmed { path: PathBuf },
    #[error("{} must be confirmed by typing its name, but stdin is not a terminal to ask on; nothing was written (pass --yes to confirm without a terminal)", path.display())]
    NoTerminal { path: PathBuf },
}

impl DiskError {
    /// Each refusal has its own exit code (documented in README.md, listed by `ferry --help`).
    pub fn exit_code(&self) -> i32 {
        match self {
            DiskError::Missing { .. } => 20,
            DiskError::NotADisk { .. }
            | DiskError::Partition { .. }
            | DiskError::ImageTooSmall { .. }
            | DiskError::EmptyDevice { .. } => 21,
            DiskError::Mounted { .. } => 22,
            DiskError::Swap { .. } => 23,
            DiskError::RaidMember { .. } => 24,
            DiskError::DeviceMapper { .. } => 25,
            DiskError::BacksRoot { .. } => 26,
            DiskError::NotConfirmed { .. } => 27,
            DiskError::NoTerminal { .. } => 29,
            DiskError::BadSize(_) | DiskError::SizeTooSmall { .. } => 2,
            DiskError::Io { .. } => 3,
        }
    }
}

/// The smallest disk image ferry creates or installs onto. Debian's, Ubuntu's and Alpine's
/// installers each need more than this for a minimal system, so anything smaller is a typo
/// (`--size 512` meant 512M) or a leftover, not a disk to install onto.
pub const MIN_IMAGE_BYTES: u64 = 1 << 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// A disk image file (the demonstration and test path).
    File,
    BlockDevice,
}

/// The disk the installer will write to.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Target {
    pub path: PathBuf,
    pub kind: TargetKind,
    pub size_bytes: u64,
    /// A disk image that does not exist yet and will be created with this size.
    pub create: bool,
    /// What sysfs says about a block device (model, serial, bus, partitions).
    pub info: Option<DiskInfo>,
}

impl Target {
    /// Looks at the disk without changing anything, and refuses one that is in use. A missing
    /// path is a disk image to be created when `size` is given.
    pub fn inspect(path: &Path, size: Option<u64>) -> Result<Target, DiskError> {
        Target::inspect_at(&Root::system(), path, size)
    }

    /// Like [`Target::inspect`], with the block layer's facts read under `root`. Under a
    /// recorded tree, a `/dev/...` path is looked up in the tree's sysfs (nothing is opened).
    pub fn inspect_at(root: &Root, path: &Path, size: Option<u64>) -> Result<Target, DiskError> {
        let io = |source| DiskError::Io {
            path: path.to_path_buf(),
            source,
        };
        if !root.is_system() && path.starts_with("/dev") {
            let devices = BlockDevices::read(root);
            let name = devices
                .kernel_name(&path.to_string_lossy())
                .ok_or_else(|| DiskError::Missing {
                    path: path.to_path_buf(),
                })?;
            let info = whole_disk_info(&devices, path, &name)?;
            check_unused(path, &info)?;
            return Ok(Target {
                path: path.to_path_buf(),
                kind: TargetKind::BlockDevice,
                size_bytes: info.size_bytes,
                create: false,
                info: Some(info),
            });
        }
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let size_bytes = size.ok_or_else(|| DiskError::Missing {
                    path: path.to_path_buf(),
                })?;
                if size_bytes < MIN_IMAGE_BYTES {
                    return Err(DiskError::SizeTooSmall { size: size_bytes });
                }
                return Ok(Target {
                    path: path.to_path_buf(),
                    kind: TargetKind::File,
                    size_bytes,
                    create: true,
                    info: None,
                });
            }
            Err(e) => return Err(io(e)),
        };
        if meta.file_type().is_block_device() {
            let devices = BlockDevices::read(root);
            // By device number, so a symlink or a device node outside /dev works too.
            let name = devices.name_of_dev(meta.rdev()).ok_or_else(|| {
                io(std::io::Error::other(
                    "block device not found in /sys/dev/block",
                ))
            })?;
            let info = whole_disk_info(&devices, path, &name)?;
            check_unused(path, &info)?;
            let size_bytes = block_device_size(path).map_err(io)?;
            if size_bytes == 0 {
                return Err(DiskError::EmptyDevice {
                    path: path.to_path_buf(),
                });
            }
            return Ok(Target {
                path: path.to_path_buf(),
                kind: TargetKind::BlockDevice,
                size_bytes,
                create: false,
                info: Some(info),
            });
        }
        if !meta.is_file() {
            return Err(DiskError::NotADisk {
                path: path.to_path_buf(),
            });
        }
        let canonical = std::fs::canonicalize(path).map_err(io)?;
        // Kernel interfaces (`/proc/self/mem`) look like files but are no disk.
        if canonical.starts_with("/proc") || canonical.starts_with("/sys") {
            return Err(DiskError::NotADisk {
                path: path.to_path_buf(),
            });
        }
        if let Some(swaps) = root.read("/proc/swaps")
            && swap_files(&swaps).any(|f| Path::new(f) == canonical)
        {
            return Err(DiskError::Swap {
                path: path.to_path_buf(),
                devices: canonical.display().to_string(),
            });
        }
        if meta.len() < MIN_IMAGE_BYTES {
            return Err(DiskError::ImageTooSmall {
                path: path.to_path_buf(),
                size: meta.len(),
            });
        }
        // An image file attached to a loop device that is in use is in use too.
        let devices = BlockDevices::read(root);
        for loop_name in devices.loops_backed_by(&canonical) {
            if let Some(info) = devices.info(&loop_name) {
                check_unused(path, &info)?;
            }
        }
        Ok(Target {
            path: path.to_path_buf(),
            kind: TargetKind::File,
            size_bytes: meta.len(),
            create: false,
            info: None,
        })
    }

    /// Creates the disk image if it is to be created: sparse, mode 0600 (it will hold the
    /// installed system), under a temporary name in the same directory, renamed into place
    /// only once sized, so a failure (`--size 999T`) leaves nothing behind.
    pub fn create_if_needed(&self) -> Result<(), DiskError> {
        if !self.create {
            return Ok(());
        }
        let io = |source| DiskError::Io {
            path: self.path.clone(),
            source,
        };
        let dir = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let name = self.path.file_name().unwrap_or_default().to_string_lossy();
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".creating")
            .permissions(std::fs::Permissions::from_mode(0o600))
            .tempfile_in(dir)
            .map_err(io)?;
        temp.as_file().set_len(self.size_bytes).map_err(io)?;
        // No clobbering: a file that appeared at the path since `inspect` is not replaced.
        temp.persist_noclobber(&self.path)
            .map_err(|e| io(e.error))?;
        Ok(())
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

    /// Model, serial, size, stable names and current partitions, for the confirmation.
    pub fn details(&self) -> String {
        let Some(info) = &self.info else {
            return format!("  {}\n", self.describe());
        };
        let mut out = format!(
            "  {}  {}  {:?} disk, model {}, serial {}\n",
            info.path,
            human_bytes(info.size_bytes),
            info.bus,
            info.model.as_deref().unwrap_or("-"),
            info.serial.as_deref().unwrap_or("-")
        );
        for id in &info.by_id {
            out.push_str(&format!("  /dev/disk/by-id/{id}\n"));
        }
        if info.partitions.is_empty() {
            out.push_str("  no partitions\n");
        }
        for p in &info.partitions {
            out.push_str(&format!(
                "  partition {:<14} {}\n",
                p.name,
                human_bytes(p.size_bytes)
            ));
        }
        out
    }
}

/// The facts of the whole disk `name`; a partition is refused.
fn whole_disk_info(devices: &BlockDevices, path: &Path, name: &str) -> Result<DiskInfo, DiskError> {
    if let Some(disk) = devices.parent_of_partition(name) {
        return Err(DiskError::Partition {
            path: path.to_path_buf(),
            disk,
        });
    }
    devices.info(name).ok_or_else(|| DiskError::Missing {
        path: path.to_path_buf(),
    })
}

/// The guards: nothing on the disk may be in use by the running system.
pub fn check_unused(path: &Path, info: &DiskInfo) -> Result<(), DiskError> {
    let path = path.to_path_buf();
    if info.backs_root {
        return Err(DiskError::BacksRoot { path });
    }
    let mounts = info.all_mounts();
    if !mounts.is_empty() {
        return Err(DiskError::Mounted {
            path,
            mounts: human_list(&mounts),
        });
    }
    let swaps = info.swap_devices();
    if !swaps.is_empty() {
        return Err(DiskError::Swap {
            path,
            devices: human_list(&swaps),
        });
    }
    if let Some((member, holder)) = info.all_holders().into_iter().next() {
        let member = format!("/dev/{member}");
        return Err(match holder.kind {
            HolderKind::Md => DiskError::RaidMember {
                path,
                member,
                array: holder.description,
            },
            HolderKind::Lvm | HolderKind::Dm => DiskError::DeviceMapper {
                path,
                member,
                holder: holder.description,
            },
        });
    }
    Ok(())
}

/// The files (not partitions) in active swap, from `/proc/swaps`.
fn swap_files(proc_swaps: &str) -> impl Iterator<Item = &str> {
    proc_swaps.lines().skip(1).filter_map(|l| {
        let mut words = l.split_whitespace();
        let (file, kind) = (words.next()?, words.next()?);
        (kind == "file").then_some(file)
    })
}

/// What a disk lock is keyed on: the bytes a target writes to, whatever path names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum DiskIdentity {
    /// A file (an image, or a loop device's backing file): device and inode.
    File { dev: u64, ino: u64 },
    /// A block device: its device number.
    Device { rdev: u64 },
}

impl DiskIdentity {
    /// A file name for the lock on these bytes.
    pub fn lock_name(&self) -> String {
        match self {
            DiskIdentity::File { dev, ino } => format!("file-{dev:x}-{ino}.lock"),
            DiskIdentity::Device { rdev } => format!(
                "dev-{}-{}.lock",
                nix::sys::stat::major(*rdev),
                nix::sys::stat::minor(*rdev)
            ),
        }
    }
}

/// The identity of `path` after symlinks: a hard link to an image and a loop device backed by
/// it have the image's identity, so two installs onto the same bytes collide on one lock.
pub fn identity(path: &Path) -> std::io::Result<DiskIdentity> {
    identity_at(&Root::system(), path)
}

/// [`identity`] with the loop devices' backing files read under `root`.
pub fn identity_at(root: &Root, path: &Path) -> std::io::Result<DiskIdentity> {
    let meta = std::fs::metadata(path)?;
    if !meta.file_type().is_block_device() {
        return Ok(DiskIdentity::File {
            dev: meta.dev(),
            ino: meta.ino(),
        });
    }
    let devices = BlockDevices::read(root);
    let backing = devices
        .name_of_dev(meta.rdev())
        .and_then(|n| root.read(format!("/sys/block/{n}/loop/backing_file")));
    match backing.map(|b| std::fs::metadata(b.trim())) {
        Some(Ok(file)) => Ok(DiskIdentity::File {
            dev: file.dev(),
            ino: file.ino(),
        }),
        _ => Ok(DiskIdentity::Device { rdev: meta.rdev() }),
    }
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

/// `1.5 GiB`, `12.0 MiB`, `512 B`: disk sizes and download progress alike.
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

/// Tests: attaches `image` to a free loop device and returns its path, or says the test is
/// skipped where loop devices are unavailable.
#[cfg(test)]
pub(crate) fn attach_loop(image: &Path) -> Option<String> {
    let out = std::process::Command::new("losetup")
        .args(["-f", "--show"])
        .arg(image)
        .output()
        .unwrap();
    if !out.status.success() {
        println!(
            "SKIPPED: loop devices unavailable: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
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
        let t = Target::inspect(&path, Some(1 << 30)).unwrap();
        assert!(t.create && !path.exists(), "inspecting creates nothing");
        t.create_if_needed().unwrap();
        let t = Target::inspect(&path, Some(5)).unwrap();
        assert_eq!(
            (t.kind, t.size_bytes, t.create),
            (TargetKind::File, 1 << 30, false)
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "the image will hold the installed system"
        );
        let e = Target::inspect(dir.path(), None).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("not a block device or a regular file")
        );
    }

    fn refusal(path: &Path, size: Option<u64>) -> String {
        Target::inspect(path, size).unwrap_err().to_string()
    }

    #[test]
    fn image_sizes_have_a_minimum_and_leftovers_are_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.img");
        assert_eq!(
            refusal(&path, Some(511)),
            "--size 511 B: too small for a disk image; at least 1.0 GiB (no installer fits in less)"
        );
        assert!(refusal(&path, Some(1)).starts_with("--size 1 B: too small"));
        std::fs::write(&path, "").unwrap();
        assert_eq!(
            refusal(&path, Some(8 << 30)),
            format!(
                "{} is a disk image of only 0 B, smaller than the 1.0 GiB an install needs (an empty file may be left from a failed creation); delete it, then pass --size",
                path.display()
            )
        );
    }

    #[test]
    fn failed_creation_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.img");
        let t = Target::inspect(&path, Some(999 << 40)).unwrap();
        let e = t.create_if_needed().unwrap_err();
        assert!(
            e.to_string().starts_with(&path.display().to_string()),
            "{e}"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn kernel_files_and_char_devices_are_no_disks() {
        for p in ["/proc/self/mem", "/dev/null", "/proc"] {
            assert_eq!(
                refusal(Path::new(p), None),
                format!("{p}: not a block device or a regular file")
            );
        }
    }

    #[test]
    fn active_swap_files_are_refused() {
        let swaps = "Filename\tType\tSize\tUsed\tPriority\n/dev/sda2 partition 1 0 -2\n/swapfile file 1 0 -3\n";
        assert_eq!(swap_files(swaps).collect::<Vec<_>>(), ["/swapfile"]);
    }

    #[test]
    fn identity_follows_links_to_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("disk.img");
        std::fs::write(&img, "x").unwrap();
        let hard = dir.path().join("hard.img");
        std::fs::hard_link(&img, &hard).unwrap();
        let soft = dir.path().join("soft.img");
        std::os::unix::fs::symlink(&img, &soft).unwrap();
        let other = dir.path().join("other.img");
        std::fs::write(&other, "x").unwrap();
        let id = identity(&img).unwrap();
        assert_eq!(identity(&hard).unwrap(), id);
        assert_eq!(identity(&soft).unwrap(), id);
        assert_eq!(identity(&hard).unwrap().lock_name(), id.lock_name());
        assert!(id.lock_name().starts_with("file-"), "{}", id.lock_name());
        assert_ne!(identity(&other).unwrap(), id);
    }

    #[test]
    fn a_loop_device_has_its_backing_files_identity() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("disk.img");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(1 << 20)
            .unwrap();
        let Some(dev) = crate::host::disk::attach_loop(&img) else {
            return;
        };
        let got = identity(Path::new(&dev));
        let _ = std::process::Command::new("losetup")
            .args(["-d", &dev])
            .status();
        assert_eq!(got.unwrap(), identity(&img).unwrap(), "{dev}");
        assert!(matches!(
            identity(Path::new("/dev/null")).unwrap(),
            DiskIdentity::File { .. }
        ));
    }
}
