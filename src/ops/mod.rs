//! Operating an install: it runs in a supervisor process that survives the terminal, and other
//! shells can list, watch, join, pause/resume and bundle it.
//!
//! - [`supervise`]: `ferry install` starts the supervisor (`ferry supervise RUN_DIR`, in its
//!   own session) and follows its events; `--detach` leaves at once.
//! - [`lock`]: one install per target disk.
//! - [`control`]: the run's control socket (`control.sock`): attach, resume, abort.
//! - [`live`]: what the control socket reaches inside the supervisor: the serial console of
//!   the running VM, viewers, the pause on failure, the ACPI power-down on signals.
//! - [`attach`]: the raw terminal of `ferry attach` (restored on every exit path).
//! - [`progress`]: the foreground's status line (terminal) or periodic lines (logs).
//! - [`runs`]: `ferry runs`, `status`, `logs`.
//! - [`bundle`]: `ferry bundle`, with secrets redacted.
//! - [`cache`]: `ferry cache list|prune|clean`.
//!
//! The run's records (events, status, secrets) are [`crate::run`]'s.

pub mod attach;
pub mod bundle;
pub mod cache;
pub mod control;
pub mod live;
pub mod lock;
pub mod progress;
pub mod runs;
pub mod supervise;

use std::path::PathBuf;

/// Failures of the operations commands.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(
        "{disk} is already being installed by run {run_dir} (ferry pid {pid}); see `ferry status {}`",
        crate::run::RunDir::at(run_dir).command_args()
    )]
    Busy {
        disk: PathBuf,
        run_dir: String,
        pid: String,
    },
    #[error("no run {0} (see `ferry runs`)")]
    NoSuchRun(String),
    #[error("no runs in {}", .0.display())]
    NoRuns(PathBuf),
    #[error("run {run} is not live ({why})")]
    NotLive { run: String, why: String },
    #[error("run {run}: {message}")]
    Refused { run: String, message: String },
    #[error("the supervisor of run {} ended without saying how the install ended; see its ferry.log", .0.display())]
    SupervisorLost(PathBuf),
    #[error("bundle: {0}")]
    Bundle(String),
}

impl OpsError {
    /// Exit codes are part of ferry's interface; see README.md.
    pub fn exit_code(&self) -> i32 {
        match self {
            OpsError::Busy { .. } => 8,
            OpsError::NoSuchRun(_)
            | OpsError::NoRuns(_)
            | OpsError::NotLive { .. }
            | OpsError::Refused { .. } => 9,
            OpsError::SupervisorLost(_) | OpsError::Bundle(_) => 1,
        }
    }
}
