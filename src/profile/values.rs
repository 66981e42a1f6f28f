//! The value types of a profile. Each one checks itself while the TOML is parsed, so its error
//! carries the position of the offending value.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

/// How to run the VM's CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// KVM when /dev/kvm opens, falling back to TCG when the guest shows no sign of life.
    #[default]
    Auto,
    Kvm,
    Tcg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Firmware {
    /// The host's own: UEFI when /sys/firmware/efi exists, else BIOS.
    #[default]
    Auto,
    Bios,
    Uefi,
}

/// How the target disk is attached to the VM, which decides its name in the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DiskBus {
    /// Match the host disk: NVMe → NVMe, SATA → AHCI, SCSI → virtio-scsi, virtio and disk
    /// image files → virtio-blk. Resolved by the plan.
    #[default]
    Auto,
    /// virtio-blk: `/dev/vda`.
    Virtio,
    /// IDE/ATA (what a SATA disk looks like to the guest): `/dev/sda`.
    Sata,
    /// virtio-scsi: `/dev/sda`.
    Scsi,
    /// NVMe: `/dev/nvme0n1`.
    Nvme,
}

impl DiskBus {
    /// The whole-disk device node the guest's Linux kernel creates.
    pub fn guest_path(self) -> &'static str {
        match self {
            DiskBus::Virtio | DiskBus::Auto => "/dev/vda",
            DiskBus::Sata | DiskBus::Scsi => "/dev/sda",
            DiskBus::Nvme => "/dev/nvme0n1",
        }
    }
}

/// Where a step waits for its text.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ConsoleSource {
    /// The serial console (what installers and kernels with `console=ttyS0` use).
    #[default]
    Serial,
    /// The VGA text screen, for boot loaders that only draw there (`boot>`, loader menus).
    Screen,
}

/// How the installer boots.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum BootMode {
    /// ferry boots the chosen menu entry's kernel itself, with a serial console.
    #[default]
    Kernel,
    /// The ISO boots through its own boot loader (El Torito under BIOS, its EFI loader under
    /// UEFI): for systems QEMU cannot boot directly; steps drive the loader on the screen.
    Loader,
}

/// QEMU's cache mode for the target disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskCache {
    /// `none` (O_DIRECT, keeps the rescue system's page cache free) for block devices,
    /// `writeback` for image files (O_DIRECT fails on tmpfs).
    #[default]
    Auto,
    None,
    Writeback,
    /// Ignores the guest's flushes: fastest, but data is lost if QEMU dies.
    Unsafe,
}

/// The most memory a profile may give the VM; no installer needs more, and the host's own
/// memory is checked later (`Facts::check_vm_shape`).
pub const MAX_MEMORY_MIB: u64 = 1 << 20;
/// The most vCPUs: QEMU's `pc` machine takes at most 255.
pub const MAX_CPUS: u32 = 255;

/// `[vm] cpus`: 0 (one per host CPU) up to [`MAX_CPUS`].
pub fn cpus<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = u64::deserialize(d)?;
    u32::try_from(n)
        .ok()
        .filter(|&n| n <= MAX_CPUS)
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "cpus = {n} is too many: at most {MAX_CPUS} (0 means one per host CPU)"
            ))
        })
}

/// VM memory: `auto` (sized from the host's available RAM) or a size such as `1G`, `768M`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum Memory {
    #[default]
    Auto,
    Mib(u64),
}

impl FromStr for Memory {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("auto") {
            return Ok(Memory::Auto);
        }
        let bad =
            || format!("invalid memory size `{s}`: expected `auto` or a size like `1G` or `768M`");
        let t = s.trim();
        let (digits, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
        let n: u64 = digits.parse().map_err(|_| bad())?;
        let mib = match unit.trim().to_ascii_uppercase().as_str() {
            "" | "M" | "MB" | "MIB" => Some(n),
            "G" | "GB" | "GIB" => n.checked_mul(1024),
            _ => return Err(bad()),
        };
        if mib.is_none_or(|m| m > MAX_MEMORY_MIB) {
            return Err(format!("memory `{s}` is too large: at most 1T (`1024G`)"));
        }
        let mib = mib.unwrap_or_default();
        if mib < 128 {
            return Err(format!(
                "memory `{s}` is too small: a VM needs at least 128M"
            ));
        }
        Ok(Memory::Mib(mib))
    }
}

