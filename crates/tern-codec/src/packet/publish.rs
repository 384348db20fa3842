//! PUBLISH (MQTT 5.0 §3.3, 3.1.1 §3.3).

use super::{Wire, put_fixed_header, remaining_length, require_no_properties};
use crate::{
    DecodeError, DecodeErrorKind, EncodeError, FixedHeader, MqttString, PacketId, PacketType,
    ProtocolVersion, QoS,
    primitives::{Frame, PResult, fail, has_wildcard, packet_id, put_binary, topic_slice},
    properties::{PropertySet, PublishProperties, PublishPropertiesBox},
    varint::{put_varint, varint_len},
};
use alloc::boxed::Box;
use bytes::{Buf, BufMut, Bytes};

/// PUBLISH: an application message, in either direction.
///
/// `packet_id` is present exactly when `qos` is 1 or 2; the decoder
/// guarantees it and the encoder insists on it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
pub struct Publish {
    /// Re-delivery of an earlier attempt (QoS 1 and 2 only) [MQTT-3.3.1-2].
    pub dup: bool,
    /// The quality of service of this delivery.
    pub qos: QoS,
    /// Whether the message is (or was published as) retained.
    pub retain: bool,
    /// The topic name; may be empty in MQTT 5 when a Topic Alias stands for it.
    pub topic: MqttString,
    /// The packet identifier, present exactly at QoS 1 and 2.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub packet_id: Option<PacketId>,
    /// MQTT 5 properties; must be empty for 3.x. Behind one pointer,
    /// allocated only when a property is set; reads and writes go through
    /// it like a plain field (see [`PublishPropertiesBox`]).
    pub properties: PublishPropertiesBox,
    /// The application message, shared with the buffer it was read from.
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_impls::hex"))]
    pub payload: Bytes,
}

impl Publish {
    /// A message on `topic` at `qos`, not retained, without properties or
    /// a packet identifier: a session (tern-session, tern-client) assigns
    /// one at QoS 1 and 2; set [`packet_id`](Self::packet_id) yourself to
    /// encode one with the codec alone.
    ///
    /// ```
    /// use tern_codec::{MqttString, Publish, QoS};
    ///
    /// let publish = Publish::new(MqttString::from_static("a/b"), "hi", QoS::AtLeastOnce);
    /// assert_eq!(publish.payload, "hi");
    /// assert_eq!(publish.packet_id, None);
    /// ```
    pub fn new(topic: MqttString, payload: impl Into<Bytes>, qos: QoS) -> Self {
        Self {
            topic,
            payload: payload.into(),
            qos,
            ..Self::default()
        }
    }

    /// The MQTT 5 properties; an empty set (allocating nothing) when there
    /// are none.
    #[inline]
    pub fn properties(&self) -> &PublishProperties {
        self.properties.get()
    }

    /// The MQTT 5 properties to change, allocated on first use.
    #[inline]
    pub fn properties_mut(&mut self) -> &mut PublishProperties {
        self.properties.get_mut()
    }

    /// Replaces the MQTT 5 properties; an empty set allocates nothing.
    ///
    /// ```
    /// use tern_codec::{MqttString, Publish, PublishProperties};
    ///
    /// let publish = Publish {
    ///     topic: MqttString::from_static("a/b"),
    ///     ..Publish::default()
    /// }
    /// .with_properties(PublishProperties {
    ///     message_expiry_interval: Some(60),
    ///     ..PublishProperties::default()
    /// });
    /// assert_eq!(publish.properties().message_expiry_interval, Some(60));
    /// ```
    #[must_use]
    pub fn with_properties(mut self, properties: PublishProperties) -> Self {
        self.properties = properties.into();
        self
    }

