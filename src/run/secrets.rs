//! Secret values of a profile (`[secrets]`) and their removal from everything ferry writes or
//! bundles.
//!
//! The supervisor knows the values: [`Secrets::redact`] removes them from progress lines and
//! `plan.json`. The run directory never holds them in clear: `secrets.json` keeps each
//! value's length and salted SHA-256, and `ferry bundle` finds the values in the serial log,
//! the transcript and the logs by hashing every window of those lengths ([`scrub`]).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::RunDir;

pub const REDACTED: &str = "[redacted]";

/// The secret values of one run, longest first (a value that contains another is removed
/// whole). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Secrets(Arc<Vec<String>>);

impl Secrets {
    pub fn new(values: impl IntoIterator<Item = String>) -> Secrets {
        let mut v: Vec<String> = values.into_iter().filter(|s| !s.is_empty()).collect();
        v.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Secrets(Arc::new(v))
    }

    /// `text` with every secret value replaced.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for v in self.0.iter() {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), REDACTED);
            }
        }
        out
    }

    /// Writes `secrets.json`: each value's length and salted SHA-256, never the value.
    pub fn write_fingerprints(&self, run_dir: &RunDir) -> std::io::Result<()> {
        let mut salt_bytes = [0u8; 16];
        getrandom::fill(&mut salt_bytes).map_err(std::io::Error::other)?;
        let salt = hex::encode(salt_bytes);
        let fp = Fingerprints {
            secrets: self
                .0
                .iter()
                .map(|v| Fingerprint {
                    len: v.len(),
                    sha256: hex::encode(hash(&salt, v.as_bytes())),
                })
                .collect(),
            salt,
        };
        let text = serde_json::to_string_pretty(&fp).map_err(std::io::Error::other)?;
        std::fs::write(run_dir.secrets(), text + "\n")
    }
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

pub fn read_fingerprints(run_dir: &RunDir) -> Fingerprints {
    std::fs::read_to_string(run_dir.secrets())
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Replaces every occurrence of a fingerprinted value in `bytes`.
pub fn scrub(bytes: &[u8], fp: &Fingerprints) -> Vec<u8> {
    let mut wanted: Vec<(usize, Vec<u8>)> = fp
        .secrets
        .iter()
        .filter_map(|s| Some((s.len, hex::decode(&s.sha256).ok()?)))
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
                sha256: hex::encode(hash(&salt, b"hunter")),
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
