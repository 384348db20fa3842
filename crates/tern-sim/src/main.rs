//! `tern-sim`: runs simulation seeds in parallel and reports the failures.
//!
//! ```text
//! tern-sim --seeds N [--start S] [--clients C] [--steps K] [--faults none|light|heavy]
//!          [--threads T] [--no-minimise]
//! tern-sim --seed S [--clients C] [--steps K] [--faults P] [--trace]
//! tern-sim --crash --seeds N [--start S] [--publishers P] [--subscribers U]
//!          [--messages M] [--crashes K] [--threads T]
//! tern-sim --crash --seed S [...] [--trace]
//! ```
//!
//! This runner is the one place in the crate that uses threads and the wall
//! clock: seeds are independent, so each worker takes the next seed from a
//! shared counter. A panic inside the broker or a session counts as a
//! failure of that seed.

#![allow(
    clippy::disallowed_methods,
    reason = "the runner uses threads and the wall clock; the simulation does not"
)]

use std::{
    panic,
    process::ExitCode,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant as WallClock,
};
use tern_sim::crash::{CrashOptions, CrashStats, run_crash};
use tern_sim::{Failure, FaultProfile, Options, Report, minimise, run};

const HELP: &str = "\
tern-sim: deterministic simulation of the Tern broker core and tern-session clients

  tern-sim --seeds N [--start S] [options]   run seeds S..S+N in parallel
  tern-sim --seed S [options] [--trace]      run one seed (--trace prints every line)

options:
  --clients C        clients per run (default 8, at least 3)
  --steps K          application steps in the workload phase (default 600)
  --faults PROFILE   none, light (default) or heavy
  --threads T        worker threads (default: available cores)
  --no-minimise      do not look for smaller failing options
  --lose-delivery N  self-test: a durable subscriber's application silently
                     loses the Nth QoS 1/2 message; the run must fail

crash points (--crash): a durable broker on a simulated disk, crashed at
random times (every unsynced write lost, the last one maybe torn) and
restarted on what the disk kept; checks that nothing acknowledged is lost
and no QoS 2 message is delivered twice:
  --publishers P     QoS 1 and QoS 2 publishers (default 3)
  --subscribers U    persistent subscribers, some roaming (default 4)
  --messages M       messages per publisher (default 40)
  --crashes K        crash points per run (default 3)
  --subscriber-qos Q every subscription at QoS 1 or 2 (default: QoS 2, one
                     subscriber in three at QoS 1)
";

struct Args {
    crash: Option<CrashOptions>,
    start: u64,
    seeds: u64,
    single: bool,
    options: Options,
    threads: usize,
    minimise: bool,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        crash: None,
        start: 0,
        seeds: 100,
        single: false,
        options: Options::default(),
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        minimise: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let number = |v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag}: not a number: {v}"))
        };
        match flag.as_str() {
            "--seeds" => args.seeds = number(value()?)?,
            "--start" => args.start = number(value()?)?,
            "--seed" => {
                args.start = number(value()?)?;
                args.seeds = 1;
                args.single = true;
            }
            "--clients" => args.options.clients = number(value()?)? as usize,
            "--steps" => args.options.steps = number(value()?)? as usize,
            "--faults" => {
                let name = value()?;
                args.options.faults = FaultProfile::by_name(&name)
                    .ok_or(format!("unknown fault profile {name} (none, light, heavy)"))?;
            }
            "--threads" => args.threads = (number(value()?)? as usize).max(1),
            "--lose-delivery" => args.options.lose_delivery = Some(number(value()?)?),
            "--trace" => args.options.echo = Some(|line| eprintln!("{line}")),
            "--no-minimise" => args.minimise = false,
            "--crash" => args.crash = Some(args.crash.unwrap_or_default()),
            "--subscriber-qos" => {
                let q = match value()?.as_str() {
                    "1" => tern_codec::QoS::AtLeastOnce,
                    "2" => tern_codec::QoS::ExactlyOnce,
                    other => return Err(format!("--subscriber-qos: 1 or 2, not {other}")),
                };
                args.crash
                    .get_or_insert_with(CrashOptions::default)
                    .subscriber_qos = Some(q);
            }
            "--publishers" | "--subscribers" | "--messages" | "--crashes" => {
                let n = number(value()?)?;
                let c = args.crash.get_or_insert_with(CrashOptions::default);
                match flag.as_str() {
                    "--publishers" => c.publishers = (n as usize).max(1),
                    "--subscribers" => c.subscribers = (n as usize).max(1),
                    "--messages" => c.messages = (n as u32).max(1),
                    _ => c.crashes = n as u32,
                }
            }
            "--help" | "-h" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if args.options.clients < 3 {
        return Err("--clients must be at least 3".into());
    }
    if let Some(c) = args.crash.as_mut() {
        c.echo = args.options.echo;
    }
    Ok(args)
}

