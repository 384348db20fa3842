//! A throwaway end-to-end load driver: `tern broker` and mosquitto side by
//! side in one run, over TCP on 127.0.0.1, MQTT 3.1.1, 64-byte payloads.
//!
//! ```sh
//! cargo build --release -p tern-cli -p tern-benches --example broker_load
//! target/release/examples/broker_load [SECONDS] [ROUNDS] [IDLE_CONNECTIONS]
//! ```
//!
//! Scenarios: fan-in (4 publishers → 1 subscriber) and fan-out (1 → 8), QoS
//! 0 and 1. Publishers write pre-encoded PUBLISH packets in 64-packet writes
//! as fast as the socket takes them (QoS 1: at most 1,024 unacknowledged per
//! publisher); subscribers count PUBLISH frames (and acknowledge QoS 1 ones
//! in one write per read). Each round runs every scenario against both
//! brokers; the table gives medians of delivered messages per second, the
//! broker's peak RSS, and for QoS 1 the messages lost (sent × subscribers −
//! delivered, after a drain). First, IDLE_CONNECTIONS idle clients connect to
//! each fresh broker and the RSS growth per connection is reported.
//!
//! The load driver shares the machine's two cores with the broker, for both
//! brokers alike.

use bytes::{Bytes, BytesMut};
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};
use tern_codec::{
    Connect, MqttString, Packet, PacketId, ProtocolVersion, Publish, QoS, Subscribe,
    SubscribeFilter, SubscriptionOptions,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::Notify,
};

const V: ProtocolVersion = ProtocolVersion::V3_1_1;
const WINDOW: u64 = 1024;
const CHUNK: usize = 64;

/// A broker under load: tern-testkit's launcher starts it (ready within a
/// deadline) and stops it by PID (SIGTERM, then SIGKILL) when dropped.
struct Broker {
    name: &'static str,
    process: tern_testkit::Broker,
    port: u16,
}

impl Broker {
    fn rss_kb(&self) -> u64 {
        let pid = self.process.pid();
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0)
    }

    fn started(name: &'static str, launch: tern_testkit::Launch) -> Broker {
        let process = launch
            .start()
            .unwrap_or_else(|e| panic!("{name} does not start: {e}"));
        Broker {
            name,
            port: process.tcp().port(),
            process,
        }
    }
}

fn start_tern() -> Broker {
    let exe = std::env::current_exe().unwrap();
    let tern = exe.parent().unwrap().parent().unwrap().join("tern");
    assert!(
        tern.is_file(),
        "{} is missing (build tern-cli --release)",
        tern.display()
    );
    Broker::started(
        "tern",
        tern_testkit::Broker::tern(tern).args(["--log", "error"]),
    )
}

fn start_mosquitto() -> Broker {
    Broker::started("mosquitto", tern_testkit::Broker::mosquitto())
}

fn encode(p: Packet) -> Vec<u8> {
    let mut b = BytesMut::new();
    let v = match &p {
        Packet::Connect(c) => c.protocol,
        _ => V,
    };
    p.encode(v, &mut b).unwrap();
    b.to_vec()
}

/// Connects with CONNECT and waits for the CONNACK.
async fn connect(port: u16, id: &str) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(&encode(Packet::Connect(Box::new(Connect {
        protocol: V,
        clean_start: true,
        keep_alive: 0,
        client_id: MqttString::try_from(id.to_string()).unwrap(),
        ..Connect::default()
    }))))
    .await
    .unwrap();
    let mut ack = [0u8; 4];
    s.read_exact(&mut ack).await.unwrap();
    assert_eq!(ack, [0x20, 2, 0, 0], "CONNACK");
    s
}

/// Walks whole frames in `buf`: calls `f(first_byte, body)` for each and
/// leaves a partial frame in place.
fn frames(buf: &mut BytesMut, mut f: impl FnMut(u8, &[u8])) {
    let mut at = 0;
    loop {
        let rest = &buf[at..];
        if rest.len() < 2 {
            break;
        }
        let (mut len, mut mult, mut i) = (0usize, 1usize, 1);
        loop {
            if i >= rest.len() {
                break;
            }
            let b = rest[i];
            len += usize::from(b & 0x7f) * mult;
            mult *= 128;
            i += 1;
            if b & 0x80 == 0 {
                break;
            }
        }
        if rest[i - 1] & 0x80 != 0 || rest.len() < i + len {
            break;
        }
        f(rest[0], &rest[i..i + len]);
        at += i + len;
    }
    let _ = buf.split_to(at);
}

