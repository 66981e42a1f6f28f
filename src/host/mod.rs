//! Facts about this machine, read-only: firmware, CPU, memory, KVM, disks, network.
//!
//! Everything is read from /sys, /proc, /etc and `ip -j` through a [`Root`]: `/` for the
//! running system, or a directory holding a recorded tree (`--root DIR` of `ferry doctor`,
//! `--host-root DIR` of `ferry plan`; the tests' trees are in tests/fixtures/hosts/). Under a
//! recorded tree, `ip -j addr`, `ip -j route` and `ip -j -6 route` are read from
//! `DIR/ip/addr.json`, `DIR/ip/route.json` and `DIR/ip/route6.json`.

pub mod disk;
pub mod disks;
pub mod kvm;
pub mod net;

use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use crate::arch::Arch;

pub use disks::{BlockDevices, Bus, DiskInfo};
pub use net::Network;

/// Where facts are read from: `/`, or a recorded tree standing in for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root(PathBuf);

impl Root {
    /// The running system.
    pub fn system() -> Root {
        Root(PathBuf::from("/"))
    }

    /// A recorded tree (or `/`).
    pub fn at(dir: &Path) -> Root {
        Root(dir.to_path_buf())
    }

    pub fn is_system(&self) -> bool {
        self.0 == Path::new("/")
    }

    pub fn dir(&self) -> &Path {
        &self.0
    }

    /// `abs` (an absolute path on the host) inside this root.
    pub fn path(&self, abs: impl AsRef<Path>) -> PathBuf {
        let rel: PathBuf = abs
            .as_ref()
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .collect();
        self.0.join(rel)
    }

    /// A small text file, trimmed; `None` when absent, unreadable or empty.
    pub fn read(&self, abs: impl AsRef<Path>) -> Option<String> {
        let text = std::fs::read_to_string(self.path(abs)).ok()?;
        let text = text.trim();
        (!text.is_empty()).then(|| text.to_string())
    }

    pub fn exists(&self, abs: impl AsRef<Path>) -> bool {
        self.path(abs).exists()
    }

    /// The target of a symbolic link, resolved inside the root, as an absolute host path.
    /// Follows up to 16 links; `None` if `abs` is not a link.
    pub fn resolve_link(&self, abs: &Path) -> Option<PathBuf> {
        let mut current = normalize(abs);
        let mut followed = false;
        for _ in 0..16 {
            let Ok(target) = std::fs::read_link(self.path(&current)) else {
                break;
            };
            followed = true;
            current = if target.is_absolute() {
                normalize(&target)
            } else {
                normalize(&current.parent().unwrap_or(Path::new("/")).join(target))
            };
        }
        followed.then_some(current)
    }

    /// The host path `abs` with every symbolic link along it resolved inside the root (sysfs
    /// device paths).
    pub fn canonical(&self, abs: &Path) -> PathBuf {
        let mut out = PathBuf::from("/");
        for part in normalize(abs).components().skip(1) {
            out.push(part);
            if let Some(target) = self.resolve_link(&out) {
                out = self.canonical(&target);
            }
        }
        out
    }
}

/// Removes `.` and `..` lexically.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// The firmware the running system was booted through (`/sys/firmware/efi` exists or not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BootFirmware {
    Uefi,
    #[default]
    Bios,
}

impl BootFirmware {
    pub fn as_str(self) -> &'static str {
        match self {
            BootFirmware::Uefi => "uefi",
            BootFirmware::Bios => "bios",
        }
    }
}

impl From<BootFirmware> for &'static str {
    fn from(firmware: BootFirmware) -> &'static str {
        firmware.as_str()
    }
}

impl std::fmt::Display for BootFirmware {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// The facts the plan is shaped from, and that `ferry doctor` shows.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Facts {
    pub hostname: String,
    /// How the running system was booted.
    pub firmware: BootFirmware,
    /// CPUs ferry may use (online CPUs, limited by this process's affinity on the real system).
    pub cpus: u32,
    pub memory_total_mib: u64,
    pub memory_available_mib: u64,
    pub kvm_openable: bool,
    /// The tree the facts were read from (`/` normally).
    pub root: PathBuf,
    pub platform: Platform,
    pub cpu: Cpu,
    pub memory: MemoryFacts,
    pub kvm: kvm::KvmFacts,
    pub disks: Vec<DiskInfo>,
    pub network: Network,
}

/// The machine itself: architecture, how its hardware is described to the kernel, its model.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Platform {
    pub arch: Arch,
    pub description: HardwareDescription,
    /// DMI's vendor and product (x86 and ACPI arm64 servers), else the device tree's `model`.
    pub model: Option<String>,
}

