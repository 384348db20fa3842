//! The client side: [`ClientConnection`] for one network connection, and the
//! [`ClientSession`] that outlives it.

use crate::{
    AckError, AckToken, CloseReason, CommandError, Delivery, Instant, PublishError, QueueLimits,
    QueuedMessage, Rule, Transmit, Violation,
    core::{Core, Dropped, Flows, LinkState, Received},
    outgoing::{AckResult, Awaiting, Enqueued},
    transmit,
};
use alloc::{boxed::Box, collections::BTreeMap, vec::Vec};
use bytes::{Bytes, BytesMut};
use core::time::Duration;
use tern_codec::{
    AckProperties, Auth, ConnAck, Connect, ConnectProperties, Disconnect, DisconnectProperties,
    EncodeError, MqttString, Packet, PacketId, PacketType, ProtocolVersion, Publish, QoS,
    ReasonCode, SubAck, Subscribe, SubscribeFilter, SubscribeProperties, SubscriptionId,
    SubscriptionOptions, UnsubAck, Unsubscribe, UnsubscribeProperties, Will,
};

/// How a client connects, and how its connection behaves.
///
/// ```
/// use tern_codec::{MqttString, ProtocolVersion};
/// use tern_session::ConnectOptions;
///
/// let options = ConnectOptions {
///     version: ProtocolVersion::V3_1_1,
///     keep_alive: 30,
///     ..ConnectOptions::new(MqttString::from_static("sensor-17"))
/// };
/// assert!(options.clean_start);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectOptions {
    /// The protocol version to speak.
    pub version: ProtocolVersion,
    /// The client identifier; empty asks the server to assign one.
    pub client_id: MqttString,
    /// Start a new session (discarding the server's state for this client).
    pub clean_start: bool,
    /// Keep alive in seconds; 0 turns it off.
    pub keep_alive: u16,
    /// The Last Will and Testament.
    pub will: Option<Will>,
    /// The user name.
    pub username: Option<MqttString>,
    /// The password.
    pub password: Option<Bytes>,
    /// MQTT 5 CONNECT properties: session expiry, Receive Maximum, Maximum
    /// Packet Size, Topic Alias Maximum, request flags, user properties and
    /// the authentication method and data for enhanced authentication.
    pub properties: ConnectProperties,
    /// Deliver QoS 1 and 2 messages with an [`AckToken`] and acknowledge only
    /// when [`ClientConnection::ack`] is called; otherwise acknowledge on receipt.
    pub manual_acks: bool,
    /// Bounds of the queue of messages waiting to be sent.
    pub queue: QueueLimits,
    /// Give up if no CONNACK arrives in this time.
    pub connect_timeout: Option<Duration>,
    /// Give up if nothing arrives this long after a PINGREQ; defaults to the
    /// keep-alive interval.
    pub ping_timeout: Option<Duration>,
    /// The most topic aliases to assign to outgoing messages (also bounded by
    /// the server's Topic Alias Maximum); 0 sends full topics.
    pub outgoing_topic_aliases: u16,
    /// When the server has lost the session (Session Present 0), subscribe
    /// again to every filter the session had been granted.
    pub resubscribe: bool,
    /// MQTT 3.1/3.1.1 only: send mosquitto's `try_private` bridge mark
    /// (protocol level | 0x80; see [`Connect::bridge`]). A server that does
    /// not know it refuses the CONNECT with return code 1.
    pub try_private: bool,
}

impl ConnectOptions {
    /// MQTT 5.0 with a clean start, a 60-second keep alive and no will.
    pub fn new(client_id: MqttString) -> Self {
        Self {
            version: ProtocolVersion::V5,
            client_id,
            clean_start: true,
            keep_alive: 60,
            will: None,
            username: None,
            password: None,
            properties: ConnectProperties::default(),
            manual_acks: false,
            queue: QueueLimits::default(),
            connect_timeout: Some(Duration::from_secs(30)),
            ping_timeout: None,
            outgoing_topic_aliases: 0,
            resubscribe: true,
            try_private: false,
        }
    }

    /// Checks the rules a client must keep in its CONNECT, before anything
    /// is sent: the packet's own (as [`Connect::validate`]), and that an
    /// MQTT 3.x client with a zero-byte client identifier asks for a clean
    /// session [MQTT-3.1.3-7] (MQTT 5 allows it: the server assigns one).
    ///
    /// ```
    /// use tern_codec::{MqttString, ProtocolVersion};
    /// use tern_session::ConnectOptions;
    ///
    /// let mut options = ConnectOptions::new(MqttString::new());
    /// options.clean_start = false;
    /// assert!(options.validate().is_ok());
    /// options.version = ProtocolVersion::V3_1_1;
    /// assert!(options.validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<(), EncodeError> {
        if !self.version.is_v5() && self.client_id.is_empty() && !self.clean_start {
            return Err(EncodeError::InvalidValue(
                "an empty client identifier needs a clean session in MQTT 3.x",
            ));
        }
        self.connect_packet().validate(self.version)
    }

    /// The CONNECT packet these options produce.
    pub fn connect_packet(&self) -> Connect {
        Connect {
            protocol: self.version,
            clean_start: self.clean_start,
            keep_alive: self.keep_alive,
            properties: if self.version.is_v5() {
                self.properties.clone()
            } else {
                ConnectProperties::default()
            },
            client_id: self.client_id.clone(),
            will: self.will.clone(),
            username: self.username.clone(),
            password: self.password.clone(),
            bridge: self.try_private && !self.version.is_v5(),
        }
    }
}

