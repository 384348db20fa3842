//! `cargo xtask bench-broker --instructions`: the cost of `--metrics` in
//! instructions, which this noisy shared machine cannot blur the way it
//! blurs seconds.
//!
//! Tern runs under valgrind's cachegrind (no cache simulation: it only
//! counts the instructions executed, every thread included) with and
//! without `--metrics`. Under cachegrind the broker runs some 20 times
//! slower than natively, so a scrape every second of wall time would weigh
//! that much more per message: the metrics runs are scraped once per the
//! messages the broker carries natively in a second (the native rate of the
//! same workload, measured first), and the cost of one scrape is measured
//! on its own (an idle broker, S and 2S back-to-back scrapes). `tern bench pubsub` sends a fixed number of QoS 1
//! messages, one in flight at a time (each waits for the previous one's
//! PUBACK, so every message takes the same path whatever the machine's
//! load), from one publisher to one subscriber. Each
//! configuration runs with N and 2N messages: the difference, divided by
//! N, is the instructions per message with start-up, connecting and
//! shutting down taken out. Everything that grows with the run's length
//! stays in: timers, idle wake-ups, and the scrapes.

use crate::bench_broker::{loadavg, now_utc};
use crate::tools::{ensure_apt, root};
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};
use tern_testkit::Broker;

const START: &str = "<!-- bench-broker-instructions:start -->";
const END: &str = "<!-- bench-broker-instructions:end -->";
/// How often the metrics runs would be scraped at native speed (as in the
/// timed comparison).
const SCRAPE_EVERY: Duration = Duration::from_secs(1);
/// Scrapes of the per-scrape measurement (and twice as many).
const SCRAPES: u32 = 50;
/// Messages of each native-rate run.
const NATIVE_MESSAGES: u64 = 20_000;
/// Source files whose instructions are reported on their own: the
/// always-on counting (the busiest-topics summary), and the monitoring
/// listener and its rendering.
const FILES: [&str; 3] = ["core/topk.rs", "server/metrics.rs", "server/http.rs"];

/// One broker run under cachegrind.
struct Run {
    /// Instructions executed, all threads.
    instructions: u64,
    /// Instructions in each of [`FILES`].
    by_file: [u64; 3],
    /// Messages the subscriber received.
    delivered: u64,
    /// Scrapes answered.
    scrapes: u32,
    /// Seconds the bench ran.
    seconds: f64,
}