    /// Writes the whole packet except the payload: the fixed header (whose
    /// Remaining Length counts the payload), the topic, the packet
    /// identifier and the properties. Writing [`payload`](Self::payload)
    /// right after it gives exactly what [`encode`](Self::encode) writes, so
    /// a server can send one payload `Bytes` to many subscribers without
    /// copying it into each connection's buffer. [`encoded_len`](Self::encoded_len)
    /// still counts the payload. Writes nothing and returns an error if the
    /// packet breaks the specification for `version`.
    ///
    /// ```
    /// use bytes::BufMut;
    /// use tern_codec::{MqttString, ProtocolVersion, Publish};
    ///
    /// let publish = Publish {
    ///     topic: MqttString::from_static("a/b"),
    ///     payload: bytes::Bytes::from_static(b"hello"),
    ///     ..Publish::default()
    /// };
    /// let mut header = Vec::new();
    /// publish.encode_header(ProtocolVersion::V5, &mut header)?;
    /// header.put_slice(&publish.payload);
    /// let mut whole = Vec::new();
    /// publish.encode(ProtocolVersion::V5, &mut whole)?;
    /// assert_eq!(header, whole);
    /// # Ok::<(), tern_codec::EncodeError>(())
    /// ```
    pub fn encode_header<B: BufMut>(
        &self,
        version: ProtocolVersion,
        dst: &mut B,
    ) -> Result<(), EncodeError> {
        put_fixed_header(self, version, dst)?;
        self.write_variable_header(version, dst);
        Ok(())
    }

    /// The topic, the packet identifier and (MQTT 5) the properties.
    fn write_variable_header<B: BufMut>(&self, version: ProtocolVersion, dst: &mut B) {
        put_binary(dst, self.topic.as_bytes());
        if let Some(id) = self.packet_id {
            dst.put_u16(id.get());
        }
        if version.is_v5() {
            self.properties.write(dst);
        }
    }
}

const DUP: u8 = 0b1000;
const QOS_SHIFT: u8 = 1;
const RETAIN: u8 = 0b0001;

impl Wire for Publish {
    const TYPE: PacketType = PacketType::Publish;

    fn flags(&self) -> u8 {
        let mut flags = self.qos.as_u8() << QOS_SHIFT;
        if self.dup {
            flags |= DUP;
        }
        if self.retain {
            flags |= RETAIN;
        }
        flags
    }

    fn check(&self, version: ProtocolVersion) -> Result<(), EncodeError> {
        if (self.qos == QoS::AtMostOnce) != self.packet_id.is_none() {
            return Err(EncodeError::PacketIdMismatch);
        }
        if self.dup && self.qos == QoS::AtMostOnce {
            return Err(EncodeError::DupWithQos0);
        }
        if has_wildcard(self.topic.as_bytes()) {
            return Err(EncodeError::WildcardInTopicName);
        }
        if self.topic.is_empty() && self.properties.topic_alias.is_none() {
            return Err(EncodeError::EmptyTopic);
        }
        if !self.properties.is_empty() {
            require_no_properties(false, version)?;
            self.properties.check()?;
            if self
                .properties
                .response_topic
                .as_ref()
                .is_some_and(|t| has_wildcard(t.as_bytes()))
            {
                return Err(EncodeError::InvalidValue(
                    "Response Topic must not contain wildcards",
                ));
            }
        }
        Ok(())
    }

    fn body_len(&self, version: ProtocolVersion) -> usize {
        let mut len = self.topic.wire_len() + self.payload.len();
        if self.packet_id.is_some() {
            len += 2;
        }
        if version.is_v5() {
            len += self.properties.wire_len();
        }
        len
    }

    fn write_body<B: BufMut>(&self, version: ProtocolVersion, dst: &mut B) {
        self.write_variable_header(version, dst);
        dst.put_slice(&self.payload);
    }

