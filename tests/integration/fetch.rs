//! Downloads against a loopback HTTP server that misbehaves on purpose. Every test ends in a
//! verified file or a clear error, and the final path never holds unverified bytes.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry::fetch::{
    ChecksumSource, FetchError, FetchOptions, Fetched, Fetcher, Progress, Request, Sha256Digest,
    cache, parse_url, progress,
};
use sha2::{Digest, Sha256};

use crate::support::*;

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub range: Option<String>,
    accept_encoding: Option<String>,
}

/// What the server does with one request.
pub enum Reply {
    /// Serve `body`, honouring `Range` with 206.
    File(Vec<u8>),
    /// The same, without copying a large body for each request.
    Shared(Arc<Vec<u8>>),
    /// Serve `body` as 200 whatever `Range` says.
    IgnoreRange(Vec<u8>),
    /// Announce `body` in full (or the requested range of it), send it up to byte `upto`, then
    /// close (`reset`: with a TCP reset) or stall for `stall` first.
    Cut {
        body: Vec<u8>,
        upto: usize,
        reset: bool,
        stall: Option<Duration>,
    },
    Status(u16),
    Redirect(String),
    /// Announce `body` in full, send it up to byte `upto`, then hold the rest until `gate`
    /// opens: a download that stays where the test wants it for as long as the test looks.
    Gated {
        body: Arc<Vec<u8>>,
        upto: usize,
        gate: Gate,
    },
}

/// Opened once by the test; a [`Reply::Gated`] waits for it.
#[derive(Clone, Default)]
pub struct Gate(Arc<(Mutex<bool>, std::sync::Condvar)>);

impl Gate {
    pub fn open(&self) {
        *self.0.0.lock().unwrap() = true;
        self.0.1.notify_all();
    }

    fn wait(&self) {
        let mut open = self.0.0.lock().unwrap();
        while !*open {
            open = self.0.1.wait(open).unwrap();
        }
    }
}

type Handler = dyn Fn(&Seen, usize) -> Reply + Send + Sync;

/// A loopback HTTP/1.1 server, one request per connection, run by `handler(request, index)`.
pub struct Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    pub fn start(handler: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> Server {
        Server::start_on("127.0.0.1", handler)
    }

    /// Answers the first request with `first()`, every later one with `data`.
    fn once_then_file(data: &[u8], first: impl Fn() -> Reply + Send + Sync + 'static) -> Server {
        let data = data.to_vec();
        Server::start(move |_, i| {
            if i == 0 {
                first()
            } else {
                Reply::File(data.clone())
            }
        })
    }

    fn start_on(
        ip: &str,
        handler: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static,
    ) -> Server {
        let listener = TcpListener::bind((ip, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (handler, log) = (handler.clone(), log.clone());
                std::thread::spawn(move || serve(stream, &*handler, &log));
            }
        });
        Server { addr, seen }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(mut stream: TcpStream, handler: &Handler, log: &Mutex<Vec<Seen>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let (mut range, mut accept_encoding) = (None, None);
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').unwrap_or((&header, ""));
        match name.to_ascii_lowercase().as_str() {
            "range" => range = Some(value.trim().to_string()),
            "accept-encoding" => accept_encoding = Some(value.trim().to_string()),
            _ => {}
        }
    }
    let request = Seen {
        path,
        range,
        accept_encoding,
    };
    let index = {
        let mut log = log.lock().unwrap();
        log.push(request.clone());
        log.len() - 1
    };
    // `bytes=START-` or `bytes=START-END` → START..END (exclusive), within the body.
    let span = |len: usize| -> Option<(usize, usize)> {
        let (start, end) = request
            .range
            .as_deref()?
            .strip_prefix("bytes=")?
            .split_once('-')?;
        let start: usize = start.parse().ok()?;
        let end = match end {
            "" => len,
            end => end.parse::<usize>().ok()?.saturating_add(1).min(len),
        };
        (start <= end).then_some((start, end))
    };
    let ranged = |stream: &mut TcpStream, body: &[u8]| match span(body.len()) {
        Some((start, end)) => respond(
            stream,
            206,
            &[range_header(start, end, body.len())],
            &body[start..end],
        ),
        None => respond(stream, 200, &[], body),
    };
    let _ = match handler(&request, index) {
        Reply::File(body) => ranged(&mut stream, &body),
        Reply::Shared(body) => ranged(&mut stream, &body),
        Reply::IgnoreRange(body) => respond(&mut stream, 200, &[], &body),
        Reply::Cut {
            body,
            upto,
            reset,
            stall,
        } => {
            let (start, end) = span(body.len()).unwrap_or((0, body.len()));
            let head = if request.range.is_some() {
                format!(
                    "HTTP/1.1 206 Partial Content\r\n{}\r\n",
                    range_header(start, end, body.len())
                )
            } else {
                "HTTP/1.1 200 OK\r\n".to_string()
            };
            let head = format!(
                "{head}Content-Length: {}\r\nConnection: close\r\n\r\n",
                end - start
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body[start..upto.clamp(start, end)]);
            let _ = stream.flush();
            if let Some(stall) = stall {
                std::thread::sleep(stall);
            }
            if reset {
                let linger = nix::libc::linger {
                    l_onoff: 1,
                    l_linger: 0,
                };
                nix::sys::socket::setsockopt(&stream, nix::sys::socket::sockopt::Linger, &linger)
                    .unwrap();
            }
            Ok(())
        }
        Reply::Gated { body, upto, gate } => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body[..upto]);
            let _ = stream.flush();
            gate.wait();
            stream.write_all(&body[upto..])
        }
        Reply::Status(status) => respond(&mut stream, status, &[], b"no\n"),
        Reply::Redirect(to) => respond(&mut stream, 302, &[format!("Location: {to}")], b""),
    };
}

