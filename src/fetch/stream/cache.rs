//! The bounded cache of verified chunks, in memory (a rescue system's disk is its RAM too).

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

/// What the cache holds and has held, for tests and `ferry status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    /// The bound, in bytes.
    pub limit: u64,
    /// Bytes of chunks held now.
    pub bytes: u64,
    /// The most ever held.
    pub peak: u64,
    pub hits: u64,
    /// Chunks fetched (and verified) because they were not held.
    pub misses: u64,
}

/// Least-recently-used chunks, at most `limit` bytes of them. Only verified chunks go in.
pub(super) struct ChunkCache {
    chunks: HashMap<u64, (Arc<[u8]>, u64)>,
    clock: u64,
    stats: CacheStats,
}

impl ChunkCache {
    pub(super) fn new(limit: u64) -> ChunkCache {
        ChunkCache {
            chunks: HashMap::new(),
            clock: 0,
            stats: CacheStats {
                limit,
                ..CacheStats::default()
            },
        }
    }

    pub(super) fn get(&mut self, index: u64) -> Option<Arc<[u8]>> {
        self.clock += 1;
        match self.chunks.get_mut(&index) {
            Some((bytes, used)) => {
                *used = self.clock;
                self.stats.hits += 1;
                Some(bytes.clone())
            }
            None => {
                self.stats.misses += 1;
                None
            }
        }
    }

    /// Keeps `bytes` as chunk `index`, evicting the least recently used chunks to stay
    /// within the bound; a chunk larger than the whole bound is not kept.
    pub(super) fn put(&mut self, index: u64, bytes: Arc<[u8]>) {
        let size = bytes.len() as u64;
        if size > self.stats.limit || self.chunks.contains_key(&index) {
            return;
        }
        while self.stats.bytes + size > self.stats.limit {
            // A linear scan: the cache holds at most a few hundred chunks.
            let Some((&oldest, _)) = self.chunks.iter().min_by_key(|(_, (_, used))| *used) else {
                break;
            };
            if let Some((gone, _)) = self.chunks.remove(&oldest) {
                self.stats.bytes -= gone.len() as u64;
            }
        }
        self.clock += 1;
        self.stats.bytes += size;
        self.stats.peak = self.stats.peak.max(self.stats.bytes);
        self.chunks.insert(index, (bytes, self.clock));
    }

    pub(super) fn stats(&self) -> CacheStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(len: usize) -> Arc<[u8]> {
        vec![0u8; len].into()
    }

    #[test]
    fn evicts_the_least_recently_used_within_the_bound() {
        let mut cache = ChunkCache::new(3000);
        cache.put(0, chunk(1000));
        cache.put(1, chunk(1000));
        cache.put(2, chunk(1000));
        assert!(cache.get(0).is_some()); // 1 is now the oldest
        cache.put(3, chunk(1000));
        assert!(cache.get(1).is_none());
        assert!(cache.get(0).is_some() && cache.get(2).is_some() && cache.get(3).is_some());
        let stats = cache.stats();
        assert_eq!((stats.bytes, stats.peak, stats.limit), (3000, 3000, 3000));
        assert_eq!((stats.hits, stats.misses), (4, 1));
    }

    #[test]
    fn a_bound_below_one_chunk_keeps_nothing() {
        let mut cache = ChunkCache::new(500);
        cache.put(0, chunk(1000));
        assert!(cache.get(0).is_none());
        assert_eq!(cache.stats().peak, 0);
    }
}
