//! The chunk record: the SHA-256 of every chunk of an image whose whole digest was verified
//! while the record was made. Later reads compare each chunk with it before serving it.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::StreamError;
use crate::fetch::sink::Sink;
use crate::fetch::{FetchError, Sha256Digest};

/// 1 MiB: 32 bytes of record per MiB of image (100 KB for 3 GB), and one HTTP range request
/// per chunk read.
pub const CHUNK_SIZE: u64 = 1 << 20;

/// The record's first line names its format; the next lines say what it is a record of.
const MAGIC: &str = "ferry-chunk-record 1";

/// Per-chunk digests of one verified image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRecord {
    /// The verified SHA-256 of the whole image.
    pub sha256: Sha256Digest,
    pub len: u64,
    pub chunk_size: u64,
    digests: Vec<[u8; 32]>,
}

impl ChunkRecord {
    pub fn chunks(&self) -> u64 {
        self.digests.len() as u64
    }

    /// Chunk `index`'s offset and length.
    pub fn span(&self, index: u64) -> (u64, u64) {
        let start = index * self.chunk_size;
        (start, self.chunk_size.min(self.len - start))
    }

    /// The chunk holding byte `offset`.
    pub fn chunk_of(&self, offset: u64) -> u64 {
        offset / self.chunk_size
    }

    /// Checks `bytes` against chunk `index`'s record; `Err` carries the digest they have.
    pub fn check(&self, index: u64, bytes: &[u8]) -> Result<(), Sha256Digest> {
        let actual: [u8; 32] = Sha256::digest(bytes).into();
        match self.digests.get(index as usize) {
            Some(want) if *want == actual => Ok(()),
            _ => Err(Sha256Digest(actual)),
        }
    }

    pub fn expected(&self, index: u64) -> Sha256Digest {
        Sha256Digest(self.digests[index as usize])
    }

    /// Where the record of the image cached at `dest` is kept: `DEST.chunks`, next to where
    /// the image itself would be.
    pub fn path_for(dest: &Path) -> PathBuf {
        let mut name = dest.file_name().unwrap_or_default().to_os_string();
        name.push(".chunks");
        dest.with_file_name(name)
    }

    /// Writes the record to `path` (through a temporary file, so a crash leaves none or a
    /// whole one).
    pub fn save(&self, path: &Path) -> Result<(), StreamError> {
        let io = |e| StreamError::Record {
            path: path.into(),
            message: format!("cannot write: {e}"),
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        let head = format!(
            "{MAGIC}\nsha256 {}\nlen {}\nchunk {}\n",
            self.sha256, self.len, self.chunk_size
        );
        tmp.write_all(head.as_bytes()).map_err(io)?;
        for digest in &self.digests {
            tmp.write_all(digest).map_err(io)?;
        }
        tmp.persist(path).map_err(|e| io(e.error))?;
        Ok(())
    }

    /// The record at `path` if there is one for an image of digest `expected`; `None` when
    /// there is none or it is of another image (a new point release behind the same URL).
    pub fn load(path: &Path, expected: Sha256Digest) -> Result<Option<ChunkRecord>, StreamError> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(StreamError::Record {
                    path: path.into(),
                    message: format!("cannot read: {e}"),
                });
            }
        };
        let bad = |what: &str| StreamError::Record {
            path: path.into(),
            message: format!("{what}; delete it and ferry verifies the image again"),
        };
        let mut lines = bytes.splitn(5, |b| *b == b'\n');
        let mut field = |name: &str| -> Result<String, StreamError> {
            let line = lines.next().ok_or_else(|| bad("truncated header"))?;
            let line = std::str::from_utf8(line).map_err(|_| bad("malformed header"))?;
            line.strip_prefix(name)
                .map(|v| v.trim().to_string())
                .ok_or_else(|| bad(&format!("expected `{name}` in the header")))
        };
        if !field(MAGIC)?.is_empty() {
            return Err(bad("not a chunk record"));
        }
        let sha256 = Sha256Digest::parse(&field("sha256 ")?).ok_or_else(|| bad("bad sha256"))?;
        let len: u64 = field("len ")?.parse().map_err(|_| bad("bad len"))?;
        let chunk_size: u64 = field("chunk ")?.parse().map_err(|_| bad("bad chunk"))?;
        let table = lines.next().unwrap_or_default();
        if sha256 != expected {
            return Ok(None);
        }
        if chunk_size == 0 || table.len() as u64 != len.div_ceil(chunk_size) * 32 {
            return Err(bad("its digest table does not match its length"));
        }
        let digests = table
            .chunks_exact(32)
            .map(|d| d.try_into().expect("32 bytes"))
            .collect();
        Ok(Some(ChunkRecord {
            sha256,
            len,
            chunk_size,
            digests,
        }))
    }
}

