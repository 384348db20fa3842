//! The rules every topic string shares, and the newtype plumbing around them.

use crate::TopicError;

/// The longest topic name or filter, in bytes [MQTT-4.7.3-3].
pub const MAX_TOPIC_LEN: usize = 65_535;

/// Checks the rules names and filters share: non-empty [MQTT-4.7.3-1], at most
/// 65,535 bytes [MQTT-4.7.3-3], well-formed UTF-8, no U+0000 [MQTT-4.7.3-2].
pub(crate) fn check_string(bytes: &[u8]) -> Result<(), TopicError> {
    if bytes.is_empty() {
        return Err(TopicError::Empty);
    }
    if bytes.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong);
    }
    if core::str::from_utf8(bytes).is_err() {
        return Err(TopicError::InvalidUtf8);
    }
    if bytes.contains(&0) {
        return Err(TopicError::NullCharacter);
    }
    Ok(())
}

/// Implements the shared API of a validated `Bytes` newtype: `from_bytes`,
/// `from_static`, `as_str`, `as_bytes`, conversions, comparisons, formatting.
macro_rules! validated_bytes {
    ($ty:ident, $validate:path, $what:literal) => {
        impl $ty {
            #[doc = concat!("Validates `bytes` as ", $what, " and wraps them without copying.")]
            pub fn from_bytes(bytes: bytes::Bytes) -> Result<Self, $crate::TopicError> {
                $validate(&bytes)?;
                Ok(Self(bytes))
            }

            #[doc = concat!($what, " from a `'static` literal, without copying.")]
            ///
            /// # Panics
            /// If the literal breaks a rule; meant for constants written in code.
            pub fn from_static(s: &'static str) -> Self {
                match $validate(s.as_bytes()) {
                    Ok(()) => Self(bytes::Bytes::from_static(s.as_bytes())),
                    Err(e) => panic!("invalid literal {s:?}: {e}"),
                }
            }

            /// Wraps bytes this crate has already validated.
            #[allow(dead_code, reason = "not every newtype is built from parts")]
            pub(crate) fn from_validated(bytes: bytes::Bytes) -> Self {
                debug_assert!($validate(&bytes).is_ok());
                Self(bytes)
            }

            /// The text.
            ///
            /// This re-checks UTF-8 (the crate forbids `unsafe`), a pass over the
            /// bytes; use `as_bytes` on hot paths that only compare.
            pub fn as_str(&self) -> &str {
                core::str::from_utf8(&self.0).expect("validated as UTF-8 on construction")
            }

            /// The UTF-8 bytes.
            pub fn as_bytes(&self) -> &[u8] {
                &self.0
            }

            /// The shared buffer behind the text.
            pub fn as_shared_bytes(&self) -> &bytes::Bytes {
                &self.0
            }

            /// Unwraps the shared buffer.
            pub fn into_bytes(self) -> bytes::Bytes {
                self.0
            }

            /// Length in bytes.
            #[allow(clippy::len_without_is_empty, reason = "never empty by construction")]
            pub fn len(&self) -> usize {
                self.0.len()
            }
        }

        impl core::fmt::Debug for $ty {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                core::fmt::Debug::fmt(self.as_str(), f)
            }
        }

        impl core::fmt::Display for $ty {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl AsRef<[u8]> for $ty {
            fn as_ref(&self) -> &[u8] {
                &self.0
            }
        }

        impl PartialEq<str> for $ty {
            fn eq(&self, other: &str) -> bool {
                self.0 == other.as_bytes()
            }
        }

        impl PartialEq<&str> for $ty {
            fn eq(&self, other: &&str) -> bool {
                self.0 == other.as_bytes()
            }
        }

        impl TryFrom<bytes::Bytes> for $ty {
            type Error = $crate::TopicError;
            fn try_from(bytes: bytes::Bytes) -> Result<Self, $crate::TopicError> {
                Self::from_bytes(bytes)
            }
        }

        impl TryFrom<&str> for $ty {
            type Error = $crate::TopicError;
            /// Validates and copies `s`.
            fn try_from(s: &str) -> Result<Self, $crate::TopicError> {
                $validate(s.as_bytes())?;
                Ok(Self(bytes::Bytes::copy_from_slice(s.as_bytes())))
            }
        }

        impl TryFrom<alloc::string::String> for $ty {
            type Error = $crate::TopicError;
            /// Validates `s` and takes its buffer without copying.
            fn try_from(s: alloc::string::String) -> Result<Self, $crate::TopicError> {
                $validate(s.as_bytes())?;
                Ok(Self(bytes::Bytes::from(s)))
            }
        }

        impl From<$ty> for bytes::Bytes {
            fn from(t: $ty) -> bytes::Bytes {
                t.0
            }
        }
    };
}

pub(crate) use validated_bytes;
