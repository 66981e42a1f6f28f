//! Block devices from /sys/block, with what uses them: mounts (/proc/self/mounts), swap
//! (/proc/swaps), md arrays and device-mapper/LVM volumes (`holders/`), and the running root.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Serialize;

use super::Root;

/// How a disk is attached to the host, which decides how the VM attaches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Bus {
    Nvme,
    Sata,
    Scsi,
    Virtio,
    Usb,
    /// loop, zram, ram: no hardware behind it.
    Virtual,
    #[default]
    Other,
}

/// One whole disk.
#[derive(Debug, Clone, Serialize, Default, schemars::JsonSchema)]
pub struct DiskInfo {
    /// Kernel name (`nvme0n1`, `sda`, `vda`).
    pub name: String,
    /// `/dev/NAME`.
    pub path: String,
    /// Names under /dev/disk/by-id that point at this disk (stable across reboots).
    pub by_id: Vec<String>,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub size_bytes: u64,
    pub bus: Bus,
    pub rotational: bool,
    pub logical_block_size: u64,
    pub partitions: Vec<Partition>,
    /// Where the whole disk itself is mounted (`mountpoint (as source)`).
    pub mounts: Vec<String>,
    /// The whole disk is active swap.
    pub swap: bool,
    /// md arrays and device-mapper devices built on the whole disk.
    pub holders: Vec<Holder>,
    /// The running system's root file system lives on this disk.
    pub backs_root: bool,
}

#[derive(Debug, Clone, Serialize, Default, schemars::JsonSchema)]
pub struct Partition {
    pub name: String,
    pub number: u32,
    pub size_bytes: u64,
    pub mounts: Vec<String>,
    pub swap: bool,
    pub holders: Vec<Holder>,
}

/// A device built on top of a disk or partition.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Holder {
    /// Kernel name: `md0`, `dm-0`.
    pub name: String,
    pub kind: HolderKind,
    /// e.g. `raid1 array md0 (clean)`, `LVM volume group vg0 (vg0-root)`.
    pub description: String,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HolderKind {
    Md,
    Lvm,
    Dm,
}

impl DiskInfo {
    /// Every mount on the disk or its partitions, as `mountpoint (as source)`.
    pub fn all_mounts(&self) -> Vec<String> {
        self.mounts
            .iter()
            .chain(self.partitions.iter().flat_map(|p| &p.mounts))
            .cloned()
            .collect()
    }

    /// The disk or partitions in active swap.
    pub fn swap_devices(&self) -> Vec<String> {
        let mut out: Vec<String> = self.swap.then(|| self.path.clone()).into_iter().collect();
        out.extend(
            self.partitions
                .iter()
                .filter(|p| p.swap)
                .map(|p| format!("/dev/{}", p.name)),
        );
        out
    }

    /// Holders of the disk or its partitions, with the member's name.
    pub fn all_holders(&self) -> Vec<(String, Holder)> {
        let mut out: Vec<(String, Holder)> = self
            .holders
            .iter()
            .map(|h| (self.name.clone(), h.clone()))
            .collect();
        for p in &self.partitions {
            out.extend(p.holders.iter().map(|h| (p.name.clone(), h.clone())));
        }
        out
    }
}

/// One mount: source device, mount point.
#[derive(Debug, Clone)]
struct Mount {
    source: String,
    target: String,
    /// Kernel name of the source block device, when it is one.
    device: Option<String>,
}

/// A snapshot of the block layer under a root.
pub struct BlockDevices {
    root: Root,
    mounts: Vec<Mount>,
    swaps: BTreeSet<String>,
    root_disks: BTreeSet<String>,
}