impl Default for Platform {
    fn default() -> Platform {
        Platform {
            arch: Arch::host(),
            description: HardwareDescription::Unknown,
            model: None,
        }
    }
}

/// How the firmware describes the hardware: ACPI tables (PCs, arm64 servers: Ampere, Graviton,
/// Hetzner's CAX) or a device tree (arm64 boards and some clouds' VMs), which have no DMI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum HardwareDescription {
    Acpi,
    DeviceTree,
    Unknown,
}

#[derive(Debug, Clone, Serialize, Default, schemars::JsonSchema)]
pub struct Cpu {
    pub model: String,
    /// Logical CPUs listed in /proc/cpuinfo.
    pub count: u32,
    /// Hardware virtualization flags present (`vmx` Intel, `svm` AMD).
    pub virtualization: Vec<String>,
    /// The `hypervisor` flag: this system itself runs in a VM.
    pub hypervisor: bool,
}

#[derive(Debug, Clone, Serialize, Default, schemars::JsonSchema)]
pub struct MemoryFacts {
    pub total_bytes: u64,
    pub available_bytes: u64,
    /// Memory held by tmpfs and shared memory (`Shmem` in /proc/meminfo): files in a rescue
    /// system's RAM disk count here, and are not available to the VM.
    pub tmpfs_bytes: u64,
}

impl MemoryFacts {
    /// The memory of the system under `root` (/proc/meminfo), without the other facts.
    pub fn read(root: &Root) -> MemoryFacts {
        MemoryFacts::from_meminfo(&root.read("/proc/meminfo").unwrap_or_default())
    }

    fn from_meminfo(meminfo: &str) -> MemoryFacts {
        MemoryFacts {
            total_bytes: meminfo_kib(meminfo, "MemTotal") * 1024,
            available_bytes: meminfo_kib(meminfo, "MemAvailable") * 1024,
            tmpfs_bytes: meminfo_kib(meminfo, "Shmem") * 1024,
        }
    }
}

impl Facts {
    /// The running system's facts.
    pub fn read() -> Facts {
        Facts::read_at(&Root::system())
    }

    /// The facts of the system under `root`.
    pub fn read_at(root: &Root) -> Facts {
        let meminfo = root.read("/proc/meminfo").unwrap_or_default();
        let cpuinfo = root.read("/proc/cpuinfo").unwrap_or_default();
        let platform = read_platform(root, &cpuinfo);
        let cpu = read_cpu(&cpuinfo);
        let mut cpus = cpu.count.max(1);
        if root.is_system() {
            cpus = cpus.min(std::thread::available_parallelism().map_or(1, |n| n.get() as u32));
        }
        let memory = MemoryFacts::from_meminfo(&meminfo);
        let kvm = kvm::KvmFacts::read(root);
        Facts {
            hostname: root
                .read("/proc/sys/kernel/hostname")
                .or_else(|| root.read("/etc/hostname"))
                .unwrap_or_else(|| "localhost".into()),
            firmware: if root.exists("/sys/firmware/efi") {
                BootFirmware::Uefi
            } else {
                BootFirmware::Bios
            },
            cpus,
            memory_total_mib: memory.total_bytes >> 20,
            memory_available_mib: memory.available_bytes >> 20,
            kvm_openable: kvm.openable,
            root: root.dir().to_path_buf(),
            platform,
            cpu,
            memory,
            kvm,
            disks: BlockDevices::read(root).disks(),
            network: Network::read(root),
        }
    }

    pub fn disk(&self, name: &str) -> Option<&DiskInfo> {
        self.disks.iter().find(|d| d.name == name)
    }

    /// Whether this host can run a VM of this shape: memory a profile sets must leave
    /// [`HOST_RESERVE_MIB`] of the host's total for the rescue system, and vCPUs may not
    /// outnumber the CPUs ferry may use. (`auto` memory and `cpus = 0` are sized from these
    /// facts, so they always fit.)
    pub fn check_vm_shape(
        &self,
        memory: crate::profile::Memory,
        cpus: u32,
    ) -> Result<(), ShapeError> {
        if let crate::profile::Memory::Mib(mib) = memory {
            let usable = self.memory_total_mib.saturating_sub(HOST_RESERVE_MIB);
            if mib > usable {
                return Err(ShapeError::Memory {
                    requested: mib,
                    total: self.memory_total_mib,
                });
            }
        }
        if cpus > self.cpus {
            return Err(ShapeError::Cpus {
                requested: cpus,
                host: self.cpus,
            });
        }
        Ok(())
    }
}

/// Memory the rescue system keeps for itself when a VM's memory is checked against the host.
pub const HOST_RESERVE_MIB: u64 = 384;

