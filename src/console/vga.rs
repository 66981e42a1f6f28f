//! The VGA text screen as a console: for boot loaders that only write to the screen
//! (OpenBSD's `boot>`, the FreeBSD loader menu, syslinux and GRUB without a serial line).
//!
//! While the guest is in VGA text mode, the screen is 80×25 character/attribute pairs at
//! physical address `0xB8000` ([`TEXT_BUFFER`]). A [`ScreenReader`] (QEMU's monitor, see
//! `qemu::vga`) reads those 4000 bytes; [`decode`] turns them into lines of Unicode text (the
//! VGA font is code page 437); [`Differ`] turns successive screens into a stream of text like
//! a serial console's, and [`start`] runs the reading in a thread that writes that stream into
//! a socket, so the expect engine ([`super::Console`]) matches screens with the same patterns,
//! timeouts and failure patterns as serial output, and the transcript records them.
//!
//! # The stream
//!
//! - Lines are compared with the previous screen after removing trailing blanks (a prompt
//!   `boot> ` is the text `boot>`). A line that is new or changed is written; a line whose
//!   previous text is a prefix of the new one (keys echoed after a prompt) adds only the new
//!   part, so text already seen does not match again.
//! - A scrolled screen is recognised (the old lines moved up by some rows): only the lines
//!   that scrolled in are new. A screen that matches no scroll (cleared, a menu drawn) is new
//!   as a whole, apart from lines that did not change.
//! - The line written last is left open (no line break) until some other line is written, so a
//!   prompt is the end of the text (`/boot>$/` matches) and echoed keys join it as on a serial
//!   console.
//! - Only what is on the screen at each read is seen: text that appears and scrolls away
//!   between two reads (more than 25 lines) is missed. Boot loaders print slowly; a read every
//!   quarter second costs QEMU about 4 ms.
//! - Colours and the highlight of a menu entry are attributes, not text: moving the highlight
//!   changes nothing in the stream.
//!
//! # Graphics mode
//!
//! In a graphics mode the text buffer means nothing. [`Capture::Graphics`] is detected two
//! ways: the legacy window does not map `0xB8000` in VGA graphics modes, so it reads as all
//! `0xFF` (checked with mode 13h under QEMU 7.2); and the displayed resolution (QMP
//! `screendump`, checked every [`RESOLUTION_EVERY`] reads) is not one a text mode has, which
//! catches VESA modes. A resolution counts from its second check in a row: before the guest
//! sets a mode, QEMU's display is 640×480, which is no text mode either, and the first read
//! comes that early. The stream then says so in a line of its own, once per switch.

use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Physical address of the colour text buffer.
pub const TEXT_BUFFER: u64 = 0xB8000;
pub const COLS: usize = 80;
pub const ROWS: usize = 25;
/// Bytes of one 80×25 screen: a character and an attribute per cell.
pub const TEXT_BUFFER_LEN: usize = COLS * ROWS * 2;
/// The displayed resolution is checked once every this many reads.
pub const RESOLUTION_EVERY: u32 = 8;

/// What the screen shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capture {
    /// Text mode: [`ROWS`] lines, trailing blanks removed.
    Text(Vec<String>),
    /// A graphics mode: there is no text to read.
    Graphics,
}

/// Reads the guest's screen (implemented over QMP in `qemu::vga`).
pub trait ScreenReader: Send + 'static {
    /// The [`TEXT_BUFFER_LEN`] bytes at [`TEXT_BUFFER`].
    fn text_buffer(&mut self) -> io::Result<Vec<u8>>;
    /// The width and height of what the display shows, in pixels.
    fn resolution(&mut self) -> io::Result<(u32, u32)>;
}

/// Decodes a text buffer: graphics if it reads as all `0xFF` (see the module documentation).
pub fn decode(buffer: &[u8]) -> Capture {
    if buffer.iter().all(|&b| b == 0xFF) {
        return Capture::Graphics;
    }
    let lines = buffer
        .chunks(COLS * 2)
        .map(|row| {
            let line: String = row
                .chunks(2)
                .map(|cell| CP437[usize::from(cell[0])])
                .collect();
            line.trim_end().to_string()
        })
        .collect();
    Capture::Text(lines)
}

/// Whether a display of `width`×`height` pixels can be a text mode: 40 or 80 columns of 8 or 9
/// pixels, 25 rows of 8, 14 or 16.
pub fn is_text_resolution(width: u32, height: u32) -> bool {
    [320, 360, 640, 720].contains(&width) && [200, 350, 400].contains(&height)
}

