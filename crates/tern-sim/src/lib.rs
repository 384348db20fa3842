//! A deterministic simulation of the Tern broker core and many tern-session
//! clients under faults, with invariant checkers.
//!
//! Message-loss and duplicate bugs hide in rare interleavings: a reconnect
//! during a QoS 2 handshake, a take-over while messages are queued, expiry
//! racing redelivery. The broker core ([`tern_broker::Broker`]) and the
//! sessions ([`tern_session::ClientConnection`]) are sans-IO, so one thread
//! runs them together on virtual time, from a seed, and replays any failure
//! exactly.
//!
//! ```
//! use tern_sim::{FaultProfile, Options, run};
//!
//! let options = Options { clients: 4, steps: 60, faults: FaultProfile::LIGHT, ..Options::default() };
//! let report = run(7, &options).expect("seed 7 runs clean");
//! // The same seed replays the same run.
//! assert_eq!(run(7, &options).unwrap().trace_hash, report.trace_hash);
//! ```
//!
//! # What one seed drives
//!
//! - A virtual clock and an event queue ordered by `(Instant, sequence
//!   number)`.
//! - The broker core, fed bytes exactly as its tokio shell feeds them
//!   (`handle_bytes`, `poll_transmit`, `poll_timeout`, `poll_event`, `Close`
//!   then `handle_closed`), with a [`SharedStore`] that survives graceful
//!   restarts.
//! - N clients, each a [`tern_session::ClientConnection`] driven by the same
//!   drain rule and an application model ([`app`]) that connects,
//!   publishes at every QoS with and without retain and expiry, subscribes
//!   with wildcards, shared subscriptions and MQTT 5 options, disconnects
//!   (normally, with 0x04, with an error code), takes over its own session,
//!   and restarts with or without its persisted session. Roles: a will
//!   watcher, durable subscribers, general clients, and a retained probe.
//! - In one seed in five, a memory budget (`max_memory`) small enough that
//!   the workload meets it: PUBLISHes, SUBSCRIBEs and CONNECTs are refused
//!   (0x97, 0x89; MQTT 3.1.1 publishers closed), the model takes back what
//!   a refusal undoes, and healing lifts the budget as a reload would. The
//!   bounds checker holds the budget's running account equal to a recount.
//! - A [`link`] per connection, itself sans-IO: latency and jitter, split
//!   and coalesced reads, resets, half-open links, slow consumers.
//!   Every packet goes through real encode and decode. The broker runs the
//!   production backpressure: the simulator reports bytes written
//!   (`handle_written`) when the client reads them, so latency and a slow
//!   consumer's backlog use output credit, and it stops handing a
//!   connection's bytes to the broker between `PauseReading` and
//!   `ResumeReading`. Output credit and publisher backpressure are on in
//!   every seed.
//!
//! A run has three phases: the **workload** (faults on, `steps` application
//! steps), **healing** (faults off, half-open links reset, everyone
//! reconnects with its session, run until every session and link is
//! quiet), and the **probe** (a fresh client subscribes to `#` to read the
//! retained set). Then every checker judges the run.
//!
//! # Determinism rules
//!
//! - One seed, one run. All randomness comes from [`rng::Rng`]
//!   (xoshiro256**, no ambient entropy), forked into independent streams
//!   (network, faults, each application), so changing one draw does not
//!   reshuffle everything else.
//! - Time is `tern_session::Instant`, advanced only by the event queue.
//! - Only ordered collections are iterated (`BTreeMap`, `VecDeque`); the
//!   crate uses no clock, no threads and no `HashMap` (checked by
//!   `xtask`'s tidy tests); only the `tern-sim` binary's runner uses
//!   threads, one seed per thread.
//!
//! # Fault model
//!
//! See [`FaultProfile`]: `none`, `light` (the default) and `heavy`. A reset
//! loses whatever was not yet delivered (each end received a prefix of the
//! other's stream); a half-open link drops everything silently until keep
//! alive notices; a slow consumer reads late and in small pieces; a client
//! restart resets its socket and comes back with its persisted session or a
//! new one (clean start); a broker restart is graceful
//! (`Broker::shutdown`, drain, then a new broker from the same store).
//! Crash restarts are the [`crash`] module's (`tern-sim --crash`): a
//! durable broker on a simulated disk, crashed at random times and
//! restarted through the production recovery on what the disk kept.
//!
//! # Checkers
//!
//! See [`check`]: integrity (no phantoms, QoS 2 once per flow), delivery
//! (durable subscribers get QoS 1 at least once and QoS 2 exactly once),
//! order, packet identifiers and Receive Maximum, retained state, wills,
//! message expiry, bounds and protocol violations. A checker's complaint
//! stops the run and becomes a [`Failure`]: the seed, the options, and the
//! last lines of the trace. [`minimise`] looks for smaller options that
//! still fail.

