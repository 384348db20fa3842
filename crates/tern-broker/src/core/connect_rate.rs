//! Connections per second from one source address, and into one listener:
//! each address may open `connections_per_second_per_address` connections,
//! and each listener take `connections_per_second_per_listener`, in any
//! one-second window (counted from its first connection in the window);
//! the ones beyond either are answered at their CONNECT with CONNACK 0x9F Connection rate
//! exceeded (MQTT 3.1.1: return code 3, Server unavailable), counted as a
//! [`Limit::ConnectionRate`](super::Limit::ConnectionRate) (or
//! [`Limit::ListenerConnectionRate`](super::Limit::ListenerConnectionRate)) refusal, and
//! closed. Refused connections count too: a client that retries without
//! pause stays refused until it slows down.
//!
//! The windows are maps by address and by listener, pruned of windows that
//! have ended once one holds [`PRUNE_AT`] keys, so it holds at most the
//! keys seen in the last second (and at least that many are needed to grow
//! it).

use super::{Broker, ConnId, Limit, Refusal};
use core::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};
use std::collections::BTreeMap;
use tern_codec::{Connect, ReasonCode};
use tern_session::Instant;

/// The window.
const SECOND: Duration = Duration::from_secs(1);
/// Addresses held before ended windows are pruned.
const PRUNE_AT: usize = 1024;

/// Each address's and each listener's current window.
#[derive(Debug, Default)]
pub(super) struct ConnectRate {
    windows: Windows<IpAddr>,
    listeners: Windows<SocketAddr>,
}

/// One window per key.
#[derive(Debug)]
struct Windows<K>(BTreeMap<K, Window>);

impl<K> Default for Windows<K> {
    fn default() -> Self {
        Self(BTreeMap::new())
    }
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    count: u32,
}

impl ConnectRate {
    /// Counts a connection from `source` at `now`; whether it is within
    /// `per_second`.
    fn admit(&mut self, now: Instant, source: IpAddr, per_second: u32) -> bool {
        self.windows.admit(now, source, per_second)
    }

    /// Counts a connection into `listener` at `now`; whether it is within
    /// `per_second`.
    fn admit_listener(&mut self, now: Instant, listener: SocketAddr, per_second: u32) -> bool {
        self.listeners.admit(now, listener, per_second)
    }

    /// Addresses held (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.windows.0.len()
    }
}

impl<K: Ord> Windows<K> {
    /// Counts one for `key` at `now`; whether it is within `per_second`.
    fn admit(&mut self, now: Instant, key: K, per_second: u32) -> bool {
        if self.0.len() >= PRUNE_AT {
            self.0.retain(|_, w| now < w.start + SECOND);
        }
        let window = self.0.entry(key).or_insert(Window {
            start: now,
            count: 0,
        });
        if now >= window.start + SECOND {
            *window = Window {
                start: now,
                count: 0,
            };
        }
        window.count = window.count.saturating_add(1);
        window.count <= per_second
    }
}

impl Broker {
    /// A new network connection from `source` (the peer's address); as
    /// [`accept`](Self::accept), and counted against
    /// [`BrokerConfig::connections_per_second_per_address`](super::BrokerConfig::connections_per_second_per_address):
    /// one over it is refused at its CONNECT.
    pub fn accept_from(&mut self, now: Instant, source: IpAddr) -> ConnId {
        self.accept_rated(now, source, None)
    }

    /// A new network connection from `source` into the listener bound to
    /// `listener`; as [`accept_from`](Self::accept_from), and counted
    /// against
    /// [`BrokerConfig::connections_per_second_per_listener`](super::BrokerConfig::connections_per_second_per_listener)
    /// too: one over either is refused at its CONNECT.
    pub fn accept_on(&mut self, now: Instant, source: IpAddr, listener: SocketAddr) -> ConnId {
        self.accept_rated(now, source, Some(listener))
    }

    fn accept_rated(
        &mut self,
        now: Instant,
        source: IpAddr,
        listener: Option<SocketAddr>,
    ) -> ConnId {
        let conn = self.accept(now);
        // Both windows count the connection, so neither is bypassed by
        // the other refusing it.
        let by_address = self
            .config
            .connections_per_second_per_address
            .is_none_or(|rate| self.connect_rate.admit(now, source, rate.get()));
        let by_listener = match (listener, self.config.connections_per_second_per_listener) {
            (Some(listener), Some(rate)) => {
                self.connect_rate.admit_listener(now, listener, rate.get())
            }
            _ => true,
        };
        let over = if !by_address {
            Some(Limit::ConnectionRate)
        } else if !by_listener {
            Some(Limit::ListenerConnectionRate)
        } else {
            None
        };
        if let Some(c) = self.conns.get_mut(conn.key()) {
            c.over_rate = over;
        }
        conn
    }

    /// Refuses the CONNECT of a connection over its address's rate; `true`
    /// if it was.
    pub(super) fn refuse_over_rate(
        &mut self,
        now: Instant,
        conn: ConnId,
        connect: &Connect,
    ) -> bool {
        let Some(c) = self.conns.get_mut(conn.key()) else {
            return false;
        };
        let Some(limit) = c.over_rate else {
            return false;
        };
        let code = ReasonCode::ConnectionRateExceeded;
        let _ = c.server.reject(now, code);
        let client_id = super::compact(&connect.client_id);
        self.limit_refused_as(conn, client_id, limit, Refusal::Connect, code);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::ZERO + Duration::from_millis(ms)
    }

    #[test]
    fn each_address_gets_its_rate_per_window() {
        let mut r = ConnectRate::default();
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        assert!(r.admit(at(0), a, 2));
        assert!(r.admit(at(10), a, 2));
        assert!(!r.admit(at(20), a, 2), "a third in the same second");
        assert!(r.admit(at(20), b, 2), "another address has its own");
        assert!(!r.admit(at(999), a, 2));
        assert!(r.admit(at(1000), a, 2), "a new window");
    }

    #[test]
    fn each_listener_gets_its_rate_from_all_addresses() {
        let mut r = ConnectRate::default();
        let l1: SocketAddr = ([127, 0, 0, 1], 1883).into();
        let l2: SocketAddr = ([127, 0, 0, 1], 8883).into();
        assert!(r.admit_listener(at(0), l1, 2));
        assert!(r.admit_listener(at(5), l1, 2));
        assert!(
            !r.admit_listener(at(10), l1, 2),
            "a third in the same second"
        );
        assert!(
            r.admit_listener(at(10), l2, 2),
            "another listener has its own"
        );
        assert!(r.admit_listener(at(1005), l1, 2), "a new window");
    }

    #[test]
    fn ended_windows_are_pruned() {
        let mut r = ConnectRate::default();
        for i in 0..PRUNE_AT as u32 {
            assert!(r.admit(at(0), IpAddr::from(i.to_be_bytes()), 1));
        }
        assert_eq!(r.len(), PRUNE_AT);
        r.admit(at(1000), [192, 0, 2, 1].into(), 1);
        assert_eq!(r.len(), 1, "only the address of the live window");
    }
}
