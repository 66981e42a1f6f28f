//! The drive stage: the profile's steps over the serial console — wait for what the installer
//! prints, then type the answer. A failed step may pause the run for the operator
//! ([`super::Live::after_failure`]) and go on with the next step.

use super::plan::Plan;
use super::{Decision, Live};
use crate::Error;
use crate::console::{Console, Expectation};
use crate::qemu::Qemu;
use crate::run::{Record, Stage};

pub fn drive(
    plan: &Plan,
    vm: &mut Qemu,
    console: &mut Console,
    record: &Record,
    live: &dyn Live,
) -> Result<(), Error> {
    let total = plan.steps.len();
    for (i, step) in plan.steps.iter().enumerate() {
        super::check_stop(record)?;
        if !step.expect.is_empty() {
            let waiting: Vec<String> = step.expect.iter().map(ToString::to_string).collect();
            record.progress(
                Stage::Drive,
                &format!(
                    "[{}/{total}] {}: waiting for {}",
                    i + 1,
                    step.name,
                    waiting.join(" or ")
                ),
            );
            let expectation = Expectation::new(&step.name, step.expect.clone(), step.timeout)
                .failing_on(step.fail.clone());
            let matched = match console.expect(&expectation) {
                Ok(matched) => matched,
                Err(e) => {
                    let error = super::stage_error(Stage::Drive, e, record);
                    if matches!(error, Error::Step { .. }) {
                        super::screenshot(vm, Stage::Drive, record);
                        if !record.stop.is_raised()
                            && live.after_failure(Stage::Drive, &step.name, &error.to_string())
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
        if let Some(text) = &step.send {
            record.progress(
                Stage::Drive,
                &format!("[{}/{total}] {}: sending {:?}", i + 1, step.name, text),
            );
            console.send(text.as_bytes())?;
        }
    }
    Ok(())
}
