//! The downloader: HTTP(S) GETs with resume, retries with backoff, mirrors in order, and the
//! SHA-256 computed while the bytes are written, on another thread than the one receiving them.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT_ENCODING, CONTENT_RANGE, RANGE};
use serde::Serialize;
use sha2::{Digest, Sha256};
use url::Url;

use super::cache::partial_path;
use super::checksum::{ChecksumSource, DebianPackage, Sha256Digest, find_in_sums};
use super::error::FetchError;
use super::progress::Progress;

/// The receiving thread hands the body on in buffers of this size...
const PIPE_BUFFER: usize = 1 << 20;
/// ...with at most this many waiting for the hashing and writing thread: the pipeline holds
/// at most `PIPE_DEPTH + 2` buffers (8 MiB with one being filled and one being written).
const PIPE_DEPTH: usize = 6;

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
#[derive(Debug, Clone, Serialize)]
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

/// How one attempt ended when it did not finish.
enum Failed {
    /// Worth retrying this mirror after a pause.
    Transient(String),
    /// Not worth retrying this mirror.
    Final(FetchError),
}

/// Where a download's bytes go, in order: a partial file, or (streaming) a hasher that keeps
/// nothing. Runs on the pipeline's second thread.
pub(crate) trait Sink: Send {
    /// Bytes taken so far: a retry resumes after them.
    fn len(&self) -> u64;
    fn write(&mut self, bytes: &[u8]) -> Result<(), FetchError>;
    /// Starts over from byte 0 (the server could not resume).
    fn truncate(&mut self) -> Result<(), FetchError>;
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
            Ok(url) => partial.finish(dest, expected, &url),
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

/// Receives `body` on this thread while another feeds `sink` (hashing, writing): a bounded
/// pipeline of large buffers, so the network, the hash and the disk overlap. Every byte
/// received before an error reaches `sink`, so a retry resumes after it.
fn pipe(
    body: &mut impl Read,
    sink: &mut dyn Sink,
    progress: &mut dyn Progress,
) -> Result<(), Failed> {
    let mut received = sink.len();
    std::thread::scope(|scope| {
        let (full_tx, full_rx) = mpsc::sync_channel::<(Vec<u8>, usize)>(PIPE_DEPTH);
        let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
        let writer = scope.spawn(move || -> Result<(), FetchError> {
            for (buf, n) in full_rx {
                sink.write(&buf[..n])?;
                // The receiver may be gone already; the buffer is then simply dropped.
                let _ = empty_tx.send(buf);
            }
            Ok(())
        });
        let ended = loop {
            let mut buf = empty_rx
                .try_recv()
                .unwrap_or_else(|_| vec![0u8; PIPE_BUFFER]);
            let mut n = 0;
            let mut ended = None;
            while n < buf.len() {
                match body.read(&mut buf[n..]) {
                    Ok(0) => {
                        ended = Some(Ok(()));
                        break;
                    }
                    Ok(k) => n += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        ended = Some(Err(Failed::Transient(describe_io(&e))));
                        break;
                    }
                }
            }
            // A send fails only when the writer stopped on an error, which `join` returns.
            if n > 0 && full_tx.send((buf, n)).is_err() {
                break Ok(());
            }
            received += n as u64;
            progress.advance(received);
            if let Some(ended) = ended {
                break ended;
            }
        };
        drop(full_tx);
        match writer.join() {
            Ok(Ok(())) => ended,
            Ok(Err(e)) => Err(Failed::Final(e)),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
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
        self.fetch(&request, &mut super::progress::Quiet)?;
        Ok(())
    }
}

/// `bytes START-END/TOTAL` → (START, TOTAL); TOTAL may be `*`.
fn parse_content_range(value: &str) -> Option<(u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()))
}

fn status_failure(url: &Url, status: StatusCode) -> Failed {
    let transient = status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS;
    if transient {
        Failed::Transient(format!("HTTP {}", status.as_u16()))
    } else {
        Failed::Final(FetchError::Http {
            url: url.to_string(),
            status: status.as_u16(),
        })
    }
}

/// Sorts a request error: TLS failures and malformed requests are final; connection
/// failures, timeouts and broken responses are transient.
fn classify(url: &Url, error: &reqwest::Error) -> Failed {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Failed::Final(FetchError::Tls {
                url: url.to_string(),
                message: tls.to_string(),
            });
        }
        source = e.source();
    }
    if error.is_builder() || error.is_redirect() {
        return Failed::Final(FetchError::Setup(format!("{url}: {}", chain(error))));
    }
    let what = match error.is_timeout() {
        true => "timed out".to_string(),
        // reqwest names the URL in its message; ferry's messages already start with it.
        false => chain(error).replace(&format!("error sending request for url ({url}): "), ""),
    };
    Failed::Transient(what)
}