impl BlockDevices {
    pub fn read(root: &Root) -> BlockDevices {
        let mut devices = BlockDevices {
            root: root.clone(),
            mounts: Vec::new(),
            swaps: BTreeSet::new(),
            root_disks: BTreeSet::new(),
        };
        let mounts_text = root
            .read("/proc/self/mounts")
            .or_else(|| root.read("/proc/mounts"))
            .unwrap_or_default();
        for line in mounts_text.lines() {
            let mut fields = line.split_whitespace();
            let (Some(source), Some(target)) = (fields.next(), fields.next()) else {
                continue;
            };
            let (source, target) = (unescape(source), unescape(target));
            let mut device = devices.kernel_name(&source);
            if device.is_none() && root.is_system() && source.starts_with("/dev/") {
                // `/dev/root` and other names without a node: the device of the mount point.
                device = std::fs::metadata(&target)
                    .ok()
                    .and_then(|m| devices.name_of_dev(std::os::unix::fs::MetadataExt::dev(&m)));
            }
            devices.mounts.push(Mount {
                source,
                target,
                device,
            });
        }
        let swaps_text = root.read("/proc/swaps").unwrap_or_default();
        for line in swaps_text.lines().skip(1) {
            if let Some(name) = line
                .split_whitespace()
                .next()
                .and_then(|s| devices.kernel_name(&unescape(s)))
            {
                devices.swaps.insert(name);
            }
        }
        let root_device = devices
            .mounts
            .iter()
            .rev()
            .find(|m| m.target == "/")
            .and_then(|m| m.device.clone());
        if let Some(name) = root_device {
            devices.root_disks = devices.underlying_disks(&name, 0);
        }
        devices
    }

