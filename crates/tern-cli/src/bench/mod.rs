//! `tern bench`: an MQTT load generator in the manner of emqtt-bench.
//!
//! This module reads the flags, connects the clients, runs them for the
//! duration, and reports; [`wire`] holds the connections themselves, which
//! go straight through tern-codec so the bench costs little next to the
//! broker it measures.

mod tls;
mod wire;

use crate::{
    codec::Failure,
    mqtt::{parse_qos, parse_version},
};
use clap::{ArgAction, Args, ValueEnum};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};
use std::{
    future::Future,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};
use tern_codec::{ProtocolVersion, QoS};
use tokio::{sync::watch, task::JoinSet};
use wire::{Counters, Dial, Link, Outcome, PubPlan, now_ns};

pub(crate) const ABOUT: &str = "\
Load-test an MQTT broker, in the manner of emqtt-bench.

  pub     -c publishers send to -t (with %i the client's index) at -I/--rate
          (per client; absent: as fast as the broker takes them)
  sub     -c subscribers subscribe to -t and count what arrives, until -n
          messages each or -d seconds
  conn    opens -c connections (at --conn-rate per second), holds them for
          -d seconds, and reports the connect rate
  churn   -c clients each connect, wait for CONNACK, disconnect and close,
          over and over for -d seconds; reports the rounds per second (with
          --tls, each round is a full TLS handshake)
  pubsub  -S subscribers on --sub-topic (default: -t with %i as +) and -c
          publishers on -t, in one process: every subscriber gets every
          message, and the end-to-end latency is measured from a timestamp
          in the payload (so -s is at least 8; the clock is this process's,
          so `sub` alone reports no latency)

Publishing runs for -d seconds (default 10) or -n messages per publisher,
then waits (at most --drain seconds) for acknowledgements and deliveries.
With --tls every connection is TLS (1.2 or 1.3, rustls): --cafile FILE
verifies the broker's certificate against FILE and -h; --insecure skips
verification, so the bench spends nothing on it. QoS 1 and 2 publishers keep at most --inflight messages unacknowledged (less
if the broker's Receive Maximum is smaller). The clients share one thread.

A progress line shows the current rates on a terminal (not with --quiet).
The summary (sent, delivered, throughput, latency percentiles, errors) goes
to standard output, and as JSON to --json FILE. When the clients are
connected (and subscribed), `tern bench: ready` is printed on standard
error. Exit status: 0, or 1 when a connection failed or the broker refused
or dropped something a client needed; 2 for bad arguments.";

pub(crate) const EXAMPLE: &str = "\
Examples:
  $ tern bench pubsub -h 127.0.0.1 -c 4 -S 1 -q 1 --rate 5000 -d 10
  $ tern bench pub -c 10 -t 'bench/%i' -s 256 -q 0
  $ tern bench sub -c 2 -t 'bench/#' -n 1000
  $ tern bench conn -c 10000 --conn-rate 2000 -d 30 --json conn.json
  $ tern bench churn -c 64 -d 10 --tls --cafile ca.pem -p 8883";

/// What `tern bench` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Mode {
    /// Publishers only.
    Pub,
    /// Subscribers only.
    Sub,
    /// Idle connections.
    Conn,
    /// Connect, CONNACK, disconnect, over and over.
    Churn,
    /// Publishers and subscribers together, with end-to-end latency.
    Pubsub,
}

/// Arguments of `tern bench`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// pub, sub, conn or pubsub.
    #[arg(value_enum)]
    mode: Mode,
    /// Broker host name or address.
    #[arg(short = 'h', long, default_value = "localhost")]
    host: String,
    /// Broker port.
    #[arg(short = 'p', long, default_value_t = 1883)]
    port: u16,
    /// Clients: publishers (pub, pubsub), subscribers (sub) or connections (conn).
    #[arg(short = 'c', long = "clients", default_value_t = 1)]
    clients: u32,
    /// Subscribers (pubsub).
    #[arg(short = 'S', long = "subscribers", default_value_t = 1)]
    subscribers: u32,
    /// Milliseconds between one client's messages (0: unthrottled).
    #[arg(
        short = 'I',
        long = "interval",
        value_name = "MS",
        conflicts_with = "rate"
    )]
    interval: Option<f64>,
    /// Messages per second per publisher (0: unthrottled).
    #[arg(short = 'R', long = "rate", value_name = "MSG/S")]
    rate: Option<f64>,
    /// QoS of messages and subscriptions: 0, 1 or 2.
    #[arg(short = 'q', long, default_value = "0", value_parser = parse_qos)]
    qos: QoS,
    /// Payload size in bytes (at least 8: the timestamp).
    #[arg(short = 's', long = "size", default_value_t = 64)]
    size: usize,
    /// Topic to publish to (pub, pubsub) or subscribe to (sub); %i is the
    /// client's index.
    #[arg(short = 't', long = "topic", default_value = "bench/%i")]
    topic: String,
    /// The subscribers' filter in pubsub [default: -t with %i replaced by +].
    #[arg(short = 'T', long = "sub-topic", value_name = "FILTER")]
    sub_topic: Option<String>,
    /// MQTT version: 311 or 5.
    #[arg(short = 'V', long = "protocol-version", value_name = "VERSION",
          default_value = "5", value_parser = parse_version)]
    version: ProtocolVersion,
    /// Seconds to publish (pub, pubsub), receive (sub) or hold (conn)
    /// [default: 10, or no limit with -n].
    #[arg(short = 'd', long = "duration", value_name = "SECONDS")]
    duration: Option<f64>,
    /// Messages per publisher (pub, pubsub) or per subscriber (sub).
    #[arg(short = 'n', long = "count", value_name = "N")]
    count: Option<u64>,
    /// Unacknowledged QoS 1/2 messages per publisher.
    #[arg(long, value_name = "N", default_value_t = 64)]
    inflight: u16,
    /// New connections per second (0: as fast as they complete, 256 at a time).
    #[arg(long = "conn-rate", value_name = "CONN/S", default_value_t = 0.0)]
    conn_rate: f64,
    /// Keep alive in seconds (idle connections ping at half of it; 0: off).
    #[arg(
        short = 'k',
        long = "keepalive",
        value_name = "SECONDS",
        default_value_t = 300
    )]
    keep_alive: u16,
    /// Subscribers keep their session this many seconds after they leave
    /// (MQTT 5 Session Expiry Interval; 3.1.1: Clean Session 0), so a
    /// broker with persistence stores what is queued for them. Absent: a
    /// session that ends with its connection.
    #[arg(long = "session-expiry", value_name = "SECONDS")]
    session_expiry: Option<u32>,
    /// Seconds to wait, after publishing stops, for acknowledgements and deliveries.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    drain: f64,
    /// Local source address(es) to connect from, as IP or an IPv4 range
    /// FIRST-LAST (e.g. 127.0.0.1-127.0.0.8); repeatable. Client i uses the
    /// i-th address, round robin, so more connections fit than one address's
    /// ephemeral ports allow [default: chosen by the system].
    #[arg(long = "bind", value_name = "ADDRS", value_parser = parse_bind, action = ArgAction::Append)]
    bind: Vec<Vec<IpAddr>>,
    /// Connect with TLS (needs --cafile or --insecure).
    #[arg(long)]
    tls: bool,
    /// Verify the broker's TLS certificate against the CA certificates in
    /// this PEM file (and the host name given with -h).
    #[arg(long, value_name = "FILE", requires = "tls")]
    cafile: Option<PathBuf>,
    /// Accept any TLS certificate the broker presents (load tests only).
    #[arg(long, requires = "tls", conflicts_with = "cafile")]
    insecure: bool,
    /// Write the summary as JSON to FILE (- for standard output).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// No progress line and no `ready` line.
    #[arg(long)]
    quiet: bool,
    /// Print help (-h is the host).
    #[arg(long, action = ArgAction::Help)]
    help: Option<bool>,
}

