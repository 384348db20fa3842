//! `cargo xtask cluster` (issue 18): three `nats-server` clustered with
//! JetStream and three `tern broker --cluster` nodes on loopback, then:
//! cross-node pub/sub at QoS 0/1/2 in MQTT 3.1.1 and 5, retained messages
//! read from every node, persistent sessions taken over by another node
//! (their queued messages follow them), and one NATS server killed with
//! SIGKILL while messages flow; it prints the take-over time, the
//! cross-node latency at 1,000 msg/s and a local-only message's latency on
//! a clustered node and on a plain one (same run). `--smoke` (CI) runs each
//! part briefly.
//!
//! Each check fails the command with what it saw; the figures are printed,
//! never asserted.

use crate::tools::{cargo, ensure_apt, run, target_dir};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tern_client::{Address, Client, Messages, Options};
use tern_codec::{ProtocolVersion, QoS};
use tern_testkit::{Broker, nats::NatsServer};

/// The nats-server release the cluster is tested with: Debian's.
pub(crate) const NATS_SERVER_SERIES: &str = "v2.9.";

const USAGE: &str = "cargo xtask cluster [--smoke] [--seconds N]";

/// Installs Debian's nats-server when missing and checks its series.
pub(crate) fn ensure_nats_server() -> Result<(), String> {
    ensure_apt(&["nats-server"], &["nats-server"])?;
    let out = std::process::Command::new("nats-server")
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run nats-server: {e}"))?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !version.contains(NATS_SERVER_SERIES) {
        return Err(format!(
            "nats-server is {version:?}; the cluster is tested with Debian's {NATS_SERVER_SERIES}x"
        ));
    }
    Ok(())
}

pub(crate) fn command(args: &[String]) -> Result<(), String> {
    let mut smoke = false;
    let mut seconds = 10u64;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--smoke" => smoke = true,
            "--seconds" => {
                seconds = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .ok_or(format!("--seconds needs a number\n{USAGE}"))?
            }
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    if smoke {
        seconds = 2;
    }
    ensure_nats_server()?;
    run(cargo().args(["build", "--release", "-p", "tern-cli", "--bin", "tern"]))?;
    let tern = target_dir().join("release/tern");
    let dir = target_dir().join("cluster");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut nats = NatsServer::cluster(&dir, 3)?;
    println!(
        "nats-server: {}",
        nats.iter()
            .map(|n| format!("{} {}", n.name(), n.url()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let urls: Vec<String> = nats.iter().map(NatsServer::url).collect();
    let mut nodes = Vec::new();
    for i in 0..3 {
        // Each node knows every server, its own first.
        let mut list = urls.clone();
        list.rotate_left(i);
        let node = Broker::tern(&tern)
            .name(&format!("tern{}", i + 1))
            .dir(&dir)
            .args([
                "--cluster".to_string(),
                list.join(","),
                "--node-id".to_string(),
                format!("tern{}", i + 1),
            ])
            // It joins NATS and loads the retained messages first.
            .ready_within(Duration::from_secs(30))
            .start()?;
        println!("tern{}: {}", i + 1, node.url());
        nodes.push(node);
    }
    let plain = Broker::tern(&tern).name("plain").dir(&dir).start()?;
    let ports: Vec<u16> = nodes.iter().map(|n| n.tcp().port()).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let outcome = runtime.block_on(async {
        pubsub(&ports, if smoke { 20 } else { 200 }).await?;
        retained(&ports).await?;
        takeover(&ports, if smoke { 4 } else { 40 }).await?;
        let (p50, p99, got) = latency(ports[0], ports[1], seconds).await?;
        println!(
            "cross-node latency at 1,000 msg/s, QoS 0, tern1 -> tern2, {seconds} s: p50 {p50:?} p99 {p99:?} ({got} messages)"
        );
        let (cp50, cp99, _) = latency(ports[0], ports[0], seconds).await?;
        let (lp50, lp99, _) = latency(plain.tcp().port(), plain.tcp().port(), seconds).await?;
        println!(
            "local-only latency at 1,000 msg/s, QoS 0: clustered node p50 {cp50:?} p99 {cp99:?}; plain node p50 {lp50:?} p99 {lp99:?}; p50 ratio {:.2}",
            cp50.as_secs_f64() / lp50.as_secs_f64().max(1e-9)
        );
        nats_failure(&mut nats, &ports, seconds).await
    });
    for (i, n) in nodes.iter().enumerate() {
        if outcome.is_err() {
            eprintln!("--- tern{} log ---\n{}", i + 1, n.log());
        }
    }
    outcome?;
    println!("cluster: all checks passed");
    Ok(())
}

async fn client(
    port: u16,
    id: &str,
    version: ProtocolVersion,
) -> Result<(Client, Messages), String> {
    Client::connect(
        Options::new(Address::tcp("127.0.0.1", port))
            .client_id(id)
            .map_err(|e| e.to_string())?
            .version(version),
    )
    .await
    .map_err(|e| format!("{id}: {e}"))
}

/// Publishes QoS 0 probes on `topic` until `rx` gets one: the publisher's
/// node then knows the subscriber's interest. Late probes are drained.
async fn await_interest(publisher: &Client, topic: &str, rx: &mut Messages) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        publisher
            .publish(topic, "probe", QoS::AtMostOnce, false)
            .await
            .map_err(|e| e.to_string())?;
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("interest in {topic} never spread"));
        }
    }
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {}
    Ok(())
}

