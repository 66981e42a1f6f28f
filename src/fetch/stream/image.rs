//! A verified image read over HTTP ranges: every chunk is compared with its record before a
//! byte of it is returned.

use std::sync::{Arc, Mutex, PoisonError};

use url::Url;

use super::cache::{CacheStats, ChunkCache};
use super::chunks::ChunkRecord;
use super::{ChangedChunk, StreamError};
use crate::fetch::{FetchError, Fetcher};

/// The image behind `urls` (mirrors, in order), readable at any offset, verified chunk by
/// chunk against `record`, with at most `cache_limit` bytes of verified chunks kept.
/// Shared between the NBD server's connections and the kernel/initrd extraction.
pub struct StreamedImage {
    fetcher: Fetcher,
    urls: Vec<Url>,
    record: ChunkRecord,
    cache: Mutex<ChunkCache>,
    /// The first chunk that failed verification on every mirror: the install must fail.
    failure: Mutex<Option<ChangedChunk>>,
}

impl StreamedImage {
    pub fn new(
        fetcher: Fetcher,
        urls: Vec<Url>,
        record: ChunkRecord,
        cache_limit: u64,
    ) -> StreamedImage {
        StreamedImage {
            fetcher,
            urls,
            record,
            cache: Mutex::new(ChunkCache::new(cache_limit)),
            failure: Mutex::new(None),
        }
    }

    pub fn len(&self) -> u64 {
        self.record.len
    }

    pub fn is_empty(&self) -> bool {
        self.record.len == 0
    }

    pub fn record(&self) -> &ChunkRecord {
        &self.record
    }

    pub fn cache_stats(&self) -> CacheStats {
        self.lock_cache().stats()
    }

    /// The first verification failure, if any chunk failed on every mirror. A guest read of
    /// it got an I/O error; the caller ends the install with this message.
    pub fn failure(&self) -> Option<ChangedChunk> {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Fills `buf` from `offset`, every byte from a verified chunk.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), StreamError> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|end| *end <= self.len())
            .ok_or(StreamError::OutOfRange {
                offset,
                len: buf.len() as u64,
                size: self.len(),
            })?;
        let mut pos = offset;
        while pos < end {
            let index = self.record.chunk_of(pos);
            let chunk = self.chunk(index)?;
            let (start, _) = self.record.span(index);
            let from = (pos - start) as usize;
            let n = (chunk.len() - from).min((end - pos) as usize);
            let at = (pos - offset) as usize;
            buf[at..at + n].copy_from_slice(&chunk[from..from + n]);
            pos += n as u64;
        }
        Ok(())
    }

    /// Chunk `index`, verified: from the cache, or fetched from the mirrors in order until one
    /// serves bytes that match the record.
    fn chunk(&self, index: u64) -> Result<Arc<[u8]>, StreamError> {
        if let Some(chunk) = self.lock_cache().get(index) {
            return Ok(chunk);
        }
        let (offset, len) = self.record.span(index);
        let mut buf = vec![0u8; len as usize];
        let mut failures = Vec::new();
        for url in &self.urls {
            if let Err(e) = self.fetcher.read_range(url, offset, self.len(), &mut buf) {
                failures.push((url.to_string(), e));
                continue;
            }
            match self.record.check(index, &buf) {
                Ok(()) => {
                    let chunk: Arc<[u8]> = buf.into();
                    self.lock_cache().put(index, chunk.clone());
                    return Ok(chunk);
                }
                Err(actual) => {
                    let changed = ChangedChunk {
                        url: url.to_string(),
                        chunk: index,
                        offset,
                        end: offset + len - 1,
                        expected: self.record.expected(index),
                        actual,
                    };
                    tracing::warn!("{changed}");
                    self.failure
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get_or_insert_with(|| changed.clone());
                    let error = StreamError::ChunkChanged(changed);
                    if self.urls.len() == 1 {
                        return Err(error);
                    }
                    failures.push((url.to_string(), FetchError::Setup(error.to_string())));
                }
            }
        }
        Err(StreamError::Fetch(match failures.len() {
            1 => failures.pop().expect("one failure").1,
            _ => FetchError::Mirrors(failures),
        }))
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, ChunkCache> {
        // The cache holds only verified chunks: one left by a panicking reader is still good.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The ISO reader (kernel and initrd extraction) reads a streamed image through the same
/// verification as QEMU.
impl crate::image::Source for StreamedImage {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.read_at(buf, offset).map_err(|e| match e {
            StreamError::OutOfRange { .. } => {
                std::io::Error::new(std::io::ErrorKind::UnexpectedEof, e)
            }
            e => std::io::Error::other(e),
        })
    }
}
