//! Story tests for the session state machines, one protocol rule each,
//! named by the specification statement they check.

mod support;

use bytes::{Bytes, BytesMut};
use core::{num::NonZeroU16, time::Duration};
use support::Pair;
use tern_codec::{
    ConnAck, Connect, ConnectProperties, Disconnect, DisconnectProperties, MqttString, Packet,
    PacketId, ProtocolVersion, PubRec, PubRel, Publish, PublishProperties, QoS, ReasonCode,
    SubscribeFilter, SubscriptionOptions, UserProperty, Will,
};
use tern_session::*;

const V5: ProtocolVersion = ProtocolVersion::V5;
const V311: ProtocolVersion = ProtocolVersion::V3_1_1;

fn s(text: &'static str) -> MqttString {
    MqttString::from_static(text)
}

fn id(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

fn publish(topic: &'static str, qos: QoS, packet_id: Option<u16>) -> Publish {
    Publish {
        topic: s(topic),
        qos,
        packet_id: packet_id.map(id),
        payload: Bytes::from_static(b"x"),
        ..Publish::default()
    }
}

fn connect(version: ProtocolVersion, keep_alive: u16) -> Connect {
    Connect {
        protocol: version,
        clean_start: true,
        keep_alive,
        client_id: s("raw"),
        ..Connect::default()
    }
}

/// A server connection that has accepted `connect` at time zero.
fn accepted(config: ServerConfig, connect: Connect) -> ServerConnection {
    let now = Instant::ZERO;
    let mut server = ServerConnection::new(now, config);
    server.handle_packet(now, Packet::Connect(Box::new(connect)));
    let Some(ServerEvent::ConnectRequest(c)) = server.poll_event() else {
        panic!("no connect request");
    };
    server
        .accept(
            now,
            Accept {
                session: ServerSession::new(c.client_id.clone(), QueueLimits::default()),
                session_present: false,
                assigned_client_id: None,
                properties: Default::default(),
            },
        )
        .unwrap();
    assert!(matches!(
        server.poll_transmit(now),
        Some(Packet::ConnAck(a)) if a.reason_code == ReasonCode::Success
    ));
    server
}

fn transmits<F: FnMut() -> Option<Packet>>(mut f: F) -> Vec<Packet> {
    std::iter::from_fn(&mut f).collect()
}

fn closed_reason(server: &mut ServerConnection) -> (CloseReason, Option<Will>) {
    loop {
        match server.poll_event() {
            Some(ServerEvent::Closed { reason, will, .. }) => return (reason, will.map(|w| *w)),
            Some(_) => continue,
            None => panic!("no Closed event"),
        }
    }
}

fn violation_code(reason: &CloseReason) -> ReasonCode {
    match reason {
        CloseReason::ProtocolViolation(v) => v.reason_code(),
        other => panic!("not a protocol violation: {other:?}"),
    }
}

// ---- keep alive ----

#[test]
fn mqtt_3_1_2_20_client_sends_pingreq_after_a_keep_alive_of_silence() {
    let mut pair = Pair::new(V5);
    pair.options.keep_alive = 10;
    pair.connect(true);
    pair.settle();
    let connected_at = pair.now;
    pair.advance(Duration::from_millis(9_999));
    assert!(!pair.rec.wire_c2s.iter().any(|(_, p)| *p == Packet::PingReq));
    pair.advance(Duration::from_millis(1));
    let pings: Vec<_> = pair
        .rec
        .wire_c2s
        .iter()
        .filter(|(_, p)| *p == Packet::PingReq)
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(pings, vec![connected_at + Duration::from_secs(10)]);
    assert!(
        pair.rec
            .wire_s2c
            .iter()
            .any(|(_, p)| *p == Packet::PingResp)
    );
    assert!(pair.rec.client_closes.is_empty());
}

#[test]
fn drop_oldest_reports_every_message_it_drops() {
    // One large message needs the room of three small ones: all three are
    // dropped, reported, and their packet identifiers are free again.
    let mut c = ClientConnection::new(
        Instant::ZERO,
        ConnectOptions {
            queue: QueueLimits {
                max_messages: 10,
                max_bytes: 40,
                overflow: OverflowPolicy::DropOldest,
            },
            ..ConnectOptions::new(s("c"))
        },
        ClientSession::new(),
    );
    let now = Instant::ZERO;
    let small = |n: u8| Publish {
        topic: s("t"),
        qos: QoS::AtLeastOnce,
        payload: Bytes::from(vec![n; 9]),
        ..Publish::default()
    };
    let ids: Vec<_> = (0..4).map(|n| c.publish(now, small(n)).unwrap()).collect();
    let large = Publish {
        payload: Bytes::from(vec![9; 25]),
        ..small(9)
    };
    c.publish(now, large).unwrap();
    let dropped: Vec<_> = std::iter::from_fn(|| c.poll_event())
        .filter_map(|e| match e {
            ClientEvent::PublishDropped { packet_id } => packet_id,
            _ => None,
        })
        .collect();
    assert_eq!(
        dropped,
        ids[..3].iter().map(|i| i.unwrap()).collect::<Vec<_>>()
    );
    assert_eq!(c.session().queue_len(), 2);
    assert_eq!(c.session().packet_ids_in_use(), 2);
}

#[test]
fn a_client_that_keeps_sending_still_notices_a_silent_server() {
    // A half-open connection: everything the client sends vanishes. Sending
    // alone never triggers a PINGREQ [MQTT-3.1.2-20], so the client pings
    // when nothing has been received for a keep-alive interval too.
    let mut c = ClientConnection::new(
        Instant::ZERO,
        ConnectOptions {
            keep_alive: 10,
            ..ConnectOptions::new(s("c"))
        },
        ClientSession::new(),
    );
    let _ = transmits(|| c.poll_transmit(Instant::ZERO));
    c.handle_packet(Instant::ZERO, Packet::ConnAck(Default::default()));
    for secs in 1..=30 {
        let now = Instant::from_secs(secs);
        if c.poll_timeout().is_some_and(|t| t <= now) {
            c.handle_timeout(now);
        }
        if c.state() == ConnectionState::Closed {
            break;
        }
        c.publish(now, publish("t", QoS::AtMostOnce, None)).unwrap();
        let sent = transmits(|| c.poll_transmit(now));
        if secs == 10 {
            assert!(sent.contains(&Packet::PingReq), "{sent:?}");
        }
    }
    assert_eq!(c.state(), ConnectionState::Closed);
    let events: Vec<_> = std::iter::from_fn(|| c.poll_event()).collect();
    assert!(events.contains(&ClientEvent::Closed(CloseReason::KeepAliveTimeout)));
}

#[test]
fn client_closes_when_no_pingresp_arrives() {
    let mut c = ClientConnection::new(
        Instant::ZERO,
        ConnectOptions {
            keep_alive: 10,
            ping_timeout: Some(Duration::from_secs(5)),
            ..ConnectOptions::new(s("c"))
        },
        ClientSession::new(),
    );
    let _ = transmits(|| c.poll_transmit(Instant::ZERO));
    c.handle_packet(Instant::ZERO, Packet::ConnAck(Default::default()));
    assert_eq!(c.poll_timeout(), Some(Instant::from_secs(10)));
    c.handle_timeout(Instant::from_secs(10));
    assert_eq!(
        c.poll_transmit(Instant::from_secs(10)),
        Some(Packet::PingReq)
    );
    assert_eq!(c.poll_timeout(), Some(Instant::from_secs(15)));
    c.handle_timeout(Instant::from_millis(14_999));
    assert_eq!(c.state(), ConnectionState::Connected);
    c.handle_timeout(Instant::from_secs(15));
    assert_eq!(c.state(), ConnectionState::Closed);
    let events: Vec<_> = std::iter::from_fn(|| c.poll_event()).collect();
    assert!(events.contains(&ClientEvent::Closed(CloseReason::KeepAliveTimeout)));
}

#[test]
fn mqtt_3_1_2_24_server_closes_after_one_and_a_half_keep_alives() {
    for version in [V311, V5] {
        let mut server = accepted(
            ServerConfig::default(),
            Connect {
                will: Some(Will {
                    topic: s("will"),
                    payload: Bytes::from_static(b"gone"),
                    ..Will::default()
                }),
                ..connect(version, 10)
            },
        );
        assert_eq!(server.poll_timeout(), Some(Instant::from_secs(15)));
        server.handle_timeout(Instant::from_millis(14_999));
        assert!(server.is_open());
        // Any packet restarts the clock.
        server.handle_packet(Instant::from_secs(14), Packet::PingReq);
        assert_eq!(server.poll_timeout(), Some(Instant::from_secs(29)));
        server.handle_timeout(Instant::from_secs(29));
        assert!(server.is_closed());
        let sent = transmits(|| server.poll_transmit(Instant::from_secs(29)));
        if version.is_v5() {
            assert_eq!(
                sent.last(),
                Some(&Packet::Disconnect(Box::new(Disconnect::new(
                    ReasonCode::KeepAliveTimeout
                ))))
            );
        } else {
            assert!(!sent.iter().any(|p| matches!(p, Packet::Disconnect(_))));
        }
        let (reason, will) = closed_reason(&mut server);
        assert_eq!(reason, CloseReason::KeepAliveTimeout);
        assert_eq!(will.map(|w| w.topic), Some(s("will")), "the will applies");
    }
}

#[test]
fn mqtt_3_2_2_21_server_keep_alive_replaces_the_clients() {
    let mut pair = Pair::new(V5);
    pair.options.keep_alive = 600;
    pair.config.max_keep_alive = Some(5);
    pair.connect(true);
    pair.settle();
    let connack = pair
        .rec
        .wire_s2c
        .iter()
        .find_map(|(_, p)| match p {
            Packet::ConnAck(a) => Some(a.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(connack.properties.server_keep_alive, Some(5));
    let start = pair.now;
    pair.advance(Duration::from_secs(5));
    assert!(
        pair.rec
            .wire_c2s
            .iter()
            .any(|(t, p)| *p == Packet::PingReq && *t == start + Duration::from_secs(5))
    );
}

#[test]
fn connect_timeouts_on_both_sides() {
    let mut server = ServerConnection::new(Instant::ZERO, ServerConfig::default());
    assert_eq!(server.poll_timeout(), Some(Instant::from_secs(10)));
    server.handle_timeout(Instant::from_secs(10));
    assert_eq!(closed_reason(&mut server).0, CloseReason::ConnectTimeout);

    let mut client = ClientConnection::new(
        Instant::ZERO,
        ConnectOptions::new(s("c")),
        ClientSession::new(),
    );
    client.handle_timeout(Instant::from_secs(30));
    assert_eq!(client.state(), ConnectionState::Closed);
}

#[test]
fn mqtt_3_1_0_1_a_first_packet_that_is_not_connect_is_refused_from_its_first_byte() {
    for first in [0x30u8, 0x82, 0xC0, 0xE0] {
        let mut server = ServerConnection::new(Instant::ZERO, ServerConfig::default());
        // Only the fixed header's first byte: the body has not arrived.
        let mut buf = BytesMut::from(&[first][..]);
        server.handle_bytes(Instant::ZERO, &mut buf);
        assert!(server.is_closed(), "first byte {first:#04x}");
        assert_eq!(transmits(|| server.poll_transmit(Instant::ZERO)), vec![]);
        let (reason, _) = closed_reason(&mut server);
        let CloseReason::ProtocolViolation(violation) = reason else {
            panic!("not a violation: {reason:?}");
        };
        assert_eq!(violation, Violation::Rule(Rule::FirstPacketNotConnect));
        assert_eq!(violation.statement(), Some("MQTT-3.1.0-1"));
    }
    // A CONNECT's first byte waits for the rest.
    let mut server = ServerConnection::new(Instant::ZERO, ServerConfig::default());
    server.handle_bytes(Instant::ZERO, &mut BytesMut::from(&[0x10u8][..]));
    assert!(!server.is_closed());
}

// ---- QoS flows and resumption ----

#[test]
fn mqtt_4_4_0_1_unacknowledged_publishes_are_resent_in_order_with_dup() {
    for version in [V311, V5] {
        let mut pair = Pair::new(version);
        pair.connect(false);
        pair.settle();
        let ids: Vec<_> = [QoS::AtLeastOnce, QoS::ExactlyOnce, QoS::AtLeastOnce]
            .into_iter()
            .map(|q| pair.client_publish("t", q).unwrap().unwrap())
            .collect();
        pair.flush_client();
        pair.deliver_c2s(usize::MAX); // the server gets them; its acks are lost
        pair.reset();
        let before = pair.rec.wire_c2s.len();
        pair.connect(false);
        pair.settle();
        let resent: Vec<_> = pair.rec.wire_c2s[before..]
            .iter()
            .filter_map(|(_, p)| match p {
                Packet::Publish(p) => Some((p.packet_id.unwrap(), p.dup)),
                _ => None,
            })
            .collect();
        // [MQTT-4.6.0-1] original order; [MQTT-3.3.1-1] DUP on a resend.
        assert_eq!(resent, ids.iter().map(|&i| (i, true)).collect::<Vec<_>>());
        // QoS 2 was not delivered twice; QoS 1 may be.
        let qos2 = pair
            .rec
            .server_got
            .iter()
            .filter(|m| m.2 == QoS::ExactlyOnce)
            .count();
        assert_eq!(qos2, 1);
        assert!(pair.rec.client_open.is_empty());
    }
}

#[test]
fn mqtt_4_3_3_6_after_pubrec_only_pubrel_is_resent() {
    let mut pair = Pair::new(V5);
    pair.connect(false);
    pair.settle();
    let pid = pair.client_publish("t", QoS::ExactlyOnce).unwrap().unwrap();
    pair.flush_client();
    pair.deliver_c2s(usize::MAX); // PUBLISH
    pair.flush_server();
    pair.deliver_s2c(usize::MAX); // PUBREC
    pair.flush_client(); // PUBREL, lost
    pair.reset();
    let before = pair.rec.wire_c2s.len();
    pair.connect(false);
    pair.settle();
    let after: Vec<_> = pair.rec.wire_c2s[before..]
        .iter()
        .map(|(_, p)| p.clone())
        .collect();
    assert!(after.contains(&Packet::PubRel(PubRel::new(pid))));
    assert!(!after.iter().any(|p| matches!(p, Packet::Publish(_))));
    assert_eq!(pair.rec.server_got.len(), 1);
    assert_eq!(pair.rec.client_confirmed.len(), 1);
}

#[test]
fn mqtt_4_9_0_2_send_quota_limits_messages_in_flight() {
    let mut pair = Pair::new(V5);
    pair.config.receive_maximum = NonZeroU16::new(3).unwrap();
    pair.connect(true);
    pair.settle();
    for _ in 0..10 {
        pair.client_publish("t", QoS::AtLeastOnce).unwrap();
    }
    pair.flush_client();
    let on_wire = pair
        .rec
        .wire_c2s
        .iter()
        .filter(|(_, p)| matches!(p, Packet::Publish(_)))
        .count();
    assert_eq!(on_wire, 3, "[MQTT-3.3.4-7]");
    // QoS 0 waits behind them, keeping order.
    pair.client_publish("t", QoS::AtMostOnce).unwrap();
    pair.flush_client();
    assert_eq!(
        pair.rec
            .wire_c2s
            .iter()
            .filter(|(_, p)| matches!(p, Packet::Publish(_)))
            .count(),
        3
    );
    pair.settle();
    assert_eq!(pair.rec.client_confirmed.len(), 10);
    assert_eq!(pair.rec.server_got.len(), 11);
}

#[test]
fn server_enforces_its_receive_maximum_with_0x93() {
    let config = ServerConfig {
        receive_maximum: NonZeroU16::new(2).unwrap(),
        ..ServerConfig::default()
    };
    let mut server = accepted(config, connect(V5, 0));
    let now = Instant::ZERO;
    for n in 1..=2 {
        server.handle_packet(
            now,
            Packet::Publish(publish("t", QoS::ExactlyOnce, Some(n))),
        );
    }
    assert!(server.is_open());
    server.handle_packet(
        now,
        Packet::Publish(publish("t", QoS::ExactlyOnce, Some(3))),
    );
    assert!(server.is_closed());
    let sent = transmits(|| server.poll_transmit(now));
    assert_eq!(
        sent.last(),
        Some(&Packet::Disconnect(Box::new(Disconnect::new(
            ReasonCode::ReceiveMaximumExceeded
        ))))
    );
    let (reason, _) = closed_reason(&mut server);
    assert_eq!(
        reason,
        CloseReason::ProtocolViolation(Violation::Rule(Rule::ReceiveMaximumExceeded))
    );
}

#[test]
fn a_v311_client_is_not_held_to_a_receive_maximum_it_was_never_told() {
    let config = ServerConfig {
        receive_maximum: NonZeroU16::new(2).unwrap(),
        ..ServerConfig::default()
    };
    let mut server = accepted(config, connect(V311, 0));
    let now = Instant::ZERO;
    for n in 1..=5 {
        server.handle_packet(
            now,
            Packet::Publish(publish("t", QoS::AtLeastOnce, Some(n))),
        );
    }
    assert!(server.is_open(), "MQTT 3.1.1 has no Receive Maximum");
}

#[test]
fn receive_maximum_counts_this_connection_not_flows_left_from_the_last() {
    // MQTT 5 §4.9: the send quota starts afresh with each network
    // connection. A QoS 2 flow left waiting for its PUBREL on the last
    // connection is not a PUBLISH on this one, so a peer may send Receive
    // Maximum new PUBLISH packets before it resends that PUBREL.
    let config = ServerConfig {
        receive_maximum: NonZeroU16::new(2).unwrap(),
        ..ServerConfig::default()
    };
    let now = Instant::ZERO;
    let mut server = accepted(config, connect(V5, 0));
    server.handle_packet(
        now,
        Packet::Publish(publish("t", QoS::ExactlyOnce, Some(1))),
    );
    server.handle_closed(now);
    let session = server.take_session().unwrap();
    assert_eq!(session.incoming_qos2_len(), 1, "waiting for PUBREL 1");

    let mut server = ServerConnection::new(now, config);
    server.handle_packet(now, Packet::Connect(Box::new(connect(V5, 0))));
    while server.poll_event().is_some() {}
    server
        .accept(
            now,
            Accept {
                session,
                session_present: true,
                assigned_client_id: None,
                properties: Default::default(),
            },
        )
        .unwrap();
    for n in [2, 3] {
        server.handle_packet(
            now,
            Packet::Publish(publish("t", QoS::ExactlyOnce, Some(n))),
        );
    }
    assert!(server.is_open(), "two PUBLISH packets on this connection");
    server.handle_packet(now, Packet::PubRel(PubRel::new(id(1))));
    server.handle_packet(
        now,
        Packet::Publish(publish("t", QoS::ExactlyOnce, Some(4))),
    );
    assert!(server.is_closed(), "a third one exceeds Receive Maximum");
}

#[test]
fn mqtt_3_1_2_4_a_clean_start_discards_incoming_qos2_state_before_the_connack() {
    let mut pair = Pair::new(V5);
    pair.connect(false);
    pair.settle();
    // A QoS 2 message arrives; its PUBREL never does.
    pair.server_publish("t", QoS::ExactlyOnce);
    pair.flush_server();
    pair.deliver_s2c(usize::MAX);
    pair.flush_client();
    pair.reset();
    assert_eq!(pair.client_session.as_ref().unwrap().incoming_qos2_len(), 1);
    // A clean start the server accepts, but whose CONNACK is lost.
    pair.connect(true);
    pair.flush_client();
    pair.deliver_c2s(usize::MAX);
    pair.reset();
    // Resuming now finds the server's new session: nothing of the old
    // incoming flow may remain, or the new session's QoS 2 message with
    // the same packet identifier would be taken for a resend and dropped.
    pair.connect(false);
    pair.settle();
    let client = pair.client.as_ref().unwrap();
    assert_eq!(client.session().incoming_qos2_len(), 0);
    pair.server_publish("t", QoS::ExactlyOnce);
    pair.settle();
    assert_eq!(pair.rec.client_got.len(), 2, "the new message is delivered");
}

#[test]
fn a_clean_start_no_connack_answered_is_asked_for_again() {
    // A QoS 2 message is received, its PUBREL lost; the client asks for a
    // clean start (discarding the incoming state) but the CONNECT is lost.
    let mut pair = Pair::new(V5);
    pair.connect(false);
    pair.settle();
    pair.server_publish("t", QoS::ExactlyOnce);
    pair.flush_server();
    pair.deliver_s2c(usize::MAX);
    pair.flush_client();
    pair.reset();
    pair.connect(true);
    pair.flush_client();
    pair.reset();
    // Resuming now would resume the server's old session without the state
    // that told the message apart from a resend: it would be delivered
    // twice. The session starts clean instead.
    let before = pair.rec.wire_c2s.len();
    pair.connect(false);
    pair.settle();
    let Some((_, Packet::Connect(c))) = pair.rec.wire_c2s.get(before) else {
        panic!("a CONNECT");
    };
    assert!(c.clean_start);
    assert_eq!(pair.rec.client_got.len(), 1, "[MQTT-4.3.3-10]");
    // Once a CONNACK answered, the options decide again.
    pair.reset();
    let before = pair.rec.wire_c2s.len();
    pair.connect(false);
    pair.settle();
    let Some((_, Packet::Connect(c))) = pair.rec.wire_c2s.get(before) else {
        panic!("a CONNECT");
    };
    assert!(!c.clean_start);
}

#[test]
fn mqtt_4_3_3_10_a_qos2_message_refused_before_its_resend_is_not_delivered_again() {
    let options = ConnectOptions {
        manual_acks: true,
        clean_start: false,
        ..ConnectOptions::new(s("c"))
    };
    let t = Instant::ZERO;
    let mut c = ClientConnection::new(t, options.clone(), ClientSession::new());
    let _ = transmits(|| c.poll_transmit(t));
    c.handle_packet(t, Packet::ConnAck(Default::default()));
    let mut p = publish("t", QoS::ExactlyOnce, Some(5));
    c.handle_packet(t, Packet::Publish(p.clone()));
    let token = std::iter::from_fn(|| c.poll_event())
        .find_map(|e| match e {
            ClientEvent::Message { ack, .. } => ack,
            _ => None,
        })
        .expect("a token");
    // The connection drops before the application decides.
    c.handle_closed(t);
    let mut c = ClientConnection::new(t, options, c.into_session());
    let _ = transmits(|| c.poll_transmit(t));
    c.handle_packet(
        t,
        Packet::ConnAck(Box::new(ConnAck {
            session_present: true,
            ..Default::default()
        })),
    );
    // It refuses the message before the server resends it.
    c.ack(t, token, ReasonCode::UnspecifiedError).unwrap();
    assert!(transmits(|| c.poll_transmit(t)).is_empty());
    p.dup = true;
    c.handle_packet(t, Packet::Publish(p));
    let events: Vec<_> = std::iter::from_fn(|| c.poll_event()).collect();
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, ClientEvent::Message { .. })),
        "not delivered twice: {events:?}"
    );
    assert_eq!(
        transmits(|| c.poll_transmit(t)),
        vec![Packet::PubRec(PubRec::with_reason(
            id(5),
            ReasonCode::UnspecifiedError
        ))]
    );
    assert_eq!(c.session().incoming_qos2_len(), 0, "the flow is over");
}

#[test]
fn mqtt_4_3_3_10_a_qos2_refusal_waiting_behind_another_ack_survives_a_drop() {
    // Two QoS 2 messages; the application refuses the second while the
    // first is undecided, so the failing PUBREC waits (acknowledgements
    // leave in arrival order) and the connection drops with it unsent.
    let options = ConnectOptions {
        manual_acks: true,
        clean_start: false,
        ..ConnectOptions::new(s("c"))
    };
    let t = Instant::ZERO;
    let mut c = ClientConnection::new(t, options.clone(), ClientSession::new());
    let _ = transmits(|| c.poll_transmit(t));
    c.handle_packet(t, Packet::ConnAck(Default::default()));
    for n in [5, 6] {
        c.handle_packet(t, Packet::Publish(publish("t", QoS::ExactlyOnce, Some(n))));
    }
    let tokens: Vec<_> = std::iter::from_fn(|| c.poll_event())
        .filter_map(|e| match e {
            ClientEvent::Message { ack, .. } => ack,
            _ => None,
        })
        .collect();
    c.ack(t, tokens[1], ReasonCode::UnspecifiedError).unwrap();
    assert!(transmits(|| c.poll_transmit(t)).is_empty(), "behind 5");
    c.handle_closed(t);
    let mut c = ClientConnection::new(t, options, c.into_session());
    let _ = transmits(|| c.poll_transmit(t));
    c.handle_packet(
        t,
        Packet::ConnAck(Box::new(ConnAck {
            session_present: true,
            ..Default::default()
        })),
    );
    for n in [5, 6] {
        let mut p = publish("t", QoS::ExactlyOnce, Some(n));
        p.dup = true;
        c.handle_packet(t, Packet::Publish(p));
    }
    c.ack(t, tokens[0], ReasonCode::Success).unwrap();
    let events: Vec<_> = std::iter::from_fn(|| c.poll_event()).collect();
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, ClientEvent::Message { .. })),
        "neither is delivered twice: {events:?}"
    );
    assert_eq!(
        transmits(|| c.poll_transmit(t)),
        vec![
            Packet::PubRec(PubRec::new(id(5))),
            Packet::PubRec(PubRec::with_reason(id(6), ReasonCode::UnspecifiedError)),
        ]
    );
}

