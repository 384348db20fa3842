//! A message's shared, immutable body and one delivery of it.
//!
//! A message routed to N subscribers is one [`MessageBody`] (topic, payload,
//! the publisher's properties) behind an [`Arc`], referenced N times; what
//! differs per subscriber (QoS, packet identifier, the retain flag as
//! delivered, Subscription Identifiers) is a [`Delivery`] of a few words.
//! The PUBLISH a connection sends is put together from both when it goes
//! out (DUP, the remaining Message Expiry Interval and a topic alias are
//! the connection's).

use alloc::{boxed::Box, sync::Arc, vec::Vec};
use bytes::Bytes;
use core::num::NonZeroU64;
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
    /// A number the caller chose for this message, never sent: it stays
    /// with every delivery of the body through the queue and the in-flight
    /// window and comes back in
    /// [`ServerEvent::Delivered`](crate::ServerEvent::Delivered) when a
    /// flow finishes. A broker that stores its queues numbers each stored
    /// message with it (a session gets at most one delivery of a message),
    /// so it knows which stored entry a finished flow deletes. Not kept by
    /// the `serde` form of a session.
    pub tag: Option<NonZeroU64>,
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

/// The bodies of a client's finished messages, kept for its next publishes:
/// a client builds one body per message, and reusing the allocation saves a
/// `malloc` and a `free` per message (a server's bodies come from its
/// broker, shared by subscribers, and are never pooled). A pooled body is
/// emptied at once, so it pins no payload; at most [`BodyPool::MAX`] wait.
/// Not part of a session's state: clones empty, always equal, never stored.
#[derive(Debug, Default)]
pub(crate) struct BodyPool {
    /// `None` when off; one word either way.
    #[allow(
        clippy::box_collection,
        reason = "one word inline instead of three while unused"
    )]
    spare: Option<Box<Vec<Arc<MessageBody>>>>,
}

impl BodyPool {
    /// The most bodies kept: one batch of a pipelining client.
    pub(crate) const MAX: usize = 64;

    /// A pool that keeps bodies (off by default).
    pub(crate) fn enable(&mut self) {
        self.spare.get_or_insert_default();
    }

    /// A body holding these, in a spare allocation when there is one.
    #[inline]
    pub(crate) fn body(
        &mut self,
        topic: MqttString,
        payload: Bytes,
        properties: PublishPropertiesBox,
    ) -> Arc<MessageBody> {
        if let Some(mut body) = self.spare.as_mut().and_then(|s| s.pop()) {
            if let Some(b) = Arc::get_mut(&mut body) {
                b.topic = topic;
                b.payload = payload;
                b.properties = properties;
                return body;
            }
        }
        Arc::new(MessageBody {
            topic,
            payload,
            properties,
            tag: None,
        })
    }

    /// Takes a finished message's body back if nothing else holds it.
    #[inline]
    pub(crate) fn recycle(&mut self, mut body: Arc<MessageBody>) {
        let Some(spare) = self.spare.as_mut() else {
            return;
        };
        if spare.len() >= Self::MAX {
            return;
        }
        if let Some(b) = Arc::get_mut(&mut body) {
            *b = MessageBody::default();
            spare.push(body);
        }
    }

    /// Frees the spare bodies (the pool stays on).
    pub(crate) fn clear(&mut self) {
        if let Some(spare) = self.spare.as_mut() {
            **spare = Vec::new();
        }
    }

    #[cfg(test)]
    fn spare(&self) -> &[Arc<MessageBody>] {
        self.spare.as_deref().map_or(&[], |s| &s[..])
    }
}

impl Clone for BodyPool {
    fn clone(&self) -> Self {
        Self {
            spare: self.spare.as_ref().map(|_| Box::default()),
        }
    }
}

