//! Argon2id password hashes as mosquitto 2.1 writes them in a password
//! file: `user:$argon2id$v=19$m=47104,t=1,p=1$SALT$HASH`, the PHC string
//! libargon2's `argon2id_hash_encoded` produces (salt and hash in standard
//! base64 without padding; mosquitto uses a 64-byte salt and a 64-byte
//! hash, 46 MiB of memory and one pass).
//!
//! The string is parsed here (so its bounds are ours: a line asking for
//! gigabytes per CONNECT is refused at load), and the hash is computed with
//! the `argon2` crate. Only version 19 (0x13), the one libargon2 has
//! written since 2016, is read.

use argon2::{Algorithm, Argon2, Params, Version};
use base64::{Engine, engine::general_purpose::STANDARD_NO_PAD};
use std::fmt;

/// The prefix of an argon2id hash.
pub(super) const PREFIX: &str = "$argon2id$";

/// mosquitto 2.1's memory cost, in KiB.
pub const MOSQUITTO_MEMORY_KIB: u32 = 47_104;
/// mosquitto 2.1's time cost (passes).
pub const MOSQUITTO_PASSES: u32 = 1;
/// mosquitto 2.1's salt length, in bytes.
pub const MOSQUITTO_SALT_LEN: usize = 64;
/// mosquitto 2.1's hash length, in bytes.
const MOSQUITTO_HASH_LEN: usize = 64;

/// The most memory one check may take, in KiB (256 MiB): every CONNECT of
/// the user allocates it.
const MAX_MEMORY_KIB: u32 = 256 * 1024;
/// The most passes one check may take.
const MAX_PASSES: u32 = 64;
/// The most lanes.
const MAX_LANES: u32 = 64;

/// A parsed argon2id hash.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Argon2idHash {
    memory_kib: u32,
    passes: u32,
    lanes: u32,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

impl Argon2idHash {
    /// Parses `$argon2id$v=19$m=M,t=T,p=P$SALT$HASH`.
    pub(super) fn parse(text: &str) -> Result<Self, String> {
        let rest = text
            .strip_prefix(PREFIX)
            .ok_or("an argon2id hash starts with $argon2id$")?;
        let mut parts = rest.split('$');
        match parts.next() {
            Some("v=19") => {}
            Some(v) if v.starts_with("v=") => {
                return Err(format!("argon2 version {v}: only v=19 is read"));
            }
            _ => return Err("expected v=19 after $argon2id$".into()),
        }
        let params = parts.next().ok_or("missing m=,t=,p= parameters")?;
        let mut memory_kib = None;
        let mut passes = None;
        let mut lanes = None;
        for param in params.split(',') {
            let (key, value) = param
                .split_once('=')
                .ok_or_else(|| format!("argon2 parameter {param:?} is not key=value"))?;
            let value = value
                .parse::<u32>()
                .map_err(|_| format!("argon2 parameter {key}: {value:?} is not a number"))?;
            let slot = match key {
                "m" => &mut memory_kib,
                "t" => &mut passes,
                "p" => &mut lanes,
                other => return Err(format!("unknown argon2 parameter {other:?}")),
            };
            if slot.replace(value).is_some() {
                return Err(format!("argon2 parameter {key} given twice"));
            }
        }
        let (Some(memory_kib), Some(passes), Some(lanes)) = (memory_kib, passes, lanes) else {
            return Err("argon2 parameters need m=, t= and p=".into());
        };
        if !(1..=MAX_LANES).contains(&lanes) {
            return Err(format!("argon2 p={lanes}: 1 to {MAX_LANES}"));
        }
        if !(8 * lanes..=MAX_MEMORY_KIB).contains(&memory_kib) {
            return Err(format!(
                "argon2 m={memory_kib}: {} to {MAX_MEMORY_KIB} KiB",
                8 * lanes
            ));
        }
        if !(1..=MAX_PASSES).contains(&passes) {
            return Err(format!("argon2 t={passes}: 1 to {MAX_PASSES}"));
        }
        let field = |what: &str, text: Option<&str>, range: std::ops::RangeInclusive<usize>| {
            let text = text.ok_or_else(|| format!("missing argon2 {what}"))?;
            let bytes = STANDARD_NO_PAD
                .decode(text)
                .map_err(|e| format!("argon2 {what} is not unpadded base64: {e}"))?;
            if range.contains(&bytes.len()) {
                Ok(bytes)
            } else {
                Err(format!(
                    "argon2 {what} is {} bytes, not {} to {}",
                    bytes.len(),
                    range.start(),
                    range.end()
                ))
            }
        };
        let salt = field("salt", parts.next(), 8..=256)?;
        let hash = field("hash", parts.next(), 4..=256)?;
        if parts.next().is_some() {
            return Err("too many $-separated fields after the argon2 hash".into());
        }
        Ok(Self {
            memory_kib,
            passes,
            lanes,
            salt,
            hash,
        })
    }

    /// The hash of `password` with mosquitto 2.1's parameters and this
    /// salt (the caller draws it at random).
    pub(super) fn mosquitto(password: &[u8], salt: [u8; MOSQUITTO_SALT_LEN]) -> Self {
        let mut this = Self {
            memory_kib: MOSQUITTO_MEMORY_KIB,
            passes: MOSQUITTO_PASSES,
            lanes: 1,
            salt: salt.to_vec(),
            hash: vec![0; MOSQUITTO_HASH_LEN],
        };
        let mut hash = vec![0; MOSQUITTO_HASH_LEN];
        this.compute(password, &mut hash);
        this.hash = hash;
        this
    }