/// Runs the measurement and prints (and, with `write`, records) it.
pub(crate) fn command(tern: &Path, messages: u64, runs: usize, write: bool) -> Result<(), String> {
    ensure_apt(&["valgrind"], &["valgrind"])?;
    let work = std::env::temp_dir().join(format!("tern-bench-instr-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let load_before = loadavg();
    let started = now_utc();
    let mut natives: Vec<f64> = (0..3)
        .map(|_| native_rate(tern, &work))
        .collect::<Result<_, _>>()?;
    natives.sort_by(f64::total_cmp);
    let native = natives[1];
    eprintln!("xtask: native rate {native:.0} msg/s (median of 3)");
    let mut scrape_runs = Vec::new();
    // [off, on] × [N, 2N], interleaved run by run.
    let mut per_message: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut per_scrape = Vec::new();
    let mut files = [0.0f64; 3];
    let mut scrapes_per_run = 0.0;
    let mut rate = 0.0;
    for run in 0..runs {
        let mut pair = [[0u64; 2]; 2];
        let mut on_runs = Vec::new();
        // Set by the first run off: the wall time under cachegrind that
        // carries the messages of one native second.
        let mut scrape_every = SCRAPE_EVERY;
        for (i, metrics) in [false, true].into_iter().enumerate() {
            for (j, n) in [messages, 2 * messages].into_iter().enumerate() {
                eprintln!(
                    "xtask: run {} of {runs}: {n} messages, metrics {}",
                    run + 1,
                    if metrics { "on" } else { "off" }
                );
                let r = measure(tern, &work, n, metrics.then_some(scrape_every))?;
                if !metrics && j == 0 {
                    let slow = n as f64 / r.seconds;
                    scrape_every = SCRAPE_EVERY.mul_f64(native / slow);
                    eprintln!(
                        "xtask:   {slow:.0} msg/s; metrics runs scraped every {scrape_every:?}"
                    );
                }
                eprintln!(
                    "xtask:   {} instructions, {} delivered, {} scrapes",
                    r.instructions, r.delivered, r.scrapes
                );
                rate += n as f64 / r.seconds / (4 * runs) as f64;
                if r.delivered != n {
                    return Err(format!("{} of {n} messages delivered", r.delivered));
                }
                pair[i][j] = r.instructions;
                if metrics {
                    on_runs.push(r);
                }
            }
        }
        for (i, p) in pair.iter().enumerate() {
            per_message[i].push((p[1] as f64 - p[0] as f64) / messages as f64);
        }
        let scrapes: u32 = on_runs.iter().map(|r| r.scrapes).sum();
        scrapes_per_run += f64::from(scrapes) / 2.0 / runs as f64;
        // One scrape on its own: an idle broker, S and 2S scrapes.
        eprintln!("xtask: run {} of {runs}: per-scrape cost", run + 1);
        let once = measure_scrapes(tern, &work, SCRAPES)?;
        let twice = measure_scrapes(tern, &work, 2 * SCRAPES)?;
        per_scrape.push((twice as f64 - once as f64) / f64::from(SCRAPES));
        scrape_runs.push((once, twice));
        // Per message, from the longer run (start-up is not in these files
        // but the busiest-topics summary, which only runs per message).
        if let Some(long) = on_runs.last() {
            for (f, v) in files.iter_mut().zip(long.by_file) {
                *f += v as f64 / (2 * messages) as f64 / runs as f64;
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let all = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (off_all, on_all) = (all(&per_message[0]), all(&per_message[1]));
    let off = median(&mut per_message[0]);
    let on = median(&mut per_message[1]);
    let scrape = median(&mut per_scrape);
    let at_native = on + scrape / native;
    let text = format!(
        "{START}\n_{started}; load average before: {load_before}, after: {}_\n\n\
         ```\ncargo xtask bench-broker --instructions --messages {messages} --runs {runs}\n```\n\n\
         Instructions executed by the broker process (all threads, cachegrind without cache \
         simulation, `--threads 1`), per QoS 1 message of 64 bytes from one publisher (one \
         message in flight) to one subscriber: the difference between a run of {} and one of \
         {messages} messages, divided by {messages}. Medians of {runs} (each run: off N, \
         off 2N, on N, on 2N, then S and 2S scrapes of an idle broker). The same workload \
         natively (no valgrind, {NATIVE_MESSAGES} messages, median of 3: {}) carries \
         **{native:.0} msg/s**; under cachegrind the broker carried about {rate:.0} msg/s, so \
         the metrics runs were scraped once per {native:.0} messages (every native second's \
         worth; {:.1} scrapes per run pair on average), not once per wall second.\n\n\
         | | instructions per message | each run |\n|---|---|---|\n\
         | metrics off | {off:.0} | {off_all} |\n\
         | `--metrics`, scraped once per native second's messages | {on:.0} | {on_all} |\n\
         | on / off | **{:.4}** ({:+.2} %) | |\n\n\
         Per scrape ((I(2S) − I(S)) / S with S = {SCRAPES}, an idle broker; runs: {}): \
         **{scrape:.0} instructions**. At the native {native:.0} msg/s, one scrape a second \
         adds {:.1} instructions per message: metrics on with a scrape every second costs \
         {at_native:.0} instructions per message, **{:.4}× off**.\n\n\
         Always-on counting, per message, in the longer metrics runs: the busiest-topics \
         summary (`core/topk.rs`) {:.1} instructions ({:.3} % of a message); the monitoring \
         listener (`server/http.rs`) {:.1} and its rendering (`server/metrics.rs`) {:.1}, \
         which run only for scrapes. The `Stats` counters are plain integer additions \
         inlined where they count and are not separated.\n{END}",
        loadavg(),
        2 * messages,
        natives
            .iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(", "),
        scrapes_per_run * 2.0,
        on / off,
        (on / off - 1.0) * 100.0,
        scrape_runs
            .iter()
            .map(|(a, b)| format!("{a} / {b}"))
            .collect::<Vec<_>>()
            .join(", "),
        scrape / native,
        at_native / off,
        files[0],
        files[0] / off * 100.0,
        files[2],
        files[1],
    );
    println!("{text}");
    if write {
        let path = root().join("BENCHMARKS.md");
        let old = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let new = match (old.find(START), old.find(END)) {
            (Some(a), Some(b)) if a < b => format!("{}{text}{}", &old[..a], &old[b + END.len()..]),
            _ => format!("{old}\n## Broker metrics in instructions\n\n{text}\n"),
        };
        std::fs::write(&path, new).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// One run: the broker under cachegrind, `n` messages, stopped by SIGTERM
/// so that cachegrind writes its counts.
fn measure(
    tern: &Path,
    work: &Path,
    n: u64,
    scrape_every: Option<Duration>,
) -> Result<Run, String> {
    let metrics = scrape_every.is_some();
    let out = work.join(format!("cachegrind-{n}-{metrics}.out"));
    let _ = std::fs::remove_file(&out);
    // The launcher runs this as `tern`: valgrind in its place, same PID.
    let wrapper = work.join("tern-under-cachegrind");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec valgrind --tool=cachegrind --cache-sim=no --branch-sim=no \
             --cachegrind-out-file={} {} \"$@\"\n",
            out.display(),
            tern.display()
        ),
    )
    .map_err(|e| format!("{}: {e}", wrapper.display()))?;
    make_executable(&wrapper)?;
    let port = if metrics {
        Some(tern_testkit::unused_port()?)
    } else {
        None
    };
    // One worker thread: idle workers of a multi-threaded runtime look for
    // work in a loop whose length depends on valgrind's scheduling.
    let mut launch = Broker::tern(&wrapper).args(["--log", "warn", "--threads", "1"]);
    if let Some(port) = port {
        launch = launch.args(["--metrics".to_string(), format!("127.0.0.1:{port}")]);
    }
    let broker = launch
        // Start-up under valgrind on a busy machine.
        .ready_within(Duration::from_secs(120))
        .dir(work)
        .name(if metrics { "tern-metrics" } else { "tern" })
        .start()?;
    let scrapes = Arc::new(AtomicU32::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let scraper = port.zip(scrape_every).map(|(port, every)| {
        let (scrapes, done) = (scrapes.clone(), done.clone());
        std::thread::spawn(move || {
            let mut next = Instant::now() + every;
            while !done.load(Ordering::Relaxed) {
                if Instant::now() >= next {
                    next += every;
                    if crate::bench_broker::scrape(port).is_ok() {
                        scrapes.fetch_add(1, Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    });
    let json = work.join("instr-summary.json");
    let _ = std::fs::remove_file(&json);
    let started = Instant::now();
    let status = Command::new(tern)
        .args([
            "bench", "pubsub", "-c", "1", "-S", "1", "-q", "1", "-s", "64",
        ])
        .args(["-n", &n.to_string(), "--inflight", "1"])
        .args(["-h", "127.0.0.1", "-p", &broker.tcp().port().to_string()])
        .args(["--drain", "30", "--quiet", "--json"])
        .arg(&json)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run tern bench: {e}"))?;
    let seconds = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    if let Some(s) = scraper {
        let _ = s.join();
    }
    broker.stop()?;
    let summary: serde_json::Value = std::fs::read_to_string(&json)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .ok_or_else(|| format!("tern bench wrote no summary ({status})"))?;
    let delivered = summary["delivered"].as_u64().unwrap_or(0);
    let (instructions, by_file) = read_counts(&out)?;
    Ok(Run {
        instructions,
        by_file,
        delivered,
        scrapes: scrapes.load(Ordering::Relaxed),
        seconds,
    })
}

/// The workload's rate natively: a broker without valgrind (one worker
/// thread, as under cachegrind), [`NATIVE_MESSAGES`] messages.
fn native_rate(tern: &Path, work: &Path) -> Result<f64, String> {
    let broker = Broker::tern(tern)
        .args(["--log", "warn", "--threads", "1"])
        .dir(work)
        .name("tern-native")
        .start()?;
    let n = NATIVE_MESSAGES;
    let started = Instant::now();
    let status = Command::new(tern)
        .args([
            "bench", "pubsub", "-c", "1", "-S", "1", "-q", "1", "-s", "64",
        ])
        .args(["-n", &n.to_string(), "--inflight", "1"])
        .args(["-h", "127.0.0.1", "-p", &broker.tcp().port().to_string()])
        .args(["--drain", "30", "--quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run tern bench: {e}"))?;
    let seconds = started.elapsed().as_secs_f64();
    broker.stop()?;
    if !status.success() {
        return Err(format!("tern bench (native rate): {status}"));
    }
    Ok(n as f64 / seconds)
}

/// The instructions of an idle broker under cachegrind, with `--metrics`,
/// scraped `scrapes` times back to back.
fn measure_scrapes(tern: &Path, work: &Path, scrapes: u32) -> Result<u64, String> {
    let out = work.join(format!("cachegrind-scrapes-{scrapes}.out"));
    let _ = std::fs::remove_file(&out);
    let wrapper = work.join("tern-under-cachegrind-scrapes");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec valgrind --tool=cachegrind --cache-sim=no --branch-sim=no \
             --cachegrind-out-file={} {} \"$@\"\n",
            out.display(),
            tern.display()
        ),
    )
    .map_err(|e| format!("{}: {e}", wrapper.display()))?;
    make_executable(&wrapper)?;
    let port = tern_testkit::unused_port()?;
    let broker = Broker::tern(&wrapper)
        .args(["--log", "warn", "--threads", "1"])
        .args(["--metrics".to_string(), format!("127.0.0.1:{port}")])
        .ready_within(Duration::from_secs(120))
        .dir(work)
        .name("tern-scrapes")
        .start()?;
    for _ in 0..scrapes {
        crate::bench_broker::scrape(port)?;
    }
    broker.stop()?;
    Ok(read_counts(&out)?.0)
}

fn make_executable(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The total and per-[`FILES`] instruction counts of a cachegrind output
/// file (`fl=` lines name a source file; each cost line after `fn=` is
/// `line Ir`; `summary:` is the total).
fn read_counts(path: &PathBuf) -> Result<(u64, [u64; 3]), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("no cachegrind output {}: {e}", path.display()))?;
    let mut total = None;
    let mut by_file = [0u64; 3];
    let mut current: Option<usize> = None;
    for line in text.lines() {
        if let Some(file) = line.strip_prefix("fl=") {
            current = FILES.iter().position(|f| file.ends_with(f));
        } else if let Some(sum) = line.strip_prefix("summary:") {
            total = sum.trim().parse().ok();
        } else if let Some(i) = current {
            let mut fields = line.split_whitespace();
            if let (Some(first), Some(ir)) = (fields.next(), fields.next()) {
                if first.bytes().all(|b| b.is_ascii_digit()) {
                    by_file[i] += ir.parse::<u64>().unwrap_or(0);
                }
            }
        }
    }
    Ok((
        total.ok_or_else(|| format!("{}: no summary line", path.display()))?,
        by_file,
    ))
}
