//! KVM: whether /dev/kvm exists and opens, and whether it really runs guests — decided by
//! booting a 512-byte guest under `-accel kvm` and waiting for the line it writes to COM1.
//! (/dev/kvm can open and still hang or crash guests: nested or paravirtual KVM.)

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::Root;
use crate::qemu::{AccelKind, QemuBinary};

#[derive(Debug, Clone, Serialize, Default, schemars::JsonSchema)]
pub struct KvmFacts {
    /// /dev/kvm exists.
    pub present: bool,
    /// /dev/kvm opens read-write for this user (only checked on the running system).
    pub openable: bool,
    /// Why it does not open.
    pub open_error: Option<String>,
    /// What the probe found on this boot of this /dev/kvm, if it ran.
    pub verdict: Option<Verdict>,
}

impl KvmFacts {
    pub fn read(root: &Root) -> KvmFacts {
        let present = root.exists("/dev/kvm");
        if !root.is_system() || !present {
            return KvmFacts {
                present,
                ..KvmFacts::default()
            };
        }
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
        {
            Ok(_) => KvmFacts {
                present,
                openable: true,
                open_error: None,
                verdict: Verdict::recorded(),
            },
            Err(e) => KvmFacts {
                present,
                openable: false,
                open_error: Some(e.to_string()),
                verdict: None,
            },
        }
    }
}

/// What booting the probe guest showed.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Probe {
    pub accel: AccelKind,
    /// The guest ran and wrote its line.
    pub usable: bool,
    /// Why it is not usable (or how quickly it answered).
    pub reason: String,
    pub seconds: f64,
}

/// How long the probe guest may take to write its line under KVM (it needs ~0.1 s on a
/// working KVM; TCG needs well under a second).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether KVM runs guests, decided once per boot of the kernel and per /dev/kvm: the first
/// probe (`ferry doctor`, or `ferry plan`/`install` when none was recorded) is kept in a small
/// file, and every later command decides from it — so they agree, and an install never starts
/// under a KVM that was seen to hang guests. A reboot (new boot id) or a reloaded kvm module
/// (a new /dev/kvm) makes it stale.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Verdict {
    /// /proc/sys/kernel/random/boot_id when it was decided.
    pub boot_id: String,
    /// /dev/kvm's identity then (`DEV:INODE:RDEV`).
    pub device: String,
    pub usable: bool,
    pub reason: String,
    /// When (RFC 3339).
    pub decided_at: String,
}

impl Verdict {
    /// Where it is kept: `$FERRY_KVM_VERDICT`, else `/run/ferry/kvm.json` as root (/run is
    /// emptied at boot), else `$XDG_RUNTIME_DIR/ferry/kvm.json`, else in `~/.cache/ferry`.
    pub fn path() -> PathBuf {
        if let Some(path) = std::env::var_os("FERRY_KVM_VERDICT") {
            return PathBuf::from(path);
        }
        let dir = if nix::unistd::geteuid().is_root() {
            PathBuf::from("/run/ferry")
        } else if let Some(run) = std::env::var_os("XDG_RUNTIME_DIR") {
            PathBuf::from(run).join("ferry")
        } else {
            std::env::var_os("HOME")
                .map_or_else(std::env::temp_dir, |h| PathBuf::from(h).join(".cache"))
                .join("ferry")
        };
        dir.join("kvm.json")
    }

    /// The verdict recorded for this boot and this /dev/kvm, if any.
    pub fn recorded() -> Option<Verdict> {
        let text = std::fs::read_to_string(Verdict::path()).ok()?;
        Verdict::if_current(&text, &identity()?)
    }

    /// The verdict in `text` if it was decided on this boot for this /dev/kvm (`identity`):
    /// a reboot or a reloaded kvm module makes it stale.
    fn if_current(text: &str, (boot_id, device): &(String, String)) -> Option<Verdict> {
        let verdict: Verdict = serde_json::from_str(text).ok()?;
        (&verdict.boot_id == boot_id && &verdict.device == device).then_some(verdict)
    }

    /// Records what was found for this boot and this /dev/kvm (replacing what was there);
    /// `None` when the kernel's boot id or /dev/kvm cannot be read. A verdict that cannot be
    /// written still decides this command: it is only logged.
    pub fn record(usable: bool, reason: &str) -> Option<Verdict> {
        let (boot_id, device) = identity()?;
        let verdict = Verdict {
            boot_id,
            device,
            usable,
            reason: reason.to_string(),
            decided_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        };
        if let Err(e) = write_atomically(&Verdict::path(), &verdict) {
            tracing::warn!("KVM verdict not recorded: {e}");
        }
        Some(verdict)
    }

    /// The recorded verdict, else the probe's (recorded for the next command).
    pub fn recorded_or_probed(qemu: &QemuBinary) -> Option<Verdict> {
        Verdict::recorded().or_else(|| {
            let probe = probe(qemu, AccelKind::Kvm, PROBE_TIMEOUT);
            Verdict::record(probe.usable, &probe.reason)
        })
    }
}

/// This boot's id and /dev/kvm's identity.
fn identity() -> Option<(String, String)> {
    use std::os::unix::fs::MetadataExt;
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let kvm = std::fs::metadata("/dev/kvm").ok()?;
    Some((
        boot_id.trim().to_string(),
        format!("{}:{}:{}", kvm.dev(), kvm.ino(), kvm.rdev()),
    ))
}

/// Writes `verdict` to `path` through a temporary file and a rename: concurrent commands
/// read a whole verdict or none.
fn write_atomically(path: &Path, verdict: &Verdict) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let text = serde_json::to_string_pretty(verdict).map_err(std::io::Error::other)?;
    let tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::fs::write(tmp.path(), text + "\n")?;
    tmp.persist(path)
        .map_err(|e| std::io::Error::new(e.error.kind(), format!("{}: {e}", path.display())))?;
    Ok(())
}