    fn compute(&self, password: &[u8], out: &mut [u8]) -> bool {
        let Ok(params) = Params::new(self.memory_kib, self.passes, self.lanes, Some(out.len()))
        else {
            return false;
        };
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(password, &self.salt, out)
            .is_ok()
    }

    /// Whether `password` hashes to this (compared in constant time).
    pub(super) fn matches(&self, password: &[u8]) -> bool {
        let mut computed = vec![0; self.hash.len()];
        if !self.compute(password, &mut computed) {
            return false;
        }
        computed
            .iter()
            .zip(&self.hash)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl fmt::Debug for Argon2idHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The hash stays out of logs.
        f.write_str("Argon2idHash(..)")
    }
}

impl fmt::Display for Argon2idHash {
    /// The PHC string, as libargon2 writes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}v=19$m={},t={},p={}${}${}",
            self.memory_kib,
            self.passes,
            self.lanes,
            STANDARD_NO_PAD.encode(&self.salt),
            STANDARD_NO_PAD.encode(&self.hash)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by Debian's `argon2` tool (libargon2 20171227, the library
    /// mosquitto 2.1 hashes with; Debian's mosquitto 2.0.11 cannot write
    /// argon2id lines):
    /// `echo -n pencil | argon2 SALT -id -t 1 -k 47104 -p 1 -l 64 -e`,
    /// with mosquitto 2.1's parameters and a 64-byte salt.
    const MOSQUITTO_PARAMS: &str = "$argon2id$v=19$m=47104,t=1,p=1$bW9zcXVpdHRvLTIuMS11c2VzLWEtNjQtYnl0ZS1zYWx0LXNvLXRoaXMtb25lLWlzLTY0LWJ5dGVzLWxvbmchIQ$4RzEe4RnxEa8TIw+0x6Dhe5w9wzQmVYFsD4uzjx2NVxAwLjwBl8I3wtlgGQpqMGiwKtDRVzpiXaNKuYAqGxMQw";
    /// `echo -n pencil | argon2 saltsalt -id -t 2 -k 64 -p 2 -l 32 -e`.
    const TWO_LANES: &str =
        "$argon2id$v=19$m=64,t=2,p=2$c2FsdHNhbHQ$9y72QLVOnbUMWhKakzDgOqb+VstN0jomlmt50ROkmog";
    /// `echo -n s3cret | argon2 0123…cdef -id -t 1 -m 10 -p 1 -l 64 -e`.
    const SMALL: &str = "$argon2id$v=19$m=1024,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc4OWFiY2RlZg$LWUAoX4jOVktQU6X5qQqhTCGBlNbpmHMX3a7JygknwedJAL3UoVr1/odHR8YBiBvEtX0sTqQWkjDRq4mJCnzWg";

    #[test]
    fn libargon2_vectors_verify_and_print_back_unchanged() {
        for (text, password) in [
            (MOSQUITTO_PARAMS, &b"pencil"[..]),
            (TWO_LANES, b"pencil"),
            (SMALL, b"s3cret"),
        ] {
            let hash = Argon2idHash::parse(text).unwrap();
            assert!(hash.matches(password), "{text}");
            assert!(!hash.matches(b"pencil!"), "{text}");
            assert!(!hash.matches(b""), "{text}");
            assert_eq!(hash.to_string(), text);
        }
    }

    #[test]
    fn a_hash_written_with_mosquittos_parameters_is_libargon2s() {
        let salt: [u8; 64] = *b"mosquitto-2.1-uses-a-64-byte-salt-so-this-one-is-64-bytes-long!!";
        let ours = Argon2idHash::mosquitto(b"pencil", salt);
        assert_eq!(ours.to_string(), MOSQUITTO_PARAMS);
    }

    #[test]
    fn bad_strings_are_named_and_costly_ones_refused() {
        for (text, needle) in [
            (
                "$argon2id$v=16$m=64,t=1,p=1$c2FsdHNhbHQ$AAAAAA",
                "only v=19",
            ),
            ("$argon2id$m=64,t=1,p=1$c2FsdHNhbHQ$AAAAAA", "v=19"),
            (
                "$argon2id$v=19$m=64,t=1$c2FsdHNhbHQ$AAAAAA",
                "need m=, t= and p=",
            ),
            (
                "$argon2id$v=19$m=64,t=1,p=1,m=64$c2FsdHNhbHQ$AAAAAA",
                "twice",
            ),
            (
                "$argon2id$v=19$m=64,t=1,p=1,x=1$c2FsdHNhbHQ$AAAAAA",
                "unknown",
            ),
            (
                "$argon2id$v=19$m=4194304,t=1,p=1$c2FsdHNhbHQ$AAAAAA",
                "m=4194304",
            ),
            (
                "$argon2id$v=19$m=64,t=1000,p=1$c2FsdHNhbHQ$AAAAAA",
                "t=1000",
            ),
            ("$argon2id$v=19$m=64,t=1,p=0$c2FsdHNhbHQ$AAAAAA", "p=0"),
            (
                "$argon2id$v=19$m=64,t=1,p=1$c2FsdA$AAAAAA",
                "salt is 4 bytes",
            ),
            (
                "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ==$AAAAAA",
                "unpadded",
            ),
            (
                "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ",
                "missing argon2 hash",
            ),
            (
                "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$AAAAAA$",
                "too many",
            ),
        ] {
            let e = Argon2idHash::parse(text).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
