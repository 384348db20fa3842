//! What happened, as the checkers need to know it: every message and where
//! the broker routed it, the broker's session state as the protocol says it
//! must be, retained messages, and when each will is due.
//!
//! The simulator feeds the model [`Obs`]ervations in the order things
//! happened. The broker side comes from shadow-decoding the bytes each
//! `Broker::handle_bytes` call consumed (so the model knows the order in
//! which the broker processed packets) and from the broker's own
//! `Connected` / `Disconnected` events (so it knows when the broker noticed
//! a connection end).

use bytes::Bytes;
use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use tern_broker::{BrokerEvent, Limit, Refusal};
use tern_codec::{Packet, PacketId, Publish, QoS, ReasonCode};
use tern_session::{ClientEvent, CloseReason, Instant};

/// The identity of an application message or a will, carried in its payload
/// as `m<from>:<seq>|padding` or `w<from>:<seq>|padding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MsgId {
    /// Whether it is a will.
    pub will: bool,
    /// The client index that published it (or whose will it is).
    pub from: u16,
    /// The publisher's sequence number (per kind).
    pub seq: u32,
}

impl MsgId {
    /// A message id.
    pub fn msg(from: u16, seq: u32) -> Self {
        Self {
            will: false,
            from,
            seq,
        }
    }

    /// A will id.
    pub fn will(from: u16, seq: u32) -> Self {
        Self {
            will: true,
            from,
            seq,
        }
    }

    /// The payload that carries this id, padded with `pad` bytes.
    pub fn payload(&self, pad: usize) -> Bytes {
        let mut s = format!(
            "{}{}:{}",
            if self.will { 'w' } else { 'm' },
            self.from,
            self.seq
        );
        if pad > 0 {
            s.push('|');
            s.extend(std::iter::repeat_n('.', pad));
        }
        s.into()
    }

    /// Reads an id back from a payload.
    pub fn parse(payload: &[u8]) -> Option<Self> {
        let s = std::str::from_utf8(payload).ok()?;
        let s = s.split('|').next()?;
        let will = match s.as_bytes().first()? {
            b'm' => false,
            b'w' => true,
            _ => return None,
        };
        let (from, seq) = s[1..].split_once(':')?;
        Some(Self {
            will,
            from: from.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

impl core::fmt::Display for MsgId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{}{}:{}",
            if self.will { 'w' } else { 'm' },
            self.from,
            self.seq
        )
    }
}

/// Splits `$share/group/filter` into the group and the filter.
pub fn split_shared(filter: &str) -> (Option<&str>, &str) {
    match filter.strip_prefix("$share/") {
        Some(rest) => match rest.split_once('/') {
            Some((group, f)) => (Some(group), f),
            None => (None, filter),
        },
        None => (None, filter),
    }
}

/// Whether a topic filter (not shared) matches a topic name, written here
/// independently of tern-topic [MQTT-4.7.1-1] [MQTT-4.7.2-1].
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// The role a client plays in the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A durable subscriber to `will/#`: receives every will.
    WillWatcher,
    /// A durable subscriber: persistent session that never expires, never
    /// cleans, subscribes once at the start; delivery guarantees apply.
    Durable,
    /// Does anything: publishes, subscribes, disconnects, restarts, takes over.
    General,
    /// Connects after healing to read the retained set with `#`.
    RetainedProbe,
}

/// One routing of a message: the broker processed a PUBLISH carrying it
/// and routed it (a QoS 2 resend the broker must recognise does not count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Routing {
    /// The broker step at which it was routed.
    pub step: u64,
    /// When.
    pub at: Instant,
    /// The QoS it was published with.
    pub qos: QoS,
    /// Its retain flag.
    pub retain: bool,
    /// The Message Expiry Interval the broker received.
    pub expiry: Option<u32>,
    /// The publisher's broker-session generation.
    pub publisher_gen: u32,
}