/// A subscription the server granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct GrantedSubscription {
    /// The options requested (the QoS is what was granted).
    pub options: SubscriptionOptions,
    /// The Subscription Identifier it was made with.
    pub subscription_id: Option<SubscriptionId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
struct PendingRequest<P> {
    packet: P,
    /// Issued by the session itself (a resubscribe), not the application.
    internal: bool,
}

/// What a client keeps across connections: its QoS flows in both
/// directions, its queue, and the subscriptions the server granted.
///
/// Serialisable (feature `serde`), so a client can survive a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ClientSession {
    flows: Flows,
    subscriptions: BTreeMap<MqttString, GrantedSubscription>,
    pending_subscribe: BTreeMap<PacketId, PendingRequest<Subscribe>>,
    pending_unsubscribe: BTreeMap<PacketId, PendingRequest<Unsubscribe>>,
    /// A clean start was asked for and no CONNACK has answered it yet: the
    /// session was discarded, so the next connection starts clean too.
    #[cfg_attr(feature = "serde", serde(default))]
    clean_start_pending: bool,
}

impl ClientSession {
    /// A new, empty session.
    pub fn new() -> Self {
        Self::default()
    }

    /// The subscriptions the server granted, by filter.
    pub fn subscriptions(&self) -> &BTreeMap<MqttString, GrantedSubscription> {
        &self.subscriptions
    }

    /// QoS 1 and 2 messages sent and not yet acknowledged.
    pub fn inflight_len(&self) -> usize {
        self.flows.outgoing.inflight_len()
    }

    /// Messages waiting to be sent.
    pub fn queue_len(&self) -> usize {
        self.flows.outgoing.queue_len()
    }

    /// Packet identifiers in use (messages in flight or queued, and pending
    /// SUBSCRIBE / UNSUBSCRIBE requests).
    pub fn packet_ids_in_use(&self) -> usize {
        self.flows.ids.in_use()
    }

    /// Incoming QoS 2 messages received and not yet released by PUBREL.
    pub fn incoming_qos2_len(&self) -> usize {
        self.flows.incoming.qos2.len()
    }
}

/// What a [`ClientConnection`] reports to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// The server accepted the connection.
    Connected {
        /// Whether the server resumed the session.
        session_present: bool,
        /// The CONNACK, with the server's limits and any assigned identifier
        /// (boxed: it is large and arrives once per connection).
        connack: Box<ConnAck>,
    },
    /// An application message arrived; acknowledge it with `ack` when the
    /// token is present (manual acknowledgement).
    Message {
        /// The message, its topic resolved from any topic alias.
        publish: Publish,
        /// The acknowledgement receipt, for manual acknowledgement.
        ack: Option<AckToken>,
    },
    /// A QoS 1 or 2 message's flow finished: PUBACK, PUBCOMP, or a PUBREC
    /// with an error (MQTT 5 reason code below 0x80 means delivered).
    Published {
        /// The identifier `publish` returned.
        packet_id: PacketId,
        /// The message's QoS.
        qos: QoS,
        /// The server's reason code.
        reason_code: ReasonCode,
    },
    /// A message left the queue without being sent (the queue's
    /// drop-oldest policy, or its Message Expiry Interval passed); its
    /// identifier, if it had one, is free again.
    PublishDropped {
        /// The identifier `publish` returned.
        packet_id: Option<PacketId>,
    },
    /// The SUBACK for a `subscribe`.
    Subscribed {
        /// The identifier `subscribe` returned.
        packet_id: PacketId,
        /// One per filter, in order.
        reason_codes: Vec<ReasonCode>,
        /// Reason string and user properties.
        properties: AckProperties,
    },
    /// The UNSUBACK for an `unsubscribe` (MQTT 3.x reports Success per filter).
    Unsubscribed {
        /// The identifier `unsubscribe` returned.
        packet_id: PacketId,
        /// One per filter, in order.
        reason_codes: Vec<ReasonCode>,
        /// Reason string and user properties.
        properties: AckProperties,
    },
    /// An AUTH packet from the server (enhanced authentication); answer with
    /// [`ClientConnection::auth`].
    Auth(Box<Auth>),
    /// The connection ended; take the session back with
    /// [`ClientConnection::into_session`] to reconnect.
    Closed(CloseReason),
}

/// The limits the server announced in CONNACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// The highest QoS the server accepts.
    pub maximum_qos: QoS,
    /// Whether retained messages are supported.
    pub retain_available: bool,
    /// The largest packet the server accepts.
    pub maximum_packet_size: u32,
    /// How many QoS 1 and 2 messages may be unacknowledged at once.
    pub receive_maximum: u16,
    /// The keep alive in effect (the server's, if it sent one).
    pub keep_alive: u16,
    /// Whether wildcard subscriptions are supported.
    pub wildcard_subscriptions: bool,
    /// Whether Subscription Identifiers are supported.
    pub subscription_identifiers: bool,
    /// Whether shared subscriptions are supported.
    pub shared_subscriptions: bool,
    /// The client identifier the server assigned, if it did.
    pub assigned_client_id: Option<MqttString>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitingConnAck,
    Connected,
    Closed,
}

