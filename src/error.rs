//! The one error type the command line sees, with an exit code for each kind.

use std::path::PathBuf;

use crate::console::ExpectError;
use crate::fetch::FetchError;
use crate::host::disk::DiskError;
use crate::image::{ImageError, IsoError};
use crate::profile::{ProfileError, TemplateError};
use crate::qemu::{ProcessError, QemuError};
use crate::recipe::network::NetworkError;
use crate::run::Stage;

/// Every failure ferry reports. Module errors convert into it; `main` prints it and exits
/// with [`Error::exit_code`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error(transparent)]
    Plan(#[from] crate::install::plan::PlanError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error(transparent)]
    Disk(#[from] DiskError),
    #[error(transparent)]
    Esp(#[from] crate::install::esp::EspError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Iso(#[from] IsoError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Stream(#[from] crate::fetch::stream::StreamError),
    #[error(transparent)]
    Qemu(#[from] QemuError),
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(
        "{stage}: {source}\nthe run's logs are in {}; `ferry bundle {}` packs them for support",
        run_dir.display(),
        crate::run::RunDir::at(run_dir).command_args()
    )]
    Step {
        stage: Stage,
        source: Box<ExpectError>,
        run_dir: PathBuf,
    },
    #[error(transparent)]
    Ops(#[from] crate::ops::OpsError),
    #[error("interrupted: QEMU was stopped; the disk holds an unfinished install")]
    Interrupted,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Error {
    /// Exit codes are part of ferry's interface (scripts branch on them); see README.md.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Io(_) => 1,
            Error::Usage(_) | Error::Profile(_) | Error::Template(_) | Error::Network(_) => 2,
            Error::Disk(e) => e.exit_code(),
            Error::Plan(e) => e.exit_code(),
            Error::Esp(e) => e.exit_code(),
            Error::Image(_) | Error::Iso(_) | Error::Fetch(_) => 4,
            Error::Stream(e) => e.exit_code(),
            Error::Qemu(_) | Error::Process(_) => 5,
            Error::Step {
                stage: Stage::Verify,
                ..
            } => 7,
            Error::Step { .. } => 6,
            Error::Ops(e) => e.exit_code(),
            Error::Interrupted => 130,
        }
    }
}