#[test]
fn an_mqtt_3_1_1_client_cannot_refuse_a_qos2_message() {
    // MQTT 3.1.1 has no reason codes: the PUBREC accepts, and the flow
    // completes with PUBREL and PUBCOMP as usual.
    let options = ConnectOptions {
        version: V311,
        manual_acks: true,
        ..ConnectOptions::new(s("c"))
    };
    let t = Instant::ZERO;
    let mut c = ClientConnection::new(t, options, ClientSession::new());
    let _ = transmits(|| c.poll_transmit(t));
    c.handle_packet(t, Packet::ConnAck(Default::default()));
    c.handle_packet(t, Packet::Publish(publish("t", QoS::ExactlyOnce, Some(5))));
    let token = std::iter::from_fn(|| c.poll_event())
        .find_map(|e| match e {
            ClientEvent::Message { ack, .. } => ack,
            _ => None,
        })
        .unwrap();
    c.ack(t, token, ReasonCode::UnspecifiedError).unwrap();
    assert_eq!(
        transmits(|| c.poll_transmit(t)),
        vec![Packet::PubRec(PubRec::new(id(5)))]
    );
    c.handle_packet(t, Packet::PubRel(PubRel::new(id(5))));
    assert_eq!(
        transmits(|| c.poll_transmit(t)),
        vec![Packet::PubComp(tern_codec::PubComp::new(id(5)))]
    );
    assert_eq!(c.session().incoming_qos2_len(), 0);
}

