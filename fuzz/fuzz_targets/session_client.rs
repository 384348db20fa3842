//! Arbitrary server packets, raw bytes, time steps and commands into a
//! client connection. It must never panic, everything it sends must be a
//! valid packet, and its state must stay within bounds.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use bytes::BytesMut;
use core::time::Duration;
use libfuzzer_sys::fuzz_target;
use tern_codec::{
    ConnAck, MqttString, Packet, ProtocolVersion, Publish, QoS, ReasonCode, SubscribeFilter,
    SubscriptionOptions, arbitrary_packet,
};
use tern_session::{
    ClientConnection, ClientEvent, ClientSession, ConnectOptions, Instant, QueueLimits,
};

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(version) = ProtocolVersion::arbitrary(&mut u) else {
        return;
    };
    let options = ConnectOptions {
        version,
        keep_alive: u.int_in_range(0..=30).unwrap_or(0),
        manual_acks: u.arbitrary().unwrap_or(false),
        queue: QueueLimits {
            max_messages: 8,
            max_bytes: 4096,
            overflow: Default::default(),
        },
        properties: tern_codec::ConnectProperties {
            receive_maximum: core::num::NonZeroU16::new(4),
            topic_alias_maximum: Some(4),
            maximum_packet_size: core::num::NonZeroU32::new(4096),
            ..Default::default()
        },
        ..ConnectOptions::new(MqttString::from_static("fuzz"))
    };
    let mut now = Instant::ZERO;
    let mut client = ClientConnection::new(now, options, ClientSession::new());
    let mut buf = BytesMut::new();
    let mut tokens = Vec::new();
    if u.arbitrary().unwrap_or(true) {
        client.handle_packet(now, Packet::from(ConnAck::default()));
    }
    for _ in 0..64 {
        let Ok(step) = u.int_in_range(0..=6u8) else {
            break;
        };
        match step {
            0 => {
                let Ok(p) = arbitrary_packet(&mut u, version) else {
                    break;
                };
                client.handle_packet(now, p);
            }
            1 => {
                let Ok(bytes) = <&[u8]>::arbitrary(&mut u) else {
                    break;
                };
                buf.extend_from_slice(bytes);
                client.handle_bytes(now, &mut buf);
            }
            2 => {
                let ms: u16 = u.arbitrary().unwrap_or(0);
                now = now + Duration::from_millis(u64::from(ms) * 10);
                client.handle_timeout(now);
            }
            3 => {
                let qos = QoS::from_u8(u.int_in_range(0..=2).unwrap_or(0)).unwrap();
                let _ = client.publish(
                    now,
                    Publish {
                        topic: MqttString::from_static("t"),
                        qos,
                        retain: u.arbitrary().unwrap_or(false),
                        payload: bytes::Bytes::from_static(b"p"),
                        ..Publish::default()
                    },
                );
            }
            4 => {
                let _ = client.subscribe(
                    now,
                    vec![SubscribeFilter {
                        filter: MqttString::from_static("a/#"),
                        options: SubscriptionOptions::with_qos(QoS::ExactlyOnce),
                    }],
                    Default::default(),
                );
            }
            5 => {
                if let Some(t) = tokens.pop() {
                    let _ = client.ack(now, t, ReasonCode::Success);
                }
            }
            _ => client.handle_closed(now),
        }
        while let Some(e) = client.poll_event() {
            if let ClientEvent::Message { ack: Some(t), .. } = e {
                tokens.push(t);
            }
        }
        // Bytes out: decode what was written, with the version it speaks
        // (CONNECT is decoded version-agnostically).
        let mut out = BytesMut::new();
        while let Some(t) = client.write_transmit(now, &mut out, 64) {
            if let Some(payload) = &t.payload {
                out.extend_from_slice(payload);
            }
            let bytes = out.split().freeze();
            assert_eq!(bytes.len(), t.wire_len());
            let p =
                Packet::decode_exact(bytes, version).expect("the client sends only valid packets");
            assert_eq!(p.packet_type(), t.packet_type);
        }
        let session = client.session();
        assert!(session.queue_len() <= 8);
        assert!(session.incoming_qos2_len() <= 4);
        assert!(session.packet_ids_in_use() <= 8 + usize::from(u16::MAX));
    }
});