/// QoS 0/1/2 from tern1 to subscribers on tern2 (granted 2) and tern3
/// (granted 1), MQTT 3.1.1 and 5: every message once, at the right QoS.
async fn pubsub(ports: &[u16], n: usize) -> Result<(), String> {
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let v = if version == ProtocolVersion::V5 {
            "5"
        } else {
            "3"
        };
        let base = format!("x/v{v}");
        let (publisher, _) = client(ports[0], &format!("pub{v}"), version).await?;
        let mut subs = Vec::new();
        for (i, granted) in [(1, QoS::ExactlyOnce), (2, QoS::AtLeastOnce)] {
            let (c, mut rx) = client(ports[i], &format!("sub{v}-{i}"), version).await?;
            c.subscribe([(format!("{base}/#"), granted)])
                .await
                .map_err(|e| e.to_string())?;
            await_interest(&publisher, &format!("{base}/probe"), &mut rx).await?;
            subs.push((c, rx, granted, i));
        }
        // The second subscriber's probes reached the first too.
        for (_, rx, _, _) in &mut subs {
            while let Ok(Some(_)) =
                tokio::time::timeout(Duration::from_millis(300), rx.recv()).await
            {}
        }
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let topic = format!("{base}/q{}", qos.as_u8());
            for k in 0..n {
                publisher
                    .publish(topic.as_str(), k.to_string(), qos, false)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            for (_, rx, granted, i) in &mut subs {
                for k in 0..n {
                    let m = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                        .await
                        .map_err(|_| {
                            format!("MQTT {v} QoS {qos:?}: tern{} got {k} of {n}", *i + 1)
                        })?
                        .ok_or("subscriber closed")?;
                    let want = (topic.as_str(), k.to_string(), qos.min(*granted));
                    let got = (
                        m.topic.as_str(),
                        String::from_utf8_lossy(&m.payload).to_string(),
                        m.qos,
                    );
                    if (want.0, want.1.as_str(), want.2) != (got.0, got.1.as_str(), got.2) {
                        return Err(format!(
                            "MQTT {v} tern{}: want {want:?}, got {got:?}",
                            *i + 1
                        ));
                    }
                }
            }
        }
        for (_, rx, _, i) in &mut subs {
            if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
                return Err(format!("tern{} got a copy: {}", *i + 1, m.topic.as_str()));
            }
        }
        println!(
            "pub/sub MQTT {v}: QoS 0/1/2 x {n} tern1 -> tern2 (granted 2), tern3 (granted 1): ok"
        );
    }
    Ok(())
}

