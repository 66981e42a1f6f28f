//! The expect engine: waits for patterns in the text of the serial console.
//!
//! [`Console::start`] takes the serial socket. A reader thread reads it, gives every raw byte
//! to the [`Sink`]s (the transcript), keeps the last bytes for [`Console::last_lines`], strips
//! escape sequences ([`super::ansi`]) and hands the text to the engine. [`Console::expect`]
//! then waits for one of an [`Expectation`]'s patterns.
//!
//! # Matching semantics
//!
//! - Patterns match the *stripped* text (no escape sequences, `\r\n` and lone `\r` turned into
//!   `\n`, see [`super::ansi`]). Regexes use the `regex` syntax with multi-line mode on: `^` and
//!   `$` match at line starts and ends.
//! - Like pexpect, each `expect` only sees text after the end of the previous match (the
//!   Debian installer replays old screens: old text must not match again). Text after a match
//!   that arrived in the same read stays for the next `expect`. `^` and `\b` still look at the
//!   byte before that point, so `^` does not match in the middle of a line just because a
//!   previous match ended there.
//! - Want and fail patterns are searched together in one pass; the match that starts earliest
//!   in the stream wins. If a want and a fail pattern match at the same position, the fail
//!   pattern wins (then the earlier one in its list).
//! - Matching is on the text received *so far*: `$` and `\b` match at the end of it, and a
//!   greedy repetition at the end may match less than it would once more text arrived (as in
//!   pexpect). Prompts without a trailing newline match as soon as they are printed.
//! - The window of unmatched text is bounded ([`WINDOW`], 64 KiB): a pattern cannot span more
//!   than that. Every match of up to 64 KiB is found; a longer one is ignored (the search goes
//!   on from the next position; for a greedy `(?s)a.*b` that means a shorter match from the
//!   same start is not tried). Unmatched text older than 64 KiB before the newest text is
//!   forgotten.
//!
//! # Cost
//!
//! Each read is searched once, not the whole window again: the search starts at the earliest
//! position where a match could still straddle the previous end of text. That is derived from
//! the patterns: for patterns with a bounded length `L` (literals, `\d{1,3}%`), the last `L-1`
//! bytes; for unbounded patterns that cannot match a newline (`Prompt: .* default=\d+>`), the
//! start of the current line; only a pattern that is unbounded *and* can match a newline
//! (`(?s)a.*b`, `\s+`, `[^x]+`) makes the engine rescan the whole window on every read. Every
//! match the full rescan would find is found: a match cannot start earlier than that point
//! without having been found in an earlier search.
//!
//! Pattern sets of literals only go through `memchr::memmem` (one literal) or Aho-Corasick
//! (several); any regex puts the whole set into one `regex_automata::meta::Regex` (leftmost
//! first: one search gives the position and which pattern matched).

use std::fmt;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::ops::Range;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

mod matcher;

use super::ansi::Stripper;
use super::screen::Screen;
use matcher::Matcher;

/// Bound of the window of unmatched text (see the module documentation).
pub const WINDOW: usize = 64 * 1024;
/// Bytes kept before the window so `^` and `\b` can look behind its start.
const CONTEXT: usize = 16;
/// Size of the reader thread's reads.
const READ_SIZE: usize = 256 * 1024;
/// A guest's serial port delivers a few bytes at a time; after a read shorter than
/// `TRICKLE` bytes that ends a line the reader naps for `GATHER` so the next read takes what
/// gathered meanwhile. Without it every few bytes cost a write to each log and two thread
/// wake-ups: CPU taken from the guest under TCG. A read that ends mid-line may end in a prompt,
/// which must be seen as the end of the text (`/login: $/`) before anything printed after it
/// joins it: no nap then. A bulk stream reads full buffers and never naps.
const TRICKLE: usize = 4096;
const GATHER: Duration = Duration::from_millis(5);
/// Lines of the screen shown in errors.
const SCREEN_LINES: usize = 20;
/// How often a wait looks at its stop condition ([`Console::expect_unless`]).
const STOP_POLL: Duration = Duration::from_millis(100);

