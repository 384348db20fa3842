//! nom parsers for the MQTT data representations (§1.5) and their writers.
//!
//! Parsers work on the body slice of one whole frame; [`Frame`] turns the
//! sub-slices they return into shared [`Bytes`] without copying, and turns a
//! failure position into a byte offset from the start of the packet.

use crate::{
    DecodeError, DecodeErrorKind, MqttString, PacketId, ProtocolVersion,
    string::{self, StringError},
    varint::{VarInt, read_varint},
};
use bytes::{BufMut, Bytes};
use nom::{IResult, error::ParseError};

/// A parse failure: where it happened and which rule it broke.
#[derive(Debug)]
pub(crate) struct Fail<'a> {
    pub(crate) at: &'a [u8],
    pub(crate) kind: DecodeErrorKind,
}

impl<'a> ParseError<&'a [u8]> for Fail<'a> {
    fn from_error_kind(input: &'a [u8], _kind: nom::error::ErrorKind) -> Self {
        // Every nom primitive we use fails only by running out of input.
        Fail {
            at: input,
            kind: DecodeErrorKind::UnexpectedEnd,
        }
    }

    fn append(_input: &'a [u8], _kind: nom::error::ErrorKind, other: Self) -> Self {
        other
    }
}

/// The result of a parser.
pub(crate) type PResult<'a, T> = IResult<&'a [u8], T, Fail<'a>>;

/// Fails at `at` with `kind`; a failure is never retried by nom.
#[inline]
pub(crate) fn fail<T>(at: &[u8], kind: DecodeErrorKind) -> PResult<'_, T> {
    Err(nom::Err::Failure(Fail { at, kind }))
}

/// The frame being decoded: the whole packet's bytes, shared.
pub(crate) struct Frame<'f> {
    pub(crate) bytes: &'f Bytes,
    pub(crate) version: ProtocolVersion,
}

impl Frame<'_> {
    /// A shared, zero-copy handle on a sub-slice of the frame.
    #[inline]
    pub(crate) fn share(&self, sub: &[u8]) -> Bytes {
        if sub.is_empty() {
            Bytes::new()
        } else {
            // `slice` with the offset the parsers' sub-slices already imply:
            // `slice_ref` would check the pointers against the frame again.
            let start = self.offset_of(sub);
            self.bytes.slice(start..start + sub.len())
        }
    }

    /// `head` (shared from this frame) extended by `tail`, when `tail`
    /// starts where `head` ends inside the frame; `None` otherwise.
    pub(crate) fn join(&self, head: &Bytes, tail: &[u8]) -> Option<Bytes> {
        let frame_start = self.bytes.as_ptr() as usize;
        let frame_end = frame_start + self.bytes.len();
        let start = head.as_ptr() as usize;
        let end = start + head.len();
        let tail_start = tail.as_ptr() as usize;
        let inside = start >= frame_start && end <= frame_end;
        if !inside || end != tail_start || tail_start + tail.len() > frame_end {
            return None;
        }
        let from = start - frame_start;
        Some(self.bytes.slice(from..from + head.len() + tail.len()))
    }

    /// A string from a sub-slice already checked by [`string_slice`].
    #[inline]
    pub(crate) fn string(&self, sub: &[u8]) -> MqttString {
        MqttString::from_validated(self.share(sub))
    }

    /// The byte offset of `at` from the start of the packet.
    #[inline]
    pub(crate) fn offset_of(&self, at: &[u8]) -> usize {
        (at.as_ptr() as usize).saturating_sub(self.bytes.as_ptr() as usize)
    }

    /// Turns a nom error into a [`DecodeError`] with its offset.
    pub(crate) fn error(&self, err: nom::Err<Fail<'_>>) -> DecodeError {
        match err {
            nom::Err::Error(f) | nom::Err::Failure(f) => {
                DecodeError::new(f.kind, self.offset_of(f.at))
            }
            // Complete parsers never report Incomplete; the frame is whole.
            nom::Err::Incomplete(_) => {
                DecodeError::new(DecodeErrorKind::UnexpectedEnd, self.bytes.len())
            }
        }
    }
}

