//! Bytes out: a connection writes its next packet into the caller's buffer
//! and returns a few words about it, as quinn-proto's `poll_transmit` does,
//! so no host encodes and a packet's size is computed where it is written.

use bytes::{Bytes, BytesMut};
use tern_codec::{Packet, PacketType, ProtocolVersion, QoS};

/// What `write_transmit` appended to the caller's buffer: one whole packet,
/// or, for a PUBLISH whose payload is larger than the caller's copy limit,
/// the packet's header, with the payload to write right after it as its
/// own chunk (shared with every other recipient, never copied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The packet's type.
    pub packet_type: PacketType,
    /// How many bytes were appended to the buffer.
    pub len: usize,
    /// The payload to write after those bytes, when it was not copied.
    pub payload: Option<Bytes>,
    /// For a PUBLISH, its QoS and payload length (for a host's counters).
    pub publish: Option<(QoS, usize)>,
}

impl Transmit {
    /// The packet's whole size on the wire: `len` plus the payload chunk.
    pub fn wire_len(&self) -> usize {
        self.len + self.payload.as_ref().map_or(0, Bytes::len)
    }
}

/// Encodes `packet` at the end of `buf` (CONNECT with its own version,
/// everything else with `version`); a PUBLISH payload longer than
/// `max_copy` is left out and returned. A packet the session produced is
/// always valid for its version; were one not, nothing is written and
/// `None` says so.
pub(crate) fn write(
    packet: &Packet,
    version: ProtocolVersion,
    buf: &mut BytesMut,
    max_copy: usize,
) -> Option<Transmit> {
    let version = match packet {
        Packet::Connect(c) => c.protocol,
        _ => version,
    };
    let start = buf.len();
    let (result, payload) = match packet {
        Packet::Publish(p) if p.payload.len() > max_copy => {
            (p.encode_header(version, buf), Some(p.payload.clone()))
        }
        _ => (packet.encode(version, buf), None),
    };
    if result.is_err() {
        buf.truncate(start);
        debug_assert!(
            false,
            "a session produced a packet it cannot encode: {result:?}"
        );
        return None;
    }
    Some(Transmit {
        packet_type: packet.packet_type(),
        len: buf.len() - start,
        payload,
        publish: match packet {
            Packet::Publish(p) => Some((p.qos, p.payload.len())),
            _ => None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use tern_codec::{MqttString, Publish, QoS};

    fn publish(payload: usize) -> Packet {
        Packet::Publish(Publish {
            topic: MqttString::from_static("a/b"),
            qos: QoS::AtLeastOnce,
            packet_id: tern_codec::PacketId::new(7),
            payload: Bytes::from(vec![0x5a; payload]),
            ..Publish::default()
        })
    }

    #[test]
    fn writes_whole_packets_or_the_header_and_hands_back_a_large_payload() {
        for v in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            for (size, split) in [(10, false), (2048, true)] {
                let packet = publish(size);
                let mut whole = BytesMut::new();
                packet.encode(v, &mut whole).unwrap();
                let mut buf = BytesMut::from(&b"xy"[..]);
                let t = write(&packet, v, &mut buf, 1024).unwrap();
                assert_eq!(t.packet_type, PacketType::Publish);
                assert_eq!(t.payload.is_some(), split);
                assert_eq!(t.wire_len(), whole.len());
                assert_eq!(buf.len(), 2 + t.len);
                let mut written = buf.split_off(2);
                if let Some(p) = &t.payload {
                    written.extend_from_slice(p);
                }
                assert_eq!(written, whole);
            }
        }
    }
}
