//! OpenPGP as apt uses it: a keyring of trusted archive keys, and the verification of a
//! clearsigned file (`InRelease`) against it.
//!
//! apt's rules, which this follows: every signature by a key in the keyring must verify (one
//! bad signature fails the file even if another is good); signatures by keys not in the keyring
//! are ignored as long as at least one good signature remains; signatures by expired or revoked
//! keys and signatures over weak digests (MD5, SHA-1, RIPEMD-160) do not count.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pgp::composed::{CleartextSignedMessage, Deserializable, SignedPublicKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::{Signature, SignatureType};
use pgp::types::{KeyDetails, Tag, Timestamp};

/// Debian's archive signing keys (from the `debian-archive-keyring` package, 2023.3+deb12u2):
/// the automatic archive and security-archive keys and the stable release keys of bullseye (11),
/// bookworm (12) and trixie (13).
const DEBIAN_KEYS: &[(&str, &[u8])] = &[
    (
        "debian-archive-bullseye-automatic",
        include_bytes!("../../../keys/debian-archive-bullseye-automatic.gpg"),
    ),
    (
        "debian-archive-bullseye-security-automatic",
        include_bytes!("../../../keys/debian-archive-bullseye-security-automatic.gpg"),
    ),
    (
        "debian-archive-bullseye-stable",
        include_bytes!("../../../keys/debian-archive-bullseye-stable.gpg"),
    ),
    (
        "debian-archive-bookworm-automatic",
        include_bytes!("../../../keys/debian-archive-bookworm-automatic.gpg"),
    ),
    (
        "debian-archive-bookworm-security-automatic",
        include_bytes!("../../../keys/debian-archive-bookworm-security-automatic.gpg"),
    ),
    (
        "debian-archive-bookworm-stable",
        include_bytes!("../../../keys/debian-archive-bookworm-stable.gpg"),
    ),
    (
        "debian-archive-trixie-automatic",
        include_bytes!("../../../keys/debian-archive-trixie-automatic.gpg"),
    ),
    (
        "debian-archive-trixie-security-automatic",
        include_bytes!("../../../keys/debian-archive-trixie-security-automatic.gpg"),
    ),
    (
        "debian-archive-trixie-stable",
        include_bytes!("../../../keys/debian-archive-trixie-stable.gpg"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum OpenPgpError {
    #[error("not a clearsigned OpenPGP message: {0}")]
    Malformed(String),
    #[error("the clearsigned message holds no signature")]
    Unsigned,
    #[error(
        "bad signature by key {key} ({uid}): the signed text was altered or the signature is corrupt"
    )]
    BadSignature { key: String, uid: String },
    #[error("signature by unknown key {}", keys.join(", "))]
    UnknownKey { keys: Vec<String> },
    #[error("no usable signature: {}", problems.join("; "))]
    NotUsable { problems: Vec<String> },
    #[error("keyring {name}: {reason}")]
    Keyring { name: String, reason: String },
}

/// A trusted key that may sign: a certificate's primary key or one of its signing subkeys.
#[derive(Debug, Clone)]
struct Component {
    /// Index into `Keyring::certs`.
    cert: usize,
    /// `None`: the primary key; `Some(i)`: `public_subkeys[i]`.
    subkey: Option<usize>,
    fingerprint: String,
    key_id: String,
    /// Seconds since the epoch; `None` when the key does not expire.
    expires: Option<u64>,
    revoked: bool,
}

/// Keys trusted to sign archive metadata.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    certs: Vec<SignedPublicKey>,
    uids: Vec<String>,
    components: Vec<Component>,
}

/// Who signed a verified file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    /// The signing (sub)key's fingerprint, upper-case hex.
    pub fingerprint: String,
    /// The certificate's first user ID.
    pub uid: String,
}

/// A clearsigned file whose signature checked out.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Exactly the text the signatures cover (dash-unescaped, `\n` line endings). Read fields
    /// from this, never from the raw file: text outside the signed part is attacker-controlled.
    pub text: String,
    pub signers: Vec<Signer>,
}

impl Keyring {
    /// The Debian archive keys built into ferry.
    pub fn debian() -> Keyring {
        let mut keyring = Keyring::default();
        for (name, bytes) in DEBIAN_KEYS {
            // The embedded keys are checked by the tests; a failure here is a build defect.
            keyring
                .add(name, bytes)
                .unwrap_or_else(|e| panic!("built-in {e}"));
        }
        keyring
    }