/// A retained message published on tern1 is read from every node.
async fn retained(ports: &[u16]) -> Result<(), String> {
    let (publisher, _) = client(ports[0], "retainer", ProtocolVersion::V5).await?;
    publisher
        .publish("r/door", "open", QoS::AtLeastOnce, true)
        .await
        .map_err(|e| e.to_string())?;
    for (i, &port) in ports.iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (c, mut rx) = client(port, &format!("reader{i}"), ProtocolVersion::V3_1_1).await?;
            c.subscribe([("r/+", QoS::AtLeastOnce)])
                .await
                .map_err(|e| e.to_string())?;
            if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
                if &m.payload[..] != b"open" {
                    return Err(format!("tern{}: retained {:?}", i + 1, m.payload));
                }
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("tern{} never had the retained message", i + 1));
            }
        }
    }
    println!("retained: published on tern1, read on tern1, tern2, tern3: ok");
    Ok(())
}

/// `rounds` persistent clients (MQTT 3.1.1 and 5 in turn) subscribe on
/// tern1 and leave; three QoS 1 messages are queued for each there; each
/// connects again to tern2 or tern3, which must resume its session
/// (session present 1) and deliver the three. Prints the take-over time
/// (TCP connect to CONNACK on the new node): median and maximum.
async fn takeover(ports: &[u16], rounds: usize) -> Result<(), String> {
    let (publisher, _) = client(ports[0], "roam-pub", ProtocolVersion::V5).await?;
    let mut times = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let version = if i % 2 == 0 {
            ProtocolVersion::V3_1_1
        } else {
            ProtocolVersion::V5
        };
        let id = format!("roam-{i}");
        let options = |port: u16| -> Result<Options, String> {
            let o = Options::new(Address::tcp("127.0.0.1", port))
                .client_id(&id)
                .map_err(|e| e.to_string())?
                .version(version)
                .clean_start(false);
            Ok(if version == ProtocolVersion::V5 {
                o.session_expiry(3600)
            } else {
                o
            })
        };
        let (c, _rx) = Client::connect(options(ports[0])?)
            .await
            .map_err(|e| format!("{id}: {e}"))?;
        let filter = format!("roam/{i}/#");
        c.subscribe([(filter.as_str(), QoS::AtLeastOnce)])
            .await
            .map_err(|e| e.to_string())?;
        c.disconnect().await.map_err(|e| e.to_string())?;
        for k in 0..3 {
            publisher
                .publish(
                    format!("roam/{i}/m").as_str(),
                    k.to_string(),
                    QoS::AtLeastOnce,
                    false,
                )
                .await
                .map_err(|e| e.to_string())?;
        }
        let to = ports[1 + i % 2];
        let started = Instant::now();
        let (c, mut rx) = Client::connect(options(to)?)
            .await
            .map_err(|e| format!("{id} on port {to}: {e}"))?;
        times.push(started.elapsed());
        match c.state() {
            tern_client::State::Connected {
                session_present: true,
                ..
            } => {}
            other => return Err(format!("{id}: no session on port {to}: {other:?}")),
        }
        for k in 0..3 {
            let m = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .map_err(|_| format!("{id}: queued message {k} of 3 never came"))?
                .ok_or("client closed")?;
            if m.payload[..] != *k.to_string().as_bytes() {
                return Err(format!("{id}: queued message {k}: got {:?}", m.payload));
            }
        }
        c.disconnect().await.map_err(|e| e.to_string())?;
    }
    times.sort();
    println!(
        "take-over: {rounds} persistent sessions (3.1.1 and 5) moved tern1 -> tern2/tern3 with 3 queued messages each: ok; CONNACK median {:?}, max {:?}",
        times[times.len() / 2],
        times[times.len() - 1]
    );
    Ok(())
}

