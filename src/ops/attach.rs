//! `ferry attach`: the live serial console on this terminal, raw, until `Ctrl-]`.
//!
//! The terminal is put in raw mode by a [`RawTerminal`] guard: its `Drop` restores the saved
//! settings, and a panic hook restores them too (a panic with `panic = "abort"` or inside
//! another thread would otherwise leave the operator's shell unusable).

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::termios::{self, SetArg, Termios};

use super::control;
use crate::Error;
use crate::run::RunDir;

/// The detach key: `Ctrl-]` (0x1d), as in telnet.
pub const DETACH: u8 = 0x1d;

static SAVED: Mutex<Option<Termios>> = Mutex::new(None);

fn restore_saved() {
    let saved = SAVED.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(saved) = saved {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &saved);
    }
}

/// Raw mode on stdin while alive (nothing when stdin is not a terminal).
pub struct RawTerminal {
    active: bool,
}

impl RawTerminal {
    pub fn enter() -> std::io::Result<RawTerminal> {
        let stdin = std::io::stdin();
        let Ok(saved) = termios::tcgetattr(stdin.as_fd()) else {
            return Ok(RawTerminal { active: false });
        };
        *SAVED.lock().unwrap_or_else(|e| e.into_inner()) = Some(saved.clone());
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_saved();
            previous(info);
        }));
        let mut raw = saved;
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).map_err(std::io::Error::from)?;
        Ok(RawTerminal { active: true })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if self.active {
            restore_saved();
        }
    }
}

/// Attaches this terminal to the run's console until `Ctrl-]` or the end of the run.
pub fn attach(run_dir: &RunDir, read_only: bool) -> Result<(), Error> {
    let stream = control::request(run_dir, if read_only { "attach-ro" } else { "attach" })?;
    let run = run_dir.name();
    eprint!(
        "ferry: attached to {run}{}; Ctrl-] detaches\r\n",
        if read_only { " (read-only)" } else { "" }
    );
    let ended = {
        let _raw = RawTerminal::enter()?;
        pump(stream, read_only)?
    };
    if ended {
        eprintln!("\nferry: the run's console closed");
    } else {
        eprintln!("\nferry: detached from {run}");
    }
    Ok(())
}

/// Copies the console to stdout and stdin to the console. Returns true when the console
/// closed, false when the operator detached.
pub fn pump(stream: UnixStream, read_only: bool) -> std::io::Result<bool> {
    let closed = Arc::new(AtomicBool::new(false));
    let mut from = stream.try_clone()?;
    let out_closed = closed.clone();
    let output = std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        let mut stdout = std::io::stdout();
        while let Ok(n) = from.read(&mut buf) {
            if n == 0
                || stdout
                    .write_all(&buf[..n])
                    .and_then(|()| stdout.flush())
                    .is_err()
            {
                break;
            }
        }
        out_closed.store(true, Ordering::SeqCst);
    });
    let mut to = stream;
    let stdin = std::io::stdin();
    let mut buf = [0u8; 1024];
    let detached = loop {
        if closed.load(Ordering::SeqCst) {
            break false;
        }
        let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(200u16)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let n = match nix::unistd::read(&stdin, &mut buf) {
            Ok(0) => break true, // stdin closed: nothing more to type, leave
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => continue,
            Err(e) => return Err(e.into()),
        };
        let chunk = &buf[..n];
        let (typed, detach) = match chunk.iter().position(|&b| b == DETACH) {
            Some(p) => (&chunk[..p], true),
            None => (chunk, false),
        };
        if !read_only && !typed.is_empty() && to.write_all(typed).is_err() {
            break false;
        }
        if detach {
            break true;
        }
    };
    let _ = to.shutdown(std::net::Shutdown::Both);
    let _ = output.join();
    std::thread::sleep(Duration::from_millis(10));
    Ok(!detached)
}
