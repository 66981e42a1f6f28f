//! A QMP client: JSON commands over QEMU's monitor socket, with events kept as they arrive.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::console::keys::{KeyAction, Keys};

#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("QEMU sent something that is not QMP: {0}")]
    Protocol(String),
    #[error("`{command}` failed: {class}: {desc}")]
    Command {
        command: String,
        class: String,
        desc: String,
    },
    #[error("the QMP connection closed (QEMU exited)")]
    Closed,
    #[error("QEMU did not answer `{command}` within {} s", waited.as_secs())]
    NoReply { command: String, waited: Duration },
}

/// Writes `system_powerdown` (an ACPI power-button press) on a [`Qmp::control_stream`]. The
/// command carries an `id`, so the session's own command loop skips its reply.
pub fn request_powerdown(mut stream: &UnixStream) -> std::io::Result<()> {
    stream.write_all(b"{\"execute\": \"system_powerdown\", \"id\": \"ferry-signal\"}\n")
}

/// A connected QMP session in command mode.
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    events: Vec<Value>,
}

const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a `<wait>` in typed keys checks whether the run was stopped.
const WAIT_SLICE: Duration = Duration::from_millis(100);

impl Qmp {
    /// Reads the greeting and negotiates capabilities.
    pub fn handshake(stream: UnixStream) -> Result<Qmp, QmpError> {
        stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
        let writer = stream.try_clone()?;
        let mut qmp = Qmp {
            reader: BufReader::new(stream),
            writer,
            events: Vec::new(),
        };
        let greeting = qmp.read_message()?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Protocol(greeting.to_string()));
        }
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    /// Runs one command and returns its `return` value; events seen meanwhile are kept.
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, QmpError> {
        let mut request = json!({ "execute": command });
        if let Some(arguments) = arguments {
            request["arguments"] = arguments;
        }
        let mut line = request.to_string();
        line.push('\n');
        self.writer.write_all(line.as_bytes())?;
        loop {
            let message = self.read_message().map_err(|e| match e {
                QmpError::Io(io)
                    if matches!(
                        io.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    QmpError::NoReply {
                        command: command.into(),
                        waited: REPLY_TIMEOUT,
                    }
                }
                e => e,
            })?;
            if message.get("id").is_some() {
                continue; // the reply to a command written by another thread (see `request_powerdown`)
            }
            if let Some(value) = message.get("return") {
                return Ok(value.clone());
            }
            if let Some(error) = message.get("error") {
                let text = |k: &str| {
                    error
                        .get(k)
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string()
                };
                return Err(QmpError::Command {
                    command: command.into(),
                    class: text("class"),
                    desc: text("desc"),
                });
            }
            if message.get("event").is_some() {
                self.events.push(message);
            }
        }
    }

    /// The VM's run state: `running`, `paused`, `shutdown`, ...
    pub fn status(&mut self) -> Result<String, QmpError> {
        let reply = self.execute("query-status", None)?;
        Ok(reply
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_string())
    }

    /// Presses the virtual power button (ACPI): the guest shuts down if it listens.
    pub fn system_powerdown(&mut self) -> Result<(), QmpError> {
        self.execute("system_powerdown", None).map(drop)
    }

    /// Ends QEMU at once. The connection may close before the reply arrives.
    pub fn quit(&mut self) -> Result<(), QmpError> {
        match self.execute("quit", None) {
            Ok(_) | Err(QmpError::Closed) => Ok(()),
            Err(QmpError::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// A second handle on the QMP socket for writing only: [`request_powerdown`] uses it from
    /// a signal-handling thread while this session may be waiting for a reply.
    pub fn control_stream(&self) -> std::io::Result<UnixStream> {
        self.writer.try_clone()
    }

    /// Saves the VGA screen as a PNG.
    pub fn screendump(&mut self, path: &Path) -> Result<(), QmpError> {
        let args = json!({ "filename": path.display().to_string(), "format": "png" });
        self.execute("screendump", Some(args)).map(drop)
    }

    /// Presses keys together, by QEMU key code names (`ret`, `tab`, `ctrl`, `a`, ...).
    pub fn send_key(&mut self, qcodes: &[&str]) -> Result<(), QmpError> {
        let keys: Vec<Value> = qcodes
            .iter()
            .map(|k| json!({ "type": "qcode", "data": k }))
            .collect();
        self.execute("send-key", Some(json!({ "keys": keys })))
            .map(drop)
    }

    /// Writes `size` bytes of guest physical memory from `address` into `path` (a file QEMU
    /// creates). Reads device memory too, such as the VGA text buffer.
    pub fn pmemsave(&mut self, address: u64, size: usize, path: &Path) -> Result<(), QmpError> {
        let args = json!({ "val": address, "size": size, "filename": path.display().to_string() });
        self.execute("pmemsave", Some(args)).map(drop)
    }

    /// Types `actions` ([`Keys`]): every press and release is its own `input-send-event`,
    /// `interval` apart, because the guest's PS/2 keyboard queue is short (QEMU drops what
    /// overflows it) and a firmware polling under TCG is slow; `send-key` would release its keys
    /// only after a hold time, out of order with held modifiers.
    ///
    /// `stopped` is asked before each key and during waits: once it says yes, nothing more is
    /// typed (an interrupted run types nothing into the guest). Returns whether every key was
    /// typed. A held modifier stays held then, as the guest is about to be stopped anyway.
    pub fn type_keys(
        &mut self,
        keys: &Keys,
        interval: Duration,
        stopped: &dyn Fn() -> bool,
    ) -> Result<bool, QmpError> {
        for action in &keys.actions {
            if stopped() {
                return Ok(false);
            }
            match *action {
                KeyAction::Key { qcode, down } => {
                    let event = json!({
                        "type": "key",
                        "data": { "down": down, "key": { "type": "qcode", "data": qcode } },
                    });
                    self.execute("input-send-event", Some(json!({ "events": [event] })))?;
                    std::thread::sleep(interval);
                }
                KeyAction::Wait(pause) => {
                    // `<wait1m>` must not outlast an interrupt by a minute.
                    let deadline = crate::clock::deadline(pause);
                    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                        if stopped() {
                            return Ok(false);
                        }
                        std::thread::sleep(left.min(WAIT_SLICE));
                    }
                }
            }
        }
        Ok(!stopped())
    }

    /// Waits for an event by name (e.g. `SHUTDOWN`), including ones already received.
    pub fn wait_event(&mut self, name: &str, timeout: Duration) -> Result<Option<Value>, QmpError> {
        let deadline = crate::clock::deadline(timeout);
        loop {
            if let Some(i) = self.events.iter().position(|e| e["event"] == name) {
                return Ok(Some(self.events.remove(i)));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.reader.get_ref().set_read_timeout(Some(left))?;
            let message = self.read_message();
            self.reader
                .get_ref()
                .set_read_timeout(Some(REPLY_TIMEOUT))?;
            match message {
                Ok(m) if m.get("event").is_some() => self.events.push(m),
                Ok(_) => {}
                Err(QmpError::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Like [`Qmp::wait_event`], but the event stays for a later wait.
    pub fn peek_event(&mut self, name: &str, timeout: Duration) -> Result<Option<Value>, QmpError> {
        let event = self.wait_event(name, timeout)?;
        if let Some(event) = &event {
            self.events.insert(0, event.clone());
        }
        Ok(event)
    }

    /// Events received so far and not yet waited for.
    pub fn events(&self) -> &[Value] {
        &self.events
    }

    fn read_message(&mut self) -> Result<Value, QmpError> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(QmpError::Closed);
        }
        serde_json::from_str(&line).map_err(|_| QmpError::Protocol(line.trim().to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};

    /// A fake QEMU on the other end of a socket pair, answering each request with `reply`.
    fn fake_qemu(replies: Vec<&'static str>) -> Qmp {
        let (ours, theirs) = UnixStream::pair().unwrap();
        std::thread::spawn(move || {
            let mut w = theirs.try_clone().unwrap();
            let mut r = BufReader::new(theirs);
            writeln!(w, r#"{{"QMP": {{"version": {{}}, "capabilities": []}}}}"#).unwrap();
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            assert!(line.contains("qmp_capabilities"));
            writeln!(w, r#"{{"return": {{}}}}"#).unwrap();
            for reply in replies {
                line.clear();
                if r.read_line(&mut line).unwrap() == 0 {
                    return;
                }
                w.write_all(reply.as_bytes()).unwrap();
            }
            // Stay connected a while, like a QEMU that is still running.
            std::thread::sleep(Duration::from_millis(500));
        });
        Qmp::handshake(ours).unwrap()
    }

    /// A QEMU that stops answering is named with the command it did not answer.
    #[test]
    fn a_command_left_unanswered_is_named() {
        let mut qmp = fake_qemu(vec![]);
        qmp.reader
            .get_ref()
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let e = qmp.execute("x-exit-preconfig", None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "QEMU did not answer `x-exit-preconfig` within 30 s"
        );
    }

    #[test]
    fn status_keeps_events_seen_before_the_reply() {
        let mut qmp = fake_qemu(vec![
            "{\"event\": \"POWERDOWN\", \"timestamp\": {}}\n{\"return\": {\"status\": \"running\", \"running\": true}}\n",
        ]);
        assert_eq!(qmp.status().unwrap(), "running");
        assert_eq!(qmp.events().len(), 1);
        assert!(
            qmp.wait_event("POWERDOWN", Duration::from_millis(10))
                .unwrap()
                .is_some()
        );
        assert!(
            qmp.wait_event("SHUTDOWN", Duration::from_millis(50))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn command_errors_carry_class_and_description() {
        let mut qmp = fake_qemu(vec![
            "{\"error\": {\"class\": \"GenericError\", \"desc\": \"no such key\"}}\n",
        ]);
        let e = qmp.send_key(&["nope"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`send-key` failed: GenericError: no such key"
        );
    }

    #[test]
    fn quit_tolerates_the_connection_closing() {
        let mut qmp = fake_qemu(vec![]);
        qmp.quit().unwrap();
    }
}
