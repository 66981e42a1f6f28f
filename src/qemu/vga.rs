//! Reading the guest's VGA screen through a QMP monitor of its own (see
//! `super::cmdline`'s `screen_monitor_args`), for [`crate::console::vga`].
//!
//! The text buffer is read with `pmemsave` into a file in the run directory: measured under
//! QEMU 7.2 (TCG), 3.7 ms a read against 4.5 ms for HMP `xp /2000hx 0xb8000`, whose 18 KB of
//! hexadecimal text would then have to be parsed. The resolution comes from the header of a
//! `screendump` (PPM), 6 ms, taken only now and then.

use std::io::{self, Read};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use super::qmp::{Qmp, QmpError};
use crate::console::vga::{ScreenReader, TEXT_BUFFER, TEXT_BUFFER_LEN};

/// File names in the run directory: the last text buffer read, the last resolution check.
pub const TEXT_FILE: &str = "vga-text.bin";
pub const CHECK_FILE: &str = "vga-check.ppm";

/// The screen monitor: a QMP session used only to read the screen.
pub struct VgaMonitor {
    qmp: Qmp,
    text_file: PathBuf,
    check_file: PathBuf,
}

impl VgaMonitor {
    /// Talks to the screen monitor over `stream` (connected while QEMU started, see
    /// [`super::Spawned::connect`]); its files go into `dir`.
    pub fn connect(stream: UnixStream, dir: &Path) -> Result<VgaMonitor, QmpError> {
        Ok(VgaMonitor {
            qmp: Qmp::handshake(stream)?,
            text_file: dir.join(TEXT_FILE),
            check_file: dir.join(CHECK_FILE),
        })
    }
}

fn io_error(e: QmpError) -> io::Error {
    match e {
        QmpError::Io(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

impl ScreenReader for VgaMonitor {
    fn text_buffer(&mut self) -> io::Result<Vec<u8>> {
        self.qmp
            .pmemsave(TEXT_BUFFER, TEXT_BUFFER_LEN, &self.text_file)
            .map_err(io_error)?;
        let buffer = std::fs::read(&self.text_file)?;
        if buffer.len() != TEXT_BUFFER_LEN {
            return Err(io::Error::other(format!(
                "{} holds {} bytes, not {TEXT_BUFFER_LEN}",
                self.text_file.display(),
                buffer.len()
            )));
        }
        Ok(buffer)
    }

    fn resolution(&mut self) -> io::Result<(u32, u32)> {
        let args = serde_json::json!({ "filename": self.check_file.display().to_string() });
        self.qmp
            .execute("screendump", Some(args))
            .map_err(io_error)?;
        let mut head = [0u8; 32];
        let n = std::fs::File::open(&self.check_file)?.read(&mut head)?;
        ppm_size(&head[..n]).ok_or_else(|| {
            io::Error::other(format!(
                "{} is not a PPM screendump",
                self.check_file.display()
            ))
        })
    }
}

/// Width and height from a binary PPM header (`P6\n720 400\n255\n`).
fn ppm_size(head: &[u8]) -> Option<(u32, u32)> {
    // Pixels follow the header: they need not be text.
    let text = String::from_utf8_lossy(head);
    let mut words = text.split_ascii_whitespace();
    if words.next()? != "P6" {
        return None;
    }
    Some((words.next()?.parse().ok()?, words.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ppm_headers() {
        assert_eq!(ppm_size(b"P6\n720 400\n255\n\0\0\0\0"), Some((720, 400)));
        assert_eq!(ppm_size(b"P6\n1024 768\n255\n\xff"), Some((1024, 768)));
        assert_eq!(ppm_size(b"\x89PNG\r\n"), None);
        assert_eq!(ppm_size(b"P6\n72"), None);
    }
}
