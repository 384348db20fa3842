//! The world: one broker core, N tern-session clients, a link per
//! connection, an event queue on virtual time, and the checkers watching.
//!
//! Every input follows tern-session's drain rule. After an input to the
//! broker: drain `write_transmit` (each packet is written as bytes and put on its
//! link), re-arm the broker's timer from `poll_timeout`, drain `poll_event`
//! (`Close` closes the link after what was already sent, then
//! `handle_closed`), and repeat while anything moved. After an input to a
//! client: the same with the client's connection; its events go to its
//! application model, whose commands are inputs in turn.

use crate::{
    FaultProfile, Options,
    app::{Action, App},
    check::{self, Checker},
    link::{Delivery, Dir, Link},
    model::{Model, Obs, Role},
    rng::Rng,
    store::SharedStore,
    trace::{Trace, describe},
};
use bytes::{Bytes, BytesMut};
use core::{num::NonZeroU16, time::Duration};
use std::collections::{BTreeMap, VecDeque};
use tern_broker::{Broker, BrokerConfig, BrokerEvent, ConnId, OutputCredit};
use tern_codec::{
    DisconnectProperties, MqttString, Packet, ProtocolVersion, ReasonCode, UnsubscribeProperties,
};
use tern_session::{
    AckToken, ClientConnection, ClientEvent, ClientSession, ConnectionState, Instant,
    OverflowPolicy, QueueLimits, ServerConfig,
};

/// Counters for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Packets encoded onto links.
    pub packets: u64,
    /// Messages published by applications.
    pub publishes: u64,
    /// Messages delivered to applications.
    pub deliveries: u64,
    /// Connections opened.
    pub connections: u64,
    /// Links reset.
    pub resets: u64,
    /// Links that went half-open.
    pub half_opens: u64,
    /// Client process restarts.
    pub client_restarts: u64,
    /// Take-overs.
    pub takeovers: u64,
    /// Graceful broker restarts.
    pub broker_restarts: u64,
}

/// A checker's complaint, before it becomes a [`crate::Failure`].
#[derive(Debug)]
pub(crate) struct Complaint {
    pub(crate) checker: &'static str,
    pub(crate) message: String,
}

type Step = Result<(), Complaint>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Link(u64),
    BrokerTimer,
    ClientTimer(usize),
    ClientRead(usize),
    Ack(usize),
    Step(usize),
    Connect(usize),
    Reset(u64),
    Silence(u64),
    HalfOpenDeadline(u64, u16),
    BrokerRestart,
    Heal,
    Quiet,
    /// The store reports a batch synced: (broker instance, sequence number).
    StoreSynced(u64, u64),
}

type Key = (Instant, u64);

#[derive(Debug, Default)]
struct Events {
    queue: BTreeMap<Key, Ev>,
    seq: u64,
}

impl Events {
    fn push(&mut self, at: Instant, ev: Ev) -> Key {
        let key = (at, self.seq);
        self.seq += 1;
        self.queue.insert(key, ev);
        key
    }

    fn cancel(&mut self, key: Option<Key>) {
        if let Some(key) = key {
            self.queue.remove(&key);
        }
    }

    fn pop(&mut self) -> Option<(Instant, Ev)> {
        self.queue.pop_first().map(|((t, _), ev)| (t, ev))
    }
}

/// Per direction of a link: the protocol version its packets are decoded
/// with and the topic aliases in force, to resolve packets for observers.
#[derive(Debug, Clone)]
struct Shadow {
    version: ProtocolVersion,
    aliases: BTreeMap<u16, MqttString>,
}

impl Shadow {
    fn new(version: ProtocolVersion) -> Self {
        Self {
            version,
            aliases: BTreeMap::new(),
        }
    }

    /// The whole packets in `buf` with their lengths, decoded as the
    /// receiver will decode them (a CONNECT sets the version for the rest).
    fn decode_all(&self, buf: &[u8]) -> Vec<(usize, Packet)> {
        let mut copy = BytesMut::from(buf);
        let mut version = self.version;
        let mut out = Vec::new();
        loop {
            let before = copy.len();
            match Packet::decode(&mut copy, version, tern_codec::MAX_PACKET_SIZE) {
                Ok(Some(p)) => {
                    if let Packet::Connect(c) = &p {
                        version = c.protocol;
                    }
                    out.push((before - copy.len(), p));
                }
                _ => return out,
            }
        }
    }

    /// Applies a processed (or sent) packet to the direction's state and
    /// returns it with any topic alias resolved.
    fn resolve(&mut self, mut packet: Packet) -> Packet {
        match &mut packet {
            Packet::Connect(c) => self.version = c.protocol,
            Packet::Publish(p) => {
                if let Some(alias) = p.properties.topic_alias {
                    if p.topic.is_empty() {
                        if let Some(t) = self.aliases.get(&alias.get()) {
                            p.topic = t.clone();
                        }
                    } else {
                        self.aliases.insert(alias.get(), p.topic.clone());
                    }
                }
            }
            _ => {}
        }
        packet
    }
}

#[derive(Debug)]
struct LinkSlot {
    link: Link,
    client: usize,
    /// The broker's connection, while the broker has it open.
    conn: Option<ConnId>,
    /// Whether the client still reads this link.
    client_attached: bool,
    /// Bytes delivered to the broker and not yet consumed.
    broker_buf: BytesMut,
    /// Client → broker, as the broker decodes it.
    rx_broker: Shadow,
    /// Client → broker, as the client sent it.
    tx_client: Shadow,
    /// Broker → client, as the broker sent it.
    tx_broker: Shadow,
    armed: Option<Key>,
    /// The broker said `PauseReading` (and not yet `ResumeReading`): what
    /// arrives waits in `broker_buf`, as it would in the socket.
    paused: bool,
    /// The client closed the link while the broker was not reading it.
    fin_pending: bool,
    /// The broker sent a CONNACK with Session Present 0 on this link.
    connack_new_session: bool,
    /// The client read a CONNACK on this link.
    connack_read: bool,
    /// The client's CONNECT on this link asked for a clean start.
    clean_start: bool,
}

#[derive(Debug)]
struct ClientSlot {
    app: App,
    conn: Option<ClientConnection>,
    link: Option<u64>,
    /// The session while offline.
    session: Option<ClientSession>,
    /// Bytes read from the link and not yet consumed (a partial packet).
    read_buf: BytesMut,
    /// Bytes delivered by the network and not yet read (slow consumer).
    sock_buf: BytesMut,
    fin_pending: bool,
    /// Slow consumer: bytes per read and time between reads.
    slow: Option<(usize, Duration)>,
    rx: Shadow,
    timer: Option<Key>,
    read_armed: Option<Key>,
    connect_armed: Option<Key>,
    /// Stay offline until then (after a deliberate disconnect or restart).
    offline_until: Option<Instant>,
    /// When it last read bytes from its link.
    last_read: Instant,
    /// Messages the application will acknowledge itself, in arrival order,
    /// with the reason code it chose.
    acks: VecDeque<(AckToken, ReasonCode)>,
    ack_armed: Option<Key>,
    /// The broker started a new session for it on a connection whose
    /// CONNACK the client never read: the client does not know its state is
    /// stale (see `detach`).
    diverged: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Workload,
    Heal,
    Probe,
    Done,
}