/// One client network connection: a sans-IO state machine.
///
/// Methods come in four groups, as in `quinn-proto`:
/// - getters: [`state`](Self::state), [`version`](Self::version),
///   [`server_limits`](Self::server_limits), [`session`](Self::session);
/// - input: [`handle_bytes`](Self::handle_bytes), [`handle_packet`](Self::handle_packet),
///   [`handle_timeout`](Self::handle_timeout), [`handle_closed`](Self::handle_closed);
/// - commands: [`publish`](Self::publish), [`subscribe`](Self::subscribe),
///   [`unsubscribe`](Self::unsubscribe), [`disconnect`](Self::disconnect),
///   [`ack`](Self::ack), enhanced authentication ([`auth_continue`](Self::auth_continue),
///   [`reauthenticate`](Self::reauthenticate), [`auth`](Self::auth));
/// - output: [`poll_transmit`](Self::poll_transmit), [`poll_timeout`](Self::poll_timeout),
///   [`poll_event`](Self::poll_event).
///
/// See the crate documentation for the drain rule.
#[derive(Debug)]
pub struct ClientConnection {
    core: Core<ClientEvent>,
    session: ClientSession,
    options: ConnectOptions,
    phase: Phase,
    connect_deadline: Option<Instant>,
    keep_alive: Duration,
    ping_sent: Option<Instant>,
    limits: Option<ServerLimits>,
    /// A re-authentication we started awaits the server's AUTH 0x00.
    reauthenticating: bool,
}

impl ClientConnection {
    /// Starts a connection: queues CONNECT. Pass the session from the last
    /// connection to resume it, or [`ClientSession::new`].
    ///
    /// With `clean_start` the session's server-side state is given up, but
    /// messages waiting or unacknowledged are kept and sent again as new ones.
    /// Until a CONNACK answers a clean start, later connections with the
    /// same session start clean as well.
    pub fn new(now: Instant, mut options: ConnectOptions, mut session: ClientSession) -> Self {
        // A session given up for a clean start that no CONNACK confirmed is
        // not resumed: the server may or may not have started afresh, and
        // either way resuming would be resuming without the state.
        options.clean_start |= session.clean_start_pending;
        if options.clean_start {
            // The client discards its session when it asks for a clean start
            // [MQTT-3.1.2-4], not when the CONNACK arrives: if this connection
            // fails before then, the server may have started afresh anyway,
            // and incoming QoS 2 state kept for it would take the new
            // session's messages for resends and drop them.
            session.flows.incoming.qos2.clear();
            session.clean_start_pending = true;
        }
        let mut core = Core::new(now, options.version);
        core.manual_acks = options.manual_acks;
        core.limits.receive_maximum = options
            .properties
            .receive_maximum
            .map_or(u16::MAX, |r| r.get());
        core.limits.our_max_packet = options
            .properties
            .maximum_packet_size
            .map_or(tern_codec::MAX_PACKET_SIZE, |m| m.get());
        core.in_aliases =
            crate::alias::IncomingAliases::new(options.properties.topic_alias_maximum.unwrap_or(0));
        session.flows.epoch = session.flows.epoch.wrapping_add(1);
        session.flows.outgoing.pool.enable();
        core.send_control(Packet::from(options.connect_packet()));
        Self {
            core,
            session,
            connect_deadline: options.connect_timeout.map(|t| now + t),
            keep_alive: Duration::from_secs(u64::from(options.keep_alive)),
            options,
            phase: Phase::AwaitingConnAck,
            ping_sent: None,
            limits: None,
            reauthenticating: false,
        }
    }

    // ---- getters ----

    /// Where the connection stands.
    pub fn state(&self) -> ConnectionState {
        match self.phase {
            Phase::AwaitingConnAck => ConnectionState::Connecting,
            Phase::Connected => ConnectionState::Connected,
            Phase::Closed => ConnectionState::Closed,
        }
    }

    /// The protocol version.
    pub fn version(&self) -> ProtocolVersion {
        self.core.version
    }

    /// The server's limits, once connected.
    pub fn server_limits(&self) -> Option<&ServerLimits> {
        self.limits.as_ref()
    }

    /// The session state.
    pub fn session(&self) -> &ClientSession {
        &self.session
    }

    /// Ends the connection's life and returns the session, for the next connection.
    pub fn into_session(mut self) -> ClientSession {
        // Nothing is on the wire once the session leaves its connection.
        self.session.flows.outgoing.detach();
        self.session.flows.outgoing.pool.clear();
        self.session
    }

    // ---- input ----

    /// Decodes and handles every whole packet in `buf`, leaving a partial
    /// packet in place for the next call.
    pub fn handle_bytes(&mut self, now: Instant, buf: &mut BytesMut) {
        while !self.core.is_closed() {
            match Packet::decode(buf, self.core.version, self.core.limits.our_max_packet) {
                Ok(Some(packet)) => self.handle_packet(now, packet),
                Ok(None) => return,
                Err(e) => {
                    self.fail(Violation::Decode(e));
                    return;
                }
            }
        }
    }

