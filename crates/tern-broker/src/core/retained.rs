//! Retained messages: what the broker stores per topic.

use core::time::Duration;
use tern_codec::{Publish, PublishProperties, QoS};
use tern_session::Instant;

/// A retained message: the last retained PUBLISH on its topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetainedMessage {
    /// The message as published (topic, payload, QoS, properties).
    pub publish: Publish,
    /// When the broker received it, for its Message Expiry Interval.
    pub stored_at: Instant,
}

impl RetainedMessage {
    /// Stores `publish` as received at `now`.
    pub fn new(publish: &Publish, now: Instant) -> Self {
        let mut stored = publish.clone();
        // Copies: slices of the PUBLISH would keep its whole read buffer
        // alive for as long as the message stays retained.
        stored.topic = super::compact(&publish.topic);
        stored.payload = bytes::Bytes::copy_from_slice(&publish.payload);
        stored.dup = false;
        stored.packet_id = None;
        if let Some(p) = stored.properties.get_mut_if_allocated() {
            p.topic_alias = None;
            p.subscription_identifiers.clear();
        }
        Self {
            publish: stored,
            stored_at: now,
        }
    }

    /// Whether its Message Expiry Interval has passed.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.publish
            .properties
            .message_expiry_interval
            .is_some_and(|secs| now >= self.stored_at + Duration::from_secs(u64::from(secs)))
    }

    /// The PUBLISH for a new subscriber at `granted` QoS: RETAIN set, QoS
    /// capped, and the remaining expiry interval [MQTT-3.3.2-6].
    pub fn for_subscriber(&self, now: Instant, granted: QoS) -> Publish {
        let mut p = self.publish.clone();
        p.retain = true;
        p.qos = p.qos.min(granted);
        if let Some(secs) = p.properties.message_expiry_interval {
            let waited = (now - self.stored_at).as_secs();
            p.properties.message_expiry_interval = Some(
                secs.saturating_sub(u32::try_from(waited).unwrap_or(u32::MAX))
                    .max(1),
            );
        }
        p
    }
}

/// Properties forwarded unchanged to subscribers [MQTT-3.3.2-4] [MQTT-3.3.2-15]
/// [MQTT-3.3.2-16] [MQTT-3.3.2-17] [MQTT-3.3.2-20]; the topic alias is per
/// connection and the subscription identifiers per subscriber.
pub(crate) fn forwarded_properties(p: &PublishProperties) -> PublishProperties {
    PublishProperties {
        topic_alias: None,
        subscription_identifiers: Vec::new(),
        ..p.clone()
    }
}
