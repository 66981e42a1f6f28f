//! Secret values of a run and their removal from everything ferry writes, at write time.
//!
//! Every writer of the run directory and the terminal (ferry.log, qemu.args, plan.json,
//! events.jsonl, status.json, summary.json, serial.log, transcript.cast, progress lines,
//! errors) passes its bytes through [`Secrets`]: nothing is written in clear, so nothing is
//! kept to find the values again later (no fingerprints, no `secrets.json`). A value is found
//! in any form a writer may give it: each character as itself, JSON-escaped (`\"`, `\\`,
//! `\uXXXX`), Rust Debug-escaped, shell-quoted (`'\''`), or escaped twice (a JSON string in a
//! log line); and with a terminal's line wrap (`\n`, `\r\n`, `\r\r\n`, raw or escaped) between
//! any two characters. Streams (the serial console, both ways) go through a [`Redactor`], which
//! holds back only the bytes that may still begin a value, until the next write or the end.

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::Arc;

use regex::bytes::{Regex, RegexBuilder};
use regex_automata::dfa::{Automaton, dense};
use regex_automata::{Anchored, Input};

use crate::console::expect::Sink;

pub const REDACTED: &str = "[redacted]";

/// The secret values of one run, as one matcher. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Secrets(Option<Arc<Matcher>>);

#[derive(Debug)]
struct Matcher {
    regex: Regex,
    /// The same pattern, anchored: can a value still begin at this position?
    prefix: dense::DFA<Vec<u32>>,
    /// The longest match.
    max_len: usize,
}

/// A terminal's line wrap between two characters, raw and escaped once or twice.
const WRAP: &str = r"(?:\r{0,2}\n|(?:\\r){0,2}\\n|(?:\\\\r){0,2}\\\\n)?";
/// The longest [`WRAP`]: `\\\\r\\\\r\\\\n`.
const MAX_WRAP: usize = 15;

impl Secrets {
    pub fn new(values: impl IntoIterator<Item = String>) -> Secrets {
        let values: BTreeSet<String> = values.into_iter().filter(|s| !s.is_empty()).collect();
        let mut values: Vec<String> = values.into_iter().collect();
        // Longest first: a value that contains another is removed whole.
        values.sort_by_key(|s| std::cmp::Reverse(s.len()));
        if values.is_empty() {
            return Secrets(None);
        }
        let mut max_len = 0;
        let mut alternatives = Vec::new();
        for value in &values {
            let mut len = 0;
            let mut chars = Vec::new();
            for c in value.chars() {
                let forms = encodings(c);
                len += forms.iter().map(String::len).max().unwrap_or(0) + MAX_WRAP;
                let forms: Vec<String> = forms.iter().map(|f| literal(f)).collect();
                chars.push(format!("(?:{})", forms.join("|")));
            }
            max_len = max_len.max(len - MAX_WRAP);
            alternatives.push(chars.join(WRAP));
        }
        let pattern = alternatives.join("|");
        let regex = RegexBuilder::new(&pattern)
            .unicode(false)
            .size_limit(256 << 20)
            .build()
            .expect("escaped literals form a valid pattern");
        let prefix = dense::Builder::new()
            .configure(dense::Config::new().start_kind(regex_automata::dfa::StartKind::Anchored))
            .syntax(
                regex_automata::util::syntax::Config::new()
                    .unicode(false)
                    .utf8(false),
            )
            .build(&pattern)
            .expect("escaped literals form a valid pattern");
        Secrets(Some(Arc::new(Matcher {
            regex,
            prefix,
            max_len,
        })))
    }

    /// `text` with every secret value replaced.
    pub fn redact(&self, text: &str) -> String {
        match &self.0 {
            None => text.to_string(),
            Some(m) => String::from_utf8_lossy(&m.replace(text.as_bytes())).into_owned(),
        }
    }

