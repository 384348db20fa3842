//! A bridge's state in `/metrics`, `/api/stats` and `$SYS`, read from
//! outside: Tern (in this process, real TCP and HTTP listeners on
//! 127.0.0.1:0) bridged to Debian's mosquitto, messages sent both ways by
//! real clients, `/metrics` scraped over a raw socket. The remote is
//! stopped by PID and started again on its port: the gauge falls to 0, the
//! `$SYS` state to `0`, and coming back counts one reconnect.

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};
use tern_bridge::{Bridges, Status};
use tern_broker::server::{self, BrokerSettings};
use tern_client::{Address, Client, Message, Messages, Options, ProtocolVersion, QoS};
use tern_testkit::Broker;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(15);

fn mosquitto(port: Option<u16>) -> Broker {
    assert!(
        std::path::Path::new(tern_testkit::MOSQUITTO).exists(),
        "mosquitto is needed ({}): apt-get install mosquitto",
        tern_testkit::MOSQUITTO
    );
    let mut launch = Broker::mosquitto().name("remote");
    if let Some(port) = port {
        launch = launch.port(port);
    }
    launch.start().expect("mosquitto starts")
}

async fn client(addr: SocketAddr, id: &str) -> (Client, Messages) {
    let options = Options::new(Address::tcp(addr.ip().to_string(), addr.port()))
        .client_id(id)
        .unwrap()
        .version(ProtocolVersion::V5);
    Client::connect(options).await.expect("client connects")
}

async fn next(messages: &mut Messages) -> Message {
    tokio::time::timeout(WAIT, messages.recv())
        .await
        .expect("a message in time")
        .expect("the stream is open")
}

/// One GET over a raw socket: the status line and the body.
async fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: tern\r\n\r\n");
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).await.unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head");
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// The `tern_bridge_*` samples of a scrape, by their full name and labels.
async fn bridge_samples(addr: SocketAddr) -> BTreeMap<String, u64> {
    let (status, body) = get(addr, "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    body.lines()
        .filter(|l| l.starts_with("tern_bridge_"))
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').expect("name value");
            (name.to_string(), value.parse().expect("a whole number"))
        })
        .collect()
}

