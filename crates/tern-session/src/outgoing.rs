//! Outgoing application messages: the queue, the in-flight window and the
//! QoS 1 / QoS 2 sender flows (MQTT 5.0 §4.3, §4.4, §4.9).
//!
//! Messages wait in a bounded FIFO queue and enter the in-flight window in
//! order, as the peer's Receive Maximum allows. In-flight messages are kept
//! in the order they were first sent, so after a reconnect they are resent
//! in that order [MQTT-4.6.0-1]; a QoS 2 message moves to the back when its
//! PUBREC arrives, so PUBRELs resend in PUBREC order [MQTT-4.6.0-4].

use crate::{Delivery, Instant, PacketIds, idmap::IdMap, message::BodyPool, window::SeqWindow};
use alloc::{collections::VecDeque, vec::Vec};
use core::time::Duration;
use tern_codec::{PacketId, Publish, QoS, ReasonCode};

/// A message waiting to be sent, stamped with when it was accepted so its
/// Message Expiry Interval can count down [MQTT-3.3.2-6].
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct QueuedMessage {
    /// The message: its shared body and this delivery's own fields. Its
    /// packet identifier is assigned when it enters the window (a client
    /// assigns it earlier, when `publish` is called).
    #[cfg_attr(feature = "serde", serde(rename = "publish"))]
    pub message: Delivery,
    /// When the message was accepted.
    pub queued_at: Instant,
}

impl QueuedMessage {
    /// When the message expires, if it has a Message Expiry Interval.
    pub fn expires_at(&self) -> Option<Instant> {
        self.message
            .message_expiry_interval()
            .map(|secs| self.queued_at + Duration::from_secs(u64::from(secs)))
    }

    fn size(&self) -> usize {
        self.message.body.held_bytes()
    }
}

/// What an in-flight message waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[allow(clippy::enum_variant_names, reason = "named after the packets awaited")]
pub(crate) enum Awaiting {
    /// QoS 1: PUBACK.
    PubAck,
    /// QoS 2: PUBREC.
    PubRec,
    /// QoS 2: PUBCOMP, after our PUBREL.
    PubComp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub(crate) struct InFlight {
    pub(crate) message: Delivery,
    /// The Message Expiry Interval it was first sent with (what was left of
    /// the original), sent again with a resend.
    pub(crate) sent_expiry: Option<u32>,
    pub(crate) awaiting: Awaiting,
    /// Sent on the current connection (and so counted against the peer's
    /// Receive Maximum). Cleared when a new connection resumes the session.
    #[cfg_attr(feature = "serde", serde(skip))]
    pub(crate) on_wire: bool,
    /// Sent on some connection: a resend sets DUP [MQTT-3.3.1-1].
    pub(crate) ever_sent: bool,
    /// QoS 2: the PUBREC's reason code. The message was accepted then; the
    /// PUBCOMP only ends the release (a resent PUBREL may meet "not found").
    pub(crate) accepted: Option<ReasonCode>,
    /// When the message was queued (its body keeps the Message Expiry
    /// Interval it was queued with), so a message sent again as new still
    /// expires on time.
    pub(crate) queued_at: Instant,
}

/// How the queue bounds itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct QueueLimits {
    /// At most this many messages wait.
    pub max_messages: usize,
    /// At most this many bytes of topic and payload wait.
    pub max_bytes: usize,
    /// What to do with a message that does not fit.
    pub overflow: OverflowPolicy,
}

impl Default for QueueLimits {
    fn default() -> Self {
        Self {
            max_messages: 1000,
            max_bytes: 16 * 1024 * 1024,
            overflow: OverflowPolicy::DropNewest,
        }
    }
}

/// Which message to drop when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum OverflowPolicy {
    /// Refuse the new message (mosquitto's behaviour).
    #[default]
    DropNewest,
    /// Drop the oldest waiting message to make room.
    DropOldest,
}

/// The outcome of offering a message to the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "a return value, moved on at once"
)]
pub enum Enqueued {
    /// Queued.
    Queued,
    /// Queued after dropping these older messages, oldest first (several
    /// when one large message needs the room of several small ones).
    QueuedDroppingOldest(Vec<QueuedMessage>),
    /// Not queued: the queue is full.
    Rejected(QueuedMessage),
}

