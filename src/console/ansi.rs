//! Streaming removal of terminal escape sequences from the serial byte stream.
//!
//! The expect engine matches patterns against *text*: what an installer prints, without the
//! colour codes, cursor movements, window titles and line-drawing switches that curses
//! front ends (newt, dialog, bsddialog, GNU screen) wrap around it. [`Stripper`] keeps its
//! state between calls, so a sequence split across two reads is still removed whole.
//!
//! Text runs are copied by ferry itself (found with `memchr`, in bulk: the cost per byte is
//! close to a `memcpy` when escape sequences and carriage returns are sparse, and bytes that
//! are not UTF-8 pass unchanged). Escape sequences are parsed by the `vte` crate's parser (the
//! one `vt100` renders the screen with); ferry decides what each one leaves behind:
//!
//! - CSI `ESC [ params final` is removed. Cursor positioning (`H`, `f`, `d`) and next/previous
//!   line (`E`, `F`) become a `\n`, so text from different screen rows does not glue together;
//!   cursor-forward (`C`, used by curses to skip over blanks) becomes one space.
//! - OSC `ESC ] ... BEL` / `ESC ] ... ESC \` and the other string sequences (DCS `ESC P`, SOS
//!   `ESC X`, PM `ESC ^`, APC `ESC _`) are removed. A sequence longer than 4 KiB is treated as
//!   garbage: the stripper gives up on it and goes back to text.
//! - `ESC intermediates final` (charset switches `ESC ( 0` / `ESC ( B`, `ESC # 8`, ...) and
//!   2-byte sequences `ESC X` are removed (`ESC E`, next line, becomes a `\n`). While G0 is the
//!   DEC line-drawing set (`ESC ( 0`), box characters are shown as `+`, `-`, `|` or a space
//!   instead of the letters `lqqk` they are sent as.
//! - NUL is dropped; `\r\n` (and `\r\r\n`) become `\n`; a lone `\r` becomes `\n` too, so each
//!   redraw of a progress line is a line of its own. A `\r` at the end of a chunk is held until
//!   the next byte shows whether a `\n` follows.
//! - A control byte (other than ESC) or a non-ASCII byte inside a CSI or ESC sequence aborts
//!   the sequence and is then handled as ordinary input (a terminal would execute it inside
//!   the sequence; on a serial console it is far more often a sequence cut short). Inside a
//!   string sequence, BEL ends it.

use memchr::memchr3;

const ESC: u8 = 0x1b;
const CR: u8 = b'\r';
const NUL: u8 = 0;
const BEL: u8 = 0x07;

/// Longest escape sequence the stripper swallows before giving up on it.
const MAX_STRING: usize = 4096;

/// Which kind of escape sequence is open, as far as ferry's rules need to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    /// After ESC, possibly with intermediates.
    Esc,
    /// Inside `ESC [`.
    Csi,
    /// Inside a string sequence (OSC, DCS, SOS, PM, APC).
    Str,
}

/// What the `vte` parser reported for the byte just fed.
#[derive(Debug, Default)]
struct Report {
    /// The sequence is complete.
    done: bool,
    /// The parser was already back at text: the byte was not part of the sequence.
    printed: bool,
    newline: bool,
    space: bool,
    /// `ESC ( X`: G0 is now line drawing (`0`) or not.
    graphics: Option<bool>,
}

impl vte::Perform for Report {
    fn print(&mut self, _c: char) {
        self.printed = true;
    }

    fn execute(&mut self, byte: u8) {
        // CAN and SUB cancel a sequence.
        if matches!(byte, 0x18 | 0x1a) {
            self.done = true;
        }
    }

    fn csi_dispatch(&mut self, _: &vte::Params, _: &[u8], _: bool, action: char) {
        self.done = true;
        match action {
            'H' | 'f' | 'd' | 'E' | 'F' => self.newline = true,
            'C' => self.space = true,
            _ => {}
        }
    }

    fn esc_dispatch(&mut self, intermediates: &[u8], _: bool, byte: u8) {
        self.done = true;
        match intermediates.first() {
            None if byte == b'E' => self.newline = true,
            Some(b'(') => self.graphics = Some(byte == b'0'),
            _ => {}
        }
    }

    fn osc_dispatch(&mut self, _: &[&[u8]], bell_terminated: bool) {
        // Ended by ESC, the ESC starts the next sequence (`\` completes it as ST).
        if bell_terminated {
            self.done = true;
        }
    }
}

/// A streaming escape-sequence stripper; see the module documentation.
pub struct Stripper {
    parser: vte::Parser,
    /// The escape sequence being read, if any.
    open: Option<Open>,
    /// Bytes of the open sequence so far.
    len: usize,
    /// A `\r` was seen and not yet resolved into a `\n`.
    cr: bool,
    /// G0 is the DEC special graphics (line drawing) set.
    graphics: bool,
}

