//! What client and server connections share: the QoS flows in both
//! directions, topic aliases, the transmit queue, and closing.
//!
//! [`Core`] is one network link's state. The session state it works on
//! ([`Flows`]) is passed in by the role that owns it, because a session
//! outlives its links.

use crate::{
    AckToken, Instant, PacketIds, Rule, Violation,
    alias::{AliasError, AliasUse, IncomingAliases, OutgoingAliases},
    incoming::{AckQueue, Incoming, PendingAck, Qos2State},
    outgoing::{AckResult, Awaiting, Outgoing, Send},
};
use alloc::{
    boxed::Box,
    collections::{BTreeSet, VecDeque},
};
use tern_codec::{
    Disconnect, Packet, PacketId, ProtocolVersion, PubAck, PubComp, PubRec, PubRel, Publish, QoS,
    ReasonCode,
};

/// The session state both roles keep across reconnects: the QoS flows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub(crate) struct Flows {
    pub(crate) ids: PacketIds,
    pub(crate) outgoing: Outgoing,
    pub(crate) incoming: Incoming,
    /// Counts connections, so a stale QoS 1 [`AckToken`] is recognised.
    pub(crate) epoch: u32,
}

/// Whether a link is still exchanging packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkState {
    /// CONNECT / CONNACK not yet exchanged.
    Handshake,
    /// Connected.
    Open,
    /// Closed; only already-queued packets (a final DISCONNECT) still go out.
    Closed,
}

/// Why a message left without being sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dropped {
    /// Larger than the peer's Maximum Packet Size.
    TooLarge,
    /// Its Message Expiry Interval passed while it was queued.
    Expired,
}

/// What happened to an incoming PUBLISH.
#[allow(
    clippy::large_enum_variant,
    reason = "a return value, moved on at once"
)]
pub(crate) enum Received {
    /// Deliver it to the application, with a token if it must acknowledge.
    Deliver(Publish, Option<AckToken>),
    /// A QoS 2 duplicate: already delivered, not delivered again [MQTT-4.3.3-10].
    Duplicate,
}

/// Negotiated per-link limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// The largest packet the peer accepts.
    pub(crate) peer_max_packet: u32,
    /// The largest packet we accept.
    pub(crate) our_max_packet: u32,
    /// The peer's Receive Maximum: our send quota.
    pub(crate) send_quota: u16,
    /// Our Receive Maximum.
    pub(crate) receive_maximum: u16,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            peer_max_packet: tern_codec::MAX_PACKET_SIZE,
            our_max_packet: tern_codec::MAX_PACKET_SIZE,
            send_quota: u16::MAX,
            receive_maximum: u16::MAX,
        }
    }
}

/// One network link's protocol state.
#[derive(Debug)]
pub(crate) struct Core<E> {
    pub(crate) version: ProtocolVersion,
    pub(crate) state: LinkState,
    pub(crate) limits: Limits,
    /// Packets that are not PUBLISH: never held back by the send quota
    /// [MQTT-3.3.4-8] [MQTT-3.3.4-10].
    control: VecDeque<Packet>,
    pub(crate) events: VecDeque<E>,
    /// Outgoing topic aliases, when the peer takes them (MQTT 5 only, and
    /// rare): boxed, so a link without them holds one word.
    pub(crate) out_aliases: Option<Box<OutgoingAliases>>,
    pub(crate) in_aliases: IncomingAliases,
    acks: AckQueue,
    /// Incoming QoS 2 messages whose PUBLISH arrived on this link and whose
    /// flow is not complete: with the QoS 1 acknowledgements still owed,
    /// what the peer's send quota counts on this link. A flow left over
    /// from an earlier link (waiting for its PUBREL) does not count: the
    /// quota starts afresh with each network connection (MQTT 5 §4.9).
    /// Boxed on first use: a link that never receives QoS 2 holds one word.
    #[allow(
        clippy::box_collection,
        reason = "one word inline instead of three while unused"
    )]
    qos2_on_link: Option<Box<BTreeSet<PacketId>>>,
    pub(crate) manual_acks: bool,
    pub(crate) last_received: Instant,
    pub(crate) last_sent: Instant,
    /// Application messages dropped because they exceeded the peer's maximum
    /// packet size [MQTT-3.1.2-25].
    pub(crate) dropped_too_large: u64,
}

impl<E> Core<E> {
    pub(crate) fn new(now: Instant, version: ProtocolVersion) -> Self {
        Self {
            version,
            state: LinkState::Handshake,
            limits: Limits::default(),
            control: VecDeque::new(),
            events: VecDeque::new(),
            out_aliases: None,
            in_aliases: IncomingAliases::new(0),
            acks: AckQueue::default(),
            qos2_on_link: None,
            manual_acks: false,
            last_received: now,
            last_sent: now,
            dropped_too_large: 0,
        }
    }

