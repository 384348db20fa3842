//! CONNECT (MQTT 5.0 §3.1, 3.1.1 §3.1, and 3.1's `MQIsdp` variant).

use super::{Wire, require_no_properties};
use crate::{
    DecodeErrorKind, EncodeError, MqttString, PacketType, ProtocolVersion, QoS,
    primitives::{Frame, PResult, binary_slice, fail, has_wildcard, put_binary, string_slice},
    properties::{ConnectProperties, PropertySet, WillProperties},
};
use bytes::{BufMut, Bytes};
use nom::number::complete::{be_u8, be_u16};

/// CONNECT: the first packet a client sends.
///
/// `protocol` decides the wire format: MQTT 3.1 (`"MQIsdp"`, level 3), 3.1.1
/// (`"MQTT"`, level 4) or 5.0 (`"MQTT"`, level 5). The decoder reads it from
/// the packet itself; the encoder writes this packet's `protocol`, whatever
/// version it is asked to encode for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
pub struct Connect {
    /// The protocol version the client speaks.
    pub protocol: ProtocolVersion,
    /// Clean Session (3.x) or Clean Start (5.0).
    pub clean_start: bool,
    /// Keep alive in seconds; 0 turns the mechanism off.
    pub keep_alive: u16,
    /// MQTT 5 properties; must be empty for 3.x.
    pub properties: ConnectProperties,
    /// The client identifier; may be empty (the server may assign one).
    pub client_id: MqttString,
    /// The Last Will and Testament.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub will: Option<Will>,
    /// The user name.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub username: Option<MqttString>,
    /// The password: binary data.
    #[cfg_attr(
        feature = "serde",
        serde(
            with = "crate::serde_impls::opt_hex",
            skip_serializing_if = "Option::is_none"
        )
    )]
    pub password: Option<Bytes>,
    /// mosquitto's `try_private` bridge convention (MQTT 3.1 and 3.1.1
    /// only): the protocol level is sent with its high bit set (0x83,
    /// 0x84), telling a server that knows the convention that this client
    /// is a bridge, so its subscriptions do not get its own messages back
    /// and keep the retain flag as published. A server that does not know
    /// it refuses the level (return code 1).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "core::ops::Not::not"))]
    pub bridge: bool,
}

impl Connect {
    /// A CONNECT in `protocol` for `client_id`, with Clean Start (Clean
    /// Session in 3.x) set and no keep alive, credentials, will or
    /// properties.
    ///
    /// ```
    /// use tern_codec::{Connect, MqttString, ProtocolVersion};
    ///
    /// let connect = Connect::new(ProtocolVersion::V3_1_1, MqttString::from_static("sensor-1"));
    /// assert!(connect.clean_start);
    /// assert_eq!(connect.keep_alive, 0);
    /// ```
    pub fn new(protocol: ProtocolVersion, client_id: MqttString) -> Self {
        Self {
            protocol,
            clean_start: true,
            client_id,
            ..Self::default()
        }
    }
}

/// A Will Message, published by the server when the connection ends abnormally.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
pub struct Will {
    /// The topic to publish to; a topic name, so no wildcards.
    pub topic: MqttString,
    /// The message.
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_impls::hex"))]
    pub payload: Bytes,
    /// The QoS to publish it at.
    pub qos: QoS,
    /// Whether it is published as a retained message.
    pub retain: bool,
    /// MQTT 5 will properties; must be empty for 3.x.
    pub properties: WillProperties,
}

const RESERVED: u8 = 0b0000_0001;
const CLEAN_START: u8 = 0b0000_0010;
const WILL: u8 = 0b0000_0100;
const WILL_QOS_SHIFT: u8 = 3;
const WILL_QOS_MASK: u8 = 0b0001_1000;
const WILL_RETAIN: u8 = 0b0010_0000;
const PASSWORD: u8 = 0b0100_0000;
const USERNAME: u8 = 0b1000_0000;

/// The protocol level's high bit: mosquitto's `try_private` bridge mark.
const BRIDGE_LEVEL: u8 = 0x80;