    /// A keyring from OpenPGP public keys, binary (`.gpg`, `.pgp`) or ASCII-armored (`.asc`).
    pub fn from_bytes(name: &str, bytes: &[u8]) -> Result<Keyring, OpenPgpError> {
        let mut keyring = Keyring::default();
        keyring.add(name, bytes)?;
        Ok(keyring)
    }

    /// Adds the certificates in `bytes`. Components whose self-signatures do not verify are
    /// left out; a file with no usable key at all is an error.
    pub fn add(&mut self, name: &str, bytes: &[u8]) -> Result<(), OpenPgpError> {
        let err = |reason: String| OpenPgpError::Keyring {
            name: name.to_string(),
            reason,
        };
        let certs: Vec<SignedPublicKey> = if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
            let (iter, _) =
                SignedPublicKey::from_armor_many(bytes).map_err(|e| err(e.to_string()))?;
            iter.collect::<Result<_, _>>()
                .map_err(|e| err(e.to_string()))?
        } else {
            SignedPublicKey::from_bytes_many(bytes)
                .map_err(|e| err(e.to_string()))?
                .collect::<Result<_, _>>()
                .map_err(|e| err(e.to_string()))?
        };
        let before = self.components.len();
        for cert in certs {
            self.add_cert(cert);
        }
        if self.components.len() == before {
            return Err(err("holds no usable signing key".to_string()));
        }
        Ok(())
    }

    fn add_cert(&mut self, cert: SignedPublicKey) {
        let index = self.certs.len();
        let primary = &cert.primary_key;
        // Self-signatures only: Debian's keys also carry certifications by other Debian keys,
        // which say nothing about the key's own flags and expiry.
        let by_self = |s: &&Signature| is_issued_by(s, primary);
        let self_certs: Vec<&Signature> = cert
            .details
            .users
            .iter()
            .flat_map(|u| {
                u.signatures
                    .iter()
                    .filter(by_self)
                    .filter(|s| s.verify_certification(primary, Tag::UserId, &u.id).is_ok())
            })
            .chain(
                cert.details
                    .direct_signatures
                    .iter()
                    .filter(by_self)
                    .filter(|s| s.verify_key(primary).is_ok()),
            )
            .collect();
        let Some(newest) = self_certs
            .iter()
            .max_by_key(|s| s.created().map(Timestamp::as_secs))
        else {
            tracing::warn!(key = %hex_fingerprint(primary), "ignoring a key without a valid self-signature");
            return;
        };
        let uid = cert
            .details
            .users
            .iter()
            .find(|u| u.signatures.iter().any(|s| self_certs.contains(&s)))
            .and_then(|u| u.id.as_str().map(str::to_string))
            .unwrap_or_else(|| "no user ID".to_string());
        let created = u64::from(primary.created_at().as_secs());
        let cert_revoked = cert
            .details
            .revocation_signatures
            .iter()
            .filter(by_self)
            .any(|s| s.verify_key(primary).is_ok());
        let flags = newest.key_flags();
        if flags.sign() || flags == Default::default() {
            self.components.push(Component {
                cert: index,
                subkey: None,
                fingerprint: hex_fingerprint(primary),
                key_id: primary.legacy_key_id().to_string().to_uppercase(),
                expires: newest
                    .key_expiration_time()
                    .map(|d| created + u64::from(d.as_secs())),
                revoked: cert_revoked,
            });
        }
        for (i, sub) in cert.public_subkeys.iter().enumerate() {
            let revoked = sub.signatures.iter().any(|s| {
                s.typ() == Some(SignatureType::SubkeyRevocation)
                    && s.verify_subkey_binding(primary, &sub.key).is_ok()
            });
            let Some(binding) = sub
                .signatures
                .iter()
                .filter(|s| s.typ() == Some(SignatureType::SubkeyBinding))
                .max_by_key(|s| s.created().map(Timestamp::as_secs))
            else {
                continue;
            };
            // The binding, and for a signing subkey the subkey's back-signature on the primary.
            let bound = binding.verify_subkey_binding(primary, &sub.key).is_ok()
                && binding
                    .embedded_signature()
                    .is_some_and(|b| b.verify_primary_key_binding(&sub.key, primary).is_ok());
            if !bound {
                tracing::warn!(key = %hex_fingerprint(&sub.key), "ignoring a subkey whose binding does not verify");
                continue;
            }
            if !binding.key_flags().sign() {
                continue;
            }
            let sub_created = u64::from(sub.key.created_at().as_secs());
            self.components.push(Component {
                cert: index,
                subkey: Some(i),
                fingerprint: hex_fingerprint(&sub.key),
                key_id: sub.key.legacy_key_id().to_string().to_uppercase(),
                expires: binding
                    .key_expiration_time()
                    .map(|d| sub_created + u64::from(d.as_secs())),
                revoked: revoked || cert_revoked,
            });
        }
        self.certs.push(cert);
        self.uids.push(uid);
    }

    /// Fingerprints of the keys that may sign, upper-case hex.
    pub fn fingerprints(&self) -> Vec<String> {
        self.components
            .iter()
            .map(|c| c.fingerprint.clone())
            .collect()
    }

    /// Verifies a clearsigned file at time `now` (key expiry is judged against it).
    pub fn verify_clearsigned(
        &self,
        data: &[u8],
        now: SystemTime,
    ) -> Result<Verified, OpenPgpError> {
        let (message, _) = CleartextSignedMessage::from_armor_buf(data, Default::default())
            .map_err(|e| OpenPgpError::Malformed(e.to_string()))?;
        if message.signatures().is_empty() {
            return Err(OpenPgpError::Unsigned);
        }
        let signed = message.signed_text();
        let now_secs = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        let mut signers = Vec::new();
        let mut unknown = Vec::new();
        let mut problems = Vec::new();
        for signature in message.signatures() {
            let Some(component) = self.issuer(signature) else {
                unknown.push(issuer_name(signature));
                continue;
            };
            let cert = &self.certs[component.cert];
            let uid = self.uids[component.cert].clone();
            let key = format!("0x{}", component.key_id);
            let verified = match component.subkey {
                None => signature.verify(&cert.primary_key, signed.as_bytes()),
                Some(i) => signature.verify(&cert.public_subkeys[i].key, signed.as_bytes()),
            };
            if verified.is_err() {
                return Err(OpenPgpError::BadSignature { key, uid });
            }
            let digest = signature.hash_alg().unwrap_or(HashAlgorithm::None);
            if matches!(
                digest,
                HashAlgorithm::None
                    | HashAlgorithm::Md5
                    | HashAlgorithm::Sha1
                    | HashAlgorithm::Ripemd160
            ) {
                problems.push(format!(
                    "signature by key {key} ({uid}) uses the weak digest {digest}"
                ));
                continue;
            }
            if component.revoked {
                problems.push(format!("signature by key {key} ({uid}), which was revoked"));
                continue;
            }
            if let Some(expires) = component.expires.filter(|&t| t <= now_secs) {
                problems.push(format!(
                    "signature by key {key} ({uid}), which expired on {}",
                    format_date(expires)
                ));
                continue;
            }
            signers.push(Signer {
                fingerprint: component.fingerprint.clone(),
                uid,
            });
        }
        if !signers.is_empty() {
            return Ok(Verified {
                text: signed.replace("\r\n", "\n"),
                signers,
            });
        }
        if !problems.is_empty() {
            return Err(OpenPgpError::NotUsable { problems });
        }
        Err(OpenPgpError::UnknownKey { keys: unknown })
    }

    /// The keyring component a signature names as its issuer (by fingerprint, else key ID).
    fn issuer(&self, signature: &Signature) -> Option<&Component> {
        let fingerprints: Vec<String> = signature
            .issuer_fingerprint()
            .iter()
            .map(|f| format!("{f:X}"))
            .collect();
        let key_ids: Vec<String> = signature
            .issuer_key_id()
            .iter()
            .map(|k| k.to_string().to_uppercase())
            .collect();
        self.components
            .iter()
            .find(|c| fingerprints.contains(&c.fingerprint))
            .or_else(|| {
                self.components
                    .iter()
                    .find(|c| fingerprints.is_empty() && key_ids.contains(&c.key_id))
            })
    }
}

