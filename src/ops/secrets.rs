//! Secret values of a profile (`[secrets]`) and their removal from everything ferry writes or
//! bundles.
//!
//! The supervisor knows the values: [`redact`] removes them from progress lines and
//! `plan.json`. The run directory never holds them in clear: `secrets.json` keeps each
//! value's length and salted SHA-256, and `ferry bundle` finds the values in the serial log,
//! the transcript and the logs by hashing every window of those lengths ([`scrub`]).

use std::path::Path;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const FILE: &str = "secrets.json";
pub const REDACTED: &str = "[redacted]";

static VALUES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Sets the values to redact in this process.
pub fn set(values: impl IntoIterator<Item = String>) {
    let mut v: Vec<String> = values.into_iter().filter(|s| !s.is_empty()).collect();
    // Longest first: a value that contains another is removed whole.
    v.sort_by_key(|s| std::cmp::Reverse(s.len()));
    *VALUES.lock().unwrap_or_else(|e| e.into_inner()) = v;
}

/// `text` with every known secret value replaced.
pub fn redact(text: &str) -> String {
    let values = VALUES.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = text.to_string();
    for v in values.iter() {
        if out.contains(v.as_str()) {
            out = out.replace(v.as_str(), REDACTED);
        }
    }
    out
}

#[derive(Debug, Serialize, Deserialize, Default)]
pub struct Fingerprints {
    pub salt: String,
    pub secrets: Vec<Fingerprint>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Fingerprint {
    pub len: usize,
    pub sha256: String,
}

fn hash(salt: &str, bytes: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update(bytes);
    h.finalize().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `secrets.json` for the values set with [`set`].
pub fn write_fingerprints(run_dir: &Path) -> std::io::Result<()> {
    let mut salt_bytes = [0u8; 16];
    getrandom(&mut salt_bytes);
    let salt = hex(&salt_bytes);
    let values = VALUES.lock().unwrap_or_else(|e| e.into_inner());
    let fp = Fingerprints {
        secrets: values
            .iter()
            .map(|v| Fingerprint {
                len: v.len(),
                sha256: hex(&hash(&salt, v.as_bytes())),
            })
            .collect(),
        salt,
    };
    let text = serde_json::to_string_pretty(&fp).map_err(std::io::Error::other)?;
    std::fs::write(run_dir.join(FILE), text + "\n")
}

fn getrandom(buf: &mut [u8]) {
    use std::io::Read;
    if let Ok(mut f) = std::fs::File::open("/dev/urandom")
        && f.read_exact(buf).is_ok()
    {
        return;
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (t >> (i % 16 * 8)) as u8 ^ std::process::id() as u8;
    }
}

pub fn read_fingerprints(run_dir: &Path) -> Fingerprints {
    std::fs::read_to_string(run_dir.join(FILE))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Replaces every occurrence of a fingerprinted value in `bytes`.
pub fn scrub(bytes: &[u8], fp: &Fingerprints) -> Vec<u8> {
    let mut wanted: Vec<(usize, Vec<u8>)> = fp
        .secrets
        .iter()
        .filter_map(|s| Some((s.len, unhex(&s.sha256)?)))
        .collect();
    wanted.sort_by_key(|(len, _)| std::cmp::Reverse(*len));
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    'outer: while i < bytes.len() {
        for (len, digest) in &wanted {
            if i + len <= bytes.len() && hash(&fp.salt, &bytes[i..i + len])[..] == digest[..] {
                out.extend_from_slice(REDACTED.as_bytes());
                i += len;
                continue 'outer;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Lines that look like they carry a password or a key: the value after the key word is
/// replaced (preseed `passwd/root-password`, `password=`, `PASSWORD:`, SSH keys).
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

    #[test]
    fn scrub_finds_fingerprinted_values() {
        let salt = "abc".to_string();
        let fp = Fingerprints {
            secrets: vec![Fingerprint {
                len: 6,
                sha256: hex(&hash(&salt, b"hunter")),
            }],
            salt,
        };
        assert_eq!(
            scrub(b"pw=hunter2 hunter", &fp),
            b"pw=[redacted]2 [redacted]".to_vec()
        );
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
