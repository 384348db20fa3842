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
    /// How much output a connection may have outstanding (handed to the
    /// shell and not reported written with
    /// [`Broker::handle_written`](crate::Broker::handle_written)); `None`
    /// trusts the shell to take everything (a shell that never reports
    /// writes must say so here).
    pub output_credit: Option<OutputCredit>,
    /// The most levels a PUBLISH topic or SUBSCRIBE filter may have (see
    /// [`DEFAULT_MAX_TOPIC_LEVELS`](crate::DEFAULT_MAX_TOPIC_LEVELS)).
    pub max_topic_levels: usize,
    /// The most bytes a PUBLISH topic, will topic or SUBSCRIBE filter may
    /// have (see [`DEFAULT_MAX_TOPIC_LENGTH`](crate::DEFAULT_MAX_TOPIC_LENGTH)).
    pub max_topic_length: usize,
    /// How many retained messages, and bytes of them, the broker keeps.
    pub retained: super::RetainedLimits,
    /// The most subscriptions one session may hold.
    pub max_subscriptions: usize,
    /// Emit storage operations ([`Broker::poll_store`](crate::Broker::poll_store))
    /// and hold the acknowledgements that promise them until the shell
    /// reports them synced ([`Broker::handle_store_synced`](crate::Broker::handle_store_synced)).
    /// Off by default: then nothing is emitted or held.
    pub durable: bool,
    /// Connections one source address may open per second (see
    /// [`Broker::accept_from`](crate::Broker::accept_from)); more are
    /// refused at their CONNECT with 0x9F Connection rate exceeded (MQTT
    /// 3.1.1: return code 3). `None` (the default): no limit.
    pub connections_per_second_per_address: Option<core::num::NonZeroU32>,
    /// Connections one listener (by its local address) may take per second
    /// (see [`Broker::accept_on`](crate::Broker::accept_on)), from all
    /// sources together; more are refused as for
    /// [`connections_per_second_per_address`](Self::connections_per_second_per_address).
    /// `None` (the default): no limit.
    pub connections_per_second_per_listener: Option<core::num::NonZeroU32>,
    /// mosquitto's `clientid_prefixes`: only client identifiers starting
    /// with this may connect (an assigned one included); others are
    /// refused with 0x85 Client Identifier not valid (MQTT 3.1.1: return
    /// code 2) and closed [MQTT-3.1.3-8]. `None` (the default): any.
    pub client_id_prefix: Option<String>,
    /// Take part in a cluster: count local interest and hand out messages
    /// other nodes want ([`Broker::poll_cluster`](crate::Broker::poll_cluster)).
    /// Off by default: then nothing is counted, matched or emitted.
    pub cluster: bool,
    /// The broker-wide memory budget, in bytes, as `memory.rs` counts them
    /// ([`Broker::memory_use`](crate::Broker::memory_use)): at it, new
    /// messages, subscriptions and connections are refused. `None` (the
    /// default): no budget. The core reads nothing about the machine: the
    /// shell works the figure out.
    pub max_memory: Option<usize>,
    /// What one client (by client identifier) may make the broker hold
    /// of it, in bytes: its session's queued and in-flight messages, its
    /// subscriptions, its connection's buffers and the retained messages
    /// it owns (`memory.rs`). Past it, its own PUBLISHes and new
    /// subscriptions are refused, and messages for it are not queued,
    /// while other clients go on. `None` (the default): no share; the
    /// shell's default is a tenth of [`max_memory`](Self::max_memory).
    pub max_memory_per_client: Option<usize>,
}

/// Output credit: a connection whose unwritten bytes pass `high_water` gets
/// no more transmits (its messages wait in its session's bounded queue) and
/// is not read ([`BrokerEvent::PauseReading`](crate::BrokerEvent::PauseReading)),
/// until they are down to `low_water`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputCredit {
    /// Unwritten bytes above which a connection is paused.
    pub high_water: usize,
    /// Unwritten bytes at or below which it is resumed.
    pub low_water: usize,
}

impl Default for OutputCredit {
    fn default() -> Self {
        Self {
            high_water: 64 * 1024,
            low_water: 16 * 1024,
        }
    }
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
                // mosquitto's `max_inflight_messages`: QoS 1/2 messages in
                // flight to a client that sets no Receive Maximum.
                outgoing_inflight: core::num::NonZeroU16::new(20)
                    .unwrap_or(core::num::NonZeroU16::MIN),
                ..ServerConfig::default()
            },
            queue_qos0_offline: false,
            sys_interval: Some(Duration::from_secs(10)),
            assigned_id_prefix: "tern-".to_string(),
            publisher_backpressure: None,
            output_credit: Some(OutputCredit::default()),
            max_topic_levels: super::limits::DEFAULT_MAX_TOPIC_LEVELS,
            max_topic_length: super::limits::DEFAULT_MAX_TOPIC_LENGTH,
            retained: super::RetainedLimits::default(),
            max_subscriptions: super::limits::DEFAULT_MAX_SUBSCRIPTIONS,
            durable: false,
            connections_per_second_per_address: None,
            connections_per_second_per_listener: None,
            client_id_prefix: None,
            cluster: false,
            max_memory: None,
            max_memory_per_client: None,
        }
    }
}

impl super::Broker {
    /// Puts new settings in force (a reload): new connections and sessions
    /// get the new limits, open connections keep what they negotiated, and
    /// the `$SYS` timer follows the new interval.
    pub fn set_config(&mut self, now: tern_session::Instant, config: BrokerConfig) {
        if config.sys_interval != self.config.sys_interval {
            self.timers.cancel_all(super::Timer::Sys);
            if let Some(interval) = config.sys_interval {
                self.timers.arm(now + interval, super::Timer::Sys);
            }
        }
        self.config = config;
    }
}