/// A message the application published.
#[derive(Debug, Clone)]
pub struct Msg {
    /// Its identity.
    pub id: MsgId,
    /// Its topic.
    pub topic: String,
    /// Its QoS.
    pub qos: QoS,
    /// Its retain flag.
    pub retain: bool,
    /// The Message Expiry Interval the application gave it.
    pub expiry: Option<u32>,
    /// When `publish` accepted it.
    pub published_at: Instant,
    /// Every routing by the broker, in order.
    pub routings: Vec<Routing>,
}

/// A subscription as the broker must hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sub {
    /// The filter without any `$share/group/` prefix.
    pub filter: String,
    /// The shared group, if any.
    pub group: Option<String>,
    /// The granted QoS.
    pub qos: QoS,
    /// No Local.
    pub no_local: bool,
    /// Retain As Published.
    pub rap: bool,
    /// The broker step at which it first existed in this session.
    pub since: u64,
}

/// A client's session at the broker, as the protocol says it must be.
#[derive(Debug, Clone, Default)]
pub struct SessionModel {
    /// Bumped each time the session is new (clean start, expiry, loss).
    pub generation: u32,
    /// Whether the broker holds a session for the client now.
    pub exists: bool,
    /// Subscriptions by full filter (with any `$share/` prefix).
    pub subs: BTreeMap<String, Sub>,
    /// Incoming QoS 2 identifiers received and not yet released.
    pub qos2_in: BTreeSet<PacketId>,
    /// Whether a connection uses it now.
    pub online: bool,
    /// Seconds it outlives its connection (set when the connection ends).
    pub expiry_interval: u32,
    /// When it ends, while offline.
    pub ends_at: Option<Instant>,
}

/// A will the broker holds for a connection.
#[derive(Debug, Clone)]
pub struct WillSpec {
    /// Its identity.
    pub id: MsgId,
    /// Its topic.
    pub topic: String,
    /// Its QoS.
    pub qos: QoS,
    /// Its retain flag.
    pub retain: bool,
    /// Will Delay Interval in seconds.
    pub delay: u32,
}

/// What the broker learned from a connection's CONNECT and DISCONNECT.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The client index.
    pub client: usize,
    /// The client identifier.
    pub client_id: String,
    /// The will.
    pub will: Option<WillSpec>,
    /// The Session Expiry Interval in force (updated by DISCONNECT).
    pub expiry: u32,
    /// Clean start.
    pub clean_start: bool,
    /// The client's Receive Maximum.
    pub receive_maximum: u16,
    /// Whether it speaks MQTT 5.
    pub v5: bool,
    /// Whether the broker accepted it.
    pub accepted: bool,
    /// The DISCONNECT the broker processed, if any.
    pub disconnect: Option<ReasonCode>,
}

/// When a will is due, and whether it was published.
#[derive(Debug, Clone)]
pub struct WillFate {
    /// The will.
    pub spec: WillSpec,
    /// The client identifier.
    pub client_id: String,
    /// When the connection ended.
    pub ended_at: Instant,
    /// When it is (or was) to be published.
    pub due: Instant,
    /// Published (`due` reached), cancelled, or still pending.
    pub state: WillState,
    /// Whether another event happened at exactly `due`, so the broker may
    /// have ordered them either way.
    pub tie: bool,
}

/// Where a will stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WillState {
    /// Waiting for its delay or the session's end.
    Pending,
    /// Published at `due`.
    Published,
    /// Cancelled by a new connection that resumed the session.
    Cancelled,
}

/// A retained message as the model holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetainedEntry {
    /// The message.
    pub id: MsgId,
    /// When the broker stored it.
    pub at: Instant,
    /// Its Message Expiry Interval as received.
    pub expiry: Option<u32>,
}

impl RetainedEntry {
    /// Whether it has expired by `now` (as the broker judges it).
    pub fn expired(&self, now: Instant) -> bool {
        self.expiry
            .is_some_and(|e| now >= self.at + Duration::from_secs(u64::from(e)))
    }
}