/// Connections being opened at once.
const CONNECT_CONCURRENCY: usize = 256;

fn usage(message: String) -> Failure {
    Failure { message, status: 2 }
}

fn failure(message: String) -> Failure {
    Failure { message, status: 1 }
}

/// Runs `tern bench`.
pub(crate) fn run(args: &BenchArgs) -> Result<(), Failure> {
    if args.size < 8 {
        return Err(usage(
            "-s must be at least 8: the payload carries a timestamp".into(),
        ));
    }
    if args.clients == 0 || (args.mode == Mode::Pubsub && args.subscribers == 0) {
        return Err(usage("-c and -S must be at least 1".into()));
    }
    let interval_ns = match (args.interval, args.rate) {
        (Some(ms), _) if ms > 0.0 => Some((ms * 1e6) as u64),
        (_, Some(rate)) if rate > 0.0 => Some((1e9 / rate) as u64),
        _ => None,
    }
    .map(|ns| ns.max(1));
    raise_fd_limit(u64::from(args.clients) + u64::from(args.subscribers) + 64)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| failure(format!("cannot start the runtime: {e}")))?;
    let summary = runtime.block_on(bench(args, interval_ns))?;
    let text = render(&summary);
    print!("{text}");
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&summary).expect("JSON values serialise") + "\n";
        if path.as_os_str() == "-" {
            print!("{json}");
        } else {
            std::fs::write(path, json)
                .map_err(|e| failure(format!("cannot write {}: {e}", path.display())))?;
        }
    }
    let failed =
        summary["connect_failed"].as_u64().unwrap_or(0) + summary["errors"].as_u64().unwrap_or(0);
    if failed > 0 {
        Err(failure(String::new()))
    } else {
        Ok(())
    }
}

