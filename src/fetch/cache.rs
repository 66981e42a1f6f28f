//! Where downloads live: the cache directory and the path of each URL in it.
//!
//! A URL's cached path is a pure function of the URL (`CACHE/HOST[_PORT]/PATH`), so `ferry plan`
//! can name it without touching the network, and two images with the same file name (Debian
//! 12's and 13's `mini.iso`) do not collide.

use std::path::{Path, PathBuf};

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
