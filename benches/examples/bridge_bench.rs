//! Bridged throughput: Tern's bridge (`tern broker` with a `[[bridge]]`
//! table) against mosquitto's own bridge (`connection`), in the same run,
//! both into the same kind of remote (Debian's mosquitto), QoS 0 and 1.
//!
//! One publisher on the bridging broker sends N messages as fast as the
//! broker takes them (QoS 1 pipelined); one subscriber on the remote counts
//! them. The figure is messages received per second, from the first publish
//! to the last message received (or to 30 s of silence). Medians of R runs.
//!
//! ```sh
//! cargo build --release -p tern-cli -p tern-benches --example bridge_bench
//! target/release/examples/bridge_bench --tern target/release/tern --messages 50000 --runs 3
//! ```

use std::{collections::VecDeque, path::PathBuf, time::Duration};
use tern_client::{Address, Client, Error, Options, QoS};
use tern_testkit::Broker;

struct Args {
    tern: PathBuf,
    messages: u64,
    runs: usize,
    payload: usize,
}

fn args() -> Args {
    let mut a = Args {
        tern: PathBuf::from("target/release/tern"),
        messages: 50_000,
        runs: 3,
        payload: 64,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--tern" => a.tern = value.into(),
            "--messages" => a.messages = value.parse().expect("--messages N"),
            "--runs" => a.runs = value.parse().expect("--runs N"),
            "--payload" => a.payload = value.parse().expect("--payload BYTES"),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

fn options(addr: std::net::SocketAddr, id: &str) -> Options {
    Options::new(Address::tcp("127.0.0.1", addr.port()))
        .client_id(id)
        .unwrap()
        .message_capacity(4096)
        .command_capacity(1024)
}

/// The bridging broker, bridging `b/#` out to `remote` at `qos`.
fn source(kind: &str, tern: &PathBuf, remote: std::net::SocketAddr, qos: u8) -> Broker {
    match kind {
        "tern" => Broker::tern(tern)
            .settings(&format!(
                "[listeners]\ntcp = [\"127.0.0.1:0\"]\nws = []\n\
                 [limits]\nmax_queued_messages = 100000\n\
                 [[bridge]]\nname = \"bench\"\naddress = \"{remote}\"\nnotifications = false\n\
                 clean_start = true\nrestart_timeout = [0.2, 1]\n\
                 topic = [{{ pattern = \"b/#\", direction = \"out\", qos = {qos} }}]\n"
            ))
            .start()
            .expect("tern starts"),
        _ => Broker::mosquitto()
            .settings(&format!(
                "max_queued_messages 100000\nconnection bench\naddress {remote}\n\
                 notifications false\ncleansession true\nrestart_timeout 1\n\
                 bridge_protocol_version mqttv50\ntopic b/# out {qos}\n"
            ))
            .start()
            .expect("mosquitto starts"),
    }
}

/// One run: messages per second received on the remote.
async fn run(a: &Args, kind: &str, qos: QoS) -> (f64, u64) {
    let remote = Broker::mosquitto()
        .settings("max_queued_messages 100000\n")
        .start()
        .expect("remote mosquitto starts");
    let (far, mut far_rx) = Client::connect(options(remote.tcp(), "far")).await.unwrap();
    far.subscribe([("b/#", qos)]).await.unwrap();
    let src = source(kind, &a.tern, remote.tcp(), qos as u8);
    let (near, _near_rx) = Client::connect(options(src.tcp(), "near")).await.unwrap();
    // The bridge is up once a probe gets through.
    loop {
        near.publish("b/probe", "p", QoS::AtMostOnce, false)
            .await
            .unwrap();
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(100), far_rx.recv()).await {
            break;
        }
    }
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(300), far_rx.recv()).await {}

    let payload = tern_client::Bytes::from(vec![b'x'; a.payload]);
    let n = a.messages;
    let start = std::time::Instant::now();
    let publisher = tokio::spawn(async move {
        let mut pending = VecDeque::new();
        for _ in 0..n {
            loop {
                match near.try_publish("b/x", payload.clone(), qos, false) {
                    Ok(p) => {
                        pending.push_back(p);
                        break;
                    }
                    Err(Error::Backpressure) => match pending.pop_front() {
                        Some(p) => {
                            p.await.unwrap();
                        }
                        None => tokio::time::sleep(Duration::from_micros(200)).await,
                    },
                    Err(e) => panic!("{e}"),
                }
            }
        }
        for p in pending {
            p.await.unwrap();
        }
        near
    });
    let mut got = 0;
    let mut last = start;
    while got < n {
        match tokio::time::timeout(Duration::from_secs(30), far_rx.recv()).await {
            Ok(Some(m)) if m.topic.as_str() == "b/x" => {
                got += 1;
                last = std::time::Instant::now();
            }
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    let _near = publisher.await.unwrap();
    drop(src);
    (got as f64 / (last - start).as_secs_f64(), got)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    println!(
        "| QoS | Tern bridge (msg/s) | mosquitto bridge (msg/s) | Tern / mosquitto | delivered (Tern, mosquitto) |"
    );
    println!("|---|---:|---:|---:|---|");
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
        let (mut tern, mut mosq, mut counts) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..a.runs {
            // Alternate, so drift on a shared machine hits both.
            let (t, tn) = run(&a, "tern", qos).await;
            let (m, mn) = run(&a, "mosquitto", qos).await;
            eprintln!(
                "qos {}: tern {t:.0} msg/s ({tn}), mosquitto {m:.0} msg/s ({mn})",
                qos as u8
            );
            tern.push(t);
            mosq.push(m);
            counts.push(format!("{tn}/{mn}"));
        }
        let (t, m) = (median(tern), median(mosq));
        println!(
            "| {} | {t:.0} | {m:.0} | {:.2}× | {} of {} each |",
            qos as u8,
            t / m,
            counts.join(", "),
            a.messages
        );
    }
}
