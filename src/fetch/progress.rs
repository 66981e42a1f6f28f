//! Reporting a download's progress, kept apart from the download itself: the downloader calls
//! a [`Progress`]; what the operator sees depends on which one it is given.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::host::disk::human_bytes as bytes;

/// Receives a download's events. All methods have empty defaults.
pub trait Progress {
    /// Bytes start flowing from `url`: `done` bytes are already received (a resume), `total`
    /// if the server said how many there are.
    fn start(&mut self, _url: &str, _done: u64, _total: Option<u64>) {}
    /// `done` bytes are received now (written, or queued to be).
    fn advance(&mut self, _done: u64) {}
    /// The same transfer goes on with its next file, `url` (a [`Set`] reports its files as
    /// one transfer, so that rate and time left are the whole set's).
    fn next_file(&mut self, _url: &str) {}
    /// Something worth a line: a retry, a mirror switch, a restart, verification.
    fn message(&mut self, _text: &str) {}
    /// The transfer ended (successfully or not); the bar, if any, goes away.
    fn finish(&mut self) {}
}

/// Reports nothing (`--quiet`, `--json`).
pub struct Quiet;

impl Progress for Quiet {}

/// The reporter for stderr: a bar when stderr is a terminal, periodic lines otherwise,
/// nothing when `quiet`.
pub fn for_stderr(quiet: bool) -> Box<dyn Progress> {
    if quiet {
        Box::new(Quiet)
    } else if std::io::stderr().is_terminal() {
        Box::new(Bar::new())
    } else {
        Box::new(Lines::new(Box::new(std::io::stderr())))
    }
}

/// Files downloaded one after another (Debian's packages for QEMU) as one transfer to `inner`:
/// bytes of the whole set against its total, so the rate and time left are the set's; each
/// file's own start names it ([`Progress::next_file`]). The owner says when a file is done
/// ([`Set::file_done`]) and finishes `inner` after the last.
pub struct Set<'a> {
    inner: &'a mut dyn Progress,
    total: u64,
    /// Bytes of the files already done.
    before: u64,
    started: bool,
}

impl<'a> Set<'a> {
    pub fn new(inner: &'a mut dyn Progress, total: u64) -> Set<'a> {
        Set {
            inner,
            total,
            before: 0,
            started: false,
        }
    }

    /// A file of `size` bytes is done (downloaded, or found already there): the next one's
    /// bytes count from after it.
    pub fn file_done(&mut self, size: u64) {
        self.before += size;
        self.inner.advance(self.before.min(self.total));
    }
}

impl Progress for Set<'_> {
    fn start(&mut self, url: &str, done: u64, _file_total: Option<u64>) {
        let done = (self.before + done).min(self.total);
        match std::mem::replace(&mut self.started, true) {
            false => self.inner.start(url, done, Some(self.total)),
            true => {
                self.inner.next_file(url);
                self.inner.advance(done);
            }
        }
    }

    fn advance(&mut self, done: u64) {
        self.inner.advance((self.before + done).min(self.total));
    }

    fn message(&mut self, text: &str) {
        self.inner.message(text);
    }

    // A file's end is not the set's: `inner` is finished by the owner.
}

/// A line every [`Lines::INTERVAL`] or every 10 %, whichever comes first, for logs and pipes.
pub struct Lines {
    out: Box<dyn Write + Send>,
    started: Instant,
    last_line: Instant,
    last_tenth: u64,
    first: u64,
    total: Option<u64>,
    done: u64,
}

impl Lines {
    pub const INTERVAL: Duration = Duration::from_secs(5);

    pub fn new(out: Box<dyn Write + Send>) -> Lines {
        let now = Instant::now();
        Lines {
            out,
            started: now,
            last_line: now,
            last_tenth: 0,
            first: 0,
            total: None,
            done: 0,
        }
    }

    fn line(&mut self) {
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = (self.done - self.first) as f64 / elapsed;
        let text = describe(self.done, self.total, rate as u64);
        self.say(&text);
        self.last_line = Instant::now();
    }

    fn say(&mut self, text: &str) {
        // A closed stderr must not end a download: ignore write errors.
        let _ = writeln!(self.out, "ferry: fetch  {text}");
    }
}

impl Progress for Lines {
    fn start(&mut self, url: &str, done: u64, total: Option<u64>) {
        self.started = Instant::now();
        self.last_line = self.started;
        self.first = done;
        self.done = done;
        self.total = total;
        self.last_tenth = total.filter(|t| *t > 0).map_or(0, |t| done * 10 / t);
        let from = if done > 0 {
            format!(", resuming at {}", bytes(done))
        } else {
            String::new()
        };
        let size = total.map_or_else(|| "size unknown".to_string(), bytes);
        self.say(&format!("{url} ({size}{from})"));
    }

    fn advance(&mut self, done: u64) {
        self.done = done;
        let tenth = self.total.filter(|t| *t > 0).map_or(0, |t| done * 10 / t);
        if tenth > self.last_tenth || self.last_line.elapsed() >= Self::INTERVAL {
            self.last_tenth = tenth;
            self.line();
        }
    }

