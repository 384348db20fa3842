//! Bridges against real brokers on 127.0.0.1: Tern (in this process, real
//! TCP listeners) bridged to Debian's mosquitto and mosquitto bridged to
//! Tern, both directions, QoS 0/1/2, retained messages, prefixes, MQTT 3.1.1
//! and 5; two Tern brokers bridged both ways; and a remote outage during a
//! steady QoS 1 stream.
//!
//! Absence (no duplicate, no loop) is checked with a sentinel: a last
//! message on the same topic, through the same bridges, so anything the
//! first produced arrives before it.

use std::{net::SocketAddr, time::Duration};
use tern_bridge::{Bridges, Status};
use tern_broker::server::{self, BrokerSettings, Running};
use tern_client::{Address, Client, Message, Messages, Options, ProtocolVersion, QoS};
use tern_testkit::Broker;

const WAIT: Duration = Duration::from_secs(15);

/// A Tern broker in this process, on a port the system chose, with `extra`
/// settings (`[[bridge]]` tables).
async fn tern(extra: &str) -> (Running, Bridges, SocketAddr) {
    // TERN_LOG=debug shows the bridges' and the broker's logs.
    if let Ok(filter) = std::env::var("TERN_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
    let text = format!("[listeners]\ntcp = [\"127.0.0.1:0\"]\nws = []\n{extra}");
    let settings = BrokerSettings::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let running = server::start(settings.clone()).await.expect("tern starts");
    let bridges = Bridges::start(running.local_connector(), &settings.bridge);
    let addr = running.tcp_addr().expect("a tcp listener");
    (running, bridges, addr)
}

/// Waits until the bridge is connected on both sides, subscriptions made.
async fn up(bridges: &Bridges, name: &str) {
    let mut status = bridges.status(name).expect("a bridge of that name");
    tokio::time::timeout(WAIT, status.wait_for(|s| *s == Status::Up))
        .await
        .unwrap_or_else(|_| panic!("bridge {name} did not come up"))
        .expect("bridge status");
}

async fn client(addr: SocketAddr, id: &str, version: ProtocolVersion) -> (Client, Messages) {
    let options = Options::new(Address::tcp(addr.ip().to_string(), addr.port()))
        .client_id(id)
        .unwrap()
        .version(version);
    Client::connect(options).await.expect("client connects")
}

#[track_caller]
fn next(messages: &mut Messages) -> impl std::future::Future<Output = Message> + '_ {
    let at = std::panic::Location::caller();
    async move {
        tokio::time::timeout(WAIT, messages.recv())
            .await
            .unwrap_or_else(|_| panic!("no message within {WAIT:?} at {at}"))
            .expect("the stream is open")
    }
}

/// Receives until a message with payload `end`; returns those before it.
async fn until(messages: &mut Messages, end: &str) -> Vec<Message> {
    let mut got = Vec::new();
    loop {
        let m = next(messages).await;
        if m.payload.as_ref() == end.as_bytes() {
            return got;
        }
        got.push(m);
    }
}

fn mosquitto(settings: &str) -> Broker {
    assert!(
        std::path::Path::new(tern_testkit::MOSQUITTO).exists(),
        "mosquitto is needed ({}): apt-get install mosquitto",
        tern_testkit::MOSQUITTO
    );
    Broker::mosquitto()
        .settings(settings)
        .start()
        .expect("mosquitto starts")
}

fn protocol_name(v: ProtocolVersion) -> &'static str {
    if v.is_v5() { "5" } else { "3.1.1" }
}

