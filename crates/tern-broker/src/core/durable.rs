//! Durability: the storage operations the core emits, and the
//! acknowledgements it holds until the store reports them synced.
//!
//! With [`BrokerConfig::durable`](super::BrokerConfig::durable) off (the
//! default) none of this exists: the broker holds no `Durable` and every
//! hook is one `Option` check.
//!
//! With it on, each change the durable state needs is recorded as a
//! [`StoreOp`]. The shell polls them as [`StoreBatch`]es with increasing
//! sequence numbers ([`Broker::poll_store`](super::Broker::poll_store)),
//! applies each (tern-store: one transaction, one fsync for whatever is
//! waiting) and reports the highest sequence number synced
//! ([`Broker::handle_store_synced`](super::Broker::handle_store_synced)).
//! An acknowledgement that promises a recorded change (a PUBACK or PUBREC
//! for a retained PUBLISH) is held with the sequence number of the batch
//! that will carry it, and released then; a connection's later
//! acknowledgements wait behind it, so they still go out in arrival order
//! [MQTT-4.6.0-2] [MQTT-4.6.0-3].
//!
//! A CONNACK or SUBACK (or UNSUBACK) that promises stored state (a session
//! that outlives its connection, its subscriptions) is held differently:
//! the connection's whole output waits behind a *gate* until the batch
//! syncs, so nothing it is sent after it overtakes it.
//!
//! Covered so far: retained messages; sessions that outlive their
//! connection (client identifier, protocol level, Session Expiry Interval)
//! and their subscriptions; QoS 1/2 messages queued or in flight to them
//! (a body once per message, an entry per session, deleted when the flow
//! ends) and the QoS 2 ones owed a PUBREL; incoming QoS 2 state; the
//! user name, the will (online: owed if the broker stops; offline: waiting
//! for its delay) and the deadlines (session end, will due, message expiry)
//! as core [`Instant`]s, which the shell stores as wall-clock time so that
//! they count the time the broker was down.
//!
//! A QoS 2 message from a stored session is held from its online
//! subscribers too: their connections' output is gated on the batch that
//! records its acceptance, so a crash before that sync cannot leave a
//! subscriber with a message its publisher will send again
//! ([`Durable::collect_routed`]).

use super::{ConnId, SessionKey, Store, StoredState};
use crate::RetainedMessage;
use std::collections::VecDeque;
use std::sync::Arc;
use tern_codec::ReasonCode;
use tern_codec::{MqttString, QoS, SubscriptionId, SubscriptionOptions, Will};
use tern_session::AckToken;
use tern_session::MessageBody;
use tern_session::{Instant, ServerSession};
use tern_topic::TopicName;

