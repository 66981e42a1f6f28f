//! Whole installs of the fixture OS, and how they fail.

use std::io::Read;
use std::process::Stdio;
use std::time::Duration;

use crate::support::*;

/// Installs with `profile`, then checks the disk itself and the run's records.
fn install_and_check(profile: &str) {
    let scratch = Scratch::new();
    let output = scratch.install(&fixture(profile), &[]).output().unwrap();
    let (stdout, stderr) = text(&output);
    assert!(
        output.status.success(),
        "install failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("boot check passed"), "{stdout}");

    // The disk, read from the image rather than from ferry's report.
    let parts = mbr_partitions(&scratch.disk());
    assert_eq!(parts.len(), 1, "{parts:?}");
    let (bootable, kind, start, sectors) = parts[0];
    assert!(bootable);
    assert_eq!((kind, start), (0x83, 2048));
    let grub = read_from_partition(&scratch.disk(), start, sectors, "/boot/grub/grub.cfg");
    assert!(grub.contains("console=ttyS0"), "{grub}");
    assert_eq!(
        read_from_partition(&scratch.disk(), start, sectors, "/etc/hostname").trim(),
        "tiny"
    );

    let run = scratch.run_dir();
    for file in [
        "plan.json",
        "facts.json",
        "qemu.args",
        "serial.log",
        "transcript.cast",
        "ferry.log",
        "summary.json",
    ] {
        assert!(
            run.join(file).is_file(),
            "{file} missing from {}",
            run.display()
        );
    }
    assert_schema(
        "summary",
        &std::fs::read_to_string(run.join("summary.json")).unwrap(),
        false,
    );
    let serial = std::fs::read_to_string(run.join("serial.log")).unwrap();
    assert!(serial.contains("tiny-installer: installation complete"));
    let verify = std::fs::read_to_string(run.join("verify/serial.log")).unwrap();
    assert!(
        verify.contains("tiny login:"),
        "verify boot never reached the login prompt:\n{verify}"
    );
    // `ferry status` shows the console of the last VM, the boot check's.
    let out = ferry()
        .arg("status")
        .arg(run.file_name().unwrap())
        .arg("--runs-dir")
        .arg(scratch.runs())
        .arg("--json")
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let console = status["console"].as_array().unwrap();
    assert!(
        console.last().and_then(|l| l.as_str()) == Some("tiny login:"),
        "{status}"
    );
    let args = std::fs::read_to_string(run.join("qemu.args")).unwrap();
    // The kernel command line is set over QMP (the guest spoke on ttyS0, so it arrived).
    assert!(
        !args.contains("console=ttyS0")
            && args.contains("--preconfig")
            && args.contains("-no-reboot"),
        "{args}"
    );
    let cast = std::fs::read_to_string(run.join("transcript.cast")).unwrap();
    let header: serde_json::Value = serde_json::from_str(cast.lines().next().unwrap()).unwrap();
    assert_eq!(header["version"], 2);
    for line in cast.lines().skip(1) {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(event[0].as_f64().unwrap() >= 0.0);
    }
    for stage in ["boot", "drive", "finish", "verify"] {
        assert!(
            stdout.contains(&format!("  {stage}")),
            "stage {stage} missing from summary:\n{stdout}"
        );
    }
    assert!(scratch.qemu_pids().is_empty(), "QEMU left running");
}

#[test]
fn installs_from_isolinux_iso_and_boots() {
    install_and_check("tiny.toml");
}

#[test]
fn installs_from_grub_iso_and_boots() {
    install_and_check("tiny-grub.toml");
}

#[test]
fn installs_from_netboot_kernel_and_initrd() {
    install_and_check("tiny-netboot.toml");
}

/// A system's boot writes to its disk (the fixture OS logs each boot in /var/log/boots on an
/// NVMe disk, as a real first boot writes its host keys and journal): the boot check's writes
/// are discarded, and the disk stays as the installer left it.
#[test]
fn the_boot_check_leaves_the_disk_as_the_installer_left_it() {
    let scratch = Scratch::new();
    let steps = tiny_install_steps("15m")
        + r#"[finish]
poweroff_timeout = "15m"
verify = { expect = "/login: ?($|\\[)/", timeout = "15m" }
"#;
    let profile = answered_profile(&scratch, "nvme.toml", &steps);
    let on_nvme = std::fs::read_to_string(&profile).unwrap().replacen(
        "[vm]\n",
        "[vm]\ndisk_bus = \"nvme\"\n",
        1,
    );
    std::fs::write(&profile, on_nvme).unwrap();
    let out = scratch.install(&profile, &[]).output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("boot check passed"), "{stdout}");

    let verify = std::fs::read_to_string(scratch.run_dir().join("verify/serial.log")).unwrap();
    assert!(
        verify.contains("tiny-os: logged this boot in /var/log/boots on /dev/nvme0n1p1"),
        "the installed system did not write to its disk:\n{verify}"
    );
    let parts = mbr_partitions(&scratch.disk());
    let (_, _, start, sectors) = parts[0];
    let read = |path: &str| read_from_partition(&scratch.disk(), start, sectors, path);
    assert_eq!(read("/etc/hostname").trim(), "tiny");
    assert_eq!(
        read("/var/log/boots"),
        "",
        "the boot check wrote to the disk"
    );
    assert!(scratch.qemu_pids().is_empty(), "QEMU left running");
}

