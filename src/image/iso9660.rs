//! Read-only access to ISO 9660 images: enough to read boot menus and extract kernels.
//!
//! Names come from Rock Ridge (`NM` entries, following `CE` continuation areas) when the
//! image has it, else from the Joliet supplementary volume descriptor (UCS-2 big endian),
//! else from the plain ISO 9660 names with the `;1` version and a trailing `.` removed.
//! Path lookups try the exact name first and then a case-insensitive match, because boot
//! configs say `/isolinux/isolinux.cfg` where a plain ISO says `ISOLINUX/ISOLINUX.CFG;1`.

use std::fs::File;
use std::io;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The ISO 9660 logical sector size; volume descriptors start at sector 16.
const SECTOR: u64 = 2048;
/// Directories larger than this are treated as corrupt rather than read into memory.
const MAX_DIR_SIZE: u64 = 64 << 20;
/// How many `CE` continuation areas one directory record may chain through.
const MAX_CONTINUATIONS: usize = 32;
/// How many directory levels a path may have (guards against loops through `CL` links).
const MAX_DEPTH: usize = 64;
/// The largest file [`Iso::read`] takes into memory: boot configs are kilobytes, and an
/// image's record may claim up to 4 GiB.
pub const MAX_READ: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum IsoError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: not an ISO 9660 image (no CD001 at sector 16)")]
    NotIso { path: PathBuf },
    #[error("{image}: damaged ISO 9660 image: {what}")]
    Malformed { image: PathBuf, what: String },
    #[error("file not found on ISO {image}: {path}")]
    NotFound { image: PathBuf, path: String },
    #[error("{path} on ISO {image} is not a directory")]
    NotADirectory { image: PathBuf, path: String },
    #[error("{path} on ISO {image} is a directory, not a file")]
    IsADirectory { image: PathBuf, path: String },
    #[error("{path} on ISO {image} is {size} bytes, more than the {} MiB ferry reads as a config", MAX_READ >> 20)]
    TooLarge {
        image: PathBuf,
        path: String,
        size: u64,
    },
    #[error("{path} on ISO {image} is {what}, which ferry cannot read")]
    Unsupported {
        image: PathBuf,
        path: String,
        what: &'static str,
    },
    #[error("cannot write {dest} (extracting {path} from ISO {image}): {source}")]
    Write {
        image: PathBuf,
        path: String,
        dest: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub is_dir: bool,
    pub size: u64,
}

/// Which directory tree and which names are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameScheme {
    /// The primary tree with Rock Ridge names; `skip` is the SUSP `SP` skip length.
    RockRidge { skip: u8 },
    /// The Joliet supplementary tree.
    Joliet,
    /// The primary tree with ISO 9660 names.
    Iso9660,
}

/// A directory record, decoded.
#[derive(Debug, Clone)]
struct Record {
    name: String,
    is_dir: bool,
    /// Start block of the extent.
    lba: u32,
    size: u64,
    /// More records for this file follow (ISO 9660 multi-extent files).
    multi_extent: bool,
    interleaved: bool,
    /// Rock Ridge `RE`: a relocated directory, listed in its real place through a `CL` link.
    relocated: bool,
}

/// Where an image's bytes come from: a file, or a verified stream
/// (`crate::fetch::stream::StreamedImage`) when the image is not stored here.
pub trait Source: Send + Sync {
    /// Fills `buf` from `offset`; fewer bytes than asked for is an `UnexpectedEof` error.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

impl<T: Source + ?Sized> Source for std::sync::Arc<T> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        (**self).read_exact_at(buf, offset)
    }
}

impl Source for File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }
}

impl std::fmt::Debug for Iso {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Iso")
            .field("path", &self.path)
            .field("volume_id", &self.volume_id)
            .finish_non_exhaustive()
    }
}

/// An open ISO 9660 image.
pub struct Iso {
    file: Box<dyn Source>,
    path: PathBuf,
    block_size: u64,
    volume_id: String,
    root: Record,
    scheme: NameScheme,
}

