//! Operations: the supervisor survives the terminal, attach from another terminal, pause on
//! failure and resume, Ctrl-C, support bundles. Terminals are tmux sessions (real ptys) on a
//! private tmux server per test.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::fetch::{Gate, Reply, Server, digest};
use crate::support::*;

/// A private tmux server (its own socket): killed with everything in it when dropped.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    fn new(scratch: &Scratch) -> Tmux {
        let tmux = Tmux {
            socket: scratch.dir.path().join("tmux.sock"),
        };
        // The server exits with its last session: keep one that outlives the test's terminals.
        tmux.start("keep", "sleep 600");
        tmux
    }
    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-S").arg(&self.socket).stdin(Stdio::null());
        c
    }
    /// Runs `shell` (a `sh -c` command line) in a new 120x40 session named `name`.
    fn start(&self, name: &str, shell: &str) {
        let status = self
            .cmd()
            .args([
                "new-session",
                "-d",
                "-x",
                "120",
                "-y",
                "40",
                "-s",
                name,
                shell,
            ])
            .status()
            .expect("tmux is installed (scripts/install-deps.sh)");
        assert!(status.success());
    }
    fn screen(&self, name: &str) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-J", "-S", "-300", "-t", name])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    fn keys(&self, name: &str, keys: &[&str]) {
        assert!(
            self.cmd()
                .args(["send-keys", "-t", name])
                .args(keys)
                .status()
                .unwrap()
                .success()
        );
    }
    /// Closes the terminal: the session's processes get SIGHUP.
    fn kill(&self, name: &str) {
        assert!(
            self.cmd()
                .args(["kill-session", "-t", name])
                .status()
                .unwrap()
                .success()
        );
    }
    /// Waits for `text` on the terminal; on a timeout the panic shows the screen as it was.
    fn wait_screen(&self, name: &str, text: &str, timeout: Duration) -> String {
        wait_until(timeout, || {
            let screen = self.screen(name);
            match screen.contains(text) {
                true => Ok(screen),
                false => Err(format!(
                    "{text:?} on terminal {name}; the screen:\n{screen}"
                )),
            }
        })
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").stderr(Stdio::null()).status();
    }
}

fn sh_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

const SECRET: &str = "Sup3rS3cretPw";

/// A tiny-installer profile (TCG, no boot check: these tests are about the run, not the disk)
/// whose hostname is a secret, with `steps` appended.
fn profile(scratch: &Scratch, steps: &str) -> PathBuf {
    let rest = format!(
        r#"
[secrets]
root_password = "{SECRET}"
[[files]]
name = "answers.sh"
content = "DISK={{{{ disk.guest_path }}}}\nHOSTNAME={{{{ secrets.root_password }}}}\n"
[defaults]
fail = ["tiny-installer: ERROR"]
[finish]
verify = {{ enabled = false }}
{steps}
"#
    );
    scratch.tiny_profile("ops.toml", &rest)
}

fn run_dir_of(scratch: &Scratch) -> PathBuf {
    wait_for("the run directory", Duration::from_secs(20), || {
        std::fs::read_dir(scratch.runs())
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.is_dir() && p.join("status.json").is_file())
    })
}