struct Run {
    delivered: Arc<AtomicU64>,
    sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

async fn start_run(port: u16, tag: &str, pubs: usize, subs: usize, qos: QoS) -> Run {
    let delivered = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..subs {
        let mut s = connect(port, &format!("{tag}-sub-{i}")).await;
        s.write_all(&encode(Packet::Subscribe(Subscribe {
            packet_id: PacketId::new(1).unwrap(),
            properties: Default::default(),
            filters: vec![SubscribeFilter {
                filter: MqttString::from_static("bench/+/t"),
                options: SubscriptionOptions {
                    qos,
                    ..SubscriptionOptions::default()
                },
            }],
        })))
        .await
        .unwrap();
        let mut suback = [0u8; 5];
        s.read_exact(&mut suback).await.unwrap();
        assert_eq!(suback[0], 0x90, "SUBACK");
        let delivered = delivered.clone();
        tasks.push(tokio::spawn(async move {
            let mut buf = BytesMut::with_capacity(64 * 1024);
            let mut acks = Vec::new();
            loop {
                if buf.capacity() - buf.len() < 16 * 1024 {
                    buf.reserve(64 * 1024);
                }
                match s.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let mut n = 0;
                frames(&mut buf, |b0, body| {
                    if b0 >> 4 == 3 {
                        n += 1;
                        if (b0 >> 1) & 3 == 1 {
                            let t = usize::from(u16::from_be_bytes([body[0], body[1]]));
                            acks.extend_from_slice(&[0x40, 2, body[2 + t], body[3 + t]]);
                        }
                    }
                });
                delivered.fetch_add(n, Relaxed);
                if !acks.is_empty() {
                    if s.write_all(&acks).await.is_err() {
                        return;
                    }
                    acks.clear();
                }
            }
        }));
    }
    for i in 0..pubs {
        let s = connect(port, &format!("{tag}-pub-{i}")).await;
        // Every packet identifier once, so chunks can be written in a cycle.
        let count = if qos == QoS::AtMostOnce {
            CHUNK
        } else {
            65535 / CHUNK * CHUNK
        };
        let mut packets = BytesMut::new();
        for n in 0..count {
            Packet::Publish(Publish {
                qos,
                topic: MqttString::try_from(format!("bench/{i}/t")).unwrap(),
                packet_id: (qos != QoS::AtMostOnce).then(|| PacketId::new(n as u16 + 1).unwrap()),
                payload: Bytes::from(vec![0x5a; 64]),
                ..Publish::default()
            })
            .encode(V, &mut packets)
            .unwrap();
        }
        let packets = packets.freeze();
        let per = packets.len() / count;
        let (mut rd, mut wr) = s.into_split();
        let acked = Arc::new(AtomicU64::new(0));
        let notify = Arc::new(Notify::new());
        if qos != QoS::AtMostOnce {
            let (acked, notify) = (acked.clone(), notify.clone());
            tasks.push(tokio::spawn(async move {
                let mut buf = BytesMut::with_capacity(16 * 1024);
                loop {
                    match rd.read_buf(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    let mut n = 0;
                    frames(&mut buf, |b0, _| n += u64::from(b0 >> 4 == 4));
                    acked.fetch_add(n, Relaxed);
                    notify.notify_one();
                    buf.reserve(16 * 1024);
                }
            }));
        } else {
            // Keep the read half alive (a QoS 0 publisher gets nothing).
            tasks.push(tokio::spawn(async move {
                let mut buf = [0u8; 64];
                while matches!(rd.read(&mut buf).await, Ok(n) if n > 0) {}
            }));
        }
        let (sent, stop) = (sent.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine = 0u64;
            let mut at = 0;
            while !stop.load(Relaxed) {
                if qos != QoS::AtMostOnce {
                    while mine - acked.load(Relaxed) + CHUNK as u64 > WINDOW {
                        notify.notified().await;
                        if stop.load(Relaxed) {
                            return;
                        }
                    }
                }
                let chunk = packets.slice(at * per..(at + CHUNK) * per);
                if wr.write_all(&chunk).await.is_err() {
                    return;
                }
                at = (at + CHUNK) % count;
                mine += CHUNK as u64;
                sent.fetch_add(CHUNK as u64, Relaxed);
            }
        }));
    }
    Run {
        delivered,
        sent,
        stop,
        tasks,
    }
}

