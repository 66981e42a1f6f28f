use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::*;
use crate::console::transcript;

const SHORT: Duration = Duration::from_millis(200);
const LONG: Duration = Duration::from_secs(5);

fn console() -> (Console, UnixStream) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    (Console::start(ours, Vec::new()).unwrap(), theirs)
}

fn lit(s: &str) -> Pattern {
    Pattern::literal(s)
}

fn re(s: &str) -> Pattern {
    Pattern::regex(s)
}

fn exp(want: Vec<Pattern>, timeout: Duration) -> Expectation {
    Expectation::new("test step", want, timeout)
}

/// Writes in separate reads: the pause lets the reader thread pick each write up alone.
fn write_apart(peer: &mut UnixStream, parts: &[&[u8]]) {
    for p in parts {
        peer.write_all(p).unwrap();
        sleep(Duration::from_millis(30));
    }
}

#[test]
fn literal_match() {
    let (mut c, mut peer) = console();
    peer.write_all(b"Debian GNU/Linux 12 debian ttyS0\r\n\r\ndebian login: ")
        .unwrap();
    let m = c
        .expect(&exp(vec![lit("password:"), lit("login: ")], LONG))
        .unwrap();
    assert_eq!(m.index, 1);
    assert_eq!(m.text, "login: ");
}

/// The boot check's prompt is seen when a kernel message joins its line before ferry reads
/// it (a loaded host reads late), and not in text that merely mentions a login.
#[test]
fn login_prompt_followed_at_once_by_a_kernel_message() {
    let login = || exp(vec![re(crate::profile::LOGIN_PROMPT)], SHORT);
    for seen in [
        &b"Tiny GNU/Linux 1.0 tiny ttyS0\r\ntiny login: [    2.925419] clocksource: Switched\r\n"[..],
        b"debian login: ",
        b"debian login:\r\n",
    ] {
        let (mut c, mut peer) = console();
        peer.write_all(seen).unwrap();
        let m = c.expect(&exp(vec![re(crate::profile::LOGIN_PROMPT)], LONG));
        assert!(m.is_ok(), "{:?}: {m:?}", String::from_utf8_lossy(seen));
    }
    let (mut c, mut peer) = console();
    peer.write_all(b"Last login: Tue Dec  1 on ttyS0\r\n")
        .unwrap();
    assert!(c.expect(&login()).is_err());
}

#[test]
fn single_literal_and_regex_match() {
    let (mut c, mut peer) = console();
    peer.write_all(b"x login: y").unwrap();
    assert_eq!(
        c.expect(&exp(vec![lit("login:")], LONG)).unwrap().text,
        "login:"
    );
    peer.write_all(b"Choose one\r\nPrompt: '?' for help, default=3> ")
        .unwrap();
    let m = c
        .expect(&exp(
            vec![lit("nope"), re(r"Prompt: '\?' for help, default=(\d+)> ")],
            LONG,
        ))
        .unwrap();
    assert_eq!(m.index, 1);
    assert_eq!(m.text, "Prompt: '?' for help, default=3> ");
}

#[test]
fn match_split_across_writes() {
    let (mut c, mut peer) = console();
    write_apart(&mut peer, &[b"debian lo", b"gin", b": "]);
    c.expect(&exp(vec![lit("login: ")], LONG)).unwrap();
    write_apart(
        &mut peer,
        &[b"Prompt: '?' for he", b"lp, default=12", b"> "],
    );
    let m = c
        .expect(&exp(
            vec![re(r"Prompt: '\?' for help, default=\d+> ")],
            LONG,
        ))
        .unwrap();
    assert_eq!(m.text, "Prompt: '?' for help, default=12> ");
}

#[test]
fn escape_sequences_inside_pattern() {
    let (mut c, mut peer) = console();
    write_apart(&mut peer, &[b"debian lo\x1b[0", b"mgin: \x1b]0;title\x07"]);
    c.expect(&exp(vec![lit("login: ")], LONG)).unwrap();
    peer.write_all(b"\x1b(0lqk\x1b(B Sel\x1b[1mect\x1b[0m a language")
        .unwrap();
    c.expect(&exp(vec![re(r"Select a \w+")], LONG)).unwrap();
}

#[test]
fn carriage_return_progress_lines() {
    let (mut c, mut peer) = console();
    peer.write_all(b"Installing the base system\r\n  10%\r  20%\r  30%\r\n")
        .unwrap();
    // Each redraw is a line of its own: `^` and `$` see them.
    let m = c.expect(&exp(vec![re(r"^ +20%$")], LONG)).unwrap();
    assert_eq!(m.text, "  20%");
    let m = c.expect(&exp(vec![re(r"^ +\d+%$")], LONG)).unwrap();
    assert_eq!(m.text, "  30%");
}

