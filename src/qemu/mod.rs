//! QEMU: finding a binary and its firmware, the command line, the process, and QMP.

pub mod archive;
pub mod bundle;
pub mod cmdline;
pub mod process;
pub mod qmp;
pub mod vga;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use crate::arch::Arch;

pub use cmdline::{
    AccelKind, CacheMode, Disk, DiskWrites, FirmwareFiles, KernelBoot, Machine, USER_NET_HOST,
    command_line, command_line_for, shell_quote,
};
pub use process::{ProcessError, Qemu, Spawned};

/// The oldest QEMU ferry drives (Debian 12's); older ones lack options ferry uses.
const MIN_VERSION: (u32, u32) = (7, 2);

#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    #[error("{} is not a usable QEMU: {reason}", path.display())]
    Unusable { path: PathBuf, reason: String },
    #[error(
        "no {} found on PATH; install it (Debian: apt-get install {}), pass --qemu PATH, or name a portable QEMU bundle in the catalog (README: QEMU)",
        arch.qemu_system(), debian_package(*arch)
    )]
    NotFound { arch: Arch },
    #[error(transparent)]
    Bundle(#[from] bundle::BundleError),
    /// Boxed: the chain's errors are large, and every `Result` carrying a `QemuError` pays.
    #[error(transparent)]
    Archive(Box<archive::ArchiveError>),
    #[error(
        "no OVMF firmware found (looked for {looked}); install it (Debian: apt-get install ovmf)"
    )]
    NoOvmf { looked: String },
    #[error(
        "no AAVMF firmware found (looked for {looked}); install it (Debian: apt-get install qemu-efi-aarch64)"
    )]
    NoAavmf { looked: String },
}

/// The Debian package that holds `arch`'s `qemu-system-*`.
fn debian_package(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "qemu-system-x86",
        Arch::Aarch64 => "qemu-system-arm",
    }
}

impl From<archive::ArchiveError> for QemuError {
    fn from(e: archive::ArchiveError) -> QemuError {
        QemuError::Archive(Box::new(e))
    }
}

/// How to run QEMU: the program, arguments that precede ferry's own (a bundled loader), and
/// environment.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct QemuBinary {
    pub program: PathBuf,
    pub pre_args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub version: String,
    /// Why this one was chosen.
    pub source: String,
    /// Firmware that comes with this QEMU (the portable bundle's `share/qemu`), searched
    /// before the system's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub firmware_dir: Option<PathBuf>,
}

impl QemuBinary {
    /// `--qemu PATH` if given, else `qemu-system-x86_64` on PATH.
    pub fn find(explicit: Option<&Path>) -> Result<QemuBinary, QemuError> {
        QemuBinary::find_for(Arch::X86_64, explicit)
    }

    /// `--qemu PATH` if given, else the QEMU that emulates `arch` on PATH.
    pub fn find_for(arch: Arch, explicit: Option<&Path>) -> Result<QemuBinary, QemuError> {
        if let Some(path) = explicit {
            return QemuBinary::probe(path, "--qemu");
        }
        let path = which(arch.qemu_system()).ok_or(QemuError::NotFound { arch })?;
        QemuBinary::probe(&path, "found on PATH")
    }

    fn probe(path: &Path, source: &str) -> Result<QemuBinary, QemuError> {
        let version = checked_version(path, &[], &[])?;
        Ok(QemuBinary::at(path, version, source))
    }

    fn at(path: &Path, version: String, source: &str) -> QemuBinary {
        QemuBinary {
            program: path.to_path_buf(),
            pre_args: Vec::new(),
            env: Vec::new(),
            version,
            source: source.to_string(),
            firmware_dir: None,
        }
    }

    /// The value of [`PROBED_ENV`] that hands this probe to a child ferry.
    pub fn probed_env(&self) -> String {
        format!("{}\n{}", self.program.display(), self.version)
    }
}

/// Through this variable `ferry install` hands its supervisor (which plans again) the QEMU it
/// already checked, `PATH\nVERSION`: one `--version` run less before the guest boots.
pub const PROBED_ENV: &str = "FERRY_PROBED_QEMU";

fn probed_by_parent(path: &Path) -> Option<String> {
    let value = std::env::var(PROBED_ENV).ok()?;
    let (probed, version) = value.split_once('\n')?;
    (Path::new(probed) == path).then(|| version.to_string())
}