/// "1 CPU", "2 CPUs".
pub fn cpus_text(n: u32) -> String {
    match n {
        1 => "1 CPU".to_string(),
        n => format!("{n} CPUs"),
    }
}

/// A VM shape this host cannot run.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    #[error(
        "[vm] memory = {requested} MiB is more than this host can give: {total} MiB in all, {HOST_RESERVE_MIB} MiB kept for the host; lower it or use `auto`"
    )]
    Memory { requested: u64, total: u64 },
    #[error(
        "{requested} vCPUs are more than the {} of this host; lower [vm] cpus or --cpus (0 means one per host CPU)",
        cpus_text(*host)
    )]
    Cpus { requested: u32, host: u32 },
}

/// The value of the first `key : value` line of /proc/cpuinfo with that key.
fn cpuinfo_value(cpuinfo: &str, key: &str) -> Option<String> {
    cpuinfo.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

fn read_platform(root: &Root, cpuinfo: &str) -> Platform {
    // arm64's /proc/cpuinfo names the implementer; x86's has a vendor and flags.
    let arch = if cpuinfo_value(cpuinfo, "CPU implementer").is_some() {
        Arch::Aarch64
    } else if cpuinfo_value(cpuinfo, "vendor_id").is_some() {
        Arch::X86_64
    } else {
        Arch::host()
    };
    let description = if root.exists("/sys/firmware/acpi/tables") {
        HardwareDescription::Acpi
    } else if root.exists("/sys/firmware/devicetree/base") || root.exists("/proc/device-tree") {
        HardwareDescription::DeviceTree
    } else {
        HardwareDescription::Unknown
    };
    let dmi = root.read("/sys/class/dmi/id/product_name").map(|product| {
        match root.read("/sys/class/dmi/id/sys_vendor") {
            Some(vendor) if !product.starts_with(&vendor) => format!("{vendor} {product}"),
            _ => product,
        }
    });
    // Device-tree strings end in a NUL.
    let tree = || {
        [
            "/sys/firmware/devicetree/base/model",
            "/proc/device-tree/model",
        ]
        .iter()
        .find_map(|p| root.read(p))
        .map(|m| m.trim_end_matches('\0').to_string())
        .filter(|m| !m.is_empty())
    };
    Platform {
        arch,
        description,
        model: dmi.or_else(tree),
    }
}

/// An arm64 core's name from its MIDR implementer and part numbers (the server cores).
fn arm_core(implementer: &str, part: &str) -> Option<&'static str> {
    Some(match (implementer, part) {
        ("0x41", "0xd08") => "Cortex-A72",
        ("0x41", "0xd0b") => "Cortex-A76",
        ("0x41", "0xd0c") => "Neoverse-N1",
        ("0x41", "0xd40") => "Neoverse-V1",
        ("0x41", "0xd49") => "Neoverse-N2",
        ("0x41", "0xd4f") => "Neoverse-V2",
        ("0xc0", "0xac3") => "AmpereOne",
        _ => return None,
    })
}

fn read_cpu(cpuinfo: &str) -> Cpu {
    let arm_model = || {
        let implementer = cpuinfo_value(cpuinfo, "CPU implementer")?;
        let part = cpuinfo_value(cpuinfo, "CPU part")?;
        Some(match arm_core(&implementer, &part) {
            Some(name) => format!("ARM {name}"),
            None => format!("ARM implementer {implementer} part {part}"),
        })
    };
    let model = cpuinfo_value(cpuinfo, "model name")
        .or_else(arm_model)
        .unwrap_or_default();
    let count = cpuinfo
        .lines()
        .filter(|l| cpuinfo_value(l, "processor").is_some())
        .count() as u32;
    let flags = cpuinfo_value(cpuinfo, "flags").unwrap_or_default();
    let flags: Vec<&str> = flags.split_whitespace().collect();
    Cpu {
        model,
        count,
        virtualization: ["vmx", "svm"]
            .iter()
            .filter(|f| flags.contains(f))
            .map(|f| f.to_string())
            .collect(),
        hypervisor: flags.contains(&"hypervisor"),
    }
}