fn json_file(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

fn serial_contains(run: &Path, text: &str) -> bool {
    std::fs::read_to_string(run.join("serial.log")).is_ok_and(|s| s.contains(text))
}

/// Attaches to run `id` on the terminal "operator" (read-write) and waits for the installer's
/// question there.
fn attach_at_the_question(tmux: &Tmux, scratch: &Scratch, id: &str) {
    let attach = format!(
        "{} attach {id} --runs-dir {}; echo attach-ended-$?; sleep 120",
        sh_quote(Path::new(env!("CARGO_BIN_EXE_ferry"))),
        sh_quote(&scratch.runs())
    );
    tmux.start("operator", &attach);
    tmux.wait_screen("operator", "[yes/no]:", Duration::from_secs(60));
}

/// The foreground's command line for a terminal.
fn install_line(scratch: &Scratch, profile: &Path, extra: &str) -> String {
    format!(
        "{} install {} --disk {} --size 1G --yes --runs-dir {} {extra}",
        sh_quote(Path::new(env!("CARGO_BIN_EXE_ferry"))),
        sh_quote(profile),
        sh_quote(&scratch.disk()),
        sh_quote(&scratch.runs()),
    )
}

fn ferry_in(scratch: &Scratch, args: &[&str]) -> std::process::Output {
    ferry()
        .args(args)
        .arg("--runs-dir")
        .arg(scratch.runs())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn install_survives_its_terminal_and_another_terminal_attaches() {
    let scratch = Scratch::new();
    let tmux = Tmux::new(&scratch);
    let profile = profile(&scratch, &tiny_install_steps("2m"));
    tmux.start("install", &install_line(&scratch, &profile, ""));
    let run = run_dir_of(&scratch);
    let id = run.file_name().unwrap().to_string_lossy().into_owned();
    tmux.wait_screen("install", "ferry: boot", Duration::from_secs(20));
    // Close the terminal the install was started from.
    tmux.kill("install");

    // Attach from a second terminal: the live console shows up, Ctrl-] returns.
    let attach = format!(
        "cd {d}; stty -g > before; {ferry} attach {id} --read-only --runs-dir {runs}; echo attach-ended-$?; stty -g > after; sleep 120",
        d = sh_quote(scratch.dir.path()),
        ferry = sh_quote(Path::new(env!("CARGO_BIN_EXE_ferry"))),
        runs = sh_quote(&scratch.runs())
    );
    tmux.start("viewer", &attach);
    tmux.wait_screen("viewer", "attached to", Duration::from_secs(60));
    let live = tmux.wait_screen("viewer", "tiny-installer: ", Duration::from_secs(60));
    assert!(live.contains("Ctrl-] detaches"), "{live}");

    // status --json names the current step.
    let out = ferry_in(&scratch, &["status", &id, "--json"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        status["step"]
            .as_str()
            .unwrap()
            .contains("confirm the disk")
            || status["step"].as_str().unwrap().contains("installation"),
        "{status}"
    );
    assert!(
        matches!(status["state"].as_str(), Some("running")),
        "{status}"
    );
    assert!(
        status["console"].as_array().is_some_and(|l| !l.is_empty()),
        "{status}"
    );

    tmux.keys("viewer", &["C-]"]);
    let after = tmux.wait_screen("viewer", "attach-ended-0", Duration::from_secs(60));
    assert!(after.contains("detached from"), "{after}");
    let stty = |f: &str| std::fs::read_to_string(scratch.dir.path().join(f)).unwrap();
    wait_for("stty after attach", Duration::from_secs(30), || {
        (!stty("after").is_empty()).then_some(())
    });
    assert_eq!(
        stty("before"),
        stty("after"),
        "attach left the terminal changed"
    );

    // The install completes without its terminal.
    let summary = wait_for("summary.json", Duration::from_secs(120), || {
        json_file(&run.join("summary.json"))
    });
    assert_eq!(summary["ok"], true, "{summary}");
    assert_eq!(summary["state"], "finished");
    assert!(serial_contains(&run, "installation complete"));
    wait_for("QEMU gone", Duration::from_secs(30), || {
        scratch.qemu_pids().is_empty().then_some(())
    });
    let list = ferry_in(&scratch, &["runs"]);
    let (stdout, _) = text(&list);
    assert!(
        stdout.contains(&id) && stdout.contains("finished"),
        "{stdout}"
    );
}

#[test]
fn paused_failure_takes_typing_and_resumes_and_bundles_without_secrets() {
    let scratch = Scratch::new();
    let tmux = Tmux::new(&scratch);
    // The first step waits for something that never comes while the installer sits at its
    // question; the operator answers it by hand.
    let steps = r#"
[[steps]]
name = "wait for the impossible"
expect = "this text never appears"
timeout = "20s"
[[steps]]
name = "installation"
expect = "tiny-installer: installation complete"
timeout = "2m"
"#;
    let profile = profile(&scratch, steps);
    let mut foreground = scratch
        .install(&profile, &["--on-failure", "pause"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let run = run_dir_of(&scratch);
    let id = run.file_name().unwrap().to_string_lossy().into_owned();
    wait_for("the run to pause", Duration::from_secs(90), || {
        let s = json_file(&run.join("status.json"))?;
        (s["state"] == "paused").then_some(())
    });
    assert!(
        !scratch.qemu_pids().is_empty(),
        "the VM keeps running while paused"
    );
    // The VM goes on while paused: the question comes whenever the guest gets there (under a
    // loaded host that can be after the step's 20 s).
    wait_for("the installer's question", Duration::from_secs(120), || {
        serial_contains(&run, "[yes/no]: ").then_some(())
    });
    // Resuming needs the run to be paused; a second `abort` later would be refused.
    attach_at_the_question(&tmux, &scratch, &id);
    tmux.keys("operator", &["yes", "Enter"]);
    wait_for("the installer to go on", Duration::from_secs(30), || {
        serial_contains(&run, "tiny-installer: partitioning").then_some(())
    });
    tmux.wait_screen("operator", "partitioning", Duration::from_secs(60));
    tmux.keys("operator", &["C-]"]);
    tmux.wait_screen("operator", "attach-ended-0", Duration::from_secs(60));

    let out = ferry_in(&scratch, &["resume", &id]);
    assert!(out.status.success(), "{:?}", text(&out));
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = foreground.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "install did not finish after resume"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = foreground.wait_with_output().unwrap();
    let (stdout, stderr) = text(&output);
    assert!(status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains(&format!("ferry attach {id}")), "{stderr}");
    assert!(!stderr.contains(SECRET), "{stderr}");
    // A second resume is refused: the run is no longer live.
    assert_eq!(ferry_in(&scratch, &["resume", &id]).status.code(), Some(9));

    // The secret went to the guest (it is the hostname the installer prints), redacted as
    // it was recorded ...
    assert!(serial_contains(&run, "HOSTNAME=[redacted]"));
    assert!(!serial_contains(&run, SECRET));
    // ... but appears nowhere in the bundle.
    let bundle = scratch.dir.path().join("bundle.tar.gz");
    let out = ferry_in(&scratch, &["bundle", &id, "-o", bundle.to_str().unwrap()]);
    assert!(out.status.success(), "{:?}", text(&out));
    let unpacked = scratch.dir.path().join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    assert!(
        Command::new("tar")
            .arg("xzf")
            .arg(&bundle)
            .arg("-C")
            .arg(&unpacked)
            .status()
            .unwrap()
            .success()
    );
    let mut files = Vec::new();
    let mut stack = vec![unpacked.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for want in [
        "plan.json",
        "serial.log",
        "transcript.cast",
        "ferry.log",
        "qemu.args",
        "facts.json",
        "versions.txt",
        "screen-drive.png",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from the bundle: {names:?}"
        );
    }
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        assert!(
            !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "the secret is in {}",
            file.display()
        );
    }
    let png = files
        .iter()
        .find(|f| f.ends_with(Path::new(&id).join("screen-drive.png")))
        .unwrap();
    assert_eq!(&std::fs::read(png).unwrap()[..8], b"\x89PNG\r\n\x1a\n");
    assert!(scratch.qemu_pids().is_empty());
}

/// Starts a stuck install on a terminal (recording `stty -g` before and after and the exit
/// code), waits for the installer's question, and presses Ctrl-C `times` times.
fn interrupt(times: usize, grace: &str) -> (Scratch, PathBuf, Duration) {
    let scratch = Scratch::new();
    let tmux = Tmux::new(&scratch);
    let steps = r#"
[[steps]]
name = "wait for the impossible"
expect = "this text never appears"
timeout = "3m"
"#;
    let profile = profile(&scratch, steps);
    let dir = scratch.dir.path();
    let line = format!(
        "trap true INT; cd {d}; stty -g > before; {install}; echo $? > rc; stty -g > after; sleep 120",
        d = sh_quote(dir),
        install = install_line(&scratch, &profile, &format!("--stop-grace {grace}")),
    );
    tmux.start("install", &line);
    let run = run_dir_of(&scratch);
    wait_for("the installer's question", Duration::from_secs(60), || {
        serial_contains(&run, "[yes/no]: ").then_some(())
    });
    assert!(!scratch.qemu_pids().is_empty());
    // The status line is up when Ctrl-C comes.
    tmux.wait_screen(
        "install",
        "step 1/1 'wait for the impossible'",
        Duration::from_secs(60),
    );
    let pressed = Instant::now();
    for _ in 0..times {
        tmux.keys("install", &["C-c"]);
        std::thread::sleep(Duration::from_millis(300));
    }
    wait_for("ferry to exit", Duration::from_secs(40), || {
        std::fs::read_to_string(dir.join("after"))
            .ok()
            .filter(|s| !s.is_empty())
    });
    let took = pressed.elapsed();
    let rc = std::fs::read_to_string(dir.join("rc")).unwrap();
    assert_eq!(rc.trim(), "130", "{}", tmux.screen("install"));
    let before = std::fs::read_to_string(dir.join("before")).unwrap();
    let after = std::fs::read_to_string(dir.join("after")).unwrap();
    assert_eq!(before, after, "terminal settings changed");
    // ... and gone afterwards: the interruption's error is the last line ferry printed.
    let screen = tmux.screen("install");
    assert!(
        !screen.contains("· step "),
        "a status line was left: {screen}"
    );
    let last = screen
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or_default();
    assert!(last.starts_with("ferry: error: "), "{screen}");
    let summary = json_file(&run.join("summary.json")).unwrap();
    assert_eq!(summary["state"], "interrupted", "{summary}");
    assert!(scratch.qemu_pids().is_empty(), "QEMU outlived ferry");
    let log = std::fs::read_to_string(run.join("ferry.log")).unwrap();
    assert!(
        log.contains("ACPI power-down requested (QMP system_powerdown)"),
        "{log}"
    );
    drop(tmux);
    (scratch, run, took)
}

#[test]
fn ctrl_c_powers_down_then_quits_after_the_grace_period() {
    // The tiny installer runs no acpid: it ignores the power button, so QEMU is stopped when
    // the grace period ends.
    let (_scratch, run, took) = interrupt(1, "4s");
    assert!(
        took >= Duration::from_secs(4),
        "QEMU stopped before the grace period: {took:?}"
    );
    let log = std::fs::read_to_string(run.join("ferry.log")).unwrap();
    assert!(log.contains("grace period over"), "{log}");
}

#[test]
fn second_ctrl_c_quits_at_once() {
    // ferry exits within `interrupt`'s 40 s bound: before the 60 s grace period is over.
    let (_scratch, run, _) = interrupt(2, "60s");
    let log = std::fs::read_to_string(run.join("ferry.log")).unwrap();
    assert!(log.contains("interrupted again"), "{log}");
}

#[test]
fn manual_boot_puts_the_console_on_the_terminal_until_power_off() {
    let scratch = Scratch::new();
    let tmux = Tmux::new(&scratch);
    let dir = scratch.dir.path();
    let line = format!(
        "cd {d}; stty -g > before; {ferry} boot {iso} --entry rescue --disk {disk} --size 1G --yes \
         {guest} --runs-dir {runs}; echo $? > rc; stty -g > after; sleep 120",
        d = sh_quote(dir),
        ferry = sh_quote(Path::new(env!("CARGO_BIN_EXE_ferry"))),
        iso = sh_quote(&fixture("build/tiny-isolinux.iso")),
        disk = sh_quote(&scratch.disk()),
        guest = TCG_ONE_VCPU.join(" "),
        runs = sh_quote(&scratch.runs()),
    );
    tmux.start("boot", &line);
    tmux.wait_screen(
        "boot",
        "tiny-installer: rescue shell",
        Duration::from_secs(60),
    );
    tmux.wait_screen("boot", "/ # ", Duration::from_secs(60));
    tmux.keys("boot", &["echo hello-$((6*7))", "Enter"]);
    tmux.wait_screen("boot", "hello-42", Duration::from_secs(60));
    tmux.keys("boot", &["poweroff -f", "Enter"]);
    let rc = wait_for("ferry boot to end", Duration::from_secs(30), || {
        std::fs::read_to_string(dir.join("after"))
            .ok()
            .filter(|s| !s.is_empty())?;
        std::fs::read_to_string(dir.join("rc")).ok()
    });
    assert_eq!(rc.trim(), "0", "{}", tmux.screen("boot"));
    assert_eq!(
        std::fs::read_to_string(dir.join("before")).unwrap(),
        std::fs::read_to_string(dir.join("after")).unwrap(),
        "terminal settings not restored"
    );
    let run = run_dir_of(&scratch);
    assert!(serial_contains(&run, "hello-42"));
    assert_eq!(
        json_file(&run.join("summary.json")).unwrap()["state"],
        "finished"
    );
    assert!(scratch.qemu_pids().is_empty());
}

/// The supervisor's command line names only its run directory: the profile, the disk and the
/// options reach it in `request.json` (mode 0600). The supervisor makes the plan once (and
/// once more only after a fetch stage, which this install has not).
#[test]
fn the_supervisor_takes_its_request_from_the_run_directory() {
    use std::os::unix::fs::PermissionsExt;
    let scratch = Scratch::new();
    let profile = profile(&scratch, &tiny_install_steps("2m"));
    let output = scratch.install(&profile, &["--detach"]).output().unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let run = run_dir_of(&scratch);
    let pid = supervisor_pid(&scratch).expect("status.json names the supervisor");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let args: Vec<String> = cmdline
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    assert_eq!(
        args[1..],
        ["supervise".to_string(), run.display().to_string()],
        "{args:?}"
    );
    let disk = scratch.disk().display().to_string();
    assert!(
        !args
            .iter()
            .any(|a| a.contains("ops.toml") || a.contains(&disk)),
        "{args:?}"
    );
    let mode = std::fs::metadata(run.join("request.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let status = wait_for("the install to end", Duration::from_secs(150), || {
        let status = json_file(&run.join("status.json"))?;
        (status["state"] != "running").then_some(status)
    });
    assert_eq!(status["state"], "finished", "{status}");
    let log = std::fs::read_to_string(run.join("ferry.log")).unwrap();
    let plans = log.matches("plan made").count();
    assert_eq!(
        plans, 1,
        "the supervisor plans once when nothing is fetched:\n{log}"
    );
}

/// The run's events, one JSON value each.
fn events(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn has_event(run: &Path, f: impl Fn(&serde_json::Value) -> bool) -> bool {
    events(run).iter().any(f)
}

/// Starts an install of [`profile`] with `steps` in the background, its stderr to `stderr`;
/// returns it with its run directory and the run's id.
fn start(
    scratch: &Scratch,
    steps: &str,
    extra: &[&str],
    stderr: Stdio,
) -> (std::process::Child, PathBuf, String) {
    let child = scratch
        .install(&profile(scratch, steps), extra)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let run = run_dir_of(scratch);
    let id = run.file_name().unwrap().to_string_lossy().into_owned();
    (child, run, id)
}

#[test]
fn nothing_is_typed_after_a_stop() {
    let scratch = Scratch::new();
    // The installer asks again after any answer but yes/no: the second step's prompt shows
    // up during the power-down grace period, when the operator (through `ferry attach`)
    // answers "maybe". The tiny installer ignores the power button, so the guest keeps
    // running for the whole grace period.
    let steps = r#"
[[steps]]
name = "see the question"
expect = "[yes/no]: "
[[steps]]
name = "confirm the disk"
expect = "[yes/no]: "
send = "yes\n"
timeout = "3m"
"#;
    let (foreground, run, id) = start(&scratch, steps, &["--stop-grace", "20s"], Stdio::piped());
    wait_for("the second step to wait", Duration::from_secs(120), || {
        has_event(&run, |e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("[2/2] confirm the disk: waiting"))
        })
        .then_some(())
    });
    let out = ferry_in(&scratch, &["stop", &id]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(
        text(&out).1,
        format!(
            "ferry: run {id}: stopping: the guest was asked to power off (ACPI); QEMU quits \
             after the grace period at the latest\n"
        )
    );
    wait_for("the stop event", Duration::from_secs(10), || {
        has_event(&run, |e| e["stage"] == "stop").then_some(())
    });

    // The question again, while the guest is being powered down.
    let mut console = std::os::unix::net::UnixStream::connect(run.join("control.sock")).unwrap();
    use std::io::Write;
    console.write_all(b"attach\nmaybe\n").unwrap();
    wait_for("the question again", Duration::from_secs(15), || {
        let serial = std::fs::read_to_string(run.join("serial.log")).ok()?;
        (serial.matches("[yes/no]: ").count() >= 2).then_some(())
    });

    let output = foreground.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{:?}", text(&output));
    drop(console);
    let events = events(&run);
    let stop = events.iter().position(|e| e["stage"] == "stop").unwrap();
    for event in &events[stop..] {
        let message = event["message"].as_str().unwrap_or_default();
        assert!(
            !message.contains("sending") && !message.contains("waiting"),
            "after the stop: {event}"
        );
    }
    let transcript = std::fs::read_to_string(run.join("transcript.cast")).unwrap();
    assert!(!transcript.contains(r#""i","yes\n""#), "{transcript}");
    assert!(!serial_contains(&run, "tiny-installer: partitioning"));
    assert!(scratch.qemu_pids().is_empty(), "QEMU outlived ferry");
}

/// The `ferry …` commands quoted in backticks in `text`, in order.
fn hints(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|h| h.starts_with("ferry "))
        .map(String::from)
        .collect()
}

/// Runs a printed hint verbatim in a shell, in the scratch directory, with this build's
/// ferry first on PATH and no `$FERRY_RUNS` (the hint must name the runs directory).
fn paste(scratch: &Scratch, hint: &str) -> std::process::Output {
    let bin = Path::new(env!("CARGO_BIN_EXE_ferry")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new("sh")
        .arg("-c")
        .arg(hint)
        .env("PATH", path)
        .env_remove("FERRY_RUNS")
        .current_dir(scratch.dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn every_hint_a_failing_install_prints_works_when_pasted() {
    let scratch = Scratch::new();
    let steps = r#"
[[steps]]
name = "first look"
expect = "this text never appears"
timeout = "3s"
[[steps]]
name = "second look"
expect = "nor does this"
timeout = "3s"
"#;
    let stderr = scratch.dir.path().join("stderr");
    let (foreground, run, id) = start(
        &scratch,
        steps,
        &["--on-failure", "pause"],
        std::fs::File::create(&stderr).unwrap().into(),
    );
    let printed = || std::fs::read_to_string(&stderr).unwrap_or_default();
    let runs_dir = format!("--runs-dir {}", scratch.runs().display());
    let with_runs_dir = |command: &str| format!("ferry {command} {id} {runs_dir}");

    // The pause: said once, in one piece, with hints naming the runs directory.
    let first = wait_for("the first pause", Duration::from_secs(180), || {
        let text = printed();
        text.contains("the VM keeps running").then_some(text)
    });
    assert_eq!(first.matches("ferry: paused: ").count(), 1, "{first}");
    assert!(
        first.contains(
            "ferry: paused: drive: step 'first look': no match for `this text never appears` within 3s\n"
        ),
        "{first}"
    );
    assert!(
        first.ends_with(&format!(
            "\nthe VM keeps running. Take over with `{}`, then `{}` (continue with the next step) or `{}`\n",
            with_runs_dir("attach"),
            with_runs_dir("resume"),
            with_runs_dir("abort")
        )),
        "{first}"
    );
    assert!(!first.contains("ferry: drive  drive:"), "{first}");

    // Each hint, pasted: attach (stdin at its end detaches at once), resume, then abort at
    // the second pause.
    let out = paste(&scratch, &with_runs_dir("attach"));
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(
        text(&out)
            .1
            .starts_with(&format!("ferry: attached to {id}")),
        "{:?}",
        text(&out)
    );
    let out = paste(&scratch, &with_runs_dir("resume"));
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(
        text(&out).1,
        format!("ferry: run {id} resumed: going on with the next step\n")
    );
    wait_for("the second pause", Duration::from_secs(60), || {
        (printed().matches("ferry: paused: ").count() == 2).then_some(())
    });
    let out = paste(&scratch, &with_runs_dir("abort"));
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(
        text(&out).1,
        format!("ferry: run {id} aborted: QEMU is stopped and the install fails\n")
    );
    let output = foreground.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(6), "{}", printed());
    let all = printed();
    assert!(
        all.contains("ferry: resumed after step 'first look'\n"),
        "{all}"
    );

    // The failure's hint: a support bundle.
    let bundle = with_runs_dir("bundle");
    assert!(all.contains(&format!("`{bundle}`")), "{all}");
    let out = paste(&scratch, &bundle);
    assert!(out.status.success(), "{:?}", text(&out));
    let path = scratch.dir.path().join(text(&out).0.trim_end_matches('\n'));
    assert!(path.is_file(), "{}", path.display());
    // Once written, it is not overwritten unless asked.
    let out = paste(&scratch, &bundle);
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    assert_eq!(
        text(&out).1,
        format!(
            "ferry: error: bundle: ferry-{id}.tar.gz already exists; choose another file with -o, or overwrite it with --force\n"
        )
    );
    assert!(
        paste(&scratch, &format!("{bundle} --force"))
            .status
            .success()
    );

    // `ferry status` of the ended run: how it ended, no stale step, no dead pid.
    let out = paste(&scratch, &with_runs_dir("status"));
    let (stdout, _) = text(&out);
    assert!(stdout.contains("state:    failed (exit 6)\n"), "{stdout}");
    assert!(
        stdout.contains(
            "result:   drive: step 'second look': no match for `nor does this` within 3s\n"
        ),
        "{stdout}"
    );
    assert!(!stdout.contains("pid"), "{stdout}");
    assert!(!stdout.contains("waiting for"), "{stdout}");

    // A failed run keeps no copy of the installer's kernel and initrd.
    assert!(!run.join("kernel").exists() && !run.join("initrd").exists());

    // A detached install's hints, pasted while it runs (attach, status), then as it ends
    // (logs -f follows to the end).
    let waiting = scratch.dir.path().join("waiting.toml");
    std::fs::write(
        &waiting,
        std::fs::read_to_string(scratch.dir.path().join("ops.toml"))
            .unwrap()
            .replace("timeout = \"3s\"", "timeout = \"3m\""),
    )
    .unwrap();
    let detached = scratch.install(&waiting, &["--detach"]).output().unwrap();
    assert!(detached.status.success(), "{:?}", text(&detached));
    let (stdout, stderr) = text(&detached);
    let id = stdout.trim().to_string();
    let detach_hints = hints(&stderr);
    assert_eq!(
        detach_hints,
        [
            format!("ferry status {id} {runs_dir}"),
            format!("ferry logs -f {id} {runs_dir}"),
            format!("ferry attach {id} {runs_dir}"),
        ],
        "{stderr}"
    );
    let run = scratch.runs().join(&id);
    wait_for("the control socket", Duration::from_secs(60), || {
        run.join("control.sock").exists().then_some(())
    });
    for hint in [&detach_hints[2], &detach_hints[0]] {
        let out = paste(&scratch, hint);
        assert!(out.status.success(), "{hint}: {:?}", text(&out));
    }
    let out = ferry_in(&scratch, &["stop", &id]);
    assert!(out.status.success(), "{:?}", text(&out));
    let out = paste(&scratch, &detach_hints[1]);
    assert!(out.status.success(), "{:?}", text(&out));
    // A run interrupted after its boot keeps no kernel and initrd either.
    wait_for("the detached run to end", Duration::from_secs(60), || {
        json_file(&run.join("summary.json")).filter(|s| s["state"] == "interrupted")
    });
    assert!(!run.join("kernel").exists() && !run.join("initrd").exists());
}

/// A step that waits up to 10 minutes for `word`.
fn hold(name: &str, word: &str) -> String {
    format!("[[steps]]\nname = {name:?}\nexpect = {word:?}\ntimeout = \"10m\"\n")
}

/// The elapsed time (`m:ss`, in seconds) the status line shows for `step` ("step 1/4 'name'").
fn status_elapsed(screen: &str, step: &str) -> Option<u64> {
    let line = screen.lines().find(|l| l.contains(step))?;
    let after = line.split_once(&format!("{step} · "))?.1;
    let (m, s) = after.split_once(" / ")?.0.split_once(':')?;
    Some(m.trim().parse::<u64>().ok()? * 60 + s.parse::<u64>().ok()?)
}

#[test]
fn terminal_shows_a_live_status_line_and_is_clean_afterwards() {
    let scratch = Scratch::new();
    let tmux = Tmux::new(&scratch);
    // The first two steps wait for words the operator types at the installer's question (it
    // echoes them and asks again), so each step lasts until the test moves on.
    let steps = [hold("first hold", "go-ahead"), hold("second hold", "go-on")].concat();
    let profile = profile(&scratch, &(steps + &tiny_install_steps("2m")));
    let line = install_line(&scratch, &profile, "");
    tmux.start(
        "install",
        &format!("{line}; echo install-ended-$?; sleep 120"),
    );
    let run = run_dir_of(&scratch);
    let id = run.file_name().unwrap().to_string_lossy().into_owned();

    // Step 1 of 4, its elapsed time growing against its timeout, the console's last line.
    let first = "step 1/4 'first hold'";
    let screen = tmux.wait_screen("install", first, Duration::from_secs(120));
    assert!(
        screen.contains("drive · step 1/4 'first hold' · "),
        "{screen}"
    );
    let seen = status_elapsed(&screen, first).unwrap_or_else(|| panic!("{screen}"));
    let screen = wait_until(Duration::from_secs(60), || {
        let screen = tmux.screen("install");
        match status_elapsed(&screen, first) {
            Some(later) if later > seen => Ok(screen),
            _ => Err(format!(
                "the elapsed time past {seen}s; the screen:\n{screen}"
            )),
        }
    });
    assert!(screen.contains(" / 10:00"), "{screen}");
    tmux.wait_screen("install", "· Install tiny OS", Duration::from_secs(120));

    // The operator answers through `ferry attach`: each word ends a step.
    attach_at_the_question(&tmux, &scratch, &id);
    tmux.keys("operator", &["go-ahead", "Enter"]);
    tmux.wait_screen("install", "step 2/4 'second hold'", Duration::from_secs(60));
    tmux.keys("operator", &["go-on", "Enter"]);

    // The install ends: the status line is gone, the summary is intact.
    let screen = tmux.wait_screen("install", "install-ended-", Duration::from_secs(180));
    assert!(screen.contains("install-ended-0"), "{screen}");
    assert!(
        !screen.contains("· step "),
        "a status line was left: {screen}"
    );
    let lines: Vec<&str> = screen.lines().filter(|l| !l.trim().is_empty()).collect();
    let end = lines
        .iter()
        .position(|l| l.starts_with("install-ended-"))
        .unwrap();
    assert!(lines[end - 1].starts_with("  run directory: "), "{screen}");
    assert!(
        lines.iter().any(|l| l.starts_with("installed onto ")),
        "{screen}"
    );
}

/// Starts an install of a profile whose one step never matches, stderr into a file, with the
/// plain progress line due every second; returns the foreground, the run and the file.
fn held_install(scratch: &Scratch, extra: &[&str]) -> (std::process::Child, PathBuf, PathBuf) {
    let profile = profile(
        scratch,
        &hold("wait for the impossible", "this text never appears"),
    );
    let log = scratch.dir.path().join("stderr.log");
    let foreground = scratch
        .install(&profile, &[&["--on-failure", "abort"], extra].concat())
        .env("FERRY_PROGRESS_INTERVAL", "1s")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    (foreground, run_dir_of(scratch), log)
}

fn stop_and_wait(scratch: &Scratch, run: &Path, mut foreground: std::process::Child) {
    let id = run.file_name().unwrap().to_string_lossy().into_owned();
    let out = ferry_in(scratch, &["stop", &id]);
    assert!(out.status.success(), "{:?}", text(&out));
    let status = foreground.wait().unwrap();
    assert_eq!(status.code(), Some(130));
}

#[test]
fn off_a_terminal_a_long_step_prints_still_waiting_lines_even_with_json() {
    let scratch = Scratch::new();
    let (foreground, run, log) = held_install(&scratch, &["--json"]);
    let line = wait_for("a still-waiting line", Duration::from_secs(180), || {
        let text = std::fs::read_to_string(&log).ok()?;
        text.lines()
            .find(|l| l.contains("still waiting") && l.contains("step 1/1"))
            .map(str::to_string)
    });
    stop_and_wait(&scratch, &run, foreground);
    assert!(
        line.starts_with("ferry: still waiting: drive · step 1/1 'wait for the impossible' · "),
        "{line}"
    );
    assert!(line.contains(" / 10:00"), "{line}");
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(!stderr.contains(SECRET), "{stderr}");
    assert_plain_lines(&stderr);
}

/// No terminal, no status line: plain lines only.
fn assert_plain_lines(stderr: &str) {
    assert!(
        !stderr.contains('\r') && !stderr.contains('\x1b'),
        "{stderr:?}"
    );
}

#[test]
fn quiet_prints_no_progress() {
    let scratch = Scratch::new();
    let (foreground, run, log) = held_install(&scratch, &["--quiet"]);
    // Held for several of the progress intervals (a line would have been due without
    // --quiet): the step waits, the installer asked its question meanwhile.
    let mut drive_since = None;
    wait_for(
        "the step to be held a while",
        Duration::from_secs(180),
        || {
            let status = json_file(&run.join("status.json"))?;
            if drive_since.is_none() && status["stage"] == "drive" {
                drive_since = Some(Instant::now());
            }
            let held = drive_since.is_some_and(|t| t.elapsed() >= Duration::from_secs(3));
            (held && serial_contains(&run, "[yes/no]: ")).then_some(())
        },
    );
    stop_and_wait(&scratch, &run, foreground);
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(!stderr.contains("still waiting"), "{stderr}");
    assert!(!stderr.contains("ferry: drive"), "{stderr}");
}

/// An install whose image is the tiny ISO at a URL of a loopback server that sends the first
/// half and holds the rest until the returned gate opens, into a cache in the scratch
/// directory. Returns the profile, the server (serving while it lives), the gate, the
/// options the install takes, and what the status line says of the download while it is held:
/// the file's name and its total (`tiny.iso ` and ` of 30.0 MiB (`).
fn held_download(scratch: &Scratch) -> (PathBuf, Server, Gate, String, [String; 2]) {
    let iso = Arc::new(std::fs::read(fixture("build/tiny-isolinux.iso")).unwrap());
    let sum = digest(&iso);
    let gate = Gate::default();
    let server = {
        let (iso, gate) = (iso.clone(), gate.clone());
        Server::start(move |seen, _| match seen.range {
            // The plan asks the size (the first byte).
            Some(_) => Reply::Shared(iso.clone()),
            None => Reply::Gated {
                body: iso.clone(),
                upto: iso.len() / 2,
                gate: gate.clone(),
            },
        })
    };
    let profile = profile(scratch, &tiny_install_steps("2m"));
    let text = std::fs::read_to_string(&profile).unwrap().replace(
        &format!(
            "path = \"{}\"",
            fixture("build/tiny-isolinux.iso").display()
        ),
        &format!(
            "url = \"{}\"\nsha256 = \"{sum}\"",
            server.url("/pub/tiny.iso")
        ),
    );
    assert!(text.contains("url = "), "{text}");
    std::fs::write(&profile, text).unwrap();
    let total = ferry::host::disk::human_bytes(iso.len() as u64);
    let cache = scratch.dir.path().join("cache").display().to_string();
    (
        profile,
        server,
        gate,
        format!(" of {total} ("),
        ["--cache-dir".into(), cache],
    )
}

/// Whether a download line ends in its rate and the time left (`at 1.5 MiB/s, 12s left`), or,
/// on a machine so loaded that the test looked only after the download had stalled for a
/// while (the gate holds it), says so (`at 0 B/s, nothing for 0:06`).
fn rate_and_time_left(line: &str) -> bool {
    let line = line.trim_end();
    (line.contains("/s, ") && line.ends_with(" left")) || line.contains(" at 0 B/s, nothing for ")
}

/// The percentage a download line shows (`… (49%) at …`).
fn percent(line: &str) -> Option<u64> {
    line.split_once(" (")?.1.split_once("%)")?.0.parse().ok()
}

#[test]
fn terminal_shows_the_download_in_the_status_line() {
    let scratch = Scratch::new();
    let tmux = Tmux::new(&scratch);
    let (profile, _server, gate, of_total, cache) = held_download(&scratch);
    // The held transfer must not time out and be resumed while the test looks.
    let line = install_line(&scratch, &profile, &cache.join(" "));
    tmux.start(
        "install",
        &format!("FERRY_READ_TIMEOUT=10m {line}; echo install-ended-$?; sleep 120"),
    );
    // The status line names the file, its bytes of the total, the rate and the time left;
    // half the file was sent, and the line gets there (every 1 % of the file is reported).
    let status = wait_until(Duration::from_secs(120), || {
        let screen = tmux.screen("install");
        match screen.lines().find(|l| l.contains(&of_total)) {
            Some(line) if matches!(percent(line), Some(49..=50)) => Ok(line.to_string()),
            _ => Err(format!("the download at half; the screen:\n{screen}")),
        }
    });
    assert!(status.contains("fetch · 0:"), "{status}");
    assert!(status.contains("· tiny.iso "), "{status}");
    assert!(rate_and_time_left(&status), "{status}");
    // Held there, the line says so instead of a rate and time left that no longer hold.
    let screen = tmux.wait_screen(
        "install",
        " at 0 B/s, nothing for 0:",
        Duration::from_secs(60),
    );
    let status = screen.lines().find(|l| l.contains(&of_total)).unwrap();
    assert!(matches!(percent(status), Some(49..=50)), "{screen}");

    // The rest comes: the download is verified, the install goes on and ends; no status
    // line is left.
    gate.open();
    let screen = tmux.wait_screen("install", "install-ended-", Duration::from_secs(300));
    assert!(screen.contains("install-ended-0"), "{screen}");
    assert!(screen.contains("ferry: fetch  ") && screen.contains(" verified ("));
    assert!(
        !screen.contains(&of_total),
        "a status line was left: {screen}"
    );
}

/// An install held in its download: the foreground, its run, the file its stderr goes to,
/// the gate that lets the rest of the image come, and the download's ` of TOTAL (`; the
/// server serves as long as this lives.
struct HeldInstall {
    foreground: std::process::Child,
    run: PathBuf,
    log: PathBuf,
    gate: Gate,
    of_total: String,
    _server: Server,
}

/// The install of [`held_download`] with the `extra` option, off a terminal (stderr into a
/// file), the plain progress line due every second.
fn held_download_install(scratch: &Scratch, extra: &str) -> HeldInstall {
    let (profile, server, gate, of_total, cache) = held_download(scratch);
    let log = scratch.dir.path().join("stderr.log");
    let foreground = scratch
        .install(&profile, &[cache[0].as_str(), &cache[1], extra])
        .env("FERRY_PROGRESS_INTERVAL", "1s")
        // The held transfer must not time out and be resumed while the test looks.
        .env("FERRY_READ_TIMEOUT", "10m")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    HeldInstall {
        foreground,
        run: run_dir_of(scratch),
        log,
        gate,
        of_total,
        _server: server,
    }
}

#[test]
fn off_a_terminal_the_download_is_in_the_still_waiting_line_even_with_json() {
    let scratch = Scratch::new();
    let held = held_download_install(&scratch, "--json");
    let line = wait_for(
        "a still-waiting line at half the download",
        Duration::from_secs(120),
        || {
            let text = std::fs::read_to_string(&held.log).ok()?;
            text.lines()
                .filter(|l| l.starts_with("ferry: still waiting: fetch · "))
                .find(|l| percent(l).is_some_and(|p| p >= 49))
                .map(str::to_string)
        },
    );
    assert!(line.contains("· tiny.iso "), "{line}");
    assert!(line.contains(&held.of_total), "{line}");
    assert!(rate_and_time_left(&line), "{line}");
    held.gate.open();
    stop_and_wait(&scratch, &held.run, held.foreground);
    // What the line was made from: download events, valid against their schema.
    let events = std::fs::read_to_string(held.run.join("events.jsonl")).unwrap();
    assert!(events.contains(r#""event":"download""#), "{events}");
    assert_schema("event", &events, true);
    assert_plain_lines(&std::fs::read_to_string(&held.log).unwrap());
}

#[test]
fn quiet_prints_no_download_progress() {
    let scratch = Scratch::new();
    let held = held_download_install(&scratch, "--quiet");
    // Held at half for several of the plain line's intervals (a line would have been due
    // every second without --quiet).
    let at_half = |events: &str| {
        events.lines().any(|l| {
            let event: serde_json::Value = serde_json::from_str(l).unwrap_or_default();
            let (done, total) = (event["done_bytes"].as_u64(), event["total_bytes"].as_u64());
            done.zip(total).is_some_and(|(d, t)| d * 100 / t >= 49)
        })
    };
    let mut since = None;
    wait_for(
        "the download held at half a while",
        Duration::from_secs(120),
        || {
            let events = std::fs::read_to_string(held.run.join("events.jsonl")).ok()?;
            if since.is_none() && at_half(&events) {
                since = Some(Instant::now());
            }
            since
                .is_some_and(|t| t.elapsed() >= Duration::from_secs(3))
                .then_some(())
        },
    );
    held.gate.open();
    stop_and_wait(&scratch, &held.run, held.foreground);
    let stderr = std::fs::read_to_string(&held.log).unwrap();
    assert!(!stderr.contains("still waiting"), "{stderr}");
    assert!(!stderr.contains("tiny.iso"), "{stderr}");
}

#[test]
fn inspect_fits_its_table_to_the_terminal_and_keeps_full_lines_in_a_pipe() {
    let scratch = Scratch::new();
    let tmux = Tmux::new(&scratch);
    let iso = fixture("build/tiny-nixos.iso");
    tmux.start(
        "inspect",
        &format!(
            "{} inspect {}; echo inspect-ended-$?; sleep 600",
            sh_quote(Path::new(env!("CARGO_BIN_EXE_ferry"))),
            sh_quote(&iso)
        ),
    );
    let screen = tmux.wait_screen("inspect", "inspect-ended-", Duration::from_secs(60));
    assert!(screen.contains("inspect-ended-0"), "{screen}");
    // `capture-pane -J` joins the lines the terminal wrapped: a line too wide shows here whole.
    for line in screen.lines() {
        assert!(
            line.trim_end().chars().count() <= 120,
            "{line:?} in:\n{screen}"
        );
    }
    // The long cells are wrapped within their row, not cut: what tells entries apart (the end
    // of the kernel command line) is on the screen.
    let words: Vec<&str> = screen.split_whitespace().collect();
    for word in [
        "boot-nomodeset",
        "nomodeset",
        "copytoram",
        "boot.shell_on_fail",
    ] {
        assert!(words.contains(&word), "{word} in:\n{screen}");
    }

    let piped = ferry().arg("inspect").arg(&iso).output().unwrap();
    assert!(piped.status.success());
    let piped = String::from_utf8(piped.stdout).unwrap();
    let nomodeset = piped
        .lines()
        .find(|l| l.contains("boot-nomodeset"))
        .unwrap_or_else(|| panic!("an entry line in:\n{piped}"));
    assert!(
        nomodeset.ends_with("root=LABEL=nixos-minimal-24.11-x86_64 boot.shell_on_fail nomodeset")
            && nomodeset.chars().count() > 120,
        "the whole row on one line in a pipe: {nomodeset:?}"
    );
}
