//! `events.jsonl` (append-only, one JSON object a line: what the foreground and `ferry logs`
//! follow) and `status.json` (the run's current state, rewritten on every event: what
//! `ferry runs` and `ferry status` read).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{RunDir, Secrets, Stage};

/// The version of the JSON ferry writes (`events.jsonl`, `status.json`, every `--json`
/// output): raised when a field changes meaning or goes away, not when one is added.
pub const SCHEMA_VERSION: u32 = 1;

/// A point in time, written as RFC 3339 UTC (`2026-12-01T06:48:03Z`). Reads the seconds since
/// the epoch that status.json held before `schema_version` 1 too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(SystemTime);

impl Timestamp {
    pub fn now() -> Timestamp {
        Timestamp(SystemTime::now())
    }

    /// Whole seconds from `earlier` to this one (0 if `earlier` is later).
    pub fn since(self, earlier: Timestamp) -> Duration {
        let secs = self.0.duration_since(earlier.0).map_or(0, |d| d.as_secs());
        Duration::from_secs(secs)
    }

    pub fn epoch_seconds(self) -> u64 {
        self.0.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
    }
}

impl From<SystemTime> for Timestamp {
    fn from(time: SystemTime) -> Timestamp {
        Timestamp(time)
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", humantime::format_rfc3339_seconds(self.0))
    }
}

string_schema!(Timestamp, {
    "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$",
    "description": "RFC 3339, UTC, to the second",
});

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Text(String),
            EpochSeconds(u64),
        }
        match Written::deserialize(deserializer)? {
            Written::Text(text) => humantime::parse_rfc3339_weak(&text)
                .map(Timestamp)
                .map_err(|e| serde::de::Error::custom(format!("{text:?}: {e}"))),
            Written::EpochSeconds(secs) => Ok(Timestamp(UNIX_EPOCH + Duration::from_secs(secs))),
        }
    }
}

/// A line of `events.jsonl`: the event, when it happened, and the format's version.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Line {
    pub schema_version: u32,
    pub time: Timestamp,
    #[serde(flatten)]
    pub event: Event,
}

/// What happened (one line of `events.jsonl`, with its time).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Event {
    /// The supervisor runs.
    Started { pid: u32 },
    /// A progress line (what the foreground prints).
    Progress { stage: Stage, message: String },
    /// A step of `stage` begins: step `index` of `count` (from 1), waiting at most
    /// `timeout_seconds` (what the foreground's status line shows).
    Step {
        stage: Stage,
        name: String,
        index: usize,
        count: usize,
        timeout_seconds: f64,
    },
    /// A download of the fetch stage goes on: `done_bytes` of `url` are in, of `total_bytes`
    /// (null when the server did not say), at `bytes_per_second` on average since the transfer
    /// (re)started. Comes when a transfer starts, then once a second while bytes flow and
    /// for every 1 % of the file (what the foreground's status line shows); a `progress`
    /// event ends it.
    Download {
        url: String,
        done_bytes: u64,
        total_bytes: Option<u64>,
        bytes_per_second: u64,
    },
    /// A step failed and the VM was left running (`--on-failure pause`).
    Paused { step: String, message: String },
    /// The operator resumed a paused run.
    Resumed { step: String },
    /// The install ended: `code` is ferry's exit code, `stdout` what the foreground prints on
    /// stdout, `error` what it prints on stderr.
    End {
        code: i32,
        state: State,
        stdout: String,
        error: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum State {
    Running,
    Paused,
    Finished,
    Failed,
    Interrupted,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Paused => "paused",
            State::Finished => "finished",
            State::Failed => "failed",
            State::Interrupted => "interrupted",
        }
    }
}

impl State {
    const ALL: [State; 5] = [
        State::Running,
        State::Paused,
        State::Finished,
        State::Failed,
        State::Interrupted,
    ];
}

impl From<State> for &'static str {
    fn from(state: State) -> &'static str {
        state.as_str()
    }
}

impl TryFrom<String> for State {
    type Error = String;
    fn try_from(text: String) -> Result<State, String> {
        State::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| format!("unknown state {text:?}"))
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// `status.json`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Status {
    /// Missing in status.json from before schema_version 1.
    #[serde(default)]
    pub schema_version: u32,
    pub run_dir: PathBuf,
    pub profile: PathBuf,
    pub disk: PathBuf,
    pub pid: u32,
    pub state: State,
    pub stage: Stage,
    /// The last progress line: the current step and what it waits for.
    pub step: String,
    pub started: Timestamp,
    pub updated: Timestamp,
    pub exit_code: Option<i32>,
}

/// Appends to `events.jsonl` and keeps `status.json` current. Cheap to clone; a default
/// (`Events::none()`) records nothing.
#[derive(Clone, Default)]
pub struct Events(Option<Arc<Mutex<Recorder>>>);

struct Recorder {
    file: File,
    dir: PathBuf,
    status: Status,
    secrets: Secrets,
}

impl Events {
    /// Records nothing (`ferry plan`, tests).
    pub fn none() -> Events {
        Events(None)
    }

    /// Starts recording this process's events into `run_dir`.
    pub fn start(run_dir: &RunDir, profile: &Path, disk: &Path) -> std::io::Result<Events> {
        let file = File::options()
            .create(true)
            .append(true)
            .open(run_dir.events())?;
        let pid = std::process::id();
        let status = Status {
            schema_version: SCHEMA_VERSION,
            run_dir: run_dir.path().to_path_buf(),
            profile: profile.to_path_buf(),
            disk: disk.to_path_buf(),
            pid,
            state: State::Running,
            stage: Stage::Plan,
            step: String::new(),
            started: Timestamp::now(),
            updated: Timestamp::now(),
            exit_code: None,
        };
        let events = Events(Some(Arc::new(Mutex::new(Recorder {
            file,
            dir: run_dir.path().to_path_buf(),
            status,
            secrets: Secrets::default(),
        }))));
        events.emit(&Event::Started { pid });
        Ok(events)
    }

