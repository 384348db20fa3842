//! PUBACK, PUBREC, PUBREL and PUBCOMP (MQTT 5.0 §3.4–3.7): one shape, four types.

use super::{Wire, require_no_properties, require_reason};
use crate::{
    DecodeErrorKind, EncodeError, PacketId, PacketType, ProtocolVersion, ReasonCode,
    primitives::{Frame, PResult, fail, packet_id},
    properties::{AckProperties, PropertySet},
};
use bytes::BufMut;
use nom::number::complete::be_u8;

/// The Remaining Length of an MQTT 5 ack: 2 when the reason is Success and
/// there are no properties (the short form), 3 when only properties are absent.
fn ack_body_len(reason: ReasonCode, props: &AckProperties, version: ProtocolVersion) -> usize {
    if !version.is_v5() || (reason == ReasonCode::Success && props.is_empty()) {
        2
    } else if props.is_empty() {
        3
    } else {
        3 + props.wire_len()
    }
}

fn write_ack<B: BufMut>(
    id: PacketId,
    reason: ReasonCode,
    props: &AckProperties,
    version: ProtocolVersion,
    dst: &mut B,
) {
    dst.put_u16(id.get());
    let len = ack_body_len(reason, props, version);
    if len >= 3 {
        dst.put_u8(reason.as_u8());
    }
    if len > 3 {
        props.write(dst);
    }
}

fn check_ack(
    reason: ReasonCode,
    props: &AckProperties,
    packet: PacketType,
    version: ProtocolVersion,
) -> Result<(), EncodeError> {
    require_no_properties(props.is_empty(), version)?;
    props.check()?;
    if !version.is_v5() && reason != ReasonCode::Success {
        return Err(EncodeError::NotInVersion {
            what: "a reason code other than success",
            version,
        });
    }
    require_reason(reason, packet)
}

type AckParts = (PacketId, ReasonCode, AckProperties);

fn parse_ack<'a>(frame: &Frame<'_>, packet: PacketType, body: &'a [u8]) -> PResult<'a, AckParts> {
    let (input, id) = packet_id(body)?;
    if !frame.version.is_v5() || input.is_empty() {
        return Ok((input, (id, ReasonCode::Success, AckProperties::default())));
    }
    let (input, code) = be_u8(input)?;
    let Some(reason) = ReasonCode::from_u8(code).filter(|c| c.is_valid_for(packet)) else {
        return fail(&body[2..], DecodeErrorKind::InvalidReasonCode(code));
    };
    if input.is_empty() {
        return Ok((input, (id, reason, AckProperties::default())));
    }
    let (input, props) = AckProperties::parse(frame, input)?;
    Ok((input, (id, reason, props)))
}

macro_rules! ack_packet {
    ($(#[doc = $doc:literal])* $name:ident, $ty:ident) => {
        $(#[doc = $doc])*
        ///
        /// In MQTT 3.x only the packet identifier exists: the reason code must be
        /// [`ReasonCode::Success`] and the properties empty. MQTT 5's short forms
        /// (no reason code, or no properties) decode to the same value.
        #[derive(Debug, Clone, PartialEq, Eq)]
        #[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
        pub struct $name {
            /// The identifier of the PUBLISH (or PUBREL) being acknowledged.
            pub packet_id: PacketId,
            /// The result; Success unless MQTT 5 says otherwise.
            #[cfg_attr(feature = "serde", serde(default))]
            pub reason_code: ReasonCode,
            /// MQTT 5 properties; must be empty for 3.x.
            #[cfg_attr(feature = "serde", serde(default))]
            pub properties: AckProperties,
        }

        impl $name {
            /// A successful acknowledgement with no properties.
            pub fn new(packet_id: PacketId) -> Self {
                Self {
                    packet_id,
                    reason_code: ReasonCode::Success,
                    properties: AckProperties::default(),
                }
            }

            /// An acknowledgement with a reason code and no properties.
            pub fn with_reason(packet_id: PacketId, reason_code: ReasonCode) -> Self {
                Self {
                    packet_id,
                    reason_code,
                    properties: AckProperties::default(),
                }
            }
        }

        impl Wire for $name {
            const TYPE: PacketType = PacketType::$ty;

            fn check(&self, version: ProtocolVersion) -> Result<(), EncodeError> {
                check_ack(self.reason_code, &self.properties, Self::TYPE, version)
            }

            fn body_len(&self, version: ProtocolVersion) -> usize {
                ack_body_len(self.reason_code, &self.properties, version)
            }

            fn write_body<B: BufMut>(&self, version: ProtocolVersion, dst: &mut B) {
                write_ack(self.packet_id, self.reason_code, &self.properties, version, dst)
            }

            fn parse_body<'a>(frame: &Frame<'a>, _flags: u8, body: &'a [u8]) -> PResult<'a, Self> {
                let (rest, (packet_id, reason_code, properties)) =
                    parse_ack(frame, Self::TYPE, body)?;
                Ok((rest, Self { packet_id, reason_code, properties }))
            }
        }
    };
}

ack_packet!(
    /// PUBACK: acknowledges a QoS 1 PUBLISH.
    PubAck, PubAck
);
ack_packet!(
    /// PUBREC: first reply to a QoS 2 PUBLISH.
    PubRec, PubRec
);
ack_packet!(
    /// PUBREL: releases a QoS 2 message after PUBREC.
    PubRel, PubRel
);
ack_packet!(
    /// PUBCOMP: completes the QoS 2 handshake.
    PubComp, PubComp
);
