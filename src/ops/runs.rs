//! `ferry runs`, `ferry status`, `ferry logs`: runs as other shells see them, from the files
//! in their run directories (no connection to the supervisor needed).

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::OpsError;
use crate::Error;
use crate::console::screen::Screen;
use crate::run::RunDir;
use crate::run::events::{self, State, Status};

/// Run directories under `root`, newest first (their names start with the UTC start time).
pub fn list_dirs(root: &Path) -> Vec<RunDir> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_dir()
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    dirs.sort();
    dirs.reverse();
    dirs.into_iter().map(RunDir::at).collect()
}

/// `RUN` as given (a run id under `root`, or a path), or the newest run.
pub fn resolve(root: &Path, run: Option<&str>) -> Result<RunDir, Error> {
    match run {
        None => list_dirs(root)
            .into_iter()
            .next()
            .ok_or_else(|| OpsError::NoRuns(root.to_path_buf()).into()),
        Some(run) => {
            let path = Path::new(run);
            for candidate in [RunDir::at(root.join(run)), RunDir::at(path)] {
                if candidate.status().is_file() || candidate.plan().is_file() {
                    return Ok(candidate);
                }
            }
            Err(OpsError::NoSuchRun(run.to_string()).into())
        }
    }
}

/// A run's status, with a running run whose supervisor is gone shown as failed.
pub fn status_of(dir: &RunDir) -> Option<Status> {
    let mut status = events::read_status(dir)?;
    if matches!(status.state, State::Running | State::Paused) && !alive(status.pid) {
        status.state = State::Failed;
        status.step = format!(
            "the supervisor (pid {}) is gone: {}",
            status.pid, status.step
        );
    }
    Some(status)
}

fn alive(pid: u32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
}

/// `ferry runs`.
pub fn print_list(root: &Path) {
    println!(
        "{:<32} {:<20} {:<24} {:<7} {:<11} started",
        "RUN", "PROFILE", "DISK", "STAGE", "STATE"
    );
    for dir in list_dirs(root) {
        let id = dir.name();
        match status_of(&dir) {
            Some(s) => println!(
                "{id:<32} {:<20} {:<24} {:<7} {:<11} {}",
                s.profile
                    .file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
                s.disk.display(),
                s.stage,
                s.state,
                s.started
            ),
            None => println!("{id:<32} (no status.json: not a ferry run, or from an older ferry)"),
        }
    }
}

/// `ferry runs --json`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct RunList {
    pub runs: Vec<Listed>,
}

/// A run in `ferry runs --json`; `status` is null for a directory without status.json.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Listed {
    pub run: String,
    pub run_dir: PathBuf,
    pub status: Option<Status>,
}

/// The runs under `root`, newest first.
pub fn list(root: &Path) -> RunList {
    let runs = list_dirs(root)
        .into_iter()
        .map(|dir| Listed {
            run: dir.name(),
            run_dir: dir.path().to_path_buf(),
            status: status_of(&dir).map(|mut s| {
                s.schema_version = events::SCHEMA_VERSION;
                s
            }),
        })
        .collect();
    RunList { runs }
}

/// What `ferry runs prune` did.
#[derive(Debug, Default)]
pub struct Pruned {
    pub removed: Vec<String>,
    /// Runs still running or paused (their supervisor is alive): never removed.
    pub live: Vec<String>,
}

