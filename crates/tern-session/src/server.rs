//! The server side: [`ServerConnection`] for one client's network
//! connection, and the [`ServerSession`] that outlives it.
//!
//! The connection validates what the protocol itself decides; everything
//! that is policy (who may connect, which client identifier to assign, what
//! a subscription is granted, where a message goes) is left to the caller
//! through events and decision calls.

use crate::{
    AckError, AckToken, CloseReason, CommandError, Delivery, Enqueued, Instant, QueueLimits,
    QueuedMessage, Rule, Transmit, Violation,
    core::{Core, Flows, LinkState, Received},
    outgoing::{AckResult, Awaiting},
    transmit,
};
use alloc::{boxed::Box, collections::BTreeMap, vec::Vec};
use bytes::{Bytes, BytesMut};
use core::{num::NonZeroU16, time::Duration};
use tern_codec::{
    AckProperties, Auth, ConnAck, ConnAckProperties, Connect, DecodeErrorKind, Disconnect,
    MqttString, Packet, PacketId, PacketType, ProtocolVersion, Publish, QoS, ReasonCode, SubAck,
    Subscribe, UnsubAck, Unsubscribe, Will,
};

/// What the server announces and enforces on every connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerConfig {
    /// Close a connection that sends no CONNECT (or is not accepted) in this time.
    pub connect_timeout: Duration,
    /// How many QoS 1 and 2 messages an MQTT 5 client may have unacknowledged
    /// with us; more is a protocol error (0x93). MQTT 3.x has no such limit.
    pub receive_maximum: NonZeroU16,
    /// How many QoS 1 and 2 messages we have unacknowledged with a client
    /// that announced no Receive Maximum (every MQTT 3.x client; MQTT 5
    /// lets the server send fewer than the 65,535 the protocol assumes).
    /// The rest wait in the session's bounded queue.
    pub outgoing_inflight: NonZeroU16,
    /// The largest packet we accept; larger ones close the connection (0x95).
    pub maximum_packet_size: u32,
    /// The highest topic alias a client may use.
    pub topic_alias_maximum: u16,
    /// The most topic aliases we assign to messages we send (bounded by the
    /// client's Topic Alias Maximum); 0 sends full topics.
    pub outgoing_topic_aliases: u16,
    /// The highest QoS we accept for PUBLISH.
    pub maximum_qos: QoS,
    /// Whether retained messages are supported.
    pub retain_available: bool,
    /// Whether wildcard subscriptions are supported.
    pub wildcard_subscriptions: bool,
    /// Whether Subscription Identifiers are supported.
    pub subscription_identifiers: bool,
    /// Whether shared subscriptions are supported.
    pub shared_subscriptions: bool,
    /// The longest keep alive allowed; an MQTT 5 client asking for more (or
    /// for none) is told this value as Server Keep Alive.
    pub max_keep_alive: Option<u16>,
    /// Bounds of each session's queue of messages waiting to be sent.
    pub queue: QueueLimits,
    /// Hand incoming QoS 1 and 2 messages over with an [`AckToken`] and
    /// acknowledge only on [`ServerConnection::ack`] (to send a reason code
    /// such as "no matching subscribers"); otherwise acknowledge on receipt.
    pub manual_acks: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            receive_maximum: NonZeroU16::new(1024).unwrap_or(NonZeroU16::MAX),
            outgoing_inflight: NonZeroU16::MAX,
            maximum_packet_size: 1024 * 1024,
            topic_alias_maximum: 64,
            outgoing_topic_aliases: 0,
            maximum_qos: QoS::ExactlyOnce,
            retain_available: true,
            wildcard_subscriptions: true,
            subscription_identifiers: true,
            shared_subscriptions: true,
            max_keep_alive: None,
            queue: QueueLimits::default(),
            manual_acks: false,
        }
    }
}

/// What the server keeps for a client across connections: the QoS flows
/// and the queue of messages waiting for it. Its subscriptions are the
/// broker's to keep (in its subscription tree), not the session's.
///
/// Serialisable (feature `serde`), so a broker can persist it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ServerSession {
    client_id: MqttString,
    flows: Flows,
    queue_limits: QueueLimits,
}

impl ServerSession {
    /// A new session for `client_id`.
    pub fn new(client_id: MqttString, queue_limits: QueueLimits) -> Self {
        Self {
            client_id,
            flows: Flows::default(),
            queue_limits,
        }
    }

    /// The client identifier.
    pub fn client_id(&self) -> &MqttString {
        &self.client_id
    }

    /// Decides a QoS 2 message this session received on a connection that
    /// has since closed (its application took longer than the connection
    /// lasted): the PUBREC with `reason` goes out when the client resends
    /// the PUBLISH on a later connection, as [`ServerConnection::ack`] would
    /// have sent it. `v5`: the protocol version of the connection that
    /// received it (MQTT 3.x cannot refuse). A QoS 1 acknowledgement does
    /// not outlive its connection (the resend is delivered anew): `Stale`.
    pub fn acknowledge(
        &mut self,
        token: AckToken,
        reason: ReasonCode,
        v5: bool,
    ) -> Result<(), AckError> {
        if !reason.is_valid_for(PacketType::PubRec) {
            return Err(AckError::InvalidReasonCode(reason));
        }
        match (
            token.qos(),
            self.flows.incoming.qos2.get_mut(&token.packet_id()),
        ) {
            (QoS::ExactlyOnce, Some(state @ crate::incoming::Qos2State::AwaitingApp)) => {
                *state = crate::incoming::Qos2State::decided(reason, v5);
                Ok(())
            }
            _ => Err(AckError::Stale),
        }
    }

    /// Queues a message for the client (while it is offline, or behind the
    /// in-flight window). Its packet identifier is assigned when it is sent.
    ///
    /// A [`Delivery`] shares its body with every other recipient of the
    /// message; a [`Publish`] becomes a delivery with a body of its own.
    pub fn enqueue(&mut self, now: Instant, message: impl Into<Delivery>) -> Enqueued {
        let mut message = message.into();
        message.packet_id = None;
        self.flows.outgoing.enqueue(
            QueuedMessage {
                message,
                queued_at: now,
            },
            &self.queue_limits,
            true,
        )
    }