/// Tern bridges to mosquitto: `out` with a remote prefix, `in` with a
/// local prefix, `both`, QoS 0/1/2, retained, the notification; MQTT 5,
/// 3.1.1, and 3.1.1 with mosquitto's `try_private`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tern_bridged_to_mosquitto() {
    for (version, private) in [
        (ProtocolVersion::V5, false),
        (ProtocolVersion::V3_1_1, false),
        (ProtocolVersion::V3_1_1, true),
    ] {
        let remote = mosquitto("");
        let bridge = format!(
            "[[bridge]]\nname = \"cloud\"\naddress = \"{}\"\nprotocol = \"{}\"\n\
             restart_timeout = [0.2, 1]\ntry_private = {private}\n\
             topic = [\n\
               {{ pattern = \"out/#\", direction = \"out\", qos = 2, remote_prefix = \"edge/\" }},\n\
               {{ pattern = \"cmd/#\", direction = \"in\", qos = 2, local_prefix = \"cloud/\" }},\n\
               {{ pattern = \"both/#\", direction = \"both\", qos = 1 }},\n\
             ]\n",
            remote.tcp(),
            protocol_name(version)
        );
        // With No Local (5) or try_private, mosquitto does not send the
        // bridge's own messages back; plain 3.1.1 cannot ask it not to.
        let no_echo = version.is_v5() || private;
        // The notification, retained on the remote.
        let (watcher, mut notes) = client(remote.tcp(), "watcher", ProtocolVersion::V5).await;
        watcher
            .subscribe([("$SYS/broker/connection/cloud/state", QoS::AtLeastOnce)])
            .await
            .unwrap();
        let (_running, bridges, addr) = tern(&bridge).await;
        up(&bridges, "cloud").await;
        assert_eq!(next(&mut notes).await.payload.as_ref(), b"1");

        // Out: Tern → mosquitto, each QoS, renamed with the remote prefix.
        let (far, mut far_rx) = client(remote.tcp(), "far", version).await;
        far.subscribe([("edge/#", QoS::ExactlyOnce)]).await.unwrap();
        let (near, mut near_rx) = client(addr, "near", version).await;
        near.subscribe([("cloud/#", QoS::ExactlyOnce)])
            .await
            .unwrap();
        // Both ways on one topic: once across, and not echoed back
        // (mosquitto's log names the bridge's connection as one).
        let (mirror, mut mirror_rx) = client(addr, "mirror", version).await;
        mirror
            .subscribe([("both/#", QoS::AtLeastOnce)])
            .await
            .unwrap();
        far.subscribe([("both/#", QoS::AtLeastOnce)]).await.unwrap();
        near.publish("both/x", "b", QoS::AtLeastOnce, false)
            .await
            .unwrap();
        near.publish("both/x", "end", QoS::AtLeastOnce, false)
            .await
            .unwrap();
        assert_eq!(
            until(&mut far_rx, "end").await.len(),
            1,
            "{version} {private}"
        );
        // An echo would come back the way messages from mosquitto come:
        // once this one from mosquitto arrives, so has any echo.
        far.publish("both/x", "end2", QoS::AtLeastOnce, false)
            .await
            .unwrap();
        let here = until(&mut mirror_rx, "end2").await;
        let copies = here.iter().filter(|m| m.payload.as_ref() == b"b").count();
        // A plain 3.1.1 bridge gets its own message back and publishes it
        // here again.
        assert_eq!(
            copies,
            if no_echo { 1 } else { 2 },
            "{version} try_private {private}: copies of one message"
        );
        assert_eq!(until(&mut far_rx, "end2").await.len(), 0);
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let payload = format!("q{}", qos as u8);
            near.publish("out/a", payload.clone(), qos, false)
                .await
                .unwrap();
            let m = next(&mut far_rx).await;
            assert_eq!(
                (m.topic.as_str(), m.payload.as_ref()),
                ("edge/out/a", payload.as_bytes())
            );
            assert_eq!(m.qos, qos, "{version}: bridged at the QoS published");
            assert!(!m.retain);
        }
        // In: mosquitto → Tern, renamed with the local prefix.
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let payload = format!("c{}", qos as u8);
            far.publish("cmd/go", payload.clone(), qos, false)
                .await
                .unwrap();
            let m = next(&mut near_rx).await;
            assert_eq!(
                (m.topic.as_str(), m.payload.as_ref()),
                ("cloud/cmd/go", payload.as_bytes())
            );
            assert_eq!(m.qos, qos, "{version}");
        }
        // Retained, both ways: a later subscriber gets it, flagged retained.
        near.publish("out/r", "kept", QoS::AtLeastOnce, true)
            .await
            .unwrap();
        // MQTT 3.1.1 has no Retain As Published: mosquitto clears the flag
        // of live messages to a bridge that is not marked with try_private,
        // so retained messages cross inwards with 5 or try_private only.
        far.publish("cmd/r", "kept-in", QoS::AtLeastOnce, no_echo)
            .await
            .unwrap();
        // Sentinels: once they are through, so are the retained messages.
        near.publish("out/r2", "end", QoS::AtLeastOnce, false)
            .await
            .unwrap();
        assert_eq!(until(&mut far_rx, "end").await.len(), 1);
        far.publish("cmd/r2", "end", QoS::AtLeastOnce, false)
            .await
            .unwrap();
        assert_eq!(until(&mut near_rx, "end").await.len(), 1);
        let (late, mut late_rx) = client(remote.tcp(), "late", version).await;
        late.subscribe([("edge/out/r", QoS::AtLeastOnce)])
            .await
            .unwrap();
        let m = next(&mut late_rx).await;
        assert_eq!(m.payload.as_ref(), b"kept");
        assert!(m.retain, "{version}: retained on the remote");
        if no_echo {
            let (late, mut late_rx) = client(addr, "late-here", version).await;
            late.subscribe([("cloud/cmd/r", QoS::AtLeastOnce)])
                .await
                .unwrap();
            let m = next(&mut late_rx).await;
            assert_eq!(m.payload.as_ref(), b"kept-in");
            assert!(m.retain, "{version}: retained here");
        }

        bridges.shutdown().await;
        // The bridge said goodbye.
        assert_eq!(until(&mut notes, "0").await.len(), 0);
    }
}

