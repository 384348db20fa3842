//! The counters behind `$SYS` and `/metrics`: plain integers the core bumps
//! as it works, so reading them costs the same whatever the number of
//! sessions (nothing is walked to answer a scrape).

use tern_codec::QoS;

/// PUBLISH packets and their payload bytes, by QoS (index 0, 1, 2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ByQos {
    /// PUBLISH packets.
    pub messages: [u64; 3],
    /// Their payload bytes (mosquitto's `publish/bytes/*`).
    pub payload_bytes: [u64; 3],
}

impl ByQos {
    /// Counts one PUBLISH.
    pub(crate) fn count(&mut self, qos: QoS, payload: usize) {
        let i = qos as usize;
        self.messages[i] += 1;
        self.payload_bytes[i] += payload as u64;
    }

    /// PUBLISH packets of every QoS.
    pub fn total_messages(&self) -> u64 {
        self.messages.iter().sum()
    }

    /// Payload bytes of every QoS.
    pub fn total_payload_bytes(&self) -> u64 {
        self.payload_bytes.iter().sum()
    }
}

/// Messages dropped, by why. A message refused to its publisher counts
/// once; a message that could not reach one subscriber counts once per
/// subscriber it missed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drops {
    /// A subscriber's queue was full (`max_queued_messages` or
    /// `max_queued_bytes`).
    pub queue_full: u64,
    /// Larger than a subscriber's Maximum Packet Size [MQTT-3.1.2-25].
    pub too_large: u64,
    /// Its Message Expiry Interval ran out while queued [MQTT-3.3.2-5].
    pub expired: u64,
    /// A client's PUBLISH matched no subscription.
    pub no_subscribers: u64,
    /// A client sent more QoS 1/2 messages than its Receive Maximum
    /// allows (0x93): the message is refused and the client disconnected.
    pub quota: u64,
    /// The ACL (or `$SYS`, which belongs to the broker) refused a client's
    /// PUBLISH.
    pub not_authorized: u64,
    /// A PUBLISH or will topic over `max_topic_levels` or
    /// `max_topic_length` (refused; a will at CONNECT).
    pub topic_limit: u64,
    /// A SUBSCRIBE filter over `max_topic_levels` or `max_topic_length`,
    /// or past `max_subscriptions` (refused in the SUBACK).
    pub subscription_limit: u64,
    /// A retained PUBLISH past `max_retained_messages` or
    /// `max_retained_bytes`: delivered, not retained.
    pub retained_limit: u64,
    /// A QoS 1/2 PUBLISH no recipient's queue had room for, refused to its
    /// publisher (each full queue also counts in `queue_full`).
    pub queue_limit: u64,
    /// A connection beyond `connections_per_second_per_address` from its
    /// address, or `connections_per_second_per_listener` into its listener,
    /// refused at its CONNECT (no message is lost: counted with
    /// the other limit refusals).
    pub connection_rate_limit: u64,
    /// Refused at the memory budget (`max_memory`): a PUBLISH (a QoS 0
    /// one dropped, also when routed from a will or another node), a new
    /// subscription, or a CONNECT.
    pub memory_limit: u64,
    /// Refused at a client's share of the memory
    /// (`max_memory_per_client`): its PUBLISH (a QoS 0 one dropped) or new
    /// subscription; a message for it not queued is a `queue_full` drop.
    pub client_memory_limit: u64,
}

impl Drops {
    /// Every reason, with the label `/metrics` gives it.
    pub fn by_reason(&self) -> [(&'static str, u64); 13] {
        [
            ("queue_full", self.queue_full),
            ("too_large", self.too_large),
            ("expired", self.expired),
            ("no_subscribers", self.no_subscribers),
            ("quota", self.quota),
            ("not_authorized", self.not_authorized),
            ("topic_limit", self.topic_limit),
            ("subscription_limit", self.subscription_limit),
            ("retained_limit", self.retained_limit),
            ("queue_limit", self.queue_limit),
            ("connection_rate_limit", self.connection_rate_limit),
            ("memory_limit", self.memory_limit),
            ("client_memory_limit", self.client_memory_limit),
        ]
    }

    /// Refusals at a resource limit (issue 13), all seven reasons together:
    /// `$SYS/broker/limits/refused`.
    pub fn limit_refusals(&self) -> u64 {
        self.topic_limit
            + self.subscription_limit
            + self.retained_limit
            + self.queue_limit
            + self.connection_rate_limit
            + self.memory_limit
            + self.client_memory_limit
    }

    /// Counts one refusal at `limit`.
    pub(super) fn count_limit(&mut self, limit: super::Limit) {
        use super::Limit;
        *match limit {
            Limit::TopicLevels | Limit::TopicLength => &mut self.topic_limit,
            Limit::FilterLevels | Limit::FilterLength | Limit::Subscriptions => {
                &mut self.subscription_limit
            }
            Limit::Retained => &mut self.retained_limit,
            Limit::Queue => &mut self.queue_limit,
            Limit::ConnectionRate | Limit::ListenerConnectionRate => {
                &mut self.connection_rate_limit
            }
            Limit::Memory => &mut self.memory_limit,
            Limit::ClientMemory => &mut self.client_memory_limit,
        } += 1;
    }
}

/// A connection's own drop counters (expired while queued, too large for
/// the client), read before and after it produces output.
pub(super) fn session_drops(server: &tern_session::ServerConnection) -> (u64, u64) {
    (
        server.session().map_or(0, |s| s.dropped_expired()),
        server.dropped_too_large(),
    )
}

/// Adds what `server` dropped since `before` was read.
pub(super) fn count_session_drops(
    drops: &mut Drops,
    before: (u64, u64),
    server: &tern_session::ServerConnection,
) {
    let (expired, too_large) = session_drops(server);
    drops.expired += expired.saturating_sub(before.0);
    drops.too_large += too_large.saturating_sub(before.1);
}