    /// Puts back a QoS 2 message to the client whose PUBREC had come
    /// (a broker restoring it from its store): the next connection resends
    /// PUBREL for `packet_id`, never the PUBLISH, so the client never gets
    /// it twice [MQTT-4.3.3-6]. `false` if `packet_id` is already in use.
    pub fn restore_released(
        &mut self,
        now: Instant,
        message: impl Into<Delivery>,
        packet_id: PacketId,
    ) -> bool {
        let flows = &mut self.flows;
        flows
            .outgoing
            .restore_released(message.into(), packet_id, now, &mut flows.ids)
    }

    /// Puts back a QoS 1 or 2 message that was in flight to the client with
    /// `packet_id` (a broker restoring it from its store): the next
    /// connection resends it with that identifier and DUP set
    /// [MQTT-4.4.0-1] [MQTT-3.3.1-1]. `false` if `packet_id` is already in
    /// use, or the message is QoS 0.
    pub fn restore_sent(
        &mut self,
        now: Instant,
        message: impl Into<Delivery>,
        packet_id: PacketId,
    ) -> bool {
        let flows = &mut self.flows;
        flows
            .outgoing
            .restore_sent(message.into(), packet_id, now, &mut flows.ids)
    }

    /// Hands `f` what happened, since the last call, to messages with a
    /// [`tag`](crate::MessageBody::tag) on their way out: each that went in
    /// flight, with its packet identifier, and each dropped undelivered.
    /// A broker that stores its queues records them.
    pub fn drain_outgoing_notes(&mut self, mut f: impl FnMut(crate::OutgoingNote)) {
        for note in self.flows.outgoing.notes.drain(..) {
            f(note);
        }
    }

    /// Puts back an incoming QoS 2 message the broker had accepted (PUBREC
    /// sent) and whose PUBREL had not come (a broker restoring it from its
    /// store): a resent PUBLISH with `packet_id` is acknowledged, not
    /// delivered again [MQTT-4.3.3-10], and its PUBREL is answered.
    pub fn restore_incoming(&mut self, packet_id: PacketId) {
        self.flows
            .incoming
            .qos2
            .insert(packet_id, crate::incoming::Qos2State::Received);
    }

    /// The [`tag`](crate::MessageBody::tag)s of the messages waiting for
    /// the client and in flight to it.
    pub fn tags(&self) -> impl Iterator<Item = core::num::NonZeroU64> + '_ {
        self.flows.outgoing.tags()
    }

    /// Drops queued messages whose Message Expiry Interval has passed.
    pub fn purge_expired(&mut self, now: Instant) -> usize {
        self.flows.outgoing.purge_expired(now, &mut self.flows.ids)
    }

    /// Messages in flight to the client.
    pub fn inflight_len(&self) -> usize {
        self.flows.outgoing.inflight_len()
    }

    /// Messages waiting for the client.
    pub fn queue_len(&self) -> usize {
        self.flows.outgoing.queue_len()
    }

    /// The message bodies the session holds, waiting and in flight. A
    /// message routed to several sessions is one shared body, so a count of
    /// distinct messages can tell them apart by [`Arc::ptr_eq`](alloc::sync::Arc::ptr_eq).
    pub fn held_bodies(&self) -> impl Iterator<Item = &alloc::sync::Arc<crate::MessageBody>> {
        self.flows.outgoing.bodies()
    }

    /// Bytes of topic, payload and properties waiting for the client.
    pub fn queued_bytes(&self) -> usize {
        self.flows.outgoing.queued_bytes()
    }

    /// Messages and bytes the session holds against its queue limits:
    /// waiting and in flight.
    pub fn held(&self) -> (usize, usize) {
        let o = &self.flows.outgoing;
        (o.queue_len() + o.inflight_len(), o.held_bytes())
    }

    /// The waiting messages, oldest first.
    pub fn queued(&self) -> impl Iterator<Item = &QueuedMessage> {
        self.flows.outgoing.queue()
    }

    /// Messages dropped because the queue was full.
    pub fn dropped_queue_full(&self) -> u64 {
        self.flows.outgoing.dropped_full
    }

    /// Messages dropped because they expired while queued.
    pub fn dropped_expired(&self) -> u64 {
        self.flows.outgoing.dropped_expired
    }

    /// Incoming QoS 2 messages received and not yet released.
    pub fn incoming_qos2_len(&self) -> usize {
        self.flows.incoming.qos2.len()
    }

    /// Changes the queue bounds.
    pub fn set_queue_limits(&mut self, limits: QueueLimits) {
        self.queue_limits = limits;
    }
}

/// How the caller accepts a connection.
#[derive(Debug, Clone)]
pub struct Accept {
    /// The session to use: the client's existing one to resume it, or a new one.
    pub session: ServerSession,
    /// Whether `session` is being resumed (Session Present in CONNACK).
    pub session_present: bool,
    /// The identifier assigned to a client that connected with an empty one
    /// (sent as Assigned Client Identifier in MQTT 5) [MQTT-3.2.2-16].
    pub assigned_client_id: Option<MqttString>,
    /// Extra CONNACK properties (reason string, user properties, response
    /// information, authentication data). The limits from [`ServerConfig`]
    /// are added by the connection.
    pub properties: ConnAckProperties,
}

