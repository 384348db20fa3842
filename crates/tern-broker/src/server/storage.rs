//! `--data-dir`: tern-store under the core's storage seam.
//!
//! The core records what its durable state needs as [`StoreOp`]s and cuts
//! them into numbered batches ([`Broker::poll_store`](crate::Broker::poll_store));
//! this module maps each to tern-store's [`Op`]s and hands the batch to the
//! storage thread, which appends whatever is waiting to its write-ahead log
//! with one fsync (group commit; redb is the log's checkpoint) and reports
//! the highest batch covered. The core task gets
//! that report on a channel and passes it to
//! [`Broker::handle_store_synced`](crate::Broker::handle_store_synced), which
//! releases the acknowledgements (PUBACK, PUBREC, CONNACK, SUBACK) the
//! batch promised. At start-up the store's sessions, subscriptions, queued
//! messages and retained messages become the core's [`StoredState`].
//!
//! Time across a restart: the core's clock starts at zero in each process
//! and reads no wall clock. This shell reads the wall clock once, when the
//! store opens ([`WallClock`]), and the core's clock starts then; deadlines
//! (when an offline session ends, when a waiting will is due, when a
//! message expires) are stored as Unix milliseconds and loaded as the core's
//! time again, so they count the time the broker was down. A message whose
//! expiry passed while it was down is not loaded; one still alive is loaded
//! with the Message Expiry Interval it has left. A session whose client was
//! connected when the broker stopped has no end stored: its expiry counts
//! from the restart.

use crate::{RetainedMessage, StoreOp, StoredSession, StoredState};
use bytes::Bytes;
#[cfg(feature = "server")]
use serde::Deserialize;
use std::collections::BTreeMap;
use std::num::NonZeroU64;
#[cfg(feature = "server")]
use std::path::PathBuf;
use std::sync::Arc;
#[cfg(feature = "server")]
use std::time::Duration;
use tern_codec::{
    Connect, MqttString, Packet, ProtocolVersion, Publish, PublishProperties, QoS, RetainHandling,
    SubscriptionId, SubscriptionOptions, Will,
};
use tern_session::{Instant, MessageBody, QueueLimits, ServerSession};
use tern_store::record::{BodyRecord, Delivery, QueueRecord, SessionRecord, SubscriptionRecord};
use tern_store::{Db, Loaded, Op};
#[cfg(feature = "server")]
use tern_store::{Storage, Sync};
use tern_topic::TopicName;
#[cfg(feature = "server")]
use tokio::sync::mpsc;

#[cfg(feature = "server")]
/// The `[storage]` table: where and how the broker keeps its state on
/// disk. Without `dir` (and without `--data-dir`) it keeps it in memory
/// only.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSettings {
    /// The data directory (created if missing); `--data-dir` sets it too.
    pub dir: Option<PathBuf>,
    /// What an acknowledgement promises (see [`SyncMode`]).
    pub sync: SyncMode,
    /// Under `sync = "interval"`: milliseconds at most between fsyncs.
    pub sync_interval_ms: u64,
}

#[cfg(feature = "server")]
impl Default for StorageSettings {
    fn default() -> Self {
        Self {
            dir: None,
            sync: SyncMode::Always,
            sync_interval_ms: 1000,
        }
    }
}

#[cfg(feature = "server")]
/// `sync = "always"` or `"interval"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// A CONNACK, SUBACK, PUBACK or PUBREC that promises stored state goes
    /// out only after that state is fsynced: it survives `kill -9`, a
    /// machine crash and a power cut. One fsync covers every connection's
    /// pending writes (group commit).
    Always,
    /// It goes out once the state is written to the operating system (it
    /// survives `kill -9` of the broker); an fsync runs at most every
    /// `sync_interval_ms`, so a machine crash or power cut loses at most
    /// that window.
    Interval,
}

#[cfg(feature = "server")]
/// An open store: the storage thread, what start-up loaded, the channel
/// its completions come back on (`Err`: the store failed, and no later
/// batch will complete), and the wall clock at the core's time zero.
pub(crate) struct Opened {
    pub(crate) storage: Storage,
    pub(crate) state: StoredState,
    pub(crate) synced: mpsc::UnboundedReceiver<Result<u64, String>>,
    pub(crate) clock: WallClock,
}

/// The wall clock at the core's time zero: the core's time is the time
/// since `zero`, and `zero` was `zero_ms` Unix milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    /// The core's time zero (the driver's epoch).
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) zero: std::time::Instant,
    zero_ms: u64,
}