impl Iso {
    /// Open an image and read its volume descriptors.
    pub fn open(path: &Path) -> Result<Iso, IsoError> {
        let file = File::open(path).map_err(|source| IsoError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Iso::from_source(Box::new(file), path)
    }

    /// Reads the image from `source`; `path` names it in messages (for a stream: the cache
    /// path it would have, or its URL).
    pub fn from_source(file: Box<dyn Source>, path: &Path) -> Result<Iso, IsoError> {
        let io_err = |source| IsoError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut iso = Iso {
            file,
            path: path.to_path_buf(),
            block_size: SECTOR,
            volume_id: String::new(),
            root: Record {
                name: String::new(),
                is_dir: true,
                lba: 0,
                size: 0,
                multi_extent: false,
                interleaved: false,
                relocated: false,
            },
            scheme: NameScheme::Iso9660,
        };

        let mut primary = None;
        let mut joliet = None;
        for sector in 16..16 + 64u64 {
            let mut vd = [0u8; 2048];
            match iso.file.read_exact_at(&mut vd, sector * SECTOR) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    if sector == 16 {
                        return Err(IsoError::NotIso {
                            path: path.to_path_buf(),
                        });
                    }
                    break;
                }
                Err(e) => return Err(io_err(e)),
            }
            if &vd[1..6] != b"CD001" {
                if sector == 16 {
                    return Err(IsoError::NotIso {
                        path: path.to_path_buf(),
                    });
                }
                break;
            }
            match vd[0] {
                1 if primary.is_none() => primary = Some(vd),
                2 if joliet.is_none() && is_joliet_escape(&vd[88..120]) => joliet = Some(vd),
                255 => break,
                _ => {}
            }
        }
        let Some(pvd) = primary else {
            return Err(iso.malformed("no primary volume descriptor"));
        };
        let block_size = u64::from(u16::from_le_bytes([pvd[128], pvd[129]]));
        if !matches!(block_size, 512 | 1024 | 2048) {
            return Err(iso.malformed(format!("unsupported logical block size {block_size}")));
        }
        iso.block_size = block_size;
        iso.volume_id = String::from_utf8_lossy(&pvd[40..72]).trim_end().to_string();
        iso.root = iso.root_record(&pvd[156..190])?;