/// One observation, in the order things happened.
#[derive(Debug)]
pub enum Obs<'a> {
    /// The application's `publish` accepted a message.
    AppPublish {
        /// Client index.
        client: usize,
        /// The message.
        msg: MsgId,
        /// What was published.
        publish: &'a Publish,
        /// The identifier `publish` returned.
        packet_id: Option<PacketId>,
    },
    /// The application's `subscribe` or `unsubscribe` returned an identifier.
    AppRequest {
        /// Client index.
        client: usize,
        /// The identifier.
        packet_id: PacketId,
    },
    /// The client's connection reported an event.
    ClientEvent {
        /// Client index.
        client: usize,
        /// The event.
        event: &'a ClientEvent,
    },
    /// The client process restarted.
    ClientRestart {
        /// Client index.
        client: usize,
        /// Whether it kept its session.
        with_session: bool,
    },
    /// The client put a packet on the wire.
    ClientSent {
        /// Client index.
        client: usize,
        /// The link.
        link: u64,
        /// The packet (topic alias resolved).
        packet: &'a Packet,
    },
    /// The client processed a packet from the broker.
    ClientProcessed {
        /// Client index.
        client: usize,
        /// The link.
        link: u64,
        /// The packet (topic alias resolved).
        packet: &'a Packet,
    },
    /// The broker processed a packet from a client.
    BrokerProcessed {
        /// Client index.
        client: usize,
        /// The link.
        link: u64,
        /// The packet (topic alias resolved).
        packet: &'a Packet,
    },
    /// The broker put a packet on the wire.
    BrokerSent {
        /// Client index.
        client: usize,
        /// The link.
        link: u64,
        /// The packet (topic alias resolved).
        packet: &'a Packet,
    },
    /// The broker reported an event.
    Broker {
        /// Client index of the connection, if known.
        client: Option<usize>,
        /// The link of the connection, if known.
        link: Option<u64>,
        /// The event.
        event: &'a BrokerEvent,
    },
    /// The broker shut down gracefully and a new one started from the store.
    BrokerRestart,
}

/// The ground truth shared by the checkers.
#[derive(Debug, Default)]
pub struct Model {
    /// The roles, by client index.
    pub roles: Vec<Role>,
    /// Counts packets the broker processed.
    pub step: u64,
    /// Every message published, by id.
    pub msgs: BTreeMap<MsgId, Msg>,
    /// Wills as declared in CONNECTs, by id.
    pub will_specs: BTreeMap<MsgId, WillSpec>,
    /// The fate of every will whose connection ended, by id.
    pub wills: BTreeMap<MsgId, WillFate>,
    /// Broker sessions by client identifier.
    pub sessions: BTreeMap<String, SessionModel>,
    /// Connections by link.
    pub conns: BTreeMap<u64, ConnInfo>,
    /// Retained messages by topic.
    pub retained: BTreeMap<String, RetainedEntry>,
    /// Every filter each client identifier ever had granted.
    pub ever_filters: BTreeMap<String, BTreeSet<String>>,
    /// Client index → client identifier.
    pub client_ids: Vec<String>,
    /// The last time the model was advanced to.
    pub now: Instant,
    /// Each link's latest PUBLISHes the broker processed, newest last, with
    /// what undoes them if the broker reports one refused (the memory
    /// budget refuses a PUBLISH after processing it, QoS 0 included).
    recent_publishes: BTreeMap<u64, VecDeque<PublishUndo>>,
}

/// What the model changed for one processed PUBLISH.
#[derive(Debug)]
struct PublishUndo {
    topic: String,
    client_id: String,
    msg: Option<MsgId>,
    step: u64,
    /// The QoS 2 packet identifier it put in the session's incoming set.
    qos2_id: Option<PacketId>,
    /// The retained entry its topic had before, when it was retained.
    retained_before: Option<Option<RetainedEntry>>,
}

