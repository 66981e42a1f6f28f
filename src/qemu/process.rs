//! Running QEMU: the process, its sockets, and the guarantee that it never outlives ferry.
//!
//! Each QEMU child gets `PR_SET_PDEATHSIG(SIGKILL)` (the kernel kills it if ferry dies, even by
//! SIGKILL) and its own process group (a Ctrl-C on the terminal reaches ferry, which decides
//! how to stop the guest, and not QEMU directly). Live children are kept in a registry so a
//! signal handler can stop them all.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::qmp::Qmp;
use super::{Machine, QemuBinary};

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot start {}: {source}", program.display())]
    Spawn {
        program: PathBuf,
        source: std::io::Error,
    },
    #[error("QEMU exited at start-up ({status}):\n{stderr}")]
    EarlyExit { status: ExitStatus, stderr: String },
    #[error("QEMU did not open {} within {timeout:?}", path.display())]
    SocketTimeout { path: PathBuf, timeout: Duration },
    #[error("QMP: {0}")]
    Qmp(#[from] super::qmp::QmpError),
    #[error("waiting for QEMU: {0}")]
    Wait(std::io::Error),
    #[error("the guest did not power off: {how}")]
    NotPoweredOff { how: String },
}

/// PIDs of the QEMU processes ferry started and has not reaped yet.
static RUNNING: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// Asks every running QEMU to quit (SIGTERM makes QEMU exit cleanly, flushing its disks).
/// Safe to call from a signal-handling thread.
pub fn terminate_all() {
    let pids = RUNNING.lock().map(|p| p.clone()).unwrap_or_default();
    for pid in pids {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
}

/// Write-only QMP handles of the running QEMUs, by PID, for [`powerdown_all`].
static CONTROLS: Mutex<Vec<(i32, UnixStream)>> = Mutex::new(Vec::new());

/// Presses every running QEMU's ACPI power button (QMP `system_powerdown`). Safe to call from
/// a signal-handling thread.
pub fn powerdown_all() {
    let controls = CONTROLS.lock().unwrap_or_else(|e| e.into_inner());
    for (pid, stream) in controls.iter() {
        match super::qmp::request_powerdown(stream) {
            Ok(()) => tracing::warn!(pid, "ACPI power-down requested (QMP system_powerdown)"),
            Err(e) => tracing::warn!(pid, "QMP system_powerdown: {e}"),
        }
    }
}

/// One running QEMU with its serial console and QMP connected.
pub struct Qemu {
    child: Child,
    pub serial: UnixStream,
    pub qmp: Qmp,
    /// The screen monitor's connection, when the machine has one, for its reader to take.
    pub screen: Option<UnixStream>,
}

impl Qemu {
    /// Starts QEMU with `args` (`machine`'s [`super::command_line`]), its stderr going to
    /// `stderr_path`, and connects to the machine's serial and QMP sockets. The guest starts
    /// running once they are connected (QEMU accepts each while it starts: `wait=on`) and,
    /// for a kernel boot, once its command line is set over QMP.
    ///
    /// QEMU's stderr goes through a pipe into `stderr` (a writer of `stderr_path` that may
    /// redact), copied by a thread until QEMU and the helpers it started close it.
    pub fn start(
        binary: &QemuBinary,
        args: &[String],
        machine: &Machine,
        stderr_path: &Path,
        stderr: Box<dyn Write + Send>,
    ) -> Result<Qemu, ProcessError> {
        Qemu::spawn(binary, args, machine, stderr_path, stderr)?.connect(machine)
    }

    /// The first half of [`Qemu::start`]: QEMU's process, not yet connected to. It builds no
    /// machine before [`Spawned::connect`] (the serial console waits for ferry, a kernel boot
    /// waits in `--preconfig`), so the files the machine reads — a kernel, an initrd — may
    /// still be being written while QEMU loads.
    pub fn spawn(
        binary: &QemuBinary,
        args: &[String],
        machine: &Machine,
        stderr_path: &Path,
        mut stderr: Box<dyn Write + Send>,
    ) -> Result<Spawned, ProcessError> {
        let sockets = [&machine.serial_socket, &machine.qmp_socket];
        for socket in sockets.into_iter().chain(&machine.screen_socket) {
            let _ = std::fs::remove_file(socket);
        }
        let mut command = Command::new(&binary.program);
        command
            .args(&binary.pre_args)
            .args(args)
            .envs(binary.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let parent = std::process::id() as i32;
        // SAFETY: only async-signal-safe calls (setpgid, prctl, getppid, _exit) run between
        // fork and exec.
        unsafe {
            command.pre_exec(move || {
                nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0))?;
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
                // ferry may have died between fork and prctl: then nobody would kill us.
                if nix::unistd::getppid().as_raw() != parent {
                    libc_exit();
                }
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(|source| ProcessError::Spawn {
            program: binary.program.clone(),
            source,
        })?;
        if let Ok(mut running) = RUNNING.lock() {
            running.push(child.id() as i32);
        }
        let pipe = child.stderr.take();
        let copier = std::thread::spawn(move || {
            if let Some(mut pipe) = pipe {
                let _ = std::io::copy(&mut pipe, &mut stderr);
            }
        });
        Ok(Spawned(Partial {
            child: Some(child),
            stderr_path: stderr_path.to_path_buf(),
            copier: Some(copier),
        }))
    }
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `timeout` for QEMU to exit by itself.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>, ProcessError> {
        let deadline = crate::clock::deadline(timeout);
        loop {
            if let Some(status) = self.child.try_wait().map_err(ProcessError::Wait)? {
                forget(self.child.id());
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `timeout` for QEMU to exit after the guest's console closed, and checks that
    /// the guest powered off: only a QMP `SHUTDOWN` event from the guest counts. QEMU killed by
    /// a signal, crashed, or shut down by the host is an error that says how it ended.
    pub fn wait_poweroff(&mut self, timeout: Duration) -> Result<Option<ExitStatus>, ProcessError> {
        match self.ending(timeout)? {
            Ending::GuestPowerOff(status) => Ok(status),
            Ending::Other(how) => Err(ProcessError::NotPoweredOff { how }),
        }
    }

    /// How QEMU ended, as a user reads it ("QEMU was killed by signal SIGKILL", "the guest
    /// powered off"), waiting up to `timeout` for it to exit.
    pub fn how_it_ended(&mut self, timeout: Duration) -> Result<String, ProcessError> {
        Ok(match self.ending(timeout)? {
            Ending::GuestPowerOff(_) => "the guest powered off".to_string(),
            Ending::Other(how) => how,
        })
    }

    fn ending(&mut self, timeout: Duration) -> Result<Ending, ProcessError> {
        let status = self.wait_timeout(timeout)?;
        // QEMU sends the event before it exits; after the exit it is read from the socket's
        // buffer, then the connection reads as closed. It stays: a step that saw the console
        // close asks first, the finish stage (after a resumed pause) asks again.
        let event = self
            .qmp
            .peek_event("SHUTDOWN", Duration::from_secs(1))
            .ok()
            .flatten();
        let data = event.as_ref().map(|e| &e["data"]);
        if data.is_some_and(|d| d["guest"] == true) {
            return Ok(Ending::GuestPowerOff(status));
        }
        let mut how = match status {
            None => format!(
                "QEMU still running {} s after the console closed",
                timeout.as_secs()
            ),
            Some(status) => ended(status),
        };
        if let Some(reason) = data.and_then(|d| d["reason"].as_str()) {
            how.push_str(&format!(" (QEMU's shutdown reason: {reason})"));
        }
        Ok(Ending::Other(how))
    }

    /// Stops QEMU: QMP `quit`, then SIGKILL if it has not exited within a few seconds.
    pub fn stop(&mut self) -> Result<ExitStatus, ProcessError> {
        if let Some(status) = self.child.try_wait().map_err(ProcessError::Wait)? {
            forget(self.child.id());
            return Ok(status);
        }
        let _ = self.qmp.quit();
        if let Some(status) = self.wait_timeout(Duration::from_secs(5))? {
            return Ok(status);
        }
        let _ = self.child.kill();
        let status = self.child.wait().map_err(ProcessError::Wait)?;
        forget(self.child.id());
        Ok(status)
    }
}

/// A QEMU process that has not built its machine yet ([`Qemu::spawn`]); killed when dropped.
pub struct Spawned(Partial);

impl Spawned {
    /// Connects to `machine`'s serial, QMP and screen sockets, in the order QEMU accepts them
    /// while it starts (the command line's), and lets QEMU build the machine (for a kernel
    /// boot, with its command line set over QMP): the guest starts.
    pub fn connect(mut self, machine: &Machine) -> Result<Qemu, ProcessError> {
        let qemu = &mut self.0;
        let serial = qemu.connect(&machine.serial_socket)?;
        let qmp_stream = qemu.connect(&machine.qmp_socket)?;
        let screen = match &machine.screen_socket {
            Some(socket) => Some(qemu.connect(socket)?),
            None => None,
        };
        let mut qmp = Qmp::handshake(qmp_stream).map_err(|e| qemu.exit_error(e))?;
        if let Some(boot) = &machine.kernel {
            set_kernel_command_line(&mut qmp, &boot.append).map_err(|e| qemu.exit_error(e))?;
        }
        if let (Ok(stream), Some(child)) = (qmp.control_stream(), qemu.child.as_ref())
            && let Ok(mut controls) = CONTROLS.lock()
        {
            controls.push((child.id() as i32, stream));
        }
        Ok(Qemu {
            child: qemu.child.take().expect("child present until handed over"),
            serial,
            qmp,
            screen,
        })
    }
}

/// How a QEMU process ended: the guest's own power-off (its exit status, if QEMU has exited
/// yet), or anything else, said for a user.
enum Ending {
    GuestPowerOff(Option<ExitStatus>),
    Other(String),
}

/// Sets the kernel command line of a QEMU waiting in `--preconfig` and lets it build the
/// machine: a value given here is never in QEMU's argv, which every local user can read.
fn set_kernel_command_line(qmp: &mut Qmp, append: &str) -> Result<(), super::qmp::QmpError> {
    let property = serde_json::json!({ "path": "/machine", "property": "append", "value": append });
    qmp.execute("qom-set", Some(property))?;
    qmp.execute("x-exit-preconfig", None).map(drop)
}

/// How a QEMU process ended, as a user reads it.
fn ended(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (_, Some(signal)) => {
            let name = Signal::try_from(signal)
                .map_or_else(|_| signal.to_string(), |s| s.as_str().to_string());
            let core = if status.core_dumped() {
                ", core dumped"
            } else {
                ""
            };
            format!("QEMU was killed by signal {name}{core}")
        }
        (Some(code), _) => {
            format!("QEMU exited with status {code} without a shutdown from the guest")
        }
        (None, None) => format!("QEMU ended ({status})"),
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// A QEMU being started: killed if start-up fails half-way.
struct Partial {
    child: Option<Child>,
    stderr_path: PathBuf,
    /// The thread copying QEMU's stderr into its file.
    copier: Option<std::thread::JoinHandle<()>>,
}

impl Partial {
    /// QEMU exited at start-up: what it said on stderr, once all of it is in the file.
    fn early_exit(&mut self, status: ExitStatus) -> ProcessError {
        if let Some(copier) = self.copier.take() {
            let _ = copier.join();
        }
        ProcessError::EarlyExit {
            status,
            stderr: tail(&self.stderr_path, 20),
        }
    }
}

impl Partial {
    /// Connects to a unix socket QEMU creates, watching for QEMU exiting instead.
    fn connect(&mut self, path: &Path) -> Result<UnixStream, ProcessError> {
        let timeout = Duration::from_secs(10);
        let deadline = crate::clock::deadline(timeout);
        let child = self.child.as_mut().expect("child present while starting");
        loop {
            if let Ok(stream) = UnixStream::connect(path) {
                return Ok(stream);
            }
            if let Some(status) = child.try_wait().map_err(ProcessError::Wait)? {
                forget(child.id());
                self.child = None;
                return Err(self.early_exit(status));
            }
            if Instant::now() >= deadline {
                return Err(ProcessError::SocketTimeout {
                    path: path.to_path_buf(),
                    timeout,
                });
            }
            // QEMU creates its sockets within tens of milliseconds: poll finely.
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Partial {
    /// A QMP failure during start-up is usually QEMU dying: report its exit and stderr then.
    fn exit_error(&mut self, qmp_error: super::qmp::QmpError) -> ProcessError {
        let Some(child) = self.child.as_mut() else {
            return qmp_error.into();
        };
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                forget(child.id());
                self.child = None;
                return self.early_exit(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        qmp_error.into()
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            forget(child.id());
        }
    }
}

fn forget(pid: u32) {
    if let Ok(mut running) = RUNNING.lock() {
        running.retain(|&p| p != pid as i32);
    }
    if let Ok(mut controls) = CONTROLS.lock() {
        controls.retain(|(p, _)| *p != pid as i32);
    }
}

fn libc_exit() -> ! {
    // SAFETY: _exit is async-signal-safe and never returns.
    unsafe { nix::libc::_exit(1) }
}

fn tail(path: &Path, lines: usize) -> String {
    let mut text = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