/// Scrapes until `want` holds (the counters move when the destination
/// acknowledges, just after the subscriber has the message); the last
/// scrape otherwise.
async fn scrape_until(
    addr: SocketAddr,
    want: impl Fn(&BTreeMap<String, u64>) -> bool,
) -> BTreeMap<String, u64> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let samples = bridge_samples(addr).await;
        if want(&samples) || tokio::time::Instant::now() > deadline {
            return samples;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn sample(samples: &BTreeMap<String, u64>, key: &str) -> Option<u64> {
    samples.get(key).copied()
}

const CONNECTED: &str = "tern_bridge_connected{bridge=\"cloud\"}";
const RECONNECTS: &str = "tern_bridge_reconnects_total{bridge=\"cloud\"}";
const IN: &str = "tern_bridge_messages_forwarded_total{bridge=\"cloud\",direction=\"in\"}";
const OUT: &str = "tern_bridge_messages_forwarded_total{bridge=\"cloud\",direction=\"out\"}";
const DROPPED_OUT: &str = "tern_bridge_messages_dropped_total{bridge=\"cloud\",direction=\"out\"}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_state_and_counters_are_scraped_from_metrics() {
    let mut remote = mosquitto(None);
    let port = remote.tcp().port();
    let text = format!(
        "[listeners]\ntcp = [\"127.0.0.1:0\"]\nws = []\n[metrics]\nlisten = \"127.0.0.1:0\"\n\
         [[bridge]]\nname = \"cloud\"\naddress = \"127.0.0.1:{port}\"\n\
         restart_timeout = [0.2, 1]\nkeep_alive = 5\n\
         topic = [\n\
           {{ pattern = \"out/#\", direction = \"out\", qos = 1 }},\n\
           {{ pattern = \"in/#\", direction = \"in\", qos = 1 }},\n\
         ]\n"
    );
    let settings = BrokerSettings::from_toml(&text).unwrap();
    let running = server::start(settings.clone()).await.expect("tern starts");
    let metrics = running.metrics_addr().expect("a metrics listener");
    let addr = running.tcp_addr().expect("a tcp listener");

    // Before the bridge starts there is no bridge family at all.
    assert!(bridge_samples(metrics).await.is_empty());

    // `$SYS`: the bridge's state, as mosquitto's notifications publish it.
    let (near, mut near_rx) = client(addr, "near").await;
    near.subscribe([("$SYS/broker/connection/+/state", QoS::AtLeastOnce)])
        .await
        .unwrap();
    near.subscribe([("in/#", QoS::AtLeastOnce)]).await.unwrap();

    let bridges = Bridges::start(running.local_connector(), &settings.bridge);
    let mut status = bridges.status("cloud").unwrap();
    tokio::time::timeout(WAIT, status.wait_for(|s| *s == Status::Up))
        .await
        .expect("the bridge comes up")
        .unwrap();
    // The retained 0 from before the remote answered, then 1 (or just 1).
    let mut state = next(&mut near_rx).await;
    if state.payload.as_ref() == b"0" {
        state = next(&mut near_rx).await;
    }
    assert_eq!(state.topic.as_str(), "$SYS/broker/connection/cloud/state");
    assert_eq!(state.payload.as_ref(), b"1");

    let s = scrape_until(metrics, |s| sample(s, CONNECTED) == Some(1)).await;
    assert_eq!(sample(&s, CONNECTED), Some(1), "{s:#?}");
    assert_eq!(sample(&s, RECONNECTS), Some(0), "{s:#?}");
    assert_eq!(sample(&s, IN), Some(0), "{s:#?}");
    assert_eq!(sample(&s, OUT), Some(0), "{s:#?}");

    // 5 out (Tern → mosquitto), 3 in (mosquitto → Tern).
    let (far, mut far_rx) = client(remote.tcp(), "far").await;
    far.subscribe([("out/#", QoS::AtLeastOnce)]).await.unwrap();
    for i in 0..5 {
        near.publish("out/a", format!("o{i}"), QoS::AtLeastOnce, false)
            .await
            .unwrap();
    }
    for i in 0..5 {
        assert_eq!(
            next(&mut far_rx).await.payload.as_ref(),
            format!("o{i}").as_bytes()
        );
    }
    for i in 0..3 {
        far.publish("in/b", format!("i{i}"), QoS::AtLeastOnce, false)
            .await
            .unwrap();
    }
    for i in 0..3 {
        assert_eq!(
            next(&mut near_rx).await.payload.as_ref(),
            format!("i{i}").as_bytes()
        );
    }
    let s = scrape_until(metrics, |s| {
        sample(s, OUT) == Some(5) && sample(s, IN) == Some(3)
    })
    .await;
    assert_eq!(
        (sample(&s, OUT), sample(&s, IN)),
        (Some(5), Some(3)),
        "{s:#?}"
    );
    assert_eq!(sample(&s, DROPPED_OUT), Some(0), "{s:#?}");

    // The dashboard's JSON carries the same.
    let (_, json) = get(metrics, "/api/stats").await;
    assert!(
        json.contains(
            r#""bridges":[{"name":"cloud","connected":true,"reconnects":0,"forwarded_in":3,"forwarded_out":5,"#
        ),
        "{json}"
    );

    // The remote goes away: the gauge falls and `$SYS` says 0.
    drop(far);
    remote.signal("TERM").unwrap();
    remote.wait_exit(Duration::from_secs(10)).unwrap();
    drop(remote);
    let state = next(&mut near_rx).await;
    assert_eq!(
        (state.topic.as_str(), state.payload.as_ref()),
        ("$SYS/broker/connection/cloud/state", &b"0"[..])
    );
    let s = scrape_until(metrics, |s| sample(s, CONNECTED) == Some(0)).await;
    assert_eq!(sample(&s, CONNECTED), Some(0), "{s:#?}");

    // It comes back on the same port: one reconnect, counters kept.
    let _remote = mosquitto(Some(port));
    let state = next(&mut near_rx).await;
    assert_eq!(state.payload.as_ref(), b"1");
    let s = scrape_until(metrics, |s| sample(s, RECONNECTS) == Some(1)).await;
    assert_eq!(sample(&s, CONNECTED), Some(1), "{s:#?}");
    assert_eq!(sample(&s, RECONNECTS), Some(1), "{s:#?}");
    assert_eq!(
        (sample(&s, OUT), sample(&s, IN)),
        (Some(5), Some(3)),
        "{s:#?}"
    );

    bridges.shutdown().await;
    running.shutdown().await;
}