/// A pattern to wait for. Compiled by the engine, per [`Console::expect`] call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// Exact text (case-sensitive).
    Literal(String),
    /// A regex (`regex` crate syntax, multi-line mode).
    Regex(String),
}

impl Pattern {
    pub fn literal(s: impl Into<String>) -> Pattern {
        Pattern::Literal(s.into())
    }

    pub fn regex(s: impl Into<String>) -> Pattern {
        Pattern::Regex(s.into())
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Literal(s) => write!(f, "`{}`", s.escape_debug()),
            Pattern::Regex(r) => write!(f, "/{r}/"),
        }
    }
}

/// One step of a conversation with the installer.
#[derive(Debug, Clone)]
pub struct Expectation {
    /// Name of the step, for errors and logs.
    pub step: String,
    /// Patterns that complete the step; [`Matched::index`] says which one matched.
    pub want: Vec<Pattern>,
    /// Patterns that fail the step.
    pub fail: Vec<Pattern>,
    pub timeout: Duration,
}

impl Expectation {
    pub fn new(step: impl Into<String>, want: Vec<Pattern>, timeout: Duration) -> Expectation {
        Expectation {
            step: step.into(),
            want,
            fail: Vec::new(),
            timeout,
        }
    }

    pub fn failing_on(mut self, fail: Vec<Pattern>) -> Expectation {
        self.fail = fail;
        self
    }
}

/// A successful [`Console::expect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    /// Index into [`Expectation::want`].
    pub index: usize,
    /// The matched text (stripped; invalid UTF-8 replaced).
    pub text: String,
    /// Time from the start of the `expect` call to the match.
    pub elapsed: Duration,
}

/// Why [`Console::expect`] (or another wait) did not match.
#[derive(Debug, thiserror::Error)]
pub enum ExpectError {
    /// Nothing matched within the timeout.
    Timeout {
        step: String,
        waited_for: Vec<String>,
        timeout: Duration,
        screen: Vec<String>,
    },
    /// A fail pattern matched (first).
    Failed {
        step: String,
        pattern: String,
        /// The line of text the fail pattern matched in.
        line: String,
        screen: Vec<String>,
    },
    /// The stream ended (QEMU exited) before a match.
    Closed {
        step: String,
        waited_for: Vec<String>,
        screen: Vec<String>,
        /// How QEMU ended, when its owner found out (e.g. "QEMU was killed by signal SIGKILL").
        ended: Option<String>,
    },
    /// The run was stopped while waiting ([`Console::expect_unless`]).
    Stopped { step: String },
    /// A pattern does not compile.
    BadPattern { pattern: String, reason: String },
    /// Reading or writing the socket failed.
    Io(#[from] io::Error),
}

fn write_screen(f: &mut fmt::Formatter<'_>, screen: &[String]) -> fmt::Result {
    if screen.is_empty() {
        return write!(f, "\n(nothing on the screen)");
    }
    write!(f, "\nlast {} lines of the screen:", screen.len())?;
    for line in screen {
        write!(f, "\n  | {line}")?;
    }
    Ok(())
}

impl fmt::Display for ExpectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectError::Timeout {
                step,
                waited_for,
                timeout,
                screen,
            } => {
                write!(
                    f,
                    "step '{step}': no match for {} within {}",
                    waited_for.join(", "),
                    humantime::format_duration(*timeout)
                )?;
                write_screen(f, screen)
            }
            ExpectError::Failed {
                step,
                pattern,
                line,
                screen,
            } => {
                write!(
                    f,
                    "step '{step}': failure pattern {pattern} matched: {line}"
                )?;
                write_screen(f, screen)
            }
            ExpectError::Closed {
                step,
                waited_for,
                screen,
                ended,
            } => {
                write!(
                    f,
                    "step '{step}': the console closed ({}) before a match for {}",
                    ended.as_deref().unwrap_or("QEMU exited"),
                    waited_for.join(", ")
                )?;
                write_screen(f, screen)
            }
            ExpectError::Stopped { step } => write!(f, "step '{step}': stopped while waiting"),
            ExpectError::BadPattern { pattern, reason } => {
                write!(f, "bad pattern {pattern}: {reason}")
            }
            ExpectError::Io(e) => write!(f, "serial console: {e}"),
        }
    }
}

