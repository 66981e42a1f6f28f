//! The live side of a run, inside the supervisor: attached viewers of the serial console, the
//! input they type, the pause after a failed step, and stopping on signals. [`Live`] is what
//! the install flow reaches through [`crate::install::Live`]; the control socket and the
//! signal watcher hold clones of it.

use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Once};
use std::time::Duration;

use crate::console::{InputHandle, Sink};
use crate::install::Decision;
use crate::run::{Event, Record, Stage};

/// What to do when a step fails (`--on-failure`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Leave the VM running and wait for `ferry resume` or `ferry abort`.
    Pause,
    /// Stop the VM and fail the install.
    Abort,
}

/// The live state of one run. Cheap to clone; every clone is the same run.
#[derive(Clone)]
pub struct Live(Arc<Shared>);

struct Shared {
    record: Record,
    on_failure: OnFailure,
    /// After Ctrl-C: how long the guest gets to power off before QEMU is stopped.
    grace: Duration,
    state: Mutex<State>,
    decided: Condvar,
}

#[derive(Default)]
struct State {
    viewers: Vec<UnixStream>,
    input: Option<InputHandle>,
    paused: Option<String>,
    decision: Option<Decision>,
}

impl Live {
    pub fn new(record: Record, on_failure: OnFailure, grace: Duration) -> Live {
        Live(Arc::new(Shared {
            record,
            on_failure,
            grace,
            state: Mutex::default(),
            decided: Condvar::new(),
        }))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a viewer: it gets everything the console prints from now on.
    pub fn add_viewer(&self, stream: &UnixStream) -> io::Result<()> {
        let stream = stream.try_clone()?;
        stream.set_write_timeout(Some(Duration::from_secs(1)))?;
        self.state().viewers.push(stream);
        Ok(())
    }

    /// Types `bytes` into the console of the running VM.
    pub fn type_input(&self, bytes: &[u8]) -> io::Result<()> {
        match &self.state().input {
            Some(input) => input.send(bytes),
            None => Err(io::Error::other("no VM is running")),
        }
    }

    /// `ferry resume` / `ferry abort`: fails unless the run is paused.
    pub fn decide(&self, decision: Decision) -> Result<(), String> {
        let mut state = self.state();
        if state.paused.is_none() {
            return Err("the run is not paused".into());
        }
        state.decision = Some(decision);
        self.0.decided.notify_all();
        Ok(())
    }

    /// A progress line from the live side (the pause, the interruption).
    fn progress(&self, stage: Stage, message: &str) {
        self.0.record.progress(stage, message);
    }

    /// SIGINT and SIGTERM: the first presses the guest's power button (ACPI power-down) and
    /// quits QEMU after the grace period; the second quits QEMU at once. SIGHUP is ignored: a
    /// closed terminal does not end an install. The flow then ends as `Interrupted`. Signal
    /// handling is per process: only the first call watches.
    pub fn watch_signals(&self) {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
            let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
            else {
                return;
            };
            let live = self.clone();
            std::thread::spawn(move || {
                let mut count = 0;
                for signal in signals.forever() {
                    if signal == SIGHUP {
                        tracing::info!("SIGHUP ignored: the install goes on");
                        continue;
                    }
                    count += 1;
                    live.0.record.stop.raise();
                    if count == 1 {
                        let grace = live.0.grace;
                        tracing::warn!(
                            signal,
                            "interrupted: powering the guest off (ACPI), QEMU quits in {}s at the latest",
                            grace.as_secs_f64()
                        );
                        live.progress(
                            Stage::Stop,
                            &format!(
                                "interrupted: ACPI power-down sent to the guest; QEMU quits in {:.0}s (interrupt again to quit now)",
                                grace.as_secs_f64()
                            ),
                        );
                        crate::qemu::process::powerdown_all();
                        std::thread::spawn(move || {
                            std::thread::sleep(grace);
                            tracing::warn!("grace period over: stopping QEMU");
                            crate::qemu::process::terminate_all();
                        });
                    } else {
                        tracing::warn!(signal, "interrupted again: stopping QEMU now");
                        crate::qemu::process::terminate_all();
                    }
                    live.0.decided.notify_all();
                }
            });
        });
    }
}

impl crate::install::Live for Live {
    fn console_sink(&self) -> Box<dyn Sink> {
        Box::new(Fanout(self.clone()))
    }

    fn console_started(&self, input: Option<InputHandle>) {
        self.state().input = input;
    }

    fn stop_grace(&self) -> Duration {
        self.0.grace
    }

    /// With `--on-failure pause`: leaves the VM running and waits for the operator.
    fn after_failure(&self, stage: Stage, step: &str, error: &str) -> Decision {
        let record = &self.0.record;
        if self.0.on_failure != OnFailure::Pause || record.stop.is_raised() {
            return Decision::Abort;
        }
        let run = record.dir.command_args();
        // One event says it all: what failed, then what the operator can do.
        let message = format!(
            "{stage}: {error}\nthe VM keeps running. Take over with `ferry attach {run}`, \
             then `ferry resume {run}` (continue with the next step) or `ferry abort {run}`"
        );
        tracing::warn!("{error}");
        record.events.emit(&Event::Paused {
            step: step.to_string(),
            message,
        });
        let mut state = self.state();
        state.paused = Some(step.to_string());
        state.decision = None;
        let decision = loop {
            if let Some(d) = state.decision.take() {
                break d;
            }
            if record.stop.is_raised() {
                break Decision::Abort;
            }
            state = self
                .0
                .decided
                .wait_timeout(state, Duration::from_millis(200))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        };
        state.paused = None;
        drop(state);
        tracing::info!(?decision, step, "operator decided");
        if decision == Decision::Resume {
            record.events.emit(&Event::Resumed {
                step: step.to_string(),
            });
        }
        decision
    }
}

/// A sink that copies the console's output to every attached viewer. A viewer that cannot
/// keep up for a second is dropped (the install never waits for a viewer).
struct Fanout(Live);

impl Sink for Fanout {
    fn output(&mut self, _at: Duration, bytes: &[u8]) -> io::Result<()> {
        self.0
            .state()
            .viewers
            .retain_mut(|v| v.write_all(bytes).is_ok());
        Ok(())
    }
    fn input(&mut self, _at: Duration, _bytes: &[u8]) -> io::Result<()> {
        Ok(())
    }
}
