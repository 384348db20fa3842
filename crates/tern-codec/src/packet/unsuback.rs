//! UNSUBACK (MQTT 5.0 §3.11, 3.1.1 §3.11).

use super::{Wire, require_no_properties, require_reason};
use crate::{
    DecodeErrorKind, EncodeError, PacketId, PacketType, ProtocolVersion, ReasonCode,
    primitives::{Frame, PResult, fail, packet_id},
    properties::{AckProperties, PropertySet},
};
use alloc::vec::Vec;
use bytes::BufMut;

/// UNSUBACK: acknowledges an UNSUBSCRIBE.
///
/// MQTT 5 carries one reason code per filter; MQTT 3.x carries none, so
/// `reason_codes` must be empty for 3.x and decodes empty.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct UnsubAck {
    /// The UNSUBSCRIBE's packet identifier.
    pub packet_id: PacketId,
    /// MQTT 5 properties; must be empty for 3.x.
    #[cfg_attr(feature = "serde", serde(default))]
    pub properties: AckProperties,
    /// One per filter of the UNSUBSCRIBE (MQTT 5 only).
    #[cfg_attr(feature = "serde", serde(default))]
    pub reason_codes: Vec<ReasonCode>,
}

impl UnsubAck {
    /// An MQTT 3.x UNSUBACK: just the identifier.
    pub fn v3(packet_id: PacketId) -> Self {
        Self {
            packet_id,
            properties: AckProperties::default(),
            reason_codes: Vec::new(),
        }
    }
}

impl Wire for UnsubAck {
    const TYPE: PacketType = PacketType::UnsubAck;

    fn check(&self, version: ProtocolVersion) -> Result<(), EncodeError> {
        require_no_properties(self.properties.is_empty(), version)?;
        self.properties.check()?;
        if !version.is_v5() && !self.reason_codes.is_empty() {
            return Err(EncodeError::NotInVersion {
                what: "UNSUBACK reason codes",
                version,
            });
        }
        if version.is_v5() && self.reason_codes.is_empty() {
            return Err(EncodeError::NoReasonCodes);
        }
        self.reason_codes
            .iter()
            .try_for_each(|&c| require_reason(c, PacketType::UnsubAck))
    }

    fn body_len(&self, version: ProtocolVersion) -> usize {
        if version.is_v5() {
            2 + self.properties.wire_len() + self.reason_codes.len()
        } else {
            2
        }
    }

    fn write_body<B: BufMut>(&self, version: ProtocolVersion, dst: &mut B) {
        dst.put_u16(self.packet_id.get());
        if version.is_v5() {
            self.properties.write(dst);
            for code in &self.reason_codes {
                dst.put_u8(code.as_u8());
            }
        }
    }

    fn parse_body<'a>(frame: &Frame<'a>, _flags: u8, body: &'a [u8]) -> PResult<'a, Self> {
        let (input, packet_id) = packet_id(body)?;
        if !frame.version.is_v5() {
            return Ok((input, UnsubAck::v3(packet_id)));
        }
        let (input, properties) = AckProperties::parse(frame, input)?;
        if input.is_empty() {
            return fail(input, DecodeErrorKind::NoReasonCodes);
        }
        let mut reason_codes = Vec::with_capacity(input.len());
        for (i, &code) in input.iter().enumerate() {
            match ReasonCode::from_u8(code).filter(|c| c.is_valid_for(PacketType::UnsubAck)) {
                Some(r) => reason_codes.push(r),
                None => return fail(&input[i..], DecodeErrorKind::InvalidReasonCode(code)),
            }
        }
        Ok((
            &input[input.len()..],
            UnsubAck {
                packet_id,
                properties,
                reason_codes,
            },
        ))
    }
}
