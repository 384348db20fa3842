//! AUTH (MQTT 5.0 §3.15): extended authentication exchanges.

use super::{Wire, require_reason};
use crate::{
    DecodeErrorKind, EncodeError, PacketType, ProtocolVersion, ReasonCode,
    primitives::{Frame, PResult, fail},
    properties::{AuthProperties, PropertySet},
};
use bytes::BufMut;
use nom::number::complete::be_u8;

/// AUTH: one step of an extended authentication exchange (MQTT 5 only).
///
/// Reason code Success with no properties is sent as an empty packet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
pub struct Auth {
    /// Success (0x00), Continue authentication (0x18) or Re-authenticate (0x19).
    pub reason_code: ReasonCode,
    /// The method, data and diagnostics.
    pub properties: AuthProperties,
}

impl Wire for Auth {
    const TYPE: PacketType = PacketType::Auth;

    fn check(&self, version: ProtocolVersion) -> Result<(), EncodeError> {
        if !version.is_v5() {
            return Err(EncodeError::NotInVersion {
                what: "AUTH",
                version,
            });
        }
        self.properties.check()?;
        if self.properties.authentication_data.is_some()
            && self.properties.authentication_method.is_none()
        {
            return Err(EncodeError::AuthDataWithoutMethod);
        }
        require_reason(self.reason_code, PacketType::Auth)
    }

    fn body_len(&self, _: ProtocolVersion) -> usize {
        if self.reason_code == ReasonCode::Success && self.properties.is_empty() {
            0
        } else {
            1 + self.properties.wire_len()
        }
    }

    fn write_body<B: BufMut>(&self, version: ProtocolVersion, dst: &mut B) {
        if self.body_len(version) > 0 {
            dst.put_u8(self.reason_code.as_u8());
            self.properties.write(dst);
        }
    }

    fn parse_body<'a>(frame: &Frame<'a>, _flags: u8, body: &'a [u8]) -> PResult<'a, Self> {
        if body.is_empty() {
            return Ok((body, Auth::default()));
        }
        let (input, code) = be_u8(body)?;
        let Some(reason_code) =
            ReasonCode::from_u8(code).filter(|c| c.is_valid_for(PacketType::Auth))
        else {
            return fail(body, DecodeErrorKind::InvalidReasonCode(code));
        };
        let at = input;
        let (input, properties) = AuthProperties::parse(frame, input)?;
        if properties.authentication_data.is_some() && properties.authentication_method.is_none() {
            return fail(at, DecodeErrorKind::AuthDataWithoutMethod);
        }
        Ok((
            input,
            Auth {
                reason_code,
                properties,
            },
        ))
    }
}