    fn message(&mut self, text: &str) {
        self.say(text);
    }
}

/// An indicatif bar with bytes, rate and ETA, for a terminal.
pub struct Bar {
    bar: Option<indicatif::ProgressBar>,
}

impl Bar {
    pub fn new() -> Bar {
        Bar { bar: None }
    }
}

impl Default for Bar {
    fn default() -> Self {
        Bar::new()
    }
}

impl Progress for Bar {
    fn start(&mut self, url: &str, done: u64, total: Option<u64>) {
        self.finish();
        let bar = match total {
            Some(total) => indicatif::ProgressBar::new(total).with_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            ),
            None => indicatif::ProgressBar::new_spinner().with_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} {spinner} {bytes} {binary_bytes_per_sec}",
                )
                .expect("valid template"),
            ),
        };
        let name = url.rsplit('/').next().unwrap_or(url).to_string();
        bar.set_message(name);
        bar.set_position(done);
        bar.reset_eta();
        self.bar = Some(bar);
    }

    fn advance(&mut self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        }
    }

    fn next_file(&mut self, url: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(url.rsplit('/').next().unwrap_or(url).to_string());
        }
    }

    fn message(&mut self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(format!("ferry: fetch  {text}")),
            None => eprintln!("ferry: fetch  {text}"),
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// How far a download is: `12.0 MiB of 30.0 MiB (40%) at 1.5 MiB/s, 12s left`, or
/// `12.0 MiB at 1.5 MiB/s` when the total is unknown.
pub fn describe(done: u64, total: Option<u64>, bytes_per_second: u64) -> String {
    match total {
        Some(total) if total > 0 => {
            let eta = match bytes_per_second {
                0 => String::new(),
                rate => format!(
                    ", {} left",
                    secs(total.saturating_sub(done) as f64 / rate as f64)
                ),
            };
            format!(
                "{} of {} ({}%) at {}/s{eta}",
                bytes(done),
                bytes(total),
                done.saturating_mul(100) / total,
                bytes(bytes_per_second)
            )
        }
        _ => format!("{} at {}/s", bytes(done), bytes(bytes_per_second)),
    }
}

fn secs(s: f64) -> String {
    let s = s.round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What a progress heard, one line per call.
    #[derive(Default)]
    struct Heard(Vec<String>);

    impl Progress for Heard {
        fn start(&mut self, url: &str, done: u64, total: Option<u64>) {
            self.0.push(format!("start {url} {done}/{total:?}"));
        }
        fn advance(&mut self, done: u64) {
            self.0.push(format!("{done}"));
        }
        fn next_file(&mut self, url: &str) {
            self.0.push(format!("next {url}"));
        }
        fn message(&mut self, text: &str) {
            self.0.push(format!("say {text}"));
        }
        fn finish(&mut self) {
            self.0.push("finish".into());
        }
    }

    /// Two files as one transfer: the second counts on from the first, a resumed file from
    /// where it resumes, and neither file's end finishes the set.
    #[test]
    fn a_set_reports_its_files_as_one_transfer() {
        let mut heard = Heard::default();
        let mut set = Set::new(&mut heard, 150);
        set.start("http://m/a.deb", 0, Some(100));
        set.advance(60);
        set.message("retrying in 1s");
        set.start("http://m/a.deb", 60, Some(40));
        set.advance(100);
        set.finish();
        set.file_done(100);
        set.start("http://m/b.deb", 0, Some(50));
        set.advance(50);
        set.file_done(50);
        assert_eq!(
            heard.0,
            [
                "start http://m/a.deb 0/Some(150)",
                "60",
                "say retrying in 1s",
                "next http://m/a.deb",
                "60",
                "100",
                "100",
                "next http://m/b.deb",
                "100",
                "150",
                "150",
            ]
        );
    }

    #[test]
    fn lines_every_tenth() {
        let out = Shared::default();
        let mut lines = Lines::new(Box::new(out.clone()));
        lines.start("http://h/x.iso", 0, Some(1000));
        for done in (0..=1000).step_by(10) {
            lines.advance(done);
        }
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(
            text.starts_with("ferry: fetch  http://h/x.iso (1000 B)\n"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 11, "{text}");
        assert!(text.contains("1000 B of 1000 B (100%)"), "{text}");
    }

    #[test]
    fn a_download_says_how_far_how_fast_and_how_long() {
        assert_eq!(
            describe(12 << 20, Some(30 << 20), 3 << 19),
            "12.0 MiB of 30.0 MiB (40%) at 1.5 MiB/s, 12s left"
        );
        assert_eq!(describe(0, Some(1000), 0), "0 B of 1000 B (0%) at 0 B/s");
        assert_eq!(describe(1536, None, 512), "1.5 KiB at 512 B/s");
    }

    #[test]
    fn human_sizes() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
        assert_eq!(secs(75.0), "1m15s");
    }
}
