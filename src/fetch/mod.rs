//! Downloads: installer images (and other files) fetched into a cache and verified.
//!
//! A [`Request`] names mirrors, a [`ChecksumSource`] and a destination; a [`Fetcher`] makes it
//! so, reporting to a [`Progress`]:
//!
//! - the body is received on one thread and hashed and written to `DEST.partial` on another
//!   (a bounded pipeline of 1 MiB buffers, so the network, the hash and the disk overlap);
//!   after the body
//!   ended, the partial is fsynced, its digest compared, and only a match is renamed to
//!   `DEST`. `DEST` never holds unverified bytes (unless the checksum source is
//!   [`ChecksumSource::Unverified`], which the operator asked for loudly);
//! - a partial left by an interrupted run is hashed again and resumed with `Range`; only a
//!   `206` with the right `Content-Range` is appended, a `200` starts over from byte 0;
//! - connection failures, timeouts, truncated bodies and 5xx are retried with exponential
//!   backoff ([`FetchOptions`]), then the next mirror is tried; 4xx and TLS failures go to the
//!   next mirror at once; a checksum mismatch deletes the partial and ends the fetch;
//! - HTTP is reqwest's blocking client over rustls with `ring`, no compression
//!   (`Accept-Encoding: identity`: the hash is of the bytes on the server), trusting the
//!   system CA store and the bundled Mozilla roots.
//!
//! The [`catalog`] says what can be fetched by name; [`cache`] where files go; [`stream`]
//! serves an image too large to store, verified chunk by chunk, to QEMU over NBD.
//!
//! ```no_run
//! use ferry::fetch::{Fetcher, FetchOptions, catalog::Catalog, progress};
//! let catalog = Catalog::load(None)?;
//! let request = catalog.get("debian-12-netboot")?.request(&ferry::fetch::cache::cache_dir(None))?;
//! let fetched = Fetcher::new(FetchOptions::default())?.fetch(&request, &mut *progress::for_stderr(false))?;
//! println!("{} sha256 {}", fetched.path.display(), fetched.sha256);
//! # Ok::<(), ferry::fetch::FetchError>(())
//! ```

pub mod cache;
pub mod catalog;
pub mod checksum;
pub mod debian;
mod download;
mod error;
mod http;
pub mod progress;
mod sink;
pub mod stream;

pub use checksum::{ChecksumSource, DebianPackage, Sha256Digest, find_in_sums};
pub use download::{FetchOptions, Fetched, Fetcher, Request, parse_url};
pub use error::FetchError;
pub use progress::Progress;
pub use sink::hash_file;

use crate::style::Style;

/// The requests for `image` (a catalog name or an http(s) URL) into `cache_dir`: one file, or
/// an installer tree's kernel and initrd.
///
/// The checksum comes from `sha256` if given (for a single file), else from the catalog entry,
/// else as [`url_request`] finds it.
pub fn resolve(
    image: &str,
    sha256: Option<Sha256Digest>,
    insecure: bool,
    catalog_dir: Option<&std::path::Path>,
    cache_dir: &std::path::Path,
) -> Result<Vec<Request>, FetchError> {
    if image.contains("://") {
        return Ok(vec![url_request(image, sha256, insecure, cache_dir)?]);
    }
    let mut requests = catalog::Catalog::load(catalog_dir)?
        .get(image)?
        .requests(cache_dir)?;
    if let (Some(digest), [request]) = (sha256, requests.as_mut_slice()) {
        request.checksum = ChecksumSource::Sha256(digest);
    }
    Ok(requests)
}

/// The request for the file at `url` into `cache_dir`, checked against `sha256` if given, else
/// against a `SHA256SUMS` or `NAME.sha256` next to it; `insecure` accepts a URL with none.
pub fn url_request(
    url: &str,
    sha256: Option<Sha256Digest>,
    insecure: bool,
    cache_dir: &std::path::Path,
) -> Result<Request, FetchError> {
    let url = parse_url(url)?;
    let checksum = match (sha256, insecure) {
        (Some(digest), _) => ChecksumSource::Sha256(digest),
        (None, true) => ChecksumSource::Unverified,
        (None, false) => ChecksumSource::Discover,
    };
    Ok(Request {
        dest: cache::path_for(cache_dir, &url),
        urls: vec![url],
        checksum,
    })
}

/// `ferry fetch`: fetches `request`, says on stderr how it was verified, and prints the
/// verified file's path on stdout.
pub fn fetch_command(request: &Request, quiet: bool, style: Style) -> Result<(), FetchError> {
    let fetcher = Fetcher::new(FetchOptions::from_env()?)?;
    let fetched = fetcher.fetch(request, &mut *progress::for_stderr(quiet))?;
    if !fetched.verified {
        eprintln!(
            "{}",
            style.warning(format_args!(
                "{} was NOT VERIFIED (--insecure-no-checksum); its sha256 is {}",
                fetched.path.display(),
                fetched.sha256
            ))
        );
    } else if !quiet {
        let how = if fetched.cached {
            "cached, verified again"
        } else {
            "verified"
        };
        eprintln!(
            "ferry: fetch  {} ({how}, sha256 {})",
            fetched.path.display(),
            fetched.sha256
        );
    }
    println!("{}", fetched.path.display());
    Ok(())
}
