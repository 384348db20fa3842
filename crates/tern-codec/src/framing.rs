//! The fixed header: packet type, flags and Remaining Length, checked before
//! any body parsing, so a short buffer is "need more" and never an error.

use crate::{
    DecodeError, DecodeErrorKind, ProtocolVersion,
    varint::{VarInt, read_varint},
};
use core::fmt;

/// The control packet type, the high nibble of the first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[repr(u8)]
pub enum PacketType {
    /// CONNECT (1): client request to connect.
    Connect = 1,
    /// CONNACK (2): connect acknowledgment.
    ConnAck = 2,
    /// PUBLISH (3): publish message.
    Publish = 3,
    /// PUBACK (4): QoS 1 publish acknowledgment.
    PubAck = 4,
    /// PUBREC (5): QoS 2 publish received.
    PubRec = 5,
    /// PUBREL (6): QoS 2 publish release.
    PubRel = 6,
    /// PUBCOMP (7): QoS 2 publish complete.
    PubComp = 7,
    /// SUBSCRIBE (8): subscribe request.
    Subscribe = 8,
    /// SUBACK (9): subscribe acknowledgment.
    SubAck = 9,
    /// UNSUBSCRIBE (10): unsubscribe request.
    Unsubscribe = 10,
    /// UNSUBACK (11): unsubscribe acknowledgment.
    UnsubAck = 11,
    /// PINGREQ (12): ping request.
    PingReq = 12,
    /// PINGRESP (13): ping response.
    PingResp = 13,
    /// DISCONNECT (14): disconnect notification.
    Disconnect = 14,
    /// AUTH (15): authentication exchange, MQTT 5 only.
    Auth = 15,
}

impl PacketType {
    /// The packet type for a first-byte high nibble in `version`.
    pub const fn from_nibble(nibble: u8, version: ProtocolVersion) -> Option<Self> {
        Some(match nibble {
            1 => Self::Connect,
            2 => Self::ConnAck,
            3 => Self::Publish,
            4 => Self::PubAck,
            5 => Self::PubRec,
            6 => Self::PubRel,
            7 => Self::PubComp,
            8 => Self::Subscribe,
            9 => Self::SubAck,
            10 => Self::Unsubscribe,
            11 => Self::UnsubAck,
            12 => Self::PingReq,
            13 => Self::PingResp,
            14 => Self::Disconnect,
            15 if version.is_v5() => Self::Auth,
            _ => return None,
        })
    }

    /// The fixed flag nibble this type requires; `None` for PUBLISH, whose
    /// flags carry DUP, QoS and RETAIN.
    pub const fn fixed_flags(self) -> Option<u8> {
        match self {
            Self::Publish => None,
            Self::PubRel | Self::Subscribe | Self::Unsubscribe => Some(0b0010),
            _ => Some(0),
        }
    }

    /// The name the specification uses, in capitals.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Connect => "CONNECT",
            Self::ConnAck => "CONNACK",
            Self::Publish => "PUBLISH",
            Self::PubAck => "PUBACK",
            Self::PubRec => "PUBREC",
            Self::PubRel => "PUBREL",
            Self::PubComp => "PUBCOMP",
            Self::Subscribe => "SUBSCRIBE",
            Self::SubAck => "SUBACK",
            Self::Unsubscribe => "UNSUBSCRIBE",
            Self::UnsubAck => "UNSUBACK",
            Self::PingReq => "PINGREQ",
            Self::PingResp => "PINGRESP",
            Self::Disconnect => "DISCONNECT",
            Self::Auth => "AUTH",
        }
    }
}

impl fmt::Display for PacketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A parsed fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedHeader {
    /// The packet type.
    pub packet_type: PacketType,
    /// The low nibble of the first byte.
    pub flags: u8,
    /// Bytes taken by the fixed header itself (2 to 5).
    pub header_len: usize,
    /// The Remaining Length: bytes after the fixed header.
    pub remaining_len: u32,
}

impl FixedHeader {
    /// The whole packet's length in bytes.
    pub const fn packet_len(&self) -> usize {
        self.header_len + self.remaining_len as usize
    }
}

/// Whether a buffer starts with a whole packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameStatus {
    /// A whole packet is available.
    Complete(FixedHeader),
    /// At least `needed` more bytes must arrive before the packet is whole.
    Incomplete {
        /// The minimum number of bytes still missing.
        needed: usize,
    },
}

/// Checks the fixed header at the start of `buf` without consuming anything.
///
/// Refuses a packet larger than `max_packet_size` (the whole packet, fixed
/// header included) from the header alone, before its body arrives. In MQTT
/// 3.1, PUBREL, SUBSCRIBE and UNSUBSCRIBE may also carry the DUP flag.
///
/// ```
/// use tern_codec::{check_frame, FrameStatus, ProtocolVersion};
///
/// // A PINGREQ is two bytes; one is not enough.
/// let status = check_frame(&[0xC0], ProtocolVersion::V5, 1024)?;
/// assert_eq!(status, FrameStatus::Incomplete { needed: 1 });
/// # Ok::<(), tern_codec::DecodeError>(())
/// ```
pub fn check_frame(
    buf: &[u8],
    version: ProtocolVersion,
    max_packet_size: u32,
) -> Result<FrameStatus, DecodeError> {
    frame_status(buf, version, max_packet_size)
}

