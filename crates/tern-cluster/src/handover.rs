//! A session on its way between nodes ([`SessionHandover`], the broker
//! core's type) as bytes: the reply to a release request on
//! `tern.s.<node>` (see `link.rs`). Decoded defensively: a peer's bytes may
//! be anything, and a bad one is an error, never a panic; every count is
//! checked against the bytes left before anything is allocated for it.
//!
//! Version 1 (integers big-endian):
//! ```text
//! [1: version = 1]
//! [2: client id length][client id]
//! [4: Session Expiry Interval]
//! [4: subscriptions] each: [2: length][filter][1: options byte (MQTT 5, 3.8.3.1)]
//!                          [4: Subscription Identifier, 0 = none]
//! [4: messages]      each: [1: flags, bit 0 = released][4: length][MQTT 5 PUBLISH]
//! [4: incoming QoS 2] each: [2: packet identifier]
//! [1: will present]  then: [4: seconds left][4: Will Delay Interval + 1, 0 = none]
//!                          [4: length][the will as an MQTT 5 PUBLISH]
//! ```
//! A message's PUBLISH carries its QoS, RETAIN, topic, payload and
//! properties (Subscription Identifiers and what remains of its Message
//! Expiry Interval included); its packet identifier counts only for a
//! released message. Nothing may follow the last field.

use crate::envelope::EnvelopeError;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use tern_broker::{HandedMessage, SessionHandover, StoredSubscription};
use tern_codec::{
    MqttString, Packet, PacketId, ProtocolVersion, Publish, PublishProperties, QoS, RetainHandling,
    SubscriptionId, SubscriptionOptions, Will, WillProperties,
};

const VERSION: u8 = 1;

/// Encodes a session (`None`: no session, the empty payload).
pub fn encode(h: &SessionHandover) -> Result<Bytes, tern_codec::EncodeError> {
    let mut out = BytesMut::new();
    out.put_u8(VERSION);
    put_str(&mut out, h.client_id.as_str().as_bytes());
    out.put_u32(h.expiry_interval);
    out.put_u32(h.subscriptions.len() as u32);
    for (filter, s) in &h.subscriptions {
        put_str(&mut out, filter.as_str().as_bytes());
        out.put_u8(options_byte(s.options));
        out.put_u32(s.subscription_id.map_or(0, SubscriptionId::get));
    }
    out.put_u32(h.messages.len() as u32);
    for m in &h.messages {
        out.put_u8(u8::from(m.released));
        let mut publish = m.publish.clone();
        publish.dup = false;
        if publish.qos == QoS::AtMostOnce {
            publish.packet_id = None;
        } else if publish.packet_id.is_none() || !m.released {
            publish.packet_id = PacketId::new(1);
        }
        put_publish(&mut out, publish)?;
    }
    out.put_u32(h.incoming_qos2.len() as u32);
    for id in &h.incoming_qos2 {
        out.put_u16(id.get());
    }
    match &h.will {
        None => out.put_u8(0),
        Some((will, left)) => {
            out.put_u8(1);
            out.put_u32(*left);
            out.put_u32(
                will.properties
                    .will_delay_interval
                    .map_or(0, |d| d.saturating_add(1)),
            );
            put_publish(&mut out, will_publish(will))?;
        }
    }
    Ok(out.freeze())
}

/// Decodes a session.
pub fn decode(mut b: Bytes) -> Result<SessionHandover, EnvelopeError> {
    if b.first() != Some(&VERSION) {
        return Err(EnvelopeError::Malformed);
    }
    b.advance(1);
    let client_id = get_str(&mut b)?;
    let expiry_interval = get_u32(&mut b)?;
    // Each subscription takes at least 7 bytes, each message 5, each
    // incoming identifier 2: a count past what is left is a lie.
    let n = count(&mut b, 7)?;
    let mut subscriptions = Vec::with_capacity(n);
    for _ in 0..n {
        let filter = get_str(&mut b)?;
        let options = options_from_byte(get_u8(&mut b)?).ok_or(EnvelopeError::Malformed)?;
        let id = get_u32(&mut b)?;
        let subscription_id = match id {
            0 => None,
            id => Some(SubscriptionId::new(id).ok_or(EnvelopeError::Malformed)?),
        };
        subscriptions.push((
            filter,
            StoredSubscription {
                options,
                subscription_id,
            },
        ));
    }
    let n = count(&mut b, 5)?;
    let mut messages = Vec::with_capacity(n);
    for _ in 0..n {
        let flags = get_u8(&mut b)?;
        if flags > 1 {
            return Err(EnvelopeError::Malformed);
        }
        let released = flags == 1;
        let mut publish = get_publish(&mut b)?;
        if released && publish.qos != QoS::ExactlyOnce {
            return Err(EnvelopeError::Malformed);
        }
        if !released {
            publish.packet_id = None;
        }
        messages.push(HandedMessage { publish, released });
    }
    let n = count(&mut b, 2)?;
    let mut incoming_qos2 = Vec::with_capacity(n);
    for _ in 0..n {
        let id = b.get_u16();
        incoming_qos2.push(PacketId::new(id).ok_or(EnvelopeError::Malformed)?);
    }
    let will = match get_u8(&mut b)? {
        0 => None,
        1 => {
            let left = get_u32(&mut b)?;
            let delay = get_u32(&mut b)?.checked_sub(1);
            let publish = get_publish(&mut b)?;
            Some((publish_will(publish, delay), left))
        }
        _ => return Err(EnvelopeError::Malformed),
    };
    if !b.is_empty() {
        return Err(EnvelopeError::Malformed);
    }
    Ok(SessionHandover {
        client_id,
        expiry_interval,
        subscriptions,
        messages,
        incoming_qos2,
        will,
    })
}