/// The tiny fixture's profile `name` (TCG, its answer file) with `steps` after it.
fn answered_profile(scratch: &Scratch, name: &str, steps: &str) -> std::path::PathBuf {
    let rest = format!(
        r#"
[vars]
hostname = "tiny"
[[files]]
name = "answers.sh"
template = "{template}"
{steps}"#,
        template = fixture("answers.sh.j2").display(),
    );
    scratch.tiny_profile(name, &rest)
}

/// Starts a fixture install with `steps` and `--on-failure pause`; returns the running
/// foreground, its run directory and `events.jsonl` once the run has paused.
fn install_until_paused(
    scratch: &Scratch,
    steps: &str,
) -> (std::process::Child, std::path::PathBuf, String) {
    let profile = answered_profile(scratch, "paused.toml", steps);
    let child = scratch
        .install(&profile, &["--on-failure", "pause"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (run, events) = wait_for("the pause", Duration::from_secs(900), || {
        let run = std::fs::read_dir(scratch.runs())
            .ok()?
            .flatten()
            .next()?
            .path();
        let events = std::fs::read_to_string(run.join("events.jsonl")).ok()?;
        events.contains("\"paused\"").then_some((run, events))
    });
    (child, run, events)
}

/// `ferry resume` of the paused run in `run`.
fn resume(scratch: &Scratch, run: &std::path::Path) {
    let id = run.file_name().unwrap().to_str().unwrap();
    let resumed = ferry()
        .args(["resume", id, "--runs-dir"])
        .arg(scratch.runs())
        .output()
        .unwrap();
    assert!(resumed.status.success(), "{:?}", text(&resumed));
}

/// A profile like tiny.toml whose first step waits (as long as a loaded host needs) for the
/// installer's question, and whose second step waits `timeout` for text that never comes: that
/// timeout starts only once the guest is up, so boot speed never decides the outcome.
fn never_matching_profile(scratch: &Scratch, timeout: &str) -> std::path::PathBuf {
    let steps = format!(
        r#"
[[steps]]
name = "the installer's question"
expect = "[yes/no]: "
timeout = "15m"
[[steps]]
name = "wait for the impossible"
expect = "this text never appears"
timeout = "{timeout}"
"#
    );
    answered_profile(scratch, "stuck.toml", &steps)
}

#[test]
fn step_that_never_matches_times_out_with_the_screen() {
    let scratch = Scratch::new();
    let profile = never_matching_profile(&scratch, "20s");
    let mut child = scratch
        .install(&profile, &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // While the installer waits at its question (its answers fetched), `ss` shows no
    // listening TCP socket of ferry's supervisor: the answers come through a unix socket.
    let pid = wait_for("the installer's question", Duration::from_secs(900), || {
        let run = std::fs::read_dir(scratch.runs()).ok()?.flatten().next()?;
        let serial = std::fs::read_to_string(run.path().join("serial.log")).ok()?;
        serial
            .contains("[yes/no]:")
            .then(|| supervisor_pid(&scratch))?
    });
    let ss = std::process::Command::new("ss")
        .args(["-ltnpH"])
        .output()
        .unwrap();
    let listening: Vec<String> = String::from_utf8_lossy(&ss.stdout)
        .lines()
        .filter(|l| l.contains(&format!("pid={pid},")))
        .map(str::to_string)
        .collect();
    assert!(listening.is_empty(), "ferry listens on TCP: {listening:?}");

    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(6), "{stderr}");
    assert!(
        stderr.contains("step 'wait for the impossible'"),
        "{stderr}"
    );
    assert!(stderr.contains("`this text never appears`"), "{stderr}");
    assert!(
        stderr.contains("lines of the screen:\n  | ")
            && stderr.contains("\n  | tiny-installer: starting\n"),
        "{stderr}"
    );
    assert!(
        stderr.contains("[yes/no]:"),
        "the screen should show the installer's question:\n{stderr}"
    );
    assert!(
        stderr.contains(&scratch.run_dir().display().to_string()),
        "{stderr}"
    );
    assert!(
        scratch.qemu_pids().is_empty(),
        "QEMU left running after the failure"
    );
}

#[test]
fn qemu_dies_with_ferry_on_sigkill() {
    let scratch = Scratch::new();
    let profile = never_matching_profile(&scratch, "15m");
    let mut child = scratch.install(&profile, &["--quiet"]).spawn().unwrap();
    // Wait until the installer is running inside QEMU (as long as a loaded host needs: the
    // first step waits up to 15 minutes, so QEMU is still there).
    wait_for("the installer's question", Duration::from_secs(900), || {
        let run = std::fs::read_dir(scratch.runs()).ok()?.flatten().next()?;
        let serial = std::fs::read_to_string(run.path().join("serial.log")).ok()?;
        serial.contains("[yes/no]:").then_some(())
    });
    assert!(!scratch.qemu_pids().is_empty(), "QEMU should be running");
    // SIGKILL (no handler of ferry's runs) to every ferry process of the run: the foreground
    // and the supervisor (QEMU's parent).
    let supervisor = supervisor_pid(&scratch).expect("the supervisor's pid in status.json");
    assert_ne!(supervisor, child.id());
    child.kill().unwrap();
    child.wait().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(supervisor as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // The kernel kills QEMU at once (PR_SET_PDEATHSIG); the step's 15 minutes have not passed
    // yet, so nothing but ferry's death can have ended it.
    wait_for("QEMU ending with ferry", Duration::from_secs(120), || {
        scratch.qemu_pids().is_empty().then_some(())
    });
}

#[test]
fn accel_auto_ends_under_tcg_and_says_why() {
    let scratch = Scratch::new();
    let profile = never_matching_profile(&scratch, "5s");
    let auto = std::fs::read_to_string(&profile)
        .unwrap()
        .replace("accel = \"tcg\"", "accel = \"auto\"");
    std::fs::write(&profile, auto).unwrap();
    // This test's own KVM verdict: nothing recorded yet.
    let verdict_file = scratch.dir.path().join("kvm.json");
    let install = || {
        let output = scratch
            .install(&profile, &[])
            .env("FERRY_KVM_VERDICT", &verdict_file)
            .output()
            .unwrap();
        let mut runs: Vec<_> = std::fs::read_dir(scratch.runs())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        runs.sort();
        let run = runs.pop().unwrap();
        let plan: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run.join("plan.json")).unwrap()).unwrap();
        (text(&output).1, plan, run)
    };
    let recorded = || -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(&verdict_file).unwrap()).unwrap()
    };
    let kvm_opens = kvm_opens();
    let (stderr, plan, run) = install();
    let mut checked = vec![(stderr, run)];
    if !kvm_opens {
        assert_eq!(plan["accel"]["first"], "tcg");
        let reason = plan["accel"]["reason"].as_str().unwrap();
        assert!(reason.contains("/dev/kvm cannot be opened"), "{reason}");
    } else if plan["accel"]["first"] == "kvm" {
        // The probe guest answered under KVM (this machine's KVM does now and then): the
        // installer either runs under KVM or stays silent there, and then the boot says so
        // once, goes on under TCG and records KVM as unusable.
        let fell_back = checked[0].0.contains("going on under TCG");
        assert_eq!(recorded()["usable"], !fell_back, "{}", checked[0].0);
        if !fell_back {
            return;
        }
    } else {
        // This machine's /dev/kvm opens but hangs guests: the plan probed before the first
        // boot and the installer never started under KVM.
        assert_eq!(plan["accel"]["first"], "tcg", "{}", plan["accel"]);
        let reason = plan["accel"]["reason"].as_str().unwrap();
        assert!(reason.contains("KVM ruled out for this boot"), "{reason}");
        assert!(!checked[0].0.contains("KVM"), "{}", checked[0].0);

        // A verdict that says KVM works while it does not: the boot notices, says so in one
        // line without QEMU's own words, and records what it found for the next install.
        let mut wrong = recorded();
        wrong["usable"] = true.into();
        std::fs::write(&verdict_file, wrong.to_string()).unwrap();
        let (stderr, plan, run) = install();
        assert_eq!(plan["accel"]["first"], "kvm", "{}", plan["accel"]);
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("going on under TCG"))
            .collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(
            lines[0].contains("under KVM"),
            "the reason is given: {}",
            lines[0]
        );
        assert!(!stderr.contains("Assertion"), "{stderr}");
        assert_eq!(recorded()["usable"], false);
        checked.push((stderr, run));
    }
    for (stderr, run) in &checked {
        // Under TCG the installer reached its question, then the second step timed out.
        assert!(stderr.contains("[yes/no]:"), "{stderr}");
        assert!(
            stderr.contains("step 'wait for the impossible'"),
            "{stderr}"
        );
        let args = std::fs::read_to_string(run.join("qemu.args")).unwrap();
        assert!(args.contains("-accel tcg"), "{args}");
    }
}

