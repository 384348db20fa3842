//! Tern nodes clustered on a real `nats-server` (Debian's; the test fails
//! naming it if it is missing): messages cross nodes at each
//! subscription's QoS for MQTT 3.1.1 and 5, never echo, never touch NATS
//! without remote interest, and retained messages are seen from every
//! node, one started later included. A persistent session follows its
//! client to another node (3.1.1 and 5, with rumqttc and raw sockets), and
//! a NATS outage shows in `$SYS`.
//!
//! Interest spreads asynchronously (a node announces it over NATS), so a
//! test waits for it the way a client would see it: it publishes a probe
//! until the probe arrives, never a sleep.

use futures_util::StreamExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tern_broker::server::{self, BrokerSettings, Running};
use tern_client::{Address, Client, Message, Messages, Options};
use tern_cluster::{Cluster, ClusterSettings, LinkStats};
use tern_codec::{ProtocolVersion, QoS};
use tern_testkit::nats::NatsServer;

#[path = "../../tern-broker/tests/common/mod.rs"]
mod common;

const WAIT: Duration = Duration::from_secs(10);

struct Node {
    running: Running,
    cluster: Cluster,
}

impl Node {
    async fn start(nats: &NatsServer, id: &str) -> Node {
        let _ = tracing_subscriber::fmt().with_test_writer().try_init();
        let settings =
            BrokerSettings::from_toml("[listeners]\ntcp = [\"127.0.0.1:0\"]\nws = []\n").unwrap();
        let (link, peer) = server::cluster_link();
        let running = server::start_clustered(settings, Some(link)).await.unwrap();
        let mut s = ClusterSettings::new(vec![nats.url()], id);
        s.heartbeat = Duration::from_millis(200);
        let cluster = tern_cluster::connect(s, peer).await.expect("joins NATS");
        Node { running, cluster }
    }

    /// A node with a monitoring listener (`--metrics 127.0.0.1:0`).
    async fn start_monitored(nats: &NatsServer, id: &str) -> Node {
        let settings = BrokerSettings::from_toml(
            "[listeners]\ntcp = [\"127.0.0.1:0\"]\nws = []\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
        )
        .unwrap();
        let (link, peer) = server::cluster_link();
        let running = server::start_clustered(settings, Some(link)).await.unwrap();
        let mut s = ClusterSettings::new(vec![nats.url()], id);
        s.heartbeat = Duration::from_millis(200);
        let cluster = tern_cluster::connect(s, peer).await.expect("joins NATS");
        Node { running, cluster }
    }

    async fn client(&self, id: &str, version: ProtocolVersion) -> (Client, Messages) {
        let port = self.running.tcp_addr().unwrap().port();
        Client::connect(
            Options::new(Address::tcp("127.0.0.1", port))
                .client_id(id)
                .unwrap()
                .version(version),
        )
        .await
        .unwrap()
    }

    fn stats(&self) -> Arc<LinkStats> {
        self.cluster.stats()
    }
}

fn nats() -> (tempdir::Dir, NatsServer) {
    let dir = tempdir::Dir::new();
    let server = NatsServer::start(dir.path(), "nats1").expect("nats-server starts");
    (dir, server)
}

