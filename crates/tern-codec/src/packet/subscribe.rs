//! SUBSCRIBE (MQTT 5.0 §3.8, 3.1.1 §3.8).

use super::{Wire, require_no_properties};
use crate::{
    DecodeErrorKind, EncodeError, MqttString, PacketId, PacketType, ProtocolVersion, QoS,
    primitives::{Frame, PResult, binary_slice, fail, packet_id, put_binary},
    properties::{PropertySet, SubscribeProperties},
};
use alloc::vec::Vec;
use bytes::BufMut;
use nom::number::complete::be_u8;

/// SUBSCRIBE: a request for one or more subscriptions.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Subscribe {
    /// The packet identifier, echoed in SUBACK.
    pub packet_id: PacketId,
    /// MQTT 5 properties; must be empty for 3.x.
    #[cfg_attr(feature = "serde", serde(default))]
    pub properties: SubscribeProperties,
    /// The topic filters and their options; at least one [MQTT-3.8.3-3].
    pub filters: Vec<SubscribeFilter>,
}

/// One topic filter in a SUBSCRIBE with its options.
///
/// The decoder checks the filter with tern-topic's rules: a filter that is
/// not correctly formed (wildcard placement, empty, and in MQTT 5 the
/// `$share/{ShareName}/{filter}` syntax) makes the packet malformed
/// ([`DecodeErrorKind::InvalidTopicFilter`](crate::DecodeErrorKind::InvalidTopicFilter)).
/// Whether a well-formed filter is allowed (authorization, shared or
/// wildcard subscriptions supported) is the receiver's to answer per filter.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SubscribeFilter {
    /// The topic filter.
    pub filter: MqttString,
    /// The subscription options.
    #[cfg_attr(feature = "serde", serde(default))]
    pub options: SubscriptionOptions,
}

/// Subscription options (§3.8.3.1). In MQTT 3.x only `qos` exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
pub struct SubscriptionOptions {
    /// The maximum QoS the server may use for this subscription.
    pub qos: QoS,
    /// Do not send the client's own messages back to it (MQTT 5).
    pub no_local: bool,
    /// Keep the RETAIN flag messages were published with (MQTT 5).
    pub retain_as_published: bool,
    /// When to send retained messages (MQTT 5).
    pub retain_handling: RetainHandling,
}

impl Subscribe {
    /// A SUBSCRIBE for `filters`, without properties.
    ///
    /// ```
    /// use tern_codec::{QoS, Subscribe, SubscribeFilter, MqttString};
    ///
    /// let filter = SubscribeFilter::new(MqttString::from_static("a/+"), QoS::AtLeastOnce);
    /// let subscribe = Subscribe::new(1.try_into()?, vec![filter]);
    /// assert_eq!(subscribe.filters[0].options.qos, QoS::AtLeastOnce);
    /// # Ok::<(), core::num::TryFromIntError>(())
    /// ```
    pub fn new(packet_id: PacketId, filters: Vec<SubscribeFilter>) -> Self {
        Self {
            packet_id,
            properties: SubscribeProperties::default(),
            filters,
        }
    }
}

impl SubscribeFilter {
    /// `filter` with this maximum QoS and MQTT 5's default options.
    pub fn new(filter: MqttString, qos: QoS) -> Self {
        Self {
            filter,
            options: SubscriptionOptions::with_qos(qos),
        }
    }
}

impl SubscriptionOptions {
    /// Options with this maximum QoS and MQTT 5 defaults.
    pub fn with_qos(qos: QoS) -> Self {
        Self {
            qos,
            ..Self::default()
        }
    }

    /// The options byte; see [`SubscriptionOptions::check`] for 3.x.
    fn to_byte(self) -> u8 {
        self.qos.as_u8()
            | (u8::from(self.no_local) << 2)
            | (u8::from(self.retain_as_published) << 3)
            | ((self.retain_handling as u8) << 4)
    }

    fn is_v3_expressible(self) -> bool {
        !self.no_local
            && !self.retain_as_published
            && self.retain_handling == RetainHandling::SendAtSubscribe
    }
}

