//! The sans-IO broker core.
//!
//! [`Broker`] plays the part quinn-proto's `Endpoint` plays for QUIC: it owns
//! every client connection's [`ServerConnection`], the sessions, the
//! subscription tree, the retained index, and the will-delay and
//! session-expiry timers. It does no I/O, reads no clock and spawns nothing:
//! the caller hands in bytes and the time, and polls out packets to send,
//! the next deadline and events.
//!
//! Methods group as in quinn-proto: input ([`Broker::accept`],
//! [`Broker::accept_from`], [`Broker::handle_bytes`],
//! [`Broker::handle_packet`], [`Broker::handle_written`],
//! [`Broker::handle_closed`], [`Broker::handle_timeout`],
//! [`Broker::handle_auth_checked`]), commands ([`Broker::shutdown`]) and
//! output ([`Broker::poll_transmit`], [`Broker::poll_timeout`],
//! [`Broker::poll_event`], [`Broker::poll_auth_check`]: password checks
//! the shell runs off the core's thread, see `auth_check.rs`). The drain rule is tern-session's: after each
//! input, drain transmits, then re-arm the timer from `poll_timeout`, then
//! drain events.
//!
//! `Broker` coordinates owning sub-states, each in its own module with its
//! invariants documented there: `Sessions` (`sessions.rs`: the sessions,
//! the client-identifier index, the session-expiry rule), `Subscriptions`
//! (`subscriptions.rs`: the subscription tree, the one source of truth for
//! who receives what), `Retained` (`retained.rs`), `Backpressure`
//! (`backpressure.rs`) and `Timers` (`timers.rs`). The flows that cross
//! them (connect and take-over, publish routing, close and expiry) are
//! `Broker` methods in `connect.rs` and `routing.rs`.
//!
//! The core owns backpressure (`backpressure.rs`): it counts the bytes it
//! handed each connection and the shell has not reported written, and
//! decides when a connection gets no more output and when the shell is to
//! stop and resume reading it ([`BrokerEvent::PauseReading`],
//! [`BrokerEvent::ResumeReading`]). A shell only moves bytes and reports.

mod auth;
mod auth_check;
mod backpressure;
mod cluster;
mod config;
mod connect;
mod connect_rate;
mod connections;
mod durable;
mod enhanced_auth;
mod limits;
mod memory;
mod retained;
mod routing;
pub mod security;
mod sessions;
mod slab;
mod stats;
mod store;
mod subscriptions;
mod sys;
mod timers;
mod topk;

pub use auth::{
    AllowAll, AuthCheck, AuthDecision, AuthExchange, AuthStart, AuthStep, Authenticator, Client,
};
pub use auth_check::PendingCheck;
pub use cluster::{ClusterOutput, ClusterStats};
pub use config::{BrokerConfig, OutputCredit};
pub use durable::{StoreBatch, StoreOp};
pub use limits::{
    DEFAULT_MAX_SUBSCRIPTIONS, DEFAULT_MAX_TOPIC_LENGTH, DEFAULT_MAX_TOPIC_LEVELS, Limit,
};
pub use memory::MemoryUse;
pub use retained::{RetainedLimits, RetainedMessage};
pub use stats::{ByQos, Drops};
pub use store::{
    MemoryStore, Store, StoredSession, StoredState, StoredSubscription, StoredSubscriptions,
};
pub use sys::QueueDepths;
pub use topk::TopTopic;

use bytes::BytesMut;
use sessions::{SessionKey, Sessions};
use slab::Key;
use std::collections::VecDeque;
use subscriptions::{Subscription, Subscriptions};
use tern_codec::{MqttString, Packet, ProtocolVersion};
use tern_session::{CloseReason, Instant, ServerConnection, ServerEvent, ServerSession};
use timers::{Timer, Timers};

/// The user property that marks a message as having crossed a bridge (Tern
/// bridges add it to what they forward; the broker adds it to what a 3.x
/// `try_private` bridge publishes). A Tern bridge does not forward a
/// message that carries it.
pub const BRIDGED_PROPERTY: &str = "tern-bridged";

/// A network connection's handle in the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(u64);