/// The sender side of the QoS flows, and the queue in front of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub(crate) struct Outgoing {
    /// In-flight messages by send order.
    inflight: SeqWindow<InFlight>,
    /// Send order by packet identifier.
    order: IdMap<u64>,
    queue: VecDeque<QueuedMessage>,
    queued_bytes: usize,
    /// Bytes (as [`QueuedMessage::size`] counts them) of the messages in
    /// flight: they count against the queue's byte limit too. Not stored: a
    /// restored session counts its in-flight messages' bytes from the next
    /// [`resume`](Self::resume).
    #[cfg_attr(feature = "serde", serde(skip))]
    inflight_bytes: Derived,
    /// How many in-flight messages are on the current connection's wire.
    #[cfg_attr(feature = "serde", serde(skip))]
    on_wire: usize,
    /// After a resume: the send order from which in-flight messages still
    /// wait to be resent. Everything before it is on the wire.
    #[cfg_attr(feature = "serde", serde(skip))]
    resend_from: Option<u64>,
    /// Bodies of finished messages for the next ones (a client's).
    #[cfg_attr(feature = "serde", serde(skip))]
    pub(crate) pool: BodyPool,
    /// Messages dropped because the queue was full.
    pub(crate) dropped_full: u64,
    /// Messages dropped because they expired while queued.
    pub(crate) dropped_expired: u64,
    /// What happened to tagged messages on their way out since the caller
    /// last took them ([`ServerConnection::drain_outgoing_notes`](crate::ServerConnection::drain_outgoing_notes)).
    #[cfg_attr(feature = "serde", serde(skip))]
    pub(crate) notes: Vec<OutgoingNote>,
}

/// What happened to a message whose body has a
/// [`tag`](crate::MessageBody::tag) (one a broker stores) on its way out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutgoingNote {
    /// It went in flight with `packet_id`: a restored session resends it
    /// with that identifier and DUP set [MQTT-4.4.0-1] [MQTT-3.3.1-1] (see
    /// [`ServerSession::restore_sent`](crate::ServerSession::restore_sent)).
    Sent {
        /// Its body's tag.
        tag: core::num::NonZeroU64,
        /// Its packet identifier.
        packet_id: PacketId,
        /// The QoS it is delivered with.
        qos: QoS,
        /// Its Subscription Identifiers.
        subscription_ids: Vec<tern_codec::SubscriptionId>,
    },
    /// It was sent at QoS 0: its delivery is complete.
    Delivered {
        /// Its body's tag.
        tag: core::num::NonZeroU64,
    },
    /// It left without being delivered: it expired while queued
    /// [MQTT-3.3.2-5], or was too large for the client [MQTT-3.1.2-25].
    Dropped {
        /// Its body's tag.
        tag: core::num::NonZeroU64,
    },
}

/// A figure derived from the rest of [`Outgoing`] and kept up to date to
/// save recomputing it: not part of the state (equal whatever its value).
#[derive(Debug, Clone, Copy, Default)]
struct Derived(usize);

impl PartialEq for Derived {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Derived {}

/// The next thing the sender wants to transmit.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "a return value, moved on at once"
)]
pub(crate) enum Send {
    /// A PUBLISH (new, or resent with DUP).
    Publish(Publish),
    /// A resent PUBREL.
    PubRel(PacketId),
    /// A queued message with a packet identifier expired before it could be
    /// sent: dropped, its identifier free again.
    Expired { packet_id: PacketId, qos: QoS },
}

/// What an acknowledgement did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckResult {
    /// The flow finished (PUBACK, PUBCOMP, or a failing PUBREC).
    Completed {
        qos: QoS,
        reason: ReasonCode,
        /// Its body's [`tag`](crate::MessageBody::tag).
        tag: Option<core::num::NonZeroU64>,
    },
    /// PUBREC accepted: send PUBREL now.
    SendPubRel {
        /// Its body's [`tag`](crate::MessageBody::tag).
        tag: Option<core::num::NonZeroU64>,
    },
    /// No such flow in this state; a PUBREC for an unknown identifier is
    /// answered with PUBREL 0x92.
    Unknown,
}

impl Outgoing {
    /// Number of messages in flight.
    pub(crate) fn inflight_len(&self) -> usize {
        self.inflight.len()
    }

    /// Number of messages waiting.
    pub(crate) fn queue_len(&self) -> usize {
        self.queue.len()
    }

    /// Queued bytes of topic and payload.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Bytes waiting and in flight.
    pub(crate) fn held_bytes(&self) -> usize {
        self.queued_bytes + self.inflight_bytes.0
    }