#[test]
fn profile_errors_point_at_the_file_position() {
    let scratch = Scratch::new();
    let profile = scratch.dir.path().join("bad.toml");
    std::fs::write(
        &profile,
        "[image]\npath = \"x.iso\"\n[vm]\naccel = \"fast\"\n",
    )
    .unwrap();
    let output = scratch.install(&profile, &[]).output().unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr.contains(&format!(
            "{}:4:9: unknown variant `fast`, expected one of `auto`, `kvm`, `tcg`",
            profile.display()
        )),
        "{stderr}"
    );
    assert!(
        !scratch.disk().exists(),
        "nothing may be created for an invalid profile"
    );
}

#[test]
fn missing_template_variable_fails_before_anything_runs() {
    let scratch = Scratch::new();
    let profile = never_matching_profile(&scratch, "5s");
    let text_before = std::fs::read_to_string(&profile).unwrap();
    std::fs::write(
        &profile,
        text_before.replace("hostname = \"tiny\"", "host_name = \"tiny\""),
    )
    .unwrap();
    let output = scratch.install(&profile, &[]).output().unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("answers.sh.j2 (template line 3): undefined variable `vars.hostname`"),
        "{stderr}"
    );
    assert!(
        !scratch.disk().exists() && !scratch.runs().exists(),
        "nothing may be created"
    );
}

