//! Crash points: a durable broker core on a simulated disk, crashed at
//! random virtual times and restarted on what the disk kept.
//!
//! The storage path is the production one: the core's storage batches go
//! through `tern_broker::storage::ops` to tern-store's [`LogWriter`] (the
//! storage thread's own work: one log record per group, one sync, then the
//! `Synced` report, checkpoints into redb), whose two files are on a
//! [`SimDisk`]. A crash loses every write not yet synced, maybe keeping
//! the last one torn or garbled (or, one crash in four, keeps them all: a
//! process crash); the broker restarts through `Db::open_on` (redb's
//! repair, then the log's replay) and `tern_broker::storage::recover`, as
//! `tern broker --data-dir` does. A storage fault point makes a sync fail
//! (the log's or a checkpoint's); the broker is then crashed at once.
//!
//! Clients are tern-session connections with persistent sessions (MQTT
//! 3.1.1 and 5.0): QoS 1 and QoS 2 publishers (some messages retained) and
//! subscribers at QoS 1 or 2, some of which go offline for a while. The
//! checks:
//!
//! - every acknowledged QoS 1 message reaches every subscriber at least
//!   once, every QoS 2 one (at subscription QoS 2) exactly once, and no
//!   QoS 2 message (acknowledged or not) twice [MQTT-4.3.3-10];
//! - a client whose session was established gets Session Present 1 on
//!   every later connection [MQTT-3.2.2-2];
//! - the retained value a restarted broker holds is never older than the
//!   last retained message it acknowledged;
//! - every message is acknowledged in the end (liveness).

use crate::rng::Rng;
use crate::trace::Trace;
use bytes::{Bytes, BytesMut};
use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet};
use tern_broker::storage::WallClock;
use tern_broker::{AllowAll, Broker, BrokerConfig, ConnId};
use tern_codec::{
    DisconnectProperties, MqttString, Packet, PacketId, ProtocolVersion, Publish, QoS, ReasonCode,
    SubscribeFilter, SubscribeProperties, SubscriptionOptions,
};
use tern_session::{ClientConnection, ClientEvent, ClientSession, ConnectOptions, Instant};
use tern_store::sim_disk::{Kept, SimDisk};
use tern_store::{Db, LogWriter};

/// A crash scenario's size.
#[derive(Debug, Clone, Copy)]
pub struct CrashOptions {
    /// Publishers (alternately QoS 1 and QoS 2).
    pub publishers: usize,
    /// Subscribers (subscription QoS 2, one in three QoS 1).
    pub subscribers: usize,
    /// Messages each publisher sends.
    pub messages: u32,
    /// Crash points per run.
    pub crashes: u32,
    /// Subscription QoS: `Some(q)` for every subscriber, `None` for QoS 2
    /// with every third at QoS 1.
    pub subscriber_qos: Option<QoS>,
    /// Keep every trace line.
    pub full_trace: bool,
    /// Called with every trace line as it is written.
    pub echo: Option<fn(&str)>,
}

impl Default for CrashOptions {
    fn default() -> Self {
        Self {
            publishers: 3,
            subscribers: 4,
            messages: 40,
            crashes: 3,
            subscriber_qos: None,
            full_trace: false,
            echo: None,
        }
    }
}

impl core::fmt::Display for CrashOptions {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "--publishers {} --subscribers {} --messages {} --crashes {}",
            self.publishers, self.subscribers, self.messages, self.crashes
        )?;
        if let Some(q) = self.subscriber_qos {
            write!(f, " --subscriber-qos {}", q.as_u8())?;
        }
        Ok(())
    }
}

/// Counters of one crash run (summed over runs by the runner).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CrashStats {
    /// Crashes (and restarts on the surviving disk).
    pub crashes: u64,
    /// Crashes whose last unsynced write survived torn or garbled.
    pub torn: u64,
    /// Crashes after which every unsynced write survived (process crash).
    pub kept_all: u64,
    /// Injected sync failures that happened.
    pub sync_failures: u64,
    /// Log groups synced.
    pub syncs: u64,
    /// Checkpoints into redb.
    pub checkpoints: u64,
    /// Messages acknowledged to their publishers.
    pub acknowledged: u64,
    /// Deliveries to subscribers' applications.
    pub deliveries: u64,
    /// QoS 1 deliveries beyond the first (allowed).
    pub qos1_repeats: u64,
    /// Acknowledged messages a subscriber never got (must be 0).
    pub lost: u64,
    /// QoS 2 messages a subscriber got twice (must be 0).
    pub qos2_duplicates: u64,
}

/// A crash run that passed.
#[derive(Debug, Clone)]
pub struct CrashReport {
    /// The seed.
    pub seed: u64,
    /// A hash of every trace line: equal for equal runs.
    pub trace_hash: u64,
    /// Counters.
    pub stats: CrashStats,
}

/// A crash run that broke a promise.
#[derive(Debug, Clone)]
pub struct CrashFailure {
    /// The seed.
    pub seed: u64,
    /// The options.
    pub options: CrashOptions,
    /// The check that failed.
    pub checker: &'static str,
    /// What it found.
    pub message: String,
    /// When.
    pub at: Instant,
    /// The last trace lines.
    pub trace: Vec<String>,
    /// Counters up to the failure.
    pub stats: CrashStats,
}