    /// Offers a message to the queue, applying the limits. Messages in
    /// flight count against them as well as waiting ones: what a session
    /// holds is bounded however few acknowledgements its client sends.
    ///
    /// `count_inflight`: whether messages in flight count against the
    /// limits too (a server's sessions, so what a subscriber that never
    /// acknowledges makes the broker hold is bounded), or only waiting ones
    /// (a client's queue, which its application fills and the window
    /// drains).
    pub(crate) fn enqueue(
        &mut self,
        message: QueuedMessage,
        limits: &QueueLimits,
        count_inflight: bool,
    ) -> Enqueued {
        let size = message.size();
        let (inflight, inflight_bytes) = if count_inflight {
            (self.inflight.len(), self.inflight_bytes.0)
        } else {
            (0, 0)
        };
        let fits = |q: &Self| {
            q.queue.len() + inflight < limits.max_messages
                && q.queued_bytes + inflight_bytes + size <= limits.max_bytes
        };
        if fits(self) {
            self.push(message);
            return Enqueued::Queued;
        }
        match limits.overflow {
            OverflowPolicy::DropOldest if size <= limits.max_bytes && limits.max_messages > 0 => {
                let mut dropped = Vec::new();
                while !fits(self) {
                    match self.pop_front() {
                        Some(old) => dropped.push(old),
                        None => break,
                    }
                }
                self.dropped_full += dropped.len() as u64;
                self.push(message);
                if dropped.is_empty() {
                    Enqueued::Queued
                } else {
                    Enqueued::QueuedDroppingOldest(dropped)
                }
            }
            _ => {
                self.dropped_full += 1;
                Enqueued::Rejected(message)
            }
        }
    }

    fn push(&mut self, message: QueuedMessage) {
        self.queued_bytes += message.size();
        self.queue.push_back(message);
    }

    fn pop_front(&mut self) -> Option<QueuedMessage> {
        let m = self.queue.pop_front()?;
        self.queued_bytes -= m.size();
        Some(m)
    }

    /// Puts messages back at the front of the queue, keeping their order.
    pub(crate) fn requeue_front(
        &mut self,
        messages: impl DoubleEndedIterator<Item = QueuedMessage>,
    ) {
        for m in messages.rev() {
            self.queued_bytes += m.size();
            self.queue.push_front(m);
        }
    }

    /// A QoS 2 message whose PUBREC had come before the session was stored
    /// (its PUBREL is owed): back in the window awaiting PUBCOMP, so the
    /// next connection resends PUBREL, never the PUBLISH. `false` if its
    /// identifier is in use.
    pub(crate) fn restore_released(
        &mut self,
        mut message: Delivery,
        packet_id: PacketId,
        queued_at: Instant,
        ids: &mut PacketIds,
    ) -> bool {
        if !ids.claim(packet_id) {
            return false;
        }
        message.packet_id = Some(packet_id);
        let seq = self.inflight.push(InFlight {
            message,
            sent_expiry: None,
            awaiting: Awaiting::PubComp,
            on_wire: false,
            ever_sent: true,
            accepted: Some(ReasonCode::Success),
            queued_at,
        });
        self.order.insert(packet_id, seq);
        true
    }

    /// The bodies waiting and in flight (a body shared with other sessions
    /// appears in each).
    pub(crate) fn bodies(&self) -> impl Iterator<Item = &alloc::sync::Arc<crate::MessageBody>> {
        self.queue
            .iter()
            .map(|m| &m.message.body)
            .chain(self.inflight.iter().map(|(_, f)| &f.message.body))
    }