    /// Whole disks worth showing: not ram/loop/zram without content, not md/dm (those are
    /// shown as holders), not empty drives.
    pub fn disks(&self) -> Vec<DiskInfo> {
        let mut names: Vec<String> = std::fs::read_dir(self.root.path("/sys/block"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| {
                !["ram", "dm-", "md", "sr", "fd"]
                    .iter()
                    .any(|p| n.starts_with(p))
            })
            .collect();
        names.sort_by_key(|n| natural_key(n));
        names
            .iter()
            .filter_map(|n| self.info(n))
            .filter(|d| d.size_bytes > 0)
            .collect()
    }

    /// The kernel name of a device path (`/dev/sda`, `/dev/disk/by-id/...`, `/dev/mapper/x`),
    /// when it names a block device known to sysfs.
    pub fn kernel_name(&self, dev: &str) -> Option<String> {
        if !dev.starts_with("/dev/") {
            return None;
        }
        if self.root.is_system() {
            use std::os::unix::fs::FileTypeExt;
            if let Ok(meta) = std::fs::metadata(dev)
                && meta.file_type().is_block_device()
            {
                return self.name_of_dev(std::os::unix::fs::MetadataExt::rdev(&meta));
            }
        }
        if let Some(dm_name) = dev.strip_prefix("/dev/mapper/") {
            return self.block_names().into_iter().find(|n| {
                n.starts_with("dm-")
                    && self.root.read(format!("/sys/block/{n}/dm/name")).as_deref() == Some(dm_name)
            });
        }
        let resolved = self
            .root
            .resolve_link(Path::new(dev))
            .unwrap_or_else(|| dev.into());
        let name = resolved.file_name()?.to_string_lossy().into_owned();
        self.is_known(&name).then_some(name)
    }

    /// Loop devices whose backing file is `file` (canonical path).
    pub fn loops_backed_by(&self, file: &Path) -> Vec<String> {
        self.block_names()
            .into_iter()
            .filter(|n| n.starts_with("loop"))
            .filter(|n| {
                self.root
                    .read(format!("/sys/block/{n}/loop/backing_file"))
                    .is_some_and(|b| Path::new(&b) == file)
            })
            .collect()
    }

    /// The kernel name of device number `dev` (from /sys/dev/block/MAJOR:MINOR).
    pub fn name_of_dev(&self, dev: u64) -> Option<String> {
        let (major, minor) = (
            (dev >> 8) & 0xfff | (dev >> 32) & !0xfff,
            dev & 0xff | (dev >> 12) & !0xff,
        );
        let link = self
            .root
            .resolve_link(Path::new(&format!("/sys/dev/block/{major}:{minor}")))?;
        Some(link.file_name()?.to_string_lossy().into_owned())
    }

    fn block_names(&self) -> Vec<String> {
        std::fs::read_dir(self.root.path("/sys/block"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }

    fn is_known(&self, name: &str) -> bool {
        self.root.exists(format!("/sys/block/{name}")) || self.parent_of_partition(name).is_some()
    }

    /// The disk a partition belongs to.
    pub fn parent_of_partition(&self, name: &str) -> Option<String> {
        if self.root.exists(format!("/sys/block/{name}")) {
            return None;
        }
        self.block_names()
            .into_iter()
            .find(|d| self.root.exists(format!("/sys/block/{d}/{name}/partition")))
    }

    /// The whole disks under a device: a partition's disk, an md/dm device's members' disks.
    fn underlying_disks(&self, name: &str, depth: u32) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        if depth > 8 {
            return out;
        }
        if let Some(parent) = self.parent_of_partition(name) {
            out.insert(parent);
            return out;
        }
        let slaves: Vec<String> =
            std::fs::read_dir(self.root.path(format!("/sys/block/{name}/slaves")))
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
        if slaves.is_empty() {
            if self.root.exists(format!("/sys/block/{name}")) {
                out.insert(name.to_string());
            }
        } else {
            for slave in slaves {
                out.extend(self.underlying_disks(&slave, depth + 1));
            }
        }
        out
    }

    /// Everything known about one whole disk; `None` if sysfs does not list it.
    pub fn info(&self, name: &str) -> Option<DiskInfo> {
        let sys = format!("/sys/block/{name}");
        if !self.root.exists(&sys) {
            return None;
        }
        let read = |rel: &str| self.root.read(format!("{sys}/{rel}"));
        let mut partitions: Vec<Partition> = std::fs::read_dir(self.root.path(&sys))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let part = e.file_name().to_string_lossy().into_owned();
                let number = read(&format!("{part}/partition"))?.parse().ok()?;
                Some(Partition {
                    size_bytes: sectors(read(&format!("{part}/size"))),
                    mounts: self.mounts_of(&part),
                    swap: self.swaps.contains(&part),
                    holders: self.holders(&format!("{sys}/{part}/holders")),
                    name: part,
                    number,
                })
            })
            .collect();
        partitions.sort_by_key(|p| p.number);
        let by_id = self.by_id(name);
        Some(DiskInfo {
            path: format!("/dev/{name}"),
            by_id,
            model: read("device/model"),
            serial: read("device/serial")
                .or_else(|| read("serial"))
                .or_else(|| vpd_serial(&self.root, &sys)),
            size_bytes: sectors(read("size")),
            bus: self.bus(name),
            rotational: read("queue/rotational").as_deref() == Some("1"),
            logical_block_size: read("queue/logical_block_size")
                .and_then(|s| s.parse().ok())
                .unwrap_or(512),
            partitions,
            mounts: self.mounts_of(name),
            swap: self.swaps.contains(name),
            holders: self.holders(&format!("{sys}/holders")),
            backs_root: self.root_disks.contains(name),
            name: name.to_string(),
        })
    }

    fn mounts_of(&self, name: &str) -> Vec<String> {
        self.mounts
            .iter()
            .filter(|m| m.device.as_deref() == Some(name))
            .map(|m| format!("{} (as {})", m.target, m.source))
            .collect()
    }

    fn holders(&self, dir: &str) -> Vec<Holder> {
        let mut out: Vec<Holder> = std::fs::read_dir(self.root.path(dir))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| self.holder(&e.file_name().to_string_lossy()))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    fn holder(&self, name: &str) -> Holder {
        let read = |rel: &str| self.root.read(format!("/sys/block/{name}/{rel}"));
        if name.starts_with("md") {
            let level = read("md/level").unwrap_or_else(|| "md".into());
            let state = read("md/array_state").unwrap_or_else(|| "unknown state".into());
            return Holder {
                name: name.to_string(),
                kind: HolderKind::Md,
                description: format!("{level} array /dev/{name} ({state})"),
            };
        }
        let dm_name = read("dm/name").unwrap_or_else(|| name.to_string());
        if read("dm/uuid").is_some_and(|u| u.starts_with("LVM-")) {
            return Holder {
                name: name.to_string(),
                kind: HolderKind::Lvm,
                description: format!(
                    "LVM volume group {} (/dev/mapper/{dm_name})",
                    lvm_vg_name(&dm_name)
                ),
            };
        }
        Holder {
            name: name.to_string(),
            kind: HolderKind::Dm,
            description: format!("device-mapper /dev/mapper/{dm_name}"),
        }
    }

