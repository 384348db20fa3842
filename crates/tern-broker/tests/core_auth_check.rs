//! Password checks off the core's thread, through the sans-IO core: a
//! CONNECT whose authenticator answers `AuthDecision::Check` waits (no
//! CONNACK, its pipelined packets unread, reading paused) while the core
//! goes on routing other clients' messages; the shell runs the check and
//! reports it, and the client is let in or refused [MQTT-3.1.4-2]
//! [MQTT-3.2.2-6] [MQTT-3.2.2-7].

use bytes::{Bytes, BytesMut};
use tern_broker::{
    AuthCheck, AuthDecision, Authenticator, Broker, BrokerConfig, BrokerEvent, ConnId, MemoryStore,
    PendingCheck,
};
use tern_codec::{
    Connect, MqttString, Packet, PacketId, ProtocolVersion, Publish, ReasonCode, SubscribeFilter,
    SubscriptionOptions,
};
use tern_session::Instant;

/// Every user name/password check is slow: the password must be "good".
struct Slow;

impl Authenticator for Slow {
    fn authenticate(&mut self, connect: &Connect, _: Option<&str>) -> AuthDecision {
        if connect.username.is_none() {
            return AuthDecision::Accept;
        }
        let password = connect.password.clone().unwrap_or_default();
        AuthDecision::Check(AuthCheck::new(move || {
            if password.as_ref() == b"good" {
                Ok(())
            } else {
                Err(ReasonCode::BadUserNameOrPassword)
            }
        }))
    }
}

fn s(text: &str) -> MqttString {
    MqttString::try_from(text).unwrap()
}

fn broker() -> Broker {
    Broker::with_hooks(
        BrokerConfig::default(),
        Instant::ZERO,
        Box::new(MemoryStore::new()),
        Box::new(Slow),
    )
}

fn connect(version: ProtocolVersion, id: &str, user: Option<(&str, &'static [u8])>) -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol: version,
        clean_start: true,
        client_id: s(id),
        username: user.map(|(u, _)| s(u)),
        password: user.map(|(_, p)| Bytes::from_static(p)),
        ..Connect::default()
    }))
}

fn publish(topic: &str, payload: &'static [u8]) -> Packet {
    Packet::Publish(Publish {
        topic: s(topic),
        payload: Bytes::from_static(payload),
        ..Publish::default()
    })
}

fn subscribe(filter: &str) -> Packet {
    Packet::Subscribe(tern_codec::Subscribe {
        packet_id: PacketId::new(1).unwrap(),
        properties: Default::default(),
        filters: vec![SubscribeFilter {
            filter: s(filter),
            options: SubscriptionOptions::default(),
        }],
    })
}

fn bytes(version: ProtocolVersion, packets: &[Packet]) -> BytesMut {
    let mut buf = BytesMut::new();
    for p in packets {
        p.encode(version, &mut buf).unwrap();
    }
    buf
}

/// Every packet the broker sends now, by connection; and its events.
fn drain(b: &mut Broker, now: Instant) -> (Vec<(ConnId, Packet)>, Vec<BrokerEvent>) {
    let sent = std::iter::from_fn(|| b.poll_transmit(now).map(|t| (t.conn, t.packet))).collect();
    let events = std::iter::from_fn(|| b.poll_event()).collect();
    (sent, events)
}

fn to(sent: &[(ConnId, Packet)], conn: ConnId) -> Vec<Packet> {
    sent.iter()
        .filter(|(c, _)| *c == conn)
        .map(|(_, p)| p.clone())
        .collect()
}

fn connack_code(packets: &[Packet]) -> Option<ReasonCode> {
    packets.iter().find_map(|p| match p {
        Packet::ConnAck(a) => Some(a.reason_code),
        _ => None,
    })
}

/// A new MQTT 5 connection whose CONNECT (client "c", user "alice") is
/// handed in; its password check is then pending.
fn connect_as_alice(b: &mut Broker, now: Instant, password: &'static [u8]) -> ConnId {
    let conn = b.accept(now);
    b.handle_bytes(
        now,
        conn,
        &mut bytes(v5(), &[connect(v5(), "c", Some(("alice", password)))]),
    );
    conn
}

fn v5() -> ProtocolVersion {
    ProtocolVersion::V5
}