/// Turns successive screens into a text stream (see the module documentation).
#[derive(Debug, Default)]
pub struct Differ {
    prev: Vec<String>,
    /// The stream ends in the middle of a line (no line break after the last text)...
    mid_line: bool,
    /// ... and this row (of `prev`) holds that line.
    open_row: Option<usize>,
}

impl Differ {
    pub fn new() -> Differ {
        Differ::default()
    }

    /// Appends to `out` what `lines`, the screen now, adds to the previous screen.
    pub fn update(&mut self, lines: &[String], out: &mut String) {
        let old = |i: usize| self.prev.get(i).map_or("", String::as_str);
        let n = lines.len();
        // The smallest scroll under which every old line is still there (or was extended).
        // If none fits (everything scrolled away, or the screen was redrawn), lines are
        // compared row by row: a redrawn menu's unchanged lines are not new.
        let scroll = (0..n)
            .find(|&k| {
                // A scroll keeps some old text, and happens because text was written at the
                // bottom; a mostly blank screen would otherwise "fit" many scrolls.
                let kept = k == 0 || (k..n).any(|i| !old(i).is_empty());
                let written = k == 0 || lines[n - k..].iter().any(|l| !l.is_empty());
                kept && written && (0..n - k).all(|i| lines[i].starts_with(old(i + k)))
            })
            .unwrap_or(0);
        let mut open_row = self.open_row.and_then(|r| r.checked_sub(scroll));
        for (i, line) in lines.iter().enumerate() {
            let before = old(i + scroll);
            if line == before || line.is_empty() {
                continue;
            }
            let extended = !before.is_empty() && line.starts_with(before);
            let text = if extended {
                &line[before.len()..]
            } else {
                line.as_str()
            };
            let continues = extended && open_row == Some(i);
            if self.mid_line && !continues {
                out.push_str("\r\n");
            }
            out.push_str(text);
            self.mid_line = true;
            open_row = Some(i);
        }
        self.open_row = open_row;
        self.prev = lines.to_vec();
    }

    /// Ends the open line and forgets the screen: the next text screen is new as a whole.
    pub fn reset(&mut self, out: &mut String) {
        if self.mid_line {
            out.push_str("\r\n");
        }
        *self = Differ::default();
    }

    /// The screen last given to [`Differ::update`].
    pub fn lines(&self) -> &[String] {
        &self.prev
    }
}

/// The screen as last read, shared with the reading thread.
#[derive(Debug, Default)]
struct State {
    capture: Mutex<Option<Capture>>,
    stop: AtomicBool,
}

/// The reading thread of [`start`]: the last screen, and stopping it.
#[derive(Debug)]
pub struct ScreenFeed {
    state: Arc<State>,
    thread: Option<JoinHandle<()>>,
}