/// mosquitto's own bridge (`connection`) pointed at a Tern listener, both
/// directions, QoS 0/1/2 and retained; MQTT 5 and 3.1.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_bridged_to_tern() {
    for (version, mosquitto_version) in [
        (ProtocolVersion::V5, "mqttv50"),
        (ProtocolVersion::V3_1_1, "mqttv311"),
    ] {
        let (_running, _bridges, addr) = tern("").await;
        let (near, mut near_rx) = client(addr, "tern-side", version).await;
        near.subscribe([("from-edge/#", QoS::ExactlyOnce)])
            .await
            .unwrap();
        // Tern sees the bridge connect: its notification, retained.
        near.subscribe([("edge/state", QoS::AtLeastOnce)])
            .await
            .unwrap();
        let edge = mosquitto(&format!(
            "connection tern\naddress {addr}\nbridge_protocol_version {mosquitto_version}\n\
             try_private false\ncleansession true\nrestart_timeout 1\n\
             notification_topic edge/state\n\
             topic # out 2 from-edge/ from-edge/\ntopic # in 2 to-edge/ to-edge/\n"
        ));
        let m = next(&mut near_rx).await;
        assert_eq!(
            (m.topic.as_str(), m.payload.as_ref()),
            ("edge/state", &b"1"[..])
        );
        let (far, mut far_rx) = client(edge.tcp(), "edge-side", version).await;
        far.subscribe([("to-edge/#", QoS::ExactlyOnce)])
            .await
            .unwrap();
        // mosquitto's bridge subscribes on Tern as it connects; its SUBSCRIBE
        // may still be on its way: publish until one arrives.
        let mut first = None;
        for _ in 0..100 {
            near.publish("to-edge/probe", "probe", QoS::AtMostOnce, false)
                .await
                .unwrap();
            if let Ok(Some(m)) =
                tokio::time::timeout(Duration::from_millis(100), far_rx.recv()).await
            {
                first = Some(m);
                break;
            }
        }
        assert!(
            first.is_some(),
            "mosquitto's bridge never delivered from Tern"
        );
        near.publish("to-edge/probe", "end", QoS::AtLeastOnce, false)
            .await
            .unwrap();
        until(&mut far_rx, "end").await;

        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let p = format!("out{}", qos as u8);
            far.publish("from-edge/x", p.clone(), qos, false)
                .await
                .unwrap();
            let m = next(&mut near_rx).await;
            assert_eq!(
                (m.topic.as_str(), m.payload.as_ref()),
                ("from-edge/x", p.as_bytes())
            );
            assert_eq!(m.qos, qos, "{version}");
            let p = format!("in{}", qos as u8);
            near.publish("to-edge/y", p.clone(), qos, false)
                .await
                .unwrap();
            let m = next(&mut far_rx).await;
            assert_eq!(
                (m.topic.as_str(), m.payload.as_ref()),
                ("to-edge/y", p.as_bytes())
            );
            assert_eq!(m.qos, qos, "{version}");
        }
        far.publish("from-edge/kept", "k", QoS::AtLeastOnce, true)
            .await
            .unwrap();
        far.publish("from-edge/kept", "end", QoS::AtLeastOnce, false)
            .await
            .unwrap();
        assert_eq!(until(&mut near_rx, "end").await.len(), 1);
        let (late, mut late_rx) = client(addr, "late", version).await;
        late.subscribe([("from-edge/kept", QoS::AtLeastOnce)])
            .await
            .unwrap();
        let m = next(&mut late_rx).await;
        assert_eq!(m.payload.as_ref(), b"k");
        assert!(m.retain);
    }
}