    /// `bytes` with every secret value replaced.
    pub fn redact_bytes(&self, bytes: &[u8]) -> Vec<u8> {
        match &self.0 {
            None => bytes.to_vec(),
            Some(m) => m.replace(bytes),
        }
    }

    /// `value` as JSON (pretty or one line), each string redacted before it is encoded: the
    /// text stays valid JSON whatever a value contains.
    pub fn to_json(&self, value: &impl serde::Serialize, pretty: bool) -> std::io::Result<String> {
        let mut value = serde_json::to_value(value).map_err(std::io::Error::other)?;
        if self.0.is_some() {
            self.redact_value(&mut value);
        }
        match pretty {
            true => serde_json::to_string_pretty(&value),
            false => serde_json::to_string(&value),
        }
        .map_err(std::io::Error::other)
    }

    fn redact_value(&self, value: &mut serde_json::Value) {
        use serde_json::Value;
        match value {
            Value::String(s) => *s = self.redact(s),
            Value::Array(items) => items.iter_mut().for_each(|v| self.redact_value(v)),
            Value::Object(map) => map.values_mut().for_each(|v| self.redact_value(v)),
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }

    /// A redactor for one stream of writes.
    pub fn stream(&self) -> Redactor {
        Redactor {
            secrets: self.clone(),
            pending: Vec::new(),
        }
    }

    /// `inner` behind a [`Redactor`], as an `io::Write`.
    pub fn writer<W: Write>(&self, inner: W) -> RedactingWriter<W> {
        RedactingWriter {
            inner,
            redactor: self.stream(),
        }
    }
}

impl Matcher {
    /// `buf` with every match replaced.
    fn replace(&self, buf: &[u8]) -> Vec<u8> {
        self.regex
            .replace_all(buf, REDACTED.as_bytes())
            .into_owned()
    }

