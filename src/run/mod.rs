//! The run record: the run directory and everything written into it while a run goes on —
//! its file names ([`RunDir`]), its events and status ([`events`]), the redaction of secret
//! values ([`secrets`]), the flow's [`Stage`]s and the [`StopFlag`]. Used by `install` (which
//! records) and `ops` (which reads, follows and bundles) alike; imports nothing above it.
//!
//! ```text
//! RUNS/20261124-213012-tiny/
//!   request.json (0600)  supervisor.log  ferry.log  events.jsonl  status.json
//!   facts.json  plan.json  qemu.args  qemu.stderr  serial.log  transcript.cast  control.sock
//!   install-efivars.fd  verify-efivars.fd  screen-STAGE.png  summary.json
//!   verify/ (qemu.args, qemu.stderr, serial.log, transcript.cast of the boot check)
//! ```

pub mod events;
pub mod secrets;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use events::{Event, Events, State, Status};
pub use secrets::Secrets;

use crate::console::Sink;

/// The stages of the flow, as events, errors and `ferry status` name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum Stage {
    Plan,
    Fetch,
    Boot,
    Drive,
    Finish,
    Verify,
    /// Not a stage of the flow: the interruption (Ctrl-C, `ferry stop`) while any runs.
    Stop,
}

impl Stage {
    const ALL: [Stage; 7] = [
        Stage::Plan,
        Stage::Fetch,
        Stage::Boot,
        Stage::Drive,
        Stage::Finish,
        Stage::Verify,
        Stage::Stop,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Plan => "plan",
            Stage::Fetch => "fetch",
            Stage::Boot => "boot",
            Stage::Drive => "drive",
            Stage::Finish => "finish",
            Stage::Verify => "verify",
            Stage::Stop => "stop",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl From<Stage> for &'static str {
    fn from(stage: Stage) -> &'static str {
        stage.as_str()
    }
}

impl TryFrom<String> for Stage {
    type Error = String;
    fn try_from(text: String) -> Result<Stage, String> {
        Stage::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| format!("unknown stage {text:?}"))
    }
}

/// Set when the run is to stop (a signal, `ferry stop`): the flow checks it between steps
/// and reports the interruption instead of the failure it caused.
#[derive(Debug, Clone, Default)]
pub struct StopFlag(Arc<Mutex<bool>>);

impl StopFlag {
    fn lock(&self) -> MutexGuard<'_, bool> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// Raises the flag; waits for an [`Self::unless_raised`] action under way to finish, so
    /// whatever the caller records after this comes after that action.
    pub fn raise(&self) {
        *self.lock() = true;
    }
    pub fn is_raised(&self) -> bool {
        *self.lock()
    }
    /// Runs `act` unless the flag is raised, holding the flag meanwhile: nothing `act` sends
    /// can follow a stop. `act` must be quick (one write to the guest), as a stop waits for it.
    pub fn unless_raised<R>(&self, act: impl FnOnce() -> R) -> Option<R> {
        let raised = self.lock();
        (!*raised).then(act)
    }
}

/// A run name as it may appear in a directory name and on a terminal: ASCII letters, digits,
/// `.`, `_` and `-` (anything else, such as a newline or an escape code in a profile's file
/// name, becomes `_`), at most 64 characters, never empty or starting with a dot.
pub fn safe_name(name: &str) -> String {
    let safe: String = name
        .chars()
        .take(64)
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '_' | '-' => c,
            _ => '_',
        })
        .collect();
    match safe.trim_start_matches('.') {
        "" => "run".to_string(),
        rest => rest.to_string(),
    }
}

/// One run's directory: the one place that knows its files' names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir(PathBuf);

impl RunDir {
    pub fn at(path: impl Into<PathBuf>) -> RunDir {
        RunDir(path.into())
    }

