//! What `/metrics` and the dashboard show: a [`Snapshot`] of the core's
//! counters, copied by the core task on request (a few hundred bytes,
//! whatever the number of sessions), rendered here in the OpenMetrics text
//! format (with prometheus-client) or as JSON.
//!
//! Names follow EMQX's where EMQX has one (`emqx_messages_received` is
//! `tern_messages_received_total`), in base units with the unit in the name,
//! counters ending in `_total`. README's "Operating the broker" lists them.

use super::{BridgeCounts, ClusterCounts};
use crate::{QueueDepths, Stats, TopTopic};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge},
    registry::{Registry, Unit},
};
use std::fmt::Write as _;

/// The core's state at one moment: counters and gauges, no per-session data.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// The counters.
    pub stats: Stats,
    /// Network connections open (before and after CONNECT).
    pub sockets: u64,
    /// Sessions, online and offline.
    pub sessions: u64,
    /// Subscriptions.
    pub subscriptions: u64,
    /// Retained messages.
    pub retained: u64,
    /// The bytes the memory budget counts (`Broker::memory_use`).
    pub memory: u64,
    /// Sessions' queues, as last counted (the `$SYS` tick, or every 10 s).
    pub queues: QueueDepths,
    /// Seconds since the broker started.
    pub uptime: f64,
    /// The busiest topics, busiest first (see `Broker::top_topics`).
    pub top_topics: Vec<TopTopic>,
    /// Each bridge's counters, by name (read beside the core's, not by it).
    pub bridges: Vec<(String, BridgeCounts)>,
    /// The cluster link's figures, with `--cluster` (read beside the core's).
    pub cluster: Option<ClusterCounts>,
    /// The durable store's state (`/health`).
    pub storage: StorageState,
}

/// The durable store's state, as `/health` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StorageState {
    /// No data directory: state is kept in memory only.
    #[default]
    Memory,
    /// A data directory, and every write so far succeeded.
    Ok,
    /// A write failed: acknowledgements that need the store have stopped.
    Failed(String),
}

/// `/health`: 200 with `ok` and the storage state, or 503 once the store
/// has failed (the broker no longer acknowledges what needs it).
pub fn render_health(snapshot: &Snapshot) -> (u16, String) {
    match &snapshot.storage {
        StorageState::Memory => (200, "ok\nstorage: memory\n".into()),
        StorageState::Ok => (200, "ok\nstorage: ok\n".into()),
        StorageState::Failed(e) => (503, format!("storage failed: {e}\n")),
    }
}

/// The OpenMetrics content type of [`render_metrics`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

const QOS: [&str; 3] = ["0", "1", "2"];

/// `/metrics`: the snapshot in the OpenMetrics text format.
pub fn render_metrics(snapshot: &Snapshot) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SnapshotCollector(snapshot.clone())));
    let mut text = String::with_capacity(8 * 1024);
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    text
}

/// Hands prometheus-client the snapshot's values at encoding time.
#[derive(Debug)]
struct SnapshotCollector(Snapshot);

fn gauge(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let g = ConstGauge::new(v as i64);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

fn counter(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    v: u64,
) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, unit, c.metric_type())?)
}

