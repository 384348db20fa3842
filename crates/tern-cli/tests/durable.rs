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
    Publish, QoS, ReasonCode, Subscribe, SubscribeFilter, SubscriptionOptions, Will,
    WillProperties,
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

/// Connects with `connect` (its protocol level, a keep alive of 60 s) and
/// returns the CONNACK, which must be a success.
fn connect_as(addr: SocketAddr, mut connect: Connect) -> (Raw, ConnAck) {
    connect.keep_alive = 60;
    let mut raw = Raw::open(addr, connect.protocol);
    let client = connect.client_id.as_str().to_owned();
    raw.send(Packet::Connect(Box::new(connect)));
    match raw.next() {
        Some(Packet::ConnAck(a)) => {
            assert_eq!(a.reason_code, ReasonCode::Success, "{client}: {a:?}");
            (raw, *a)
        }
        other => panic!("{client}: expected CONNACK, got {other:?}"),
    }
}

/// A QoS 1 will on `topic` after `delay` seconds (MQTT 5; `None` for 3.1.1).
fn will(topic: &'static str, payload: &'static [u8], delay: Option<u32>) -> Option<Will> {
    Some(Will {
        topic: MqttString::from_static(topic),
        payload: Bytes::from_static(payload),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: WillProperties {
            will_delay_interval: delay,
            ..Default::default()
        },
    })
}

/// A persistent 5.0 session `client` subscribed to `filter` at QoS 1,
/// then disconnected (the broker has handled its DISCONNECT on return).
fn offline_subscriber(addr: SocketAddr, client: &'static str, filter: &'static str) {
    let (mut raw, _) = connect(addr, ProtocolVersion::V5, client, true, 3600);
    subscribe(&mut raw, filter);
    raw.send(Packet::Disconnect(Default::default()));
    assert!(raw.next().is_none(), "the broker closes after DISCONNECT");
}

/// The client of a stored session that was connected when the broker was
/// killed lost its network connection without a DISCONNECT: its will is
/// published after the restart (3.1.1 and 5.0 [MQTT-3.1.2-8]), a 5.0 one
/// once its Will Delay Interval has passed, to the sessions that
/// subscribed before the crash. A will whose client sent DISCONNECT is not
/// [MQTT-3.1.2-10].
#[test]
fn the_will_of_a_client_connected_at_kill_9_is_published_after_the_restart() {
    let dir = data_dir("will");
    let mut broker = start(&dir.0);
    offline_subscriber(broker.tcp, "will-watcher", "will/#");
    let mut open = Vec::new();
    for (version, client, delay) in [
        (ProtocolVersion::V5, "will5", Some(1)),
        (ProtocolVersion::V3_1_1, "will311", None),
    ] {
        let (raw, _) = connect_as(
            broker.tcp,
            Connect {
                protocol: version,
                clean_start: false,
                client_id: MqttString::from_static(client),
                properties: ConnectProperties {
                    session_expiry_interval: version.is_v5().then_some(3600),
                    ..Default::default()
                },
                will: will(
                    if version.is_v5() {
                        "will/5"
                    } else {
                        "will/311"
                    },
                    b"gone",
                    delay,
                ),
                ..Connect::default()
            },
        );
        open.push(raw);
    }
    // A will cancelled by DISCONNECT [MQTT-3.1.2-10] stays cancelled.
    let (mut polite, _) = connect_as(
        broker.tcp,
        Connect {
            protocol: ProtocolVersion::V5,
            client_id: MqttString::from_static("polite"),
            properties: ConnectProperties {
                session_expiry_interval: Some(3600),
                ..Default::default()
            },
            will: will("will/polite", b"no", None),
            ..Connect::default()
        },
    );
    polite.send(Packet::Disconnect(Default::default()));
    assert!(polite.next().is_none());
    // Every record above is synced once this retained message's PUBACK came.
    publish(broker.tcp, "barrier", b"b", true);
    broker.broker.kill();
    drop(open);
    let broker = start(&dir.0);
    let (mut watcher, ack) = connect(broker.tcp, ProtocolVersion::V5, "will-watcher", false, 3600);
    assert!(ack.session_present);
    let mut got = vec![received(&mut watcher), received(&mut watcher)];
    got.sort();
    assert_eq!(
        got,
        vec![
            ("will/311".to_string(), b"gone".to_vec()),
            ("will/5".to_string(), b"gone".to_vec())
        ]
    );
    publish(broker.tcp, "will/marker", b"m", false);
    assert_eq!(
        received(&mut watcher),
        ("will/marker".into(), b"m".to_vec()),
        "no will from the client that sent DISCONNECT"
    );
}

