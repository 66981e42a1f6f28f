//! The downloader: HTTP(S) GETs with resume, retries with backoff, mirrors in order, and the
//! SHA-256 computed while the bytes are written, on another thread than the one receiving them.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{ACCEPT_ENCODING, CONTENT_RANGE, RANGE};
use serde::Serialize;
use url::Url;

use super::cache::partial_path;
use super::checksum::{ChecksumSource, DebianPackage, Sha256Digest, find_in_sums};
use super::error::FetchError;
use super::http::{
    Failed, chain, classify, describe_io, parse_content_range, status_failure, tls_config,
};
use super::progress::Progress;
use super::sink::{Partial, Sink, hash_file, pipe};

/// Timeouts and retry policy. [`FetchOptions::default`] suits real networks;
/// [`FetchOptions::from_env`] lets tests shorten them.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// How long to wait for a TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// How long to wait for the response headers, and for each read of the body.
    pub read_timeout: Duration,
    /// Tries per mirror for transient failures (resets, timeouts, 5xx), the first included.
    pub attempts: u32,
    /// The wait before the first retry; it doubles each time, up to `max_retry_delay`.
    pub retry_delay: Duration,
    pub max_retry_delay: Duration,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            connect_timeout: Duration::from_secs(15),
            read_timeout: Duration::from_secs(30),
            attempts: 4,
            retry_delay: Duration::from_secs(1),
            max_retry_delay: Duration::from_secs(16),
        }
    }
}

impl FetchOptions {
    /// The defaults, overridden by `FERRY_CONNECT_TIMEOUT`, `FERRY_READ_TIMEOUT`,
    /// `FERRY_RETRY_DELAY` (durations such as `2s` or `100ms`) and `FERRY_FETCH_ATTEMPTS`.
    pub fn from_env() -> Result<FetchOptions, FetchError> {
        let mut opts = FetchOptions::default();
        let duration = |name: &str, slot: &mut Duration| -> Result<(), FetchError> {
            if let Ok(text) = std::env::var(name) {
                *slot = humantime::parse_duration(&text).map_err(|e| {
                    FetchError::Setup(format!("{name}={text:?}: {e} (write e.g. 30s or 500ms)"))
                })?;
            }
            Ok(())
        };
        duration("FERRY_CONNECT_TIMEOUT", &mut opts.connect_timeout)?;
        duration("FERRY_READ_TIMEOUT", &mut opts.read_timeout)?;
        duration("FERRY_RETRY_DELAY", &mut opts.retry_delay)?;
        if let Ok(text) = std::env::var("FERRY_FETCH_ATTEMPTS") {
            opts.attempts = text.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                FetchError::Setup(format!(
                    "FERRY_FETCH_ATTEMPTS={text:?}: expected a positive number"
                ))
            })?;
        }
        Ok(opts)
    }

    fn backoff(&self, retry: u32) -> Duration {
        self.retry_delay
            .saturating_mul(1 << retry.min(16))
            .min(self.max_retry_delay)
    }
}

/// One file to fetch.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Request {
    /// Mirrors, tried in order; all serve the same file.
    pub urls: Vec<Url>,
    pub checksum: ChecksumSource,
    /// The final path; the download goes to `DEST.partial` until verified.
    pub dest: PathBuf,
}

impl Request {
    /// The first mirror, for messages.
    pub fn url(&self) -> &str {
        self.urls.first().map_or("", Url::as_str)
    }
}

/// A fetched file.
#[derive(Debug, Clone, Serialize)]
pub struct Fetched {
    pub path: PathBuf,
    pub bytes: u64,
    pub sha256: Sha256Digest,
    /// Whether `sha256` matched an expected digest (false only with [`ChecksumSource::Unverified`]).
    pub verified: bool,
    /// The file was already in the cache (and matched the expected digest again).
    pub cached: bool,
    /// The mirror that served it (none when cached).
    pub url: Option<String>,
}

/// Parses `text` as a URL, for requests built from user input.
pub fn parse_url(text: &str) -> Result<Url, FetchError> {
    let url = Url::parse(text).map_err(|e| FetchError::BadUrl {
        url: text.into(),
        message: e.to_string(),
    })?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        other => Err(FetchError::BadUrl {
            url: text.into(),
            message: format!("scheme {other}: only http and https"),
        }),
    }
}

/// Downloads files. One `Fetcher` holds one HTTP client (and its connection pool); clones
/// share it.
#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::blocking::Client,
    opts: FetchOptions,
}

