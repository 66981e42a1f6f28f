//! The live side of a run, inside the supervisor: attached viewers of the serial console, the
//! input they type, the pause after a failed step, and stopping on signals.

use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, Once};
use std::time::Duration;

use super::events::{self, Event};
use crate::console::{InputHandle, Sink};
use crate::qemu::Qemu;

/// What to do when a step fails (`--on-failure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Leave the VM running and wait for `ferry resume` or `ferry abort`.
    Pause,
    /// Stop the VM and fail the install.
    Abort,
}

/// What the operator decided about a paused run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Resume,
    Abort,
}

struct Live {
    viewers: Vec<UnixStream>,
    input: Option<InputHandle>,
    paused: Option<String>,
    decision: Option<Decision>,
}

static LIVE: Mutex<Live> = Mutex::new(Live {
    viewers: Vec::new(),
    input: None,
    paused: None,
    decision: None,
});
static DECIDED: Condvar = Condvar::new();
static PAUSE_ON_FAILURE: AtomicBool = AtomicBool::new(false);
static GRACE_MS: AtomicU64 = AtomicU64::new(20_000);

fn live() -> MutexGuard<'static, Live> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sets how this process handles failed steps and signals.
pub fn configure(on_failure: OnFailure, grace: Duration) {
    PAUSE_ON_FAILURE.store(on_failure == OnFailure::Pause, Ordering::SeqCst);
    GRACE_MS.store(grace.as_millis() as u64, Ordering::SeqCst);
}

/// A sink that copies the console's output to every attached viewer. A viewer that cannot
/// keep up for a second is dropped (the install never waits for a viewer).
pub struct Fanout;

impl Sink for Fanout {
    fn output(&mut self, _at: Duration, bytes: &[u8]) -> io::Result<()> {
        live().viewers.retain_mut(|v| v.write_all(bytes).is_ok());
        Ok(())
    }
    fn input(&mut self, _at: Duration, _bytes: &[u8]) -> io::Result<()> {
        Ok(())
    }
}

/// The console of the VM that runs now (install, then boot check): attached viewers type
/// into it.
pub fn set_console(input: Option<InputHandle>) {
    live().input = input;
}

/// Adds a viewer: it gets everything the console prints from now on.
pub fn add_viewer(stream: &UnixStream) -> io::Result<()> {
    let stream = stream.try_clone()?;
    stream.set_write_timeout(Some(Duration::from_secs(1)))?;
    live().viewers.push(stream);
    Ok(())
}

/// Types `bytes` into the console of the running VM.
pub fn type_input(bytes: &[u8]) -> io::Result<()> {
    match &live().input {
        Some(input) => input.send(bytes),
        None => Err(io::Error::other("no VM is running")),
    }
}

/// `ferry resume` / `ferry abort`: fails unless the run is paused.
pub fn decide(decision: Decision) -> Result<(), String> {
    let mut live = live();
    if live.paused.is_none() {
        return Err("the run is not paused".into());
    }
    live.decision = Some(decision);
    DECIDED.notify_all();
    Ok(())
}

/// After a step failed: keeps a screenshot, then with `--on-failure pause` leaves the VM
/// running and waits for the operator. Returns what to do; `Abort` without pausing.
pub fn after_failure(
    vm: &mut Qemu,
    stage: &str,
    step: &str,
    error: &str,
    run_dir: &Path,
) -> Decision {
    screenshot(vm, stage, run_dir);
    if !PAUSE_ON_FAILURE.load(Ordering::SeqCst) || crate::install::run::interrupted() {
        return Decision::Abort;
    }
    let run = run_dir.file_name().map_or_else(
        || run_dir.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let message = format!(
        "step '{step}' failed; the VM keeps running. Take over with `ferry attach {run}`, \
         then `ferry resume {run}` (continue with the next step) or `ferry abort {run}`"
    );
    let error = super::secrets::redact(error);
    tracing::warn!("{error}");
    eprintln_progress(stage, &error);
    events::emit(&Event::Paused {
        step: step.to_string(),
        message: message.clone(),
    });
    eprintln_progress(stage, &message);
    let mut guard = live();
    guard.paused = Some(step.to_string());
    guard.decision = None;
    let decision = loop {
        if let Some(d) = guard.decision.take() {
            break d;
        }
        if crate::install::run::interrupted() {
            break Decision::Abort;
        }
        guard = DECIDED
            .wait_timeout(guard, Duration::from_millis(200))
            .unwrap_or_else(|e| e.into_inner())
            .0;
    };
    guard.paused = None;
    drop(guard);
    tracing::info!(?decision, step, "operator decided");
    if decision == Decision::Resume {
        events::emit(&Event::Resumed {
            step: step.to_string(),
        });
    }
    decision
}

fn eprintln_progress(stage: &str, message: &str) {
    events::emit(&Event::Progress {
        stage: stage.to_string(),
        message: super::secrets::redact(message),
    });
}

/// Saves the VGA screen as `screen-<stage>.png` (a curses or graphical installer's screen
/// is not in the serial log).
pub fn screenshot(vm: &mut Qemu, stage: &str, run_dir: &Path) {
    let path = run_dir.join(format!("screen-{stage}.png"));
    match vm.qmp.screendump(&path) {
        Ok(()) => tracing::info!(path = %path.display(), "screenshot saved"),
        Err(e) => tracing::warn!("screenshot: {e}"),
    }
}

/// SIGINT and SIGTERM: the first presses the guest's power button (ACPI power-down) and quits
/// QEMU after the grace period; the second quits QEMU at once. SIGHUP is ignored: a closed
/// terminal does not end an install. The flow then ends as `Interrupted`.
pub fn watch_signals() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        else {
            return;
        };
        std::thread::spawn(move || {
            let mut count = 0;
            for signal in signals.forever() {
                if signal == SIGHUP {
                    tracing::info!("SIGHUP ignored: the install goes on");
                    continue;
                }
                count += 1;
                crate::install::run::INTERRUPTED.store(true, Ordering::SeqCst);
                if count == 1 {
                    let grace = Duration::from_millis(GRACE_MS.load(Ordering::SeqCst));
                    tracing::warn!(
                        signal,
                        "interrupted: powering the guest off (ACPI), QEMU quits in {}s at the latest",
                        grace.as_secs_f64()
                    );
                    eprintln_progress(
                        "stop",
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
                DECIDED.notify_all();
            }
        });
    });
}