fn describe_io(error: &std::io::Error) -> String {
    let text = chain(error);
    if error.kind() == std::io::ErrorKind::TimedOut || text.contains("timed out") {
        "timed out waiting for data".into()
    } else {
        text
    }
}

/// An error and its causes, `a: b: c`, without repeats.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source = Some(error);
    while let Some(e) = source {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ")
}

/// The TLS configuration: `ring` for the cryptography (no C toolchain beyond what `ring`
/// needs, builds for musl), trusting the system's CA store plus the bundled Mozilla roots
/// (a rescue system may ship no CA store; a build machine may add a local CA to it).
fn tls_config() -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let system = rustls_native_certs::load_native_certs();
    for error in &system.errors {
        tracing::debug!("system CA store: {error}");
    }
    let (added, ignored) = roots.add_parsable_certificates(system.certs);
    tracing::debug!(added, ignored, "system CA certificates");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// SHA-256 and length of a file.
pub fn hash_file(path: &Path) -> Result<(Sha256Digest, u64), FetchError> {
    let mut file = File::open(path).map_err(|e| FetchError::io(path, e))?;
    let mut hasher = Sha256::new();
    let len = hash_into(&mut file, &mut hasher).map_err(|e| FetchError::io(path, e))?;
    Ok((Sha256Digest(hasher.finalize().into()), len))
}

fn hash_into(reader: &mut impl Read, hasher: &mut Sha256) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(len),
            Ok(n) => {
                hasher.update(&buf[..n]);
                len += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// `DEST.partial`, locked against a second ferry, with the hash of the bytes in it.
struct Partial {
    path: PathBuf,
    file: File,
    /// Held while the partial is open: a second ferry fetching the same file is refused.
    _lock: Flock<File>,
    hasher: Sha256,
    len: u64,
}

impl Partial {
    /// Opens (or creates) the partial file; existing bytes are hashed again so the download
    /// can resume after them.
    fn open(path: &Path, progress: &mut dyn Progress) -> Result<Partial, FetchError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path);
        let mut file = file.map_err(|e| FetchError::io(path, e))?;
        let clone = file.try_clone().map_err(|e| FetchError::io(path, e))?;
        let lock = Flock::lock(clone, FlockArg::LockExclusiveNonblock)
            .map_err(|_| FetchError::Busy { path: path.into() })?;
        let mut hasher = Sha256::new();
        let existing = file.metadata().map_err(|e| FetchError::io(path, e))?.len();
        if existing > 0 {
            progress.message(&format!(
                "resuming {}: hashing the {existing} bytes already there",
                path.display()
            ));
        }
        let len = hash_into(&mut file, &mut hasher).map_err(|e| FetchError::io(path, e))?;
        file.seek(SeekFrom::Start(len))
            .map_err(|e| FetchError::io(path, e))?;
        Ok(Partial {
            path: path.into(),
            file,
            _lock: lock,
            hasher,
            len,
        })
    }

    /// Gives up on this fetch: bytes already received stay in the partial for the next run to
    /// resume; an empty partial is removed.
    fn abandon(self, error: FetchError) -> FetchError {
        if self.len == 0 {
            let _ = std::fs::remove_file(&self.path);
        }
        error
    }

    /// Syncs the bytes to disk, compares the digest, and renames the partial to `dest` only if
    /// it matched; a mismatch deletes the partial.
    fn finish(
        self,
        dest: &Path,
        expected: Option<Sha256Digest>,
        url: &Url,
    ) -> Result<Fetched, FetchError> {
        let io = |path: &Path, e| FetchError::io(path, e);
        self.file.sync_all().map_err(|e| io(&self.path, e))?;
        let actual = Sha256Digest(self.hasher.finalize().into());
        if let Some(expected) = expected
            && expected != actual
        {
            std::fs::remove_file(&self.path).map_err(|e| io(&self.path, e))?;
            return Err(FetchError::Mismatch {
                url: url.to_string(),
                expected,
                actual,
            });
        }
        std::fs::rename(&self.path, dest).map_err(|e| io(dest, e))?;
        if let Some(dir) = dest.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io(dir, e))?;
        }
        Ok(Fetched {
            path: dest.to_path_buf(),
            bytes: self.len,
            sha256: actual,
            verified: expected.is_some(),
            cached: false,
            url: Some(url.to_string()),
        })
    }
}

impl Sink for Partial {
    fn len(&self) -> u64 {
        self.len
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), FetchError> {
        self.hasher.update(bytes);
        self.file
            .write_all(bytes)
            .map_err(|e| FetchError::io(&self.path, e))?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    fn truncate(&mut self) -> Result<(), FetchError> {
        let io = |e| FetchError::io(&self.path, e);
        self.file.set_len(0).map_err(io)?;
        self.file.seek(SeekFrom::Start(0)).map_err(io)?;
        self.hasher = Sha256::new();
        self.len = 0;
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
