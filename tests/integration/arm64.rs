//! An arm64 guest on this x86-64 machine: the tiny installer for arm64 (Debian's arm64 cloud
//! kernel and static busybox, `tiny-arm64.iso`) installed through `qemu-system-aarch64` under
//! TCG on QEMU's virt board with AAVMF, then the installed disk booted alone to its login
//! prompt on the PL011 (`ttyAMA0`).

use crate::recipes::{
    debian_installer_fails_fast, fat_listing, gpt_partitions, read_ext4, test_key,
};
use crate::support::*;

#[test]
fn installs_an_arm64_guest_under_tcg_and_boots_it() {
    let scratch = Scratch::new();
    let planned = scratch.plan(&fixture("tiny-arm64.toml"), &["--arch", "aarch64"]);
    let (plan_text, plan_err) = text(&planned);
    assert!(planned.status.success(), "{plan_err}");
    assert!(
        plan_text.contains("ensure EFI/BOOT/BOOTAA64.EFI on the ESP"),
        "{plan_text}"
    );
    let output = scratch
        .install(&fixture("tiny-arm64.toml"), &["--arch", "aarch64"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(
        output.status.success(),
        "install failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("boot check passed"), "{stdout}");
    assert!(
        stderr.contains("starting QEMU (TCG, 512 MiB, 1 CPU)")
            && stderr.contains("ESP (partition 1) holds EFI/BOOT/BOOTAA64.EFI"),
        "{stderr}"
    );

    let run = scratch.run_dir();
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("plan.json")).unwrap()).unwrap();
    assert_eq!(plan["arch"], "aarch64", "{plan}");
    assert_eq!(plan["accel"]["first"], "tcg", "{plan}");
    assert_eq!(plan["firmware"], "uefi", "{plan}");
    let cmdline = plan["boot"]["cmdline"].as_str().unwrap();
    assert!(cmdline.ends_with(" console=ttyAMA0,115200n8"), "{cmdline}");
    let args = std::fs::read_to_string(run.join("qemu.args")).unwrap();
    for wanted in [
        "qemu-system-aarch64",
        "virt,gic-version=3",
        "tcg",
        "AAVMF_CODE.fd",
        "virtio-blk-pci",
    ] {
        assert!(args.contains(wanted), "{wanted} missing from {args}");
    }

    // The installer ran on the arm64 kernel and talked on ttyAMA0 (the only console it had).
    let serial = std::fs::read_to_string(run.join("serial.log")).unwrap();
    assert!(
        serial.contains("tiny-installer: answers: DISK=/dev/vda HOSTNAME=tiny FIRMWARE=uefi")
            && serial.contains("tiny-installer: installation complete"),
        "{serial}"
    );
    // The verify boot: AAVMF, the disk's GRUB (arm64-efi), the installed kernel, login.
    let verify = std::fs::read_to_string(run.join("verify/serial.log")).unwrap();
    assert!(
        verify.contains("GNU GRUB")
            && verify.contains("-cloud-arm64 as tiny")
            && verify.contains("tiny login:"),
        "verify boot never reached the login prompt:\n{verify}"
    );

    // The disk, read from the image: GPT, the ESP with GRUB at the arm64 removable path, the
    // root file system's grub.cfg with the arm64 console.
    let parts = gpt_partitions(&scratch.disk());
    assert_eq!(parts.len(), 2, "{parts:?}");
    let grub = read_ext4(&scratch.disk(), parts[1].0, "/boot/grub/grub.cfg");
    assert!(
        grub.contains("console=ttyAMA0,115200n8 tiny.hostname=tiny") && !grub.contains("ttyS0"),
        "{grub}"
    );
    let listing = fat_listing(&scratch.disk(), parts[0].0, "/EFI/BOOT");
    assert!(listing.contains("/EFI/BOOT/BOOTAA64.EFI"), "{listing}");
    assert!(scratch.qemu_pids().is_empty(), "QEMU left running");
}

/// The NixOS recipe's image exists only for x86_64 (the Debian recipes switch to their arm64
/// package): planned for an aarch64 guest it is refused (it would only hang at AAVMF), naming
/// both architectures.
#[test]
fn an_x86_only_catalog_image_is_refused_for_an_aarch64_guest() {
    let scratch = Scratch::new();
    let key = test_key(scratch.dir.path());
    let out = ferry()
        .args(["plan", "nixos", "--disk"])
        .arg(scratch.disk())
        .args(["--size", "4G", "--arch", "aarch64", "--ssh-key"])
        .arg(&key)
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "nixos-minimal is an x86_64 image and this guest is aarch64 (--arch): use an aarch64 image"
        ),
        "{stderr}"
    );
}

/// The debian-12 recipe names the amd64 netboot package; for an aarch64 guest the plan takes
/// the arm64 package of the same release, verified through the same chain.
#[test]
fn the_debian_recipe_plans_the_arm64_package_for_an_aarch64_guest() {
    // By the recipe's name, or by the arm64 image's (which has the same recipe).
    for name in ["debian-12", "debian-12-netboot-package-arm64"] {
        plans_the_arm64_package(name);
    }
}

fn plans_the_arm64_package(name: &str) {
    let scratch = Scratch::new();
    let key = test_key(scratch.dir.path());
    let out = ferry()
        .args(["plan", name, "--json", "--disk"])
        .arg(scratch.disk())
        .arg("--cache-dir")
        .arg(scratch.dir.path().join("cache"))
        .args(["--size", "4G", "--arch", "aarch64", "--ssh-key"])
        .arg(&key)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let plan: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(plan["arch"], "aarch64", "{plan:#}");
    let fetch = &plan["fetch"];
    assert_eq!(
        fetch["request"]["checksum"]["debian"]["package"], "debian-installer-12-netboot-arm64",
        "not the arm64 package through the chain: {fetch:#}"
    );
    assert_eq!(fetch["netboot"]["arch"], "arm64", "{fetch:#}");
}

/// The real Debian 12 arm64 installer (the arm64 netboot package, fetched and verified through
/// the signed chain) on QEMU's virt board under TCG, driven over the PL011 console: it takes
/// ferry's preseed, configures the network, checks the mirror, and stops at the first screen
/// the archive copy here cannot get past (most installer components are missing); ferry ends
/// the install on it. About 4 minutes on this machine alone; opt-in because emulating arm64
/// under TCG is so slow that on a busy host (two test suites at once) the installer did not
/// get past DHCP within the recipe's 10-minute step.
#[test]
#[ignore = "the real arm64 installer under TCG: ~4 minutes on an idle 2-core machine, needs deb.debian.org"]
fn the_real_debian_12_arm64_installer_is_driven_to_its_first_question() {
    let stderr = debian_installer_fails_fast("12", "arm64");
    assert!(
        stderr.contains("Checking the Debian archive mirror")
            && stderr.contains("Download installer components"),
        "the installer did not reach its first screen over ttyAMA0:\n{stderr}"
    );
    assert!(
        stderr.contains("starting QEMU (TCG,") && stderr.contains(" with \"linux\""),
        "{stderr}"
    );
}
