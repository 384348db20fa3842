//! mosquitto's password file: `user:$7$iterations$salt$hash` lines as
//! `mosquitto_passwd` writes them (PBKDF2-HMAC-SHA512), the older
//! `user:$6$salt$hash` (SHA-512 of the password and salt), and mosquitto
//! 2.1's `user:$argon2id$v=19$m=47104,t=1,p=1$salt$hash` (`argon2id.rs`).
//!
//! Tern adds one line type mosquitto does not have, for MQTT 5 enhanced
//! authentication with SCRAM-SHA-256 (`tern passwd --scram` writes it) or
//! SCRAM-SHA-512 (`--scram-sha512`):
//! `user:SCRAM-SHA-256$iterations:salt$StoredKey:ServerKey`, salt and
//! keys in standard base64: RFC 5803's form, the one PostgreSQL stores.
//! Such a user can log in with SCRAM, and with a plain CONNECT password
//! too (the password is checked against StoredKey). mosquitto refuses
//! these lines: keep SCRAM users out of a file mosquitto also reads.
//!
//! Parsing takes the file's text, so the core reads no file; the shell
//! reads it and names the path in errors. Verification compares in
//! constant time.

use super::argon2id::{self, Argon2idHash};
use base64::{Engine, engine::general_purpose::STANDARD};
use sha2::{Digest, Sha512};
use std::{collections::BTreeMap, fmt};
use tern_session::scram::{self, Mechanism, ScramCredential};

/// The prefix of a SCRAM line's credential: the mechanism's name and `$`.
fn scram_prefix(mechanism: Mechanism) -> String {
    format!("{}$", mechanism.name())
}
/// The salt length `tern passwd --scram` writes.
pub const SCRAM_SALT_LEN: usize = 16;

/// The salt length mosquitto uses and requires.
pub const SALT_LEN: usize = 12;
/// The length of a SHA-512 hash.
const HASH_LEN: usize = 64;
/// The iteration count `mosquitto_passwd` writes.
pub const DEFAULT_ITERATIONS: u32 = 101;
/// More iterations than any real file holds: a guard against a file that
/// would make every CONNECT cost seconds.
const MAX_ITERATIONS: u32 = 10_000_000;

/// The users of a password file and their password hashes.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PasswordFile {
    users: BTreeMap<String, PasswordHash>,
    /// A digest of every stored hash: the secret behind the decoy SCRAM
    /// credentials of users the file does not have.
    secret: [u8; 32],
}

impl fmt::Debug for PasswordFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The hashes stay out of logs.
        f.debug_struct("PasswordFile")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// One user's stored hash: mosquitto's, or a SCRAM-SHA-256 credential.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(Stored);

#[derive(Clone, PartialEq, Eq)]
enum Stored {
    Mosquitto {
        kind: HashKind,
        salt: [u8; SALT_LEN],
        hash: [u8; HASH_LEN],
    },
    Scram(ScramCredential),
    /// mosquitto 2.1's default.
    Argon2id(Box<Argon2idHash>),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum HashKind {
    /// `$6$`: SHA-512 over the password then the salt.
    Sha512,
    /// `$7$`: PBKDF2-HMAC-SHA512 with this many iterations.
    Pbkdf2Sha512 { iterations: u32 },
}

/// A line of a password file that cannot be used, with its 1-based number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordFileError {
    /// The line, counted from 1.
    pub line: usize,
    /// What is wrong with it.
    pub why: String,
}

impl fmt::Display for PasswordFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.why)
    }
}

impl std::error::Error for PasswordFileError {}