/// Runs one seed, turning a panic into a failure.
fn run_seed(seed: u64, options: &Options) -> Result<Report, Box<Failure>> {
    let outcome = panic::catch_unwind(|| run(seed, options));
    match outcome {
        Ok(Ok(report)) => Ok(report),
        Ok(Err(f)) => Err(f),
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            Err(Box::new(Failure {
                seed,
                options: *options,
                checker: "panic",
                message: format!("{message} (rerun with --seed {seed} --trace to see the run)"),
                at: tern_session::Instant::ZERO,
                trace: Vec::new(),
                related: Vec::new(),
                trace_hash: 0,
            }))
        }
    }
}

/// Adds a passing run's counters to the totals.
fn add(totals: &mut (tern_sim::Stats, Vec<(&'static str, u64)>), report: &Report) {
    let (s, coverage) = totals;
    let r = &report.stats;
    s.packets += r.packets;
    s.publishes += r.publishes;
    s.deliveries += r.deliveries;
    s.connections += r.connections;
    s.resets += r.resets;
    s.half_opens += r.half_opens;
    s.client_restarts += r.client_restarts;
    s.takeovers += r.takeovers;
    s.broker_restarts += r.broker_restarts;
    for (name, n) in &report.coverage {
        match coverage.iter_mut().find(|(c, _)| *c == *name) {
            Some(entry) => entry.1 += n,
            None => coverage.push((name, *n)),
        }
    }
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("tern-sim: {e}\n");
            }
            eprint!("{HELP}");
            return ExitCode::from(2);
        }
    };
    if args.options.echo.is_none() {
        // Panics are reported with their seed; keep the default hook quiet.
        panic::set_hook(Box::new(|_| {}));
    }
    if let Some(crash) = args.crash {
        return crash_main(&args, &crash);
    }
    let started = WallClock::now();
    let next = AtomicU64::new(args.start);
    let end = args.start + args.seeds;
    let failures: Mutex<Vec<Box<Failure>>> = Mutex::new(Vec::new());
    let totals: Mutex<(tern_sim::Stats, Vec<(&'static str, u64)>)> = Mutex::default();
    let done = AtomicU64::new(0);
    let threads = args.threads.min(args.seeds as usize).max(1);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= end {
                        break;
                    }
                    match run_seed(seed, &args.options) {
                        Ok(report) => {
                            let mut t = totals.lock().unwrap_or_else(|e| e.into_inner());
                            add(&mut t, &report);
                        }
                        Err(f) => {
                            eprintln!("seed {seed} failed [{}]: {}", f.checker, f.message);
                            failures.lock().unwrap_or_else(|e| e.into_inner()).push(f);
                        }
                    }
                    let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if !args.single && n % 1000 == 0 {
                        eprintln!("... {n} seeds in {:.1}s", started.elapsed().as_secs_f64());
                    }
                }
            });
        }
    });
    let mut failures = failures.into_inner().unwrap_or_else(|e| e.into_inner());
    failures.sort_by_key(|f| f.seed);
    for f in failures.iter().take(3) {
        println!("\n{f}");
        if args.minimise && !args.single && f.checker != "panic" {
            if let Some(small) = minimise(f.seed, &args.options) {
                println!(
                    "  smallest failing options found: --seed {} {}\n  ({}: {})",
                    small.seed, small.options, small.checker, small.message
                );
            }
        }
    }
    let (stats, coverage) = totals.into_inner().unwrap_or_else(|e| e.into_inner());
    let checked: Vec<String> = coverage.iter().map(|(n, c)| format!("{c} {n}")).collect();
    println!(
        "passing runs: {} packets, {} publishes, {} deliveries, {} connections, {} resets, \
         {} half-open, {} client restarts, {} take-overs, {} broker restarts",
        stats.packets,
        stats.publishes,
        stats.deliveries,
        stats.connections,
        stats.resets,
        stats.half_opens,
        stats.client_restarts,
        stats.takeovers,
        stats.broker_restarts
    );
    println!("checked: {}", checked.join(", "));
    let seeds: Vec<String> = failures.iter().map(|f| f.seed.to_string()).collect();
    println!(
        "{} seeds, {} failed ({} profile, {} clients, {} steps, {:.1}s on {threads} threads)",
        args.seeds,
        failures.len(),
        args.options.faults,
        args.options.clients,
        args.options.steps,
        started.elapsed().as_secs_f64()
    );
    if !seeds.is_empty() {
        println!("failing seeds: {}", seeds.join(" "));
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// `--crash`: crash-point seeds in parallel, with the totals the issue's
/// goal names (acknowledged messages lost, QoS 2 duplicates).
fn crash_main(args: &Args, options: &CrashOptions) -> ExitCode {
    let started = WallClock::now();
    let next = AtomicU64::new(args.start);
    let end = args.start + args.seeds;
    let failures: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let failed_seeds: Mutex<Vec<u64>> = Mutex::new(Vec::new());
    let totals: Mutex<CrashStats> = Mutex::default();
    let done = AtomicU64::new(0);
    let threads = args.threads.min(args.seeds as usize).max(1);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= end {
                        break;
                    }
                    let (stats, failure) = match panic::catch_unwind(|| run_crash(seed, options)) {
                        Ok(Ok(report)) => (report.stats, None),
                        Ok(Err(f)) => (f.stats, Some(f.to_string())),
                        Err(payload) => {
                            let message = payload
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                                .unwrap_or_else(|| "panic".into());
                            (
                                CrashStats::default(),
                                Some(format!("seed {seed} FAILED [panic]: {message}")),
                            )
                        }
                    };
                    {
                        let mut t = totals.lock().unwrap_or_else(|e| e.into_inner());
                        add_crash(&mut t, &stats);
                    }
                    if let Some(f) = failure {
                        eprintln!("{}", f.lines().next().unwrap_or_default());
                        failures.lock().unwrap_or_else(|e| e.into_inner()).push(f);
                        failed_seeds
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(seed);
                    }
                    let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if !args.single && n % 1000 == 0 {
                        eprintln!("... {n} seeds in {:.1}s", started.elapsed().as_secs_f64());
                    }
                }
            });
        }
    });
    let mut failures = failures.into_inner().unwrap_or_else(|e| e.into_inner());
    failures.sort();
    let mut seeds = failed_seeds.into_inner().unwrap_or_else(|e| e.into_inner());
    seeds.sort_unstable();
    for f in failures.iter().take(3) {
        println!("\n{f}");
    }
    let t = totals.into_inner().unwrap_or_else(|e| e.into_inner());
    println!(
        "crash runs: {} crashes ({} with the last write torn or garbled, {} keeping every write, \
         {} after a failed sync), {} log syncs, {} checkpoints; {} messages acknowledged, \
         {} deliveries ({} QoS 1 repeats)",
        t.crashes,
        t.torn,
        t.kept_all,
        t.sync_failures,
        t.syncs,
        t.checkpoints,
        t.acknowledged,
        t.deliveries,
        t.qos1_repeats
    );
    println!(
        "acknowledged messages lost: {}; QoS 2 duplicates: {}",
        t.lost, t.qos2_duplicates
    );
    println!(
        "{} crash seeds, {} failed ({options}, {:.1}s on {threads} threads)",
        args.seeds,
        seeds.len(),
        started.elapsed().as_secs_f64()
    );
    if !seeds.is_empty() {
        let list: Vec<String> = seeds.iter().map(u64::to_string).collect();
        println!("failing seeds: {}", list.join(" "));
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn add_crash(t: &mut CrashStats, r: &CrashStats) {
    t.crashes += r.crashes;
    t.torn += r.torn;
    t.kept_all += r.kept_all;
    t.sync_failures += r.sync_failures;
    t.syncs += r.syncs;
    t.checkpoints += r.checkpoints;
    t.acknowledged += r.acknowledged;
    t.deliveries += r.deliveries;
    t.qos1_repeats += r.qos1_repeats;
    t.lost += r.lost;
    t.qos2_duplicates += r.qos2_duplicates;
}
