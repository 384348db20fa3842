//! A message's shared, immutable body and one delivery of it.
//!
//! A message routed to N subscribers is one [`MessageBody`] (topic, payload,
//! the publisher's properties) behind an [`Arc`], referenced N times; what
//! differs per subscriber (QoS, packet identifier, the retain flag as
//! delivered, Subscription Identifiers) is a [`Delivery`] of a few words.
//! The PUBLISH a connection sends is put together from both when it goes
//! out (DUP, the remaining Message Expiry Interval and a topic alias are
//! the connection's).

use alloc::{sync::Arc, vec::Vec};
use bytes::Bytes;
use tern_codec::{MqttString, PacketId, Publish, PublishPropertiesBox, QoS, SubscriptionId};

/// What every recipient of a message shares: its topic, payload and the
/// properties its publisher set (never a Topic Alias or Subscription
/// Identifiers: those belong to one link and one subscriber). Immutable
/// once shared; the Message Expiry Interval here is the one it was
/// published with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageBody {
    /// The topic name.
    pub topic: MqttString,
    /// The payload.
    pub payload: Bytes,
    /// The publisher's MQTT 5 properties, as forwarded.
    pub properties: PublishPropertiesBox,
}

impl MessageBody {
    /// The bytes this body holds in memory, as queue and retained limits
    /// count them: topic, payload and every property (user properties as
    /// their wire encoding, which is how they are held).
    pub fn held_bytes(&self) -> usize {
        let mut n = self.topic.len() + self.payload.len();
        if self.properties.is_allocated() {
            let p = self.properties.get();
            n += core::mem::size_of::<tern_codec::PublishProperties>()
                + p.response_topic.as_ref().map_or(0, MqttString::len)
                + p.correlation_data.as_ref().map_or(0, Bytes::len)
                + p.content_type.as_ref().map_or(0, MqttString::len)
                + p.subscription_identifiers.len() * core::mem::size_of::<SubscriptionId>()
                + p.user_properties.wire_bytes().len();
        }
        n
    }
}

/// One message on its way to one peer: the shared body and what is this
/// delivery's own.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(from = "Publish", into = "Publish")
)]
pub struct Delivery {
    /// The shared body.
    pub body: Arc<MessageBody>,
    /// The QoS it is delivered with.
    pub qos: QoS,
    /// The RETAIN flag as delivered.
    pub retain: bool,
    /// Its packet identifier, once it has one (a client assigns it in
    /// `publish`, a server when the message enters the in-flight window).
    pub packet_id: Option<PacketId>,
    /// The Subscription Identifiers of the subscriptions it matched.
    pub subscription_ids: Vec<SubscriptionId>,
}

impl Delivery {
    /// A delivery of `body`.
    pub fn new(body: Arc<MessageBody>, qos: QoS, retain: bool) -> Self {
        Self {
            body,
            qos,
            retain,
            packet_id: None,
            subscription_ids: Vec::new(),
        }
    }

    /// The Message Expiry Interval it was published with.
    pub fn message_expiry_interval(&self) -> Option<u32> {
        self.body.properties.message_expiry_interval
    }

    /// The PUBLISH to send: `dup`, and `expiry` (the remaining Message
    /// Expiry Interval) replacing the original one; with `v5` false, no
    /// properties. Allocates only when there are properties to send.
    pub(crate) fn to_publish(&self, dup: bool, expiry: Option<u32>, v5: bool) -> Publish {
        let properties =
            if !v5 || (!self.body.properties.is_allocated() && self.subscription_ids.is_empty()) {
                PublishPropertiesBox::new()
            } else {
                let mut p = self.body.properties.get().clone();
                p.subscription_identifiers
                    .clone_from(&self.subscription_ids);
                if expiry.is_some() {
                    p.message_expiry_interval = expiry;
                }
                p.into()
            };
        Publish {
            dup,
            qos: self.qos,
            retain: self.retain,
            topic: self.body.topic.clone(),
            packet_id: self.packet_id,
            properties,
            payload: self.body.payload.clone(),
        }
    }
}

/// A PUBLISH becomes a delivery with a body of its own; its Subscription
/// Identifiers move to the delivery, a Topic Alias and DUP are dropped.
impl From<Publish> for Delivery {
    fn from(publish: Publish) -> Self {
        let mut properties = publish.properties;
        let subscription_ids = match properties.get_mut_if_allocated() {
            Some(p) => {
                p.topic_alias = None;
                core::mem::take(&mut p.subscription_identifiers)
            }
            None => Vec::new(),
        };
        if properties.is_allocated() && properties.is_empty() {
            properties = PublishPropertiesBox::new();
        }
        Self {
            body: Arc::new(MessageBody {
                topic: publish.topic,
                payload: publish.payload,
                properties,
            }),
            qos: publish.qos,
            retain: publish.retain,
            packet_id: publish.packet_id,
            subscription_ids,
        }
    }
}

impl From<Delivery> for Publish {
    fn from(d: Delivery) -> Self {
        d.to_publish(false, None, true)
    }
}
