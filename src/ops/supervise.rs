//! `ferry install` in two processes: the foreground (on the operator's terminal) and the
//! supervisor (QEMU's parent, in its own session, with no terminal).
//!
//! The foreground makes the plan, asks for the confirmation, takes the disk lock, creates the
//! run directory, writes the [`Handover`] into `RUN_DIR/request.json` (mode 0600) and starts
//! the hidden `ferry supervise RUN_DIR`: `setsid`, stdin and stdout on /dev/null, stderr into
//! `RUN_DIR/supervisor.log`, the lock's file descriptor inherited. Its command line names
//! nothing of the profile or the options. It then follows `events.jsonl`, prints the progress lines, forwards
//! Ctrl-C (SIGINT/SIGTERM) to the supervisor, and exits with the install's exit code. A closed
//! terminal (SIGHUP) ends only the foreground; `--detach` leaves right after the start.

use std::io::{IsTerminal, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::live::{Live, OnFailure};
use super::lock;
use super::progress::{Mode, Progress};
use super::{OpsError, control};
use crate::Error;
use crate::install::{self, ProfileSource, Request};
use crate::run::events;
use crate::run::{Event, Events, Record, RunDir, Secrets, Stage, State, StopFlag};

/// What the foreground hands the supervisor: the install request with everything resolved
/// that the foreground decides (the pause on failure, the lock's descriptor).
#[derive(Debug, Serialize, Deserialize)]
pub struct Handover {
    pub request: Request,
    /// Print the outcome as JSON.
    pub json: bool,
    pub on_failure: OnFailure,
    pub stop_grace: Duration,
    /// The disk lock, inherited open.
    pub lock_fd: i32,
}

/// `ferry install` as the command line gave it.
pub struct Launch {
    pub request: Request,
    pub json: bool,
    pub detach: bool,
    /// `None`: pause on a terminal, else abort.
    pub on_failure: Option<OnFailure>,
    pub stop_grace: Duration,
}

/// The foreground of `ferry install`: returns the exit code to exit with.
pub fn launch(launch: Launch) -> Result<i32, Error> {
    let mode = Mode::for_stderr(launch.request.quiet)?;
    let (plan, name) = install::prepare(&launch.request)?;
    let root = crate::run::runs_root(launch.request.runs_dir.as_deref());
    let mut disk_lock = lock::acquire(&root, &plan.disk.target.path)?;
    let run_dir = RunDir::create(&root, &name)?;
    // Pausing needs an operator: only when ferry was started from a terminal.
    let on_failure =
        launch
            .on_failure
            .unwrap_or(if std::io::stdin().is_terminal() && !launch.detach {
                OnFailure::Pause
            } else {
                OnFailure::Abort
            });
    let handover = Handover {
        json: launch.json,
        on_failure,
        stop_grace: launch.stop_grace,
        lock_fd: disk_lock.file.as_raw_fd(),
        request: launch.request,
    };
    let child = spawn(&run_dir, &handover, &mut disk_lock, plan.qemu().ok())?;
    follow(&run_dir, child, mode, launch.detach, true)
}

/// Starts the supervisor of `run_dir`: writes the handover, then `ferry supervise RUN_DIR`.
fn spawn(
    run_dir: &RunDir,
    handover: &Handover,
    disk_lock: &mut lock::DiskLock,
    qemu: Option<&crate::qemu::QemuBinary>,
) -> Result<Child, Error> {
    let text = serde_json::to_string_pretty(handover).map_err(std::io::Error::other)?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(run_dir.request())?
        .write_all(text.as_bytes())?;
    let lock_fd = handover.lock_fd;
    let log = std::fs::File::create(run_dir.supervisor_log())?;
    let mut command = Command::new(std::env::current_exe()?);
    if let Some(qemu) = qemu {
        command.env(crate::qemu::PROBED_ENV, qemu.probed_env());
    }
    // The secret values go through a pipe on its stdin: never in a file, an argv or its
    // environment.
    for (name, _) in std::env::vars_os() {
        if name
            .to_string_lossy()
            .starts_with(install::SECRET_ENV_PREFIX)
        {
            command.env_remove(name);
        }
    }
    command
        .arg("supervise")
        .arg(run_dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(log);
    // SAFETY: setsid and fcntl are async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            nix::unistd::setsid()?;
            // The supervisor inherits the lock (the same open file, so the same flock).
            if nix::libc::fcntl(lock_fd, nix::libc::F_SETFD, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn()?;
    disk_lock.record(child.id(), run_dir.path())?;
    let secrets = serde_json::to_vec(&handover.request.secrets).map_err(std::io::Error::other)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&secrets)?;
    }
    Ok(child)
}

/// What `ferry boot` was given.
#[derive(Debug, Clone)]
pub struct ManualBoot {
    pub image: PathBuf,
    pub entry: String,
    /// The disk and VM options; its profile is replaced by the manual boot's.
    pub request: Request,
}

/// `ferry boot`: boots an installer against the disk with its serial console on this
/// terminal, no profile. The same supervisor, run directory, lock and guards as an install;
/// the session ends when the guest powers off (or `ferry stop RUN`); `Ctrl-]` detaches and
/// leaves the VM running (`ferry attach RUN` returns to it).
pub fn boot(manual: ManualBoot) -> Result<i32, Error> {
    let root = crate::run::runs_root(manual.request.runs_dir.as_deref());
    let mut disk_lock = lock::acquire(&root, &manual.request.options.disk)?;
    let request = Request {
        profile: ProfileSource::Manual {
            image: std::fs::canonicalize(&manual.image)?,
            entry: manual.entry,
        },
        ..manual.request
    };
    // The same checks and confirmation as an install.
    let plan = install::prepare(&request)?.0;
    let run_dir = RunDir::create(&root, "boot")?;
    let handover = Handover {
        request,
        json: false,
        on_failure: OnFailure::Abort,
        stop_grace: Duration::from_secs(20),
        lock_fd: disk_lock.file.as_raw_fd(),
    };
    let mut child = spawn(&run_dir, &handover, &mut disk_lock, plan.qemu().ok())?;
    let (run, args) = (run_dir.name(), run_dir.command_args());
    // Attach once the VM runs (its console exists).
    let attached = loop {
        match control::request(&run_dir, "attach") {
            Ok(stream) if events::read_status(&run_dir).is_some_and(|s| s.stage != Stage::Plan) => {
                break Some(stream);
            }
            _ => {}
        }
        if let Ok(Some(_)) = child.try_wait() {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if let Some(stream) = attached {
        eprint!(
            "ferry: run {run}: the VM's serial console follows; power the guest off to end, \
             Ctrl-] detaches (the VM keeps running: `ferry attach {args}`, `ferry stop {args}`)\r\n"
        );
        let closed = {
            let _raw = super::attach::RawTerminal::enter()?;
            super::attach::pump(stream, false)?
        };
        if !closed {
            eprintln!("\nferry: detached; the VM keeps running: `ferry attach {args}`");
            return Ok(0);
        }
        eprintln!();
    }
    let code = follow(&run_dir, child, Mode::Quiet, false, false)?;
    eprintln!(
        "ferry: the VM ended; run directory {}",
        run_dir.path().display()
    );
    Ok(code)
}

/// Prints the run's progress until it ends; returns its exit code.
fn follow(
    run_dir: &RunDir,
    mut child: Child,
    mode: Mode,
    detach: bool,
    print_result: bool,
) -> Result<i32, Error> {
    let pid = child.id();
    forward_interrupts(pid);
    let mut offset = 0;
    let run = run_dir.command_args();
    // Cleared before the final lines, and when dropped on any other way out.
    let mut progress = Progress::new(if detach { Mode::Quiet } else { mode }, run_dir);
    loop {
        let (batch, next) = events::read_from(run_dir, offset)?;
        offset = next;
        for line in batch {
            progress.event(&line);
            match line.event {
                Event::Started { pid } if detach => {
                    println!("{}", run_dir.name());
                    let _ = writeln!(
                        std::io::stderr(),
                        "ferry: install running in the background (pid {pid}, run directory {})\n\
                         ferry: follow it with `ferry status {run}`, `ferry logs -f {run}`, `ferry attach {run}`",
                        run_dir.path().display()
                    );
                    return Ok(0);
                }
                Event::Progress { stage, message } => {
                    progress.say(&format!("ferry: {stage:<6} {message}"));
                }
                Event::Paused { message, .. } => progress.say(&format!("ferry: paused: {message}")),
                Event::Resumed { step } => {
                    progress.say(&format!("ferry: resumed after step '{step}'"));
                }
                Event::End {
                    code,
                    stdout,
                    error,
                    ..
                } => {
                    progress.clear();
                    // A closed terminal must not end the install: ignore write errors.
                    if print_result {
                        print!("{stdout}");
                        let _ = std::io::stdout().flush();
                    }
                    if let Some(error) = error {
                        let _ = writeln!(std::io::stderr(), "ferry: error: {error}");
                    }
                    let _ = child.wait();
                    return Ok(code);
                }
                _ => {}
            }
        }
        if let Ok(Some(_)) = child.try_wait() {
            // Read what it wrote before it exited.
            let (batch, _) = events::read_from(run_dir, offset)?;
            if batch.iter().any(|l| matches!(l.event, Event::End { .. })) {
                continue;
            }
            return Err(OpsError::SupervisorLost(run_dir.path().to_path_buf()).into());
        }
        progress.tick();
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The secret values the foreground writes on the supervisor's stdin (a JSON object).
fn read_secrets() -> Result<std::collections::BTreeMap<String, String>, Error> {
    use std::io::Read;
    let mut text = Vec::new();
    std::io::stdin()
        .take(crate::profile::input::MAX_INPUT_BYTES)
        .read_to_end(&mut text)?;
    if text.is_empty() {
        return Ok(Default::default());
    }
    Ok(serde_json::from_slice(&text).map_err(std::io::Error::other)?)
}

/// Ctrl-C on the foreground reaches only the foreground (the supervisor has its own session):
/// pass SIGINT and SIGTERM on.
fn forward_interrupts(pid: u32) {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
        return;
    };
    std::thread::spawn(move || {
        for _ in signals.forever() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGINT,
            );
        }
    });
}

/// The supervisor (`ferry supervise RUN_DIR`): runs the install the foreground handed over,
/// records everything into the run directory and ends with an `end` event. Returns the exit
/// code.
pub fn supervise(run_dir: &RunDir) -> i32 {
    let handover: Result<Handover, Error> = std::fs::read_to_string(run_dir.request())
        .map_err(Error::from)
        .and_then(|text| serde_json::from_str(&text).map_err(|e| std::io::Error::other(e).into()));
    let handover = handover.and_then(|mut handover| {
        handover.request.secrets = read_secrets()?;
        Ok(handover)
    });
    let handover = match handover {
        Ok(handover) => handover,
        Err(e) => {
            eprintln!("ferry supervise: {}: {e}", run_dir.request().display());
            return 1;
        }
    };
    // Keep the lock, but not in QEMU.
    // SAFETY: fcntl on an inherited descriptor.
    unsafe { nix::libc::fcntl(handover.lock_fd, nix::libc::F_SETFD, nix::libc::FD_CLOEXEC) };
    let request = &handover.request;
    let mut secrets = Secrets::default();
    let mut events = Events::none();
    let result = (|| -> Result<install::Outcome, Error> {
        crate::logging::log_to(&run_dir.ferry_log())?;
        events = Events::start(run_dir, request.profile.path(), &request.options.disk)?;
        let profile = request.load_profile()?;
        secrets = request.secret_values(&profile);
        crate::logging::redact(&secrets);
        crate::logging::redact_panics(&secrets);
        events.redact(&secrets);
        let record = Record {
            dir: run_dir.clone(),
            events: events.clone(),
            secrets: secrets.clone(),
            stop: StopFlag::default(),
            losses: Default::default(),
        };
        let live = Live::new(record.clone(), handover.on_failure, handover.stop_grace);
        live.watch_signals();
        control::serve(run_dir, live.clone())?;
        install::install(request, &profile, &record, &live)
    })();
    let (code, state, error) = match &result {
        Ok(_) => (0, State::Finished, None),
        Err(e) => (
            e.exit_code(),
            if matches!(e, Error::Interrupted) {
                State::Interrupted
            } else {
                State::Failed
            },
            Some(e.to_string()),
        ),
    };
    let stdout = match (&result, handover.json) {
        (_, true) => install::report::InstallJson {
            schema_version: events::SCHEMA_VERSION,
            ok: result.is_ok(),
            state,
            exit_code: code,
            error: error.as_deref(),
            run_dir: run_dir.path(),
            outcome: result.as_ref().ok(),
        }
        .text(),
        (Ok(outcome), false) => outcome.text(),
        (Err(_), false) => String::new(),
    };
    events.emit(&Event::End {
        code,
        state,
        stdout,
        error,
    });
    let _ = std::fs::remove_file(run_dir.control_socket());
    code
}
