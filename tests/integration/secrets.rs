//! Secrets at rest: a real install of the tiny fixture (TCG) with secret values in the kernel
//! command line (with `"`, `\` and `'`, so JSON, Debug and shell quoting escape them) and in an
//! answer file the guest echoes back; then the run directory, its modes, the bundle, and the
//! processes' command lines are searched for them.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::support::*;

/// In the kernel command line (its quotes paired: the kernel parses them): every escaping
/// writer changes it.
const ODD: &str = r#"Q"u\o"teS3cr'et"#;
/// In the answer file: the installer prints it back on the serial console.
const HOST: &str = "Hostn4meS3cret";
/// Given through a file and the environment (never in an argv).
const FROM_FILE: &str = "F1leS3cretVal";
const FROM_ENV: &str = "Env1S3cretVal";
/// A recipe-style password variable given with `--var`: a secret by its name.
const PASSWORD: &str = "Passw0rdS3cret";
/// A fragment every secret value has: no file may hold it in any form that keeps the letters.
const FRAGMENT: &str = "S3cr";

fn profile(scratch: &Scratch) -> PathBuf {
    let path = scratch.dir.path().join("secrets.toml");
    let text = format!(
        r#"
[image]
path = "{iso}"
[vm]
memory = "512M"
cpus = 1
accel = "tcg"
[boot]
append = "url={{{{ serve.url }}}}/answers.sh ferry.odd={{{{ secrets.odd }}}}"
[secrets]
odd = {odd}
[[files]]
name = "answers.sh"
content = "DISK={{{{ disk.guest_path }}}}\nHOSTNAME={{{{ secrets.host }}}}\n# {{{{ secrets.file }}}} {{{{ secrets.env }}}} {{{{ vars.root_password }}}}\n"
[defaults]
fail = ["tiny-installer: ERROR"]
{steps}[finish]
verify = {{ enabled = false }}
"#,
        steps = tiny_install_steps("3m"),
        iso = fixture("build/tiny-isolinux.iso").display(),
        odd = toml_string(ODD),
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Every file under `dir` (not following links).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let p = entry.path();
            if entry.file_type().unwrap().is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files
}

/// The forms a value takes through JSON, Debug and shell quoting.
fn forms(value: &str) -> Vec<String> {
    let json = serde_json::to_string(value).unwrap();
    let debug = format!("{value:?}");
    vec![
        value.to_string(),
        json[1..json.len() - 1].to_string(),
        debug[1..debug.len() - 1].to_string(),
        value.replace('\'', r"'\''"),
        FRAGMENT.to_string(),
    ]
}

fn assert_clean(files: &[PathBuf]) {
    for file in files {
        let bytes = std::fs::read(file).unwrap_or_default();
        for secret in [ODD, HOST, FROM_FILE, FROM_ENV, PASSWORD] {
            for form in forms(secret) {
                assert!(
                    !bytes.windows(form.len()).any(|w| w == form.as_bytes()),
                    "{form:?} (of {secret:?}) is in {}",
                    file.display()
                );
            }
        }
    }
}

fn cmdline(pid: u32) -> String {
    String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default())
        .replace('\0', " ")
}