/// The first pass's sink: hashes the whole image and each chunk, stores nothing.
pub(super) struct Recorder {
    chunk_size: u64,
    whole: Sha256,
    chunk: Sha256,
    in_chunk: u64,
    len: u64,
    digests: Vec<[u8; 32]>,
}

impl Recorder {
    pub(super) fn new(chunk_size: u64) -> Recorder {
        Recorder {
            chunk_size,
            whole: Sha256::new(),
            chunk: Sha256::new(),
            in_chunk: 0,
            len: 0,
            digests: Vec::new(),
        }
    }

    /// The record, if the whole image's digest is `expected`.
    pub(super) fn finish(
        mut self,
        expected: Sha256Digest,
        url: &str,
    ) -> Result<ChunkRecord, FetchError> {
        if self.in_chunk > 0 {
            self.digests.push(self.chunk.finalize().into());
        }
        let actual = Sha256Digest(self.whole.finalize().into());
        if actual != expected {
            return Err(FetchError::Mismatch {
                url: url.to_string(),
                expected,
                actual,
            });
        }
        Ok(ChunkRecord {
            sha256: actual,
            len: self.len,
            chunk_size: self.chunk_size,
            digests: self.digests,
        })
    }
}

impl Sink for Recorder {
    fn len(&self) -> u64 {
        self.len
    }

    fn write(&mut self, mut bytes: &[u8]) -> Result<(), FetchError> {
        self.whole.update(bytes);
        self.len += bytes.len() as u64;
        while !bytes.is_empty() {
            let room = (self.chunk_size - self.in_chunk) as usize;
            let (head, rest) = bytes.split_at(room.min(bytes.len()));
            self.chunk.update(head);
            self.in_chunk += head.len() as u64;
            if self.in_chunk == self.chunk_size {
                self.digests.push(self.chunk.finalize_reset().into());
                self.in_chunk = 0;
            }
            bytes = rest;
        }
        Ok(())
    }

    fn truncate(&mut self) -> Result<(), FetchError> {
        *self = Recorder::new(self.chunk_size);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record_of(data: &[u8], chunk: u64, pieces: usize) -> ChunkRecord {
        let mut recorder = Recorder::new(chunk);
        for piece in data.chunks(pieces) {
            recorder.write(piece).unwrap();
        }
        recorder
            .finish(Sha256Digest(Sha256::digest(data).into()), "u")
            .unwrap()
    }

    #[test]
    fn chunks_split_across_writes() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 31 + i / 251) as u8).collect();
        let record = record_of(&data, 4096, 777);
        assert_eq!(record.chunks(), 3);
        assert_eq!(record.span(2), (8192, 10_000 - 8192));
        for (i, chunk) in data.chunks(4096).enumerate() {
            assert_eq!(record.check(i as u64, chunk), Ok(()));
        }
        assert!(record.check(1, &data[..4096]).is_err());
        assert!(record.check(3, b"").is_err(), "no chunk past the end");
        // The same record whatever the write sizes.
        assert_eq!(record_of(&data, 4096, 1), record);
    }

    #[test]
    fn wrong_whole_digest_is_a_mismatch() {
        let mut recorder = Recorder::new(4);
        recorder.write(b"abcdef").unwrap();
        let error = recorder.finish(Sha256Digest([0; 32]), "http://h/x.iso");
        assert!(matches!(error, Err(FetchError::Mismatch { .. })));
    }

    #[test]
    fn save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let data = vec![7u8; 9000];
        let record = record_of(&data, 4096, 1000);
        let path = ChunkRecord::path_for(&dir.path().join("x.iso"));
        assert!(path.ends_with("x.iso.chunks"));
        assert_eq!(ChunkRecord::load(&path, record.sha256).unwrap(), None);
        record.save(&path).unwrap();
        assert_eq!(
            ChunkRecord::load(&path, record.sha256).unwrap(),
            Some(record.clone())
        );
        // A record of another image is not used.
        assert_eq!(
            ChunkRecord::load(&path, Sha256Digest([1; 32])).unwrap(),
            None
        );
        // A damaged one is an error naming the file and the fix.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(bytes.len() - 1);
        std::fs::write(&path, bytes).unwrap();
        let error = ChunkRecord::load(&path, record.sha256)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("x.iso.chunks") && error.contains("delete it"),
            "{error}"
        );
    }
}
