//! Verified streaming: an image served to QEMU without a local copy, for images larger than
//! the rescue system's RAM disk.
//!
//! 1. [`open`] makes (or loads) the image's [`ChunkRecord`]: a first pass reads the whole
//!    image over HTTP through the [`Fetcher`] (retries, resume, mirrors, progress as for a
//!    download) without storing it, checks its SHA-256 against the expected digest and records
//!    a SHA-256 per 1 MiB chunk. The record is saved as `DEST.chunks` next to where the image
//!    would be cached, so a later run with the same expected digest skips the first pass.
//! 2. The [`StreamedImage`] reads chunks with HTTP range requests, compares each with the
//!    record and only then returns or caches it (at most `cache_limit` bytes, in memory). A
//!    chunk that differs (the mirror changed the file) is never served: the next mirror is
//!    tried, and when none matches the read fails with [`StreamError::ChunkChanged`] naming
//!    the chunk, and [`StreamedImage::failure`] says so for the install to fail.
//! 3. The [`NbdServer`] serves it read-only to QEMU over a unix socket; it is also an
//!    [`crate::image::Source`], so the ISO reader extracts the kernel and initrd through the
//!    same verification (`Iso::from_source`).

mod cache;
mod chunks;
mod image;
mod nbd;

use std::path::PathBuf;
use std::sync::Arc;

pub use cache::CacheStats;
pub use chunks::{CHUNK_SIZE, ChunkRecord};
pub use image::StreamedImage;
pub use nbd::{MAX_READ, NbdServer};

use super::{FetchError, Fetcher, Progress, Request, Sha256Digest};

/// The default bound of the chunk cache.
pub const DEFAULT_CACHE_LIMIT: u64 = 256 << 20;

/// A chunk whose bytes no longer match the record on any mirror: never served, and the
/// install fails with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{url}: chunk {chunk} (bytes {offset}-{end}) is not the verified image's: expected sha256 \
     {expected}, got {actual}; the mirror changed the file since it was verified, and the \
     chunk was not served (try another mirror, or download the image)"
)]
pub struct ChangedChunk {
    pub url: String,
    pub chunk: u64,
    pub offset: u64,
    pub end: u64,
    pub expected: Sha256Digest,
    pub actual: Sha256Digest,
}

/// Streaming failures. Exit code 4, as for downloads, but 10 for a changed chunk
/// ([`StreamError::exit_code`]).
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    ChunkChanged(ChangedChunk),
    #[error(
        "{url}: streaming needs a checksum to verify the image with; give --sha256 HEX (or a \
         catalog image, or a SHA256SUMS next to it)"
    )]
    Unverified { url: String },
    #[error("read of {len} bytes at {offset} is past the image's end ({size} bytes)")]
    OutOfRange { offset: u64, len: u64, size: u64 },
    #[error("chunk record {}: {message}", path.display())]
    Record { path: PathBuf, message: String },
    #[error("NBD socket {}: {message} (the run directory's path must be short: at most 107 bytes)", path.display())]
    Socket { path: PathBuf, message: String },
}

impl StreamError {
    /// Exit codes are part of ferry's interface: a stream is a fetch (4); a mirror that
    /// changed the file under a running install is its own case (10).
    pub fn exit_code(&self) -> i32 {
        match self {
            StreamError::ChunkChanged(_) => 10,
            _ => 4,
        }
    }
}

/// The verified image behind `request`, ready to serve: the record from `DEST.chunks` if one
/// was made for the same expected digest, else from a first pass over the whole image (then
/// saved there). Nothing is written at `request.dest`.
pub fn open(
    fetcher: &Fetcher,
    request: &Request,
    cache_limit: u64,
    progress: &mut dyn Progress,
) -> Result<Arc<StreamedImage>, StreamError> {
    let (expected, urls) = fetcher.resolve(request, progress)?;
    let expected = expected.ok_or_else(|| StreamError::Unverified {
        url: request.url().into(),
    })?;
    let path = ChunkRecord::path_for(&request.dest);
    let record = match ChunkRecord::load(&path, expected)? {
        Some(record) => {
            progress.message(&format!(
                "streaming {}: using the chunk record {} (verified earlier)",
                request.url(),
                path.display()
            ));
            record
        }
        None => {
            progress.message(&format!(
                "streaming {}: a first pass verifies the whole image (nothing is stored)",
                request.url()
            ));
            let mut recorder = chunks::Recorder::new(CHUNK_SIZE);
            let url = fetcher.receive(&urls, &mut recorder, progress)?;
            let record = recorder.finish(expected, url.as_str())?;
            record.save(&path)?;
            record
        }
    };
    Ok(Arc::new(StreamedImage::new(
        fetcher.clone(),
        urls,
        record,
        cache_limit,
    )))
}
