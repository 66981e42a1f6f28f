//! `ferry.log`: a detailed log of each run, written through `tracing` into the run directory,
//! the run's secret values redacted from each line as it is written; and, with `-v` or
//! `FERRY_LOG`, the same events on this process's stderr.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;

use crate::run::Secrets;

/// The current run's log file and the values to redact from it; events before a run
/// directory exists are dropped. (A static: the tracing subscriber is process-wide.)
static LOG_FILE: Mutex<Option<(File, Secrets)>> = Mutex::new(None);

/// What this process logs on stderr: `FERRY_LOG` (a tracing filter such as `ferry=debug`)
/// wins; else `-v` info, `-vv` debug, `-vvv` trace; else nothing.
pub fn stderr_filter(verbose: u8, ferry_log: Option<&str>) -> Result<Option<EnvFilter>, String> {
    if let Some(spec) = ferry_log.filter(|s| !s.is_empty()) {
        return EnvFilter::builder()
            .parse(spec)
            .map(Some)
            .map_err(|e| format!("FERRY_LOG={spec}: {e} (e.g. FERRY_LOG=debug or ferry=trace)"));
    }
    let level = match verbose {
        0 => return Ok(None),
        1 => LevelFilter::INFO,
        2 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    };
    Ok(Some(EnvFilter::default().add_directive(level.into())))
}

/// Installs the global subscriber once (later calls do nothing): the run's log file at debug
/// level, and stderr under `stderr` if given.
pub fn init(stderr: Option<EnvFilter>, ansi: bool) {
    let file = tracing_subscriber::fmt::layer()
        .with_writer(RunLog)
        .with_ansi(false)
        .with_filter(LevelFilter::DEBUG);
    let stderr = stderr.map(|filter| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .with_filter(filter)
    });
    let _ = tracing_subscriber::registry()
        .with(file)
        .with(stderr)
        .try_init();
}

/// Sends the log to `path` from now on.
pub fn log_to(path: &Path) -> std::io::Result<()> {
    // The supervisor's stderr is supervisor.log: the events go to ferry.log only.
    init(None, false);
    let file = File::options().create(true).append(true).open(path)?;
    *LOG_FILE.lock().unwrap_or_else(|e| e.into_inner()) = Some((file, Secrets::default()));
    Ok(())
}

/// Redacts `secrets` from every later line (they are known once the profile is loaded).
pub fn redact(secrets: &Secrets) {
    if let Some((_, current)) = LOG_FILE.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        *current = secrets.clone();
    }
}

/// Panic messages go to the supervisor's stderr (`supervisor.log`) with `secrets` redacted: a
/// message may quote a value it failed on.
pub fn redact_panics(secrets: &Secrets) {
    let secrets = secrets.clone();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        let mut text = format!("thread '{}' {info}\n", thread.name().unwrap_or("<unnamed>"));
        let backtrace = std::backtrace::Backtrace::capture();
        if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
            text.push_str(&format!("{backtrace}\n"));
        }
        let _ = std::io::stderr().write_all(secrets.redact(&text).as_bytes());
    }));
}

#[derive(Clone, Copy)]
struct RunLog;

impl Write for RunLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The formatter writes each event whole: one line, redacted alone.
        if let Some((file, secrets)) = LOG_FILE.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            file.write_all(&secrets.redact_bytes(buf))?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for RunLog {
    type Writer = RunLog;
    fn make_writer(&'a self) -> RunLog {
        RunLog
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbosity_and_ferry_log_choose_the_stderr_filter() {
        assert!(stderr_filter(0, None).unwrap().is_none());
        assert!(stderr_filter(0, Some("")).unwrap().is_none());
        let show = |v, env| stderr_filter(v, env).unwrap().unwrap().to_string();
        assert_eq!(show(1, None), "info");
        assert_eq!(show(2, None), "debug");
        assert_eq!(show(5, None), "trace");
        assert_eq!(show(1, Some("ferry=trace")), "ferry=trace");
        let bad = stderr_filter(0, Some("ferry=loud")).unwrap_err();
        assert!(bad.starts_with("FERRY_LOG=ferry=loud: "), "{bad}");
    }
}
