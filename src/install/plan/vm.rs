//! The VM's shape: firmware, accelerator, memory and CPUs, the NIC's MAC, and how the target
//! disk is attached — each with the reason it was chosen.

use super::{AccelPlan, DiskPlan, Options, PlanError, QemuPlan};
use crate::Error;
use crate::arch::Arch;
use crate::host::disk::{Target, TargetKind};
use crate::host::kvm::Verdict;
use crate::host::{BootFirmware, Bus, Facts, cpus_text};
use serde::Serialize;

use crate::profile::{Accel, DiskBus, DiskCache, Firmware, Memory, ProfileSpec};
use crate::qemu::{AccelKind, CacheMode};

/// The firmware the VM boots: the profile's `auto` resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum GuestFirmware {
    Bios,
    Uefi,
}

impl GuestFirmware {
    pub fn as_str(self) -> &'static str {
        match self {
            GuestFirmware::Bios => "bios",
            GuestFirmware::Uefi => "uefi",
        }
    }
}

impl From<GuestFirmware> for &'static str {
    fn from(firmware: GuestFirmware) -> &'static str {
        firmware.as_str()
    }
}

/// How the target disk is attached to the VM: the profile's `auto` resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum GuestBus {
    Virtio,
    Sata,
    Scsi,
    Nvme,
}

impl GuestBus {
    pub fn as_str(self) -> &'static str {
        match self {
            GuestBus::Virtio => "virtio",
            GuestBus::Sata => "sata",
            GuestBus::Scsi => "scsi",
            GuestBus::Nvme => "nvme",
        }
    }

    /// The whole-disk device node the guest's Linux kernel creates.
    pub fn guest_path(self) -> &'static str {
        DiskBus::from(self).guest_path()
    }
}

impl From<GuestBus> for &'static str {
    fn from(bus: GuestBus) -> &'static str {
        bus.as_str()
    }
}

/// QEMU's command line takes the profile's kind (never `auto` from here).
impl From<GuestBus> for DiskBus {
    fn from(bus: GuestBus) -> DiskBus {
        match bus {
            GuestBus::Virtio => DiskBus::Virtio,
            GuestBus::Sata => DiskBus::Sata,
            GuestBus::Scsi => DiskBus::Scsi,
            GuestBus::Nvme => DiskBus::Nvme,
        }
    }
}

/// The VM-shaping decisions of a plan.
pub(super) struct Shape {
    pub firmware: GuestFirmware,
    pub firmware_reason: String,
    pub accel: AccelPlan,
    pub sizing: Sizing,
    pub mac: Option<String>,
    pub mac_reason: String,
    pub disk: DiskPlan,
}

