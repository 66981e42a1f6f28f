//! `ferry plan --render DIR` against a real install of the tiny fixture (TCG): the answer
//! files, kernel command line and QEMU command line it writes are what the install serves and
//! runs; the run directory keeps what was served, and the bundle holds it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::support::*;

/// In the answer file; the installer echoes its HOSTNAME on the serial console.
const SECRET: &str = "R3nderS3cret";

fn profile(scratch: &Scratch) -> PathBuf {
    scratch.tiny_profile(
        "render.toml",
        &(r#"
[[files]]
name = "answers.sh"
content = "DISK={{ disk.guest_path }}\nHOSTNAME={{ secrets.host }}\n"
[defaults]
fail = ["tiny-installer: ERROR"]
"#
        .to_string()
            + &tiny_install_steps("3m")
            + "[finish]\nverify = { enabled = false }\n"),
    )
}

/// `ferry plan PROFILE --render DIR` with the install's options, plus `extra`.
fn render(scratch: &Scratch, profile: &Path, dir: &Path, extra: &[&str]) -> (bool, String) {
    let out = ferry()
        .arg("plan")
        .arg(profile)
        .arg("--disk")
        .arg(scratch.disk())
        .args(["--size", "2G", "--secret", &format!("host={SECRET}")])
        .arg("--render")
        .arg(dir)
        .args(extra)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    (out.status.success(), format!("{stdout}{stderr}"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn plan_render_writes_what_the_install_serves_and_runs() {
    let scratch = Scratch::new();
    let profile = profile(&scratch);
    let masked = scratch.dir.path().join("rendered");
    let (ok, output) = render(&scratch, &profile, &masked, &[]);
    assert!(ok, "{output}");
    assert!(
        output.contains("files/answers.sh, cmdline, qemu.args"),
        "{output}"
    );
    // Nothing but DIR: no disk image yet.
    assert!(!scratch.disk().exists());
    assert_eq!(mode(&masked), 0o700);
    for name in ["files/answers.sh", "cmdline", "qemu.args"] {
        assert_eq!(mode(&masked.join(name)), 0o600, "{name}");
    }
    let answers = read(&masked.join("files/answers.sh"));
    assert_eq!(answers, "DISK=/dev/vda\nHOSTNAME=[redacted]\n");
    let cmdline = read(&masked.join("cmdline"));
    assert!(
        cmdline.contains("url=http://10.0.2.100/answers.sh"),
        "{cmdline}"
    );

    // A directory that is not empty is refused, and left as it was, unless --force.
    let (ok, output) = render(&scratch, &profile, &masked, &["--show-secrets"]);
    assert!(!ok);
    assert!(
        output.contains("not empty") && output.contains("--force"),
        "{output}"
    );
    assert_eq!(read(&masked.join("files/answers.sh")), answers);
    let shown = scratch.dir.path().join("shown");
    std::fs::create_dir(&shown).unwrap();
    std::fs::write(shown.join("old"), "").unwrap();
    let (ok, output) = render(&scratch, &profile, &shown, &["--show-secrets", "--force"]);
    assert!(ok, "{output}");
    assert_eq!(
        read(&shown.join("files/answers.sh")),
        format!("DISK=/dev/vda\nHOSTNAME={SECRET}\n")
    );

    let out = scratch
        .install(&profile, &["--secret", &format!("host={SECRET}")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    let run = scratch.run_dir();

    // The run directory keeps the files as served, masked as the render is; the guest read
    // that file (it echoes the hostname, redacted in the serial log).
    let kept = run.join("answers/answers.sh");
    assert_eq!(mode(&kept), 0o600);
    assert_eq!(read(&kept), answers);
    let serial = read(&run.join("serial.log"));
    assert!(
        serial.contains("answers: DISK=/dev/vda HOSTNAME=[redacted] "),
        "{serial}"
    );

    // QEMU's command line is the install's but for the run directory's paths: the kernel and
    // initrd copied out of the ISO and the serial, QMP and answer sockets live in the run
    // directory, which --render names DIR in its place (the run's id is its start time).
    let rendered = read(&masked.join("qemu.args"));
    let ran = read(&run.join("qemu.args"));
    assert_ne!(rendered, ran);
    assert_eq!(
        rendered.replace(masked.to_str().unwrap(), run.to_str().unwrap()),
        ran
    );
    // The kernel command line is the one the install booted (given over QMP, not in argv).
    let plan: serde_json::Value = serde_json::from_str(&read(&run.join("plan.json"))).unwrap();
    assert_eq!(
        cmdline.trim_end(),
        plan["boot"]["cmdline"].as_str().unwrap(),
    );

    // The bundle holds the served files.
    let unpacked = unpacked_bundle(&scratch, &run, "bundle");
    let id = run.file_name().unwrap();
    assert_eq!(read(&unpacked.join(id).join("answers/answers.sh")), answers);
}

/// The names in `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn plan_render_under_uefi_names_the_variable_store_and_copies_nothing() {
    let scratch = Scratch::new();
    let profile = profile(&scratch);
    let text = read(&profile).replace("cpus = 1\n", "cpus = 1\nfirmware = \"uefi\"\n");
    std::fs::write(&profile, text).unwrap();
    let dir = scratch.dir.path().join("rendered");
    let (ok, output) = render(&scratch, &profile, &dir, &[]);
    assert!(ok, "{output}");
    // The install's QEMU runs with its own variable store and the ISO's kernel in the run
    // directory; rendering names them in DIR without copying either.
    let args = read(&dir.join("qemu.args"));
    for file in ["install-efivars.fd", "kernel", "initrd"] {
        let path = dir.join(file);
        assert!(args.contains(path.to_str().unwrap()), "{file} in {args}");
    }
    assert_eq!(entries(&dir), ["cmdline", "files", "qemu.args"]);
    assert_eq!(entries(&dir.join("files")), ["answers.sh"]);
    assert!(!scratch.disk().exists());
}

#[test]
fn plan_render_of_an_image_not_downloaded_says_to_fetch_it_and_writes_nothing() {
    let scratch = Scratch::new();
    let profile = scratch.dir.path().join("remote.toml");
    let sha = "0".repeat(64);
    std::fs::write(
        &profile,
        format!(
            "[image]\nurl = \"http://127.0.0.1:9/none.iso\"\nsha256 = \"{sha}\"\n[vm]\naccel = \"tcg\"\n"
        ),
    )
    .unwrap();
    let dir = scratch.dir.path().join("rendered");
    let out = ferry()
        .arg("plan")
        .arg(&profile)
        .arg("--disk")
        .arg(scratch.disk())
        .args(["--size", "2G", "--cache-dir"])
        .arg(scratch.dir.path().join("cache"))
        .arg("--render")
        .arg(&dir)
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("not downloaded yet") && stderr.contains("ferry fetch"),
        "{stderr}"
    );
    assert!(!dir.exists());
}
