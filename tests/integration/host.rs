//! Host facts: `ferry doctor` on recorded trees (tests/fixtures/hosts/) and on this machine,
//! the plan choices they lead to, the disk guards on real loop devices, installs onto a loop
//! device and under OVMF.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

fn host(name: &str) -> PathBuf {
    repo().join("tests/fixtures/hosts").join(name)
}

fn json_of(output: &Output) -> Value {
    let (stdout, stderr) = text(output);
    assert!(
        output.status.success(),
        "exit {:?}\n{stdout}\n{stderr}",
        output.status.code()
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}:\n{stdout}"))
}

fn doctor_at(name: &str) -> Value {
    json_of(
        &ferry()
            .args(["doctor", "--json", "--root"])
            .arg(host(name))
            .output()
            .unwrap(),
    )
}

/// A profile like tiny.toml whose kernel command line shows the template variables, so
/// `plan --json` reveals how they rendered (absent facts render as `-`; minijinja prints
/// booleans as `True`/`False`).
fn vars_profile(dir: &Path, firmware: &str) -> PathBuf {
    let path = dir.join("vars.toml");
    let text = format!(
        r#"
[image]
path = "{iso}"
[vm]
firmware = "{firmware}"
[boot]
append = """nic={{{{ host.nic.name }}}} pred={{{{ host.nic.predicted_name | default('-') }}}} \
mac={{{{ host.nic.mac }}}} ip={{{{ host.ipv4.address | default('-') }}}}/{{{{ host.ipv4.prefix | default('-') }}}} \
gw={{{{ host.ipv4.gateway | default('-') }}}} onlink={{{{ host.ipv4.gateway_onlink | default('-') }}}} \
ip6={{{{ host.ipv6.address | default('-') }}}}/{{{{ host.ipv6.prefix | default('-') }}}} gw6={{{{ host.ipv6.gateway | default('-') }}}} \
dns={{{{ host.dns | join(',') }}}} dhcp={{{{ host.dhcp }}}} fw={{{{ host.firmware }}}} host={{{{ host.hostname }}}} \
disk={{{{ disk.path }}}} guest={{{{ disk.guest_path }}}} bus={{{{ disk.bus }}}} serial={{{{ disk.serial | default('-') }}}}"""
"#,
        iso = fixture("build/tiny-isolinux.iso").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn plan_at(name: &str, disk: &str, firmware: &str) -> Output {
    plan_at_with(name, disk, firmware, &[])
}

/// [`plan_at`] with more arguments for `ferry plan`.
fn plan_at_with(name: &str, disk: &str, firmware: &str, extra: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let profile = vars_profile(dir.path(), firmware);
    ferry()
        .arg("plan")
        .arg(&profile)
        .args(["--disk", disk, "--json"])
        .args(extra)
        .arg("--host-root")
        .arg(host(name))
        .output()
        .unwrap()
}

/// The rendered variables of a plan, `key=value` words of its command line.
fn rendered(plan: &Value) -> std::collections::BTreeMap<String, String> {
    plan["boot"]["cmdline"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .filter_map(|w| {
            w.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

#[test]
fn doctor_nvme_server() {
    let d = doctor_at("nvme-server");
    assert_eq!(d["schema_version"], 1);
    assert_eq!(d["firmware"], "bios");
    assert_eq!(d["cpu"]["count"], 8);
    assert_eq!(d["cpu"]["virtualization"], serde_json::json!(["vmx"]));
    let disks = d["disks"].as_array().unwrap();
    assert_eq!(disks.len(), 2);
    assert_eq!(disks[0]["name"], "nvme0n1");
    assert_eq!(disks[0]["bus"], "nvme");
    assert_eq!(disks[0]["serial"], "S4EWNX0R123456");
    assert_eq!(disks[0]["model"], "SAMSUNG MZVL2512HCJQ-00B00");
    assert_eq!(disks[0]["size_bytes"], 1000215216u64 * 512);
    assert_eq!(disks[0]["partitions"].as_array().unwrap().len(), 2);
    assert!(
        disks[0]["by_id"][0]
            .as_str()
            .unwrap()
            .starts_with("nvme-SAMSUNG")
    );
    assert_eq!(disks[1]["serial"], "S4EWNX0R654321");
    let nic = &d["network"]["nics"][0];
    assert_eq!(nic["name"], "eth0");
    assert_eq!(nic["altnames"], serde_json::json!(["enp0s31f6"]));
    assert_eq!(nic["pci_path"], "0000:00:1f.6");
    assert_eq!(
        nic["predicted_name"], "eno1",
        "acpi_index 1 makes it an onboard name"
    );
    assert_eq!(nic["driver"], "e1000e");
    assert_eq!(d["network"]["primary"], "eth0");
    assert_eq!(d["kvm"]["usable"], Value::Null);
}

#[test]
fn doctor_sata_md_server() {
    let d = doctor_at("sata-md-server");
    let disks = d["disks"].as_array().unwrap();
    let names: Vec<&str> = disks.iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["sda", "sdb"], "md0 is a holder, not a disk");
    assert_eq!(disks[0]["bus"], "sata");
    assert_eq!(
        disks[0]["serial"], "WD-WCC4N1234567",
        "from the VPD page 0x80"
    );
    assert_eq!(disks[0]["rotational"], true);
    let holder = &disks[0]["partitions"][0]["holders"][0];
    assert_eq!(holder["kind"], "md");
    assert_eq!(holder["description"], "raid1 array /dev/md0 (clean)");
    assert_eq!(d["network"]["nics"][0]["dhcp"], true);
    assert_eq!(d["network"]["routes"][0]["protocol"], "dhcp");
}

#[test]
fn doctor_virtio_vm() {
    let d = doctor_at("virtio-vm");
    assert_eq!(d["disks"][0]["bus"], "virtio");
    assert_eq!(d["disks"][0]["serial"], "vm-disk-0001");
    assert_eq!(d["cpu"]["hypervisor"], true);
    assert_eq!(d["memory"]["tmpfs_bytes"], 400u64 * 1024 * 1024);
    let nic = &d["network"]["nics"][0];
    assert_eq!(
        nic["pci_path"], "0000:00:03.0",
        "the PCI function above virtio0"
    );
    assert_eq!(nic["predicted_name"], "ens3", "hot-plug slot 3");
    assert_eq!(
        d["network"]["dns"],
        serde_json::json!(["10.0.0.2", "10.0.0.3"]),
        "behind the resolved stub"
    );
}

#[test]
fn doctor_routed_32() {
    let d = doctor_at("routed-32");
    let nic = &d["network"]["nics"][0];
    assert_eq!(
        nic["predicted_name"], "enp3s0f0",
        "multi-function device gets f0"
    );
    let routes = d["network"]["routes"].as_array().unwrap();
    let default4 = routes
        .iter()
        .find(|r| r["family"] == "ipv4" && r["dst"] == "default")
        .unwrap();
    assert_eq!(default4["gateway"], "172.31.1.1");
    assert_eq!(default4["gateway_onlink"], true);
    let default6 = routes
        .iter()
        .find(|r| r["family"] == "ipv6" && r["dst"] == "default")
        .unwrap();
    assert_eq!(default6["gateway"], "fe80::1");
    assert_eq!(
        default6["gateway_onlink"], false,
        "fe80::1 is in the link-local prefix"
    );
    let text = String::from_utf8(
        ferry()
            .args(["doctor", "--root"])
            .arg(host("routed-32"))
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(
        text.contains("via 172.31.1.1 (on-link: outside the interface's prefixes)"),
        "{text}"
    );
}

#[test]
fn doctor_uefi_host() {
    let d = doctor_at("uefi-host");
    assert_eq!(d["firmware"], "uefi");
    assert_eq!(
        d["disks"][0]["partitions"][1]["mounts"],
        serde_json::json!(["/mnt (as /dev/sda2)"])
    );
    assert_eq!(d["network"]["nics"][0]["predicted_name"], "eno1");
}

#[test]
fn plan_matches_nvme_host() {
    let plan = json_of(&plan_at("nvme-server", "/dev/nvme1n1", "auto"));
    assert_eq!(plan["disk"]["bus"], "nvme");
    assert_eq!(plan["disk"]["guest_path"], "/dev/nvme0n1");
    assert_eq!(plan["disk"]["serial"], "S4EWNX0R654321");
    assert_eq!(plan["disk"]["cache"], "none");
    assert!(
        plan["disk"]["bus_reason"]
            .as_str()
            .unwrap()
            .contains("nvme1n1 is NVMe")
    );
    assert_eq!(plan["firmware"], "bios");
    assert_eq!(plan["mac"], "a8:a1:59:12:34:56");
    assert_eq!(plan["memory_mib"], 4096);
    assert!(
        plan["memory_reason"]
            .as_str()
            .unwrap()
            .starts_with("auto: 30720 MiB available"),
        "{}",
        plan["memory_reason"]
    );
    assert_eq!(plan["cpus"], 4);
    let v = rendered(&plan);
    assert_eq!(v["pred"], "eno1");
    assert_eq!(v["ip"], "198.51.100.20/26");
    assert_eq!(
        (v["gw"].as_str(), v["onlink"].as_str()),
        ("198.51.100.1", "False")
    );
    assert_eq!(
        (v["ip6"].as_str(), v["gw6"].as_str()),
        ("2001:db8:1::2/64", "fe80::1")
    );
    assert_eq!(v["serial"], "S4EWNX0R654321");
    assert_eq!(
        v["dhcp"], "False",
        "minijinja prints booleans as True/False"
    );
    // By-id paths name the same disk.
    let plan = json_of(&plan_at(
        "nvme-server",
        "/dev/disk/by-id/nvme-SAMSUNG_MZVL2512HCJQ-00B00_S4EWNX0R123456",
        "auto",
    ));
    assert_eq!(plan["disk"]["serial"], "S4EWNX0R123456");
}

#[test]
fn plan_refuses_md_members_on_sata_host() {
    let output = plan_at("sata-md-server", "/dev/sda", "auto");
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(24), "{stderr}");
    assert!(
        stderr.contains("/dev/sda1 is a member of the raid1 array /dev/md0 (clean)"),
        "{stderr}"
    );
    let output = plan_at("sata-md-server", "/dev/sda1", "auto");
    assert_eq!(output.status.code(), Some(21), "{}", text(&output).1);
    assert!(
        text(&output)
            .1
            .contains("is a partition of /dev/sda; name the whole disk")
    );
    let output = plan_at("sata-md-server", "/dev/sdz", "auto");
    assert_eq!(output.status.code(), Some(20));
}

#[test]
fn plan_matches_virtio_vm() {
    let plan = json_of(&plan_at("virtio-vm", "/dev/vda", "auto"));
    assert_eq!(plan["disk"]["bus"], "virtio");
    assert_eq!(plan["disk"]["guest_path"], "/dev/vda");
    assert_eq!(plan["mac"], "52:54:00:ab:cd:ef");
    // 1600 MiB available − 384 MiB margin.
    assert_eq!(plan["memory_mib"], 1216);
    assert_eq!(plan["cpus"], 2);
    let v = rendered(&plan);
    assert_eq!(
        (v["pred"].as_str(), v["dhcp"].as_str(), v["ip6"].as_str()),
        ("ens3", "True", "-/-")
    );
    assert_eq!(v["dns"], "10.0.0.2,10.0.0.3");
}

#[test]
fn cpus_option_overrides_the_profile_and_is_checked_against_the_host() {
    let plan_with =
        |cpus: &str| plan_at_with("nvme-server", "/dev/nvme1n1", "auto", &["--cpus", cpus]);
    // The nvme-server host has 8 CPUs; the profile leaves cpus at auto (4 of them).
    let plan = json_of(&plan_with("1"));
    assert_eq!(plan["cpus"], 1);
    assert_eq!(plan["cpus_reason"], "set by --cpus");
    let plan = json_of(&plan_with("0"));
    assert_eq!(plan["cpus"], 4);
    assert_eq!(plan["cpus_reason"], "auto: 8 CPUs on the host, at most 4");
    let out = plan_with("9");
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("9 vCPUs are more than the 8 CPUs of this host; lower [vm] cpus or --cpus"),
        "{stderr}"
    );
    let out = plan_with("256");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out).1);
    assert!(text(&out).1.contains("--cpus"), "{}", text(&out).1);
}

#[test]
fn plan_matches_routed_host() {
    let plan = json_of(&plan_at("routed-32", "/dev/sda", "auto"));
    assert_eq!(plan["disk"]["bus"], "sata");
    assert_eq!(plan["disk"]["guest_path"], "/dev/sda");
    assert_eq!(plan["disk"]["model"], "INTEL SSDSC2KB48");
    let v = rendered(&plan);
    assert_eq!(v["ip"], "203.0.113.10/32");
    assert_eq!(
        (v["gw"].as_str(), v["onlink"].as_str()),
        ("172.31.1.1", "True")
    );
    assert_eq!(
        (v["ip6"].as_str(), v["gw6"].as_str()),
        ("2a01:4f8:c0c:1234::2/64", "fe80::1")
    );
    assert_eq!(v["pred"], "enp3s0f0");
}

#[test]
fn plan_matches_uefi_host() {
    let output = plan_at("uefi-host", "/dev/sda", "auto");
    let (_, stderr) = text(&output);
    assert_eq!(
        output.status.code(),
        Some(22),
        "a partition of sda is mounted: {stderr}"
    );
    assert!(
        stderr.contains("mounted at /mnt (as /dev/sda2)"),
        "{stderr}"
    );
    // Without the mount the plan goes through, under OVMF.
    let dir = tempfile::tempdir().unwrap();
    let copy = uefi_host_unmounted(dir.path());
    let profile = vars_profile(dir.path(), "auto");
    let output = ferry()
        .arg("plan")
        .arg(&profile)
        .args(["--disk", "/dev/sda", "--json", "--host-root"])
        .arg(&copy)
        .output()
        .unwrap();
    let plan = json_of(&output);
    assert_eq!(plan["firmware"], "uefi");
    assert!(plan["firmware_reason"].as_str().unwrap().contains("UEFI"));
    assert_eq!(rendered(&plan)["fw"], "uefi");
    assert_eq!(plan["mac"], "3c:ec:ef:01:02:03");
}

/// The uefi-host tree without its mounted partition, copied into `dir`.
fn uefi_host_unmounted(dir: &Path) -> PathBuf {
    let copy = dir.join("uefi-host");
    assert!(
        Command::new("cp")
            .arg("-a")
            .arg(host("uefi-host"))
            .arg(&copy)
            .status()
            .unwrap()
            .success()
    );
    std::fs::write(copy.join("proc/self/mounts"), "rescue / tmpfs rw 0 0\n").unwrap();
    copy
}

/// `ferry plan` prints each reason as it was written (it once lowercased whole lines:
/// "booted through uefi").
#[test]
fn plan_text_keeps_the_reasons_capitalisation() {
    let dir = tempfile::tempdir().unwrap();
    let copy = uefi_host_unmounted(dir.path());
    let profile = vars_profile(dir.path(), "auto");
    let output = ferry()
        .arg("plan")
        .arg(&profile)
        .args(["--disk", "/dev/sda", "--host-root"])
        .arg(&copy)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("firmware     uefi (auto: this host booted through UEFI)\n"),
        "{stdout}"
    );
    assert!(stdout.contains("accel        "), "{stdout}");
}

#[test]
fn plan_of_an_image_file_uses_virtio() {
    let dir = tempfile::tempdir().unwrap();
    let profile = vars_profile(dir.path(), "bios");
    let disk = dir.path().join("disk.img");
    let output = ferry()
        .arg("plan")
        .arg(&profile)
        .arg("--disk")
        .arg(&disk)
        .args(["--size", "1G", "--json"])
        .output()
        .unwrap();
    let plan = json_of(&output);
    assert_eq!(plan["disk"]["bus"], "virtio");
    assert_eq!(
        plan["disk"]["bus_reason"],
        "auto: a disk image file → virtio-blk"
    );
    assert_eq!(
        rendered(&plan)["serial"],
        "-",
        "absent facts are absent keys"
    );
}

#[test]
fn doctor_on_this_machine() {
    let output = ferry()
        .args(["doctor", "--json", "--no-probe"])
        .output()
        .unwrap();
    let d = json_of(&output);
    // --no-probe boots no guest (how fast that is belongs in a benchmark, not here).
    assert_eq!(d["kvm"]["probe"], Value::Null, "{}", d["kvm"]);
    assert_eq!(d["kvm"]["probe_skipped"], "--no-probe", "{}", d["kvm"]);
    // This machine's own disk and NIC, as /sys and `ip` show them.
    let sys_disks: Vec<String> = std::fs::read_dir("/sys/block")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("vd") || n.starts_with("sd") || n.starts_with("nvme"))
        .collect();
    for name in &sys_disks {
        assert!(
            d["disks"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| &x["name"] == name),
            "{name} missing: {}",
            d["disks"]
        );
    }
    let route = Command::new("ip")
        .args(["-j", "route", "show", "default"])
        .output()
        .unwrap();
    let routes: Value = serde_json::from_slice(&route.stdout).unwrap();
    if let Some(dev) = routes[0]["dev"].as_str() {
        assert_eq!(d["network"]["primary"], dev);
        let nic = d["network"]["nics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == dev)
            .unwrap();
        let mac = std::fs::read_to_string(format!("/sys/class/net/{dev}/address")).unwrap();
        assert_eq!(nic["mac"], mac.trim());
    }

    // With the probe: KVM's usability is decided by booting a guest. Its files go under a
    // TMPDIR of this test's own, so the check below sees this probe's QEMU only, not one of
    // another test's `ferry doctor` running meanwhile.
    let tmp = tempfile::tempdir().unwrap();
    let doctor = || {
        let mut cmd = ferry();
        cmd.env("TMPDIR", tmp.path()).arg("doctor");
        cmd
    };
    let output = doctor().arg("--json").output().unwrap();
    let d = json_of(&output);
    let kvm = &d["kvm"];
    eprintln!("kvm: {kvm}");
    if kvm["present"] == true && kvm["openable"] == true {
        let probe = &kvm["probe"];
        assert!(probe["reason"].as_str().is_some_and(|r| !r.is_empty()));
        assert_eq!(kvm["usable"], probe["usable"]);
        // The text runs a probe of its own, which may decide otherwise (this machine's KVM
        // now and then answers within the probe's time): it shows that verdict and why.
        let text = String::from_utf8(doctor().output().unwrap().stdout).unwrap();
        let line = text.lines().find(|l| l.starts_with("kvm ")).unwrap_or("");
        assert!(
            line.starts_with("kvm        usable: the probe guest answered")
                || (line.starts_with("kvm        NOT usable: ")
                    && line.ends_with("; installs run under TCG")),
            "{text}"
        );
    } else {
        assert_eq!(kvm["probe"], Value::Null);
    }
    assert!(
        processes_mentioning(tmp.path()).is_empty(),
        "probe QEMU left running"
    );
}

#[test]
fn the_probe_guest_answers_under_tcg() {
    // The same guest the KVM probe boots: under TCG it must answer, or "not usable" would
    // mean nothing.
    let qemu = ferry::qemu::QemuBinary::find(None).unwrap();
    let probe =
        ferry::host::kvm::probe(&qemu, ferry::qemu::AccelKind::Tcg, Duration::from_secs(10));
    assert!(probe.usable, "{probe:?}");
}

/// Runs a command, with its output on failure.
fn sh(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A loop device over a sparse file, with whatever was set up on it; everything is undone on
/// drop (swapoff, umount, mdadm --stop, losetup -d), also when the test fails.
struct Loop {
    dev: String,
    mounts: Vec<PathBuf>,
    swaps: Vec<String>,
    arrays: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Loop {
    /// `Err(reason)` when loop devices cannot be used here.
    fn new(size_mib: u64, partitioned: bool) -> Result<Loop, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err("not root".into());
        }
        if !Path::new("/dev/loop-control").exists() {
            return Err("no /dev/loop-control".into());
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let img = dir.path().join("loop.img");
        std::fs::File::create(&img)
            .and_then(|f| f.set_len(size_mib << 20))
            .map_err(|e| e.to_string())?;
        if partitioned {
            let mut child = Command::new("sfdisk")
                .arg("-q")
                .arg(&img)
                .stdin(std::process::Stdio::piped())
                .spawn()
                .map_err(|e| format!("sfdisk: {e}"))?;
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(b"label: dos\nstart=2048, type=83\n")
                .unwrap();
            if !child.wait().unwrap().success() {
                return Err("sfdisk failed".into());
            }
        }
        let dev = sh("losetup", &["-f", "--show", "-P", img.to_str().unwrap()])?;
        let lp = Loop {
            dev,
            mounts: Vec::new(),
            swaps: Vec::new(),
            arrays: Vec::new(),
            _dir: dir,
        };
        if partitioned {
            let part = lp.part();
            // The kernel scans the partition table on attach (-P); when it raced with
            // another loop device's detach, ask it to read the table again.
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut rescanned = false;
            while !Path::new(&part).exists() {
                if Instant::now() > deadline {
                    return Err(format!("{part} did not appear"));
                }
                if !rescanned && Instant::now() + Duration::from_secs(8) > deadline {
                    // Some kernels here attach without scanning (no partition appears even
                    // after --rereadpt); partx adds the partitions with the BLKPG ioctl.
                    let _ = sh("blockdev", &["--rereadpt", &lp.dev]);
                    let _ = sh("partx", &["-a", &lp.dev]);
                    rescanned = true;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(lp)
    }

    fn part(&self) -> String {
        format!("{}p1", self.dev)
    }

    fn mount(&mut self, dev: &str) -> Result<(), String> {
        sh("mkfs.ext4", &["-q", "-F", dev])?;
        let at = self._dir.path().join(format!("mnt{}", self.mounts.len()));
        std::fs::create_dir(&at).unwrap();
        sh("mount", &[dev, at.to_str().unwrap()])?;
        self.mounts.push(at);
        Ok(())
    }

    fn swap(&mut self) -> Result<(), String> {
        sh("mkswap", &[&self.dev])?;
        sh("swapon", &[&self.dev])?;
        self.swaps.push(self.dev.clone());
        Ok(())
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        for s in &self.swaps {
            let _ = sh("swapoff", &[s]);
        }
        for m in self.mounts.iter().rev() {
            let _ = sh("umount", &[m.to_str().unwrap()]);
        }
        for a in &self.arrays {
            let _ = sh("mdadm", &["--stop", a]);
        }
        let _ = sh("losetup", &["-d", &self.dev]);
    }
}

macro_rules! loop_or_skip {
    ($size:expr, $partitioned:expr) => {
        match Loop::new($size, $partitioned) {
            Ok(l) => l,
            Err(reason) => {
                println!("SKIPPED: loop devices unavailable: {reason}");
                eprintln!("SKIPPED: loop devices unavailable: {reason}");
                return;
            }
        }
    };
}

/// `ferry plan tiny.toml --disk DEV`: refused before anything is written.
fn plan_disk(dev: &str) -> Output {
    ferry()
        .arg("plan")
        .arg(fixture("tiny.toml"))
        .args(["--disk", dev])
        .output()
        .unwrap()
}

fn assert_refused(dev: &str, code: i32, message: &str) {
    let output = plan_disk(dev);
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(code), "{stderr}");
    assert!(
        stderr.contains(message),
        "expected {message:?} in:\n{stderr}"
    );
}

#[test]
fn guard_mounted_partition() {
    let mut lp = loop_or_skip!(64, true);
    let part = lp.part();
    lp.mount(&part).unwrap();
    assert_refused(
        &lp.dev,
        22,
        &format!("is in use: mounted at {}", lp.mounts[0].display()),
    );
    assert_refused(&part, 21, "is a partition of");
}

#[test]
fn guard_mounted_whole_disk() {
    let mut lp = loop_or_skip!(64, false);
    let dev = lp.dev.clone();
    lp.mount(&dev).unwrap();
    assert_refused(&lp.dev, 22, &format!("(as {dev})"));
}

#[test]
fn guard_active_swap() {
    let mut lp = loop_or_skip!(64, false);
    if let Err(e) = lp.swap() {
        println!("SKIPPED: swapon not possible here: {e}");
        return;
    }
    assert_refused(&lp.dev, 23, &format!("active swap on {}", lp.dev));
}

#[test]
fn guard_md_member() {
    if !Path::new("/proc/mdstat").exists() {
        println!(
            "SKIPPED: this kernel has no md driver (/proc/mdstat missing); md refusal is covered by the sata-md-server tree"
        );
        return;
    }
    if sh("mdadm", &["--version"]).is_err() {
        println!("SKIPPED: mdadm is not installed");
        return;
    }
    let mut a = loop_or_skip!(64, false);
    let b = loop_or_skip!(64, false);
    let md = "/dev/md/ferry-test";
    if let Err(e) = sh(
        "mdadm",
        &[
            "--create",
            md,
            "--run",
            "--level=1",
            "--raid-devices=2",
            "--metadata=1.2",
            &a.dev,
            &b.dev,
        ],
    ) {
        println!("SKIPPED: mdadm --create failed: {e}");
        return;
    }
    a.arrays.push(md.to_string());
    assert_refused(&a.dev, 24, "is a member of the raid1 array");
}

#[test]
fn guard_missing_and_not_a_disk_and_root() {
    assert_refused("/dev/ferry-no-such-disk", 20, "no such disk");
    assert_refused("/dev/null", 21, "not a block device or a regular file");
    // The disk the running system's root lives on.
    let d = json_of(
        &ferry()
            .args(["doctor", "--json", "--no-probe"])
            .output()
            .unwrap(),
    );
    match d["disks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["backs_root"] == true)
    {
        Some(root) => assert_refused(
            root["path"].as_str().unwrap(),
            26,
            "holds the running system's root file system",
        ),
        None => println!("SKIPPED: the root file system is not on a disk here"),
    }
}

#[test]
fn installs_onto_a_loop_device() {
    let lp = loop_or_skip!(512, false);
    let scratch = Scratch::new();
    let output = ferry()
        .arg("install")
        .arg(fixture("tiny.toml"))
        .args(["--disk", &lp.dev, "--yes", "--accel", "tcg"])
        .arg("--runs-dir")
        .arg(scratch.runs())
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("boot check passed"), "{stdout}");
    let args = std::fs::read_to_string(scratch.run_dir().join("qemu.args")).unwrap();
    assert!(
        args.contains(&format!("file={},cache=none,aio=native", lp.dev)),
        "{args}"
    );
    let parts = mbr_partitions(Path::new(&lp.dev));
    assert_eq!(parts.len(), 1, "{parts:?}");
}

/// A UEFI install of the fixture under OVMF; returns stderr (the progress lines).
fn uefi_install(extra: &[&str]) -> (Scratch, String) {
    let scratch = Scratch::new();
    let mut args = vec!["--firmware", "uefi", "--accel", "tcg"];
    args.extend(extra);
    let output = scratch
        .install(&fixture("tiny.toml"), &args)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("boot check passed"), "{stdout}");
    let qemu_args = std::fs::read_to_string(scratch.run_dir().join("verify/qemu.args")).unwrap();
    assert!(
        qemu_args.contains("if=pflash"),
        "verify boot under OVMF: {qemu_args}"
    );
    let mut disk = std::fs::File::open(scratch.disk()).unwrap();
    let parts = ferry::install::esp::read_gpt(&mut disk)
        .unwrap()
        .expect("a GPT");
    assert!(parts.iter().any(|p| p.is_esp && p.number == 1), "{parts:?}");
    (scratch, stderr)
}

#[test]
fn uefi_install_with_removable_loader() {
    let (_scratch, stderr) = uefi_install(&[]);
    assert!(
        stderr.contains("ESP (partition 1) holds EFI/BOOT/BOOTX64.EFI"),
        "{stderr}"
    );
}

#[test]
fn uefi_install_without_removable_loader_gets_a_copy() {
    let (scratch, stderr) = uefi_install(&["--var", "efi_removable=no"]);
    assert!(
        stderr.contains(
            "ESP (partition 1) had no EFI/BOOT/BOOTX64.EFI: copied EFI/tiny/grubx64.efi there"
        ),
        "{stderr}"
    );
    let verify = std::fs::read_to_string(scratch.run_dir().join("verify/serial.log")).unwrap();
    assert!(verify.contains("tiny login:"), "{verify}");
}

#[test]
fn efi_boot_entry_is_refused_where_it_cannot_work() {
    let dir = tempfile::tempdir().unwrap();
    let output = ferry()
        .arg("install")
        .arg(fixture("tiny.toml"))
        .arg("--disk")
        .arg(dir.path().join("d.img"))
        .args([
            "--size",
            "1G",
            "--yes",
            "--firmware",
            "uefi",
            "--efi-boot-entry",
        ])
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--efi-boot-entry: "), "{stderr}");
    assert!(!dir.path().join("d.img").exists());
}

#[test]
fn a_symlink_or_a_device_node_outside_dev_names_the_same_disk() {
    let lp = loop_or_skip!(64, false);
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("disk-link");
    std::os::unix::fs::symlink(&lp.dev, &link).unwrap();
    let node = dir.path().join("disk-node");
    let rdev = std::os::unix::fs::MetadataExt::rdev(&std::fs::metadata(&lp.dev).unwrap());
    nix::sys::stat::mknod(
        &node,
        nix::sys::stat::SFlag::S_IFBLK,
        nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
        rdev,
    )
    .unwrap();
    for disk in [&link, &node] {
        let output = plan_disk(disk.to_str().unwrap());
        let (stdout, stderr) = text(&output);
        assert!(output.status.success(), "{}: {stderr}", disk.display());
        assert!(stdout.contains("block device"), "{stdout}");
    }
}

#[test]
fn an_empty_loop_device_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.img");
    std::fs::write(&empty, "").unwrap();
    let dev = match sh("losetup", &["-f", "--show", empty.to_str().unwrap()]) {
        Ok(dev) => dev,
        Err(e) => {
            println!("SKIPPED: loop devices unavailable: {e}");
            return;
        }
    };
    let output = plan_disk(&dev);
    let _ = sh("losetup", &["-d", &dev]);
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(21), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        format!(
            "ferry: error: {dev} is an empty block device (0 bytes; an unattached loop device?); name a disk"
        )
    );
}

#[test]
fn an_active_swap_file_and_kernel_files_are_refused() {
    assert_refused(
        "/proc/self/mem",
        21,
        "/proc/self/mem: not a block device or a regular file",
    );
    let dir = tempfile::tempdir().unwrap();
    let swap = dir.path().join("swap.img");
    std::fs::write(&swap, vec![0u8; 16 << 20]).unwrap();
    if let Err(e) = sh("mkswap", &[swap.to_str().unwrap()])
        .and_then(|_| sh("swapon", &[swap.to_str().unwrap()]))
    {
        println!("SKIPPED: swapon not possible here: {e}");
        return;
    }
    let output = plan_disk(swap.to_str().unwrap());
    let _ = sh("swapoff", &[swap.to_str().unwrap()]);
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(23), "{stderr}");
    assert!(stderr.contains("is in use: active swap on"), "{stderr}");
}