/// One run.
pub(crate) struct World {
    pub(crate) now: Instant,
    options: Options,
    profile: FaultProfile,
    phase: Phase,
    events: Events,
    net_rng: Rng,
    fault_rng: Rng,
    /// How long storage batches take to sync (durable brokers only).
    store_rng: Rng,
    /// Which broker instance batches belong to (a restart starts again).
    broker_instance: u64,
    /// When the last batch handed to the store syncs (batches sync in order).
    store_synced_at: Instant,
    broker_config: BrokerConfig,
    store: SharedStore,
    /// The SCRAM-SHA-256 credentials the broker checks.
    users: std::sync::Arc<tern_broker::security::PasswordFile>,
    /// The broker's nonces' stream, forked per broker start.
    auth_rng: Rng,
    /// Broker restarts so far.
    restarts: u64,
    pub(crate) broker: Broker,
    broker_armed: Option<Key>,
    links: BTreeMap<u64, LinkSlot>,
    conn_links: BTreeMap<ConnId, u64>,
    next_link: u64,
    clients: Vec<ClientSlot>,
    pub(crate) model: Model,
    checkers: Vec<Box<dyn Checker>>,
    pub(crate) trace: Trace,
    pub(crate) stats: Stats,
    steps_left: usize,
    heal_started: Instant,
    probe: usize,
    probe_subscribed: bool,
    quiet_checks: u64,
    /// Live QoS 1/2 deliveries to durable subscribers so far (for
    /// [`Options::lose_delivery`]).
    durable_deliveries: u64,
}

/// How long healing may take before the run counts as stuck.
const HEAL_LIMIT: Duration = Duration::from_secs(300);

/// The broker's configuration for a seed.
fn broker_config(rng: &mut Rng) -> BrokerConfig {
    let queue = if rng.chance(300) {
        QueueLimits {
            max_messages: rng.range(5, 60) as usize,
            max_bytes: rng.range(1_000, 20_000) as usize,
            overflow: if rng.chance(500) {
                OverflowPolicy::DropOldest
            } else {
                OverflowPolicy::DropNewest
            },
        }
    } else {
        QueueLimits::default()
    };
    let receive_maximum = if rng.chance(300) {
        NonZeroU16::new(rng.range(1, 10) as u16)
    } else {
        None
    };
    BrokerConfig {
        server: ServerConfig {
            manual_acks: true,
            receive_maximum: receive_maximum.unwrap_or(ServerConfig::default().receive_maximum),
            topic_alias_maximum: 8,
            outgoing_topic_aliases: if rng.chance(500) { 4 } else { 0 },
            queue,
            ..ServerConfig::default()
        },
        queue_qos0_offline: rng.chance(300),
        sys_interval: rng.chance(300).then(|| Duration::from_secs(10)),
        ..BrokerConfig::default()
    }
}

/// The production backpressure, always on: output credit small enough
/// that bursts and slow consumers reach it, and publisher backpressure.
fn backpressure_config(rng: &mut Rng, config: &mut BrokerConfig) {
    // Often so small that every burst of a few packets reaches it.
    let high_water = if rng.chance(500) {
        rng.range(16, 512)
    } else {
        rng.range(512, 8192)
    } as usize;
    config.output_credit = Some(OutputCredit {
        high_water,
        low_water: high_water / 4,
    });
    config.publisher_backpressure = Some(Duration::from_millis(rng.range(50, 2_000)));
}

impl World {
    pub(crate) fn new(seed: u64, options: Options) -> Self {
        let root = Rng::new(seed);
        let mut config_rng = root.fork(1);
        let net_rng = root.fork(2);
        let fault_rng = root.fork(3);
        let mut broker_config = broker_config(&mut config_rng);
        // Backpressure, from a stream of its own so that the rest of a
        // seed's configuration is what it was before it was added.
        backpressure_config(&mut root.fork(4), &mut broker_config);
        // Durability (the storage seam), likewise from a stream of its own.
        let mut store_rng = root.fork(5);
        broker_config.durable = store_rng.chance(300);
        // A memory budget, likewise: small enough that the workload meets it.
        let mut budget_rng = root.fork(6);
        if budget_rng.chance(200) {
            broker_config.max_memory = Some(budget_rng.range(30_000, 120_000) as usize);
        }
        let now = Instant::from_secs(1);
        let store = SharedStore::new();
        let n = options.clients.max(3);
        // Every client has a SCRAM-SHA-256 credential (client n + 1 is the
        // retained-message probe); the broker's nonces have a stream of
        // their own, forked again at each restart.
        let users = crate::auth::users(n + 1);
        let auth_rng = root.fork(5);
        let broker = Broker::with_hooks(
            broker_config.clone(),
            now,
            Box::new(store.clone()),
            Box::new(crate::auth::SimAuth {
                users: users.clone(),
                rng: auth_rng.fork(0),
            }),
        );
        let durable = (n / 4).max(1);
        let mut roles = vec![Role::WillWatcher];
        roles.extend(std::iter::repeat_n(Role::Durable, durable));
        roles.extend(std::iter::repeat_n(Role::General, n - 1 - durable));
        roles.push(Role::RetainedProbe);
        let clients: Vec<ClientSlot> = roles
            .iter()
            .enumerate()
            .map(|(i, role)| {
                let mut app = App::new(i, *role, root.fork(100 + i as u64));
                app.retained_wills = broker_config.max_memory.is_none();
                let version = app.version;
                ClientSlot {
                    app,
                    conn: None,
                    link: None,
                    session: Some(ClientSession::new()),
                    read_buf: BytesMut::new(),
                    sock_buf: BytesMut::new(),
                    fin_pending: false,
                    slow: None,
                    rx: Shadow::new(version),
                    timer: None,
                    read_armed: None,
                    connect_armed: None,
                    offline_until: None,
                    last_read: Instant::ZERO,
                    acks: VecDeque::new(),
                    ack_armed: None,
                    diverged: false,
                }
            })
            .collect();
        let client_ids = clients
            .iter()
            .map(|c| c.app.client_id.to_string())
            .collect();
        let limits = check::Limits {
            queue: broker_config.server.queue,
            broker_receive_maximum: broker_config.server.receive_maximum.get(),
        };
        let probe = clients.len() - 1;
        Self {
            now,
            profile: options.faults,
            phase: Phase::Workload,
            events: Events::default(),
            net_rng,
            fault_rng,
            store_rng,
            broker_instance: 0,
            store_synced_at: now,
            broker_config,
            store,
            users,
            auth_rng,
            restarts: 0,
            broker,
            broker_armed: None,
            links: BTreeMap::new(),
            conn_links: BTreeMap::new(),
            next_link: 1,
            clients,
            model: Model::new(roles, client_ids),
            checkers: check::all(limits),
            trace: Trace::new(options.full_trace),
            stats: Stats::default(),
            steps_left: options.steps,
            heal_started: now,
            probe,
            probe_subscribed: false,
            quiet_checks: 0,
            durable_deliveries: 0,
            options,
        }
    }

    fn log(&mut self, text: impl AsRef<str>) {
        let text = text.as_ref();
        self.trace.line(self.now, text);
        if let Some(echo) = self.options.echo {
            echo(&format!("{} {text}", self.now));
        }
    }

