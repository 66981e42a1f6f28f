//! `ferry install` in two processes: the foreground (on the operator's terminal) and the
//! supervisor (QEMU's parent, in its own session, with no terminal).
//!
//! The foreground makes the plan, asks for the confirmation, takes the disk lock, creates the
//! run directory and re-executes ferry with the hidden `--supervise RUN_DIR` option: `setsid`,
//! stdin and stdout on /dev/null, stderr into `RUN_DIR/supervisor.log`, the lock's file
//! descriptor inherited. It then follows `events.jsonl`, prints the progress lines, forwards
//! Ctrl-C (SIGINT/SIGTERM) to the supervisor, and exits with the install's exit code. A closed
//! terminal (SIGHUP) ends only the foreground; `--detach` leaves right after the start.

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::events::{self, Event, State};
use super::lock;
use super::{OpsError, control, live, secrets};
use crate::Error;
use crate::install::{self, Request};

/// The foreground of `ferry install`: returns the exit code to exit with.
pub fn launch(
    request: &Request,
    detach: bool,
    on_failure: Option<live::OnFailure>,
) -> Result<i32, Error> {
    let (plan, name) = install::prepare(request)?;
    let root = install::rundir::runs_root(request.runs_dir.as_deref());
    let mut disk_lock = lock::acquire(&root, &plan.disk.target.path)?;
    let run_dir = install::rundir::create(&root, &name)?;

    let mut args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if on_failure.is_none() {
        // Pausing needs an operator: only when ferry was started from a terminal.
        let pause = std::io::stdin().is_terminal() && !detach;
        args.push("--on-failure".into());
        args.push(if pause { "pause" } else { "abort" }.into());
    }
    let child = spawn(&run_dir, args, &mut disk_lock, plan.qemu().ok())?;
    follow(&run_dir, child, request.quiet, detach, true)
}

/// Starts the supervisor of `run_dir`: `ferry ARGS --supervise RUN_DIR --lock-fd N` where
/// ARGS are `install` arguments.
fn spawn(
    run_dir: &Path,
    mut args: Vec<OsString>,
    disk_lock: &mut lock::DiskLock,
    qemu: Option<&crate::qemu::QemuBinary>,
) -> Result<Child, Error> {
    let lock_fd = disk_lock.file.as_raw_fd();
    let log = std::fs::File::create(run_dir.join("supervisor.log"))?;
    args.push("--supervise".into());
    args.push(run_dir.as_os_str().to_owned());
    args.push("--lock-fd".into());
    args.push(lock_fd.to_string().into());
    let mut command = Command::new(std::env::current_exe()?);
    if let Some(qemu) = qemu {
        command.env(crate::qemu::PROBED_ENV, qemu.probed_env());
    }
    command
        .args(&args)
        .stdin(Stdio::null())
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
    let child = command.spawn()?;
    disk_lock.record(child.id(), run_dir)?;
    Ok(child)
}

/// `ferry boot`: boots an installer against the disk with its serial console on this
/// terminal, no profile. The same supervisor, run directory, lock and guards as an install;
/// the session ends when the guest powers off (or `ferry stop RUN`); `Ctrl-]` detaches and
/// leaves the VM running (`ferry attach RUN` returns to it).
pub fn boot(manual: &ManualBoot) -> Result<i32, Error> {
    let root = install::rundir::runs_root(manual.runs_dir.as_deref());
    let mut disk_lock = lock::acquire(&root, &manual.disk)?;
    let run_dir = install::rundir::create(&root, "boot")?;
    let image = std::fs::canonicalize(&manual.image)?;
    let profile = run_dir.join("boot.toml");
    let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
    let text = format!(
        "description = \"manual boot (ferry boot)\"\n\
         [image]\npath = {}\n\
         [boot]\nentry = {}\n\
         [finish]\npoweroff_timeout = \"3650d\"\nverify = {{ enabled = false }}\n",
        quote(&image.to_string_lossy()),
        quote(&manual.entry),
    );
    std::fs::write(&profile, text)?;
    let mut args: Vec<OsString> = vec!["install".into(), profile.clone().into_os_string()];
    args.extend(manual.install_args.iter().cloned());
    args.extend(["--on-failure".into(), "abort".into()]);
    // The same checks and confirmation as an install.
    let request = Request {
        profile: profile.clone(),
        ..manual.request.clone()
    };
    let plan = match install::prepare(&request) {
        Ok((plan, _)) => plan,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&run_dir);
            return Err(e);
        }
    };
    let mut child = spawn(&run_dir, args, &mut disk_lock, plan.qemu().ok())?;
    let run = control::run_name(&run_dir);
    // Attach once the VM runs (its console exists).
    let attached = loop {
        match control::request(&run_dir, "attach") {
            Ok(stream) if events::read_status(&run_dir).is_some_and(|s| s.stage != "plan") => {
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
             Ctrl-] detaches (the VM keeps running: `ferry attach {run}`, `ferry stop {run}`)\r\n"
        );
        let closed = {
            let _raw = super::attach::RawTerminal::enter()?;
            super::attach::pump(stream, false)?
        };
        if !closed {
            eprintln!("\nferry: detached; the VM keeps running: `ferry attach {run}`");
            return Ok(0);
        }
        eprintln!();
    }
    let code = follow(&run_dir, child, true, false, false)?;
    eprintln!("ferry: the VM ended; run directory {}", run_dir.display());
    Ok(code)
}