impl WallClock {
    /// A clock whose time zero was `zero_ms` Unix milliseconds, for a
    /// driver with its own time (the crash simulator, which never reads
    /// `zero`).
    #[allow(
        clippy::disallowed_methods,
        reason = "`zero` is only read by the server's driver; the simulator never reads it"
    )]
    pub fn fixed(zero_ms: u64) -> Self {
        Self {
            zero: std::time::Instant::now(),
            zero_ms,
        }
    }

    /// Reads the wall clock now: the core's time zero is now.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    #[allow(
        clippy::disallowed_methods,
        reason = "the shell reads the wall clock once, at start-up"
    )]
    pub(crate) fn start() -> Self {
        let zero_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self {
            zero: std::time::Instant::now(),
            zero_ms,
        }
    }

    /// The core's time `at` in Unix milliseconds.
    fn unix_ms(self, at: Instant) -> u64 {
        self.zero_ms.saturating_add(at.as_nanos() / 1_000_000)
    }

    /// Unix milliseconds as the core's time (one already past: zero).
    fn core(self, unix_ms: u64) -> Instant {
        Instant::from_millis(unix_ms.saturating_sub(self.zero_ms))
    }

    /// The whole seconds (rounded up) left until `unix_ms` from the core's
    /// time zero; `None` once it has passed.
    fn seconds_left(self, unix_ms: u64) -> Option<u32> {
        let left = unix_ms.checked_sub(self.zero_ms).filter(|&ms| ms > 0)?;
        Some(u32::try_from(left.div_ceil(1000)).unwrap_or(u32::MAX))
    }
}

#[cfg(feature = "server")]
/// Opens the store in `settings.dir`, loads it and starts the storage
/// thread; `None` without a directory.
pub(crate) fn open(
    settings: &StorageSettings,
    queue: QueueLimits,
) -> Result<Option<Opened>, tern_store::StoreError> {
    let Some(dir) = &settings.dir else {
        return Ok(None);
    };
    let db = Db::open(dir)?;
    let clock = WallClock::start();
    let state = recover(&db, queue, clock)?;
    let sync = match settings.sync {
        SyncMode::Always => Sync::Always,
        SyncMode::Interval => Sync::Interval(Duration::from_millis(settings.sync_interval_ms)),
    };
    let (tx, synced) = mpsc::unbounded_channel();
    let storage = Storage::spawn(db, sync, move |r| {
        let _ = tx.send(r.map(|s| s.seq).map_err(|e| e.to_string()));
    });
    Ok(Some(Opened {
        storage,
        state,
        synced,
        clock,
    }))
}

/// Start-up from an open store (its log already replayed by
/// [`Db::open`]): loads it, setting corrupt records aside with a log line,
/// and returns the core's start-up state. `tern broker --data-dir` and the
/// crash simulator both start here.
pub fn recover(
    db: &Db,
    queue: QueueLimits,
    clock: WallClock,
) -> Result<StoredState, tern_store::StoreError> {
    let loaded = db.load()?;
    let place = db.path().display();
    if loaded.set_aside > 0 {
        tracing::warn!(
            "store {place}: {} corrupt or orphaned records set aside",
            loaded.set_aside
        );
    }
    tracing::info!(
        "store {place}: {} sessions, {} retained messages",
        loaded.sessions.len(),
        loaded.retained.len()
    );
    stored_state(db, loaded, queue, clock)
}

/// The core's operations as tern-store's (its times as wall-clock time).
pub fn ops(ops: Vec<StoreOp>, clock: WallClock) -> Vec<Op> {
    ops.into_iter().map(|o| op(o, clock)).collect()
}