/// A scratch directory, removed when dropped.
mod tempdir {
    pub(crate) struct Dir(std::path::PathBuf);
    impl Dir {
        pub(crate) fn new() -> Dir {
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let p = std::env::temp_dir().join(format!("tern-cluster-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
        pub(crate) fn path(&self) -> &std::path::Path {
            &self.0
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

async fn recv(rx: &mut Messages) -> Message {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a message within 10 s")
        .expect("the client is up")
}

/// Publishes `probe` at QoS 0 until `rx` receives it: then the other node
/// knows this subscriber's interest. Returns the probes that arrived late.
async fn await_interest(publisher: &Client, topic: &str, rx: &mut Messages) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        publisher
            .publish(topic, "probe", QoS::AtMostOnce, false)
            .await
            .unwrap();
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
            assert_eq!(m.topic.as_str(), topic);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "interest never spread"
        );
    }
    // Probes still on their way: taken until one quiet moment.
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_cross_nodes_at_each_subscriptions_qos_in_3_1_1_and_5() {
    let (_dir, nats) = nats();
    let a = Node::start(&nats, "a").await;
    let b = Node::start(&nats, "b").await;
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let v = if version == ProtocolVersion::V5 {
            "5"
        } else {
            "3"
        };
        let (publisher, mut own) = a.client(&format!("pub{v}"), version).await;
        let (sub2, mut rx2) = b.client(&format!("sub2-{v}"), version).await;
        let (sub1, mut rx1) = b.client(&format!("sub1-{v}"), version).await;
        let base = format!("v{v}/plant");
        // Overlapping filters on one node: each message still crosses once
        // and each client gets it once [MQTT-3.3.4-2].
        sub2.subscribe([(format!("{base}/#"), QoS::ExactlyOnce)])
            .await
            .unwrap();
        sub2.subscribe([(format!("{base}/+/temp"), QoS::ExactlyOnce)])
            .await
            .unwrap();
        sub1.subscribe([(format!("{base}/#"), QoS::AtLeastOnce)])
            .await
            .unwrap();
        // The publisher listens too: it must hear its message once, locally.
        publisher
            .subscribe([(format!("{base}/#"), QoS::AtMostOnce)])
            .await
            .unwrap();
        await_interest(&publisher, &format!("{base}/probe"), &mut rx2).await;
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(300), rx1.recv()).await {
        }
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(300), own.recv()).await {
        }
        // NATS reserves `.`, `*`, `>` and spaces; MQTT allows them.
        let topic = format!("{base}/a.b */temp");
        for (n, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
            .into_iter()
            .enumerate()
        {
            let done = publisher
                .publish(topic.as_str(), n.to_string(), qos, false)
                .await
                .unwrap();
            assert!(done.is_success(), "{qos:?}: {done:?}");
            let m = recv(&mut rx2).await;
            assert_eq!(
                (m.topic.as_str(), &m.payload[..]),
                (topic.as_str(), n.to_string().as_bytes())
            );
            assert_eq!(m.qos, qos, "granted 2: as published");
            let m = recv(&mut rx1).await;
            assert_eq!(m.payload, n.to_string().as_bytes());
            // Granted 1: downgraded [MQTT-3.8.4-6].
            assert_eq!(m.qos, qos.min(QoS::AtLeastOnce));
            let m = recv(&mut own).await;
            assert_eq!(m.payload, n.to_string().as_bytes());
        }
        // Exactly once each: nothing more comes (no copy, no echo).
        for rx in [&mut rx2, &mut rx1, &mut own] {
            let more = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await;
            assert!(more.is_err(), "a copy or an echo: {more:?}");
        }
    }
    assert_eq!(
        b.stats().published.load(Ordering::Relaxed),
        0,
        "B published nothing"
    );
    assert!(
        b.stats().duplicates.load(Ordering::Relaxed) > 0,
        "the overlapping subscriptions delivered copies, dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_without_remote_interest_never_touches_nats() {
    let (_dir, nats) = nats();
    // An independent witness: a plain NATS client on every message subject.
    let witness = async_nats::connect(nats.url()).await.unwrap();
    let mut seen = witness.subscribe("tern.m.>").await.unwrap();
    witness.flush().await.unwrap();
    let a = Node::start(&nats, "a").await;
    let b = Node::start(&nats, "b").await;
    let (publisher, mut local_rx) = a.client("pub", ProtocolVersion::V5).await;
    publisher
        .subscribe([("local/#", QoS::AtMostOnce)])
        .await
        .unwrap();
    let (far, mut far_rx) = b.client("far", ProtocolVersion::V5).await;
    far.subscribe([("sentinel", QoS::AtMostOnce)])
        .await
        .unwrap();
    await_interest(&publisher, "sentinel", &mut far_rx).await;
    let before = a.stats().published.load(Ordering::Relaxed);
    // Drain what the witness saw of the probes.
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(300), seen.next()).await {}
    for n in 0..200 {
        publisher
            .publish("local/t", n.to_string(), QoS::AtLeastOnce, false)
            .await
            .unwrap();
        // Read as it comes: the client's message channel is bounded.
        recv(&mut local_rx).await;
    }
    // Then one message B wants: NATS keeps one publisher's order, so when
    // it arrives, any local one sent before would have been seen.
    publisher
        .publish("sentinel", "s", QoS::AtMostOnce, false)
        .await
        .unwrap();
    assert_eq!(&recv(&mut far_rx).await.payload[..], b"s");
    let m = tokio::time::timeout(WAIT, seen.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.subject.as_str(), "tern.m.sentinel");
    assert_eq!(a.stats().published.load(Ordering::Relaxed), before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_are_seen_from_every_node_one_started_later_included() {
    let (_dir, nats) = nats();
    let a = Node::start(&nats, "a").await;
    let b = Node::start(&nats, "b").await;
    let (publisher, _) = a.client("pub", ProtocolVersion::V3_1_1).await;
    publisher
        .publish("state/door", "open", QoS::AtLeastOnce, true)
        .await
        .unwrap();
    // A node that has it, when a fresh subscriber gets it (B hears it over
    // NATS, asynchronously).
    async fn has_it(name: &str, node: &Node) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (sub, mut rx) = node
                .client(&format!("reader-{name}"), ProtocolVersion::V5)
                .await;
            sub.subscribe([("state/+", QoS::AtLeastOnce)])
                .await
                .unwrap();
            if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
                assert!(m.retain);
                assert_eq!(&m.payload[..], b"open", "node {name}");
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "node {name} never had it"
            );
        }
    }
    has_it("a", &a).await;
    has_it("b", &b).await;
    // C starts after it was retained: it loads it from JetStream.
    let c = Node::start(&nats, "c").await;
    assert_eq!(
        c.stats().retained_loaded.load(Ordering::Relaxed),
        1,
        "C loaded it from JetStream"
    );
    has_it("c", &c).await;
    // Cleared on B: cleared everywhere [MQTT-3.3.1-6].
    let (clearer, _) = b.client("clearer", ProtocolVersion::V5).await;
    clearer
        .publish("state/door", "", QoS::AtLeastOnce, true)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (sub, mut rx) = a.client("reader-again", ProtocolVersion::V5).await;
        sub.subscribe([("state/+", QoS::AtLeastOnce)])
            .await
            .unwrap();
        if tokio::time::timeout(Duration::from_millis(200), rx.recv())
            .await
            .is_err()
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never cleared on A");
    }
}

