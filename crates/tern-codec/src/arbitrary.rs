//! Valid-by-construction packets for fuzzing and property tests.
//!
//! [`arbitrary_packet`] turns fuzzer bytes into a packet that the encoder
//! accepts for the given version, so `decode(encode(p)) == p` can be checked
//! on every input.

use crate::{
    Auth, ConnAck, Connect, Disconnect, MqttString, Packet, PacketId, PacketType, PayloadFormat,
    ProtocolVersion, PubAck, PubComp, PubRec, PubRel, Publish, QoS, ReasonCode, RetainHandling,
    SubAck, Subscribe, SubscribeFilter, SubscriptionId, SubscriptionOptions, UnsubAck, Unsubscribe,
    UserProperty, Will,
    properties::{
        AckProperties, AuthProperties, ConnAckProperties, ConnectProperties, DisconnectProperties,
        PublishProperties, SubscribeProperties, UnsubscribeProperties, WillProperties,
    },
};
use alloc::{string::String, vec::Vec};
use arbitrary::{Arbitrary, Result, Unstructured};
use bytes::Bytes;
use core::num::{NonZeroU16, NonZeroU32};

/// Generation of one property or field value.
pub(crate) trait ArbValue: Sized {
    fn arb(u: &mut Unstructured<'_>) -> Result<Self>;
}

macro_rules! arb_via_arbitrary {
    ($($ty:ty),*) => {$(
        impl ArbValue for $ty {
            fn arb(u: &mut Unstructured<'_>) -> Result<Self> {
                u.arbitrary()
            }
        }
    )*};
}

arb_via_arbitrary!(bool, u16, u32);

impl ArbValue for NonZeroU16 {
    fn arb(u: &mut Unstructured<'_>) -> Result<Self> {
        Ok(NonZeroU16::new(u.int_in_range(1..=u16::MAX)?).unwrap_or(NonZeroU16::MIN))
    }
}

impl ArbValue for NonZeroU32 {
    fn arb(u: &mut Unstructured<'_>) -> Result<Self> {
        Ok(NonZeroU32::new(u.int_in_range(1..=u32::MAX)?).unwrap_or(NonZeroU32::MIN))
    }
}

/// As the Maximum QoS property: 0 or 1 only.
impl ArbValue for QoS {
    fn arb(u: &mut Unstructured<'_>) -> Result<Self> {
        Ok(if u.arbitrary()? {
            QoS::AtLeastOnce
        } else {
            QoS::AtMostOnce
        })
    }
}

impl ArbValue for PayloadFormat {
    fn arb(u: &mut Unstructured<'_>) -> Result<Self> {
        Ok(if u.arbitrary()? {
            PayloadFormat::Utf8
        } else {
            PayloadFormat::Unspecified
        })
    }
}

impl ArbValue for SubscriptionId {
    fn arb(u: &mut Unstructured<'_>) -> Result<Self> {
        let v = u.int_in_range(1..=SubscriptionId::MAX)?;
        Ok(SubscriptionId::new(v).unwrap_or(SubscriptionId::new(1).expect("1 is valid")))
    }
}

impl ArbValue for MqttString {
    fn arb(u: &mut Unstructured<'_>) -> Result<Self> {
        let s: String = u.arbitrary()?;
        let s: String = s.chars().filter(|&c| c != '\0').take(256).collect();
        Ok(MqttString::try_from(s).unwrap_or_default())
    }
}

impl ArbValue for Bytes {
    fn arb(u: &mut Unstructured<'_>) -> Result<Self> {
        let len = u.int_in_range(0..=512)?;
        Ok(Bytes::copy_from_slice(u.bytes(len.min(u.len()))?))
    }
}

impl ArbValue for UserProperty {
    fn arb(u: &mut Unstructured<'_>) -> Result<Self> {
        Ok(UserProperty {
            key: MqttString::arb(u)?,
            value: MqttString::arb(u)?,
        })
    }
}

/// A short vector of generated values.
impl<T: ArbValue> ArbValue for Vec<T> {
    fn arb(u: &mut Unstructured<'_>) -> Result<Self> {
        arb_vec(u, T::arb)
    }
}

impl ArbValue for crate::UserProperties {
    fn arb(u: &mut Unstructured<'_>) -> Result<Self> {
        arb_vec(u, UserProperty::arb).map(Self::from)
    }
}

pub(crate) fn arb_vec<T>(
    u: &mut Unstructured<'_>,
    mut f: impl FnMut(&mut Unstructured<'_>) -> Result<T>,
) -> Result<Vec<T>> {
    let n = u.int_in_range(0..=3u8)?;
    (0..n).map(|_| f(u)).collect()
}

/// A topic name: no wildcards, at least one character.
fn topic_name(u: &mut Unstructured<'_>) -> Result<MqttString> {
    let s: String = MqttString::arb(u)?
        .chars()
        .filter(|&c| c != '+' && c != '#')
        .collect();
    let s = if s.is_empty() { String::from("t") } else { s };
    Ok(MqttString::try_from(s).unwrap_or_else(|_| MqttString::from_static("t")))
}

fn packet_id(u: &mut Unstructured<'_>) -> Result<PacketId> {
    NonZeroU16::arb(u)
}

fn qos(u: &mut Unstructured<'_>) -> Result<QoS> {
    Ok(match u.int_in_range(0..=2u8)? {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    })
}

/// A reason code defined for `packet`, limited to Success for 3.x packets
/// that carry none.
fn reason(u: &mut Unstructured<'_>, packet: PacketType, v5: bool) -> Result<ReasonCode> {
    if !v5 {
        return Ok(ReasonCode::Success);
    }
    let valid: Vec<ReasonCode> = (0..=255u8)
        .filter_map(ReasonCode::from_u8)
        .filter(|c| c.is_valid_for(packet))
        .collect();
    Ok(*u.choose(&valid)?)
}

fn props<'a, T: Arbitrary<'a> + Default>(u: &mut Unstructured<'a>, v5: bool) -> Result<T> {
    if v5 { u.arbitrary() } else { Ok(T::default()) }
}

fn ack_props(u: &mut Unstructured<'_>, v5: bool) -> Result<AckProperties> {
    props(u, v5)
}

/// Generates a packet that is valid, and encodable, in `version`.
pub fn arbitrary_packet(u: &mut Unstructured<'_>, version: ProtocolVersion) -> Result<Packet> {
    let v5 = version.is_v5();
    let kinds: &[u8] = if v5 {
        &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]
    } else {
        &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]
    };
    Ok(match *u.choose(kinds)? {
        1 => connect(u, version)?.into(),
        2 => connack(u, version)?.into(),
        3 => Packet::Publish(publish(u, v5)?),
        4 => Packet::PubAck(PubAck {
            packet_id: packet_id(u)?,
            reason_code: reason(u, PacketType::PubAck, v5)?,
            properties: ack_props(u, v5)?,
        }),
        5 => Packet::PubRec(PubRec {
            packet_id: packet_id(u)?,
            reason_code: reason(u, PacketType::PubRec, v5)?,
            properties: ack_props(u, v5)?,
        }),
        6 => Packet::PubRel(PubRel {
            packet_id: packet_id(u)?,
            reason_code: reason(u, PacketType::PubRel, v5)?,
            properties: ack_props(u, v5)?,
        }),
        7 => Packet::PubComp(PubComp {
            packet_id: packet_id(u)?,
            reason_code: reason(u, PacketType::PubComp, v5)?,
            properties: ack_props(u, v5)?,
        }),
        8 => Packet::Subscribe(Subscribe {
            packet_id: packet_id(u)?,
            properties: props::<SubscribeProperties>(u, v5)?,
            filters: {
                let mut filters = arb_vec(u, |u| subscribe_filter(u, v5))?;
                if filters.is_empty() {
                    filters.push(subscribe_filter(u, v5)?);
                }
                filters
            },
        }),
        9 => Packet::SubAck(SubAck {
            packet_id: packet_id(u)?,
            properties: ack_props(u, v5)?,
            reason_codes: {
                let mut code = |u: &mut Unstructured<'_>| {
                    let code = reason(u, PacketType::SubAck, true)?;
                    // 3.x has one failure code; it decodes as Unspecified error.
                    Ok(if !v5 && code.is_error() {
                        ReasonCode::UnspecifiedError
                    } else {
                        code
                    })
                };
                // At least one: one per filter of the SUBSCRIBE.
                let mut codes = arb_vec(u, &mut code)?;
                if codes.is_empty() {
                    codes.push(code(u)?);
                }
                codes
            },
        }),
        10 => Packet::Unsubscribe(Unsubscribe {
            packet_id: packet_id(u)?,
            properties: props::<UnsubscribeProperties>(u, v5)?,
            filters: {
                let mut filters = arb_vec(u, |u| Ok(filter_string(u, v5)?.0))?;
                if filters.is_empty() {
                    filters.push(filter_string(u, v5)?.0);
                }
                filters
            },
        }),
        11 => Packet::UnsubAck(UnsubAck {
            packet_id: packet_id(u)?,
            properties: ack_props(u, v5)?,
            reason_codes: if v5 {
                let mut codes = arb_vec(u, |u| reason(u, PacketType::UnsubAck, true))?;
                if codes.is_empty() {
                    codes.push(reason(u, PacketType::UnsubAck, true)?);
                }
                codes
            } else {
                Vec::new()
            },
        }),
        12 => Packet::PingReq,
        13 => Packet::PingResp,
        14 => Disconnect {
            reason_code: reason(u, PacketType::Disconnect, v5)?,
            properties: props::<DisconnectProperties>(u, v5)?,
        }
        .into(),
        _ => Packet::from({
            let mut auth = Auth {
                reason_code: reason(u, PacketType::Auth, true)?,
                properties: u.arbitrary::<AuthProperties>()?,
            };
            if auth.properties.authentication_data.is_some() {
                auth.properties
                    .authentication_method
                    .get_or_insert_with(|| MqttString::from_static("m"));
            }
            auth
        }),
    })
}