/// The version of `program PRE_ARGS` (as the parent ferry found it, else by running it with
/// `--version`), if it is one ferry drives.
fn checked_version(
    program: &Path,
    pre_args: &[String],
    env: &[(String, String)],
) -> Result<String, QemuError> {
    let unusable = |reason: String| QemuError::Unusable {
        path: program.to_path_buf(),
        reason,
    };
    if let Some(version) = probed_by_parent(program) {
        return Ok(version);
    }
    let output = Command::new(program)
        .args(pre_args)
        .arg("--version")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .map_err(|e| unusable(e.to_string()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let version = parse_version(&stdout).ok_or_else(|| {
        let stderr = String::from_utf8_lossy(&output.stderr);
        unusable(format!(
            "unexpected --version output: {}",
            format!("{} {}", stdout.trim(), stderr.trim()).trim()
        ))
    })?;
    if (version.0, version.1) < MIN_VERSION {
        return Err(unusable(format!(
            "version {}.{} is older than {}.{}",
            version.0, version.1, MIN_VERSION.0, MIN_VERSION.1
        )));
    }
    Ok(format!("{}.{}.{}", version.0, version.1, version.2))
}

/// `QEMU emulator version 7.2.22 (Debian ...)` → (7, 2, 22).
fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let rest = text.split("version ").nth(1)?;
    let word = rest.split_whitespace().next()?;
    let mut parts = word.split('.').map(|p| p.parse::<u32>().ok());
    Some((
        parts.next()??,
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
    ))
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The UEFI firmware's code and variable store template for an `arch` guest: OVMF, or AAVMF
/// from `firmware_dir` (a QEMU bundle's `share/qemu`) or where Debian installs it.
pub fn find_uefi_in(
    arch: Arch,
    firmware_dir: Option<&Path>,
) -> Result<(PathBuf, PathBuf), QemuError> {
    if arch == Arch::X86_64 {
        return find_ovmf_in(firmware_dir);
    }
    let (code, vars) = ("AAVMF_CODE.fd", "AAVMF_VARS.fd");
    let dirs = firmware_dir
        .into_iter()
        .chain([Path::new("/usr/share/AAVMF")]);
    dirs.clone()
        .map(|dir| (dir.join(code), dir.join(vars)))
        .find(|(c, v)| c.is_file() && v.is_file())
        .ok_or_else(|| QemuError::NoAavmf {
            looked: dirs
                .map(|d| d.join(code).display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// OVMF from `firmware_dir` (a QEMU bundle's `share/qemu`, see [`QemuBinary::firmware_dir`])
/// if it holds it, else as Debian, Fedora and Arch install it.
pub fn find_ovmf_in(firmware_dir: Option<&Path>) -> Result<(PathBuf, PathBuf), QemuError> {
    if let Some(dir) = firmware_dir {
        let (code, vars) = (dir.join("OVMF_CODE_4M.fd"), dir.join("OVMF_VARS_4M.fd"));
        if code.is_file() && vars.is_file() {
            return Ok((code, vars));
        }
    }
    const PAIRS: &[(&str, &str)] = &[
        (
            "/usr/share/OVMF/OVMF_CODE_4M.fd",
            "/usr/share/OVMF/OVMF_VARS_4M.fd",
        ),
        (
            "/usr/share/OVMF/OVMF_CODE.fd",
            "/usr/share/OVMF/OVMF_VARS.fd",
        ),
        (
            "/usr/share/edk2/ovmf/OVMF_CODE.fd",
            "/usr/share/edk2/ovmf/OVMF_VARS.fd",
        ),
        (
            "/usr/share/edk2/x64/OVMF_CODE.4m.fd",
            "/usr/share/edk2/x64/OVMF_VARS.4m.fd",
        ),
    ];
    PAIRS
        .iter()
        .map(|(c, v)| (PathBuf::from(c), PathBuf::from(v)))
        .find(|(c, v)| c.is_file() && v.is_file())
        .ok_or_else(|| QemuError::NoOvmf {
            looked: PAIRS.iter().map(|p| p.0).collect::<Vec<_>>().join(", "),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(
            parse_version("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7)\n"),
            Some((7, 2, 22))
        );
        assert_eq!(
            parse_version("QEMU emulator version 10.0\n"),
            Some((10, 0, 0))
        );
        assert_eq!(parse_version("something else"), None);
    }

    #[test]
    fn explicit_path_that_is_not_qemu_is_refused() {
        let e = QemuBinary::find(Some(Path::new("/bin/true"))).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/bin/true is not a usable QEMU: unexpected --version output"),
            "{e}"
        );
    }
}
