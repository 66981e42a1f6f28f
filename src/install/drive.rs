//! The drive stage: the profile's steps — wait for what the installer (or a boot loader on the
//! VGA screen) shows, then type the answer: `keys` on the keyboard, `send` on the serial
//! console. A failed step may pause the run for the operator ([`super::Live::after_failure`])
//! and go on with the next step; a changed chunk of a streamed image ends the run at once.

use std::time::Duration;

use super::boot::Booted;
use super::plan::{Plan, Step};
use super::{Decision, Live};
use crate::Error;
use crate::console::keys::Keys;
use crate::console::{Console, Expectation};
use crate::fetch::stream::StreamError;
use crate::profile::ConsoleSource;
use crate::run::{Record, Stage};

/// Between two key events: the guest's PS/2 queue is short and a boot loader under TCG on a
/// busy host may not run for a while (see `Qmp::type_keys`). 20 ms lost a key of a 95-key
/// line under load here; 100 ms is Packer's default `boot_key_interval` too.
pub const KEY_INTERVAL: Duration = Duration::from_millis(100);

pub fn drive(
    plan: &Plan,
    booted: &mut Booted,
    record: &Record,
    live: &dyn Live,
) -> Result<(), Error> {
    let result = steps(plan, booted, record, live);
    if matches!(result, Err(Error::Interrupted)) {
        // A stop asked the guest to power off and stops QEMU when the grace period ends: the
        // guest gets that time, and nothing more is matched or typed meanwhile.
        let _ = booted.console.wait_closed(live.stop_grace() + STOP_MARGIN);
    }
    result
}

/// Beyond the grace period: how long the console may take to close once QEMU is stopped.
const STOP_MARGIN: Duration = Duration::from_secs(10);

fn steps(plan: &Plan, booted: &mut Booted, record: &Record, live: &dyn Live) -> Result<(), Error> {
    let total = plan.steps.len();
    let streamed = booted.streamed.clone();
    for (i, step) in plan.steps.iter().enumerate() {
        super::check_stop(record)?;
        record.step(Stage::Drive, &step.name, (i + 1, total), step.timeout);
        let console = step_console(booted, step);
        if !step.expect.is_empty() {
            let waiting: Vec<String> = step.expect.iter().map(ToString::to_string).collect();
            let place = match step.console {
                ConsoleSource::Serial => "",
                ConsoleSource::Screen => " on the screen",
            };
            record.progress(
                Stage::Drive,
                &format!(
                    "[{}/{total}] {}: waiting{place} for {}",
                    i + 1,
                    step.name,
                    waiting.join(" or ")
                ),
            );
            let expectation = Expectation::new(&step.name, step.expect.clone(), step.timeout)
                .failing_on(step.fail.clone());
            let stop = &record.stop;
            let changed = || streamed.as_ref().and_then(|image| image.failure());
            let given_up = || stop.is_raised() || changed().is_some();
            let matched = match console.expect_unless(&expectation, &given_up) {
                Ok(matched) => matched,
                Err(e) => {
                    // The guest read a chunk that is not the verified image's (it got an I/O
                    // error instead): whatever the installer does next, the install fails.
                    if let Some(changed) = changed().filter(|_| !stop.is_raised()) {
                        return Err(StreamError::ChunkChanged(changed).into());
                    }
                    let error = super::stage_error(Stage::Drive, e, &mut booted.vm, record);
                    if let Error::Step { source, .. } = &error {
                        super::screenshot(&mut booted.vm, Stage::Drive, record);
                        if !record.stop.is_raised()
                            && live.after_failure(Stage::Drive, &step.name, &source.to_string())
                                == Decision::Resume
                        {
                            continue;
                        }
                    }
                    return Err(error);
                }
            };
            tracing::info!(step = %step.name, after = ?matched.elapsed, text = %matched.text, "matched");
        }
        if let Some(text) = &step.keys {
            super::check_stop(record)?;
            record.progress(
                Stage::Drive,
                &format!("[{}/{total}] {}: typing {:?}", i + 1, step.name, text),
            );
            type_keys(booted, step, text, record)?;
        }
        if let Some(text) = &step.send {
            // Checked and sent under the stop flag: a stop raised meanwhile (and its event)
            // comes after this send, never before it.
            let console = &mut booted.console;
            record
                .stop
                .unless_raised(|| {
                    record.progress(
                        Stage::Drive,
                        &format!("[{}/{total}] {}: sending {:?}", i + 1, step.name, text),
                    );
                    console.send(text.as_bytes())
                })
                .ok_or(Error::Interrupted)??;
        }
    }
    Ok(())
}

/// The console a step waits on.
fn step_console<'a>(booted: &'a mut Booted, step: &Step) -> &'a mut Console {
    match (step.console, &mut booted.screen) {
        (ConsoleSource::Screen, Some(screen)) => &mut screen.console,
        (ConsoleSource::Screen, None) => {
            unreachable!("a plan with a screen step boots QEMU with a screen monitor")
        }
        (ConsoleSource::Serial, _) => &mut booted.console,
    }
}

/// Types the step's rendered keys on the guest's keyboard, recorded as input in the step's
/// console transcript; nothing more is typed once the run is stopped.
fn type_keys(booted: &mut Booted, step: &Step, text: &str, record: &Record) -> Result<(), Error> {
    // Checked as written when the profile was parsed; a template value can still hold a `<`.
    let keys = Keys::parse(text).map_err(|e| crate::install::plan::PlanError::Input {
        at: format!("step {:?}", step.name),
        message: format!("`keys` as rendered ({text:?}): {e}"),
    })?;
    let stop = &record.stop;
    let typed = booted
        .vm
        .qmp
        .type_keys(&keys, KEY_INTERVAL, &|| stop.is_raised())
        .map_err(crate::qemu::ProcessError::from)?;
    step_console(booted, step).record_input(text);
    if !typed {
        return Err(Error::Interrupted);
    }
    Ok(())
}
