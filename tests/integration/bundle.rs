//! The portable QEMU bundle: built by `scripts/build-qemu-bundle.sh` from this machine's
//! Debian packages, unpacked by ferry, and run with nothing from the host's PATH; and fetched
//! by `ferry install` from the catalog when the machine has no QEMU.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{OnceLock, mpsc};
use std::time::{Duration, Instant};

use ferry::qemu::QemuBinary;
use ferry::qemu::bundle::Bundle;

use crate::fetch::{Reply, Server, digest};
use crate::support::*;

/// The bundle built from this machine's packages, once per test run.
fn built_bundle() -> &'static Path {
    static BUILT: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, tarball) = BUILT.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let tarball = dir.path().join("qemu-bundle.tar.xz");
        // xz level 1 keeps the tests quick; releases use the default (6).
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
        (dir, tarball)
    });
    tarball
}

#[test]
fn bundle_from_debian_packages_boots_the_fixture_kernel_with_an_empty_path() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let sha256 = digest(&std::fs::read(built_bundle()).unwrap()).to_hex();
    let bundle = Bundle::unpack(built_bundle(), &sha256, &cache).unwrap();
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

    boots_the_fixture_kernel_alone(&qemu, &bundle.root);
}

/// Boots the fixture kernel with `qemu` under TCG, with an empty environment but its own, and
/// checks that glibc and QEMU's libraries were mapped from `root`, not from the host.
pub fn boots_the_fixture_kernel_alone(qemu: &QemuBinary, root: &Path) {
    let kernel = fixture("build/vmlinuz");
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
        !libc.is_empty() && libc.iter().all(|l| l.contains(root.to_str().unwrap())),
        "{libc:?}"
    );
    assert!(
        maps.contains(&format!("{}/lib/libslirp.so.0", root.display())),
        "slirp not from the bundle"
    );
}

/// A catalog directory holding only a `qemu` entry for `url`, pinned to `sha256`.
fn bundle_catalog(dir: &Path, url: &str, sha256: &str) -> PathBuf {
    let catalog = dir.join("catalog");
    std::fs::create_dir_all(&catalog).unwrap();
    std::fs::write(
        catalog.join("qemu-bundle.toml"),
        format!(
            "name = \"qemu-bundle\"\ndescription = \"ferry's portable QEMU (test build)\"\n\
             os = \"linux\"\nversion = \"7.2\"\narch = \"x86_64\"\nkind = \"qemu\"\n\
             urls = [\"{url}\"]\nsha256 = \"{sha256}\"\n"
        ),
    )
    .unwrap();
    catalog
}