    /// Handles one packet from the server.
    pub fn handle_packet(&mut self, now: Instant, packet: Packet) {
        if self.core.is_closed() {
            return;
        }
        self.core.last_received = now;
        self.ping_sent = None;
        let result = match self.phase {
            Phase::AwaitingConnAck => self.handle_handshake(now, packet),
            Phase::Connected => self.handle_connected(packet),
            Phase::Closed => Ok(()),
        };
        if let Err(v) = result {
            self.fail(v);
        }
    }

    /// Acts on deadlines that have passed: the CONNACK timeout, sending
    /// PINGREQ (after a keep-alive interval in which nothing was sent, or
    /// nothing received), and the PINGRESP timeout. Calling it early does
    /// nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.phase {
            Phase::AwaitingConnAck if self.connect_deadline.is_some_and(|d| now >= d) => {
                self.close_with(CloseReason::ConnectTimeout, None);
            }
            Phase::Connected if !self.keep_alive.is_zero() => {
                if let Some(sent) = self.ping_sent {
                    if now >= sent + self.ping_timeout() {
                        self.close_with(CloseReason::KeepAliveTimeout, None);
                    }
                } else if now >= self.idle_since() + self.keep_alive {
                    // Nothing sent for a keep-alive interval [MQTT-3.1.2-20],
                    // or nothing received: a client that keeps sending must
                    // still notice a connection that went silent.
                    self.core.send_control(Packet::PingReq);
                    self.ping_sent = Some(now);
                }
            }
            _ => {}
        }
    }

    /// The network connection closed.
    pub fn handle_closed(&mut self, _now: Instant) {
        self.close_with(CloseReason::TransportClosed, None);
    }

    // ---- commands ----

    /// Publishes a message; returns its packet identifier at QoS 1 and 2.
    ///
    /// The message is queued and goes out, in order, as the server's Receive
    /// Maximum allows; [`ClientEvent::Published`] reports the end of its flow.
    /// `dup`, `packet_id` and any topic alias are set by the session.
    pub fn publish(
        &mut self,
        now: Instant,
        mut publish: Publish,
    ) -> Result<Option<PacketId>, PublishError> {
        if self.phase == Phase::Closed {
            return Err(PublishError::Closed);
        }
        if publish.properties.topic_alias.is_some() {
            return Err(PublishError::PropertyNotAllowed("a Topic Alias"));
        }
        if !publish.properties.subscription_identifiers.is_empty() {
            return Err(PublishError::PropertyNotAllowed(
                "a Subscription Identifier",
            ));
        }
        publish.dup = false;
        publish.packet_id = (publish.qos != QoS::AtMostOnce).then_some(PacketId::MIN);
        publish
            .validate(self.core.version)
            .map_err(PublishError::Invalid)?;
        if let Some(limits) = &self.limits {
            check_server_limits(&publish, limits, self.core.version)?;
        }
        publish.packet_id = match publish.qos {
            QoS::AtMostOnce => None,
            _ => Some(
                self.session
                    .flows
                    .ids
                    .allocate()
                    .ok_or(PublishError::PacketIdsExhausted)?,
            ),
        };
        let id = publish.packet_id;
        let message = QueuedMessage {
            message: Delivery::pooled(publish, &mut self.session.flows.outgoing.pool),
            queued_at: now,
        };
        match self
            .session
            .flows
            .outgoing
            .enqueue(message, &self.options.queue, false)
        {
            Enqueued::Queued => {}
            Enqueued::QueuedDroppingOldest(dropped) => {
                for old in dropped {
                    if let Some(old_id) = old.message.packet_id {
                        self.session.flows.ids.release(old_id);
                    }
                    self.core.events.push_back(ClientEvent::PublishDropped {
                        packet_id: old.message.packet_id,
                    });
                }
            }
            Enqueued::Rejected(_) => {
                if let Some(id) = id {
                    self.session.flows.ids.release(id);
                }
                return Err(PublishError::QueueFull);
            }
        }
        Ok(id)
    }

    /// Subscribes; [`ClientEvent::Subscribed`] carries the result.
    pub fn subscribe(
        &mut self,
        _now: Instant,
        filters: Vec<SubscribeFilter>,
        properties: SubscribeProperties,
    ) -> Result<PacketId, CommandError> {
        if self.phase == Phase::Closed {
            return Err(CommandError::Closed);
        }
        if properties.subscription_identifier.is_some()
            && self
                .limits
                .as_ref()
                .is_some_and(|l| !l.subscription_identifiers)
        {
            return Err(CommandError::SubscriptionIdentifiersNotSupported);
        }
        self.send_subscribe(filters, properties, false)
    }

    fn send_subscribe(
        &mut self,
        filters: Vec<SubscribeFilter>,
        properties: SubscribeProperties,
        internal: bool,
    ) -> Result<PacketId, CommandError> {
        let packet_id = self
            .session
            .flows
            .ids
            .allocate()
            .ok_or(CommandError::PacketIdsExhausted)?;
        let subscribe = Subscribe {
            packet_id,
            properties,
            filters,
        };
        if let Err(e) = subscribe.validate(self.core.version) {
            self.session.flows.ids.release(packet_id);
            return Err(CommandError::Invalid(e));
        }
        if self.phase == Phase::Connected {
            self.core.send_control(Packet::Subscribe(subscribe.clone()));
        }
        self.session.pending_subscribe.insert(
            packet_id,
            PendingRequest {
                packet: subscribe,
                internal,
            },
        );
        Ok(packet_id)
    }

    /// Unsubscribes; [`ClientEvent::Unsubscribed`] carries the result.
    pub fn unsubscribe(
        &mut self,
        _now: Instant,
        filters: Vec<MqttString>,
        properties: UnsubscribeProperties,
    ) -> Result<PacketId, CommandError> {
        if self.phase == Phase::Closed {
            return Err(CommandError::Closed);
        }
        let packet_id = self
            .session
            .flows
            .ids
            .allocate()
            .ok_or(CommandError::PacketIdsExhausted)?;
        let unsubscribe = Unsubscribe {
            packet_id,
            properties,
            filters,
        };
        if let Err(e) = unsubscribe.validate(self.core.version) {
            self.session.flows.ids.release(packet_id);
            return Err(CommandError::Invalid(e));
        }
        if self.phase == Phase::Connected {
            self.core
                .send_control(Packet::Unsubscribe(unsubscribe.clone()));
        }
        self.session.pending_unsubscribe.insert(
            packet_id,
            PendingRequest {
                packet: unsubscribe,
                internal: false,
            },
        );
        Ok(packet_id)
    }

    /// Acknowledges a message delivered with an [`AckToken`]. Acknowledgements
    /// go out in the order the messages arrived, whatever order they are
    /// given in [MQTT-4.6.0-2] [MQTT-4.6.0-3]. MQTT 3.x cannot carry a reason
    /// code, so there any reason acknowledges.
    pub fn ack(
        &mut self,
        _now: Instant,
        token: AckToken,
        reason_code: ReasonCode,
    ) -> Result<(), AckError> {
        self.core
            .acknowledge(&mut self.session.flows, token, reason_code)
    }

    /// Sends an AUTH packet as given: the next step of enhanced
    /// authentication, or re-authentication (reason code 0x19) once
    /// connected. MQTT 5 only. [`auth_continue`](Self::auth_continue) and
    /// [`reauthenticate`](Self::reauthenticate) fill in the method.
    pub fn auth(&mut self, _now: Instant, auth: Auth) -> Result<(), CommandError> {
        if self.phase == Phase::Closed {
            return Err(CommandError::Closed);
        }
        auth.validate(self.core.version)
            .map_err(CommandError::Invalid)?;
        if auth.reason_code == ReasonCode::ReAuthenticate {
            self.reauthenticating = true;
        }
        self.core.send_control(Packet::from(auth));
        Ok(())
    }

    /// Answers the server's AUTH with AUTH 0x18 (Continue authentication),
    /// the CONNECT's method and `data` [MQTT-4.12.0-3] [MQTT-4.12.0-5].
    pub fn auth_continue(&mut self, now: Instant, data: Option<Bytes>) -> Result<(), CommandError> {
        let auth = self.auth_packet(ReasonCode::ContinueAuthentication, data)?;
        self.auth(now, auth)
    }

    /// Starts a re-authentication once connected: AUTH 0x19 with the
    /// CONNECT's method and `data` [MQTT-4.12.1-1]. The server answers with
    /// AUTH (0x18 to continue, 0x00 when it succeeded) or, if it failed,
    /// DISCONNECT [MQTT-4.12.1-2].
    pub fn reauthenticate(
        &mut self,
        now: Instant,
        data: Option<Bytes>,
    ) -> Result<(), CommandError> {
        if self.phase != Phase::Connected || self.reauthenticating {
            return Err(CommandError::NoAuthPending);
        }
        let auth = self.auth_packet(ReasonCode::ReAuthenticate, data)?;
        self.auth(now, auth)
    }

    fn auth_packet(
        &self,
        reason_code: ReasonCode,
        data: Option<Bytes>,
    ) -> Result<Auth, CommandError> {
        let method = self.auth_method().ok_or(CommandError::NoAuthPending)?;
        Ok(Auth {
            reason_code,
            properties: tern_codec::AuthProperties {
                authentication_method: Some(method.clone()),
                authentication_data: data,
                ..Default::default()
            },
        })
    }

    /// The CONNECT's Authentication Method (MQTT 5).
    fn auth_method(&self) -> Option<&MqttString> {
        self.options
            .properties
            .authentication_method
            .as_ref()
            .filter(|_| self.core.version.is_v5())
    }

    /// A server's AUTH against section 4.12: we sent a method
    /// [MQTT-4.12.0-6], the AUTH names the same [MQTT-4.12.0-5], and its
    /// reason code fits where the exchange stands.
    fn check_server_auth(&mut self, auth: &Auth) -> Result<(), Violation> {
        let Some(ours) = self.auth_method() else {
            return Err(Violation::Rule(Rule::AuthWithoutMethod));
        };
        match &auth.properties.authentication_method {
            None => return Err(Violation::Rule(Rule::AuthMethodMissing)),
            Some(m) if m != ours => return Err(Violation::Rule(Rule::AuthMethodMismatch)),
            Some(_) => {}
        }
        match (self.phase, auth.reason_code) {
            (Phase::AwaitingConnAck, ReasonCode::ContinueAuthentication) => Ok(()),
            (Phase::Connected, ReasonCode::ContinueAuthentication) if self.reauthenticating => {
                Ok(())
            }
            (Phase::Connected, ReasonCode::Success) if self.reauthenticating => {
                self.reauthenticating = false;
                Ok(())
            }
            _ => Err(Violation::Rule(Rule::AuthOutOfSequence)),
        }
    }

    /// Disconnects normally (or, in MQTT 5, with `reason_code`, for example
    /// 0x04 to have the server publish the will). In MQTT 5 `properties` may
    /// change the Session Expiry Interval, except from zero.
    pub fn disconnect(
        &mut self,
        _now: Instant,
        reason_code: ReasonCode,
        properties: DisconnectProperties,
    ) -> Result<(), CommandError> {
        if self.phase == Phase::Closed {
            return Err(CommandError::Closed);
        }
        let was_zero = self.options.properties.session_expiry_interval.unwrap_or(0) == 0;
        if was_zero && properties.session_expiry_interval.is_some_and(|s| s > 0) {
            return Err(CommandError::SessionExpiryRaisedFromZero);
        }
        let disconnect = Disconnect {
            reason_code,
            properties,
        };
        disconnect
            .validate(self.core.version)
            .map_err(CommandError::Invalid)?;
        self.core.send_control(Packet::from(disconnect));
        self.close_with(CloseReason::Local(reason_code), None);
        Ok(())
    }

    // ---- output ----

    /// The next packet to send, or `None`. Stop calling when your write
    /// buffer is full: messages wait in the session's bounded queue instead.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Packet> {
        self.core
            .next_transmit(now, &mut self.session.flows, |core, packet_id, qos, why| {
                let Some(packet_id) = packet_id else {
                    return;
                };
                core.events.push_back(match why {
                    Dropped::TooLarge => ClientEvent::Published {
                        packet_id,
                        qos,
                        reason_code: ReasonCode::PacketTooLarge,
                    },
                    Dropped::Expired => ClientEvent::PublishDropped {
                        packet_id: Some(packet_id),
                    },
                });
            })
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
            self.close_with(CloseReason::Local(code), Some(code));
        }
    }

    /// Writes every packet due into `buf`, payloads included, and returns
    /// how many: [`write_transmit`](Self::write_transmit) in a loop, for a
    /// driver that writes the whole buffer out at once.
    ///
    /// ```
    /// use tern_codec::{MqttString, Packet, ProtocolVersion, bytes::BytesMut};
    /// use tern_session::{ClientConnection, ClientSession, ConnectOptions, Instant};
    ///
    /// let options = ConnectOptions::new(MqttString::from_static("c"));
    /// let mut conn = ClientConnection::new(Instant::ZERO, options, ClientSession::new());
    /// let mut buf = BytesMut::new();
    /// assert_eq!(conn.write_transmits(Instant::ZERO, &mut buf), 1);
    /// let packet = Packet::decode(&mut buf, ProtocolVersion::V5, 1 << 20)?;
    /// assert!(matches!(packet, Some(Packet::Connect(_))));
    /// assert_eq!(conn.write_transmits(Instant::ZERO, &mut buf), 0);
    /// # Ok::<(), Box<dyn core::error::Error>>(())
    /// ```
    pub fn write_transmits(&mut self, now: Instant, buf: &mut BytesMut) -> usize {
        let mut n = 0;
        while self.write_transmit(now, buf, usize::MAX).is_some() {
            n += 1;
        }
        n
    }

    /// The next deadline at which [`handle_timeout`](Self::handle_timeout) must be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::AwaitingConnAck => self.connect_deadline,
            Phase::Connected if !self.keep_alive.is_zero() => Some(match self.ping_sent {
                Some(sent) => sent + self.ping_timeout(),
                None => self.idle_since() + self.keep_alive,
            }),
            _ => None,
        }
    }

    /// The next event for the application.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.core.events.pop_front()
    }

    // ---- internals ----

    /// The start of the current silence in either direction.
    fn idle_since(&self) -> Instant {
        self.core.last_sent.min(self.core.last_received)
    }

    fn ping_timeout(&self) -> Duration {
        self.options.ping_timeout.unwrap_or(self.keep_alive)
    }

    fn fail(&mut self, violation: Violation) {
        let code = if violation.reason_code().is_valid_for(PacketType::Disconnect) {
            violation.reason_code()
        } else {
            ReasonCode::ProtocolError
        };
        self.close_with(CloseReason::ProtocolViolation(violation), Some(code));
    }

    fn close_with(&mut self, reason: CloseReason, disconnect: Option<ReasonCode>) {
        if self.core.close(disconnect) {
            self.phase = Phase::Closed;
            self.core.events.push_back(ClientEvent::Closed(reason));
        }
    }

    fn handle_handshake(&mut self, now: Instant, packet: Packet) -> Result<(), Violation> {
        match packet {
            Packet::ConnAck(connack) => self.handle_connack(now, connack),
            Packet::Auth(auth) if self.core.version.is_v5() => {
                self.check_server_auth(&auth)?;
                self.core.events.push_back(ClientEvent::Auth(auth));
                Ok(())
            }
            Packet::Disconnect(d) if self.core.version.is_v5() => {
                self.peer_disconnected(*d);
                Ok(())
            }
            _ => Err(Violation::Rule(Rule::FirstPacketNotConnAck)),
        }
    }

    fn handle_connack(&mut self, _now: Instant, connack: Box<ConnAck>) -> Result<(), Violation> {
        if connack.reason_code.is_error() {
            self.close_with(CloseReason::ConnectRefused(connack.reason_code), None);
            return Ok(());
        }
        // [MQTT-3.2.2-4]: a client that asked for a clean start has no state
        // for the server to resume. A client that asked to resume counts as
        // having session state even when it is empty (a restarted process
        // that did not persist any): it wants the messages queued for it.
        if connack.session_present && self.options.clean_start {
            return Err(Violation::Rule(Rule::SessionPresentAfterCleanStart));
        }
        // A successful CONNACK names our method [MQTT-4.12.0-5], or none if
        // we sent none [MQTT-4.12.0-6].
        match (
            self.auth_method(),
            &connack.properties.authentication_method,
        ) {
            (None, None) => {}
            (None, Some(_)) => return Err(Violation::Rule(Rule::AuthWithoutMethod)),
            (Some(ours), Some(theirs)) if ours == theirs => {}
            (Some(_), _) => return Err(Violation::Rule(Rule::AuthMethodMismatch)),
        }
        let p = &connack.properties;
        let limits = ServerLimits {
            maximum_qos: p.maximum_qos.unwrap_or(QoS::ExactlyOnce),
            retain_available: p.retain_available.unwrap_or(true),
            maximum_packet_size: p
                .maximum_packet_size
                .map_or(tern_codec::MAX_PACKET_SIZE, |m| m.get()),
            receive_maximum: p.receive_maximum.map_or(u16::MAX, |r| r.get()),
            keep_alive: p.server_keep_alive.unwrap_or(self.options.keep_alive),
            wildcard_subscriptions: p.wildcard_subscription_available.unwrap_or(true),
            subscription_identifiers: p.subscription_identifier_available.unwrap_or(true),
            shared_subscriptions: p.shared_subscription_available.unwrap_or(true),
            assigned_client_id: p.assigned_client_identifier.clone(),
        };
        // [MQTT-3.2.2-21]: the server's keep alive wins.
        self.keep_alive = Duration::from_secs(u64::from(limits.keep_alive));
        self.core.limits.send_quota = limits.receive_maximum;
        self.core.limits.peer_max_packet = limits.maximum_packet_size;
        self.core.set_outgoing_aliases(
            self.options
                .outgoing_topic_aliases
                .min(p.topic_alias_maximum.unwrap_or(0)),
        );
        if connack.session_present {
            self.session.flows.outgoing.resume();
        } else {
            self.lose_server_session();
        }
        // Requests that never got an answer go again, with the same identifiers.
        for pending in self.session.pending_subscribe.values() {
            self.core
                .send_control(Packet::Subscribe(pending.packet.clone()));
        }
        for pending in self.session.pending_unsubscribe.values() {
            self.core
                .send_control(Packet::Unsubscribe(pending.packet.clone()));
        }
        self.limits = Some(limits);
        self.session.clean_start_pending = false;
        self.phase = Phase::Connected;
        self.core.state = LinkState::Open;
        self.core.events.push_back(ClientEvent::Connected {
            session_present: connack.session_present,
            connack,
        });
        Ok(())
    }

    /// The server has no state for us [MQTT-3.2.2-5]: unacknowledged messages
    /// go again as new ones, QoS 2 messages it already received are complete,
    /// incoming QoS 2 state is dropped, and granted subscriptions are
    /// requested again if the options say so.
    fn lose_server_session(&mut self) {
        let flows = &mut self.session.flows;
        // Unacknowledged messages keep their identifiers: still ours to use.
        let (unacked, released) = flows.outgoing.take_inflight(&mut flows.ids);
        flows.outgoing.requeue_front(unacked.into_iter());
        for packet_id in released {
            self.core.events.push_back(ClientEvent::Published {
                packet_id,
                qos: QoS::ExactlyOnce,
                reason_code: ReasonCode::Success,
            });
        }
        flows.incoming.qos2.clear();
        let granted = core::mem::take(&mut self.session.subscriptions);
        if self.options.resubscribe && !granted.is_empty() {
            // One SUBSCRIBE per Subscription Identifier: it is per packet.
            let mut by_id: BTreeMap<Option<SubscriptionId>, Vec<SubscribeFilter>> = BTreeMap::new();
            for (filter, g) in granted {
                by_id
                    .entry(g.subscription_id)
                    .or_default()
                    .push(SubscribeFilter {
                        filter,
                        options: g.options,
                    });
            }
            for (subscription_id, filters) in by_id {
                let properties = SubscribeProperties {
                    subscription_identifier: subscription_id,
                    ..SubscribeProperties::default()
                };
                // Identifier exhaustion here would mean 65,535 requests in flight.
                let _ = self.send_subscribe(filters, properties, true);
            }
        }
    }

    fn handle_connected(&mut self, packet: Packet) -> Result<(), Violation> {
        let flows = &mut self.session.flows;
        match packet {
            Packet::Publish(publish) => {
                if let Received::Deliver(publish, ack) =
                    self.core.receive_publish(flows, publish)?
                {
                    self.core
                        .events
                        .push_back(ClientEvent::Message { publish, ack });
                }
            }
            Packet::PubAck(ack) => {
                self.outgoing_ack(ack.packet_id, Awaiting::PubAck, ack.reason_code)
            }
            Packet::PubRec(ack) => {
                self.outgoing_ack(ack.packet_id, Awaiting::PubRec, ack.reason_code)
            }
            Packet::PubComp(ack) => {
                self.outgoing_ack(ack.packet_id, Awaiting::PubComp, ack.reason_code)
            }
            Packet::PubRel(rel) => self.core.receive_pubrel(flows, rel.packet_id)?,
            Packet::SubAck(suback) => self.handle_suback(suback)?,
            Packet::UnsubAck(unsuback) => self.handle_unsuback(unsuback)?,
            Packet::PingResp => {}
            Packet::Disconnect(d) => self.peer_disconnected(*d),
            Packet::Auth(auth) if self.core.version.is_v5() => {
                self.check_server_auth(&auth)?;
                self.core.events.push_back(ClientEvent::Auth(auth));
            }
            Packet::ConnAck(_) => return Err(Violation::Rule(Rule::SecondConnAck)),
            _ => return Err(Violation::Rule(Rule::ClientOnlyPacket)),
        }
        Ok(())
    }

    fn outgoing_ack(&mut self, id: PacketId, kind: Awaiting, reason: ReasonCode) {
        if let AckResult::Completed { qos, reason, .. } =
            self.core
                .receive_ack(&mut self.session.flows, id, kind, reason)
        {
            self.core.events.push_back(ClientEvent::Published {
                packet_id: id,
                qos,
                reason_code: reason,
            });
        }
    }

    fn handle_suback(&mut self, suback: SubAck) -> Result<(), Violation> {
        let Some(pending) = self.session.pending_subscribe.remove(&suback.packet_id) else {
            return Ok(()); // a late answer to a request we gave up: harmless
        };
        self.session.flows.ids.release(suback.packet_id);
        let request = pending.packet;
        if suback.reason_codes.len() != request.filters.len() {
            return Err(Violation::Rule(Rule::SubAckCountMismatch));
        }
        for (f, code) in request.filters.iter().zip(&suback.reason_codes) {
            let granted = match code {
                ReasonCode::Success => Some(QoS::AtMostOnce),
                ReasonCode::GrantedQos1 => Some(QoS::AtLeastOnce),
                ReasonCode::GrantedQos2 => Some(QoS::ExactlyOnce),
                _ => None,
            };
            if let Some(qos) = granted {
                self.session.subscriptions.insert(
                    f.filter.clone(),
                    GrantedSubscription {
                        options: SubscriptionOptions { qos, ..f.options },
                        subscription_id: request.properties.subscription_identifier,
                    },
                );
            }
        }
        if !pending.internal {
            self.core.events.push_back(ClientEvent::Subscribed {
                packet_id: suback.packet_id,
                reason_codes: suback.reason_codes,
                properties: suback.properties,
            });
        }
        Ok(())
    }

    fn handle_unsuback(&mut self, unsuback: UnsubAck) -> Result<(), Violation> {
        let Some(pending) = self.session.pending_unsubscribe.remove(&unsuback.packet_id) else {
            return Ok(());
        };
        self.session.flows.ids.release(unsuback.packet_id);
        let request = pending.packet;
        let reason_codes = if self.core.version.is_v5() {
            if unsuback.reason_codes.len() != request.filters.len() {
                return Err(Violation::Rule(Rule::UnsubAckCountMismatch));
            }
            unsuback.reason_codes
        } else {
            alloc::vec![ReasonCode::Success; request.filters.len()]
        };
        for filter in &request.filters {
            self.session.subscriptions.remove(filter);
        }
        self.core.events.push_back(ClientEvent::Unsubscribed {
            packet_id: unsuback.packet_id,
            reason_codes,
            properties: unsuback.properties,
        });
        Ok(())
    }

    fn peer_disconnected(&mut self, d: Disconnect) {
        self.close_with(
            CloseReason::PeerDisconnected {
                reason_code: d.reason_code,
                reason_string: d.properties.reason_string,
            },
            None,
        );
    }
}

/// Where a connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// The handshake is under way.
    Connecting,
    /// Connected: packets flow.
    Connected,
    /// Closed.
    Closed,
}

fn check_server_limits(
    publish: &Publish,
    limits: &ServerLimits,
    version: ProtocolVersion,
) -> Result<(), PublishError> {
    if publish.qos > limits.maximum_qos {
        return Err(PublishError::QosNotSupported {
            maximum: limits.maximum_qos,
        });
    }
    if publish.retain && !limits.retain_available {
        return Err(PublishError::RetainNotSupported);
    }
    let size = publish.encoded_len(version);
    if size > limits.maximum_packet_size as usize {
        return Err(PublishError::PacketTooLarge {
            size,
            maximum: limits.maximum_packet_size,
        });
    }
    Ok(())
}