/// What a [`ServerConnection`] reports to the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerEvent {
    /// A valid CONNECT arrived: decide with [`ServerConnection::accept`] or
    /// [`ServerConnection::reject`]. No other packet is processed until then.
    ConnectRequest(Box<Connect>),
    /// An application message from the client; route it, and acknowledge it
    /// when a token is present.
    Message {
        /// The message, its topic resolved from any topic alias.
        publish: Publish,
        /// The acknowledgement receipt, with manual acknowledgement on.
        ack: Option<AckToken>,
    },
    /// A QoS 1 or 2 message to the client finished its flow.
    Delivered {
        /// Its packet identifier.
        packet_id: PacketId,
        /// Its QoS.
        qos: QoS,
        /// The client's reason code.
        reason_code: ReasonCode,
        /// Its body's [`tag`](crate::MessageBody::tag), as the caller set it.
        tag: Option<core::num::NonZeroU64>,
    },
    /// A QoS 2 message to the client whose body has a
    /// [`tag`](crate::MessageBody::tag) got its PUBREC: its PUBREL is queued
    /// (the flow ends with [`Delivered`](Self::Delivered) at PUBCOMP). A
    /// broker that stores its queues records that the PUBREL is owed (see
    /// [`ServerSession::restore_released`]).
    Released {
        /// Its packet identifier.
        packet_id: PacketId,
        /// Its body's tag.
        tag: core::num::NonZeroU64,
    },
    /// The client released an incoming QoS 2 message (PUBREL; the PUBCOMP
    /// is queued): its identifier is free for a new message. A broker
    /// that stores incoming QoS 2 state deletes it (see
    /// [`ServerSession::restore_incoming`]).
    PubRelReceived {
        /// Its packet identifier.
        packet_id: PacketId,
    },
    /// A SUBSCRIBE: answer with [`ServerConnection::suback`].
    SubscribeRequest(Subscribe),
    /// An UNSUBSCRIBE: answer with [`ServerConnection::unsuback`].
    UnsubscribeRequest(Unsubscribe),
    /// An AUTH packet from the client, already checked against the rules
    /// of section 4.12: its Authentication Method is the CONNECT's, and its
    /// reason code is 0x18 (Continue authentication, the next step of an
    /// exchange) or 0x19 (Re-authenticate, starting one once connected).
    ///
    /// Before CONNACK answer with [`ServerConnection::auth_continue`],
    /// [`accept`](ServerConnection::accept) (its properties' Authentication
    /// Data is the final step) or [`reject`](ServerConnection::reject);
    /// during re-authentication with `auth_continue`,
    /// [`auth_success`](ServerConnection::auth_success) or
    /// [`close`](ServerConnection::close) (a failure: DISCONNECT with the
    /// reason code [MQTT-4.12.1-2]).
    Auth(Box<Auth>),
    /// The connection ended. `will` is the Will Message when the connection
    /// did not end with a normal DISCONNECT (reason 0x00);
    /// publishing it (after its Will Delay Interval) is the caller's job.
    Closed {
        /// Why.
        reason: CloseReason,
        /// The will to publish, if the rules say so (boxed: it is large and
        /// rare, and keeps every event small).
        will: Option<Box<Will>>,
        /// How long the session outlives the connection, in seconds
        /// (0: it ends now; `u32::MAX`: it never expires).
        session_expiry_interval: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitingConnect,
    /// A CONNECT (or an AUTH before CONNACK) awaits the caller's decision;
    /// nothing more is read until then.
    AwaitingDecision,
    /// Enhanced authentication: we sent AUTH 0x18 and await the client's.
    Authenticating,
    Open,
    Closed,
}

/// Where a re-authentication stands (MQTT 5.0 §4.12.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reauth {
    Idle,
    /// The client's AUTH awaits the caller's answer.
    AwaitingServer,
    /// We sent AUTH 0x18 and await the client's.
    AwaitingClient,
}

/// One client connection on the server: a sans-IO state machine.
///
/// Methods group as in `quinn-proto`: getters; input
/// ([`handle_bytes`](Self::handle_bytes), [`handle_packet`](Self::handle_packet),
/// [`handle_timeout`](Self::handle_timeout), [`handle_closed`](Self::handle_closed));
/// decisions and commands ([`accept`](Self::accept), [`reject`](Self::reject),
/// [`send`](Self::send), [`suback`](Self::suback), [`unsuback`](Self::unsuback),
/// [`ack`](Self::ack), [`auth_continue`](Self::auth_continue), [`auth_success`](Self::auth_success), [`close`](Self::close)); output
/// ([`poll_transmit`](Self::poll_transmit), [`poll_timeout`](Self::poll_timeout),
/// [`poll_event`](Self::poll_event)).
///
/// After [`accept`](Self::accept), call [`handle_bytes`](Self::handle_bytes)
/// again with the same buffer: packets pipelined behind CONNECT wait there.
#[derive(Debug)]
pub struct ServerConnection {
    core: Core<ServerEvent>,
    config: ServerConfig,
    phase: Phase,
    connect_deadline: Instant,
    session: Option<ServerSession>,
    will: Option<Box<Will>>,
    keep_alive: Duration,
    session_expiry: u32,
    /// Whether the client allows Reason Strings and User Properties on acks.
    problem_information: bool,
    /// SUBSCRIBE / UNSUBSCRIBE awaiting the caller's answer: filter counts.
    /// (one map for both: a field less in every idle connection)
    pending: BTreeMap<(PacketType, PacketId), usize>,
    /// The CONNECT's Authentication Method (MQTT 5 enhanced authentication).
    /// Boxed: enhanced authentication is rare.
    auth_method: Option<Box<MqttString>>,
    reauth: Reauth,
}

/// The Session Expiry Interval a CONNECT asks for, in seconds, written
/// once for the session and the broker: MQTT 5's property (absent: 0, the
/// session ends with its connection); MQTT 3.x: 0 with Clean Session, and
/// `u32::MAX` (never ends) without [MQTT-3.1.2-4]. A session is kept after
/// its connection closes when this is above 0 [MQTT-3.1.2-23].
pub fn requested_session_expiry(connect: &Connect) -> u32 {
    if connect.protocol.is_v5() {
        connect.properties.session_expiry_interval.unwrap_or(0)
    } else if connect.clean_start {
        0
    } else {
        u32::MAX
    }
}

impl ServerConnection {
    /// A new network connection, awaiting CONNECT.
    pub fn new(now: Instant, config: ServerConfig) -> Self {
        let mut core = Core::new(now, ProtocolVersion::V5);
        core.limits.our_max_packet = config.maximum_packet_size;
        Self {
            core,
            config,
            phase: Phase::AwaitingConnect,
            connect_deadline: now + config.connect_timeout,
            session: None,
            will: None,
            keep_alive: Duration::ZERO,
            session_expiry: 0,
            problem_information: true,
            pending: BTreeMap::new(),
            auth_method: None,
            reauth: Reauth::Idle,
        }
    }

    // ---- getters ----

    /// The protocol version (MQTT 5 until CONNECT says otherwise).
    pub fn version(&self) -> ProtocolVersion {
        self.core.version
    }

    /// Whether the connection is accepted and open.
    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// Whether the connection is closed.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// The session, once accepted.
    pub fn session(&self) -> Option<&ServerSession> {
        self.session.as_ref()
    }

    /// The session, mutably.
    pub fn session_mut(&mut self) -> Option<&mut ServerSession> {
        self.session.as_mut()
    }

    /// Takes the session out, normally after the connection closed.
    pub fn take_session(&mut self) -> Option<ServerSession> {
        let mut session = self.session.take()?;
        // Nothing is on the wire once the session leaves its connection.
        session.flows.outgoing.detach();
        Some(session)
    }

