//! CONNACK (MQTT 5.0 §3.2, 3.1.1 §3.2).

use super::{Wire, require_no_properties, require_reason};
use crate::{
    DecodeErrorKind, EncodeError, PacketType, ProtocolVersion, ReasonCode,
    primitives::{Frame, PResult, fail},
    properties::{ConnAckProperties, PropertySet},
};
use bytes::BufMut;
use nom::number::complete::be_u8;

/// CONNACK: the server's answer to CONNECT.
///
/// In MQTT 3.x the return code is one of six values; they decode to the MQTT 5
/// reason code with the same meaning and encode back
/// ([`ReasonCode::v3_connack_code`]). Other reason codes cannot be sent to a
/// 3.x client: map them first with [`ReasonCode::to_v3_connack`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
pub struct ConnAck {
    /// Whether the server resumed a session (always 0 in MQTT 3.1).
    pub session_present: bool,
    /// The result of the connection attempt.
    pub reason_code: ReasonCode,
    /// MQTT 5 properties; must be empty for 3.x.
    pub properties: ConnAckProperties,
}

impl Wire for ConnAck {
    const TYPE: PacketType = PacketType::ConnAck;

    fn check(&self, version: ProtocolVersion) -> Result<(), EncodeError> {
        require_no_properties(self.properties.is_empty(), version)?;
        self.properties.check()?;
        if version.is_v5() {
            require_reason(self.reason_code, PacketType::ConnAck)?;
        } else if self.reason_code.v3_connack_code().is_none() {
            return Err(EncodeError::NotInVersion {
                what: "this CONNACK reason code",
                version,
            });
        }
        if self.session_present && self.reason_code.is_error() {
            return Err(EncodeError::SessionPresentOnError);
        }
        if self.session_present && version == ProtocolVersion::V3_1 {
            return Err(EncodeError::NotInVersion {
                what: "session present",
                version,
            });
        }
        if self.properties.authentication_data.is_some()
            && self.properties.authentication_method.is_none()
        {
            return Err(EncodeError::AuthDataWithoutMethod);
        }
        Ok(())
    }

    fn body_len(&self, version: ProtocolVersion) -> usize {
        2 + if version.is_v5() {
            self.properties.wire_len()
        } else {
            0
        }
    }

    fn write_body<B: BufMut>(&self, version: ProtocolVersion, dst: &mut B) {
        dst.put_u8(u8::from(self.session_present));
        if version.is_v5() {
            dst.put_u8(self.reason_code.as_u8());
            self.properties.write(dst);
        } else {
            dst.put_u8(self.reason_code.v3_connack_code().unwrap_or(0));
        }
    }

    fn parse_body<'a>(frame: &Frame<'a>, _flags: u8, body: &'a [u8]) -> PResult<'a, Self> {
        let version = frame.version;
        let (input, ack_flags) = be_u8(body)?;
        // 3.1 has no session present bit: the whole byte is reserved.
        let reserved = if version == ProtocolVersion::V3_1 {
            0xff
        } else {
            0xfe
        };
        if ack_flags & reserved != 0 {
            return fail(body, DecodeErrorKind::ConnAckReservedFlags);
        }
        let session_present = ack_flags & 1 != 0;
        let code_at = input;
        let (input, code) = be_u8(input)?;
        let reason_code = if version.is_v5() {
            ReasonCode::from_u8(code).filter(|c| c.is_valid_for(PacketType::ConnAck))
        } else {
            ReasonCode::from_v3_connack(code)
        };
        let Some(reason_code) = reason_code else {
            return fail(code_at, DecodeErrorKind::InvalidReasonCode(code));
        };
        if session_present && reason_code.is_error() {
            return fail(body, DecodeErrorKind::SessionPresentOnError);
        }
        let (input, properties) = if version.is_v5() {
            let at = input;
            let (input, props) = ConnAckProperties::parse(frame, input)?;
            if props.authentication_data.is_some() && props.authentication_method.is_none() {
                return fail(at, DecodeErrorKind::AuthDataWithoutMethod);
            }
            (input, props)
        } else {
            (input, ConnAckProperties::default())
        };
        Ok((
            input,
            ConnAck {
                session_present,
                reason_code,
                properties,
            },
        ))
    }
}