/// `/metrics` as `name -> value` (raw HTTP over loopback).
async fn scrape(addr: std::net::SocketAddr) -> std::collections::BTreeMap<String, f64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    tokio::time::timeout(WAIT, stream.read_to_string(&mut text))
        .await
        .expect("an answer")
        .unwrap();
    let (_, body) = text.split_once("\r\n\r\n").unwrap();
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
        .collect()
}

/// The cluster link in `/metrics` (issue 16): connected to NATS, messages
/// forwarded to and received from the other node, counted exactly, and a
/// NATS outage: the gauge drops to 0 when nats-server is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_the_link_and_a_nats_outage() {
    let (_dir, mut nats) = nats();
    let a = Node::start_monitored(&nats, "a").await;
    let b = Node::start(&nats, "b").await;
    let addr = a.running.metrics_addr().unwrap();
    assert_eq!(scrape(addr).await["tern_cluster_connected"], 1.0);
    let v5 = ProtocolVersion::V5;
    // a → b.
    let (publisher, _own) = a.client("mx-pub", v5).await;
    let (sub, mut rx) = b.client("mx-sub", v5).await;
    sub.subscribe([("out/#".to_string(), QoS::AtMostOnce)])
        .await
        .unwrap();
    await_interest(&publisher, "out/probe", &mut rx).await;
    let before = scrape(addr).await;
    for _ in 0..3 {
        publisher
            .publish("out/x", "x", QoS::AtMostOnce, false)
            .await
            .unwrap();
    }
    for _ in 0..3 {
        recv(&mut rx).await;
    }
    let after = scrape(addr).await;
    let forwarded = "tern_cluster_messages_forwarded_total";
    assert_eq!(after[forwarded], before[forwarded] + 3.0, "{after:?}");
    // b → a.
    let (sub_a, mut rx_a) = a.client("mx-sub-a", v5).await;
    sub_a
        .subscribe([("in/#".to_string(), QoS::AtMostOnce)])
        .await
        .unwrap();
    let (pub_b, _own_b) = b.client("mx-pub-b", v5).await;
    await_interest(&pub_b, "in/probe", &mut rx_a).await;
    let before = scrape(addr).await;
    for _ in 0..2 {
        pub_b
            .publish("in/x", "x", QoS::AtMostOnce, false)
            .await
            .unwrap();
    }
    for _ in 0..2 {
        recv(&mut rx_a).await;
    }
    let after = scrape(addr).await;
    let received = "tern_cluster_messages_received_total";
    assert_eq!(after[received], before[received] + 2.0, "{after:?}");
    assert_eq!(after["tern_cluster_messages_dropped_total"], 0.0);
    // The outage.
    nats.kill9();
    let deadline = tokio::time::Instant::now() + WAIT;
    while scrape(addr).await["tern_cluster_connected"] != 0.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the outage never showed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---- sessions across nodes ----

