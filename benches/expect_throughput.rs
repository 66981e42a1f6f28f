//! Throughput of the expect engine: a synthetic serial stream (kernel-ish log lines, systemd
//! status with colour codes, `\r` progress redraws) pushed through a `UnixStream::pair` into
//! `Console`, with 10 patterns (literals and regexes, want and fail) and the only match at
//! the very end.
//!
//! ```text
//! cargo bench --bench expect_throughput -- [--bytes N] [--runs N] [--write FILE | --read FILE]
//!                                          [--transcript]
//! ```
//!
//! `--write FILE` only writes the stream (for `scripts/bench-expect.py`, so pexpect sees the same
//! bytes); `--read FILE` measures on a stream read from a file; `--transcript` also records to
//! `serial.log` and `transcript.cast` in a temporary directory. Prints a `RESULT ferry <MB/s>`
//! line (best of the runs) for `scripts/bench`.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use ferry::console::{Console, Expectation, Pattern, transcript};

/// The end of the stream: the only place a pattern matches.
const TAIL: &[u8] = b"\r\nDebian GNU/Linux 12 debian ttyS0\r\n\r\ndebian login: ";

fn patterns() -> Expectation {
    Expectation::new(
        "bench",
        vec![
            Pattern::literal("login: "),
            Pattern::regex(r"Prompt: '\?' for help, default=\d+> "),
            Pattern::regex(r"root@[\w-]+:~# "),
            Pattern::literal("reboot: Power down"),
            Pattern::regex(r"Press (ENTER|any key) to (continue|reboot)"),
            Pattern::literal("Installation complete"),
        ],
        Duration::from_secs(600),
    )
    .failing_on(vec![
        Pattern::regex(r"Kernel panic"),
        Pattern::literal("Installation step failed"),
        Pattern::regex(r"segfault at [0-9a-f]+ ip"),
        Pattern::regex(r"\[!!\] [A-Z]"),
    ])
}

/// A small deterministic PRNG (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Generates `size` bytes of log-like serial output ending in [`TAIL`].
fn generate(size: usize) -> Vec<u8> {
    const KERNEL: &[&str] = &[
        "usb 1-1: new high-speed USB device number 2 using ehci-pci",
        "ata1.00: ATA-9: QEMU HARDDISK, 2.5+, max UDMA/100",
        "EXT4-fs (vda1): mounted filesystem with ordered data mode. Quota mode: none.",
        "Kernel command line: BOOT_IMAGE=/boot/vmlinuz console=ttyS0,115200n8 quiet",
        "virtio_net virtio1 enp0s3: renamed from eth0",
        "random: crng init done",
        "systemd-logind[412]: New seat seat0.",
        "e1000 0000:00:03.0 eth0: (PCI:33MHz:32-bit) 52:54:00:12:34:56",
        "sd 0:0:0:0: [sda] 41943040 512-byte logical blocks: (21.5 GB/20.0 GiB)",
        "audit: type=1400 audit(1700000000.123:2): apparmor=\"STATUS\" operation=\"profile_load\"",
    ];
    const UNITS: &[&str] = &[
        "systemd-journald.service - Journal Service",
        "systemd-udevd.service - Rule-based Manager for Device Events and Files",
        "networking.service - Raise network interfaces",
        "ssh.service - OpenBSD Secure Shell server",
        "systemd-logind.service - User Login Management",
    ];
    const PROGRESS: &[&str] = &[
        "Installing the base system",
        "Configuring apt",
        "Select and install software",
        "Partitions formatting",
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::with_capacity(size + 256);
    let mut t = 0u64;
    let body = size.saturating_sub(TAIL.len());
    while out.len() < body {
        t += rng.below(5000);
        let r = rng.below(100);
        if r < 70 {
            let msg = KERNEL[rng.below(KERNEL.len() as u64) as usize];
            write!(out, "[{:5}.{:06}] {msg}\r\n", t / 1_000_000, t % 1_000_000).unwrap();
        } else if r < 95 {
            let unit = UNITS[rng.below(UNITS.len() as u64) as usize];
            write!(out, "[\x1b[0;32m  OK  \x1b[0m] Started {unit}.\r\n").unwrap();
        } else {
            let what = PROGRESS[rng.below(PROGRESS.len() as u64) as usize];
            write!(out, "\x1b[1m{what}\x1b[0m...\r\n").unwrap();
            let mut pct = 0;
            while pct < 100 {
                pct = (pct + 1 + rng.below(30)).min(100);
                write!(out, "\r  {pct:3}%").unwrap();
            }
            out.extend_from_slice(b"\r\n");
        }
    }
    out.truncate(body);
    // Don't end the body inside an escape sequence.
    if let Some(p) = out.iter().rposition(|&b| b == b'\n') {
        out.truncate(p + 1);
    }
    out.extend_from_slice(TAIL);
    out
}

/// One run: returns the seconds from the first write to the match.
fn run(stream: &'static [u8], transcript_dir: Option<&std::path::Path>) -> f64 {
    let (ours, mut theirs) = UnixStream::pair().unwrap();
    let sinks = match transcript_dir {
        Some(dir) => transcript::create(dir, "bench").unwrap(),
        None => Vec::new(),
    };
    let mut console = Console::start(ours, sinks).unwrap();
    let e = patterns();
    let start = Instant::now();
    let writer = std::thread::spawn(move || {
        theirs.write_all(stream).unwrap();
        theirs
    });
    let m = console.expect(&e).expect("the stream ends in a match");
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(m.index, 0);
    assert_eq!(console.bytes_received(), stream.len() as u64);
    drop(writer.join().unwrap());
    secs
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut bytes = 256usize << 20;
    let mut runs = 5;
    let mut write = None;
    let mut read = None;
    let mut with_transcript = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--bytes" => bytes = args.next().and_then(|v| v.parse().ok()).expect("--bytes N"),
            "--runs" => runs = args.next().and_then(|v| v.parse().ok()).expect("--runs N"),
            "--write" => write = args.next(),
            "--read" => read = args.next(),
            "--transcript" => with_transcript = true,
            _ => {} // `cargo bench` passes `--bench`
        }
    }
    if let Some(path) = write {
        std::fs::write(&path, generate(bytes)).unwrap();
        eprintln!("wrote {bytes} bytes to {path}");
        return;
    }
    let stream: &'static [u8] = match read {
        Some(path) => std::fs::read(path).unwrap().leak(),
        None => generate(bytes).leak(),
    };
    let mb = stream.len() as f64 / 1e6;
    let dir = tempfile::tempdir().unwrap();
    let mut times: Vec<f64> = (0..runs)
        .map(|_| run(stream, with_transcript.then(|| dir.path())))
        .collect();
    times.sort_by(f64::total_cmp);
    let best = times[0];
    let median = times[times.len() / 2];
    println!(
        "ferry Console::expect{}: {:.1} MB, 10 patterns, {runs} runs: best {:.3} s = {:.0} MB/s, median {:.0} MB/s",
        if with_transcript {
            " (+ serial.log, transcript.cast)"
        } else {
            ""
        },
        mb,
        best,
        mb / best,
        mb / median
    );
    println!(
        "RESULT ferry{} {:.1}",
        if with_transcript { "-transcript" } else { "" },
        mb / best
    );
}
