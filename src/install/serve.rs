//! Serving rendered answer files to the guest.
//!
//! The listener binds 127.0.0.1 only: QEMU's user-mode NAT makes it reachable from the guest
//! as 10.0.2.2, and nothing outside the machine can reach it. Files live under a random path
//! prefix, so another local user cannot guess their URL either.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// The address the guest uses for the host's loopback under QEMU user networking.
pub const GUEST_HOST_ADDR: &str = "10.0.2.2";

/// A bound listener and the URL the guest reaches it at; files are added with [`Server::start`].
pub struct Listener {
    listener: TcpListener,
    token: String,
}

impl Listener {
    pub fn bind() -> std::io::Result<Listener> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        Ok(Listener {
            listener,
            token: random_token()?,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The base URL as the guest sees it (no trailing slash): `http://10.0.2.2:PORT/TOKEN`.
    pub fn guest_url(&self) -> std::io::Result<String> {
        Ok(format!(
            "http://{GUEST_HOST_ADDR}:{}/{}",
            self.local_addr()?.port(),
            self.token
        ))
    }

    /// Starts answering `GET /TOKEN/NAME` with `files[NAME]` in a background thread.
    pub fn start(self, files: BTreeMap<String, Vec<u8>>) -> std::io::Result<Server> {
        let stop = Arc::new(AtomicBool::new(false));
        let addr = self.local_addr()?;
        let files = Arc::new(files);
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("answer-files".into())
                .spawn(move || {
                    for stream in self.listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(stream) = stream else { continue };
                        let files = files.clone();
                        let token = self.token.clone();
                        std::thread::spawn(move || answer(stream, &token, &files));
                    }
                })?
        };
        Ok(Server {
            addr,
            stop,
            thread: Some(thread),
        })
    }
}

/// The running file server; stops when dropped.
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn answer(stream: TcpStream, token: &str, files: &BTreeMap<String, Vec<u8>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let mut reader = BufReader::new(&stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // Read (and ignore) the headers up to the blank line.
    let mut header = String::new();
    while reader
        .read_line(&mut header)
        .map(|n| n > 2)
        .unwrap_or(false)
    {
        header.clear();
    }
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let name = target
        .strip_prefix('/')
        .and_then(|t| t.strip_prefix(token))
        .and_then(|t| t.strip_prefix('/'));
    let body = name.and_then(|n| files.get(n));
    let mut out = &stream;
    let result = match (method, body) {
        ("GET" | "HEAD", Some(body)) => {
            tracing::info!(file = name.unwrap_or(""), %peer, "served answer file");
            let head = format!(
                "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            out.write_all(head.as_bytes()).and_then(|_| {
                if method == "GET" {
                    out.write_all(body)
                } else {
                    Ok(())
                }
            })
        }
        _ => {
            tracing::warn!(request = request_line.trim(), %peer, "answer file request refused");
            out.write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 10\r\nConnection: close\r\n\r\nnot found\n")
        }
    };
    let _ = result.and_then(|_| out.flush());
}

fn random_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).map_err(std::io::Error::other)?;
    Ok(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn serves_files_under_the_token_only() {
        let listener = Listener::bind().unwrap();
        let addr = listener.local_addr().unwrap();
        assert!(addr.ip().is_loopback());
        let url = listener.guest_url().unwrap();
        let token = url.rsplit('/').next().unwrap().to_string();
        assert!(url.starts_with("http://10.0.2.2:"));
        let server = listener
            .start(BTreeMap::from([(
                "answers".to_string(),
                b"DISK=/dev/vda\n".to_vec(),
            )]))
            .unwrap();
        let ok = get(addr, &format!("/{token}/answers"));
        assert!(ok.starts_with("HTTP/1.0 200 OK"), "{ok}");
        assert!(ok.ends_with("\r\n\r\nDISK=/dev/vda\n"));
        assert!(get(addr, "/answers").starts_with("HTTP/1.0 404"));
        assert!(get(addr, &format!("/{token}/other")).starts_with("HTTP/1.0 404"));
        drop(server);
        assert!(
            TcpStream::connect(addr).is_err(),
            "listener closed after drop"
        );
    }
}
