//! The `$SYS` topics, named and meant as mosquitto(8) names and means them
//! so dashboards carry over.
//!
//! As mosquitto does, every topic is a retained QoS 0 message, published at
//! the first tick and then only when its value changes (`uptime` changes
//! every tick); `version` is therefore published once.
//!
//! `load/*/1min|5min|15min` are mosquitto's moving averages: at each tick,
//! a counter's increase since the previous tick is scaled to a per-minute
//! rate `r`, and each average `a` moves towards it by
//! `a ← r + e·(a − r)` with `e = exp(−Δt / window)`, Δt the time since the
//! previous tick and window 60, 300 or 900 seconds (an exponentially
//! weighted average, like the Unix load average). The first tick publishes
//! 0.00; values are printed with two decimals and republished when they move
//! by 0.01 or more.

use super::{Broker, Stats};
use core::time::Duration;
use std::collections::BTreeMap;
use tern_codec::{MqttString, Publish, QoS};
use tern_session::Instant;

/// The three averaging windows, with the suffix mosquitto gives them.
const WINDOWS: [(&str, f64); 3] = [("1min", 60.0), ("5min", 300.0), ("15min", 900.0)];

/// Reads one counter from [`Stats`].
type Counter = fn(&Stats) -> u64;

/// The counters that have `load/...` averages: the topic (under
/// `$SYS/broker/load/`) and how to read the counter.
const LOADS: [(&str, Counter); 9] = [
    ("messages/received", |s| s.packets_received),
    ("messages/sent", |s| s.packets_sent),
    ("publish/dropped", |s| s.messages_dropped),
    ("publish/received", |s| s.messages_received),
    ("publish/sent", |s| s.messages_sent),
    ("bytes/received", |s| s.bytes_received),
    ("bytes/sent", |s| s.bytes_sent),
    ("sockets", |s| s.connections_total),
    ("connections", |s| s.connects_received),
];

/// One counter's three moving averages, in events per minute.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct LoadAverage {
    /// The 1, 5 and 15-minute averages.
    pub(crate) averages: [f64; 3],
}

impl LoadAverage {
    /// Moves the averages towards `per_minute`, the rate seen over the
    /// last `elapsed`.
    pub(crate) fn update(&mut self, per_minute: f64, elapsed: Duration) {
        let dt = elapsed.as_secs_f64();
        for (average, (_, window)) in self.averages.iter_mut().zip(WINDOWS) {
            let e = (-dt / window).exp();
            *average = per_minute + e * (*average - per_minute);
        }
    }
}

/// What `$SYS` remembers between ticks.
#[derive(Debug, Default)]
pub(crate) struct SysState {
    /// The previous tick: when, and the counters then.
    last: Option<(Instant, Stats)>,
    /// One per entry of [`LOADS`].
    loads: [LoadAverage; 9],
    /// The payload last published on each topic (under `$SYS/broker/`).
    published: BTreeMap<String, String>,
    /// The queues as the last tick found them.
    queues: QueueDepths,
}

/// Messages waiting in sessions' queues (online and offline), as counted at
/// the last `$SYS` tick: counting walks every session, so it is done once
/// per tick, never for a scrape.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueDepths {
    /// Messages queued, all sessions together.
    pub total: u64,
    /// The longest queue.
    pub longest: u64,
    /// Whose it is.
    pub longest_client: Option<String>,
    /// Messages with QoS > 0 sent and awaiting acknowledgement (mosquitto's
    /// `messages/inflight`), all sessions together.
    pub inflight: u64,
    /// Messages in store, as mosquitto's `store/messages/count` counts
    /// them: the retained ones, and the distinct messages sessions hold
    /// (waiting or in flight; a message queued for several sessions counts
    /// once).
    pub store_messages: u64,
    /// The payload bytes of those messages (`store/messages/bytes`).
    pub store_payload_bytes: u64,
}

