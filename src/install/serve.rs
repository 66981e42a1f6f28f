//! Serving rendered answer files to the guest, with no port on the host.
//!
//! The server listens on a unix socket in the run directory (mode 0600; the directory is the
//! supervisor's). QEMU's user network forwards the guest's connections to
//! `10.0.2.100:80` there: `guestfwd=tcp:10.0.2.100:80-cmd:FERRY relay SOCKET` makes QEMU run
//! `ferry relay` once per guest connection with the connection on its stdin and stdout, and
//! the relay copies both ways to the socket. Checked with QEMU 7.2: the `cmd:` form serves
//! parallel and sequential connections (three parallel wgets and three sequential ones); the
//! `chardev:` form is one byte stream shared by every connection. Nothing else on the host
//! can connect: there is no listening TCP socket, and the unix socket only admits its owner.
//!
//! Requests are bounded: the request head is at most [`Limits::max_head`] bytes and must
//! arrive within [`Limits::deadline`] (a client sending one byte every few seconds is cut
//! off), and a fixed pool of [`Limits::workers`] threads serves connections one each; more
//! wait in the socket's backlog.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The address the guest fetches its answers from (inside QEMU's user network, never routed
/// anywhere: QEMU hands its connections to the `guestfwd` command).
pub const GUEST_ADDR: &str = "10.0.2.100";
pub const GUEST_PORT: u16 = 80;

/// The answer files' base URL as the guest sees it (no trailing slash); the same for every run.
pub fn guest_url() -> String {
    format!("http://{GUEST_ADDR}")
}

/// The bounds on what one client can make the server do.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Threads serving connections (and so connections served at once).
    pub workers: usize,
    /// Time for a whole request head to arrive, and for each write of the answer.
    pub deadline: Duration,
    /// Bytes of request line and headers.
    pub max_head: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            workers: 4,
            deadline: Duration::from_secs(10),
            max_head: 16 * 1024,
        }
    }
}

/// The running file server; stops (and removes its socket) when dropped.
pub struct Server {
    socket: PathBuf,
    listener: Arc<UnixListener>,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
}

