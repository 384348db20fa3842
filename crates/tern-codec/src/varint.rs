//! Variable Byte Integers (MQTT 5.0 §1.5.5, 3.1.1 §2.2.3).

use bytes::BufMut;

/// The largest value a Variable Byte Integer can hold: 268,435,455 (four bytes).
pub const VARINT_MAX: u32 = 268_435_455;

/// The number of bytes `value` takes as a Variable Byte Integer (1 to 4).
///
/// Values above [`VARINT_MAX`] are not encodable; they report 4 and the encoder
/// refuses them.
pub const fn varint_len(value: u32) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Writes `value` (at most [`VARINT_MAX`]) in the minimum number of bytes
/// [MQTT-1.5.5-1].
pub(crate) fn put_varint<B: BufMut>(dst: &mut B, mut value: u32) {
    debug_assert!(value <= VARINT_MAX);
    loop {
        let mut byte = (value & 0x7f) as u8;
        value >>= 7;
        if value > 0 {
            byte |= 0x80;
        }
        dst.put_u8(byte);
        if value == 0 {
            return;
        }
    }
}

/// The outcome of reading a Variable Byte Integer from the front of a slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VarInt {
    /// The value and the number of bytes it took.
    Value(u32, usize),
    /// The slice ends inside the integer.
    Incomplete,
    /// A fifth byte would be needed.
    TooLong,
    /// Encoded in more bytes than necessary (a trailing zero continuation).
    NotMinimal,
}

/// Reads a Variable Byte Integer, strictly: at most four bytes, minimal form.
#[inline]
pub(crate) fn read_varint(src: &[u8]) -> VarInt {
    let mut value: u32 = 0;
    for (i, &byte) in src.iter().enumerate().take(4) {
        value |= u32::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            // A last byte of zero after at least one byte means the value fits
            // in fewer bytes: not the minimum encoding.
            if i > 0 && byte == 0 {
                return VarInt::NotMinimal;
            }
            return VarInt::Value(value, i + 1);
        }
    }
    if src.len() >= 4 {
        VarInt::TooLong
    } else {
        VarInt::Incomplete
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn encode(v: u32) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, v);
        out
    }

    #[test]
    fn spec_table_boundaries() {
        // MQTT 5.0 Table 1-1 / 3.1.1 Table 2.4: the boundary values of each size.
        let table: &[(u32, &[u8])] = &[
            (0, &[0x00]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (16_383, &[0xff, 0x7f]),
            (16_384, &[0x80, 0x80, 0x01]),
            (2_097_151, &[0xff, 0xff, 0x7f]),
            (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
            (268_435_455, &[0xff, 0xff, 0xff, 0x7f]),
        ];
        for &(value, bytes) in table {
            assert_eq!(encode(value), bytes, "encode {value}");
            assert_eq!(varint_len(value), bytes.len());
            assert_eq!(read_varint(bytes), VarInt::Value(value, bytes.len()));
        }
    }

    #[test]
    fn five_bytes_is_too_long() {
        assert_eq!(
            read_varint(&[0x80, 0x80, 0x80, 0x80, 0x01]),
            VarInt::TooLong
        );
        assert_eq!(read_varint(&[0xff, 0xff, 0xff, 0xff]), VarInt::TooLong);
    }

    #[test]
    fn incomplete_is_not_an_error() {
        assert_eq!(read_varint(&[]), VarInt::Incomplete);
        assert_eq!(read_varint(&[0x80]), VarInt::Incomplete);
        assert_eq!(read_varint(&[0x80, 0x80, 0x80]), VarInt::Incomplete);
    }

    #[test]
    fn non_minimal_is_rejected() {
        // [MQTT-1.5.5-1]: 0 written in two bytes.
        assert_eq!(read_varint(&[0x80, 0x00]), VarInt::NotMinimal);
        assert_eq!(read_varint(&[0xff, 0x80, 0x00]), VarInt::NotMinimal);
    }
}