    fn observe(&mut self, obs: Obs<'_>) -> Step {
        self.model.observe(self.now, &obs);
        for c in &mut self.checkers {
            if let Err(message) = c.observe(self.now, &self.model, &obs) {
                return Err(Complaint {
                    checker: c.name(),
                    message,
                });
            }
        }
        Ok(())
    }

    fn check_broker(&mut self) -> Step {
        for c in &mut self.checkers {
            if let Err(message) = c.check_broker(self.now, &self.model, &self.broker) {
                return Err(Complaint {
                    checker: c.name(),
                    message,
                });
            }
        }
        Ok(())
    }

    /// Runs the whole scenario.
    pub(crate) fn run(&mut self) -> Step {
        let cfg = &self.broker_config;
        let summary = format!(
            "sim: {} clients, {} steps, faults {}; broker receive-max {}, queue {}/{}B {:?}, qos0-offline {}, $SYS {}",
            self.options.clients,
            self.options.steps,
            self.profile,
            cfg.server.receive_maximum,
            cfg.server.queue.max_messages,
            cfg.server.queue.max_bytes,
            cfg.server.queue.overflow,
            cfg.queue_qos0_offline,
            cfg.sys_interval.is_some()
        );
        self.log(summary);
        self.rearm_broker();
        // The will watcher first, so it hears every will; the durable
        // subscribers next; the rest a little later.
        for i in 0..self.probe {
            let at = match self.clients[i].app.role {
                Role::WillWatcher => self.now,
                Role::Durable => self.now + Duration::from_millis(200 + 10 * i as u64),
                _ => self.now + Duration::from_micros(self.fault_rng.range(1_000_000, 2_000_000)),
            };
            self.schedule_connect(i, at);
            let first = at + Duration::from_millis(500);
            self.events.push(first, Ev::Step(i));
        }
        if self.profile.broker_restart_every_s > 0 {
            let at = self.next_broker_restart();
            self.events.push(at, Ev::BrokerRestart);
        }
        while let Some((t, ev)) = self.events.pop() {
            self.now = self.now.max(t);
            self.handle(ev)?;
            if self.phase == Phase::Done {
                break;
            }
        }
        if self.phase != Phase::Done {
            return Err(Complaint {
                checker: "liveness",
                message: "the event queue ran dry before the run finished".into(),
            });
        }
        self.model.advance(self.now);
        for c in &mut self.checkers {
            if let Err(message) = c.finish(self.now, &self.model, &self.broker) {
                return Err(Complaint {
                    checker: c.name(),
                    message,
                });
            }
        }
        Ok(())
    }

    /// What the checkers checked, summed by name.
    pub(crate) fn coverage(&self) -> Vec<(&'static str, u64)> {
        self.checkers.iter().flat_map(|c| c.coverage()).collect()
    }

    fn next_broker_restart(&mut self) -> Instant {
        let mean = self.profile.broker_restart_every_s * 1_000_000;
        self.now + Duration::from_micros(self.fault_rng.range(mean / 4, mean * 2))
    }

    fn handle(&mut self, ev: Ev) -> Step {
        match ev {
            Ev::Link(id) => self.link_due(id),
            Ev::BrokerTimer => {
                self.broker_armed = None;
                self.broker.handle_timeout(self.now);
                self.drain_broker()
            }
            Ev::ClientTimer(i) => {
                self.clients[i].timer = None;
                if let Some(conn) = self.clients[i].conn.as_mut() {
                    conn.handle_timeout(self.now);
                }
                self.drain_client(i)
            }
            Ev::ClientRead(i) => self.slow_read(i),
            Ev::Ack(i) => self.app_acks(i),
            Ev::Step(i) => self.step(i),
            Ev::Connect(i) => {
                self.clients[i].connect_armed = None;
                self.connect(i)
            }
            Ev::Reset(id) => {
                if self.phase == Phase::Workload {
                    if let Some(slot) = self.links.get_mut(&id) {
                        if !slot.link.is_ended(Dir::ToBroker) || !slot.link.is_ended(Dir::ToClient)
                        {
                            slot.link.reset(self.now);
                            self.stats.resets += 1;
                            let client = slot.client;
                            self.log(format!("L{id} (c{client}) RESET"));
                            self.rearm_link(id);
                        }
                    }
                }
                Ok(())
            }
            Ev::Silence(id) => {
                if self.phase == Phase::Workload {
                    if let Some(slot) = self.links.get_mut(&id) {
                        if !slot.link.is_silent() && !slot.link.is_ended(Dir::ToClient) {
                            slot.link.go_silent();
                            self.stats.half_opens += 1;
                            let client = slot.client;
                            self.log(format!("L{id} (c{client}) goes SILENT (half-open)"));
                            self.rearm_link(id);
                            // Keep alive must notice: the client within two
                            // intervals (one to ping, one to wait for the
                            // answer), plus slack for the last packets.
                            let keep_alive = self.clients[client]
                                .conn
                                .as_ref()
                                .filter(|_| self.clients[client].link == Some(id))
                                .and_then(|c| c.server_limits())
                                .map_or(0, |l| l.keep_alive);
                            if keep_alive > 0 {
                                let at =
                                    self.now + Duration::from_secs(2 * u64::from(keep_alive) + 2);
                                self.events.push(at, Ev::HalfOpenDeadline(id, keep_alive));
                            }
                        }
                    }
                }
                Ok(())
            }
            Ev::HalfOpenDeadline(id, keep_alive) => {
                let Some(slot) = self.links.get(&id) else {
                    return Ok(());
                };
                let client = slot.client;
                // A slow consumer still reading what arrived before the
                // silence hears from the broker until its backlog is read.
                let heard = self.clients[client].last_read
                    + Duration::from_secs(2 * u64::from(keep_alive) + 2);
                if heard > self.now {
                    self.events
                        .push(heard, Ev::HalfOpenDeadline(id, keep_alive));
                    return Ok(());
                }
                if self.phase == Phase::Workload
                    && slot.link.is_silent()
                    && self.clients[client].link == Some(id)
                {
                    return Err(Complaint {
                        checker: "liveness",
                        message: format!(
                            "c{client} has not noticed that its link L{id} went silent (half-open): keep alive should have"
                        ),
                    });
                }
                Ok(())
            }
            Ev::BrokerRestart => {
                if self.phase != Phase::Workload {
                    return Ok(());
                }
                self.restart_broker()?;
                let at = self.next_broker_restart();
                self.events.push(at, Ev::BrokerRestart);
                Ok(())
            }
            Ev::Heal => self.heal(),
            Ev::Quiet => self.quiet_check(),
            Ev::StoreSynced(instance, seq) => {
                // A batch of a broker since restarted is gone with it.
                if instance == self.broker_instance {
                    self.log(format!("store synced batch {seq}"));
                    self.broker.handle_store_synced(self.now, seq);
                    self.drain_broker()?;
                }
                Ok(())
            }
        }
    }

    // ---- timers ----

    fn rearm_broker(&mut self) {
        let want = self.broker.poll_timeout();
        if self.broker_armed.map(|k| k.0) != want {
            self.events.cancel(self.broker_armed.take());
            self.broker_armed = want.map(|t| self.events.push(t.max(self.now), Ev::BrokerTimer));
        }
    }