/// `--arch aarch64` on this x86-64 machine: `qemu-system-aarch64` (here a stand-in that only
/// answers `--version`), TCG, UEFI, and the kernel's console on the PL011 (`ttyAMA0`); KVM and
/// BIOS are refused with the fix, and a machine without that QEMU is told which package
/// holds it.
#[test]
fn plan_for_an_aarch64_guest() {
    let scratch = Scratch::new();
    let qemu = scratch.dir.path().join("qemu-system-aarch64");
    std::fs::write(
        &qemu,
        "#!/bin/sh\necho 'QEMU emulator version 7.2.0 (stand-in)'\n",
    )
    .unwrap();
    std::fs::set_permissions(&qemu, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let plan = |extra: &[&str], path: Option<&Path>| {
        let mut cmd = ferry();
        cmd.arg("plan")
            .arg(fixture("tiny.toml"))
            .arg("--disk")
            .arg(scratch.disk())
            .args(["--size", "2G", "--arch", "aarch64"])
            .args(extra);
        if let Some(path) = path {
            cmd.env("PATH", path);
        }
        cmd.output().unwrap()
    };
    let qemu_arg = qemu.to_str().unwrap();
    let out = plan(&["--qemu", qemu_arg, "--firmware", "uefi", "--json"], None);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let json: Value = serde_json::from_str(&stdout).unwrap();
    let plan_json = &json["plan"];
    let plan_json = if plan_json.is_null() {
        &json
    } else {
        plan_json
    };
    assert_eq!(plan_json["arch"], "aarch64", "{stdout}");
    assert_eq!(plan_json["accel"]["first"], "tcg", "{stdout}");
    assert_eq!(
        plan_json["accel"]["reason"],
        "an aarch64 guest on this x86_64 machine: TCG"
    );
    assert_eq!(plan_json["firmware"], "uefi", "{stdout}");
    assert_eq!(plan_json["qemu"]["program"], qemu_arg);
    let cmdline = plan_json["boot"]["cmdline"].as_str().unwrap();
    assert!(cmdline.ends_with(" console=ttyAMA0,115200n8"), "{cmdline}");

    let out = plan(
        &["--qemu", qemu_arg, "--accel", "kvm", "--firmware", "uefi"],
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out).1);
    assert_eq!(
        text(&out).1,
        "ferry: error: KVM runs guests of this machine's architecture (x86_64) only; an aarch64 \
         guest runs under TCG (--accel tcg or auto)\n"
    );
    // tiny.toml asks for BIOS.
    let out = plan(&["--qemu", qemu_arg], None);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out).1);
    assert_eq!(
        text(&out).1,
        "ferry: error: an aarch64 guest boots UEFI only (AAVMF on QEMU's virt board): use \
         --firmware uefi or auto\n"
    );
    let empty = scratch.dir.path().join("bin");
    std::fs::create_dir(&empty).unwrap();
    let out = plan(&["--firmware", "uefi"], Some(&empty));
    assert_eq!(out.status.code(), Some(5), "{}", text(&out).1);
    assert!(
        text(&out).1.starts_with(
            "ferry: error: no qemu-system-aarch64 found on PATH; install it (Debian: apt-get \
             install qemu-system-arm)"
        ),
        "{}",
        text(&out).1
    );
}

