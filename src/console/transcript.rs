//! The run's records of the serial stream: `serial.log` (raw bytes, exactly as received) and
//! `transcript.cast` (asciicast v2, replayable with `asciinema play`, including what ferry
//! typed as `"i"` events).
//!
//! Both are [`Sink`]s fed by the console's reader thread. Each event is written with one
//! `write` and flushed at once, so a crash of ferry leaves files that end at the last event;
//! events are as large as the reads from the socket, so this costs one syscall per read.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::expect::Sink;

/// File name of the raw serial log in the run directory.
pub const SERIAL_LOG: &str = "serial.log";
/// File name of the asciicast transcript in the run directory.
pub const TRANSCRIPT_CAST: &str = "transcript.cast";

/// File names of the VGA screen's stream (`super::vga`) and its cast, beside the serial ones.
pub const SCREEN_LOG: &str = "screen.log";
pub const SCREEN_CAST: &str = "screen.cast";

/// Creates `serial.log` and `transcript.cast` in `dir` and returns them as sinks.
pub fn create(dir: &Path, title: &str) -> io::Result<Vec<Box<dyn Sink>>> {
    pair(dir, SERIAL_LOG, TRANSCRIPT_CAST, title, 24)
}

/// Creates `screen.log` and `screen.cast` in `dir` (the screen's 25 rows) and returns them as
/// sinks.
pub fn create_screen(dir: &Path, title: &str) -> io::Result<Vec<Box<dyn Sink>>> {
    pair(dir, SCREEN_LOG, SCREEN_CAST, title, 25)
}

fn pair(
    dir: &Path,
    log: &str,
    cast: &str,
    title: &str,
    height: u16,
) -> io::Result<Vec<Box<dyn Sink>>> {
    Ok(vec![
        Box::new(RawLog::create(&dir.join(log))?),
        Box::new(Cast::create(&dir.join(cast), title, 80, height)?),
    ])
}

/// Raw output bytes, as received (input is not recorded: it is in the cast).
#[derive(Debug)]
pub struct RawLog {
    file: BufWriter<File>,
    path: PathBuf,
}

impl RawLog {
    pub fn create(path: &Path) -> io::Result<RawLog> {
        Ok(RawLog {
            file: BufWriter::with_capacity(64 * 1024, File::create(path)?),
            path: path.to_path_buf(),
        })
    }
}

/// A write error that names the file ("No space left on device" alone does not say where).
fn naming(path: &Path) -> impl Fn(io::Error) -> io::Error + '_ {
    move |e| io::Error::new(e.kind(), format!("cannot write {}: {e}", path.display()))
}

impl Sink for RawLog {
    fn output(&mut self, _at: Duration, bytes: &[u8]) -> io::Result<()> {
        let written = self.file.write_all(bytes).and_then(|()| self.file.flush());
        written.map_err(naming(&self.path))
    }

    fn input(&mut self, _at: Duration, _bytes: &[u8]) -> io::Result<()> {
        Ok(())
    }
}

/// An asciicast v2 file: a JSON header line, then one `[seconds, "o"|"i", "text"]` line per
/// event. Event text is always valid UTF-8: an incomplete UTF-8 sequence at the end of a chunk
/// is carried to the next output event, invalid bytes become U+FFFD.
#[derive(Debug)]
pub struct Cast {
    file: BufWriter<File>,
    path: PathBuf,
    /// Bytes of an incomplete UTF-8 sequence at the end of the last output (at most 3).
    carry: Vec<u8>,
    last: Duration,
    line: Vec<u8>,
}

impl Cast {
    pub fn create(path: &Path, title: &str, width: u16, height: u16) -> io::Result<Cast> {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let header = serde_json::json!({
            "version": 2,
            "width": width,
            "height": height,
            "timestamp": timestamp,
            "title": title,
        });
        let mut file = BufWriter::with_capacity(64 * 1024, File::create(path)?);
        serde_json::to_writer(&mut file, &header)?;
        file.write_all(b"\n")?;
        file.flush()?;
        Ok(Cast {
            file,
            path: path.to_path_buf(),
            carry: Vec::new(),
            last: Duration::ZERO,
            line: Vec::new(),
        })
    }

