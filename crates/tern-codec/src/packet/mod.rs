//! The control packets: one module per packet type, each with its decoder
//! (a nom parser over the frame body) and its encoder.

mod ack;
mod auth;
mod connack;
mod connect;
mod disconnect;
mod publish;
mod suback;
mod subscribe;
mod unsuback;
mod unsubscribe;

pub use ack::{PubAck, PubComp, PubRec, PubRel};
pub use auth::Auth;
pub use connack::ConnAck;
pub use connect::{Connect, Will};
pub use disconnect::Disconnect;
pub use publish::Publish;
pub use suback::SubAck;
pub use subscribe::{RetainHandling, Subscribe, SubscribeFilter, SubscriptionOptions};
pub use unsuback::UnsubAck;
pub use unsubscribe::Unsubscribe;

use crate::{
    DecodeError, EncodeError, FixedHeader, FrameStatus, PacketId, PacketType, ProtocolVersion,
    check_frame,
    primitives::{Frame, PResult, end},
    varint::{VARINT_MAX, put_varint, varint_len},
};
use alloc::boxed::Box;
use bytes::{BufMut, Bytes, BytesMut};

/// What every packet type implements: its body's codec.
pub(crate) trait Wire: Sized {
    /// The packet type.
    const TYPE: PacketType;

    /// The fixed-header flag nibble.
    fn flags(&self) -> u8 {
        Self::TYPE.fixed_flags().unwrap_or(0)
    }

    /// Rejects a packet that breaks the specification for `version`.
    fn check(&self, version: ProtocolVersion) -> Result<(), EncodeError>;

    /// The Remaining Length.
    fn body_len(&self, version: ProtocolVersion) -> usize;

    /// Writes the variable header and payload.
    fn write_body<B: BufMut>(&self, version: ProtocolVersion, dst: &mut B);

    /// Parses the variable header and payload.
    fn parse_body<'a>(frame: &Frame<'a>, flags: u8, body: &'a [u8]) -> PResult<'a, Self>;

    /// Checks the packet, then writes the fixed header and the body. A type
    /// on a hot path overrides it to size its properties once instead of in
    /// both `body_len` and `write_body`.
    #[inline]
    fn encode_into<B: BufMut>(
        &self,
        version: ProtocolVersion,
        dst: &mut B,
    ) -> Result<(), EncodeError> {
        self.check(version)?;
        let body = remaining_length(self.body_len(version))?;
        dst.put_u8(((Self::TYPE as u8) << 4) | self.flags());
        put_varint(dst, body);
        self.write_body(version, dst);
        Ok(())
    }
}

/// A body length as a Remaining Length, if it fits in one.
#[inline]
pub(crate) fn remaining_length(body: usize) -> Result<u32, EncodeError> {
    u32::try_from(body)
        .ok()
        .filter(|&len| len <= VARINT_MAX)
        .ok_or(EncodeError::PacketTooLarge)
}

pub(crate) fn encoded_len<T: Wire>(packet: &T, version: ProtocolVersion) -> usize {
    let body = packet.body_len(version);
    1 + varint_len(u32::try_from(body).unwrap_or(u32::MAX)) + body
}

#[inline]
pub(crate) fn encode<T: Wire, B: BufMut>(
    packet: &T,
    version: ProtocolVersion,
    dst: &mut B,
) -> Result<(), EncodeError> {
    packet.encode_into(version, dst)
}

/// Checks the packet for `version` and writes its fixed header; writes
/// nothing if the check fails.
pub(crate) fn put_fixed_header<T: Wire, B: BufMut>(
    packet: &T,
    version: ProtocolVersion,
    dst: &mut B,
) -> Result<(), EncodeError> {
    packet.check(version)?;
    let body = remaining_length(packet.body_len(version))?;
    dst.put_u8(((T::TYPE as u8) << 4) | packet.flags());
    put_varint(dst, body);
    Ok(())
}

fn decode_body<T: Wire>(frame: &Frame<'_>, header: &FixedHeader) -> Result<T, DecodeError> {
    let body = &frame.bytes[header.header_len..];
    let (rest, packet) = T::parse_body(frame, header.flags, body).map_err(|e| frame.error(e))?;
    end(rest).map_err(|e| frame.error(e))?;
    Ok(packet)
}

