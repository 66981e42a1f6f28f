//! The machine architectures ferry runs on and emulates, and their names in each world
//! (Debian's, the GNU triplet's, QEMU's).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::Aarch64];

    /// The architecture ferry itself was built for.
    pub fn host() -> Arch {
        if cfg!(target_arch = "aarch64") {
            Arch::Aarch64
        } else {
            Arch::X86_64
        }
    }

    /// The kernel's name (`uname -m`), also used on ferry's command line.
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    /// Accepts the kernel's and Debian's names.
    pub fn parse(text: &str) -> Option<Arch> {
        match text {
            "x86_64" | "amd64" => Some(Arch::X86_64),
            "aarch64" | "arm64" => Some(Arch::Aarch64),
            _ => None,
        }
    }

    /// Debian's name (`binary-ARCH`, `_ARCH.deb`).
    pub fn debian(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Aarch64 => "arm64",
        }
    }

    /// The multiarch triplet: Debian's library directory `/usr/lib/TRIPLET`.
    pub fn triplet(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-linux-gnu",
            Arch::Aarch64 => "aarch64-linux-gnu",
        }
    }

    /// glibc's dynamic loader.
    pub fn loader(self) -> &'static str {
        match self {
            Arch::X86_64 => "ld-linux-x86-64.so.2",
            Arch::Aarch64 => "ld-linux-aarch64.so.1",
        }
    }

    /// The guest kernel's name for the serial port QEMU's `-serial` attaches: the 16550 of
    /// `pc`, the PL011 of `virt`.
    pub fn serial_console(self) -> &'static str {
        match self {
            Arch::X86_64 => "ttyS0",
            Arch::Aarch64 => "ttyAMA0",
        }
    }

    /// UEFI's name for it, in the removable-media loader `EFI/BOOT/BOOT{X64,AA64}.EFI` and in
    /// the vendor loaders' names (`shimx64.efi`, `grubaa64.efi`).
    pub fn efi(self) -> &'static str {
        match self {
            Arch::X86_64 => "x64",
            Arch::Aarch64 => "aa64",
        }
    }

    /// The QEMU that emulates a machine of this architecture.
    pub fn qemu_system(self) -> &'static str {
        match self {
            Arch::X86_64 => "qemu-system-x86_64",
            Arch::Aarch64 => "qemu-system-aarch64",
        }
    }
}

/// `--arch`: the kernel's or Debian's name.
impl std::str::FromStr for Arch {
    type Err = String;
    fn from_str(text: &str) -> Result<Arch, String> {
        Arch::parse(text).ok_or_else(|| format!("{text}: expected x86_64 or aarch64"))
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for arch in Arch::ALL {
            assert_eq!(Arch::parse(arch.name()), Some(arch));
            assert_eq!(Arch::parse(arch.debian()), Some(arch));
        }
        assert_eq!(Arch::parse("riscv64"), None);
        assert_eq!(Arch::host().name(), std::env::consts::ARCH);
    }
}
