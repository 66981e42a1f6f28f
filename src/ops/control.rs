//! The run's control socket, `control.sock` in the run directory, served by the supervisor.
//!
//! A client sends one request line, the server answers one line (`ok` or `error: why`):
//!
//! - `attach` / `attach-ro`: after `ok`, the connection carries the raw serial console: the
//!   server sends the last 4 KiB of `serial.log` then everything the guest prints; what the
//!   client sends is typed into the guest (ignored for `attach-ro`).
//! - `resume` / `abort`: decide about a run paused after a failed step.
//! - `stop`: what SIGINT does (ACPI power-down, QEMU stopped after the grace period).

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use super::OpsError;
use super::live::Live;
use crate::Error;
use crate::install::Decision;
use crate::run::RunDir;

/// Serves the control socket of `run_dir` on a background thread.
pub fn serve(run_dir: &RunDir, live: Live) -> std::io::Result<()> {
    let path = run_dir.control_socket();
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    // Only the owner (root on a rescue system) may take over the console.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    let run_dir = run_dir.clone();
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let (run_dir, live) = (run_dir.clone(), live.clone());
                let _ = std::thread::Builder::new()
                    .name("control-client".into())
                    .spawn(move || {
                        if let Err(e) = handle(stream, &run_dir, &live) {
                            tracing::debug!("control client: {e}");
                        }
                    });
            }
        })?;
    Ok(())
}

fn handle(stream: UnixStream, run_dir: &RunDir, live: &Live) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let request = line.trim();
    tracing::info!(request, "control request");
    match request {
        "attach" | "attach-ro" => {
            writer.write_all(b"ok\n")?;
            writer.write_all(&tail(&run_dir.serial_log(), 4096))?;
            live.add_viewer(&writer)?;
            let mut buf = [0u8; 4096];
            loop {
                let n = reader.read(&mut buf)?;
                if n == 0 {
                    return Ok(());
                }
                if request == "attach"
                    && let Err(e) = live.type_input(&buf[..n])
                {
                    tracing::debug!("attached input dropped: {e}");
                }
            }
        }
        "resume" | "abort" => {
            let decision = if request == "resume" {
                Decision::Resume
            } else {
                Decision::Abort
            };
            match live.decide(decision) {
                Ok(()) => writer.write_all(b"ok\n"),
                Err(why) => writer.write_all(format!("error: {why}\n").as_bytes()),
            }
        }
        "stop" => {
            // The same as SIGINT: ACPI power-down, QEMU stopped after the grace period.
            writer.write_all(b"ok\n")?;
            nix::sys::signal::raise(nix::sys::signal::Signal::SIGINT).map_err(std::io::Error::from)
        }
        other => writer.write_all(format!("error: unknown request {other:?}\n").as_bytes()),
    }
}

fn tail(path: &Path, n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let len = f.metadata().map_or(0, |m| m.len());
        if f.seek(SeekFrom::Start(len.saturating_sub(n))).is_ok() {
            let _ = f.read_to_end(&mut out);
        }
    }
    out
}

/// Connects to a run's control socket and sends `request`; returns the connection after an
/// `ok` answer.
pub fn request(run_dir: &RunDir, request: &str) -> Result<UnixStream, Error> {
    let run = run_dir.name();
    let path = run_dir.control_socket();
    let mut stream = UnixStream::connect(&path).map_err(|e| OpsError::NotLive {
        run: run.clone(),
        why: format!("cannot connect to {}: {e}", path.display()),
    })?;
    stream.write_all(format!("{request}\n").as_bytes())?;
    // Read the answer byte by byte: what follows belongs to the caller.
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while stream.read(&mut byte)? == 1 && byte[0] != b'\n' {
        answer.push(byte[0]);
    }
    let answer = String::from_utf8_lossy(&answer).into_owned();
    if answer == "ok" {
        Ok(stream)
    } else {
        Err(OpsError::Refused {
            run,
            message: answer.trim_start_matches("error: ").to_string(),
        }
        .into())
    }
}

/// `ferry stop RUN`: returns what was done, for the operator.
pub fn stop(run_dir: &RunDir) -> Result<String, Error> {
    request(run_dir, "stop")?;
    Ok(format!(
        "run {}: stopping: the guest was asked to power off (ACPI); QEMU quits after the grace \
         period at the latest",
        run_dir.name()
    ))
}

/// `ferry resume RUN` / `ferry abort RUN`: returns what was done, for the operator.
pub fn decide(run_dir: &RunDir, decision: Decision) -> Result<String, Error> {
    request(run_dir, decision.as_str())?;
    let run = run_dir.name();
    Ok(match decision {
        Decision::Resume => format!("run {run} resumed: going on with the next step"),
        Decision::Abort => format!("run {run} aborted: QEMU is stopped and the install fails"),
    })
}
