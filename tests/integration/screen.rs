//! Installs booted through the ISO's own loader: under BIOS driven on the VGA screen
//! (tests/fixtures/tiny-screen.toml: isolinux with no serial line, waiting at `boot:`), under
//! UEFI through the ISO's EFI GRUB, which OVMF's console mirrors onto the serial port
//! (tests/fixtures/tiny-grub-uefi-loader.toml); and through a text menu on the VGA screen that
//! needs an arrow key (tests/fixtures/tiny-menu.toml: isolinux's menu.c32).

use std::process::Stdio;

use crate::recipes::{fat_listing, gpt_partitions};
use crate::support::*;

fn status_of_run(scratch: &Scratch) -> String {
    let run = scratch.run_dir();
    let id = run.file_name().unwrap().to_str().unwrap().to_string();
    let out = ferry()
        .args(["status", &id, "--runs-dir"])
        .arg(scratch.runs())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    stdout
}

#[test]
fn installs_through_the_isos_own_loader_typing_at_its_screen_prompt() {
    let scratch = Scratch::new();
    let output = scratch
        .install(&fixture("tiny-screen.toml"), &[])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(
        output.status.success(),
        "install failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("boot check passed"), "{stdout}");
    assert!(
        stderr.contains("with \"the ISO's own boot loader\"")
            && stderr.contains("boot prompt: waiting on the screen for /boot: ?$/")
            && stderr.contains(
                "boot prompt: typing \"install no_timer_check console=ttyS0,115200n8 url=http://10.0.2.100/answers.sh"
            ),
        "{stderr}"
    );

    let parts = mbr_partitions(&scratch.disk());
    assert_eq!(parts.len(), 1, "{parts:?}");
    let (_, _, start, sectors) = parts[0];
    assert_eq!(
        read_from_partition(&scratch.disk(), start, sectors, "/etc/hostname").trim(),
        "tiny"
    );

    let run = scratch.run_dir();
    let args = std::fs::read_to_string(run.join("qemu.args")).unwrap();
    assert!(
        !args.contains("-kernel") && args.contains("ide-cd,drive=installer,bus=ide.1,bootindex=0"),
        "{args}"
    );
    // The loader only drew on the screen: its prompt and the typed entry are in screen.log,
    // not in serial.log; the kernel then spoke on the serial console it was given.
    let screen = std::fs::read_to_string(run.join("screen.log")).unwrap();
    assert!(screen.contains("ISOLINUX 6.04"), "{screen}");
    assert!(
        screen.contains("boot: install no_timer_check console=ttyS0"),
        "{screen}"
    );
    let serial = std::fs::read_to_string(run.join("serial.log")).unwrap();
    assert!(!serial.contains("ISOLINUX"), "{serial}");
    assert!(serial.contains("tiny-installer: installation complete"));
    // The typed keys are input events of the screen's cast.
    let cast = std::fs::read_to_string(run.join("screen.cast")).unwrap();
    let typed: Vec<serde_json::Value> = cast
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &serde_json::Value| e[1] == "i")
        .collect();
    assert_eq!(typed.len(), 1, "{cast}");
    assert!(
        typed[0][2]
            .as_str()
            .unwrap()
            .ends_with("/answers.sh<enter>"),
        "{cast}"
    );
    let status = status_of_run(&scratch);
    assert!(
        status.contains("screen:\n") && status.contains("  | boot: install"),
        "{status}"
    );
    assert!(scratch.qemu_pids().is_empty(), "QEMU left running");
}

/// isolinux's text menu waits with the rescue shell selected: ferry reads the menu on the
/// screen, presses <down> and <tab>, sees the installer's command line to edit (so the arrow
/// key moved the selection), types the serial console and the answers' URL, and the install
/// runs over the serial console to the boot check.
#[test]
fn installs_through_a_text_menu_moving_with_an_arrow_key() {
    let scratch = Scratch::new();
    let output = scratch
        .install(&fixture("tiny-menu.toml"), &[])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(
        output.status.success(),
        "install failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("boot check passed"), "{stdout}");
    assert!(
        stderr.contains("boot menu: typing \"<down><tab>\""),
        "{stderr}"
    );
    let run = scratch.run_dir();
    let screen = std::fs::read_to_string(run.join("screen.log")).unwrap();
    assert!(
        screen.contains("Tiny GNU/Linux boot menu")
            && screen.contains(
                "> .linux /boot/vmlinuz tiny.mode=install quiet initrd=/boot/installer.gz no_time"
            ),
        "{screen}"
    );
    let serial = std::fs::read_to_string(run.join("serial.log")).unwrap();
    assert!(
        serial.contains("tiny-installer: installation complete")
            && !serial.contains("rescue shell"),
        "{serial}"
    );
    let cast = std::fs::read_to_string(run.join("screen.cast")).unwrap();
    let typed: Vec<String> = cast
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e[1] == "i")
        .map(|e| e[2].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        typed,
        [
            "<down><tab>",
            " no_timer_check console=ttyS0,115200n8 url=http://10.0.2.100/answers.sh<enter>"
        ],
        "{cast}"
    );
    assert!(scratch.qemu_pids().is_empty(), "QEMU left running");
}