        if let Some(skip) = iso.rock_ridge_skip()? {
            iso.scheme = NameScheme::RockRidge { skip };
        } else if let Some(svd) = joliet {
            iso.root = iso.root_record(&svd[156..190])?;
            iso.scheme = NameScheme::Joliet;
        }
        Ok(iso)
    }

    /// The primary volume descriptor's volume identifier (what `root=LABEL=` refers to).
    pub fn volume_id(&self) -> &str {
        &self.volume_id
    }

    /// Which names this image is read with.
    pub fn name_scheme(&self) -> NameScheme {
        self.scheme
    }

    /// The image file this was opened from.
    pub fn image_path(&self) -> &Path {
        &self.path
    }

    /// Read a whole file of at most [`MAX_READ`] bytes into memory (meant for configs; use
    /// [`Iso::extract`] for big files).
    pub fn read(&self, path: &str) -> Result<Vec<u8>, IsoError> {
        let rec = self.file_record(path)?;
        if rec.size > MAX_READ {
            return Err(IsoError::TooLarge {
                image: self.path.clone(),
                path: path.to_string(),
                size: rec.size,
            });
        }
        let mut buf = vec![0u8; rec.size as usize];
        self.read_at(&mut buf, u64::from(rec.lba) * self.block_size)?;
        Ok(buf)
    }

    /// Copies files, one after the other, into `dest` (created or truncated), streaming;
    /// returns the bytes written. Several files make one (Linux takes concatenated initrds).
    /// Not synced to disk: the copies are scratch files that a crash may lose (they are
    /// extracted again), and an fsync would delay the boot.
    pub fn extract(&self, paths: &[&str], dest: &Path) -> Result<u64, IsoError> {
        let write_err = |path: &str| {
            let (image, path, dest) = (self.path.clone(), path.to_string(), dest.to_path_buf());
            move |source| IsoError::Write {
                image,
                path,
                dest,
                source,
            }
        };
        let mut out = File::create(dest).map_err(write_err(&paths.join(" + ")))?;
        // Positional reads through the source (a file, or a stream that verifies each chunk).
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0;
        for path in paths {
            let rec = self.file_record(path)?;
            let start = u64::from(rec.lba) * self.block_size;
            let mut done = 0;
            while done < rec.size {
                let n = (rec.size - done).min(buf.len() as u64) as usize;
                match self.file.read_exact_at(&mut buf[..n], start + done) {
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        return Err(
                            self.malformed(format!("{path} extends past the end of the image"))
                        );
                    }
                    other => other.map_err(|source| IsoError::Io {
                        path: self.path.clone(),
                        source,
                    })?,
                }
                out.write_all(&buf[..n]).map_err(write_err(path))?;
                done += n as u64;
            }
            total += done;
        }
        Ok(total)
    }

    /// Whether a file or directory exists at `path`.
    pub fn exists(&self, path: &str) -> bool {
        self.lookup(path).is_ok()
    }

    /// The entries of a directory, without `.` and `..`.
    pub fn read_dir(&self, path: &str) -> Result<Vec<DirEntry>, IsoError> {
        let rec = self.lookup(path)?;
        if !rec.is_dir {
            return Err(IsoError::NotADirectory {
                image: self.path.clone(),
                path: path.to_string(),
            });
        }
        Ok(self
            .dir_records(&rec, path)?
            .into_iter()
            .map(|r| DirEntry {
                name: r.name,
                is_dir: r.is_dir,
                size: r.size,
            })
            .collect())
    }

    /// Metadata of one file or directory.
    pub fn stat(&self, path: &str) -> Result<DirEntry, IsoError> {
        let rec = self.lookup(path)?;
        Ok(DirEntry {
            name: rec.name,
            is_dir: rec.is_dir,
            size: rec.size,
        })
    }

    /// Something that identifies a file's content on the image (its start block), so that
    /// two spellings of one path (`/EFI/BOOT` and `/efi/boot`) can be recognised.
    pub(crate) fn file_identity(&self, path: &str) -> Option<u32> {
        self.lookup(path).ok().map(|r| r.lba)
    }

    fn malformed(&self, what: impl Into<String>) -> IsoError {
        IsoError::Malformed {
            image: self.path.clone(),
            what: what.into(),
        }
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), IsoError> {
        self.file
            .read_exact_at(buf, offset)
            .map_err(|source| IsoError::Io {
                path: self.path.clone(),
                source,
            })
    }

    fn root_record(&self, raw: &[u8]) -> Result<Record, IsoError> {
        let (rec, _) =
            parse_record(raw).ok_or_else(|| self.malformed("bad root directory record"))?;
        Ok(Record {
            name: String::new(),
            is_dir: true,
            ..rec
        })
    }

    /// SUSP says the first record of the root directory starts its system use area with `SP`.
    fn rock_ridge_skip(&self) -> Result<Option<u8>, IsoError> {
        let mut sector = vec![0u8; self.block_size as usize];
        self.read_at(&mut sector, u64::from(self.root.lba) * self.block_size)?;
        let len = usize::from(sector[0]);
        if len < 34 || len > sector.len() {
            return Ok(None);
        }
        let name_len = usize::from(sector[32]);
        let su = 33 + name_len + usize::from(name_len % 2 == 0);
        let area = sector.get(su..len).unwrap_or(&[]);
        if area.len() >= 7 && &area[0..2] == b"SP" && area[4] == 0xBE && area[5] == 0xEF {
            Ok(Some(area[6]))
        } else {
            Ok(None)
        }
    }

    fn file_record(&self, path: &str) -> Result<Record, IsoError> {
        let rec = self.lookup(path)?;
        if rec.is_dir {
            return Err(IsoError::IsADirectory {
                image: self.path.clone(),
                path: path.to_string(),
            });
        }
        let unsupported = |what| IsoError::Unsupported {
            image: self.path.clone(),
            path: path.to_string(),
            what,
        };
        if rec.multi_extent {
            return Err(unsupported("a multi-extent file (4 GiB or larger)"));
        }
        if rec.interleaved {
            return Err(unsupported("an interleaved file"));
        }
        Ok(rec)
    }

    /// Resolve a path: `//`, `.` and `..` allowed; exact name first, then case-insensitive.
    fn lookup(&self, path: &str) -> Result<Record, IsoError> {
        let mut stack: Vec<Record> = vec![self.root.clone()];
        let not_found = || IsoError::NotFound {
            image: self.path.clone(),
            path: path.to_string(),
        };
        for part in path.split('/') {
            match part {
                "" | "." => continue,
                ".." => {
                    if stack.len() > 1 {
                        stack.pop();
                    }
                    continue;
                }
                _ => {}
            }
            if stack.len() > MAX_DEPTH {
                return Err(not_found());
            }
            let dir = stack.last().expect("root stays on the stack");
            if !dir.is_dir {
                return Err(IsoError::NotADirectory {
                    image: self.path.clone(),
                    path: path.to_string(),
                });
            }
            let records = self.dir_records(dir, path)?;
            let found = records
                .iter()
                .find(|r| r.name == part)
                .or_else(|| {
                    records
                        .iter()
                        .find(|r| names_match_ignore_case(&r.name, part))
                })
                .cloned()
                .ok_or_else(not_found)?;
            stack.push(found);
        }
        Ok(stack.pop().expect("root stays on the stack"))
    }

    /// Decode the records of a directory (without `.`, `..` and relocated directories).
    fn dir_records(&self, dir: &Record, path: &str) -> Result<Vec<Record>, IsoError> {
        if dir.size > MAX_DIR_SIZE {
            return Err(self.malformed(format!(
                "directory on the way to {path} claims {} bytes",
                dir.size
            )));
        }
        let mut data = vec![0u8; dir.size as usize];
        self.read_at(&mut data, u64::from(dir.lba) * self.block_size)?;
        let bs = self.block_size as usize;
        let mut out: Vec<Record> = Vec::new();
        let mut pos = 0usize;
        // The previous record said "more extents follow": fold the next one into it.
        let mut continuing = false;
        while pos < data.len() {
            let len = usize::from(data[pos]);
            if len == 0 {
                // Records do not cross block boundaries; the rest of this block is padding.
                pos = (pos / bs + 1) * bs;
                continue;
            }
            let raw = data.get(pos..pos + len).ok_or_else(|| {
                self.malformed(format!("directory record overruns its directory ({path})"))
            })?;
            pos += len;
            let Some((mut rec, name_raw)) = parse_record(raw) else {
                return Err(self.malformed(format!("bad directory record on the way to {path}")));
            };
            if name_raw == [0] || name_raw == [1] {
                continue;
            }
            rec.name = match self.scheme {
                NameScheme::Iso9660 => plain_name(name_raw),
                NameScheme::Joliet => strip_version(&decode_ucs2(name_raw)),
                NameScheme::RockRidge { skip } => {
                    let name_len = name_raw.len();
                    let su = 33 + name_len + usize::from(name_len % 2 == 0) + usize::from(skip);
                    let susp = self.susp(raw.get(su..).unwrap_or(&[]))?;
                    if susp.relocated {
                        rec.relocated = true;
                    }
                    if let Some(child) = susp.child_link {
                        rec.is_dir = true;
                        rec.lba = child;
                        rec.size = self.dot_size(child)?;
                    }
                    susp.name.unwrap_or_else(|| plain_name(name_raw))
                }
            };
            if continuing {
                continuing = rec.multi_extent;
                if let Some(prev) = out.last_mut() {
                    prev.size += rec.size;
                    prev.multi_extent = true;
                }
                continue;
            }
            continuing = rec.multi_extent;
            if !rec.relocated {
                out.push(rec);
            }
        }
        Ok(out)
    }

    /// The size of a directory, from its own `.` record (for Rock Ridge `CL` links).
    fn dot_size(&self, lba: u32) -> Result<u64, IsoError> {
        let mut sector = vec![0u8; self.block_size as usize];
        self.read_at(&mut sector, u64::from(lba) * self.block_size)?;
        let len = usize::from(sector[0]);
        parse_record(sector.get(..len).unwrap_or(&[]))
            .map(|(r, _)| r.size)
            .ok_or_else(|| self.malformed(format!("bad relocated directory at block {lba}")))
    }

    /// Walk a system use area and its continuation areas.
    fn susp(&self, area: &[u8]) -> Result<Susp, IsoError> {
        let mut susp = Susp::default();
        let mut name = Vec::new();
        let mut have_name = false;
        let mut owned;
        let mut area = area;
        for _ in 0..MAX_CONTINUATIONS {
            let mut next = None;
            let mut i = 0;
            while i + 4 <= area.len() {
                let sig = &area[i..i + 2];
                let len = usize::from(area[i + 2]);
                if len < 4 || i + len > area.len() {
                    break;
                }
                let body = &area[i + 4..i + len];
                match sig {
                    b"ST" => break,
                    b"NM" if !body.is_empty() => {
                        let flags = body[0];
                        // CURRENT / PARENT flags name `.` and `..`: nothing to record.
                        if flags & 0b110 == 0 {
                            name.extend_from_slice(&body[1..]);
                            have_name = true;
                        }
                    }
                    b"CE" if body.len() >= 24 => {
                        let lba = le32(&body[0..4]);
                        let off = le32(&body[8..12]);
                        let n = le32(&body[16..20]);
                        next = Some((lba, off, n));
                    }
                    b"CL" if body.len() >= 8 => susp.child_link = Some(le32(&body[0..4])),
                    b"RE" => susp.relocated = true,
                    _ => {}
                }
                i += len;
            }
            let Some((lba, off, n)) = next else { break };
            if n == 0 || n > 64 * 1024 {
                break;
            }
            owned = vec![0u8; n as usize];
            self.read_at(
                &mut owned,
                u64::from(lba) * self.block_size + u64::from(off),
            )?;
            area = &owned;
        }
        if have_name {
            susp.name = Some(String::from_utf8_lossy(&name).into_owned());
        }
        Ok(susp)
    }
}