fn range_header(start: usize, end: usize, len: usize) -> String {
    format!("Content-Range: bytes {start}-{}/{len}", end.max(1) - 1)
}

fn respond(
    stream: &mut TcpStream,
    status: u16,
    headers: &[String],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}

/// Records the progress messages.
#[derive(Default)]
struct Recorder {
    messages: Vec<String>,
    starts: Vec<(u64, Option<u64>)>,
}

impl Progress for Recorder {
    fn start(&mut self, _url: &str, done: u64, total: Option<u64>) {
        self.starts.push((done, total));
    }
    fn message(&mut self, text: &str) {
        self.messages.push(text.to_string());
    }
}

pub fn body(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

pub fn digest(bytes: &[u8]) -> Sha256Digest {
    Sha256Digest(Sha256::digest(bytes).into())
}

pub fn options() -> FetchOptions {
    FetchOptions {
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_millis(700),
        attempts: 3,
        retry_delay: Duration::from_millis(10),
        max_retry_delay: Duration::from_millis(40),
    }
}

struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new() -> Case {
        Case {
            dir: tempfile::Builder::new()
                .prefix("ferry-fetch-")
                .tempdir()
                .unwrap(),
        }
    }
    fn dest(&self) -> PathBuf {
        self.dir.path().join("image.iso")
    }
    fn partial(&self) -> PathBuf {
        cache::partial_path(&self.dest())
    }
    fn request(&self, urls: &[String], checksum: ChecksumSource) -> Request {
        Request {
            urls: urls.iter().map(|u| parse_url(u).unwrap()).collect(),
            checksum,
            dest: self.dest(),
        }
    }
    fn fetch(
        &self,
        urls: &[String],
        checksum: ChecksumSource,
    ) -> (Result<Fetched, FetchError>, Recorder) {
        let mut recorder = Recorder::default();
        let result = Fetcher::new(options())
            .unwrap()
            .fetch(&self.request(urls, checksum), &mut recorder);
        (result, recorder)
    }
    /// After a success: the final file holds exactly `want`, and no partial is left.
    fn assert_fetched(&self, result: Result<Fetched, FetchError>, want: &[u8]) -> Fetched {
        let fetched = result.unwrap_or_else(|e| panic!("fetch failed: {e}"));
        assert!(fetched.verified);
        assert_eq!(std::fs::read(self.dest()).unwrap(), want);
        assert_eq!(fetched.sha256, digest(want));
        assert!(!self.partial().exists(), "partial left behind");
        fetched
    }
    /// After a failure: nothing at the final path.
    fn assert_no_final(&self) {
        assert!(!self.dest().exists(), "unverified bytes at the final path");
    }
}

const LEN: usize = 300_000;

#[test]
fn plain_download_sends_identity_and_verifies() {
    let data = body(LEN);
    let server = Server::start({
        let data = data.clone();
        move |_, _| Reply::File(data.clone())
    });
    let case = Case::new();
    let (result, recorder) = case.fetch(
        &[server.url("/x.iso")],
        ChecksumSource::Sha256(digest(&data)),
    );
    let fetched = case.assert_fetched(result, &data);
    assert!(!fetched.cached);
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].accept_encoding.as_deref(), Some("identity"));
    assert_eq!(seen[0].range, None);
    assert_eq!(recorder.starts, [(0, Some(LEN as u64))]);

    // Again: the cached copy is re-verified, nothing is downloaded.
    let (result, _) = case.fetch(
        &[server.url("/x.iso")],
        ChecksumSource::Sha256(digest(&data)),
    );
    assert!(case.assert_fetched(result, &data).cached);
    assert_eq!(server.seen().len(), 1);
}

