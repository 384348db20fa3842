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

/// Checks the MQTT string rules on raw bytes.
pub(crate) fn validate(bytes: &[u8]) -> Result<(), StringError> {
    if bytes.len() > usize::from(u16::MAX) {
        return Err(StringError::TooLong);
    }
    // `str::from_utf8` rejects surrogates and overlong forms; the NUL check is
    // a separate, vectorised scan.
    if core::str::from_utf8(bytes).is_err() {
        return Err(StringError::InvalidUtf8);
    }
    if bytes.contains(&0) {
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