impl PasswordFile {
    /// Parses a password file. Blank lines and lines starting with `#` are
    /// skipped; every other line must be `user:hash` with a hash
    /// mosquitto writes. Where mosquitto drops a bad line with a log
    /// message, this refuses the file, naming the line: a broker should not
    /// start with users silently missing.
    pub fn parse(text: &str) -> Result<Self, PasswordFileError> {
        let mut users = BTreeMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let err = |why: String| PasswordFileError { line, why };
            if raw.trim().is_empty() || raw.starts_with('#') {
                continue;
            }
            let (user, hash) = raw
                .split_once(':')
                .ok_or_else(|| err("expected user:password-hash".into()))?;
            let user = user.trim();
            if user.is_empty() {
                return Err(err("empty user name".into()));
            }
            let hash = PasswordHash::parse(hash.trim())
                .map_err(|why| err(format!("user {user:?}: {why}")))?;
            if users.insert(String::from(user), hash).is_some() {
                return Err(err(format!("user {user:?} appears twice")));
            }
        }
        let mut digest = sha2::Sha256::new();
        for (user, hash) in &users {
            digest.update(user.as_bytes());
            digest.update(hash.to_string().as_bytes());
        }
        Ok(Self {
            users,
            secret: digest.finalize().into(),
        })
    }

    /// Whether `user` is in the file with this `password`. Unknown users
    /// and wrong passwords are both `false`.
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        self.users
            .get(user)
            .is_some_and(|hash| hash.matches(password))
    }

    /// `user`'s SCRAM credential for `mechanism`, if the file has one.
    pub fn scram_credential(&self, user: &str, mechanism: Mechanism) -> Option<&ScramCredential> {
        match self.users.get(user) {
            Some(PasswordHash(Stored::Scram(c))) if c.mechanism == mechanism => Some(c),
            _ => None,
        }
    }

    /// A decoy SCRAM-SHA-256 credential for a user without one, the same
    /// for the same name and file: a SCRAM exchange for an unknown user
    /// then runs like one with a wrong password (a stable salt, 0x86 at the
    /// end), so the server-first message does not reveal who exists (RFC
    /// 5802 §5.1). Nobody can know its password: its keys are digests of
    /// the file's hashes, not of any password.
    pub fn decoy_scram_credential(&self, user: &str, mechanism: Mechanism) -> ScramCredential {
        let derive = |label: &[u8]| -> [u8; 32] {
            let mut d = sha2::Sha256::new();
            d.update(self.secret);
            d.update(label);
            d.update(user.as_bytes());
            d.finalize().into()
        };
        // As long as the mechanism's keys: one or two digests.
        let key = |label: &[u8]| -> Vec<u8> {
            let mut key = derive(label).to_vec();
            if mechanism.key_len() > key.len() {
                key.extend_from_slice(&derive(&[label, b" 2"].concat()));
            }
            key.truncate(mechanism.key_len());
            key
        };
        ScramCredential {
            mechanism,
            iterations: scram::MIN_ITERATIONS,
            salt: derive(b"salt")[..SCRAM_SALT_LEN].to_vec(),
            stored_key: key(b"stored key"),
            server_key: key(b"server key"),
        }
    }

    /// Whether `user` is in the file.
    pub fn contains(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// The number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether the file names no user.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The users and their hashes, by name (a reload compares them to say
    /// who was added, removed or given a new password; the hashes are
    /// never shown).
    pub fn users(&self) -> impl Iterator<Item = (&str, &PasswordHash)> {
        self.users.iter().map(|(user, hash)| (user.as_str(), hash))
    }
}

impl PasswordHash {
    /// `$6$salt$hash` or `$7$iterations$salt$hash`, salt and hash in
    /// standard base64.
    pub fn parse(text: &str) -> Result<Self, String> {
        for mechanism in [Mechanism::Sha256, Mechanism::Sha512] {
            if let Some(rest) = text.strip_prefix(&scram_prefix(mechanism)) {
                return parse_scram(mechanism, rest).map(|c| Self(Stored::Scram(c)));
            }
        }
        if text.starts_with(argon2id::PREFIX) {
            return Argon2idHash::parse(text).map(|h| Self(Stored::Argon2id(Box::new(h))));
        }
        let mut parts = text.split('$');
        if parts.next() != Some("") {
            return Err("the hash must start with $6$, $7$ or $argon2id$ (run mosquitto_passwd -U on a plain-text file)".into());
        }
        let kind = match parts.next() {
            Some("6") => HashKind::Sha512,
            Some("7") => {
                let iterations = parts
                    .next()
                    .and_then(|n| n.parse::<u32>().ok())
                    .filter(|n| (1..=MAX_ITERATIONS).contains(n))
                    .ok_or_else(|| format!("bad iteration count (1 to {MAX_ITERATIONS})"))?;
                HashKind::Pbkdf2Sha512 { iterations }
            }
            Some(other) => {
                return Err(format!(
                    "unknown hash type ${other}$ (expected $6$, $7$ or $argon2id$)"
                ));
            }
            None => return Err("missing hash type".into()),
        };
        let salt = decode::<SALT_LEN>(parts.next(), "salt")?;
        let hash = decode::<HASH_LEN>(parts.next(), "hash")?;
        if parts.next().is_some() {
            return Err("too many $-separated fields".into());
        }
        Ok(Self(Stored::Mosquitto { kind, salt, hash }))
    }

    /// Hashes `password` with `salt` as `kind` says.
    fn compute(kind: HashKind, salt: &[u8], password: &[u8]) -> [u8; HASH_LEN] {
        let mut out = [0u8; HASH_LEN];
        match kind {
            HashKind::Sha512 => {
                let mut digest = Sha512::new();
                digest.update(password);
                digest.update(salt);
                out.copy_from_slice(&digest.finalize());
            }
            HashKind::Pbkdf2Sha512 { iterations } => {
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
            }
        }
        out
    }