impl Fetcher {
    pub fn new(opts: FetchOptions) -> Result<Fetcher, FetchError> {
        let client = reqwest::blocking::Client::builder()
            .tls_backend_preconfigured(tls_config())
            .connect_timeout(opts.connect_timeout)
            .timeout(opts.read_timeout)
            .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                FetchError::Setup(format!("cannot set up the HTTP client: {}", chain(&e)))
            })?;
        Ok(Fetcher { client, opts })
    }

    pub fn options(&self) -> &FetchOptions {
        &self.opts
    }

    /// Fetches `request.dest`, verified, unless a verified copy is already there.
    ///
    /// A cached file is hashed again and compared with the expected digest (which may have
    /// changed: a new point release behind the same URL); a stale copy is deleted and fetched
    /// again. A `.partial` left by an earlier attempt is re-hashed and resumed.
    pub fn fetch(
        &self,
        request: &Request,
        progress: &mut dyn Progress,
    ) -> Result<Fetched, FetchError> {
        let (expected, urls) = self.resolve(request, progress)?;
        let dest = &request.dest;
        if dest.is_file() {
            progress.message(&format!("verifying cached {}", dest.display()));
            let (actual, bytes) = hash_file(dest)?;
            match expected {
                Some(want) if want != actual => {
                    progress.message(&format!(
                        "cached {} is stale (sha256 {actual}, expected {want}); downloading again",
                        dest.display()
                    ));
                    std::fs::remove_file(dest).map_err(|e| FetchError::io(dest, e))?;
                }
                _ => {
                    super::cache::touch(dest);
                    let verified = expected.is_some();
                    return Ok(Fetched {
                        path: dest.clone(),
                        bytes,
                        sha256: actual,
                        verified,
                        cached: true,
                        url: None,
                    });
                }
            }
        }
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir).map_err(|e| FetchError::io(dir, e))?;
        }
        let mut partial = Partial::open(&partial_path(dest), progress)?;
        match self.receive(&urls, &mut partial, progress) {
            Ok(url) => {
                let (bytes, sha256) = partial.finish(dest, expected, &url)?;
                Ok(Fetched {
                    path: dest.clone(),
                    bytes,
                    sha256,
                    verified: expected.is_some(),
                    cached: false,
                    url: Some(url.to_string()),
                })
            }
            Err(e) => Err(partial.abandon(e)),
        }
    }

    /// The digest `request` must match (`None` when unverified) and its mirrors in order.
    pub(crate) fn resolve(
        &self,
        request: &Request,
        progress: &mut dyn Progress,
    ) -> Result<(Option<Sha256Digest>, Vec<Url>), FetchError> {
        match &request.checksum {
            // The chain of trust also names the package's current file in the pool.
            ChecksumSource::Debian(package) => {
                let (url, digest) = self.debian_package(package)?;
                let others = request.urls.iter().filter(|u| **u != url).cloned();
                let urls: Vec<Url> = std::iter::once(url.clone()).chain(others).collect();
                Ok((Some(digest), urls))
            }
            _ => Ok((
                self.expected_digest(request, progress)?,
                request.urls.clone(),
            )),
        }
    }

    /// Receives the whole file into `sink`, from the first mirror that delivers it (resuming
    /// after what `sink` already holds); returns that mirror.
    pub(crate) fn receive(
        &self,
        urls: &[Url],
        sink: &mut dyn Sink,
        progress: &mut dyn Progress,
    ) -> Result<Url, FetchError> {
        let mut failures = Vec::new();
        for (i, url) in urls.iter().enumerate() {
            match self.download_from(url, sink, progress) {
                Ok(()) => return Ok(url.clone()),
                Err(e) if e.mirror_specific() && urls.len() > 1 => {
                    if i + 1 < urls.len() {
                        progress.message(&format!("{e}; trying the next mirror"));
                    }
                    failures.push((url.to_string(), e));
                }
                Err(e) => return Err(e),
            }
        }
        Err(match failures.len() {
            1 => failures.pop().expect("one failure").1,
            _ => FetchError::Mirrors(failures),
        })
    }

    /// Reads `buf.len()` bytes at `offset` of the file at `url` (of `total` bytes) with one
    /// range request, retrying transient failures. A server that ignores `Range`, or whose file
    /// is no longer `total` bytes long, fails at once.
    pub(crate) fn read_range(
        &self,
        url: &Url,
        offset: u64,
        total: u64,
        buf: &mut [u8],
    ) -> Result<(), FetchError> {
        let end = offset + (buf.len() as u64).max(1) - 1;
        self.with_retries(url, &mut Traced, |fetcher, _| {
            let mut response = fetcher.send(url, Some((offset, Some(end))))?;
            let status = response.status();
            if status != StatusCode::PARTIAL_CONTENT {
                return Err(match status {
                    StatusCode::OK | StatusCode::RANGE_NOT_SATISFIABLE => {
                        Failed::Final(FetchError::Setup(format!(
                            "{url}: the server answered a range request with HTTP {}: streaming \
                             needs range requests (download the image instead)",
                            status.as_u16()
                        )))
                    }
                    _ => status_failure(url, status),
                });
            }
            let range = response
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_content_range);
            if range != Some((offset, Some(total))) {
                return Err(Failed::Final(FetchError::Setup(format!(
                    "{url}: asked for bytes {offset}-{end} of {total}, the server answered {range:?}: \
                     the file changed since it was verified"
                ))));
            }
            let mut filled = 0;
            while filled < buf.len() {
                match response.read(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(Failed::Transient(describe_io(&e))),
                }
            }
            if filled < buf.len() {
                return Err(Failed::Transient(format!(
                    "the connection closed after {filled} of {} bytes at {offset}",
                    buf.len()
                )));
            }
            Ok(())
        })
    }

    /// The size of the file at the first of `urls` that says, from one request for its first
    /// byte (no retries: the plan asks it, and a download still works without an answer).
    pub fn remote_size(&self, urls: &[Url]) -> Result<u64, FetchError> {
        let mut last = FetchError::Setup("no URL".into());
        for url in urls {
            let response = match self.send(url, Some((0, Some(0)))) {
                Ok(response) => response,
                Err(Failed::Final(e)) => {
                    last = e;
                    continue;
                }
                Err(Failed::Transient(e)) => {
                    last = FetchError::Setup(format!("{url}: {e}"));
                    continue;
                }
            };
            let size = match response.status() {
                StatusCode::PARTIAL_CONTENT => response
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_content_range)
                    .and_then(|(_, total)| total),
                StatusCode::OK => response.content_length(),
                status => {
                    last = match status_failure(url, status) {
                        Failed::Final(e) => e,
                        Failed::Transient(e) => FetchError::Setup(format!("{url}: {e}")),
                    };
                    continue;
                }
            };
            match size {
                Some(size) => return Ok(size),
                None => last = FetchError::Setup(format!("{url}: the server did not say its size")),
            }
        }
        Err(last)
    }

    /// The digest `request` must match, or `None` when it is [`ChecksumSource::Unverified`].
    pub fn expected_digest(
        &self,
        request: &Request,
        progress: &mut dyn Progress,
    ) -> Result<Option<Sha256Digest>, FetchError> {
        match &request.checksum {
            ChecksumSource::Sha256(digest) => Ok(Some(*digest)),
            ChecksumSource::Unverified => Ok(None),
            ChecksumSource::Debian(package) => self.debian_package(package).map(|(_, d)| Some(d)),
            ChecksumSource::SumsFile(reference) => self
                .digest_from_sums(request, &[reference.as_str()], progress)
                .map(Some),
            ChecksumSource::Discover => {
                let name = request
                    .urls
                    .first()
                    .and_then(|u| u.path_segments()?.next_back().map(str::to_string));
                let own = format!("{}.sha256", name.unwrap_or_default());
                match self.digest_from_sums(request, &["SHA256SUMS", &own], progress) {
                    Err(FetchError::Http {
                        status: 404 | 410, ..
                    }) => Err(FetchError::NoChecksum {
                        url: request.url().into(),
                    }),
                    Err(FetchError::Mirrors(errors))
                        if errors.iter().all(|(_, e)| {
                            matches!(
                                e,
                                FetchError::Http {
                                    status: 404 | 410,
                                    ..
                                }
                            )
                        }) =>
                    {
                        Err(FetchError::NoChecksum {
                            url: request.url().into(),
                        })
                    }
                    other => other.map(Some),
                }
            }
        }
    }

    /// A Debian package's current URL in the pool and its SHA-256, through the archive's
    /// chain of trust ([`super::debian`]: `InRelease` signed by Debian's archive keys →
    /// `Packages` → the package), fetched with this client.
    pub fn debian_package(
        &self,
        package: &DebianPackage,
    ) -> Result<(Url, Sha256Digest), FetchError> {
        let keyring = super::debian::Keyring::debian();
        let archive = super::debian::Archive::new(&package.archive, keyring, self);
        let suite = archive.suite(&package.suite)?;
        let found = archive.package(&suite, &package.component, &package.arch, &package.package)?;
        let url = format!(
            "{}/{}",
            package.archive.trim_end_matches('/'),
            found.filename
        );
        let digest = Sha256Digest::parse(&found.sha256).ok_or_else(|| {
            FetchError::Setup(format!(
                "{}: the Packages index lists a malformed SHA256",
                package.package
            ))
        })?;
        Ok((parse_url(&url)?, digest))
    }

    /// Fetches the first checksum file found (each of `references` against each mirror, in
    /// order) and finds the image's line in it.
    fn digest_from_sums(
        &self,
        request: &Request,
        references: &[&str],
        progress: &mut dyn Progress,
    ) -> Result<Sha256Digest, FetchError> {
        let mut failures = Vec::new();
        for image in &request.urls {
            for reference in references {
                let sums_url = image.join(reference).map_err(|e| FetchError::BadUrl {
                    url: reference.to_string(),
                    message: e.to_string(),
                })?;
                match self.get_small(&sums_url, progress) {
                    Ok(text) => {
                        return find_in_sums(&text, &sums_url, image).ok_or_else(|| {
                            FetchError::NotListed {
                                sums_url: sums_url.to_string(),
                                file: image
                                    .path()
                                    .rsplit('/')
                                    .next()
                                    .unwrap_or_default()
                                    .to_string(),
                            }
                        });
                    }
                    Err(e) if e.mirror_specific() => failures.push((sums_url.to_string(), e)),
                    Err(e) => return Err(e),
                }
            }
        }
        Err(match failures.len() {
            1 => failures.pop().expect("one failure").1,
            _ => FetchError::Mirrors(failures),
        })
    }

    /// GETs a small text file (a checksum list), with the same retries as a download.
    pub fn get_small(&self, url: &Url, progress: &mut dyn Progress) -> Result<String, FetchError> {
        let body = self.get_bytes(url, progress)?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// GETs a file of at most 64 MiB into memory (an index), with the same retries as a
    /// download.
    pub fn get_bytes(&self, url: &Url, progress: &mut dyn Progress) -> Result<Vec<u8>, FetchError> {
        const LIMIT: u64 = 64 << 20;
        self.with_retries(url, progress, |fetcher, _| {
            let response = fetcher.send(url, None)?;
            let status = response.status();
            if status != StatusCode::OK {
                return Err(status_failure(url, status));
            }
            let mut body = Vec::new();
            response
                .take(LIMIT + 1)
                .read_to_end(&mut body)
                .map_err(|e| Failed::Transient(describe_io(&e)))?;
            if body.len() as u64 > LIMIT {
                return Err(Failed::Final(FetchError::Setup(format!(
                    "{url}: larger than {LIMIT} bytes: not an index"
                ))));
            }
            Ok(body)
        })
    }

    /// Downloads from one mirror into `sink`, retrying transient failures.
    fn download_from(
        &self,
        url: &Url,
        sink: &mut dyn Sink,
        progress: &mut dyn Progress,
    ) -> Result<(), FetchError> {
        self.with_retries(url, progress, |fetcher, progress| {
            let result = fetcher.attempt(url, sink, progress);
            progress.finish();
            result
        })
    }

    fn with_retries<T>(
        &self,
        url: &Url,
        progress: &mut dyn Progress,
        mut attempt: impl FnMut(&Self, &mut dyn Progress) -> Result<T, Failed>,
    ) -> Result<T, FetchError> {
        let mut tries = 0;
        loop {
            tries += 1;
            match attempt(self, progress) {
                Ok(value) => return Ok(value),
                Err(Failed::Final(e)) => return Err(e),
                Err(Failed::Transient(message)) if tries < self.opts.attempts => {
                    let delay = self.opts.backoff(tries - 1);
                    progress.message(&format!(
                        "{url}: {message}; retrying in {} (attempt {} of {})",
                        humantime::format_duration(delay),
                        tries + 1,
                        self.opts.attempts
                    ));
                    std::thread::sleep(delay);
                }
                Err(Failed::Transient(message)) => {
                    return Err(FetchError::Transfer {
                        url: url.to_string(),
                        message,
                        attempts: tries,
                    });
                }
            }
        }
    }

    /// A GET, of `range` (first byte, last byte or the end) if given.
    fn send(
        &self,
        url: &Url,
        range: Option<(u64, Option<u64>)>,
    ) -> Result<reqwest::blocking::Response, Failed> {
        let mut request = self
            .client
            .get(url.clone())
            .header(ACCEPT_ENCODING, "identity");
        if let Some((first, last)) = range {
            let last = last.map(|n| n.to_string()).unwrap_or_default();
            request = request.header(RANGE, format!("bytes={first}-{last}"));
        }
        request.send().map_err(|e| classify(url, &e))
    }

    /// One GET: resumes after what `sink` holds, and feeds it the rest.
    fn attempt(
        &self,
        url: &Url,
        sink: &mut dyn Sink,
        progress: &mut dyn Progress,
    ) -> Result<(), Failed> {
        let offset = sink.len();
        let mut response = self.send(url, (offset > 0).then_some((offset, None)))?;
        let status = response.status();
        let total = match status {
            StatusCode::PARTIAL_CONTENT if offset > 0 => {
                let range = response
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_content_range);
                match range {
                    Some((start, total)) if start == offset => {
                        total.or(response.content_length().map(|n| n + offset))
                    }
                    _ => {
                        sink.truncate().map_err(Failed::Final)?;
                        return Err(Failed::Transient(format!(
                            "the server answered the resume at byte {offset} with another range; starting over"
                        )));
                    }
                }
            }
            StatusCode::OK => {
                if offset > 0 {
                    progress.message(&format!(
                        "{url}: the server ignored the resume request (HTTP 200); starting over"
                    ));
                    sink.truncate().map_err(Failed::Final)?;
                }
                response.content_length()
            }
            StatusCode::RANGE_NOT_SATISFIABLE if offset > 0 => {
                sink.truncate().map_err(Failed::Final)?;
                return Err(Failed::Transient(format!(
                    "the partial download ({offset} bytes) is not a prefix of the file; starting over"
                )));
            }
            _ => return Err(status_failure(url, status)),
        };
        progress.start(url.as_str(), sink.len(), total);
        pipe(&mut response, sink, progress)?;
        let len = sink.len();
        match total {
            Some(total) if len < total => Err(Failed::Transient(format!(
                "the connection closed after {len} of {total} bytes"
            ))),
            Some(total) if len > total => {
                sink.truncate().map_err(Failed::Final)?;
                Err(Failed::Transient(format!(
                    "the server sent more than the {total} bytes it announced; starting over"
                )))
            }
            _ => Ok(()),
        }
    }
}

