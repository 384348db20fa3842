//! UNSUBSCRIBE (MQTT 5.0 §3.10, 3.1.1 §3.10).

use super::{Wire, require_no_properties};
use crate::{
    DecodeErrorKind, EncodeError, MqttString, PacketId, PacketType, ProtocolVersion,
    primitives::{Frame, PResult, binary_slice, fail, packet_id, put_binary},
    properties::{PropertySet, UnsubscribeProperties},
};
use alloc::vec::Vec;
use bytes::BufMut;

/// UNSUBSCRIBE: removes one or more subscriptions.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Unsubscribe {
    /// The packet identifier, echoed in UNSUBACK.
    pub packet_id: PacketId,
    /// MQTT 5 properties; must be empty for 3.x.
    #[cfg_attr(feature = "serde", serde(default))]
    pub properties: UnsubscribeProperties,
    /// The topic filters to remove; at least one [MQTT-3.10.3-2].
    pub filters: Vec<MqttString>,
}

impl Wire for Unsubscribe {
    const TYPE: PacketType = PacketType::Unsubscribe;

    fn check(&self, version: ProtocolVersion) -> Result<(), EncodeError> {
        require_no_properties(self.properties.is_empty(), version)?;
        self.properties.check()?;
        if self.filters.is_empty() {
            return Err(EncodeError::NoTopicFilters);
        }
        Ok(())
    }

    fn body_len(&self, version: ProtocolVersion) -> usize {
        let props = if version.is_v5() {
            self.properties.wire_len()
        } else {
            0
        };
        2 + props + self.filters.iter().map(MqttString::wire_len).sum::<usize>()
    }

    fn write_body<B: BufMut>(&self, version: ProtocolVersion, dst: &mut B) {
        dst.put_u16(self.packet_id.get());
        if version.is_v5() {
            self.properties.write(dst);
        }
        for f in &self.filters {
            put_binary(dst, f.as_bytes());
        }
    }

    fn parse_body<'a>(frame: &Frame<'a>, _flags: u8, body: &'a [u8]) -> PResult<'a, Self> {
        let (mut input, packet_id) = packet_id(body)?;
        let mut properties = UnsubscribeProperties::default();
        if frame.version.is_v5() {
            let (rest, props) = UnsubscribeProperties::parse(frame, input)?;
            properties = props;
            input = rest;
        }
        if input.is_empty() {
            return fail(input, DecodeErrorKind::NoTopicFilters);
        }
        let mut filters = Vec::new();
        while !input.is_empty() {
            let (rest, filter) = binary_slice(input)?;
            super::check_filter(filter, frame.version.is_v5())?;
            filters.push(frame.string(filter));
            input = rest;
        }
        Ok((
            input,
            Unsubscribe {
                packet_id,
                properties,
                filters,
            },
        ))
    }
}