pub(super) fn shape(
    spec: &ProfileSpec,
    opts: &Options,
    facts: &Facts,
    network: Option<&crate::recipe::network::Network>,
    target: Target,
) -> Result<Shape, Error> {
    let arch = opts.arch();
    let (firmware, firmware_reason) = match opts.firmware.unwrap_or(spec.vm.firmware) {
        Firmware::Bios if arch == Arch::Aarch64 => {
            return Err(PlanError::Options(
                "an aarch64 guest boots UEFI only (AAVMF on QEMU's virt board): use --firmware uefi or auto",
            )
            .into());
        }
        _ if arch == Arch::Aarch64 => (
            GuestFirmware::Uefi,
            "aarch64: QEMU's virt board boots UEFI (AAVMF) only".to_string(),
        ),
        Firmware::Auto => {
            let fw = if facts.firmware == BootFirmware::Uefi {
                GuestFirmware::Uefi
            } else {
                GuestFirmware::Bios
            };
            (
                fw,
                format!(
                    "auto: this host booted through {}",
                    facts.firmware.as_str().to_uppercase()
                ),
            )
        }
        Firmware::Bios => (
            GuestFirmware::Bios,
            "set by the profile or --firmware".to_string(),
        ),
        Firmware::Uefi => (
            GuestFirmware::Uefi,
            "set by the profile or --firmware".to_string(),
        ),
    };
    let requested = opts.accel.unwrap_or(spec.vm.accel);
    let accel = match requested {
        _ if arch == Arch::host() => {
            accel_plan(requested, facts.kvm_openable, facts.kvm.verdict.as_ref())
        }
        Accel::Kvm => {
            return Err(PlanError::Machine(format!(
                "KVM runs guests of this machine's architecture ({}) only; an {arch} guest runs under TCG (--accel tcg or auto)",
                Arch::host()
            ))
            .into());
        }
        _ => AccelPlan {
            first: AccelKind::Tcg,
            fallback_to_tcg: false,
            reason: format!("an {arch} guest on this {} machine: TCG", Arch::host()),
        },
    };
    // A download into a cache on tmpfs takes RAM: the install plans after its fetch stage,
    // with fresh facts, so `auto` memory is sized from what is left once it is there.
    let (cpus, cpus_set_by) = match opts.cpus {
        Some(n) => (n, "--cpus"),
        None => (spec.vm.cpus, "the profile"),
    };
    let sizing = size_vm(spec.vm.memory, cpus, cpus_set_by, facts)?;
    let (bus, bus_reason) = choose_bus(spec.vm.disk_bus, &target);
    let (serial, model) = match (&target.info, bus) {
        (Some(info), GuestBus::Nvme | GuestBus::Sata | GuestBus::Scsi) => {
            (info.serial.clone(), info.model.clone())
        }
        _ => (None, None),
    };
    // An installer that configures its own network by MAC (netplan's `match`, kickstart's
    // `--device`) must find the NIC the installed system will have.
    let (mac, mac_reason) = match (network, facts.network.primary_nic()) {
        (Some(network), _) => (
            Some(network.mac.clone()),
            format!("the MAC of {} in --network", network.name),
        ),
        (None, Some(nic)) if nic.mac.is_some() => (
            nic.mac.clone(),
            format!(
                "the MAC of {}, the host NIC with the default route",
                nic.name
            ),
        ),
        (None, _) => (
            None,
            "no host NIC with a default route: QEMU's default MAC".to_string(),
        ),
    };
    if opts.efi_boot_entry {
        check_efi_boot_entry(firmware, facts, &target)?;
    }
    let cache = match (spec.vm.disk_cache, target.kind) {
        (DiskCache::Auto, TargetKind::BlockDevice) | (DiskCache::None, _) => CacheMode::None,
        (DiskCache::Auto, TargetKind::File) | (DiskCache::Writeback, _) => CacheMode::Writeback,
        (DiskCache::Unsafe, _) => CacheMode::Unsafe,
    };
    let disk = DiskPlan {
        guest_path: bus.guest_path().to_string(),
        target,
        bus,
        bus_reason,
        cache,
        serial,
        model,
    };
    Ok(Shape {
        firmware,
        firmware_reason,
        accel,
        sizing,
        mac,
        mac_reason,
        disk,
    })
}

fn accel_plan(accel: Accel, kvm_openable: bool, verdict: Option<&Verdict>) -> AccelPlan {
    match (accel, verdict) {
        (Accel::Tcg, _) => AccelPlan {
            first: AccelKind::Tcg,
            fallback_to_tcg: false,
            reason: "tcg requested".into(),
        },
        (Accel::Kvm, _) => AccelPlan {
            first: AccelKind::Kvm,
            fallback_to_tcg: false,
            reason: "kvm requested".into(),
        },
        (Accel::Auto, _) if !kvm_openable => AccelPlan {
            first: AccelKind::Tcg,
            fallback_to_tcg: false,
            reason: "auto: /dev/kvm cannot be opened".into(),
        },
        (Accel::Auto, Some(v)) if !v.usable => AccelPlan {
            first: AccelKind::Tcg,
            fallback_to_tcg: false,
            reason: format!(
                "auto: KVM ruled out for this boot (probed {}): {}",
                v.decided_at, v.reason
            ),
        },
        (Accel::Auto, Some(v)) => AccelPlan {
            first: AccelKind::Kvm,
            fallback_to_tcg: true,
            reason: format!(
                "auto: KVM runs guests (probed {}: {}); TCG if the installer stays silent",
                v.decided_at, v.reason
            ),
        },
        (Accel::Auto, None) => AccelPlan {
            first: AccelKind::Kvm,
            fallback_to_tcg: true,
            reason: "auto: /dev/kvm opens (not probed); TCG if the guest stays silent under KVM"
                .into(),
        },
    }
}

/// `auto` where /dev/kvm opens and no verdict was recorded for this boot: probes KVM now
/// (about 0.1 s where it works, 2 s where guests hang) and decides from what it found.
pub(super) fn probe_accel(
    planned: AccelPlan,
    requested: Accel,
    facts: &Facts,
    qemu: &QemuPlan,
) -> AccelPlan {
    match qemu {
        QemuPlan::Ready(binary)
            if requested == Accel::Auto && facts.kvm_openable && facts.kvm.verdict.is_none() =>
        {
            match Verdict::recorded_or_probed(binary) {
                Some(verdict) => accel_plan(requested, true, Some(&verdict)),
                None => planned,
            }
        }
        _ => planned,
    }
}