impl Default for Stripper {
    fn default() -> Self {
        Self::new()
    }
}

impl Stripper {
    pub fn new() -> Stripper {
        Stripper {
            parser: vte::Parser::new(),
            open: None,
            len: 0,
            cr: false,
            graphics: false,
        }
    }

    /// Strips `input`, appending the text to `out`. State carries over to the next call.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len() + 1);
        let mut i = 0;
        while i < input.len() {
            let Some(open) = self.open else {
                let rest = &input[i..];
                let n = memchr3(ESC, CR, NUL, rest).unwrap_or(rest.len());
                if n > 0 {
                    self.text(&rest[..n], out);
                    i += n;
                    if i == input.len() {
                        break;
                    }
                }
                match input[i] {
                    ESC => match sgr_len(&input[i..]) {
                        // Colours and attributes leave nothing behind, and are most of the
                        // sequences on a console: skipped whole, without the parser.
                        Some(n) => {
                            i += n;
                            continue;
                        }
                        None => {
                            self.parser = vte::Parser::new();
                            self.step(ESC, Open::Esc, out);
                        }
                    },
                    // The common `\r\n`, handled at once.
                    CR if !self.cr && input.get(i + 1) == Some(&b'\n') => {
                        out.push(b'\n');
                        i += 1;
                    }
                    CR => self.cr = true,
                    _ => {} // NUL
                }
                i += 1;
                continue;
            };
            let b = input[i];
            let foreign = (b < 0x20 && b != ESC) || b >= 0x7f;
            match (open, b) {
                (Open::Str, BEL) => self.open = None,
                // A string's body is swallowed here; the parser sees only what ends it.
                (Open::Str, _) if b != ESC => {
                    self.len += 1;
                    if self.len > MAX_STRING {
                        // Not a real string: what was swallowed is lost, the rest is text.
                        self.open = None;
                    }
                }
                _ if foreign => {
                    // Handled as input: not consumed here.
                    self.open = None;
                    continue;
                }
                _ => {
                    let next = match (open, b) {
                        (_, ESC) => Open::Esc,
                        (Open::Esc, b'[') => Open::Csi,
                        (Open::Esc, b']' | b'P' | b'X' | b'^' | b'_') => Open::Str,
                        _ => open,
                    };
                    if self.step(b, next, out) {
                        continue;
                    }
                }
            }
            i += 1;
        }
    }

    /// Feeds one byte of a sequence to the parser and applies what it completes. Returns
    /// true when the byte was not part of the sequence (the parser had silently returned to
    /// text): then it is to be handled as text.
    fn step(&mut self, b: u8, next: Open, out: &mut Vec<u8>) -> bool {
        let mut report = Report::default();
        self.parser.advance(&mut report, &[b]);
        if report.printed {
            self.open = None;
            return true;
        }
        if next != self.open.unwrap_or(Open::Esc) || b == ESC {
            self.len = 0;
        }
        self.len += 1;
        self.open = Some(next);
        if report.done || self.len > MAX_STRING {
            self.open = None;
        }
        if report.newline {
            self.newline(out);
        }
        if report.space {
            self.text(b" ", out);
        }
        if let Some(g) = report.graphics {
            self.graphics = g;
        }
        false
    }

    /// Text that is output after the stripper is done with the stream: a held `\r`.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.cr {
            self.newline(out);
        }
        self.open = None;
    }

    fn newline(&mut self, out: &mut Vec<u8>) {
        self.cr = false;
        out.push(b'\n');
    }

    fn text(&mut self, mut run: &[u8], out: &mut Vec<u8>) {
        if self.cr {
            self.cr = false;
            out.push(b'\n');
            if run.first() == Some(&b'\n') {
                run = &run[1..];
            }
        }
        if self.graphics {
            out.extend(run.iter().map(|&b| line_drawing(b)));
        } else {
            out.extend_from_slice(run);
        }
    }
}

/// The length of the SGR sequence (`ESC [ digits-and-semicolons m`) `input` starts with, if
/// it is one and ends within `input`. Short ones only: a longer run of parameters goes through
/// the parser and its limits.
fn sgr_len(input: &[u8]) -> Option<usize> {
    const LONGEST: usize = 24;
    let body = input.strip_prefix(b"\x1b[")?;
    let end = body
        .iter()
        .take(LONGEST - 2)
        .position(|&b| !(b.is_ascii_digit() || b == b';'))?;
    (body[end] == b'm').then_some(end + 3)
}

/// How a byte shows in the DEC special graphics set, approximated in ASCII.
fn line_drawing(b: u8) -> u8 {
    match b {
        b'j' | b'k' | b'l' | b'm' | b'n' | b't' | b'u' | b'v' | b'w' => b'+',
        b'q' => b'-',
        b'x' => b'|',
        0x60..=0x7e => b' ',
        _ => b,
    }
}