#[test]
fn inspect_lists_the_menu_entries() {
    let output = ferry()
        .arg("inspect")
        .arg(fixture("build/tiny-isolinux.iso"))
        .arg("--json")
        .output()
        .unwrap();
    assert!(output.status.success());
    let inspection: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(inspection["schema_version"], 1, "{inspection}");
    assert!(inspection["volume_id"].is_string(), "{inspection}");
    let entries = inspection["entries"].as_array().unwrap();
    let default = entries.iter().find(|e| e["is_default"] == true).unwrap();
    assert_eq!(default["kernel"], "/boot/vmlinuz");
    assert!(
        !default["cmdline"]
            .as_str()
            .unwrap()
            .contains("console=ttyS0")
    );
    assert!(
        entries
            .iter()
            .any(|e| e["path"].as_array().is_some_and(|p| p.len() >= 2)),
        "nested submenu entries"
    );
}

/// Socket inodes of the listening TCP sockets (IPv4 and IPv6) on this host.
fn listening_tcp_inodes() -> Vec<String> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // st 0A = LISTEN; the tenth field is the socket's inode.
            if fields.get(3) == Some(&"0A") {
                inodes.extend(fields.get(9).map(|i| i.to_string()));
            }
        }
    }
    inodes
}

/// Where each of `pid`'s descriptors points (`socket:[INODE]`, a path, …).
fn fd_targets(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .map(|t| t.display().to_string())
        .collect()
}