fn op(op: StoreOp, clock: WallClock) -> Op {
    let unix = |at: Option<Instant>| at.map(|at| clock.unix_ms(at));
    match op {
        StoreOp::PutRetained { topic, message } => Op::PutRetained {
            topic: text(topic.as_bytes()),
            body: retained_body(&message, unix(message.expires_at())),
        },
        StoreOp::DeleteRetained { topic } => Op::DeleteRetained {
            topic: text(topic.as_bytes()),
        },
        StoreOp::PutSession {
            client_id,
            protocol,
            expiry_interval,
            user_name,
            will,
            will_due,
            expires_at,
        } => Op::PutSession(SessionRecord {
            client_id: client_id.as_str().to_owned(),
            protocol,
            expiry_interval,
            expires_at_ms: unix(expires_at),
            user_name: user_name.map(|u| u.as_str().to_owned()),
            will: will.map(|w| will_bytes(*w)),
            will_due_ms: unix(will_due),
        }),
        StoreOp::DeleteSession { client_id } => Op::DeleteSession(client_id.as_str().to_owned()),
        StoreOp::PutSubscription {
            client_id,
            filter,
            options,
            id,
        } => Op::PutSubscription {
            client_id: client_id.as_str().to_owned(),
            filter: filter.as_str().to_owned(),
            record: SubscriptionRecord {
                options: options_byte(options),
                identifier: id.map(SubscriptionId::get),
            },
        },
        StoreOp::DeleteSubscription { client_id, filter } => Op::DeleteSubscription {
            client_id: client_id.as_str().to_owned(),
            filter: filter.as_str().to_owned(),
        },
        StoreOp::PutBody {
            id,
            body,
            qos,
            retain,
            expires_at,
        } => Op::PutBody {
            id,
            body: BodyRecord {
                topic: text(body.topic.as_bytes()),
                payload: body.payload.to_vec(),
                qos: qos.as_u8(),
                retain,
                properties: properties_bytes(&body.properties),
                expires_at_ms: unix(expires_at),
                owner: None,
            },
        },
        StoreOp::PutQueue {
            client_id,
            seq,
            qos,
            subscription_ids,
        } => put_queue(&client_id, seq, qos, Delivery::Queued, subscription_ids),
        StoreOp::SentQueue {
            client_id,
            seq,
            qos,
            packet_id,
            subscription_ids,
        } => put_queue(
            &client_id,
            seq,
            qos,
            Delivery::Sent(packet_id.get()),
            subscription_ids,
        ),
        StoreOp::ReleaseQueue {
            client_id,
            seq,
            packet_id,
        } => Op::PutQueue {
            client_id: client_id.as_str().to_owned(),
            seq,
            record: QueueRecord {
                body: seq,
                qos: QoS::ExactlyOnce.as_u8(),
                delivery: Delivery::Released(packet_id.get()),
                subscription_ids: Vec::new(),
            },
        },
        StoreOp::PutIncoming {
            client_id,
            packet_id,
        } => Op::PutIncoming {
            client_id: client_id.as_str().to_owned(),
            packet_id: packet_id.get(),
        },
        StoreOp::DeleteIncoming {
            client_id,
            packet_id,
        } => Op::DeleteIncoming {
            client_id: client_id.as_str().to_owned(),
            packet_id: packet_id.get(),
        },
        StoreOp::DeleteQueue { client_id, seq } => Op::DeleteQueue {
            client_id: client_id.as_str().to_owned(),
            seq,
        },
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The MQTT 5 Subscription Options byte (3.8.3.1).
fn options_byte(o: SubscriptionOptions) -> u8 {
    o.qos.as_u8()
        | (u8::from(o.no_local) << 2)
        | (u8::from(o.retain_as_published) << 3)
        | ((o.retain_handling as u8) << 4)
}

fn options_from_byte(b: u8) -> Option<SubscriptionOptions> {
    Some(SubscriptionOptions {
        qos: QoS::from_u8(b & 3)?,
        no_local: b & 4 != 0,
        retain_as_published: b & 8 != 0,
        retain_handling: RetainHandling::from_u8((b >> 4) & 3)?,
    })
}

/// A message's MQTT 5 properties as opaque bytes: an encoded PUBLISH that
/// carries only them (empty when there are none).
fn properties_bytes(p: &PublishProperties) -> Vec<u8> {
    if *p == PublishProperties::default() {
        return Vec::new();
    }
    let mut carrier = Publish {
        topic: MqttString::from_static("p"),
        ..Publish::default()
    };
    *carrier.properties = p.clone();
    let mut out = Vec::new();
    match Packet::Publish(carrier).encode(ProtocolVersion::V5, &mut out) {
        Ok(()) => out,
        Err(_) => Vec::new(),
    }
}

fn properties_from_bytes(b: &[u8]) -> PublishProperties {
    if b.is_empty() {
        return PublishProperties::default();
    }
    match Packet::decode_exact(Bytes::copy_from_slice(b), ProtocolVersion::V5) {
        Ok(Packet::Publish(p)) => p.properties.into_inner(),
        _ => PublishProperties::default(),
    }
}

fn retained_body(m: &RetainedMessage, expires_at_ms: Option<u64>) -> BodyRecord {
    BodyRecord {
        topic: text(m.publish.topic.as_bytes()),
        payload: m.publish.payload.to_vec(),
        qos: m.publish.qos.as_u8(),
        retain: true,
        properties: properties_bytes(&m.publish.properties),
        expires_at_ms,
        owner: m.owner.as_ref().map(|o| o.as_str().to_owned()),
    }
}

/// A will as opaque bytes: an MQTT 5 CONNECT that carries only it.
fn will_bytes(will: Will) -> Vec<u8> {
    let connect = Connect {
        protocol: ProtocolVersion::V5,
        client_id: MqttString::from_static("w"),
        will: Some(will),
        ..Connect::default()
    };
    let mut out = Vec::new();
    match Packet::Connect(Box::new(connect)).encode(ProtocolVersion::V5, &mut out) {
        Ok(()) => out,
        Err(_) => Vec::new(),
    }
}

fn will_from_bytes(b: &[u8]) -> Option<Will> {
    match Packet::decode_exact(Bytes::copy_from_slice(b), ProtocolVersion::V5) {
        Ok(Packet::Connect(c)) => c.will,
        _ => None,
    }
}

/// The Message Expiry Interval a loaded message has left, written into
/// its properties; `None`: it expired while the broker was down.
fn expiry_left(
    properties: &mut PublishProperties,
    expires_at_ms: Option<u64>,
    clock: WallClock,
) -> Option<()> {
    if let Some(at) = expires_at_ms {
        properties.message_expiry_interval = Some(clock.seconds_left(at)?);
    }
    Some(())
}

/// What the store loaded, as the core's start-up state: queued messages'
/// bodies are read here (each once, shared by every session it is queued
/// for). A record that no longer makes a valid MQTT value (a filter, a
/// topic) is skipped.
fn stored_state(
    db: &Db,
    loaded: Loaded,
    queue: QueueLimits,
    clock: WallClock,
) -> Result<StoredState, tern_store::StoreError> {
    let mut state = StoredState::default();
    let mut bodies: BTreeMap<u64, Option<(Arc<MessageBody>, bool)>> = BTreeMap::new();
    // What expired while the broker was down (or no longer makes a valid
    // message) is deleted from disk, not only left unloaded.
    let mut stale = Vec::new();
    for (topic, body) in loaded.retained {
        let (Ok(name), Ok(mqtt)) = (
            TopicName::from_bytes(Bytes::from(topic.clone().into_bytes())),
            MqttString::try_from(topic),
        ) else {
            continue;
        };
        let mut publish = Publish {
            qos: QoS::from_u8(body.qos).unwrap_or(QoS::AtMostOnce),
            retain: true,
            topic: mqtt,
            payload: Bytes::from(body.payload),
            ..Publish::default()
        };
        let mut properties = properties_from_bytes(&body.properties);
        if expiry_left(&mut properties, body.expires_at_ms, clock).is_none() {
            stale.push(Op::DeleteRetained {
                topic: publish.topic.as_str().to_owned(),
            });
            continue;
        }
        *publish.properties = properties;
        state.retained.push((
            name,
            RetainedMessage {
                publish,
                stored_at: Instant::ZERO,
                owner: body.owner.and_then(|o| MqttString::try_from(o).ok()),
            },
        ));
    }
    for s in loaded.sessions {
        let Ok(client_id) = MqttString::try_from(s.record.client_id) else {
            continue;
        };
        let owner = client_id.as_str().to_owned();
        let mut session = ServerSession::new(client_id, queue);
        let mut subscriptions = Vec::with_capacity(s.subscriptions.len());
        for (filter, r) in s.subscriptions {
            let (Ok(filter), Some(options)) =
                (MqttString::try_from(filter), options_from_byte(r.options))
            else {
                continue;
            };
            subscriptions.push((
                filter,
                crate::StoredSubscription {
                    options,
                    subscription_id: r.identifier.and_then(SubscriptionId::new),
                },
            ));
        }
        for id in s
            .incoming
            .iter()
            .filter_map(|&id| tern_codec::PacketId::new(id))
        {
            session.restore_incoming(id);
        }
        // A QoS 2 message whose PUBREC came is owed its PUBREL (resent,
        // never the PUBLISH); one in flight is resent with its packet
        // identifier and DUP [MQTT-4.4.0-1]; one queued waits its turn.
        for (seq, r) in s.queue {
            let body = match bodies.get(&r.body) {
                Some(b) => b.clone(),
                None => {
                    let b = db
                        .body(r.body)?
                        .and_then(|b| message_body(r.body, b, clock));
                    bodies.insert(r.body, b.clone());
                    b
                }
            };
            let (Some((body, _retain)), Some(qos)) = (body, QoS::from_u8(r.qos)) else {
                stale.push(Op::DeleteQueue {
                    client_id: owner.clone(),
                    seq,
                });
                continue;
            };
            debug_assert_eq!(body.tag.map(|t| t.get()), Some(seq));
            let mut delivery = tern_session::Delivery::new(body, qos, false);
            delivery.subscription_ids = r
                .subscription_ids
                .iter()
                .filter_map(|&id| SubscriptionId::new(id))
                .collect();
            match r.delivery {
                Delivery::Released(id) => {
                    if let Some(id) = tern_codec::PacketId::new(id) {
                        session.restore_released(Instant::ZERO, delivery, id);
                    }
                }
                Delivery::Sent(id) => {
                    let restored = tern_codec::PacketId::new(id).is_some_and(|id| {
                        session.restore_sent(Instant::ZERO, delivery.clone(), id)
                    });
                    if !restored {
                        let _ = session.enqueue(Instant::ZERO, delivery);
                    }
                }
                Delivery::Queued => {
                    let _ = session.enqueue(Instant::ZERO, delivery);
                }
            }
        }
        // Online when the broker stopped (no end stored): its will is
        // owed; offline: its waiting will and its end, as the core's time.
        let will = s.record.will.as_deref().and_then(will_from_bytes);
        let (pending_will, lost_will) = match (will, s.record.will_due_ms) {
            (Some(w), Some(due)) => (Some((w, clock.core(due))), None),
            (w, _) => (None, w),
        };
        state.sessions.push(StoredSession {
            session,
            subscriptions,
            expiry_interval: s.record.expiry_interval,
            expires_at: s.record.expires_at_ms.map(|at| clock.core(at)),
            pending_will,
            lost_will,
            username: s
                .record
                .user_name
                .and_then(|u| MqttString::try_from(u).ok()),
        });
    }
    if !stale.is_empty() {
        tracing::info!(
            "store: {} expired or unusable messages deleted",
            stale.len()
        );
        db.apply(&stale, true)?;
    }
    Ok(state)
}

/// A stored body as the core's shared [`MessageBody`], tagged with its id.
fn message_body(id: u64, b: BodyRecord, clock: WallClock) -> Option<(Arc<MessageBody>, bool)> {
    let topic = MqttString::try_from(b.topic).ok()?;
    let mut properties = properties_from_bytes(&b.properties);
    expiry_left(&mut properties, b.expires_at_ms, clock)?;
    Some((
        Arc::new(MessageBody {
            topic,
            payload: Bytes::from(b.payload),
            properties: if properties == PublishProperties::default() {
                tern_codec::PublishPropertiesBox::new()
            } else {
                properties.into()
            },
            tag: NonZeroU64::new(id),
        }),
        b.retain,
    ))
}

/// A queue entry's record: its body shares its sequence number.
fn put_queue(
    client_id: &MqttString,
    seq: u64,
    qos: QoS,
    delivery: Delivery,
    subscription_ids: Vec<SubscriptionId>,
) -> Op {
    Op::PutQueue {
        client_id: client_id.as_str().to_owned(),
        seq,
        record: QueueRecord {
            body: seq,
            qos: qos.as_u8(),
            delivery,
            subscription_ids: subscription_ids
                .into_iter()
                .map(SubscriptionId::get)
                .collect(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_round_trip_through_their_byte() {
        for b in 0u8..=0x2f {
            if let Some(o) = options_from_byte(b) {
                assert_eq!(options_byte(o), b);
            }
        }
    }

    #[test]
    fn properties_round_trip_through_their_bytes() {
        let p = PublishProperties {
            message_expiry_interval: Some(30),
            content_type: Some(MqttString::from_static("text/plain")),
            ..Default::default()
        };
        assert_eq!(properties_from_bytes(&properties_bytes(&p)), p);
        assert!(properties_bytes(&PublishProperties::default()).is_empty());
    }
}