    /// Whether a value (or a longer one) may begin at the start of `tail` and go on in later
    /// writes.
    fn may_continue(&self, tail: &[u8]) -> bool {
        let Ok(mut state) = self
            .prefix
            .start_state_forward(&Input::new(tail).anchored(Anchored::Yes))
        else {
            return true;
        };
        for &b in tail {
            state = self.prefix.next_state(state, b);
            if self.prefix.is_dead_state(state) {
                return false;
            }
        }
        true
    }
}

/// The characters' forms: itself, escaped once (JSON, Debug, `\uXXXX`, shell quoting) and
/// each escaped form escaped again (JSON, Debug).
fn encodings(c: char) -> BTreeSet<String> {
    let json = |s: &str| {
        let q = serde_json::to_string(s).unwrap_or_default();
        q[1..q.len() - 1].to_string()
    };
    let debug = |s: &str| {
        let q = format!("{s:?}");
        q[1..q.len() - 1].to_string()
    };
    let mut once = BTreeSet::from([c.to_string(), json(&c.to_string()), debug(&c.to_string())]);
    once.insert(format!("{c:?}").trim_matches('\'').to_string());
    let mut units = [0u16; 2];
    let units = c.encode_utf16(&mut units);
    once.insert(units.iter().map(|u| format!("\\u{u:04x}")).collect());
    once.insert(units.iter().map(|u| format!("\\u{u:04X}")).collect());
    if c == '\'' {
        once.insert(r"'\''".to_string());
        once.insert(r#"'"'"'"#.to_string());
    }
    let mut all = once.clone();
    for form in &once {
        all.insert(json(form));
        all.insert(debug(form));
    }
    all
}

/// `text` as a byte-literal pattern.
fn literal(text: &str) -> String {
    text.bytes().map(|b| format!(r"\x{b:02x}")).collect()
}

/// Redacts one stream of writes: what may be the beginning of a value waits for the next
/// write (at most the longest match less one byte), and [`Redactor::finish`] ends it.
#[derive(Debug)]
pub struct Redactor {
    secrets: Secrets,
    pending: Vec<u8>,
}

impl Redactor {
    /// What may be written of `bytes` now, redacted.
    pub fn write(&mut self, bytes: &[u8]) -> Vec<u8> {
        let Some(m) = self.secrets.0.clone() else {
            return bytes.to_vec();
        };
        self.pending.extend_from_slice(bytes);
        let buf = &self.pending;
        // A match beginning this far from the end is whole (none is longer than `max_len`);
        // one beginning later is replaced only if no longer value can grow from it.
        let safe = buf.len().saturating_sub(m.max_len - 1);
        let mut out = Vec::with_capacity(buf.len());
        let mut cursor = 0;
        for found in m.regex.find_iter(buf) {
            if found.start() >= safe && m.may_continue(&buf[found.start()..]) {
                break;
            }
            out.extend_from_slice(&buf[cursor..found.start()]);
            out.extend_from_slice(REDACTED.as_bytes());
            cursor = found.end();
        }
        let hold = (cursor.max(safe)..buf.len())
            .find(|&i| m.may_continue(&buf[i..]))
            .unwrap_or(buf.len())
            .max(cursor);
        out.extend_from_slice(&buf[cursor..hold]);
        self.pending.drain(..hold);
        out
    }

    /// The rest, redacted: the stream has ended.
    pub fn finish(&mut self) -> Vec<u8> {
        let rest = std::mem::take(&mut self.pending);
        self.secrets.redact_bytes(&rest)
    }
}

/// A console sink that receives both directions of the serial stream redacted.
pub struct Redacting {
    inner: Box<dyn Sink>,
    output: Redactor,
    input: Redactor,
    last: std::time::Duration,
}

impl Redacting {
    pub fn new(inner: Box<dyn Sink>, secrets: &Secrets) -> Redacting {
        Redacting {
            inner,
            output: secrets.stream(),
            input: secrets.stream(),
            last: std::time::Duration::ZERO,
        }
    }
}

impl Sink for Redacting {
    fn output(&mut self, at: std::time::Duration, bytes: &[u8]) -> std::io::Result<()> {
        self.last = at;
        let bytes = self.output.write(bytes);
        if bytes.is_empty() {
            return Ok(());
        }
        self.inner.output(at, &bytes)
    }

    fn input(&mut self, at: std::time::Duration, bytes: &[u8]) -> std::io::Result<()> {
        self.last = at;
        let bytes = self.input.write(bytes);
        if bytes.is_empty() {
            return Ok(());
        }
        self.inner.input(at, &bytes)
    }
}

impl Drop for Redacting {
    fn drop(&mut self) {
        let (output, input) = (self.output.finish(), self.input.finish());
        if !output.is_empty() {
            let _ = self.inner.output(self.last, &output);
        }
        if !input.is_empty() {
            let _ = self.inner.input(self.last, &input);
        }
    }
}

/// A byte stream (a child's stderr) redacted on its way to `inner`; the bytes held back
/// because they may begin a value are written when it is dropped.
pub struct RedactingWriter<W: Write> {
    inner: W,
    redactor: Redactor,
}

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write_all(&self.redactor.write(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Write> Drop for RedactingWriter<W> {
    fn drop(&mut self) {
        let _ = self.inner.write_all(&self.redactor.finish());
        let _ = self.inner.flush();
    }
}

/// Lines that look like they carry a password or a key: the value after the key word is
/// replaced (preseed `passwd/root-password`, `password=`, `PASSWORD:`, SSH keys). `ferry
/// bundle` applies it as a second net, for values ferry was never told are secret.
pub fn scrub_lines(text: &str) -> String {
    use std::sync::LazyLock;
    static PASSWORD: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(
            r"(?im)^(.*?(?:passw(?:or)?d|passphrase|secret|token|-crypted)[^\s:=]*(?:\s+(?:password|string))?[ \t]*[:=]?[ \t]*)\S[^\r\n]*$",
        )
        .expect("valid regex")
    });
    static KEY: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(
            r"((?:ssh-(?:ed25519|rsa|dss)|ecdsa-sha2-\S+|sk-\S+)\s+)AAAA[0-9A-Za-z+/=]+",
        )
        .expect("valid regex")
    });
    let text = PASSWORD.replace_all(text, format!("${{1}}{REDACTED}"));
    KEY.replace_all(&text, format!("${{1}}{REDACTED}"))
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ODD: &str = r#"Pa"ss\wo'rd"#;

