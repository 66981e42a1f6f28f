//! The plan as the operator reads it (`ferry plan`): every choice with its reason.

use serde::Serialize;

use super::GuestFirmware;
use super::{LOADER_TITLE, Netboot, Plan};
use crate::profile::{BootMode, ConsoleSource};

/// An enum's name as the profile and plan.json spell it.
fn name(value: &impl Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// The plan as the operator reads it: every choice with its reason.
pub fn render(plan: &Plan) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<12} {v}\n"));
    line(
        "profile",
        format!("{} {}", plan.profile.display(), plan.description),
    );
    if let Some(fetch) = &plan.fetch {
        let state = match (fetch.delivery.streams(), fetch.cached) {
            (true, _) => "streamed: verified by a first pass, then chunk by chunk as QEMU reads",
            (false, true) => "cached; verified again before use",
            (false, false) => "not cached: downloaded before QEMU starts",
        };
        line("fetch", format!("{} ({state})", fetch.request.url()));
        line("checksum", fetch.request.checksum.describe());
        line("delivery", fetch.delivery.describe());
    }
    match &plan.boot {
        Some(boot) => {
            if let Some(iso) = &boot.iso {
                line("image", iso.describe());
            }
            match boot.mode {
                BootMode::Kernel => {
                    line("boot", format!("{} (kernel {})", boot.title(), boot.kernel));
                    line("cmdline", boot.cmdline.clone());
                }
                BootMode::Loader => line(
                    "boot",
                    format!(
                        "through {} (El Torito under BIOS, its EFI loader under UEFI); the steps drive it",
                        boot.title()
                    ),
                ),
            }
        }
        None => {
            let fetch = plan
                .fetch
                .as_ref()
                .expect("boot is planned unless an image is fetched");
            line("image", fetch.request.dest.display().to_string());
            let boot = match &fetch.netboot {
                Some(Netboot::Package(unpack)) => format!(
                    "the package's kernel and initrd, unpacked into {} once downloaded",
                    unpack.dir.display()
                ),
                Some(Netboot::Tree(tree)) => format!(
                    "the tree's kernel and initrd (initrd {}) with {}, once downloaded",
                    tree.initrd.dest.display(),
                    tree.installer_arg
                ),
                None => match plan.boot_mode {
                    BootMode::Kernel => "from the image's boot menu, once downloaded".into(),
                    BootMode::Loader => format!("through {LOADER_TITLE}, once downloaded"),
                },
            };
            line("boot", boot);
        }
    }
    line("qemu", plan.qemu.describe());
    line(
        "accel",
        format!("{} ({})", name(&plan.accel.first), plan.accel.reason),
    );
    line(
        "memory",
        format!("{} MiB ({})", plan.memory_mib, plan.memory_reason),
    );
    line("cpus", format!("{} ({})", plan.cpus, plan.cpus_reason));
    line(
        "nic mac",
        format!(
            "{} ({})",
            plan.mac.as_deref().unwrap_or("QEMU's default"),
            plan.mac_reason
        ),
    );
    line(
        "firmware",
        format!("{} ({})", name(&plan.firmware), plan.firmware_reason),
    );
    line(
        "disk",
        format!(
            "{} on {} as {} (cache {})",
            plan.disk.target.describe(),
            name(&plan.disk.bus),
            plan.disk.guest_path,
            name(&plan.disk.cache)
        ),
    );
    line("disk bus", plan.disk.bus_reason.clone());
    if let Some(serial) = &plan.disk.serial {
        line(
            "disk id",
            format!(
                "serial {serial}, model {}",
                plan.disk.model.as_deref().unwrap_or("-")
            ),
        );
    }
    for file in &plan.files {
        line("serves", format!("{} ({} bytes)", file.url, file.bytes));
    }
    for (i, step) in plan.steps.iter().enumerate() {
        let expect: Vec<String> = step.expect.iter().map(ToString::to_string).collect();
        let mut actions = Vec::new();
        if !expect.is_empty() {
            let place = match step.console {
                ConsoleSource::Serial => "",
                ConsoleSource::Screen => " on the screen",
            };
            actions.push(format!(
                "wait {}s{place} for {}",
                step.timeout.as_secs(),
                expect.join(" or ")
            ));
        }
        if let Some(keys) = &step.keys {
            actions.push(format!("type {keys:?}"));
        }
        if let Some(send) = &step.send {
            actions.push(format!("send {send:?}"));
        }
        line(
            &format!("step {}", i + 1),
            format!("{}: {}", step.name, actions.join(" then ")),
        );
    }
    line(
        "finish",
        format!(
            "wait up to {}s for power-off",
            plan.finish.poweroff_timeout.as_secs()
        ),
    );
    if plan.firmware == GuestFirmware::Uefi {
        line(
            "esp",
            format!(
                "ensure {} on the ESP (copy the installed loader if missing)",
                crate::install::esp::removable_loader(plan.arch)
            ),
        );
    }
    if plan.efi_boot_entry {
        line(
            "efi entry",
            format!(
                "add \\{} to this machine's firmware with efibootmgr",
                crate::install::esp::removable_loader(plan.arch).replace('/', "\\")
            ),
        );
    }
    match &plan.finish.verify {
        Some(v) => {
            let expect: Vec<String> = v.expect.iter().map(ToString::to_string).collect();
            line(
                "verify",
                format!(
                    "boot the disk alone, wait {}s for {}",
                    v.timeout.as_secs(),
                    expect.join(" or ")
                ),
            );
        }
        None => line("verify", "skipped".into()),
    }
    out
}
