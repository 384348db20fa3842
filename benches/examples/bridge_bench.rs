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
//!
//! With `--instructions`, the bridging broker (Tern, then mosquitto) runs
//! under valgrind's cachegrind without cache simulation, which counts the
//! instructions it executes (all threads) whatever the machine's load. Each
//! runs with N and 2N messages; the difference divided by N is the
//! instructions per bridged message, start-up and connecting taken out.
//! The publisher, the remote and its subscriber run natively.
//!
//! ```sh
//! target/release/examples/bridge_bench --tern target/release/tern --instructions --messages 4000
//! ```

use std::{collections::VecDeque, path::PathBuf, time::Duration};
use tern_client::{Address, Client, Error, Options, QoS};
use tern_testkit::Broker;

struct Args {
    tern: PathBuf,
    messages: u64,
    runs: usize,
    payload: usize,
    instructions: bool,
}

fn args() -> Args {
    let mut a = Args {
        tern: PathBuf::from("target/release/tern"),
        messages: 50_000,
        runs: 3,
        payload: 64,
        instructions: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--instructions" {
            a.instructions = true;
            continue;
        }
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
    let result = stream(a.messages, a.payload, src.tcp(), &mut far_rx, qos).await;
    drop(src);
    result
}

/// Sends `n` messages to the bridging broker at `src` once its bridge is
/// up; messages per second received from `far_rx`, and how many.
async fn stream(
    n: u64,
    payload: usize,
    src: std::net::SocketAddr,
    far_rx: &mut tern_client::Messages,
    qos: QoS,
) -> (f64, u64) {
    let (near, _near_rx) = Client::connect(options(src, "near")).await.unwrap();
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

    let payload = tern_client::Bytes::from(vec![b'x'; payload]);
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
    let near = publisher.await.unwrap();
    let _ = near.disconnect().await;
    (got as f64 / (last - start).as_secs_f64(), got)
}

/// The bridging broker of `kind` under cachegrind, with `n` messages
/// bridged: the instructions it executed (its whole life), and how many
/// messages the remote received.
async fn instructions(a: &Args, kind: &str, qos: QoS, n: u64) -> (u64, u64) {
    let dir = std::env::temp_dir().join(format!("tern-bridge-ir-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let remote = Broker::mosquitto()
        .settings("max_queued_messages 100000\n")
        .start()
        .expect("remote mosquitto starts");
    let (far, mut far_rx) = Client::connect(options(remote.tcp(), "far")).await.unwrap();
    far.subscribe([("b/#", qos)]).await.unwrap();
    let port = tern_testkit::unused_port().expect("a free port");
    let remote_addr = remote.tcp();
    let q = qos as u8;
    let out = dir.join(format!("{kind}.{q}.{n}.cachegrind"));
    let _ = std::fs::remove_file(&out);
    let mut command = std::process::Command::new("valgrind");
    command
        .arg("--tool=cachegrind")
        .arg("--cache-sim=no")
        .arg(format!("--cachegrind-out-file={}", out.display()));
    if kind == "tern" {
        let settings = dir.join("tern.toml");
        std::fs::write(
            &settings,
            format!(
                "[listeners]\ntcp = [\"127.0.0.1:{port}\"]\nws = []\n\
                 [limits]\nmax_queued_messages = 100000\n\
                 [[bridge]]\nname = \"bench\"\naddress = \"{remote_addr}\"\nnotifications = false\n\
                 clean_start = true\nrestart_timeout = [0.2, 1]\n\
                 topic = [{{ pattern = \"b/#\", direction = \"out\", qos = {q} }}]\n"
            ),
        )
        .expect("settings written");
        command
            .arg(&a.tern)
            .arg("broker")
            .arg("--config")
            .arg(&settings);
    } else {
        let settings = dir.join("mosquitto.conf");
        // `user root`: as root, mosquitto would otherwise become the
        // mosquitto user, who cannot write cachegrind's output here.
        std::fs::write(
            &settings,
            format!(
                "user root\nlistener {port} 127.0.0.1\nallow_anonymous true\n\
                 max_queued_messages 100000\nconnection bench\naddress {remote_addr}\n\
                 notifications false\ncleansession true\nrestart_timeout 1\n\
                 bridge_protocol_version mqttv50\ntopic b/# out {q}\n"
            ),
        )
        .expect("settings written");
        command.arg("mosquitto").arg("-c").arg(&settings);
    }
    let mut child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("valgrind runs (apt-get install valgrind)");
    // Listening: under valgrind, start-up takes seconds.
    let src = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !tern_testkit::listens_on(child.id(), port) {
        assert!(
            std::time::Instant::now() < deadline,
            "{kind} never listened"
        );
        assert!(child.try_wait().unwrap().is_none(), "{kind} exited");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, got) = stream(n, a.payload, src, &mut far_rx, qos).await;
    tern_testkit::send_signal(child.id(), "TERM").expect("the broker is signalled");
    child.wait().expect("the broker exits");
    let text = std::fs::read_to_string(&out).expect("cachegrind's output");
    let _ = std::fs::remove_dir_all(&dir);
    let total = text
        .lines()
        .find_map(|l| l.strip_prefix("summary: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("a summary line");
    (total, got)
}

/// `--instructions`: instructions per bridged message, Tern and mosquitto.
async fn instructions_table(a: &Args) {
    let n = a.messages;
    println!(
        "| QoS | Tern bridge (instructions/message) | mosquitto bridge (instructions/message) | Tern / mosquitto |"
    );
    println!("|---|---:|---:|---:|");
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
        let mut per = Vec::new();
        for kind in ["tern", "mosquitto"] {
            let (short, got_short) = instructions(a, kind, qos, n).await;
            let (long, got_long) = instructions(a, kind, qos, 2 * n).await;
            eprintln!(
                "qos {}: {kind}: {short} instructions for {got_short} of {n}, {long} for {got_long} of {}",
                qos as u8,
                2 * n
            );
            assert_eq!((got_short, got_long), (n, 2 * n), "{kind} lost messages");
            per.push((long as f64 - short as f64) / n as f64);
        }
        println!(
            "| {} | {:.0} | {:.0} | {:.2}× |",
            qos as u8,
            per[0],
            per[1],
            per[0] / per[1]
        );
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    if a.instructions {
        instructions_table(&a).await;
        return;
    }
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
