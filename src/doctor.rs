//! `ferry doctor`: the machine explained before anything runs. Read-only but for the KVM
//! probe's verdict, which it records for this boot (`host::kvm::Verdict`); fast except for the
//! probe (a tiny guest booted under `-accel kvm`, skipped with `--no-probe`).
//!
//! The JSON form is documented in docs/doctor.md (schema version [`SCHEMA_VERSION`]).

use std::path::Path;

use serde::Serialize;

use crate::arch::Arch;
use crate::host::disk::human_bytes;
use crate::host::disks::human_list;
use crate::host::kvm::{self, KvmFacts, Probe};
use crate::host::net::Network;
use crate::host::{
    BootFirmware, Cpu, DiskInfo, Facts, HardwareDescription, MemoryFacts, Platform, Root,
};
use crate::install::plan::{QemuPlan, locate_qemu};
use crate::qemu::AccelKind;

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Report {
    pub schema_version: u32,
    /// The tree the facts were read from (`/` for this machine).
    pub root: String,
    pub hostname: String,
    /// `uefi` or `bios`.
    pub firmware: BootFirmware,
    pub platform: Platform,
    pub cpu: Cpu,
    pub memory: MemoryFacts,
    pub kvm: KvmReport,
    pub disks: Vec<DiskInfo>,
    pub network: Network,
    pub qemu: QemuReport,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct KvmReport {
    #[serde(flatten)]
    pub device: KvmFacts,
    /// `true`/`false` as the probe decided; `null` when it did not run.
    pub usable: Option<bool>,
    pub probe: Option<Probe>,
    /// Why the probe did not run.
    pub probe_skipped: Option<String>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct QemuReport {
    pub program: Option<String>,
    pub version: Option<String>,
    /// Why this QEMU: `--qemu`, `found on PATH`, or the cache's copy of Debian's QEMU.
    pub source: Option<String>,
    /// When this machine has none: where an install gets QEMU from (the catalog's bundle, or
    /// Debian's archive), and whether it is cached or downloaded first.
    pub download: Option<String>,
    pub error: Option<String>,
}

pub struct Options<'a> {
    pub root: Option<&'a Path>,
    pub qemu: Option<&'a Path>,
    /// The catalog and cache an install would use (`--catalog`, `--cache-dir`).
    pub catalog: Option<&'a Path>,
    pub cache_dir: Option<&'a Path>,
    pub probe: bool,
}

pub fn report(opts: &Options) -> Report {
    let root = opts.root.map_or_else(Root::system, Root::at);
    let mut facts = Facts::read_at(&root);
    let located = locate_qemu(Arch::host(), opts.qemu, opts.catalog, opts.cache_dir);
    let qemu_report = match &located {
        Ok(QemuPlan::Ready(q)) => QemuReport {
            program: Some(q.program.display().to_string()),
            version: Some(q.version.clone()),
            source: Some(q.source.clone()),
            download: None,
            error: None,
        },
        Ok(plan) => QemuReport {
            program: None,
            version: None,
            source: None,
            download: Some(plan.describe()),
            error: None,
        },
        Err(e) => QemuReport {
            program: None,
            version: None,
            source: None,
            download: None,
            error: Some(e.to_string()),
        },
    };
    let qemu = match located {
        Ok(QemuPlan::Ready(q)) => Some(q),
        _ => None,
    };
    let skipped = if !opts.probe {
        Some("--no-probe".to_string())
    } else if !root.is_system() {
        Some("facts read from a recorded tree (--root)".to_string())
    } else if !facts.kvm.present {
        Some("/dev/kvm does not exist".to_string())
    } else if !facts.kvm.openable {
        Some("/dev/kvm does not open".to_string())
    } else if qemu.is_none() {
        Some("no usable QEMU on this machine".to_string())
    } else {
        None
    };
    let probe = match (&skipped, &qemu) {
        (None, Some(q)) => Some(kvm::probe(q, AccelKind::Kvm, kvm::PROBE_TIMEOUT)),
        _ => None,
    };
    // What doctor finds is what `plan` and `install` decide from for the rest of this boot.
    if let Some(p) = &probe {
        facts.kvm.verdict = kvm::Verdict::record(p.usable, &p.reason);
    }
    let usable = match (&probe, &facts.kvm.verdict) {
        (Some(p), _) => Some(p.usable),
        (None, _) if !facts.kvm.openable && root.is_system() => Some(false),
        (None, Some(verdict)) => Some(verdict.usable),
        (None, None) => None,
    };
    Report {
        schema_version: SCHEMA_VERSION,
        root: root.dir().display().to_string(),
        hostname: facts.hostname,
        firmware: facts.firmware,
        platform: facts.platform,
        cpu: facts.cpu,
        memory: facts.memory,
        kvm: KvmReport {
            device: facts.kvm,
            usable,
            probe,
            probe_skipped: skipped,
        },
        disks: facts.disks,
        network: facts.network,
        qemu: qemu_report,
    }
}

/// The report as a table for people.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<10} {v}\n"));
    if r.root != "/" {
        line("root", format!("{} (recorded facts)", r.root));
    }
    line("hostname", r.hostname.clone());
    line("firmware", r.firmware.as_str().to_uppercase());
    let description = match r.platform.description {
        HardwareDescription::Acpi => "ACPI",
        HardwareDescription::DeviceTree => "device tree",
        HardwareDescription::Unknown => "no ACPI or device tree found",
    };
    line(
        "platform",
        format!(
            "{}, {description}{}",
            r.platform.arch,
            r.platform
                .model
                .as_deref()
                .map(|m| format!(", {m}"))
                .unwrap_or_default()
        ),
    );
    // arm64 has no CPU flag for virtualization: only /dev/kvm (below) tells.
    let virt = if r.platform.arch == Arch::Aarch64 {
        "virtualization: see kvm".to_string()
    } else if r.cpu.virtualization.is_empty() {
        "no vmx/svm".to_string()
    } else {
        r.cpu.virtualization.join(",")
    };
    let hv = if r.cpu.hypervisor {
        ", running under a hypervisor"
    } else {
        ""
    };
    line(
        "cpu",
        format!(
            "{} × {} ({virt}{hv})",
            r.cpu.count,
            if r.cpu.model.is_empty() {
                "unknown model"
            } else {
                &r.cpu.model
            }
        ),
    );
    line(
        "memory",
        format!(
            "{} total, {} available, {} in tmpfs/shmem",
            human_bytes(r.memory.total_bytes),
            human_bytes(r.memory.available_bytes),
            human_bytes(r.memory.tmpfs_bytes)
        ),
    );
    let kvm = match (
        &r.kvm.device,
        r.kvm.usable,
        &r.kvm.probe,
        &r.kvm.device.verdict,
    ) {
        (d, _, _, _) if !d.present => "absent (/dev/kvm missing): TCG only".to_string(),
        (d, _, _, _) if !d.openable && r.root == "/" => {
            format!(
                "/dev/kvm present, does not open ({}): TCG only",
                d.open_error.as_deref().unwrap_or("?")
            )
        }
        (_, Some(true), Some(p), _) => format!("usable: {}", p.reason),
        (_, Some(false), Some(p), _) => {
            format!("NOT usable: {}; installs run under TCG", p.reason)
        }
        (_, Some(usable), None, Some(v)) => format!(
            "{}: {} (probed {}, kept for this boot)",
            if usable {
                "usable"
            } else {
                "NOT usable (installs run under TCG)"
            },
            v.reason,
            v.decided_at
        ),
        _ => format!(
            "/dev/kvm present; usability not probed ({})",
            r.kvm.probe_skipped.as_deref().unwrap_or("?")
        ),
    };
    line("kvm", kvm);
    match (&r.qemu.program, &r.qemu.download, &r.qemu.error) {
        (Some(p), _, _) => line(
            "qemu",
            format!(
                "{p} {} ({})",
                r.qemu.version.as_deref().unwrap_or("?"),
                r.qemu.source.as_deref().unwrap_or("?")
            ),
        ),
        (None, Some(download), _) => line("qemu", download.clone()),
        (None, None, e) => line("qemu", format!("none: {}", e.as_deref().unwrap_or("?"))),
    }
    out.push('\n');
    out.push_str("DISKS\n");
    if r.disks.is_empty() {
        out.push_str("  (none)\n");
    }
    for d in &r.disks {
        out.push_str(&format!(
            "  {:<10} {:>10}  {:<7} {}  model {}  serial {}\n",
            d.name,
            human_bytes(d.size_bytes),
            format!("{:?}", d.bus).to_lowercase(),
            if d.rotational { "hdd" } else { "ssd" },
            d.model.as_deref().unwrap_or("-"),
            d.serial.as_deref().unwrap_or("-")
        ));
        for id in &d.by_id {
            out.push_str(&format!("             /dev/disk/by-id/{id}\n"));
        }
        let mut uses = Vec::new();
        if d.backs_root {
            uses.push("holds the running root file system".to_string());
        }
        uses.extend(d.mounts.iter().map(|m| format!("mounted at {m}")));
        if d.swap {
            uses.push("active swap".into());
        }
        uses.extend(
            d.holders
                .iter()
                .map(|h| format!("member of {}", h.description)),
        );
        if !uses.is_empty() {
            out.push_str(&format!("             in use: {}\n", human_list(&uses)));
        }
        for p in &d.partitions {
            let mut uses: Vec<String> =
                p.mounts.iter().map(|m| format!("mounted at {m}")).collect();
            if p.swap {
                uses.push("active swap".into());
            }
            uses.extend(
                p.holders
                    .iter()
                    .map(|h| format!("member of {}", h.description)),
            );
            let uses = if uses.is_empty() {
                String::new()
            } else {
                format!("  {}", human_list(&uses))
            };
            out.push_str(&format!(
                "    {:<12} {:>10}{uses}\n",
                p.name,
                human_bytes(p.size_bytes)
            ));
        }
    }
    out.push('\n');
    out.push_str("NETWORK\n");
    for n in &r.network.nics {
        let primary = if r.network.primary.as_ref() == Some(&n.name) {
            " (primary: default route)"
        } else {
            ""
        };
        out.push_str(&format!(
            "  {}{primary}  mac {}  driver {}  link {}{}\n",
            n.name,
            n.mac.as_deref().unwrap_or("-"),
            n.driver.as_deref().unwrap_or("-"),
            n.link,
            n.speed_mbps
                .filter(|&s| s > 0 && s < 1_000_000)
                .map(|s| format!(" {s} Mb/s"))
                .unwrap_or_default()
        ));
        if let Some(pci) = &n.pci_path {
            out.push_str(&format!(
                "      pci {pci}, installed systems name it {}\n",
                n.predicted_name.as_deref().unwrap_or("?")
            ));
        }
        if !n.altnames.is_empty() {
            out.push_str(&format!("      altnames {}\n", n.altnames.join(", ")));
        }
        for a in &n.addresses {
            let dynamic = if a.dynamic { ", dynamic" } else { "" };
            out.push_str(&format!(
                "      {} {}/{} ({}{dynamic})\n",
                a.family, a.address, a.prefix, a.scope
            ));
        }
        if n.dhcp {
            out.push_str("      DHCP in use\n");
        }
    }
    for route in &r.network.routes {
        let via = match (&route.gateway, route.gateway_onlink) {
            (Some(gw), Some(true)) => {
                format!(" via {gw} (on-link: outside the interface's prefixes)")
            }
            (Some(gw), _) => format!(" via {gw} (in the interface's prefix)"),
            (None, _) => String::new(),
        };
        let proto = route
            .protocol
            .as_deref()
            .map(|p| format!(" proto {p}"))
            .unwrap_or_default();
        out.push_str(&format!(
            "  route {} {}{via} dev {}{proto}\n",
            route.family,
            route.dst,
            route.dev.as_deref().unwrap_or("-")
        ));
    }
    out.push_str(&format!(
        "  dns {}\n",
        if r.network.dns.is_empty() {
            "(none)".to_string()
        } else {
            r.network.dns.join(", ")
        }
    ));
    for problem in &r.network.problems {
        out.push_str(&format!("  problem: {problem}\n"));
    }
    out
}

/// `ferry doctor`: prints the report.
pub fn run(json: bool, opts: &Options) -> Result<(), crate::Error> {
    if let Some(dir) = opts.root
        && !dir.is_dir()
    {
        return Err(crate::Error::Usage(format!(
            "--root {}: not a directory",
            dir.display()
        )));
    }
    let report = report(opts);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(std::io::Error::other)?
        );
    } else {
        print!("{}", render(&report));
    }
    Ok(())
}