/// `ferry runs prune --older-than AGE`: removes the run directories under `root` that ended
/// (or whose supervisor is gone) and were last updated more than `older_than` ago. A live
/// run, and a directory without status.json (not ferry's to judge), are kept.
pub fn prune(root: &Path, older_than: Duration) -> Result<Pruned, Error> {
    let now = events::Timestamp::now();
    let mut pruned = Pruned::default();
    for dir in list_dirs(root) {
        let Some(status) = status_of(&dir) else {
            continue;
        };
        if matches!(status.state, State::Running | State::Paused) {
            pruned.live.push(dir.name());
        } else if now.since(status.updated) >= older_than {
            std::fs::remove_dir_all(dir.path())?;
            pruned.removed.push(dir.name());
        }
    }
    Ok(pruned)
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Report {
    pub run: String,
    #[serde(flatten)]
    pub status: Status,
    pub elapsed_seconds: u64,
    pub console: Vec<String>,
    /// The VGA screen's last lines, when the run reads it (steps with `console = "screen"`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub screen: Vec<String>,
}

pub fn report(dir: &RunDir, lines: usize) -> Result<Report, Error> {
    let run = dir.name();
    let mut status = status_of(dir).ok_or_else(|| OpsError::NoSuchRun(run.clone()))?;
    // What this ferry prints, whichever ferry wrote status.json.
    status.schema_version = events::SCHEMA_VERSION;
    let end = if matches!(status.state, State::Running | State::Paused) {
        events::Timestamp::now()
    } else {
        status.updated
    };
    Ok(Report {
        run,
        elapsed_seconds: end.since(status.started).as_secs(),
        console: console_lines(dir, lines),
        screen: last_lines(&dir.screen_log(), lines),
        status,
    })
}

/// The last lines of the newest VM's console (the boot check's once it has started, else the
/// installer's), rendered (escape sequences applied).
pub fn console_lines(dir: &RunDir, n: usize) -> Vec<String> {
    let verify = dir.verify().serial_log();
    let log = if verify.exists() {
        verify
    } else {
        dir.serial_log()
    };
    last_lines(&log, n)
}

/// The last `n` lines of a console record (`serial.log`, `screen.log`), rendered.
fn last_lines(path: &Path, n: usize) -> Vec<String> {
    let mut screen = Screen::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let len = f.metadata().map_or(0, |m| m.len());
        let _ = f.seek(SeekFrom::Start(len.saturating_sub(Screen::CAPACITY as u64)));
        let mut bytes = Vec::new();
        let _ = f.read_to_end(&mut bytes);
        screen.push(&bytes);
    }
    screen.last_lines(n)
}

pub fn print_report(r: &Report) {
    println!("run:      {} ({})", r.run, r.status.run_dir.display());
    println!("profile:  {}", r.status.profile.display());
    println!("disk:     {}", r.status.disk.display());
    if matches!(r.status.state, State::Running | State::Paused) {
        println!("state:    {} (pid {})", r.status.state, r.status.pid);
        println!("stage:    {}", r.status.stage);
        println!("step:     {}", r.status.step);
    } else {
        // An ended run: its supervisor is gone, and its last line is how it ended.
        let code = r.status.exit_code.map(|c| format!(" (exit {c})"));
        println!("state:    {}{}", r.status.state, code.unwrap_or_default());
        println!("stage:    {}", r.status.stage);
        println!("result:   {}", r.status.step);
    }
    println!(
        "elapsed:  {}",
        humantime::format_duration(Duration::from_secs(r.elapsed_seconds))
    );
    println!("console:");
    for line in &r.console {
        println!("  | {line}");
    }
    if !r.screen.is_empty() {
        println!("screen:");
        for line in &r.screen {
            println!("  | {line}");
        }
    }
}

/// `ferry logs`: prints `serial.log` (or `ferry.log`), and with `follow` keeps printing what
/// is appended until the run ends.
pub fn logs(dir: &RunDir, ferry_log: bool, follow: bool) -> Result<(), Error> {
    let path = if ferry_log {
        dir.ferry_log()
    } else {
        dir.serial_log()
    };
    let mut offset = 0u64;
    let mut out = std::io::stdout();
    loop {
        let running =
            status_of(dir).is_some_and(|s| matches!(s.state, State::Running | State::Paused));
        if let Ok(mut f) = std::fs::File::open(&path) {
            f.seek(SeekFrom::Start(offset))?;
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes)?;
            offset += bytes.len() as u64;
            if out.write_all(&bytes).and_then(|()| out.flush()).is_err() {
                return Ok(()); // the reader went away (`| head`)
            }
        }
        if !follow || !running {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