#![forbid(unsafe_code)]

pub mod app;
pub mod auth;
pub mod check;
pub mod crash;
mod fault;
pub mod link;
pub mod model;
pub mod rng;
mod sim;
mod store;
pub mod trace;

pub use fault::FaultProfile;
pub use sim::Stats;
pub use store::SharedStore;

use core::fmt;
use tern_session::Instant;

/// A scenario: how many clients, how much work, how hostile.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Clients, at least 3: one will watcher, a quarter durable
    /// subscribers, the rest general (a retained probe joins at the end).
    pub clients: usize,
    /// Application steps in the workload phase, all clients together.
    pub steps: usize,
    /// The fault profile.
    pub faults: FaultProfile,
    /// Keep every trace line (for the determinism test), not just the last.
    pub full_trace: bool,
    /// Called with every trace line as it is written (the binary's
    /// `--trace` prints them).
    pub echo: Option<fn(&str)>,
    /// Self-test: the application of a durable subscriber silently loses
    /// the Nth live QoS 1/2 message delivered to durable subscribers, as a
    /// buggy client would; the delivery checker must then fail the run.
    pub lose_delivery: Option<u64>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            clients: 8,
            steps: 600,
            faults: FaultProfile::LIGHT,
            full_trace: false,
            echo: None,
            lose_delivery: None,
        }
    }
}

impl fmt::Display for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "--clients {} --steps {} --faults {}",
            self.clients, self.steps, self.faults
        )?;
        if let Some(n) = self.lose_delivery {
            write!(f, " --lose-delivery {n}")?;
        }
        Ok(())
    }
}

/// A run that passed every check.
#[derive(Debug, Clone)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// A hash of every trace line: equal for equal runs.
    pub trace_hash: u64,
    /// How many trace lines were written.
    pub trace_lines: u64,
    /// Every trace line, with `full_trace`.
    pub trace: Option<Vec<String>>,
    /// The virtual time at the end.
    pub end: Instant,
    /// Counters.
    pub stats: Stats,
    /// What the checkers checked: name and count.
    pub coverage: Vec<(&'static str, u64)>,
}

/// A run that broke an invariant.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The seed.
    pub seed: u64,
    /// The options.
    pub options: Options,
    /// The checker that complained.
    pub checker: &'static str,
    /// What it said.
    pub message: String,
    /// When.
    pub at: Instant,
    /// The last trace lines.
    pub trace: Vec<String>,
    /// Trace lines that mention the messages named in `message` (found by
    /// replaying the seed with the full trace kept), oldest first.
    pub related: Vec<String>,
    /// A hash of every trace line up to the failure.
    pub trace_hash: u64,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {} FAILED [{}] at t={}: {}",
            self.seed, self.checker, self.at, self.message
        )?;
        writeln!(
            f,
            "  reproduce: cargo run --release -p tern-sim -- --seed {} {}",
            self.seed, self.options
        )?;
        if !self.related.is_empty() {
            writeln!(f, "  trace lines about the messages named above:")?;
            for line in &self.related {
                writeln!(f, "    {line}")?;
            }
        }
        writeln!(f, "  last {} trace lines:", self.trace.len())?;
        for line in &self.trace {
            writeln!(f, "    {line}")?;
        }
        Ok(())
    }
}

