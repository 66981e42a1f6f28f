//! The JSON contracts: `schema_version`, RFC 3339 times and objects in every `--json` output
//! and in `events.jsonl`; `install --json` reports a failure too and keeps stderr's progress.

use crate::support::{Scratch, assert_schema, ferry, fixture, text};

fn is_rfc3339_utc(value: &serde_json::Value) -> bool {
    let Some(t) = value.as_str() else {
        return false;
    };
    let b = t.as_bytes();
    t.len() == 20
        && b[4] == b'-'
        && b[10] == b'T'
        && b[19] == b'Z'
        && t.chars().filter(char::is_ascii_digit).count() == 14
}

fn json(stdout: &[u8]) -> serde_json::Value {
    serde_json::from_slice(stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(stdout)))
}

#[test]
fn failed_install_reports_json_and_its_run_is_listed_with_rfc3339_times() {
    let scratch = Scratch::new();
    let profile = scratch.tiny_profile(
        "fail.toml",
        &format!(
            r#"
[vars]
hostname = "tiny"
[[files]]
name = "answers.sh"
template = "{template}"
[[steps]]
name = "wait for the impossible"
expect = "this text never appears"
timeout = "3s"
"#,
            template = fixture("answers.sh.j2").display()
        ),
    );
    let out = scratch
        .install(&profile, &["--json", "--on-failure", "abort"])
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    let summary = json(&out.stdout);
    assert_schema("install", &String::from_utf8_lossy(&out.stdout), false);
    assert_eq!(summary["schema_version"], 1, "{summary}");
    assert_eq!(summary["ok"], false, "{summary}");
    assert_eq!(summary["state"], "failed", "{summary}");
    assert_eq!(summary["exit_code"], 6, "{summary}");
    assert!(summary["outcome"].is_null(), "{summary}");
    let error = summary["error"].as_str().unwrap();
    assert!(error.contains("wait for the impossible"), "{summary}");
    // --json is for stdout: the progress lines still reach stderr.
    assert!(stderr.contains("ferry: boot "), "{stderr}");
    assert!(stderr.contains(error), "{stderr}");

    let run_dir = scratch.run_dir();
    let run = run_dir.file_name().unwrap().to_str().unwrap().to_string();
    assert_eq!(summary["run_dir"], run_dir.to_str().unwrap());
    let events = std::fs::read_to_string(run_dir.join("events.jsonl")).unwrap();
    assert_schema("event", &events, true);
    for (schema, file) in [("status-file", "status.json"), ("summary", "summary.json")] {
        assert_schema(
            schema,
            &std::fs::read_to_string(run_dir.join(file)).unwrap(),
            false,
        );
    }
    for line in events.lines() {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(event["schema_version"], 1, "{line}");
        assert!(is_rfc3339_utc(&event["time"]), "{line}");
        assert!(event["event"].is_string(), "{line}");
    }
    assert!(events.lines().last().unwrap().contains(r#""event":"end""#));
    // Each drive step announces itself with its number and timeout (the status line's source).
    let step = events
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["event"] == "step")
        .unwrap_or_else(|| panic!("a step event in {events}"));
    assert_eq!(step["name"], "wait for the impossible", "{step}");
    assert_eq!(
        (step["index"].as_u64(), step["count"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(step["timeout_seconds"], 3.0, "{step}");

    let listed = ferry()
        .args(["runs", "--json", "--runs-dir"])
        .arg(scratch.runs())
        .output()
        .unwrap();
    assert!(listed.status.success(), "{}", text(&listed).1);
    assert_schema("runs", &text(&listed).0, false);
    let listed = json(&listed.stdout);
    assert_eq!(listed["schema_version"], 1, "{listed}");
    let runs = listed["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{listed}");
    assert_eq!(runs[0]["run"], run.as_str());
    assert_eq!(runs[0]["status"]["state"], "failed", "{listed}");
    assert!(is_rfc3339_utc(&runs[0]["status"]["started"]), "{listed}");

    let status = ferry()
        .args(["status", &run, "--json", "--runs-dir"])
        .arg(scratch.runs())
        .output()
        .unwrap();
    assert_schema("status", &text(&status).0, false);
    let status = json(&status.stdout);
    assert_eq!(status["schema_version"], 1, "{status}");
    assert!(is_rfc3339_utc(&status["started"]), "{status}");
    assert!(is_rfc3339_utc(&status["updated"]), "{status}");
    assert_eq!(status["exit_code"], 6, "{status}");
}

/// The outputs that need no run: each validates against its schema in docs/json/.
#[test]
fn plan_images_inspect_and_doctor_json_match_their_schemas() {
    let scratch = Scratch::new();
    let plan = ferry()
        .arg("plan")
        .arg(fixture("tiny.toml"))
        .arg("--disk")
        .arg(scratch.disk())
        .args(["--size", "2G", "--json"])
        .output()
        .unwrap();
    assert!(plan.status.success(), "{}", text(&plan).1);
    assert_schema("plan", &text(&plan).0, false);
    assert_eq!(json(&plan.stdout)["schema_version"], 1);
    let images = ferry().args(["images", "--json"]).output().unwrap();
    assert_schema("images", &text(&images).0, false);
    let images = json(&images.stdout);
    assert!(images["entries"].as_array().is_some_and(|e| !e.is_empty()));
    let inspect = ferry()
        .arg("inspect")
        .arg(fixture("build/tiny-isolinux.iso"))
        .arg("--json")
        .output()
        .unwrap();
    assert_schema("inspect", &text(&inspect).0, false);
    let doctor = ferry()
        .args(["doctor", "--json", "--no-probe"])
        .output()
        .unwrap();
    assert_schema("doctor", &text(&doctor).0, false);
}
