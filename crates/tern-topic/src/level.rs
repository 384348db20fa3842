//! One level of a topic, stored inline when short.

use alloc::boxed::Box;

/// Levels up to this many bytes live inside the node, without an allocation.
const INLINE: usize = 14;

/// The bytes of one topic level: inline up to 14 bytes, boxed beyond.
///
/// Most levels are short words or identifiers, so most nodes of a trie carry
/// their level without a heap allocation of their own. The value is 16 bytes:
/// a long level sits behind a thin pointer.
#[derive(Clone)]
pub(crate) enum Level {
    /// A short level.
    Inline {
        /// How many bytes of `bytes` are used.
        len: u8,
        /// The level, zero-padded.
        bytes: [u8; INLINE],
    },
    /// A long level, behind a thin pointer to keep the enum small.
    #[allow(
        clippy::redundant_allocation,
        reason = "a thin pointer: 8 bytes, not 16"
    )]
    Heap(Box<Box<[u8]>>),
}

impl Level {
    /// The empty level (also what freed nodes hold).
    pub(crate) const EMPTY: Self = Self::Inline {
        len: 0,
        bytes: [0; INLINE],
    };

    /// Stores `level`.
    #[inline]
    pub(crate) fn new(level: &[u8]) -> Self {
        if level.len() <= INLINE {
            let mut bytes = [0; INLINE];
            bytes[..level.len()].copy_from_slice(level);
            Self::Inline {
                len: level.len() as u8,
                bytes,
            }
        } else {
            Self::Heap(Box::new(level.into()))
        }
    }

    /// `true` if this is `text`. A byte loop for short levels: cheaper than
    /// a `memcmp` call on the matching hot path.
    #[inline]
    pub(crate) fn is(&self, text: &[u8]) -> bool {
        match self {
            Self::Inline { len, bytes } => {
                usize::from(*len) == text.len() && text.iter().zip(bytes).all(|(a, b)| a == b)
            }
            Self::Heap(bytes) => bytes[..] == *text,
        }
    }

    /// The level's bytes.
    #[inline]
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Self::Heap(bytes) => bytes,
        }
    }
}

/// Splits `topic` at byte `pos` into the level that starts there and the
/// position of the next level, or `END` if it was the last.
#[inline]
pub(crate) fn next_level(topic: &[u8], pos: u32) -> (&[u8], u32) {
    let rest = &topic[pos as usize..];
    match rest.iter().position(|&b| b == b'/') {
        // Topics are at most 65,535 bytes, so positions fit a u32.
        Some(i) => (&rest[..i], pos + i as u32 + 1),
        None => (rest, END),
    }
}

/// A position past the last level of a topic or filter.
pub(crate) const END: u32 = u32::MAX;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_levels_round_trip() {
        for text in ["", "a", "exactly-14-byte", "fifteen-bytes-!", "ü/"] {
            let level = Level::new(text.as_bytes());
            assert_eq!(level.as_bytes(), text.as_bytes());
            assert!(level.is(text.as_bytes()));
            assert!(!level.is(b"x"));
            assert!(!level.is(&[text.as_bytes(), b"x"].concat()));
        }
        assert!(matches!(Level::new(&[b'x'; 14]), Level::Inline { .. }));
        assert!(matches!(Level::new(&[b'x'; 15]), Level::Heap(_)));
        assert_eq!(core::mem::size_of::<Level>(), 16);
    }

    #[test]
    fn levels_split_at_separators_including_empty_ones() {
        let topic = b"a//bc/";
        let mut pos = 0;
        let mut levels = alloc::vec::Vec::new();
        loop {
            let (level, next) = next_level(topic, pos);
            levels.push(level);
            if next == END {
                break;
            }
            pos = next;
        }
        assert_eq!(levels, [&b"a"[..], b"", b"bc", b""]);
    }
}
