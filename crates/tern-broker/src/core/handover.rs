//! Sessions across cluster nodes (issue 18): a CONNECT for a client
//! identifier this node does not hold waits while the cluster claims it,
//! and a session this node holds leaves when another node claims it. The
//! core only sees "claim this id", "this session arrives" and "release
//! this session"; who owns what, and how a session travels, is the link's.
//!
//! ```text
//! node B: CONNECT x (no session x here)
//!           ──▶ ClusterOutput::Claim { x, clean_start }   (its reading paused)
//!         link: x's owner := B (compare-and-set); the old owner A, if alive, is asked
//! node A: handle_cluster_release(x, keep = !clean_start)
//!           ──▶ x's connection closed (MQTT 5: DISCONNECT 0x8E; 3.1.1: closed)
//!           ──▶ returns x's SessionHandover if x outlived the connection and keep
//! node B: handle_cluster_claimed(x, handover)
//!           ──▶ x restored offline, the CONNECT admitted: CONNACK session present 1
//! ```
//!
//! Invariants:
//! - With the cluster off nothing here runs: `admit` never parks.
//! - A handover carries no instant of its node's clock: a message's Message
//!   Expiry Interval is what remains of it, a pending will's delay what
//!   remains of it, so nodes' clocks never meet.
//! - A session that leaves ends here as a session taken over would, except
//!   that its pending will travels with it instead of being published.

use super::sessions::{SessionEntry, SessionKey};
use super::{Broker, ConnId, StoredSubscriptions, Timer};
use bytes::Bytes;
use core::time::Duration;
use tern_codec::{Connect, MqttString, PacketId, Publish, ReasonCode, Will};
use tern_session::{Instant, ServerSession};

/// A session on its way from one node to another: everything its client
/// would find on the node it left, without that node's clock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionHandover {
    /// The client identifier.
    pub client_id: MqttString,
    /// Its Session Expiry Interval in seconds (`u32::MAX`: never).
    pub expiry_interval: u32,
    /// Its subscriptions (with `$share/{group}/` for a shared one), options
    /// and Subscription Identifiers.
    pub subscriptions: StoredSubscriptions,
    /// The messages it held for its client: in flight first, in the order
    /// they were sent, then waiting, oldest first.
    pub messages: Vec<HandedMessage>,
    /// Incoming QoS 2 messages received (PUBREC sent) whose PUBREL has not
    /// come: a resent PUBLISH with one of these is not delivered again.
    pub incoming_qos2: Vec<PacketId>,
    /// A will waiting for its Will Delay Interval, and the seconds left.
    pub will: Option<(Will, u32)>,
}

/// One message a session held for its client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HandedMessage {
    /// The message as it is delivered: QoS and RETAIN as delivered, the
    /// publisher's properties with what remains of its Message Expiry
    /// Interval, and the Subscription Identifiers it matched. A packet
    /// identifier only when `released`.
    pub publish: Publish,
    /// A QoS 2 message whose PUBREC came: only its PUBREL is owed (with
    /// `publish.packet_id`), never the PUBLISH again [MQTT-4.3.3-6].
    pub released: bool,
}

/// A CONNECT waiting for its claim.
#[derive(Debug)]
pub(super) struct Parked {
    conn: ConnId,
    connect: Box<Connect>,
    username: Option<MqttString>,
    auth_data: Option<Bytes>,
}

impl Broker {
    /// Whether a CONNECT from an authenticated client waits for a claim:
    /// the cluster is on, and this node holds no session for its
    /// (client-chosen) identifier.
    pub(super) fn claims_first(&self, connect: &Connect) -> bool {
        self.cluster.is_some()
            && !connect.client_id.is_empty()
            && self.sessions.key_of(connect.client_id.as_bytes()).is_none()
    }

    /// Parks a CONNECT until its claim is answered, and asks for the claim
    /// (once per client identifier, however many CONNECTs wait for it).
    pub(super) fn park_for_claim(
        &mut self,
        conn: ConnId,
        connect: Connect,
        username: Option<MqttString>,
        auth_data: Option<Bytes>,
    ) {
        let Some(c) = self.conns.get_mut(conn.key()) else {
            return;
        };
        c.claiming = true;
        let client_id = super::compact(&connect.client_id);
        let clean_start = connect.clean_start;
        let Some(remote) = self.cluster.as_mut() else {
            return;
        };
        let waiting = remote
            .claims
            .entry(client_id.as_str().to_string())
            .or_default();
        let first = waiting.is_empty();
        waiting.push(Parked {
            conn,
            connect: Box::new(connect),
            username,
            auth_data,
        });
        if first {
            remote.claims_made += 1;
            remote.push(super::ClusterOutput::Claim {
                client_id,
                clean_start,
            });
        }
        self.update_reading(conn);
    }

    /// The cluster's answer to a [`ClusterOutput::Claim`](super::ClusterOutput::Claim):
    /// `arriving` is the session the old owner handed over (`None`: there
    /// was none, its node is gone, or the claim asked for a clean start).
    /// The session is restored as offline, then each CONNECT waiting for
    /// the claim is admitted in order, resuming it (session present 1)
    /// unless it asked for a clean start. A session this node has come to
    /// hold meanwhile wins over the one arriving. Ignored with the cluster
    /// off or without a claim waiting.
    pub fn handle_cluster_claimed(
        &mut self,
        now: Instant,
        client_id: &str,
        arriving: Option<SessionHandover>,
    ) {
        let Some(remote) = self.cluster.as_mut() else {
            return;
        };
        let Some(parked) = remote.claims.remove(client_id) else {
            return;
        };
        let clean = parked.first().is_some_and(|p| p.connect.clean_start);
        if let Some(h) = arriving.filter(|h| !clean && h.client_id.as_str() == client_id) {
            if self.sessions.key_of(h.client_id.as_bytes()).is_none() {
                self.install_handover(now, h);
                if let Some(remote) = self.cluster.as_mut() {
                    remote.sessions_in += 1;
                }
            }
        }
        for p in parked {
            let Some(c) = self.conns.get_mut(p.conn.key()) else {
                continue;
            };
            c.claiming = false;
            if c.closing {
                continue;
            }
            self.admit_now(now, p.conn, *p.connect, p.username, p.auth_data);
            self.process_events(now, p.conn);
            self.update_reading(p.conn);
            self.after_input(p.conn);
        }
    }

