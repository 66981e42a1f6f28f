//! Bounded input: what the operator sees when a profile, a file argument or `--disk`/`--size`
//! is out of range. Each refusal is one line naming the field or path and the limit.

use std::path::Path;
use std::process::Output;

use crate::support::{Scratch, ferry};

/// `ferry plan PROFILE --disk D --size 2G` under a scratch directory.
fn plan(scratch: &Scratch, profile: &Path, extra: &[&str]) -> Output {
    ferry()
        .arg("plan")
        .arg(profile)
        .arg("--disk")
        .arg(scratch.disk())
        .args(["--size", "2G"])
        .args(extra)
        .output()
        .unwrap()
}

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
        let out = plan(&scratch, &p, &[]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.trim_end().ends_with(at), "{err}");
    }
}
