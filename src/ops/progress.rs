//! What the foreground of `ferry install` shows while a run goes on, from its events: on a
//! terminal, one status line (stage, step i/n, elapsed against the step's timeout, the last
//! console line; in the fetch stage, the download's bytes, rate and time left) redrawn at least once a second under the progress lines; elsewhere (a log, a
//! pipe), a plain "still waiting" line when nothing was printed for an interval, so a long
//! step shows life; with `--quiet`, nothing.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::Error;
use crate::run::events::{Line, Timestamp};
use crate::run::{Event, RunDir, Stage};

/// How often the plain line comes when nothing else was printed; tests lower it.
pub const INTERVAL_ENV: &str = "FERRY_PROGRESS_INTERVAL";
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
/// How often the status line reads the console's last line (it renders `serial.log`'s tail).
const CONSOLE_EVERY: Duration = Duration::from_millis(500);

/// Where the progress goes.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// `--quiet`: nothing.
    Quiet,
    /// stderr is a terminal: the status line.
    Terminal,
    /// stderr is a file or a pipe: a plain line every `interval` of silence.
    Lines { interval: Duration },
}

impl Mode {
    /// The mode for this process's stderr; [`INTERVAL_ENV`] sets the plain lines' interval.
    pub fn for_stderr(quiet: bool) -> Result<Mode, Error> {
        if quiet {
            return Ok(Mode::Quiet);
        }
        if std::io::stderr().is_terminal() {
            return Ok(Mode::Terminal);
        }
        let interval = match std::env::var(INTERVAL_ENV) {
            Ok(text) => humantime::parse_duration(&text)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    Error::Usage(format!(
                        "{INTERVAL_ENV}={text:?}: expected a duration such as 30s"
                    ))
                })?,
            Err(_) => DEFAULT_INTERVAL,
        };
        Ok(Mode::Lines { interval })
    }
}

/// The step under way, as its `step` event said.
struct Step {
    name: String,
    index: usize,
    count: usize,
    timeout: Duration,
    since: Timestamp,
}

/// The download under way, as its last `download` event said, and when.
struct Download {
    url: String,
    done: u64,
    total: Option<u64>,
    bytes_per_second: u64,
    at: Timestamp,
}

/// A download that reported nothing for this long is said to be stalled: bytes that flow are
/// reported every second.
const STALLED: Duration = Duration::from_secs(5);

impl Download {
    /// `tiny.iso 12.0 MiB of 30.0 MiB (40%) at 1.5 MiB/s, 12s left`: the file's name (the
    /// URL's last segment; the progress line before named it in full) and how far it is; a
    /// stalled one `… at 0 B/s, nothing for 0:12` rather than its last rate and time left.
    fn describe(&self, now: Timestamp) -> String {
        let name = self.url.trim_end_matches('/').rsplit('/').next();
        let quiet = now.since(self.at);
        let (rate, stalled) = match quiet >= STALLED {
            true => (0, format!(", nothing for {}", clock(quiet))),
            false => (self.bytes_per_second, String::new()),
        };
        format!(
            "{} {}{stalled}",
            name.unwrap_or(&self.url),
            crate::fetch::progress::describe(self.done, self.total, rate)
        )
    }
}

/// The foreground's progress output. Dropping it clears the status line, so no half line is
/// left on any exit path.
pub struct Progress {
    out: Out,
    run_dir: RunDir,
    stage: Option<(Stage, Timestamp)>,
    step: Option<Step>,
    download: Option<Download>,
    paused: bool,
    console: String,
    console_read: Option<Instant>,
}

enum Out {
    Quiet,
    Terminal {
        multi: MultiProgress,
        bar: ProgressBar,
    },
    Lines {
        interval: Duration,
        last: Instant,
    },
}

impl Progress {
    pub fn new(mode: Mode, run_dir: &RunDir) -> Progress {
        let out = match mode {
            Mode::Quiet => Out::Quiet,
            Mode::Lines { interval } => Out::Lines {
                interval,
                last: Instant::now(),
            },
            Mode::Terminal => {
                let term = StatusTerm(console::Term::stderr());
                let multi =
                    MultiProgress::with_draw_target(ProgressDrawTarget::term_like(Box::new(term)));
                let style =
                    ProgressStyle::with_template("{spinner} {msg}").expect("valid template");
                let bar = multi.add(ProgressBar::new_spinner().with_style(style));
                bar.enable_steady_tick(Duration::from_millis(250));
                Out::Terminal { multi, bar }
            }
        };
        Progress {
            out,
            run_dir: run_dir.clone(),
            stage: None,
            step: None,
            download: None,
            paused: false,
            console: String::new(),
            console_read: None,
        }
    }

