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

    let lock_fd = disk_lock.file.as_raw_fd();
    let log = std::fs::File::create(run_dir.join("supervisor.log"))?;
    let mut args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if on_failure.is_none() {
        // Pausing needs an operator: only when ferry was started from a terminal.
        let pause = std::io::stdin().is_terminal() && !detach;
        args.push("--on-failure".into());
        args.push(if pause { "pause" } else { "abort" }.into());
    }
    args.push("--supervise".into());
    args.push(run_dir.clone().into_os_string());
    args.push("--lock-fd".into());
    args.push(lock_fd.to_string().into());
    let mut command = Command::new(std::env::current_exe()?);
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
    disk_lock.record(child.id(), &run_dir)?;
    follow(&run_dir, child, request.quiet, detach)
}

/// Prints the run's progress until it ends; returns its exit code.
fn follow(run_dir: &Path, mut child: Child, quiet: bool, detach: bool) -> Result<i32, Error> {
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
                    print!("{stdout}");
                    let _ = std::io::stdout().flush();
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
