//! The MQTT UTF-8 Encoded String, backed by shared bytes.

use alloc::string::String;
use bytes::Bytes;
use core::{borrow::Borrow, fmt, hash, ops::Deref};

/// A UTF-8 Encoded String as MQTT defines it: well-formed UTF-8 with no
/// U+0000, at most 65,535 bytes [MQTT-1.5.4-1] [MQTT-1.5.4-2].
///
/// It is a validated view of a [`Bytes`] buffer, so cloning it and decoding it
/// never copies the text: a topic name decoded from a socket buffer shares
/// that buffer.
///
/// ```
/// use tern_codec::MqttString;
///
/// let topic = MqttString::try_from("a/b")?;
/// assert_eq!(topic, "a/b");
/// assert!(MqttString::try_from("nul\0").is_err());
/// # Ok::<(), tern_codec::StringError>(())
/// ```
#[derive(Clone, Default)]
pub struct MqttString(Bytes);

/// Why some bytes are not an MQTT UTF-8 Encoded String.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StringError {
    /// Not well-formed UTF-8 (this includes encoded surrogates) [MQTT-1.5.4-1].
    InvalidUtf8,
    /// Contains U+0000 [MQTT-1.5.4-2].
    NullCharacter,
    /// Longer than 65,535 bytes.
    TooLong,
}

impl fmt::Display for StringError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InvalidUtf8 => "string is not well-formed UTF-8 [MQTT-1.5.4-1]",
            Self::NullCharacter => "string contains U+0000 [MQTT-1.5.4-2]",
            Self::TooLong => "string is longer than 65,535 bytes",
        })
    }
}

impl core::error::Error for StringError {}

/// What one pass over a string's bytes found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scan {
    /// A byte of 0x80 or above: the text is not plain ASCII.
    pub(crate) non_ascii: bool,
    /// A 0x00 byte (U+0000 in well-formed UTF-8).
    pub(crate) nul: bool,
    /// A `+` or `#` byte.
    pub(crate) wildcard: bool,
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// A word whose high bits (under [`HIGHS`]) are set for the zero bytes of
/// `v`, possibly also for bytes above a zero one: exact as a yes/no answer
/// once masked with [`HIGHS`], and still exact when several words' results
/// are OR-ed together first, so loops test [`HIGHS`] once at the end.
#[inline(always)]
const fn zero_bytes(v: u64) -> u64 {
    v.wrapping_sub(ONES) & !v
}

/// Calls `f` with the bytes as little-endian words of eight (SWAR, no
/// `unsafe`). The callers only OR their findings together, so seeing a byte
/// twice is harmless, and every load may overlap the one before: the last
/// word of a long string ends at its last byte, and a string of four to
/// seven bytes is two overlapping four-byte loads. One to three bytes are
/// assembled in a register (first, middle and last byte) and padded with
/// 'a', a byte none of the callers looks for. No byte loop and no vector
/// prologue: topic names and properties are short.
#[inline(always)]
fn for_each_word(bytes: &[u8], mut f: impl FnMut(u64)) {
    const PAD: u64 = ONES * b'a' as u64;
    if let Some(last) = bytes.last_chunk::<8>() {
        let mut rest = bytes;
        while let Some((word, tail)) = rest.split_first_chunk::<8>() {
            f(u64::from_le_bytes(*word));
            rest = tail;
        }
        if !rest.is_empty() {
            f(u64::from_le_bytes(*last));
        }
    } else if let (Some(head), Some(tail)) = (bytes.first_chunk::<4>(), bytes.last_chunk::<4>()) {
        f(u64::from(u32::from_le_bytes(*head)) | u64::from(u32::from_le_bytes(*tail)) << 32);
    } else if let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) {
        let middle = bytes[bytes.len() / 2];
        f(u64::from(first) | u64::from(middle) << 8 | u64::from(last) << 16 | PAD << 24);
    }
}

/// The [`zero_bytes`] of a word's `+` and `#` bytes. The two differ only
/// in bit 3 (0x2B, 0x23), and no other byte becomes 0x2B with that bit
/// set, so one comparison finds both.
#[inline(always)]
const fn wildcard_bytes(v: u64) -> u64 {
    zero_bytes((v | (ONES * 0x08)) ^ (ONES * b'+' as u64))
}

/// One pass, eight bytes at a time, that answers the string rules and the
/// topic name rule together: topic names and properties are short, so this
/// beats byte loops and reads a topic once instead of three times.
#[inline]
pub(crate) fn scan(bytes: &[u8]) -> Scan {
    let (mut any, mut nul, mut wildcard) = (0u64, 0u64, 0u64);
    for_each_word(bytes, |v| {
        any |= v;
        nul |= zero_bytes(v);
        wildcard |= wildcard_bytes(v);
    });
    Scan {
        non_ascii: any & HIGHS != 0,
        nul: nul & HIGHS != 0,
        wildcard: wildcard & HIGHS != 0,
    }
}

/// Whether the bytes contain `+` or `#`.
#[inline]
pub(crate) fn has_wildcard(bytes: &[u8]) -> bool {
    let mut wildcard = 0;
    for_each_word(bytes, |v| wildcard |= wildcard_bytes(v));
    wildcard & HIGHS != 0
}