/// A topic filter the decoder accepts in this version, and whether it is a
/// shared subscription (MQTT 5 only): an arbitrary string when it happens to
/// be one, or one built from levels with wildcards where they may stand.
fn filter_string(u: &mut Unstructured<'_>, v5: bool) -> Result<(MqttString, bool)> {
    let check = |s: &MqttString| {
        if v5 {
            tern_topic::validate_subscription_filter(s.as_bytes())
        } else {
            tern_topic::validate_topic_filter(s.as_bytes()).map(|()| false)
        }
    };
    let s = MqttString::arb(u)?;
    if let Ok(shared) = check(&s) {
        return Ok((s, shared));
    }
    let mut text = String::new();
    let shared = v5 && u.ratio(1, 4)?;
    if shared {
        text.push_str("$share/");
        text.push_str(&level(u)?);
        text.push('/');
    }
    for i in 0..u.int_in_range(1..=4)? {
        if i > 0 {
            text.push('/');
        }
        match u.int_in_range(0..=3)? {
            0 => text.push('+'),
            _ => text.push_str(&level(u)?),
        }
    }
    if u.arbitrary()? {
        text.push_str("/#");
    }
    let filter = MqttString::try_from(text).unwrap_or_else(|_| MqttString::from_static("#"));
    // A plain filter whose first level is `$share` reads as a shared one in
    // MQTT 5 (a generated level can be "$share"): keep only what the
    // decoder accepts.
    match check(&filter) {
        Ok(shared) => Ok((filter, shared)),
        Err(_) => Ok((MqttString::from_static("#"), false)),
    }
}