/// VM memory and CPUs, with the reasons.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Sizing {
    pub memory_mib: u64,
    pub memory_reason: String,
    pub cpus: u32,
    pub cpus_reason: String,
}

/// What the rescue system keeps for itself under `auto` memory.
const MARGIN_MIB: u64 = 384;
const MIN_MIB: u64 = 512;

/// The memory an install of a VM of `memory` needs on the host: the VM's (its least under
/// `auto`) plus what the rescue system keeps for itself.
pub(super) fn host_memory_needed(memory: Memory) -> u64 {
    let vm = match memory {
        Memory::Mib(mib) => mib,
        Memory::Auto => MIN_MIB,
    };
    (vm + MARGIN_MIB) << 20
}
const AUTO_MAX_MIB: u64 = 4096;

/// VM memory and CPUs. `auto` memory is the available RAM (files in tmpfs, such as cached
/// downloads on a rescue system, are not available) minus a margin for the rescue system,
/// capped. `cpus_set_by` names where a fixed vCPU count came from, for its reason.
fn size_vm(memory: Memory, cpus: u32, cpus_set_by: &str, facts: &Facts) -> Result<Sizing, Error> {
    facts
        .check_vm_shape(memory, cpus)
        .map_err(|e| PlanError::Machine(e.to_string()))?;
    let (memory_mib, memory_reason) = match memory {
        Memory::Mib(mib) => (mib, "set by the profile".to_string()),
        Memory::Auto => {
            let available = facts.memory_available_mib;
            let usable = available.saturating_sub(MARGIN_MIB);
            let sum = format!(
                "{available} MiB available − {MARGIN_MIB} MiB kept for the host = {usable} MiB"
            );
            if usable < MIN_MIB {
                return Err(PlanError::Machine(format!(
                    "not enough memory for the VM: {sum}, at least {MIN_MIB} MiB needed; \
                     free memory (or tmpfs space), or set [vm] memory"
                ))
                .into());
            }
            let mib = usable.min(AUTO_MAX_MIB);
            let cap = if usable > AUTO_MAX_MIB {
                format!(", capped at {AUTO_MAX_MIB} MiB")
            } else {
                String::new()
            };
            (mib, format!("auto: {sum}{cap}"))
        }
    };
    let (cpus, cpus_reason) = if cpus == 0 {
        let n = facts.cpus.clamp(1, 4);
        (
            n,
            format!("auto: {} on the host, at most 4", cpus_text(facts.cpus)),
        )
    } else {
        (cpus, format!("set by {cpus_set_by}"))
    };
    Ok(Sizing {
        memory_mib,
        memory_reason,
        cpus,
        cpus_reason,
    })
}

/// The disk bus: `auto` matches the host disk, so the installed system finds its disk under
/// the kind of name (and with the serial) it will have on the real machine.
fn choose_bus(requested: DiskBus, target: &Target) -> (GuestBus, String) {
    let set = |bus| (bus, "set by the profile".to_string());
    match requested {
        DiskBus::Virtio => return set(GuestBus::Virtio),
        DiskBus::Sata => return set(GuestBus::Sata),
        DiskBus::Scsi => return set(GuestBus::Scsi),
        DiskBus::Nvme => return set(GuestBus::Nvme),
        DiskBus::Auto => {}
    }
    let Some(info) = &target.info else {
        return (
            GuestBus::Virtio,
            "auto: a disk image file → virtio-blk".to_string(),
        );
    };
    match info.bus {
        Bus::Nvme => (
            GuestBus::Nvme,
            format!(
                "auto: {} is NVMe → emulated NVMe with its serial",
                info.name
            ),
        ),
        Bus::Sata => (
            GuestBus::Sata,
            format!(
                "auto: {} is SATA → AHCI (/dev/sdX) with its model and serial",
                info.name
            ),
        ),
        Bus::Scsi | Bus::Usb => (
            GuestBus::Scsi,
            format!(
                "auto: {} is SCSI → virtio-scsi (/dev/sdX) with its model and serial",
                info.name
            ),
        ),
        Bus::Virtio => (
            GuestBus::Virtio,
            format!("auto: {} is virtio → virtio-blk", info.name),
        ),
        Bus::Virtual | Bus::Other => (
            GuestBus::Virtio,
            format!(
                "auto: {} has no hardware bus ({:?}) → virtio-blk",
                info.name, info.bus
            )
            .to_lowercase(),
        ),
    }
}