    fn event(&mut self, at: Duration, kind: &str, text: &str) -> io::Result<()> {
        if text.is_empty() {
            return Ok(());
        }
        // Times never go backwards, even if callers' clocks disagree slightly.
        let at = at.max(self.last);
        self.last = at;
        self.line.clear();
        serde_json::to_writer(
            &mut self.line,
            &(at.as_secs_f64(), kind, text), // serialises as a JSON array
        )?;
        self.line.push(b'\n');
        let written = self
            .file
            .write_all(&self.line)
            .and_then(|()| self.file.flush());
        written.map_err(naming(&self.path))
    }
}

/// Decodes `bytes` as UTF-8, replacing invalid bytes with U+FFFD; an incomplete sequence at
/// the very end is left out and returned as the carry for the next chunk.
fn decode_carrying(bytes: &[u8]) -> (String, &[u8]) {
    let mut text = String::with_capacity(bytes.len());
    let mut rest = bytes;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                text.push_str(s);
                return (text, &[]);
            }
            Err(e) => {
                let (valid, after) = rest.split_at(e.valid_up_to());
                // `valid` was just checked: this cannot fail.
                text.push_str(std::str::from_utf8(valid).unwrap_or_default());
                match e.error_len() {
                    Some(n) => {
                        text.push(char::REPLACEMENT_CHARACTER);
                        rest = &after[n..];
                    }
                    None => return (text, after),
                }
            }
        }
    }
}

impl Sink for Cast {
    fn output(&mut self, at: Duration, bytes: &[u8]) -> io::Result<()> {
        let text = if self.carry.is_empty() {
            let (text, carry) = decode_carrying(bytes);
            self.carry.extend_from_slice(carry);
            text
        } else {
            let mut joined = std::mem::take(&mut self.carry);
            joined.extend_from_slice(bytes);
            let (text, carry) = decode_carrying(&joined);
            self.carry = carry.to_vec();
            text
        };
        self.event(at, "o", &text)
    }

    fn input(&mut self, at: Duration, bytes: &[u8]) -> io::Result<()> {
        let text = String::from_utf8_lossy(bytes).into_owned();
        self.event(at, "i", &text)
    }
}

impl Drop for Cast {
    fn drop(&mut self) {
        if !self.carry.is_empty() {
            let text = String::from_utf8_lossy(&self.carry).into_owned();
            self.carry.clear();
            let _ = self.event(self.last, "o", &text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_carries_incomplete_tail() {
        let b = "a✓".as_bytes();
        let (t, c) = decode_carrying(&b[..3]);
        assert_eq!(t, "a");
        assert_eq!(c, &b[1..3]);
        let (t, c) = decode_carrying(b"a\xffb\xe2");
        assert_eq!(t, "a\u{fffd}b");
        assert_eq!(c, b"\xe2");
    }

    #[test]
    fn cast_events() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.cast");
        {
            let mut c = Cast::create(&path, "test", 80, 24).unwrap();
            let b = "x✓y".as_bytes();
            c.output(Duration::from_millis(10), &b[..2]).unwrap();
            c.output(Duration::from_millis(20), &b[2..]).unwrap();
            c.input(Duration::from_millis(15), b"root\r").unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["version"], 2);
        assert_eq!(lines[0]["title"], "test");
        assert_eq!(lines[1][2], "x");
        assert_eq!(lines[2][2], "✓y");
        assert_eq!(lines[3][1], "i");
        assert_eq!(lines[3][2], "root\r");
        // The late input event is clamped, never before the previous one.
        assert!(lines[3][0].as_f64().unwrap() >= lines[2][0].as_f64().unwrap());
    }
}