impl<'de> Deserialize<'de> for Memory {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A duration written as `30s`, `5m`, `1h 30m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Seconds(#[serde(with = "duration_secs")] Duration);

impl Seconds {
    pub const fn from_secs(secs: u64) -> Seconds {
        Seconds(Duration::from_secs(secs))
    }
    pub fn as_duration(self) -> Duration {
        self.0
    }
}

impl Seconds {
    /// The longest timeout a profile may set. No install step waits a week; the bound also
    /// keeps every deadline (`Instant::now() + timeout`) far from overflowing.
    pub const MAX: Seconds = Seconds::from_secs(7 * 24 * 3600);
}

impl FromStr for Seconds {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let too_long = || format!("duration `{text}` is too long: at most 7 days (`7d`)");
        match humantime::parse_duration(text) {
            Ok(d) if d <= Seconds::MAX.0 => Ok(Seconds(d)),
            Ok(_) | Err(humantime::DurationError::NumberOverflow) => Err(too_long()),
            Err(_) => Err(format!(
                "invalid duration `{text}`: expected e.g. `30s`, `5m` or `1h 30m`"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

mod duration_secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

pub use crate::console::Pattern;

/// Compiles a regex the way the expect engine will (multi-line mode), to report a bad one
/// while the profile is parsed.
pub fn checked_regex(source: &str) -> Result<Pattern, String> {
    regex::RegexBuilder::new(source)
        .multi_line(true)
        .build()
        .map_err(|e| format!("invalid regex /{source}/: {}", last_line(&e.to_string())))?;
    Ok(Pattern::regex(source))
}

/// The regex crate's errors draw a caret diagram; its last line says what is wrong.
fn last_line(message: &str) -> &str {
    let line = message
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or(message);
    line.strip_prefix("error: ").unwrap_or(line)
}

/// In profiles a pattern is a string: `/…/` is a regular expression, anything else literal.
impl FromStr for Pattern {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("a pattern cannot be empty".into());
        }
        match s.strip_prefix('/').and_then(|r| r.strip_suffix('/')) {
            Some(source) if s.len() >= 2 => checked_regex(source),
            _ => Ok(Pattern::literal(s)),
        }
    }
}

string_schema!(Pattern, {
    "description": "`/…/` is a regular expression, anything else literal text",
});

impl Serialize for Pattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Pattern::Literal(text) => s.serialize_str(text),
            Pattern::Regex(source) => s.serialize_str(&format!("/{source}/")),
        }
    }
}

/// Deserializes one pattern or a list of them (`expect = "login:"` or `expect = ["a", "/b/"]`).
/// A visitor rather than an untagged enum, so a bad pattern keeps its own message and position.
pub fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Pattern>, D::Error> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Vec<Pattern>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a pattern (a string) or a list of patterns")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(vec![v.parse().map_err(E::custom)?])
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut patterns = Vec::new();
            while let Some(p) = seq.next_element()? {
                patterns.push(p);
            }
            Ok(patterns)
        }
    }
    d.deserialize_any(Visitor)
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert_eq!(
            "login:".parse::<Pattern>().unwrap(),
            Pattern::literal("login:")
        );
        assert_eq!(
            "/log(in)?:/".parse::<Pattern>().unwrap(),
            Pattern::regex("log(in)?:")
        );
        assert_eq!("/".parse::<Pattern>().unwrap(), Pattern::literal("/"));
        assert!("".parse::<Pattern>().is_err());
        assert!(
            "/[/"
                .parse::<Pattern>()
                .unwrap_err()
                .starts_with("invalid regex /[/")
        );
    }

    #[test]
    fn memory_sizes() {
        assert_eq!("auto".parse::<Memory>().unwrap(), Memory::Auto);
        assert_eq!("2G".parse::<Memory>().unwrap(), Memory::Mib(2048));
        assert_eq!("768M".parse::<Memory>().unwrap(), Memory::Mib(768));
        assert_eq!("1024".parse::<Memory>().unwrap(), Memory::Mib(1024));
        assert!("64M".parse::<Memory>().unwrap_err().contains("too small"));
        assert!("2T".parse::<Memory>().is_err());
        for big in ["17179869184G", "18446744073709551615G", "1025G", "1048577"] {
            assert_eq!(
                big.parse::<Memory>().unwrap_err(),
                format!("memory `{big}` is too large: at most 1T (`1024G`)")
            );
        }
        assert_eq!("1024G".parse::<Memory>().unwrap(), Memory::Mib(1 << 20));
    }

    #[test]
    fn durations_are_bounded() {
        assert_eq!(
            "7d".parse::<Seconds>().unwrap().as_duration().as_secs(),
            604_800
        );
        for text in ["18446744073709551615s", "300000000000y", "8d", "168h 1s"] {
            assert_eq!(
                text.parse::<Seconds>().unwrap_err(),
                format!("duration `{text}` is too long: at most 7 days (`7d`)")
            );
        }
        assert!(
            "soon"
                .parse::<Seconds>()
                .unwrap_err()
                .starts_with("invalid duration")
        );
    }

    #[test]
    fn disk_bus_names_the_guest_device() {
        assert_eq!(DiskBus::Nvme.guest_path(), "/dev/nvme0n1");
        assert_eq!(DiskBus::Sata.guest_path(), "/dev/sda");
    }
}