    /// Another node claimed `client_id`: its connection here, if any, is
    /// closed as a session taken over (MQTT 5: DISCONNECT 0x8E; 3.1.1: the
    /// connection is closed) [MQTT-3.1.4-3]. If the session outlived the
    /// connection it leaves this node: with `keep`, returned for the
    /// claiming node to restore (a pending will goes with it); without
    /// (the new connection asked for a clean start), it ends here as it
    /// would locally (a pending will is published). `None` if this node
    /// holds no such session, or it ended with its connection.
    pub fn handle_cluster_release(
        &mut self,
        now: Instant,
        client_id: &str,
        keep: bool,
    ) -> Option<SessionHandover> {
        self.cluster.as_ref()?;
        let key = self.sessions.key_of(client_id.as_bytes())?;
        if let Some(old) = self.sessions.conn_of(key) {
            if let Some(c) = self.conns.get_mut(old.key()) {
                c.server.close(now, ReasonCode::SessionTakenOver);
            }
            self.process_events(now, old);
            self.mark_ready(old);
        }
        // Closing may have ended it (it did not outlive its connection).
        let key = self.sessions.key_of(client_id.as_bytes())?;
        if self.sessions.conn_of(key).is_some() {
            // Still connected (its close did not go through): it stays.
            return None;
        }
        if !keep {
            self.end_session(now, key);
            return None;
        }
        let handover = self.handover_of(now, key);
        // Its pending will went into the handover: ending it publishes none.
        self.end_session(now, key);
        if let Some(remote) = self.cluster.as_mut() {
            remote.sessions_out += 1;
        }
        handover
    }

    /// An offline session as it leaves; takes its pending will.
    fn handover_of(&mut self, now: Instant, key: SessionKey) -> Option<SessionHandover> {
        let subscriptions = self.subscriptions.of(key);
        let entry = self.sessions.get_mut(key)?;
        let will = entry.pending_will.take().map(|w| {
            let (will, due) = *w;
            let left = u32::try_from((due - now).as_secs()).unwrap_or(u32::MAX);
            (will, left)
        });
        let mut messages = Vec::new();
        let mut incoming_qos2 = Vec::new();
        if let Some(session) = entry.offline.as_deref() {
            for (delivery, queued_at, released) in session.held_messages() {
                let mut publish = Publish::from(delivery.clone());
                if let Some(interval) = delivery.message_expiry_interval() {
                    let age = (now - queued_at).as_secs();
                    let left = u64::from(interval).saturating_sub(age);
                    if left == 0 && released.is_none() {
                        // Expired while queued: dropped, as it would be here.
                        continue;
                    }
                    publish.properties.message_expiry_interval =
                        Some(u32::try_from(left.max(1)).unwrap_or(u32::MAX));
                }
                publish.dup = false;
                publish.packet_id = released;
                messages.push(HandedMessage {
                    publish,
                    released: released.is_some(),
                });
            }
            incoming_qos2.extend(session.incoming_qos2_ids());
        }
        Some(SessionHandover {
            client_id: entry.client_id.clone(),
            expiry_interval: entry.expiry_interval,
            subscriptions,
            messages,
            incoming_qos2,
            will,
        })
    }

    /// Restores a session that arrived from another node, offline; its
    /// client's CONNECT resumes it next.
    fn install_handover(&mut self, now: Instant, h: SessionHandover) {
        let mut session = ServerSession::new(h.client_id.clone(), self.config.server.queue);
        for m in h.messages {
            match m.publish.packet_id.filter(|_| m.released) {
                Some(id) => {
                    let _ = session.restore_released(now, m.publish, id);
                }
                None => {
                    let mut publish = m.publish;
                    publish.packet_id = None;
                    let _ = session.enqueue(now, publish);
                }
            }
        }
        for id in h.incoming_qos2 {
            session.restore_incoming(id);
        }
        let mut entry = SessionEntry::new(h.client_id);
        entry.expiry_interval = h.expiry_interval;
        let key = self.sessions.insert(entry);
        let filters = self.subscriptions.restore(key, h.subscriptions);
        if let Some(entry) = self.sessions.get_mut(key) {
            entry.offline = Some(Box::new(session));
        }
        // Arriving state counts against the memory budget, never refused
        // (it was accepted on the node it left).
        for filter in filters {
            self.note_subscription(key, filter.as_bytes(), true);
        }
        self.note_session(key);
        if let Some((will, left)) = h.will {
            let due = now + Duration::from_secs(u64::from(left));
            if let Some(entry) = self.sessions.get_mut(key) {
                entry.pending_will = Some(Box::new((will, due)));
            }
            self.timers.arm(due, Timer::Will(key));
        }
        // Should its client be gone before it resumes, it ends in time.
        if let Some(at) = self
            .sessions
            .get_mut(key)
            .and_then(|entry| entry.start_expiry(now))
        {
            self.timers.arm(at, Timer::SessionExpiry(key));
        }
    }
}
