//! What can go wrong while fetching, each with the fix in its message.

use std::path::PathBuf;

use super::checksum::Sha256Digest;

/// A download that did not end with a verified file. The final path never holds unverified
/// bytes: after any of these it does not exist (or holds the previous verified copy), and a
/// `NAME.partial` may remain for the next attempt to resume.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("invalid URL {url:?}: {message}")]
    BadUrl { url: String, message: String },
    #[error("{url}: HTTP {status}{}", status_hint(*status))]
    Http { url: String, status: u16 },
    #[error(
        "{url}: TLS: {message} (is the system's CA store complete? ferry trusts it plus the Mozilla roots)"
    )]
    Tls { url: String, message: String },
    #[error("{url}: {message} (gave up after {attempts} attempts; run ferry again to resume)")]
    Transfer {
        url: String,
        message: String,
        attempts: u32,
    },
    #[error(
        "checksum mismatch for {url}: expected sha256 {expected}, got {actual}; the download was deleted \
         (check the expected checksum, or try another mirror)"
    )]
    Mismatch {
        url: String,
        expected: Sha256Digest,
        actual: Sha256Digest,
    },
    #[error(
        "{url}: no checksum to verify it with (none given and no SHA256SUMS next to it); \
         pass --sha256 HEX, or --insecure-no-checksum to use it unverified"
    )]
    NoChecksum { url: String },
    #[error("{sums_url} lists no checksum for {file}: pass --sha256 HEX")]
    NotListed { sums_url: String, file: String },
    #[error(transparent)]
    Debian(#[from] Box<super::debian::DebianError>),
    #[error("every mirror failed:{}", list(.0))]
    Mirrors(Vec<(String, FetchError)>),
    #[error("{}: another ferry is downloading this file (its .partial is locked); wait for it", path.display())]
    Busy { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("unknown image {name:?}; `ferry images` lists the catalog")]
    UnknownImage { name: String },
    #[error("catalog {location}: {message}")]
    Catalog { location: String, message: String },
    #[error("{0}")]
    Setup(String),
}

fn status_hint(status: u16) -> &'static str {
    match status {
        404 | 410 => " (the file is not there: the catalog entry or URL may be out of date)",
        401 | 403 => " (access denied)",
        _ => "",
    }
}

fn list(errors: &[(String, FetchError)]) -> String {
    errors.iter().map(|(_, e)| format!("\n  {e}")).collect()
}

impl From<super::debian::DebianError> for FetchError {
    fn from(error: super::debian::DebianError) -> FetchError {
        FetchError::Debian(Box::new(error))
    }
}

impl FetchError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> FetchError {
        FetchError::Io {
            path: path.into(),
            source,
        }
    }

    /// Whether another mirror could do better. Local failures (disk full, a locked partial) and
    /// a checksum mismatch end the whole fetch.
    pub(crate) fn mirror_specific(&self) -> bool {
        matches!(
            self,
            FetchError::Http { .. } | FetchError::Tls { .. } | FetchError::Transfer { .. }
        )
    }
}