fn put_str(out: &mut BytesMut, s: &[u8]) {
    // MQTT strings: at most 65,535 bytes.
    let s = &s[..s.len().min(65_535)];
    out.put_u16(s.len() as u16);
    out.put_slice(s);
}

fn put_publish(out: &mut BytesMut, publish: Publish) -> Result<(), tern_codec::EncodeError> {
    let packet = Packet::Publish(publish);
    let mut body = BytesMut::with_capacity(packet.encoded_len(ProtocolVersion::V5));
    packet.encode(ProtocolVersion::V5, &mut body)?;
    out.put_u32(body.len() as u32);
    out.put_slice(&body);
    Ok(())
}

fn get_u8(b: &mut Bytes) -> Result<u8, EnvelopeError> {
    if b.is_empty() {
        return Err(EnvelopeError::Malformed);
    }
    Ok(b.get_u8())
}

fn get_u32(b: &mut Bytes) -> Result<u32, EnvelopeError> {
    if b.len() < 4 {
        return Err(EnvelopeError::Malformed);
    }
    Ok(b.get_u32())
}

/// A count of items each at least `min` bytes long, checked against what is left.
fn count(b: &mut Bytes, min: usize) -> Result<usize, EnvelopeError> {
    let n = get_u32(b)? as usize;
    if n > b.len() / min {
        return Err(EnvelopeError::Malformed);
    }
    Ok(n)
}

fn get_str(b: &mut Bytes) -> Result<MqttString, EnvelopeError> {
    if b.len() < 2 {
        return Err(EnvelopeError::Malformed);
    }
    let len = usize::from(b.get_u16());
    if b.len() < len {
        return Err(EnvelopeError::Malformed);
    }
    MqttString::from_utf8(b.split_to(len)).map_err(|_| EnvelopeError::Malformed)
}

fn get_publish(b: &mut Bytes) -> Result<Publish, EnvelopeError> {
    let len = get_u32(b)? as usize;
    if b.len() < len {
        return Err(EnvelopeError::Malformed);
    }
    match Packet::decode_exact(b.split_to(len), ProtocolVersion::V5) {
        Ok(Packet::Publish(mut publish)) => {
            publish.dup = false;
            if let Some(p) = publish.properties.get_mut_if_allocated() {
                // A topic alias belongs to one connection, never to a session.
                p.topic_alias = None;
            }
            Ok(publish)
        }
        _ => Err(EnvelopeError::Publish),
    }
}

/// The MQTT 5 Subscription Options byte (3.8.3.1).
fn options_byte(o: SubscriptionOptions) -> u8 {
    o.qos.as_u8()
        | (u8::from(o.no_local) << 2)
        | (u8::from(o.retain_as_published) << 3)
        | ((o.retain_handling as u8) << 4)
}

fn options_from_byte(b: u8) -> Option<SubscriptionOptions> {
    if b & 0xC0 != 0 {
        return None;
    }
    Some(SubscriptionOptions {
        qos: QoS::from_u8(b & 3)?,
        no_local: b & 4 != 0,
        retain_as_published: b & 8 != 0,
        retain_handling: RetainHandling::from_u8((b >> 4) & 3)?,
    })
}