/// A change to the state a durable broker keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreOp {
    /// A retained message was set or replaced.
    PutRetained {
        /// Its topic.
        topic: TopicName,
        /// The message.
        message: RetainedMessage,
    },
    /// A retained message was cleared.
    DeleteRetained {
        /// Its topic.
        topic: TopicName,
    },
    /// A session that outlives its connection was created or resumed
    /// (its client online), or its client went offline, or its delayed
    /// will was published: the whole session record as it stands now.
    PutSession {
        /// Its client identifier.
        client_id: MqttString,
        /// The protocol level of its client's last CONNECT (3, 4 or 5).
        protocol: u8,
        /// Its Session Expiry Interval in seconds (`u32::MAX`: never).
        expiry_interval: u32,
        /// The user name its client authenticated as (the authorization
        /// checks of its deliveries and its will use it, offline too).
        user_name: Option<MqttString>,
        /// Online: its client's will (owed if the broker stops without the
        /// client's DISCONNECT). Offline: the will waiting for its Will
        /// Delay Interval.
        will: Option<Box<Will>>,
        /// Offline: when the waiting will is due.
        will_due: Option<Instant>,
        /// Offline: when the session ends (`None`: never, or online).
        expires_at: Option<Instant>,
    },
    /// A stored session ended (clean start, expiry, or an interval of 0):
    /// its subscriptions go with it.
    DeleteSession {
        /// Its client identifier.
        client_id: MqttString,
    },
    /// A stored session subscribed (or replaced a subscription).
    PutSubscription {
        /// Its client identifier.
        client_id: MqttString,
        /// The topic filter.
        filter: MqttString,
        /// The granted options.
        options: SubscriptionOptions,
        /// Its Subscription Identifier.
        id: Option<SubscriptionId>,
    },
    /// A message body, before the queue entries that refer to it (written
    /// once however many stored sessions it is queued for).
    PutBody {
        /// Its id: also every queue entry's `seq` for it (a session gets at
        /// most one delivery of a message), and its body's
        /// [`tag`](tern_session::MessageBody::tag).
        id: u64,
        /// Topic, payload, properties.
        body: Arc<MessageBody>,
        /// The QoS it was published with.
        qos: QoS,
        /// Its RETAIN flag as published.
        retain: bool,
        /// When its Message Expiry Interval, counted from its arrival, ends.
        expires_at: Option<Instant>,
    },
    /// A QoS 1 or 2 message was queued for a stored session.
    PutQueue {
        /// The session.
        client_id: MqttString,
        /// Its place in the session's queue: the body's id.
        seq: u64,
        /// The QoS it is delivered with.
        qos: QoS,
        /// The Subscription Identifiers it is delivered with.
        subscription_ids: Vec<SubscriptionId>,
    },
    /// A stored session's QoS 1 or 2 message went in flight to its client
    /// with a packet identifier: a restart resends it with that identifier
    /// and DUP set [MQTT-4.4.0-1].
    SentQueue {
        /// The session.
        client_id: MqttString,
        /// Its place in the session's queue.
        seq: u64,
        /// The QoS it is delivered with.
        qos: QoS,
        /// Its packet identifier.
        packet_id: tern_codec::PacketId,
        /// The Subscription Identifiers it is delivered with.
        subscription_ids: Vec<SubscriptionId>,
    },
    /// A stored session's QoS 2 message got its PUBREC: its PUBREL is owed
    /// (a restart resends PUBREL, never the PUBLISH). The connection's
    /// output (the PUBREL) waits for this to be synced.
    ReleaseQueue {
        /// The session.
        client_id: MqttString,
        /// Its place in the session's queue.
        seq: u64,
        /// The packet identifier the PUBREL carries.
        packet_id: tern_codec::PacketId,
    },
    /// A stored session's message finished its flow (PUBACK, PUBCOMP, or
    /// a failing PUBREC), or was dropped (expired, too large, pushed out of
    /// a full queue).
    DeleteQueue {
        /// The session.
        client_id: MqttString,
        /// Its place in the session's queue.
        seq: u64,
    },
    /// A stored session's client sent a QoS 2 PUBLISH that was accepted:
    /// a resend of it (until its PUBREL) is not routed again.
    PutIncoming {
        /// The session.
        client_id: MqttString,
        /// Its packet identifier.
        packet_id: tern_codec::PacketId,
    },
    /// Its PUBREL came: the identifier is free for a new message. The
    /// PUBCOMP waits for this to be synced.
    DeleteIncoming {
        /// The session.
        client_id: MqttString,
        /// Its packet identifier.
        packet_id: tern_codec::PacketId,
    },
    /// A stored session unsubscribed.
    DeleteSubscription {
        /// Its client identifier.
        client_id: MqttString,
        /// The topic filter.
        filter: MqttString,
    },
}

/// Storage operations to apply together, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreBatch {
    /// Its sequence number (1, 2, ...): report it synced with
    /// [`Broker::handle_store_synced`](super::Broker::handle_store_synced).
    pub seq: u64,
    /// The operations.
    pub ops: Vec<StoreOp>,
}

/// An acknowledgement waiting for its batch.
#[derive(Debug)]
pub(super) struct HeldAck {
    pub(super) seq: u64,
    pub(super) conn: ConnId,
    /// The session it belongs to: the connection may have closed by the
    /// time the batch syncs, and the acknowledgement then goes to the
    /// session (see `Broker::handle_store_synced`).
    pub(super) session: SessionKey,
    /// Whether `conn` spoke MQTT 5.
    pub(super) v5: bool,
    pub(super) token: AckToken,
    pub(super) reason: ReasonCode,
}

/// The core's side of durability.
#[derive(Debug)]
pub(super) struct Durable {
    /// Operations recorded since the last batch was cut.
    open: Vec<StoreOp>,
    /// The sequence number the open operations will get.
    next_seq: u64,
    /// Batches cut and not yet polled.
    batches: VecDeque<StoreBatch>,
    /// Held acknowledgements, in the order they were held (their sequence
    /// numbers never decrease).
    held: VecDeque<HeldAck>,
    /// Connections whose output waits for a batch (a CONNACK or SUBACK
    /// that promises stored state is in it), in sequence order.
    gates: VecDeque<(u64, ConnId)>,
    /// The next message id ([`StoreOp::PutBody`]): above every id the
    /// store holds.
    next_message: u64,
    /// While a QoS 2 PUBLISH whose acceptance is being recorded is routed:
    /// the online connections it was handed to (their output then waits
    /// for the batch, see [`Durable::collect_routed`]).
    routed: Option<Vec<ConnId>>,
}

impl Default for Durable {
    fn default() -> Self {
        Self {
            open: Vec::new(),
            next_seq: 1,
            batches: VecDeque::new(),
            held: VecDeque::new(),
            gates: VecDeque::new(),
            next_message: 1,
            routed: None,
        }
    }
}

impl Durable {
    /// Records a change.
    pub(super) fn record(&mut self, op: StoreOp) {
        self.open.push(op);
    }

    /// Operations recorded since the last batch was cut.
    pub(super) fn pending(&self) -> usize {
        self.open.len()
    }