/// Runs one seed.
pub fn run(seed: u64, options: &Options) -> Result<Report, Box<Failure>> {
    let mut world = sim::World::new(seed, *options);
    match world.run() {
        Ok(()) => Ok(Report {
            seed,
            trace_hash: world.trace.hash(),
            trace_lines: world.trace.len(),
            trace: world.trace.full().map(<[String]>::to_vec),
            end: world.now,
            stats: world.stats,
            coverage: world.coverage(),
        }),
        Err(complaint) => {
            let related = related_lines(seed, options, &complaint.message, &world);
            Err(Box::new(Failure {
                seed,
                options: *options,
                checker: complaint.checker,
                message: complaint.message,
                at: world.now,
                trace: world.trace.tail(),
                related,
                trace_hash: world.trace.hash(),
            }))
        }
    }
}

/// How many related lines a failure report shows at most.
const RELATED: usize = 40;

/// The message identities (`m3:14`, `w2:0`) a checker's complaint names.
fn named_messages(message: &str) -> Vec<String> {
    let mut out: Vec<String> = message
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == ':'))
        .filter(|w| {
            let mut chars = w.chars();
            matches!(chars.next(), Some('m' | 'w'))
                && w[1..].split_once(':').is_some_and(|(a, b)| {
                    !a.is_empty()
                        && !b.is_empty()
                        && a.bytes().all(|c| c.is_ascii_digit())
                        && b.bytes().all(|c| c.is_ascii_digit())
                })
        })
        .map(|w| w.to_string())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Replays the failing run with the full trace kept (it is deterministic)
/// and picks the lines that mention the messages the complaint names.
fn related_lines(seed: u64, options: &Options, message: &str, world: &sim::World) -> Vec<String> {
    let names = named_messages(message);
    if names.is_empty() {
        return Vec::new();
    }
    let lines = match world.trace.full() {
        Some(full) => full.to_vec(),
        None => {
            let replay = Options {
                full_trace: true,
                echo: None,
                ..*options
            };
            let mut again = sim::World::new(seed, replay);
            let _ = again.run();
            again
                .trace
                .full()
                .map(<[String]>::to_vec)
                .unwrap_or_default()
        }
    };
    let mentions = |line: &str| {
        names.iter().any(|n| {
            line.match_indices(n.as_str()).any(|(i, _)| {
                let after = line[i + n.len()..].chars().next();
                !after.is_some_and(|c| c.is_ascii_digit())
            })
        })
    };
    let mut related: Vec<String> = lines.into_iter().filter(|l| mentions(l)).collect();
    if related.len() > RELATED {
        related.drain(..related.len() - RELATED);
    }
    related
}

/// Looks for the smallest options under which `seed` still fails: fewer
/// clients, fewer steps, a lighter fault profile, greedily, one change at a
/// time. Each retry is a different run (the seed's draws land elsewhere),
/// so the result is "small options that fail", not a proof of cause.
pub fn minimise(seed: u64, options: &Options) -> Option<Box<Failure>> {
    let mut best = run(seed, options).err()?;
    let mut current = *options;
    loop {
        let mut candidates = Vec::new();
        if let Some(lighter) = current.faults.lighter() {
            candidates.push(Options {
                faults: lighter,
                ..current
            });
        }
        if current.clients > 3 {
            candidates.push(Options {
                clients: (current.clients / 2).max(3),
                ..current
            });
            candidates.push(Options {
                clients: current.clients - 1,
                ..current
            });
        }
        if current.steps > 10 {
            candidates.push(Options {
                steps: current.steps / 2,
                ..current
            });
            candidates.push(Options {
                steps: current.steps * 3 / 4,
                ..current
            });
        }
        let smaller = candidates
            .into_iter()
            .find_map(|o| run(seed, &o).err().map(|f| (o, f)));
        match smaller {
            Some((o, f)) => {
                current = o;
                best = f;
            }
            None => return Some(best),
        }
    }
}