/// Reads the protocol name and level: the version and whether the level
/// carries the bridge mark (3.1 and 3.1.1 only), or why it is not
/// supported.
fn protocol(input: &[u8]) -> PResult<'_, (ProtocolVersion, bool)> {
    let (rest, name) = binary_slice(input)?;
    let (after, level) = be_u8(rest)?;
    let version = match (name, level) {
        (b"MQIsdp", 3) => (ProtocolVersion::V3_1, false),
        (b"MQIsdp", 0x83) => (ProtocolVersion::V3_1, true),
        (b"MQTT", 4) => (ProtocolVersion::V3_1_1, false),
        (b"MQTT", 0x84) => (ProtocolVersion::V3_1_1, true),
        (b"MQTT", 5) => (ProtocolVersion::V5, false),
        (b"MQIsdp" | b"MQTT", level) => {
            return fail(rest, DecodeErrorKind::UnsupportedProtocolLevel(level));
        }
        _ => return fail(input, DecodeErrorKind::InvalidProtocolName),
    };
    Ok((after, version))
}

/// The version a CONNECT body asks for, if its protocol name and level are valid.
pub(super) fn peek_version(body: &[u8]) -> Option<ProtocolVersion> {
    protocol(body).ok().map(|(_, (v, _))| v)
}

impl Wire for Connect {
    const TYPE: PacketType = PacketType::Connect;

    fn check(&self, _: ProtocolVersion) -> Result<(), EncodeError> {
        let v = self.protocol;
        require_no_properties(self.properties.is_empty(), v)?;
        self.properties.check()?;
        if self.properties.authentication_data.is_some()
            && self.properties.authentication_method.is_none()
        {
            return Err(EncodeError::AuthDataWithoutMethod);
        }
        if let Some(will) = &self.will {
            require_no_properties(will.properties.is_empty(), v)?;
            will.properties.check()?;
            // The will is published with these properties, and a PUBLISH's
            // Response Topic must not contain wildcards [MQTT-3.3.2-14].
            if will
                .properties
                .response_topic
                .as_ref()
                .is_some_and(|t| has_wildcard(t.as_bytes()))
            {
                return Err(EncodeError::InvalidValue(
                    "Response Topic must not contain wildcards",
                ));
            }
            if has_wildcard(will.topic.as_bytes()) {
                return Err(EncodeError::WildcardInTopicName);
            }
            if will.topic.is_empty() {
                return Err(EncodeError::EmptyTopic);
            }
            if will.payload.len() > usize::from(u16::MAX) {
                return Err(EncodeError::BinaryTooLong);
            }
        }
        if self
            .password
            .as_ref()
            .is_some_and(|p| p.len() > usize::from(u16::MAX))
        {
            return Err(EncodeError::BinaryTooLong);
        }
        if v.is_v5() && self.bridge {
            return Err(EncodeError::NotInVersion {
                what: "the try_private bridge mark",
                version: v,
            });
        }
        if !v.is_v5() && self.password.is_some() && self.username.is_none() {
            return Err(EncodeError::NotInVersion {
                what: "a password without a user name",
                version: v,
            });
        }
        Ok(())
    }

    fn body_len(&self, _: ProtocolVersion) -> usize {
        let v = self.protocol;
        let mut len = 2 + v.protocol_name().len() + 1 + 1 + 2;
        if v.is_v5() {
            len += self.properties.wire_len();
        }
        len += self.client_id.wire_len();
        if let Some(will) = &self.will {
            if v.is_v5() {
                len += will.properties.wire_len();
            }
            len += will.topic.wire_len() + 2 + will.payload.len();
        }
        if let Some(username) = &self.username {
            len += username.wire_len();
        }
        if let Some(password) = &self.password {
            len += 2 + password.len();
        }
        len
    }

