//! Story tests for the session state machines, one protocol rule each,
//! named by the specification statement they check.

mod support;

use bytes::{Bytes, BytesMut};
use core::{num::NonZeroU16, time::Duration};
use support::Pair;
use tern_codec::{
    Connect, ConnectProperties, Disconnect, DisconnectProperties, MqttString, Packet, PacketId,
    ProtocolVersion, PubRel, Publish, PublishProperties, QoS, ReasonCode, SubscribeFilter,
    SubscriptionOptions, UserProperty, Will,
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
    server.handle_packet(now, Packet::Connect(connect));
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
            Some(ServerEvent::Closed { reason, will, .. }) => return (reason, will),
            Some(_) => continue,
            None => panic!("no Closed event"),
        }
    }
}

fn violation_code(reason: &CloseReason) -> ReasonCode {
    match reason {
        CloseReason::ProtocolViolation(v) => v.reason_code,
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
                Some(&Packet::Disconnect(Disconnect::new(
                    ReasonCode::KeepAliveTimeout
                )))
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
        Some(&Packet::Disconnect(Disconnect::new(
            ReasonCode::ReceiveMaximumExceeded
        )))
    );
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
        },
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
    server.handle_packet(now, Packet::Disconnect(Disconnect::default()));
    assert!(closed_reason(&mut server).1.is_none());
    // MQTT 5 DISCONNECT 0x04: the will applies.
    let mut server = accepted(ServerConfig::default(), with_will());
    server.handle_packet(
        now,
        Packet::Disconnect(Disconnect::new(ReasonCode::DisconnectWithWill)),
    );
    assert!(closed_reason(&mut server).1.is_some());
    // A protocol error: the will applies.
    let mut server = accepted(ServerConfig::default(), with_will());
    server.handle_packet(now, Packet::Connect(connect(V5, 0)));
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
        Packet::Disconnect(Disconnect {
            reason_code: ReasonCode::Success,
            properties: DisconnectProperties {
                session_expiry_interval: Some(10),
                ..Default::default()
            },
        }),
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
        Packet::Connect(Connect {
            client_id: MqttString::new(),
            clean_start: false,
            ..connect(V311, 0)
        }),
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
        Packet::Connect(Connect {
            will: Some(Will {
                topic: s("w"),
                qos: QoS::ExactlyOnce,
                ..Will::default()
            }),
            ..connect(V5, 0)
        }),
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
        Packet::ConnAck(tern_codec::ConnAck {
            session_present: true,
            ..Default::default()
        }),
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