/// Raises the soft open-file limit to `wanted` (10k connections need more
/// than the usual 1,024); an error naming the limit when the hard limit is
/// lower.
fn raise_fd_limit(wanted: u64) -> Result<(), Failure> {
    let Ok((soft, hard)) = rlimit::Resource::NOFILE.get() else {
        return Ok(());
    };
    if soft >= wanted {
        return Ok(());
    }
    if hard < wanted {
        return Err(failure(format!(
            "the open-file limit (RLIMIT_NOFILE) is {hard} (hard), and these clients need \
             about {wanted}: raise it (ulimit -Hn, or LimitNOFILE= for a service) or use fewer"
        )));
    }
    rlimit::Resource::NOFILE
        .set(wanted, hard)
        .map_err(|e| failure(format!("cannot raise RLIMIT_NOFILE to {wanted}: {e}")))
}

/// Addresses spread over at most this many in one range.
const MAX_BIND_RANGE: u32 = 4096;

/// Parses a `--bind` value: an IP address, or an inclusive IPv4 range
/// `FIRST-LAST`.
fn parse_bind(text: &str) -> Result<Vec<IpAddr>, String> {
    let Some((first, last)) = text.split_once('-') else {
        return text
            .trim()
            .parse::<IpAddr>()
            .map(|ip| vec![ip])
            .map_err(|_| format!("`{text}` is not an IP address or FIRST-LAST range"));
    };
    let parse = |s: &str| {
        s.trim()
            .parse::<Ipv4Addr>()
            .map_err(|_| format!("`{s}` in `{text}` is not an IPv4 address"))
    };
    let (first, last) = (u32::from(parse(first)?), u32::from(parse(last)?));
    if last < first {
        return Err(format!("`{text}`: the last address is before the first"));
    }
    if last - first >= MAX_BIND_RANGE {
        return Err(format!(
            "`{text}`: more than {MAX_BIND_RANGE} addresses in one range"
        ));
    }
    Ok((first..=last)
        .map(|n| IpAddr::V4(Ipv4Addr::from(n)))
        .collect())
}

