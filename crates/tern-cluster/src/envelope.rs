//! What travels over NATS: a message with its origin, and a node's
//! interest. Both are small binary formats decoded defensively: a peer's
//! bytes may be anything, and a bad one is dropped and counted, never a
//! panic.
//!
//! Message (on `tern.m.<topic>` / `tern.r.<topic>`):
//! `[1: version = 1][1: origin length][origin][8: incarnation][8: sequence]`
//! (integers big-endian)
//! then the message as an MQTT 5 PUBLISH packet (tern-codec encodes and
//! decodes it, so every property travels as MQTT defines it). The origin
//! keeps a node from taking its own messages back; the origin's sequence
//! lets a node that holds several overlapping subscriptions (`a/+` and
//! `a/#`) take each message once.
//!
//! Interest (on `tern.i.<node>`): `[1: version = 1][8: generation]`
//! `[4: count]` then per filter `[2: length][filter]`: the node's whole
//! interest, so a lost or reordered announcement is mended by the next.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tern_codec::{Packet, ProtocolVersion, Publish};

const VERSION: u8 = 1;

/// A message as it travels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The node it was published on.
    pub origin: String,
    /// The origin's run (its start time): a restarted node numbers anew.
    pub incarnation: u64,
    /// Its number among that node's messages.
    pub seq: u64,
    /// The message (no packet identifier).
    pub publish: Publish,
}

/// Why a payload was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvelopeError {
    /// Too short, an unknown version, or not UTF-8.
    Malformed,
    /// The PUBLISH inside does not decode.
    Publish,
}

impl Envelope {
    /// Encodes it.
    pub fn encode(&self) -> Result<Bytes, tern_codec::EncodeError> {
        let mut publish = self.publish.clone();
        publish.dup = false;
        publish.packet_id = (publish.qos != tern_codec::QoS::AtMostOnce)
            .then(|| tern_codec::PacketId::new(1))
            .flatten();
        let packet = Packet::Publish(publish);
        let origin = self.origin.as_bytes();
        let mut out =
            BytesMut::with_capacity(18 + origin.len() + packet.encoded_len(ProtocolVersion::V5));
        out.put_u8(VERSION);
        out.put_u8(origin.len().min(255) as u8);
        out.put_slice(&origin[..origin.len().min(255)]);
        out.put_u64(self.incarnation);
        out.put_u64(self.seq);
        packet.encode(ProtocolVersion::V5, &mut out)?;
        Ok(out.freeze())
    }

    /// Decodes a payload.
    pub fn decode(mut bytes: Bytes) -> Result<Self, EnvelopeError> {
        if bytes.len() < 2 || bytes[0] != VERSION {
            return Err(EnvelopeError::Malformed);
        }
        let len = usize::from(bytes[1]);
        bytes.advance(2);
        if bytes.len() < len + 16 {
            return Err(EnvelopeError::Malformed);
        }
        let origin = std::str::from_utf8(&bytes[..len])
            .map_err(|_| EnvelopeError::Malformed)?
            .to_string();
        bytes.advance(len);
        let incarnation = bytes.get_u64();
        let seq = bytes.get_u64();
        match Packet::decode_exact(bytes, ProtocolVersion::V5) {
            Ok(Packet::Publish(mut publish)) => {
                // Hop-by-hop fields: a message from the cluster is a new
                // message on this node [MQTT-3.3.1-3], as `encode` writes it.
                publish.packet_id = None;
                publish.dup = false;
                Ok(Envelope {
                    origin,
                    incarnation,
                    seq,
                    publish,
                })
            }
            _ => Err(EnvelopeError::Publish),
        }
    }
}

/// A node's whole interest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Interest {
    /// Higher is newer (per node; a restarted node starts again from 1 and
    /// is recognised by its silence first, see `link.rs`).
    pub generation: u64,
    /// Its distinct filters.
    pub filters: Vec<String>,
}