    fn rearm_client(&mut self, i: usize) {
        let want = self.clients[i].conn.as_ref().and_then(|c| c.poll_timeout());
        let c = &mut self.clients[i];
        if c.timer.map(|k| k.0) != want {
            self.events.cancel(c.timer.take());
            c.timer = want.map(|t| self.events.push(t.max(self.now), Ev::ClientTimer(i)));
        }
    }

    fn rearm_link(&mut self, id: u64) {
        let Some(slot) = self.links.get_mut(&id) else {
            return;
        };
        let want = slot.link.poll_timeout();
        if slot.armed.map(|k| k.0) != want {
            self.events.cancel(slot.armed.take());
            slot.armed = want.map(|t| self.events.push(t.max(self.now), Ev::Link(id)));
        }
        // Forget links nobody uses any more.
        if slot.conn.is_none() && !slot.client_attached && slot.armed.is_none() {
            self.links.remove(&id);
        }
    }

    fn schedule_connect(&mut self, i: usize, at: Instant) {
        let c = &mut self.clients[i];
        self.events.cancel(c.connect_armed.take());
        c.connect_armed = Some(self.events.push(at, Ev::Connect(i)));
    }

    // ---- the broker ----

    /// Drains the broker's output. Packets are written to their links as
    /// they are polled and closes handled after them, as a shell must; the
    /// observers see each round's events before its packets, because the
    /// events (a connection ended, a session started) happened first.
    fn drain_broker(&mut self) -> Step {
        loop {
            let mut moved = false;
            let mut sent = Vec::new();
            // The broker writes its packets as bytes; the simulator checks
            // each is exactly one packet for the link's version.
            let mut wire = BytesMut::new();
            while let Some(t) = self.broker.write_transmit(self.now, &mut wire) {
                moved = true;
                if let Some(payload) = &t.payload {
                    wire.extend_from_slice(payload);
                }
                let bytes = wire.split().freeze();
                let Some(&id) = self.conn_links.get(&t.conn) else {
                    continue;
                };
                let Some(slot) = self.links.get_mut(&id) else {
                    continue;
                };
                let packet = match Packet::decode_exact(bytes.clone(), slot.tx_broker.version) {
                    Ok(p) => p,
                    Err(e) => {
                        return Err(Complaint {
                            checker: "encode",
                            message: format!(
                                "the broker wrote bytes that are not one packet: {e} ({bytes:?})"
                            ),
                        });
                    }
                };
                let client = slot.client;
                let packet = slot.tx_broker.resolve(packet);
                if let Packet::ConnAck(c) = &packet {
                    slot.connack_new_session |= !c.session_present;
                }
                slot.link.transmit(
                    self.now,
                    Dir::ToClient,
                    bytes,
                    &mut self.net_rng,
                    &self.profile,
                );
                self.stats.packets += 1;
                self.rearm_link(id);
                sent.push((client, id, packet));
            }
            self.rearm_broker();
            // A durable broker's storage batches sync after a while (an
            // fsync: 0.2 to 20 ms), in order.
            while let Some(batch) = self.broker.poll_store() {
                let after = self.store_rng.range(200, 20_000);
                let at = self.now.max(self.store_synced_at) + Duration::from_micros(after);
                self.store_synced_at = at;
                self.events
                    .push(at, Ev::StoreSynced(self.broker_instance, batch.seq));
            }
            // Links the broker reads again, after this round is observed.
            let mut resumed = Vec::new();
            while let Some(event) = self.broker.poll_event() {
                moved = true;
                match event {
                    BrokerEvent::PauseReading(conn) | BrokerEvent::ResumeReading(conn) => {
                        let pause = matches!(event, BrokerEvent::PauseReading(_));
                        if let Some(&l) = self.conn_links.get(&conn) {
                            if let Some(slot) = self.links.get_mut(&l) {
                                if slot.conn == Some(conn) {
                                    slot.paused = pause;
                                    let what = if pause { "pauses" } else { "resumes" };
                                    let text = format!("b {what} reading c{} (L{l})", slot.client);
                                    self.log(text);
                                    if !pause {
                                        resumed.push(l);
                                    }
                                }
                            }
                        }
                        continue;
                    }
                    _ => {}
                }
                let conn = match &event {
                    BrokerEvent::Close(c) => Some(*c),
                    BrokerEvent::Connected { conn, .. }
                    | BrokerEvent::Disconnected { conn, .. }
                    | BrokerEvent::Refused { conn, .. } => Some(*conn),
                    _ => None,
                };
                let link = conn.and_then(|c| self.conn_links.get(&c).copied());
                let client = link.and_then(|l| self.links.get(&l)).map(|s| s.client);
                let who = client.map_or("?".to_string(), |c| format!("c{c}"));
                match &event {
                    BrokerEvent::Close(conn) => {
                        self.log(format!("b closes {who} (L{})", link.unwrap_or(0)));
                        if let Some(slot) = link.and_then(|l| self.links.get_mut(&l)) {
                            slot.conn = None;
                            slot.link.close(self.now, Dir::ToClient);
                            slot.broker_buf.clear();
                        }
                        self.observe(Obs::Broker {
                            client,
                            link,
                            event: &event,
                        })?;
                        self.broker.handle_closed(self.now, *conn);
                        if let Some(l) = link {
                            self.rearm_link(l);
                        }
                    }
                    BrokerEvent::Connected {
                        session_present, ..
                    } => {
                        self.log(format!(
                            "b: {who} connected, session present {session_present}"
                        ));
                        self.observe(Obs::Broker {
                            client,
                            link,
                            event: &event,
                        })?;
                    }
                    BrokerEvent::Refused {
                        what,
                        reason,
                        limit,
                        ..
                    } => {
                        self.log(format!("b: {who} refused {what:?} {reason} ({limit:?})"));
                        self.observe(Obs::Broker {
                            client,
                            link,
                            event: &event,
                        })?;
                    }
                    BrokerEvent::Disconnected { conn, reason, .. } => {
                        self.log(format!("b: {who} disconnected: {reason}"));
                        self.conn_links.remove(conn);
                        self.observe(Obs::Broker {
                            client,
                            link,
                            event: &event,
                        })?;
                    }
                    _ => {}
                }
            }
            for (client, link, packet) in sent {
                self.log(format!("b->c{client} {}", describe(&packet)));
                self.observe(Obs::BrokerSent {
                    client,
                    link,
                    packet: &packet,
                })?;
            }
            for l in resumed {
                self.resume_broker(l)?;
            }
            if !moved {
                break;
            }
        }
        self.check_broker()
    }

    /// The client read `n` bytes the broker sent on link `id`: the broker's
    /// write of them is complete. (The sim's sockets buffer nothing: the
    /// broker's output counts as unwritten until its client reads it, so a
    /// slow consumer's backlog and the network's latency both use credit.)
    fn written(&mut self, id: u64, n: usize) -> Step {
        let Some(conn) = self.links.get(&id).and_then(|s| s.conn) else {
            return Ok(());
        };
        self.broker.handle_written(conn, n);
        self.drain_broker()
    }

