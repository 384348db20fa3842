//! The remote goes away during a steady QoS 1 stream and comes back on the
//! same port: every message arrives once it is back, in order per topic.
//!
//! Tern (in this process, real TCP listeners) bridges `s/#` out to Debian's
//! mosquitto; a persistent subscriber on mosquitto counts. mosquitto is
//! stopped by PID (SIGTERM, so its own persistence keeps the subscriber's
//! session; what it had acknowledged before is its to keep) and started
//! again after the outage. The short run is CI's; the issue's long run:
//!
//! ```text
//! TERN_BRIDGE_OUTAGE_SECS=60 TERN_BRIDGE_RATE=200 TERN_BRIDGE_MESSAGES=20000 \
//!     cargo test --release -p tern-bridge --test outage -- --nocapture
//! ```

use std::{collections::BTreeMap, time::Duration};
use tern_bridge::{Bridges, Status};
use tern_broker::server::{self, BrokerSettings};
use tern_client::{Address, Client, Options, ProtocolVersion, QoS};
use tern_testkit::Broker;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn mosquitto(dir: &std::path::Path, port: Option<u16>) -> Broker {
    assert!(
        std::path::Path::new(tern_testkit::MOSQUITTO).exists(),
        "mosquitto is needed ({})",
        tern_testkit::MOSQUITTO
    );
    let mut launch = Broker::mosquitto()
        .dir(dir)
        .name("remote")
        .settings(&format!(
            "user root\npersistence true\npersistence_location {}/\nmax_queued_messages 0\n",
            dir.display()
        ));
    if let Some(port) = port {
        launch = launch.port(port);
    }
    launch.start().expect("mosquitto starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_outage_loses_nothing_and_keeps_order() {
    let outage = Duration::from_secs(env("TERN_BRIDGE_OUTAGE_SECS", 2));
    let rate = env("TERN_BRIDGE_RATE", 200);
    let total = env("TERN_BRIDGE_MESSAGES", 1000);
    let topics = ["s/a", "s/b"];

    let dir = std::env::temp_dir().join(format!("tern-bridge-outage-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut remote = mosquitto(&dir, None);
    let port = remote.tcp().port();

    // The counting subscriber: a persistent session on the remote.
    let far_options = Options::new(Address::tcp("127.0.0.1", port))
        .client_id("far")
        .unwrap()
        .version(ProtocolVersion::V5)
        .clean_start(false)
        .session_expiry(u32::MAX)
        .message_capacity(100_000);
    let (far, mut far_rx) = Client::connect(far_options).await.expect("far connects");
    far.subscribe([("edge/#", QoS::AtLeastOnce)]).await.unwrap();

    let settings = BrokerSettings::from_toml(&format!(
        "[listeners]\ntcp = [\"127.0.0.1:0\"]\nws = []\n\
         [[bridge]]\nname = \"up\"\naddress = \"127.0.0.1:{port}\"\n\
         restart_timeout = [0.2, 1]\nkeep_alive = 5\n\
         topic = [{{ pattern = \"s/#\", direction = \"out\", qos = 1, remote_prefix = \"edge/\" }}]\n"
    ))
    .unwrap();
    let running = server::start(settings.clone()).await.unwrap();
    let bridges = Bridges::start(running.local_connector(), &settings.bridge);
    let mut status = bridges.status("up").unwrap();
    tokio::time::timeout(
        Duration::from_secs(15),
        status.wait_for(|s| *s == Status::Up),
    )
    .await
    .expect("the bridge comes up")
    .unwrap();

    // The stream, on two topics, numbered per topic.
    let addr = running.tcp_addr().unwrap();
    let (near, _near_rx) = Client::connect(
        Options::new(Address::tcp("127.0.0.1", addr.port()))
            .client_id("near")
            .unwrap(),
    )
    .await
    .unwrap();
    let publisher = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
        for n in 0..total {
            tick.tick().await;
            let topic = topics[(n % 2) as usize];
            let done = near
                .publish(topic, (n / 2).to_string(), QoS::AtLeastOnce, false)
                .await
                .expect("Tern takes the message");
            assert!(done.is_success());
        }
    });

    // Let a third of the stream through, then take the remote away.
    let mut seen: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut count = 0;
    let receive = |m: tern_client::Message, seen: &mut BTreeMap<String, Vec<u64>>| {
        let n: u64 = std::str::from_utf8(&m.payload).unwrap().parse().unwrap();
        seen.entry(m.topic.to_string()).or_default().push(n);
    };
    while count < total / 3 {
        let m = tokio::time::timeout(Duration::from_secs(15), far_rx.recv())
            .await
            .expect("messages flow before the outage")
            .unwrap();
        receive(m, &mut seen);
        count += 1;
    }
    remote.signal("TERM").unwrap();
    remote.wait_exit(Duration::from_secs(10)).unwrap();
    drop(remote);
    tokio::time::sleep(outage).await;
    let _remote = mosquitto(&dir, Some(port));

    // Everything arrives once the remote is back.
    let unique = |seen: &BTreeMap<String, Vec<u64>>| -> u64 {
        seen.values()
            .map(|v| v.iter().collect::<std::collections::BTreeSet<_>>().len() as u64)
            .sum()
    };
    let deadline = outage + Duration::from_secs(30 + total / rate.max(1));
    let all = tokio::time::timeout(deadline, async {
        while unique(&seen) < total {
            match far_rx.recv().await {
                Some(m) => receive(m, &mut seen),
                None => break,
            }
        }
    })
    .await;
    publisher.await.unwrap();
    let got = unique(&seen);
    let received: usize = seen.values().map(Vec::len).sum();
    println!(
        "outage {outage:?}, {rate} msg/s: {got} of {total} messages, {} duplicates",
        received as u64 - got
    );
    assert!(
        all.is_ok() && got == total,
        "lost {} of {total}",
        total - got
    );
    // In order per topic: each number first appears after the one before
    // (a QoS 1 duplicate may repeat an earlier one).
    for (topic, numbers) in &seen {
        let mut next = 0;
        for &n in numbers {
            assert!(n <= next, "{topic}: {n} arrived before {next}");
            if n == next {
                next += 1;
            }
        }
    }
    bridges.shutdown().await;
    running.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