#[test]
fn answers_reach_the_guest_with_no_tcp_port_and_qemu_holds_no_lock() {
    let scratch = Scratch::new();
    let mut child = scratch
        .install(&fixture("tiny.toml"), &["--quiet"])
        .spawn()
        .unwrap();
    // While the installer runs (after it fetched its answers): the processes of this run.
    let qemu = wait_for("the installer's answers", Duration::from_secs(120), || {
        let run = std::fs::read_dir(scratch.runs()).ok()?.flatten().next()?;
        let serial = std::fs::read_to_string(run.path().join("serial.log")).ok()?;
        serial
            .contains("tiny-installer: answers:")
            .then(|| scratch.qemu_pids())
    });
    assert_eq!(qemu.len(), 1, "one QEMU: {qemu:?}");
    let supervisor = supervisor_pid(&scratch).expect("the supervisor's pid");
    let listening = listening_tcp_inodes();
    for pid in [child.id(), supervisor, qemu[0]] {
        let fds = fd_targets(pid);
        assert!(!fds.is_empty(), "no descriptors read for {pid}");
        for inode in &listening {
            assert!(
                !fds.contains(&format!("socket:[{inode}]")),
                "process {pid} listens on TCP (socket {inode})"
            );
        }
    }
    // The disk lock is the supervisor's; QEMU and its helpers never hold a copy.
    let lock = fd_targets(supervisor)
        .into_iter()
        .find(|t| t.ends_with(".lock"))
        .expect("the supervisor holds the disk lock");
    assert!(
        !fd_targets(qemu[0]).contains(&lock),
        "QEMU inherited {lock}"
    );
    let status = child.wait().unwrap();
    assert!(status.success(), "the install failed");
    let run = scratch.run_dir();
    let log = std::fs::read_to_string(run.join("ferry.log")).unwrap();
    assert!(log.contains("served answer file"), "{log}");
    assert!(!run.join("answers.sock").exists(), "socket left behind");
    let args = std::fs::read_to_string(run.join("qemu.args")).unwrap();
    assert!(args.contains("guestfwd=tcp:10.0.2.100:80-cmd:"), "{args}");
}

#[test]
fn qemu_killed_during_finish_fails_the_run_with_the_signal() {
    // The installer stops at its confirmation prompt: the finish stage then waits for a
    // power-off that only a kill can end.
    let steps = r#"
[[steps]]
name = "the prompt"
expect = "[yes/no]: "
[finish]
poweroff_timeout = "15m"
"#;
    let (code, all) = kill_qemu_once(
        steps,
        "waiting for the installer to power the VM off",
        "serial.log",
    );
    assert_ne!(code, Some(0), "{all}");
    assert!(
        all.contains("the guest did not power off: QEMU was killed by signal SIGKILL"),
        "{all}"
    );
    assert!(
        !all.contains("boot check"),
        "went on to the boot check:\n{all}"
    );
}

#[test]
fn qemu_killed_during_drive_fails_the_step_with_the_signal() {
    // The second step waits far longer than the test: only the kill can end it.
    let steps = r#"
[[steps]]
name = "the prompt"
expect = "[yes/no]: "
[[steps]]
name = "never"
expect = "this text never appears"
timeout = "15m"
"#;
    let (code, all) = kill_qemu_once(steps, "never: waiting for", "serial.log");
    assert_eq!(code, Some(6), "{all}");
    assert!(
        all.contains(
            "step 'never': the console closed (QEMU was killed by signal SIGKILL) before a match"
        ),
        "{all}"
    );
}

#[test]
fn qemu_killed_during_verify_fails_the_boot_check_with_the_signal() {
    // A real install; the boot check then waits far longer than the test for a prompt the
    // installed system never prints.
    let steps = tiny_install_steps("15m")
        + r#"[finish]
poweroff_timeout = "15m"
verify = { expect = "this text never appears", timeout = "15m" }
"#;
    let (code, all) = kill_qemu_once(&steps, "alone, waiting for", "verify/serial.log");
    assert_eq!(code, Some(7), "{all}");
    assert!(
        all.contains(
            "step 'boot check': the console closed (QEMU was killed by signal SIGKILL) before a match"
        ),
        "{all}"
    );
}

