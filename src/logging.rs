//! `ferry.log`: a detailed log of each run, written through `tracing` into the run directory,
//! the run's secret values redacted from each line as it is written.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use tracing_subscriber::fmt::MakeWriter;

use crate::run::Secrets;

/// The current run's log file and the values to redact from it; events before a run
/// directory exists are dropped. (A static: the tracing subscriber is process-wide.)
static LOG_FILE: Mutex<Option<(File, Secrets)>> = Mutex::new(None);

/// Installs the global subscriber once (later calls do nothing).
pub fn init() {
    let _ = tracing_subscriber::fmt()
        .with_writer(RunLog)
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .try_init();
}

/// Sends the log to `path` from now on.
pub fn log_to(path: &Path) -> std::io::Result<()> {
    init();
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
