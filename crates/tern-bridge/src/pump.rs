//! Moving messages across: one pump per direction, from the messages one
//! client receives to publishes the other makes.
//!
//! A received QoS 1 or 2 message is acknowledged to its source only once
//! the destination acknowledged it (PUBACK, or PUBCOMP), so a message the
//! destination never took stays unacknowledged at the source, which keeps
//! it in the bridge's session and sends it again. Publishes are handed to
//! the destination in arrival order, several at once (the destination's
//! session bounds how many are in flight), and acknowledged in order.
//!
//! While the destination cannot take more (it is reconnecting), received
//! messages wait in a backlog bounded by [`MAX_BACKLOG`]; beyond it the
//! pump stops reading, and the source's broker keeps them.

use std::{collections::VecDeque, future::Future, pin::Pin, sync::Arc, task::Poll};
use tern_broker::server::{BridgeDirection, BridgeStats};
use tern_client::{
    Acker, Client, Error, Message, Messages, MqttString, PendingPublish, Published, QoS,
    UserProperty,
    codec::{Publish, UserProperties},
};

/// Messages received and not yet handed to the destination, at most.
pub(crate) const MAX_BACKLOG: usize = 100_000;

/// The user property that marks a message as having crossed a Tern bridge
/// (its value is the bridge's name).
pub const BRIDGED: &str = tern_broker::BRIDGED_PROPERTY;

/// A message on its way: what to publish, and the acknowledgement owed to
/// its source.
pub(crate) struct Forward {
    pub(crate) publish: Publish,
    pub(crate) acker: Option<Acker>,
}

impl Forward {
    /// `message` republished as `topic`. To an MQTT 5 destination its
    /// properties are kept (except what belongs to one connection) and it
    /// is marked as bridged by `name`; MQTT 3.1.1 carries no properties.
    /// The payload and properties move across; nothing is copied.
    pub(crate) fn new(
        mut message: Message,
        topic: MqttString,
        mark: &UserProperties,
        v5: bool,
    ) -> Self {
        let acker = message.take_acker();
        let bridged = is_bridged(&message);
        let mut publish = Publish::new(topic, message.payload, message.qos);
        publish.retain = message.retain;
        if v5 {
            publish.properties = message.properties;
            let properties = publish.properties.get_mut();
            properties.subscription_identifiers.clear();
            properties.topic_alias = None;
            if !bridged {
                if properties.user_properties.is_empty() {
                    // Mostly: the mark's encoding, shared.
                    properties.user_properties = mark.clone();
                } else {
                    properties.user_properties.extend(mark.iter());
                }
            }
        }
        Self { publish, acker }
    }
}

/// The mark a bridge named `name` puts on what it forwards (encoded once,
/// as the one user property of a set).
pub(crate) fn mark(name: &str) -> UserProperties {
    UserProperties::from([UserProperty {
        key: MqttString::from_static(BRIDGED),
        value: MqttString::try_from(name).unwrap_or_default(),
    }])
}

/// Whether a message carries the bridge mark.
pub(crate) fn is_bridged(message: &Message) -> bool {
    message
        .properties
        .get()
        .user_properties
        .iter()
        .any(|p| p.key.as_str() == BRIDGED)
}

/// Publishes handed to the destination and not yet completed, in the order
/// they were handed over, each beside the acknowledgement it owes.
type InFlight = VecDeque<(PendingPublish, Option<Acker>)>;

/// The first in-flight publish's completion, with the acknowledgement it
/// owes. Only the first is polled: the later ones are settled after it, in
/// order, as the source's acknowledgements must be.
async fn first_done(inflight: &mut InFlight) -> (Result<Published, Error>, Option<Acker>) {
    let result = std::future::poll_fn(|cx| match inflight.front_mut() {
        Some((pending, _)) => Pin::new(pending).poll(cx),
        None => Poll::Pending,
    })
    .await;
    let (_, acker) = inflight.pop_front().expect("the first completed");
    (result, acker)
}

/// A client's received messages, held in arrival order (unacknowledged)
/// while the bridge waits for something else, so that the client keeps
/// reading: a SUBACK or CONNACK may come after a resumed session's
/// messages. At most [`MAX_BACKLOG`]; beyond, the client stops reading and
/// its broker keeps the rest.
pub(crate) struct Held {
    messages: Messages,
    held: VecDeque<Message>,
    ended: bool,
}

impl Held {
    pub(crate) fn new(messages: Messages) -> Self {
        Self {
            messages,
            held: VecDeque::new(),
            ended: false,
        }
    }

    /// Runs `work` to completion, receiving messages meanwhile.
    pub(crate) async fn during<T>(&mut self, work: impl Future<Output = T>) -> T {
        tokio::pin!(work);
        loop {
            tokio::select! {
                done = &mut work => return done,
                message = self.messages.recv(), if !self.ended && self.held.len() < MAX_BACKLOG => {
                    match message {
                        Some(m) => self.held.push_back(m),
                        None => self.ended = true,
                    }
                }
            }
        }
    }
}

/// Why a pump stopped: its source ended (`Ok`), or the destination failed
/// for good. The acknowledgements still owed come back, so the caller can
/// drop them only once the source is gone (dropping one acknowledges).
pub(crate) type Stopped = (Result<(), Error>, Vec<Acker>);

