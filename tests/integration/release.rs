//! The static aarch64 release binary: `scripts/build-release.sh --target aarch64-unknown-linux-musl`
//! cross-builds it, and qemu-user runs it on this x86-64 machine.

use std::path::PathBuf;
use std::process::Command;

use crate::support::{ferry, repo, text};

const TARGET: &str = "aarch64-unknown-linux-musl";

/// Builds ferry for aarch64 with the release script (static, musl), then runs the result under
/// `qemu-aarch64-static`: it must print what this machine's ferry prints. Opt-in: a cold
/// cross build takes about 13 minutes here (2 loaded cores); an up-to-date one seconds. Needs
/// `rustup target add aarch64-unknown-linux-musl` and Debian's gcc-aarch64-linux-gnu,
/// libc6-dev-arm64-cross and qemu-user-static.
///   cargo test --test integration -- --ignored aarch64_release_binary --nocapture
#[test]
#[ignore = "cross-builds the aarch64 release binary: ~13 minutes cold"]
fn aarch64_release_binary_is_static_and_runs_under_qemu_user() {
    let out = Command::new(repo().join("scripts/build-release.sh"))
        .args(["--target", TARGET])
        .current_dir(repo())
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("runs (under ") && stdout.contains("qemu-aarch64"),
        "the script did not run the binary:\n{stdout}"
    );

    let release = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"))
        .join(TARGET)
        .join("release");
    let bin = release.join("ferry");
    let file = Command::new("file").arg("-b").arg(&bin).output().unwrap();
    let kind = text(&file).0;
    assert!(kind.contains("ARM aarch64"), "{kind}");
    assert!(kind.contains("statically linked"), "{kind}");

    // What an operator on an ARM rescue system sees, compared with this machine's ferry.
    for args in [&["--version"][..], &["recipe", "list"]] {
        let arm = Command::new("qemu-aarch64-static")
            .arg(&bin)
            .args(args)
            .output()
            .unwrap();
        let host = ferry().args(args).output().unwrap();
        assert!(arm.status.success(), "{args:?}: {}", text(&arm).1);
        assert_eq!(text(&arm).0, text(&host).0, "{args:?}");
        assert!(!text(&arm).0.is_empty(), "{args:?}");
    }
    // The aarch64 binary wrote the man pages and completions itself.
    let page = std::fs::read_to_string(release.join("share/man/man1/ferry-install.1")).unwrap();
    assert!(page.contains(".TH"), "{page}");
    let bash = std::fs::read_to_string(release.join("share/bash-completion/ferry")).unwrap();
    assert!(bash.contains("_ferry"), "{bash}");
}