/// What `ferry boot` was given.
#[derive(Debug, Clone)]
pub struct ManualBoot {
    pub image: std::path::PathBuf,
    pub disk: std::path::PathBuf,
    pub entry: String,
    pub runs_dir: Option<std::path::PathBuf>,
    /// `--disk`, `--size`, `--qemu`, `--accel`, `--firmware`, `--runs-dir` for the supervisor.
    pub install_args: Vec<OsString>,
    pub request: Request,
}

/// Prints the run's progress until it ends; returns its exit code.
fn follow(
    run_dir: &Path,
    mut child: Child,
    quiet: bool,
    detach: bool,
    print_result: bool,
) -> Result<i32, Error> {
    let pid = child.id();
    forward_interrupts(pid);
    let mut offset = 0;
    let mut err = std::io::stderr();
    let run = control::run_name(run_dir);
    loop {
        let (batch, next) = events::read_from(run_dir, offset)?;
        offset = next;
        for event in batch {
            match event {
                Event::Started { pid } if detach => {
                    println!("{run}");
                    let _ = writeln!(
                        err,
                        "ferry: install running in the background (pid {pid}, run directory {})\n\
                         ferry: follow it with `ferry status {run}`, `ferry logs -f {run}`, `ferry attach {run}`",
                        run_dir.display()
                    );
                    return Ok(0);
                }
                Event::Progress { stage, message }
                | Event::Paused {
                    step: stage,
                    message,
                } if !quiet => {
                    // A closed terminal must not end the install: ignore write errors.
                    let _ = writeln!(err, "ferry: {stage:<6} {message}");
                }
                Event::End {
                    code,
                    stdout,
                    error,
                    ..
                } => {
                    if print_result {
                        print!("{stdout}");
                        let _ = std::io::stdout().flush();
                    }
                    if let Some(error) = error {
                        let _ = writeln!(err, "ferry: error: {error}");
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
            if batch.iter().any(|e| matches!(e, Event::End { .. })) {
                continue;
            }
            return Err(OpsError::SupervisorLost(run_dir.to_path_buf()).into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
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

/// The supervisor: runs the install, records everything into the run directory and ends
/// with an `end` event. Returns the exit code.
pub fn supervise(
    request: &Request,
    run_dir: &Path,
    lock_fd: Option<i32>,
    json: bool,
    on_failure: live::OnFailure,
    grace: Duration,
) -> i32 {
    if let Some(fd) = lock_fd {
        // Keep the lock, but not in QEMU.
        // SAFETY: fcntl on an inherited descriptor.
        unsafe { nix::libc::fcntl(fd, nix::libc::F_SETFD, nix::libc::FD_CLOEXEC) };
    }
    let disk = request.options.disk.clone();
    let started = (|| -> Result<(), Error> {
        crate::logging::log_to(&run_dir.join("ferry.log"))?;
        events::start(run_dir, &request.profile, &disk)?;
        live::configure(on_failure, grace);
        live::watch_signals();
        control::serve(run_dir)?;
        Ok(())
    })();
    let result = started.and_then(|()| install::install(request, run_dir));
    let (code, state, stdout, error) = match &result {
        Ok(outcome) => (
            0,
            State::Finished,
            crate::cli::outcome_text(outcome, json),
            None,
        ),
        Err(e) => (
            e.exit_code(),
            if matches!(e, Error::Interrupted) {
                State::Interrupted
            } else {
                State::Failed
            },
            String::new(),
            Some(secrets::redact(&e.to_string())),
        ),
    };
    events::emit(&Event::End {
        code,
        state,
        stdout,
        error,
    });
    let _ = std::fs::remove_file(run_dir.join(control::SOCKET));
    code
}