/// Time passes while the broker is down: a session whose Session Expiry
/// Interval ran out then is gone after the restart [MQTT-3.1.2-23]
/// (session present 0 [MQTT-3.2.2-3]); a will whose Will Delay Interval ran
/// out then is published at once [MQTT-3.1.2-8]; a queued message whose
/// Message Expiry Interval ran out then is not delivered [MQTT-3.3.2-5],
/// and one still alive goes out with the interval it has left
/// [MQTT-3.3.2-6].
#[test]
fn expiry_counts_the_time_the_broker_was_down() {
    let dir = data_dir("expiry");
    let mut broker = start(&dir.0);
    offline_subscriber(broker.tcp, "exp-watcher", "exp/#");
    let (mut short, _) = connect(broker.tcp, ProtocolVersion::V5, "exp-short", true, 2);
    short.send(Packet::Disconnect(Default::default()));
    assert!(short.next().is_none());
    let (mut delayed, _) = connect_as(
        broker.tcp,
        Connect {
            protocol: ProtocolVersion::V5,
            client_id: MqttString::from_static("exp-delayed"),
            properties: ConnectProperties {
                session_expiry_interval: Some(3600),
                ..Default::default()
            },
            will: will("exp/will", b"late", Some(2)),
            ..Connect::default()
        },
    );
    // DISCONNECT with Will Message: the will waits for its delay.
    delayed.send(Packet::Disconnect(Box::new(tern_codec::Disconnect::new(
        ReasonCode::DisconnectWithWill,
    ))));
    assert!(delayed.next().is_none());
    let (mut publisher, _) = connect(broker.tcp, ProtocolVersion::V5, "exp-pub", true, 0);
    for (id, payload, expiry) in [(1, "short", 2), (2, "long", 600)] {
        let mut p = Publish {
            qos: QoS::AtLeastOnce,
            topic: MqttString::from_static("exp/m"),
            packet_id: Some(PacketId::new(id).unwrap()),
            payload: Bytes::from_static(payload.as_bytes()),
            ..Publish::default()
        };
        p.properties.message_expiry_interval = Some(expiry);
        publisher.send(Packet::Publish(p));
        assert!(matches!(publisher.next(), Some(Packet::PubAck(_))));
    }
    drop(publisher);
    // Every record above is synced once this retained message's PUBACK came.
    publish(broker.tcp, "barrier", b"b", true);
    broker.broker.kill();
    // The broker is down longer than the 2 s intervals.
    std::thread::sleep(std::time::Duration::from_millis(3500));
    let broker = start(&dir.0);
    let (_short, ack) = connect(broker.tcp, ProtocolVersion::V5, "exp-short", false, 2);
    assert!(
        !ack.session_present,
        "its expiry passed while the broker was down"
    );
    let (mut watcher, ack) = connect(broker.tcp, ProtocolVersion::V5, "exp-watcher", false, 3600);
    assert!(ack.session_present);
    let mut got = Vec::new();
    for _ in 0..2 {
        match watcher.next() {
            Some(Packet::Publish(p)) => {
                watcher.send(Packet::PubAck(PubAck::new(p.packet_id.unwrap())));
                got.push((
                    p.topic.as_str().to_owned(),
                    p.payload.to_vec(),
                    p.properties.message_expiry_interval,
                ));
            }
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
    got.sort();
    let (long, will) = (&got[0], &got[1]);
    assert_eq!((long.0.as_str(), &long.1[..]), ("exp/m", &b"long"[..]));
    let left = long.2.expect("an expiry interval");
    assert!(left <= 597, "the time down counts: {left} s left of 600");
    assert_eq!(
        (will.0.as_str(), &will.1[..]),
        ("exp/will", &b"late"[..]),
        "{got:?}"
    );
    publish(broker.tcp, "exp/marker", b"m", false);
    assert_eq!(
        received(&mut watcher),
        ("exp/marker".into(), b"m".to_vec()),
        "the expired message is not delivered"
    );
}

/// A stored session keeps the user name its client authenticated as: after
/// a restart, the ACL lets a message reach it as that user while it is
/// offline, as before the restart (an anonymous session could not read it).
#[test]
fn an_offline_sessions_user_name_survives_kill_9_for_the_acl() {
    let dir = data_dir("user");
    let acl = dir.0.join("acl");
    std::fs::write(&acl, "topic write #\nuser alice\ntopic read secret/#\n").unwrap();
    let args = |d: &tempdir::Dir| {
        vec![
            "--tcp".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--data-dir".to_owned(),
            d.0.join("data").to_str().unwrap().to_owned(),
            "--acl-file".to_owned(),
            acl.to_str().unwrap().to_owned(),
        ]
    };
    let start_acl = || {
        let a = args(&dir);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        BrokerProcess::start_with(&a, 1, 0).0
    };
    let alice = || Connect {
        protocol: ProtocolVersion::V5,
        client_id: MqttString::from_static("alice-phone"),
        username: Some(MqttString::from_static("alice")),
        properties: ConnectProperties {
            session_expiry_interval: Some(3600),
            ..Default::default()
        },
        ..Connect::default()
    };
    let mut broker = start_acl();
    let (mut raw, _) = connect_as(broker.tcp, alice());
    subscribe(&mut raw, "secret/#");
    raw.send(Packet::Disconnect(Default::default()));
    assert!(raw.next().is_none());
    publish(broker.tcp, "barrier", b"b", true);
    broker.broker.kill();
    let broker = start_acl();
    publish(broker.tcp, "secret/plan", b"s", false);
    let (mut raw, ack) = connect_as(
        broker.tcp,
        Connect {
            clean_start: false,
            ..alice()
        },
    );
    assert!(ack.session_present);
    assert_eq!(received(&mut raw), ("secret/plan".into(), b"s".to_vec()));
}

/// Messages in flight to a stored session when the broker was killed (sent,
/// not acknowledged) are resent after the restart with their original
/// Packet Identifiers [MQTT-4.4.0-1] and DUP set [MQTT-3.3.1-1], QoS 1 and
/// QoS 2, 5.0 and 3.1.1; the QoS 2 flow then completes with them.
#[test]
fn in_flight_messages_are_resent_with_their_packet_ids_and_dup_after_kill_9() {
    let dir = data_dir("inflight");
    let mut broker = start(&dir.0);
    let clients = [
        (ProtocolVersion::V5, "inflight5"),
        (ProtocolVersion::V3_1_1, "inflight311"),
    ];
    let mut subs = Vec::new();
    for (version, client) in clients {
        let (mut raw, _) = connect(broker.tcp, version, client, false, 3600);
        raw.send(Packet::Subscribe(Subscribe {
            packet_id: PacketId::new(1).unwrap(),
            properties: Default::default(),
            filters: vec![SubscribeFilter {
                filter: MqttString::from_static("fly/#"),
                options: SubscriptionOptions::with_qos(QoS::ExactlyOnce),
            }],
        }));
        assert!(matches!(raw.next(), Some(Packet::SubAck(_))));
        subs.push(raw);
    }
    let (mut publisher, _) = connect(broker.tcp, ProtocolVersion::V5, "fly-pub", true, 0);
    for (id, qos, payload) in [
        (1, QoS::AtLeastOnce, &b"one"[..]),
        (2, QoS::ExactlyOnce, &b"two"[..]),
    ] {
        publisher.send(Packet::Publish(Publish {
            qos,
            topic: MqttString::from_static("fly/a"),
            packet_id: Some(PacketId::new(id).unwrap()),
            payload: Bytes::from_static(payload),
            ..Publish::default()
        }));
        assert!(matches!(
            publisher.next(),
            Some(Packet::PubAck(_) | Packet::PubRec(_))
        ));
    }
    // Each subscriber got both and acknowledges neither.
    let mut sent = Vec::new();
    for raw in &mut subs {
        let mut got = Vec::new();
        for _ in 0..2 {
            match raw.next() {
                Some(Packet::Publish(p)) => {
                    assert!(!p.dup);
                    got.push((p.packet_id.unwrap(), p.qos, p.payload.to_vec()));
                }
                other => panic!("expected PUBLISH, got {other:?}"),
            }
        }
        sent.push(got);
    }
    // Every record above is synced once this retained message's PUBACK came.
    publish(broker.tcp, "barrier", b"b", true);
    broker.broker.kill();
    drop(subs);
    let broker = start(&dir.0);
    let mut subs = Vec::new();
    for ((version, client), sent) in clients.into_iter().zip(sent) {
        let (mut raw, ack) = connect(broker.tcp, version, client, false, 3600);
        assert!(ack.session_present, "{client}");
        let mut again = Vec::new();
        for _ in 0..2 {
            match raw.next() {
                Some(Packet::Publish(p)) => {
                    assert!(p.dup, "{client}: a resend has DUP set");
                    again.push((p.packet_id.unwrap(), p.qos, p.payload.to_vec()));
                }
                other => panic!("{client}: expected PUBLISH, got {other:?}"),
            }
        }
        assert_eq!(again, sent, "{client}: the original identifiers");
        let (q1, q2) = (again[0].0, again[1].0);
        raw.send(Packet::PubAck(PubAck::new(q1)));
        raw.send(Packet::PubRec(tern_codec::PubRec::new(q2)));
        match raw.next() {
            Some(Packet::PubRel(r)) => assert_eq!(r.packet_id, q2, "{client}"),
            other => panic!("{client}: expected PUBREL, got {other:?}"),
        }
        raw.send(Packet::PubComp(tern_codec::PubComp::new(q2)));
        subs.push((client, raw));
    }
    // Nothing else is owed: the next thing each gets is a new message.
    publish(broker.tcp, "fly/marker", b"m", false);
    for (client, mut raw) in subs {
        match raw.next() {
            Some(Packet::Publish(p)) => {
                assert_eq!((&p.payload[..], p.dup), (&b"m"[..], false), "{client}");
            }
            other => panic!("{client}: expected PUBLISH, got {other:?}"),
        }
    }
}

/// `tern store check DIR`'s count of `table`.
fn stored(dir: &Path, table: &str) -> u64 {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["store", "check"])
        .arg(dir)
        .output()
        .expect("tern runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{table}: ")))
        .unwrap_or_else(|| panic!("no {table} in {text}"))
        .parse()
        .expect("a count")
}