    fn matches(&self, password: &[u8]) -> bool {
        let (kind, salt, hash) = match &self.0 {
            Stored::Mosquitto { kind, salt, hash } => (*kind, salt, hash),
            Stored::Scram(credential) => return credential.verify_password(password),
            Stored::Argon2id(hash) => return hash.matches(password),
        };
        let computed = Self::compute(kind, salt, password);
        // Constant time: every byte is compared whatever the first differs.
        computed
            .iter()
            .zip(hash.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    /// A SCRAM-SHA-256 credential for `password` (RFC 5802's StoredKey and
    /// ServerKey; the caller picks the salt at random), for MQTT 5
    /// enhanced authentication; a plain CONNECT password is checked
    /// against it as well.
    pub fn scram_sha256(password: &[u8], salt: [u8; SCRAM_SALT_LEN], iterations: u32) -> Self {
        Self::scram(Mechanism::Sha256, password, salt, iterations)
    }

    /// A SCRAM credential for `password` under `mechanism` (a
    /// `SCRAM-SHA-256$` or `SCRAM-SHA-512$` line).
    pub fn scram(
        mechanism: Mechanism,
        password: &[u8],
        salt: [u8; SCRAM_SALT_LEN],
        iterations: u32,
    ) -> Self {
        Self(Stored::Scram(ScramCredential::derive_for(
            mechanism, password, &salt, iterations,
        )))
    }

    /// A `$6$` hash (SHA-512 of the password and salt), what mosquitto 1.6
    /// and `mosquitto_passwd -H sha512` write; prefer [`pbkdf2`](Self::pbkdf2).
    pub fn sha512(password: &[u8], salt: [u8; SALT_LEN]) -> Self {
        Self(Stored::Mosquitto {
            kind: HashKind::Sha512,
            salt,
            hash: Self::compute(HashKind::Sha512, &salt, password),
        })
    }

    /// An argon2id hash of `password` with mosquitto 2.1's parameters (46
    /// MiB, one pass, one lane, a 64-byte hash): what mosquitto 2.1's
    /// `mosquitto_passwd` writes by default (the caller picks the salt at
    /// random). mosquitto 2.0 cannot read it.
    pub fn argon2id(password: &[u8], salt: [u8; argon2id::MOSQUITTO_SALT_LEN]) -> Self {
        Self(Stored::Argon2id(Box::new(Argon2idHash::mosquitto(
            password, salt,
        ))))
    }

    /// A `$7$` line's hash for `password` with this `salt`: what
    /// `mosquitto_passwd` writes (the caller picks the salt at random).
    pub fn pbkdf2(password: &[u8], salt: [u8; SALT_LEN], iterations: u32) -> Self {
        let kind = HashKind::Pbkdf2Sha512 { iterations };
        Self(Stored::Mosquitto {
            kind,
            salt,
            hash: Self::compute(kind, &salt, password),
        })
    }
}

impl fmt::Display for PasswordHash {
    /// The hash as a password file holds it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, salt, hash) = match &self.0 {
            Stored::Mosquitto { kind, salt, hash } => (kind, salt, hash),
            Stored::Scram(c) => {
                return write!(
                    f,
                    "{}{}:{}${}:{}",
                    scram_prefix(c.mechanism),
                    c.iterations,
                    STANDARD.encode(&c.salt),
                    STANDARD.encode(&c.stored_key),
                    STANDARD.encode(&c.server_key)
                );
            }
            Stored::Argon2id(hash) => return hash.fmt(f),
        };
        match kind {
            HashKind::Sha512 => f.write_str("$6$")?,
            HashKind::Pbkdf2Sha512 { iterations } => write!(f, "$7${iterations}$")?,
        }
        write!(f, "{}${}", STANDARD.encode(salt), STANDARD.encode(hash))
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(..)")
    }
}