    /// Sizes the properties once: `body_len` and `write_body` would each do it.
    #[inline]
    fn encode_into<B: BufMut>(
        &self,
        version: ProtocolVersion,
        dst: &mut B,
    ) -> Result<(), EncodeError> {
        self.check(version)?;
        let props_len = if version.is_v5() && self.properties.is_allocated() {
            self.properties.body_len()
        } else {
            0
        };
        let mut body = self.topic.wire_len() + self.payload.len();
        if self.packet_id.is_some() {
            body += 2;
        }
        if version.is_v5() {
            body += varint_len(u32::try_from(props_len).unwrap_or(u32::MAX)) + props_len;
        }
        let body = remaining_length(body)?;
        dst.put_u8(((Self::TYPE as u8) << 4) | self.flags());
        put_varint(dst, body);
        put_binary(dst, self.topic.as_bytes());
        if let Some(id) = self.packet_id {
            dst.put_u16(id.get());
        }
        if version.is_v5() {
            // props_len <= body <= VARINT_MAX, so it fits.
            put_varint(dst, props_len as u32);
            self.properties.write_body(dst);
        }
        dst.put_slice(&self.payload);
        Ok(())
    }

    fn parse_body<'a>(frame: &Frame<'a>, flags: u8, body: &'a [u8]) -> PResult<'a, Self> {
        let (payload, mut publish) = parse_head(frame, flags, body)?;
        publish.payload = frame.share(payload);
        Ok((&payload[payload.len()..], publish))
    }
}

/// Parses everything but the payload, which is returned as the rest of the
/// input; the returned packet's payload is empty.
#[inline(always)]
fn parse_head<'a>(frame: &Frame<'a>, flags: u8, body: &'a [u8]) -> PResult<'a, Publish> {
    // The flags sit in the first byte, one before the body.
    let header = &frame.bytes[..1];
    let Some(qos) = QoS::from_u8((flags >> QOS_SHIFT) & 0b11) else {
        return fail(header, DecodeErrorKind::InvalidPublishQos);
    };
    let dup = flags & DUP != 0;
    if dup && qos == QoS::AtMostOnce {
        return fail(header, DecodeErrorKind::DupWithQos0);
    }
    let (input, (topic, wildcard)) = topic_slice(body)?;
    if wildcard {
        return fail(body, DecodeErrorKind::WildcardInTopicName);
    }
    let (input, packet_id) = if qos == QoS::AtMostOnce {
        (input, None)
    } else {
        let (input, id) = packet_id(input)?;
        (input, Some(id))
    };
    let (payload, properties) = if frame.version.is_v5() {
        let at = input;
        let (rest, block) = crate::properties::block(input)?;
        if block.is_empty() {
            (rest, PublishPropertiesBox::new())
        } else {
            // Straight into the box: the set is not moved after parsing.
            let mut props = Box::<PublishProperties>::default();
            props
                .parse_block_into(frame, block)
                .map_err(nom::Err::Failure)?;
            if props
                .response_topic
                .as_ref()
                .is_some_and(|t| has_wildcard(t.as_bytes()))
            {
                return fail(
                    at,
                    DecodeErrorKind::InvalidPropertyValue(crate::PropertyId::ResponseTopic),
                );
            }
            (rest, PublishPropertiesBox::from(props))
        }
    } else {
        (input, PublishPropertiesBox::new())
    };
    if topic.is_empty() && properties.topic_alias.is_none() {
        return fail(body, DecodeErrorKind::EmptyTopic);
    }
    Ok((
        payload,
        Publish {
            dup,
            qos,
            retain: flags & RETAIN != 0,
            topic: frame.string(topic),
            packet_id,
            properties,
            payload: Bytes::new(),
        },
    ))
}

/// Decodes a whole PUBLISH frame, handing the frame's own reference to the
/// payload: one reference count operation fewer than slicing it, on the
/// hottest path of a broker. The frame is borrowed mutably rather than moved
/// in, so it is not copied while its parts are still being stored.
#[inline(always)]
pub(super) fn decode_owned(
    frame: &mut Bytes,
    header: &FixedHeader,
    version: ProtocolVersion,
) -> Result<Publish, DecodeError> {
    let (payload_at, mut publish) = {
        let view = Frame {
            bytes: frame,
            version,
        };
        let body = &frame[header.header_len..];
        let (payload, publish) =
            parse_head(&view, header.flags, body).map_err(|e| view.error(e))?;
        (view.offset_of(payload), publish)
    };
    if payload_at < frame.len() {
        frame.advance(payload_at);
        publish.payload = core::mem::take(frame);
    }
    Ok(publish)
}
