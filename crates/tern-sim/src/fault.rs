//! Fault profiles: every fault is a plain seeded knob, chosen by name.

use core::fmt;

/// How hostile the network and the machines are during the workload phase.
///
/// Rates are per mille (‰) or mean intervals in virtual seconds; 0 turns a
/// fault off. The healing phase at the end of every run switches all faults
/// off, whatever the profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultProfile {
    /// The profile's name: `none`, `light` or `heavy`.
    pub name: &'static str,
    /// One-way base latency of a link in microseconds, drawn per link.
    pub latency_us: (u64, u64),
    /// Extra delay per chunk in microseconds, up to this (order is kept).
    pub jitter_us: u64,
    /// ‰ of packets split into several chunks (split reads).
    pub split: u32,
    /// ‰ of chunks glued to the one before (coalesced reads).
    pub coalesce: u32,
    /// Mean virtual seconds before a link is reset (0: never).
    pub reset_every_s: u64,
    /// Mean virtual seconds before a link goes silent, half-open (0: never).
    pub half_open_every_s: u64,
    /// ‰ of client connections that read slowly (late, in small pieces);
    /// their backlog uses up the broker's output credit for them.
    pub slow_consumer: u32,
    /// ‰ of application steps that restart the client process, with or
    /// without its persisted session.
    pub client_restart: u32,
    /// Mean virtual seconds between graceful broker restarts (0: never).
    pub broker_restart_every_s: u64,
}

impl FaultProfile {
    /// No faults: short fixed latencies, whole packets, nothing breaks.
    pub const NONE: FaultProfile = FaultProfile {
        name: "none",
        latency_us: (500, 3_000),
        jitter_us: 0,
        split: 0,
        coalesce: 0,
        reset_every_s: 0,
        half_open_every_s: 0,
        slow_consumer: 0,
        client_restart: 0,
        broker_restart_every_s: 0,
    };

    /// The default: jitter, split and coalesced reads, occasional resets,
    /// half-open links, slow consumers, restarts.
    pub const LIGHT: FaultProfile = FaultProfile {
        name: "light",
        latency_us: (500, 20_000),
        jitter_us: 5_000,
        split: 200,
        coalesce: 200,
        reset_every_s: 90,
        half_open_every_s: 300,
        slow_consumer: 100,
        client_restart: 8,
        broker_restart_every_s: 60,
    };

    /// Everything, often.
    pub const HEAVY: FaultProfile = FaultProfile {
        name: "heavy",
        latency_us: (500, 120_000),
        jitter_us: 60_000,
        split: 500,
        coalesce: 300,
        reset_every_s: 20,
        half_open_every_s: 50,
        slow_consumer: 300,
        client_restart: 30,
        broker_restart_every_s: 25,
    };

    /// Every profile, lightest first.
    pub const ALL: [FaultProfile; 3] = [Self::NONE, Self::LIGHT, Self::HEAVY];

    /// The profile with this name.
    pub fn by_name(name: &str) -> Option<FaultProfile> {
        Self::ALL.into_iter().find(|p| p.name == name)
    }

    /// The next lighter profile, if any (for the minimiser).
    pub fn lighter(&self) -> Option<FaultProfile> {
        let i = Self::ALL.iter().position(|p| p.name == self.name)?;
        i.checked_sub(1).map(|i| Self::ALL[i])
    }
}

impl fmt::Display for FaultProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}
