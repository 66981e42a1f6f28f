//! `ferry.log`: a detailed log of each run, written through `tracing` into the run directory.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use tracing_subscriber::fmt::MakeWriter;

/// The current run's log file; events before a run directory exists are dropped.
static LOG_FILE: Mutex<Option<File>> = Mutex::new(None);

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
    *LOG_FILE.lock().unwrap_or_else(|e| e.into_inner()) = Some(file);
    Ok(())
}

#[derive(Clone, Copy)]
struct RunLog;

impl Write for RunLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(file) = LOG_FILE.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            file.write_all(buf)?;
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
