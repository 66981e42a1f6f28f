//! One install per target disk: an exclusive `flock` on a lock file named after the bytes the
//! disk writes to ([`lock_name`]).
//!
//! The lock lives in `/run/ferry/locks` for root, else `$XDG_RUNTIME_DIR/ferry/locks`, else
//! `RUNS/.locks`. The foreground takes it and hands the open file to the supervisor, which
//! holds it until it exits (the kernel releases it however the supervisor ends). The file
//! says who holds it: `PID RUN_DIR`.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
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

/// The lock file's name for `disk`: the identity of the bytes it names (device and inode,
/// a loop device's backing file, a block device's number), so a hard link, a symlink or a loop
/// device onto the same image takes the same lock. An image still to be created has no inode
/// yet: its canonical path names the lock.
pub fn lock_name(disk: &Path) -> String {
    if let Ok(id) = crate::host::disk::identity(disk) {
        return id.lock_name();
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
    format!("path-{}.lock", hex::encode(&hash[..8]))
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
    use std::time::{Duration, Instant};

    /// The lock is free once no process holds its open file. Another test thread's
    /// fork-then-exec can hold a copy of the descriptor until its exec closes it (the file is
    /// close-on-exec), so this waits for that exec rather than asserting at once.
    fn acquired_once_free(root: &Path, disk: &Path) -> DiskLock {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match acquire(root, disk) {
                Ok(lock) => return lock,
                Err(e) if Instant::now() > deadline => panic!("still locked: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    fn assert_busy(root: &Path, disk: &Path) {
        let err = acquire(root, disk).err().expect("the disk is locked");
        let text = err.to_string();
        assert!(
            text.contains("20261124-000000-tiny") && text.contains("4242"),
            "{text}"
        );
        assert_eq!(err.exit_code(), 8);
    }

    #[test]
    fn a_second_install_of_the_same_disk_is_refused_with_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk.img");
        std::fs::write(&disk, b"").unwrap();
        let root = dir.path().join("runs");
        let mut first = acquire(&root, &disk).unwrap();
        first
            .record(4242, Path::new("/runs/20261124-000000-tiny"))
            .unwrap();
        // The same bytes through another path, a symlink and a hard link.
        assert_busy(&root, &dir.path().join(".").join("disk.img"));
        let soft = dir.path().join("soft.img");
        std::os::unix::fs::symlink(&disk, &soft).unwrap();
        assert_busy(&root, &soft);
        let hard = dir.path().join("hard.img");
        std::fs::hard_link(&disk, &hard).unwrap();
        assert_busy(&root, &hard);
        // Another image is free.
        let other = dir.path().join("other.img");
        std::fs::write(&other, b"").unwrap();
        drop(acquire(&root, &other).expect("another disk"));
        drop(first);
        drop(acquired_once_free(&root, &hard));
    }

    #[test]
    fn an_image_to_be_created_is_locked_by_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("runs");
        let disk = dir.path().join("new.img");
        let mut first = acquire(&root, &disk).unwrap();
        first
            .record(4242, Path::new("/runs/20261124-000000-tiny"))
            .unwrap();
        assert_busy(&root, &dir.path().join(".").join("new.img"));
    }

    #[test]
    fn a_loop_device_backed_by_the_image_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk.img");
        std::fs::File::create(&disk)
            .unwrap()
            .set_len(1 << 20)
            .unwrap();
        let Some(dev) = crate::host::disk::attach_loop(&disk) else {
            return;
        };
        let root = dir.path().join("runs");
        let first = acquire(&root, &disk);
        let second = acquire(&root, Path::new(&dev)).err().map(|e| e.to_string());
        let _ = std::process::Command::new("losetup")
            .args(["-d", &dev])
            .status();
        assert!(first.is_ok(), "the image's own lock");
        let text = second.expect("the loop device's install refused");
        assert!(text.contains("already being installed"), "{text}");
    }
}
