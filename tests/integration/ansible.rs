//! contrib/ansible: the `ferry_install` role run by ansible-core (PyPI, installed by
//! scripts/install-deps.sh) against two hosts at once — both this machine over the local
//! connection, each with its own disk image, directory and runs directory — one installing the
//! fixture ISO, the other with a profile whose first step fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;

const ANSIBLE_PLAYBOOK: &str = "/opt/ferry-ansible/bin/ansible-playbook";

/// A profile in its own directory (the role copies the directory), next to the fixture's
/// answer-file template it names by a relative path.
fn host_dir(scratch: &Scratch, host: &str, steps: &str) -> PathBuf {
    let dir = scratch.dir.path().join(host);
    std::fs::create_dir_all(dir.join("profile")).unwrap();
    std::fs::copy(fixture("answers.sh.j2"), dir.join("profile/answers.sh.j2")).unwrap();
    scratch.tiny_profile(
        &format!("{host}/profile/install.toml"),
        &format!(
            r#"[vars]
hostname = "{host}"
[[files]]
name = "answers.sh"
template = "answers.sh.j2"
[defaults]
fail = ["tiny-installer: ERROR"]
{steps}"#
        ),
    );
    dir
}

fn host_vars(dir: &Path) -> String {
    format!(
        "ferry_remote_dir: {d}/remote\n        ferry_profile: {d}/profile/install.toml\n        \
         ferry_disk: {d}/disk.img\n        ferry_runs_dir: {d}/runs\n        \
         ferry_install_args: [--size, 2G]\n        ferry_poll_seconds: 1\n        ferry_timeout_seconds: 600",
        d = dir.display()
    )
}

#[test]
fn the_role_installs_two_hosts_and_fetches_the_failed_ones_bundle() {
    let scratch = Scratch::new();
    let ok = host_dir(
        &scratch,
        "web1",
        r#"[[steps]]
name = "confirm the disk"
expect = "[yes/no]: "
send = "yes\n"
timeout = "5m"
[[steps]]
name = "installation"
expect = "tiny-installer: installation complete"
timeout = "5m"
[finish]
verify = { expect = "/login: ?($|\\[)/", timeout = "5m" }
"#,
    );
    let failing = host_dir(
        &scratch,
        "web2",
        r#"[[steps]]
name = "wait for the impossible"
expect = "this text never appears"
timeout = "2s"
"#,
    );
    let bundles = scratch.dir.path().join("bundles");
    let inventory = scratch.dir.path().join("inventory.yml");
    std::fs::write(
        &inventory,
        format!(
            "rescue:\n  vars:\n    ansible_connection: local\n    \
             ansible_python_interpreter: /usr/bin/python3\n    ferry_binary: {ferry}\n    \
             ferry_bundle_dir: {bundles}\n  hosts:\n    web1:\n        {ok}\n    web2:\n        {failing}\n",
            ferry = env!("CARGO_BIN_EXE_ferry"),
            bundles = bundles.display(),
            ok = host_vars(&ok),
            failing = host_vars(&failing),
        ),
    )
    .unwrap();
    let output = Command::new(ANSIBLE_PLAYBOOK)
        .arg("-i")
        .arg(&inventory)
        .arg(repo().join("contrib/ansible/playbook.yml"))
        .args(["--forks", "2"])
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_LOCAL_TEMP", scratch.dir.path().join("ansible-tmp"))
        .env("ANSIBLE_HOME", scratch.dir.path().join("ansible-home"))
        .output()
        .expect("ansible-core (scripts/install-deps.sh)");
    let (stdout, stderr) = text(&output);
    // ansible-playbook exits 2 when a host failed.
    assert_eq!(output.status.code(), Some(2), "{stdout}\n{stderr}");
    let recap = stdout.split("PLAY RECAP").nth(1).unwrap_or_default();
    let line = |host: &str| {
        recap
            .lines()
            .find(|l| l.starts_with(host))
            .unwrap_or_else(|| panic!("{host} not in the recap:\n{stdout}"))
            .to_string()
    };
    assert!(line("web1").contains("failed=0"), "{stdout}");
    assert!(line("web2").contains("failed=1"), "{stdout}");
    assert!(
        stdout.contains("finished and its boot check passed"),
        "{stdout}"
    );
    assert!(stdout.contains("wait for the impossible"), "{stdout}");

    // web1's disk holds the installed system; web2's bundle reached the controller.
    let web1_run = std::fs::read_dir(ok.join("runs"))
        .unwrap()
        .flatten()
        .next()
        .unwrap();
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(web1_run.path().join("summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["state"], "finished", "{summary}");
    let fetched: Vec<PathBuf> = std::fs::read_dir(&bundles)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(fetched.len(), 1, "{fetched:?}");
    let name = fetched[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        name.starts_with("web2-") && name.ends_with(".tar.gz"),
        "{name}"
    );
    let listing = Command::new("tar")
        .arg("tzf")
        .arg(&fetched[0])
        .output()
        .unwrap();
    assert!(
        text(&listing).0.contains("/serial.log"),
        "{}",
        text(&listing).0
    );
    assert!(scratch.qemu_pids().is_empty());
}
