//! What each bridge reports for `/metrics` and `/api/stats`: whether it is
//! connected to its remote, the messages it forwarded and dropped each way,
//! and how often it connected again.
//!
//! The bridges run outside this crate (tern-bridge), as clients; they reach
//! the broker through a [`LocalConnector`](super::LocalConnector), which
//! also hands each one its [`BridgeStats`] by name. The counters are
//! atomics the bridge's tasks bump as they go; a scrape reads them beside
//! the core's [`Snapshot`](super::metrics::Snapshot) without asking the core
//! task, and its cost grows with the number of bridges, never with the
//! number of sessions.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

/// One bridge's counters. Cheap to bump from any task.
#[derive(Debug, Default)]
pub struct BridgeStats {
    connected: AtomicBool,
    ever_connected: AtomicBool,
    reconnects: AtomicU64,
    forwarded_in: AtomicU64,
    forwarded_out: AtomicU64,
    dropped_in: AtomicU64,
    dropped_out: AtomicU64,
}

/// Which way a message crossed a bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BridgeDirection {
    /// From the remote broker to this one.
    In,
    /// From this broker to the remote one.
    Out,
}

impl BridgeStats {
    /// The bridge connected to its remote: the gauge goes to 1, and every
    /// connection after the bridge's first counts as a reconnect.
    pub fn connected(&self) {
        self.connected.store(true, Ordering::Relaxed);
        if self.ever_connected.swap(true, Ordering::Relaxed) {
            self.reconnects.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The bridge lost its remote (or stopped): the gauge goes to 0.
    pub fn disconnected(&self) {
        self.connected.store(false, Ordering::Relaxed);
    }

    /// A message reached the other side (QoS 0: was handed to its client).
    pub fn forwarded(&self, direction: BridgeDirection) {
        self.counter(direction, true)
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A message the other side refused, or that it could not carry.
    pub fn dropped(&self, direction: BridgeDirection) {
        self.counter(direction, false)
            .fetch_add(1, Ordering::Relaxed);
    }

    fn counter(&self, direction: BridgeDirection, forwarded: bool) -> &AtomicU64 {
        match (direction, forwarded) {
            (BridgeDirection::In, true) => &self.forwarded_in,
            (BridgeDirection::Out, true) => &self.forwarded_out,
            (BridgeDirection::In, false) => &self.dropped_in,
            (BridgeDirection::Out, false) => &self.dropped_out,
        }
    }

    /// The values now.
    pub fn read(&self) -> BridgeCounts {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        BridgeCounts {
            connected: self.connected.load(Ordering::Relaxed),
            reconnects: get(&self.reconnects),
            forwarded_in: get(&self.forwarded_in),
            forwarded_out: get(&self.forwarded_out),
            dropped_in: get(&self.dropped_in),
            dropped_out: get(&self.dropped_out),
        }
    }
}

/// One bridge's counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BridgeCounts {
    /// Connected to the remote broker now.
    pub connected: bool,
    /// Connections to the remote after the bridge's first.
    pub reconnects: u64,
    /// Messages forwarded from the remote to this broker.
    pub forwarded_in: u64,
    /// Messages forwarded from this broker to the remote.
    pub forwarded_out: u64,
    /// Messages from the remote this broker refused or could not take.
    pub dropped_in: u64,
    /// Messages for the remote it refused or could not take.
    pub dropped_out: u64,
}

/// The bridges' counters by name, shared by the connector (which hands
/// them out) and the monitoring listener (which reads them).
#[derive(Debug, Clone, Default)]
pub(crate) struct BridgeRegistry(Arc<Mutex<BTreeMap<String, Arc<BridgeStats>>>>);

impl BridgeRegistry {
    /// The counters of the bridge called `name`: the same ones again for a
    /// bridge started again under that name (a SIGHUP that changed it), so
    /// its counters keep counting.
    pub(crate) fn get(&self, name: &str) -> Arc<BridgeStats> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(name.to_string()).or_default().clone()
    }

    /// Forgets a bridge that was removed from the settings.
    pub(crate) fn remove(&self, name: &str) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(name);
    }

    /// Every bridge's counters, by name.
    pub(crate) fn read(&self) -> Vec<(String, BridgeCounts)> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(n, s)| (n.clone(), s.read())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnects_count_connections_after_the_first() {
        let registry = BridgeRegistry::default();
        let s = registry.get("b");
        assert_eq!(s.read(), BridgeCounts::default());
        s.connected();
        assert_eq!((s.read().connected, s.read().reconnects), (true, 0));
        s.disconnected();
        assert!(!s.read().connected);
        s.connected();
        s.connected();
        assert_eq!((s.read().connected, s.read().reconnects), (true, 2));
        s.forwarded(BridgeDirection::In);
        s.forwarded(BridgeDirection::Out);
        s.forwarded(BridgeDirection::Out);
        s.dropped(BridgeDirection::In);
        let c = registry.get("b").read();
        assert_eq!(
            (c.forwarded_in, c.forwarded_out, c.dropped_in, c.dropped_out),
            (1, 2, 1, 0)
        );
        registry.get("a");
        let names: Vec<String> = registry.read().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["a", "b"]);
        registry.remove("b");
        assert_eq!(registry.read().len(), 1);
    }
}
