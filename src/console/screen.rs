//! The "screen" shown in error messages: what the operator would see on the serial console.
//!
//! [`Screen`] keeps the last [`Screen::CAPACITY`] bytes of *raw* output in a ring. Nothing is
//! parsed while output flows; [`Screen::last_lines`] replays the ring through a `vt100`
//! terminal (80x24 like the guest assumes, with scrollback) only when asked — for an error or
//! a status line — so curses screens (newt, dialog) come out as they look, not as a soup of
//! cursor movements.

use std::collections::VecDeque;

/// Terminal size the guest assumes on a serial console with no size set.
const COLS: u16 = 80;
const ROWS: u16 = 24;
/// Lines of scrollback kept while rendering.
const SCROLLBACK: usize = 2000;

/// A ring of the most recent raw output.
#[derive(Debug)]
pub struct Screen {
    ring: VecDeque<u8>,
    capacity: usize,
}

impl Default for Screen {
    fn default() -> Self {
        Self::new()
    }
}

impl Screen {
    /// Bytes of raw output kept for rendering.
    pub const CAPACITY: usize = 64 * 1024;

    pub fn new() -> Screen {
        Screen::with_capacity(Self::CAPACITY)
    }

    pub fn with_capacity(capacity: usize) -> Screen {
        Screen {
            ring: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// Appends raw output, forgetting the oldest bytes beyond the capacity.
    pub fn push(&mut self, bytes: &[u8]) {
        let bytes = &bytes[bytes.len().saturating_sub(self.capacity)..];
        let overflow = (self.ring.len() + bytes.len()).saturating_sub(self.capacity);
        self.ring.drain(..overflow);
        self.ring.extend(bytes);
    }

    /// Renders the ring and returns its last `n` non-empty lines, trailing spaces trimmed.
    pub fn last_lines(&self, n: usize) -> Vec<String> {
        let (a, b) = self.ring.as_slices();
        render_last_lines(&[a, b], self.ring.len() == self.capacity, n)
    }
}

/// Renders raw terminal output and returns its last `n` non-empty lines.
///
/// With `truncated`, the first bytes are the middle of the stream: everything up to the first
/// line feed is skipped so a cut escape sequence does not garble the first line.
pub fn render_last_lines(parts: &[&[u8]], truncated: bool, n: usize) -> Vec<String> {
    let mut parser = vt100::Parser::new(ROWS, COLS, SCROLLBACK);
    let mut skipping = truncated;
    let mut charset = Charsets::default();
    for part in parts {
        let mut part = *part;
        if skipping {
            match memchr::memchr(b'\n', part) {
                Some(i) => {
                    part = &part[i + 1..];
                    skipping = false;
                }
                None => continue,
            }
        }
        parser.process(&line_drawing_to_unicode(part, &mut charset));
    }
    let screen = parser.screen_mut();
    // All lines: scrollback (oldest first), then the visible screen. With scrollback offset
    // `o`, the visible rows are lines `total_sb - o ..` of the whole; walk down in pages.
    screen.set_scrollback(usize::MAX);
    let total_sb = screen.scrollback();
    let rows = usize::from(ROWS);
    let mut lines: Vec<String> = Vec::with_capacity(total_sb + rows);
    let mut offset = total_sb;
    loop {
        screen.set_scrollback(offset);
        let first = total_sb - offset; // global index of visible row 0
        for (r, row) in screen.rows(0, COLS).enumerate() {
            if first + r == lines.len() {
                lines.push(row);
            }
        }
        if offset == 0 {
            break;
        }
        offset = offset.saturating_sub(rows);
    }
    screen.set_scrollback(0);
    let mut out: Vec<String> = lines
        .into_iter()
        .rev()
        .map(|l| l.trim_end().to_string())
        .filter(|l| !l.is_empty())
        .take(n)
        .collect();
    out.reverse();
    out
}

/// Which character sets are designated and shifted in, and where in an escape sequence the
/// translation is (the `vt100` crate ignores charset switches, so curses boxes would show as
/// `lqqqk`).
#[derive(Debug, Default)]
struct Charsets {
    g0_graphics: bool,
    g1_graphics: bool,
    shifted_out: bool,
    /// 0: text; 1: after ESC; 2: in CSI; 3: after `ESC (`; 4: after `ESC )`; 5: other ESC
    /// with intermediates; 6: in a string sequence.
    state: u8,
}

/// Replaces DEC special graphics characters with the Unicode box-drawing characters they
/// stand for, leaving escape sequences alone.
fn line_drawing_to_unicode(input: &[u8], cs: &mut Charsets) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + input.len() / 4);
    for &b in input {
        if b == 0x1b {
            cs.state = 1;
            out.push(b);
            continue;
        }
        if cs.state != 0 {
            let intermediate = (0x20..=0x2f).contains(&b);
            cs.state = match cs.state {
                1 => match b {
                    b'[' => 2,
                    b'(' => 3,
                    b')' => 4,
                    b']' | b'P' | b'X' | b'^' | b'_' => 6,
                    0x20..=0x2f => 5,
                    _ => 0,
                },
                2 if (0x20..=0x3f).contains(&b) => 2,
                3..=5 if intermediate => cs.state,
                3 => {
                    cs.g0_graphics = b == b'0';
                    0
                }
                4 => {
                    cs.g1_graphics = b == b'0';
                    0
                }
                6 if b != 0x07 => 6,
                _ => 0,
            };
            out.push(b);
            continue;
        }
        match b {
            0x0e => cs.shifted_out = true,
            0x0f => cs.shifted_out = false,
            _ => {}
        }
        let graphics = if cs.shifted_out {
            cs.g1_graphics
        } else {
            cs.g0_graphics
        };
        let glyph = if graphics {
            match b {
                b'j' => "┘",
                b'k' => "┐",
                b'l' => "┌",
                b'm' => "└",
                b'n' => "┼",
                b'q' => "─",
                b't' => "├",
                b'u' => "┤",
                b'v' => "┴",
                b'w' => "┬",
                b'x' => "│",
                b'a' => "▒",
                b'`' => "◆",
                b'~' => "·",
                _ => "",
            }
        } else {
            ""
        };
        if glyph.is_empty() {
            out.push(b);
        } else {
            out.extend_from_slice(glyph.as_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines() {
        let mut s = Screen::new();
        s.push(b"one\r\ntwo   \r\n\r\nthree\r\n");
        assert_eq!(s.last_lines(2), ["two", "three"]);
        assert_eq!(s.last_lines(10), ["one", "two", "three"]);
    }

    #[test]
    fn scrollback_is_included() {
        let mut s = Screen::new();
        for i in 0..100 {
            s.push(format!("line {i}\r\n").as_bytes());
        }
        let l = s.last_lines(60);
        assert_eq!(l.len(), 60);
        assert_eq!(l[0], "line 40");
        assert_eq!(l[59], "line 99");
    }

    #[test]
    fn ring_keeps_the_tail() {
        let mut s = Screen::with_capacity(64);
        for i in 0..100 {
            s.push(format!("line {i}\r\n").as_bytes());
        }
        let l = s.last_lines(100);
        assert_eq!(l.last().unwrap(), "line 99");
        assert!(l.len() < 10);
        assert!(l[0].starts_with("line "), "{l:?}");
    }

    #[test]
    fn progress_redraw_overwrites() {
        let mut s = Screen::new();
        s.push(b"Installing the base system\r\n 10%\r 55%\r");
        assert_eq!(s.last_lines(2), ["Installing the base system", " 55%"]);
    }
}