/// A non-empty topic level without separators or wildcards.
fn level(u: &mut Unstructured<'_>) -> Result<String> {
    let s: String = topic_name(u)?.chars().filter(|&c| c != '/').collect();
    Ok(if s.is_empty() { String::from("l") } else { s })
}

fn subscribe_filter(u: &mut Unstructured<'_>, v5: bool) -> Result<SubscribeFilter> {
    let qos = qos(u)?;
    let (filter, shared) = filter_string(u, v5)?;
    let options = if v5 {
        SubscriptionOptions {
            qos,
            // No Local on a shared subscription is a protocol error [MQTT-3.8.3-4].
            no_local: !shared && u.arbitrary()?,
            retain_as_published: u.arbitrary()?,
            retain_handling: *u.choose(&[
                RetainHandling::SendAtSubscribe,
                RetainHandling::SendAtSubscribeIfNew,
                RetainHandling::DoNotSend,
            ])?,
        }
    } else {
        SubscriptionOptions::with_qos(qos)
    };
    Ok(SubscribeFilter { filter, options })
}

fn connect(u: &mut Unstructured<'_>, version: ProtocolVersion) -> Result<Connect> {
    let v5 = version.is_v5();
    let mut properties: ConnectProperties = props(u, v5)?;
    if properties.authentication_data.is_some() {
        properties
            .authentication_method
            .get_or_insert_with(|| MqttString::from_static("m"));
    }
    let will = if u.arbitrary()? {
        let mut properties: WillProperties = props(u, v5)?;
        if let Some(t) = &mut properties.response_topic {
            *t = topic_name(u)?;
        }
        Some(Will {
            topic: topic_name(u)?,
            payload: Bytes::arb(u)?,
            qos: qos(u)?,
            retain: u.arbitrary()?,
            properties,
        })
    } else {
        None
    };
    let username = if u.arbitrary()? {
        Some(MqttString::arb(u)?)
    } else {
        None
    };
    // 3.x forbids a password without a user name.
    let password = if (v5 || username.is_some()) && u.arbitrary()? {
        Some(Bytes::arb(u)?)
    } else {
        None
    };
    Ok(Connect {
        protocol: version,
        clean_start: u.arbitrary()?,
        keep_alive: u.arbitrary()?,
        properties,
        client_id: MqttString::arb(u)?,
        will,
        username,
        password,
        bridge: !v5 && u.arbitrary()?,
    })
}