struct Sample {
    rate: f64,
    rss_kb: u64,
    lost: i64,
}

async fn measure(
    broker: &Broker,
    tag: &str,
    pubs: usize,
    subs: usize,
    qos: QoS,
    secs: f64,
) -> Sample {
    let rss0 = broker.rss_kb();
    let run = start_run(broker.port, tag, pubs, subs, qos).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (d0, t0) = (run.delivered.load(Relaxed), Instant::now());
    let mut rss = rss0;
    while t0.elapsed().as_secs_f64() < secs {
        tokio::time::sleep(Duration::from_millis(100)).await;
        rss = rss.max(broker.rss_kb());
    }
    let (d1, t1) = (run.delivered.load(Relaxed), t0.elapsed());
    run.stop.store(true, Relaxed);
    // Drain: wait until deliveries stop moving (for half a second).
    let mut last = run.delivered.load(Relaxed);
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = run.delivered.load(Relaxed);
        if now == last {
            break;
        }
        last = now;
    }
    let lost = (run.sent.load(Relaxed) * subs as u64) as i64 - last as i64;
    for t in run.tasks {
        t.abort();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    Sample {
        rate: (d1 - d0) as f64 / t1.as_secs_f64(),
        rss_kb: rss,
        lost,
    }
}

/// RSS growth per idle connection, in bytes.
async fn idle(broker: &Broker, n: usize) -> f64 {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = broker.rss_kb();
    let mut socks = Vec::with_capacity(n);
    for i in 0..n {
        socks.push(connect(broker.port, &format!("idle-{i}")).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = broker.rss_kb();
    drop(socks);
    tokio::time::sleep(Duration::from_millis(500)).await;
    (after.saturating_sub(before) * 1024) as f64 / n as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let secs: f64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let rounds: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3);
    let idle_n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(0);
    let brokers = [start_tern(), start_mosquitto()];
    // Idle connections first, on fresh brokers whose heaps have not grown.
    if idle_n > 0 {
        for broker in &brokers {
            let per = idle(broker, idle_n).await;
            println!(
                "idle: {} {idle_n} connections: {per:.0} bytes RSS each",
                broker.name
            );
        }
    }
    let scenarios: [Scenario; 4] = [
        ("fan-in 4→1 QoS 0", 4, 1, QoS::AtMostOnce),
        ("fan-out 1→8 QoS 0", 1, 8, QoS::AtMostOnce),
        ("fan-in 4→1 QoS 1", 4, 1, QoS::AtLeastOnce),
        ("fan-out 1→8 QoS 1", 1, 8, QoS::AtLeastOnce),
    ];
    let mut results: Vec<Vec<Vec<Sample>>> = (0..scenarios.len())
        .map(|_| (0..brokers.len()).map(|_| Vec::new()).collect())
        .collect();
    for round in 0..rounds {
        for (si, &(name, pubs, subs, qos)) in scenarios.iter().enumerate() {
            for (bi, broker) in brokers.iter().enumerate() {
                let s = measure(broker, &format!("r{round}s{si}"), pubs, subs, qos, secs).await;
                eprintln!(
                    "round {round} {name} {}: {:.0} msg/s, peak RSS {} KB, lost {}",
                    broker.name, s.rate, s.rss_kb, s.lost
                );
                results[si][bi].push(s);
            }
        }
    }
    if rounds > 0 {
        print_table(&scenarios, &results);
    }
}

type Scenario = (&'static str, usize, usize, QoS);

fn print_table(scenarios: &[Scenario], results: &[Vec<Vec<Sample>>]) {
    println!(
        "| scenario | tern msg/s | mosquitto msg/s | tern / mosquitto | tern peak RSS | mosquitto peak RSS | tern lost | mosquitto lost |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (si, &(name, ..)) in scenarios.iter().enumerate() {
        let rate = |bi: usize| median(results[si][bi].iter().map(|s| s.rate).collect());
        let rss = |bi: usize| results[si][bi].iter().map(|s| s.rss_kb).max().unwrap_or(0);
        let lost = |bi: usize| median(results[si][bi].iter().map(|s| s.lost as f64).collect());
        println!(
            "| {name} | {:.0} | {:.0} | {:.2}× | {:.1} MB | {:.1} MB | {:.0} | {:.0} |",
            rate(0),
            rate(1),
            rate(0) / rate(1),
            rss(0) as f64 / 1024.0,
            rss(1) as f64 / 1024.0,
            lost(0),
            lost(1),
        );
    }
}