#[test]
fn truncated_body_resumes_with_range() {
    let data = body(LEN);
    let server = Server::once_then_file(&data, {
        let data = data.clone();
        move || Reply::Cut {
            body: data.clone(),
            upto: 100_000,
            reset: false,
            stall: None,
        }
    });
    let case = Case::new();
    let (result, recorder) = case.fetch(
        &[server.url("/x.iso")],
        ChecksumSource::Sha256(digest(&data)),
    );
    case.assert_fetched(result, &data);
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].range.as_deref(), Some("bytes=100000-"));
    assert_eq!(
        recorder.starts,
        [(0, Some(LEN as u64)), (100_000, Some(LEN as u64))]
    );
    assert!(
        recorder.messages[0].contains("retrying"),
        "{:?}",
        recorder.messages
    );
}

#[test]
fn connection_reset_mid_body_resumes_with_206() {
    let data = body(LEN);
    let server = Server::once_then_file(&data, {
        let data = data.clone();
        move || Reply::Cut {
            body: data.clone(),
            upto: 150_000,
            reset: true,
            stall: None,
        }
    });
    let case = Case::new();
    let (result, _) = case.fetch(
        &[server.url("/x.iso")],
        ChecksumSource::Sha256(digest(&data)),
    );
    case.assert_fetched(result, &data);
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    let range = seen[1].range.as_deref().expect("the retry resumes");
    let from: usize = range
        .trim_start_matches("bytes=")
        .trim_end_matches('-')
        .parse()
        .unwrap();
    // A reset can drop bytes still in flight: the resume starts at what reached the disk.
    assert!(from > 0 && from <= 150_000, "{range}");
}

#[test]
fn server_error_then_success() {
    let data = body(1000);
    let server = Server::once_then_file(&data, || Reply::Status(500));
    let case = Case::new();
    let (result, recorder) = case.fetch(
        &[server.url("/x.iso")],
        ChecksumSource::Sha256(digest(&data)),
    );
    case.assert_fetched(result, &data);
    assert_eq!(server.seen().len(), 2);
    assert!(
        recorder.messages[0].contains("HTTP 500; retrying"),
        "{:?}",
        recorder.messages
    );
}

#[test]
fn persistent_server_error_gives_up_after_the_attempts() {
    let server = Server::start(|_, _| Reply::Status(503));
    let case = Case::new();
    let (result, _) = case.fetch(
        &[server.url("/x.iso")],
        ChecksumSource::Sha256(digest(b"x")),
    );
    let error = result.unwrap_err().to_string();
    assert!(
        error.contains("HTTP 503 (gave up after 3 attempts"),
        "{error}"
    );
    assert_eq!(server.seen().len(), 3);
    case.assert_no_final();
    assert!(!case.partial().exists(), "an empty partial is not kept");
}