fn connack(u: &mut Unstructured<'_>, version: ProtocolVersion) -> Result<ConnAck> {
    let v5 = version.is_v5();
    let reason_code = if v5 {
        reason(u, PacketType::ConnAck, true)?
    } else {
        ReasonCode::from_v3_connack(u.int_in_range(0..=5)?).unwrap_or_default()
    };
    let mut properties: ConnAckProperties = props(u, v5)?;
    if properties.authentication_data.is_some() {
        properties
            .authentication_method
            .get_or_insert_with(|| MqttString::from_static("m"));
    }
    Ok(ConnAck {
        session_present: version != ProtocolVersion::V3_1
            && reason_code.is_success()
            && u.arbitrary()?,
        reason_code,
        properties,
    })
}

fn publish(u: &mut Unstructured<'_>, v5: bool) -> Result<Publish> {
    let qos = qos(u)?;
    let mut properties: PublishProperties = props(u, v5)?;
    if properties.response_topic.is_some() {
        properties.response_topic = Some(topic_name(u)?);
    }
    // With a Topic Alias (MQTT 5) the topic name may be empty.
    let topic = if properties.topic_alias.is_some() && u.arbitrary()? {
        MqttString::new()
    } else {
        topic_name(u)?
    };
    Ok(Publish {
        dup: qos != QoS::AtMostOnce && u.arbitrary()?,
        qos,
        retain: u.arbitrary()?,
        topic,
        packet_id: if qos == QoS::AtMostOnce {
            None
        } else {
            Some(packet_id(u)?)
        },
        properties: properties.into(),
        payload: Bytes::arb(u)?,
    })
}

impl<'a> Arbitrary<'a> for Packet {
    /// A packet valid in MQTT 5.0, the superset version.
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        arbitrary_packet(u, ProtocolVersion::V5)
    }
}

impl<'a> Arbitrary<'a> for ProtocolVersion {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(*u.choose(&ProtocolVersion::ALL)?)
    }
}
