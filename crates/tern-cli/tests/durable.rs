//! `tern broker --data-dir`: sessions that outlive their connection, their
//! subscriptions and retained messages survive SIGKILL and SIGTERM of a
//! real broker process, restarted on the same directory; sessions that end
//! with their connection do not.

mod support;

use bytes::Bytes;
use std::net::SocketAddr;
use std::path::Path;
use support::{BrokerProcess, Raw};
use tern_codec::{
    ConnAck, Connect, ConnectProperties, MqttString, Packet, PacketId, ProtocolVersion, PubAck,
    Publish, QoS, ReasonCode, Subscribe, SubscribeFilter, SubscriptionOptions,
};

fn start(dir: &Path) -> BrokerProcess {
    let dir = dir.to_str().expect("a UTF-8 path");
    let (broker, _, _) =
        BrokerProcess::start_with(&["--tcp", "127.0.0.1:0", "--data-dir", dir], 1, 0);
    broker
}

fn data_dir(name: &str) -> tempdir::Dir {
    tempdir::Dir::new(name)
}

/// A temporary directory removed when dropped.
mod tempdir {
    pub(crate) struct Dir(pub(crate) std::path::PathBuf);
    impl Dir {
        pub(crate) fn new(name: &str) -> Dir {
            let p = std::env::temp_dir().join(format!(
                "tern-durable-{name}-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0)
            ));
            std::fs::create_dir_all(&p).expect("temp dir");
            Dir(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Connects `client` and returns the CONNACK. MQTT 5 with `expiry`
/// seconds of Session Expiry Interval; 3.1.1 with Clean Session
/// `clean_start` (a session without it never expires).
fn connect(
    addr: SocketAddr,
    version: ProtocolVersion,
    client: &'static str,
    clean_start: bool,
    expiry: u32,
) -> (Raw, ConnAck) {
    let mut raw = Raw::open(addr, version);
    raw.send(Packet::Connect(Box::new(Connect {
        protocol: version,
        clean_start,
        client_id: MqttString::from_static(client),
        keep_alive: 60,
        properties: if version.is_v5() {
            ConnectProperties {
                session_expiry_interval: Some(expiry),
                ..Default::default()
            }
        } else {
            ConnectProperties::default()
        },
        ..Connect::default()
    })));
    match raw.next() {
        Some(Packet::ConnAck(a)) => {
            assert_eq!(a.reason_code, ReasonCode::Success, "{client}: {a:?}");
            (raw, *a)
        }
        other => panic!("{client}: expected CONNACK, got {other:?}"),
    }
}

fn subscribe(raw: &mut Raw, filter: &'static str) {
    raw.send(Packet::Subscribe(Subscribe {
        packet_id: PacketId::new(1).unwrap(),
        properties: Default::default(),
        filters: vec![SubscribeFilter {
            filter: MqttString::from_static(filter),
            options: SubscriptionOptions::with_qos(QoS::AtLeastOnce),
        }],
    }));
    match raw.next() {
        Some(Packet::SubAck(a)) => assert_eq!(a.reason_codes, vec![ReasonCode::GrantedQos1]),
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

/// Publishes at QoS 1 and waits for the PUBACK.
fn publish(addr: SocketAddr, topic: &'static str, payload: &'static [u8], retain: bool) {
    let (mut raw, _) = connect(addr, ProtocolVersion::V5, "publisher", true, 0);
    raw.send(Packet::Publish(Publish {
        qos: QoS::AtLeastOnce,
        retain,
        topic: MqttString::from_static(topic),
        packet_id: Some(PacketId::new(7).unwrap()),
        payload: Bytes::from_static(payload),
        ..Publish::default()
    }));
    match raw.next() {
        Some(Packet::PubAck(PubAck { reason_code, .. })) => assert!(reason_code.is_success()),
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

/// The next PUBLISH's topic and payload (PUBACKing it).
fn received(raw: &mut Raw) -> (String, Vec<u8>) {
    match raw.next() {
        Some(Packet::Publish(p)) => {
            if let Some(id) = p.packet_id {
                raw.send(Packet::PubAck(PubAck {
                    packet_id: id,
                    reason_code: ReasonCode::Success,
                    properties: Default::default(),
                }));
            }
            (p.topic.as_str().to_owned(), p.payload.to_vec())
        }
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

/// Sets up, before the crash: a 5.0 session with a Session Expiry Interval
/// and a 3.1.1 session without Clean Session, each subscribed; a 5.0
/// session that ends with its connection, subscribed too; a retained
/// message. Every acknowledgement was received before this returns.
fn before(addr: SocketAddr) -> Vec<Raw> {
    let (mut v5, ack) = connect(addr, ProtocolVersion::V5, "keeper5", true, 3600);
    assert!(!ack.session_present);
    subscribe(&mut v5, "plant/#");
    let (mut v311, ack) = connect(addr, ProtocolVersion::V3_1_1, "keeper311", false, 0);
    assert!(!ack.session_present);
    subscribe(&mut v311, "plant/+/temp");
    let (mut gone, _) = connect(addr, ProtocolVersion::V5, "ephemeral", true, 0);
    subscribe(&mut gone, "plant/#");
    publish(addr, "plant/7/state", b"running", true);
    // The connections stay open: the crash is their end.
    vec![v5, v311, gone]
}

/// After the restart: the stored sessions are present with their
/// subscriptions, the one that ended with its connection is not, and the
/// retained message is there.
fn after(addr: SocketAddr) {
    // A session is resumed when one is present [MQTT-3.2.2-2] (5.0: 3.2.2.1.1).
    let (mut v5, ack) = connect(addr, ProtocolVersion::V5, "keeper5", false, 3600);
    assert!(ack.session_present, "the 5.0 session survived");
    let (mut v311, ack) = connect(addr, ProtocolVersion::V3_1_1, "keeper311", false, 0);
    assert!(ack.session_present, "the 3.1.1 session survived");
    // A session with Session Expiry Interval 0 ended with its connection
    // [MQTT-3.1.2-23]: none is present [MQTT-3.2.2-3].
    let (gone, ack) = connect(addr, ProtocolVersion::V5, "ephemeral", false, 0);
    assert!(!ack.session_present, "a session without expiry is gone");
    drop(gone);
    // The retained QoS 1 message was sent to the online 5.0 session before
    // the crash and never acknowledged: it comes again [MQTT-4.4.0-1].
    assert_eq!(
        received(&mut v5),
        ("plant/7/state".into(), b"running".to_vec())
    );
    // Their subscriptions still deliver, without subscribing again.
    publish(addr, "plant/7/temp", b"21.5", false);
    assert_eq!(received(&mut v5), ("plant/7/temp".into(), b"21.5".to_vec()));
    assert_eq!(
        received(&mut v311),
        ("plant/7/temp".into(), b"21.5".to_vec())
    );
    // The retained message, to a new subscriber [MQTT-3.3.1-9].
    let (mut fresh, _) = connect(addr, ProtocolVersion::V5, "fresh", true, 0);
    subscribe(&mut fresh, "plant/7/state");
    assert_eq!(
        received(&mut fresh),
        ("plant/7/state".into(), b"running".to_vec())
    );
}

#[test]
fn sessions_subscriptions_and_retained_messages_survive_kill_9() {
    let dir = data_dir("kill");
    let mut broker = start(&dir.0);
    let open = before(broker.tcp);
    broker.broker.kill();
    drop(open);
    let broker = start(&dir.0);
    after(broker.tcp);
}

#[test]
fn sessions_subscriptions_and_retained_messages_survive_sigterm() {
    let dir = data_dir("term");
    let mut broker = start(&dir.0);
    let open = before(broker.tcp);
    broker.terminate();
    assert!(broker.wait_exit().success());
    drop(open);
    let broker = start(&dir.0);
    after(broker.tcp);
}

#[test]
fn a_second_broker_on_the_same_directory_is_refused_naming_it() {
    let dir = data_dir("twice");
    let _first = start(&dir.0);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["broker", "--tcp", "127.0.0.1:0", "--data-dir"])
        .arg(&dir.0)
        .output()
        .expect("tern runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("in use by another process") && err.contains(dir.0.to_str().unwrap()),
        "{err}"
    );
}

/// Publishes `n` QoS 1 messages `0`, `1`, ... on one connection, each
/// PUBACKed before the next.
fn publish_many(addr: SocketAddr, topic: &'static str, n: u16) {
    let (mut raw, _) = connect(addr, ProtocolVersion::V5, "publisher", true, 0);
    for i in 0..n {
        raw.send(Packet::Publish(Publish {
            qos: QoS::AtLeastOnce,
            topic: MqttString::from_static(topic),
            packet_id: Some(PacketId::new(i + 1).unwrap()),
            payload: Bytes::from(i.to_string()),
            ..Publish::default()
        }));
        match raw.next() {
            Some(Packet::PubAck(a)) => {
                assert_eq!(a.packet_id.get(), i + 1);
                assert!(a.reason_code.is_success(), "{a:?}");
            }
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
}

/// Every QoS 1 message whose PUBACK the publisher got before the broker
/// was killed reaches the session it was queued for, after the restart
/// [MQTT-3.1.2-5] [MQTT-4.3.2-1]; a delivered and acknowledged one is not
/// sent again.
#[test]
fn acknowledged_messages_queued_for_offline_sessions_survive_kill_9() {
    let dir = data_dir("queue");
    let mut broker = start(&dir.0);
    for (version, client) in [
        (ProtocolVersion::V5, "offline5"),
        (ProtocolVersion::V3_1_1, "offline311"),
    ] {
        let (mut raw, _) = connect(broker.tcp, version, client, false, 3600);
        subscribe(&mut raw, "queue/#");
        raw.send(Packet::Disconnect(Default::default()));
        assert!(raw.next().is_none(), "the broker closes after DISCONNECT");
    }
    // One delivered and acknowledged before the crash: not sent again.
    {
        let (mut raw, _) = connect(broker.tcp, ProtocolVersion::V5, "offline5", false, 3600);
        publish(broker.tcp, "queue/first", b"first", false);
        assert_eq!(
            received(&mut raw),
            ("queue/first".into(), b"first".to_vec())
        );
        raw.send(Packet::Disconnect(Default::default()));
        assert!(raw.next().is_none());
    }
    publish_many(broker.tcp, "queue/a", 50);
    broker.broker.kill();
    let broker = start(&dir.0);
    let want: Vec<(String, Vec<u8>)> = (0..50)
        .map(|i: u16| ("queue/a".to_string(), i.to_string().into_bytes()))
        .collect();
    for (version, client) in [
        (ProtocolVersion::V5, "offline5"),
        (ProtocolVersion::V3_1_1, "offline311"),
    ] {
        let (mut raw, ack) = connect(broker.tcp, version, client, false, 3600);
        assert!(ack.session_present, "{client}");
        let mut got: Vec<(String, Vec<u8>)> = Vec::new();
        if client == "offline311" {
            // It was offline for "queue/first" too.
            got.push(received(&mut raw));
            assert_eq!(got.remove(0), ("queue/first".into(), b"first".to_vec()));
        }
        for _ in 0..50 {
            got.push(received(&mut raw));
        }
        assert_eq!(got, want, "{client}: every acknowledged message, in order");
        // Nothing more (no "queue/first" again for the 5.0 session): a
        // marker published now is the next thing it gets.
        publish(broker.tcp, "queue/marker", b"m", false);
        assert_eq!(
            received(&mut raw),
            ("queue/marker".into(), b"m".to_vec()),
            "{client}"
        );
    }
}

/// A QoS 2 message whose PUBREC the broker got is not sent again after a
/// kill -9: the restarted broker resends the PUBREL with the original
/// Packet Identifier [MQTT-4.4.0-1], never the PUBLISH [MQTT-4.3.3-6], so
/// the client does not get it twice.
#[test]
fn an_owed_pubrel_is_resent_after_kill_9_not_the_publish() {
    let dir = data_dir("pubrel");
    let mut broker = start(&dir.0);
    let (mut sub, _) = connect(broker.tcp, ProtocolVersion::V5, "q2sub", false, 3600);
    sub.send(Packet::Subscribe(Subscribe {
        packet_id: PacketId::new(1).unwrap(),
        properties: Default::default(),
        filters: vec![SubscribeFilter {
            filter: MqttString::from_static("q2/#"),
            options: SubscriptionOptions::with_qos(QoS::ExactlyOnce),
        }],
    }));
    assert!(matches!(sub.next(), Some(Packet::SubAck(_))));
    publish(broker.tcp, "q2/a", b"once", false);
    let id = match sub.next() {
        Some(Packet::Publish(p)) => {
            assert_eq!((p.qos, &p.payload[..]), (QoS::AtLeastOnce, &b"once"[..]));
            p.packet_id.unwrap()
        }
        other => panic!("expected PUBLISH, got {other:?}"),
    };
    // Published at QoS 1: acknowledge it, and publish one at QoS 2.
    sub.send(Packet::PubAck(PubAck::new(id)));
    let (mut publisher, _) = connect(broker.tcp, ProtocolVersion::V5, "p2", true, 0);
    publisher.send(Packet::Publish(Publish {
        qos: QoS::ExactlyOnce,
        topic: MqttString::from_static("q2/b"),
        packet_id: Some(PacketId::new(3).unwrap()),
        payload: Bytes::from_static(b"exactly"),
        ..Publish::default()
    }));
    assert!(matches!(publisher.next(), Some(Packet::PubRec(_))));
    let id = match sub.next() {
        Some(Packet::Publish(p)) => {
            assert_eq!((p.qos, &p.payload[..]), (QoS::ExactlyOnce, &b"exactly"[..]));
            p.packet_id.unwrap()
        }
        other => panic!("expected PUBLISH, got {other:?}"),
    };
    sub.send(Packet::PubRec(tern_codec::PubRec::new(id)));
    match sub.next() {
        Some(Packet::PubRel(r)) => assert_eq!(r.packet_id, id),
        other => panic!("expected PUBREL, got {other:?}"),
    }
    // The client has the message; the broker dies before its PUBCOMP.
    broker.broker.kill();
    drop(sub);
    let broker = start(&dir.0);
    let (mut sub, ack) = connect(broker.tcp, ProtocolVersion::V5, "q2sub", false, 3600);
    assert!(ack.session_present);
    match sub.next() {
        Some(Packet::PubRel(r)) => assert_eq!(r.packet_id, id, "the original identifier"),
        other => panic!("expected the PUBREL again, got {other:?}"),
    }
    sub.send(Packet::PubComp(tern_codec::PubComp::new(id)));
    // Nothing else is owed: the next thing it gets is a new message.
    publish(broker.tcp, "q2/marker", b"m", false);
    assert_eq!(received(&mut sub), ("q2/marker".into(), b"m".to_vec()));
}

/// A QoS 2 PUBLISH the broker accepted (PUBREC sent) and whose PUBREL had
/// not come before a kill -9: the publisher's resend after the restart is
/// acknowledged, not routed again [MQTT-4.3.3-10]; after its PUBREL the
/// identifier carries a new message.
#[test]
fn an_accepted_qos2_publish_resent_after_kill_9_is_not_delivered_twice() {
    let dir = data_dir("incoming");
    let mut broker = start(&dir.0);
    let (mut sub, _) = connect(broker.tcp, ProtocolVersion::V5, "in-sub", false, 3600);
    subscribe(&mut sub, "in/#");
    sub.send(Packet::Disconnect(Default::default()));
    assert!(sub.next().is_none());
    let qos2 = |dup: bool, payload: &'static [u8]| {
        Packet::Publish(Publish {
            dup,
            qos: QoS::ExactlyOnce,
            topic: MqttString::from_static("in/a"),
            packet_id: Some(PacketId::new(5).unwrap()),
            payload: Bytes::from_static(payload),
            ..Publish::default()
        })
    };
    let (mut publisher, _) = connect(broker.tcp, ProtocolVersion::V5, "in-pub", false, 3600);
    publisher.send(qos2(false, b"one"));
    assert!(matches!(publisher.next(), Some(Packet::PubRec(r)) if r.packet_id.get() == 5));
    broker.broker.kill();
    drop(publisher);
    let broker = start(&dir.0);
    let (mut publisher, ack) = connect(broker.tcp, ProtocolVersion::V5, "in-pub", false, 3600);
    assert!(ack.session_present);
    // It never got PUBCOMP: it resends the PUBLISH [MQTT-4.4.0-1].
    publisher.send(qos2(true, b"one"));
    assert!(matches!(publisher.next(), Some(Packet::PubRec(r)) if r.packet_id.get() == 5));
    publisher.send(Packet::PubRel(tern_codec::PubRel::new(
        PacketId::new(5).unwrap(),
    )));
    match publisher.next() {
        Some(Packet::PubComp(c)) => assert_eq!(c.reason_code, ReasonCode::Success),
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
    // The identifier is free: a new message with it is routed.
    publisher.send(qos2(false, b"two"));
    assert!(matches!(publisher.next(), Some(Packet::PubRec(_))));
    let (mut sub, _) = connect(broker.tcp, ProtocolVersion::V5, "in-sub", false, 3600);
    assert_eq!(received(&mut sub), ("in/a".into(), b"one".to_vec()));
    assert_eq!(
        received(&mut sub),
        ("in/a".into(), b"two".to_vec()),
        "\"one\" once"
    );
}