    fn secrets() -> Secrets {
        Secrets::new([ODD.to_string(), "PlainS3cret".to_string()])
    }

    #[test]
    fn a_redacting_writer_redacts_a_stream_split_anywhere() {
        let secrets = Secrets::new(["hunter2".to_string()]);
        let mut out = Vec::new();
        {
            let mut writer = secrets.writer(&mut out);
            for chunk in [&b"qemu: bad value hun"[..], b"ter", b"2 in option\nend hun"] {
                writer.write_all(chunk).unwrap();
            }
        }
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("[redacted] in option\nend hun"), "{text}");
    }

    #[test]
    fn escaped_forms_are_found() {
        let s = secrets();
        let json = serde_json::to_string(ODD).unwrap();
        let debug = format!("{ODD:?}");
        let twice = serde_json::to_string(&debug).unwrap();
        let shell = format!("'{}'", ODD.replace('\'', r"'\''"));
        let unicode: String = ODD
            .chars()
            .map(|c| format!("\\u{:04x}", c as u32))
            .collect();
        for text in [ODD, &json, &debug, &twice, &shell, &unicode] {
            let out = s.redact(&format!("x={text} y"));
            assert!(out.contains(REDACTED), "{text} -> {out}");
            assert!(!out.contains("wo"), "{text} -> {out}");
        }
    }

    #[test]
    fn terminal_wraps_are_found() {
        let s = secrets();
        for text in [
            "echo PlainS3\r\r\ncret\r\n",
            "echo PlainS3\r\ncret\r\n",
            r#"[1.0, "o", "echo PlainS3\r\r\ncret\r\n"]"#,
        ] {
            let out = s.redact(text);
            assert!(out.contains(REDACTED), "{text:?} -> {out:?}");
            assert!(!out.contains("cret"), "{text:?} -> {out:?}");
        }
    }

    #[test]
    fn a_value_split_across_writes_is_found_and_the_tail_flushed() {
        let s = secrets();
        let mut r = s.stream();
        let mut out = r.write(b"Tab");
        out.extend(r.write(b"\tPlain"));
        out.extend(r.write(b"S3\r\r"));
        out.extend(r.write(b"\ncret\r\nbye Pl"));
        out.extend(r.finish());
        assert_eq!(String::from_utf8(out).unwrap(), "Tab\t[redacted]\r\nbye Pl");
    }

    #[test]
    fn plain_text_is_not_held_back() {
        let mut r = secrets().stream();
        assert_eq!(r.write(b"[yes/no]: "), b"[yes/no]: ");
        // "Pla" may begin a value: held until the next write shows it does not.
        assert_eq!(r.write(b"ok Pla"), b"ok ");
        assert_eq!(r.write(b"ne"), b"Plane");
    }

    #[test]
    fn no_secrets_change_nothing() {
        let s = Secrets::default();
        assert_eq!(s.redact("a\"b"), "a\"b");
        assert_eq!(s.stream().write(b"xyz"), b"xyz");
    }

    #[test]
    fn password_and_key_lines() {
        let text = "d-i passwd/root-password password s3cret\nd-i passwd/root-password-again password s3cret\nkey ssh-ed25519 AAAAC3Nza foo@bar\nhostname web1\n";
        let out = scrub_lines(text);
        assert!(!out.contains("s3cret"), "{out}");
        assert!(!out.contains("AAAAC3Nza"), "{out}");
        assert!(out.contains("hostname web1"));
        assert!(
            out.contains("d-i passwd/root-password password [redacted]"),
            "{out}"
        );
    }
}
