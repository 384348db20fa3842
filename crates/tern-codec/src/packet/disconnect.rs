//! DISCONNECT (MQTT 5.0 §3.14, 3.1.1 §3.14).

use super::{Wire, require_no_properties, require_reason};
use crate::{
    DecodeErrorKind, EncodeError, PacketType, ProtocolVersion, ReasonCode,
    primitives::{Frame, PResult, fail},
    properties::{DisconnectProperties, PropertySet},
};
use bytes::BufMut;
use nom::number::complete::be_u8;

/// DISCONNECT: the last packet of a connection.
///
/// MQTT 3.x DISCONNECT is empty and only a client sends it: the reason code
/// must be Normal disconnection ([`ReasonCode::Success`]) with no properties.
/// MQTT 5 lets either side send it with a reason.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
pub struct Disconnect {
    /// Why the connection is closing.
    pub reason_code: ReasonCode,
    /// MQTT 5 properties; must be empty for 3.x.
    pub properties: DisconnectProperties,
}

impl Disconnect {
    /// A DISCONNECT with this reason and no properties.
    pub fn new(reason_code: ReasonCode) -> Self {
        Self {
            reason_code,
            properties: DisconnectProperties::default(),
        }
    }
}

impl Wire for Disconnect {
    const TYPE: PacketType = PacketType::Disconnect;

    fn check(&self, version: ProtocolVersion) -> Result<(), EncodeError> {
        require_no_properties(self.properties.is_empty(), version)?;
        self.properties.check()?;
        if !version.is_v5() && self.reason_code != ReasonCode::Success {
            return Err(EncodeError::NotInVersion {
                what: "a DISCONNECT reason code",
                version,
            });
        }
        require_reason(self.reason_code, PacketType::Disconnect)
    }

    fn body_len(&self, version: ProtocolVersion) -> usize {
        if !version.is_v5()
            || (self.reason_code == ReasonCode::Success && self.properties.is_empty())
        {
            0
        } else if self.properties.is_empty() {
            1
        } else {
            1 + self.properties.wire_len()
        }
    }

    fn write_body<B: BufMut>(&self, version: ProtocolVersion, dst: &mut B) {
        let len = self.body_len(version);
        if len >= 1 {
            dst.put_u8(self.reason_code.as_u8());
        }
        if len > 1 {
            self.properties.write(dst);
        }
    }

    fn parse_body<'a>(frame: &Frame<'a>, _flags: u8, body: &'a [u8]) -> PResult<'a, Self> {
        if !frame.version.is_v5() || body.is_empty() {
            return Ok((body, Disconnect::default()));
        }
        let (input, code) = be_u8(body)?;
        let Some(reason_code) =
            ReasonCode::from_u8(code).filter(|c| c.is_valid_for(PacketType::Disconnect))
        else {
            return fail(body, DecodeErrorKind::InvalidReasonCode(code));
        };
        if input.is_empty() {
            return Ok((input, Disconnect::new(reason_code)));
        }
        let (input, properties) = DisconnectProperties::parse(frame, input)?;
        Ok((
            input,
            Disconnect {
                reason_code,
                properties,
            },
        ))
    }
}