    fn by_id(&self, name: &str) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(self.root.path("/dev/disk/by-id"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let link = e.file_name().to_string_lossy().into_owned();
                let target = self
                    .root
                    .resolve_link(&Path::new("/dev/disk/by-id").join(&link))?;
                (target.file_name()? == name).then_some(link)
            })
            .collect();
        out.sort();
        out
    }

    fn bus(&self, name: &str) -> Bus {
        let devpath = self
            .root
            .canonical(Path::new(&format!("/sys/block/{name}")))
            .to_string_lossy()
            .into_owned();
        let vendor = self
            .root
            .read(format!("/sys/block/{name}/device/vendor"))
            .unwrap_or_default();
        if name.starts_with("nvme") || devpath.contains("/nvme") {
            Bus::Nvme
        } else if devpath.contains("/virtual/")
            || ["loop", "zram", "ram", "nbd"]
                .iter()
                .any(|p| name.starts_with(p))
        {
            Bus::Virtual
        } else if name.starts_with("vd") {
            Bus::Virtio
        } else if devpath.contains("/usb") {
            Bus::Usb
        } else if vendor == "ATA" || devpath.contains("/ata") {
            Bus::Sata
        } else if name.starts_with("sd") {
            Bus::Scsi
        } else {
            Bus::Other
        }
    }
}

/// The VG part of an LVM device-mapper name (`vg--data-root` → `vg-data`).
fn lvm_vg_name(dm_name: &str) -> String {
    let bytes = dm_name.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'-' {
            if bytes.get(i + 1) == Some(&b'-') {
                i += 2;
                continue;
            }
            return dm_name[..i].replace("--", "-");
        }
        i += 1;
    }
    dm_name.replace("--", "-")
}

/// The unit serial number page (VPD 0x80) that SCSI and SATA (through libata) disks expose.
fn vpd_serial(root: &Root, sys: &str) -> Option<String> {
    let bytes = std::fs::read(root.path(format!("{sys}/device/vpd_pg80"))).ok()?;
    if bytes.len() < 4 || bytes[1] != 0x80 {
        return None;
    }
    let len = u16::from_be_bytes([bytes[2], bytes[3]]) as usize;
    let serial = String::from_utf8_lossy(bytes.get(4..4 + len)?)
        .trim()
        .to_string();
    (!serial.is_empty()).then_some(serial)
}

fn sectors(text: Option<String>) -> u64 {
    text.and_then(|s| s.parse::<u64>().ok()).unwrap_or(0) * 512
}

/// /proc/self/mounts escapes spaces and such as `\040`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            out.push(
                (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0'),
            );
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `nvme10n1` after `nvme2n1`.
fn natural_key(name: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut digits = String::new();
    for c in name.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            if !digits.is_empty() {
                out.push((std::mem::take(&mut text), digits.parse().unwrap_or(0)));
                digits.clear();
            }
            text.push(c);
        }
    }
    out.push((text, digits.parse().unwrap_or(0)));
    out
}

/// `a, b and c`.
pub fn human_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(lvm_vg_name("vg0-root"), "vg0");
        assert_eq!(lvm_vg_name("vg--data-home"), "vg-data");
        assert_eq!(unescape(r"/mnt/my\040disk"), "/mnt/my disk");
        let mut names = vec!["nvme10n1", "nvme2n1", "sda"];
        names.sort_by_key(|n| natural_key(n));
        assert_eq!(names, ["nvme2n1", "nvme10n1", "sda"]);
    }
}