#[test]
fn not_found_is_not_retried() {
    let server = Server::start(|_, _| Reply::Status(404));
    let case = Case::new();
    let (result, _) = case.fetch(
        &[server.url("/x.iso")],
        ChecksumSource::Sha256(digest(b"x")),
    );
    let error = result.unwrap_err();
    assert!(
        matches!(error, FetchError::Http { status: 404, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("out of date"), "{error}");
    assert_eq!(server.seen().len(), 1);
    case.assert_no_final();
}

#[test]
fn wrong_checksum_deletes_the_download() {
    let data = body(5000);
    let server = Server::start({
        let data = data.clone();
        move |_, _| Reply::File(data.clone())
    });
    let case = Case::new();
    let wrong = digest(b"something else");
    let (result, _) = case.fetch(&[server.url("/x.iso")], ChecksumSource::Sha256(wrong));
    let error = result.unwrap_err().to_string();
    assert!(
        error.contains(&format!("expected sha256 {wrong}, got {}", digest(&data))),
        "{error}"
    );
    assert_eq!(server.seen().len(), 1, "a mismatch is not retried");
    case.assert_no_final();
    assert!(!case.partial().exists());
}

#[test]
fn range_ignored_on_resume_restarts_from_zero() {
    let data = body(LEN);
    let server = Server::start({
        let data = data.clone();
        move |_, _| Reply::IgnoreRange(data.clone())
    });
    let case = Case::new();
    // A partial from an earlier run that is not even a prefix of the file.
    std::fs::write(case.partial(), vec![0xAA; 70_000]).unwrap();
    let (result, recorder) = case.fetch(
        &[server.url("/x.iso")],
        ChecksumSource::Sha256(digest(&data)),
    );
    case.assert_fetched(result, &data);
    assert_eq!(server.seen()[0].range.as_deref(), Some("bytes=70000-"));
    assert!(
        recorder
            .messages
            .iter()
            .any(|m| m.contains("ignored the resume request")),
        "{:?}",
        recorder.messages
    );
    assert_eq!(recorder.starts, [(0, Some(LEN as u64))]);
}

#[test]
fn partial_from_an_earlier_run_is_rehashed_and_resumed() {
    let data = body(LEN);
    let server = Server::start({
        let data = data.clone();
        move |_, _| Reply::File(data.clone())
    });
    let case = Case::new();
    std::fs::write(case.partial(), &data[..123_456]).unwrap();
    let (result, recorder) = case.fetch(
        &[server.url("/x.iso")],
        ChecksumSource::Sha256(digest(&data)),
    );
    case.assert_fetched(result, &data);
    assert_eq!(server.seen()[0].range.as_deref(), Some("bytes=123456-"));
    assert!(
        recorder.messages[0].contains("hashing the 123456 bytes already there"),
        "{:?}",
        recorder.messages
    );
}

#[test]
fn stall_past_the_read_timeout_retries_then_keeps_the_partial() {
    let data = body(LEN);
    let stall = || Some(Duration::from_secs(3));
    // First a stall after 50000 bytes, then a good resume.
    let server = Server::once_then_file(&data, {
        let data = data.clone();
        move || Reply::Cut {
            body: data.clone(),
            upto: 50_000,
            reset: false,
            stall: stall(),
        }
    });
    let case = Case::new();
    let (result, recorder) = case.fetch(
        &[server.url("/x.iso")],
        ChecksumSource::Sha256(digest(&data)),
    );
    case.assert_fetched(result, &data);
    assert!(
        recorder.messages[0].contains("timed out"),
        "{:?}",
        recorder.messages
    );
    assert_eq!(server.seen()[1].range.as_deref(), Some("bytes=50000-"));

    // Always stalling: a clear error, the bytes so far kept for a later resume.
    let server = Server::start({
        let data = data.clone();
        move |_, _| Reply::Cut {
            body: data.clone(),
            upto: 20_000,
            reset: false,
            stall: stall(),
        }
    });
    let case = Case::new();
    let (result, _) = case.fetch(
        &[server.url("/x.iso")],
        ChecksumSource::Sha256(digest(&data)),
    );
    // "timed out", not a truncated body: the read timeout ended each stalled attempt.
    let error = result.unwrap_err().to_string();
    assert!(
        error.contains("timed out") && error.contains("run ferry again to resume"),
        "{error}"
    );
    case.assert_no_final();
    assert_eq!(std::fs::read(case.partial()).unwrap(), &data[..20_000]);
}

#[test]
fn redirect_to_a_second_host_keeps_the_range() {
    let data = body(LEN);
    let second = Server::start_on("127.0.0.2", {
        let data = data.clone();
        move |_, _| Reply::File(data.clone())
    });
    let target = second.url("/real/x.iso");
    let first = Server::start(move |_, _| Reply::Redirect(target.clone()));
    let case = Case::new();
    std::fs::write(case.partial(), &data[..1000]).unwrap();
    let (result, _) = case.fetch(
        &[first.url("/x.iso")],
        ChecksumSource::Sha256(digest(&data)),
    );
    case.assert_fetched(result, &data);
    assert_eq!(first.seen().len(), 1);
    let seen = second.seen();
    assert_eq!(
        (seen[0].path.as_str(), seen[0].range.as_deref()),
        ("/real/x.iso", Some("bytes=1000-"))
    );
}

#[test]
fn failing_mirror_then_good_mirror() {
    let data = body(LEN);
    let bad = Server::start(|_, _| Reply::Status(404));
    let flaky = Server::start(|_, _| Reply::Status(502));
    let good = Server::start({
        let data = data.clone();
        move |_, _| Reply::File(data.clone())
    });
    let case = Case::new();
    let urls = [bad.url("/x.iso"), flaky.url("/x.iso"), good.url("/x.iso")];
    let (result, recorder) = case.fetch(&urls, ChecksumSource::Sha256(digest(&data)));
    let fetched = case.assert_fetched(result, &data);
    assert_eq!(fetched.url.as_deref(), Some(urls[2].as_str()));
    assert_eq!(
        (bad.seen().len(), flaky.seen().len(), good.seen().len()),
        (1, 3, 1)
    );
    assert!(
        recorder
            .messages
            .iter()
            .filter(|m| m.contains("trying the next mirror"))
            .count()
            == 2
    );

    // All mirrors failing: every mirror's error in one message.
    let case = Case::new();
    let (result, _) = case.fetch(&urls[..2], ChecksumSource::Sha256(digest(&data)));
    let error = result.unwrap_err().to_string();
    assert!(
        error.starts_with("every mirror failed:")
            && error.contains("HTTP 404")
            && error.contains("HTTP 502"),
        "{error}"
    );
    case.assert_no_final();
}

/// A server with `/pub/x.iso` and, optionally, a checksum list `/pub/SHA256SUMS`.
fn sums_server(data: &[u8], sums: Option<String>) -> Server {
    let data = data.to_vec();
    Server::start(move |seen, _| match (seen.path.as_str(), &sums) {
        ("/pub/x.iso", _) => Reply::File(data.clone()),
        ("/pub/SHA256SUMS", Some(text)) => Reply::File(text.clone().into_bytes()),
        _ => Reply::Status(404),
    })
}

#[test]
fn checksum_from_sha256sums_next_to_the_image() {
    let data = body(LEN);
    let sums = format!(
        "{}  other.iso\n{}  ./x.iso\n",
        digest(b"other"),
        digest(&data)
    );
    let server = sums_server(&data, Some(sums.clone()));
    let case = Case::new();
    let (result, _) = case.fetch(&[server.url("/pub/x.iso")], ChecksumSource::Discover);
    case.assert_fetched(result, &data);
    let (result, _) = Case::new().fetch(
        &[server.url("/pub/x.iso")],
        ChecksumSource::SumsFile("SHA256SUMS".into()),
    );
    assert!(result.is_ok());

    // A list that does not name the file.
    let server = sums_server(&data, Some(format!("{}  other.iso\n", digest(&data))));
    let case = Case::new();
    let (result, _) = case.fetch(&[server.url("/pub/x.iso")], ChecksumSource::Discover);
    let error = result.unwrap_err().to_string();
    assert!(
        error.contains("SHA256SUMS lists no checksum for x.iso"),
        "{error}"
    );
    case.assert_no_final();

    // A list whose digest is wrong.
    let server = sums_server(&data, Some(format!("{}  x.iso\n", digest(b"tampered"))));
    let case = Case::new();
    let (result, _) = case.fetch(&[server.url("/pub/x.iso")], ChecksumSource::Discover);
    assert!(matches!(result, Err(FetchError::Mismatch { .. })));
    case.assert_no_final();

    // No list at all: refused, nothing downloaded.
    let server = sums_server(&data, None);
    let case = Case::new();
    let (result, _) = case.fetch(&[server.url("/pub/x.iso")], ChecksumSource::Discover);
    let error = result.unwrap_err().to_string();
    assert!(error.contains("--insecure-no-checksum"), "{error}");
    assert!(server.seen().iter().all(|s| s.path != "/pub/x.iso"));
    case.assert_no_final();
}

fn run_ferry(args: &[&str], cache_dir: &Path) -> (i32, String, String) {
    let output = ferry()
        .args(args)
        .arg("--cache-dir")
        .arg(cache_dir)
        .env("FERRY_RETRY_DELAY", "10ms")
        .env("FERRY_READ_TIMEOUT", "2s")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    (output.status.code().unwrap_or(-1), stdout, stderr)
}

#[test]
fn ferry_fetch_command() {
    let data = body(LEN);
    let server = sums_server(&data, Some(format!("{}  x.iso\n", digest(&data))));
    let case = Case::new();
    let url = server.url("/pub/x.iso");
    let (code, stdout, stderr) = run_ferry(&["fetch", &url], case.dir.path());
    assert_eq!(code, 0, "{stderr}");
    let path = PathBuf::from(stdout.trim());
    assert_eq!(
        path,
        cache::path_for(case.dir.path(), &parse_url(&url).unwrap())
    );
    assert_eq!(std::fs::read(&path).unwrap(), data);
    assert!(
        stderr.contains("ferry: fetch  "),
        "progress lines when stderr is not a terminal: {stderr}"
    );

    // --sha256 overrides SHA256SUMS; --output replaces the cache path.
    let output = case.dir.path().join("out/x.iso");
    let wrong = digest(b"x").to_hex();
    let (code, _, stderr) = run_ferry(
        &[
            "fetch",
            &url,
            "--sha256",
            &wrong,
            "-o",
            output.to_str().unwrap(),
        ],
        case.dir.path(),
    );
    assert_eq!(code, 4, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "checksum mismatch for {url}: expected sha256 {wrong}"
        )),
        "{stderr}"
    );
    assert!(!output.exists() && !cache::partial_path(&output).exists());
    let right = digest(&data).to_hex();
    let (code, stdout, stderr) = run_ferry(
        &[
            "fetch",
            &url,
            "--sha256",
            &right,
            "-o",
            output.to_str().unwrap(),
        ],
        case.dir.path(),
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(PathBuf::from(stdout.trim()), output);

    // No checksum anywhere: refused (exit 4), unless the operator opts out loudly.
    let server = sums_server(&data, None);
    let url = server.url("/pub/x.iso");
    let (code, _, stderr) = run_ferry(&["fetch", &url, "-q"], case.dir.path());
    assert_eq!(code, 4, "{stderr}");
    assert!(
        stderr.starts_with("ferry: error: ") && stderr.contains("--insecure-no-checksum"),
        "{stderr}"
    );
    let (code, stdout, stderr) = run_ferry(
        &["fetch", &url, "-q", "--insecure-no-checksum"],
        case.dir.path(),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("ferry: warning: ") && stderr.contains("NOT VERIFIED"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(stdout.trim()).unwrap(), data);

    let (code, _, stderr) = run_ferry(&["fetch", "no-such-image"], case.dir.path());
    assert_eq!(code, 4);
    assert!(
        stderr.contains("`ferry images` lists the catalog"),
        "{stderr}"
    );
}

/// `ferry cache`: the operator sees what the cache holds, prunes what went unused (a cache hit
/// counts as a use), and cleans the rest — but never a download another ferry is writing.
#[test]
fn ferry_cache_lists_prunes_and_cleans() {
    use nix::fcntl::{Flock, FlockArg};
    use std::time::SystemTime;
    let data = body(LEN);
    let sums = || Some(format!("{}  x.iso\n", digest(&data)));
    let (server, other) = (sums_server(&data, sums()), sums_server(&data, sums()));
    let case = Case::new();
    let cache = case.dir.path();
    let (old_url, used_url) = (server.url("/pub/x.iso"), other.url("/pub/x.iso"));
    for url in [&old_url, &used_url] {
        let (code, _, stderr) = run_ferry(&["fetch", url, "-q"], cache);
        assert_eq!(code, 0, "{stderr}");
    }
    let old = cache::path_for(cache, &parse_url(&old_url).unwrap());
    let used = cache::path_for(cache, &parse_url(&used_url).unwrap());
    let qemu = cache.join("qemu-debian/bookworm-amd64-0123abcd");
    std::fs::create_dir_all(qemu.join("usr/bin")).unwrap();
    std::fs::write(qemu.join("usr/bin/qemu-system-x86_64"), vec![7u8; 5000]).unwrap();
    // Another ferry downloading: it holds the partial's lock.
    let busy = cache.join("h/busy.iso.partial");
    std::fs::create_dir_all(busy.parent().unwrap()).unwrap();
    std::fs::write(&busy, b"so far").unwrap();
    let _writer = Flock::lock(
        std::fs::File::open(&busy).unwrap(),
        FlockArg::LockExclusiveNonblock,
    )
    .unwrap();
    let days_ago = |path: &Path, days: u64| {
        let then = SystemTime::now() - Duration::from_secs(days * 86_400);
        std::fs::File::open(path)
            .unwrap()
            .set_modified(then)
            .unwrap();
    };
    for path in [&old, &used, &qemu, &busy] {
        days_ago(path, 40);
    }

    let (code, stdout, stderr) = run_ferry(&["cache", "list"], cache);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("      SIZE  KIND"), "{stdout}");
    let line = |name: &str| {
        stdout
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("{name} not listed:\n{stdout}"))
            .to_string()
    };
    let old_name = old.strip_prefix(cache).unwrap().display().to_string();
    assert!(line(&old_name).contains(" file ") && line(&old_name).contains(" 40d "));
    assert!(line("bookworm-amd64-0123abcd").contains("qemu"));
    assert!(line("busy.iso.partial").ends_with("(downloading)"));
    assert!(
        stdout
            .trim_end()
            .ends_with(&format!("in 4 entries under {}", cache.display())),
        "{stdout}"
    );

    // A cache hit is a use: y.iso is no longer 40 days unused.
    let (code, _, stderr) = run_ferry(&["fetch", &used_url], cache);
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, stderr) = run_ferry(&["cache", "prune", "--older-than", "30d"], cache);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout,
        format!("removed {}\nremoved {}\n", old.display(), qemu.display())
    );
    assert!(
        stderr.starts_with("ferry: freed ") && stderr.contains("(2 entries)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("kept 1 download(s) in progress"),
        "{stderr}"
    );
    assert!(used.is_file() && busy.is_file() && !old.exists() && !qemu.exists());

    let (code, stdout, stderr) = run_ferry(&["cache", "list", "--json"], cache);
    assert_eq!(code, 0, "{stderr}");
    assert_schema("cache", &stdout, false);
    let listing: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(listing["schema_version"], 1);
    assert_eq!(listing["entries"].as_array().unwrap().len(), 2, "{listing}");
    let entry = &listing["entries"][0];
    assert_eq!(entry["path"], used.display().to_string(), "{listing}");
    assert_eq!(entry["kind"], "file");
    assert_eq!(entry["bytes"], LEN as u64);
    assert!(
        entry["last_used"].as_str().unwrap().ends_with('Z'),
        "{entry}"
    );

    let (code, stdout, stderr) = run_ferry(&["cache", "clean"], cache);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, format!("removed {}\n", used.display()));
    assert!(!used.exists() && busy.is_file());
}