impl ConnId {
    fn key(self) -> Key {
        Key::from_u64(self.0)
    }

    fn from_key(key: Key) -> Self {
        Self(key.to_u64())
    }

    /// A number for logs.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0 & 0xffff_ffff)
    }
}

/// A copy of a string that lives long (a client identifier, a subscription
/// filter, a retained topic). Decoded strings are slices of the buffer the
/// packet was read into; keeping one would keep the whole buffer (kilobytes)
/// alive, for each idle client.
pub(crate) fn compact(s: &MqttString) -> MqttString {
    MqttString::from_utf8(bytes::Bytes::copy_from_slice(s.as_bytes())).unwrap_or_else(|_| s.clone())
}

/// A packet to write to a connection, encoded in the connection's version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The connection.
    pub conn: ConnId,
    /// Its protocol version (encode with it).
    pub version: ProtocolVersion,
    /// The packet.
    pub packet: Packet,
}

/// PUBLISH payloads of this many bytes or more are not copied into a
/// connection's output by [`Broker::write_transmit`]: the payload goes to
/// the writer as its own chunk (a vectored write), shared by every
/// subscriber.
pub const SHARED_PAYLOAD: usize = 1024;

/// What [`Broker::write_transmit`] appended to the caller's buffer: bytes
/// of one packet for `conn`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenTransmit {
    /// The connection the bytes belong to.
    pub conn: ConnId,
    /// How many bytes were appended.
    pub len: usize,
    /// A large PUBLISH payload to write right after those bytes.
    pub payload: Option<bytes::Bytes>,
}

/// What the broker tells its shell.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BrokerEvent {
    /// Close this connection's socket once the transmits already polled for
    /// it are written; then call [`Broker::handle_closed`].
    Close(ConnId),
    /// A client connected (for logs).
    Connected {
        /// The connection.
        conn: ConnId,
        /// The client identifier (assigned, if the client sent none).
        client_id: MqttString,
        /// The protocol version.
        version: ProtocolVersion,
        /// Whether an existing session was resumed.
        session_present: bool,
    },
    /// A client's connection ended (for logs).
    Disconnected {
        /// The connection.
        conn: ConnId,
        /// The client identifier, if it had connected.
        client_id: Option<MqttString>,
        /// Why.
        reason: CloseReason,
    },
    /// Stop reading this connection: its output is backed up (it does not
    /// read what we send), or it is a publisher held back by a slow
    /// subscriber (see [`Broker::is_blocked`]). Bytes already read may
    /// still be handed in; what the core leaves in the buffer waits.
    PauseReading(ConnId),
    /// Read this connection again, after handing in what the core left in
    /// its buffer.
    ResumeReading(ConnId),
    /// The broker refused what a client asked (for logs): its CONNECT
    /// (authentication, shutting down, a will topic over a limit), a
    /// PUBLISH or SUBSCRIBE the ACL does not allow, or one that ran into a
    /// resource limit (`limit`; each also counted in [`Stats::drops`]).
    /// Connections closed for a broken rule or a malformed packet show in
    /// [`Disconnected`](Self::Disconnected)'s reason instead.
    Refused {
        /// The connection.
        conn: ConnId,
        /// The client identifier it gave (empty if it gave none).
        client_id: MqttString,
        /// What was refused.
        what: Refusal,
        /// The reason code it was refused with (also for MQTT 3.x clients,
        /// which are told less: a PUBACK, a SUBACK 0x80, or the connection
        /// closed).
        reason: tern_codec::ReasonCode,
        /// The resource limit it ran into, if that was why.
        limit: Option<Limit>,
    },
}

/// What [`BrokerEvent::Refused`] refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The CONNECT.
    Connect,
    /// A PUBLISH to this topic.
    Publish(MqttString),
    /// A SUBSCRIBE to this filter.
    Subscribe(MqttString),
}