impl PartialEq for BodyPool {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for BodyPool {}

impl Delivery {
    /// [`to_publish`](Self::to_publish) for a delivery that leaves for
    /// good: when nothing else holds the body, its parts move into the
    /// PUBLISH instead of being cloned, and the emptied body goes back to
    /// `pool`.
    pub(crate) fn into_publish(
        mut self,
        expiry: Option<u32>,
        v5: bool,
        pool: &mut BodyPool,
    ) -> Publish {
        let Some(body) = Arc::get_mut(&mut self.body) else {
            return self.to_publish(false, expiry, v5);
        };
        let mut properties = core::mem::take(&mut body.properties);
        if !v5 {
            properties = PublishPropertiesBox::new();
        } else if properties.is_allocated() || !self.subscription_ids.is_empty() {
            let p = properties.get_mut();
            p.subscription_identifiers = core::mem::take(&mut self.subscription_ids);
            if expiry.is_some() {
                p.message_expiry_interval = expiry;
            }
        }
        let publish = Publish {
            dup: false,
            qos: self.qos,
            retain: self.retain,
            topic: core::mem::take(&mut body.topic),
            packet_id: self.packet_id,
            properties,
            payload: core::mem::take(&mut body.payload),
        };
        pool.recycle(self.body);
        publish
    }
}

/// A PUBLISH becomes a delivery with a body of its own; its Subscription
/// Identifiers move to the delivery, a Topic Alias and DUP are dropped.
impl From<Publish> for Delivery {
    fn from(publish: Publish) -> Self {
        Self::pooled(publish, &mut BodyPool::default())
    }
}

impl Delivery {
    /// A PUBLISH as a delivery, its body from `pool` (see `From<Publish>`).
    pub(crate) fn pooled(publish: Publish, pool: &mut BodyPool) -> Self {
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
            body: pool.body(publish.topic, publish.payload, properties),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(payload: &'static [u8]) -> Publish {
        Publish {
            topic: MqttString::from_static("a/b"),
            qos: QoS::AtLeastOnce,
            payload: Bytes::from_static(payload),
            ..Publish::default()
        }
    }

    #[test]
    fn a_pool_reuses_finished_bodies_emptied_and_never_shared_ones() {
        let mut pool = BodyPool::default();
        pool.enable();
        let first = Delivery::pooled(publish(b"one"), &mut pool);
        let at = Arc::as_ptr(&first.body);
        pool.recycle(first.body);
        // The pooled body holds nothing: it pins no payload.
        assert_eq!(*pool.spare()[0], MessageBody::default());
        let second = Delivery::pooled(publish(b"two"), &mut pool);
        assert_eq!(Arc::as_ptr(&second.body), at, "the allocation is reused");
        assert_eq!(second.body.payload, "two");
        assert_eq!(second.body.tag, None);
        // A body someone else still holds is not taken.
        let held = Arc::clone(&second.body);
        pool.recycle(second.body);
        assert!(pool.spare().is_empty());
        assert_eq!(held.payload, "two");
        // A disabled pool (a server's) keeps nothing.
        let mut off = BodyPool::default();
        off.recycle(Delivery::from(publish(b"x")).body);
        assert!(off.spare().is_empty());
    }

    #[test]
    fn a_pool_is_bounded() {
        let mut pool = BodyPool::default();
        pool.enable();
        for _ in 0..BodyPool::MAX + 10 {
            pool.recycle(Delivery::from(publish(b"x")).body);
        }
        assert_eq!(pool.spare().len(), BodyPool::MAX);
        pool.clear();
        assert!(pool.spare().is_empty());
    }

    #[test]
    fn into_publish_moves_out_what_to_publish_clones() {
        let mut pool = BodyPool::default();
        pool.enable();
        for v5 in [false, true] {
            for (expiry, ids) in [(None, &[][..]), (Some(7), &[3][..])] {
                let mut p = publish(b"payload");
                p.properties.message_expiry_interval = Some(60);
                p.properties.content_type = Some(MqttString::from_static("t"));
                let mut d = Delivery::pooled(p, &mut pool);
                d.subscription_ids = ids
                    .iter()
                    .map(|&i| SubscriptionId::new(i).unwrap())
                    .collect();
                let expected = d.to_publish(false, expiry, v5);
                // Shared: cloned, body left alone.
                let shared = Arc::clone(&d.body);
                assert_eq!(d.clone().into_publish(expiry, v5, &mut pool), expected);
                assert_eq!(shared.payload, "payload");
                drop(shared);
                // Unique: moved, body pooled.
                let before = pool.spare().len();
                assert_eq!(d.into_publish(expiry, v5, &mut pool), expected);
                assert_eq!(pool.spare().len(), before + 1);
                pool.clear();
            }
        }
    }
}