/// 1,000 msg/s at QoS 0 from a publisher on `from` to a subscriber on
/// `to` for `seconds`: p50, p99 and how many arrived.
async fn latency(from: u16, to: u16, seconds: u64) -> Result<(Duration, Duration, usize), String> {
    let topic = format!("lat/{from}/{to}");
    let (publisher, _) = client(from, &format!("lat-pub-{from}-{to}"), ProtocolVersion::V5).await?;
    let (sub, mut rx) = client(to, &format!("lat-sub-{from}-{to}"), ProtocolVersion::V5).await?;
    sub.subscribe([(topic.as_str(), QoS::AtMostOnce)])
        .await
        .map_err(|e| e.to_string())?;
    await_interest(&publisher, &topic, &mut rx).await?;
    let start = Instant::now();
    let total = seconds as usize * 1000;
    let sender = {
        let topic = topic.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            for _ in 0..total {
                tick.tick().await;
                let at = start.elapsed().as_nanos() as u64;
                if publisher
                    .publish(
                        topic.as_str(),
                        at.to_be_bytes().to_vec(),
                        QoS::AtMostOnce,
                        false,
                    )
                    .await
                    .is_err()
                {
                    break;
                }
            }
        })
    };
    let mut samples = Vec::with_capacity(total);
    while samples.len() < total {
        match tokio::time::timeout(Duration::from_secs(2), rx.recv()).await {
            Ok(Some(m)) if m.payload.len() == 8 => {
                let sent = u64::from_be_bytes(m.payload[..8].try_into().unwrap_or_default());
                let now = start.elapsed().as_nanos() as u64;
                samples.push(Duration::from_nanos(now.saturating_sub(sent)));
            }
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    let _ = sender.await;
    if samples.is_empty() {
        return Err(format!("latency {from} -> {to}: nothing arrived"));
    }
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    Ok((at(0.5), at(0.99), samples.len()))
}

/// Messages flow from tern1 to tern2 at 500 msg/s (QoS 1) while the NATS
/// server of the three that tern1 connected to first is killed with
/// SIGKILL; traffic must continue after it (lost ones are counted: NATS
/// core is at most once, see ARCHITECTURE.md).
async fn nats_failure(nats: &mut [NatsServer], ports: &[u16], seconds: u64) -> Result<(), String> {
    let (publisher, _) = client(ports[0], "ha-pub", ProtocolVersion::V5).await?;
    let (sub, mut rx) = client(ports[1], "ha-sub", ProtocolVersion::V5).await?;
    sub.subscribe([("ha/t", QoS::AtLeastOnce)])
        .await
        .map_err(|e| e.to_string())?;
    await_interest(&publisher, "ha/t", &mut rx).await?;
    let total = seconds.max(2) * 2 * 500;
    let sender = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(2));
        for k in 0..total {
            tick.tick().await;
            if publisher
                .publish("ha/t", k.to_string(), QoS::AtLeastOnce, false)
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    let mut killed_at = None;
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
        let k: u64 = String::from_utf8_lossy(&m.payload)
            .parse()
            .unwrap_or(u64::MAX);
        if k == u64::MAX {
            continue;
        }
        *seen.entry(k).or_default() += 1;
        if killed_at.is_none() && k >= total / 3 {
            // The server tern1's NATS connection is on (the client
            // picks one of its list at random).
            let i = nats
                .iter()
                .position(|n| has_client(n, "tern-tern1"))
                .ok_or("no NATS server has tern1's connection")?;
            nats[i].kill9();
            killed_at = Some(k);
            println!(
                "nats failure: {} (tern1's server) killed with SIGKILL after message {k}",
                nats[i].name()
            );
        }
        if k + 1 == total {
            break;
        }
    }
    let _ = sender.await;
    let killed_at = killed_at.ok_or("the stream never reached the kill point")?;
    let after = seen.range(killed_at + 1..).count();
    let lost = total as usize - seen.len();
    let copies: usize = seen.values().filter(|&&n| n > 1).count();
    println!(
        "nats failure: {total} messages at 500 msg/s, {} received, {lost} lost, {copies} duplicated, {after} after the kill",
        seen.len()
    );
    if after == 0 || !seen.contains_key(&(total - 1)) {
        return Err("traffic did not continue after the NATS server was killed".into());
    }
    Ok(())
}

/// Whether `server` has a client connection named `name` (its `/connz`).
fn has_client(server: &NatsServer, name: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(server.monitoring()) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let request = "GET /connz?limit=1024 HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if s.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.contains(&format!("\"name\": \"{name}\""))
        || body.contains(&format!("\"name\":\"{name}\""))
}