#[derive(Debug, Default)]
struct Susp {
    name: Option<String>,
    child_link: Option<u32>,
    relocated: bool,
}

/// Decode the fixed part of a directory record; returns it (name unset) and the raw name.
fn parse_record(raw: &[u8]) -> Option<(Record, &[u8])> {
    if raw.len() < 34 {
        return None;
    }
    let name_len = usize::from(raw[32]);
    let name = raw.get(33..33 + name_len)?;
    let flags = raw[25];
    Some((
        Record {
            name: String::new(),
            is_dir: flags & 0x02 != 0,
            lba: le32(&raw[2..6]),
            size: u64::from(le32(&raw[10..14])),
            multi_extent: flags & 0x80 != 0,
            interleaved: raw[26] != 0 || raw[27] != 0,
            relocated: false,
        },
        name,
    ))
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Joliet SVDs carry the escape sequence `%/@`, `%/C` or `%/E` (UCS-2 levels 1–3).
fn is_joliet_escape(esc: &[u8]) -> bool {
    esc.windows(3)
        .any(|w| w[0] == b'%' && w[1] == b'/' && matches!(w[2], b'@' | b'C' | b'E'))
}

fn decode_ucs2(raw: &[u8]) -> String {
    let units = raw
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]));
    char::decode_utf16(units)
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