/// How many processed PUBLISHes per link the model can still undo.
const UNDOABLE: usize = 64;

/// Whether a connection that ended this way publishes its will.
pub fn close_publishes_will(reason: &CloseReason) -> bool {
    match reason {
        // [MQTT-3.1.2-8] [MQTT-3.14.4-3]: only a normal DISCONNECT (0x00)
        // deletes the will.
        CloseReason::PeerDisconnected { reason_code, .. } => *reason_code != ReasonCode::Success,
        // The broker does not publish wills when it shuts down itself (a
        // documented choice of the broker core: the sessions survive).
        CloseReason::Local(ReasonCode::ServerShuttingDown) => false,
        CloseReason::ConnectRefused(_) | CloseReason::ConnectTimeout => false,
        _ => true,
    }
}

impl Model {
    /// A model for clients with these roles and identifiers.
    pub fn new(roles: Vec<Role>, client_ids: Vec<String>) -> Self {
        Self {
            roles,
            client_ids,
            ..Self::default()
        }
    }

    /// The client index for a client identifier.
    pub fn client_index(&self, client_id: &str) -> Option<usize> {
        self.client_ids.iter().position(|c| c == client_id)
    }

    fn session(&mut self, client_id: &str) -> &mut SessionModel {
        self.sessions.entry(client_id.to_string()).or_default()
    }

    fn new_session(&mut self, client_id: &str) {
        let s = self.session(client_id);
        s.generation += 1;
        s.subs.clear();
        s.qos2_in.clear();
        s.exists = true;
        s.ends_at = None;
    }