/// A will as the PUBLISH it would be (its delay travels beside it).
fn will_publish(will: &Will) -> Publish {
    let p = &will.properties;
    let properties = PublishProperties {
        payload_format_indicator: p.payload_format_indicator,
        message_expiry_interval: p.message_expiry_interval,
        content_type: p.content_type.clone(),
        response_topic: p.response_topic.clone(),
        correlation_data: p.correlation_data.clone(),
        user_properties: p.user_properties.clone(),
        ..PublishProperties::default()
    };
    Publish {
        dup: false,
        qos: will.qos,
        retain: will.retain,
        topic: will.topic.clone(),
        packet_id: (will.qos != QoS::AtMostOnce)
            .then(|| PacketId::new(1))
            .flatten(),
        properties: if properties == PublishProperties::default() {
            tern_codec::PublishPropertiesBox::new()
        } else {
            properties.into()
        },
        payload: will.payload.clone(),
    }
}

/// The will a PUBLISH stands for, with its Will Delay Interval.
fn publish_will(publish: Publish, delay: Option<u32>) -> Will {
    let p = publish.properties.get();
    Will {
        topic: publish.topic,
        payload: publish.payload,
        qos: publish.qos,
        retain: publish.retain,
        properties: WillProperties {
            will_delay_interval: delay,
            payload_format_indicator: p.payload_format_indicator,
            message_expiry_interval: p.message_expiry_interval,
            content_type: p.content_type.clone(),
            response_topic: p.response_topic.clone(),
            correlation_data: p.correlation_data.clone(),
            user_properties: p.user_properties.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(text: &str) -> MqttString {
        MqttString::from_utf8(Bytes::copy_from_slice(text.as_bytes())).unwrap()
    }

    fn sample() -> SessionHandover {
        let mut queued = Publish::new(s("a/b"), "queued", QoS::AtLeastOnce);
        queued.properties = PublishProperties {
            message_expiry_interval: Some(30),
            subscription_identifiers: vec![SubscriptionId::new(7).unwrap()],
            content_type: Some(s("text/plain")),
            ..PublishProperties::default()
        }
        .into();
        let mut released = Publish::new(s("a/c"), "released", QoS::ExactlyOnce);
        released.packet_id = PacketId::new(9);
        let will = Will {
            topic: s("wills/x"),
            payload: Bytes::from_static(b"gone"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: WillProperties {
                will_delay_interval: Some(60),
                response_topic: Some(s("r")),
                ..WillProperties::default()
            },
        };
        SessionHandover {
            client_id: s("x"),
            expiry_interval: 3600,
            subscriptions: vec![
                (
                    s("a/+"),
                    StoredSubscription {
                        options: SubscriptionOptions {
                            qos: QoS::AtLeastOnce,
                            no_local: true,
                            retain_as_published: true,
                            retain_handling: RetainHandling::DoNotSend,
                        },
                        subscription_id: SubscriptionId::new(7),
                    },
                ),
                (
                    s("$share/g/b/#"),
                    StoredSubscription {
                        options: SubscriptionOptions::with_qos(QoS::ExactlyOnce),
                        subscription_id: None,
                    },
                ),
            ],
            messages: vec![
                HandedMessage {
                    publish: released,
                    released: true,
                },
                HandedMessage {
                    publish: queued,
                    released: false,
                },
                HandedMessage {
                    publish: Publish::new(s("a/d"), "zero", QoS::AtMostOnce),
                    released: false,
                },
            ],
            incoming_qos2: vec![PacketId::new(3).unwrap(), PacketId::new(4).unwrap()],
            will: Some((will, 42)),
        }
    }

    #[test]
    fn a_session_round_trips() {
        let h = sample();
        assert_eq!(decode(encode(&h).unwrap()), Ok(h));
        let empty = SessionHandover {
            client_id: s("y"),
            ..SessionHandover::default()
        };
        assert_eq!(decode(encode(&empty).unwrap()), Ok(empty));
    }

    #[test]
    fn a_short_or_padded_session_is_refused() {
        let bytes = encode(&sample()).unwrap();
        for cut in 0..bytes.len() {
            assert!(decode(bytes.slice(..cut)).is_err(), "cut at {cut}");
        }
        let mut padded = bytes.to_vec();
        padded.push(0);
        assert!(decode(padded.into()).is_err());
        let mut other = bytes.to_vec();
        other[0] = 2;
        assert!(decode(other.into()).is_err(), "an unknown version");
    }

    proptest! {
        /// Any bytes decode to something or an error, never a panic; what
        /// decodes survives encode and decode unchanged.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(h) = decode(bytes.into()) {
                prop_assert_eq!(decode(encode(&h).unwrap()), Ok(h));
            }
        }
    }
}