/// Resolves the broker's address, preferring IPv4 (brokers often listen on
/// 127.0.0.1 only while `localhost` may resolve to ::1 first).
async fn resolve(host: &str, port: u16) -> Result<SocketAddr, Failure> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| failure(format!("cannot resolve {host}: {e}")))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| failure(format!("{host} has no address")))
}

/// Opens `n` connections, `make(i)` each, at most [`CONNECT_CONCURRENCY`]
/// at once and at most `rate` per second; returns them in index order.
async fn connect_all<F, Fut>(n: u32, rate: f64, make: F) -> Vec<Result<Link, String>>
where
    F: Fn(u32) -> Fut,
    Fut: Future<Output = Result<Link, String>> + 'static,
{
    let mut set = JoinSet::new();
    let mut links: Vec<Option<Result<Link, String>>> = (0..n).map(|_| None).collect();
    let start = Instant::now();
    let mut store = |joined: Result<(u32, Result<Link, String>), tokio::task::JoinError>| {
        if let Ok((i, link)) = joined {
            links[i as usize] = Some(link);
        }
    };
    for i in 0..n {
        if rate > 0.0 {
            tokio::time::sleep_until((start + Duration::from_secs_f64(f64::from(i) / rate)).into())
                .await;
        }
        while set.len() >= CONNECT_CONCURRENCY {
            if let Some(joined) = set.join_next().await {
                store(joined);
            }
        }
        let fut = make(i);
        set.spawn_local(async move { (i, fut.await) });
    }
    while let Some(joined) = set.join_next().await {
        store(joined);
    }
    links
        .into_iter()
        .map(|l| l.unwrap_or_else(|| Err("the connecting task failed".into())))
        .collect()
}

/// Everything the summary needs from the run.
struct Run {
    connected: u64,
    connect_errors: Vec<String>,
    connect_seconds: f64,
    publish_start_ns: u64,
    outcomes: Vec<Outcome>,
}

async fn bench(args: &BenchArgs, interval_ns: Option<u64>) -> Result<Value, Failure> {
    let addr = resolve(&args.host, args.port).await?;
    let tls = match (args.tls, &args.cafile, args.insecure) {
        (false, _, _) => None,
        (true, None, false) => {
            return Err(usage(
                "--tls needs --cafile FILE (to verify the broker) or --insecure".into(),
            ));
        }
        (true, cafile, _) => Some((
            tls::connector(cafile.as_deref()).map_err(usage)?,
            tls::server_name(&args.host).map_err(usage)?,
        )),
    };
    let dial = Arc::new(Dial { addr, tls });
    let local = tokio::task::LocalSet::new();
    let counters = Arc::new(Counters::default());
    let progress = progress_bar(args.quiet);
    let run = local
        .run_until(drive(
            args,
            dial,
            interval_ns,
            counters.clone(),
            progress.clone(),
        ))
        .await?;
    progress.finish_and_clear();
    Ok(summarise(args, interval_ns, &counters, run))
}

fn progress_bar(quiet: bool) -> ProgressBar {
    let target = if quiet {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    };
    let bar = ProgressBar::with_draw_target(None, target);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed} {msg}").expect("valid template"),
    );
    bar
}

/// Updates the progress line every half second until dropped.
fn spawn_progress(
    bar: ProgressBar,
    counters: Arc<Counters>,
    connections: Option<Arc<std::sync::atomic::AtomicU64>>,
) -> tokio::task::JoinHandle<()> {
    tokio::task::spawn_local(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let mut last = (Instant::now(), 0u64, 0u64);
        loop {
            tick.tick().await;
            let now = Instant::now();
            let sent = counters.sent.load(Ordering::Relaxed);
            let delivered = counters.delivered.load(Ordering::Relaxed);
            let dt = now.duration_since(last.0).as_secs_f64().max(1e-3);
            let mut msg = format!(
                "sent {sent} ({:.0}/s)  delivered {delivered} ({:.0}/s)",
                (sent - last.1) as f64 / dt,
                (delivered - last.2) as f64 / dt
            );
            if let Some(c) = &connections {
                msg = format!("connected {}", c.load(Ordering::Relaxed));
            }
            bar.set_message(msg);
            bar.tick();
            last = (now, sent, delivered);
        }
    })
}