    /// An acknowledgement for `conn`: given back to send now, unless it
    /// promises a change not yet synced (`promises`) or an earlier
    /// acknowledgement of the same connection is held.
    pub(super) fn hold(
        &mut self,
        conn: ConnId,
        session: SessionKey,
        v5: bool,
        token: AckToken,
        reason: ReasonCode,
        promises: bool,
    ) -> Option<(AckToken, ReasonCode)> {
        let seq = if promises {
            self.next_seq
        } else if self.held.iter().any(|h| h.conn == conn) {
            // Behind the last held one (the largest sequence number).
            self.held.back().map_or(self.next_seq, |h| h.seq)
        } else {
            return Some((token, reason));
        };
        self.held.push_back(HeldAck {
            seq,
            conn,
            session,
            v5,
            token,
            reason,
        });
        None
    }

    /// Starts collecting the connections the message being routed is
    /// handed to. A QoS 2 message from a stored session must not reach a
    /// subscriber before the batch recording its acceptance (and its queue
    /// entries) is synced: if the broker died first, the publisher, never
    /// having had its PUBREC, would send it again and the subscriber get it
    /// twice [MQTT-4.3.3-10]. Those connections' output is gated on it.
    pub(super) fn collect_routed(&mut self) {
        self.routed = Some(Vec::new());
    }

    /// Notes that the message being routed went to `conn` (if collecting).
    pub(super) fn routed_to(&mut self, conn: ConnId) {
        if let Some(r) = self.routed.as_mut() {
            if !r.contains(&conn) {
                r.push(conn);
            }
        }
    }

    /// Stops collecting: the connections the message went to.
    pub(super) fn take_routed(&mut self) -> Vec<ConnId> {
        self.routed.take().unwrap_or_default()
    }

    /// A new message id, for a message routed to a stored session.
    pub(super) fn message_id(&mut self) -> core::num::NonZeroU64 {
        let id =
            core::num::NonZeroU64::new(self.next_message).unwrap_or(core::num::NonZeroU64::MIN);
        self.next_message = id.get() + 1;
        id
    }

    /// Message ids start above `id` (a restored queue holds it).
    pub(super) fn message_ids_above(&mut self, id: u64) {
        self.next_message = self.next_message.max(id.saturating_add(1));
    }

    /// Holds `conn`'s output until what is recorded so far is synced:
    /// returns the sequence number of the batch it waits for.
    pub(super) fn gate(&mut self, conn: ConnId) -> u64 {
        let seq = self.next_seq;
        self.gates.push_back((seq, conn));
        seq
    }

    /// The connections whose gates batch `seq` (and those before it) opens.
    pub(super) fn opened(&mut self, seq: u64) -> Vec<(u64, ConnId)> {
        let n = self.gates.iter().take_while(|g| g.0 <= seq).count();
        self.gates.drain(..n).collect()
    }

    /// The next batch to apply: what was recorded since the last one.
    pub(super) fn poll(&mut self) -> Option<StoreBatch> {
        if !self.open.is_empty() {
            self.batches.push_back(StoreBatch {
                seq: self.next_seq,
                ops: core::mem::take(&mut self.open),
            });
            self.next_seq += 1;
        }
        self.batches.pop_front()
    }

    /// Every held acknowledgement that batch `seq` (and those before it)
    /// covers, in order.
    pub(super) fn synced(&mut self, seq: u64) -> Vec<HeldAck> {
        let n = self.held.iter().take_while(|h| h.seq <= seq).count();
        self.held.drain(..n).collect()
    }

    /// Every held acknowledgement, synced or not (at shutdown: see
    /// `Broker::shutdown`).
    pub(super) fn take_held(&mut self) -> VecDeque<HeldAck> {
        core::mem::take(&mut self.held)
    }
}

/// The broker's [`Store`], with each change the durable state needs also
/// recorded as a [`StoreOp`]: the owners of state (`Retained`, ...) write
/// through one `&mut dyn Store` whether durability is on or off.
pub(super) struct Recording<'a> {
    pub(super) inner: &'a mut dyn Store,
    pub(super) log: &'a mut Durable,
}

impl Store for Recording<'_> {
    fn put_retained(&mut self, topic: &TopicName, message: &RetainedMessage) {
        self.inner.put_retained(topic, message);
        self.log.record(StoreOp::PutRetained {
            topic: topic.clone(),
            message: message.clone(),
        });
    }
    fn remove_retained(&mut self, topic: &TopicName) {
        self.inner.remove_retained(topic);
        self.log.record(StoreOp::DeleteRetained {
            topic: topic.clone(),
        });
    }
    fn put_session(
        &mut self,
        session: &ServerSession,
        subscriptions: &[(MqttString, super::StoredSubscription)],
        expiry_interval: u32,
    ) {
        self.inner
            .put_session(session, subscriptions, expiry_interval);
    }
    fn remove_session(&mut self, client_id: &MqttString) {
        self.inner.remove_session(client_id);
    }
    fn put_offline_state(
        &mut self,
        client_id: &MqttString,
        expires_at: Option<Instant>,
        pending_will: Option<(&Will, Instant)>,
    ) {
        self.inner
            .put_offline_state(client_id, expires_at, pending_will);
    }
    fn load(&mut self) -> StoredState {
        self.inner.load()
    }
}