/// Counters for `$SYS` and monitoring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// PUBLISH packets received.
    pub messages_received: u64,
    /// PUBLISH packets sent.
    pub messages_sent: u64,
    /// Messages dropped (queue full, expired, or too large for a subscriber).
    pub messages_dropped: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Clients connected now.
    pub clients_connected: u64,
    /// The most clients connected at once.
    pub clients_maximum: u64,
    /// Connections accepted since start (sockets).
    pub connections_total: u64,
    /// Packets of every type received (mosquitto's `messages/received`).
    pub packets_received: u64,
    /// Packets of every type sent (mosquitto's `messages/sent`).
    pub packets_sent: u64,
    /// CONNECT packets received.
    pub connects_received: u64,
    /// PUBLISH received, by QoS.
    pub publish_received: ByQos,
    /// PUBLISH sent, by QoS.
    pub publish_sent: ByQos,
    /// Messages dropped, by reason.
    pub drops: Drops,
    /// Offline sessions ended by their expiry (mosquitto's `clients/expired`).
    pub sessions_expired: u64,
    /// CONNECTs whose password check was handed to the shell to run off
    /// the core's thread ([`Broker::poll_auth_check`]).
    pub auth_checks: u64,
}

/// The sans-IO MQTT broker.
pub struct Broker {
    config: BrokerConfig,
    /// Every network connection, and which have output to offer.
    conns: connections::Connections,
    sessions: Sessions,
    subscriptions: Subscriptions,
    /// Routing's scratch list, kept so routing does not allocate per message.
    deliveries: Vec<subscriptions::Delivery>,
    retained: retained::Retained,
    timers: Timers,
    /// Publisher backpressure (see `backpressure.rs`).
    backpressure: backpressure::Backpressure,
    events: VecDeque<BrokerEvent>,
    store: Box<dyn Store>,
    /// Storage operations and held acknowledgements, with
    /// [`BrokerConfig::durable`] on (see `durable.rs`).
    durable: Option<Box<durable::Durable>>,
    /// Other nodes' interest and messages for them, with
    /// [`BrokerConfig::cluster`] on (see `cluster.rs`).
    cluster: Option<Box<cluster::Remote>>,
    auth: Box<dyn Authenticator>,
    /// Password checks for the shell to run (`auth_check.rs`).
    auth_checks: VecDeque<PendingCheck>,
    /// Connections per source address (`connect_rate.rs`).
    connect_rate: connect_rate::ConnectRate,
    stats: Stats,
    /// The bytes clients make it hold (`memory.rs`).
    memory: memory::Accountant,
    /// `$SYS` state: the load averages and what was last published.
    sys: sys::SysState,
    /// The busiest topics (bounded; see `topk.rs`).
    top_topics: topk::TopTopics,
    started: Instant,
    shutting_down: bool,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("connections", &self.conns.len())
            .field("sessions", &self.sessions.len())
            .field("subscriptions", &self.subscriptions.len())
            .field("retained", &self.retained.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl Broker {
    /// A broker with an in-memory store that lets every client in.
    pub fn new(config: BrokerConfig, now: Instant) -> Self {
        Self::with_hooks(
            config,
            now,
            Box::new(MemoryStore::new()),
            Box::new(AllowAll),
        )
    }

    /// A broker with the given store and authenticator; it starts from what
    /// the store holds (sessions offline, retained messages).
    pub fn with_hooks(
        config: BrokerConfig,
        now: Instant,
        mut store: Box<dyn Store>,
        auth: Box<dyn Authenticator>,
    ) -> Self {
        let loaded = store.load();
        let durable = config.durable.then(Box::default);
        let cluster = config.cluster.then(Box::default);
        let mut subscriptions = Subscriptions::default();
        if config.cluster {
            subscriptions.interest = Some(cluster::LocalInterest::default());
        }
        let mut broker = Self {
            config,
            conns: connections::Connections::default(),
            sessions: Sessions::default(),
            subscriptions,
            deliveries: Vec::new(),
            retained: retained::Retained::default(),
            timers: Timers::default(),
            backpressure: backpressure::Backpressure::default(),
            events: VecDeque::new(),
            store,
            durable,
            cluster,
            auth,
            auth_checks: VecDeque::new(),
            connect_rate: connect_rate::ConnectRate::default(),
            stats: Stats::default(),
            memory: memory::Accountant::default(),
            sys: sys::SysState::default(),
            top_topics: topk::TopTopics::default(),
            started: now,
            shutting_down: false,
        };
        broker.restore(now, loaded);
        if let Some(interval) = broker.config.sys_interval {
            broker.timers.arm(now + interval, Timer::Sys);
        }
        broker
    }

    // ---- getters ----

    /// The configuration.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Connections open or closing.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Sessions, online and offline.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Subscriptions in the tree.
    pub fn subscription_count(&self) -> usize {
        self.subscriptions.len()
    }

    /// Retained messages.
    pub fn retained_count(&self) -> usize {
        self.retained.len()
    }

    /// The bytes retained messages hold, as `max_retained_bytes` counts
    /// them ([`RetainedMessage::held_bytes`]).
    pub fn retained_bytes(&self) -> usize {
        self.retained.bytes()
    }

    /// The protocol version of a connection.
    pub fn version(&self, conn: ConnId) -> Option<ProtocolVersion> {
        self.conns.get(conn.key()).map(|c| c.server.version())
    }

    /// A client's subscriptions, online or offline, as a store keeps them
    /// (listed from the subscription tree, where they live).
    pub fn subscriptions_of(&self, client_id: &str) -> Option<StoredSubscriptions> {
        let key = self.sessions.key_of(client_id.as_bytes())?;
        Some(self.subscriptions.of(key))
    }

    /// A client's session, online or offline: its queue, in-flight window
    /// and drop counters (for monitoring and for checkers).
    pub fn session(&self, client_id: &str) -> Option<&ServerSession> {
        let entry = self
            .sessions
            .get(self.sessions.key_of(client_id.as_bytes())?)?;
        match entry.conn {
            Some(conn) => self.conns.get(conn.key())?.server.session(),
            None => entry.offline.as_deref(),
        }
    }

    // ---- input ----

    /// A new network connection; it must send CONNECT within the connect timeout.
    pub fn accept(&mut self, now: Instant) -> ConnId {
        let id = self
            .conns
            .insert(ServerConnection::new(now, self.config.server));
        self.stats.connections_total += 1;
        self.note_conn(id);
        self.schedule_conn(id);
        id
    }

    /// Bytes from a connection: every whole packet is handled; a partial one
    /// stays in `buf` for the next call.
    pub fn handle_bytes(&mut self, now: Instant, conn: ConnId, buf: &mut BytesMut) {
        loop {
            let Some(c) = self.conns.get_mut(conn.key()) else {
                return;
            };
            if c.closing || self.backpressure.is_blocked(conn) {
                // Closed by the protocol: its last packets (a refusing
                // CONNACK, a DISCONNECT) still go out, so mark it ready.
                // Blocked: the rest waits in `buf`.
                break;
            }
            let before = buf.len();
            let mut packets = 0;
            if self.config.publisher_backpressure.is_some() && c.session.is_some() {
                // One packet at a time, so a publisher stops right after the
                // packet that congested a queue.
                packets += u64::from(c.server.handle_next(now, buf));
            } else {
                while c.server.handle_next(now, buf) {
                    packets += 1;
                }
            }
            self.stats.packets_received += packets;
            self.stats.bytes_received += (before - buf.len()) as u64;
            let handled = self.process_events(now, conn);
            // After an accepted CONNECT, packets pipelined behind it wait in `buf`.
            if buf.len() == before && !handled {
                break;
            }
        }
        self.after_input(conn);
    }

    /// One decoded packet from a connection (for callers that frame themselves).
    pub fn handle_packet(&mut self, now: Instant, conn: ConnId, packet: Packet) {
        let Some(c) = self.conns.get_mut(conn.key()) else {
            return;
        };
        c.server.handle_packet(now, packet);
        self.stats.packets_received += 1;
        self.process_events(now, conn);
        self.after_input(conn);
    }

    /// The shell wrote `n` more bytes of this connection's transmits to its
    /// socket: they no longer count against its output credit. (Bytes
    /// written, not packets: a shell reports whatever its writes took.)
    pub fn handle_written(&mut self, conn: ConnId, n: usize) {
        self.credit(conn, n);
        self.note_conn(conn);
    }

    /// The network connection closed (or the shell closed it after a
    /// [`BrokerEvent::Close`]): the connection is forgotten.
    pub fn handle_closed(&mut self, now: Instant, conn: ConnId) {
        let Some(c) = self.conns.get_mut(conn.key()) else {
            return;
        };
        c.server.handle_closed(now);
        self.process_events(now, conn);
        self.forget_blocked(conn);
        if let Some(c) = self.conns.remove(conn.key()) {
            if let Some(t) = c.timer {
                self.timers.cancel(t, Timer::Conn(conn.key()));
            }
            self.forget_conn_memory(c.counted);
        }
    }

    /// Acts on every deadline that has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::Conn(key) => {
                    let conn = ConnId::from_key(key);
                    let Some(c) = self.conns.get_mut(key) else {
                        continue;
                    };
                    c.timer = None;
                    c.server.handle_timeout(now);
                    self.process_events(now, conn);
                    self.after_input(conn);
                }
                Timer::Will(key) => self.will_due(now, key),
                Timer::SessionExpiry(key) => self.session_expiry_due(now, key),
                Timer::Unblock(key) => self.unblock_due(ConnId::from_key(key)),
                Timer::Sweep => {
                    // The next slice after a pause, so others are served
                    // between slices.
                    if self.subscriptions.sweep() {
                        let pause = core::time::Duration::from_millis(1);
                        self.timers.arm(now + pause, Timer::Sweep);
                    }
                }
                Timer::Sys => {
                    self.publish_sys(now);
                    if let Some(interval) = self.config.sys_interval {
                        self.timers.arm(now + interval, Timer::Sys);
                    }
                }
            }
        }
    }

    /// The store reports every batch up to `seq` ([`poll_store`](Self::poll_store))
    /// applied and synced: the acknowledgements they promise go out, in
    /// the order they were held. Without [`BrokerConfig::durable`], nothing.
    pub fn handle_store_synced(&mut self, now: Instant, seq: u64) {
        let Some(d) = self.durable.as_mut() else {
            return;
        };
        let opened = d.opened(seq);
        let held = d.synced(seq);
        for (gate, conn) in opened {
            if let Some(c) = self.conns.get_mut(conn.key()) {
                if c.gate.is_some_and(|g| g <= gate) {
                    c.gate = None;
                    self.mark_ready(conn);
                }
            }
        }
        for held in held {
            // To the session's connection now, which is not the one that
            // received the message when that one has closed meanwhile (a
            // QoS 2 token stays good across the session's connections), or
            // to the session itself while it is offline: either way the
            // resent PUBLISH gets its PUBREC.
            let Some(entry) = self.sessions.get_mut(held.session) else {
                continue;
            };
            match entry.conn {
                Some(conn) => {
                    if let Some(c) = self.conns.get_mut(conn.key()) {
                        let _ = c.server.ack(now, held.token, held.reason);
                        self.after_input(conn);
                    }
                }
                None => {
                    if let Some(session) = entry.offline.as_deref_mut() {
                        let _ = session.acknowledge(held.token, held.reason, held.v5);
                        // The session was saved when it went offline, with
                        // this message still undecided: saved again, so a
                        // restart from the store answers its resend with
                        // the PUBREC instead of waiting for a decision no
                        // one will make.
                        let subscriptions = self.subscriptions.of(held.session);
                        self.store
                            .put_session(session, &subscriptions, entry.expiry_interval);
                    }
                }
            }
        }
    }

    // ---- commands ----

    /// The identity the shell vouched for on this connection (the name in
    /// its verified TLS client certificate, under mosquitto's
    /// `use_identity_as_username`), before its CONNECT: the client's user
    /// name becomes this, and the [`Authenticator`] is told so.
    pub fn set_identity(&mut self, conn: ConnId, identity: MqttString) {
        if let Some(c) = self.conns.get_mut(conn.key()) {
            c.identity = Some(identity);
        }
    }

    /// Marks a connection, before its CONNECT, as a bridge running inside
    /// the broker's process (the shell's in-process connections): it may
    /// publish its state under `$SYS/broker/connection/`, as mosquitto's
    /// bridges do, where other clients may not publish at all. ACL rules
    /// still apply to it.
    pub fn set_bridge(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(conn.key()) {
            c.bridge = true;
        }
    }

    /// Closes every connection (MQTT 5 clients get DISCONNECT 0x8B) and
    /// stores the sessions that outlive them. Wills are not published.
    pub fn shutdown(&mut self, now: Instant) {
        self.shutting_down = true;
        let ids: Vec<ConnId> = self
            .conns
            .iter()
            .map(|(k, _)| ConnId::from_key(k))
            .collect();
        for id in ids {
            if let Some(c) = self.conns.get_mut(id.key()) {
                c.server
                    .close(now, tern_codec::ReasonCode::ServerShuttingDown);
            }
            self.process_events(now, id);
            self.mark_ready(id);
        }
        // Acknowledgements held for a batch go into the sessions now
        // offline, so the sessions saved below say what was decided: a
        // QoS 2 message routed before the shutdown, whose PUBREC was still
        // waiting, is answered when it is resent after a restart from this
        // store, instead of waiting for a decision no one will make (the
        // durable store's own records say the same: `PutIncoming`).
        let held = self
            .durable
            .as_mut()
            .map(|d| d.take_held())
            .unwrap_or_default();
        for held in held {
            if let Some(session) = self
                .sessions
                .get_mut(held.session)
                .and_then(|entry| entry.offline.as_deref_mut())
            {
                let _ = session.acknowledge(held.token, held.reason, held.v5);
            }
        }
        // Sessions that were already offline were stored when their client
        // left; messages queued for them since are only in memory. So are
        // when they end and the wills waiting for their delay.
        for (key, entry) in self.sessions.iter() {
            if let Some(session) = entry.offline.as_deref() {
                let subscriptions = self.subscriptions.of(key);
                self.store
                    .put_session(session, &subscriptions, entry.expiry_interval);
                let will = entry.pending_will.as_deref().map(|(w, due)| (w, *due));
                self.store
                    .put_offline_state(&entry.client_id, entry.expires_at, will);
            }
        }
    }

    // ---- output ----

    /// The next packet to write, for any connection with output credit.
    /// Its encoded length counts against the connection's credit until the
    /// shell reports it written ([`handle_written`](Self::handle_written)).
    ///
    /// A shell uses [`write_transmit`](Self::write_transmit), which encodes;
    /// this typed form is for tests and tools that look at packets.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        self.next_transmit(|server| {
            let packet = server.poll_transmit(now)?;
            let version = server.version();
            let len = packet.encoded_len(version);
            let publish = match &packet {
                Packet::Publish(p) => Some((p.qos, p.payload.len())),
                _ => None,
            };
            Some(((version, packet), len, publish))
        })
        .map(|(conn, (version, packet))| Transmit {
            conn,
            version,
            packet,
        })
    }

    /// Writes the next packet for any connection with output credit at the
    /// end of `buf` and says whose it is: the shell never encodes. A PUBLISH
    /// payload of [`SHARED_PAYLOAD`] bytes or more is not copied: it comes
    /// back in [`WrittenTransmit::payload`], to write after the bytes
    /// appended (shared by every subscriber). Exactly the bytes written,
    /// payload included, count against the connection's credit until the
    /// shell reports them written ([`handle_written`](Self::handle_written)).
    #[must_use]
    pub fn write_transmit(&mut self, now: Instant, buf: &mut BytesMut) -> Option<WrittenTransmit> {
        self.next_transmit(|server| {
            let t = server.write_transmit(now, buf, SHARED_PAYLOAD - 1)?;
            let len = t.wire_len();
            let publish = t.publish;
            Some((t, len, publish))
        })
        .map(|(conn, t)| WrittenTransmit {
            conn,
            len: t.len,
            payload: t.payload,
        })
    }

    /// The ready-queue walk both transmit forms share: `take` produces a
    /// connection's next output, its length on the wire and whether it is a
    /// PUBLISH (its QoS and payload length); the length is charged to the
    /// connection's credit.
    fn next_transmit<T>(
        &mut self,
        mut take: impl FnMut(
            &mut ServerConnection,
        ) -> Option<(T, usize, Option<(tern_codec::QoS, usize)>)>,
    ) -> Option<(ConnId, T)> {
        while let Some(id) = self.conns.next_ready() {
            let Some(c) = self.conns.get_mut(id.key()) else {
                self.conns.pop_ready();
                continue;
            };
            if c.flow.is_writable() && c.gate.is_none() {
                // Messages the session drops on the way out (expired, too
                // large for the client) show as its counters moving.
                let dropped = stats::session_drops(&c.server);
                let mut out = take(&mut c.server);
                stats::count_session_drops(&mut self.stats.drops, dropped, &c.server);
                if out.is_none() && self.refill_retained(id) {
                    out = self
                        .conns
                        .get_mut(id.key())
                        .and_then(|c| take(&mut c.server));
                }
                self.record_outgoing(id);
                if let Some((out, len, publish)) = out {
                    self.stats.bytes_sent += len as u64;
                    self.stats.packets_sent += 1;
                    if let Some((qos, payload)) = publish {
                        self.stats.messages_sent += 1;
                        self.stats.publish_sent.count(qos, payload);
                    }
                    self.charge(id, len);
                    self.note_conn(id);
                    return Some((id, out));
                }
            }
            if let Some(c) = self.conns.get_mut(id.key()) {
                if c.flow.is_writable() && c.gate.is_none() {
                    // Drained: an idle connection keeps no queue buffers.
                    c.server.release_memory();
                }
            }
            // Its session may have dropped messages on the way out (expired,
            // too large for the client) without a packet to show for it.
            self.note_conn(id);
            self.conns.pop_ready();
        }
        self.release_blocked();
        None
    }

    /// The next deadline at which to call [`handle_timeout`](Self::handle_timeout).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// The next event for the shell.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<BrokerEvent> {
        self.events.pop_front()
    }

    /// The next batch of storage operations to apply, in order, with
    /// [`BrokerConfig::durable`] on (otherwise always `None`): everything
    /// recorded since the last batch. Apply it, sync, and report its `seq`
    /// with [`handle_store_synced`](Self::handle_store_synced). Drain it
    /// after each input, with the other output.
    #[must_use]
    pub fn poll_store(&mut self) -> Option<StoreBatch> {
        self.durable.as_mut()?.poll()
    }

    // ---- internals ----

    /// Records a storage operation, with [`BrokerConfig::durable`] on.
    fn record(&mut self, op: impl FnOnce() -> StoreOp) {
        if let Some(d) = self.durable.as_mut() {
            d.record(op());
        }
    }

    /// Records an operation on `conn`'s session if that session is stored;
    /// with `gate`, `conn`'s output (the acknowledgement just queued, and
    /// everything after it) waits until it is synced.
    fn record_for(
        &mut self,
        conn: ConnId,
        gate: bool,
        op: impl FnOnce(tern_codec::MqttString) -> StoreOp,
    ) {
        let stored = self
            .conns
            .get(conn.key())
            .and_then(|c| c.session)
            .and_then(|key| self.stored_client_id(key));
        if let Some(client_id) = stored {
            let recorded = self.recorded();
            self.record(|| op(client_id));
            if gate {
                self.gate_since(conn, recorded);
            }
        }
    }

    /// Records what happened to stored messages on their way out to
    /// `conn`: the packet identifier each went in flight with (a restart
    /// resends it with that identifier and DUP [MQTT-4.4.0-1]), and the
    /// deletion of each sent at QoS 0 or dropped undelivered (expired, too
    /// large).
    ///
    /// Not gated: the PUBLISH is already written when its identifier is
    /// known. A broker that dies before this is synced sends the message
    /// again as a new PUBLISH with a new identifier.
    fn record_outgoing(&mut self, conn: ConnId) {
        if self.durable.is_none() {
            return;
        }
        let mut notes = Vec::new();
        if let Some(session) = self
            .conns
            .get_mut(conn.key())
            .and_then(|c| c.server.session_mut())
        {
            session.drain_outgoing_notes(|n| notes.push(n));
        }
        for note in notes {
            match note {
                tern_session::OutgoingNote::Sent {
                    tag,
                    packet_id,
                    qos,
                    subscription_ids,
                } => self.record_for(conn, false, |client_id| StoreOp::SentQueue {
                    client_id,
                    seq: tag.get(),
                    qos,
                    packet_id,
                    subscription_ids,
                }),
                tern_session::OutgoingNote::Delivered { tag }
                | tern_session::OutgoingNote::Dropped { tag } => {
                    self.record_for(conn, false, |client_id| StoreOp::DeleteQueue {
                        client_id,
                        seq: tag.get(),
                    })
                }
            }
        }
    }

    /// Storage operations recorded and not yet cut into a batch.
    fn recorded(&self) -> usize {
        self.durable.as_ref().map_or(0, |d| d.pending())
    }

    /// Holds `conn`'s output (a CONNACK, SUBACK or UNSUBACK just queued
    /// and everything after it) until the operations recorded since
    /// `recorded` ([`Self::recorded`]) are synced; nothing if none were.
    fn gate_since(&mut self, conn: ConnId, recorded: usize) {
        if self.recorded() <= recorded {
            return;
        }
        let Some(d) = self.durable.as_mut() else {
            return;
        };
        if let Some(c) = self.conns.get_mut(conn.key()) {
            c.gate = Some(d.gate(conn));
        }
    }

    fn mark_ready(&mut self, conn: ConnId) {
        self.conns.mark_ready(conn);
    }

    fn after_input(&mut self, conn: ConnId) {
        self.note_conn(conn);
        self.mark_ready(conn);
        self.schedule_conn(conn);
    }

    /// Registers a connection's next deadline. A registered deadline that is
    /// earlier than needed is left alone: it fires, does nothing, and
    /// re-registers, so moving keep-alive deadlines cost no timer churn.
    fn schedule_conn(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(conn.key()) else {
            return;
        };
        let want = c.server.poll_timeout();
        match (c.timer, want) {
            (Some(have), Some(want)) if have <= want => {}
            (have, want) => {
                self.timers.rearm(have, want, Timer::Conn(conn.key()));
                c.timer = want;
            }
        }
    }

    /// Handles every event the connection produced; `true` if there were any.
    fn process_events(&mut self, now: Instant, conn: ConnId) -> bool {
        let mut any = false;
        loop {
            let Some(c) = self.conns.get_mut(conn.key()) else {
                return any;
            };
            let Some(event) = c.server.poll_event() else {
                return any;
            };
            any = true;
            match event {
                ServerEvent::ConnectRequest(connect) => self.on_connect(now, conn, *connect),
                ServerEvent::Message { publish, ack } => self.on_publish(now, conn, publish, ack),
                ServerEvent::SubscribeRequest(subscribe) => self.on_subscribe(now, conn, subscribe),
                ServerEvent::UnsubscribeRequest(unsubscribe) => {
                    self.on_unsubscribe(now, conn, unsubscribe)
                }
                ServerEvent::Released { packet_id, tag } => {
                    // Owed a PUBREL: stored before the PUBREL goes out, so
                    // a restart never sends the PUBLISH again.
                    self.record_for(conn, true, |client_id| StoreOp::ReleaseQueue {
                        client_id,
                        seq: tag.get(),
                        packet_id,
                    });
                }
                ServerEvent::PubRelReceived { packet_id } => {
                    // The identifier is free again once this is synced:
                    // the PUBCOMP waits (a new PUBLISH with it must not be
                    // taken for a resend after a restart).
                    self.record_for(conn, true, |client_id| StoreOp::DeleteIncoming {
                        client_id,
                        packet_id,
                    });
                }
                ServerEvent::Delivered { tag: Some(tag), .. } => {
                    // A stored message's flow finished: its entry goes.
                    self.record_for(conn, false, |client_id| StoreOp::DeleteQueue {
                        client_id,
                        seq: tag.get(),
                    });
                }
                ServerEvent::Auth(auth) => self.on_auth(now, conn, *auth),
                ServerEvent::Closed {
                    reason,
                    will,
                    session_expiry_interval,
                } => self.on_closed(now, conn, reason, will, session_expiry_interval),
                _ => {}
            }
        }
    }
}