impl Broker {
    /// Publishes the broker's state as retained messages under `$SYS/broker/`.
    pub(super) fn publish_sys(&mut self, now: Instant) {
        let s = self.stats;
        let uptime = (now - self.started).as_secs();
        let sessions = self.sessions.len() as u64;
        let mut values: Vec<(String, String)> = vec![
            (
                "version".into(),
                format!("tern {}", env!("CARGO_PKG_VERSION")),
            ),
            ("uptime".into(), format!("{uptime} seconds")),
            ("clients/connected".into(), s.clients_connected.to_string()),
            ("clients/total".into(), sessions.to_string()),
            (
                "clients/disconnected".into(),
                sessions.saturating_sub(s.clients_connected).to_string(),
            ),
            ("clients/maximum".into(), s.clients_maximum.to_string()),
            ("clients/expired".into(), s.sessions_expired.to_string()),
            ("messages/received".into(), s.packets_received.to_string()),
            ("messages/sent".into(), s.packets_sent.to_string()),
            (
                "publish/messages/received".into(),
                s.messages_received.to_string(),
            ),
            ("publish/messages/sent".into(), s.messages_sent.to_string()),
            (
                "publish/messages/dropped".into(),
                s.messages_dropped.to_string(),
            ),
            (
                "publish/bytes/received".into(),
                s.publish_received.total_payload_bytes().to_string(),
            ),
            (
                "publish/bytes/sent".into(),
                s.publish_sent.total_payload_bytes().to_string(),
            ),
            ("bytes/received".into(), s.bytes_received.to_string()),
            ("bytes/sent".into(), s.bytes_sent.to_string()),
            (
                "subscriptions/count".into(),
                self.subscriptions.len().to_string(),
            ),
            (
                "retained messages/count".into(),
                self.retained.len().to_string(),
            ),
            // mosquitto's message store: each message once, however many
            // clients it waits for, retained ones included; its bytes are
            // the payloads' (mosquitto(8)). A retained message also waiting
            // in a queue counts twice here (Tern keeps its own copy).
            ("store/messages/count".into(), self.count_held().to_string()),
            // Counted by the walk `store/messages/count` just made.
            (
                "store/messages/bytes".into(),
                self.sys.queues.store_payload_bytes.to_string(),
            ),
            (
                "messages/inflight".into(),
                self.sys.queues.inflight.to_string(),
            ),
            // Tern's own: requests refused by a resource limit (issue 13).
            (
                "limits/refused".into(),
                s.drops.limit_refusals().to_string(),
            ),
        ];
        // Tern's own, clustered only (issue 18): 1 while the cluster link
        // reaches NATS, else 0.
        if let Some(up) = self.cluster_connected() {
            values.push(("cluster/connected".into(), u8::from(up).to_string()));
        }
        values.extend(self.load_values(now, s));
        for (name, value) in values {
            self.publish_sys_value(now, name, value);
        }
    }

    /// Publishes one `$SYS/broker/` topic, retained, if its value changed.
    pub(super) fn publish_sys_value(&mut self, now: Instant, name: String, value: String) {
        let changed = self.sys.published.get(&name) != Some(&value);
        if !changed {
            return;
        }
        let Ok(topic) = MqttString::try_from(format!("$SYS/broker/{name}")) else {
            return;
        };
        let publish = Publish {
            qos: QoS::AtMostOnce,
            retain: true,
            topic,
            payload: value.clone().into(),
            ..Publish::default()
        };
        self.publish_message(now, None, publish);
        self.sys.published.insert(name, value);
    }

    /// Updates the load averages and returns their topics and values.
    fn load_values(&mut self, now: Instant, s: Stats) -> Vec<(String, String)> {
        if let Some((then, before)) = self.sys.last {
            let elapsed = now - then;
            if !elapsed.is_zero() {
                let per_minute = 60.0 / elapsed.as_secs_f64();
                for (load, (_, read)) in self.sys.loads.iter_mut().zip(LOADS) {
                    let delta = read(&s).saturating_sub(read(&before));
                    load.update(delta as f64 * per_minute, elapsed);
                }
            }
        }
        self.sys.last = Some((now, s));
        let mut values = Vec::with_capacity(LOADS.len() * WINDOWS.len());
        for (load, (name, _)) in self.sys.loads.iter().zip(LOADS) {
            for (average, (window, _)) in load.averages.iter().zip(WINDOWS) {
                values.push((format!("load/{name}/{window}"), format!("{average:.2}")));
            }
        }
        values
    }