fn meminfo_kib(meminfo: &str, key: &str) -> u64 {
    meminfo
        .lines()
        .find_map(|l| {
            l.strip_prefix(key)?
                .strip_prefix(':')?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_shape_against_the_host() {
        use crate::profile::Memory;
        let facts = Facts {
            cpus: 24,
            memory_total_mib: 24 * 1024,
            ..Facts::default()
        };
        assert_eq!(
            facts
                .check_vm_shape(Memory::Mib(64 * 1024), 1)
                .unwrap_err()
                .to_string(),
            "[vm] memory = 65536 MiB is more than this host can give: 24576 MiB in all, 384 MiB kept for the host; lower it or use `auto`"
        );
        assert_eq!(
            facts
                .check_vm_shape(Memory::Auto, 4096)
                .unwrap_err()
                .to_string(),
            "4096 vCPUs are more than the 24 CPUs of this host; lower [vm] cpus or --cpus (0 means one per host CPU)"
        );
        assert!(facts.check_vm_shape(Memory::Mib(16 * 1024), 24).is_ok());
        let one = Facts {
            cpus: 1,
            ..facts.clone()
        };
        assert_eq!(
            one.check_vm_shape(Memory::Auto, 2).unwrap_err().to_string(),
            "2 vCPUs are more than the 1 CPU of this host; lower [vm] cpus or --cpus (0 means one per host CPU)"
        );
        assert!(facts.check_vm_shape(Memory::Auto, 0).is_ok());
    }

    #[test]
    fn meminfo_parsing() {
        let text = "MemTotal:       24000000 kB\nMemFree: 1 kB\nMemAvailable:   20480000 kB\n";
        assert_eq!(meminfo_kib(text, "MemAvailable"), 20480000);
        assert_eq!(meminfo_kib(text, "Missing"), 0);
    }

    #[test]
    fn arm64_facts_without_dmi() {
        let dir = tempfile::tempdir().unwrap();
        let write = |path: &str, text: &str| {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        // An arm64 board: a device tree, no DMI, no ACPI; /proc/cpuinfo as arm64 writes it.
        let core = "processor\t: {n}\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32\n\
                    CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: 0xd0c\nCPU revision\t: 1\n\n";
        write(
            "proc/cpuinfo",
            &(core.replace("{n}", "0") + &core.replace("{n}", "1")),
        );
        write(
            "sys/firmware/devicetree/base/model",
            "Raspberry Pi 4 Model B Rev 1.4\0",
        );
        let facts = Facts::read_at(&Root::at(dir.path()));
        assert_eq!(facts.platform.arch, Arch::Aarch64);
        assert_eq!(facts.platform.description, HardwareDescription::DeviceTree);
        assert_eq!(
            facts.platform.model.as_deref(),
            Some("Raspberry Pi 4 Model B Rev 1.4")
        );
        assert_eq!(facts.cpu.model, "ARM Neoverse-N1");
        assert_eq!(facts.cpu.count, 2);
        assert!(facts.cpu.virtualization.is_empty() && !facts.cpu.hypervisor);

        // An ACPI arm64 server has DMI: it wins over the device tree.
        write("sys/firmware/acpi/tables/DSDT", "");
        write("sys/class/dmi/id/sys_vendor", "Hetzner\n");
        write("sys/class/dmi/id/product_name", "vServer\n");
        write(
            "proc/cpuinfo",
            &core.replace("0xd0c", "0xfff").replace("{n}", "0"),
        );
        let facts = Facts::read_at(&Root::at(dir.path()));
        assert_eq!(facts.platform.description, HardwareDescription::Acpi);
        assert_eq!(facts.platform.model.as_deref(), Some("Hetzner vServer"));
        assert_eq!(facts.cpu.model, "ARM implementer 0x41 part 0xfff");
    }

    #[test]
    fn x86_facts_keep_their_model_and_flags() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) E-2276G\n\
                       flags\t\t: fpu vmx sse hypervisor\n";
        let cpu = read_cpu(cpuinfo);
        assert_eq!(cpu.model, "Intel(R) Xeon(R) E-2276G");
        assert_eq!(cpu.count, 1);
        assert_eq!(cpu.virtualization, ["vmx"]);
        assert!(cpu.hypervisor);
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            read_platform(&Root::at(dir.path()), cpuinfo).arch,
            Arch::X86_64
        );
    }

    #[test]
    fn root_paths_and_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::at(dir.path());
        assert_eq!(root.path("/sys/block"), dir.path().join("sys/block"));
        std::fs::create_dir_all(
            dir.path()
                .join("sys/devices/pci0000:00/0000:00:1f.6/net/eth0"),
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("sys/class/net")).unwrap();
        std::os::unix::fs::symlink(
            "../../devices/pci0000:00/0000:00:1f.6/net/eth0",
            dir.path().join("sys/class/net/eth0"),
        )
        .unwrap();
        std::os::unix::fs::symlink(
            "../../../0000:00:1f.6",
            dir.path()
                .join("sys/devices/pci0000:00/0000:00:1f.6/net/eth0/device"),
        )
        .unwrap();
        assert_eq!(
            root.canonical(Path::new("/sys/class/net/eth0/device")),
            Path::new("/sys/devices/pci0000:00/0000:00:1f.6")
        );
        assert_eq!(root.resolve_link(Path::new("/sys/block")), None);
        assert!(Root::system().is_system() && !root.is_system());
    }
}