#[test]
fn ferry_images_lists_the_catalog() {
    let case = Case::new();
    let (code, stdout, stderr) = run_ferry(&["images"], case.dir.path());
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("NAME"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("debian-12-netboot ") && l.contains(" no ")),
        "{stdout}"
    );
    let (code, stdout, _) = run_ferry(&["images", "--json"], case.dir.path());
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(json["entries"].as_array().unwrap().len() >= 8);
}

/// `ferry plan` names the cache path of a URL image and says it is not cached, touching
/// nothing; `ferry install` then downloads it (a `fetch` stage) and installs from it.
#[test]
fn install_from_a_url_image() {
    let iso = std::fs::read(fixture("build/tiny-isolinux.iso")).unwrap();
    let sum = digest(&iso);
    let server = Server::start(move |_, _| Reply::File(iso.clone()));
    let scratch = Scratch::new();
    let cache_dir = scratch.dir.path().join("cache");
    let template = fixture("answers.sh.j2");
    let profile = std::fs::read_to_string(fixture("tiny.toml"))
        .unwrap()
        .replace(
            "path = \"build/tiny-isolinux.iso\"",
            &format!("url = \"{}\"\nsha256 = \"{sum}\"", server.url("/tiny.iso")),
        )
        .replace(
            "template = \"answers.sh.j2\"",
            &format!("template = \"{}\"", template.display()),
        );
    let profile_path = scratch.dir.path().join("url.toml");
    std::fs::write(&profile_path, profile).unwrap();

    let output = ferry()
        .arg("plan")
        .arg(&profile_path)
        .arg("--disk")
        .arg(scratch.disk())
        .args(["--size", "2G", "--cache-dir"])
        .arg(&cache_dir)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("not cached: downloaded before QEMU starts"),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("sha256 {sum}")), "{stdout}");
    assert!(
        stdout.contains("download: 30 MiB fits the cache's file system"),
        "{stdout}"
    );
    // The plan asks the image's size (its first byte), to decide download or stream.
    let seen = server.seen();
    assert!(
        seen.iter().all(|s| s.range.as_deref() == Some("bytes=0-0")),
        "ferry plan downloaded something: {seen:?}"
    );
    assert!(!cache_dir.exists());

    // -v: the foreground's log (its plan) on stderr.
    let output = scratch
        .install(
            &profile_path,
            &["--cache-dir", cache_dir.to_str().unwrap(), "-v"],
        )
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(
        output.status.success(),
        "install failed:\n{stdout}\n{stderr}"
    );
    // Two plans per install: the foreground's (for the confirmation) and the supervisor's,
    // made once after the download.
    assert_eq!(stderr.matches("plan made").count(), 1, "{stderr}");
    let log = std::fs::read_to_string(scratch.run_dir().join("ferry.log")).unwrap();
    assert_eq!(log.matches("plan made").count(), 1, "{log}");
    assert!(stdout.contains("boot check passed"), "{stdout}");
    assert!(
        stdout.contains("  fetch "),
        "no fetch stage in the summary:\n{stdout}"
    );
    assert!(
        stderr.contains("ferry: fetch") && stderr.contains("verified"),
        "{stderr}"
    );
    let whole: Vec<_> = server
        .seen()
        .into_iter()
        .filter(|s| s.range.as_deref() != Some("bytes=0-0"))
        .collect();
    assert_eq!(whole.len(), 1, "one download: {whole:?}");
    let cached = cache::path_for(&cache_dir, &parse_url(&server.url("/tiny.iso")).unwrap());
    assert!(cached.is_file());
    let plan: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(scratch.run_dir().join("plan.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(plan["boot"]["iso"], cached.display().to_string());
    assert_eq!(plan["fetch"]["request"]["urls"][0], server.url("/tiny.iso"));
    assert!(
        plan["boot"]["cmdline"]
            .as_str()
            .unwrap()
            .contains("console=ttyS0")
    );
}

/// `[image] name = "..."` takes the image from the catalog (`--catalog DIR` here), and
/// `ferry plan` says where it would come from without fetching it.
#[test]
fn plan_with_a_catalog_image() {
    let scratch = Scratch::new();
    let catalog = scratch.dir.path().join("catalog");
    std::fs::create_dir(&catalog).unwrap();
    let entry = |name: &str, kind: &str| {
        format!(
            "name = \"{name}\"\ndescription = \"d\"\nos = \"tiny\"\nversion = \"1\"\narch = \"x86_64\"\n\
             kind = \"{kind}\"\nurls = [\"http://127.0.0.1:9/pub/{name}.iso\", \"http://127.0.0.2:9/{name}.iso\"]\n\
             sha256sums = \"SHA256SUMS\"\n"
        )
    };
    std::fs::write(catalog.join("tiny.toml"), entry("tiny", "iso")).unwrap();
    std::fs::write(
        catalog.join("tiny-netboot.toml"),
        entry("tiny-netboot", "netboot"),
    )
    .unwrap();
    let plan = |image: &str| {
        let profile = scratch.dir.path().join("p.toml");
        std::fs::write(&profile, format!("[image]\nname = \"{image}\"\n")).unwrap();
        let output = ferry()
            .arg("plan")
            .arg(&profile)
            .arg("--disk")
            .arg(scratch.disk())
            .args(["--size", "1G", "--accel", "tcg"])
            .env("FERRY_CATALOG", &catalog)
            .env("FERRY_CACHE", scratch.dir.path().join("cache"))
            .output()
            .unwrap();
        let (stdout, stderr) = text(&output);
        (output.status.code(), stdout, stderr)
    };
    let (code, stdout, stderr) = plan("tiny");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("http://127.0.0.1:9/pub/tiny.iso (not cached"),
        "{stdout}"
    );
    assert!(stdout.contains("sha256 from SHA256SUMS"), "{stdout}");
    assert!(
        stdout.contains("from the image's boot menu, once downloaded"),
        "{stdout}"
    );
    let (code, _, stderr) = plan("tiny-netboot");
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("p.toml:2:8: tiny-netboot holds netboot files ferry cannot unpack"),
        "{stderr}"
    );
    let (code, _, stderr) = plan("nope");
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("p.toml:2:8: unknown image \"nope\""),
        "{stderr}"
    );
}

