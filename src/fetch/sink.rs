//! Where a download's bytes go: a bounded pipeline from the receiving thread to a [`Sink`] on
//! another thread, and the sink that keeps them, `DEST.partial` with the hash of its bytes.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest, Sha256};
use url::Url;

use super::checksum::Sha256Digest;
use super::error::FetchError;
use super::http::{Failed, describe_io};
use super::progress::Progress;

/// The receiving thread hands the body on in buffers of this size...
const PIPE_BUFFER: usize = 1 << 20;
/// ...with at most this many waiting for the hashing and writing thread: the pipeline holds
/// at most `PIPE_DEPTH + 2` buffers (8 MiB with one being filled and one being written).
const PIPE_DEPTH: usize = 6;

/// Where a download's bytes go, in order: a partial file, or (streaming) a hasher that keeps
/// nothing. Runs on the pipeline's second thread.
pub(crate) trait Sink: Send {
    /// Bytes taken so far: a retry resumes after them.
    fn len(&self) -> u64;
    fn write(&mut self, bytes: &[u8]) -> Result<(), FetchError>;
    /// Starts over from byte 0 (the server could not resume).
    fn truncate(&mut self) -> Result<(), FetchError>;
}

/// Receives `body` on this thread while another feeds `sink` (hashing, writing): a bounded
/// pipeline of large buffers, so the network, the hash and the disk overlap. Every byte
/// received before an error reaches `sink`, so a retry resumes after it.
pub(super) fn pipe(
    body: &mut impl Read,
    sink: &mut dyn Sink,
    progress: &mut dyn Progress,
) -> Result<(), Failed> {
    let mut received = sink.len();
    std::thread::scope(|scope| {
        let (full_tx, full_rx) = mpsc::sync_channel::<(Vec<u8>, usize)>(PIPE_DEPTH);
        let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
        let writer = scope.spawn(move || -> Result<(), FetchError> {
            for (buf, n) in full_rx {
                sink.write(&buf[..n])?;
                // The receiver may be gone already; the buffer is then simply dropped.
                let _ = empty_tx.send(buf);
            }
            Ok(())
        });
        let ended = loop {
            let mut buf = empty_rx
                .try_recv()
                .unwrap_or_else(|_| vec![0u8; PIPE_BUFFER]);
            let mut n = 0;
            let mut ended = None;
            while n < buf.len() {
                match body.read(&mut buf[n..]) {
                    Ok(0) => {
                        ended = Some(Ok(()));
                        break;
                    }
                    Ok(k) => n += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        ended = Some(Err(Failed::Transient(describe_io(&e))));
                        break;
                    }
                }
            }
            // A send fails only when the writer stopped on an error, which `join` returns.
            if n > 0 && full_tx.send((buf, n)).is_err() {
                break Ok(());
            }
            received += n as u64;
            progress.advance(received);
            if let Some(ended) = ended {
                break ended;
            }
        };
        drop(full_tx);
        match writer.join() {
            Ok(Ok(())) => ended,
            Ok(Err(e)) => Err(Failed::Final(e)),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// SHA-256 and length of a file.
pub fn hash_file(path: &Path) -> Result<(Sha256Digest, u64), FetchError> {
    let mut file = File::open(path).map_err(|e| FetchError::io(path, e))?;
    let mut hasher = Sha256::new();
    let len = hash_into(&mut file, &mut hasher).map_err(|e| FetchError::io(path, e))?;
    Ok((Sha256Digest(hasher.finalize().into()), len))
}

pub(super) fn hash_into(reader: &mut impl Read, hasher: &mut Sha256) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(len),
            Ok(n) => {
                hasher.update(&buf[..n]);
                len += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// `DEST.partial`, locked against a second ferry, with the hash of the bytes in it.
pub(super) struct Partial {
    path: PathBuf,
    file: File,
    /// Held while the partial is open: a second ferry fetching the same file is refused.
    _lock: Flock<File>,
    hasher: Sha256,
    len: u64,
}

impl Partial {
    /// Opens (or creates) the partial file; existing bytes are hashed again so the download
    /// can resume after them.
    pub(super) fn open(path: &Path, progress: &mut dyn Progress) -> Result<Partial, FetchError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path);
        let mut file = file.map_err(|e| FetchError::io(path, e))?;
        let clone = file.try_clone().map_err(|e| FetchError::io(path, e))?;
        let lock = Flock::lock(clone, FlockArg::LockExclusiveNonblock)
            .map_err(|_| FetchError::Busy { path: path.into() })?;
        let mut hasher = Sha256::new();
        let existing = file.metadata().map_err(|e| FetchError::io(path, e))?.len();
        if existing > 0 {
            progress.message(&format!(
                "resuming {}: hashing the {existing} bytes already there",
                path.display()
            ));
        }
        let len = hash_into(&mut file, &mut hasher).map_err(|e| FetchError::io(path, e))?;
        file.seek(SeekFrom::Start(len))
            .map_err(|e| FetchError::io(path, e))?;
        Ok(Partial {
            path: path.into(),
            file,
            _lock: lock,
            hasher,
            len,
        })
    }

    /// Gives up on this fetch: bytes already received stay in the partial for the next run to
    /// resume; an empty partial is removed.
    pub(super) fn abandon(self, error: FetchError) -> FetchError {
        if self.len == 0 {
            let _ = std::fs::remove_file(&self.path);
        }
        error
    }

    /// Compares the digest and renames the partial to `dest` only if it matched; a mismatch
    /// deletes the partial. Returns the length and the digest.
    pub(super) fn finish(
        self,
        dest: &Path,
        expected: Option<Sha256Digest>,
        url: &Url,
    ) -> Result<(u64, Sha256Digest), FetchError> {
        let io = |path: &Path, e| FetchError::io(path, e);
        // A verified copy is hashed again before every use (`Fetcher::fetch`), so one a crash
        // left incomplete is caught there and fetched again: it needs no wait for the disk. A
        // copy nothing will check is made durable before it gets its name.
        let durable = expected.is_none();
        if durable {
            self.file.sync_all().map_err(|e| io(&self.path, e))?;
        }
        let actual = Sha256Digest(self.hasher.finalize().into());
        if let Some(expected) = expected
            && expected != actual
        {
            std::fs::remove_file(&self.path).map_err(|e| io(&self.path, e))?;
            return Err(FetchError::Mismatch {
                url: url.to_string(),
                expected,
                actual,
            });
        }
        std::fs::rename(&self.path, dest).map_err(|e| io(dest, e))?;
        if durable && let Some(dir) = dest.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io(dir, e))?;
        }
        Ok((self.len, actual))
    }
}

impl Sink for Partial {
    fn len(&self) -> u64 {
        self.len
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), FetchError> {
        self.hasher.update(bytes);
        self.file
            .write_all(bytes)
            .map_err(|e| FetchError::io(&self.path, e))?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    fn truncate(&mut self) -> Result<(), FetchError> {
        let io = |e| FetchError::io(&self.path, e);
        self.file.set_len(0).map_err(io)?;
        self.file.seek(SeekFrom::Start(0)).map_err(io)?;
        self.hasher = Sha256::new();
        self.len = 0;
        Ok(())
    }
}