/// Where the raw stream is recorded (see [`super::transcript`]). Called from the reader
/// thread for output and from [`Console::send`] for input; `at` is the time since
/// [`Console::start`]. A sink that returns an error is logged and dropped.
pub trait Sink: Send {
    fn output(&mut self, at: Duration, bytes: &[u8]) -> io::Result<()>;
    fn input(&mut self, at: Duration, bytes: &[u8]) -> io::Result<()>;
}

/// What the reader thread hands to the engine.
enum Msg {
    Text(Vec<u8>),
    Error(io::Error),
}

struct Shared {
    sinks: Mutex<Vec<Box<dyn Sink>>>,
    screen: Mutex<Screen>,
    bytes: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Calls `f` on every sink, dropping (with a warning) those that fail.
fn each_sink(shared: &Shared, mut f: impl FnMut(&mut dyn Sink) -> io::Result<()>) {
    let mut sinks = lock(&shared.sinks);
    sinks.retain_mut(|s| match f(s.as_mut()) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!("serial transcript: {e}; no longer recording to it");
            false
        }
    });
}

/// The serial console of the VM: see the module documentation.
pub struct Console {
    stream: UnixStream,
    rx: Receiver<Msg>,
    /// Text buffers handed back to the reader thread for reuse (saves page faults).
    recycle: Sender<Vec<u8>>,
    shared: Arc<Shared>,
    reader: Option<JoinHandle<()>>,
    start: Instant,
    /// Stripped text: `buf[base..]` is the unmatched window; a little before `base` is kept
    /// as look-behind context.
    buf: Vec<u8>,
    base: usize,
    /// The reader thread is done (EOF or error) and everything it sent has been absorbed.
    closed: bool,
}

impl fmt::Debug for Console {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Console")
            .field("bytes_received", &self.bytes_received())
            .field("window", &(self.buf.len() - self.base))
            .field("closed", &self.closed)
            .finish()
    }
}

