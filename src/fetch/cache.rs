//! Where downloads live: the cache directory and the path of each URL in it.
//!
//! A URL's cached path is a pure function of the URL (`CACHE/HOST[_PORT]/PATH`), so `ferry plan`
//! can name it without touching the network, and two images with the same file name (Debian
//! 12's and 13's `mini.iso`) do not collide.
//!
//! What the cache holds is listed, pruned and cleaned as [`Cached`] units (`ferry cache`): a
//! downloaded file with its chunk record, a partial download, or a QEMU assembled from
//! Debian's archive (a directory under `qemu-debian/`, one unit).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nix::fcntl::{Flock, FlockArg};
use serde::Serialize;

use sha2::{Digest, Sha256};
use url::Url;

/// The cache directory: `explicit` (from `--cache-dir` or `FERRY_CACHE`), else `/var/cache/ferry`
/// as root, else `$XDG_CACHE_HOME/ferry`, else `~/.cache/ferry`.
pub fn cache_dir(explicit: Option<&Path>) -> PathBuf {
    if let Some(dir) = explicit {
        return dir.to_path_buf();
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/cache/ferry");
    }
    let xdg = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    let home = || std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache"));
    xdg.or_else(home)
        .unwrap_or_else(std::env::temp_dir)
        .join("ferry")
}

/// The cached path of `url` under `cache`: `HOST[_PORT]/SEGMENTS...`, with a query (rare for
/// images) folded into a short hash suffix.
pub fn path_for(cache: &Path, url: &Url) -> PathBuf {
    let mut host = url
        .host_str()
        .unwrap_or("local")
        .replace(['[', ']', ':'], "_");
    if let Some(port) = url.port() {
        host = format!("{host}_{port}");
    }
    let mut path = cache.join(safe(&host));
    let segments: Vec<&str> = url
        .path_segments()
        .map(|s| s.filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    for segment in &segments {
        path.push(safe(
            &percent_encoding::percent_decode_str(segment).decode_utf8_lossy(),
        ));
    }
    if segments.is_empty() {
        path.push("index");
    }
    if let Some(query) = url.query() {
        let hash = Sha256::digest(query.as_bytes());
        let suffix = hex::encode(&hash[..6]);
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        path.set_file_name(format!("{name}-q{suffix}"));
    }
    path
}

/// `PATH.partial`: where a download is written until its checksum matched.
pub fn partial_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    dest.with_file_name(name)
}

/// A path segment that cannot escape its directory or hide.
fn safe(segment: &str) -> String {
    let cleaned: String = segment
        .chars()
        .map(|c| if c == '/' || c == '\0' { '_' } else { c })
        .collect();
    if cleaned.starts_with('.') || cleaned.is_empty() {
        format!("_{cleaned}")
    } else {
        cleaned
    }
}

/// Marks a cached file or unit as used now: `ferry cache prune` removes what was unused longest.
pub fn touch(path: &Path) {
    if let Err(e) = File::open(path).and_then(|f| f.set_modified(SystemTime::now())) {
        tracing::debug!("cannot mark {} as used: {e}", path.display());
    }
}

/// What a cache unit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CachedKind {
    /// A verified download (an image, a kernel, a Debian index or package).
    File,
    /// An unfinished download, resumed by the next fetch of its URL.
    Partial,
    /// The chunk hashes of an image that was streamed, not stored.
    Chunks,
    /// A QEMU assembled from Debian's archive, or its record of the package set.
    Qemu,
}

impl CachedKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CachedKind::File => "file",
            CachedKind::Partial => "partial",
            CachedKind::Chunks => "chunks",
            CachedKind::Qemu => "qemu",
        }
    }
}

/// One unit of the cache: removed as a whole.
#[derive(Debug, Clone)]
pub struct Cached {
    pub path: PathBuf,
    pub kind: CachedKind,
    pub bytes: u64,
    /// When it was last written or used (its modification time).
    pub last_used: SystemTime,
}

impl Cached {
    /// A partial download another ferry is writing right now (it holds the file's lock).
    pub fn in_use(&self) -> bool {
        self.kind == CachedKind::Partial
            && File::open(&self.path)
                .is_ok_and(|f| Flock::lock(f, FlockArg::LockExclusiveNonblock).is_err())
    }

    /// Removes the unit; a file's chunk record (`FILE.chunks`) goes with it.
    pub fn remove(&self) -> std::io::Result<()> {
        if self.path.is_dir() {
            return std::fs::remove_dir_all(&self.path);
        }
        std::fs::remove_file(&self.path)?;
        let mut chunks = self.path.clone().into_os_string();
        chunks.push(".chunks");
        match std::fs::remove_file(chunks) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Every unit under `cache`, largest first. Empty when the cache does not exist yet.
pub fn units(cache: &Path) -> std::io::Result<Vec<Cached>> {
    let mut found = Vec::new();
    if cache.is_dir() {
        collect(cache, cache, &mut found)?;
    }
    found.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.path.cmp(&b.path)));
    Ok(found)
}

/// The directory QEMU units live in (see `qemu::archive`): each child is one unit.
pub const QEMU_DIR: &str = "qemu-debian";

fn collect(cache: &Path, dir: &Path, found: &mut Vec<Cached>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path)?;
        let qemu = dir == cache.join(QEMU_DIR) && path.file_name() != Some("debs".as_ref());
        if meta.is_dir() && !qemu {
            collect(cache, &path, found)?;
            continue;
        }
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.ends_with(".chunks") && path.with_extension("").is_file() {
            continue; // counted with its file
        }
        let kind = match () {
            _ if qemu => CachedKind::Qemu,
            _ if name.ends_with(".partial") => CachedKind::Partial,
            _ if name.ends_with(".chunks") => CachedKind::Chunks,
            _ => CachedKind::File,
        };
        let bytes = match meta.is_dir() {
            true => dir_bytes(&path)?,
            false => meta.len(),
        };
        let last_used = meta.modified()?;
        found.push(Cached {
            path,
            kind,
            bytes,
            last_used,
        });
    }
    Ok(())
}

fn dir_bytes(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let meta = std::fs::symlink_metadata(&path)?;
        total += match meta.is_dir() {
            true => dir_bytes(&path)?,
            false => meta.len(),
        };
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(url: &str) -> String {
        path_for(Path::new("/c"), &Url::parse(url).unwrap())
            .display()
            .to_string()
    }

    #[test]
    fn cached_paths() {
        assert_eq!(
            p(
                "https://deb.debian.org/debian/dists/bookworm/main/installer-amd64/current/images/netboot/mini.iso"
            ),
            "/c/deb.debian.org/debian/dists/bookworm/main/installer-amd64/current/images/netboot/mini.iso"
        );
        assert_eq!(
            p("http://127.0.0.1:8080/a/../b%2F..%2Fx.iso"),
            "/c/127.0.0.1_8080/b_.._x.iso"
        );
        assert_eq!(p("http://h/.hidden"), "/c/h/_.hidden");
        assert_eq!(p("http://h/"), "/c/h/index");
        assert_eq!(p("http://[::1]/x"), "/c/___1_/x");
        assert!(p("http://h/get?id=1").starts_with("/c/h/get-q"));
        assert_ne!(p("http://h/get?id=1"), p("http://h/get?id=2"));
        assert_eq!(
            partial_path(Path::new("/c/h/x.iso")),
            Path::new("/c/h/x.iso.partial")
        );
    }

    #[test]
    fn explicit_cache_dir_wins() {
        assert_eq!(cache_dir(Some(Path::new("/x"))), Path::new("/x"));
    }
}