/// Forwards what `from` receives (as `map` turns it into a [`Forward`], or
/// drops it: `None`) to `to`, until `from` ends or `to` fails.
pub(crate) async fn run(
    from: Held,
    to: Client,
    mut map: impl FnMut(Message) -> Option<Forward>,
    counters: Arc<BridgeStats>,
    direction: BridgeDirection,
) -> Stopped {
    let Held {
        messages: mut from,
        held,
        ended,
    } = from;
    // What arrived before the pump started comes first.
    let mut backlog: VecDeque<Forward> = held.into_iter().filter_map(&mut map).collect();
    let mut inflight: InFlight = VecDeque::new();
    let owed = |backlog: VecDeque<Forward>, inflight: InFlight| -> Vec<Acker> {
        inflight
            .into_iter()
            .filter_map(|(_, acker)| acker)
            .chain(backlog.into_iter().filter_map(|f| f.acker))
            .collect()
    };
    loop {
        // Hand over whatever the destination takes now, in order.
        while let Some(f) = backlog.pop_front() {
            let qos = f.publish.qos;
            match to.try_publish_message(f.publish) {
                Ok(pending) => {
                    if qos == QoS::AtMostOnce {
                        // Nothing to acknowledge, nothing to wait for: the
                        // destination's client sends it.
                        counters.forwarded(direction);
                    } else {
                        inflight.push_back((pending, f.acker));
                    }
                }
                Err((Error::Backpressure, publish)) if !inflight.is_empty() => {
                    // A completion makes room: wait for one (below).
                    backlog.push_front(Forward {
                        publish,
                        acker: f.acker,
                    });
                    break;
                }
                Err((Error::Backpressure, publish)) => {
                    // Nothing in flight to wait for (the requests queued
                    // are QoS 0): wait for room by publishing this one the
                    // waiting way, in order, and settle it here.
                    match to.publish_message(publish).await {
                        Ok(p) if p.is_success() => {
                            counters.forwarded(direction);
                        }
                        Ok(p) => {
                            tracing::warn!(reason = %p.reason_code, "the destination refused a bridged message");
                            counters.dropped(direction);
                        }
                        Err(Error::Closed) => {
                            let mut owed = owed(backlog, inflight);
                            owed.extend(f.acker);
                            return (Err(Error::Closed), owed);
                        }
                        Err(e) => {
                            tracing::warn!("cannot forward a bridged message: {e}");
                            counters.dropped(direction);
                        }
                    }
                    drop(f.acker);
                }
                Err((e, publish)) => {
                    tracing::warn!(topic = %publish.topic.as_str(), "cannot forward: {e}");
                    if matches!(e, Error::Closed) {
                        let mut owed = owed(backlog, inflight);
                        owed.extend(f.acker);
                        return (Err(e), owed);
                    }
                    // A topic or property the destination cannot carry:
                    // dropped (and acknowledged), as a broker drops what it
                    // cannot deliver.
                    counters.dropped(direction);
                }
            }
        }
        tokio::select! {
            (result, acker) = first_done(&mut inflight), if !inflight.is_empty() => match result {
                Ok(published) => {
                    if !published.is_success() {
                        tracing::warn!(reason = %published.reason_code, "the destination refused a bridged message");
                        counters.dropped(direction);
                    } else {
                        counters.forwarded(direction);
                    }
                    // Acknowledges the source (dropping an acker does).
                    drop(acker);
                }
                Err(Error::Closed) => {
                    let mut owed = owed(backlog, inflight);
                    owed.extend(acker);
                    return (Err(Error::Closed), owed);
                }
                Err(e) => {
                    // Refused by the destination's session (nothing was
                    // sent): dropped, and acknowledged to the source.
                    tracing::warn!("cannot forward a bridged message: {e}");
                    counters.dropped(direction);
                    drop(acker);
                }
            },
            message = from.recv(), if !ended && backlog.len() < MAX_BACKLOG => match message {
                Some(message) => {
                    if let Some(f) = map(message) {
                        backlog.push_back(f);
                    }
                }
                None => return (Ok(()), owed(backlog, inflight)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_client::SubscriptionId;

    fn topic(t: &str) -> MqttString {
        MqttString::try_from(t).unwrap()
    }

    fn property(k: &str, v: &str) -> UserProperty {
        UserProperty {
            key: topic(k),
            value: topic(v),
        }
    }

    fn received(properties: &[UserProperty]) -> Message {
        let mut p = Publish::new(topic("a/b"), "x", QoS::AtLeastOnce);
        p.retain = true;
        p.packet_id = tern_client::codec::PacketId::new(7);
        let props = p.properties.get_mut();
        props
            .subscription_identifiers
            .push(SubscriptionId::new(3).unwrap());
        props.user_properties.extend(properties.iter().cloned());
        Message::from(p)
    }

    fn users(f: &Forward) -> Vec<UserProperty> {
        f.publish.properties.user_properties.iter().collect()
    }

    #[test]
    fn a_forwarded_message_is_marked_once_and_keeps_its_own_properties() {
        let mark = mark("edge");
        // None of its own: the mark alone.
        let f = Forward::new(received(&[]), topic("r/a/b"), &mark, true);
        assert_eq!(users(&f), [property(BRIDGED, "edge")]);
        assert_eq!(f.publish.topic.as_str(), "r/a/b");
        assert!(f.publish.retain);
        assert_eq!(f.publish.packet_id, None);
        assert!(f.publish.properties.subscription_identifiers.is_empty());
        // Its own first, then the mark.
        let f = Forward::new(
            received(&[property("unit", "C")]),
            topic("a/b"),
            &mark,
            true,
        );
        assert_eq!(
            users(&f),
            [property("unit", "C"), property(BRIDGED, "edge")]
        );
        // Already marked (forward_bridged): not marked again.
        let f = Forward::new(
            received(&[property(BRIDGED, "other")]),
            topic("a/b"),
            &mark,
            true,
        );
        assert_eq!(users(&f), [property(BRIDGED, "other")]);
        // MQTT 3.1.1 carries no properties.
        let f = Forward::new(
            received(&[property("unit", "C")]),
            topic("a/b"),
            &mark,
            false,
        );
        assert!(f.publish.properties.is_empty());
    }
}
