//! SUBACK (MQTT 5.0 §3.9, 3.1.1 §3.9).

use super::{Wire, require_no_properties, require_reason};
use crate::{
    DecodeErrorKind, EncodeError, PacketId, PacketType, ProtocolVersion, ReasonCode,
    primitives::{Frame, PResult, fail, packet_id},
    properties::{AckProperties, PropertySet},
};
use alloc::vec::Vec;
use bytes::BufMut;

/// SUBACK: one reason code per filter of the SUBSCRIBE, in order.
///
/// In MQTT 3.x the codes are Granted QoS 0, 1 or 2, or failure (0x80); any
/// MQTT 5 error code is sent to a 3.x client as 0x80 and decodes as
/// [`ReasonCode::UnspecifiedError`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SubAck {
    /// The SUBSCRIBE's packet identifier.
    pub packet_id: PacketId,
    /// MQTT 5 properties; must be empty for 3.x.
    #[cfg_attr(feature = "serde", serde(default))]
    pub properties: AckProperties,
    /// One per requested filter.
    pub reason_codes: Vec<ReasonCode>,
}

impl Wire for SubAck {
    const TYPE: PacketType = PacketType::SubAck;

    fn check(&self, version: ProtocolVersion) -> Result<(), EncodeError> {
        require_no_properties(self.properties.is_empty(), version)?;
        self.properties.check()?;
        if self.reason_codes.is_empty() {
            return Err(EncodeError::NoReasonCodes);
        }
        self.reason_codes
            .iter()
            .try_for_each(|&c| require_reason(c, PacketType::SubAck))
    }

    fn body_len(&self, version: ProtocolVersion) -> usize {
        let props = if version.is_v5() {
            self.properties.wire_len()
        } else {
            0
        };
        2 + props + self.reason_codes.len()
    }

    fn write_body<B: BufMut>(&self, version: ProtocolVersion, dst: &mut B) {
        dst.put_u16(self.packet_id.get());
        if version.is_v5() {
            self.properties.write(dst);
            for code in &self.reason_codes {
                dst.put_u8(code.as_u8());
            }
        } else {
            for code in &self.reason_codes {
                dst.put_u8(if code.is_error() { 0x80 } else { code.as_u8() });
            }
        }
    }

    fn parse_body<'a>(frame: &Frame<'a>, _flags: u8, body: &'a [u8]) -> PResult<'a, Self> {
        let v5 = frame.version.is_v5();
        let (mut input, packet_id) = packet_id(body)?;
        let mut properties = AckProperties::default();
        if v5 {
            let (rest, props) = AckProperties::parse(frame, input)?;
            properties = props;
            input = rest;
        }
        if input.is_empty() {
            return fail(input, DecodeErrorKind::NoReasonCodes);
        }
        let mut reason_codes = Vec::with_capacity(input.len());
        for (i, &code) in input.iter().enumerate() {
            let reason = ReasonCode::from_u8(code).filter(|c| {
                c.is_valid_for(PacketType::SubAck) && (v5 || code <= 2 || code == 0x80)
            });
            match reason {
                Some(r) => reason_codes.push(r),
                None => return fail(&input[i..], DecodeErrorKind::InvalidReasonCode(code)),
            }
        }
        Ok((
            &input[input.len()..],
            SubAck {
                packet_id,
                properties,
                reason_codes,
            },
        ))
    }
}