#[test]
fn secrets_are_nowhere_in_the_run_directory_the_bundle_or_an_argv() {
    let scratch = Scratch::new();
    let profile = profile(&scratch);
    let secret_file = scratch.dir.path().join("file-secret");
    std::fs::write(&secret_file, format!("{FROM_FILE}\n")).unwrap();
    let child = scratch
        .install(
            &profile,
            &[
                "--secret",
                &format!("host={HOST}"),
                "--secret-file",
                &format!("file={}", secret_file.display()),
                "--var",
                &format!("root_password={PASSWORD}"),
            ],
        )
        .env("FERRY_SECRET_ENV", FROM_ENV)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // While the VM runs: neither the supervisor's nor QEMU's command line holds a secret,
    // not even the one on the kernel command line (QEMU gets that over QMP), and the request
    // file is private.
    let run = wait_for("the run directory", Duration::from_secs(30), || {
        std::fs::read_dir(scratch.runs())
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.join("status.json").is_file())
    });
    // A viewer attached from the start sees the live console redacted too.
    wait_for("the control socket", Duration::from_secs(60), || {
        run.join("control.sock").exists().then_some(())
    });
    let viewer = ferry()
        .args([
            "attach",
            run.file_name().unwrap().to_str().unwrap(),
            "--read-only",
        ])
        .arg("--runs-dir")
        .arg(scratch.runs())
        // Open until the run has ended: a closed stdin detaches.
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let qemu = wait_for("QEMU", Duration::from_secs(600), || {
        scratch.qemu_pids().first().copied()
    });
    let supervisor = supervisor_pid(&scratch).unwrap();
    for (what, pid) in [("supervisor", supervisor), ("QEMU", qemu)] {
        let argv = cmdline(pid);
        assert!(!argv.is_empty(), "{what} {pid} is gone");
        for secret in [ODD, HOST, FROM_FILE, FROM_ENV, PASSWORD] {
            assert!(
                !argv.contains(secret),
                "{what}'s argv holds {secret}: {argv}"
            );
        }
    }
    let request = std::fs::read(run.join("request.json")).unwrap();
    for secret in [HOST, FROM_FILE, FROM_ENV, PASSWORD] {
        assert!(
            !request
                .windows(secret.len())
                .any(|w| w == secret.as_bytes()),
            "request.json holds {secret}"
        );
    }

    let output = child.wait_with_output().unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        !stderr.contains(FRAGMENT) && !stdout.contains(FRAGMENT),
        "{stderr}"
    );

    // The secrets reached the guest (it printed the hostname back) ...
    let serial = std::fs::read_to_string(run.join("serial.log")).unwrap();
    assert!(serial.contains("HOSTNAME=[redacted]"), "{serial}");
    // ... and the viewer, detached when the run ended, saw it redacted.
    let viewed = viewer.wait_with_output().unwrap();
    let (watched, viewer_err) = text(&viewed);
    assert!(
        watched.contains("HOSTNAME=[redacted]"),
        "{watched}\n{viewer_err}"
    );
    for secret in [ODD, HOST, FROM_FILE, FROM_ENV, PASSWORD] {
        for form in forms(secret) {
            assert!(!watched.contains(&form), "attach printed {form:?}");
        }
    }
    // ... and no file of the run holds one, in any form.
    let files = files_under(&run);
    assert!(files.iter().any(|f| f.ends_with("transcript.cast")));
    assert_clean(&files);
    assert!(!run.join("secrets.json").exists());

    // Modes: the runs root and the run directory 0700, every file in it private, the created
    // disk image 0600.
    let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&scratch.runs()), 0o700);
    assert_eq!(mode(&run), 0o700);
    for file in &files {
        let meta = std::fs::symlink_metadata(file).unwrap();
        if meta.file_type().is_socket() {
            continue;
        }
        assert_eq!(
            mode(file) & 0o077,
            0,
            "{} is {:o}",
            file.display(),
            mode(file)
        );
    }
    assert_eq!(mode(&scratch.disk()), 0o600);

    // The bundle holds none either.
    let unpacked = unpacked_bundle(&scratch, &run, "bundle");
    let files = files_under(&unpacked);
    assert!(files.iter().any(|f| f.ends_with("serial.log")), "{files:?}");
    assert_clean(&files);

    // A record replaced by a link is not followed: the link's target stays out.
    let target = scratch.dir.path().join("shadow");
    std::fs::write(&target, "root:$6$NotForTheBundle:19000:0:99999:7:::\n").unwrap();
    std::fs::remove_file(run.join("serial.log")).unwrap();
    std::os::unix::fs::symlink(&target, run.join("serial.log")).unwrap();
    let unpacked = unpacked_bundle(&scratch, &run, "linked");
    let files = files_under(&unpacked);
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        assert!(!text.contains("NotForTheBundle"), "{}", file.display());
    }
    assert!(
        !files.iter().any(|f| f.ends_with("serial.log")),
        "{files:?}"
    );
    let skipped = files.iter().find(|f| f.ends_with("skipped.txt")).unwrap();
    let skipped = std::fs::read_to_string(skipped).unwrap();
    assert!(
        skipped.contains("serial.log: a link to") && skipped.contains("not followed"),
        "{skipped}"
    );
}

#[test]
fn ferry_plan_prints_secrets_redacted_unless_asked() {
    let scratch = Scratch::new();
    let profile = profile(&scratch);
    let plan = |extra: &[&str]| {
        let out = ferry()
            .arg("plan")
            .arg(&profile)
            .arg("--disk")
            .arg(scratch.disk())
            .args(["--size", "2G", "--secret", &format!("host={HOST}")])
            .args(["--secret", &format!("file={FROM_FILE}")])
            .args(["--var", &format!("root_password={PASSWORD}")])
            .args(extra)
            .env("FERRY_SECRET_ENV", FROM_ENV)
            .output()
            .unwrap();
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        stdout
    };
    for shown in [plan(&[]), plan(&["--json"])] {
        assert!(shown.contains("[redacted]"), "{shown}");
        for secret in [ODD, HOST, FROM_FILE, FROM_ENV, PASSWORD] {
            for form in forms(secret) {
                assert!(
                    !shown.contains(&form),
                    "{form:?} (of {secret:?}) in:\n{shown}"
                );
            }
        }
    }
    // The JSON stays valid, and --show-secrets shows the values as rendered (the kernel
    // command line's; the plan holds no file contents).
    let json: serde_json::Value = serde_json::from_str(&plan(&["--json"])).unwrap();
    assert!(json.to_string().contains("[redacted]"), "{json}");
    let shown = plan(&["--json", "--show-secrets"]);
    let json: serde_json::Value = serde_json::from_str(&shown).unwrap();
    let all = json.to_string();
    let escaped = serde_json::to_string(ODD).unwrap();
    assert!(all.contains(&escaped[1..escaped.len() - 1]), "{all}");
}