/// Adds the public `encode` and `encoded_len` to each packet struct.
macro_rules! packet_codec {
    ($($ty:ident),*) => {$(
        impl $ty {
            /// The exact number of bytes [`Self::encode`] writes for `version`.
            pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
                encoded_len(self, version)
            }

            /// Checks the rules [`Self::encode`] enforces, without encoding.
            pub fn validate(&self, version: ProtocolVersion) -> Result<(), EncodeError> {
                self.check(version)
            }

            /// Writes the whole packet for `version`, or writes nothing and
            /// returns an error if the packet breaks the specification.
            pub fn encode<B: BufMut>(
                &self,
                version: ProtocolVersion,
                dst: &mut B,
            ) -> Result<(), EncodeError> {
                encode(self, version, dst)
            }
        }

        impl From<$ty> for Packet {
            fn from(p: $ty) -> Packet {
                Packet::$ty(p.into())
            }
        }
    )*};
}

packet_codec!(
    Connect,
    ConnAck,
    Publish,
    PubAck,
    PubRec,
    PubRel,
    PubComp,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth
);

/// Any MQTT control packet.
///
/// The packets that are large and rare (CONNECT, CONNACK, DISCONNECT, AUTH)
/// are boxed, so a `Packet` is no larger than a [`Publish`] plus its tag
/// (at most 96 bytes, held by a compile-time check): queues of packets and
/// the moves between codec, session and broker stay cheap. Build one with
/// `From` (`Packet::from(connect)`, `connect.into()`); match through the
/// box as usual (`Packet::Connect(c) => c.client_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(tag = "type", rename_all = "UPPERCASE"))]
pub enum Packet {
    /// CONNECT.
    Connect(Box<Connect>),
    /// CONNACK.
    ConnAck(Box<ConnAck>),
    /// PUBLISH.
    Publish(Publish),
    /// PUBACK.
    PubAck(PubAck),
    /// PUBREC.
    PubRec(PubRec),
    /// PUBREL.
    PubRel(PubRel),
    /// PUBCOMP.
    PubComp(PubComp),
    /// SUBSCRIBE.
    Subscribe(Subscribe),
    /// SUBACK.
    SubAck(SubAck),
    /// UNSUBSCRIBE.
    Unsubscribe(Unsubscribe),
    /// UNSUBACK.
    UnsubAck(UnsubAck),
    /// PINGREQ.
    PingReq,
    /// PINGRESP.
    PingResp,
    /// DISCONNECT.
    Disconnect(Box<Disconnect>),
    /// AUTH (MQTT 5 only).
    Auth(Box<Auth>),
}

macro_rules! dispatch {
    ($self:expr, $p:ident => $body:expr, ping => $ping:expr) => {
        match $self {
            Packet::Connect($p) => {
                let $p = &**$p;
                $body
            }
            Packet::ConnAck($p) => {
                let $p = &**$p;
                $body
            }
            Packet::Publish($p) => $body,
            Packet::PubAck($p) => $body,
            Packet::PubRec($p) => $body,
            Packet::PubRel($p) => $body,
            Packet::PubComp($p) => $body,
            Packet::Subscribe($p) => $body,
            Packet::SubAck($p) => $body,
            Packet::Unsubscribe($p) => $body,
            Packet::UnsubAck($p) => $body,
            Packet::Disconnect($p) => {
                let $p = &**$p;
                $body
            }
            Packet::Auth($p) => {
                let $p = &**$p;
                $body
            }
            Packet::PingReq | Packet::PingResp => $ping,
        }
    };
}

