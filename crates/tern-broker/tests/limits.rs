//! Bad input, slow consumers, `$SYS` and graceful shutdown: the broker keeps
//! serving everyone else, and stops cleanly.

mod common;

use common::*;
use std::time::Duration;
use tern_codec::{ConnAck, Packet, ProtocolVersion, QoS, ReasonCode};
use tokio::time::Instant;

#[tokio::test]
async fn a_malformed_packet_closes_only_that_connection_with_0x81() {
    let broker = start().await;
    let mut bystander = Raw::connected(broker.tcp, ProtocolVersion::V5, "bystander").await;
    bystander.subscribe("still/#", QoS::AtLeastOnce).await;

    let garbage: [&[u8]; 4] = [
        &[0x36, 0x03, 0x00, 0x01, b'a'],       // PUBLISH with QoS 3
        &[0x00, 0x00],                         // reserved packet type 0
        &[0x30, 0x04, 0x00, 0x02, 0xc3, 0x28], // topic that is not UTF-8
        &[0x82, 0x02, 0x00, 0x01],             // SUBSCRIBE without a filter
    ];
    for (n, bytes) in garbage.iter().enumerate() {
        let mut v5 = Raw::connected(broker.tcp, ProtocolVersion::V5, &format!("bad-5-{n}")).await;
        v5.send_bytes(bytes).await;
        v5.disconnected_with(ReasonCode::MalformedPacket).await;

        let mut v3 =
            Raw::connected(broker.tcp, ProtocolVersion::V3_1_1, &format!("bad-3-{n}")).await;
        v3.send_bytes(bytes).await;
        assert_eq!(v3.closed(WAIT).await, vec![], "3.1.1 gets no DISCONNECT");

        // Garbage instead of a CONNECT: closed without an answer.
        let mut first = Raw::open(broker.tcp).await;
        first.send_bytes(bytes).await;
        assert_eq!(first.closed(WAIT).await, vec![]);
    }
    // Everyone else is served as before.
    let mut publisher = Raw::connected(broker.tcp, ProtocolVersion::V3_1_1, "after-garbage").await;
    publisher
        .publish(publish("still/here", b"yes", QoS::AtLeastOnce, 1))
        .await;
    assert_eq!(bystander.recv_publish().await.payload, "yes");
}

#[tokio::test]
async fn a_protocol_error_closes_with_0x82() {
    let broker = start().await;
    let mut v5 = Raw::connected(broker.tcp, ProtocolVersion::V5, "confused").await;
    // A server-to-client packet from the client.
    v5.send(ConnAck::default()).await;
    v5.disconnected_with(ReasonCode::ProtocolError).await;
}

#[tokio::test]
async fn a_slow_consumer_slows_only_itself() {
    let broker = start_with(|s| {
        s.limits.max_queued_messages = 50;
    })
    .await;
    // Subscribes, then never reads again.
    let mut slow = Raw::connected(broker.tcp, ProtocolVersion::V5, "slow").await;
    slow.subscribe("flood/#", QoS::AtMostOnce).await;
    let mut fast = Raw::connected(broker.tcp, ProtocolVersion::V3_1_1, "fast").await;
    fast.subscribe("flood/#", QoS::AtLeastOnce).await;

    let payload: &'static [u8] = Box::leak(vec![b'z'; 16 * 1024].into_boxed_slice());
    let mut publisher = Raw::connected(broker.tcp, ProtocolVersion::V5, "flooder").await;
    const N: u16 = 1000; // 16 MB: far more than the slow socket and its queue hold
    let send = tokio::spawn(async move {
        for id in 1..=N {
            assert_eq!(
                publisher
                    .publish(publish("flood/t", payload, QoS::AtLeastOnce, id))
                    .await,
                ReasonCode::Success
            );
        }
        publisher
    });
    for _ in 1..=N {
        let got = fast.recv_publish().await;
        assert_eq!(got.payload.len(), payload.len());
    }
    let _publisher = send.await.unwrap();

    // Shutdown does not wait for the stuck reader longer than its bound.
    let started = Instant::now();
    broker.shutdown().await;
    assert!(
        started.elapsed() < tern_broker::server::FLUSH_TIMEOUT + Duration::from_secs(1),
        "shutdown took {:?}",
        started.elapsed()
    );
    drop(slow);
}