    /// Creates a fresh, uniquely named run directory under `root`: `YYYYMMDD-HHMMSS-NAME` (UTC),
    /// mode 0700 (and `root` too if it is created here), NAME in [`safe_name`]'s characters.
    pub fn create(root: &Path, name: &str) -> std::io::Result<RunDir> {
        use std::os::unix::fs::DirBuilderExt;
        create_private_dir(root)?;
        let stamp = timestamp();
        let name = safe_name(name);
        for n in 0.. {
            let suffix = if n == 0 {
                String::new()
            } else {
                format!("-{n}")
            };
            let dir = root.join(format!("{stamp}-{name}{suffix}"));
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => return Ok(RunDir(dir)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        unreachable!("an unbounded counter finds a free name")
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The run's id: its directory's name.
    pub fn name(&self) -> String {
        self.0.file_name().map_or_else(
            || self.0.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    }

    /// The words that name this run to `ferry attach/resume/status/bundle/…`, shell-quoted:
    /// its id, and `--runs-dir DIR` when it is not under the default runs directory — so a
    /// printed hint works when pasted.
    pub fn command_args(&self) -> String {
        let name = crate::qemu::cmdline::quote_word(&self.name());
        let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        match self.0.parent() {
            Some(root) if absolute(root) != absolute(&runs_root(None)) => {
                let root = absolute(root).display().to_string();
                format!(
                    "{name} --runs-dir {}",
                    crate::qemu::cmdline::quote_word(&root)
                )
            }
            _ => name,
        }
    }

    /// The boot check's records: the same file names, one level down.
    pub fn verify(&self) -> RunDir {
        RunDir(self.0.join("verify"))
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// What the foreground hands the supervisor (mode 0600: it names the secrets' sources).
    pub fn request(&self) -> PathBuf {
        self.file("request.json")
    }
    pub fn supervisor_log(&self) -> PathBuf {
        self.file("supervisor.log")
    }
    pub fn ferry_log(&self) -> PathBuf {
        self.file("ferry.log")
    }
    pub fn events(&self) -> PathBuf {
        self.file("events.jsonl")
    }
    pub fn status(&self) -> PathBuf {
        self.file("status.json")
    }
    pub fn facts(&self) -> PathBuf {
        self.file("facts.json")
    }
    pub fn plan(&self) -> PathBuf {
        self.file("plan.json")
    }
    pub fn summary(&self) -> PathBuf {
        self.file("summary.json")
    }
    pub fn qemu_args(&self) -> PathBuf {
        self.file("qemu.args")
    }
    pub fn qemu_stderr(&self) -> PathBuf {
        self.file("qemu.stderr")
    }
    pub fn serial_log(&self) -> PathBuf {
        self.file(crate::console::transcript::SERIAL_LOG)
    }
    pub fn transcript(&self) -> PathBuf {
        self.file(crate::console::transcript::TRANSCRIPT_CAST)
    }
    pub fn screen_log(&self) -> PathBuf {
        self.file(crate::console::transcript::SCREEN_LOG)
    }
    pub fn screen_cast(&self) -> PathBuf {
        self.file(crate::console::transcript::SCREEN_CAST)
    }
    /// QEMU's second QMP monitor, the VGA screen reader's.
    pub fn screen_socket(&self) -> PathBuf {
        self.file("screen.sock")
    }
    pub fn serial_socket(&self) -> PathBuf {
        self.file("serial.sock")
    }
    pub fn qmp_socket(&self) -> PathBuf {
        self.file("qmp.sock")
    }
    /// The answer server's socket (`install::serve`), reached by the guest through QEMU.
    pub fn answers_socket(&self) -> PathBuf {
        self.file("answers.sock")
    }
    /// The verified stream's NBD socket (`fetch::stream::NbdServer`), QEMU's CD-ROM when the
    /// image is streamed; removed when the VM is gone.
    pub fn nbd_socket(&self) -> PathBuf {
        self.file("image.nbd")
    }
    pub fn control_socket(&self) -> PathBuf {
        self.file("control.sock")
    }
    /// The answer files as they were served (secrets redacted), one file each: `answers/NAME`.
    pub fn answers(&self) -> PathBuf {
        self.file("answers")
    }
    /// The installer's kernel and initrd copied out of the ISO (removed after the install).
    pub fn kernel(&self) -> PathBuf {
        self.file("kernel")
    }
    pub fn initrd(&self) -> PathBuf {
        self.file("initrd")
    }
    /// A VM's own copy of OVMF's variable store; `vm` is `install` or `verify`.
    pub fn efivars(&self, vm: &str) -> PathBuf {
        self.file(&format!("{vm}-efivars.fd"))
    }
    /// The VGA screen when a stage failed.
    pub fn screenshot(&self, stage: Stage) -> PathBuf {
        self.file(&format!("screen-{stage}.png"))
    }

    /// The text records `ferry bundle` takes (secrets scrubbed), here and in [`Self::verify`]:
    /// paths under this directory.
    pub fn text_records(&self) -> Vec<PathBuf> {
        // Listed only as a directory of its own: never through a link to elsewhere.
        let real_dir = std::fs::symlink_metadata(self.answers()).is_ok_and(|m| m.is_dir());
        let mut answers: Vec<PathBuf> = std::fs::read_dir(self.answers())
            .into_iter()
            .filter(|_| real_dir)
            .flatten()
            .flatten()
            .map(|entry| entry.path())
            .collect();
        answers.sort();
        let mut records = vec![
            self.plan(),
            self.facts(),
            self.qemu_args(),
            self.qemu_stderr(),
            self.serial_log(),
            self.transcript(),
            self.screen_log(),
            self.screen_cast(),
            self.ferry_log(),
            self.events(),
            self.status(),
            self.summary(),
            self.supervisor_log(),
        ];
        records.extend(answers);
        records
    }
}

impl AsRef<Path> for RunDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

/// Makes everything this process and its children (QEMU, qemu-img) create private to its
/// owner: run directories 0700, their files 0600, disk images, bundles. The file mode
/// creation mask is the process's own, as the OS keeps it.
pub fn private_files() {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
}

/// Writes `bytes` to `path`, mode 0600 whatever the umask or an earlier file's mode: a
/// record that may hold what secrets were redacted from, or (`--show-secrets`) the secrets.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)
}

/// Creates `path` (and its missing parents) mode 0700; an existing directory is left as it is.
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// Where runs go: `--runs-dir`, `$FERRY_RUNS`, `/var/lib/ferry/runs` for root, else the XDG
/// state directory.
pub fn runs_root(explicit: Option<&Path>) -> PathBuf {
    if let Some(dir) = explicit {
        return dir.to_path_buf();
    }
    if let Some(dir) = std::env::var_os("FERRY_RUNS") {
        return PathBuf::from(dir);
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/ferry/runs");
    }
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    state.join("ferry/runs")
}

/// UTC `YYYYMMDD-HHMMSS`.
fn timestamp() -> String {
    // RFC 3339 `2026-11-24T21:30:12Z`, digits only.
    let rfc3339 = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let digits: String = rfc3339.chars().filter(char::is_ascii_digit).collect();
    format!("{}-{}", &digits[..8], &digits[8..14])
}

/// What an install records through: the run directory, its events and status, the values
/// to redact, and the stop flag. Cheap to clone; every clone records into the same run.
#[derive(Clone)]
pub struct Record {
    pub dir: RunDir,
    pub events: Events,
    pub secrets: Secrets,
    pub stop: StopFlag,
    pub losses: Losses,
}

/// Records that stopped being written (a console log on a full disk), each said as its write
/// error: the summary names them, so a run never looks fully recorded when it is not.
#[derive(Clone, Default)]
pub struct Losses(Arc<std::sync::Mutex<Vec<String>>>);

impl Losses {
    pub fn note(&self, what: String) {
        tracing::warn!("{what}");
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(what);
    }

    pub fn list(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// `sink` noting its write failure here (the console then stops writing to it).
    pub fn noting(&self, sink: Box<dyn Sink>) -> Box<dyn Sink> {
        Box::new(Noting {
            inner: sink,
            losses: self.clone(),
        })
    }
}

struct Noting {
    inner: Box<dyn Sink>,
    losses: Losses,
}

impl Sink for Noting {
    fn output(&mut self, at: std::time::Duration, bytes: &[u8]) -> std::io::Result<()> {
        let result = self.inner.output(at, bytes);
        result.inspect_err(|e| self.losses.note(e.to_string()))
    }

    fn input(&mut self, at: std::time::Duration, bytes: &[u8]) -> std::io::Result<()> {
        let result = self.inner.input(at, bytes);
        result.inspect_err(|e| self.losses.note(e.to_string()))
    }
}

impl Record {
    /// A progress line: logged, and recorded in `events.jsonl` (which the foreground prints);
    /// both writers redact.
    pub fn progress(&self, stage: Stage, message: &str) {
        tracing::info!(stage = stage.as_str(), "{message}");
        self.events.emit(&Event::Progress {
            stage,
            message: message.to_string(),
        });
    }

    /// Records how far a download of the fetch stage is: `done` bytes of `url` (of `total`), at
    /// `bytes_per_second`. Not logged: it comes every second.
    pub fn download(&self, url: &str, done: u64, total: Option<u64>, bytes_per_second: u64) {
        self.events.emit(&Event::Download {
            url: url.to_string(),
            done_bytes: done,
            total_bytes: total,
            bytes_per_second,
        });
    }

    /// Records that step `index` of `count` (from 1) of `stage` begins, with its timeout.
    pub fn step(
        &self,
        stage: Stage,
        name: &str,
        (index, count): (usize, usize),
        timeout: Duration,
    ) {
        self.events.emit(&Event::Step {
            stage,
            name: name.to_string(),
            index,
            count,
            timeout_seconds: timeout.as_secs_f64(),
        });
    }

    /// Writes `value` as JSON to `path`, with the secret values redacted. A failure names the
    /// path ("No space left on device" alone does not say where).
    pub fn write_json(&self, path: &Path, value: &impl Serialize) -> std::io::Result<()> {
        std::fs::write(path, self.secrets.to_json(value, true)? + "\n")
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_names_keep_to_a_safe_character_set() {
        assert_eq!(safe_name("debian-12"), "debian-12");
        assert_eq!(safe_name("evil\nname\x1b[31m"), "evil_name__31m");
        assert_eq!(safe_name("../up"), "_up");
        assert_eq!(safe_name(""), "run");
        assert_eq!(safe_name("x".repeat(300).as_str()).len(), 64);
        let root = tempfile::tempdir().unwrap();
        let dir = RunDir::create(root.path(), "a\nb").unwrap();
        let name = dir
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(name.ends_with("-a_b"), "{name}");
    }

    #[test]
    fn command_args_name_a_runs_directory_that_is_not_the_default() {
        let default = RunDir::at(runs_root(None).join("20261124-213012-tiny"));
        assert_eq!(default.command_args(), "20261124-213012-tiny");
        let elsewhere = RunDir::at("/srv/my runs/20261124-213012-tiny");
        assert_eq!(
            elsewhere.command_args(),
            "20261124-213012-tiny --runs-dir '/srv/my runs'"
        );
    }

    #[test]
    fn timestamps_are_utc_digits() {
        let stamp = timestamp();
        assert_eq!(stamp.len(), 15, "{stamp}");
        assert_eq!(&stamp[8..9], "-");
        assert!(stamp.starts_with("20"), "{stamp}");
    }

    #[test]
    fn run_directories_are_unique_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let a = RunDir::create(root.path(), "tiny").unwrap();
        let b = RunDir::create(root.path(), "tiny").unwrap();
        assert_ne!(a, b);
        assert!(a.path().is_dir() && b.path().is_dir());
        let mode = std::fs::metadata(a.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn stages_round_trip_as_text() {
        for stage in Stage::ALL {
            let json = serde_json::to_string(&stage).unwrap();
            assert_eq!(json, format!("\"{stage}\""));
            assert_eq!(serde_json::from_str::<Stage>(&json).unwrap(), stage);
        }
    }
}