async fn drive(
    args: &BenchArgs,
    dial: Arc<Dial>,
    interval_ns: Option<u64>,
    counters: Arc<Counters>,
    bar: ProgressBar,
) -> Result<Run, Failure> {
    let version = args.version;
    let keep_alive = args.keep_alive;
    let pid = std::process::id();
    let sources: Arc<Vec<IpAddr>> = Arc::new(args.bind.iter().flatten().copied().collect());
    let source = move |i: u32| -> Option<IpAddr> {
        (!sources.is_empty()).then(|| sources[i as usize % sources.len()])
    };
    let (stop_pub, stop_pub_rx) = watch::channel(false);
    let (stop_sub, stop_sub_rx) = watch::channel(false);
    let connected_count = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let progress = spawn_progress(
        bar.clone(),
        counters.clone(),
        (args.mode == Mode::Conn).then(|| connected_count.clone()),
    );
    let mut connect_errors = Vec::new();
    let mut connected = 0u64;
    let connect_start = Instant::now();

    // Subscribers first, so that no message is published before they listen.
    let (n_subs, sub_filter) = match args.mode {
        Mode::Sub => (args.clients, args.topic.clone()),
        Mode::Pubsub => (
            args.subscribers,
            args.sub_topic
                .clone()
                .unwrap_or_else(|| args.topic.replace("%i", "+")),
        ),
        _ => (0, String::new()),
    };
    let qos = args.qos;
    let session_expiry = args.session_expiry;
    let subs = connect_all(n_subs, args.conn_rate, |i| {
        let filter = sub_filter.replace("%i", &i.to_string());
        let count = connected_count.clone();
        let from = source(i);
        let dial = dial.clone();
        async move {
            let mut link = Link::connect(
                &dial,
                from,
                version,
                format!("tern-bench-{pid}-s{i}"),
                keep_alive,
                session_expiry,
            )
            .await?;
            link.subscribe(&filter, qos).await?;
            count.fetch_add(1, Ordering::Relaxed);
            Ok(link)
        }
    })
    .await;
    let n_pubs = match args.mode {
        Mode::Pub | Mode::Pubsub | Mode::Conn => args.clients,
        Mode::Sub | Mode::Churn => 0,
    };
    let prefix = if args.mode == Mode::Conn { "c" } else { "p" };
    let pubs = connect_all(n_pubs, args.conn_rate, |i| {
        let count = connected_count.clone();
        let from = source(n_subs + i);
        let dial = dial.clone();
        async move {
            let link = Link::connect(
                &dial,
                from,
                version,
                format!("tern-bench-{pid}-{prefix}{i}"),
                keep_alive,
                None,
            )
            .await?;
            count.fetch_add(1, Ordering::Relaxed);
            Ok(link)
        }
    })
    .await;
    let connect_seconds = connect_start.elapsed().as_secs_f64();

    let mut tasks = JoinSet::new();
    let mut sub_tasks = JoinSet::new();
    let latency = args.mode == Mode::Pubsub;
    for link in subs {
        match link {
            Ok(link) => {
                connected += 1;
                let limit = if args.mode == Mode::Sub {
                    args.count
                } else {
                    None
                };
                sub_tasks.spawn_local(wire::subscriber(
                    link,
                    counters.clone(),
                    stop_sub_rx.clone(),
                    limit,
                    latency,
                ));
            }
            Err(e) => connect_errors.push(e),
        }
    }
    let drain = Duration::from_secs_f64(args.drain.max(0.0));
    let mut pub_links = Vec::new();
    for link in pubs {
        match link {
            Ok(link) => {
                connected += 1;
                pub_links.push(link);
            }
            Err(e) => connect_errors.push(e),
        }
    }
    if !args.quiet {
        bar.suspend(|| {
            eprintln!("tern bench: ready ({connected} connected in {connect_seconds:.2} s)")
        });
    }
    let duration = match (args.duration, args.count) {
        (Some(d), _) => Some(Duration::from_secs_f64(d.max(0.0))),
        (None, Some(_)) => None,
        (None, None) => Some(Duration::from_secs(10)),
    };
    let publish_start_ns = now_ns();
    if args.mode == Mode::Churn {
        for i in 0..args.clients {
            tasks.spawn_local(wire::churner(
                dial.clone(),
                source(i),
                version,
                format!("tern-bench-{pid}-r{i}"),
                keep_alive,
                counters.clone(),
                stop_pub_rx.clone(),
            ));
        }
    }
    for (i, link) in pub_links.into_iter().enumerate() {
        if args.mode == Mode::Conn {
            tasks.spawn_local(wire::holder(link, stop_pub_rx.clone(), keep_alive));
            continue;
        }
        let topic = args.topic.replace("%i", &i.to_string());
        let mut plan = PubPlan::new(version, &topic, qos, args.size).map_err(usage)?;
        plan.window = args.inflight.max(1);
        plan.interval_ns = interval_ns;
        plan.count = args.count;
        tasks.spawn_local(wire::publisher(
            link,
            plan,
            counters.clone(),
            stop_pub_rx.clone(),
            drain,
        ));
    }

    let mut outcomes = Vec::new();
    // Publishers (or idle connections) run for the duration or their count.
    if !tasks.is_empty() {
        let all_done = async {
            while let Some(joined) = tasks.join_next().await {
                outcomes.push(joined.unwrap_or_else(|e| panicked(&e)));
            }
        };
        tokio::pin!(all_done);
        let timed_out = match duration {
            Some(d) => tokio::time::timeout(d, &mut all_done).await.is_err(),
            None => {
                all_done.as_mut().await;
                false
            }
        };
        if timed_out {
            let _ = stop_pub.send(true);
            all_done.await;
        }
    }
    // Subscribers: in pubsub, until everything sent has arrived (or, at QoS
    // 0, nothing more arrives for a second; or --drain runs out); in sub,
    // for the duration or until each has its count.
    if !sub_tasks.is_empty() {
        if args.mode == Mode::Pubsub {
            let expected = counters.sent.load(Ordering::Relaxed) * u64::from(n_subs);
            let deadline = Instant::now() + drain;
            let mut last = (Instant::now(), counters.delivered.load(Ordering::Relaxed));
            loop {
                let delivered = counters.delivered.load(Ordering::Relaxed);
                let now = Instant::now();
                if delivered != last.1 {
                    last = (now, delivered);
                }
                // QoS 0 may be dropped: a second without news ends the wait.
                // QoS 1 and 2 must all arrive: only --drain ends it.
                let idle = qos == QoS::AtMostOnce && now - last.0 > Duration::from_secs(1);
                if delivered >= expected || now >= deadline || idle || sub_tasks.is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let _ = stop_sub.send(true);
        } else if let Some(d) = duration {
            let stopper = async {
                tokio::time::sleep(d).await;
                let _ = stop_sub.send(true);
            };
            tokio::pin!(stopper);
            let mut stopper_done = false;
            loop {
                tokio::select! {
                    () = &mut stopper, if !stopper_done => stopper_done = true,
                    joined = sub_tasks.join_next() => match joined {
                        Some(joined) => outcomes.push(joined.unwrap_or_else(|e| panicked(&e))),
                        None => break,
                    },
                }
            }
        }
        while let Some(joined) = sub_tasks.join_next().await {
            outcomes.push(joined.unwrap_or_else(|e| panicked(&e)));
        }
    }
    progress.abort();
    drop((stop_pub, stop_sub));
    if args.mode == Mode::Churn {
        // The figure is the rounds completed while churning.
        connected = counters.connects.load(Ordering::Relaxed);
        return Ok(Run {
            connected,
            connect_seconds: (now_ns() - publish_start_ns) as f64 / 1e9,
            connect_errors,
            publish_start_ns,
            outcomes,
        });
    }
    Ok(Run {
        connected,
        connect_errors,
        connect_seconds,
        publish_start_ns,
        outcomes,
    })
}

fn panicked(e: &tokio::task::JoinError) -> Outcome {
    Outcome {
        error: Some(format!("a client task failed: {e}")),
        ..Outcome::default()
    }
}

fn summarise(args: &BenchArgs, interval_ns: Option<u64>, counters: &Counters, run: Run) -> Value {
    let sent = counters.sent.load(Ordering::Relaxed);
    let acked = counters.acked.load(Ordering::Relaxed);
    let delivered = counters.delivered.load(Ordering::Relaxed);
    let secs = |from: u64, to: u64| (to.saturating_sub(from)) as f64 / 1e9;
    let publish_seconds = secs(
        run.publish_start_ns,
        counters.last_sent_ns.load(Ordering::Relaxed),
    );
    let first = counters.first_delivery_ns.load(Ordering::Relaxed);
    let last = counters.last_delivery_ns.load(Ordering::Relaxed);
    // Deliveries are timed from when publishing started (pubsub) or from
    // the first delivery (sub, where the publisher is elsewhere).
    let delivery_seconds = match args.mode {
        Mode::Pubsub => secs(run.publish_start_ns, last),
        _ => secs(first, last),
    };
    let rate = |n: u64, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
    let mut latency: Option<Histogram<u64>> = None;
    let mut errors: Vec<String> = run.connect_errors.clone();
    let mut unacked = 0;
    for outcome in run.outcomes {
        if let Some(h) = outcome.latency {
            match &mut latency {
                Some(all) => all.add(&h).expect("histograms with the same bounds add"),
                None => latency = Some(h),
            }
        }
        unacked += outcome.unacked;
        errors.extend(outcome.error);
    }
    let us = |ns: u64| (ns as f64 / 1e3 * 10.0).round() / 10.0;
    let latency = latency.filter(|h| !h.is_empty()).map(|h| {
        json!({
            "count": h.len(),
            "min": us(h.min()),
            "mean": us(h.mean() as u64),
            "p50": us(h.value_at_quantile(0.50)),
            "p90": us(h.value_at_quantile(0.90)),
            "p99": us(h.value_at_quantile(0.99)),
            "p99_9": us(h.value_at_quantile(0.999)),
            "max": us(h.max()),
        })
    });
    let subscribers = match args.mode {
        Mode::Pubsub => args.subscribers,
        Mode::Sub => args.clients,
        _ => 0,
    };
    let publishers = match args.mode {
        Mode::Pub | Mode::Pubsub => args.clients,
        _ => 0,
    };
    let expected = (args.mode == Mode::Pubsub).then(|| sent * u64::from(subscribers));
    let connect_failed = run.connect_errors.len() as u64;
    let mut summary = json!({
        "mode": format!("{:?}", args.mode).to_lowercase(),
        "mqtt_version": if args.version.is_v5() { "5" } else { "3.1.1" },
        "qos": args.qos.as_u8(),
        "publishers": publishers,
        "subscribers": subscribers,
        "connections": args.clients,
        "payload_size": args.size,
        "rate_per_publisher": interval_ns.map(|ns| 1e9 / ns as f64),
        "inflight": args.inflight,
        "connected": run.connected,
        "connect_failed": connect_failed,
        "connect_seconds": run.connect_seconds,
        "connect_rate": rate(run.connected, run.connect_seconds),
        "sent": sent,
        "acked": acked,
        "unacked": unacked,
        "delivered": delivered,
        "expected": expected,
        "delivered_percent": expected.map(|e| if e == 0 { 100.0 } else { delivered as f64 * 100.0 / e as f64 }),
        "publish_seconds": publish_seconds,
        "sent_per_second": rate(sent, publish_seconds),
        "delivery_seconds": delivery_seconds,
        "delivered_per_second": rate(delivered, delivery_seconds),
        "latency_us": latency,
        "errors": (errors.len() as u64).saturating_sub(connect_failed),
        "error_messages": errors.iter().take(10).collect::<Vec<_>>(),
        "cpu_seconds": cpu_seconds(),
    });
    if errors.len() > 10 {
        summary["error_messages"]
            .as_array_mut()
            .expect("an array")
            .push(json!(format!("... and {} more", errors.len() - 10)));
    }
    summary
}

/// This process's user + system CPU time, from /proc (Linux); `None` elsewhere.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, in clock ticks
    // (USER_HZ, 100 on Linux).
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// The human summary.
fn render(s: &Value) -> String {
    let mut out = String::new();
    let num = |k: &str| s[k].as_f64().unwrap_or(0.0);
    out += &format!(
        "tern bench {}: MQTT {}, QoS {}, {} publishers, {} subscribers, {} B payload\n",
        s["mode"].as_str().unwrap_or(""),
        s["mqtt_version"].as_str().unwrap_or(""),
        s["qos"],
        s["publishers"],
        s["subscribers"],
        s["payload_size"],
    );
    out += &format!(
        "connected  {} in {:.2} s ({:.0}/s), {} failed\n",
        s["connected"],
        num("connect_seconds"),
        num("connect_rate"),
        s["connect_failed"]
    );
    if s["mode"] != "conn" && s["mode"] != "churn" {
        out += &format!(
            "sent       {} in {:.2} s ({:.0} msg/s), {} acknowledged\n",
            s["sent"],
            num("publish_seconds"),
            num("sent_per_second"),
            s["acked"]
        );
        out += &format!(
            "delivered  {} in {:.2} s ({:.0} msg/s)",
            s["delivered"],
            num("delivery_seconds"),
            num("delivered_per_second")
        );
        if let Some(p) = s["delivered_percent"].as_f64() {
            out += &format!(", {p:.2} % of {}", s["expected"]);
        }
        out += "\n";
    }
    if let Some(l) = s["latency_us"].as_object() {
        let f = |k: &str| l[k].as_f64().unwrap_or(0.0);
        out += &format!(
            "latency µs p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}\n",
            f("p50"),
            f("p90"),
            f("p99"),
            f("p99_9"),
            f("max")
        );
    }
    out += &format!("errors     {}\n", s["errors"]);
    for e in s["error_messages"].as_array().into_iter().flatten() {
        out += &format!("  {}\n", e.as_str().unwrap_or(""));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_takes_one_address_or_an_inclusive_range() {
        assert_eq!(
            parse_bind("127.0.0.2"),
            Ok(vec!["127.0.0.2".parse().unwrap()])
        );
        assert_eq!(parse_bind("::1"), Ok(vec!["::1".parse().unwrap()]));
        let range = parse_bind("127.0.0.254-127.0.1.1").unwrap();
        let want: Vec<IpAddr> = ["127.0.0.254", "127.0.0.255", "127.0.1.0", "127.0.1.1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(range, want);
        assert_eq!(parse_bind("10.0.0.5-10.0.0.5").unwrap().len(), 1);
    }

    #[test]
    fn bind_refuses_bad_ranges_naming_the_value() {
        for bad in [
            "127.0.0.3-127.0.0.1",
            "localhost",
            "127.0.0.1-::1",
            "127.0.0.1-",
            "10.0.0.0-10.1.0.0",
        ] {
            let e = parse_bind(bad).unwrap_err();
            assert!(e.contains(bad) || e.contains("IPv4"), "{bad}: {e}");
        }
    }
}