#[test]
fn mqtt_4_3_3_10_a_repeated_qos2_publish_is_acknowledged_not_redelivered() {
    let mut server = accepted(ServerConfig::default(), connect(V5, 0));
    let now = Instant::ZERO;
    let mut dup = publish("t", QoS::ExactlyOnce, Some(7));
    server.handle_packet(now, Packet::Publish(dup.clone()));
    dup.dup = true;
    server.handle_packet(now, Packet::Publish(dup));
    let messages = std::iter::from_fn(|| server.poll_event())
        .filter(|e| matches!(e, ServerEvent::Message { .. }))
        .count();
    assert_eq!(messages, 1);
    let recs = transmits(|| server.poll_transmit(now))
        .into_iter()
        .filter(|p| matches!(p, Packet::PubRec(_)))
        .count();
    assert_eq!(recs, 2);
    // After PUBREL + PUBCOMP the identifier starts a new message [MQTT-4.3.3-12].
    server.handle_packet(now, Packet::PubRel(PubRel::new(id(7))));
    assert!(
        matches!(server.poll_transmit(now), Some(Packet::PubComp(c)) if c.reason_code == ReasonCode::Success)
    );
    // The release is reported (a broker storing QoS 2 state deletes it).
    assert!(matches!(
        server.poll_event(),
        Some(ServerEvent::PubRelReceived { packet_id }) if packet_id == id(7)
    ));
    server.handle_packet(
        now,
        Packet::Publish(publish("t", QoS::ExactlyOnce, Some(7))),
    );
    assert!(matches!(
        server.poll_event(),
        Some(ServerEvent::Message { .. })
    ));
}