#[tokio::test]
async fn a_consumer_that_pauses_catches_up_in_order() {
    let broker = start().await;
    let mut sub = Raw::connected(broker.tcp, ProtocolVersion::V5, "pauser").await;
    sub.subscribe("backlog/#", QoS::AtLeastOnce).await;
    // While the subscriber reads nothing, 3 MB go its way: its socket fills,
    // the core holds the rest in its session queue and stops reading it.
    let payload: &'static [u8] = Box::leak(vec![b'p'; 16 * 1024].into_boxed_slice());
    let mut publisher = Raw::connected(broker.tcp, ProtocolVersion::V3_1_1, "backlogger").await;
    for id in 1..=200u16 {
        let mut p = publish("backlog/t", payload, QoS::AtLeastOnce, id);
        p.payload = bytes::Bytes::from(format!("{id:05}").repeat(3000));
        publisher.publish(p).await;
    }
    // It starts reading (and acknowledging): everything arrives, in order,
    // and its own PINGREQ (sent while it was paused) is answered after.
    sub.send(Packet::PingReq).await;
    let mut pong = false;
    let mut next = 1u16;
    while next <= 200 || !pong {
        match sub.recv().await {
            Packet::Publish(p) => {
                assert_eq!(&p.payload[..5], format!("{next:05}").as_bytes());
                sub.ack(&p).await;
                next += 1;
            }
            Packet::PingResp => pong = true,
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn graceful_shutdown_sends_0x8b_and_stops_accepting() {
    let broker = start().await;
    let mut v5 = Raw::connected(broker.tcp, ProtocolVersion::V5, "down-5").await;
    let mut v3 = Raw::connected(broker.tcp, ProtocolVersion::V3_1_1, "down-3").await;
    let (mut rumqttc5, _) = V5::connect(broker.tcp, "down-rumqttc", |_| {}).await;
    let addr = broker.tcp;
    let started = Instant::now();
    broker.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    v5.disconnected_with(ReasonCode::ServerShuttingDown).await;
    assert_eq!(v3.closed(WAIT).await, vec![]);
    // rumqttc may report the close before the DISCONNECT it read with it;
    // the raw client above checked the reason code exactly.
    let end = rumqttc5.connection_end().await;
    assert!(
        matches!(
            end,
            None | Some(rumqttc::v5::mqttbytes::v5::DisconnectReasonCode::ServerShuttingDown)
        ),
        "{end:?}"
    );
    // The listener is closed.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn sys_topics_are_published_at_the_configured_interval() {
    let interval = Duration::from_millis(200);
    let broker = start_with(|s| s.limits.sys_interval = interval).await;
    let mut sub = Raw::connected(broker.tcp, ProtocolVersion::V5, "sys-reader").await;
    sub.subscribe("$SYS/broker/clients/connected", QoS::AtMostOnce)
        .await;
    let first = sub.recv_publish().await;
    let at = Instant::now();
    // Retained on subscribe, or the first tick.
    assert!(
        first.payload == "1" || first.payload == "0",
        "{:?}",
        first.payload
    );
    let _other = Raw::connected(broker.tcp, ProtocolVersion::V5, "sys-other").await;
    loop {
        let next = sub.recv_publish().await;
        assert!(!next.retain, "a live update");
        if next.payload == "2" {
            break;
        }
    }
    // Within a couple of intervals (and not seconds late).
    assert!(
        at.elapsed() <= interval * 2 + Duration::from_secs(1),
        "{:?}",
        at.elapsed()
    );

    let mut uptime = Raw::connected(broker.tcp, ProtocolVersion::V3_1_1, "sys-uptime").await;
    uptime
        .subscribe("$SYS/broker/version", QoS::AtMostOnce)
        .await;
    let got = uptime.recv_publish().await;
    assert_eq!(got.topic.as_str(), "$SYS/broker/version");
    assert!(got.payload.starts_with(b"tern "), "{:?}", got.payload);
    // Published before this subscription: it came from the retained store.
    assert!(got.retain, "a late subscriber gets the retained value");
}

/// The `$SYS/broker/` topics mosquitto documents, copied from its manual
/// page, mosquitto(8) ("BROKER STATUS"), as Debian 12 ships it with
/// mosquitto 2.0.11 (`/usr/share/man/man8/mosquitto.8.gz`). Only the
/// manual is the source here, never Tern's code, so a misnamed topic
/// cannot agree with itself. `+` stands for `1min`, `5min` and `15min`;
/// deprecated aliases are left out.
const MOSQUITTO_SYS_TOPICS: &[&str] = &[
    "bytes/received",
    "bytes/sent",
    "clients/connected",
    "clients/expired",
    "clients/disconnected",
    "clients/maximum",
    "clients/total",
    "connection/#",
    "heap/current size",
    "heap/maximum size",
    "load/connections/+",
    "load/bytes/received/+",
    "load/bytes/sent/+",
    "load/messages/received/+",
    "load/messages/sent/+",
    "load/publish/dropped/+",
    "load/publish/received/+",
    "load/publish/sent/+",
    "load/sockets/+",
    "messages/inflight",
    "messages/received",
    "messages/sent",
    "publish/messages/dropped",
    "publish/messages/received",
    "publish/messages/sent",
    "retained messages/count",
    "store/messages/count",
    "store/messages/bytes",
    "subscriptions/count",
    "version",
];

/// Topics Tern publishes that the manual does not list, each with its
/// reason. An entry the manual gains, or that Tern stops publishing, fails
/// the test, so this list cannot go stale.
const NOT_IN_THE_MANUAL: &[(&str, &str)] = &[
    (
        "uptime",
        "mosquitto publishes `$SYS/broker/uptime` (\"N seconds\", src/sys_tree.c) \
         but its manual does not list it",
    ),
    (
        "publish/bytes/received",
        "mosquitto 2.0.11 publishes it (payload bytes of PUBLISH received, \
         src/sys_tree.c; seen live) but its manual does not list it",
    ),
    (
        "publish/bytes/sent",
        "mosquitto 2.0.11 publishes it (payload bytes of PUBLISH sent, \
         src/sys_tree.c; seen live) but its manual does not list it",
    ),
    (
        "limits/refused",
        "Tern's own: requests refused by a resource limit (issue 13)",
    ),
];

/// Whether `name` is one of the manual's topics (`+` one level, `#` the rest).
fn in_the_manual(name: &str) -> bool {
    MOSQUITTO_SYS_TOPICS.iter().any(|pattern| {
        let mut levels = name.split('/');
        for want in pattern.split('/') {
            match (want, levels.next()) {
                ("#", _) => return true,
                ("+", Some("1min" | "5min" | "15min")) => {}
                (want, Some(got)) if want == got => {}
                _ => return false,
            }
        }
        levels.next().is_none()
    })
}

#[test]
fn the_manual_matcher_can_say_no() {
    assert!(in_the_manual("bytes/received"));
    assert!(in_the_manual("load/bytes/sent/5min"));
    assert!(in_the_manual("connection/bridge-1/state"));
    assert!(!in_the_manual("load/bytes/received"));
    assert!(!in_the_manual("load/connections/total"));
    assert!(!in_the_manual("load/sockets/2min"));
    assert!(!in_the_manual("version/x"));
}

#[tokio::test]
async fn sys_topics_carry_mosquittos_names() {
    let interval = Duration::from_millis(100);
    let broker = start_with(|s| s.limits.sys_interval = interval).await;
    let mut sub = Raw::connected(broker.tcp, ProtocolVersion::V5, "sys-names").await;
    sub.subscribe("$SYS/#", QoS::AtMostOnce).await;
    // Every tick publishes every topic: a few intervals see them all.
    let mut published = std::collections::BTreeSet::new();
    let until = Instant::now() + interval * 4;
    while let Ok(got) = tokio::time::timeout_at(until, sub.recv_publish()).await {
        let name = got.topic.as_str().strip_prefix("$SYS/broker/").unwrap();
        if name == "uptime" {
            let text = std::str::from_utf8(&got.payload).unwrap();
            assert!(text.ends_with(" seconds"), "{text}");
        }
        published.insert(name.to_string());
    }
    let misnamed: Vec<&String> = published
        .iter()
        .filter(|name| !in_the_manual(name))
        .filter(|name| !NOT_IN_THE_MANUAL.iter().any(|(n, _)| n == name))
        .collect();
    assert!(
        misnamed.is_empty(),
        "not mosquitto's names (mosquitto(8)): {misnamed:?}"
    );
    for (name, why) in NOT_IN_THE_MANUAL {
        assert!(
            published.contains(*name) && !in_the_manual(name),
            "stale allowance `{name}` ({why})"
        );
    }
    // Every topic of the manual that applies to Tern is there.
    for name in manual_topics() {
        if NOT_PUBLISHED.iter().any(|(n, _)| name.starts_with(n)) {
            continue;
        }
        assert!(published.contains(&name), "`{name}` not published");
    }
    for (name, why) in NOT_PUBLISHED {
        assert!(
            !published.iter().any(|p| p.starts_with(name)),
            "stale allowance `{name}` ({why})"
        );
    }
}

/// Topics of the manual Tern does not publish, each with its reason.
const NOT_PUBLISHED: &[(&str, &str)] = &[
    ("connection/", "bridges: Tern has none"),
    (
        "heap/",
        "mosquitto's own allocator statistics (a compile-time option); Rust \
         has no equivalent without a counting allocator",
    ),
];

/// The manual's topics with `+` expanded (`#` kept as the prefix).
fn manual_topics() -> Vec<String> {
    let mut names = Vec::new();
    for pattern in MOSQUITTO_SYS_TOPICS {
        match pattern.strip_suffix("/+") {
            Some(stem) => {
                for window in ["1min", "5min", "15min"] {
                    names.push(format!("{stem}/{window}"));
                }
            }
            None => names.push(pattern.trim_end_matches('#').to_string()),
        }
    }
    names
}

/// Every `$SYS/broker/` topic a subscriber to `$SYS/#` gets within
/// `within`, with the retain flag of its first message, and its latest value.
async fn sys_snapshot(
    raw: &mut Raw,
    within: Duration,
) -> std::collections::BTreeMap<String, (bool, String)> {
    raw.subscribe("$SYS/#", QoS::AtMostOnce).await;
    let mut seen = std::collections::BTreeMap::new();
    let until = Instant::now() + within;
    while let Ok(got) = tokio::time::timeout_at(until, raw.recv_publish()).await {
        let name = got.topic.as_str().strip_prefix("$SYS/broker/").unwrap();
        let value = String::from_utf8_lossy(&got.payload).into_owned();
        seen.entry(name.to_string())
            .and_modify(|(_, v)| *v = value.clone())
            .or_insert((got.retain, value));
    }
    seen
}

/// Compared with a running mosquitto (Debian's 2.0.11): the same topic
/// names, each retained, once the deprecated aliases and what does not
/// apply are set aside.
#[tokio::test]
async fn sys_topics_match_a_running_mosquitto() {
    let mosquitto = tern_testkit::Broker::mosquitto()
        .settings("allow_anonymous true\nsys_interval 1\n")
        .start()
        .expect("mosquitto starts (Debian package `mosquitto`)");
    let tern = start_with(|s| s.limits.sys_interval = Duration::from_millis(100)).await;
    // mosquitto ticks every second: two ticks have certainly happened after
    // 2.5 s, and every retained topic arrives on subscribing.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut theirs = Raw::connected(mosquitto.tcp(), ProtocolVersion::V5, "sys-m").await;
    let mut ours = Raw::connected(tern.tcp, ProtocolVersion::V5, "sys-t").await;
    let theirs = sys_snapshot(&mut theirs, Duration::from_millis(500)).await;
    let ours = sys_snapshot(&mut ours, Duration::from_millis(500)).await;
    // Deprecated aliases mosquitto still sends (mosquitto(8)), topics the
    // manual does not list, and the ones in `NOT_PUBLISHED`.
    let set_aside = |name: &str| {
        ["clients/active", "clients/inactive", "messages/stored"].contains(&name)
            || name == "shared_subscriptions/count"
            // Tern's own (issue 13), not mosquitto's.
            || name == "limits/refused"
            // In the manual, but mosquitto 2.0.11 does not publish it
            // (src/sys_tree.c; seen live); Tern does.
            || name == "messages/inflight"
            || NOT_PUBLISHED.iter().any(|(n, _)| name.starts_with(n))
    };
    let names = |m: &std::collections::BTreeMap<String, (bool, String)>| {
        m.keys()
            .filter(|n| !set_aside(n))
            .cloned()
            .collect::<Vec<_>>()
    };
    // `clients/maximum` only appears in mosquitto once a client has
    // connected before a tick; ours is published from the first tick.
    let mut want = names(&theirs);
    if !want.iter().any(|n| n == "clients/maximum") {
        want.push("clients/maximum".into());
        want.sort();
    }
    assert_eq!(
        names(&ours),
        want,
        "$SYS topic names differ from mosquitto's"
    );
    for (name, (retain, value)) in &ours {
        assert!(retain, "`{name}` is not retained ({value})");
    }
    // mosquitto's own: a topic it published first during the snapshot
    // came live (retain 0), so its flags are read from a second snapshot,
    // for the topics the first one already had.
    let mut again = Raw::connected(mosquitto.tcp(), ProtocolVersion::V5, "sys-m2").await;
    let again = sys_snapshot(&mut again, Duration::from_millis(500)).await;
    for (name, (retain, _)) in again.iter().filter(|(n, _)| theirs.contains_key(*n)) {
        assert!(retain, "mosquitto's `{name}` is not retained");
    }
    // Load averages are printed as mosquitto prints them: two decimals.
    for (name, (_, value)) in ours.iter().filter(|(n, _)| n.starts_with("load/")) {
        let (_, decimals) = value.split_once('.').expect("a decimal point");
        assert_eq!(decimals.len(), 2, "{name} = {value}");
    }
    mosquitto.stop().unwrap();
}

/// `messages/*` count packets of every type and `publish/messages/*` only
/// PUBLISH, as in mosquitto(8); the 1-minute load rises with traffic.
#[tokio::test]
async fn sys_counters_carry_mosquittos_meanings() {
    let interval = Duration::from_millis(100);
    let broker = start_with(|s| s.limits.sys_interval = interval).await;
    let mut sub = Raw::connected(broker.tcp, ProtocolVersion::V5, "sys-count").await;
    sub.subscribe("$SYS/broker/#", QoS::AtMostOnce).await;
    // The averages start at the first tick (counted from there on, as in
    // mosquitto): wait for it.
    while !sub.recv_publish().await.topic.as_str().contains("/load/") {}
    let mut publisher = Raw::connected(broker.tcp, ProtocolVersion::V5, "sys-pub").await;
    for i in 1..=20u16 {
        publisher
            .publish(publish("sys/load", b"0123456789", QoS::AtLeastOnce, i))
            .await;
    }
    // Read until a tick after the publishes shows them all.
    let mut values = std::collections::BTreeMap::new();
    loop {
        let got = sub.recv_publish().await;
        let name = got.topic.as_str().strip_prefix("$SYS/broker/").unwrap();
        let value = String::from_utf8_lossy(&got.payload).into_owned();
        values.insert(name.to_string(), value);
        let number = |n: &str| -> f64 { values.get(n).map_or(0.0, |v| v.parse().unwrap()) };
        if number("publish/messages/received") >= 20.0 && number("load/publish/received/1min") > 0.0
        {
            break;
        }
    }
    let number = |n: &str| -> f64 { values[n].parse().unwrap() };
    // Two CONNECTs, a SUBSCRIBE and 20 PUBLISH at least.
    assert!(number("messages/received") >= 23.0, "{values:?}");
    assert!(
        number("messages/received") > number("publish/messages/received"),
        "{values:?}"
    );
    // 20 PUBACKs, two CONNACKs and a SUBACK went out, besides $SYS.
    assert!(number("messages/sent") >= 23.0, "{values:?}");
    assert_eq!(number("publish/bytes/received"), 200.0, "{values:?}");
    // 20 messages within a tick or two of 0.1 s are a rate of thousands a
    // minute; the 1-minute average moves a fraction 1 - exp(-0.1/60) of
    // the way per tick, so it is above 1 and the 15-minute one below it.
    assert!(number("load/publish/received/1min") > 1.0, "{values:?}");
    assert!(
        number("load/publish/received/15min") < number("load/publish/received/1min"),
        "{values:?}"
    );
}

#[tokio::test]
async fn sys_topics_are_off_with_interval_0() {
    let broker = start().await; // settings() sets sys_interval 0
    let mut sub = Raw::connected(broker.tcp, ProtocolVersion::V5, "sys-off").await;
    sub.subscribe("$SYS/#", QoS::AtMostOnce).await;
    // Nothing retained, nothing published for longer than a few intervals would take.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), sub.next(WAIT))
            .await
            .is_err(),
        "a $SYS message came"
    );
}

#[tokio::test]
async fn maximum_qos_and_retain_available_are_announced_and_enforced_mqtt_3_2_2_12_and_13() {
    let broker = start_with(|s| {
        s.limits.maximum_qos = QoS::AtLeastOnce;
        s.limits.retain_available = false;
    })
    .await;
    let (mut c, ack) = Raw::connect(broker.tcp, connect(ProtocolVersion::V5, "limited")).await;
    assert_eq!(ack.properties.maximum_qos, Some(QoS::AtLeastOnce));
    assert_eq!(ack.properties.retain_available, Some(false));
    // A subscription asking for QoS 2 is granted QoS 1.
    let granted = c
        .subscribe_with(
            1,
            &[(
                "lim/t",
                tern_codec::SubscriptionOptions::with_qos(QoS::ExactlyOnce),
            )],
            None,
        )
        .await;
    assert_eq!(
        granted.reason_codes,
        vec![ReasonCode::granted(QoS::AtLeastOnce)]
    );
    // QoS 2 published: DISCONNECT 0x9B (§3.2.2.3.4).
    c.send(publish("lim/t", b"q2", QoS::ExactlyOnce, 1)).await;
    c.disconnected_with(ReasonCode::QosNotSupported).await;
    // A retained message: DISCONNECT 0x9A (§3.2.2.3.5).
    let mut r = Raw::connected(broker.tcp, ProtocolVersion::V5, "limited-r").await;
    r.send(tern_codec::Publish {
        retain: true,
        ..publish("lim/t", b"r", QoS::AtLeastOnce, 1)
    })
    .await;
    r.disconnected_with(ReasonCode::RetainNotSupported).await;
    // A will beyond either: the connection is refused [MQTT-3.2.2-12], [MQTT-3.2.2-13].
    for (qos, retain, code) in [
        (QoS::ExactlyOnce, false, ReasonCode::QosNotSupported),
        (QoS::AtMostOnce, true, ReasonCode::RetainNotSupported),
    ] {
        let mut c = connect(ProtocolVersion::V5, "limited-will");
        c.will = Some(tern_codec::Will {
            topic: s("lim/will"),
            qos,
            retain,
            ..tern_codec::Will::default()
        });
        let (mut raw, ack) = Raw::connect(broker.tcp, c).await;
        assert_eq!(ack.reason_code, code);
        assert_eq!(raw.closed(WAIT).await, vec![]);
    }
}

#[test]
fn the_default_listeners_are_1883_and_8083_on_localhost_at_mqtt() {
    // Tests never bind fixed ports; the defaults are checked as values.
    let s = tern_broker::server::BrokerSettings::default();
    assert_eq!(
        s.listeners.tcp,
        vec![std::net::SocketAddr::from(([127, 0, 0, 1], 1883))]
    );
    assert_eq!(
        s.listeners.ws,
        vec![std::net::SocketAddr::from(([127, 0, 0, 1], 8083))]
    );
    assert_eq!(s.listeners.ws_path, "/mqtt");
    assert_eq!(s.limits.connect_timeout, Duration::from_secs(10));
}

#[tokio::test]
async fn bad_topic_names_and_filters_are_refused_mqtt_3_3_2_2_and_3_8_3_4_and_4_7_1_1() {
    let broker = start().await;
    // (Raw bytes: tern-codec will not encode these.)
    // A wildcard in a PUBLISH topic: DISCONNECT 0x90 Topic Name invalid.
    let mut a = Raw::connected(broker.tcp, ProtocolVersion::V5, "bad-topic").await;
    a.send_bytes(&[0x30, 0x07, 0x00, 0x03, b'a', b'/', b'+', 0x00, b'x'])
        .await;
    a.disconnected_with(ReasonCode::TopicNameInvalid).await;
    // No Local on a shared subscription: a protocol error.
    let mut b = Raw::connected(broker.tcp, ProtocolVersion::V5, "bad-share").await;
    let mut subscribe = vec![0x82, 16, 0x00, 0x01, 0x00, 0x00, 10];
    subscribe.extend_from_slice(b"$share/g/t");
    subscribe.push(0x04); // No Local
    b.send_bytes(&subscribe).await;
    b.disconnected_with(ReasonCode::ProtocolError).await;
    // `#` not last [MQTT-4.7.1-1]: a filter that is not correctly formed
    // makes the SUBSCRIBE malformed (0x8F is for well-formed filters).
    let mut c = Raw::connected(broker.tcp, ProtocolVersion::V5, "bad-filter").await;
    let mut subscribe = vec![0x82, 11, 0x00, 0x01, 0x00, 0x00, 5];
    subscribe.extend_from_slice(b"a/#/b");
    subscribe.push(0x00);
    c.send_bytes(&subscribe).await;
    c.disconnected_with(ReasonCode::MalformedPacket).await;
    // A well-formed MQTT 3.1.1 filter that the broker reads as a broken
    // shared subscription: refused per filter (0x80), the connection stays.
    let mut d = Raw::connected(broker.tcp, ProtocolVersion::V3_1_1, "bad-share-v3").await;
    let mut subscribe = vec![0x82, 14, 0x00, 0x01, 0x00, 9];
    subscribe.extend_from_slice(b"$share//t");
    subscribe.push(0x00);
    d.send_bytes(&subscribe).await;
    match d.recv().await {
        Packet::SubAck(ack) => assert_eq!(ack.reason_codes, vec![ReasonCode::UnspecifiedError]),
        other => panic!("expected SUBACK, got {other:?}"),
    }
    d.ping().await;
}
