//! Bounded input: what the operator sees when a profile, a file argument or `--disk`/`--size`
//! is out of range. Each refusal is one line naming the field or path and the limit.

use std::process::Output;

use crate::support::{Scratch, ferry};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A profile whose ISO need not exist: these refusals come before the image is read.
fn profile(scratch: &Scratch, rest: &str) -> std::path::PathBuf {
    let path = scratch.dir.path().join("p.toml");
    std::fs::write(&path, format!("[image]\npath = \"none.iso\"\n{rest}")).unwrap();
    path
}

#[test]
fn overlong_timeouts_are_refused_at_their_position() {
    let scratch = Scratch::new();
    for (rest, at) in [
        (
            "[[steps]]\nname = \"a\"\nexpect = \"x\"\ntimeout = \"18446744073709551615s\"\n",
            "p.toml:6:11: duration `18446744073709551615s` is too long: at most 7 days (`7d`)",
        ),
        (
            "[finish]\npoweroff_timeout = \"300000000000y\"\n",
            "p.toml:4:20: duration `300000000000y` is too long: at most 7 days (`7d`)",
        ),
        (
            "[finish.verify]\ntimeout = \"8d\"\n",
            "p.toml:4:11: duration `8d` is too long: at most 7 days (`7d`)",
        ),
    ] {
        let p = profile(&scratch, rest);
        let out = scratch.plan(&p, &[]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.trim_end().ends_with(at), "{err}");
    }
}

/// Runs `cmd`, killing it after `secs` (on main, reading `/dev/zero` never ended).
fn output_within(cmd: &mut std::process::Command, secs: u64) -> Output {
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!(
                "ferry still running after {secs}s: {:?}",
                child.wait_with_output()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn device_files_are_refused_at_once_as_profile_or_template() {
    let scratch = Scratch::new();
    let mut cmd = ferry();
    cmd.args(["plan", "/dev/zero", "--disk"])
        .arg(scratch.disk())
        .args(["--size", "2G"]);
    let out = output_within(&mut cmd, 20);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(
        err.trim_end(),
        "ferry: error: cannot read profile /dev/zero: not a regular file (a character device); name a file"
    );

    let iso = crate::support::fixture("build/tiny-isolinux.iso");
    let profile = scratch.dir.path().join("t.toml");
    std::fs::write(
        &profile,
        format!(
            "[image]\npath = \"{}\"\n[[files]]\nname = \"answers\"\ntemplate = \"/dev/zero\"\n",
            iso.display()
        ),
    )
    .unwrap();
    let mut cmd = ferry();
    cmd.arg("plan")
        .arg(&profile)
        .arg("--disk")
        .arg(scratch.disk())
        .args(["--size", "2G"]);
    let out = output_within(&mut cmd, 20);
    let err = stderr(&out);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("/dev/zero: not a regular file (a character device); name a file"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn oversized_vm_and_undersized_images_are_refused() {
    let scratch = Scratch::new();
    for (rest, want) in [
        (
            "[vm]\nmemory = \"17179869184G\"\n",
            "p.toml:4:10: memory `17179869184G` is too large: at most 1T (`1024G`)",
        ),
        (
            "[vm]\ncpus = 4096\n",
            "p.toml:4:8: cpus = 4096 is too many: at most 255 (0 means one per host CPU)",
        ),
    ] {
        let p = profile(&scratch, rest);
        let out = scratch.plan(&p, &[]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.trim_end().ends_with(want), "{err}");
    }
    let iso = crate::support::fixture("build/tiny-isolinux.iso");
    let p = scratch.dir.path().join("ok.toml");
    std::fs::write(&p, format!("[image]\npath = \"{}\"\n", iso.display())).unwrap();
    for size in ["1", "511"] {
        let out = ferry()
            .arg("plan")
            .arg(&p)
            .arg("--disk")
            .arg(scratch.disk())
            .args(["--size", size])
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert_eq!(
            err.trim_end(),
            format!(
                "ferry: error: --size {size} B: too small for a disk image; at least 1.0 GiB (no installer fits in less)"
            )
        );
    }
    // A 0-byte leftover is not silently installed onto.
    std::fs::write(scratch.disk(), "").unwrap();
    let out = scratch.plan(&p, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(21), "{err}");
    assert!(err.contains("is a disk image of only 0 B"), "{err}");
}

#[test]
fn option_files_and_memory_beyond_the_host_are_refused_in_one_line() {
    let scratch = Scratch::new();
    let tiny = crate::support::fixture("tiny.toml");
    for option in ["--ssh-key", "--network"] {
        let mut cmd = ferry();
        cmd.arg("plan")
            .arg(&tiny)
            .arg("--disk")
            .arg(scratch.disk())
            .args(["--size", "2G", option, "/dev/zero"]);
        let out = output_within(&mut cmd, 20);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert_eq!(
            err.trim_end(),
            format!(
                "ferry: error: {option} /dev/zero: not a regular file (a character device); name a file"
            )
        );
    }
    // More memory than this host has (whatever it has): refused before QEMU is started.
    let total_mib = std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok())
        .unwrap()
        / 1024;
    let p = profile(
        &scratch,
        &format!("[vm]\nmemory = \"{}M\"\n", total_mib + 1024),
    );
    let out = scratch.plan(&p, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("MiB is more than this host can give") && err.contains("[vm] memory"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}