    fn restart_broker(&mut self) -> Step {
        self.log("broker SHUTDOWN (graceful restart)");
        self.stats.broker_restarts += 1;
        self.broker.shutdown(self.now);
        self.drain_broker()?;
        // Connections the shutdown did not close (none expected) go too.
        let left: Vec<(ConnId, u64)> = self.conn_links.iter().map(|(c, l)| (*c, *l)).collect();
        for (conn, l) in left {
            self.broker.handle_closed(self.now, conn);
            if let Some(slot) = self.links.get_mut(&l) {
                slot.conn = None;
                slot.link.close(self.now, Dir::ToClient);
            }
            self.rearm_link(l);
        }
        self.drain_broker()?;
        self.conn_links.clear();
        for slot in self.links.values_mut() {
            slot.conn = None;
        }
        self.observe(Obs::BrokerRestart)?;
        self.restarts += 1;
        self.broker = Broker::with_hooks(
            self.broker_config.clone(),
            self.now,
            Box::new(self.store.clone()),
            Box::new(crate::auth::SimAuth {
                users: self.users.clone(),
                rng: self.auth_rng.fork(self.restarts),
            }),
        );
        self.broker_armed = None;
        self.broker_instance += 1;
        self.log("broker STARTED from the store");
        self.rearm_broker();
        self.drain_broker()
    }

    // ---- links ----

    fn link_due(&mut self, id: u64) -> Step {
        if let Some(slot) = self.links.get_mut(&id) {
            slot.armed = None;
        }
        for dir in [Dir::ToBroker, Dir::ToClient] {
            loop {
                let Some(slot) = self.links.get_mut(&id) else {
                    return Ok(());
                };
                let Some(delivery) = slot.link.poll_deliver(self.now, dir) else {
                    break;
                };
                match dir {
                    Dir::ToBroker => self.deliver_to_broker(id, delivery)?,
                    Dir::ToClient => self.deliver_to_client(id, delivery)?,
                }
            }
        }
        self.rearm_link(id);
        Ok(())
    }

    fn deliver_to_broker(&mut self, id: u64, delivery: Delivery) -> Step {
        let Some(slot) = self.links.get_mut(&id) else {
            return Ok(());
        };
        let client = slot.client;
        let Some(conn) = slot.conn else {
            return Ok(());
        };
        match delivery {
            Delivery::Data(bytes) => {
                slot.broker_buf.extend_from_slice(&bytes);
                if slot.paused {
                    // Not read: it waits, as it would in the socket.
                    return Ok(());
                }
                self.feed_broker(id)
            }
            Delivery::Closed => {
                if slot.paused && self.broker.is_blocked(conn) {
                    // A blocked publisher is not read: its end of stream
                    // waits behind what it sent, until it is read again. (A
                    // connection paused because it does not read learns of
                    // the close at once, as a shell's failing write would.)
                    slot.fin_pending = true;
                    return Ok(());
                }
                slot.conn = None;
                self.log(format!("b sees c{client}'s link L{id} close"));
                self.broker.handle_closed(self.now, conn);
                self.drain_broker()
            }
        }
    }

    /// The broker reads link `id` again: what waited, then its end of
    /// stream if that came too.
    fn resume_broker(&mut self, id: u64) -> Step {
        self.feed_broker(id)?;
        let Some(slot) = self.links.get_mut(&id) else {
            return Ok(());
        };
        if slot.fin_pending && !slot.paused {
            slot.fin_pending = false;
            return self.deliver_to_broker(id, Delivery::Closed);
        }
        Ok(())
    }

    /// Hands the broker what arrived on link `id` and it has not consumed.
    fn feed_broker(&mut self, id: u64) -> Step {
        let Some(slot) = self.links.get_mut(&id) else {
            return Ok(());
        };
        let client = slot.client;
        let Some(conn) = slot.conn else {
            return Ok(());
        };
        if slot.broker_buf.is_empty() {
            return Ok(());
        }
        let shadow = slot.rx_broker.decode_all(&slot.broker_buf);
        let mut buf = std::mem::take(&mut slot.broker_buf);
        let before = buf.len();
        self.broker.handle_bytes(self.now, conn, &mut buf);
        let consumed = before - buf.len();
        let mut processed = Vec::new();
        if let Some(slot) = self.links.get_mut(&id) {
            if slot.conn.is_some() || consumed > 0 {
                slot.broker_buf = buf;
            }
            let mut used = 0;
            for (len, packet) in shadow {
                if used + len > consumed {
                    break;
                }
                used += len;
                processed.push(slot.rx_broker.resolve(packet));
            }
        }
        for packet in &processed {
            self.log(format!("b<-c{client} {}", describe(packet)));
            self.observe(Obs::BrokerProcessed {
                client,
                link: id,
                packet,
            })?;
        }
        self.drain_broker()
    }

    fn deliver_to_client(&mut self, id: u64, delivery: Delivery) -> Step {
        let Some(slot) = self.links.get(&id) else {
            return Ok(());
        };
        let i = slot.client;
        if !slot.client_attached || self.clients[i].link != Some(id) {
            return Ok(());
        }
        match delivery {
            Delivery::Data(bytes) => {
                if self.clients[i].slow.is_some() {
                    self.clients[i].sock_buf.extend_from_slice(&bytes);
                    if self.clients[i].read_armed.is_none() {
                        let delay = self.clients[i].slow.map_or(Duration::ZERO, |s| s.1);
                        let key = self.events.push(self.now + delay, Ev::ClientRead(i));
                        self.clients[i].read_armed = Some(key);
                    }
                    Ok(())
                } else {
                    self.feed(i, &bytes)?;
                    self.written(id, bytes.len())
                }
            }
            Delivery::Closed => {
                if !self.clients[i].sock_buf.is_empty() {
                    self.clients[i].fin_pending = true;
                    return Ok(());
                }
                self.client_sees_close(i)
            }
        }
    }

    fn slow_read(&mut self, i: usize) -> Step {
        let c = &mut self.clients[i];
        c.read_armed = None;
        // Healing turns slow consumers fast: read everything at once.
        let (size, delay) = c.slow.unwrap_or((usize::MAX, Duration::ZERO));
        let n = size.min(c.sock_buf.len());
        let chunk: Bytes = c.sock_buf.split_to(n).freeze();
        if !c.sock_buf.is_empty() {
            c.read_armed = Some(self.events.push(self.now + delay, Ev::ClientRead(i)));
        }
        if !chunk.is_empty() {
            self.feed(i, &chunk)?;
            if let Some(id) = self.clients[i].link {
                self.written(id, chunk.len())?;
            }
        }
        let c = &mut self.clients[i];
        if c.sock_buf.is_empty() && c.fin_pending {
            c.fin_pending = false;
            return self.client_sees_close(i);
        }
        Ok(())
    }

    // ---- clients ----