/// A rescue system without QEMU: `ferry install` downloads the catalog's bundle from a
/// loopback server, verifies it, unpacks it into the cache and installs the fixture with it;
/// the next plan uses the unpacked bundle without downloading; a bundle that does not match
/// the catalog's digest is refused before anything is unpacked or started.
#[test]
fn install_without_qemu_on_path_fetches_verifies_and_runs_the_catalog_bundle() {
    let data = std::fs::read(built_bundle()).unwrap();
    let sha256 = digest(&data).to_hex();
    let served = data.clone();
    let server = Server::start(move |_, _| Reply::File(served.clone()));
    let scratch = Scratch::new();
    let cache = scratch.dir.path().join("cache");
    let catalog = bundle_catalog(
        scratch.dir.path(),
        &server.url("/ferry-qemu.tar.xz"),
        &sha256,
    );
    // No qemu-system-x86_64 anywhere on PATH (ferry finds `ip` missing too, and copes).
    let no_qemu = scratch.dir.path().join("bin");
    std::fs::create_dir(&no_qemu).unwrap();
    let with_catalog = |cmd: &mut Command| {
        cmd.arg("--catalog")
            .arg(&catalog)
            .arg("--cache-dir")
            .arg(&cache)
            .env("PATH", &no_qemu);
    };

    let mut install = scratch.install(&fixture("tiny.toml"), &["--accel", "tcg"]);
    with_catalog(&mut install);
    let out = install.output().unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("boot check passed"), "{stdout}");
    for said in [
        "no qemu-system-x86_64 on PATH: ferry's portable QEMU it is",
        &format!("downloading {}", server.url("/ferry-qemu.tar.xz")),
        &format!("verified ({} bytes, sha256 {sha256})", data.len()),
        &format!("unpacking the QEMU bundle into {}", cache.display()),
    ] {
        assert!(stderr.contains(said), "missing {said:?} in:\n{stderr}");
    }
    let bundle = Bundle::cached(&cache, &sha256).expect("the bundle is unpacked in the cache");
    let args = std::fs::read_to_string(scratch.run_dir().join("qemu.args")).unwrap();
    assert!(
        args.starts_with(&format!(
            "{}/lib/ld-linux-x86-64.so.2 ",
            bundle.root.display()
        )),
        "{args}"
    );
    assert_eq!(
        mbr_partitions(&scratch.disk()).len(),
        1,
        "the fixture installed its partition"
    );
    assert!(scratch.qemu_pids().is_empty(), "QEMU left running");

    // Planned again: the unpacked bundle, nothing downloaded.
    let requests = server.seen().len();
    let mut plan = ferry();
    plan.arg("plan")
        .arg(fixture("tiny.toml"))
        .arg("--disk")
        .arg(scratch.disk());
    with_catalog(&mut plan);
    let out = plan.output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains(&format!(
            "portable bundle {} from the catalog (no qemu-system-x86_64 on PATH)",
            bundle.root.display()
        )),
        "{stdout}"
    );
    assert_eq!(server.seen().len(), requests);
    // The bundle is no installer image.
    let profile = scratch.dir.path().join("p.toml");
    std::fs::write(
        &profile,
        "description = \"d\"\n[image]\nname = \"qemu-bundle\"\n",
    )
    .unwrap();
    let mut plan = ferry();
    plan.arg("plan")
        .arg(&profile)
        .arg("--disk")
        .arg(scratch.disk());
    with_catalog(&mut plan);
    let out = plan.output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out)
            .1
            .contains("p.toml:3:8: qemu-bundle is ferry's portable QEMU, not an installer image"),
        "{}",
        text(&out).1
    );

    // A bundle that is not the one the catalog pins: refused, nothing unpacked or started.
    let scratch = Scratch::new();
    let cache = scratch.dir.path().join("cache");
    let other = "0".repeat(64);
    let catalog = bundle_catalog(
        scratch.dir.path(),
        &server.url("/ferry-qemu.tar.xz"),
        &other,
    );
    let out = scratch
        .install(&fixture("tiny.toml"), &["--accel", "tcg", "--catalog"])
        .arg(&catalog)
        .arg("--cache-dir")
        .arg(&cache)
        .env("PATH", &no_qemu)
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains(&other) && stderr.contains(&sha256),
        "expected and actual digests:\n{stderr}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&cache)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(
        leftovers
            .iter()
            .all(|n| !n.to_string_lossy().starts_with("qemu-")),
        "{leftovers:?}"
    );
    assert!(!scratch.disk().exists(), "the disk was touched");

    // No QEMU and no bundle in the catalog: one line saying what to do.
    let empty = scratch.dir.path().join("empty-catalog");
    std::fs::create_dir(&empty).unwrap();
    let out = ferry()
        .arg("plan")
        .arg(fixture("tiny.toml"))
        .arg("--disk")
        .arg(scratch.disk())
        .args(["--size", "1G", "--catalog"])
        .arg(&empty)
        .env("PATH", &no_qemu)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(
        text(&out).1,
        "ferry: error: no qemu-system-x86_64 found on PATH; install it (Debian: apt-get install \
         qemu-system-x86), pass --qemu PATH, or name a portable QEMU bundle in the catalog \
         (README: QEMU)\n"
    );
}