impl ScreenFeed {
    /// The screen as last read (`None` before the first read).
    pub fn capture(&self) -> Option<Capture> {
        self.state
            .capture
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The last screen's non-empty lines, at most `n`, for errors and status (a graphics
    /// screen is described, not shown).
    pub fn last_lines(&self, n: usize) -> Vec<String> {
        match self.capture() {
            None => Vec::new(),
            Some(Capture::Graphics) => vec![GRAPHICS_NOTE.to_string()],
            Some(Capture::Text(lines)) => {
                let lines: Vec<String> = lines.into_iter().filter(|l| !l.is_empty()).collect();
                lines[lines.len().saturating_sub(n)..].to_vec()
            }
        }
    }
}

impl Drop for ScreenFeed {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

const GRAPHICS_NOTE: &str = "[ferry: the screen is in a graphics mode: no text to read]";

/// Reads the screen every `interval` in a thread and writes the text stream into a socket;
/// returns the other end (give it to [`super::Console::start`]) and the thread's handle. The
/// stream ends (the console sees QEMU gone) when a read fails or the handle is dropped.
pub fn start(
    mut reader: impl ScreenReader,
    interval: Duration,
) -> io::Result<(UnixStream, ScreenFeed)> {
    let (ours, theirs) = UnixStream::pair()?;
    let state = Arc::new(State::default());
    let thread = {
        let state = state.clone();
        std::thread::Builder::new()
            .name("vga-reader".into())
            .spawn(move || {
                if let Err(e) = feed(&mut reader, ours, interval, &state) {
                    tracing::debug!("VGA screen reader ended: {e}");
                }
            })?
    };
    Ok((
        theirs,
        ScreenFeed {
            state,
            thread: Some(thread),
        },
    ))
}

fn feed(
    reader: &mut impl ScreenReader,
    mut out: UnixStream,
    interval: Duration,
    state: &State,
) -> io::Result<()> {
    let mut differ = Differ::new();
    let mut text = String::new();
    let mut graphics = false;
    let mut reads = 0u32;
    // Resolution checks in a row that found no text mode; the verdict holds between checks.
    let mut not_text_checks = 0u32;
    while !state.stop.load(Ordering::Relaxed) {
        let mut capture = decode(&reader.text_buffer()?);
        if capture != Capture::Graphics && reads.is_multiple_of(RESOLUTION_EVERY) {
            let (w, h) = reader.resolution()?;
            not_text_checks = if is_text_resolution(w, h) {
                0
            } else {
                not_text_checks.saturating_add(1)
            };
        }
        if not_text_checks >= 2 {
            capture = Capture::Graphics;
        }
        reads = reads.wrapping_add(1);
        text.clear();
        match &capture {
            Capture::Text(lines) => {
                graphics = false;
                differ.update(lines, &mut text);
            }
            Capture::Graphics if !graphics => {
                graphics = true;
                differ.reset(&mut text);
                text.push_str(GRAPHICS_NOTE);
                text.push_str("\r\n");
            }
            Capture::Graphics => {}
        }
        *state.capture.lock().unwrap_or_else(|e| e.into_inner()) = Some(capture);
        if !text.is_empty() {
            out.write_all(text.as_bytes())?;
        }
        std::thread::sleep(interval);
    }
    Ok(())
}

/// Code page 437 as the VGA font draws it (0x00 and 0xFF are blanks).
#[rustfmt::skip]
const CP437: [char; 256] = [
    ' ', '☺', '☻', '♥', '♦', '♣', '♠', '•', '◘', '○', '◙', '♂', '♀', '♪', '♫', '☼',
    '►', '◄', '↕', '‼', '¶', '§', '▬', '↨', '↑', '↓', '→', '←', '∟', '↔', '▲', '▼',
    ' ', '!', '"', '#', '$', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/',
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?',
    '@', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O',
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', '[', '\\', ']', '^', '_',
    '`', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o',
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', '{', '|', '}', '~', '⌂',
    'Ç', 'ü', 'é', 'â', 'ä', 'à', 'å', 'ç', 'ê', 'ë', 'è', 'ï', 'î', 'ì', 'Ä', 'Å',
    'É', 'æ', 'Æ', 'ô', 'ö', 'ò', 'û', 'ù', 'ÿ', 'Ö', 'Ü', '¢', '£', '¥', '₧', 'ƒ',
    'á', 'í', 'ó', 'ú', 'ñ', 'Ñ', 'ª', 'º', '¿', '⌐', '¬', '½', '¼', '¡', '«', '»',
    '░', '▒', '▓', '│', '┤', '╡', '╢', '╖', '╕', '╣', '║', '╗', '╝', '╜', '╛', '┐',
    '└', '┴', '┬', '├', '─', '┼', '╞', '╟', '╚', '╔', '╩', '╦', '╠', '═', '╬', '╧',
    '╨', '╤', '╥', '╙', '╘', '╒', '╓', '╫', '╪', '┘', '┌', '█', '▄', '▌', '▐', '▀',
    'α', 'ß', 'Γ', 'π', 'Σ', 'σ', 'µ', 'τ', 'Φ', 'Θ', 'Ω', 'δ', '∞', 'φ', 'ε', '∩',
    '≡', '±', '≥', '≤', '⌠', '⌡', '÷', '≈', '°', '∙', '·', '√', 'ⁿ', '²', '■', ' ',
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::{Console, Expectation, Pattern};

    /// A text buffer showing `lines` from the top, white on black.
    fn buffer(lines: &[&str]) -> Vec<u8> {
        let mut b = vec![0u8; TEXT_BUFFER_LEN];
        for cell in b.chunks_mut(2) {
            cell.copy_from_slice(&[b' ', 0x07]);
        }
        for (r, line) in lines.iter().enumerate() {
            for (c, ch) in line.chars().enumerate() {
                let byte = CP437.iter().position(|&g| g == ch).unwrap() as u8;
                b[(r * COLS + c) * 2] = byte;
            }
        }
        b
    }

    fn screen(lines: &[&str]) -> Vec<String> {
        match decode(&buffer(lines)) {
            Capture::Text(l) => l,
            Capture::Graphics => panic!("graphics"),
        }
    }

    /// The stream text the screens produce, one after the other.
    fn stream(screens: &[&[&str]]) -> String {
        let mut d = Differ::new();
        let mut out = String::new();
        for s in screens {
            d.update(&screen(s), &mut out);
        }
        out
    }

    #[test]
    fn decodes_code_page_437() {
        let mut b = buffer(&["plain"]);
        b[COLS * 2..COLS * 2 + 8]
            .copy_from_slice(&[0x01, 0x1f, 0xc4, 0x4f, 0xb0, 0x70, 0x9b, 0x07]);
        let Capture::Text(lines) = decode(&b) else {
            panic!()
        };
        assert_eq!(lines.len(), ROWS);
        assert_eq!(lines[0], "plain");
        assert_eq!(lines[1], "☺─░¢");
        assert!(lines[2..].iter().all(String::is_empty));
        // Box drawing, accents, the blanks at 0x00 and 0xFF.
        assert_eq!(CP437[0xc9], '╔');
        assert_eq!(CP437[0x82], 'é');
        assert_eq!(CP437[0xdb], '█');
        assert_eq!((CP437[0x00], CP437[0xff]), (' ', ' '));
        assert_eq!(CP437[usize::from(b'A')], 'A');
    }

    #[test]
    fn all_ff_is_graphics() {
        assert_eq!(decode(&vec![0xFF; TEXT_BUFFER_LEN]), Capture::Graphics);
        assert!(is_text_resolution(720, 400));
        assert!(is_text_resolution(640, 400));
        assert!(!is_text_resolution(640, 480));
        assert!(!is_text_resolution(1024, 768));
    }

    #[test]
    fn first_screen_is_all_new_and_the_last_line_stays_open() {
        assert_eq!(stream(&[&["SeaBIOS", "", "boot>"]]), "SeaBIOS\r\nboot>");
    }

    #[test]
    fn echoed_keys_join_the_prompt() {
        let s = stream(&[
            &["OpenBSD", "boot>"],
            &["OpenBSD", "boot> set t"],
            &["OpenBSD", "boot> set tty com0", "switching console to com0"],
        ]);
        assert_eq!(
            s,
            "OpenBSD\r\nboot> set tty com0\r\nswitching console to com0"
        );
    }

    #[test]
    fn unchanged_screens_add_nothing() {
        assert_eq!(stream(&[&["a", "b"], &["a", "b"], &["a", "b"]]), "a\r\nb");
    }

    #[test]
    fn scrolled_lines_are_not_repeated() {
        let first: Vec<String> = (0..ROWS).map(|i| format!("line {i}")).collect();
        let second: Vec<String> = (3..ROWS + 3).map(|i| format!("line {i}")).collect();
        let mut d = Differ::new();
        let mut out = String::new();
        d.update(&first, &mut out);
        out.clear();
        d.update(&second, &mut out);
        assert_eq!(out, "\r\nline 25\r\nline 26\r\nline 27");
    }

    #[test]
    fn a_prompt_scrolled_up_with_its_answer() {
        // The prompt row got its typed text and moved up with the output after Enter.
        let mut first: Vec<String> = (0..ROWS - 1).map(|i| format!("msg {i}")).collect();
        first.push("boot>".into());
        let mut second: Vec<String> = first[2..ROWS - 1].to_vec();
        second.push("boot> boot -s".into());
        second.push("booting hd0a:/bsd".into());
        second.push("loading".into());
        let mut d = Differ::new();
        let mut out = String::new();
        d.update(&first, &mut out);
        out.clear();
        d.update(&second, &mut out);
        assert_eq!(out, " boot -s\r\nbooting hd0a:/bsd\r\nloading");
    }

    #[test]
    fn a_redrawn_screen_is_new_except_unchanged_lines() {
        let s = stream(&[
            &["Booting...", "", "Autoboot in 9 seconds"],
            &["Welcome to FreeBSD", "", "Autoboot in 9 seconds"],
            &["Welcome to FreeBSD", "", "Autoboot in 8 seconds"],
        ]);
        assert_eq!(
            s,
            "Booting...\r\nAutoboot in 9 seconds\r\nWelcome to FreeBSD\r\nAutoboot in 8 seconds"
        );
    }

    #[test]
    fn a_cleared_screen_then_the_same_text_again_is_new() {
        let mut d = Differ::new();
        let mut out = String::new();
        d.update(&screen(&["boot:"]), &mut out);
        d.update(&screen(&[]), &mut out);
        d.update(&screen(&["boot:"]), &mut out);
        assert_eq!(out, "boot:\r\nboot:");
    }

    /// Screens as the test hands them over; the stream ends when the sender is dropped. The
    /// resolutions are given in turn, the last one from then on.
    struct Script {
        screens: std::sync::mpsc::Receiver<Vec<u8>>,
        resolutions: Vec<(u32, u32)>,
    }

    impl ScreenReader for Script {
        fn text_buffer(&mut self) -> io::Result<Vec<u8>> {
            self.screens
                .recv()
                .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "QEMU exited"))
        }
        fn resolution(&mut self) -> io::Result<(u32, u32)> {
            if self.resolutions.len() > 1 {
                Ok(self.resolutions.remove(0))
            } else {
                Ok(self.resolutions[0])
            }
        }
    }

