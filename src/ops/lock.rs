//! One install per target disk: an exclusive `flock` on a lock file named after the disk
//! (its device number for a block device, a hash of its canonical path for an image file).
//!
//! The lock lives in `/run/ferry/locks` for root, else `$XDG_RUNTIME_DIR/ferry/locks`, else
//! `RUNS/.locks`. The foreground takes it and hands the open file to the supervisor, which
//! holds it until it exits (the kernel releases it however the supervisor ends). The file
//! says who holds it: `PID RUN_DIR`.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::OpsError;
use crate::Error;

pub struct DiskLock {
    pub file: File,
    pub path: PathBuf,
}

fn locks_dir(runs_root: &Path) -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/run/ferry/locks");
    }
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR") {
        return PathBuf::from(dir).join("ferry/locks");
    }
    runs_root.join(".locks")
}

/// The lock file's name for `disk` (which may not exist yet: an image file to create).
pub fn lock_name(disk: &Path) -> String {
    if let Ok(meta) = std::fs::metadata(disk) {
        use std::os::unix::fs::FileTypeExt;
        if meta.file_type().is_block_device() {
            let rdev = meta.rdev();
            return format!(
                "dev-{}-{}.lock",
                nix::sys::stat::major(rdev),
                nix::sys::stat::minor(rdev)
            );
        }
    }
    let canonical = match (disk.parent(), disk.file_name()) {
        (Some(parent), Some(name)) => std::fs::canonicalize(if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        })
        .map(|p| p.join(name))
        .unwrap_or_else(|_| disk.to_path_buf()),
        _ => disk.to_path_buf(),
    };
    let hash = Sha256::digest(canonical.as_os_str().as_encoded_bytes());
    format!("file-{}.lock", hex::encode(&hash[..8]))
}

/// Takes the lock for `disk` or says who holds it.
pub fn acquire(runs_root: &Path, disk: &Path) -> Result<DiskLock, Error> {
    let dir = locks_dir(runs_root);
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(lock_name(disk));
    let mut file = File::options()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)?;
    // SAFETY: flock on a file descriptor we own.
    let rc = unsafe { nix::libc::flock(file.as_raw_fd(), nix::libc::LOCK_EX | nix::libc::LOCK_NB) };
    if rc != 0 {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let (pid, run_dir) = holder.trim().split_once(' ').unwrap_or(("?", "?"));
        return Err(OpsError::Busy {
            disk: disk.to_path_buf(),
            run_dir: run_dir.to_string(),
            pid: pid.to_string(),
        }
        .into());
    }
    Ok(DiskLock { file, path })
}

impl DiskLock {
    /// Records who holds the lock.
    pub fn record(&mut self, pid: u32, run_dir: &Path) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.file.rewind()?;
        write!(self.file, "{pid} {}", run_dir.display())?;
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_install_of_the_same_disk_is_refused_with_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk.img");
        let root = dir.path().join("runs");
        let mut first = acquire(&root, &disk).unwrap();
        first
            .record(4242, Path::new("/runs/20261124-000000-tiny"))
            .unwrap();
        // The same disk named through another path.
        let other = dir.path().join(".").join("disk.img");
        let err = acquire(&root, &other).err().expect("the disk is locked");
        let text = err.to_string();
        assert!(
            text.contains("20261124-000000-tiny") && text.contains("4242"),
            "{text}"
        );
        assert_eq!(err.exit_code(), 8);
        drop(first);
        acquire(&root, &disk).expect("free again once the holder is gone");
    }
}
