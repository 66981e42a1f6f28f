//! What the operator sees while an install runs: one line per event on stderr, mirrored into
//! `ferry.log`. Kept apart from the flow so `--quiet` and `--json` only change this.

use std::io::Write;

use super::run::Stage;

pub struct Progress {
    pub quiet: bool,
}

impl Progress {
    pub fn stage(&self, stage: Stage, message: &str) {
        tracing::info!(stage = stage.name(), "{message}");
        if !self.quiet {
            // A closed terminal must not end the install: ignore write errors.
            let _ = writeln!(std::io::stderr(), "ferry: {:<6} {message}", stage.name());
        }
    }
}