    fn console_over(
        resolution: (u32, u32),
    ) -> (Console, ScreenFeed, std::sync::mpsc::Sender<Vec<u8>>) {
        console_over_resolutions(vec![resolution])
    }

    fn console_over_resolutions(
        resolutions: Vec<(u32, u32)>,
    ) -> (Console, ScreenFeed, std::sync::mpsc::Sender<Vec<u8>>) {
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = Script {
            screens: rx,
            resolutions,
        };
        let (stream, feed) = start(reader, Duration::from_millis(1)).unwrap();
        (Console::start(stream, Vec::new()).unwrap(), feed, tx)
    }

    #[test]
    fn the_expect_engine_waits_for_screen_text() {
        let (mut console, feed, screens) = console_over((720, 400));
        let wait = |p: Pattern| Expectation::new("screen", vec![p], Duration::from_secs(5));
        screens.send(buffer(&["Loading..."])).unwrap();
        screens.send(buffer(&["Loading...", "boot>"])).unwrap();
        let m = console.expect(&wait(Pattern::regex(r"^boot>$"))).unwrap();
        assert_eq!(m.text, "boot>");
        screens
            .send(buffer(&["Loading...", "boot> set tty com0"]))
            .unwrap();
        // The prompt does not match again once keys were echoed after it.
        let m = console
            .expect(&wait(Pattern::regex(r"boot>|com0$")))
            .unwrap();
        assert_eq!(m.text, "com0");
        assert_eq!(feed.last_lines(5), ["Loading...", "boot> set tty com0"]);
        drop(screens);
        let e = console
            .expect(&wait(Pattern::literal("never")))
            .unwrap_err();
        assert!(e.to_string().contains("the console closed"), "{e}");
    }