    /// Counts every session's queue for [`queue_depths`](Self::queue_depths)
    /// (a walk of the sessions: the `$SYS` tick does it, and a shell that
    /// shows queue depths with `$SYS` off calls it on its own period).
    pub fn count_queues(&mut self) {
        self.count_held();
    }

    /// Counts every session's queue for [`queue_depths`](Self::queue_depths);
    /// returns the messages in store (see [`QueueDepths::store_messages`]).
    fn count_held(&mut self) -> u64 {
        let mut depths = QueueDepths::default();
        // Bodies seen in more than one place, by address: a body only this
        // session holds needs no entry.
        let mut shared = std::collections::BTreeSet::new();
        for (_, entry) in self.sessions.iter() {
            let session = match (&entry.offline, entry.conn) {
                (Some(s), _) => Some(&**s),
                (None, Some(conn)) => self.conns.get(conn.key()).and_then(|c| c.server.session()),
                (None, None) => None,
            };
            let (len, inflight) = session.map_or((0, 0), |s| (s.queue_len(), s.inflight_len()));
            for body in session.into_iter().flat_map(|s| s.held_bodies()) {
                let once = std::sync::Arc::strong_count(body) == 1
                    || shared.insert(std::sync::Arc::as_ptr(body) as usize);
                if once {
                    depths.store_messages += 1;
                    depths.store_payload_bytes += body.payload.len() as u64;
                }
            }
            depths.inflight += inflight as u64;
            let len = len as u64;
            depths.total += len;
            if len > depths.longest {
                depths.longest = len;
                depths.longest_client = Some(entry.client_id.as_str().to_string());
            }
        }
        depths.store_messages += self.retained.len() as u64;
        depths.store_payload_bytes += self.retained.payload_bytes() as u64;
        let stored = depths.store_messages;
        self.sys.queues = depths;
        stored
    }

    /// The sessions' queues as the last `$SYS` tick or
    /// [`count_queues`](Self::count_queues) counted them (all zero before
    /// either).
    pub fn queue_depths(&self) -> &QueueDepths {
        &self.sys.queues
    }

    /// The busiest topics of client PUBLISH traffic, busiest first: at most
    /// 16, estimated from a sample, recent traffic weighing most.
    pub fn top_topics(&self) -> Vec<super::TopTopic> {
        self.top_topics.top()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_rate_is_approached_as_mosquitto_does() {
        let mut load = LoadAverage::default();
        // 10 events every 10 s: 60 a minute.
        for _ in 0..6 {
            load.update(60.0, Duration::from_secs(10));
        }
        // After one minute the 1-minute average is 1 - 1/e of the way there.
        let expected = 60.0 * (1.0 - (-1.0f64).exp());
        assert!((load.averages[0] - expected).abs() < 1e-9, "{load:?}");
        // Longer windows move more slowly.
        assert!(load.averages[1] < load.averages[0]);
        assert!(load.averages[2] < load.averages[1]);
        // And all of them decay towards zero when traffic stops.
        let before = load.averages;
        load.update(0.0, Duration::from_secs(60));
        for (now, then) in load.averages.iter().zip(before) {
            assert!(*now < then);
        }
    }

    #[test]
    fn a_tick_width_does_not_change_the_average() {
        // The same traffic seen in 1 s or 10 s ticks gives the same average.
        let mut fine = LoadAverage::default();
        for _ in 0..100 {
            fine.update(120.0, Duration::from_secs(1));
        }
        let mut coarse = LoadAverage::default();
        for _ in 0..10 {
            coarse.update(120.0, Duration::from_secs(10));
        }
        for (a, b) in fine.averages.iter().zip(coarse.averages) {
            assert!((a - b).abs() < 1e-9, "{fine:?} {coarse:?}");
        }
    }
}