    fn feed(&mut self, i: usize, bytes: &[u8]) -> Step {
        let c = &mut self.clients[i];
        let Some(conn) = c.conn.as_mut() else {
            return Ok(());
        };
        let Some(link) = c.link else {
            return Ok(());
        };
        c.read_buf.extend_from_slice(bytes);
        c.last_read = self.now;
        let shadow = c.rx.decode_all(&c.read_buf);
        let before = c.read_buf.len();
        conn.handle_bytes(self.now, &mut c.read_buf);
        let consumed = before - c.read_buf.len();
        let mut used = 0;
        let mut processed = Vec::new();
        for (len, packet) in shadow {
            if used + len > consumed {
                break;
            }
            used += len;
            processed.push(c.rx.resolve(packet));
        }
        for packet in &processed {
            if let Packet::ConnAck(c) = packet {
                if let Some(slot) = self.links.get_mut(&link) {
                    slot.connack_read = true;
                }
                if !c.session_present {
                    self.clients[i].diverged = false;
                }
            }
            self.observe(Obs::ClientProcessed {
                client: i,
                link,
                packet,
            })?;
        }
        self.drain_client(i)
    }

    fn client_sees_close(&mut self, i: usize) -> Step {
        if self.clients[i].conn.is_some() {
            self.log(format!("c{i} sees its link close"));
        }
        if let Some(conn) = self.clients[i].conn.as_mut() {
            conn.handle_closed(self.now);
        }
        self.drain_client(i)
    }

    fn drain_client(&mut self, i: usize) -> Step {
        loop {
            let c = &mut self.clients[i];
            let (Some(conn), Some(id)) = (c.conn.as_mut(), c.link) else {
                return Ok(());
            };
            let mut out = Vec::new();
            while let Some(p) = conn.poll_transmit(self.now) {
                out.push((
                    match &p {
                        Packet::Connect(c) => c.protocol,
                        _ => conn.version(),
                    },
                    p,
                ));
            }
            let mut events = Vec::new();
            for (version, p) in out {
                self.send_from_client(i, id, version, p)?;
            }
            self.rearm_client(i);
            if let Some(conn) = self.clients[i].conn.as_mut() {
                while let Some(e) = conn.poll_event() {
                    events.push(e);
                }
            }
            if events.is_empty() {
                return Ok(());
            }
            for e in events {
                self.on_client_event(i, e)?;
            }
        }
    }

    fn send_from_client(&mut self, i: usize, id: u64, version: ProtocolVersion, p: Packet) -> Step {
        let mut wire = BytesMut::new();
        if let Err(e) = p.encode(version, &mut wire) {
            return Err(Complaint {
                checker: "encode",
                message: format!("c{i} produced a packet that does not encode: {e} ({p:?})"),
            });
        }
        let Some(slot) = self.links.get_mut(&id) else {
            return Ok(());
        };
        let packet = slot.tx_client.resolve(p);
        if let Packet::Connect(c) = &packet {
            slot.clean_start = c.clean_start;
        }
        slot.link.transmit(
            self.now,
            Dir::ToBroker,
            wire.freeze(),
            &mut self.net_rng,
            &self.profile,
        );
        self.stats.packets += 1;
        self.log(format!("c{i}->b {}", describe(&packet)));
        self.observe(Obs::ClientSent {
            client: i,
            link: id,
            packet: &packet,
        })?;
        self.rearm_link(id);
        Ok(())
    }

    fn on_client_event(&mut self, i: usize, event: ClientEvent) -> Step {
        let mut hide = false;
        match &event {
            ClientEvent::Connected {
                session_present, ..
            } => self.log(format!("c{i} connected, session present {session_present}")),
            ClientEvent::Closed(reason) => self.log(format!("c{i} closed: {reason}")),
            ClientEvent::Published {
                packet_id,
                reason_code,
                ..
            } => self.log(format!("c{i} published id={packet_id} {reason_code}")),
            ClientEvent::Message { publish, .. } => {
                self.stats.deliveries += 1;
                if let Some(n) = self.options.lose_delivery {
                    let durable = self.clients[i].app.role == Role::Durable;
                    if durable && publish.qos != tern_codec::QoS::AtMostOnce && !publish.retain {
                        self.durable_deliveries += 1;
                        if self.durable_deliveries == n {
                            self.log(format!(
                                "c{i}'s application LOSES {} (self-test)",
                                String::from_utf8_lossy(&publish.payload)
                            ));
                            hide = true;
                        }
                    }
                }
            }
            ClientEvent::Subscribed { .. } if i == self.probe => self.probe_subscribed = true,
            _ => {}
        }
        if !hide {
            self.observe(Obs::ClientEvent {
                client: i,
                event: &event,
            })?;
        }
        match event {
            ClientEvent::Message {
                ack: Some(token), ..
            } => {
                let reason = self.clients[i].app.ack_reason();
                self.clients[i].acks.push_back((token, reason));
                self.schedule_ack(i);
                Ok(())
            }
            ClientEvent::Auth(auth) => self.scram_step(i, &auth),
            ClientEvent::Connected { connack, .. } => {
                // A SCRAM login ends with the broker's signature: check it.
                if let Some(client) = self.clients[i].app.scram.take() {
                    let data = connack.properties.authentication_data.as_deref();
                    if let Err(e) = client.server_final(data.unwrap_or_default()) {
                        return Err(Complaint {
                            checker: "scram",
                            message: format!("c{i}: the broker's SCRAM signature: {e}"),
                        });
                    }
                }
                if let Some(action) = self.clients[i].app.on_connected() {
                    self.execute(i, action)?;
                }
                self.schedule_ack(i);
                Ok(())
            }
            ClientEvent::Closed(_) => self.connection_ended(i),
            _ => Ok(()),
        }
    }

    /// The broker's SCRAM server-first (AUTH 0x18): answer with the
    /// client-final.
    fn scram_step(&mut self, i: usize, auth: &tern_codec::Auth) -> Step {
        let now = self.now;
        let c = &mut self.clients[i];
        let (Some(client), Some(conn)) = (c.app.scram.as_mut(), c.conn.as_mut()) else {
            return Err(Complaint {
                checker: "scram",
                message: format!("c{i} got AUTH without a SCRAM login under way"),
            });
        };
        let data = auth.properties.authentication_data.as_deref();
        let answer = client
            .server_first(data.unwrap_or_default())
            .map_err(|e| Complaint {
                checker: "scram",
                message: format!("c{i}: the broker's SCRAM server-first: {e}"),
            })?;
        conn.auth_continue(now, Some(Bytes::from(answer)))
            .map_err(|e| Complaint {
                checker: "scram",
                message: format!("c{i} could not answer AUTH: {e}"),
            })
    }

    /// The client's connection closed: keep the session, close our end of
    /// the link, and come back later.
    fn connection_ended(&mut self, i: usize) -> Step {
        let c = &mut self.clients[i];
        let Some(mut conn) = c.conn.take() else {
            return Ok(());
        };
        let link = c.link.take();
        let mut last = Vec::new();
        while let Some(p) = conn.poll_transmit(self.now) {
            last.push((conn.version(), p));
        }
        c.session = Some(conn.into_session());
        self.events.cancel(c.timer.take());
        self.events.cancel(c.read_armed.take());
        c.read_buf.clear();
        c.sock_buf.clear();
        c.fin_pending = false;
        if let Some(id) = link {
            for (version, p) in last {
                self.send_from_client(i, id, version, p)?;
            }
            self.detach(i, id);
            if let Some(slot) = self.links.get_mut(&id) {
                slot.link.close(self.now, Dir::ToBroker);
            }
            self.rearm_link(id);
        }
        self.plan_reconnect(i);
        Ok(())
    }

