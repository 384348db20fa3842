//! Arbitrary packets, raw bytes and time steps into a server connection,
//! answered the way a broker would. It must never panic, everything it sends
//! must be a valid packet, and its state must stay within the configured
//! bounds.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use bytes::BytesMut;
use core::time::Duration;
use libfuzzer_sys::fuzz_target;
use tern_codec::{Packet, ProtocolVersion, Publish, QoS, ReasonCode, arbitrary_packet};
use tern_session::{
    Accept, Instant, QueueLimits, ServerConfig, ServerConnection, ServerEvent, ServerSession,
};

const RECEIVE_MAXIMUM: u16 = 4;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(version) = ProtocolVersion::arbitrary(&mut u) else {
        return;
    };
    let config = ServerConfig {
        receive_maximum: core::num::NonZeroU16::new(RECEIVE_MAXIMUM).unwrap(),
        maximum_packet_size: 4096,
        manual_acks: u.arbitrary().unwrap_or(false),
        queue: QueueLimits {
            max_messages: 8,
            max_bytes: 4096,
            overflow: Default::default(),
        },
        ..ServerConfig::default()
    };
    let mut now = Instant::ZERO;
    let mut server = ServerConnection::new(now, config);
    let mut buf = BytesMut::new();
    let mut tokens = Vec::new();
    // Start with a valid CONNECT most of the time, so the open state is reached.
    if u.arbitrary().unwrap_or(true) {
        let mut connect = tern_codec::Connect {
            protocol: version,
            keep_alive: u.arbitrary().unwrap_or(0),
            ..Default::default()
        };
        connect.client_id = tern_codec::MqttString::from_static("fuzz");
        server.handle_packet(now, Packet::Connect(Box::new(connect)));
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
                server.handle_packet(now, p);
            }
            1 => {
                let Ok(bytes) = <&[u8]>::arbitrary(&mut u) else {
                    break;
                };
                buf.extend_from_slice(bytes);
                server.handle_bytes(now, &mut buf);
            }
            2 => {
                let ms: u16 = u.arbitrary().unwrap_or(0);
                now = now + Duration::from_millis(u64::from(ms) * 10);
                server.handle_timeout(now);
            }
            3 => {
                let qos = QoS::from_u8(u.int_in_range(0..=2).unwrap_or(0)).unwrap();
                let _ = server.send(
                    now,
                    Publish {
                        topic: tern_codec::MqttString::from_static("out"),
                        qos,
                        payload: bytes::Bytes::from_static(b"p"),
                        ..Publish::default()
                    },
                );
            }
            4 => {
                if let Some(t) = tokens.pop() {
                    let _ = server.ack(now, t, ReasonCode::Success);
                }
            }
            5 => server.close(now, ReasonCode::AdministrativeAction),
            _ => server.handle_closed(now),
        }
        // The broker's side of the drain rule.
        while let Some(event) = server.poll_event() {
            match event {
                ServerEvent::ConnectRequest(c) => {
                    let session = ServerSession::new(c.client_id.clone(), config.queue);
                    let accepted = server.accept(
                        now,
                        Accept {
                            session,
                            session_present: false,
                            assigned_client_id: None,
                            properties: Default::default(),
                        },
                    );
                    // Refused only if the connection closed first (say, its
                    // connect timeout passed in the same step).
                    assert!(accepted.is_ok() || server.is_closed(), "{accepted:?}");
                    server.handle_bytes(now, &mut buf);
                }
                ServerEvent::SubscribeRequest(s) => {
                    let codes = vec![ReasonCode::GrantedQos1; s.filters.len()];
                    server
                        .suback(now, s.packet_id, codes, Default::default())
                        .expect("a pending SUBSCRIBE can be answered");
                }
                ServerEvent::UnsubscribeRequest(s) => {
                    let codes = vec![ReasonCode::Success; s.filters.len()];
                    server
                        .unsuback(now, s.packet_id, codes, Default::default())
                        .expect("a pending UNSUBSCRIBE can be answered");
                }
                ServerEvent::Message { ack: Some(t), .. } => tokens.push(t),
                _ => {}
            }
        }
        let v = server.version();
        // Bytes out: decode what was written.
        let mut out = BytesMut::new();
        while let Some(t) = server.write_transmit(now, &mut out, 64) {
            if let Some(payload) = &t.payload {
                out.extend_from_slice(payload);
            }
            let bytes = out.split().freeze();
            assert_eq!(bytes.len(), t.wire_len());
            let p = Packet::decode_exact(bytes, v).expect("the server sends only valid packets");
            assert_eq!(p.packet_type(), t.packet_type);
        }
        if let Some(session) = server.session() {
            assert!(session.queue_len() <= config.queue.max_messages);
            assert!(session.inflight_len() <= usize::from(u16::MAX));
            // MQTT 5: our Receive Maximum bounds the QoS 2 flows a client
            // may leave waiting for PUBREL (more is 0x93). MQTT 3.x has no
            // Receive Maximum: there the packet identifier space bounds them.
            if v.is_v5() {
                assert!(session.incoming_qos2_len() <= usize::from(RECEIVE_MAXIMUM));
            }
        }
        assert!(server.pending_acks() <= usize::from(RECEIVE_MAXIMUM) * 2 + 64);
        assert!(
            buf.len() <= 4096 + 64 * 1024,
            "read buffer bounded by the caller"
        );
        if server.is_closed() {
            break;
        }
    }
});