/// The Debian chain of trust fetches through this client ([`ferry::fetch::debian::Transport`]):
/// indexes into memory, files verified against the digest the chain expects.
#[test]
fn debian_transport_is_the_fetcher() {
    use ferry::fetch::debian::{Expected, Transport};
    let data = body(LEN);
    let server = Server::start({
        let data = data.clone();
        move |seen, i| match seen.path.as_str() {
            "/index" if i == 0 => Reply::Status(503),
            "/index" => Reply::File(b"Packages".to_vec()),
            _ => Reply::File(data.clone()),
        }
    });
    let fetcher = Fetcher::new(options()).unwrap();
    let transport = &fetcher;
    assert_eq!(transport.get(&server.url("/index")).unwrap(), b"Packages");

    let case = Case::new();
    let right = digest(&data).to_hex();
    let expected = Expected {
        sha256: &right,
        size: Some(LEN as u64),
    };
    transport
        .download(
            &server.url("/x.deb"),
            &case.dest(),
            &expected,
            &mut progress::Quiet,
        )
        .unwrap();
    assert_eq!(std::fs::read(case.dest()).unwrap(), data);

    let case = Case::new();
    let wrong = digest(b"other").to_hex();
    let expected = Expected {
        sha256: &wrong,
        size: None,
    };
    let error = transport
        .download(
            &server.url("/x.deb"),
            &case.dest(),
            &expected,
            &mut progress::Quiet,
        )
        .unwrap_err();
    assert!(error.to_string().contains("checksum mismatch"), "{error}");
    case.assert_no_final();
}