    #[test]
    fn graphics_mode_is_said_once() {
        let (mut console, feed, screens) = console_over((720, 400));
        screens.send(buffer(&["GRUB"])).unwrap();
        screens.send(vec![0xFF; TEXT_BUFFER_LEN]).unwrap();
        screens.send(vec![0xFF; TEXT_BUFFER_LEN]).unwrap();
        drop(screens);
        let e = console
            .expect(&Expectation::new(
                "graphics",
                vec![Pattern::literal("never")],
                Duration::from_secs(5),
            ))
            .unwrap_err();
        assert_eq!(feed.capture(), Some(Capture::Graphics));
        assert_eq!(console.last_lines(5), ["GRUB", GRAPHICS_NOTE]);
        assert!(e.to_string().contains(GRAPHICS_NOTE), "{e}");
    }

    #[test]
    fn a_vesa_resolution_is_graphics_from_its_second_check_and_stays_so() {
        let (mut console, feed, screens) = console_over((1024, 768));
        // Reads 0 and 8 check the resolution; the verdict holds for the reads in between,
        // whose buffer still shows the text mode's last screen.
        for n in 0..3 * RESOLUTION_EVERY {
            let line = if n < RESOLUTION_EVERY {
                "text"
            } else {
                "stale"
            };
            screens.send(buffer(&[line])).unwrap();
        }
        drop(screens);
        let _ = console.wait_closed(Duration::from_secs(5));
        assert_eq!(feed.capture(), Some(Capture::Graphics));
        assert_eq!(console.last_lines(5), ["text", GRAPHICS_NOTE]);
    }

    #[test]
    fn the_display_before_the_guest_sets_a_mode_is_not_graphics() {
        // QEMU's display is 640×480 until the BIOS sets the text mode.
        let (mut console, feed, screens) = console_over_resolutions(vec![(640, 480), (720, 400)]);
        for _ in 0..3 * RESOLUTION_EVERY {
            screens.send(buffer(&["SeaBIOS"])).unwrap();
        }
        drop(screens);
        let _ = console.wait_closed(Duration::from_secs(5));
        assert_eq!(feed.capture(), Some(Capture::Text(screen(&["SeaBIOS"]))));
        assert_eq!(console.last_lines(5), ["SeaBIOS"]);
    }
}