/// A QoS 1 message from a plain client of `node`.
async fn publish_from(node: &Node, id: &str, topic: &str, payload: &str) {
    let (c, _rx) = node.client(id, ProtocolVersion::V5).await;
    c.publish(topic, payload.to_string(), QoS::AtLeastOnce, false)
        .await
        .unwrap();
    c.disconnect().await.unwrap();
}

fn addr(node: &Node) -> std::net::SocketAddr {
    node.running.tcp_addr().unwrap()
}

/// A 3.1.1 client (rumqttc, Clean Session 0) subscribed on node A goes
/// away; two QoS 1 messages are queued for it on A; it connects to node B:
/// Session Present 1 [MQTT-3.2.2-2], the queued messages arrive
/// [MQTT-3.1.2-5], and its subscription delivers on B, from B and from A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_3_1_1_session_follows_its_client_to_another_node() {
    let (_dir, nats) = nats();
    let a = Node::start(&nats, "a").await;
    let b = Node::start(&nats, "b").await;
    let persistent = |o: &mut rumqttc::MqttOptions| {
        o.set_clean_session(false);
    };
    let (mut on_a, ack) = common::V4::connect(addr(&a), "roam3", persistent).await;
    assert!(!ack.session_present);
    on_a.subscribe("roam3/#", rumqttc::QoS::AtLeastOnce).await;
    drop(on_a);
    publish_from(&a, "p3a", "roam3/1", "one").await;
    publish_from(&a, "p3b", "roam3/2", "two").await;
    let started = std::time::Instant::now();
    let (mut on_b, ack) = common::V4::connect(addr(&b), "roam3", persistent).await;
    println!("3.1.1 take-over: CONNACK after {:?}", started.elapsed());
    assert!(ack.session_present, "{ack:?}");
    let mut got = Vec::new();
    for _ in 0..2 {
        let p = on_b.next_publish().await;
        got.push(String::from_utf8(p.payload.to_vec()).unwrap());
    }
    assert_eq!(got, ["one", "two"]);
    publish_from(&b, "p3c", "roam3/3", "three").await;
    assert_eq!(&on_b.next_publish().await.payload[..], b"three");
    assert_eq!(
        a.cluster.session_stats().released.load(Ordering::Relaxed),
        1
    );
    assert_eq!(b.cluster.session_stats().taken.load(Ordering::Relaxed), 1);
}

/// The same for MQTT 5 (rumqttc, Session Expiry Interval 3600 s), and a
/// message published on A after the take-over reaches the client on B
/// (its subscription's interest moved with it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5_0_session_follows_its_client_to_another_node() {
    let (_dir, nats) = nats();
    let a = Node::start(&nats, "a").await;
    let b = Node::start(&nats, "b").await;
    let persistent = |o: &mut rumqttc::v5::MqttOptions| {
        o.set_clean_start(false);
        let mut p = rumqttc::v5::mqttbytes::v5::ConnectProperties::new();
        p.session_expiry_interval = Some(3600);
        o.set_connect_properties(p);
    };
    let (mut on_a, ack) = common::V5::connect(addr(&a), "roam5", persistent).await;
    assert!(!ack.session_present);
    on_a.subscribe("roam5/#", rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
        .await;
    drop(on_a);
    publish_from(&a, "p5a", "roam5/1", "one").await;
    publish_from(&a, "p5b", "roam5/2", "two").await;
    let started = std::time::Instant::now();
    let (mut on_b, ack) = common::V5::connect(addr(&b), "roam5", persistent).await;
    println!("5.0 take-over: CONNACK after {:?}", started.elapsed());
    assert!(ack.session_present, "{ack:?}");
    let mut got = Vec::new();
    for _ in 0..2 {
        let p = on_b.next_publish().await;
        got.push(String::from_utf8(p.payload.to_vec()).unwrap());
    }
    assert_eq!(got, ["one", "two"]);
    // From A, across the cluster: B announced the subscription's filter.
    let (from_a, _own) = a.client("p5c", ProtocolVersion::V5).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        from_a
            .publish("roam5/x", "x", QoS::AtMostOnce, false)
            .await
            .unwrap();
        let p = tokio::time::timeout(Duration::from_millis(200), on_b.next_publish()).await;
        if p.is_ok() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "A never reached B");
    }
}