    /// The client stops reading link `id`. If the broker had started a new
    /// session on it (the old one had ended) whose CONNACK the client never
    /// read, the client's session is now stale and it cannot know: a later
    /// connection that resumes finds the broker's new session present. MQTT offers no way
    /// out; incoming QoS 2 state the client keeps for the old session is
    /// never released (and would swallow a new message reusing its packet
    /// identifier). The quiet check tolerates that state, nothing else.
    fn detach(&mut self, i: usize, id: u64) {
        if let Some(slot) = self.links.get_mut(&id) {
            slot.client_attached = false;
            // (After a clean start the client discarded its state itself.)
            if slot.connack_new_session && !slot.connack_read && !slot.clean_start {
                self.clients[i].diverged = true;
                self.log(format!(
                    "c{i} never read the CONNACK (Session Present 0) sent on L{id}: its session is stale"
                ));
            }
        }
    }

    fn schedule_ack(&mut self, i: usize) {
        if self.clients[i].ack_armed.is_none() && !self.clients[i].acks.is_empty() {
            let at = self.now + self.clients[i].app.ack_delay();
            self.clients[i].ack_armed = Some(self.events.push(at, Ev::Ack(i)));
        }
    }

    /// The application acknowledges the oldest message it holds. A QoS 1
    /// token from an earlier connection is stale (the broker resends the
    /// message); a QoS 2 token stays good until the flow completes, so it
    /// waits for a connection.
    fn app_acks(&mut self, i: usize) -> Step {
        self.clients[i].ack_armed = None;
        let now = self.now;
        let c = &mut self.clients[i];
        let Some(conn) = c.conn.as_mut() else {
            c.acks
                .retain(|(t, _)| t.qos() == tern_codec::QoS::ExactlyOnce);
            return Ok(());
        };
        if let Some((token, reason)) = c.acks.pop_front() {
            match conn.ack(now, token, reason) {
                Ok(()) => self.log(format!(
                    "c{i} acks id={} q{} ({})",
                    token.packet_id(),
                    token.qos().as_u8(),
                    reason
                )),
                Err(e) => self.log(format!("c{i} ack of id={} refused: {e}", token.packet_id())),
            }
        }
        self.schedule_ack(i);
        self.drain_client(i)
    }

    fn plan_reconnect(&mut self, i: usize) {
        if i == self.probe || self.phase == Phase::Done {
            return;
        }
        let soon = self.now + self.clients[i].app.reconnect_in();
        let at = match self.clients[i].offline_until.take() {
            Some(t) if self.phase == Phase::Workload => t.max(soon),
            _ => soon,
        };
        self.schedule_connect(i, at);
    }

    fn connect(&mut self, i: usize) -> Step {
        if self.clients[i].conn.is_some() || self.phase == Phase::Done {
            return Ok(());
        }
        let heal = self.phase != Phase::Workload;
        let options = self.clients[i].app.connect_options(heal);
        let session = self.clients[i].session.take().unwrap_or_default();
        let id = self.next_link;
        self.next_link += 1;
        let link = Link::new(&mut self.net_rng, &self.profile);
        let conn = self.broker.accept(self.now);
        self.stats.connections += 1;
        let slow = !heal && self.fault_rng.chance(self.profile.slow_consumer);
        self.links.insert(
            id,
            LinkSlot {
                link,
                client: i,
                conn: Some(conn),
                client_attached: true,
                broker_buf: BytesMut::new(),
                rx_broker: Shadow::new(ProtocolVersion::V5),
                tx_client: Shadow::new(options.version),
                tx_broker: Shadow::new(options.version),
                armed: None,
                paused: false,
                fin_pending: false,
                connack_new_session: false,
                connack_read: false,
                clean_start: false,
            },
        );
        self.conn_links.insert(conn, id);
        let c = &mut self.clients[i];
        c.slow = slow.then(|| {
            (
                self.fault_rng.range(1, 96) as usize,
                Duration::from_micros(self.fault_rng.range(2_000, 200_000)),
            )
        });
        c.read_buf.clear();
        c.sock_buf.clear();
        c.fin_pending = false;
        c.rx = Shadow::new(options.version);
        c.link = Some(id);
        c.conn = Some(ClientConnection::new(self.now, options, session));
        self.log(format!(
            "c{i} opens L{id}{}",
            if slow { " (slow consumer)" } else { "" }
        ));
        if !heal {
            let p = self.profile;
            if p.reset_every_s > 0 {
                let mean = p.reset_every_s * 1_000_000;
                let at = self.now + Duration::from_micros(self.fault_rng.range(0, 2 * mean));
                self.events.push(at, Ev::Reset(id));
            }
            if p.half_open_every_s > 0 {
                let mean = p.half_open_every_s * 1_000_000;
                let at = self.now + Duration::from_micros(self.fault_rng.range(0, 2 * mean));
                self.events.push(at, Ev::Silence(id));
            }
        }
        self.drain_broker()?;
        self.drain_client(i)
    }

    fn step(&mut self, i: usize) -> Step {
        if self.phase != Phase::Workload {
            return Ok(());
        }
        let connected = self.clients[i]
            .conn
            .as_ref()
            .is_some_and(|c| c.state() == ConnectionState::Connected);
        let action = self.clients[i].app.step(connected, &self.profile);
        self.execute(i, action)?;
        let next = self.now + self.clients[i].app.next_step_in();
        self.events.push(next, Ev::Step(i));
        self.steps_left = self.steps_left.saturating_sub(1);
        if self.steps_left == 0 {
            self.events.push(self.now, Ev::Heal);
        }
        Ok(())
    }

