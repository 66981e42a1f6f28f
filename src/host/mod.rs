//! Facts about this machine, read-only: firmware, memory, CPUs, the target disk.

pub mod disk;

use serde::Serialize;

/// The facts the plan is shaped from.
#[derive(Debug, Clone, Serialize)]
pub struct Facts {
    pub hostname: String,
    /// `uefi` when the running system was booted through UEFI, else `bios`.
    pub firmware: &'static str,
    pub cpus: u32,
    pub memory_total_mib: u64,
    pub memory_available_mib: u64,
    pub kvm_openable: bool,
}

impl Facts {
    pub fn read() -> Facts {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Facts {
            hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "localhost".into()),
            firmware: if std::path::Path::new("/sys/firmware/efi").exists() {
                "uefi"
            } else {
                "bios"
            },
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            memory_total_mib: meminfo_kib(&meminfo, "MemTotal") / 1024,
            memory_available_mib: meminfo_kib(&meminfo, "MemAvailable") / 1024,
            kvm_openable: crate::qemu::kvm_openable(),
        }
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
    #[test]
    fn meminfo_parsing() {
        let text = "MemTotal:       24000000 kB\nMemFree: 1 kB\nMemAvailable:   20480000 kB\n";
        assert_eq!(super::meminfo_kib(text, "MemAvailable"), 20480000);
        assert_eq!(super::meminfo_kib(text, "Missing"), 0);
    }
}