    /// Takes in what an event says about where the run stands.
    pub fn event(&mut self, line: &Line) {
        match &line.event {
            Event::Progress { stage, .. } | Event::Step { stage, .. }
                if self.stage.is_none_or(|(s, _)| s != *stage) =>
            {
                self.stage = Some((*stage, line.time));
                self.step = None;
            }
            _ => {}
        }
        match &line.event {
            Event::Step {
                name,
                index,
                count,
                timeout_seconds,
                ..
            } => {
                self.step = Some(Step {
                    name: name.clone(),
                    index: *index,
                    count: *count,
                    timeout: Duration::try_from_secs_f64(*timeout_seconds).unwrap_or_default(),
                    since: line.time,
                });
            }
            Event::Download {
                url,
                done_bytes,
                total_bytes,
                bytes_per_second,
            } => {
                self.stage.get_or_insert((Stage::Fetch, line.time));
                self.download = Some(Download {
                    url: url.clone(),
                    done: *done_bytes,
                    total: *total_bytes,
                    bytes_per_second: *bytes_per_second,
                    at: line.time,
                });
            }
            // The download is over, or a retry or the next mirror is said: its next `download`
            // event brings it back.
            Event::Progress { .. } => self.download = None,
            Event::Paused { .. } => self.paused = true,
            Event::Resumed { .. } => self.paused = false,
            _ => {}
        }
    }

    /// Prints `text` as a line of its own (above the status line on a terminal). A closed
    /// terminal must not end the install: write errors are ignored.
    pub fn say(&mut self, text: &str) {
        match &mut self.out {
            Out::Quiet => {}
            Out::Terminal { multi, .. } => {
                let _ = multi.println(text);
            }
            Out::Lines { last, .. } => {
                let _ = writeln!(std::io::stderr(), "{text}");
                *last = Instant::now();
            }
        }
    }

    /// Brings the status line up to date, or prints the plain line when it is due.
    pub fn tick(&mut self) {
        if self.stage.is_none() {
            return;
        }
        match &self.out {
            Out::Quiet => {}
            Out::Terminal { .. } => {
                self.read_console();
                let mut text = self.where_now(Timestamp::now());
                if !self.console.is_empty() {
                    text = format!("{text} · {}", self.console);
                }
                // Short of the last columns (see StatusTerm).
                let room = terminal_width().saturating_sub(2 + ECHO_MARGIN);
                let text: String = text.chars().take(room).collect();
                if let Out::Terminal { bar, .. } = &self.out {
                    bar.set_message(text);
                }
            }
            Out::Lines { interval, last } if !self.paused && last.elapsed() >= *interval => {
                self.read_console();
                let mut text =
                    format!("ferry: still waiting: {}", self.where_now(Timestamp::now()));
                if !self.console.is_empty() {
                    text = format!("{text}; console: {}", self.console);
                }
                self.say(&text);
            }
            Out::Lines { .. } => {}
        }
    }

    /// Clears the status line (before the run's final lines are printed).
    pub fn clear(&mut self) {
        if let Out::Terminal { bar, .. } = &self.out {
            bar.finish_and_clear();
        }
    }

    /// Where the run stands: stage, step i/n with its name, elapsed against the step's
    /// timeout (or the time in the stage between steps).
    fn where_now(&self, now: Timestamp) -> String {
        let Some((stage, since)) = self.stage else {
            return String::new();
        };
        let paused = if self.paused { " (paused)" } else { "" };
        match &self.step {
            Some(step) => format!(
                "{stage} · step {}/{} '{}'{paused} · {} / {}",
                step.index,
                step.count,
                step.name,
                clock(now.since(step.since)),
                clock(step.timeout)
            ),
            None => match &self.download {
                Some(download) => format!(
                    "{stage} · {} · {}",
                    clock(now.since(since)),
                    download.describe(now)
                ),
                None => format!("{stage}{paused} · {}", clock(now.since(since))),
            },
        }
    }