    fn write_body<B: BufMut>(&self, _: ProtocolVersion, dst: &mut B) {
        let v = self.protocol;
        put_binary(dst, v.protocol_name().as_bytes());
        dst.put_u8(if self.bridge {
            v.level() | BRIDGE_LEVEL
        } else {
            v.level()
        });
        let mut flags = 0;
        if self.clean_start {
            flags |= CLEAN_START;
        }
        if let Some(will) = &self.will {
            flags |= WILL | (will.qos.as_u8() << WILL_QOS_SHIFT);
            if will.retain {
                flags |= WILL_RETAIN;
            }
        }
        if self.username.is_some() {
            flags |= USERNAME;
        }
        if self.password.is_some() {
            flags |= PASSWORD;
        }
        dst.put_u8(flags);
        dst.put_u16(self.keep_alive);
        if v.is_v5() {
            self.properties.write(dst);
        }
        put_binary(dst, self.client_id.as_bytes());
        if let Some(will) = &self.will {
            if v.is_v5() {
                will.properties.write(dst);
            }
            put_binary(dst, will.topic.as_bytes());
            put_binary(dst, &will.payload);
        }
        if let Some(username) = &self.username {
            put_binary(dst, username.as_bytes());
        }
        if let Some(password) = &self.password {
            put_binary(dst, password);
        }
    }

    fn parse_body<'a>(frame: &Frame<'a>, _flags: u8, body: &'a [u8]) -> PResult<'a, Self> {
        let (input, (version, bridge)) = protocol(body)?;
        let flags_at = input;
        let (input, flags) = be_u8(input)?;
        if flags & RESERVED != 0 {
            return fail(flags_at, DecodeErrorKind::ConnectReservedFlag);
        }
        let will_qos = (flags & WILL_QOS_MASK) >> WILL_QOS_SHIFT;
        let has_will = flags & WILL != 0;
        if !has_will && (will_qos != 0 || flags & WILL_RETAIN != 0) {
            return fail(flags_at, DecodeErrorKind::WillFlagsWithoutWill);
        }
        let Some(will_qos) = QoS::from_u8(will_qos) else {
            return fail(flags_at, DecodeErrorKind::InvalidWillQos);
        };
        if !version.is_v5() && flags & PASSWORD != 0 && flags & USERNAME == 0 {
            return fail(flags_at, DecodeErrorKind::PasswordWithoutUsername);
        }
        let (input, keep_alive) = be_u16(input)?;

        let (input, properties) = if version.is_v5() {
            let at = input;
            let (input, props) = ConnectProperties::parse(frame, input)?;
            if props.authentication_data.is_some() && props.authentication_method.is_none() {
                return fail(at, DecodeErrorKind::AuthDataWithoutMethod);
            }
            (input, props)
        } else {
            (input, ConnectProperties::default())
        };

        let (mut input, client_id) = string_slice(input)?;
        let mut will = None;
        if has_will {
            let (rest, will_properties) = if version.is_v5() {
                let (rest, props) = WillProperties::parse(frame, input)?;
                // Published as a PUBLISH, so [MQTT-3.3.2-14] applies.
                if props
                    .response_topic
                    .as_ref()
                    .is_some_and(|t| has_wildcard(t.as_bytes()))
                {
                    return fail(
                        input,
                        DecodeErrorKind::InvalidPropertyValue(crate::PropertyId::ResponseTopic),
                    );
                }
                (rest, props)
            } else {
                (input, WillProperties::default())
            };
            let topic_at = rest;
            let (rest, topic) = string_slice(rest)?;
            if has_wildcard(topic) {
                return fail(topic_at, DecodeErrorKind::WildcardInTopicName);
            }
            if topic.is_empty() {
                return fail(topic_at, DecodeErrorKind::EmptyTopic);
            }
            let (rest, payload) = binary_slice(rest)?;
            will = Some(Will {
                topic: frame.string(topic),
                payload: frame.share(payload),
                qos: will_qos,
                retain: flags & WILL_RETAIN != 0,
                properties: will_properties,
            });
            input = rest;
        }
        let mut username = None;
        if flags & USERNAME != 0 {
            let (rest, name) = string_slice(input)?;
            username = Some(frame.string(name));
            input = rest;
        }
        let mut password = None;
        if flags & PASSWORD != 0 {
            let (rest, pass) = binary_slice(input)?;
            password = Some(frame.share(pass));
            input = rest;
        }
        Ok((
            input,
            Connect {
                protocol: version,
                clean_start: flags & CLEAN_START != 0,
                keep_alive,
                properties,
                client_id: frame.string(client_id),
                will,
                username,
                password,
                bridge,
            },
        ))
    }
}