    fn end_session(&mut self, client_id: &str, now: Instant) {
        // A pending will goes out when the session ends [MQTT-3.1.3-9].
        let due: Vec<MsgId> = self
            .wills
            .iter()
            .filter(|(_, w)| w.client_id == client_id && w.state == WillState::Pending)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.publish_will(id, now);
        }
        let s = self.session(client_id);
        s.generation += 1;
        s.subs.clear();
        s.qos2_in.clear();
        s.exists = false;
        s.online = false;
        s.ends_at = None;
    }

    fn publish_will(&mut self, id: MsgId, at: Instant) {
        let Some(w) = self.wills.get_mut(&id) else {
            return;
        };
        w.state = WillState::Published;
        w.due = at;
        if w.spec.retain {
            self.retained.insert(
                w.spec.topic.clone(),
                RetainedEntry {
                    id,
                    at,
                    expiry: None,
                },
            );
        }
    }

    /// Moves the model's clock: publishes wills that fell due and ends
    /// sessions that expired, in time order.
    pub fn advance(&mut self, now: Instant) {
        loop {
            let next_will = self
                .wills
                .iter()
                .filter(|(_, w)| w.state == WillState::Pending && w.due <= now)
                .map(|(id, w)| (w.due, *id))
                .min();
            let next_end = self
                .sessions
                .iter()
                .filter_map(|(c, s)| s.ends_at.filter(|&t| t <= now).map(|t| (t, c.clone())))
                .min();
            match (next_will, next_end) {
                (Some((t, id)), end) if end.as_ref().is_none_or(|(te, _)| t <= *te) => {
                    self.publish_will(id, t);
                }
                (_, Some((t, client))) => self.end_session(&client, t),
                _ => break,
            }
        }
        self.now = self.now.max(now);
    }

    /// Applies one observation.
    pub fn observe(&mut self, now: Instant, obs: &Obs<'_>) {
        self.advance(now);
        match obs {
            Obs::AppPublish {
                msg,
                publish,
                client: _,
                packet_id: _,
            } => {
                self.msgs.insert(
                    *msg,
                    Msg {
                        id: *msg,
                        topic: publish.topic.to_string(),
                        qos: publish.qos,
                        retain: publish.retain,
                        expiry: publish.properties.message_expiry_interval,
                        published_at: now,
                        routings: Vec::new(),
                    },
                );
            }
            Obs::BrokerProcessed {
                client,
                link,
                packet,
            } => {
                self.step += 1;
                self.broker_processed(now, *client, *link, packet);
            }
            Obs::Broker { link, event, .. } => self.broker_event(now, *link, event),
            // Sessions, their ends and pending wills survive a graceful
            // restart unchanged; connections closed by the shutdown were
            // reported as `Disconnected` (without wills) before it.
            Obs::BrokerRestart => {}
            _ => {}
        }
    }

    fn broker_processed(&mut self, now: Instant, client: usize, link: u64, packet: &Packet) {
        let client_id = self.client_ids.get(client).cloned().unwrap_or_default();
        match packet {
            Packet::Connect(c) => {
                let v5 = c.protocol.is_v5();
                let expiry = if v5 {
                    c.properties.session_expiry_interval.unwrap_or(0)
                } else if c.clean_start {
                    0
                } else {
                    u32::MAX
                };
                let will = c.will.as_ref().and_then(|w| {
                    let id = MsgId::parse(&w.payload)?;
                    let spec = WillSpec {
                        id,
                        topic: w.topic.to_string(),
                        qos: w.qos,
                        retain: w.retain,
                        delay: if v5 {
                            w.properties.will_delay_interval.unwrap_or(0)
                        } else {
                            0
                        },
                    };
                    self.will_specs.insert(id, spec.clone());
                    Some(spec)
                });
                self.conns.insert(
                    link,
                    ConnInfo {
                        client,
                        client_id: c.client_id.to_string(),
                        will,
                        expiry,
                        clean_start: c.clean_start,
                        receive_maximum: if v5 {
                            c.properties.receive_maximum.map_or(u16::MAX, |r| r.get())
                        } else {
                            u16::MAX
                        },
                        v5,
                        accepted: false,
                        disconnect: None,
                    },
                );
            }
            Packet::Disconnect(d) => {
                if let Some(info) = self.conns.get_mut(&link) {
                    info.disconnect = Some(d.reason_code);
                    if let Some(e) = d.properties.session_expiry_interval {
                        info.expiry = e;
                    }
                }
            }
            Packet::Publish(p) => {
                let generation = self.session(&client_id).generation;
                if p.qos == QoS::ExactlyOnce {
                    let Some(id) = p.packet_id else { return };
                    // A resend of a QoS 2 message the session still holds is
                    // not routed again [MQTT-4.3.3-10].
                    if !self.session(&client_id).qos2_in.insert(id) {
                        return;
                    }
                }
                let mut undo = PublishUndo {
                    topic: p.topic.to_string(),
                    client_id: client_id.clone(),
                    msg: MsgId::parse(&p.payload),
                    step: self.step,
                    qos2_id: (p.qos == QoS::ExactlyOnce).then_some(p.packet_id).flatten(),
                    retained_before: p
                        .retain
                        .then(|| self.retained.get(p.topic.as_str()).copied()),
                };
                let recent = self.recent_publishes.entry(link).or_default();
                if recent.len() == UNDOABLE {
                    recent.pop_front();
                }
                undo.msg = undo.msg.filter(|id| self.msgs.contains_key(id));
                recent.push_back(undo);
                let routing = Routing {
                    step: self.step,
                    at: now,
                    qos: p.qos,
                    retain: p.retain,
                    expiry: p.properties.message_expiry_interval,
                    publisher_gen: generation,
                };
                let id = MsgId::parse(&p.payload);
                if p.retain {
                    if p.payload.is_empty() {
                        self.retained.remove(p.topic.as_str());
                    } else if let Some(id) = id {
                        self.retained.insert(
                            p.topic.to_string(),
                            RetainedEntry {
                                id,
                                at: now,
                                expiry: routing.expiry,
                            },
                        );
                    }
                }
                if let Some(m) = id.and_then(|id| self.msgs.get_mut(&id)) {
                    m.routings.push(routing);
                }
            }
            Packet::PubRel(r) => {
                self.session(&client_id).qos2_in.remove(&r.packet_id);
            }
            Packet::Subscribe(s) => {
                let step = self.step;
                for f in &s.filters {
                    let full = f.filter.to_string();
                    let (group, filter) = split_shared(&full);
                    let sub = Sub {
                        filter: filter.to_string(),
                        group: group.map(str::to_string),
                        qos: f.options.qos,
                        no_local: f.options.no_local,
                        rap: f.options.retain_as_published,
                        since: step,
                    };
                    self.ever_filters
                        .entry(client_id.clone())
                        .or_default()
                        .insert(full.clone());
                    let session = self.session(&client_id);
                    match session.subs.get_mut(&full) {
                        Some(existing) => {
                            *existing = Sub {
                                since: existing.since,
                                ..sub
                            }
                        }
                        None => {
                            session.subs.insert(full, sub);
                        }
                    }
                }
            }
            Packet::Unsubscribe(u) => {
                for f in &u.filters {
                    self.session(&client_id).subs.remove(f.as_str());
                }
            }
            _ => {}
        }
    }

    /// The broker refused a PUBLISH it processed on `link` (the newest one
    /// to `topic`): it was neither routed nor retained.
    fn publish_refused(&mut self, link: u64, topic: &str) {
        let Some(recent) = self.recent_publishes.get_mut(&link) else {
            return;
        };
        let Some(at) = recent.iter().rposition(|u| u.topic == topic) else {
            return;
        };
        let Some(undo) = recent.remove(at) else {
            return;
        };
        if let Some(m) = undo.msg.and_then(|id| self.msgs.get_mut(&id)) {
            if let Some(i) = m.routings.iter().rposition(|r| r.step == undo.step) {
                m.routings.remove(i);
            }
        }
        if let Some(id) = undo.qos2_id {
            self.session(&undo.client_id).qos2_in.remove(&id);
        }
        match undo.retained_before {
            Some(Some(before)) => {
                self.retained.insert(undo.topic, before);
            }
            Some(None) => {
                self.retained.remove(&undo.topic);
            }
            None => {}
        }
    }

    fn broker_event(&mut self, now: Instant, link: Option<u64>, event: &BrokerEvent) {
        match event {
            // Refused before routing (the memory budget, a client's share
            // of it, a topic over a limit); a `Queue` or `Retained` refusal
            // comes after the message was routed and stays routed.
            BrokerEvent::Refused {
                what: Refusal::Publish(topic),
                limit:
                    Some(
                        Limit::Memory
                        | Limit::ClientMemory
                        | Limit::TopicLevels
                        | Limit::TopicLength,
                    ),
                ..
            } => {
                if let Some(link) = link {
                    self.publish_refused(link, topic.as_str());
                }
            }
            // A limit refuses only new subscriptions (SUBACK 0x97; 3.1.1
            // 0x80): the filter the SUBSCRIBE added is not there.
            BrokerEvent::Refused {
                what: Refusal::Subscribe(filter),
                limit: Some(_),
                ..
            } => {
                let client_id = link
                    .and_then(|l| self.conns.get(&l))
                    .map(|info| info.client_id.clone());
                if let Some(client_id) = client_id {
                    self.session(&client_id).subs.remove(filter.as_str());
                }
            }
            BrokerEvent::Connected {
                client_id,
                session_present,
                ..
            } => {
                let client_id = client_id.to_string();
                let clean = link
                    .and_then(|l| self.conns.get_mut(&l))
                    .map(|info| {
                        info.accepted = true;
                        info.clean_start
                    })
                    .unwrap_or(true);
                // A delayed will that fell due at this very instant: the broker
                // may have handled the CONNECT or the timer first.
                for w in self.wills.values_mut() {
                    if w.client_id == client_id
                        && w.state == WillState::Published
                        && w.due == now
                        && w.ended_at != now
                    {
                        w.tie = true;
                    }
                }
                // A pending will: a clean start ends the old session (the will
                // goes out now); a resumed session cancels it [MQTT-3.1.3-9].
                let pending: Vec<MsgId> = self
                    .wills
                    .iter()
                    .filter(|(_, w)| w.client_id == client_id && w.state == WillState::Pending)
                    .map(|(id, _)| *id)
                    .collect();
                for id in pending {
                    if clean {
                        self.publish_will(id, now);
                    } else if let Some(w) = self.wills.get_mut(&id) {
                        w.state = WillState::Cancelled;
                    }
                }
                if !session_present {
                    self.new_session(&client_id);
                }
                let s = self.session(&client_id);
                s.exists = true;
                s.online = true;
                s.ends_at = None;
            }
            BrokerEvent::Disconnected {
                client_id: Some(client_id),
                reason,
                ..
            } => {
                let client_id = client_id.to_string();
                let Some(info) = link.and_then(|l| self.conns.get(&l)).cloned() else {
                    return;
                };
                if !info.accepted {
                    return;
                }
                let will = info.will.clone().filter(|_| close_publishes_will(reason));
                {
                    let s = self.session(&client_id);
                    s.online = false;
                    s.expiry_interval = info.expiry;
                    s.ends_at = (info.expiry != u32::MAX && info.expiry != 0)
                        .then(|| now + Duration::from_secs(u64::from(info.expiry)));
                }
                if let Some(spec) = will {
                    let id = spec.id;
                    let immediate = spec.delay == 0 || info.expiry == 0;
                    let mut due = now + Duration::from_secs(u64::from(spec.delay));
                    if info.expiry != u32::MAX {
                        due = due.min(now + Duration::from_secs(u64::from(info.expiry)));
                    }
                    self.wills.insert(
                        id,
                        WillFate {
                            spec,
                            client_id: client_id.clone(),
                            ended_at: now,
                            due: if immediate { now } else { due },
                            state: WillState::Pending,
                            tie: false,
                        },
                    );
                    if immediate {
                        self.publish_will(id, now);
                    }
                }
                if info.expiry == 0 {
                    self.end_session(&client_id, now);
                }
            }
            _ => {}
        }
    }

    /// The retained messages the broker must hold at `now`, by topic.
    pub fn retained_at(&self, now: Instant) -> BTreeMap<String, MsgId> {
        self.retained
            .iter()
            .filter(|(_, e)| !e.expired(now))
            .map(|(t, e)| (t.clone(), e.id))
            .collect()
    }

    /// The client index's current broker session, if any.
    pub fn session_of(&self, client: usize) -> Option<&SessionModel> {
        self.sessions.get(self.client_ids.get(client)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_payloads() {
        let id = MsgId::msg(3, 17);
        assert_eq!(MsgId::parse(&id.payload(0)), Some(id));
        assert_eq!(MsgId::parse(&id.payload(20)), Some(id));
        let w = MsgId::will(2, 5);
        assert_eq!(MsgId::parse(&w.payload(3)), Some(w));
        assert_eq!(MsgId::parse(b""), None);
        assert_eq!(MsgId::parse(b"x1:2"), None);
    }

    #[test]
    fn matching_follows_the_specification() {
        assert!(topic_matches("t/+/x", "t/a/x"));
        assert!(topic_matches("t/#", "t"));
        assert!(topic_matches("t/#", "t/a/x"));
        assert!(topic_matches("#", "t/a/x"));
        assert!(!topic_matches("#", "$SYS/broker/uptime"));
        assert!(!topic_matches("+/broker/uptime", "$SYS/broker/uptime"));
        assert!(topic_matches("$SYS/#", "$SYS/broker/uptime"));
        assert!(!topic_matches("t/+", "t/a/x"));
        assert!(!topic_matches("t/a/x", "t/a"));
        assert_eq!(split_shared("$share/g1/t/+/x"), (Some("g1"), "t/+/x"));
        assert_eq!(split_shared("t/#"), (None, "t/#"));
    }
}
