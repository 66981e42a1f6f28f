//! The report: what a finished install says (`summary.json`, and the text or JSON that
//! `ferry install` prints), with each stage's duration and the CPU time used.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use super::plan::Plan;
use crate::Error;
use crate::qemu::AccelKind;
use crate::run::{Record, Stage, State};

/// What a finished install reports.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Outcome {
    pub run_dir: PathBuf,
    pub disk: PathBuf,
    pub accel: AccelKind,
    pub stages: Vec<StageTime>,
    /// Seconds from the verify boot's start to the login prompt, when verified.
    pub verified_after: Option<f64>,
    pub cpu: CpuUse,
    /// Records that stopped being written during the run, each as its write error.
    pub records_lost: Vec<String>,
}

/// How long one stage took.
#[derive(Debug, Clone, Copy, Serialize, schemars::JsonSchema)]
pub struct StageTime {
    pub stage: Stage,
    pub seconds: f64,
}

/// What `ferry install --json` prints on stdout, whether the install succeeded or not.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct InstallJson<'a> {
    pub schema_version: u32,
    pub ok: bool,
    /// `finished`, `failed` or `interrupted`.
    pub state: State,
    /// ferry's exit code (docs/exit-codes).
    pub exit_code: i32,
    /// What failed, secrets redacted; null when ok.
    pub error: Option<&'a str>,
    pub run_dir: &'a Path,
    /// The stages, their durations and the boot check; null when the install failed.
    pub outcome: Option<&'a Outcome>,
}

impl InstallJson<'_> {
    pub fn text(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }
}

impl Outcome {
    /// What `ferry install` prints on stdout when the install succeeded.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let mut println = |line: String| {
            out.push_str(&line);
            out.push('\n');
        };
        match self.verified_after {
            Some(secs) => println(format!(
                "installed onto {}; boot check passed (login prompt {secs:.1}s after power-on)",
                self.disk.display()
            )),
            None => println(format!(
                "installed onto {}; boot check skipped (the profile disables it)",
                self.disk.display()
            )),
        }
        for StageTime { stage, seconds } in &self.stages {
            println(format!("  {stage:<7} {seconds:>7.1}s"));
        }
        println(format!("  run directory: {}", self.run_dir.display()));
        for lost in &self.records_lost {
            println(format!(
                "  warning: {lost}; the run's record stops there (the install itself went on)"
            ));
        }
        out
    }
}

/// Each stage's duration, taken as the flow passes from one to the next.
pub struct Laps {
    stages: Vec<StageTime>,
    since: Instant,
}

impl Laps {
    pub fn start() -> Laps {
        Laps {
            stages: Vec::new(),
            since: Instant::now(),
        }
    }

    /// `stage` ended now.
    pub fn lap(&mut self, stage: Stage) {
        self.stages.push(StageTime {
            stage,
            seconds: self.since.elapsed().as_secs_f64(),
        });
        self.since = Instant::now();
    }

    /// A stage timed elsewhere, before the others.
    pub fn prepend(&mut self, stage: Stage, seconds: f64) {
        self.stages.insert(0, StageTime { stage, seconds });
    }

    pub fn outcome(
        self,
        plan: &Plan,
        accel: AccelKind,
        verified_after: Option<f64>,
        record: &Record,
    ) -> Outcome {
        Outcome {
            run_dir: record.dir.path().to_path_buf(),
            disk: plan.disk.target.path.clone(),
            accel,
            stages: self.stages,
            verified_after,
            cpu: CpuUse::now(),
            records_lost: record.losses.list(),
        }
    }
}

/// CPU time used by ferry itself and by the QEMU processes it ran. Under TCG every cycle
/// ferry spends is taken from the guest, so this is worth watching.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct CpuUse {
    pub ferry_seconds: f64,
    pub qemu_seconds: f64,
}

impl CpuUse {
    /// Measured with getrusage: QEMU's time counts once its process has been reaped.
    pub fn now() -> CpuUse {
        use nix::sys::resource::{UsageWho, getrusage};
        let seconds = |who| {
            getrusage(who).map_or(0.0, |u| {
                let t =
                    |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
                t(u.user_time()) + t(u.system_time())
            })
        };
        CpuUse {
            ferry_seconds: seconds(UsageWho::RUSAGE_SELF),
            qemu_seconds: seconds(UsageWho::RUSAGE_CHILDREN),
        }
    }
}

/// Writes `summary.json` (how the run ended and how long each stage took) and logs the end.
pub fn summarize(
    profile: &Path,
    disk: &Path,
    planned: f64,
    result: &Result<Outcome, Error>,
    record: &Record,
) -> Result<(), Error> {
    let summary = Summary {
        schema_version: crate::run::events::SCHEMA_VERSION,
        profile,
        disk,
        ok: result.is_ok(),
        state: match result {
            Ok(_) => State::Finished,
            Err(Error::Interrupted) => State::Interrupted,
            Err(_) => State::Failed,
        },
        error: result.as_ref().err().map(ToString::to_string),
        plan_seconds: planned,
        outcome: result.as_ref().ok(),
        run_dir: record.dir.path(),
        records_lost: record.losses.list(),
    };
    record.write_json(&record.dir.summary(), &summary)?;
    match result {
        Ok(_) => tracing::info!("install finished and verified"),
        Err(e) => tracing::error!("install failed: {e}"),
    }
    Ok(())
}

/// `summary.json`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Summary<'a> {
    schema_version: u32,
    profile: &'a Path,
    disk: &'a Path,
    ok: bool,
    /// `finished`, `failed` or `interrupted`.
    state: State,
    error: Option<String>,
    plan_seconds: f64,
    outcome: Option<&'a Outcome>,
    run_dir: &'a Path,
    /// Records that stopped being written, failed run or not.
    records_lost: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_are_objects_in_the_json() {
        let outcome = Outcome {
            run_dir: "/runs/r".into(),
            disk: "/dev/sda".into(),
            accel: AccelKind::Tcg,
            stages: vec![StageTime {
                stage: Stage::Boot,
                seconds: 0.5,
            }],
            verified_after: None,
            cpu: CpuUse {
                ferry_seconds: 1.0,
                qemu_seconds: 2.0,
            },
            records_lost: vec![
                "cannot write /runs/r/serial.log: No space left on device (os error 28)".into(),
            ],
        };
        let json = serde_json::to_value(&outcome).unwrap();
        assert_eq!(
            json["stages"],
            serde_json::json!([{"stage": "boot", "seconds": 0.5}])
        );
        assert!(
            outcome.text().contains("  boot        0.5s"),
            "{}",
            outcome.text()
        );
        assert!(
            outcome.text().contains(
                "  warning: cannot write /runs/r/serial.log: No space left on device (os error 28); \
                 the run's record stops there"
            ),
            "{}",
            outcome.text()
        );
        assert_eq!(json["records_lost"][0], outcome.records_lost[0].as_str());
    }
}