impl core::fmt::Display for CrashFailure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        writeln!(
            f,
            "seed {} FAILED [{}] at t={}: {}",
            self.seed, self.checker, self.at, self.message
        )?;
        writeln!(
            f,
            "  reproduce: cargo run --release -p tern-sim -- --crash --seed {} {} --trace",
            self.seed, self.options
        )?;
        writeln!(f, "  last {} trace lines:", self.trace.len())?;
        for line in &self.trace {
            writeln!(f, "    {line}")?;
        }
        Ok(())
    }
}

/// Runs one crash seed.
pub fn run_crash(seed: u64, options: &CrashOptions) -> Result<CrashReport, Box<CrashFailure>> {
    let mut world = World::new(seed, *options);
    match world.run() {
        Ok(()) => Ok(CrashReport {
            seed,
            trace_hash: world.trace.hash(),
            stats: world.stats,
        }),
        Err((checker, message)) => Err(Box::new(CrashFailure {
            seed,
            options: *options,
            checker,
            message,
            at: world.now,
            trace: world.trace.tail(),
            stats: world.stats,
        })),
    }
}

type Step = Result<(), (&'static str, String)>;

/// A message: publisher index and its sequence number.
type MsgKey = (usize, u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Publisher { qos: QoS },
    Subscriber { qos: QoS, roams: bool },
}

#[derive(Debug)]
struct Client {
    role: Role,
    client_id: MqttString,
    version: ProtocolVersion,
    conn: Option<ClientConnection>,
    session: Option<ClientSession>,
    link: Option<u64>,
    read_buf: BytesMut,
    /// A CONNACK was read once: the broker holds the session from then on.
    established: bool,
    /// Its SUBACK came (subscribers).
    subscribed: bool,
    /// Publishers: the next message's sequence number.
    next: u32,
    /// Publishers: packet identifier → message, while in flight.
    inflight: BTreeMap<PacketId, u32>,
    /// A reconnect is scheduled.
    reconnecting: bool,
    /// When its connection's timer is due.
    timer: Option<Instant>,
    /// Stays offline until then (a roaming subscriber's pause).
    offline_until: Option<Instant>,
    rng: Rng,
}

#[derive(Debug)]
struct Link {
    client: usize,
    conn: ConnId,
    /// When the last chunk each way arrives (links keep order).
    to_broker_at: Instant,
    to_client_at: Instant,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    ToBroker(u64, Bytes),
    ToClient(u64, Bytes),
    BrokerTimer(u64),
    ClientTimer(usize),
    Connect(usize),
    Step(usize),
    GoOffline(usize),
    SyncDone(u64, u64),
    IdleCheckpoint(u64, u64),
    Crash,
    Finish,
}

/// The storage thread's part, on virtual time.
struct Storage {
    writer: LogWriter,
    /// Batches handed in and not yet in a group: (seq, ops).
    waiting: Vec<(u64, Vec<tern_store::Op>)>,
    /// A group was written and its sync is under way.
    busy: bool,
    /// The store failed: nothing later completes.
    failed: bool,
    /// Groups appended (for the idle checkpoint).
    groups: u64,
}

struct World {
    now: Instant,
    options: CrashOptions,
    events: BTreeMap<(Instant, u64), Ev>,
    event_seq: u64,
    rng: Rng,
    net_rng: Rng,
    disk_rng: Rng,
    config: BrokerConfig,
    broker: Broker,
    /// Each broker instance's clock starts at zero, as a process's does.
    started: Instant,
    instance: u64,
    broker_timer: Option<Instant>,
    storage: Storage,
    disk: SimDisk,
    checkpoint_bytes: u64,
    links: BTreeMap<u64, Link>,
    conn_links: BTreeMap<ConnId, u64>,
    next_link: u64,
    clients: Vec<Client>,
    crashes_left: u32,
    healing: bool,
    finished: bool,
    /// Acknowledged messages, with their QoS.
    acked: BTreeMap<MsgKey, QoS>,
    /// Publishers' last acknowledged retained message.
    retained_acked: BTreeMap<usize, u32>,
    /// Deliveries per (subscriber, message).
    delivered: BTreeMap<(usize, MsgKey), u32>,
    /// The first QoS 2 duplicate seen.
    first_duplicate: Option<String>,
    trace: Trace,
    stats: CrashStats,
}

fn topic(publisher: usize) -> String {
    format!("t/{publisher}")
}

fn payload(key: MsgKey) -> Bytes {
    format!("m{}:{}", key.0, key.1).into()
}

fn parse(payload: &[u8]) -> Option<MsgKey> {
    let s = core::str::from_utf8(payload).ok()?.strip_prefix('m')?;
    let (a, b) = s.split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Every third message of a publisher is retained.
fn retained(seq: u32) -> bool {
    seq % 3 == 2
}

fn store_failed(e: impl core::fmt::Display) -> (&'static str, String) {
    (
        "store",
        format!("the store could not start on the surviving disk: {e}"),
    )
}

/// What a restart found: sessions, and retained messages by topic.
struct Restored {
    sessions: usize,
    retained: BTreeMap<String, Option<MsgKey>>,
}

/// The wall clock (Unix milliseconds) at virtual time `now`: fixed, so a
/// seed replays; deadlines stored across a crash map back consistently.
fn clock_at(now: Instant) -> WallClock {
    WallClock::fixed(1_800_000_000_000 + now.as_nanos() / 1_000_000)
}

/// Opens the store on `disk` and builds the broker from it, as
/// `tern broker --data-dir` does (`Db::open`, `storage::recover`, the
/// core loading the in-memory store built from it).
fn start_broker(
    disk: &SimDisk,
    config: &BrokerConfig,
    checkpoint_bytes: u64,
    clock: WallClock,
) -> Result<(Broker, Storage, Restored), (&'static str, String)> {
    let db = Db::open_on(disk).map_err(store_failed)?;
    let state =
        tern_broker::storage::recover(&db, config.server.queue, clock).map_err(store_failed)?;
    let restored = Restored {
        sessions: state.sessions.len(),
        retained: state
            .retained
            .iter()
            .map(|(t, m)| (t.as_str().to_string(), parse(&m.publish.payload)))
            .collect(),
    };
    let memory = tern_broker::MemoryStore::from_state(state);
    let mut writer = LogWriter::new(db).map_err(|_| store_failed("no log"))?;
    writer.set_checkpoint_bytes(checkpoint_bytes);
    let broker = Broker::with_hooks(
        config.clone(),
        Instant::ZERO,
        Box::new(memory),
        Box::new(AllowAll),
    );
    Ok((
        broker,
        Storage {
            writer,
            waiting: Vec::new(),
            busy: false,
            failed: false,
            groups: 0,
        },
        restored,
    ))
}

impl World {
    fn new(seed: u64, options: CrashOptions) -> Self {
        let root = Rng::new(seed);
        let mut rng = root.fork(1);
        let config = BrokerConfig {
            durable: true,
            ..BrokerConfig::default()
        };
        // Small checkpoints, so that crashes land around them too.
        let checkpoint_bytes = rng.range(1_000, 40_000);
        let disk = SimDisk::new();
        let (broker, storage, _) = start_broker(
            &disk,
            &config,
            checkpoint_bytes,
            clock_at(Instant::from_secs(1)),
        )
        .unwrap_or_else(|e| {
            unreachable!("an empty simulated disk always opens: {e:?}");
        });
        let mut clients = Vec::new();
        for i in 0..options.publishers {
            let qos = if i % 2 == 0 {
                QoS::AtLeastOnce
            } else {
                QoS::ExactlyOnce
            };
            clients.push((Role::Publisher { qos }, format!("pub{i}")));
        }
        for i in 0..options.subscribers {
            let qos = options.subscriber_qos.unwrap_or(if i % 3 == 2 {
                QoS::AtLeastOnce
            } else {
                QoS::ExactlyOnce
            });
            let roams = i % 2 == 1;
            clients.push((Role::Subscriber { qos, roams }, format!("sub{i}")));
        }
        let clients = clients
            .into_iter()
            .enumerate()
            .map(|(i, (role, id))| {
                let mut rng = root.fork(100 + i as u64);
                let version = if rng.chance(500) {
                    ProtocolVersion::V5
                } else {
                    ProtocolVersion::V3_1_1
                };
                Client {
                    role,
                    client_id: MqttString::try_from(id).unwrap_or_default(),
                    version,
                    conn: None,
                    session: Some(ClientSession::new()),
                    link: None,
                    read_buf: BytesMut::new(),
                    established: false,
                    subscribed: false,
                    next: 0,
                    inflight: BTreeMap::new(),
                    reconnecting: false,
                    timer: None,
                    offline_until: None,
                    rng,
                }
            })
            .collect();
        Self {
            now: Instant::from_secs(1),
            options,
            events: BTreeMap::new(),
            event_seq: 0,
            rng,
            net_rng: root.fork(2),
            disk_rng: root.fork(3),
            config,
            broker,
            started: Instant::from_secs(1),
            instance: 0,
            broker_timer: None,
            storage,
            disk,
            checkpoint_bytes,
            links: BTreeMap::new(),
            conn_links: BTreeMap::new(),
            next_link: 1,
            clients,
            crashes_left: options.crashes,
            healing: false,
            finished: false,
            acked: BTreeMap::new(),
            retained_acked: BTreeMap::new(),
            delivered: BTreeMap::new(),
            first_duplicate: None,
            trace: Trace::new(options.full_trace),
            stats: CrashStats::default(),
        }
    }

    fn log(&mut self, text: impl AsRef<str>) {
        let text = text.as_ref();
        self.trace.line(self.now, text);
        if let Some(echo) = self.options.echo {
            echo(&format!("{} {text}", self.now));
        }
    }

    /// Packets are described in the trace only when someone reads it all
    /// (decoding them again costs time).
    fn verbose(&self) -> bool {
        self.options.echo.is_some() || self.options.full_trace
    }

    fn describe(&mut self, l: u64, dir: &str, bytes: &Bytes) {
        let Some(link) = self.links.get(&l) else {
            return;
        };
        let version = self.clients[link.client].version;
        let text = match Packet::decode_exact(bytes.clone(), version) {
            Ok(p) => crate::trace::describe(&p),
            Err(_) => format!("{} bytes", bytes.len()),
        };
        let c = link.client;
        let who = if dir == "->b" {
            format!("c{c}->b")
        } else {
            format!("b->c{c}")
        };
        self.log(format!("{who} {text}"));
    }

    fn push(&mut self, at: Instant, ev: Ev) {
        self.events.insert((at, self.event_seq), ev);
        self.event_seq += 1;
    }

    /// The broker's clock: zero at its start.
    fn bnow(&self) -> Instant {
        Instant::ZERO + (self.now - self.started)
    }

    fn run(&mut self) -> Step {
        self.log(format!(
            "crash sim: {} checkpoint bytes, versions {}",
            self.checkpoint_bytes,
            self.clients
                .iter()
                .map(|c| if c.version.is_v5() { '5' } else { '4' })
                .collect::<String>()
        ));
        for i in 0..self.clients.len() {
            let at = self.now + Duration::from_millis(10 * i as u64);
            self.push(at, Ev::Connect(i));
            if let Role::Publisher { .. } = self.clients[i].role {
                self.push(at + Duration::from_millis(200), Ev::Step(i));
            }
        }
        self.schedule_crash();
        // Liveness: a run that has not finished by then is stuck.
        let limit = self.now + Duration::from_secs(600);
        while let Some(((t, _), ev)) = self.events.pop_first() {
            if t > limit {
                return Err(("liveness", self.unfinished()));
            }
            self.now = self.now.max(t);
            self.handle(ev)?;
            if self.finished {
                return self.final_checks();
            }
        }
        Err(("liveness", self.unfinished()))
    }

    fn unfinished(&self) -> String {
        let unacked: Vec<String> = self
            .clients
            .iter()
            .enumerate()
            .filter_map(|(i, c)| match c.role {
                Role::Publisher { .. } => Some(format!(
                    "pub{i}: {} of {} published, {} in flight",
                    c.next,
                    self.options.messages,
                    c.inflight.len()
                )),
                Role::Subscriber { .. } => None,
            })
            .collect();
        format!("the run did not finish: {}", unacked.join("; "))
    }

    fn schedule_crash(&mut self) {
        if self.crashes_left == 0 {
            return;
        }
        let at = self.now + Duration::from_micros(self.rng.range(20_000, 600_000));
        self.push(at, Ev::Crash);
        // Sometimes a sync fails first (a log group's or a checkpoint's).
        if self.rng.chance(200) {
            let n = self.rng.range(1, 12);
            self.disk.fail_sync(n);
        }
    }

    fn handle(&mut self, ev: Ev) -> Step {
        match ev {
            Ev::ToBroker(l, bytes) => self.arrive_at_broker(l, bytes),
            Ev::ToClient(l, bytes) => self.arrive_at_client(l, bytes),
            Ev::BrokerTimer(instance) => {
                if instance == self.instance && self.broker_timer.is_some() {
                    self.broker_timer = None;
                    let now = self.bnow();
                    self.broker.handle_timeout(now);
                    self.drain_broker()?;
                }
                Ok(())
            }
            Ev::ClientTimer(i) => {
                let c = &mut self.clients[i];
                if c.timer.is_none_or(|t| t > self.now) {
                    return Ok(());
                }
                c.timer = None;
                if let Some(conn) = c.conn.as_mut() {
                    conn.handle_timeout(self.now);
                }
                self.drain_client(i)
            }
            Ev::Connect(i) => self.connect(i),
            Ev::Step(i) => self.publish_step(i),
            Ev::GoOffline(i) => self.go_offline(i),
            Ev::SyncDone(instance, seq) => {
                if instance == self.instance {
                    self.sync_done(seq)?;
                }
                Ok(())
            }
            Ev::IdleCheckpoint(instance, groups) => {
                if instance == self.instance
                    && groups == self.storage.groups
                    && !self.storage.busy
                    && !self.storage.failed
                    && self.storage.writer.logged() > 0
                {
                    self.checkpoint()?;
                }
                Ok(())
            }
            Ev::Crash => self.crash(),
            Ev::Finish => self.finish(),
        }
    }

    // ---- the broker and its storage ----

    fn drain_broker(&mut self) -> Step {
        loop {
            let mut moved = false;
            let mut wire = BytesMut::new();
            let now = self.bnow();
            while let Some(t) = self.broker.write_transmit(now, &mut wire) {
                moved = true;
                if let Some(p) = &t.payload {
                    wire.extend_from_slice(p);
                }
                let bytes = wire.split().freeze();
                if let Some(&l) = self.conn_links.get(&t.conn) {
                    if self.verbose() {
                        self.describe(l, "b->", &bytes);
                    }
                    self.send(l, false, bytes);
                }
            }
            while let Some(batch) = self.broker.poll_store() {
                moved = true;
                let ops = tern_broker::storage::ops(batch.ops, clock_at(self.started));
                self.storage.waiting.push((batch.seq, ops));
            }
            self.start_group()?;
            while let Some(event) = self.broker.poll_event() {
                moved = true;
                if let tern_broker::BrokerEvent::Close(conn) = event {
                    if let Some(l) = self.conn_links.remove(&conn) {
                        let client = self.links.get(&l).map_or(0, |k| k.client);
                        self.log(format!("b closes c{client}"));
                        // The end of stream, behind what was sent.
                        self.send(l, false, Bytes::new());
                    }
                    let now = self.bnow();
                    self.broker.handle_closed(now, conn);
                }
            }
            if !moved {
                break;
            }
        }
        let want = self.broker.poll_timeout();
        if let Some(t) = want {
            let at = self.started + (t - Instant::ZERO);
            if self.broker_timer != Some(at) {
                self.broker_timer = Some(at);
                self.push(at.max(self.now), Ev::BrokerTimer(self.instance));
            }
        } else {
            self.broker_timer = None;
        }
        Ok(())
    }

    /// The storage thread takes everything waiting as one group: one log
    /// record, written now, synced a little later.
    fn start_group(&mut self) -> Step {
        let s = &mut self.storage;
        if s.busy || s.failed || s.waiting.is_empty() {
            return Ok(());
        }
        let mut ops = Vec::new();
        let mut seq = 0;
        for (n, mut o) in s.waiting.drain(..) {
            ops.append(&mut o);
            seq = n;
        }
        s.groups += 1;
        match s.writer.append(ops) {
            Ok(()) => {
                s.busy = true;
                let at = self.now + Duration::from_micros(self.disk_rng.range(100, 8_000));
                self.push(at, Ev::SyncDone(self.instance, seq));
                Ok(())
            }
            Err(e) => self.store_fault(e),
        }
    }

    fn sync_done(&mut self, seq: u64) -> Step {
        if let Err(e) = self.storage.writer.sync() {
            return self.store_fault(e);
        }
        self.stats.syncs += 1;
        self.storage.busy = false;
        self.log(format!("store synced batch {seq}"));
        let now = self.bnow();
        self.broker.handle_store_synced(now, seq);
        if self.storage.writer.wants_checkpoint() {
            self.checkpoint()?;
            if self.storage.failed {
                return Ok(());
            }
        }
        // The thread checkpoints after a second with nothing to do.
        let at = self.now + Duration::from_secs(1);
        self.push(at, Ev::IdleCheckpoint(self.instance, self.storage.groups));
        self.drain_broker()
    }

    fn checkpoint(&mut self) -> Step {
        match self.storage.writer.checkpoint() {
            Ok(()) => {
                self.stats.checkpoints += 1;
                self.log("store checkpoint");
                Ok(())
            }
            Err(e) => self.store_fault(e),
        }
    }

    /// The store failed (an injected sync failure): as the server, stop
    /// completing batches; an operator's restart follows (a crash now).
    fn store_fault(&mut self, e: tern_store::StoreError) -> Step {
        self.stats.sync_failures += 1;
        self.storage.failed = true;
        self.storage.busy = false;
        self.log(format!("STORE FAILED: {e}"));
        self.push(self.now, Ev::Crash);
        Ok(())
    }

    fn crash(&mut self) -> Step {
        if self.healing && !self.storage.failed {
            return Ok(());
        }
        self.crashes_left = self.crashes_left.saturating_sub(1);
        self.stats.crashes += 1;
        let unsynced = self.disk.unsynced_bytes();
        let (disk, kept) = self.disk.crash(self.disk_rng.next_u64());
        let what: Vec<String> = kept.iter().map(|(n, k)| format!("{n} {k:?}")).collect();
        if kept
            .iter()
            .any(|(_, k)| matches!(k, Kept::Torn(_) | Kept::Garbled))
        {
            self.stats.torn += 1;
        }
        if kept.iter().any(|(_, k)| *k == Kept::All) {
            self.stats.kept_all += 1;
        }
        self.log(format!(
            "CRASH ({unsynced} bytes unsynced; {})",
            what.join(", ")
        ));
        // Every connection dies with the process.
        let links: Vec<(u64, usize)> = self.links.iter().map(|(l, k)| (*l, k.client)).collect();
        self.links.clear();
        self.conn_links.clear();
        // The crashed store still holds the dead disk: let it go (its
        // writes fail; redb may panic on the way down).
        let (broker, storage, state) = start_broker(
            &disk,
            &self.config,
            self.checkpoint_bytes,
            clock_at(self.now),
        )?;
        let old = std::mem::replace(&mut self.storage, storage);
        drop(std::panic::catch_unwind(std::panic::AssertUnwindSafe(
            move || drop(old),
        )));
        self.disk = disk;
        self.broker = broker;
        self.started = self.now;
        self.instance += 1;
        self.broker_timer = None;
        self.log(format!(
            "RESTARTED on the surviving disk: {} sessions, {} retained",
            state.sessions,
            state.retained.len()
        ));
        self.check_retained(&state)?;
        self.drain_broker()?;
        for (_, i) in links {
            if let Some(conn) = self.clients[i].conn.as_mut() {
                conn.handle_closed(self.now);
            }
            self.drain_client(i)?;
        }
        if !self.healing {
            self.schedule_crash();
        }
        Ok(())
    }

    /// A restarted broker's retained value for each publisher's topic is
    /// never older than the last retained message it acknowledged.
    fn check_retained(&mut self, state: &Restored) -> Step {
        let held = &state.retained;
        for (&p, &seq) in &self.retained_acked {
            match held.get(&topic(p)) {
                Some(Some((from, s))) if *from == p && *s >= seq => {}
                other => {
                    return Err((
                        "retained",
                        format!(
                            "after the restart {} holds {other:?}; m{p}:{seq} was acknowledged",
                            topic(p)
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    // ---- links ----

    /// Puts bytes on link `l`, in order behind what is already under way.
    fn send(&mut self, l: u64, to_broker: bool, bytes: Bytes) {
        let delay = Duration::from_micros(self.net_rng.range(50, 3_000));
        let Some(link) = self.links.get_mut(&l) else {
            return;
        };
        let last = if to_broker {
            &mut link.to_broker_at
        } else {
            &mut link.to_client_at
        };
        let at = (self.now + delay).max(*last);
        *last = at;
        let ev = if to_broker {
            Ev::ToBroker(l, bytes)
        } else {
            Ev::ToClient(l, bytes)
        };
        self.push(at, ev);
    }

    fn arrive_at_broker(&mut self, l: u64, bytes: Bytes) -> Step {
        let Some(conn) = self.links.get(&l).map(|k| k.conn) else {
            return Ok(());
        };
        if !self.conn_links.contains_key(&conn) {
            return Ok(());
        }
        let now = self.bnow();
        if bytes.is_empty() {
            self.conn_links.remove(&conn);
            self.broker.handle_closed(now, conn);
        } else {
            let mut buf = BytesMut::from(&bytes[..]);
            self.broker.handle_bytes(now, conn, &mut buf);
        }
        self.drain_broker()
    }

    fn arrive_at_client(&mut self, l: u64, bytes: Bytes) -> Step {
        let Some(link) = self.links.get(&l) else {
            return Ok(());
        };
        let (i, conn) = (link.client, link.conn);
        if self.clients[i].link != Some(l) {
            return Ok(());
        }
        if bytes.is_empty() {
            self.links.remove(&l);
            if let Some(c) = self.clients[i].conn.as_mut() {
                c.handle_closed(self.now);
            }
            return self.drain_client(i);
        }
        if self.conn_links.contains_key(&conn) {
            self.broker.handle_written(conn, bytes.len());
        }
        let c = &mut self.clients[i];
        c.read_buf.extend_from_slice(&bytes);
        if let Some(conn) = c.conn.as_mut() {
            conn.handle_bytes(self.now, &mut c.read_buf);
        }
        self.drain_client(i)?;
        self.drain_broker()
    }

    // ---- clients ----

    fn connect(&mut self, i: usize) -> Step {
        let c = &mut self.clients[i];
        c.reconnecting = false;
        if c.conn.is_some() || self.finished {
            return Ok(());
        }
        if let Some(t) = c.offline_until {
            if t > self.now && !self.healing {
                self.push(t, Ev::Connect(i));
                return Ok(());
            }
            c.offline_until = None;
        }
        let mut options = ConnectOptions::new(c.client_id.clone());
        options.version = c.version;
        options.clean_start = false;
        options.keep_alive = 0;
        options.resubscribe = false;
        options.connect_timeout = Some(Duration::from_secs(5));
        if c.version.is_v5() {
            options.properties.session_expiry_interval = Some(u32::MAX);
        }
        let session = c.session.take().unwrap_or_default();
        c.conn = Some(ClientConnection::new(self.now, options, session));
        c.read_buf.clear();
        let l = self.next_link;
        self.next_link += 1;
        c.link = Some(l);
        let now = self.bnow();
        let conn = self.broker.accept(now);
        self.links.insert(
            l,
            Link {
                client: i,
                conn,
                to_broker_at: self.now,
                to_client_at: self.now,
            },
        );
        self.conn_links.insert(conn, l);
        self.log(format!("c{i} connects (L{l})"));
        self.drain_broker()?;
        self.drain_client(i)
    }

    fn drain_client(&mut self, i: usize) -> Step {
        loop {
            let c = &mut self.clients[i];
            let Some(conn) = c.conn.as_mut() else {
                return Ok(());
            };
            let mut out = Vec::new();
            while let Some(p) = conn.poll_transmit(self.now) {
                let version = match &p {
                    Packet::Connect(c) => c.protocol,
                    _ => conn.version(),
                };
                let mut wire = BytesMut::new();
                if let Err(e) = p.encode(version, &mut wire) {
                    return Err(("encode", format!("c{i}: {e}")));
                }
                out.push(wire.freeze());
            }
            let mut events = Vec::new();
            while let Some(e) = conn.poll_event() {
                events.push(e);
            }
            let timer = conn.poll_timeout();
            let rearm = timer.filter(|t| c.timer != Some(*t));
            c.timer = timer;
            if let Some(l) = c.link {
                for bytes in out {
                    if self.verbose() {
                        self.describe(l, "->b", &bytes);
                    }
                    self.send(l, true, bytes);
                }
            }
            if let Some(t) = rearm {
                self.push(t.max(self.now), Ev::ClientTimer(i));
            }
            if events.is_empty() {
                return Ok(());
            }
            for e in events {
                self.on_event(i, e)?;
            }
        }
    }

    fn on_event(&mut self, i: usize, event: ClientEvent) -> Step {
        match event {
            ClientEvent::Connected {
                session_present, ..
            } => {
                self.log(format!("c{i} connected, session present {session_present}"));
                let c = &mut self.clients[i];
                if c.established && !session_present {
                    return Err((
                        "session",
                        format!(
                            "{} reconnected with Session Present 0: its stored session is gone",
                            c.client_id
                        ),
                    ));
                }
                c.established = true;
                if let Role::Subscriber { qos, roams } = c.role {
                    if !c.subscribed {
                        let filter = SubscribeFilter {
                            filter: MqttString::from_static("t/#"),
                            options: SubscriptionOptions::with_qos(qos),
                        };
                        if let Some(conn) = c.conn.as_mut() {
                            conn.subscribe(self.now, vec![filter], SubscribeProperties::default())
                                .map_err(|e| ("client", format!("c{i} subscribe: {e}")))?;
                        }
                    }
                    if roams && !self.healing {
                        let at = self.now + Duration::from_micros(c.rng.range(20_000, 400_000));
                        self.push(at, Ev::GoOffline(i));
                    }
                }
                Ok(())
            }
            ClientEvent::Subscribed { reason_codes, .. } => {
                if reason_codes.iter().any(|r| r.is_error()) {
                    return Err(("client", format!("c{i}: subscription refused")));
                }
                self.log(format!("c{i} subscribed"));
                self.clients[i].subscribed = true;
                Ok(())
            }
            ClientEvent::Message { publish, .. } => self.delivered(i, &publish),
            ClientEvent::Published {
                packet_id,
                qos,
                reason_code,
            } => {
                let c = &mut self.clients[i];
                let Some(seq) = c.inflight.remove(&packet_id) else {
                    return Ok(());
                };
                if reason_code.is_error() {
                    return Err(("client", format!("m{i}:{seq} refused with {reason_code}")));
                }
                self.log(format!("c{i} m{i}:{seq} acknowledged (q{})", qos.as_u8()));
                self.stats.acknowledged += 1;
                self.acked.insert((i, seq), qos);
                if retained(seq) {
                    let r = self.retained_acked.entry(i).or_default();
                    *r = (*r).max(seq);
                }
                self.maybe_finish();
                Ok(())
            }
            ClientEvent::PublishDropped { packet_id } => Err((
                "client",
                format!("c{i}: a message was dropped ({packet_id:?})"),
            )),
            ClientEvent::Closed(reason) => {
                self.log(format!("c{i} closed: {reason}"));
                let c = &mut self.clients[i];
                if let Some(conn) = c.conn.take() {
                    c.session = Some(conn.into_session());
                }
                if let Some(l) = c.link.take() {
                    // Our end of the link closes too.
                    self.send(l, true, Bytes::new());
                }
                let c = &mut self.clients[i];
                if !c.reconnecting {
                    c.reconnecting = true;
                    let at = self.now + Duration::from_micros(c.rng.range(5_000, 300_000));
                    self.push(at, Ev::Connect(i));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn delivered(&mut self, i: usize, publish: &Publish) -> Step {
        let Some(key) = parse(&publish.payload) else {
            return Err((
                "integrity",
                format!("c{i} got a message nobody sent: {:?}", publish.payload),
            ));
        };
        self.stats.deliveries += 1;
        let n = self.delivered.entry((i, key)).or_default();
        *n += 1;
        let n = *n;
        self.log(format!(
            "c{i} got m{}:{} q{} (#{n})",
            key.0,
            key.1,
            publish.qos.as_u8()
        ));
        if n > 1 {
            if publish.qos == QoS::ExactlyOnce {
                // Counted, and the run fails at its end: the other checks
                // still get to judge it.
                self.stats.qos2_duplicates += 1;
                self.log(format!(
                    "QoS 2 DUPLICATE: c{i} got m{}:{} {n} times",
                    key.0, key.1
                ));
                self.first_duplicate.get_or_insert(format!(
                    "c{i} got QoS 2 message m{}:{} {n} times [MQTT-4.3.3-10]",
                    key.0, key.1
                ));
            } else {
                self.stats.qos1_repeats += 1;
            }
        }
        Ok(())
    }

    fn all_subscribed(&self) -> bool {
        self.clients
            .iter()
            .all(|c| matches!(c.role, Role::Publisher { .. }) || c.subscribed)
    }

    fn publish_step(&mut self, i: usize) -> Step {
        let messages = self.options.messages;
        let ready = self.all_subscribed();
        let c = &mut self.clients[i];
        let Role::Publisher { qos } = c.role else {
            return Ok(());
        };
        if c.next >= messages {
            return Ok(());
        }
        let again = self.now + Duration::from_micros(c.rng.range(500, 15_000));
        if ready && c.inflight.len() < 8 {
            if let Some(conn) = c
                .conn
                .as_mut()
                .filter(|c| c.state() == tern_session::ConnectionState::Connected)
            {
                let seq = c.next;
                let publish = Publish {
                    topic: MqttString::try_from(topic(i)).unwrap_or_default(),
                    payload: payload((i, seq)),
                    qos,
                    retain: retained(seq),
                    ..Publish::default()
                };
                let id = conn
                    .publish(self.now, publish)
                    .map_err(|e| ("client", format!("c{i} publish: {e}")))?;
                if let Some(id) = id {
                    c.inflight.insert(id, seq);
                }
                c.next += 1;
                self.log(format!(
                    "c{i} publishes m{i}:{seq} q{}{}",
                    qos.as_u8(),
                    if retained(seq) { " retained" } else { "" }
                ));
                self.drain_client(i)?;
            }
        }
        self.push(again, Ev::Step(i));
        Ok(())
    }

    /// A roaming subscriber disconnects normally and stays away a while:
    /// its session queues what arrives meanwhile.
    fn go_offline(&mut self, i: usize) -> Step {
        if self.healing {
            return Ok(());
        }
        let c = &mut self.clients[i];
        let Some(conn) = c
            .conn
            .as_mut()
            .filter(|c| c.state() == tern_session::ConnectionState::Connected)
        else {
            return Ok(());
        };
        let _ = conn.disconnect(
            self.now,
            ReasonCode::Success,
            DisconnectProperties::default(),
        );
        c.offline_until = Some(self.now + Duration::from_micros(c.rng.range(50_000, 800_000)));
        self.log(format!("c{i} goes offline"));
        self.drain_client(i)
    }

    /// Once every message is acknowledged: no more crashes, every client
    /// back online; the checks run a little later.
    fn maybe_finish(&mut self) {
        let total = self.options.messages as usize * self.options.publishers;
        if self.healing || self.acked.len() < total {
            return;
        }
        self.healing = true;
        self.log("every message acknowledged: healing");
        for i in 0..self.clients.len() {
            if self.clients[i].conn.is_none() {
                self.clients[i].offline_until = None;
                self.push(self.now, Ev::Connect(i));
            }
        }
        let at = self.now + Duration::from_secs(5);
        self.push(at, Ev::Finish);
    }

    fn finish(&mut self) -> Step {
        // A last crash with nothing left to do: the restarted broker must
        // hold the last retained value acknowledged.
        self.healing = false;
        self.crashes_left = 1;
        self.crash()?;
        self.finished = true;
        Ok(())
    }

    fn final_checks(&mut self) -> Step {
        let subscribers: Vec<(usize, QoS)> = self
            .clients
            .iter()
            .enumerate()
            .filter_map(|(i, c)| match c.role {
                Role::Subscriber { qos, .. } => Some((i, qos)),
                Role::Publisher { .. } => None,
            })
            .collect();
        let mut missing = Vec::new();
        for &key in self.acked.keys() {
            for &(s, _) in &subscribers {
                if self.delivered.get(&(s, key)).copied().unwrap_or(0) == 0 {
                    missing.push(format!("m{}:{} to c{s}", key.0, key.1));
                }
            }
        }
        self.stats.lost = missing.len() as u64;
        if !missing.is_empty() {
            missing.truncate(10);
            return Err((
                "delivery",
                format!(
                    "{} acknowledged messages never delivered: {}",
                    self.stats.lost,
                    missing.join(", ")
                ),
            ));
        }
        if let Some(d) = self.first_duplicate.take() {
            return Err((
                "qos2",
                format!(
                    "{} QoS 2 duplicates; the first: {d}",
                    self.stats.qos2_duplicates
                ),
            ));
        }
        let unique: BTreeSet<MsgKey> = self.delivered.keys().map(|(_, k)| *k).collect();
        self.log(format!(
            "done: {} acknowledged, {} distinct delivered, {} crashes",
            self.acked.len(),
            unique.len(),
            self.stats.crashes
        ));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// QoS 1 subscriptions: with QoS 2 ones about half the seeds fail today
    /// (restored in-flight messages get new packet identifiers, issue 14).
    fn options() -> CrashOptions {
        CrashOptions {
            messages: 30,
            subscriber_qos: Some(QoS::AtLeastOnce),
            ..CrashOptions::default()
        }
    }

    #[test]
    fn a_seed_replays_exactly() {
        let a = run_crash(5, &options()).expect("seed 5 passes");
        let b = run_crash(5, &options()).expect("seed 5 passes");
        assert_eq!(a.trace_hash, b.trace_hash);
        assert!(a.stats.crashes > 0);
    }

    #[test]
    fn nothing_acknowledged_is_lost_over_crash_points() {
        let mut totals = CrashStats::default();
        for seed in 0..6 {
            match run_crash(seed, &options()) {
                Ok(r) => {
                    totals.crashes += r.stats.crashes;
                    totals.acknowledged += r.stats.acknowledged;
                    totals.torn += r.stats.torn + r.stats.kept_all;
                }
                Err(f) => panic!("{f}"),
            }
        }
        // The runs crashed in the middle of the work (beyond each run's
        // final crash), with unsynced writes torn or kept, and every
        // message was acknowledged.
        assert!(totals.crashes > 9, "{totals:?}");
        assert!(totals.torn > 0, "{totals:?}");
        assert_eq!(totals.acknowledged, 6 * 3 * 30, "{totals:?}");
    }
}