/// Retain Handling: whether retained messages are sent when subscribing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[repr(u8)]
pub enum RetainHandling {
    /// 0: send retained messages at the time of the subscribe.
    #[default]
    SendAtSubscribe = 0,
    /// 1: send them only if the subscription did not already exist.
    SendAtSubscribeIfNew = 1,
    /// 2: do not send retained messages at the time of the subscribe.
    DoNotSend = 2,
}

impl RetainHandling {
    /// The value for 0, 1 or 2.
    pub const fn from_u8(value: u8) -> Option<Self> {
        match value {
            0 => Some(Self::SendAtSubscribe),
            1 => Some(Self::SendAtSubscribeIfNew),
            2 => Some(Self::DoNotSend),
            _ => None,
        }
    }
}

impl Wire for Subscribe {
    const TYPE: PacketType = PacketType::Subscribe;

    fn check(&self, version: ProtocolVersion) -> Result<(), EncodeError> {
        require_no_properties(self.properties.is_empty(), version)?;
        self.properties.check()?;
        if self.filters.is_empty() {
            return Err(EncodeError::NoTopicFilters);
        }
        if !version.is_v5() && !self.filters.iter().all(|f| f.options.is_v3_expressible()) {
            return Err(EncodeError::NotInVersion {
                what: "MQTT 5 subscription options",
                version,
            });
        }
        Ok(())
    }

    fn body_len(&self, version: ProtocolVersion) -> usize {
        let props = if version.is_v5() {
            self.properties.wire_len()
        } else {
            0
        };
        2 + props
            + self
                .filters
                .iter()
                .map(|f| f.filter.wire_len() + 1)
                .sum::<usize>()
    }

    fn write_body<B: BufMut>(&self, version: ProtocolVersion, dst: &mut B) {
        dst.put_u16(self.packet_id.get());
        if version.is_v5() {
            self.properties.write(dst);
        }
        for f in &self.filters {
            put_binary(dst, f.filter.as_bytes());
            dst.put_u8(f.options.to_byte());
        }
    }

    fn parse_body<'a>(frame: &Frame<'a>, _flags: u8, body: &'a [u8]) -> PResult<'a, Self> {
        let v5 = frame.version.is_v5();
        let (mut input, packet_id) = packet_id(body)?;
        let mut properties = SubscribeProperties::default();
        if v5 {
            let (rest, props) = SubscribeProperties::parse(frame, input)?;
            properties = props;
            input = rest;
        }
        if input.is_empty() {
            return fail(input, DecodeErrorKind::NoTopicFilters);
        }
        let mut filters = Vec::new();
        while !input.is_empty() {
            let (rest, filter) = binary_slice(input)?;
            let shared = super::check_filter(filter, v5)?;
            let options_at = rest;
            let (rest, byte) = be_u8(rest)?;
            let reserved = if v5 { 0b1100_0000 } else { 0b1111_1100 };
            if byte & reserved != 0 {
                return fail(options_at, DecodeErrorKind::SubscriptionOptionsReserved);
            }
            let Some(qos) = QoS::from_u8(byte & 0b11) else {
                return fail(options_at, DecodeErrorKind::InvalidRequestedQos);
            };
            let Some(retain_handling) = RetainHandling::from_u8((byte >> 4) & 0b11) else {
                return fail(options_at, DecodeErrorKind::InvalidRetainHandling);
            };
            let no_local = byte & 0b0100 != 0;
            if shared && no_local {
                return fail(options_at, DecodeErrorKind::NoLocalOnSharedSubscription);
            }
            filters.push(SubscribeFilter {
                filter: frame.string(filter),
                options: SubscriptionOptions {
                    qos,
                    no_local,
                    retain_as_published: byte & 0b1000 != 0,
                    retain_handling,
                },
            });
            input = rest;
        }
        Ok((
            input,
            Subscribe {
                packet_id,
                properties,
                filters,
            },
        ))
    }
}