/// The line the probe guest writes to COM1.
pub const PROBE_LINE: &[u8] = b"ferry-probe-ok\n";

/// A BIOS boot sector: DS=0, write PROBE_LINE to port 0x3f8 byte by byte, then halt forever.
pub fn boot_sector() -> [u8; 512] {
    let mut code: Vec<u8> = vec![
        0x31, 0xc0, // xor ax, ax
        0x8e, 0xd8, // mov ds, ax
        0xfc, // cld
        0xba, 0xf8, 0x03, // mov dx, 0x3f8
        0xbe, 0x17, 0x7c, // mov si, 0x7c17 (the text)
        0xac, // next: lodsb
        0x84, 0xc0, // test al, al
        0x74, 0x03, // jz done
        0xee, // out dx, al
        0xeb, 0xf8, // jmp next
        0xfa, // done: cli
        0xf4, // hlt
        0xeb, 0xfc, // jmp done
    ];
    debug_assert_eq!(code.len(), 0x17);
    code.extend_from_slice(PROBE_LINE);
    code.push(0);
    let mut sector = [0u8; 512];
    sector[..code.len()].copy_from_slice(&code);
    sector[510] = 0x55;
    sector[511] = 0xaa;
    sector
}

/// Boots the probe guest with `accel` and waits up to `timeout` for its line. The QEMU child
/// dies with ferry (PR_SET_PDEATHSIG) and is killed when the probe ends.
pub fn probe(qemu: &QemuBinary, accel: AccelKind, timeout: Duration) -> Probe {
    let started = Instant::now();
    let result = run_probe(qemu, accel, timeout);
    let seconds = started.elapsed().as_secs_f64();
    match result {
        Ok(()) => Probe {
            accel,
            usable: true,
            reason: format!("the probe guest answered in {seconds:.2}s"),
            seconds,
        },
        Err(reason) => Probe {
            accel,
            usable: false,
            reason,
            seconds,
        },
    }
}

fn run_probe(qemu: &QemuBinary, accel: AccelKind, timeout: Duration) -> Result<(), String> {
    let dir = tempfile::Builder::new()
        .prefix("ferry-probe-")
        .tempdir()
        .map_err(|e| format!("temporary directory: {e}"))?;
    let disk = dir.path().join("probe.img");
    let serial = dir.path().join("serial.out");
    std::fs::write(&disk, boot_sector()).map_err(|e| format!("{}: {e}", disk.display()))?;
    let accel_name = match accel {
        AccelKind::Kvm => "kvm",
        AccelKind::Tcg => "tcg",
    };
    let mut command = Command::new(&qemu.program);
    command
        .args(&qemu.pre_args)
        .args([
            "-nodefaults",
            "-no-user-config",
            "-machine",
            "pc",
            "-accel",
            accel_name,
            "-m",
            "16",
            "-display",
            "none",
        ])
        .arg("-drive")
        .arg(format!(
            "if=ide,format=raw,file={}",
            disk.display().to_string().replace(',', ",,")
        ))
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .envs(qemu.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let parent = std::process::id() as i32;
    // SAFETY: only async-signal-safe calls (prctl, getppid) run between fork and exec.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            if nix::unistd::getppid().as_raw() != parent {
                return Err(std::io::Error::other("parent died"));
            }
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", qemu.program.display()))?;
    let deadline = crate::clock::deadline(timeout);
    let outcome = loop {
        if read_probe_output(&serial)
            .windows(PROBE_LINE.len())
            .any(|w| w == PROBE_LINE)
        {
            break Ok(());
        }
        match child.try_wait() {
            Ok(Some(status)) => {
                let mut stderr = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr);
                }
                let last = stderr
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("no message")
                    .trim()
                    .to_string();
                break Err(format!("QEMU exited under {accel_name} ({status}): {last}"));
            }
            Ok(None) => {}
            Err(e) => break Err(format!("waiting for QEMU: {e}")),
        }
        if Instant::now() >= deadline {
            break Err(format!(
                "the probe guest wrote nothing to its serial port within {:.1}s under {accel_name} (QEMU kept running: the guest hangs)",
                timeout.as_secs_f64()
            ));
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    let _ = child.kill();
    let _ = child.wait();
    outcome
}

fn read_probe_output(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::Verdict;

    #[test]
    fn a_verdict_holds_for_its_boot_and_its_dev_kvm_only() {
        let verdict = Verdict {
            boot_id: "boot-a".into(),
            device: "6:82:2792".into(),
            usable: false,
            reason: "the probe guest wrote nothing".into(),
            decided_at: "2026-12-02T03:00:00Z".into(),
        };
        let text = serde_json::to_string(&verdict).unwrap();
        let here = |boot: &str, device: &str| (boot.to_string(), device.to_string());
        assert_eq!(
            Verdict::if_current(&text, &here("boot-a", "6:82:2792")),
            Some(verdict)
        );
        assert_eq!(
            Verdict::if_current(&text, &here("boot-b", "6:82:2792")),
            None
        );
        assert_eq!(
            Verdict::if_current(&text, &here("boot-a", "6:99:2792")),
            None
        );
        assert_eq!(
            Verdict::if_current("not json", &here("boot-a", "6:82:2792")),
            None
        );
    }

    #[test]
    fn boot_sector_layout() {
        let s = super::boot_sector();
        assert_eq!(&s[510..], &[0x55, 0xaa]);
        assert_eq!(&s[0x17..0x17 + super::PROBE_LINE.len()], super::PROBE_LINE);
    }
}
