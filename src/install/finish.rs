//! The finish stage: the installer powers the VM off, the disk is flushed, and a UEFI install
//! gets the removable loader on its ESP (and, if asked, an entry in this machine's firmware).

use std::time::Duration;

use super::boot::Booted;
use super::esp;
use super::plan::{GuestFirmware, Plan};
use crate::Error;
use crate::run::{Record, Stage};

pub fn finish(plan: &Plan, booted: Booted, record: &Record) -> Result<(), Error> {
    let Booted {
        mut vm,
        mut console,
        scratch,
        ..
    } = booted;
    record.progress(
        Stage::Finish,
        "waiting for the installer to power the VM off",
    );
    if let Err(e) = console.wait_closed(plan.finish.poweroff_timeout) {
        super::screenshot(&mut vm, Stage::Finish, record);
        return Err(super::stage_error(Stage::Finish, e, &mut vm, record));
    }
    super::check_stop(record)?;
    let status = vm.wait_poweroff(Duration::from_secs(30))?;
    tracing::info!(?status, "installer VM exited");
    drop(console);
    drop(vm);
    plan.disk.target.flush()?;
    uefi(plan, record)?;
    // Before the boot check: the installer's kernel and initrd take RAM on a rescue system.
    drop(scratch);
    Ok(())
}

/// For UEFI installs: the removable loader, then the optional firmware entry, each said in a
/// progress line. Nothing to do for BIOS installs.
fn uefi(plan: &Plan, record: &Record) -> Result<(), Error> {
    if plan.firmware != GuestFirmware::Uefi {
        return Ok(());
    }
    let disk = &plan.disk.target.path;
    let report = esp::ensure_removable_loader(disk, plan.arch)?;
    tracing::info!(?report, "ESP checked");
    record.progress(Stage::Finish, &report.describe());
    if plan.efi_boot_entry {
        let output = esp::add_boot_entry(disk, report.partition, plan.arch)?;
        tracing::info!(%output, "efibootmgr");
        record.progress(
            Stage::Finish,
            &format!(
                "added firmware boot entry \"ferry\" for {} partition {}",
                disk.display(),
                report.partition
            ),
        );
    }
    Ok(())
}