/// `--efi-boot-entry` needs a UEFI install on a UEFI host, a block device and efibootmgr:
/// checked before anything is written.
fn check_efi_boot_entry(
    firmware: GuestFirmware,
    facts: &Facts,
    target: &Target,
) -> Result<(), Error> {
    let refuse = |why: &str| {
        Err(PlanError::Input {
            at: "--efi-boot-entry".into(),
            message: why.into(),
        }
        .into())
    };
    if facts.firmware != BootFirmware::Uefi {
        return refuse("this host did not boot through UEFI (no /sys/firmware/efi)");
    }
    if firmware != GuestFirmware::Uefi {
        return refuse("the install is not a UEFI install");
    }
    if target.kind != crate::host::disk::TargetKind::BlockDevice {
        return refuse("the target is a disk image file, not a disk of this machine");
    }
    if crate::install::esp::efibootmgr().is_none() {
        return refuse("efibootmgr not found on PATH (Debian: apt-get install efibootmgr)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{Accel, Memory};
    use crate::qemu::AccelKind;

    fn facts(available: u64, kvm: bool) -> Facts {
        Facts {
            hostname: "rescue".into(),
            firmware: BootFirmware::Bios,
            cpus: 8,
            memory_total_mib: available * 2,
            memory_available_mib: available,
            kvm_openable: kvm,
            ..Facts::default()
        }
    }

    fn sized(memory: Memory, cpus: u32, available: u64) -> (u64, u32) {
        let s = size_vm(memory, cpus, "the profile", &facts(available, false)).unwrap();
        (s.memory_mib, s.cpus)
    }

    #[test]
    fn vm_sizing() {
        assert_eq!(sized(Memory::Auto, 0, 16000), (4096, 4));
        assert_eq!(sized(Memory::Auto, 2, 1400), (1016, 2));
        // Set memory is checked against the host's total, not what is available now.
        assert_eq!(sized(Memory::Mib(700), 1, 600), (700, 1));
        let e = size_vm(
            Memory::Mib(64 * 1024),
            1,
            "the profile",
            &facts(16000, false),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("more than this host can give"), "{e}");
        let e = size_vm(Memory::Auto, 9, "the profile", &facts(16000, false))
            .unwrap_err()
            .to_string();
        assert!(e.contains("9 vCPUs are more than the 8 CPUs"), "{e}");
        let s = size_vm(Memory::Auto, 0, "the profile", &facts(1400, false)).unwrap();
        assert_eq!(
            s.memory_reason,
            "auto: 1400 MiB available − 384 MiB kept for the host = 1016 MiB"
        );
        let e = size_vm(Memory::Auto, 0, "the profile", &facts(600, false))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("not enough memory for the VM: 600 MiB available − 384 MiB kept for the host = 216 MiB, at least 512 MiB needed"),
            "{e}"
        );
    }

    #[test]
    fn one_cpu_is_not_cpus() {
        let s = size_vm(
            Memory::Auto,
            0,
            "the profile",
            &Facts {
                cpus: 1,
                ..facts(4000, false)
            },
        )
        .unwrap();
        assert_eq!(s.cpus_reason, "auto: 1 CPU on the host, at most 4");
    }

    #[test]
    fn accelerator_choice() {
        let p = accel_plan(Accel::Auto, true, None);
        assert_eq!((p.first, p.fallback_to_tcg), (AccelKind::Kvm, true));
        let p = accel_plan(Accel::Auto, false, None);
        assert_eq!((p.first, p.fallback_to_tcg), (AccelKind::Tcg, false));
        assert_eq!(accel_plan(Accel::Kvm, false, None).first, AccelKind::Kvm);
        let verdict = |usable| Verdict {
            boot_id: "b".into(),
            device: "0:1:2".into(),
            usable,
            reason: "the probe guest wrote nothing".into(),
            decided_at: "2026-12-02T03:00:00Z".into(),
        };
        // A verdict that guests hang rules KVM out: not even tried first.
        let p = accel_plan(Accel::Auto, true, Some(&verdict(false)));
        assert_eq!((p.first, p.fallback_to_tcg), (AccelKind::Tcg, false));
        assert!(
            p.reason.contains("the probe guest wrote nothing"),
            "{}",
            p.reason
        );
        let p = accel_plan(Accel::Auto, true, Some(&verdict(true)));
        assert_eq!((p.first, p.fallback_to_tcg), (AccelKind::Kvm, true));
        // An explicit choice is the operator's.
        let p = accel_plan(Accel::Kvm, true, Some(&verdict(false)));
        assert_eq!(p.first, AccelKind::Kvm);
    }
}