    /// The keep alive in effect.
    pub fn keep_alive(&self) -> Duration {
        self.keep_alive
    }

    /// The Authentication Method the client's CONNECT named, if any.
    pub fn auth_method(&self) -> Option<&MqttString> {
        self.auth_method.as_deref()
    }

    /// Messages this connection dropped because they exceeded the
    /// client's Maximum Packet Size [MQTT-3.1.2-25].
    pub fn dropped_too_large(&self) -> u64 {
        self.core.dropped_too_large
    }

    /// Acknowledgements owed to the client and not yet sent.
    pub fn pending_acks(&self) -> usize {
        self.core.pending_acks()
    }

    // ---- input ----

    /// Decodes and handles every whole packet in `buf`. Stops after CONNECT
    /// until the caller accepts or rejects it.
    pub fn handle_bytes(&mut self, now: Instant, buf: &mut BytesMut) {
        while self.handle_next(now, buf) {}
    }

    /// [`handle_bytes`](Self::handle_bytes) for one packet at most: returns
    /// whether one was consumed. For a caller that acts between packets (a
    /// broker that stops reading a publisher mid-buffer, say).
    pub fn handle_next(&mut self, now: Instant, buf: &mut BytesMut) -> bool {
        if matches!(self.phase, Phase::Closed | Phase::AwaitingDecision) {
            return false;
        }
        // [MQTT-3.1.0-1]: the packet type is in the first byte, so a first
        // packet that is not CONNECT is refused before its body arrives.
        if self.phase == Phase::AwaitingConnect
            && buf
                .first()
                .is_some_and(|&byte| byte >> 4 != PacketType::Connect as u8)
        {
            self.refuse_first_packet();
            return false;
        }
        match Packet::decode(buf, self.core.version, self.core.limits.our_max_packet) {
            Ok(Some(packet)) => {
                self.handle_packet(now, packet);
                true
            }
            Ok(None) => false,
            Err(e) => {
                self.decode_failed(e);
                false
            }
        }
    }

    /// Handles one packet from the client.
    pub fn handle_packet(&mut self, now: Instant, packet: Packet) {
        if self.phase == Phase::Closed {
            return;
        }
        self.core.last_received = now;
        let result = match self.phase {
            Phase::AwaitingConnect => self.handle_connect(packet),
            Phase::AwaitingDecision => Err(Violation::Rule(Rule::PacketWhileConnectPending)),
            Phase::Authenticating => self.handle_authenticating(packet),
            Phase::Open => self.handle_open(packet),
            Phase::Closed => Ok(()),
        };
        if let Err(v) = result {
            self.fail(v);
        }
    }