/// A message dropped undelivered does not stay on disk: one that expired
/// while queued for a stored session [MQTT-3.3.2-5] is deleted when the
/// session drops it, and one that expired while the broker was down is
/// deleted at the restart, as is an expired retained message. After a
/// clean stop the store holds no queue entry and no body.
#[test]
fn messages_dropped_undelivered_are_deleted_from_disk() {
    let dir = data_dir("dropped");
    let mut broker = start(&dir.0);
    offline_subscriber(broker.tcp, "drop-a", "drop/#");
    offline_subscriber(broker.tcp, "drop-b", "drop/#");
    let (mut publisher, _) = connect(broker.tcp, ProtocolVersion::V5, "drop-pub", true, 0);
    let mut p = Publish {
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: MqttString::from_static("drop/m"),
        packet_id: Some(PacketId::new(1).unwrap()),
        payload: Bytes::from_static(b"soon gone"),
        ..Publish::default()
    };
    p.properties.message_expiry_interval = Some(1);
    publisher.send(Packet::Publish(p));
    assert!(matches!(publisher.next(), Some(Packet::PubAck(_))));
    drop(publisher);
    // The broker is killed once the message has expired.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    broker.broker.kill();
    let mut broker = start(&dir.0);
    // Nothing for drop-a: the marker is the first thing it gets.
    let (mut a, _) = connect(broker.tcp, ProtocolVersion::V5, "drop-a", false, 3600);
    publish(broker.tcp, "drop/marker", b"m", false);
    assert_eq!(received(&mut a), ("drop/marker".into(), b"m".to_vec()));
    a.send(Packet::Disconnect(Default::default()));
    assert!(a.next().is_none());
    // drop-b takes the marker and leaves it unacknowledged.
    let (mut b, _) = connect(broker.tcp, ProtocolVersion::V5, "drop-b", false, 3600);
    assert!(matches!(b.next(), Some(Packet::Publish(_))), "the marker");
    b.send(Packet::Disconnect(Default::default()));
    assert!(b.next().is_none());
    let (mut publisher, _) = connect(broker.tcp, ProtocolVersion::V5, "drop-pub", true, 0);
    let mut p = Publish {
        qos: QoS::AtLeastOnce,
        topic: MqttString::from_static("drop/n"),
        packet_id: Some(PacketId::new(2).unwrap()),
        payload: Bytes::from_static(b"gone too"),
        ..Publish::default()
    };
    p.properties.message_expiry_interval = Some(1);
    publisher.send(Packet::Publish(p));
    assert!(matches!(publisher.next(), Some(Packet::PubAck(_))));
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // A second message expired while queued: when drop-b comes back the
    // marker is resent and the expired one dropped at runtime.
    let (mut b, _) = connect(broker.tcp, ProtocolVersion::V5, "drop-b", false, 3600);
    assert_eq!(received(&mut b), ("drop/marker".into(), b"m".to_vec()));
    publish(broker.tcp, "drop/marker2", b"m", false);
    assert_eq!(received(&mut b), ("drop/marker2".into(), b"m".to_vec()));
    b.send(Packet::Disconnect(Default::default()));
    assert!(b.next().is_none());
    // It expired in drop-a's queue too: dropped when drop-a comes back.
    let (mut a, _) = connect(broker.tcp, ProtocolVersion::V5, "drop-a", false, 3600);
    assert_eq!(received(&mut a), ("drop/marker2".into(), b"m".to_vec()));
    a.send(Packet::Disconnect(Default::default()));
    assert!(a.next().is_none());
    // A clean stop writes the log into redb, which `check` reads.
    broker.terminate();
    assert!(broker.wait_exit().success());
    drop(broker);
    assert_eq!(stored(&dir.0, "queue"), 0, "no queue entry left");
    assert_eq!(stored(&dir.0, "bodies"), 0, "no body left");
    assert_eq!(stored(&dir.0, "retained"), 0, "no retained message left");
}

