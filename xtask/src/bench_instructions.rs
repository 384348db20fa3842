//! `cargo xtask bench-broker --instructions`: the cost of `--metrics` in
//! instructions, which this noisy shared machine cannot blur the way it
//! blurs seconds.
//!
//! Tern runs under valgrind's cachegrind (no cache simulation: it only
//! counts the instructions executed, every thread included) with and
//! without `--metrics`; the metrics runs are scraped once a second, as in
//! the timed comparison. `tern bench pubsub` sends a fixed number of QoS 1
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
/// How often the metrics runs are scraped.
const SCRAPE_EVERY: Duration = Duration::from_secs(1);
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
    // [off, on] × [N, 2N], interleaved run by run.
    let mut per_message: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut per_scrape = Vec::new();
    let mut files = [0.0f64; 3];
    let mut scrapes_per_run = 0.0;
    let mut rate = 0.0;
    for run in 0..runs {
        let mut pair = [[0u64; 2]; 2];
        let mut on_runs = Vec::new();
        for (i, metrics) in [false, true].into_iter().enumerate() {
            for (j, n) in [messages, 2 * messages].into_iter().enumerate() {
                eprintln!(
                    "xtask: run {} of {runs}: {n} messages, metrics {}",
                    run + 1,
                    if metrics { "on" } else { "off" }
                );
                let r = measure(tern, &work, n, metrics)?;
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
        // What the metrics runs executed beyond the plain ones, per scrape.
        let extra = (pair[1][0] + pair[1][1]) as f64 - (pair[0][0] + pair[0][1]) as f64;
        let scrapes: u32 = on_runs.iter().map(|r| r.scrapes).sum();
        per_scrape.push(extra / f64::from(scrapes.max(1)));
        scrapes_per_run += f64::from(scrapes) / 2.0 / runs as f64;
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
    let text = format!(
        "{START}\n_{started}; load average before: {load_before}, after: {}_\n\n\
         ```\ncargo xtask bench-broker --instructions --messages {messages} --runs {runs}\n```\n\n\
         Instructions executed by the broker process (all threads, cachegrind without cache \
         simulation, `--threads 1`), per QoS 1 message of 64 bytes from one publisher (one \
         message in flight) to one subscriber: the difference between a run of {} and one of \
         {messages} messages, divided by {messages}. Medians of {runs} (each run: off N, \
         off 2N, on N, on 2N). Under cachegrind the broker carried about {rate:.0} msg/s, so \
         the scrape a second weighs far more per message here than at native speed.\n\n\
         | | instructions per message | each run |\n|---|---|---|\n\
         | metrics off | {off:.0} | {off_all} |\n\
         | `--metrics`, scraped every 1 s | {on:.0} | {on_all} |\n\
         | on / off | **{:.4}** ({:+.2} %) | |\n\n\
         Per scrape (what the metrics runs executed beyond the plain ones, over the {:.0} \
         scrapes of a run pair on average): **{scrape:.0} instructions**. At 100,000 msg/s a \
         scrape a second weighs {:.2} instructions per message.\n\n\
         Always-on counting, per message, in the longer metrics runs: the busiest-topics \
         summary (`core/topk.rs`) {:.1} instructions ({:.3} % of a message); the monitoring \
         listener (`server/http.rs`) {:.1} and its rendering (`server/metrics.rs`) {:.1}, \
         which run only for scrapes. The `Stats` counters are plain integer additions \
         inlined where they count and are not separated.\n{END}",
        loadavg(),
        2 * messages,
        on / off,
        (on / off - 1.0) * 100.0,
        scrapes_per_run * 2.0,
        scrape / 100_000.0,
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
fn measure(tern: &Path, work: &Path, n: u64, metrics: bool) -> Result<Run, String> {
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
    let scraper = port.map(|port| {
        let (scrapes, done) = (scrapes.clone(), done.clone());
        std::thread::spawn(move || {
            let mut next = Instant::now();
            while !done.load(Ordering::Relaxed) {
                if Instant::now() >= next {
                    next += SCRAPE_EVERY;
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