    /// Acts on deadlines: the connect timeout and the keep-alive limit of
    /// 1.5 times the client's interval [MQTT-3.1.2-24]. Early calls do nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.phase {
            Phase::AwaitingConnect | Phase::AwaitingDecision | Phase::Authenticating
                if now >= self.connect_deadline =>
            {
                self.close_with(CloseReason::ConnectTimeout, None, false);
            }
            Phase::Open => {
                if let Some(deadline) = self.keep_alive_deadline() {
                    if now >= deadline {
                        self.close_with(
                            CloseReason::KeepAliveTimeout,
                            Some(ReasonCode::KeepAliveTimeout),
                            true,
                        );
                    }
                }
            }
            _ => {}
        }
    }

    /// The network connection closed: the will applies.
    pub fn handle_closed(&mut self, _now: Instant) {
        self.close_with(CloseReason::TransportClosed, None, true);
    }

    // ---- decisions and commands ----

    /// Accepts the pending CONNECT: sends CONNACK and resumes or starts the session.
    pub fn accept(&mut self, now: Instant, accept: Accept) -> Result<(), CommandError> {
        if self.phase != Phase::AwaitingDecision {
            return Err(CommandError::NoConnectPending);
        }
        let Accept {
            mut session,
            session_present,
            assigned_client_id,
            mut properties,
        } = accept;
        let v5 = self.core.version.is_v5();
        let c = &self.config;
        if v5 {
            if c.receive_maximum.get() != u16::MAX {
                properties.receive_maximum = Some(c.receive_maximum);
            }
            if c.maximum_qos < QoS::ExactlyOnce {
                properties.maximum_qos = Some(c.maximum_qos);
            }
            if !c.retain_available {
                properties.retain_available = Some(false);
            }
            if c.maximum_packet_size < tern_codec::MAX_PACKET_SIZE {
                properties.maximum_packet_size = core::num::NonZeroU32::new(c.maximum_packet_size);
            }
            if c.topic_alias_maximum > 0 {
                properties.topic_alias_maximum = Some(c.topic_alias_maximum);
            }
            if !c.wildcard_subscriptions {
                properties.wildcard_subscription_available = Some(false);
            }
            if !c.subscription_identifiers {
                properties.subscription_identifier_available = Some(false);
            }
            if !c.shared_subscriptions {
                properties.shared_subscription_available = Some(false);
            }
            if let Some(id) = assigned_client_id {
                properties.assigned_client_identifier = Some(id);
            }
            // A successful CONNACK names the CONNECT's method [MQTT-4.12.0-5];
            // without one, none is sent, nor data [MQTT-4.12.0-6].
            properties.authentication_method = self.auth_method.as_deref().cloned();
            if self.auth_method.is_none() {
                properties.authentication_data = None;
            }
            if let Some(max) = c.max_keep_alive {
                let asked = self.keep_alive.as_secs();
                if asked == 0 || asked > u64::from(max) {
                    properties.server_keep_alive = Some(max);
                    self.keep_alive = Duration::from_secs(u64::from(max));
                }
            }
            self.core.in_aliases = crate::alias::IncomingAliases::new(c.topic_alias_maximum);
        } else {
            properties = ConnAckProperties::default();
        }
        // MQTT 3.1.1 has no Receive Maximum: a 3.x client cannot know ours,
        // so holding it to one would disconnect a client that broke no rule.
        self.core.limits.receive_maximum = if v5 {
            c.receive_maximum.get()
        } else {
            u16::MAX
        };
        session.set_queue_limits(c.queue);
        session.flows.epoch = session.flows.epoch.wrapping_add(1);
        if session_present {
            session.flows.outgoing.resume();
        }
        let mut connack = ConnAck {
            // MQTT 3.1 has no Session Present flag.
            session_present: session_present && self.core.version != ProtocolVersion::V3_1,
            reason_code: ReasonCode::Success,
            properties,
        };
        // [MQTT-3.2.2-19] [MQTT-3.2.2-20]: drop diagnostics that would not fit.
        if connack.encoded_len(self.core.version) > self.core.limits.peer_max_packet as usize {
            connack.properties.reason_string = None;
            connack.properties.user_properties.clear();
        }
        self.session = Some(session);
        self.core.last_received = now;
        self.core.send_control(Packet::ConnAck(Box::new(connack)));
        self.core.state = LinkState::Open;
        self.phase = Phase::Open;
        Ok(())
    }

    /// Refuses the pending CONNECT with `reason_code` (mapped to the nearest
    /// MQTT 3.x return code for older clients) and closes. The will is discarded.
    pub fn reject(&mut self, _now: Instant, reason_code: ReasonCode) -> Result<(), CommandError> {
        if self.phase != Phase::AwaitingDecision {
            return Err(CommandError::NoConnectPending);
        }
        if !reason_code.is_error() || !reason_code.is_valid_for(PacketType::ConnAck) {
            return Err(CommandError::Invalid(
                tern_codec::EncodeError::InvalidReasonCode(reason_code),
            ));
        }
        self.refuse(reason_code);
        Ok(())
    }

    /// Sends (or queues) an application message to the client. Its packet
    /// identifier is assigned when it goes in flight.
    pub fn send(
        &mut self,
        now: Instant,
        message: impl Into<Delivery>,
    ) -> Result<Enqueued, CommandError> {
        let session = self.session.as_mut().ok_or(CommandError::NoSession)?;
        Ok(session.enqueue(now, message))
    }

    /// Answers a SUBSCRIBE with one reason code per filter.
    pub fn suback(
        &mut self,
        _now: Instant,
        packet_id: PacketId,
        reason_codes: Vec<ReasonCode>,
        properties: AckProperties,
    ) -> Result<(), CommandError> {
        let Some(&count) = self.pending.get(&(PacketType::Subscribe, packet_id)) else {
            return Err(CommandError::UnknownRequest);
        };
        if count != reason_codes.len() {
            return Err(CommandError::ReasonCodeCount {
                expected: count,
                given: reason_codes.len(),
            });
        }
        let properties = self.diagnostics(properties);
        let suback = SubAck {
            packet_id,
            properties,
            reason_codes,
        };
        suback
            .validate(self.core.version)
            .map_err(CommandError::Invalid)?;
        self.pending.remove(&(PacketType::Subscribe, packet_id));
        self.core.send_control(Packet::SubAck(suback));
        Ok(())
    }

    /// Answers an UNSUBSCRIBE (MQTT 3.x sends no reason codes).
    pub fn unsuback(
        &mut self,
        _now: Instant,
        packet_id: PacketId,
        reason_codes: Vec<ReasonCode>,
        properties: AckProperties,
    ) -> Result<(), CommandError> {
        let Some(&count) = self.pending.get(&(PacketType::Unsubscribe, packet_id)) else {
            return Err(CommandError::UnknownRequest);
        };
        let unsuback = if self.core.version.is_v5() {
            if count != reason_codes.len() {
                return Err(CommandError::ReasonCodeCount {
                    expected: count,
                    given: reason_codes.len(),
                });
            }
            UnsubAck {
                packet_id,
                properties: self.diagnostics(properties),
                reason_codes,
            }
        } else {
            UnsubAck::v3(packet_id)
        };
        unsuback
            .validate(self.core.version)
            .map_err(CommandError::Invalid)?;
        self.pending.remove(&(PacketType::Unsubscribe, packet_id));
        self.core.send_control(Packet::UnsubAck(unsuback));
        Ok(())
    }

    /// Drops a message delivered with `token` without answering it, for
    /// an application about to close the connection because MQTT 3.x has
    /// no code to refuse it with. A QoS 2 packet identifier is then not
    /// kept as received: the client's resend on its next connection is a
    /// new message, decided again, not swallowed as a duplicate of one the
    /// application never took [MQTT-4.3.3-9].
    pub fn drop_unanswered(&mut self, token: AckToken) {
        if let Some(session) = self.session.as_mut() {
            session.flows.incoming.forget_awaiting(token);
        }
    }

    /// Acknowledges a message delivered with an [`AckToken`] (in arrival order).
    pub fn ack(
        &mut self,
        _now: Instant,
        token: AckToken,
        reason_code: ReasonCode,
    ) -> Result<(), AckError> {
        let Some(session) = self.session.as_mut() else {
            return Err(AckError::Stale);
        };
        self.core
            .acknowledge(&mut session.flows, token, reason_code)
    }

    /// The next step of an enhanced authentication exchange: AUTH 0x18
    /// (Continue authentication) with the CONNECT's method and `data`
    /// [MQTT-4.12.0-2] [MQTT-4.12.0-5], then the client's answer comes as
    /// a [`ServerEvent::Auth`]. Allowed while a CONNECT with an
    /// Authentication Method (or the client's AUTH) awaits a decision, and
    /// during a re-authentication the client started; never on a
    /// connection whose CONNECT had no method [MQTT-4.12.0-6].
    pub fn auth_continue(&mut self, now: Instant, data: Option<Bytes>) -> Result<(), CommandError> {
        self.auth_continue_with(now, data, AckProperties::default())
    }

    /// [`auth_continue`](Self::auth_continue) with a Reason String and User
    /// Properties for the AUTH. They are left out where the client asked
    /// for no problem information [MQTT-3.1.2-29], and where they would
    /// make the AUTH larger than the client's Maximum Packet Size
    /// [MQTT-3.15.2-2] [MQTT-3.15.2-3].
    pub fn auth_continue_with(
        &mut self,
        _now: Instant,
        data: Option<Bytes>,
        diagnostics: AckProperties,
    ) -> Result<(), CommandError> {
        let before_connack = match (self.phase, self.reauth) {
            (Phase::Closed, _) => return Err(CommandError::Closed),
            (Phase::AwaitingDecision, _) => true,
            (Phase::Open, Reauth::AwaitingServer) => false,
            _ => return Err(CommandError::NoAuthPending),
        };
        self.send_auth(ReasonCode::ContinueAuthentication, data, diagnostics)?;
        if before_connack {
            self.phase = Phase::Authenticating;
        } else {
            self.reauth = Reauth::AwaitingClient;
        }
        Ok(())
    }

    /// Ends a re-authentication with success: AUTH 0x00 with the method and
    /// `data` (the final step, such as SCRAM's server signature). A failed
    /// one ends with [`close`](Self::close) and the reason code (a
    /// DISCONNECT) [MQTT-4.12.1-2].
    pub fn auth_success(&mut self, now: Instant, data: Option<Bytes>) -> Result<(), CommandError> {
        self.auth_success_with(now, data, AckProperties::default())
    }

    /// [`auth_success`](Self::auth_success) with a Reason String and User
    /// Properties, left out as for [`auth_continue_with`](Self::auth_continue_with).
    pub fn auth_success_with(
        &mut self,
        _now: Instant,
        data: Option<Bytes>,
        diagnostics: AckProperties,
    ) -> Result<(), CommandError> {
        match (self.phase, self.reauth) {
            (Phase::Closed, _) => return Err(CommandError::Closed),
            (Phase::Open, Reauth::AwaitingServer) => {}
            _ => return Err(CommandError::NoAuthPending),
        }
        self.send_auth(ReasonCode::Success, data, diagnostics)?;
        self.reauth = Reauth::Idle;
        Ok(())
    }

    fn send_auth(
        &mut self,
        reason_code: ReasonCode,
        data: Option<Bytes>,
        diagnostics: AckProperties,
    ) -> Result<(), CommandError> {
        let method = self
            .auth_method
            .as_deref()
            .cloned()
            .ok_or(CommandError::NoAuthPending)?;
        let diagnostics = self.diagnostics(diagnostics);
        let mut auth = Auth {
            reason_code,
            properties: tern_codec::AuthProperties {
                authentication_method: Some(method),
                authentication_data: data,
                reason_string: diagnostics.reason_string,
                user_properties: diagnostics.user_properties,
            },
        };
        // [MQTT-3.15.2-2] [MQTT-3.15.2-3]: drop diagnostics that would not fit.
        if Packet::Auth(Box::new(auth.clone())).encoded_len(self.core.version)
            > self.core.limits.peer_max_packet as usize
        {
            auth.properties.reason_string = None;
            auth.properties.user_properties = Default::default();
        }
        auth.validate(self.core.version)
            .map_err(CommandError::Invalid)?;
        self.core.send_control(Packet::Auth(Box::new(auth)));
        Ok(())
    }

    /// Closes the connection from the server side (take-over 0x8E, shutdown
    /// 0x8B, administrative action 0x98, ...): MQTT 5 clients get a
    /// DISCONNECT with `reason_code` first. The will, if any, is handed back
    /// in the `Closed` event; whether to publish it is the caller's decision.
    pub fn close(&mut self, _now: Instant, reason_code: ReasonCode) {
        if self.phase == Phase::Open {
            let code = if reason_code.is_valid_for(PacketType::Disconnect) {
                reason_code
            } else {
                ReasonCode::UnspecifiedError
            };
            self.close_with(CloseReason::Local(reason_code), Some(code), true);
        } else {
            self.close_with(CloseReason::Local(reason_code), None, false);
        }
    }

    // ---- output ----

    /// The next packet to send, or `None`. Stop calling when your write
    /// buffer is full: messages wait in the session's bounded queue instead.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Packet> {
        let Some(session) = self.session.as_mut() else {
            return self
                .core
                .next_transmit(now, &mut Flows::default(), |_, _, _, _| {});
        };
        self.core
            .next_transmit(now, &mut session.flows, |_, _, _, _| {})
    }

    /// Writes the next packet into `buf` and says what was written, or
    /// returns `None` when nothing is due: [`poll_transmit`](Self::poll_transmit)
    /// with the encoding done, so the host never encodes. A PUBLISH payload
    /// longer than `max_copy` bytes is not copied: it comes back in
    /// [`Transmit::payload`], to write right after the bytes appended
    /// (`usize::MAX` copies every payload).
    pub fn write_transmit(
        &mut self,
        now: Instant,
        buf: &mut BytesMut,
        max_copy: usize,
    ) -> Option<Transmit> {
        loop {
            let packet = self.poll_transmit(now)?;
            if let Some(t) = transmit::write(&packet, self.core.version, buf, max_copy) {
                return Some(t);
            }
            let code = ReasonCode::ImplementationSpecificError;
            self.close_with(CloseReason::Local(code), Some(code), true);
        }
    }

    /// The next deadline at which [`handle_timeout`](Self::handle_timeout) must be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::AwaitingConnect | Phase::AwaitingDecision | Phase::Authenticating => {
                Some(self.connect_deadline)
            }
            Phase::Open => self.keep_alive_deadline(),
            Phase::Closed => None,
        }
    }

    /// The next event for the caller.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.core.events.pop_front()
    }

    /// Gives back the memory of the link's empty internal queues (packets
    /// to send, events), so that a connection gone quiet costs little; they
    /// grow again on use. A broker calls it when it has drained one.
    pub fn release_memory(&mut self) {
        self.core.release_memory();
    }

    // ---- internals ----

    fn keep_alive_deadline(&self) -> Option<Instant> {
        if self.keep_alive.is_zero() {
            return None;
        }
        Some(self.core.last_received + self.keep_alive * 3 / 2)
    }

    /// Reason strings and user properties only where the client asked for
    /// problem information [MQTT-3.1.2-29].
    fn diagnostics(&self, properties: AckProperties) -> AckProperties {
        if self.core.version.is_v5() && self.problem_information {
            properties
        } else {
            AckProperties::default()
        }
    }

    fn decode_failed(&mut self, error: tern_codec::DecodeError) {
        if self.phase == Phase::AwaitingConnect {
            // Answer a bad CONNECT with CONNACK where the version allows
            // [MQTT-3.1.2-2]; a DISCONNECT may not come before CONNACK. A
            // protocol name other than "MQTT"/"MQIsdp" is not this protocol:
            // close without answering [MQTT-3.1.2-1] (the other choice, a
            // CONNACK, would be processing it "in line with this
            // specification", which that statement forbids).
            match (error.kind(), error.connect_version()) {
                (DecodeErrorKind::InvalidProtocolName, _) => {}
                (DecodeErrorKind::UnsupportedProtocolLevel(_), _) => {
                    self.core.version = ProtocolVersion::V3_1_1;
                    self.send_refusal(ReasonCode::UnsupportedProtocolVersion);
                }
                (_, Some(v)) if v.is_v5() => {
                    self.core.version = v;
                    self.send_refusal(error.reason_code());
                }
                _ => {}
            }
            self.close_with(
                CloseReason::ProtocolViolation(Violation::Decode(error)),
                None,
                false,
            );
            return;
        }
        self.fail(Violation::Decode(error));
    }

    fn send_refusal(&mut self, reason_code: ReasonCode) {
        let reason_code = if self.core.version.is_v5() {
            reason_code
        } else {
            reason_code.to_v3_connack()
        };
        self.core.send_control(Packet::ConnAck(Box::new(ConnAck {
            session_present: false,
            reason_code,
            properties: ConnAckProperties::default(),
        })));
    }

    fn refuse(&mut self, reason_code: ReasonCode) {
        self.send_refusal(reason_code);
        self.will = None;
        self.close_with(CloseReason::ConnectRefused(reason_code), None, false);
    }

    fn fail(&mut self, violation: Violation) {
        if self.phase == Phase::Authenticating {
            // Before CONNACK a DISCONNECT may not be sent [MQTT-3.14.0-1]:
            // the refusal is a CONNACK with the reason code (section 4.13).
            let code = violation.reason_code();
            self.send_refusal(if code.is_valid_for(PacketType::ConnAck) {
                code
            } else {
                ReasonCode::ProtocolError
            });
            self.will = None;
            self.close_with(CloseReason::ProtocolViolation(violation), None, false);
            return;
        }
        let open = self.phase == Phase::Open;
        let code = if violation.reason_code().is_valid_for(PacketType::Disconnect) {
            violation.reason_code()
        } else {
            ReasonCode::ProtocolError
        };
        self.close_with(
            CloseReason::ProtocolViolation(violation),
            open.then_some(code),
            open,
        );
    }

    /// Closes; `with_will` hands the will back in the event.
    fn close_with(&mut self, reason: CloseReason, disconnect: Option<ReasonCode>, with_will: bool) {
        if self.phase == Phase::Closed {
            return;
        }
        self.core.close(disconnect);
        self.phase = Phase::Closed;
        let will = if with_will { self.will.take() } else { None };
        self.will = None;
        self.core.events.push_back(ServerEvent::Closed {
            reason,
            will,
            session_expiry_interval: self.session_expiry,
        });
    }

    /// [MQTT-3.1.0-1]: the first packet must be CONNECT. Anything else is
    /// not this protocol's conversation, so the connection closes without
    /// an answer.
    fn refuse_first_packet(&mut self) {
        self.close_with(
            CloseReason::ProtocolViolation(Violation::Rule(Rule::FirstPacketNotConnect)),
            None,
            false,
        );
    }

    fn handle_connect(&mut self, packet: Packet) -> Result<(), Violation> {
        let Packet::Connect(connect) = packet else {
            self.refuse_first_packet();
            return Ok(());
        };
        let version = connect.protocol;
        self.core.version = version;
        self.keep_alive = Duration::from_secs(u64::from(connect.keep_alive));
        self.session_expiry = requested_session_expiry(&connect);
        self.problem_information = connect
            .properties
            .request_problem_information
            .unwrap_or(true);
        // A client that announces no Receive Maximum gets our own bound.
        self.core.limits.send_quota = self.config.outgoing_inflight.get();
        if version.is_v5() {
            self.core.limits.send_quota = connect
                .properties
                .receive_maximum
                .map_or(self.config.outgoing_inflight.get(), |r| r.get());
            self.core.limits.peer_max_packet = connect
                .properties
                .maximum_packet_size
                .map_or(tern_codec::MAX_PACKET_SIZE, |m| m.get());
            self.core.set_outgoing_aliases(
                self.config
                    .outgoing_topic_aliases
                    .min(connect.properties.topic_alias_maximum.unwrap_or(0)),
            );
        }
        self.core.manual_acks = self.config.manual_acks;
        self.auth_method = connect
            .properties
            .authentication_method
            .clone()
            .filter(|_| version.is_v5())
            .map(Box::new);

        // Rules the protocol itself decides.
        let empty_id = connect.client_id.is_empty();
        if empty_id
            && (version == ProtocolVersion::V3_1 || (!version.is_v5() && !connect.clean_start))
        {
            // [MQTT-3.1.3-8]: an empty identifier needs a clean session (3.1: never allowed).
            self.refuse(ReasonCode::ClientIdentifierNotValid);
            return Ok(());
        }
        if let Some(will) = &connect.will {
            if will.qos > self.config.maximum_qos {
                self.refuse(ReasonCode::QosNotSupported); // [MQTT-3.2.2-12]
                return Ok(());
            }
            if will.retain && !self.config.retain_available {
                self.refuse(ReasonCode::RetainNotSupported); // [MQTT-3.2.2-13]
                return Ok(());
            }
        }
        self.will = connect.will.clone().map(Box::new);
        self.phase = Phase::AwaitingDecision;
        self.core
            .events
            .push_back(ServerEvent::ConnectRequest(connect));
        Ok(())
    }

    fn handle_open(&mut self, packet: Packet) -> Result<(), Violation> {
        let Some(session) = self.session.as_mut() else {
            return Ok(());
        };
        let flows = &mut session.flows;
        match packet {
            Packet::Publish(publish) => {
                if publish.qos > self.config.maximum_qos {
                    return Err(Violation::Rule(Rule::QosAboveMaximum));
                }
                if publish.retain && !self.config.retain_available {
                    return Err(Violation::Rule(Rule::RetainNotAvailable));
                }
                if !publish.properties.subscription_identifiers.is_empty() {
                    return Err(Violation::Rule(Rule::SubscriptionIdFromClient));
                }
                if let Received::Deliver(publish, ack) =
                    self.core.receive_publish(flows, publish)?
                {
                    self.core
                        .events
                        .push_back(ServerEvent::Message { publish, ack });
                }
            }
            Packet::PubAck(a) => self.outgoing_ack(a.packet_id, Awaiting::PubAck, a.reason_code),
            Packet::PubRec(a) => self.outgoing_ack(a.packet_id, Awaiting::PubRec, a.reason_code),
            Packet::PubComp(a) => self.outgoing_ack(a.packet_id, Awaiting::PubComp, a.reason_code),
            Packet::PubRel(r) => {
                self.core.receive_pubrel(flows, r.packet_id)?;
                self.core.events.push_back(ServerEvent::PubRelReceived {
                    packet_id: r.packet_id,
                });
            }
            Packet::Subscribe(subscribe) => {
                if subscribe.properties.subscription_identifier.is_some()
                    && !self.config.subscription_identifiers
                {
                    return Err(Violation::Rule(Rule::SubscriptionIdsNotSupported));
                }
                if self
                    .pending
                    .contains_key(&(PacketType::Subscribe, subscribe.packet_id))
                {
                    // Reused before we answered: refuse it, keep the first.
                    let codes =
                        alloc::vec![ReasonCode::PacketIdentifierInUse; subscribe.filters.len()];
                    self.core.send_control(Packet::SubAck(SubAck {
                        packet_id: subscribe.packet_id,
                        properties: AckProperties::default(),
                        reason_codes: codes,
                    }));
                    return Ok(());
                }
                self.pending.insert(
                    (PacketType::Subscribe, subscribe.packet_id),
                    subscribe.filters.len(),
                );
                self.core
                    .events
                    .push_back(ServerEvent::SubscribeRequest(subscribe));
            }
            Packet::Unsubscribe(unsubscribe) => {
                if self
                    .pending
                    .contains_key(&(PacketType::Unsubscribe, unsubscribe.packet_id))
                {
                    let unsuback = if self.core.version.is_v5() {
                        UnsubAck {
                            packet_id: unsubscribe.packet_id,
                            properties: AckProperties::default(),
                            reason_codes: alloc::vec![
                                ReasonCode::PacketIdentifierInUse;
                                unsubscribe.filters.len()
                            ],
                        }
                    } else {
                        UnsubAck::v3(unsubscribe.packet_id)
                    };
                    self.core.send_control(Packet::UnsubAck(unsuback));
                    return Ok(());
                }
                self.pending.insert(
                    (PacketType::Unsubscribe, unsubscribe.packet_id),
                    unsubscribe.filters.len(),
                );
                self.core
                    .events
                    .push_back(ServerEvent::UnsubscribeRequest(unsubscribe));
            }
            Packet::PingReq => self.core.send_control(Packet::PingResp),
            Packet::Disconnect(d) => self.client_disconnected(*d)?,
            Packet::Auth(auth) if self.core.version.is_v5() => {
                self.check_auth_method(&auth)?;
                self.reauth = match (auth.reason_code, self.reauth) {
                    // [MQTT-4.12.1-1]: the client starts re-authentication.
                    (ReasonCode::ReAuthenticate, Reauth::Idle) => Reauth::AwaitingServer,
                    // [MQTT-4.12.0-3]: and answers our AUTH with 0x18.
                    (ReasonCode::ContinueAuthentication, Reauth::AwaitingClient) => {
                        Reauth::AwaitingServer
                    }
                    _ => return Err(Violation::Rule(Rule::AuthOutOfSequence)),
                };
                self.core.events.push_back(ServerEvent::Auth(auth));
            }
            Packet::Connect(_) => {
                return Err(Violation::Rule(Rule::SecondConnect));
            }
            _ => {
                return Err(Violation::Rule(Rule::ServerOnlyPacket));
            }
        }
        Ok(())
    }

    /// Enhanced authentication before CONNACK: only AUTH 0x18 or
    /// DISCONNECT may come [MQTT-3.1.2-30] [MQTT-4.12.0-3].
    fn handle_authenticating(&mut self, packet: Packet) -> Result<(), Violation> {
        match packet {
            Packet::Auth(auth) => {
                self.check_auth_method(&auth)?;
                if auth.reason_code != ReasonCode::ContinueAuthentication {
                    return Err(Violation::Rule(Rule::AuthOutOfSequence));
                }
                self.phase = Phase::AwaitingDecision;
                self.core.events.push_back(ServerEvent::Auth(auth));
                Ok(())
            }
            Packet::Disconnect(d) => {
                // The client gave up; it never connected, so no will.
                self.will = None;
                self.close_with(
                    CloseReason::PeerDisconnected {
                        reason_code: d.reason_code,
                        reason_string: d.properties.reason_string,
                    },
                    None,
                    false,
                );
                Ok(())
            }
            Packet::Connect(_) => Err(Violation::Rule(Rule::SecondConnect)),
            _ => Err(Violation::Rule(Rule::PacketDuringAuthentication)),
        }
    }

    /// An AUTH's method: the CONNECT had one [MQTT-4.12.0-7], the AUTH
    /// has one (§3.15.2.2.2) and it is the same [MQTT-4.12.0-5].
    fn check_auth_method(&self, auth: &Auth) -> Result<(), Violation> {
        let Some(ours) = self.auth_method.as_deref() else {
            return Err(Violation::Rule(Rule::AuthWithoutMethod));
        };
        match &auth.properties.authentication_method {
            None => Err(Violation::Rule(Rule::AuthMethodMissing)),
            Some(m) if m != ours => Err(Violation::Rule(Rule::AuthMethodMismatch)),
            Some(_) => Ok(()),
        }
    }

    fn outgoing_ack(&mut self, id: PacketId, kind: Awaiting, reason: ReasonCode) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        match self.core.receive_ack(&mut session.flows, id, kind, reason) {
            AckResult::Completed { qos, reason, tag } => {
                self.core.events.push_back(ServerEvent::Delivered {
                    packet_id: id,
                    qos,
                    reason_code: reason,
                    tag,
                });
            }
            AckResult::SendPubRel { tag: Some(tag) } => {
                self.core
                    .events
                    .push_back(ServerEvent::Released { packet_id: id, tag });
            }
            _ => {}
        }
    }

    fn client_disconnected(&mut self, d: Disconnect) -> Result<(), Violation> {
        if let Some(expiry) = d.properties.session_expiry_interval {
            if self.session_expiry == 0 && expiry > 0 {
                return Err(Violation::Rule(Rule::SessionExpiryRaisedFromZero));
            }
            self.session_expiry = expiry;
        }
        // Only a normal disconnection (0x00) deletes the will; 0x04 and every
        // error code leave it to be published [MQTT-3.1.2-8] [MQTT-3.14.4-3].
        let with_will = d.reason_code != ReasonCode::Success;
        self.close_with(
            CloseReason::PeerDisconnected {
                reason_code: d.reason_code,
                reason_string: d.properties.reason_string,
            },
            None,
            with_will,
        );
        Ok(())
    }
}