impl Interest {
    /// Encodes it.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        out.put_u8(VERSION);
        out.put_u64(self.generation);
        out.put_u32(self.filters.len() as u32);
        for f in &self.filters {
            // Filters are MQTT strings: at most 65,535 bytes.
            let b = &f.as_bytes()[..f.len().min(65_535)];
            out.put_u16(b.len() as u16);
            out.put_slice(b);
        }
        out.freeze()
    }

    /// Decodes a payload.
    pub fn decode(mut bytes: Bytes) -> Result<Self, EnvelopeError> {
        if bytes.len() < 13 || bytes[0] != VERSION {
            return Err(EnvelopeError::Malformed);
        }
        bytes.advance(1);
        let generation = bytes.get_u64();
        let count = bytes.get_u32() as usize;
        // Each filter takes at least 2 bytes: a count past that is a lie.
        if count > bytes.len() / 2 {
            return Err(EnvelopeError::Malformed);
        }
        let mut filters = Vec::with_capacity(count);
        for _ in 0..count {
            if bytes.len() < 2 {
                return Err(EnvelopeError::Malformed);
            }
            let len = usize::from(bytes.get_u16());
            if bytes.len() < len {
                return Err(EnvelopeError::Malformed);
            }
            let f = std::str::from_utf8(&bytes[..len]).map_err(|_| EnvelopeError::Malformed)?;
            filters.push(f.to_string());
            bytes.advance(len);
        }
        if !bytes.is_empty() {
            return Err(EnvelopeError::Malformed);
        }
        Ok(Interest {
            generation,
            filters,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tern_codec::{MqttString, PublishProperties, QoS};

    proptest! {
        #[test]
        fn a_message_round_trips(
            origin in "[a-z0-9-]{1,20}",
            seq in any::<u64>(),
            incarnation in any::<u64>(),
            topic in "[a-z/]{1,20}",
            payload in prop::collection::vec(any::<u8>(), 0..64),
            qos in 0u8..3,
            retain in any::<bool>(),
            content_type in prop::option::of("[a-z/]{1,10}"),
        ) {
            let mut publish = Publish {
                qos: QoS::from_u8(qos).unwrap(),
                retain,
                topic: MqttString::from_utf8(topic.into()).unwrap(),
                payload: payload.into(),
                ..Publish::default()
            };
            if let Some(ct) = content_type {
                publish = publish.with_properties(PublishProperties {
                    content_type: Some(MqttString::from_utf8(ct.into()).unwrap()),
                    ..PublishProperties::default()
                });
            }
            let e = Envelope { origin, incarnation, seq, publish };
            prop_assert_eq!(Envelope::decode(e.encode().unwrap()), Ok(e));
        }

        #[test]
        fn interest_round_trips(generation in any::<u64>(), filters in prop::collection::vec("[a-z/+#]{0,12}", 0..8)) {
            let i = Interest { generation, filters };
            prop_assert_eq!(Interest::decode(i.encode()), Ok(i));
        }

        /// A PUBLISH sent with DUP set (by a peer that is not Tern) reaches
        /// the core as a new message, as `encode` would have sent it: found
        /// by the `cluster_wire` fuzz target.
        #[test]
        fn dup_is_not_carried_into_the_node(seq in any::<u64>()) {
            let e = Envelope {
                origin: "n".into(),
                incarnation: 1,
                seq,
                publish: Publish::new(MqttString::from_static("a/b"), "hi", QoS::AtLeastOnce),
            };
            let mut bytes = e.encode().unwrap().to_vec();
            // The PUBLISH's first byte follows version, origin, incarnation, sequence.
            bytes[2 + 1 + 16] |= 0x08;
            prop_assert_eq!(Envelope::decode(bytes.into()), Ok(e));
        }

        /// Any bytes decode to something or an error, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..80)) {
            let _ = Envelope::decode(bytes.clone().into());
            let _ = Interest::decode(bytes.into());
        }
    }
}