/// A counter with one label, one sample per `(label value, value)`.
fn labelled(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    label: &'static str,
    values: &[(&'static str, u64)],
) -> std::fmt::Result {
    let kind = ConstCounter::new(0u64).metric_type();
    let mut m = e.encode_descriptor(name, help, unit, kind)?;
    for &(value, n) in values {
        let labels = [(label, value)];
        ConstCounter::new(n).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn by_qos(values: [u64; 3]) -> [(&'static str, u64); 3] {
    [
        (QOS[0], values[0]),
        (QOS[1], values[1]),
        (QOS[2], values[2]),
    ]
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> std::fmt::Result {
        let s = &self.0;
        let t = &s.stats;
        let e = &mut e;
        gauge(
            e,
            "tern_connections",
            "Clients connected (CONNECT accepted).",
            t.clients_connected,
        )?;
        gauge(
            e,
            "tern_sockets",
            "Network connections open, before and after CONNECT.",
            s.sockets,
        )?;
        gauge(
            e,
            "tern_sessions",
            "Sessions, online and offline.",
            s.sessions,
        )?;
        gauge(e, "tern_subscriptions", "Subscriptions.", s.subscriptions)?;
        gauge(
            e,
            "tern_retained_messages",
            "Retained messages.",
            s.retained,
        )?;
        gauge(
            e,
            "tern_memory_bytes",
            "Bytes clients make the broker hold, as max_memory counts them.",
            s.memory,
        )?;
        gauge(
            e,
            "tern_connections_max",
            "The most clients connected at once since start.",
            t.clients_maximum,
        )?;
        counter(
            e,
            "tern_sockets_accepted",
            "Network connections accepted.",
            None,
            t.connections_total,
        )?;
        counter(
            e,
            "tern_client_connect",
            "CONNECT packets received.",
            None,
            t.connects_received,
        )?;
        counter(
            e,
            "tern_auth_checks",
            "CONNECT password checks run off the routing task.",
            None,
            t.auth_checks,
        )?;
        counter(
            e,
            "tern_sessions_expired",
            "Offline sessions ended by their expiry interval.",
            None,
            t.sessions_expired,
        )?;
        counter(
            e,
            "tern_packets_received",
            "MQTT packets of every type received.",
            None,
            t.packets_received,
        )?;
        counter(
            e,
            "tern_packets_sent",
            "MQTT packets of every type sent.",
            None,
            t.packets_sent,
        )?;
        counter(
            e,
            "tern_received",
            "Bytes received from clients.",
            Some(&Unit::Bytes),
            t.bytes_received,
        )?;
        counter(
            e,
            "tern_sent",
            "Bytes sent to clients.",
            Some(&Unit::Bytes),
            t.bytes_sent,
        )?;
        labelled(
            e,
            "tern_messages_received",
            "PUBLISH packets received from clients, by QoS.",
            None,
            "qos",
            &by_qos(t.publish_received.messages),
        )?;
        labelled(
            e,
            "tern_messages_sent",
            "PUBLISH packets sent to clients, by QoS.",
            None,
            "qos",
            &by_qos(t.publish_sent.messages),
        )?;
        labelled(
            e,
            "tern_messages_received_payload",
            "Payload bytes of PUBLISH packets received, by QoS.",
            Some(&Unit::Bytes),
            "qos",
            &by_qos(t.publish_received.payload_bytes),
        )?;
        labelled(
            e,
            "tern_messages_sent_payload",
            "Payload bytes of PUBLISH packets sent, by QoS.",
            Some(&Unit::Bytes),
            "qos",
            &by_qos(t.publish_sent.payload_bytes),
        )?;
        labelled(
            e,
            "tern_messages_dropped",
            "Messages dropped or requests refused, by reason: queue_full, too_large, \
             expired (per subscriber), no_subscribers, quota, not_authorized (per \
             PUBLISH), and the resource limits: topic_limit (PUBLISH or will), \
             subscription_limit (SUBSCRIBE filter), retained_limit (not retained), \
             queue_limit (PUBLISH refused 0x97), connection_rate_limit (CONNECT \
             refused 0x9F), memory_limit (max_memory), client_memory_limit \
             (max_memory_per_client).",
            None,
            "reason",
            &t.drops.by_reason(),
        )?;
        gauge(
            e,
            "tern_messages_queued",
            "Messages waiting in sessions' queues (counted at each $SYS tick, at least every 10 s).",
            s.queues.total,
        )?;
        gauge(
            e,
            "tern_messages_inflight",
            "Messages with QoS > 0 sent and awaiting acknowledgement (counted with the queues).",
            s.queues.inflight,
        )?;
        gauge(
            e,
            "tern_store_messages",
            "Messages in store as mosquitto's $SYS/broker/store/messages/count counts them: \
             retained ones, and each message waiting or in flight for sessions once however \
             many it waits for (counted with the queues).",
            s.queues.store_messages,
        )?;
        let g = ConstGauge::new(s.queues.store_payload_bytes as i64);
        g.encode(e.encode_descriptor(
            "tern_store_payload",
            "Payload bytes of those messages ($SYS/broker/store/messages/bytes).",
            Some(&Unit::Bytes),
            g.metric_type(),
        )?)?;
        if !s.bridges.is_empty() {
            bridges(e, &s.bridges)?;
        }
        if let Some(c) = &s.cluster {
            cluster(e, c)?;
        }
        Ok(())
    }
}

/// The `tern_cluster_*` families (with `--cluster`).
fn cluster(e: &mut DescriptorEncoder<'_>, c: &ClusterCounts) -> std::fmt::Result {
    gauge(
        e,
        "tern_cluster_connected",
        "1 while the cluster link is connected to a NATS server, else 0.",
        u64::from(c.connected),
    )?;
    counter(
        e,
        "tern_cluster_messages_forwarded",
        "Messages published to the other nodes over NATS.",
        None,
        c.forwarded,
    )?;
    counter(
        e,
        "tern_cluster_messages_received",
        "Messages from other nodes handed to this broker.",
        None,
        c.received,
    )?;
    counter(
        e,
        "tern_cluster_messages_dropped",
        "Messages for other nodes dropped because the link was behind (its queue full).",
        None,
        c.dropped,
    )
}

/// The `tern_bridge_*` families, one sample per bridge (and direction).
fn bridges(e: &mut DescriptorEncoder<'_>, bridges: &[(String, BridgeCounts)]) -> std::fmt::Result {
    let kind = ConstGauge::new(0i64).metric_type();
    let mut m = e.encode_descriptor(
        "tern_bridge_connected",
        "1 while the bridge is connected to its remote broker, else 0.",
        None,
        kind,
    )?;
    for (name, c) in bridges {
        let labels = [("bridge", name.as_str())];
        ConstGauge::new(i64::from(c.connected)).encode(m.encode_family(&labels)?)?;
    }
    let kind = ConstCounter::new(0u64).metric_type();
    let mut m = e.encode_descriptor(
        "tern_bridge_reconnects",
        "Connections to the remote broker after the bridge's first.",
        None,
        kind,
    )?;
    for (name, c) in bridges {
        let labels = [("bridge", name.as_str())];
        ConstCounter::new(c.reconnects).encode(m.encode_family(&labels)?)?;
    }
    for (family, help, values) in [
        (
            "tern_bridge_messages_forwarded",
            "Messages a bridge delivered to the other side, by direction \
             (in: remote to here; out: here to remote).",
            (|c: &BridgeCounts| [c.forwarded_in, c.forwarded_out]) as fn(&BridgeCounts) -> [u64; 2],
        ),
        (
            "tern_bridge_messages_dropped",
            "Messages the other side refused or could not carry, by direction.",
            |c: &BridgeCounts| [c.dropped_in, c.dropped_out],
        ),
    ] {
        let mut m = e.encode_descriptor(family, help, None, kind)?;
        for (name, c) in bridges {
            for (direction, n) in ["in", "out"].into_iter().zip(values(c)) {
                let labels = [("bridge", name.as_str()), ("direction", direction)];
                ConstCounter::new(n).encode(m.encode_family(&labels)?)?;
            }
        }
    }
    Ok(())
}

/// `/api/stats`: the snapshot as JSON, for the dashboard.
pub fn render_json(s: &Snapshot) -> String {
    let t = &s.stats;
    let mut out = String::with_capacity(1024);
    let _ = write!(
        out,
        "{{\"uptime\":{:.3},\"connections\":{},\"sockets\":{},\"sessions\":{},\
         \"subscriptions\":{},\"retained\":{},\"queued\":{},\"queue_longest\":{},\
         \"messages_received\":{},\"messages_sent\":{},\"bytes_received\":{},\
         \"bytes_sent\":{},\"dropped\":{{",
        s.uptime,
        t.clients_connected,
        s.sockets,
        s.sessions,
        s.subscriptions,
        s.retained,
        s.queues.total,
        s.queues.longest,
        t.messages_received,
        t.messages_sent,
        t.bytes_received,
        t.bytes_sent,
    );
    for (i, (reason, n)) in t.drops.by_reason().iter().enumerate() {
        let comma = if i > 0 { "," } else { "" };
        let _ = write!(out, "{comma}\"{reason}\":{n}");
    }
    out.push_str("},\"queue_longest_client\":");
    match &s.queues.longest_client {
        Some(client) => json_string(&mut out, client),
        None => out.push_str("null"),
    }
    out.push_str(",\"top_topics\":[");
    for (i, topic) in s.top_topics.iter().enumerate() {
        let comma = if i > 0 { "," } else { "" };
        let _ = write!(out, "{comma}{{\"topic\":");
        json_string(&mut out, &topic.topic);
        let _ = write!(out, ",\"messages\":{}}}", topic.messages);
    }
    out.push_str("],\"bridges\":[");
    for (i, (name, c)) in s.bridges.iter().enumerate() {
        let comma = if i > 0 { "," } else { "" };
        let _ = write!(out, "{comma}{{\"name\":");
        json_string(&mut out, name);
        let _ = write!(
            out,
            ",\"connected\":{},\"reconnects\":{},\"forwarded_in\":{},\"forwarded_out\":{},\
             \"dropped_in\":{},\"dropped_out\":{}}}",
            c.connected, c.reconnects, c.forwarded_in, c.forwarded_out, c.dropped_in, c.dropped_out
        );
    }
    out.push_str("],\"cluster\":");
    match &s.cluster {
        Some(c) => {
            let _ = write!(
                out,
                "{{\"connected\":{},\"forwarded\":{},\"received\":{},\"dropped\":{}}}",
                c.connected, c.forwarded, c.received, c.dropped
            );
        }
        None => out.push_str("null"),
    }
    out.push('}');
    out
}

/// Appends `s` as a JSON string.
fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '<' || c == '>' || c == '&' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_is_503_once_the_store_failed() {
        let mut s = Snapshot::default();
        assert_eq!(render_health(&s), (200, "ok\nstorage: memory\n".into()));
        s.storage = StorageState::Ok;
        assert_eq!(render_health(&s), (200, "ok\nstorage: ok\n".into()));
        s.storage = StorageState::Failed("disk full".into());
        assert_eq!(
            render_health(&s),
            (503, "storage failed: disk full\n".into())
        );
    }

    #[test]
    fn every_family_renders_with_base_units_and_total() {
        let mut s = Snapshot::default();
        s.stats.publish_received.messages = [3, 2, 1];
        s.stats.drops.queue_full = 7;
        s.stats.bytes_received = 99;
        s.sessions = 5;
        let text = render_metrics(&s);
        for line in [
            "tern_messages_received_total{qos=\"0\"} 3",
            "tern_messages_received_total{qos=\"2\"} 1",
            "tern_messages_dropped_total{reason=\"queue_full\"} 7",
            "tern_received_bytes_total 99",
            "tern_sessions 5",
            "# TYPE tern_received_bytes counter",
            "# UNIT tern_received_bytes bytes",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(
            !text.contains("tern_bridge"),
            "no bridges, no families:\n{text}"
        );
    }

    #[test]
    fn bridges_render_by_name_and_direction() {
        let s = Snapshot {
            bridges: vec![(
                "edge\"1".into(),
                BridgeCounts {
                    connected: true,
                    reconnects: 2,
                    forwarded_in: 3,
                    forwarded_out: 4,
                    dropped_in: 0,
                    dropped_out: 5,
                },
            )],
            ..Snapshot::default()
        };
        let text = render_metrics(&s);
        for line in [
            "# TYPE tern_bridge_connected gauge",
            "tern_bridge_connected{bridge=\"edge\\\"1\"} 1",
            "tern_bridge_reconnects_total{bridge=\"edge\\\"1\"} 2",
            "tern_bridge_messages_forwarded_total{bridge=\"edge\\\"1\",direction=\"in\"} 3",
            "tern_bridge_messages_forwarded_total{bridge=\"edge\\\"1\",direction=\"out\"} 4",
            "tern_bridge_messages_dropped_total{bridge=\"edge\\\"1\",direction=\"out\"} 5",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
        let json = render_json(&s);
        assert!(
            json.ends_with(
                r#""bridges":[{"name":"edge\"1","connected":true,"reconnects":2,"forwarded_in":3,"forwarded_out":4,"dropped_in":0,"dropped_out":5}],"cluster":null}"#
            ),
            "{json}"
        );
    }

    #[test]
    fn the_cluster_renders_only_when_clustered() {
        assert!(!render_metrics(&Snapshot::default()).contains("tern_cluster"));
        let s = Snapshot {
            cluster: Some(ClusterCounts {
                connected: false,
                forwarded: 3,
                received: 4,
                dropped: 5,
            }),
            ..Snapshot::default()
        };
        let text = render_metrics(&s);
        for line in [
            "tern_cluster_connected 0",
            "tern_cluster_messages_forwarded_total 3",
            "tern_cluster_messages_received_total 4",
            "tern_cluster_messages_dropped_total 5",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
        assert!(
            render_json(&s).ends_with(
                r#""cluster":{"connected":false,"forwarded":3,"received":4,"dropped":5}}"#
            ),
            "{}",
            render_json(&s)
        );
    }

    #[test]
    fn json_escapes_topics() {
        let s = Snapshot {
            top_topics: vec![TopTopic {
                topic: "a\"b</script>".into(),
                messages: 4,
            }],
            ..Snapshot::default()
        };
        let json = render_json(&s);
        assert!(
            json.contains(r#"{"topic":"a\"b\u003c/script\u003e","messages":4}"#),
            "{json}"
        );
    }
}
