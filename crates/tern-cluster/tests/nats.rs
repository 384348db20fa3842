//! Tern nodes clustered on a real `nats-server` (Debian's; the test fails
//! naming it if it is missing): messages cross nodes at each
//! subscription's QoS for MQTT 3.1.1 and 5, never echo, never touch NATS
//! without remote interest, and retained messages are seen from every
//! node, one started later included.
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