impl Server {
    /// Listens on `socket` and answers `GET /NAME` with `files[NAME]`.
    pub fn start(
        socket: &Path,
        files: BTreeMap<String, Vec<u8>>,
        limits: Limits,
    ) -> std::io::Result<Server> {
        // A socket left by an earlier supervisor of this run directory.
        match std::fs::remove_file(socket) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let listener = Arc::new(UnixListener::bind(socket)?);
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
        let stop = Arc::new(AtomicBool::new(false));
        let files = Arc::new(files);
        let mut server = Server {
            socket: socket.to_path_buf(),
            listener: listener.clone(),
            stop: stop.clone(),
            workers: Vec::new(),
        };
        for n in 0..limits.workers.max(1) {
            let (listener, files, stop) = (listener.clone(), files.clone(), stop.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("answers-{n}"))
                .spawn(move || serve(&listener, &files, &stop, limits));
            match spawned {
                Ok(worker) => server.workers.push(worker),
                // Fewer workers still serve every request, one at a time at worst.
                Err(e) if !server.workers.is_empty() => {
                    tracing::warn!("answer server: worker {n} not started: {e}");
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(server)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Shutting the listening socket down wakes every worker blocked in accept (Linux:
        // EINVAL), even if its path was removed meanwhile.
        let _ =
            nix::sys::socket::shutdown(self.listener.as_raw_fd(), nix::sys::socket::Shutdown::Both);
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn serve(
    listener: &UnixListener,
    files: &BTreeMap<String, Vec<u8>>,
    stop: &AtomicBool,
    limits: Limits,
) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        match stream {
            Ok(stream) if same_user(&stream) => answer(stream, files, limits),
            Ok(_) => tracing::warn!("answer server: a connection from another user refused"),
            // The listener shut down by `Drop` (checked above on the next turn), or a passing
            // failure such as EMFILE: nothing to serve this time.
            Err(e) => {
                tracing::warn!("answer server: accept: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Only the supervisor's own user (QEMU's relay) may fetch answers; the socket's mode says
/// so too, this also covers the moment between bind and chmod.
fn same_user(stream: &UnixStream) -> bool {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    getsockopt(stream, PeerCredentials)
        .is_ok_and(|cred| cred.uid() == nix::unistd::geteuid().as_raw())
}

/// Why a request got no file.
#[derive(Debug, PartialEq, Eq)]
enum Refused {
    TooLarge,
    TimedOut,
    Closed,
    Io(std::io::ErrorKind),
}

fn answer(mut stream: UnixStream, files: &BTreeMap<String, Vec<u8>>, limits: Limits) {
    let head = match read_head(&mut stream, limits) {
        Ok(head) => head,
        Err(why) => {
            tracing::warn!("answer file request dropped: {why:?}");
            if why == Refused::TooLarge {
                let _ = stream.set_write_timeout(Some(limits.deadline));
                let _ = stream.write_all(
                    b"HTTP/1.0 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
            return;
        }
    };
    let line = String::from_utf8_lossy(head.split(|&b| b == b'\n').next().unwrap_or_default());
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let name = target.strip_prefix('/');
    let body = name.and_then(|n| files.get(n));
    let _ = stream.set_write_timeout(Some(limits.deadline));
    let result = match (method, body) {
        ("GET" | "HEAD", Some(body)) => {
            tracing::info!(file = name.unwrap_or(""), "served answer file");
            let head = format!(
                "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream
                .write_all(head.as_bytes())
                .and_then(|_| match method {
                    "GET" => stream.write_all(body),
                    _ => Ok(()),
                })
        }
        _ => {
            tracing::warn!(request = line.trim(), "answer file request refused");
            stream.write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 10\r\nConnection: close\r\n\r\nnot found\n")
        }
    };
    if let Err(e) = result.and_then(|_| stream.flush()) {
        tracing::warn!("answer file not sent: {e}");
    }
}

/// Reads up to the blank line that ends the request head, within the deadline and the size.
fn read_head(stream: &mut UnixStream, limits: Limits) -> Result<Vec<u8>, Refused> {
    let deadline = Instant::now() + limits.deadline;
    let mut head = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Refused::TimedOut);
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| Refused::Io(e.kind()))?;
        let n = match stream.read(&mut chunk) {
            Ok(0) => return Err(Refused::Closed),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(Refused::TimedOut);
            }
            Err(e) => return Err(Refused::Io(e.kind())),
        };
        // Look for the end from a little before the new bytes (it may straddle two reads).
        let from = head.len().saturating_sub(3);
        head.extend_from_slice(&chunk[..n]);
        let tail = &head[from..];
        if tail.windows(4).any(|w| w == b"\r\n\r\n") || tail.windows(2).any(|w| w == b"\n\n") {
            return Ok(head);
        }
        if head.len() > limits.max_head {
            return Err(Refused::TooLarge);
        }
    }
}

/// `ferry relay SOCKET`: what QEMU runs per guest connection; copies stdin to the answer
/// server's socket and its answer to stdout.
pub fn relay(socket: &Path) -> std::io::Result<()> {
    let stream = UnixStream::connect(socket)?;
    let mut upstream = stream.try_clone()?;
    std::thread::Builder::new()
        .name("relay-in".into())
        .spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut upstream);
            let _ = upstream.shutdown(std::net::Shutdown::Write);
        })?;
    std::io::copy(&mut &stream, &mut std::io::stdout().lock())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> BTreeMap<String, Vec<u8>> {
        BTreeMap::from([("answers".to_string(), b"DISK=/dev/vda\n".to_vec())])
    }

    fn get(socket: &Path, path: &str) -> String {
        let mut s = UnixStream::connect(socket).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: 10.0.2.100\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn serves_the_files_by_name_and_removes_its_socket_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("answers.sock");
        let server = Server::start(&socket, files(), Limits::default()).unwrap();
        let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let ok = get(&socket, "/answers");
        assert!(ok.starts_with("HTTP/1.0 200 OK"), "{ok}");
        assert!(ok.ends_with("\r\n\r\nDISK=/dev/vda\n"), "{ok}");
        assert!(get(&socket, "/other").starts_with("HTTP/1.0 404"));
        assert!(get(&socket, "/../answers").starts_with("HTTP/1.0 404"));
        drop(server);
        assert!(!socket.exists(), "socket removed");
        assert!(UnixStream::connect(&socket).is_err());
    }

    #[test]
    fn a_head_over_the_limit_is_refused_without_reading_it_all() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("answers.sock");
        let _server = Server::start(&socket, files(), Limits::default()).unwrap();
        let mut s = UnixStream::connect(&socket).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
        // An endless header line: the server answers 431 and closes after 16 KiB and a bit,
        // so the writer soon fails (a 1 GiB header never gets read, never gets stored).
        let line = vec![b'a'; 64 * 1024];
        s.write_all(b"GET /answers HTTP/1.1\r\nX-Big: ").unwrap();
        let mut sent = 0usize;
        while sent < 1 << 30 {
            match s.write(&line) {
                Ok(n) => sent += n,
                Err(_) => break,
            }
        }
        assert!(sent < 8 << 20, "the server kept reading: {sent} bytes");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        assert!(out.is_empty() || out.starts_with("HTTP/1.0 431"), "{out}");
        assert!(get(&socket, "/answers").starts_with("HTTP/1.0 200"));
    }

    #[test]
    fn a_slow_client_is_cut_off_and_busy_workers_only_delay_later_requests() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("answers.sock");
        let limits = Limits {
            workers: 2,
            deadline: Duration::from_millis(600),
            max_head: 16 * 1024,
        };
        let _server = Server::start(&socket, files(), limits).unwrap();
        // workers + 1 clients that send a byte and then dribble: each is served by a worker
        // (or waits in the backlog) and is closed once its deadline passes.
        let slow: Vec<UnixStream> = (0..=limits.workers)
            .map(|_| {
                let mut s = UnixStream::connect(&socket).unwrap();
                s.write_all(b"G").unwrap();
                s
            })
            .collect();
        let started = Instant::now();
        let mut first = slow.into_iter().next().unwrap();
        let mut byte = [0u8; 1];
        loop {
            // One byte per 100 ms: every read is within any per-read timeout, only the
            // deadline for the whole head ends it.
            std::thread::sleep(Duration::from_millis(100));
            if first.write_all(b"E").is_err() {
                break;
            }
            first
                .set_read_timeout(Some(Duration::from_millis(1)))
                .unwrap();
            if matches!(first.read(&mut byte), Ok(0)) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "slow client never cut off"
            );
        }
        // The other slow clients too; then a normal request is answered.
        assert!(get(&socket, "/answers").starts_with("HTTP/1.0 200"));
    }
}