/// A client still connected to node A connects again to node B: A sends
/// DISCONNECT 0x8E Session taken over and closes (MQTT 5) [MQTT-3.1.4-3],
/// or closes (3.1.1, which has no DISCONNECT from the server), and B
/// resumes the session. The take-over time is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_still_connected_to_another_node_is_taken_over() {
    use tern_codec::{Packet, ReasonCode};
    let (_dir, nats) = nats();
    let a = Node::start(&nats, "a").await;
    let b = Node::start(&nats, "b").await;
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let id = format!("twice-{}", version.level());
        let mut connect = common::connect(version, &id);
        connect.clean_start = false;
        if version.is_v5() {
            connect.properties.session_expiry_interval = Some(3600);
        }
        let (mut old, ack) = common::Raw::connect(addr(&a), connect.clone()).await;
        assert!(!ack.session_present);
        old.subscribe("twice/#", QoS::ExactlyOnce).await;
        let started = std::time::Instant::now();
        let (_new, ack) = common::Raw::connect(addr(&b), connect).await;
        println!(
            "{version:?} take-over of a connected client: CONNACK after {:?}",
            started.elapsed()
        );
        assert_eq!(ack.reason_code, ReasonCode::Success);
        assert!(ack.session_present, "{version:?}: {ack:?}");
        let before_close = old.closed(WAIT).await;
        if version.is_v5() {
            assert!(
                matches!(before_close.as_slice(), [Packet::Disconnect(d)] if d.reason_code == ReasonCode::SessionTakenOver),
                "{before_close:?}"
            );
        } else {
            assert_eq!(before_close, vec![], "3.1.1: closed, nothing sent");
        }
    }
}

/// A clean start on node B discards the session held on node A: Session
/// Present 0, and nothing queued on A arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_start_on_another_node_discards_the_session() {
    use tern_codec::{Packet, ReasonCode};
    let (_dir, nats) = nats();
    let a = Node::start(&nats, "a").await;
    let b = Node::start(&nats, "b").await;
    let mut connect = common::connect(ProtocolVersion::V5, "clean");
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(3600);
    let (mut old, _) = common::Raw::connect(addr(&a), connect.clone()).await;
    old.subscribe("clean/#", QoS::AtLeastOnce).await;
    old.send(Packet::Disconnect(Box::default())).await;
    old.closed(WAIT).await;
    publish_from(&a, "pc", "clean/1", "stale").await;
    connect.clean_start = true;
    let (mut new, ack) = common::Raw::connect(addr(&b), connect).await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    assert!(!ack.session_present);
    // Nothing was handed over: a ping's answer comes first.
    new.send(Packet::PingReq).await;
    assert_eq!(new.recv().await, Packet::PingResp);
}

/// A NATS outage and its end show in `$SYS/broker/cluster/connected`
/// (retained, 1 then 0 then 1): nats-server is killed by PID and started
/// again on the same port; the node reconnects by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_outage_shows_in_sys_and_ends_when_nats_returns() {
    let (_dir, mut nats) = nats();
    let a = Node::start(&nats, "a").await;
    let (ops, mut rx) = a.client("ops", ProtocolVersion::V5).await;
    ops.subscribe([("$SYS/broker/cluster/connected".to_string(), QoS::AtMostOnce)])
        .await
        .unwrap();
    let mut next = async || String::from_utf8(recv(&mut rx).await.payload.to_vec()).unwrap();
    assert_eq!(next().await, "1");
    nats.kill9();
    assert_eq!(next().await, "0");
    nats.restart().expect("nats-server starts again");
    assert_eq!(next().await, "1");
}