/// Strips a complete byte string (convenience for tests and one-off uses).
pub fn strip(input: &[u8]) -> Vec<u8> {
    let mut s = Stripper::new();
    let mut out = Vec::with_capacity(input.len());
    s.feed(input, &mut out);
    s.finish(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(input: &[u8]) -> String {
        String::from_utf8(strip(input)).unwrap()
    }

    /// Feeding in pieces of every size must give the same output as feeding at once.
    fn check_chunked(input: &[u8]) {
        let whole = strip(input);
        for size in 1..=7 {
            let mut st = Stripper::new();
            let mut out = Vec::new();
            for c in input.chunks(size) {
                st.feed(c, &mut out);
            }
            st.finish(&mut out);
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&whole),
                "chunk size {size}"
            );
        }
    }

    #[test]
    fn plain_text_unchanged() {
        assert_eq!(s(b"hello\tworld\nnext"), "hello\tworld\nnext");
        assert_eq!(s("über ✓\n".as_bytes()), "über ✓\n");
    }

    #[test]
    fn csi_removed() {
        assert_eq!(s(b"lo\x1b[0mgin:"), "login:");
        assert_eq!(s(b"\x1b[1;32m OK \x1b[0m] Started"), " OK ] Started");
        assert_eq!(s(b"a\x1b[?25lb\x1b[2Kc"), "abc");
    }

    #[test]
    fn cursor_positioning_is_a_newline() {
        assert_eq!(
            s(b"\x1b[1;1HSelect\x1b[2;5Ha language"),
            "\nSelect\na language"
        );
        assert_eq!(s(b"Select\x1b[1Ca"), "Select a");
    }

    #[test]
    fn osc_removed() {
        assert_eq!(s(b"a\x1b]0;title\x07b"), "ab");
        assert_eq!(s(b"a\x1b]2;title\x1b\\b"), "ab");
        // ESC inside a string that isn't ST ends the string and starts a new sequence.
        assert_eq!(s(b"a\x1b]0;t\x1b[1mb"), "ab");
    }

    #[test]
    fn charset_switches_and_line_drawing() {
        assert_eq!(s(b"\x1b(B\x1b)0x"), "x");
        assert_eq!(s(b"\x1b(0lqqk\x1b(B ok \x1b(0x\x1b(B"), "+--+ ok |");
        assert_eq!(s(b"\x1b7a\x1b8b\x1bMc\x1b#8d"), "abcd");
    }

    #[test]
    fn carriage_returns() {
        assert_eq!(s(b"a\r\nb\r\r\nc"), "a\nb\nc");
        assert_eq!(s(b"10%\r20%\r30%\r\n"), "10%\n20%\n30%\n");
        assert_eq!(s(b"x\r"), "x\n");
        assert_eq!(s(b"a\r\x1b[Kb"), "a\nb");
        assert_eq!(s(b"a\r\x1b[K\nb"), "a\nb");
    }

    #[test]
    fn nul_dropped() {
        assert_eq!(s(b"a\0b\0"), "ab");
    }

    #[test]
    fn control_byte_aborts_sequence() {
        assert_eq!(s(b"a\x1b[1\nb"), "a\nb");
        assert_eq!(s(b"a\x1b\nb"), "a\nb");
    }

    #[test]
    fn runaway_string_gives_up() {
        let mut input = b"\x1b]".to_vec();
        input.extend(std::iter::repeat_n(b'x', MAX_STRING + 10));
        input.extend(b"\nafter");
        assert!(s(&input).ends_with("\nafter"));
    }

    #[test]
    fn chunk_boundaries() {
        check_chunked(
            b"lo\x1b[0mgin: \x1b]0;t\x07x\x1b]0;t\x1b\\y\r\n10%\r20%\r\r\nz\x1b(0q\x1b(Bq",
        );
        check_chunked(b"\x1b[1;1H\x1b[2J\x1b[24;80Hend\x1bE\x1b#8\0\0\r");
        check_chunked("é\x1b[31m✓\x1b[0m\r".as_bytes());
    }

    /// Colour sequences skip the parser when whole in one read; fed a byte at a time they go
    /// through it (check_chunked): both ways must leave the same text.
    #[test]
    fn colour_sequences_whole_or_split_leave_the_same_text() {
        let input: &[u8] = b"\x1b[m\x1b[0;32m OK \x1b[0m|\x1b[1;37;44mx\x1b[;m\x1b[;;1m\
            |\x1b[1;2;3;4;5;6;7;8;9;10;11m long\x1b[1;2;3;4;5;6;7;8;9;10;11;12;13;14;15;16m longer\
            |\x1b[1:2m sub\x1b[?1m private\x1b[1\x07m bel\x1b[1\x1b[0m esc\x1b[12z end\r\n";
        assert_eq!(
            s(input),
            " OK |x| long longer| sub private\x07m bel esc end\n"
        );
        check_chunked(input);
    }
}