/// mosquitto's bridge with its default `try_private true` over 3.1.1: its
/// CONNECT carries protocol level 0x84, which Tern accepts as a 3.1.1
/// bridge: a `both` topic is not echoed back to it (No Local on its
/// subscriptions), and retained flags cross as published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_bridge_with_try_private_is_recognised() {
    let (_running, _bridges, addr) = tern("").await;
    let (near, mut near_rx) = client(addr, "tern-side", ProtocolVersion::V3_1_1).await;
    near.subscribe([
        ("edge/state", QoS::AtLeastOnce),
        ("from-edge/#", QoS::AtLeastOnce),
    ])
    .await
    .unwrap();
    // try_private is left at mosquitto's default (true).
    let edge = mosquitto(&format!(
        "connection tern\naddress {addr}\nbridge_protocol_version mqttv311\n\
         cleansession true\nrestart_timeout 1\nnotification_topic edge/state\n\
         topic # both 1 from-edge/ from-edge/\n"
    ));
    let m = next(&mut near_rx).await;
    assert_eq!(
        (m.topic.as_str(), m.payload.as_ref()),
        ("edge/state", &b"1"[..])
    );
    let log = edge.log();
    assert!(
        !log.contains("Connection Refused"),
        "mosquitto's 0x84 CONNECT was refused:\n{log}"
    );
    let (far, mut far_rx) = client(edge.tcp(), "edge-side", ProtocolVersion::V3_1_1).await;
    far.subscribe([("from-edge/#", QoS::AtLeastOnce)])
        .await
        .unwrap();
    // mosquitto's bridge subscribes on Tern as it connects: through once a
    // message from Tern arrives.
    loop {
        near.publish("from-edge/probe", "probe", QoS::AtMostOnce, false)
            .await
            .unwrap();
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(100), far_rx.recv()).await {
            break;
        }
    }
    near.publish("from-edge/probe", "end", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    until(&mut far_rx, "end").await;
    until(&mut near_rx, "end").await;
    // From mosquitto's side: once on Tern, and once back home (no echo).
    far.publish("from-edge/x", "across", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    far.publish("from-edge/x", "end", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    let there = until(&mut near_rx, "end").await;
    assert_eq!(there.len(), 1, "on Tern: {there:?}");
    assert_eq!(until(&mut far_rx, "end").await.len(), 1);
    // An echo would come back the way messages from Tern come: once this
    // one from Tern arrives, so has any echo.
    near.publish("from-edge/x", "end2", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    let home = until(&mut far_rx, "end2").await;
    assert!(home.is_empty(), "echoed back to mosquitto: {home:?}");
    until(&mut near_rx, "end2").await;
    // Retained, from mosquitto, kept as published on Tern.
    far.publish("from-edge/kept", "k", QoS::AtLeastOnce, true)
        .await
        .unwrap();
    far.publish("from-edge/kept", "end", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    let live = until(&mut near_rx, "end").await;
    assert_eq!(live.len(), 1);
    let (late, mut late_rx) = client(addr, "late", ProtocolVersion::V3_1_1).await;
    late.subscribe([("from-edge/kept", QoS::AtLeastOnce)])
        .await
        .unwrap();
    let m = next(&mut late_rx).await;
    assert_eq!(m.payload.as_ref(), b"k");
    assert!(m.retain);
}

/// Two Tern brokers bridged "both ways" in the two usual shapes: each
/// sends its own messages `out` to the other (two bridges), or one bridge
/// with `direction = "both"`. Every message arrives once on each broker,
/// and nothing goes round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tern_and_tern_bridged_both_ways_do_not_loop() {
    // MQTT 3.1.1 cannot carry the mark nor ask for No Local: with
    // try_private the remote gives No Local and marks what it receives.
    for (protocol, shape) in [
        ("5", "two"),
        ("5", "both"),
        ("3.1.1", "two"),
        ("3.1.1", "both"),
    ] {
        let (b_running, _none, b) = tern("").await;
        let table = |name: &str, to: SocketAddr, direction: &str| {
            format!(
                "[[bridge]]\nname = \"{name}\"\naddress = \"{to}\"\nprotocol = \"{protocol}\"\n\
                 restart_timeout = [0.2, 1]\ntry_private = true\n\
                 topic = [{{ pattern = \"t/#\", direction = \"{direction}\", qos = 1 }}]\n"
            )
        };
        let direction = if shape == "two" { "out" } else { "both" };
        let (_a_running, a_bridges, a) = tern(&table("a-to-b", b, direction)).await;
        up(&a_bridges, "a-to-b").await;
        let b_bridges = if shape == "two" {
            let s = BrokerSettings::from_toml(&table("b-to-a", a, "out")).unwrap();
            let bridges = Bridges::start(b_running.local_connector(), &s.bridge);
            up(&bridges, "b-to-a").await;
            bridges
        } else {
            Bridges::default()
        };
        let (ca, mut a_rx) = client(a, "on-a", ProtocolVersion::V5).await;
        ca.subscribe([("t/#", QoS::AtLeastOnce)]).await.unwrap();
        let (cb, mut b_rx) = client(b, "on-b", ProtocolVersion::V5).await;
        cb.subscribe([("t/#", QoS::AtLeastOnce)]).await.unwrap();
        for (from, name) in [(&ca, "from-a"), (&cb, "from-b")] {
            from.publish("t/x", name, QoS::AtLeastOnce, false)
                .await
                .unwrap();
            from.publish("t/x", "end", QoS::AtLeastOnce, false)
                .await
                .unwrap();
            for (rx, at) in [(&mut a_rx, "a"), (&mut b_rx, "b")] {
                let got = until(rx, "end").await;
                let payloads: Vec<_> = got.iter().map(|m| m.payload.clone()).collect();
                assert_eq!(
                    payloads,
                    [name.as_bytes()],
                    "{protocol} {shape}: {name} seen on {at} exactly once"
                );
            }
        }
        a_bridges.shutdown().await;
        b_bridges.shutdown().await;
    }
}

#[path = "../../tern-client/tests/support/pki.rs"]
mod pki;

/// TLS to the remote: mosquitto's TLS listener requiring a client
/// certificate; the bridge trusts `cafile` and presents `certfile`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tern_bridged_to_mosquitto_over_tls_with_a_client_certificate() {
    let pki = pki::Pki::new("bridge");
    assert!(
        std::path::Path::new(tern_testkit::MOSQUITTO).exists(),
        "mosquitto is needed ({})",
        tern_testkit::MOSQUITTO
    );
    let remote = Broker::mosquitto()
        .listener_settings(&pki.listener_settings(true))
        .start()
        .expect("mosquitto (TLS) starts");
    let bridge = format!(
        "[[bridge]]\nname = \"secure\"\naddress = \"localhost:{}\"\n\
         cafile = \"{}\"\ncertfile = \"{}\"\nkeyfile = \"{}\"\nrestart_timeout = [0.2, 1]\n\
         topic = [{{ pattern = \"s/#\", direction = \"both\", qos = 1 }}]\n",
        remote.tcp().port(),
        pki.path("ca.pem").display(),
        pki.path("client.pem").display(),
        pki.path("client.key").display(),
    );
    let (_running, bridges, addr) = tern(&bridge).await;
    up(&bridges, "secure").await;
    // A client of the remote, over TLS too.
    let far_options = Options::new(Address::tcp("localhost", remote.tcp().port()).with_tls())
        .client_id("far")
        .unwrap()
        .tls(
            tern_client::TlsOptions::new()
                .ca_file(pki.path("ca.pem"))
                .client_auth(pki.path("client.pem"), pki.path("client.key")),
        );
    let (far, mut far_rx) = Client::connect(far_options).await.expect("far connects");
    far.subscribe([("s/#", QoS::AtLeastOnce)]).await.unwrap();
    let (near, mut near_rx) = client(addr, "near", ProtocolVersion::V5).await;
    near.subscribe([("s/#", QoS::AtLeastOnce)]).await.unwrap();
    near.publish("s/out", "over tls", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    let m = next(&mut far_rx).await;
    assert_eq!(
        (m.topic.as_str(), m.payload.as_ref()),
        ("s/out", &b"over tls"[..])
    );
    // The local subscriber saw its own message (and nothing came back).
    assert_eq!(next(&mut near_rx).await.payload.as_ref(), b"over tls");
    far.publish("s/in", "back", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    let m = next(&mut near_rx).await;
    assert_eq!(
        (m.topic.as_str(), m.payload.as_ref()),
        ("s/in", &b"back"[..])
    );
    bridges.shutdown().await;
}
