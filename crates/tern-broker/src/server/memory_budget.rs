//! The `max_memory` setting: the broker-wide memory budget, in bytes or as
//! a share of the machine's memory, which the shell reads here (the core
//! reads nothing about the machine; it gets bytes); and
//! `max_memory_per_client`, one client's share, in bytes or as a share of
//! that budget.

use serde::de::{self, Deserializer};
use std::fmt;

/// The budget when the machine's memory cannot be read and the setting is
/// a percentage.
pub const FALLBACK_MACHINE_MEMORY: u64 = 2 * 1024 * 1024 * 1024;

/// The `max_memory` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxMemory {
    /// This many bytes; 0: no budget.
    Bytes(u64),
    /// This percentage (1 to 100) of the machine's memory (the smaller of
    /// `MemTotal` and the cgroup's `memory.max`).
    Percent(u8),
}

impl Default for MaxMemory {
    /// Half the machine's memory.
    fn default() -> Self {
        Self::Percent(50)
    }
}

impl fmt::Display for MaxMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bytes(n) => write!(f, "{n}"),
            Self::Percent(p) => write!(f, "\"{p}%\""),
        }
    }
}

impl MaxMemory {
    /// The budget in bytes on a machine with `machine` bytes of memory
    /// (`None`: unknown, [`FALLBACK_MACHINE_MEMORY`] is assumed); `None`:
    /// no budget.
    pub fn resolve(self, machine: Option<u64>) -> Option<usize> {
        let bytes = match self {
            Self::Bytes(0) => return None,
            Self::Bytes(n) => n,
            Self::Percent(p) => {
                let machine = u128::from(machine.unwrap_or(FALLBACK_MACHINE_MEMORY));
                u64::try_from(machine * u128::from(p) / 100).unwrap_or(u64::MAX)
            }
        };
        Some(usize::try_from(bytes).unwrap_or(usize::MAX))
    }
}

/// The machine's memory as this process may use it: the smaller of
/// `/proc/meminfo`'s `MemTotal` and the cgroup (v2) `memory.max`; `None`
/// if neither can be read.
pub fn machine_memory() -> Option<u64> {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| mem_total(&text));
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok());
    match (total, cgroup) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// `MemTotal` of `/proc/meminfo`'s text, in bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line
        .trim_start_matches("MemTotal:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

/// The default `max_memory_per_client`: a tenth of the budget, so that
/// one client identifier cannot spend it all (ten can).
pub const DEFAULT_MAX_MEMORY_PER_CLIENT: MaxMemory = MaxMemory::Percent(10);

impl MaxMemory {
    /// As `max_memory_per_client`: the bytes one client may hold, a
    /// percentage being of `budget` (the resolved `max_memory`); `None`:
    /// no share (0 bytes, or a percentage of no budget).
    pub fn share_of(self, budget: Option<usize>) -> Option<usize> {
        match self {
            Self::Bytes(0) => None,
            Self::Bytes(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            Self::Percent(p) => budget
                .map(|b| usize::try_from(b as u128 * u128::from(p) / 100).unwrap_or(usize::MAX)),
        }
    }
}

/// Reads `max_memory`: a number of bytes (0: no budget) or a string
/// `"N%"` (N from 1 to 100) of the machine's memory.
pub(super) fn max_memory<'de, D: Deserializer<'de>>(d: D) -> Result<MaxMemory, D::Error> {
    d.deserialize_any(Visitor("max_memory", "the machine's memory"))
}

/// Reads `max_memory_per_client`: a number of bytes (0: no share) or a
/// string `"N%"` (N from 1 to 100) of `max_memory`.
pub(super) fn max_memory_per_client<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<MaxMemory, D::Error> {
    d.deserialize_any(Visitor("max_memory_per_client", "max_memory"))
}

/// Bytes or a percentage: the setting's name and what the percentage is of.
struct Visitor(&'static str, &'static str);

impl de::Visitor<'_> for Visitor {
    type Value = MaxMemory;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a number of bytes, or a share of {} such as \"50%\"",
            self.1
        )
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<MaxMemory, E> {
        u64::try_from(v)
            .map(MaxMemory::Bytes)
            .map_err(|_| E::custom(format!("{} cannot be negative", self.0)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<MaxMemory, E> {
        Ok(MaxMemory::Bytes(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<MaxMemory, E> {
        let percent = v
            .trim()
            .strip_suffix('%')
            .and_then(|n| n.trim().parse::<u8>().ok())
            .filter(|p| (1..=100).contains(p));
        percent.map(MaxMemory::Percent).ok_or_else(|| {
            E::custom(format!(
                "`{v}` is not a percentage from 1% to 100% (or give a number of bytes)"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_percentage_is_of_the_machine_and_zero_bytes_is_no_budget() {
        assert_eq!(MaxMemory::Percent(50).resolve(Some(1000)), Some(500));
        assert_eq!(
            MaxMemory::Percent(50).resolve(None),
            Some(FALLBACK_MACHINE_MEMORY as usize / 2)
        );
        assert_eq!(MaxMemory::Bytes(4096).resolve(Some(1)), Some(4096));
        assert_eq!(MaxMemory::Bytes(0).resolve(Some(1000)), None);
    }

    #[test]
    fn a_client_share_is_of_the_budget_and_zero_bytes_is_none() {
        assert_eq!(MaxMemory::Percent(10).share_of(Some(1000)), Some(100));
        assert_eq!(MaxMemory::Percent(10).share_of(None), None);
        assert_eq!(MaxMemory::Bytes(4096).share_of(None), Some(4096));
        assert_eq!(MaxMemory::Bytes(0).share_of(Some(1000)), None);
    }

    #[test]
    fn mem_total_is_read_in_bytes() {
        let text = "MemTotal:       24000000 kB\nMemFree:        1000 kB\n";
        assert_eq!(mem_total(text), Some(24_000_000 * 1024));
        assert_eq!(mem_total("MemFree: 1 kB\n"), None);
        assert!(machine_memory().is_some(), "this test runs on Linux");
    }
}
