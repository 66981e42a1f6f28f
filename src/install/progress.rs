//! What the operator sees while an install runs: one line per event in `events.jsonl` (the
//! foreground prints them on stderr), mirrored into `ferry.log`.

use super::run::Stage;

pub struct Progress {
    pub quiet: bool,
}

impl Progress {
    /// Logs a progress line and records it in `events.jsonl`, which the foreground prints
    /// (see [`crate::ops::supervise`]). Secret values are redacted.
    pub fn stage(&self, stage: Stage, message: &str) {
        let message = crate::ops::secrets::redact(message);
        tracing::info!(stage = stage.name(), "{message}");
        crate::ops::events::emit(&crate::ops::events::Event::Progress {
            stage: stage.name().to_string(),
            message,
        });
    }
}