/// Retry messages of range reads, which have no progress display: to the log.
struct Traced;

impl Progress for Traced {
    fn message(&mut self, text: &str) {
        tracing::warn!("{text}");
    }
}

/// The Debian chain of trust fetches through ferry's client: retries, resume, verification.
impl super::debian::Transport for &Fetcher {
    fn get(&self, url: &str) -> Result<Vec<u8>, super::debian::TransportError> {
        Ok(self.get_bytes(&parse_url(url)?, &mut super::progress::Quiet)?)
    }

    fn download(
        &self,
        url: &str,
        dest: &Path,
        expected: &super::debian::Expected<'_>,
        progress: &mut dyn Progress,
    ) -> Result<(), super::debian::TransportError> {
        let digest = Sha256Digest::parse(expected.sha256).ok_or_else(|| {
            FetchError::Setup(format!(
                "{url}: malformed expected SHA-256 {:?}",
                expected.sha256
            ))
        })?;
        let checksum = ChecksumSource::Sha256(digest);
        let request = Request {
            urls: vec![parse_url(url)?],
            checksum,
            dest: dest.to_path_buf(),
        };
        self.fetch(&request, progress)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range() {
        assert_eq!(
            parse_content_range("bytes 100-199/200"),
            Some((100, Some(200)))
        );
        assert_eq!(parse_content_range("bytes 100-199/*"), Some((100, None)));
        assert_eq!(parse_content_range("items 1-2/3"), None);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let opts = FetchOptions {
            retry_delay: Duration::from_millis(100),
            max_retry_delay: Duration::from_millis(500),
            ..Default::default()
        };
        let delays: Vec<u128> = (0..5).map(|r| opts.backoff(r).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
    }
}