impl Packet {
    /// Decodes one packet from the front of `buf`.
    ///
    /// - `Ok(Some(packet))`: a whole packet; its bytes were removed from `buf`
    ///   and the packet's strings and payload share them (no copy).
    /// - `Ok(None)`: more bytes are needed; nothing was consumed.
    ///   ([`check_frame`] tells how many.)
    /// - `Err(e)`: the bytes break a rule; the connection must be closed, after
    ///   sending `e.reason_code()` where the protocol allows. The bad packet's
    ///   bytes may have been consumed.
    ///
    /// A packet larger than `max_packet_size` is refused from its fixed header
    /// alone. `version` is the connection's protocol version; a CONNECT is
    /// decoded by its own protocol level whatever `version` says.
    pub fn decode(
        buf: &mut BytesMut,
        version: ProtocolVersion,
        max_packet_size: u32,
    ) -> Result<Option<Packet>, DecodeError> {
        if let Some(packet) = short_packet(buf, max_packet_size) {
            bytes::Buf::advance(buf, packet.1);
            return Ok(Some(packet.0));
        }
        let header = match crate::framing::frame_status(buf, version, max_packet_size)? {
            FrameStatus::Complete(header) => header,
            FrameStatus::Incomplete { .. } => return Ok(None),
        };
        let mut frame = buf.split_to(header.packet_len()).freeze();
        if header.packet_type == PacketType::Publish {
            return publish::decode_owned(&mut frame, &header, version)
                .map(|p| Some(Packet::Publish(p)))
                .map_err(|e| e.in_packet(PacketType::Publish));
        }
        Self::decode_frame(&frame, &header, version).map(Some)
    }

    /// Decodes a buffer that holds exactly one whole packet.
    ///
    /// Like [`Packet::decode`] with no size limit, but an incomplete packet or
    /// trailing bytes after it are errors.
    pub fn decode_exact(bytes: Bytes, version: ProtocolVersion) -> Result<Packet, DecodeError> {
        match check_frame(&bytes, version, crate::MAX_PACKET_SIZE)? {
            FrameStatus::Complete(header) if header.packet_len() == bytes.len() => {
                Self::decode_frame(&bytes, &header, version)
            }
            FrameStatus::Complete(header) => Err(DecodeError::new(
                crate::DecodeErrorKind::TrailingBytes {
                    count: bytes.len() - header.packet_len(),
                },
                header.packet_len(),
            )
            .in_packet(header.packet_type)),
            FrameStatus::Incomplete { .. } => Err(DecodeError::new(
                crate::DecodeErrorKind::UnexpectedEnd,
                bytes.len(),
            )),
        }
    }

    fn decode_frame(
        bytes: &Bytes,
        header: &FixedHeader,
        version: ProtocolVersion,
    ) -> Result<Packet, DecodeError> {
        let frame = Frame { bytes, version };
        let packet = match header.packet_type {
            PacketType::Connect => {
                let body = &bytes[header.header_len..];
                return decode_body(&frame, header)
                    .map(|c| Packet::Connect(Box::new(c)))
                    .map_err(|e| {
                        match connect::peek_version(body) {
                            Some(v) => e.with_version(v),
                            None => e,
                        }
                        .in_packet(PacketType::Connect)
                    });
            }
            PacketType::ConnAck => {
                decode_body(&frame, header).map(|c| Packet::ConnAck(Box::new(c)))
            }
            PacketType::Publish => decode_body(&frame, header).map(Packet::Publish),
            PacketType::PubAck => decode_body(&frame, header).map(Packet::PubAck),
            PacketType::PubRec => decode_body(&frame, header).map(Packet::PubRec),
            PacketType::PubRel => decode_body(&frame, header).map(Packet::PubRel),
            PacketType::PubComp => decode_body(&frame, header).map(Packet::PubComp),
            PacketType::Subscribe => decode_body(&frame, header).map(Packet::Subscribe),
            PacketType::SubAck => decode_body(&frame, header).map(Packet::SubAck),
            PacketType::Unsubscribe => decode_body(&frame, header).map(Packet::Unsubscribe),
            PacketType::UnsubAck => decode_body(&frame, header).map(Packet::UnsubAck),
            PacketType::Disconnect => {
                decode_body(&frame, header).map(|d| Packet::Disconnect(Box::new(d)))
            }
            PacketType::Auth => decode_body(&frame, header).map(|a| Packet::Auth(Box::new(a))),
            PacketType::PingReq | PacketType::PingResp => {
                let body = &bytes[header.header_len..];
                end(body).map_err(|e| frame.error(e))?;
                Ok(if header.packet_type == PacketType::PingReq {
                    Packet::PingReq
                } else {
                    Packet::PingResp
                })
            }
        };
        packet.map_err(|e| e.in_packet(header.packet_type))
    }

