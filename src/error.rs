//! The one error type the command line sees, with an exit code and a hint for each kind.

/// Every failure ferry reports. Module errors convert into it; `main` prints it and exits
/// with [`Error::exit_code`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Error {
    /// Exit codes are part of ferry's interface (scripts branch on them); see README.md.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => 2,
            Error::Io(_) => 1,
        }
    }
}
