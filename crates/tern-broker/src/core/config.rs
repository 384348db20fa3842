//! The broker core's settings.

use core::time::Duration;
use tern_session::ServerConfig;

/// How the broker core behaves. Protocol limits (Receive Maximum, maximum
/// packet size, maximum QoS, retain availability, topic aliases, queue
/// bounds, keep alive) live in [`ServerConfig`] and apply to every connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerConfig {
    /// Per-connection protocol limits.
    pub server: ServerConfig,
    /// Queue QoS 0 messages for offline persistent sessions (mosquitto's
    /// `queue_qos0_messages`; off by default).
    pub queue_qos0_offline: bool,
    /// How often to publish the `$SYS` topics; `None` turns them off.
    pub sys_interval: Option<Duration>,
    /// Prefix of client identifiers the broker assigns.
    pub assigned_id_prefix: String,
    /// Stop reading a publisher whose message half-filled an online
    /// subscriber's queue, until that queue drains, for at most this long
    /// (see [`Broker::is_blocked`](crate::Broker::is_blocked)); `None`
    /// (the default) never blocks, and a full queue drops.
    pub publisher_backpressure: Option<Duration>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            server: ServerConfig {
                // The broker acknowledges after routing, so MQTT 5 clients
                // learn when no one subscribed (0x10).
                manual_acks: true,
                // Topic aliases both ways: as many towards a client as a
                // client may use towards us (and never more than it allows).
                outgoing_topic_aliases: ServerConfig::default().topic_alias_maximum,
                ..ServerConfig::default()
            },
            queue_qos0_offline: false,
            sys_interval: Some(Duration::from_secs(10)),
            assigned_id_prefix: "tern-".to_string(),
            publisher_backpressure: None,
        }
    }
}