    /// The console's last line, control characters dropped (it goes on one terminal line).
    fn read_console(&mut self) {
        if self
            .console_read
            .is_some_and(|at| at.elapsed() < CONSOLE_EVERY)
        {
            return;
        }
        self.console_read = Some(Instant::now());
        self.console = super::runs::console_lines(&self.run_dir, 1)
            .pop()
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_control())
            .collect::<String>()
            .trim()
            .to_string();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Columns the status line leaves free at the end of the terminal's line.
const ECHO_MARGIN: usize = 8;

/// stderr's terminal as the status line's draw target, ending its lines [`ECHO_MARGIN`]
/// columns short of the edge: the terminal echoes a Ctrl-C (`^C`) after the line, and a line
/// pushed to wrap by it could no longer be redrawn in place (it would stay on the screen).
#[derive(Debug)]
struct StatusTerm(console::Term);

impl indicatif::TermLike for StatusTerm {
    fn width(&self) -> u16 {
        self.0.size().1
    }
    fn height(&self) -> u16 {
        self.0.size().0
    }
    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_up(n)
    }
    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_down(n)
    }
    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_right(n)
    }
    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_left(n)
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.0.write_line(s)
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        // indicatif pads a line with spaces to the edge; each redraw clears the line anyway.
        match s.bytes().all(|b| b == b' ') {
            true => self.0.write_str(&s[..s.len().saturating_sub(ECHO_MARGIN)]),
            false => self.0.write_str(s),
        }
    }
    fn clear_line(&self) -> std::io::Result<()> {
        self.0.clear_line()
    }
    fn flush(&self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// The width of the terminal on stderr.
fn terminal_width() -> usize {
    usize::from(console::Term::stderr().size().1)
}

/// `m:ss`, or `h:mm:ss` from an hour on.
fn clock(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        3600.. => format!("{}:{:02}:{:02}", s / 3600, s % 3600 / 60, s % 60),
        _ => format!("{}:{:02}", s / 60, s % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::events::SCHEMA_VERSION;
    use std::time::SystemTime;

    fn at(secs: u64, event: Event) -> Line {
        Line {
            schema_version: SCHEMA_VERSION,
            time: now(secs),
            event,
        }
    }

    fn now(secs: u64) -> Timestamp {
        Timestamp::from(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
    }

    /// A progress with no output, and the event that puts it in `stage` at second 100.
    fn in_stage(dir: &tempfile::TempDir, stage: Stage, message: &str) -> Progress {
        let mut progress = Progress::new(Mode::Quiet, &RunDir::at(dir.path()));
        progress.event(&at(
            100,
            Event::Progress {
                stage,
                message: message.into(),
            },
        ));
        progress
    }

    #[test]
    fn the_status_names_stage_step_and_elapsed_against_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let mut progress = in_stage(&dir, Stage::Boot, "starting QEMU");
        assert_eq!(progress.where_now(now(107)), "boot · 0:07");
        progress.event(&at(
            110,
            Event::Step {
                stage: Stage::Drive,
                name: "installation".into(),
                index: 2,
                count: 3,
                timeout_seconds: 3600.0,
            },
        ));
        assert_eq!(
            progress.where_now(now(200)),
            "drive · step 2/3 'installation' · 1:30 / 1:00:00"
        );
        progress.event(&at(
            200,
            Event::Paused {
                step: "installation".into(),
                message: "timed out".into(),
            },
        ));
        assert!(progress.where_now(now(200)).contains("(paused)"));
        // A later stage's line ends the step.
        progress.event(&at(
            300,
            Event::Progress {
                stage: Stage::Finish,
                message: "waiting for power-off".into(),
            },
        ));
        assert!(progress.where_now(now(301)).starts_with("finish"));
    }

    #[test]
    fn in_the_fetch_stage_the_status_names_the_download_and_how_far_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let mut progress = in_stage(&dir, Stage::Fetch, "downloading http://h/pub/x.iso");
        let download = |done| Event::Download {
            url: "http://h/pub/x.iso".into(),
            done_bytes: done,
            total_bytes: Some(30 << 20),
            bytes_per_second: 3 << 19,
        };
        progress.event(&at(101, download(12 << 20)));
        assert_eq!(
            progress.where_now(now(104)),
            "fetch · 0:04 · x.iso 12.0 MiB of 30.0 MiB (40%) at 1.5 MiB/s, 12s left"
        );
        // A retry's line hides the numbers until the transfer reports again.
        progress.event(&at(
            109,
            Event::Progress {
                stage: Stage::Fetch,
                message: "retrying in 1s".into(),
            },
        ));
        assert_eq!(progress.where_now(now(110)), "fetch · 0:10");
        progress.event(&at(111, download(15 << 20)));
        assert!(
            progress
                .where_now(now(111))
                .contains("x.iso 15.0 MiB of 30.0 MiB (50%)")
        );
        // Nothing more comes: no rate and time left from before, but how long it has stalled.
        assert_eq!(
            progress.where_now(now(123)),
            "fetch · 0:23 · x.iso 15.0 MiB of 30.0 MiB (50%) at 0 B/s, nothing for 0:12"
        );
    }
}
