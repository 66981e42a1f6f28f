//! Installs booted through the ISO's own loader, driven on the VGA screen
//! (tests/fixtures/tiny-screen.toml: isolinux with no serial line, waiting at `boot:`).

use std::process::Stdio;

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
                "boot prompt: typing \"install console=ttyS0,115200n8 url=http://10.0.2.100/answers.sh"
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
    assert!(screen.contains("boot: install console=ttyS0"), "{screen}");
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