/// Installs the tiny fixture with `steps`, SIGKILLs QEMU once `events.jsonl` holds `event` and
/// the guest has printed on the console recorded in `serial` (the one QEMU then running is
/// past its start-up), and returns ferry's exit code and output.
fn kill_qemu_once(steps: &str, event: &str, serial: &str) -> (Option<i32>, String) {
    let scratch = Scratch::new();
    let profile = answered_profile(&scratch, "killed.toml", steps);
    let child = scratch
        .install(&profile, &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let qemu = wait_for(event, Duration::from_secs(900), || {
        let run = std::fs::read_dir(scratch.runs()).ok()?.flatten().next()?;
        let events = std::fs::read_to_string(run.path().join("events.jsonl")).ok()?;
        let printed = std::fs::metadata(run.path().join(serial)).ok()?.len() > 0;
        let qemu = scratch.qemu_pids();
        (events.contains(event) && printed && qemu.len() == 1).then(|| qemu[0])
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(qemu as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let output = child.wait_with_output().unwrap();
    let (stdout, stderr) = text(&output);
    (output.status.code(), format!("{stdout}\n{stderr}"))
}

/// A 1 MiB tmpfs, unmounted when dropped.
struct TinyFs(tempfile::TempDir);

impl TinyFs {
    fn mount() -> Option<TinyFs> {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(TinyFs(dir))
    }
}

impl Drop for TinyFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

#[test]
fn a_full_runs_directory_fails_the_run_naming_the_path() {
    let Some(fs) = TinyFs::mount() else {
        println!("SKIPPED: cannot mount a tmpfs (not root?)");
        return;
    };
    let scratch = Scratch::new();
    let runs = fs.0.path().join("runs");
    let output = ferry()
        .arg("install")
        .arg(fixture("tiny.toml"))
        .arg("--disk")
        .arg(scratch.disk())
        .args(["--size", "2G", "--yes", "--quiet"])
        .arg("--runs-dir")
        .arg(&runs)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(!output.status.success(), "{stdout}\n{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("No space left on device"))
        .unwrap_or_else(|| panic!("no 'No space left' line:\n{stdout}\n{stderr}"));
    assert!(
        line.contains(&runs.display().to_string()),
        "the path is not named: {line}"
    );
}

#[test]
fn a_guest_powering_off_during_a_paused_step_still_finishes() {
    // The installer powers off right after it completes, while the last step waits for text
    // that never comes: the step fails on the closed console (saying the guest powered off),
    // the run pauses, and once resumed the finish stage still sees the guest's power-off.
    let steps = r#"
[[steps]]
name = "the question"
expect = "[yes/no]: "
timeout = "15m"
send = "yes\n"
[[steps]]
name = "installation"
expect = "tiny-installer: installation complete"
timeout = "15m"
[[steps]]
name = "after the end"
expect = "this text never appears"
timeout = "15m"
[finish]
verify = { enabled = false }
"#;
    let scratch = Scratch::new();
    let (child, run, events) = install_until_paused(&scratch, steps);
    assert!(
        events.contains("the console closed (the guest powered off) before a match"),
        "{events}"
    );
    resume(&scratch, &run);
    let output = child.wait_with_output().unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("installed onto"), "{stdout}");
}

#[test]
fn a_console_record_that_cannot_be_written_is_named_in_the_summary() {
    // The run pauses before the installer is answered; the test then makes the boot check's
    // serial.log a link to /dev/full (every write: "No space left on device"). The install
    // and the boot check go on; the summary says what was not recorded.
    let steps = r#"
[[steps]]
name = "the question"
expect = "[yes/no]: "
timeout = "15m"
[[steps]]
name = "pause"
expect = "this text never appears"
timeout = "1s"
[[steps]]
name = "answer"
send = "yes\n"
[[steps]]
name = "installation"
expect = "tiny-installer: installation complete"
timeout = "15m"
[finish]
verify = { expect = "/login: ?($|\\[)/", timeout = "15m" }
"#;
    let scratch = Scratch::new();
    let (child, run, _) = install_until_paused(&scratch, steps);
    std::fs::create_dir_all(run.join("verify")).unwrap();
    std::os::unix::fs::symlink("/dev/full", run.join("verify/serial.log")).unwrap();
    resume(&scratch, &run);

    let output = child.wait_with_output().unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let lost = format!(
        "cannot write {}: No space left on device",
        run.join("verify/serial.log").display()
    );
    assert!(stdout.contains("boot check passed"), "{stdout}");
    assert!(stdout.contains(&format!("  warning: {lost}")), "{stdout}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    let records_lost = summary["records_lost"].as_array().unwrap();
    assert!(
        records_lost
            .iter()
            .any(|l| l.as_str().is_some_and(|l| l.contains(&lost))),
        "{summary}"
    );
}

#[test]
fn a_confirmation_without_a_terminal_says_so_and_names_yes() {
    let scratch = Scratch::new();
    let disk = scratch.disk();
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    let output = ferry()
        .arg("install")
        .arg(fixture("tiny.toml"))
        .arg("--disk")
        .arg(&disk)
        .args(["--accel", "tcg", "--runs-dir"])
        .arg(scratch.runs())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(29), "{stdout}\n{stderr}");
    assert_eq!(
        stderr,
        format!(
            "ferry: error: {} must be confirmed by typing its name, but stdin is not a terminal \
             to ask on; nothing was written (pass --yes to confirm without a terminal)\n",
            disk.display()
        )
    );
    assert!(!scratch.runs().exists(), "no run was started");
}