/// OVMF boots the ISO's El Torito EFI image (GRUB for x86_64-efi); GRUB's menu arrives on the
/// serial console through OVMF's terminal; ferry types `c` and GRUB commands on the keyboard
/// (QMP), GRUB echoes them (so no key was lost), and the kernel they boot runs the install to
/// the boot check.
#[test]
fn installs_through_the_isos_own_uefi_loader_typing_at_grub() {
    let scratch = Scratch::new();
    let output = scratch
        .install(&fixture("tiny-grub-uefi-loader.toml"), &[])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(
        output.status.success(),
        "install failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("boot check passed"), "{stdout}");
    assert!(
        stderr.contains("with \"the ISO's own boot loader\"")
            && stderr.contains("GRUB menu: typing \"c\""),
        "{stderr}"
    );

    let run = scratch.run_dir();
    let args = std::fs::read_to_string(run.join("qemu.args")).unwrap();
    assert!(
        !args.contains("-kernel") && args.contains("OVMF_CODE") && args.contains("bootindex=0"),
        "{args}"
    );
    // GRUB drew its menu and echoed every typed key on the serial console (between cursor
    // moves: without them the typed line reads whole).
    // (OVMF's terminal writes bytes that are not UTF-8: box drawing in its own code page.)
    let serial =
        String::from_utf8_lossy(&std::fs::read(run.join("serial.log")).unwrap()).into_owned();
    let plain = regex::Regex::new(r"\x1b\[[0-9;?]*[A-Za-z]")
        .unwrap()
        .replace_all(&serial, "");
    for echoed in [
        "Tiny Installer 1.0",
        "grub> linux /boot/vmlinuz no_timer_check console=ttyS0,115200n8 url=http://10.0.2.100/answers.sh",
        "grub> initrd /boot/installer.gz",
        "tiny-installer: installation complete",
    ] {
        assert!(plain.contains(echoed), "{echoed:?} missing from:\n{plain}");
    }
    // The keys are input events of the transcript, as typed.
    let cast = std::fs::read_to_string(run.join("transcript.cast")).unwrap();
    let typed: Vec<String> = cast
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e[1] == "i")
        .map(|e| e[2].as_str().unwrap().to_string())
        .collect();
    assert_eq!(typed[0], "c", "{typed:?}");
    assert!(typed[1].ends_with("<enter>boot<enter>"), "{typed:?}");

    // The installed disk: GPT with the ESP holding the removable loader.
    let parts = gpt_partitions(&scratch.disk());
    let listing = fat_listing(&scratch.disk(), parts[0].0, "/EFI/BOOT");
    assert!(listing.contains("/EFI/BOOT/BOOTX64.EFI"), "{listing}");
    assert!(scratch.qemu_pids().is_empty(), "QEMU left running");
}

#[test]
fn a_screen_step_that_never_matches_shows_the_screen() {
    let scratch = Scratch::new();
    let profile = scratch.dir.path().join("stuck.toml");
    std::fs::write(
        &profile,
        format!(
            r#"
[image]
path = "{iso}"
[vm]
memory = "512M"
cpus = 1
accel = "tcg"
[boot]
mode = "loader"
[[steps]]
name = "wait for a menu"
console = "screen"
expect = "Choose an entry"
timeout = "40s"
"#,
            iso = fixture("build/tiny-screen.iso").display()
        ),
    )
    .unwrap();
    let output = scratch.install(&profile, &[]).output().unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(6), "{stdout}\n{stderr}");
    assert!(stderr.contains("step 'wait for a menu'"), "{stderr}");
    assert!(
        stderr.contains("\n  | ISOLINUX 6.04") && stderr.contains("\n  | boot:"),
        "the error should show the last screen:\n{stderr}"
    );
    assert!(scratch.run_dir().join("screen-drive.png").is_file());
    assert!(scratch.qemu_pids().is_empty(), "QEMU left running");
}