/// `NAME.EXT;1` → `NAME.EXT`, `NAME.;1` → `NAME`.
fn strip_version(name: &str) -> String {
    let base = match name.rfind(';') {
        Some(i) => &name[..i],
        None => name,
    };
    base.strip_suffix('.').unwrap_or(base).to_string()
}

fn plain_name(raw: &[u8]) -> String {
    strip_version(&String::from_utf8_lossy(raw))
}

fn names_match_ignore_case(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b) || a.to_lowercase() == b.to_lowercase()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::process::Command;

    /// Build an ISO from `files` (path → content) with `xorriso -as mkisofs ARGS`; without
    /// `-R` in ARGS, Rock Ridge (which xorriso writes by default) is switched off.
    /// xorriso is required: these tests fail without it, they do not skip.
    pub(crate) fn build_iso(dir: &Path, args: &[&str], files: &[(&str, &[u8])]) -> PathBuf {
        let src = dir.join("src");
        for (path, content) in files {
            let p = src.join(path.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, content).unwrap();
        }
        let iso = dir.join("test.iso");
        let rock_ridge = if args.contains(&"-R") { "on" } else { "off" };
        let out = Command::new("xorriso")
            .args(["-rockridge", rock_ridge])
            .args(["-as", "mkisofs", "-quiet", "-V", "FERRY_TEST"])
            .args(args)
            .arg("-o")
            .arg(&iso)
            .arg(&src)
            .output()
            .expect("xorriso is required for the ISO tests (apt-get install xorriso)");
        assert!(
            out.status.success(),
            "xorriso failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        iso
    }

    fn big_content() -> Vec<u8> {
        // 1.5 MiB that is not periodic in 2048 bytes, so misplaced blocks show.
        let mut x: u32 = 12345;
        (0..3 * 512 * 1024 + 17)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (x >> 16) as u8
            })
            .collect()
    }

    const DEEP: &str = "/a/b/c/d/e/f/g/h/i/j/deep.txt";
    const LONG: &str = "a-rather-long-file-name-that-needs-rock-ridge-continuation-areas-to-hold-its-name-because-it-is-much-longer-than-what-fits-into-one-directory-record-together-with-the-other-rock-ridge-fields-like-px-and-tf.cfg";

    fn sample(dir: &Path, args: &[&str]) -> (Iso, Vec<u8>) {
        let big = big_content();
        let iso = build_iso(
            dir,
            args,
            &[
                ("/isolinux/isolinux.cfg", b"DEFAULT boot\n"),
                ("/boot/nix/store/abclinux/bzImage", &big),
                (DEEP, b"deep\n"),
                ("/linux", b"kernel"),
                ("/Docs/ReadMe.txt", b"mixed case"),
                ("/empty", b""),
            ],
        );
        (Iso::open(&iso).unwrap(), big)
    }

    fn common_checks(iso: &Iso, big: &[u8], dir: &Path) {
        assert_eq!(iso.volume_id(), "FERRY_TEST");
        assert_eq!(
            iso.read("/isolinux/isolinux.cfg").unwrap(),
            b"DEFAULT boot\n"
        );
        // Configs say lower case; whatever the ISO says, this must resolve.
        assert_eq!(
            iso.read("isolinux//ISOLINUX.CFG").unwrap(),
            b"DEFAULT boot\n"
        );
        assert_eq!(iso.read("/docs/readme.txt").unwrap(), b"mixed case");
        assert_eq!(iso.read("/linux").unwrap(), b"kernel");
        assert_eq!(iso.read("/empty").unwrap(), b"");
        assert_eq!(iso.read(DEEP).unwrap(), b"deep\n");
        assert_eq!(
            iso.read("/a/b/./c/../c/d/e/f/g/h/i/j/deep.txt").unwrap(),
            b"deep\n"
        );
        assert!(iso.exists("/a/b/c"));
        assert!(!iso.exists("/a/b/x"));

        let dest = dir.join("bzImage");
        let n = iso
            .extract(&["/boot//nix/store/abclinux/bzImage"], &dest)
            .unwrap();
        assert_eq!(n, big.len() as u64);
        assert!(std::fs::read(&dest).unwrap() == big);
        // Concatenated, as initrds are.
        let n = iso.extract(&["/linux", DEEP, "/linux"], &dest).unwrap();
        assert_eq!(n, 17);
        assert_eq!(std::fs::read(&dest).unwrap(), b"kerneldeep\nkernel");

        let root = iso.read_dir("/").unwrap();
        let names: Vec<String> = root.iter().map(|e| e.name.to_lowercase()).collect();
        for want in ["isolinux", "boot", "a", "linux", "docs", "empty"] {
            assert!(names.contains(&want.to_string()), "{want} not in {names:?}");
        }
        let linux = root
            .iter()
            .find(|e| e.name.eq_ignore_ascii_case("linux"))
            .unwrap();
        assert!(!linux.is_dir);
        assert_eq!(linux.size, 6);
        assert!(
            root.iter()
                .find(|e| e.name.eq_ignore_ascii_case("boot"))
                .unwrap()
                .is_dir
        );

        let err = iso.read("/isolinux/missing.cfg").unwrap_err();
        assert!(matches!(err, IsoError::NotFound { .. }));
        let msg = err.to_string();
        assert!(
            msg.contains("file not found on ISO") && msg.contains("/isolinux/missing.cfg"),
            "{msg}"
        );
        let err = iso.read("/linux/x").unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
        let err = iso.read("/isolinux").unwrap_err();
        assert!(err.to_string().contains("is a directory"), "{err}");
        let err = iso.read_dir("/linux").unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
        let err = iso
            .extract(&["/linux"], &dir.join("no/such/dir/x"))
            .unwrap_err();
        assert!(err.to_string().contains("cannot write"), "{err}");
    }

    #[test]
    fn rock_ridge() {
        let dir = tempfile::tempdir().unwrap();
        let (iso, big) = sample(dir.path(), &["-R"]);
        assert!(matches!(iso.name_scheme(), NameScheme::RockRidge { .. }));
        common_checks(&iso, &big, dir.path());
        // Rock Ridge keeps names exactly.
        let docs = iso.read_dir("/Docs").unwrap();
        assert_eq!(docs[0].name, "ReadMe.txt");
        assert!(
            iso.read_dir("/")
                .unwrap()
                .iter()
                .any(|e| e.name == "isolinux")
        );
    }

    #[test]
    fn rock_ridge_long_names_and_relocated_directories() {
        let dir = tempfile::tempdir().unwrap();
        let long = format!("/cfg/{LONG}");
        let iso = build_iso(
            dir.path(),
            &["-R", "-rr_reloc_dir", "RR_MOVED"],
            &[(&long, b"long"), (DEEP, b"deep\n")],
        );
        let iso = Iso::open(&iso).unwrap();
        assert_eq!(iso.read(&long).unwrap(), b"long");
        assert_eq!(iso.read_dir("/cfg").unwrap()[0].name, LONG);
        // The directory moved to /RR_MOVED is found where Rock Ridge says it belongs.
        assert_eq!(iso.read(DEEP).unwrap(), b"deep\n");
        assert!(
            iso.read_dir("/a/b/c/d/e/f/g/h")
                .unwrap()
                .iter()
                .any(|e| e.name == "i" && e.is_dir)
        );
    }

    /// Offset of the directory record named `name` (plain ISO 9660 names) in `image`.
    fn record_offset(image: &[u8], name: &[u8]) -> usize {
        image
            .windows(name.len() + 1)
            .position(|w| w[0] == name.len() as u8 && &w[1..] == name)
            .expect("record in the image")
            - 32
    }

    #[test]
    fn hostile_records_are_refused_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let path = build_iso(dir.path(), &[], &[("/boot/grub/grub.cfg", b"menu")]);
        let mut image = std::fs::read(&path).unwrap();
        let orig = image.clone();
        // A config claiming 4 GiB is not read into memory.
        let cfg = record_offset(&image, b"GRUB.CFG;1");
        image[cfg + 10..cfg + 14].copy_from_slice(&u32::MAX.to_le_bytes());
        // A directory whose extent is the root directory: a loop.
        let boot = record_offset(&image, b"BOOT");
        let root_lba = Iso::open(&path).unwrap().root.lba;
        image[boot + 2..boot + 6].copy_from_slice(&root_lba.to_le_bytes());
        std::fs::write(&path, &image).unwrap();

        let iso = Iso::open(&path).unwrap();
        let e = iso.read("/BOOT/GRUB/GRUB.CFG").unwrap_err();
        assert!(matches!(e, IsoError::NotFound { .. }), "{e}");
        let looped = "/BOOT".repeat(200);
        let e = iso.read_dir(&looped).unwrap_err();
        assert!(matches!(e, IsoError::NotFound { .. }), "{e}");
        assert!(
            iso.read_dir("/BOOT/BOOT/BOOT").is_ok(),
            "the loop resolves, bounded"
        );

        // The same claim, reached without the loop.
        image[boot + 2..boot + 6].copy_from_slice(&orig[boot + 2..boot + 6]);
        std::fs::write(&path, &image).unwrap();
        let iso = Iso::open(&path).unwrap();
        let e = iso.read("/boot/grub/grub.cfg").unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "/boot/grub/grub.cfg on ISO {} is 4294967295 bytes, more than the 16 MiB ferry reads as a config",
                path.display()
            )
        );
    }

    #[test]
    fn joliet() {
        let dir = tempfile::tempdir().unwrap();
        let (iso, big) = sample(dir.path(), &["-J"]);
        assert_eq!(iso.name_scheme(), NameScheme::Joliet);
        common_checks(&iso, &big, dir.path());
        assert_eq!(iso.read_dir("/Docs").unwrap()[0].name, "ReadMe.txt");
    }

    #[test]
    fn plain_iso_names() {
        let dir = tempfile::tempdir().unwrap();
        let (iso, big) = sample(dir.path(), &[]);
        assert_eq!(iso.name_scheme(), NameScheme::Iso9660);
        common_checks(&iso, &big, dir.path());
        // `;1` and the trailing `.` of `LINUX.;1` are gone.
        let root = iso.read_dir("/").unwrap();
        assert!(root.iter().any(|e| e.name == "LINUX"), "{root:?}");
        assert!(root.iter().any(|e| e.name == "ISOLINUX"), "{root:?}");
        assert_eq!(iso.read_dir("/isolinux").unwrap()[0].name, "ISOLINUX.CFG");
    }

    #[test]
    fn not_an_iso() {
        let dir = tempfile::tempdir().unwrap();
        let zeros = dir.path().join("zeros.img");
        std::fs::write(&zeros, vec![0u8; 64 * 1024]).unwrap();
        let err = Iso::open(&zeros).unwrap_err();
        assert!(matches!(err, IsoError::NotIso { .. }));
        let msg = err.to_string();
        assert!(
            msg.contains("not an ISO 9660 image (no CD001 at sector 16)"),
            "{msg}"
        );
        assert!(msg.contains("zeros.img"), "{msg}");

        let short = dir.path().join("short.img");
        std::fs::write(&short, b"hello").unwrap();
        assert!(matches!(
            Iso::open(&short).unwrap_err(),
            IsoError::NotIso { .. }
        ));

        let missing = dir.path().join("missing.iso");
        let err = Iso::open(&missing).unwrap_err();
        assert!(matches!(err, IsoError::Io { .. }));
        assert!(err.to_string().contains("missing.iso"), "{err}");
    }
}
