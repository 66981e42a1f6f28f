//! ferry's verified stream as QEMU sees it, for `scripts/bench stream`: opens the image at URL
//! (the first pass, timed), serves it over NBD on SOCKET, prints `READY` and waits for a line
//! on stdin (while `qemu-img convert` reads the export), then prints `RESULT` lines: the first
//! pass's rate, the cache's peak, and this process's peak RSS (VmHWM).
//!
//! ```text
//! cargo bench --bench stream_serve -- URL SHA256 SOCKET CACHE_BYTES CACHE_DIR
//! ```

use std::io::BufRead;
use std::time::Instant;

use ferry::fetch::stream::{self, NbdServer};
use ferry::fetch::{ChecksumSource, FetchOptions, Fetcher, Request, Sha256Digest, parse_url};

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let [url, sha256, socket, cache, dir] = args.as_slice() else {
        eprintln!("usage: stream_serve URL SHA256 SOCKET CACHE_BYTES CACHE_DIR");
        std::process::exit(2);
    };
    let request = Request {
        urls: vec![parse_url(url).expect("an http URL")],
        checksum: ChecksumSource::Sha256(Sha256Digest::parse(sha256).expect("64 hex digits")),
        dest: std::path::Path::new(dir).join("image.iso"),
    };
    let fetcher = Fetcher::new(FetchOptions::default()).expect("an HTTP client");
    let started = Instant::now();
    let image = stream::open(
        &fetcher,
        &request,
        cache.parse().expect("a byte count"),
        &mut ferry::fetch::progress::Quiet,
    )
    .unwrap_or_else(|e| {
        eprintln!("stream_serve: {e}");
        std::process::exit(1);
    });
    let pass = started.elapsed().as_secs_f64();
    let server =
        NbdServer::start(socket.as_ref(), "installer", image.clone()).unwrap_or_else(|e| {
            eprintln!("stream_serve: {e}");
            std::process::exit(1);
        });
    println!("READY");
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    server.stop();
    let stats = image.cache_stats();
    println!(
        "RESULT first-pass-mbps {:.0}",
        image.len() as f64 / pass / 1e6
    );
    println!("RESULT cache-peak-mib {:.1}", stats.peak as f64 / 1048576.0);
    println!(
        "RESULT cache-limit-mib {:.1}",
        stats.limit as f64 / 1048576.0
    );
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    println!("RESULT rss-peak-mib {:.1}", hwm as f64 / 1024.0);
    if let Some(failure) = image.failure() {
        eprintln!("stream_serve: {failure}");
        std::process::exit(1);
    }
}
