//! The portable QEMU bundle: built by `scripts/build-qemu-bundle.sh` from this machine's
//! Debian packages, unpacked by ferry, and run with nothing from the host's PATH.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ferry::qemu::bundle::Bundle;

use crate::support::{fixture, repo};

#[test]
fn bundle_from_debian_packages_boots_the_fixture_kernel_with_an_empty_path() {
    let kernel = fixture("build/vmlinuz");
    let dir = tempfile::tempdir().unwrap();
    let tarball = dir.path().join("qemu-bundle.tar.xz");
    // xz level 1 keeps this test quick; releases use the default (6).
    let built = Command::new(repo().join("scripts/build-qemu-bundle.sh"))
        .arg(&tarball)
        .env("XZ_LEVEL", "1")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&built.stdout).into_owned()
        + &String::from_utf8_lossy(&built.stderr);
    assert!(
        built.status.success(),
        "build-qemu-bundle.sh failed:\n{log}"
    );
    eprintln!("{log}");

    let cache = dir.path().join("cache");
    let bundle = Bundle::unpack(&tarball, &cache).unwrap();
    let qemu = bundle.qemu_binary().unwrap();
    assert!(
        qemu.version.starts_with("7.")
            || qemu
                .version
                .split('.')
                .next()
                .unwrap()
                .parse::<u32>()
                .unwrap()
                > 7
    );
    assert_eq!(qemu.program, bundle.root.join("lib/ld-linux-x86-64.so.2"));
    let (code, vars) = ferry::qemu::find_ovmf_in(qemu.firmware_dir.as_deref()).unwrap();
    assert!(
        code.starts_with(&bundle.root) && vars.starts_with(&bundle.root),
        "{code:?} {vars:?}"
    );

    let mut child = Command::new(&qemu.program)
        .args(&qemu.pre_args)
        .args([
            "-accel",
            "tcg",
            "-m",
            "256",
            "-display",
            "none",
            "-no-reboot",
            "-serial",
            "stdio",
        ])
        .arg("-kernel")
        .arg(&kernel)
        .args(["-append", "console=ttyS0 panic=-1"])
        .env_clear()
        .env("PATH", "")
        .envs(qemu.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut output = Vec::new();
    let mut maps = String::new();
    while Instant::now() < deadline && !String::from_utf8_lossy(&output).contains("Linux version") {
        if let Ok(chunk) = rx.recv_timeout(Duration::from_millis(200)) {
            output.extend(chunk);
        }
        if maps.is_empty() {
            maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
        }
    }
    let _ = child.kill();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let output = String::from_utf8_lossy(&output);
    assert!(
        output.contains("Linux version"),
        "no kernel output from the bundled QEMU ({status}); stderr:\n{stderr}\nserial:\n{output}"
    );
    // glibc and QEMU's libraries came from the bundle, not from the host.
    let libc: Vec<&str> = maps.lines().filter(|l| l.contains("libc.so.6")).collect();
    assert!(
        !libc.is_empty()
            && libc
                .iter()
                .all(|l| l.contains(bundle.root.to_str().unwrap())),
        "{libc:?}"
    );
    assert!(
        maps.contains(&format!("{}/lib/libslirp.so.0", bundle.root.display())),
        "slirp not from the bundle"
    );
}
