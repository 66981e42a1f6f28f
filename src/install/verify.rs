//! The verify stage: the installed disk boots alone, with the same firmware kind, until a
//! login prompt.

use std::time::{Duration, Instant};

use super::Live;
use super::boot::{copy_vars_store, firmware_files, start_vm, target_disk};
use super::plan::{Plan, VerifyPlan};
use crate::Error;
use crate::console::Expectation;
use crate::qemu::{AccelKind, Disk, DiskWrites, Machine};
use crate::run::{Record, Stage};

/// Returns how long the login prompt took from power-on.
pub fn verify(
    plan: &Plan,
    verify: &VerifyPlan,
    accel: AccelKind,
    record: &Record,
    live: &dyn Live,
) -> Result<Duration, Error> {
    let dir = record.dir.verify();
    std::fs::create_dir_all(dir.path())?;
    let patterns: Vec<String> = verify.expect.iter().map(ToString::to_string).collect();
    record.progress(
        Stage::Verify,
        &format!(
            "booting {} alone, waiting for {}",
            plan.disk.target.path.display(),
            patterns.join(" or ")
        ),
    );
    // A fresh variable store: the real machine's NVRAM has none of the entries the installer
    // wrote into the install VM's, so the disk must boot without them.
    let firmware = firmware_files(plan, &record.dir, "verify")?;
    copy_vars_store(plan, &firmware)?;
    let machine = Machine {
        accel,
        memory_mib: plan.memory_mib,
        cpus: plan.cpus,
        firmware,
        // The check's own first boot (journal replay, host keys, a clock set) stays out of
        // the disk: the server's first boot is its own, on the disk the installer left.
        disk: Disk {
            writes: DiskWrites::Discarded,
            ..target_disk(plan)
        },
        cdrom: None,
        kernel: None,
        mac: plan.mac.clone(),
        guestfwd: None,
        serial_socket: dir.serial_socket(),
        qmp_socket: dir.qmp_socket(),
        screen_socket: None,
    };
    let started = Instant::now();
    let (mut vm, mut console) = start_vm(plan, &machine, &dir, None, record, live)?;
    let expectation = Expectation::new("boot check", verify.expect.clone(), verify.timeout)
        .failing_on(verify.fail.clone());
    let result = console.expect(&expectation);
    let elapsed = started.elapsed();
    if result.is_err() {
        super::screenshot(&mut vm, Stage::Verify, record);
    }
    drop(console);
    let result = result.map_err(|e| super::stage_error(Stage::Verify, e, &mut vm, record));
    vm.stop()?;
    result?;
    Ok(elapsed)
}