    /// Redacts `secrets` from every later event and status (they are known once the profile
    /// is loaded, after the first event).
    pub fn redact(&self, secrets: &Secrets) {
        if let Some(recorder) = &self.0 {
            recorder.lock().unwrap_or_else(|e| e.into_inner()).secrets = secrets.clone();
        }
    }

    /// Appends `event` and updates `status.json`, secret values redacted.
    pub fn emit(&self, event: &Event) {
        let Some(recorder) = &self.0 else {
            return;
        };
        let mut rec = recorder.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            Event::Started { .. } => {}
            Event::Progress { stage, message } => {
                rec.status.stage = *stage;
                rec.status.step.clone_from(message);
            }
            Event::Step { stage, .. } => rec.status.stage = *stage,
            Event::Download { .. } => rec.status.stage = Stage::Fetch,
            Event::Paused { message, .. } => {
                rec.status.state = State::Paused;
                rec.status.step.clone_from(message);
            }
            Event::Resumed { .. } => rec.status.state = State::Running,
            Event::End {
                code, state, error, ..
            } => {
                rec.status.state = *state;
                rec.status.exit_code = Some(*code);
                // The last step's line would be stale: say how the run ended instead.
                rec.status.step = error
                    .as_deref()
                    .and_then(|e| e.lines().next())
                    .unwrap_or(state.as_str())
                    .to_string();
            }
        }
        let time = Timestamp::now();
        rec.status.updated = time;
        let line = LineRef {
            schema_version: SCHEMA_VERSION,
            time,
            event,
        };
        if let Ok(mut line) = rec.secrets.to_json(&line, false) {
            line.push('\n');
            if let Err(e) = rec.file.write_all(line.as_bytes()) {
                tracing::warn!("events.jsonl: {e}");
            }
        }
        if let Err(e) = write_status(&RunDir::at(&rec.dir), &rec.status, &rec.secrets) {
            tracing::warn!("status.json: {e}");
        }
    }
}

/// [`Line`] as written, borrowing its event.
#[derive(Serialize)]
struct LineRef<'a> {
    schema_version: u32,
    time: Timestamp,
    #[serde(flatten)]
    event: &'a Event,
}

fn write_status(dir: &RunDir, status: &Status, secrets: &Secrets) -> std::io::Result<()> {
    let path = dir.status();
    let tmp = path.with_file_name(".status.json.tmp");
    let text = secrets.to_json(status, true)?;
    std::fs::write(&tmp, text + "\n")?;
    std::fs::rename(&tmp, path)
}

pub fn read_status(dir: &RunDir) -> Option<Status> {
    let text = std::fs::read_to_string(dir.status()).ok()?;
    serde_json::from_str(&text).ok()
}

/// Reads the lines appended to `events.jsonl` since `offset` (complete lines only), and
/// returns them with the new offset.
pub fn read_from(dir: &RunDir, offset: u64) -> std::io::Result<(Vec<Line>, u64)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = match File::open(dir.events()) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), offset)),
        Err(e) => return Err(e),
    };
    file.seek(SeekFrom::Start(offset))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    let events = bytes[..complete]
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| serde_json::from_slice::<Line>(l).ok())
        .collect();
    Ok((events, offset + complete as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// serde's names (what the JSON and its schema say) are the names ferry reads back.
    #[test]
    fn states_and_stages_are_written_as_they_are_read() {
        for state in State::ALL {
            let json = serde_json::to_value(state).unwrap();
            assert_eq!(json, state.as_str());
            assert_eq!(serde_json::from_value::<State>(json).unwrap(), state);
        }
        for stage in Stage::ALL {
            let json = serde_json::to_value(stage).unwrap();
            assert_eq!(json, stage.as_str());
            assert_eq!(serde_json::from_value::<Stage>(json).unwrap(), stage);
        }
    }

    #[test]
    fn timestamps_are_rfc3339_and_old_epoch_seconds_still_read() {
        let t: Timestamp = serde_json::from_str("1764571683").unwrap();
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            "\"2025-12-01T06:48:03Z\""
        );
        let back: Timestamp = serde_json::from_str("\"2025-12-01T06:48:03Z\"").unwrap();
        assert_eq!(back, t);
        let bad = serde_json::from_str::<Timestamp>("\"yesterday\"").unwrap_err();
        assert!(bad.to_string().contains("yesterday"), "{bad}");
    }

    #[test]
    fn event_lines_carry_version_and_time_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::at(dir.path());
        let events = Events::start(&run, Path::new("p.toml"), Path::new("d.img")).unwrap();
        events.emit(&Event::Resumed { step: "s".into() });
        let text = std::fs::read_to_string(run.events()).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
        assert_eq!(line["schema_version"], SCHEMA_VERSION);
        assert_eq!(line["event"], "resumed");
        assert!(line["time"].as_str().unwrap().ends_with('Z'), "{line}");
        let (read, _) = read_from(&run, 0).unwrap();
        assert!(matches!(&read[1].event, Event::Resumed { step } if step == "s"));
        let status = read_status(&run).unwrap();
        assert_eq!(status.schema_version, SCHEMA_VERSION);
    }
}