#[test]
fn a_connect_waits_for_its_check_while_other_clients_are_served() {
    let now = Instant::ZERO;
    let mut b = broker();
    // A bystander subscribed to `t`, and one publishing to it.
    let sub = b.accept(now);
    b.handle_bytes(
        now,
        sub,
        &mut bytes(v5(), &[connect(v5(), "sub", None), subscribe("t")]),
    );
    let publ = b.accept(now);
    b.handle_bytes(now, publ, &mut bytes(v5(), &[connect(v5(), "pub", None)]));
    drain(&mut b, now);

    // A client with a password, and a PUBLISH pipelined behind its CONNECT.
    let slow = b.accept(now);
    let mut input = bytes(
        v5(),
        &[
            connect(v5(), "slow", Some(("alice", b"good"))),
            publish("t", b"from slow"),
        ],
    );
    let pipelined = publish("t", b"from slow").encoded_len(v5());
    b.handle_bytes(now, slow, &mut input);
    let (sent, events) = drain(&mut b, now);
    assert_eq!(to(&sent, slow), vec![], "no CONNACK before the check");
    assert!(
        events.contains(&BrokerEvent::PauseReading(slow)),
        "{events:?}"
    );
    assert!(b.is_reading_paused(slow));
    assert_eq!(input.len(), pipelined, "the PUBLISH waits unread");
    let Some(PendingCheck { conn, check }) = b.poll_auth_check() else {
        panic!("a check for the shell")
    };
    assert_eq!(conn, slow);
    assert!(b.poll_auth_check().is_none());
    assert_eq!(b.stats().auth_checks, 1);

    // Meanwhile the bystanders' messages are routed.
    b.handle_bytes(now, publ, &mut bytes(v5(), &[publish("t", b"bystander")]));
    let (sent, _) = drain(&mut b, now);
    assert_eq!(to(&sent, sub), vec![publish("t", b"bystander")]);

    // The shell ran the check: CONNACK 0x00, reading resumes, and the
    // pipelined PUBLISH is handed in and routed.
    let outcome = check.run();
    assert_eq!(outcome, Ok(()));
    b.handle_auth_checked(now, slow, outcome);
    let (sent, events) = drain(&mut b, now);
    assert_eq!(connack_code(&to(&sent, slow)), Some(ReasonCode::Success));
    assert!(
        events.contains(&BrokerEvent::ResumeReading(slow)),
        "{events:?}"
    );
    b.handle_bytes(now, slow, &mut input);
    assert!(input.is_empty());
    let (sent, _) = drain(&mut b, now);
    assert_eq!(to(&sent, sub), vec![publish("t", b"from slow")]);
}

#[test]
fn a_failed_check_refuses_with_its_code_in_each_version() {
    for version in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
        let now = Instant::ZERO;
        let mut b = broker();
        let conn = b.accept(now);
        let mut input = bytes(
            version,
            &[
                connect(version, "c", Some(("alice", b"bad"))),
                publish("t", b"x"),
            ],
        );
        b.handle_bytes(now, conn, &mut input);
        let check = b.poll_auth_check().expect("a check");
        b.handle_auth_checked(now, check.conn, check.check.run());
        let (sent, events) = drain(&mut b, now);
        // MQTT 3.1.1: return code 4, which the codec reads back as 0x86.
        assert_eq!(
            connack_code(&to(&sent, conn)),
            Some(ReasonCode::BadUserNameOrPassword),
            "{version:?}"
        );
        assert!(events.contains(&BrokerEvent::Close(conn)), "{events:?}");
        assert!(!events.contains(&BrokerEvent::ResumeReading(conn)));
        assert_eq!(b.session_count(), 0, "no session for a refused client");
    }
}

#[test]
fn a_code_a_connack_cannot_carry_becomes_not_authorized() {
    let now = Instant::ZERO;
    let mut b = broker();
    let conn = connect_as_alice(&mut b, now, b"good");
    let check = b.poll_auth_check().unwrap();
    // 0x8E Session taken over is a DISCONNECT code only.
    b.handle_auth_checked(now, check.conn, Err(ReasonCode::SessionTakenOver));
    let (sent, _) = drain(&mut b, now);
    assert_eq!(
        connack_code(&to(&sent, conn)),
        Some(ReasonCode::NotAuthorized)
    );
}

#[test]
fn an_outcome_for_a_connection_that_has_gone_is_ignored() {
    let now = Instant::ZERO;
    let mut b = broker();
    let gone = connect_as_alice(&mut b, now, b"good");
    let check = b.poll_auth_check().unwrap();
    b.handle_closed(now, gone);
    drain(&mut b, now);
    // A new connection may take the slot; the old outcome is not its.
    let next = connect_as_alice(&mut b, now, b"bad");
    assert_ne!(next, gone);
    b.handle_auth_checked(now, check.conn, check.check.run());
    let (sent, _) = drain(&mut b, now);
    assert_eq!(to(&sent, next), vec![], "still waiting for its own check");
    assert_eq!(b.session_count(), 0);
    let own = b.poll_auth_check().unwrap();
    assert_eq!(own.conn, next);
    b.handle_auth_checked(now, own.conn, own.check.run());
    let (sent, _) = drain(&mut b, now);
    assert_eq!(
        connack_code(&to(&sent, next)),
        Some(ReasonCode::BadUserNameOrPassword)
    );
}

#[test]
fn a_queued_check_whose_connection_has_gone_is_not_run() {
    let now = Instant::ZERO;
    let mut b = broker();
    let conn = connect_as_alice(&mut b, now, b"good");
    let check = b.poll_auth_check().unwrap().check;
    assert!(check.is_wanted());
    b.handle_closed(now, conn);
    assert!(!check.is_wanted(), "nobody waits for it");
    // `Slow` would answer Ok for "good": the work is skipped.
    assert_eq!(check.run(), Err(ReasonCode::UnspecifiedError));
}

#[test]
fn the_connect_timeout_still_runs_while_a_check_is_pending() {
    let now = Instant::ZERO;
    let mut b = broker();
    let conn = connect_as_alice(&mut b, now, b"good");
    let check = b.poll_auth_check().unwrap();
    let deadline = b.poll_timeout().expect("the connect deadline");
    b.handle_timeout(deadline);
    let (_, events) = drain(&mut b, deadline);
    assert!(events.contains(&BrokerEvent::Close(conn)), "{events:?}");
    // The check finishes late: nothing happens (the client is not let in).
    b.handle_auth_checked(deadline, conn, check.check.run());
    let (sent, _) = drain(&mut b, deadline);
    assert!(connack_code(&to(&sent, conn)) != Some(ReasonCode::Success));
    assert_eq!(b.session_count(), 0);
}