#[test]
fn pubrel_for_an_unknown_identifier_gets_pubcomp_0x92() {
    let mut server = accepted(ServerConfig::default(), connect(V5, 0));
    server.handle_packet(Instant::ZERO, Packet::PubRel(PubRel::new(id(9))));
    assert!(matches!(
        server.poll_transmit(Instant::ZERO),
        Some(Packet::PubComp(c)) if c.reason_code == ReasonCode::PacketIdentifierNotFound
    ));
}

#[test]
fn mqtt_4_6_0_2_manual_acks_leave_in_arrival_order() {
    let mut c = ClientConnection::new(
        Instant::ZERO,
        ConnectOptions {
            manual_acks: true,
            ..ConnectOptions::new(s("c"))
        },
        ClientSession::new(),
    );
    let now = Instant::ZERO;
    let _ = transmits(|| c.poll_transmit(now));
    c.handle_packet(now, Packet::ConnAck(Default::default()));
    for n in 1..=3 {
        c.handle_packet(
            now,
            Packet::Publish(publish("t", QoS::AtLeastOnce, Some(n))),
        );
    }
    let tokens: Vec<AckToken> = std::iter::from_fn(|| c.poll_event())
        .filter_map(|e| match e {
            ClientEvent::Message { ack, .. } => ack,
            _ => None,
        })
        .collect();
    assert_eq!(tokens.len(), 3);
    assert_eq!(c.poll_transmit(now), None, "nothing acknowledged yet");
    c.ack(now, tokens[2], ReasonCode::Success).unwrap();
    c.ack(now, tokens[1], ReasonCode::Success).unwrap();
    assert_eq!(
        c.poll_transmit(now),
        None,
        "the first message blocks the others"
    );
    c.ack(now, tokens[0], ReasonCode::UnspecifiedError).unwrap();
    let acks: Vec<_> = transmits(|| c.poll_transmit(now))
        .into_iter()
        .map(|p| match p {
            Packet::PubAck(a) => (a.packet_id.get(), a.reason_code),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        acks,
        vec![
            (1, ReasonCode::UnspecifiedError),
            (2, ReasonCode::Success),
            (3, ReasonCode::Success)
        ]
    );
    assert_eq!(
        c.ack(now, tokens[0], ReasonCode::Success),
        Err(AckError::Stale)
    );
}

// ---- topic aliases ----

#[test]
fn mqtt_3_3_2_12_incoming_topic_aliases() {
    let mut server = accepted(ServerConfig::default(), connect(V5, 0));
    let now = Instant::ZERO;
    let with_alias = |topic: &'static str, alias: u16| Publish {
        properties: PublishProperties {
            topic_alias: NonZeroU16::new(alias),
            ..Default::default()
        }
        .into(),
        ..publish(topic, QoS::AtMostOnce, None)
    };
    server.handle_packet(now, Packet::Publish(with_alias("a/b", 1)));
    server.handle_packet(now, Packet::Publish(with_alias("", 1)));
    let topics: Vec<_> = std::iter::from_fn(|| server.poll_event())
        .map(|e| match e {
            ServerEvent::Message { publish, .. } => publish.topic,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(topics, vec![s("a/b"), s("a/b")]);

    // Above our maximum of 64: 0x94.
    server.handle_packet(now, Packet::Publish(with_alias("x", 65)));
    assert_eq!(
        violation_code(&closed_reason(&mut server).0),
        ReasonCode::TopicAliasInvalid
    );

    // An alias never set: Protocol Error.
    let mut server = accepted(ServerConfig::default(), connect(V5, 0));
    server.handle_packet(now, Packet::Publish(with_alias("", 2)));
    assert_eq!(
        violation_code(&closed_reason(&mut server).0),
        ReasonCode::ProtocolError
    );
}

#[test]
fn mqtt_3_1_2_24_a_topic_alias_never_pushes_a_packet_over_the_maximum_size() {
    // The message fits the client's Maximum Packet Size exactly, without a
    // topic alias; assigning one would add a property and overflow it.
    let message = Publish {
        topic: s("t/long/topic"),
        qos: QoS::AtMostOnce,
        payload: support::payload(('s', 0)),
        ..Publish::default()
    };
    let exact = Packet::Publish(message).encoded_len(V5) as u32;
    let mut pair = Pair::new(V5);
    pair.options.properties.topic_alias_maximum = Some(2);
    pair.options.properties.maximum_packet_size = core::num::NonZeroU32::new(exact);
    pair.config.outgoing_topic_aliases = 2;
    pair.connect(true);
    pair.settle();
    pair.server_publish("t/long/topic", QoS::AtMostOnce);
    pair.settle();
    assert!(
        pair.rec.client_closes.is_empty(),
        "{:?}",
        pair.rec.client_closes
    );
    assert_eq!(pair.rec.client_got.len(), 1);
    let sent = pair.rec.wire_s2c.iter().find_map(|(_, p)| match p {
        Packet::Publish(p) => Some(p.clone()),
        _ => None,
    });
    assert_eq!(sent.unwrap().properties.topic_alias, None);
}

#[test]
fn mqtt_3_3_2_11_outgoing_aliases_stay_within_the_clients_maximum() {
    let mut pair = Pair::new(V5);
    pair.options.properties.topic_alias_maximum = Some(2);
    pair.config.outgoing_topic_aliases = 100;
    pair.connect(true);
    pair.settle();
    for topic in ["a", "b", "a", "c", "a", "b"] {
        pair.server_publish(topic, QoS::AtMostOnce);
    }
    pair.settle();
    let aliases: Vec<(String, u16)> = pair
        .rec
        .wire_s2c
        .iter()
        .filter_map(|(_, p)| match p {
            Packet::Publish(p) => Some((
                p.topic.to_string(),
                p.properties.topic_alias.map_or(0, |a| a.get()),
            )),
            _ => None,
        })
        .collect();
    assert!(
        aliases.iter().all(|(_, a)| (1..=2).contains(a)),
        "{aliases:?}"
    );
    assert_eq!(
        aliases[2],
        (String::new(), 1),
        "a reused alias sends an empty topic"
    );
    let got: Vec<_> = pair.rec.client_got.iter().map(|m| m.0.clone()).collect();
    assert_eq!(got, vec!["a", "b", "a", "c", "a", "b"]);
}

// ---- server-side delivery rules ----

#[test]
fn mqtt_3_3_2_6_queued_messages_carry_the_remaining_expiry_and_expire() {
    let mut pair = Pair::new(V5);
    pair.connect(false);
    pair.settle();
    pair.reset();
    // While the client is away, two messages with 10 s to live are queued.
    let start = pair.now;
    for n in 0..2 {
        let mut p = publish("t", QoS::AtLeastOnce, None);
        p.properties.message_expiry_interval = Some(10);
        p.payload = support::payload(('s', n));
        pair.rec
            .server_published
            .push(("t".into(), ('s', n), QoS::AtLeastOnce));
        pair.server_session.as_mut().unwrap().enqueue(start, p);
    }
    pair.now = start + Duration::from_millis(6_500);
    pair.connect(false);
    pair.settle();
    let expiry: Vec<_> = pair
        .rec
        .wire_s2c
        .iter()
        .filter_map(|(_, p)| match p {
            Packet::Publish(p) => p.properties.message_expiry_interval,
            _ => None,
        })
        .collect();
    assert_eq!(expiry, vec![4, 4], "10 s minus 6.5 s waited, rounded up");

    // Another one expires before the client returns [MQTT-3.3.2-5].
    pair.reset();
    let mut p = publish("t", QoS::AtLeastOnce, None);
    p.properties.message_expiry_interval = Some(1);
    let session = pair.server_session.as_mut().unwrap();
    session.enqueue(pair.now, p);
    pair.now = pair.now + Duration::from_secs(1);
    pair.connect(false);
    pair.settle();
    assert_eq!(pair.rec.client_got.len(), 2);
    assert_eq!(
        pair.server
            .as_ref()
            .unwrap()
            .session()
            .unwrap()
            .dropped_expired(),
        1
    );
}

#[test]
fn mqtt_3_3_2_6_a_message_sent_again_as_new_keeps_counting_its_expiry() {
    // Sent once, then the server loses the session: the unacknowledged
    // messages go again as new ones [MQTT-3.2.2-5], their expiry still
    // counting from when they were published.
    let mut pair = Pair::new(V5);
    pair.connect(false);
    pair.settle();
    for (n, expiry) in [(0, 10), (1, 3)] {
        let message = Publish {
            topic: s("t"),
            qos: QoS::AtLeastOnce,
            payload: support::payload(('c', n)),
            properties: PublishProperties {
                message_expiry_interval: Some(expiry),
                ..Default::default()
            }
            .into(),
            ..Publish::default()
        };
        let now = pair.now;
        let pid = pair.client.as_mut().unwrap().publish(now, message).unwrap();
        pair.rec.client_open.insert(pid.unwrap(), ('c', n));
    }
    pair.flush_client(); // both sent, never delivered
    pair.reset();
    pair.now = pair.now + Duration::from_millis(4500);
    let before = pair.rec.wire_c2s.len();
    pair.connect(true);
    pair.settle();
    let resent: Vec<_> = pair.rec.wire_c2s[before..]
        .iter()
        .filter_map(|(_, p)| match p {
            Packet::Publish(p) => Some(p.properties.message_expiry_interval),
            _ => None,
        })
        .collect();
    // 5.5 s left of the first (sent as 6); the second expired [MQTT-3.3.2-5]
    // and the application is told, its identifier free again.
    assert_eq!(resent, vec![Some(6)]);
    assert_eq!(pair.rec.client_dropped, vec![('c', 1)]);
    assert!(pair.rec.client_open.is_empty());
}

#[test]
fn mqtt_3_1_2_25_a_message_too_large_for_the_client_is_dropped() {
    let mut pair = Pair::new(V5);
    pair.options.properties.maximum_packet_size = core::num::NonZeroU32::new(64);
    pair.connect(true);
    pair.settle();
    let big = ('s', 100);
    let mut p = publish("t", QoS::AtLeastOnce, None);
    p.payload = Bytes::from(vec![b'x'; 100]);
    pair.server.as_mut().unwrap().send(pair.now, p).unwrap();
    let _ = big;
    pair.server_publish("t", QoS::AtLeastOnce);
    pair.settle();
    // [MQTT-3.1.2-24]: nothing above 64 bytes went out; the next message did.
    assert!(
        pair.rec
            .wire_s2c
            .iter()
            .all(|(_, p)| p.encoded_len(V5) <= 64)
    );
    assert_eq!(pair.rec.client_got.len(), 1);
    let session = pair.server.as_ref().unwrap().session().unwrap();
    assert_eq!(
        session.inflight_len(),
        0,
        "[MQTT-3.1.2-25] treated as delivered"
    );
}

/// `write_transmit` sizes a PUBLISH by writing it (no topic aliases): one
/// larger than the peer's Maximum Packet Size is taken back out of the
/// buffer and dropped as delivered [MQTT-3.1.2-24] [MQTT-3.1.2-25], in both
/// roles, and the bytes before it stay.
#[test]
fn mqtt_3_1_2_25_write_transmit_takes_a_message_too_large_back_out() {
    let now = Instant::ZERO;
    // Server to client: the client's CONNECT says 64 bytes.
    let mut server = accepted(
        ServerConfig::default(),
        Connect {
            properties: ConnectProperties {
                maximum_packet_size: core::num::NonZeroU32::new(64),
                ..ConnectProperties::default()
            },
            ..connect(V5, 0)
        },
    );
    let mut big = publish("t", QoS::AtLeastOnce, None);
    big.payload = Bytes::from(vec![b'x'; 100]);
    for message in [
        publish("a", QoS::AtMostOnce, None),
        big,
        publish("b", QoS::AtLeastOnce, None),
    ] {
        server.send(now, message).unwrap();
    }
    let mut buf = BytesMut::new();
    let mut lens = Vec::new();
    while let Some(t) = server.write_transmit(now, &mut buf, usize::MAX) {
        lens.push(t.len);
    }
    let mut topics = Vec::new();
    while let Some(p) = Packet::decode(&mut buf, V5, 1 << 20).unwrap() {
        assert!(p.encoded_len(V5) <= 64, "[MQTT-3.1.2-24] {p:?}");
        if let Packet::Publish(p) = p {
            topics.push(p.topic);
        }
    }
    assert_eq!(topics, [s("a"), s("b")]);
    assert_eq!(lens.len(), 2);
    let session = server.session().unwrap();
    assert_eq!(
        session.inflight_len(),
        1,
        "[MQTT-3.1.2-25] only b awaits its PUBACK"
    );

    // Client to server: queued before the CONNACK said 64 bytes.
    let options = ConnectOptions::new(s("c"));
    let mut client = ClientConnection::new(now, options, ClientSession::new());
    let mut buf = BytesMut::new();
    client.write_transmit(now, &mut buf, usize::MAX).unwrap(); // CONNECT
    let mut big = publish("t", QoS::AtLeastOnce, None);
    big.payload = Bytes::from(vec![b'x'; 100]);
    let big_id = client.publish(now, big).unwrap().unwrap();
    client
        .publish(now, publish("b", QoS::AtLeastOnce, None))
        .unwrap();
    let connack = ConnAck {
        properties: tern_codec::ConnAckProperties {
            maximum_packet_size: core::num::NonZeroU32::new(64),
            ..Default::default()
        },
        ..ConnAck::default()
    };
    client.handle_packet(now, Packet::ConnAck(Box::new(connack)));
    let mut buf = BytesMut::new();
    while client.write_transmit(now, &mut buf, usize::MAX).is_some() {}
    let mut sent = Vec::new();
    while let Some(p) = Packet::decode(&mut buf, V5, 1 << 20).unwrap() {
        sent.push(p);
    }
    assert!(
        matches!(&sent[..], [Packet::Publish(p)] if p.topic == "b"),
        "{sent:?}"
    );
    let events: Vec<_> = std::iter::from_fn(|| client.poll_event()).collect();
    assert!(
        events.contains(&ClientEvent::Published {
            packet_id: big_id,
            qos: QoS::AtLeastOnce,
            reason_code: ReasonCode::PacketTooLarge,
        }),
        "{events:?}"
    );
    assert_eq!(client.session().inflight_len(), 1);
}

#[test]
fn properties_are_not_sent_to_a_v311_client() {
    let mut pair = Pair::new(V311);
    pair.connect(true);
    pair.settle();
    let mut p = publish("t", QoS::AtMostOnce, None);
    p.payload = support::payload(('s', 0));
    p.properties
        .user_properties
        .push(UserProperty::new(s("k"), s("v")));
    pair.rec
        .server_published
        .push(("t".into(), ('s', 0), QoS::AtMostOnce));
    pair.server.as_mut().unwrap().send(pair.now, p).unwrap();
    pair.settle();
    assert_eq!(pair.rec.client_got.len(), 1);
}

// ---- connect rules ----

#[test]
fn will_follows_the_way_the_connection_ended() {
    let with_will = || Connect {
        will: Some(Will {
            topic: s("w"),
            ..Will::default()
        }),
        ..connect(V5, 0)
    };
    let now = Instant::ZERO;
    // Network failure: the will applies.
    let mut server = accepted(ServerConfig::default(), with_will());
    server.handle_closed(now);
    assert!(closed_reason(&mut server).1.is_some());
    // Normal DISCONNECT: no will [MQTT-3.1.2-10].
    let mut server = accepted(ServerConfig::default(), with_will());
    server.handle_packet(now, Packet::from(Disconnect::default()));
    assert!(closed_reason(&mut server).1.is_none());
    // MQTT 5 DISCONNECT 0x04, or with an error code: the will applies; only
    // 0x00 deletes it [MQTT-3.1.2-8] [MQTT-3.14.4-3].
    for code in [
        ReasonCode::DisconnectWithWill,
        ReasonCode::UnspecifiedError,
        ReasonCode::MessageRateTooHigh,
    ] {
        let mut server = accepted(ServerConfig::default(), with_will());
        server.handle_packet(now, Packet::Disconnect(Box::new(Disconnect::new(code))));
        assert!(closed_reason(&mut server).1.is_some(), "{code}");
    }
    // A protocol error: the will applies.
    let mut server = accepted(ServerConfig::default(), with_will());
    server.handle_packet(now, Packet::Connect(Box::new(connect(V5, 0))));
    let (reason, will) = closed_reason(&mut server);
    assert_eq!(
        violation_code(&reason),
        ReasonCode::ProtocolError,
        "[MQTT-3.1.0-2]"
    );
    assert!(will.is_some());
}

#[test]
fn session_expiry_cannot_be_raised_from_zero_on_disconnect() {
    let mut server = accepted(ServerConfig::default(), connect(V5, 0));
    server.handle_packet(
        Instant::ZERO,
        Packet::Disconnect(Box::new(Disconnect {
            reason_code: ReasonCode::Success,
            properties: DisconnectProperties {
                session_expiry_interval: Some(10),
                ..Default::default()
            },
        })),
    );
    assert_eq!(
        violation_code(&closed_reason(&mut server).0),
        ReasonCode::ProtocolError
    );
}

#[test]
fn mqtt_3_1_0_1_the_first_packet_must_be_connect() {
    let mut server = ServerConnection::new(Instant::ZERO, ServerConfig::default());
    server.handle_packet(Instant::ZERO, Packet::PingReq);
    assert!(server.is_closed());
    assert_eq!(
        server.poll_transmit(Instant::ZERO),
        None,
        "no CONNACK, no DISCONNECT"
    );
}

#[test]
fn mqtt_3_1_3_8_empty_client_id_needs_a_clean_session_in_311() {
    let mut server = ServerConnection::new(Instant::ZERO, ServerConfig::default());
    server.handle_packet(
        Instant::ZERO,
        Packet::Connect(Box::new(Connect {
            client_id: MqttString::new(),
            clean_start: false,
            ..connect(V311, 0)
        })),
    );
    let mut wire = BytesMut::new();
    server
        .poll_transmit(Instant::ZERO)
        .unwrap()
        .encode(V311, &mut wire)
        .unwrap();
    assert_eq!(
        &wire[..],
        &[0x20, 0x02, 0x00, 0x02],
        "CONNACK return code 2"
    );
    assert!(server.is_closed());
}

#[test]
fn mqtt_3_1_2_2_unsupported_protocol_level_gets_return_code_1() {
    let mut server = ServerConnection::new(Instant::ZERO, ServerConfig::default());
    // CONNECT "MQTT" level 6.
    let mut bytes = BytesMut::from(
        &[
            0x10, 0x0c, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x06, 0x02, 0x00, 0x3c, 0x00, 0x00,
        ][..],
    );
    server.handle_bytes(Instant::ZERO, &mut bytes);
    let mut wire = BytesMut::new();
    server
        .poll_transmit(Instant::ZERO)
        .unwrap()
        .encode(V311, &mut wire)
        .unwrap();
    assert_eq!(&wire[..], &[0x20, 0x02, 0x00, 0x01]);
    assert!(server.is_closed());
}

#[test]
fn mqtt_3_1_2_1_another_protocol_name_is_closed_without_connack() {
    // "MQXX" with level 5 and with level 4: not this protocol, so no CONNACK
    // in either format.
    for level in [0x05, 0x04] {
        let mut server = ServerConnection::new(Instant::ZERO, ServerConfig::default());
        let mut bytes = BytesMut::from(
            &[
                0x10, 0x0d, 0x00, 0x04, b'M', b'Q', b'X', b'X', level, 0x02, 0x00, 0x3c, 0x00,
                0x00, 0x00,
            ][..],
        );
        server.handle_bytes(Instant::ZERO, &mut bytes);
        assert_eq!(server.poll_transmit(Instant::ZERO), None, "level {level}");
        assert!(server.is_closed());
    }
}

#[test]
fn a_malformed_v5_connect_is_answered_with_connack_0x81() {
    let mut server = ServerConnection::new(Instant::ZERO, ServerConfig::default());
    // CONNECT v5 with the reserved flag set [MQTT-3.1.2-3].
    let mut bytes = BytesMut::from(
        &[
            0x10, 0x0d, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x03, 0x00, 0x3c, 0x00, 0x00,
            0x00,
        ][..],
    );
    server.handle_bytes(Instant::ZERO, &mut bytes);
    assert!(matches!(
        server.poll_transmit(Instant::ZERO),
        Some(Packet::ConnAck(a)) if a.reason_code == ReasonCode::MalformedPacket
    ));
    assert!(server.is_closed());
}

#[test]
fn mqtt_3_2_2_12_a_will_above_maximum_qos_is_refused() {
    let config = ServerConfig {
        maximum_qos: QoS::AtLeastOnce,
        ..ServerConfig::default()
    };
    let mut server = ServerConnection::new(Instant::ZERO, config);
    server.handle_packet(
        Instant::ZERO,
        Packet::Connect(Box::new(Connect {
            will: Some(Will {
                topic: s("w"),
                qos: QoS::ExactlyOnce,
                ..Will::default()
            }),
            ..connect(V5, 0)
        })),
    );
    assert!(matches!(
        server.poll_transmit(Instant::ZERO),
        Some(Packet::ConnAck(a)) if a.reason_code == ReasonCode::QosNotSupported
    ));
}

#[test]
fn maximum_qos_is_enforced_both_ways() {
    let mut pair = Pair::new(V5);
    pair.config.maximum_qos = QoS::AtLeastOnce;
    pair.connect(true);
    pair.settle();
    assert_eq!(
        pair.client_publish("t", QoS::ExactlyOnce),
        Err(PublishError::QosNotSupported {
            maximum: QoS::AtLeastOnce
        }),
        "[MQTT-3.2.2-11]"
    );
    let config = ServerConfig {
        maximum_qos: QoS::AtLeastOnce,
        ..ServerConfig::default()
    };
    let mut server = accepted(config, connect(V5, 0));
    server.handle_packet(
        Instant::ZERO,
        Packet::Publish(publish("t", QoS::ExactlyOnce, Some(1))),
    );
    assert_eq!(
        violation_code(&closed_reason(&mut server).0),
        ReasonCode::QosNotSupported
    );
}

// ---- sessions ----

#[test]
fn mqtt_3_2_2_5_a_lost_session_republishes_and_resubscribes() {
    let mut pair = Pair::new(V5);
    pair.connect(false);
    pair.settle();
    let sub = pair
        .client
        .as_mut()
        .unwrap()
        .subscribe(
            pair.now,
            vec![SubscribeFilter {
                filter: s("x/#"),
                options: SubscriptionOptions::with_qos(QoS::AtLeastOnce),
            }],
            Default::default(),
        )
        .unwrap();
    pair.settle();
    let _ = sub;
    pair.client_publish("t", QoS::AtLeastOnce).unwrap();
    pair.flush_client(); // sent but never delivered
    pair.reset();
    pair.server_session = None; // the server forgot the session
    let before = pair.rec.wire_c2s.len();
    pair.connect(false);
    pair.settle();
    let after: Vec<_> = pair.rec.wire_c2s[before..].iter().map(|(_, p)| p).collect();
    assert!(
        after
            .iter()
            .any(|p| matches!(p, Packet::Subscribe(s) if s.filters[0].filter == "x/#"))
    );
    assert!(
        after
            .iter()
            .any(|p| matches!(p, Packet::Publish(p) if !p.dup)),
        "sent again as new"
    );
    assert_eq!(pair.rec.server_got.len(), 1);
    assert!(pair.rec.client_open.is_empty());
    let granted = pair.client.as_ref().unwrap().session().subscriptions();
    assert!(granted.contains_key(b"x/#".as_slice()));
}

#[test]
fn mqtt_3_2_2_4_session_present_without_state_closes() {
    let mut c = ClientConnection::new(
        Instant::ZERO,
        ConnectOptions::new(s("c")),
        ClientSession::new(),
    );
    let _ = transmits(|| c.poll_transmit(Instant::ZERO));
    c.handle_packet(
        Instant::ZERO,
        Packet::ConnAck(Box::new(tern_codec::ConnAck {
            session_present: true,
            ..Default::default()
        })),
    );
    assert_eq!(c.state(), ConnectionState::Closed);
}

#[test]
fn client_properties_reach_the_server_in_connect() {
    let mut pair = Pair::new(V5);
    pair.options.properties = ConnectProperties {
        session_expiry_interval: Some(77),
        user_properties: vec![UserProperty::new(s("a"), s("1"))],
        ..pair.options.properties.clone()
    };
    pair.connect(false);
    pair.settle();
    let Some((_, Packet::Connect(c))) = pair.rec.wire_c2s.first() else {
        panic!("first packet must be CONNECT");
    };
    assert_eq!(c.properties.session_expiry_interval, Some(77));
    assert_eq!(c.properties.user_properties.len(), 1);
}

#[test]
fn session_state_round_trips_through_serde() {
    let mut pair = Pair::new(V5);
    pair.connect(false);
    pair.settle();
    pair.client_publish("t", QoS::ExactlyOnce).unwrap();
    pair.flush_client();
    pair.reset();
    pair.server_publish("q", QoS::AtLeastOnce);
    let session = pair.server_session.clone().unwrap();
    let json = serde_json::to_string(&session).unwrap();
    let back: ServerSession = serde_json::from_str(&json).unwrap();
    assert_eq!(back, session);
    let client = pair.client_session.clone().unwrap();
    let json = serde_json::to_string(&client).unwrap();
    let back: ClientSession = serde_json::from_str(&json).unwrap();
    assert_eq!(back, client);
    // And the restored session still works.
    pair.client_session = Some(back);
    pair.connect(false);
    pair.settle();
    assert!(pair.rec.client_open.is_empty());
    assert_eq!(pair.rec.client_got.len(), 1);
}

#[test]
fn a_subscribe_reusing_a_pending_identifier_is_refused_with_0x91() {
    let mut server = accepted(ServerConfig::default(), connect(V5, 0));
    let now = Instant::ZERO;
    let subscribe = |filter: &'static str| {
        Packet::Subscribe(tern_codec::Subscribe {
            packet_id: id(5),
            properties: Default::default(),
            filters: vec![SubscribeFilter {
                filter: s(filter),
                options: SubscriptionOptions::default(),
            }],
        })
    };
    server.handle_packet(now, subscribe("a"));
    server.handle_packet(now, subscribe("b"));
    let requests: Vec<_> = std::iter::from_fn(|| server.poll_event())
        .filter_map(|e| match e {
            ServerEvent::SubscribeRequest(s) => Some(s.filters[0].filter.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(requests, vec![s("a")], "only the first reaches the broker");
    assert!(matches!(
        server.poll_transmit(now),
        Some(Packet::SubAck(a)) if a.reason_codes == vec![ReasonCode::PacketIdentifierInUse]
    ));
    server
        .suback(now, id(5), vec![ReasonCode::Success], Default::default())
        .unwrap();
}

/// A body's tag comes back in `Delivered` when each delivery's flow
/// finishes (PUBACK for QoS 1, PUBCOMP for QoS 2), so a broker that stores
/// its queues deletes the right entry; untagged bodies report none.
#[test]
fn a_bodys_tag_comes_back_when_its_flow_finishes() {
    let now = Instant::ZERO;
    let mut server = accepted(ServerConfig::default(), connect(ProtocolVersion::V5, 0));
    let tagged = |n: u64, qos| {
        let mut d = Delivery::from(publish("t", qos, None));
        let mut body = (*d.body).clone();
        body.tag = core::num::NonZeroU64::new(n);
        d.body = std::sync::Arc::new(body);
        d
    };
    server.send(now, tagged(41, QoS::AtLeastOnce)).unwrap();
    server.send(now, tagged(42, QoS::ExactlyOnce)).unwrap();
    server
        .send(now, Delivery::from(publish("t", QoS::AtLeastOnce, None)))
        .unwrap();
    let ids: Vec<PacketId> = transmits(|| server.poll_transmit(now))
        .into_iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => p.packet_id,
            _ => None,
        })
        .collect();
    assert_eq!(ids.len(), 3);
    server.handle_packet(now, Packet::PubAck(tern_codec::PubAck::new(ids[0])));
    server.handle_packet(now, Packet::PubRec(PubRec::new(ids[1])));
    // PUBREC is not the end of a QoS 2 flow: no event yet.
    server.handle_packet(now, Packet::PubAck(tern_codec::PubAck::new(ids[2])));
    server.handle_packet(now, Packet::PubComp(tern_codec::PubComp::new(ids[1])));
    let tags: Vec<Option<u64>> = std::iter::from_fn(|| server.poll_event())
        .filter_map(|e| match e {
            ServerEvent::Delivered { tag, .. } => Some(tag.map(|t| t.get())),
            _ => None,
        })
        .collect();
    assert_eq!(tags, vec![Some(41), None, Some(42)]);
}