    /// The tags of the bodies waiting and in flight.
    pub(crate) fn tags(&self) -> impl Iterator<Item = core::num::NonZeroU64> + '_ {
        self.queue
            .iter()
            .map(|m| &m.message)
            .chain(self.inflight.iter().map(|(_, f)| &f.message))
            .filter_map(|m| m.body.tag)
    }

    /// Starts a new connection: nothing is on the wire any more; everything in
    /// flight is resent first, in order, as the new quota allows.
    pub(crate) fn resume(&mut self) {
        self.detach();
        self.inflight_bytes = Derived(
            self.inflight
                .iter()
                .map(|(_, f)| f.message.body.held_bytes())
                .sum(),
        );
        self.resend_from = self.inflight.first_seq();
    }

    /// The session leaves its connection: nothing is on a wire any more.
    pub(crate) fn detach(&mut self) {
        for (_, f) in self.inflight.iter_mut() {
            f.on_wire = false;
        }
        self.on_wire = 0;
        self.resend_from = None;
    }

    /// Puts back a QoS 1 or 2 message that was in flight with `packet_id`
    /// (a broker restoring it from its store): the next connection resends
    /// it with that identifier and DUP set. `false` if the identifier is in
    /// use.
    pub(crate) fn restore_sent(
        &mut self,
        mut message: Delivery,
        packet_id: PacketId,
        queued_at: Instant,
        ids: &mut PacketIds,
    ) -> bool {
        if message.qos == QoS::AtMostOnce || !ids.claim(packet_id) {
            return false;
        }
        message.packet_id = Some(packet_id);
        let awaiting = if message.qos == QoS::AtLeastOnce {
            Awaiting::PubAck
        } else {
            Awaiting::PubRec
        };
        let seq = self.inflight.push(InFlight {
            message,
            sent_expiry: None,
            awaiting,
            on_wire: false,
            ever_sent: true,
            accepted: None,
            queued_at,
        });
        self.order.insert(packet_id, seq);
        true
    }

    /// Notes that a tagged message left without being delivered.
    pub(crate) fn note_dropped(&mut self, tag: Option<core::num::NonZeroU64>) {
        if let Some(tag) = tag {
            self.notes.push(OutgoingNote::Dropped { tag });
        }
    }

    /// Empties the window for a session the peer no longer has: returns the
    /// unacknowledged messages (to send again as new ones) and the QoS 2
    /// messages already received by the peer (whose flows are complete).
    /// They keep the time they were first queued and their original expiry
    /// interval, so their expiry still counts from when they were queued
    /// [MQTT-3.3.2-5] [MQTT-3.3.2-6].
    pub(crate) fn take_inflight(
        &mut self,
        ids: &mut PacketIds,
    ) -> (VecDeque<QueuedMessage>, VecDeque<PacketId>) {
        let mut unacked = VecDeque::new();
        let mut released = VecDeque::new();
        self.inflight_bytes = Derived(0);
        for f in self.inflight.take_all() {
            match f.awaiting {
                Awaiting::PubComp => {
                    if let Some(id) = f.message.packet_id {
                        ids.release(id);
                        released.push_back(id);
                    }
                }
                Awaiting::PubAck | Awaiting::PubRec => {
                    unacked.push_back(QueuedMessage {
                        message: f.message,
                        queued_at: f.queued_at,
                    });
                }
            }
        }
        self.order.clear();
        self.on_wire = 0;
        self.resend_from = None;
        (unacked, released)
    }

    /// The next packet to send, if the window allows one.
    ///
    /// Resends come first, in order; then queued messages in order. A QoS 1
    /// or 2 message at the head of the queue waits while `on_wire` has reached
    /// `quota` (the peer's Receive Maximum) [MQTT-4.9.0-2], and everything
    /// behind it waits too, so order is kept. A message that expired while
    /// queued is dropped and its remaining interval is sent otherwise
    /// [MQTT-3.3.2-5] [MQTT-3.3.2-6]. `ids` assigns identifiers to messages
    /// that have none yet; `v5` says whether properties go out.
    pub(crate) fn next_send(
        &mut self,
        now: Instant,
        quota: u16,
        ids: &mut PacketIds,
        v5: bool,
    ) -> Option<Send> {
        let on_wire = self.on_wire;
        if let Some(from) = self.resend_from {
            let next = self.inflight.iter_mut_from(from).find(|(_, f)| !f.on_wire);
            match next {
                Some((seq, f)) => {
                    if on_wire >= usize::from(quota) {
                        return None;
                    }
                    f.on_wire = true;
                    self.on_wire += 1;
                    self.resend_from = Some(seq + 1);
                    return Some(match f.awaiting {
                        Awaiting::PubComp => Send::PubRel(f.message.packet_id?),
                        Awaiting::PubAck | Awaiting::PubRec => {
                            let publish = f.message.to_publish(f.ever_sent, f.sent_expiry, v5);
                            f.ever_sent = true;
                            Send::Publish(publish)
                        }
                    });
                }
                None => self.resend_from = None,
            }
        }
        loop {
            let head = self.queue.front()?;
            if head.expires_at().is_some_and(|at| now >= at) {
                self.dropped_expired += 1;
                if let Some(m) = self.pop_front() {
                    self.note_dropped(m.message.body.tag);
                    if let Some(id) = m.message.packet_id {
                        ids.release(id);
                        return Some(Send::Expired {
                            packet_id: id,
                            qos: m.message.qos,
                        });
                    }
                }
                continue;
            }
            if head.message.qos != QoS::AtMostOnce && on_wire >= usize::from(quota) {
                return None;
            }
            if head.message.qos != QoS::AtMostOnce && head.message.packet_id.is_none() {
                // Wait for a free identifier rather than fail; one frees on every ack.
                let id = ids.allocate()?;
                if let Some(m) = self.queue.front_mut() {
                    m.message.packet_id = Some(id);
                }
            }
            let queued = self.pop_front()?;
            let remaining = queued.remaining_expiry(now);
            if queued.message.qos == QoS::AtMostOnce {
                if let Some(tag) = queued.message.body.tag {
                    self.notes.push(OutgoingNote::Delivered { tag });
                }
                let publish = queued.message.into_publish(remaining, v5, &mut self.pool);
                return Some(Send::Publish(publish));
            }
            let publish = queued.message.to_publish(false, remaining, v5);
            let id = publish.packet_id?;
            if let Some(tag) = queued.message.body.tag {
                self.notes.push(OutgoingNote::Sent {
                    tag,
                    packet_id: id,
                    qos: queued.message.qos,
                    subscription_ids: queued.message.subscription_ids.clone(),
                });
            }
            self.inflight_bytes.0 += queued.size();
            let seq = self.inflight.push(InFlight {
                message: queued.message,
                sent_expiry: remaining,
                awaiting: if publish.qos == QoS::AtLeastOnce {
                    Awaiting::PubAck
                } else {
                    Awaiting::PubRec
                },
                on_wire: true,
                ever_sent: true,
                accepted: None,
                queued_at: queued.queued_at,
            });
            self.order.insert(id, seq);
            self.on_wire += 1;
            return Some(Send::Publish(publish));
        }
    }

    /// Handles PUBACK, PUBREC or PUBCOMP for `id`.
    pub(crate) fn acknowledge(
        &mut self,
        id: PacketId,
        kind: Awaiting,
        reason: ReasonCode,
        ids: &mut PacketIds,
    ) -> AckResult {
        let Some(&seq) = self.order.get(id) else {
            return AckResult::Unknown;
        };
        let Some(entry) = self.inflight.get(seq) else {
            return AckResult::Unknown;
        };
        if entry.awaiting != kind {
            return AckResult::Unknown;
        }
        let qos = entry.message.qos;
        match kind {
            Awaiting::PubRec if reason.is_success() => {
                // Move to the back: PUBRELs resend in PUBREC order.
                let Some(mut entry) = self.inflight.remove(seq) else {
                    return AckResult::Unknown;
                };
                entry.awaiting = Awaiting::PubComp;
                entry.accepted = Some(reason);
                let tag = entry.message.body.tag;
                let new_seq = self.inflight.push(entry);
                self.order.insert(id, new_seq);
                AckResult::SendPubRel { tag }
            }
            _ => {
                let removed = self.inflight.remove(seq);
                let (mut accepted, mut tag) = (None, None);
                if let Some(entry) = removed {
                    if entry.on_wire {
                        self.on_wire -= 1;
                    }
                    let size = entry.message.body.held_bytes();
                    self.inflight_bytes.0 = self.inflight_bytes.0.saturating_sub(size);
                    accepted = entry.accepted;
                    tag = entry.message.body.tag;
                    self.pool.recycle(entry.message.body);
                }
                self.order.remove(id);
                ids.release(id);
                AckResult::Completed {
                    qos,
                    reason: accepted.unwrap_or(reason),
                    tag,
                }
            }
        }
    }

    /// The waiting messages, oldest first.
    pub(crate) fn queue(&self) -> impl Iterator<Item = &QueuedMessage> {
        self.queue.iter()
    }

    /// Drops queued messages that expired by `now`; returns how many.
    pub(crate) fn purge_expired(&mut self, now: Instant, ids: &mut PacketIds) -> usize {
        let before = self.queue.len();
        let mut kept = VecDeque::with_capacity(before);
        for m in core::mem::take(&mut self.queue) {
            if m.expires_at().is_some_and(|at| now >= at) {
                self.queued_bytes -= m.size();
                if let Some(tag) = m.message.body.tag {
                    self.notes.push(OutgoingNote::Dropped { tag });
                }
                if let Some(id) = m.message.packet_id {
                    ids.release(id);
                }
            } else {
                kept.push_back(m);
            }
        }
        self.queue = kept;
        let purged = before - self.queue.len();
        self.dropped_expired += purged as u64;
        purged
    }
}

impl QueuedMessage {
    /// The remaining Message Expiry Interval in whole seconds, rounded up, if
    /// the message has one.
    fn remaining_expiry(&self, now: Instant) -> Option<u32> {
        let at = self.expires_at()?;
        let left = at - now;
        let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        Some(u32::try_from(secs).unwrap_or(u32::MAX))
    }
}