    /// Takes outgoing topic aliases, up to `max` (none when 0).
    pub(crate) fn set_outgoing_aliases(&mut self, max: u16) {
        self.out_aliases = (max > 0).then(|| Box::new(OutgoingAliases::new(max)));
    }

    /// A QoS 2 flow that arrived on this link no longer counts against our
    /// Receive Maximum.
    fn qos2_link_done(&mut self, id: PacketId) {
        if let Some(set) = &mut self.qos2_on_link {
            set.remove(&id);
        }
    }

    /// Frees the empty queues' buffers, and the QoS 2 set when empty.
    pub(crate) fn release_memory(&mut self) {
        if self.control.is_empty() && self.control.capacity() > 0 {
            self.control = VecDeque::new();
        }
        if self.events.is_empty() && self.events.capacity() > 0 {
            self.events = VecDeque::new();
        }
        if self.qos2_on_link.as_ref().is_some_and(|s| s.is_empty()) {
            self.qos2_on_link = None;
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state == LinkState::Closed
    }

    /// Queues a non-PUBLISH packet.
    pub(crate) fn send_control(&mut self, packet: Packet) {
        if self.state != LinkState::Closed {
            self.control.push_back(packet);
        }
    }

    /// Closes the link; in MQTT 5 a DISCONNECT with `reason` goes out first
    /// (when `disconnect` is true). Returns `false` if it was already closed.
    pub(crate) fn close(&mut self, reason: Option<ReasonCode>) -> bool {
        if self.state == LinkState::Closed {
            return false;
        }
        if let Some(code) = reason {
            if self.version.is_v5() {
                self.control.push_back(Packet::from(Disconnect::new(code)));
            }
        }
        self.state = LinkState::Closed;
        true
    }

    /// Handles an incoming PUBLISH's QoS flow.
    ///
    /// `flows` is the session; `epoch` identifies this connection for tokens.
    pub(crate) fn receive_publish(
        &mut self,
        flows: &mut Flows,
        mut publish: Publish,
    ) -> Result<Received, Violation> {
        if self.version.is_v5() {
            let topic = self
                .in_aliases
                .resolve(&publish.topic, publish.properties.topic_alias)
                .map_err(|e| match e {
                    AliasError::OutOfRange => Violation::Rule(Rule::TopicAliasAboveMaximum),
                    AliasError::Unknown => Violation::Rule(Rule::TopicAliasUnknown),
                })?;
            publish.topic = topic;
            publish.properties.topic_alias = None;
        }
        let Some(id) = publish.packet_id else {
            return Ok(Received::Deliver(publish, None));
        };
        let token = AckToken {
            packet_id: id,
            qos: publish.qos,
            epoch: flows.epoch,
        };
        let decided = (!self.manual_acks).then_some(ReasonCode::Success);
        match publish.qos {
            QoS::AtMostOnce => Ok(Received::Deliver(publish, None)),
            QoS::AtLeastOnce => {
                self.check_receive_maximum()?;
                self.acks.push(PendingAck {
                    packet_id: id,
                    qos: QoS::AtLeastOnce,
                    reason: decided,
                });
                self.flush_acks(flows);
                Ok(Received::Deliver(
                    publish,
                    self.manual_acks.then_some(token),
                ))
            }
            QoS::ExactlyOnce => match flows.incoming.qos2.get(&id).copied() {
                Some(Qos2State::Received) => {
                    // A resend before PUBREL: acknowledge again, deliver nothing.
                    self.qos2_on_link.get_or_insert_default().insert(id);
                    self.acks.push(PendingAck {
                        packet_id: id,
                        qos: QoS::ExactlyOnce,
                        reason: Some(ReasonCode::Success),
                    });
                    self.flush_acks(flows);
                    Ok(Received::Duplicate)
                }
                Some(Qos2State::Refused(reason)) => {
                    // Delivered on an earlier connection and refused before
                    // this resend: it gets the failing PUBREC, and is not
                    // delivered again.
                    self.qos2_on_link.get_or_insert_default().insert(id);
                    self.acks.push(PendingAck {
                        packet_id: id,
                        qos: QoS::ExactlyOnce,
                        reason: Some(reason),
                    });
                    self.flush_acks(flows);
                    Ok(Received::Duplicate)
                }
                Some(Qos2State::AwaitingApp) => {
                    // Delivered (perhaps on an earlier connection); the PUBREC
                    // goes out when the application acknowledges.
                    self.qos2_on_link.get_or_insert_default().insert(id);
                    if !self.acks.has_undecided(id, QoS::ExactlyOnce) {
                        self.acks.push(PendingAck {
                            packet_id: id,
                            qos: QoS::ExactlyOnce,
                            reason: None,
                        });
                    }
                    Ok(Received::Duplicate)
                }
                None => {
                    self.check_receive_maximum()?;
                    self.qos2_on_link.get_or_insert_default().insert(id);
                    flows.incoming.qos2.insert(
                        id,
                        if decided.is_some() {
                            Qos2State::Received
                        } else {
                            Qos2State::AwaitingApp
                        },
                    );
                    self.acks.push(PendingAck {
                        packet_id: id,
                        qos: QoS::ExactlyOnce,
                        reason: decided,
                    });
                    self.flush_acks(flows);
                    Ok(Received::Deliver(
                        publish,
                        self.manual_acks.then_some(token),
                    ))
                }
            },
        }
    }

    /// The peer may not have more unacknowledged QoS 1 and 2 messages with us
    /// on this link than our Receive Maximum (0x93 otherwise).
    fn check_receive_maximum(&self) -> Result<(), Violation> {
        let qos2 = self.qos2_on_link.as_ref().map_or(0, |s| s.len());
        let pending = self.acks.qos1_pending() + qos2;
        if pending >= usize::from(self.limits.receive_maximum) {
            return Err(Violation::Rule(Rule::ReceiveMaximumExceeded));
        }
        Ok(())
    }

    /// Applies the application's acknowledgement.
    pub(crate) fn acknowledge(
        &mut self,
        flows: &mut Flows,
        token: AckToken,
        reason: ReasonCode,
    ) -> Result<(), crate::AckError> {
        let packet = match token.qos {
            QoS::AtLeastOnce => tern_codec::PacketType::PubAck,
            _ => tern_codec::PacketType::PubRec,
        };
        if !reason.is_valid_for(packet) {
            return Err(crate::AckError::InvalidReasonCode(reason));
        }
        match token.qos {
            QoS::AtLeastOnce => {
                if token.epoch != flows.epoch
                    || !self.acks.decide(token.packet_id, token.qos, reason)
                {
                    return Err(crate::AckError::Stale);
                }
            }
            _ => {
                match flows.incoming.qos2.get(&token.packet_id) {
                    Some(Qos2State::AwaitingApp) => {}
                    _ => return Err(crate::AckError::Stale),
                }
                // The PUBLISH may not have been resent on this connection yet
                // (or its PUBREC waits behind earlier ones); then the PUBREC
                // goes out when it is.
                self.acks.decide(token.packet_id, token.qos, reason);
                let state = Qos2State::decided(reason, self.version.is_v5());
                flows.incoming.qos2.insert(token.packet_id, state);
            }
        }
        self.flush_acks(flows);
        Ok(())
    }

    /// Sends every acknowledgement that is decided and next in line.
    fn flush_acks(&mut self, flows: &mut Flows) {
        while let Some((id, qos, reason)) = self.acks.pop_ready() {
            // MQTT 3.x acknowledgements carry no reason code.
            let reason = if self.version.is_v5() {
                reason
            } else {
                ReasonCode::Success
            };
            let packet = match qos {
                QoS::AtLeastOnce => Packet::PubAck(PubAck::with_reason(id, reason)),
                _ => {
                    if reason.is_error() {
                        flows.incoming.qos2.remove(&id);
                        self.qos2_link_done(id);
                    }
                    Packet::PubRec(PubRec::with_reason(id, reason))
                }
            };
            self.send_control(packet);
        }
    }

    /// Handles PUBREL: release a QoS 2 message and answer PUBCOMP [MQTT-4.3.3-11].
    pub(crate) fn receive_pubrel(
        &mut self,
        flows: &mut Flows,
        id: PacketId,
    ) -> Result<(), Violation> {
        self.qos2_link_done(id);
        let reason = match flows.incoming.qos2.get(&id) {
            Some(Qos2State::Received) => {
                flows.incoming.qos2.remove(&id);
                ReasonCode::Success
            }
            Some(Qos2State::AwaitingApp) => {
                return Err(Violation::Rule(Rule::PubRelWithoutPubRec));
            }
            Some(Qos2State::Refused(_)) => {
                // Not accepted, so nothing to release; the flow is over.
                flows.incoming.qos2.remove(&id);
                ReasonCode::PacketIdentifierNotFound
            }
            None if self.version.is_v5() => ReasonCode::PacketIdentifierNotFound,
            None => ReasonCode::Success,
        };
        self.send_control(Packet::PubComp(PubComp::with_reason(id, reason)));
        Ok(())
    }

    /// Handles PUBACK, PUBREC or PUBCOMP for one of our messages.
    pub(crate) fn receive_ack(
        &mut self,
        flows: &mut Flows,
        id: PacketId,
        kind: Awaiting,
        reason: ReasonCode,
    ) -> AckResult {
        let result = flows.outgoing.acknowledge(id, kind, reason, &mut flows.ids);
        match result {
            AckResult::SendPubRel { .. } => {
                self.send_control(Packet::PubRel(PubRel::new(id)));
            }
            AckResult::Unknown if kind == Awaiting::PubRec => {
                // Answer so the peer can finish its side [MQTT-4.3.3-4].
                let code = if self.version.is_v5() {
                    ReasonCode::PacketIdentifierNotFound
                } else {
                    ReasonCode::Success
                };
                self.send_control(Packet::PubRel(PubRel::with_reason(id, code)));
            }
            _ => {}
        }
        result
    }

    /// The next packet to send.
    ///
    /// `on_drop` is told about each message dropped because it exceeds the
    /// peer's Maximum Packet Size (for QoS 1/2, its flow is then complete)
    /// [MQTT-3.1.2-24] [MQTT-3.1.2-25], and each queued message with a packet
    /// identifier that expired before it could be sent [MQTT-3.3.2-5].
    pub(crate) fn next_transmit(
        &mut self,
        now: Instant,
        flows: &mut Flows,
        mut on_drop: impl FnMut(&mut Self, Option<PacketId>, QoS, Dropped),
    ) -> Option<Packet> {
        if let Some(packet) = self.control.pop_front() {
            self.last_sent = now;
            return Some(packet);
        }
        if self.state != LinkState::Open {
            return None;
        }
        loop {
            let send = flows.outgoing.next_send(
                now,
                self.limits.send_quota,
                &mut flows.ids,
                self.version.is_v5(),
            )?;
            let packet = match send {
                Send::PubRel(id) => Packet::PubRel(PubRel::new(id)),
                Send::Expired { packet_id, qos } => {
                    on_drop(self, Some(packet_id), qos, Dropped::Expired);
                    continue;
                }
                Send::Publish(publish) => {
                    // Size with the full topic: an alias is only assigned to a
                    // message that is actually sent.
                    if publish.encoded_len(self.version) > self.limits.peer_max_packet as usize {
                        self.dropped_too_large += 1;
                        if let Some(id) = publish.packet_id {
                            let kind = if publish.qos == QoS::AtLeastOnce {
                                Awaiting::PubAck
                            } else {
                                Awaiting::PubRec
                            };
                            // Behave as if the message had been delivered.
                            let done = flows.outgoing.acknowledge(
                                id,
                                kind,
                                ReasonCode::PacketTooLarge,
                                &mut flows.ids,
                            );
                            if let AckResult::Completed { tag, .. } = done {
                                flows.outgoing.note_dropped(tag);
                            }
                        }
                        on_drop(self, publish.packet_id, publish.qos, Dropped::TooLarge);
                        continue;
                    }
                    if self.version.is_v5() && self.out_aliases.is_some() {
                        Packet::Publish(self.apply_alias(publish))
                    } else {
                        Packet::Publish(publish)
                    }
                }
            };
            self.last_sent = now;
            return Some(packet);
        }
    }

    /// Replaces the topic with an alias; only where the MQTT 5 peer allows them.
    fn apply_alias(&mut self, mut publish: Publish) -> Publish {
        // A new mapping sends the topic name and the alias property: use an
        // alias only if that still fits the peer's Maximum Packet Size
        // [MQTT-3.1.2-24]; a topic name alone is always allowed.
        let had_properties = publish.properties.is_allocated();
        publish.properties.topic_alias = Some(core::num::NonZeroU16::MAX);
        let fits = publish.encoded_len(self.version) <= self.limits.peer_max_packet as usize;
        publish.properties.topic_alias = None;
        if !had_properties {
            // Free what the probe allocated: no alias, no properties.
            publish.properties = Default::default();
        }
        if !fits {
            return publish;
        }
        let Some(aliases) = self.out_aliases.as_mut() else {
            return publish;
        };
        match aliases.use_for(&publish.topic) {
            AliasUse::None => {}
            AliasUse::Assign(alias) => publish.properties.topic_alias = Some(alias),
            AliasUse::Reuse(alias) => {
                publish.properties.topic_alias = Some(alias);
                publish.topic = tern_codec::MqttString::new();
            }
        }
        publish
    }

    /// Acknowledgements owed on this link.
    pub(crate) fn pending_acks(&self) -> usize {
        self.acks.len()
    }
}