/// [`check_frame`], inlined into the decoder so the fixed header stays in
/// registers instead of round-tripping through memory.
#[inline(always)]
pub(crate) fn frame_status(
    buf: &[u8],
    version: ProtocolVersion,
    max_packet_size: u32,
) -> Result<FrameStatus, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(FrameStatus::Incomplete { needed: 2 });
    };
    let nibble = first >> 4;
    let flags = first & 0x0f;
    let packet_type = PacketType::from_nibble(nibble, version).ok_or(DecodeError::new(
        DecodeErrorKind::ReservedPacketType(nibble),
        0,
    ))?;
    if let Some(required) = packet_type.fixed_flags() {
        // MQTT 3.1 let PUBREL, SUBSCRIBE and UNSUBSCRIBE set DUP on retries.
        let v31_dup = version == ProtocolVersion::V3_1 && required == 0b0010 && flags == 0b1010;
        if flags != required && !v31_dup {
            return Err(
                DecodeError::new(DecodeErrorKind::InvalidHeaderFlags { flags }, 0)
                    .in_packet(packet_type),
            );
        }
    }
    let too_large = |size: u64| {
        DecodeError::new(
            DecodeErrorKind::PacketTooLarge {
                size,
                max: max_packet_size,
            },
            1,
        )
        .in_packet(packet_type)
    };
    match read_varint(&buf[1..]) {
        VarInt::Value(remaining_len, len) => {
            let header_len = 1 + len;
            let size = header_len as u64 + u64::from(remaining_len);
            if size > u64::from(max_packet_size) {
                return Err(too_large(size));
            }
            let header = FixedHeader {
                packet_type,
                flags,
                header_len,
                remaining_len,
            };
            let packet_len = header.packet_len();
            Ok(if buf.len() >= packet_len {
                FrameStatus::Complete(header)
            } else {
                FrameStatus::Incomplete {
                    needed: packet_len - buf.len(),
                }
            })
        }
        VarInt::Incomplete => {
            // The continuation bits already promise a lower bound on the size:
            // refuse an oversized packet before its length is even complete.
            let read = buf.len() - 1;
            let partial = buf[1..]
                .iter()
                .enumerate()
                .fold(0u64, |acc, (i, b)| acc | (u64::from(b & 0x7f) << (7 * i)));
            let min_size = if read == 0 {
                2
            } else {
                1 + read as u64 + 1 + partial + (1u64 << (7 * read))
            };
            if min_size > u64::from(max_packet_size) {
                return Err(too_large(min_size));
            }
            Ok(FrameStatus::Incomplete { needed: 1 })
        }
        VarInt::TooLong => {
            Err(DecodeError::new(DecodeErrorKind::VarIntTooLong, 1).in_packet(packet_type))
        }
        VarInt::NotMinimal => {
            Err(DecodeError::new(DecodeErrorKind::VarIntNotMinimal, 1).in_packet(packet_type))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V5: ProtocolVersion = ProtocolVersion::V5;

    #[test]
    fn empty_buffer_needs_two_bytes() {
        assert_eq!(
            check_frame(&[], V5, 100),
            Ok(FrameStatus::Incomplete { needed: 2 })
        );
    }

    #[test]
    fn header_complete_body_missing() {
        // PUBLISH, remaining length 10, 3 body bytes present.
        let status = check_frame(&[0x30, 10, 0, 1, b'a'], V5, 100).unwrap();
        assert_eq!(status, FrameStatus::Incomplete { needed: 7 });
    }

    #[test]
    fn too_large_refused_from_header_alone() {
        // Remaining length 200 with a limit of 100: refused with no body present.
        let err = check_frame(&[0x30, 0xC8, 0x01], V5, 100).unwrap_err();
        assert_eq!(
            err.kind(),
            DecodeErrorKind::PacketTooLarge {
                size: 203,
                max: 100
            }
        );
        // Even before the length's last byte: 0x80 0x80 promises >= 16384.
        let err = check_frame(&[0x30, 0x80, 0x80], V5, 1000).unwrap_err();
        assert!(matches!(err.kind(), DecodeErrorKind::PacketTooLarge { .. }));
    }

    #[test]
    fn reserved_types_and_flags() {
        assert_eq!(
            check_frame(&[0x00, 0], V5, 100).unwrap_err().kind(),
            DecodeErrorKind::ReservedPacketType(0)
        );
        assert_eq!(
            check_frame(&[0xF0, 0], ProtocolVersion::V3_1_1, 100)
                .unwrap_err()
                .kind(),
            DecodeErrorKind::ReservedPacketType(15)
        );
        assert_eq!(
            check_frame(&[0x80, 0], V5, 100).unwrap_err().kind(),
            DecodeErrorKind::InvalidHeaderFlags { flags: 0 }
        );
        assert_eq!(
            check_frame(&[0xC1, 0], V5, 100).unwrap_err().kind(),
            DecodeErrorKind::InvalidHeaderFlags { flags: 1 }
        );
        // MQTT 3.1 SUBSCRIBE with DUP is fine; not in 3.1.1.
        assert!(check_frame(&[0x8A, 0], ProtocolVersion::V3_1, 100).is_ok());
        assert!(check_frame(&[0x8A, 0], ProtocolVersion::V3_1_1, 100).is_err());
    }
}