/// Checks the MQTT string rules on raw bytes.
#[inline]
pub(crate) fn validate(bytes: &[u8]) -> Result<(), StringError> {
    if bytes.len() > usize::from(u16::MAX) {
        return Err(StringError::TooLong);
    }
    validate_scanned(bytes, scan(bytes))
}

/// The string rules, given the bytes' [`scan`]: ASCII is valid UTF-8, so
/// only non-ASCII text needs `str::from_utf8` (which rejects surrogates and
/// overlong forms). Ill-formed UTF-8 is reported before U+0000.
#[inline]
pub(crate) fn validate_scanned(bytes: &[u8], scan: Scan) -> Result<(), StringError> {
    if scan.non_ascii && core::str::from_utf8(bytes).is_err() {
        return Err(StringError::InvalidUtf8);
    }
    if scan.nul {
        return Err(StringError::NullCharacter);
    }
    Ok(())
}

impl MqttString {
    /// The empty string.
    pub const fn new() -> Self {
        Self(Bytes::new())
    }

    /// A string from a `'static` literal.
    ///
    /// # Panics
    /// If `s` contains U+0000 or is longer than 65,535 bytes; meant for
    /// constants written in code.
    pub fn from_static(s: &'static str) -> Self {
        match validate(s.as_bytes()) {
            Ok(()) => Self(Bytes::from_static(s.as_bytes())),
            Err(e) => panic!("invalid MQTT string literal: {e}"),
        }
    }

    /// Validates `bytes` and wraps them without copying.
    pub fn from_utf8(bytes: Bytes) -> Result<Self, StringError> {
        validate(&bytes)?;
        Ok(Self(bytes))
    }

    /// Wraps bytes the caller has already validated.
    pub(crate) fn from_validated(bytes: Bytes) -> Self {
        debug_assert!(validate(&bytes).is_ok());
        Self(bytes)
    }

    /// The text.
    ///
    /// This re-checks UTF-8 (the type forbids `unsafe`), which costs a pass over
    /// the bytes; use [`MqttString::as_bytes`] on hot paths that only compare.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.0).expect("MqttString holds valid UTF-8 by construction")
    }

    /// The UTF-8 bytes, without any check.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The shared buffer behind the string.
    pub fn as_shared_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Unwraps the shared buffer.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// `true` for the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The encoded size on the wire: a two-byte length prefix plus the bytes.
    pub(crate) fn wire_len(&self) -> usize {
        2 + self.0.len()
    }
}

impl Deref for MqttString {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<[u8]> for MqttString {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Borrow<[u8]> for MqttString {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

impl PartialEq for MqttString {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for MqttString {}

impl PartialOrd for MqttString {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for MqttString {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

impl hash::Hash for MqttString {
    fn hash<H: hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl PartialEq<str> for MqttString {
    fn eq(&self, other: &str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl PartialEq<&str> for MqttString {
    fn eq(&self, other: &&str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl fmt::Debug for MqttString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for MqttString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<&str> for MqttString {
    type Error = StringError;
    fn try_from(s: &str) -> Result<Self, StringError> {
        validate(s.as_bytes())?;
        Ok(Self(Bytes::copy_from_slice(s.as_bytes())))
    }
}

impl TryFrom<String> for MqttString {
    type Error = StringError;
    fn try_from(s: String) -> Result<Self, StringError> {
        validate(s.as_bytes())?;
        Ok(Self(Bytes::from(s)))
    }
}

impl TryFrom<Bytes> for MqttString {
    type Error = StringError;
    fn try_from(b: Bytes) -> Result<Self, StringError> {
        Self::from_utf8(b)
    }
}

impl From<MqttString> for Bytes {
    fn from(s: MqttString) -> Bytes {
        s.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// The SWAR scan agrees with a plain byte loop for every byte value at
    /// every length and position, including the chunk boundaries and the
    /// padded tail.
    #[test]
    fn scan_agrees_with_a_byte_loop() {
        for len in 0..40 {
            for pos in 0..len {
                for special in 0..=255u8 {
                    let mut bytes: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
                    bytes[pos] = special;
                    let expected = Scan {
                        non_ascii: bytes.iter().any(|&b| b >= 0x80),
                        nul: bytes.contains(&0),
                        wildcard: bytes.iter().any(|&b| b == b'+' || b == b'#'),
                    };
                    assert_eq!(scan(&bytes), expected, "{bytes:02x?}");
                    assert_eq!(has_wildcard(&bytes), expected.wildcard, "{bytes:02x?}");
                }
            }
        }
    }

    #[test]
    fn validate_orders_utf8_before_nul() {
        assert_eq!(validate(b"a\0b"), Err(StringError::NullCharacter));
        assert_eq!(validate(b"\0\xFF"), Err(StringError::InvalidUtf8));
        assert_eq!(validate("é\0".as_bytes()), Err(StringError::NullCharacter));
        assert_eq!(validate(b"\xED\xA0\x80"), Err(StringError::InvalidUtf8));
        assert_eq!(validate("a/é/\u{FEFF}".as_bytes()), Ok(()));
    }
}