    fn execute(&mut self, i: usize, action: Action) -> Step {
        let now = self.now;
        match action {
            Action::Nothing => Ok(()),
            Action::Publish { msg, publish } => {
                let Some(conn) = self.clients[i].conn.as_mut() else {
                    return Ok(());
                };
                match conn.publish(now, publish.clone()) {
                    Ok(packet_id) => {
                        self.stats.publishes += 1;
                        self.observe(Obs::AppPublish {
                            client: i,
                            msg,
                            publish: &publish,
                            packet_id,
                        })?;
                    }
                    Err(e) => self.log(format!("c{i} publish {msg} refused: {e}")),
                }
                self.drain_client(i)
            }
            Action::Subscribe {
                filters,
                properties,
            } => {
                let Some(conn) = self.clients[i].conn.as_mut() else {
                    return Ok(());
                };
                match conn.subscribe(now, filters, properties) {
                    Ok(packet_id) => self.observe(Obs::AppRequest {
                        client: i,
                        packet_id,
                    })?,
                    Err(e) => self.log(format!("c{i} subscribe refused: {e}")),
                }
                self.drain_client(i)
            }
            Action::Unsubscribe { filters } => {
                let Some(conn) = self.clients[i].conn.as_mut() else {
                    return Ok(());
                };
                match conn.unsubscribe(now, filters, UnsubscribeProperties::default()) {
                    Ok(packet_id) => self.observe(Obs::AppRequest {
                        client: i,
                        packet_id,
                    })?,
                    Err(e) => self.log(format!("c{i} unsubscribe refused: {e}")),
                }
                self.drain_client(i)
            }
            Action::Disconnect {
                reason,
                session_expiry,
                offline_for,
            } => {
                let Some(conn) = self.clients[i].conn.as_mut() else {
                    return Ok(());
                };
                let properties = DisconnectProperties {
                    session_expiry_interval: session_expiry,
                    ..DisconnectProperties::default()
                };
                if conn.disconnect(now, reason, properties).is_err() {
                    let _ = conn.disconnect(now, reason, DisconnectProperties::default());
                }
                self.clients[i].offline_until = Some(now + offline_for);
                self.drain_client(i)
            }
            Action::Restart {
                with_session,
                down_for,
            } => {
                self.stats.client_restarts += 1;
                self.log(format!(
                    "c{i} RESTARTS {} its session",
                    if with_session { "with" } else { "without" }
                ));
                let c = &mut self.clients[i];
                let session = match c.conn.take() {
                    Some(conn) => conn.into_session(),
                    None => c.session.take().unwrap_or_default(),
                };
                c.session = Some(if with_session {
                    session
                } else {
                    c.acks.clear();
                    ClientSession::new()
                });
                if !with_session {
                    c.app.forget_subscriptions();
                }
                self.events.cancel(c.timer.take());
                self.events.cancel(c.read_armed.take());
                self.events.cancel(c.connect_armed.take());
                c.read_buf.clear();
                c.sock_buf.clear();
                c.fin_pending = false;
                // The dying process's socket is reset by its kernel.
                if let Some(id) = c.link.take() {
                    self.detach(i, id);
                    if let Some(slot) = self.links.get_mut(&id) {
                        slot.link.reset(now);
                    }
                    self.rearm_link(id);
                }
                self.observe(Obs::ClientRestart {
                    client: i,
                    with_session,
                })?;
                self.schedule_connect(i, now + down_for);
                Ok(())
            }
            Action::TakeOver => {
                let c = &mut self.clients[i];
                let Some(conn) = c.conn.take() else {
                    return Ok(());
                };
                self.stats.takeovers += 1;
                c.session = Some(conn.into_session());
                self.events.cancel(c.timer.take());
                self.events.cancel(c.read_armed.take());
                if let Some(id) = c.link.take() {
                    self.log(format!(
                        "c{i} abandons L{id} and connects again (take-over)"
                    ));
                    self.detach(i, id);
                    self.rearm_link(id);
                }
                self.connect(i)
            }
        }
    }

    // ---- healing and the end ----

    fn heal(&mut self) -> Step {
        if self.phase != Phase::Workload {
            return Ok(());
        }
        self.phase = Phase::Heal;
        self.heal_started = self.now;
        self.profile = FaultProfile::NONE;
        self.log("HEAL: faults off, everyone reconnects with its session");
        if self.broker_config.max_memory.take().is_some() {
            // As an operator would (SIGHUP): refusals at the budget are
            // over, and what was refused stays refused; the checkers judge
            // that nothing acknowledged was lost while it held.
            self.broker.set_config(self.now, self.broker_config.clone());
            self.log("HEAL: memory budget lifted (a reload)");
        }
        let silent: Vec<u64> = self
            .links
            .iter()
            .filter(|(_, s)| s.link.is_silent())
            .map(|(id, _)| *id)
            .collect();
        for id in silent {
            if let Some(slot) = self.links.get_mut(&id) {
                slot.link.reset(self.now);
            }
            self.rearm_link(id);
        }
        for i in 0..self.clients.len() {
            if let Some((_, delay)) = self.clients[i].slow.take() {
                let _ = delay;
                if !self.clients[i].sock_buf.is_empty() {
                    self.events.cancel(self.clients[i].read_armed.take());
                    let key = self.events.push(self.now, Ev::ClientRead(i));
                    self.clients[i].read_armed = Some(key);
                }
            }
            if i != self.probe && self.clients[i].conn.is_none() {
                let at = self.now + Duration::from_millis(10 + i as u64);
                self.schedule_connect(i, at);
            }
        }
        self.drain_broker()?;
        self.schedule_quiet_check();
        Ok(())
    }

    /// When to look again: about a second later, but never in step with
    /// whole-second keep-alive traffic, which would otherwise always be in
    /// flight when we look.
    fn schedule_quiet_check(&mut self) {
        self.quiet_checks += 1;
        let at = self.now + Duration::from_millis(1000 + 37 * (self.quiet_checks % 7));
        self.events.push(at, Ev::Quiet);
    }

    fn quiet(&self) -> bool {
        for (i, c) in self.clients.iter().enumerate() {
            if i == self.probe && self.phase == Phase::Heal {
                continue;
            }
            let Some(conn) = &c.conn else {
                return false;
            };
            if conn.state() != ConnectionState::Connected
                || !c.sock_buf.is_empty()
                || !c.acks.is_empty()
            {
                return false;
            }
            let s = conn.session();
            let stale_qos2 = if c.diverged { 0 } else { s.incoming_qos2_len() };
            if s.inflight_len() + s.queue_len() + s.packet_ids_in_use() + stale_qos2 > 0 {
                return false;
            }
            if let Some(b) = self.broker.session(c.app.client_id.as_str()) {
                if b.inflight_len() + b.queue_len() + b.incoming_qos2_len() > 0 {
                    return false;
                }
            }
        }
        self.links
            .values()
            .all(|s| s.link.poll_timeout().is_none() && s.broker_buf.is_empty())
    }

    fn quiet_check(&mut self) -> Step {
        if self.now > self.heal_started + HEAL_LIMIT {
            let stuck: Vec<String> = self
                .clients
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let conn = c.conn.as_ref();
                    let s = conn.map(|c| c.session());
                    let b = self.broker.session(c.app.client_id.as_str());
                    format!(
                        "c{i}: {:?} client inflight/queue/ids/qos2 {:?} broker inflight/queue/qos2 {:?}",
                        conn.map(|c| c.state()),
                        s.map(|s| (s.inflight_len(), s.queue_len(), s.packet_ids_in_use(), s.incoming_qos2_len())),
                        b.map(|b| (b.inflight_len(), b.queue_len(), b.incoming_qos2_len()))
                    )
                })
                .collect();
            let busy: Vec<String> = self
                .links
                .iter()
                .filter(|(_, s)| s.link.poll_timeout().is_some() || !s.broker_buf.is_empty())
                .map(|(id, s)| {
                    format!(
                        "L{id} (c{}): next delivery {:?}, {} bytes unread by the broker",
                        s.client,
                        s.link.poll_timeout(),
                        s.broker_buf.len()
                    )
                })
                .collect();
            return Err(Complaint {
                checker: "liveness",
                message: format!(
                    "not quiet {}s after healing began:\n    {}\n    {}",
                    HEAL_LIMIT.as_secs(),
                    stuck.join("\n    "),
                    busy.join("\n    ")
                ),
            });
        }
        if !self.quiet() {
            self.schedule_quiet_check();
            return Ok(());
        }
        match self.phase {
            Phase::Heal => {
                self.phase = Phase::Probe;
                self.log("QUIET: the retained probe connects");
                self.schedule_connect(self.probe, self.now);
                self.schedule_quiet_check();
            }
            Phase::Probe if self.probe_subscribed => {
                self.log("DONE");
                self.phase = Phase::Done;
            }
            _ => {
                self.schedule_quiet_check();
            }
        }
        Ok(())
    }
}
