//! Reading a file the operator names (a profile, a template, `--ssh-key`, `--network`): only a
//! regular file, and only up to a size. `/dev/zero`, a FIFO or a directory is refused at once
//! instead of being read forever or blocking.

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Profiles, templates, keys and network files are kilobytes; a megabyte is far above any.
pub const MAX_INPUT_BYTES: u64 = 1 << 20;

/// Why an input file was not read. Callers put the path (and the option) in front.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not a regular file ({0}); name a file")]
    NotAFile(&'static str),
    #[error("larger than {} KiB; this is not a file ferry reads", .0 >> 10)]
    TooLarge(u64),
    #[error("not UTF-8 text")]
    NotText,
}

impl InputError {
    /// An `io::Error` of the same kind, for readers that speak `io`.
    pub fn into_io(self) -> std::io::Error {
        match self {
            InputError::Io(e) => e,
            other => std::io::Error::new(std::io::ErrorKind::InvalidInput, other.to_string()),
        }
    }
}

/// Reads `path` as text: a regular file (symlinks followed) of at most `limit` bytes.
pub fn read_text(path: &Path, limit: u64) -> Result<String, InputError> {
    // O_NONBLOCK: opening a FIFO must not wait for a writer before it can be refused.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)?;
    let kind = file.metadata()?.file_type();
    let what = if kind.is_file() {
        None
    } else if kind.is_dir() {
        Some("a directory")
    } else if kind.is_char_device() {
        Some("a character device")
    } else if kind.is_block_device() {
        Some("a block device")
    } else if kind.is_fifo() {
        Some("a FIFO")
    } else {
        Some("a socket")
    };
    if let Some(what) = what {
        return Err(InputError::NotAFile(what));
    }
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(InputError::TooLarge(limit));
    }
    String::from_utf8(bytes).map_err(|_| InputError::NotText)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_up_to_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.toml");
        std::fs::write(&file, "x = 1\n").unwrap();
        assert_eq!(read_text(&file, 6).unwrap(), "x = 1\n");
        assert_eq!(
            read_text(&file, 5).unwrap_err().to_string(),
            "larger than 0 KiB; this is not a file ferry reads"
        );
        let err = |p: &str| {
            read_text(Path::new(p), MAX_INPUT_BYTES)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err("/dev/zero"),
            "not a regular file (a character device); name a file"
        );
        assert_eq!(
            err("/proc/self"),
            "not a regular file (a directory); name a file"
        );
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert_eq!(
            read_text(&fifo, 10).unwrap_err().to_string(),
            "not a regular file (a FIFO); name a file"
        );
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'a'; (MAX_INPUT_BYTES + 1) as usize]).unwrap();
        assert!(matches!(
            read_text(&big, MAX_INPUT_BYTES),
            Err(InputError::TooLarge(_))
        ));
        std::fs::write(&file, [0xff, 0xfe]).unwrap();
        assert_eq!(
            read_text(&file, 10).unwrap_err().to_string(),
            "not UTF-8 text"
        );
    }
}