/// A Variable Byte Integer.
#[inline]
pub(crate) fn varint(input: &[u8]) -> PResult<'_, u32> {
    match read_varint(input) {
        VarInt::Value(v, len) => Ok((&input[len..], v)),
        VarInt::Incomplete => fail(input, DecodeErrorKind::UnexpectedEnd),
        VarInt::TooLong => fail(input, DecodeErrorKind::VarIntTooLong),
        VarInt::NotMinimal => fail(input, DecodeErrorKind::VarIntNotMinimal),
    }
}

/// Two-byte length-prefixed data.
///
/// `parse_complete`, not `parse`: nom 8's `parse` runs in streaming mode and
/// would report a short field as `Incomplete`, losing its position. The frame
/// is whole, so a short field is an error at the data it should hold.
#[inline]
pub(crate) fn binary_slice(input: &[u8]) -> PResult<'_, &[u8]> {
    // By hand rather than `length_data(be_u16)`: the hottest parser, and the
    // combinator costs several times the instructions. Same failures.
    let Some((&[hi, lo], rest)) = input.split_first_chunk::<2>() else {
        return fail(input, DecodeErrorKind::UnexpectedEnd);
    };
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    match rest.split_at_checked(len) {
        Some((data, rest)) => Ok((rest, data)),
        None => fail(rest, DecodeErrorKind::UnexpectedEnd),
    }
}

/// A UTF-8 Encoded String's bytes, validated [MQTT-1.5.4-1] [MQTT-1.5.4-2].
#[inline]
pub(crate) fn string_slice(input: &[u8]) -> PResult<'_, &[u8]> {
    let (rest, s) = binary_slice(input)?;
    match string::validate(s) {
        Ok(()) => Ok((rest, s)),
        Err(StringError::NullCharacter) => fail(s, DecodeErrorKind::NullCharacter),
        Err(_) => fail(s, DecodeErrorKind::InvalidUtf8),
    }
}

/// A non-zero Packet Identifier [MQTT-2.2.1-3].
#[inline]
pub(crate) fn packet_id(input: &[u8]) -> PResult<'_, PacketId> {
    let Some((&[hi, lo], rest)) = input.split_first_chunk::<2>() else {
        return fail(input, DecodeErrorKind::UnexpectedEnd);
    };
    match PacketId::new(u16::from_be_bytes([hi, lo])) {
        Some(id) => Ok((rest, id)),
        None => fail(input, DecodeErrorKind::ZeroPacketId),
    }
}

/// Fails unless the input is used up: the Remaining Length must match the content.
#[inline]
pub(crate) fn end(input: &[u8]) -> PResult<'_, ()> {
    if input.is_empty() {
        Ok((input, ()))
    } else {
        fail(input, DecodeErrorKind::TrailingBytes { count: input.len() })
    }
}

/// `true` if a topic name contains a wildcard character.
#[inline]
pub(crate) fn has_wildcard(topic: &[u8]) -> bool {
    string::has_wildcard(topic)
}

/// A topic name's bytes, validated as a string, in one pass over them:
/// returns the bytes and whether they contain a wildcard, which the caller
/// reports at the topic's position.
#[inline]
pub(crate) fn topic_slice(input: &[u8]) -> PResult<'_, (&[u8], bool)> {
    let (rest, s) = binary_slice(input)?;
    let scan = string::scan(s);
    match string::validate_scanned(s, scan) {
        Ok(()) => Ok((rest, (s, scan.wildcard))),
        Err(StringError::NullCharacter) => fail(s, DecodeErrorKind::NullCharacter),
        Err(_) => fail(s, DecodeErrorKind::InvalidUtf8),
    }
}

/// Writes a two-byte length prefix and the bytes. The caller has checked the length.
#[inline]
pub(crate) fn put_binary<B: BufMut>(dst: &mut B, data: &[u8]) {
    debug_assert!(data.len() <= usize::from(u16::MAX));
    dst.put_u16(data.len() as u16);
    dst.put_slice(data);
}