/// `iterations:salt$StoredKey:ServerKey` (after `SCRAM-SHA-256$` or
/// `SCRAM-SHA-512$`).
fn parse_scram(mechanism: Mechanism, text: &str) -> Result<ScramCredential, String> {
    let (params, keys) = text
        .split_once('$')
        .ok_or("a SCRAM line is SCRAM-SHA-256$iterations:salt$StoredKey:ServerKey")?;
    let (iterations, salt) = params
        .split_once(':')
        .ok_or("missing ':' between SCRAM iteration count and salt")?;
    let iterations = iterations
        .parse::<u32>()
        .ok()
        .filter(|n| (scram::MIN_ITERATIONS..=scram::MAX_ITERATIONS).contains(n))
        .ok_or_else(|| {
            format!(
                "bad SCRAM iteration count ({} to {})",
                scram::MIN_ITERATIONS,
                scram::MAX_ITERATIONS
            )
        })?;
    let salt = STANDARD
        .decode(salt)
        .ok()
        .filter(|s| (1..=64).contains(&s.len()))
        .ok_or("SCRAM salt is not 1 to 64 bytes of base64")?;
    let (stored_key, server_key) = keys
        .split_once(':')
        .ok_or("missing ':' between StoredKey and ServerKey")?;
    let key = |field: &str, what: &str| -> Result<Vec<u8>, String> {
        let bytes = STANDARD
            .decode(field)
            .map_err(|e| format!("{what} is not base64: {e}"))?;
        if bytes.len() == mechanism.key_len() {
            Ok(bytes)
        } else {
            Err(format!(
                "{what} is {} bytes, not {}",
                bytes.len(),
                mechanism.key_len()
            ))
        }
    };
    Ok(ScramCredential {
        mechanism,
        iterations,
        salt,
        stored_key: key(stored_key, "StoredKey")?,
        server_key: key(server_key, "ServerKey")?,
    })
}

fn decode<const N: usize>(field: Option<&str>, what: &str) -> Result<[u8; N], String> {
    let field = field.ok_or_else(|| format!("missing {what}"))?;
    let bytes = STANDARD
        .decode(field)
        .map_err(|e| format!("{what} is not base64: {e}"))?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("{what} is {} bytes, not {N}", b.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_hash_parses_back_and_verifies() {
        let hash = PasswordHash::pbkdf2(b"s3cret", [7; SALT_LEN], DEFAULT_ITERATIONS);
        let file = PasswordFile::parse(&format!("# users\n\nalice:{hash}\n")).unwrap();
        assert!(file.verify("alice", b"s3cret"));
        assert!(!file.verify("alice", b"s3cret "));
        assert!(!file.verify("bob", b"s3cret"));
        assert_eq!(file.len(), 1);
    }

    #[test]
    fn a_scram_line_parses_back_and_verifies_plain_passwords() {
        let hash = PasswordHash::scram_sha256(b"pencil", [3; SCRAM_SALT_LEN], 4096);
        let line = format!("user:{hash}\n");
        assert!(line.starts_with("user:SCRAM-SHA-256$4096:AwMD"), "{line}");
        let file = PasswordFile::parse(&line).unwrap();
        assert!(file.verify("user", b"pencil"));
        assert!(!file.verify("user", b"pencil!"));
        let c = file.scram_credential("user", Mechanism::Sha256).unwrap();
        assert!(file.scram_credential("user", Mechanism::Sha512).is_none());
        assert_eq!(c, &ScramCredential::derive(b"pencil", &[3; 16], 4096));
        for (bad, needle) in [
            ("u:SCRAM-SHA-256$4096:AAAA\n", "SCRAM-SHA-256$iterations"),
            (
                "u:SCRAM-SHA-512$4096:AAAA$AA==:AA==\n",
                "StoredKey is 1 bytes, not 64",
            ),
            ("u:SCRAM-SHA-256$10:AAAA$AA:AA\n", "iteration count"),
            ("u:SCRAM-SHA-256$4096:!!$AA:AA\n", "salt"),
            (
                "u:SCRAM-SHA-256$4096:AAAA$AA==:AA==\n",
                "StoredKey is 1 bytes",
            ),
        ] {
            let e = PasswordFile::parse(bad).unwrap_err();
            assert!(e.why.contains(needle), "{bad:?}: {e}");
        }
    }

    #[test]
    fn bad_lines_are_named() {
        let good = PasswordHash::pbkdf2(b"x", [1; SALT_LEN], 1);
        for (text, line, needle) in [
            ("alice\n", 1, "user:password-hash"),
            ("#\nalice:plain\n", 2, "must start with"),
            ("alice:$5$abc$def\n", 1, "unknown hash type"),
            ("alice:$7$0$AAAA$AAAA\n", 1, "iteration"),
            ("alice:$6$AAAA$AAAA\n", 1, "salt is 3 bytes"),
            (":$6$AAAA$AAAA\n", 1, "empty user"),
        ] {
            let e = PasswordFile::parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.why.contains(needle), "{text:?}: {e}");
        }
        let twice = format!("a:{good}\na:{good}\n");
        assert!(
            PasswordFile::parse(&twice)
                .unwrap_err()
                .why
                .contains("twice")
        );
    }
}