/// With `queue_qos0 = true`, QoS 0 messages queued for an offline stored
/// session survive kill -9 and reach it after the restart, in order
/// (mosquitto's `queue_qos0_messages`), at QoS 0 as published
/// [MQTT-3.8.4-8]; once sent they are deleted from disk.
#[test]
fn qos0_messages_queued_for_an_offline_session_survive_kill_9_with_queue_qos0() {
    let dir = data_dir("qos0");
    let config = dir.0.join("broker.toml");
    std::fs::write(
        &config,
        format!(
            "[limits]\nqueue_qos0 = true\n[storage]\ndir = {:?}\n",
            dir.0.join("data")
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap().to_owned();
    let start_q0 =
        || BrokerProcess::start_with(&["--tcp", "127.0.0.1:0", "--config", &config], 1, 0).0;
    let mut broker = start_q0();
    offline_subscriber(broker.tcp, "q0-sub", "q0/#");
    let (mut publisher, _) = connect(broker.tcp, ProtocolVersion::V5, "q0-pub", true, 0);
    for i in 0..3u8 {
        publisher.send(Packet::Publish(Publish {
            qos: QoS::AtMostOnce,
            topic: MqttString::from_static("q0/a"),
            payload: Bytes::from(vec![b'0' + i]),
            ..Publish::default()
        }));
    }
    // Every record above is synced once this retained message's PUBACK
    // came (it follows the QoS 0 messages on the same connection).
    publisher.send(Packet::Publish(Publish {
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: MqttString::from_static("barrier"),
        packet_id: Some(PacketId::new(1).unwrap()),
        payload: Bytes::from_static(b"b"),
        ..Publish::default()
    }));
    assert!(matches!(publisher.next(), Some(Packet::PubAck(_))));
    broker.broker.kill();
    let mut broker = start_q0();
    let (mut sub, ack) = connect(broker.tcp, ProtocolVersion::V5, "q0-sub", false, 3600);
    assert!(ack.session_present);
    for i in 0..3u8 {
        match sub.next() {
            Some(Packet::Publish(p)) => {
                assert_eq!((p.qos, &p.payload[..]), (QoS::AtMostOnce, &[b'0' + i][..]));
            }
            other => panic!("expected QoS 0 message {i}, got {other:?}"),
        }
    }
    sub.send(Packet::Disconnect(Default::default()));
    assert!(sub.next().is_none());
    broker.terminate();
    assert!(broker.wait_exit().success());
    let data = dir.0.join("data");
    assert_eq!(stored(&data, "queue"), 0, "sent QoS 0 messages are deleted");
    assert_eq!(stored(&data, "bodies"), 0);
}

/// A message queued for a stored session that matched several of its
/// subscriptions keeps every Subscription Identifier across kill -9
/// [MQTT-3.3.4-4].
#[test]
fn every_subscription_identifier_of_a_queued_message_survives_kill_9() {
    let dir = data_dir("sid");
    let mut broker = start(&dir.0);
    let (mut raw, _) = connect(broker.tcp, ProtocolVersion::V5, "sid-sub", true, 3600);
    for (packet_id, filter, id) in [(1, "sid/#", 11), (2, "sid/+", 22)] {
        raw.send(Packet::Subscribe(Subscribe {
            packet_id: PacketId::new(packet_id).unwrap(),
            properties: tern_codec::SubscribeProperties {
                subscription_identifier: tern_codec::SubscriptionId::new(id),
                ..Default::default()
            },
            filters: vec![SubscribeFilter {
                filter: MqttString::from_static(filter),
                options: SubscriptionOptions::with_qos(QoS::AtLeastOnce),
            }],
        }));
        assert!(matches!(raw.next(), Some(Packet::SubAck(_))));
    }
    raw.send(Packet::Disconnect(Default::default()));
    assert!(raw.next().is_none());
    publish(broker.tcp, "sid/a", b"both", false);
    broker.broker.kill();
    let broker = start(&dir.0);
    let (mut raw, ack) = connect(broker.tcp, ProtocolVersion::V5, "sid-sub", false, 3600);
    assert!(ack.session_present);
    match raw.next() {
        Some(Packet::Publish(p)) => {
            assert_eq!(&p.payload[..], b"both");
            let mut ids: Vec<u32> = p
                .properties
                .subscription_identifiers
                .iter()
                .map(|id| id.get())
                .collect();
            ids.sort_unstable();
            assert_eq!(ids, vec![11, 22], "both identifiers, one copy");
        }
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

/// A retained message keeps its owner across kill -9: the client that
/// published it still owns it after the restart, so the per-client
/// retained limit (`max_retained_messages_per_client = 1`) refuses its
/// second topic (MQTT 5 PUBACK 0x97 Quota exceeded) and keeps the first.
#[test]
fn a_retained_messages_owner_survives_kill_9_for_the_per_client_limit() {
    let dir = data_dir("owner");
    let config = dir.0.join("broker.toml");
    std::fs::write(
        &config,
        format!(
            "[limits]\nmax_retained_messages_per_client = 1\n[storage]\ndir = {:?}\n",
            dir.0.join("data")
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap().to_owned();
    let start_limited =
        || BrokerProcess::start_with(&["--tcp", "127.0.0.1:0", "--config", &config], 1, 0).0;
    let retain = |raw: &mut Raw, id: u16, topic: &'static str| {
        raw.send(Packet::Publish(Publish {
            qos: QoS::AtLeastOnce,
            retain: true,
            topic: MqttString::from_static(topic),
            packet_id: Some(PacketId::new(id).unwrap()),
            payload: Bytes::from_static(b"v"),
            ..Publish::default()
        }));
        match raw.next() {
            Some(Packet::PubAck(a)) => a.reason_code,
            other => panic!("expected PUBACK, got {other:?}"),
        }
    };
    let mut broker = start_limited();
    let (mut owner, _) = connect(broker.tcp, ProtocolVersion::V5, "owner1", true, 0);
    assert!(retain(&mut owner, 1, "own/a").is_success());
    broker.broker.kill();
    drop(owner);
    let broker = start_limited();
    let (mut owner, _) = connect(broker.tcp, ProtocolVersion::V5, "owner1", true, 0);
    assert_eq!(
        retain(&mut owner, 2, "own/b"),
        ReasonCode::QuotaExceeded,
        "it still owns own/a"
    );
    // Replacing its own message is within the limit.
    assert!(retain(&mut owner, 3, "own/a").is_success());
}