#[test]
fn fail_pattern_that_comes_first_wins() {
    let (mut c, mut peer) = console();
    peer.write_all(b"[   1.0] Kernel panic - not syncing: VFS\r\ndebian login: ")
        .unwrap();
    let e = exp(vec![lit("login: ")], LONG).failing_on(vec![re(r"Kernel panic")]);
    match c.expect(&e) {
        Err(ExpectError::Failed { pattern, line, .. }) => {
            assert_eq!(pattern, "/Kernel panic/");
            assert_eq!(line, "[   1.0] Kernel panic - not syncing: VFS");
        }
        other => panic!("{other:?}"),
    }
    // The want pattern, later in the stream, is still there for the next expect.
    c.expect(&exp(vec![lit("login: ")], LONG)).unwrap();

    // The want pattern first: it wins, even with the fail pattern in the same read.
    peer.write_all(b"login: \r\nKernel panic").unwrap();
    let e = exp(vec![lit("login: ")], LONG).failing_on(vec![lit("Kernel panic")]);
    assert_eq!(c.expect(&e).unwrap().index, 0);
}

#[test]
fn timeout_error_lists_step_patterns_and_screen() {
    let (mut c, mut peer) = console();
    for i in 0..30 {
        peer.write_all(format!("boot message {i}\r\n").as_bytes())
            .unwrap();
    }
    let e = Expectation::new(
        "wait for login",
        vec![lit("login:"), re(r"Prompt: '\?'")],
        Duration::from_millis(300),
    );
    let t = Instant::now();
    let err = c.expect(&e).unwrap_err();
    assert!(t.elapsed() >= Duration::from_millis(300));
    // Bounds a failure only: a timeout that was never applied.
    assert!(t.elapsed() < LONG);
    let msg = err.to_string();
    assert!(
        msg.starts_with("step 'wait for login': no match for `login:`, /Prompt: '\\?'/ within 300ms\nlast 20 lines of the screen:\n  | boot message 10\n"),
        "{msg}"
    );
    assert!(msg.ends_with("  | boot message 29"), "{msg}");
    match err {
        ExpectError::Timeout {
            step,
            waited_for,
            screen,
            ..
        } => {
            assert_eq!(step, "wait for login");
            assert_eq!(waited_for.len(), 2);
            assert_eq!(screen.len(), 20);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn text_before_previous_match_does_not_match_again() {
    let (mut c, mut peer) = console();
    peer.write_all(b"Partitions formatting\r\nlogin: ").unwrap();
    c.expect(&exp(vec![lit("login: ")], LONG)).unwrap();
    // The installer replays the old screen... plus nothing new.
    let err = c
        .expect(&exp(vec![lit("Partitions formatting")], SHORT))
        .unwrap_err();
    assert!(matches!(err, ExpectError::Timeout { .. }), "{err}");
    // Text after a match in the same read stays for the next expect, regexes included.
    peer.write_all(b"A:root\r\nroot ok\r\nB").unwrap();
    c.expect(&exp(vec![lit("A:")], LONG)).unwrap();
    // `^` does not match where the previous match ended (mid-line).
    let m = c.expect(&exp(vec![re(r"^root.*$")], LONG)).unwrap();
    assert_eq!(m.text, "root ok");
    c.expect(&exp(vec![lit("B")], LONG)).unwrap();
}

#[test]
fn closed_when_the_peer_closes() {
    let (mut c, mut peer) = console();
    peer.write_all(b"reboot: Power down\r\n").unwrap();
    drop(peer);
    // What arrived before the end still matches.
    c.expect(&exp(vec![lit("Power down")], LONG)).unwrap();
    match c.expect(&exp(vec![lit("login:")], LONG)) {
        Err(ExpectError::Closed {
            waited_for, screen, ..
        }) => {
            assert_eq!(waited_for, ["`login:`"]);
            assert_eq!(screen, ["reboot: Power down"]);
        }
        other => panic!("{other:?}"),
    }
    c.wait_closed(SHORT).unwrap();
}

#[test]
fn window_is_bounded() {
    let filler = |n: usize| "x".repeat(n - 1) + "\n";
    let (mut c, mut peer) = console();
    let w = std::thread::spawn(move || {
        peer.write_all(format!("START{}END", filler(200 * 1024)).as_bytes())
            .unwrap();
        peer.write_all(format!("START{}END", filler(30 * 1024)).as_bytes())
            .unwrap();
        peer
    });
    let m = c.expect(&exp(vec![re(r"(?s)START.*?END")], LONG)).unwrap();
    // The first START was forgotten (more than 128 KiB before its END).
    assert_eq!(m.text.len(), 30 * 1024 + 8);
    let _peer = w.join().unwrap();
}

#[test]
fn pattern_straddling_many_reads() {
    // Line-bounded unbounded regex, many small reads: the lookback from the line start.
    let (mut c, mut peer) = console();
    write_apart(
        &mut peer,
        &[
            b"noise\r\nPrompt: ",
            b"'?' for ",
            b"help, defa",
            b"ult=",
            b"7> ",
        ],
    );
    let e = exp(vec![re(r"Prompt: .* default=\d+> ")], LONG);
    assert_eq!(
        c.expect(&e).unwrap().text,
        "Prompt: '?' for help, default=7> "
    );
    // A pattern that can match newlines: the whole window is rescanned.
    write_apart(&mut peer, &[b"begin\r\n", b"mid\r\n", b"end"]);
    let e = exp(vec![re(r"begin\s+mid\s+end")], LONG);
    c.expect(&e).unwrap();
}

#[test]
fn bad_pattern() {
    let (mut c, _peer) = console();
    match c.expect(&exp(vec![re("(unclosed")], SHORT)) {
        Err(ExpectError::BadPattern { pattern, .. }) => assert_eq!(pattern, "/(unclosed/"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn send_writes_to_the_peer() {
    let (mut c, mut peer) = console();
    c.send(b"root\r").unwrap();
    let mut got = [0u8; 5];
    peer.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"root\r");
}

#[test]
fn wait_for_output_and_wait_closed() {
    let (mut c, mut peer) = console();
    assert!(!c.wait_for_output(Duration::from_millis(50)));
    assert!(c.wait_closed(Duration::from_millis(50)).is_err());
    peer.write_all(b"SeaBIOS\r\n").unwrap();
    assert!(c.wait_for_output(LONG));
    assert_eq!(c.bytes_received(), 9);
    // The text stays for expect.
    c.expect(&exp(vec![lit("SeaBIOS")], LONG)).unwrap();
    peer.write_all(b"The system is going down NOW!").unwrap();
    drop(peer);
    c.wait_closed(LONG).unwrap();
    assert_eq!(c.last_lines(1), ["The system is going down NOW!"]);
}

#[test]
fn drop_does_not_hang_while_the_peer_is_open() {
    let (c, _peer) = console();
    let t = Instant::now();
    drop(c);
    // Bounds a failure only: a drop that waited for the peer would never return.
    assert!(t.elapsed() < LONG);
}

#[test]
fn transcript_files() {
    let dir = tempfile::tempdir().unwrap();
    let (ours, mut peer) = UnixStream::pair().unwrap();
    let sinks = transcript::create(dir.path(), "ferry test").unwrap();
    let mut c = Console::start(ours, sinks).unwrap();
    let check = "✓".as_bytes(); // 3 bytes, split over two reads
    let parts: Vec<&[u8]> = vec![
        b"\x1b[1;32mhello ",
        &check[..1],
        &check[1..],
        b"\xff bad\r\nlogin: ",
    ];
    write_apart(&mut peer, &parts);
    c.expect(&exp(vec![lit("login: ")], LONG)).unwrap();
    c.send(b"root\r").unwrap();
    drop(peer);
    c.wait_closed(LONG).unwrap();
    drop(c);

    let raw = std::fs::read(dir.path().join("serial.log")).unwrap();
    assert_eq!(raw, parts.concat());

    let cast = std::fs::read_to_string(dir.path().join("transcript.cast")).unwrap();
    let mut lines = cast.lines();
    let header: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(header["version"], 2);
    assert_eq!(header["width"], 80);
    assert_eq!(header["height"], 24);
    assert_eq!(header["title"], "ferry test");
    assert!(header["timestamp"].as_u64().unwrap() > 1_600_000_000);
    let mut last = 0.0;
    let mut output = String::new();
    let mut input = String::new();
    for line in lines {
        let ev: serde_json::Value = serde_json::from_str(line).unwrap();
        let t = ev[0].as_f64().unwrap();
        assert!(t >= last, "times go backwards: {cast}");
        last = t;
        match ev[1].as_str().unwrap() {
            "o" => output.push_str(ev[2].as_str().unwrap()),
            "i" => input.push_str(ev[2].as_str().unwrap()),
            k => panic!("event kind {k}"),
        }
    }
    assert_eq!(output, "\x1b[1;32mhello ✓\u{fffd} bad\r\nlogin: ");
    assert_eq!(input, "root\r");
}

#[test]
fn dialog_screen_rendered_by_last_lines() {
    let (mut c, mut peer) = console();
    // A newt-style screen: clear, absolute positioning, line drawing, colours, the GNU
    // screen status line at the bottom.
    let mut s = Vec::new();
    s.extend(b"\x1b[H\x1b[2J\x1b[0;37;44m");
    s.extend(b"\x1b[1;1H  [!!] Select a language");
    s.extend(b"\x1b[5;10H\x1b(0lqqqqqqqqqqqqqqqqqqqqk\x1b(B");
    s.extend(b"\x1b[6;10H\x1b(0x\x1b(B Choose a language: \x1b(0x\x1b(B");
    s.extend(b"\x1b[7;10H\x1b(0x\x1b(B    \x1b[7mEnglish\x1b[27m         \x1b(0x\x1b(B");
    s.extend(b"\x1b[8;10H\x1b(0mqqqqqqqqqqqqqqqqqqqqj\x1b(B");
    s.extend(b"\x1b[24;1H\x1b[7m[ (1*installer) 2 shell 3 shell 4- log ]\x1b[m");
    s.extend(b"\x1b[6;31H");
    peer.write_all(&s).unwrap();
    c.expect(&exp(vec![lit("Choose a language:")], LONG))
        .unwrap();
    assert_eq!(
        c.last_lines(6),
        [
            "  [!!] Select a language",
            "         ┌────────────────────┐",
            "         │ Choose a language: │",
            "         │    English         │",
            "         └────────────────────┘",
            "[ (1*installer) 2 shell 3 shell 4- log ]",
        ]
    );
}