impl Console {
    /// Takes the serial socket; a reader thread reads it, writes every byte to the sinks and
    /// hands the text to the engine.
    pub fn start(stream: UnixStream, sinks: Vec<Box<dyn Sink>>) -> io::Result<Console> {
        let reader_stream = stream.try_clone()?;
        let shared = Arc::new(Shared {
            sinks: Mutex::new(sinks),
            screen: Mutex::new(Screen::new()),
            bytes: AtomicU64::new(0),
        });
        let (tx, rx) = mpsc::channel();
        let (recycle, recycled) = mpsc::channel();
        let start = Instant::now();
        let reader = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("serial-reader".into())
                .spawn(move || read_loop(reader_stream, &tx, &recycled, &shared, start))?
        };
        Ok(Console {
            stream,
            rx,
            recycle,
            shared,
            reader: Some(reader),
            start,
            buf: Vec::with_capacity(4 * WINDOW),
            base: 0,
            closed: false,
        })
    }

    /// Waits until one of `e.want` matches, a `e.fail` pattern matches, the stream closes or
    /// the timeout passes.
    pub fn expect(&mut self, e: &Expectation) -> Result<Matched, ExpectError> {
        self.expect_unless(e, &|| false)
    }

    /// [`Self::expect`], giving up as soon as `stopped()` says so: once a run is stopped,
    /// nothing more is matched (what the guest prints meanwhile is still recorded).
    pub fn expect_unless(
        &mut self,
        e: &Expectation,
        stopped: &dyn Fn() -> bool,
    ) -> Result<Matched, ExpectError> {
        let matcher = Matcher::new(e)?;
        let started = Instant::now();
        let deadline = crate::clock::deadline_from(started, e.timeout);
        let mut from = self.base;
        loop {
            if stopped() {
                return Err(ExpectError::Stopped {
                    step: e.step.clone(),
                });
            }
            if let Some((id, range)) = matcher.find(&self.buf, from) {
                if range.len() > WINDOW {
                    // Longer than the window: ignored, look for a later one.
                    from = range.start + 1;
                    continue;
                }
                return self.matched(e, &matcher, id, range, started);
            }
            if self.closed {
                return Err(ExpectError::Closed {
                    step: e.step.clone(),
                    waited_for: e.want.iter().map(ToString::to_string).collect(),
                    screen: self.last_lines(SCREEN_LINES),
                    ended: None,
                });
            }
            let now = Instant::now();
            let first = if now >= deadline {
                // One last look at what has already arrived.
                self.rx.try_recv().map_err(|e| match e {
                    TryRecvError::Empty => RecvTimeoutError::Timeout,
                    TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
                })
            } else {
                self.rx.recv_timeout((deadline - now).min(STOP_POLL))
            };
            match first {
                Ok(msg) => {
                    self.slide_window();
                    let old_end = self.buf.len();
                    self.absorb(msg)?;
                    // Take what else is queued, up to a window's worth, in the same search.
                    while !self.closed && self.buf.len() - old_end < WINDOW {
                        match self.rx.try_recv() {
                            Ok(msg) => self.absorb(msg)?,
                            Err(TryRecvError::Empty) => break,
                            Err(TryRecvError::Disconnected) => self.closed = true,
                        }
                    }
                    from = matcher.scan_from(&self.buf, old_end, self.base);
                }
                Err(RecvTimeoutError::Disconnected) => self.closed = true,
                // A quiet moment: look at the stop condition again.
                Err(RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Err(RecvTimeoutError::Timeout) => {
                    return Err(ExpectError::Timeout {
                        step: e.step.clone(),
                        waited_for: e.want.iter().map(ToString::to_string).collect(),
                        timeout: e.timeout,
                        screen: self.last_lines(SCREEN_LINES),
                    });
                }
            }
        }
    }

    fn matched(
        &mut self,
        e: &Expectation,
        matcher: &Matcher,
        id: usize,
        range: Range<usize>,
        started: Instant,
    ) -> Result<Matched, ExpectError> {
        let text = String::from_utf8_lossy(&self.buf[range.clone()]).into_owned();
        let end = range.end;
        let result = if id < matcher.n_fail {
            let line_start = memchr::memrchr(b'\n', &self.buf[..range.start]).map_or(0, |p| p + 1);
            let line_end =
                memchr::memchr(b'\n', &self.buf[end..]).map_or(self.buf.len(), |p| end + p);
            let line = String::from_utf8_lossy(&self.buf[line_start..line_end])
                .trim()
                .to_string();
            tracing::debug!(step = %e.step, pattern = %e.fail[id], %line, "failure pattern matched");
            Err(ExpectError::Failed {
                step: e.step.clone(),
                pattern: e.fail[id].to_string(),
                line,
                screen: self.last_lines(SCREEN_LINES),
            })
        } else {
            let index = id - matcher.n_fail;
            let elapsed = started.elapsed();
            tracing::debug!(step = %e.step, pattern = %e.want[index], ?elapsed, "matched");
            Ok(Matched {
                index,
                text,
                elapsed,
            })
        };
        self.base = end;
        result
    }

    /// Forgets unmatched text older than [`WINDOW`] before the end, and compacts the buffer
    /// now and then (amortised: at most one move per window's worth of text).
    fn slide_window(&mut self) {
        let len = self.buf.len();
        self.base = self.base.max(len.saturating_sub(WINDOW));
        if self.base > 2 * WINDOW {
            let drop = self.base - CONTEXT;
            self.buf.drain(..drop);
            self.base -= drop;
        }
    }

    fn absorb(&mut self, msg: Msg) -> Result<(), ExpectError> {
        match msg {
            Msg::Text(t) => {
                self.buf.extend_from_slice(&t);
                let _ = self.recycle.send(t);
                Ok(())
            }
            Msg::Error(e) => {
                self.closed = true;
                Err(ExpectError::Io(e))
            }
        }
    }

    /// Writes `bytes` to the guest and records them as an input event.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()?;
        let at = self.start.elapsed();
        each_sink(&self.shared, |s| s.input(at, bytes));
        Ok(())
    }

    /// Records `text` as input in the transcript without writing it to the stream: keys typed
    /// by other means (QMP, for the VGA screen), as they were written.
    pub fn record_input(&self, text: &str) {
        let at = self.start.elapsed();
        each_sink(&self.shared, |s| s.input(at, text.as_bytes()));
    }

    /// Whether any byte has arrived since the start, waiting up to `timeout` for one (a guest
    /// that prints nothing at all is likely hung).
    pub fn wait_for_output(&mut self, timeout: Duration) -> bool {
        if self.bytes_received() > 0 {
            return true;
        }
        if self.closed {
            return false;
        }
        match self.rx.recv_timeout(timeout) {
            Ok(msg) => {
                // The text stays in the window for the next expect.
                let _ = self.absorb(msg);
            }
            Err(RecvTimeoutError::Disconnected) => self.closed = true,
            Err(RecvTimeoutError::Timeout) => {}
        }
        self.bytes_received() > 0
    }

    /// Drains the console until the stream ends (QEMU exited), for up to `timeout`. The output
    /// is still recorded by the sinks and kept in the window.
    pub fn wait_closed(&mut self, timeout: Duration) -> Result<(), ExpectError> {
        let deadline = crate::clock::deadline(timeout);
        while !self.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(msg) => {
                    self.slide_window();
                    if let Err(e @ ExpectError::Io(_)) = self.absorb(msg) {
                        tracing::debug!("serial console ended with an error: {e}");
                    }
                }
                Err(RecvTimeoutError::Disconnected) => self.closed = true,
                Err(RecvTimeoutError::Timeout) => {
                    return Err(ExpectError::Timeout {
                        step: "wait for QEMU to exit".into(),
                        waited_for: vec!["the end of the serial output".into()],
                        timeout,
                        screen: self.last_lines(SCREEN_LINES),
                    });
                }
            }
        }
        Ok(())
    }

    /// The last `n` non-empty lines of the rendered screen (see [`Screen::last_lines`]).
    /// A handle that writes to the console from another thread (an attached operator),
    /// recording the input in the transcript like [`Console::send`].
    pub fn input_handle(&self) -> io::Result<InputHandle> {
        Ok(InputHandle {
            stream: self.stream.try_clone()?,
            shared: self.shared.clone(),
            start: self.start,
        })
    }

    pub fn last_lines(&self, n: usize) -> Vec<String> {
        lock(&self.shared.screen).last_lines(n)
    }

    /// Raw bytes read from the socket so far.
    pub fn bytes_received(&self) -> u64 {
        self.shared.bytes.load(Ordering::Relaxed)
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        // Ends the reader's blocking read.
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// Writes to the serial console from another thread: see [`Console::input_handle`].
pub struct InputHandle {
    stream: UnixStream,
    shared: Arc<Shared>,
    start: Instant,
}

impl InputHandle {
    pub fn send(&self, bytes: &[u8]) -> io::Result<()> {
        (&self.stream).write_all(bytes)?;
        let at = self.start.elapsed();
        each_sink(&self.shared, |s| s.input(at, bytes));
        Ok(())
    }
}

fn read_loop(
    mut stream: UnixStream,
    tx: &Sender<Msg>,
    recycled: &Receiver<Vec<u8>>,
    shared: &Shared,
    start: Instant,
) {
    let mut buf = vec![0u8; READ_SIZE];
    let mut stripper = Stripper::new();
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = tx.send(Msg::Error(e));
                return;
            }
        };
        let raw = &buf[..n];
        let at = start.elapsed();
        each_sink(shared, |s| s.output(at, raw));
        lock(&shared.screen).push(raw);
        shared.bytes.fetch_add(n as u64, Ordering::Relaxed);
        let mut text = recycled.try_recv().unwrap_or_default();
        text.clear();
        stripper.feed(raw, &mut text);
        if tx.send(Msg::Text(text)).is_err() {
            return; // the Console is gone
        }
        if n < TRICKLE && raw.ends_with(b"\n") {
            std::thread::sleep(GATHER);
        }
    }
    let mut text = Vec::new();
    stripper.finish(&mut text);
    if !text.is_empty() {
        let _ = tx.send(Msg::Text(text));
    }
    // Dropping `tx` tells the engine the stream ended.
}

#[cfg(test)]
mod tests;