fn is_issued_by(signature: &Signature, key: &impl KeyDetails) -> bool {
    let fingerprint = key.fingerprint();
    let key_id = key.legacy_key_id();
    signature
        .issuer_fingerprint()
        .iter()
        .any(|f| **f == fingerprint)
        || signature.issuer_key_id().iter().any(|k| **k == key_id)
}

fn hex_fingerprint(key: &impl KeyDetails) -> String {
    format!("{:X}", key.fingerprint())
}

fn issuer_name(signature: &Signature) -> String {
    if let Some(f) = signature.issuer_fingerprint().first() {
        return format!("0x{f:X}");
    }
    match signature.issuer_key_id().first() {
        Some(k) => format!("0x{}", k.to_string().to_uppercase()),
        None => "(signature names no issuer)".to_string(),
    }
}

/// `YYYY-MM-DD` (UTC) for seconds since the epoch.
pub(crate) fn format_date(secs: u64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    humantime::format_rfc3339_seconds(time).to_string()[..10].to_string()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use pgp::composed::{KeyType, SecretKeyParamsBuilder, SignedSecretKey, SubkeyParamsBuilder};
    use pgp::ser::Serialize;
    use pgp::types::Password;

    /// A throwaway Ed25519 key: a certifying primary key and a signing subkey, like Debian's
    /// archive keys.
    pub fn throwaway_key(uid: &str) -> SignedSecretKey {
        let mut sub = SubkeyParamsBuilder::default();
        sub.key_type(KeyType::Ed25519Legacy).can_sign(true);
        let mut params = SecretKeyParamsBuilder::default();
        params
            .key_type(KeyType::Ed25519Legacy)
            .can_certify(true)
            .can_sign(false)
            .primary_user_id(uid.into())
            .subkeys(vec![sub.build().unwrap()]);
        params
            .build()
            .unwrap()
            .generate(rand::thread_rng())
            .unwrap()
    }

    pub fn public_bytes(key: &SignedSecretKey) -> Vec<u8> {
        let mut out = Vec::new();
        key.to_public_key().to_writer(&mut out).unwrap();
        out
    }

    /// `text` clearsigned by `key`'s signing subkey.
    pub fn clearsign(key: &SignedSecretKey, text: &str) -> Vec<u8> {
        let subkey = &key.secret_subkeys[0].key;
        let message =
            CleartextSignedMessage::sign(rand::thread_rng(), text, subkey, &Password::empty())
                .unwrap();
        message.to_armored_bytes(Default::default()).unwrap()
    }

    #[test]
    fn debian_keyring_loads_every_key() {
        let keyring = Keyring::debian();
        let fingerprints = keyring.fingerprints();
        // bookworm automatic signing subkey, trixie automatic signing subkey, bookworm stable key
        for f in [
            "4CB50190207B4758A3F73A796ED0E7B82643E131",
            "B8E5F13176D2A7A75220028078DBA3BC47EF2265",
            "4D64FEC119C2029067D6E791F8D2585B8783D481",
            "41587F7DB8C774BCCF131416762F67A0B2C39DE4",
        ] {
            assert!(
                fingerprints.contains(&f.to_string()),
                "{f} missing from {fingerprints:?}"
            );
        }
        assert_eq!(keyring.certs.len(), DEBIAN_KEYS.len());
    }

    #[test]
    fn good_signature_verifies_and_returns_the_signed_text() {
        let key = throwaway_key("Test Archive <test@example.org>");
        let keyring = Keyring::from_bytes("test", &public_bytes(&key)).unwrap();
        let text = "Origin: Test\nCodename: test\n- a line starting with a dash\n";
        let signed = clearsign(&key, text);
        let verified = keyring
            .verify_clearsigned(&signed, SystemTime::now())
            .unwrap();
        assert_eq!(verified.text.trim_end(), text.trim_end());
        assert_eq!(verified.signers.len(), 1);
        assert_eq!(verified.signers[0].uid, "Test Archive <test@example.org>");
    }

    #[test]
    fn changed_byte_is_a_bad_signature() {
        let key = throwaway_key("Test Archive <test@example.org>");
        let keyring = Keyring::from_bytes("test", &public_bytes(&key)).unwrap();
        let signed = clearsign(&key, "Origin: Test\nCodename: test\n");
        let tampered =
            String::from_utf8(signed)
                .unwrap()
                .replacen("Codename: test", "Codename: tesT", 1);
        let e = keyring
            .verify_clearsigned(tampered.as_bytes(), SystemTime::now())
            .unwrap_err();
        assert!(matches!(e, OpenPgpError::BadSignature { .. }), "{e}");
        assert!(e.to_string().starts_with("bad signature by key 0x"), "{e}");
    }

    #[test]
    fn unknown_key_is_named() {
        let signer = throwaway_key("Stranger <s@example.org>");
        let trusted = throwaway_key("Trusted <t@example.org>");
        let keyring = Keyring::from_bytes("test", &public_bytes(&trusted)).unwrap();
        let signed = clearsign(&signer, "Origin: Test\n");
        let e = keyring
            .verify_clearsigned(&signed, SystemTime::now())
            .unwrap_err();
        let expected = format!(
            "signature by unknown key 0x{:X}",
            signer.secret_subkeys[0].key.fingerprint()
        );
        assert_eq!(e.to_string(), expected);
    }

    #[test]
    fn text_outside_the_signature_is_refused() {
        let key = throwaway_key("Test <t@example.org>");
        let keyring = Keyring::from_bytes("test", &public_bytes(&key)).unwrap();
        let signed = String::from_utf8(clearsign(&key, "Origin: Test\n")).unwrap();
        for bad in [
            format!("Codename: evil\n{signed}"),
            format!("{signed}\nCodename: evil\n"),
        ] {
            let e = keyring
                .verify_clearsigned(bad.as_bytes(), SystemTime::now())
                .unwrap_err();
            assert!(matches!(e, OpenPgpError::Malformed(_)), "{e}");
        }
        let e = keyring
            .verify_clearsigned(b"Origin: Test\n", SystemTime::now())
            .unwrap_err();
        assert!(matches!(e, OpenPgpError::Malformed(_)), "{e}");
    }

    #[test]
    fn expired_or_revoked_key_does_not_count() {
        let key = throwaway_key("Test <t@example.org>");
        let mut keyring = Keyring::from_bytes("test", &public_bytes(&key)).unwrap();
        let signed = clearsign(&key, "Origin: Test\n");
        let now = SystemTime::now();
        let secs = now.duration_since(UNIX_EPOCH).unwrap().as_secs();
        keyring.components[0].expires = Some(secs + 60);
        keyring.verify_clearsigned(&signed, now).unwrap();
        keyring.components[0].expires = Some(secs - 86_400);
        let e = keyring.verify_clearsigned(&signed, now).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("no usable signature: signature by key 0x"),
            "{e}"
        );
        assert!(
            e.to_string()
                .contains(&format!("which expired on {}", format_date(secs - 86_400))),
            "{e}"
        );
        keyring.components[0].expires = None;
        keyring.components[0].revoked = true;
        let e = keyring.verify_clearsigned(&signed, now).unwrap_err();
        assert!(e.to_string().ends_with("which was revoked"), "{e}");
    }

    #[test]
    fn debian_key_expiry_is_read_from_the_binding_signature() {
        let keyring = Keyring::debian();
        let expiry = |f: &str| {
            let c = keyring
                .components
                .iter()
                .find(|c| c.fingerprint == f)
                .unwrap();
            format_date(c.expires.unwrap())
        };
        // `gpg --show-keys`: bookworm automatic subkey "rsa4096 2023-01-21 [S] [expires: 2031-01-19]",
        // bookworm stable "ed25519 2023-01-23 [SC] [expires: 2031-01-21]"
        assert_eq!(
            expiry("4CB50190207B4758A3F73A796ED0E7B82643E131"),
            "2031-01-19"
        );
        assert_eq!(
            expiry("4D64FEC119C2029067D6E791F8D2585B8783D481"),
            "2031-01-21"
        );
    }

    #[test]
    fn armored_and_garbage_keyrings() {
        let key = throwaway_key("Test <t@example.org>");
        let armored = key
            .to_public_key()
            .to_armored_bytes(Default::default())
            .unwrap();
        let keyring = Keyring::from_bytes("armored", &armored).unwrap();
        assert_eq!(
            keyring.fingerprints().len(),
            1,
            "only the signing subkey may sign"
        );
        let e = Keyring::from_bytes("junk", b"not a key").unwrap_err();
        assert!(e.to_string().starts_with("keyring junk: "), "{e}");
    }

    #[test]
    fn dates() {
        assert_eq!(format_date(0), "1970-01-01");
        assert_eq!(format_date(1_783_765_031), "2026-07-11");
        assert_eq!(format_date(951_782_400), "2000-02-29");
    }
}