    /// The packet's type.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::PingReq => PacketType::PingReq,
            Packet::PingResp => PacketType::PingResp,
            _ => dispatch!(self, p => wire_type(p), ping => unreachable!()),
        }
    }

    /// The exact number of bytes [`Packet::encode`] writes for `version`.
    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        dispatch!(self, p => encoded_len(p, version), ping => 2)
    }

    /// Writes the whole packet for `version`, or writes nothing and returns an
    /// error if the packet breaks the specification or cannot be expressed in
    /// `version`.
    pub fn encode<B: BufMut>(
        &self,
        version: ProtocolVersion,
        dst: &mut B,
    ) -> Result<(), EncodeError> {
        dispatch!(self, p => encode(p, version, dst), ping => {
            dst.put_u8((self.packet_type() as u8) << 4);
            dst.put_u8(0);
            Ok(())
        })
    }
}

/// The packets that carry no shared data and are common on a busy link: a
/// PUBACK, PUBREC, PUBREL or PUBCOMP of two bytes (every MQTT 3.x
/// acknowledgement, and MQTT 5's Success without properties), PINGREQ and
/// PINGRESP. Read in place, with their length, without splitting a shared
/// frame off the buffer. Anything else, a zero packet identifier included,
/// is `None` and goes the general way, which reports the errors.
#[inline(always)]
fn short_packet(buf: &[u8], max_packet_size: u32) -> Option<(Packet, usize)> {
    match *buf {
        [first, 2, hi, lo, ..] if max_packet_size >= 4 => {
            let id = PacketId::new(u16::from_be_bytes([hi, lo]))?;
            let packet = match first {
                0x40 => Packet::PubAck(PubAck::new(id)),
                0x50 => Packet::PubRec(PubRec::new(id)),
                0x62 => Packet::PubRel(PubRel::new(id)),
                0x70 => Packet::PubComp(PubComp::new(id)),
                _ => return None,
            };
            Some((packet, 4))
        }
        [0xC0, 0, ..] if max_packet_size >= 2 => Some((Packet::PingReq, 2)),
        [0xD0, 0, ..] if max_packet_size >= 2 => Some((Packet::PingResp, 2)),
        _ => None,
    }
}

fn wire_type<T: Wire>(_: &T) -> PacketType {
    T::TYPE
}

/// Checks a SUBSCRIBE or UNSUBSCRIBE Topic Filter, string rules included,
/// with tern-topic's rules: plain filter syntax in MQTT 3.x, plain or
/// `$share/{ShareName}/{filter}` in MQTT 5. Returns whether it is a shared
/// subscription. Ill-formed UTF-8 and U+0000 are reported as in every other
/// string [MQTT-1.5.4-1] [MQTT-1.5.4-2]; the string is scanned once.
pub(crate) fn check_filter(
    filter: &[u8],
    v5: bool,
) -> Result<bool, nom::Err<crate::primitives::Fail<'_>>> {
    use crate::{DecodeErrorKind, TopicError};
    let checked = if v5 {
        tern_topic::validate_subscription_filter(filter)
    } else {
        tern_topic::validate_topic_filter(filter).map(|()| false)
    };
    checked.map_err(|e| {
        let kind = match e {
            TopicError::InvalidUtf8 => DecodeErrorKind::InvalidUtf8,
            TopicError::NullCharacter => DecodeErrorKind::NullCharacter,
            e => DecodeErrorKind::InvalidTopicFilter(e),
        };
        nom::Err::Failure(crate::primitives::Fail { at: filter, kind })
    })
}

/// Fails encoding when a version before 5 would lose MQTT 5 properties.
pub(crate) fn require_no_properties(
    empty: bool,
    version: ProtocolVersion,
) -> Result<(), EncodeError> {
    if empty || version.is_v5() {
        Ok(())
    } else {
        Err(EncodeError::NotInVersion {
            what: "MQTT 5 properties",
            version,
        })
    }
}

/// Fails encoding when a reason code is not defined for the packet type.
pub(crate) fn require_reason(
    code: crate::ReasonCode,
    packet: PacketType,
) -> Result<(), EncodeError> {
    if code.is_valid_for(packet) {
        Ok(())
    } else {
        Err(EncodeError::InvalidReasonCode(code))
    }
}
