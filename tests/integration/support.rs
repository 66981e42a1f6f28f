//! Shared helpers: running ferry, finding its QEMU processes, reading disk images.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn ferry() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
}

/// How test guests run: under TCG with one vCPU (a 2-vCPU guest kernel under TCG on a loaded
/// host once hung on an RCU grace period; README, "The tests").
pub const TCG_ONE_VCPU: [&str; 4] = ["--accel", "tcg", "--cpus", "1"];

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fixture file; the fixtures are built, not checked in.
pub fn fixture(name: &str) -> PathBuf {
    let path = repo().join("tests/fixtures").join(name);
    let built = repo().join("tests/fixtures/build/stamp");
    assert!(
        built.exists(),
        "test fixtures missing: run scripts/make-fixtures.sh first"
    );
    path
}

/// The tiny installer's two steps, as profile TOML: its disk question answered, then its end,
/// awaited for `timeout`.
pub fn tiny_install_steps(timeout: &str) -> String {
    format!(
        r#"
[[steps]]
name = "confirm the disk"
expect = "[yes/no]: "
send = "yes\n"
[[steps]]
name = "installation"
expect = "tiny-installer: installation complete"
timeout = "{timeout}"
"#
    )
}

/// A scratch directory holding the disk image and the runs of one test.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::Builder::new()
                .prefix("ferry-test-")
                .tempdir()
                .unwrap(),
        }
    }
    pub fn disk(&self) -> PathBuf {
        self.dir.path().join("disk.img")
    }
    pub fn runs(&self) -> PathBuf {
        self.dir.path().join("runs")
    }
    /// The one run directory an install made.
    pub fn run_dir(&self) -> PathBuf {
        let mut dirs: Vec<_> = std::fs::read_dir(self.runs())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(dirs.len(), 1, "expected one run directory, found {dirs:?}");
        dirs.pop().unwrap()
    }
    /// `ferry plan PROFILE --disk D --size 2G` plus `extra`.
    pub fn plan(&self, profile: &Path, extra: &[&str]) -> Output {
        ferry()
            .arg("plan")
            .arg(profile)
            .arg("--disk")
            .arg(self.disk())
            .args(["--size", "2G"])
            .args(extra)
            .output()
            .unwrap()
    }
    /// `ferry install PROFILE --disk D --size 2G --yes --runs-dir R` plus `extra`.
    pub fn install(&self, profile: &Path, extra: &[&str]) -> Command {
        let mut cmd = ferry();
        cmd.arg("install")
            .arg(profile)
            .arg("--disk")
            .arg(self.disk())
            .args(["--size", "2G", "--yes"]);
        cmd.arg("--runs-dir").arg(self.runs()).args(extra);
        cmd.stdin(std::process::Stdio::null());
        cmd
    }
    /// Writes `NAME` in the scratch directory: a profile booting the tiny fixture ISO under
    /// TCG (512 MiB, one CPU) with its answer-file URL on the kernel command line, then `rest`
    /// (files, steps, ...).
    pub fn tiny_profile(&self, name: &str, rest: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        let head = format!(
            r#"
[image]
path = "{iso}"
[vm]
memory = "512M"
cpus = 1
accel = "tcg"
[boot]
append = "url={{{{ serve.url }}}}/answers.sh"
"#,
            iso = fixture("build/tiny-isolinux.iso").display(),
        );
        std::fs::write(&path, head + rest).unwrap();
        path
    }
    /// QEMU processes whose command line mentions this scratch directory.
    pub fn qemu_pids(&self) -> Vec<u32> {
        processes_mentioning(self.dir.path())
    }
}

pub fn processes_mentioning(path: &Path) -> Vec<u32> {
    let needle = path.to_string_lossy().into_owned();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains("qemu-system") && cmdline.contains(&needle) {
            pids.push(pid);
        }
    }
    pids
}

pub fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// An MBR partition entry: (bootable, type, first sector, sectors).
pub fn mbr_partitions(disk: &Path) -> Vec<(bool, u8, u32, u32)> {
    let bytes = std::fs::read(disk).map(|b| b[..512].to_vec()).unwrap();
    assert_eq!(&bytes[510..512], &[0x55, 0xaa], "no MBR boot signature");
    (0..4)
        .map(|i| &bytes[446 + 16 * i..462 + 16 * i])
        .filter(|e| e[4] != 0)
        .map(|e| {
            let le = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            (e[0] == 0x80, e[4], le(&e[8..12]), le(&e[12..16]))
        })
        .collect()
}

/// Reads a file from the ext2/3/4 filesystem in a partition of a disk image, with debugfs.
pub fn read_from_partition(disk: &Path, start_sector: u32, sectors: u32, path: &str) -> String {
    let part = disk.with_extension("part");
    let status = Command::new("dd")
        .arg(format!("if={}", disk.display()))
        .arg(format!("of={}", part.display()))
        .args(["bs=512", "conv=sparse,excl", "status=none"])
        .arg(format!("skip={start_sector}"))
        .arg(format!("count={sectors}"))
        .status()
        .unwrap();
    assert!(status.success());
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(format!("cat {path}"))
        .arg(&part)
        .output()
        .unwrap();
    std::fs::remove_file(&part).unwrap();
    assert!(
        out.status.success(),
        "debugfs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The supervisor's pid of the scratch directory's one run, from its `status.json`.
pub fn supervisor_pid(scratch: &Scratch) -> Option<u32> {
    let run = std::fs::read_dir(scratch.runs())
        .ok()?
        .flatten()
        .next()?
        .path();
    let status: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("status.json")).ok()?).ok()?;
    status["pid"].as_u64().map(|p| p as u32)
}

/// Checks `doc` (one JSON document, or with `lines` one a line) against the JSON Schema
/// `docs/json/NAME.schema.json`, with python3-jsonschema; panics with the validator's message.
pub fn assert_schema(name: &str, doc: &str, lines: bool) {
    use std::io::Write;
    let root = repo();
    let mut child = Command::new("python3")
        .arg(root.join("tests/fixtures/validators/json-schema.py"))
        .arg(root.join(format!("docs/json/{name}.schema.json")))
        .args(lines.then_some("--lines"))
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 with jsonschema (scripts/install-deps.sh)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(doc.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}\n{doc}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Polls `f` every 100 ms until it returns `Some`, or panics after `timeout` saying `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    wait_until(timeout, || f().ok_or_else(|| what.to_string()))
}

/// Polls `f` every 100 ms until it returns `Ok`, or panics after `timeout` with the last
/// `Err`: what was awaited and what was seen instead.
pub fn wait_until<T>(timeout: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(v) => return v,
            Err(seen) => assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?}: {seen}"
            ),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether /dev/kvm opens read-write here (whether it runs guests is the probe's to say).
pub fn kvm_opens() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// `ferry bundle` of `run` unpacked into `SCRATCH/NAME`.
pub fn unpacked_bundle(scratch: &Scratch, run: &Path, name: &str) -> PathBuf {
    let id = run.file_name().unwrap().to_str().unwrap();
    let tarball = scratch.dir.path().join(format!("{name}.tar.gz"));
    let out = ferry()
        .args(["bundle", id, "-o", tarball.to_str().unwrap(), "--runs-dir"])
        .arg(scratch.runs())
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    let unpacked = scratch.dir.path().join(name);
    std::fs::create_dir(&unpacked).unwrap();
    assert!(
        Command::new("tar")
            .arg("xzf")
            .arg(&tarball)
            .arg("-C")
            .arg(&unpacked)
            .status()
            .unwrap()
            .success()
    );
    unpacked
}

/// Every file under `dir` (none when it does not exist).
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