#[test]
fn plan_and_doctor_agree_about_kvm() {
    let scratch = Scratch::new();
    // A verdict of this test's own: what is recorded for this boot is decided here.
    let verdict_file = scratch.dir.path().join("kvm.json");
    let run = |args: &[&str]| {
        ferry()
            .args(args)
            .env("FERRY_KVM_VERDICT", &verdict_file)
            .output()
            .unwrap()
    };
    let disk = scratch.disk();
    let tiny = fixture("tiny.toml");
    let plan_args = [
        "plan",
        tiny.to_str().unwrap(),
        "--disk",
        disk.to_str().unwrap(),
        "--size",
        "2G",
        "--json",
    ];
    let kvm_opens = kvm_opens();

    // Nothing recorded: the plan probes, once, and keeps what it found for this boot.
    let first = json_of(&run(&plan_args));
    if kvm_opens {
        let recorded: Value =
            serde_json::from_str(&std::fs::read_to_string(&verdict_file).unwrap()).unwrap();
        let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
        assert_eq!(recorded["boot_id"], boot_id.trim());
        // The plan follows its own probe (the next probe may decide otherwise: this
        // machine's KVM answers now and then).
        let chosen = if recorded["usable"] == true {
            "kvm"
        } else {
            "tcg"
        };
        assert_eq!(first["accel"]["first"], chosen, "{}", first["accel"]);
    } else {
        assert_eq!(first["accel"]["first"], "tcg", "{}", first["accel"]);
    }

    // Doctor probes again and records; plan decides from that record.
    let doctor = json_of(&run(&["doctor", "--json"]));
    let plan = json_of(&run(&plan_args));
    let usable = doctor["kvm"]["usable"].as_bool().unwrap_or(false);
    eprintln!("doctor: {}\nplan: {}", doctor["kvm"], plan["accel"]);
    let (first_accel, fallback) = if usable {
        ("kvm", true)
    } else {
        ("tcg", false)
    };
    assert_eq!(plan["accel"]["first"], first_accel, "{}", plan["accel"]);
    assert_eq!(
        plan["accel"]["fallback_to_tcg"], fallback,
        "{}",
        plan["accel"]
    );
    if kvm_opens && !usable {
        // Here /dev/kvm opens but guests hang: the plan says why, in the probe's words.
        let reason = plan["accel"]["reason"].as_str().unwrap();
        let probed = doctor["kvm"]["probe"]["reason"].as_str().unwrap();
        assert!(reason.contains(probed), "{reason} / {probed}");
        // `doctor --no-probe` reports the same record.
        let again = json_of(&run(&["doctor", "--json", "--no-probe"]));
        assert_eq!(again["kvm"]["usable"], false, "{}", again["kvm"]);
        let shown = String::from_utf8(run(&["doctor", "--no-probe"]).stdout).unwrap();
        assert!(
            shown.contains("kvm        NOT usable (installs run under TCG): "),
            "{shown}"
        );
        // And an install never starts the installer under KVM: no fallback, no QEMU text.
        let out = scratch
            .install(&tiny, &[])
            .env("FERRY_KVM_VERDICT", &verdict_file)
            .output()
            .unwrap();
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert!(
            stderr.contains("starting QEMU (TCG, 512 MiB, 1 CPU) with"),
            "{stderr}"
        );
        assert!(!stderr.contains("KVM"), "{stderr}");
        let args = std::fs::read_to_string(scratch.run_dir().join("qemu.args")).unwrap();
        assert!(!args.contains("kvm"), "{args}");
    }
    let shown = String::from_utf8(run(&plan_args[..6]).stdout).unwrap();
    let accel_line = shown.lines().find(|l| l.starts_with("accel ")).unwrap();
    assert_eq!(
        accel_line.split_whitespace().nth(1),
        Some(first_accel),
        "{shown}"
    );
}
