//! Connections and sessions: CONNECT, take-over, resumption, wills and
//! session expiry.

use super::sessions::{SessionEntry, SessionKey};
use super::{AuthDecision, Broker, BrokerEvent, ConnId, StoreOp, StoredState, Timer};
use core::time::Duration;
use tern_codec::{Connect, MqttString, Publish, ReasonCode, Will};
use tern_session::{Accept, CloseReason, Instant, ServerSession};

impl Broker {
    /// Loads sessions and retained messages from the store at start-up.
    pub(super) fn restore(&mut self, now: Instant, state: StoredState) {
        for (topic, message) in state.retained {
            self.retained.restore(topic, message);
        }
        for stored in state.sessions {
            let session = stored.session;
            let client_id = session.client_id().clone();
            // The authorization checks of its deliveries (and its will)
            // use the user name its client last authenticated as.
            let mut entry = SessionEntry::new(client_id);
            entry.username = stored.username;
            entry.expiry_interval = stored.expiry_interval;
            // What a durable broker restores came from its store.
            entry.persisted = self.durable.is_some();
            // A client connected when the broker stopped lost its network
            // connection then, without a DISCONNECT: its will is owed after
            // its Will Delay Interval, or when the session ends if that
            // comes first (MQTT 5 [MQTT-3.1.2-8]; 3.1.1 has no delay: at
            // once, its [MQTT-3.1.2-8]).
            let pending_will = stored.pending_will.or_else(|| {
                stored.lost_will.map(|will| {
                    let delay = will.properties.will_delay_interval.unwrap_or(0);
                    (will, now + Duration::from_secs(u64::from(delay)))
                })
            });
            entry.pending_will = pending_will.clone().map(Box::new);
            // It keeps ending when it would have, restart or not.
            entry.expires_at = stored.expires_at;
            let key = self.sessions.insert(entry);
            if let Some(d) = self.durable.as_mut() {
                // New message ids start above the restored ones.
                for tag in session.tags() {
                    d.message_ids_above(tag.get());
                }
            }
            let filters = self.subscriptions.restore(key, stored.subscriptions);
            if let Some(entry) = self.sessions.get_mut(key) {
                entry.offline = Some(Box::new(session));
            }
            // Restored state counts against the memory budget, never refused.
            for filter in filters {
                self.note_subscription(key, filter.as_bytes(), true);
            }
            self.note_session(key);
            if let Some((_, due)) = pending_will {
                self.timers.arm(due, Timer::Will(key));
            }
            if let Some(at) = stored.expires_at {
                self.timers.arm(at, Timer::SessionExpiry(key));
            }
            if stored.expires_at.is_none() {
                self.start_expiry(now, key);
            }
        }
    }

    pub(super) fn on_connect(&mut self, now: Instant, conn: ConnId, connect: Connect) {
        self.stats.connects_received += 1;
        if self.refuse_over_rate(now, conn, &connect) || self.refuse_client_id(now, conn, &connect)
        {
            return;
        }
        // A client resuming its session may connect (it drains what its
        // session holds); any other is refused.
        let resumes = !connect.clean_start
            && !connect.client_id.is_empty()
            && self.sessions.key_of(connect.client_id.as_bytes()).is_some();
        if !resumes && self.over_budget() {
            // The memory budget is spent: CONNACK 0x89 Server busy
            // (3.2.2.2); MQTT 3.1.1 gets return code 3, Server unavailable
            // (3.1.1 table 3.1), then the connection is closed.
            let code = ReasonCode::ServerBusy;
            if let Some(c) = self.conns.get_mut(conn.key()) {
                let _ = c.server.reject(now, code);
            }
            let client_id = super::compact(&connect.client_id);
            let what = super::Refusal::Connect;
            self.limit_refused_as(conn, client_id, super::Limit::Memory, what, code);
            return;
        }
        let will_over = connect
            .will
            .as_ref()
            .and_then(|w| self.topic_over(w.topic.as_bytes()));
        if let Some(limit) = will_over {
            // A will topic over `max_topic_length` or `max_topic_levels`
            // is refused now, while the client can be told, rather than
            // dropped when the will is due. MQTT 5: CONNACK 0x90 "the Will
            // Topic Name is not malformed, but is not accepted by this
            // Server" (3.2.2.2), then close [MQTT-3.2.2-7]. MQTT 3.1.1 has
            // no applicable return code: close without a CONNACK
            // (3.1.1 [MQTT-3.2.2-6]).
            let code = ReasonCode::TopicNameInvalid;
            if let Some(c) = self.conns.get_mut(conn.key()) {
                if connect.protocol.is_v5() {
                    let _ = c.server.reject(now, code);
                } else {
                    c.server.close(now, code);
                }
            }
            let client_id = super::compact(&connect.client_id);
            self.limit_refused_as(conn, client_id, limit, super::Refusal::Connect, code);
            return;
        }
        if connect.properties.authentication_method.is_some() {
            // MQTT 5 enhanced authentication: the exchange decides, then
            // `admit` (enhanced_auth.rs).
            self.start_connect_auth(now, conn, connect);
            return;
        }
        let identity = self.conns.get(conn.key()).and_then(|c| c.identity.clone());
        let decision = self
            .auth
            .authenticate(&connect, identity.as_ref().map(|i| i.as_str()));
        let username = identity.or_else(|| connect.username.as_ref().map(super::compact));
        match decision {
            AuthDecision::Accept => self.admit(now, conn, connect, username, None),
            AuthDecision::Reject(code) => self.reject(now, conn, &connect, code),
            // A slow check (a password hash) runs off the core's thread.
            AuthDecision::Check(check) => self.defer_connect(conn, connect, username, check),
        }
    }

    /// Lets an authenticated client in as `username`: take-over, session
    /// resumption or start, CONNACK (with `auth_data`, the final step of an
    /// enhanced authentication).
    pub(super) fn admit(
        &mut self,
        now: Instant,
        conn: ConnId,
        connect: Connect,
        username: Option<MqttString>,
        auth_data: Option<bytes::Bytes>,
    ) {
        // Clustered, a client this node holds no session for is claimed
        // from the cluster first (`handover.rs`); `admit_now` refuses it
        // if the broker is shutting down, then or after the claim.
        if !self.shutting_down && self.claims_first(&connect) {
            self.park_for_claim(conn, connect, username, auth_data);
        } else {
            self.admit_now(now, conn, connect, username, auth_data);
        }
    }

    /// [`admit`](Self::admit), with no claim to wait for.
    pub(super) fn admit_now(
        &mut self,
        now: Instant,
        conn: ConnId,
        connect: Connect,
        username: Option<MqttString>,
        auth_data: Option<bytes::Bytes>,
    ) {
        if self.shutting_down {
            self.reject(now, conn, &connect, ReasonCode::ServerUnavailable);
            return;
        }
        let version = connect.protocol;
        // Storage operations recorded before this CONNECT: any more (an
        // old session ended, this one stored) and the CONNACK waits for
        // them to be synced.
        let recorded = self.recorded();
        let assigned = connect.client_id.is_empty().then(|| {
            self.sessions
                .assign_client_id(&self.config.assigned_id_prefix)
        });
        // A copy: a slice of the CONNECT would keep the whole read buffer
        // alive for as long as the session lives.
        let client_id = assigned
            .clone()
            .unwrap_or_else(|| super::compact(&connect.client_id));

        // Take-over: the client's old connection is closed first [MQTT-3.1.4-3].
        if let Some(key) = self.sessions.key_of(client_id.as_bytes()) {
            if let Some(old) = self.sessions.conn_of(key) {
                if old != conn {
                    if let Some(c) = self.conns.get_mut(old.key()) {
                        c.server.close(now, ReasonCode::SessionTakenOver);
                    }
                    self.process_events(now, old);
                    self.mark_ready(old);
                }
            }
        }

        // Resume the offline session, or start a new one (closing the old
        // connection may have ended the old session).
        let existing = self.sessions.key_of(client_id.as_bytes());
        let (key, session, session_present) = match existing {
            Some(key) if !connect.clean_start => {
                let entry = self.sessions.get_mut(key).expect("indexed session exists");
                // A new connection before the Will Delay Interval: no will [MQTT-3.1.3-9].
                entry.pending_will = None;
                entry.expires_at = None;
                let session = entry.offline.take().map(|s| *s).unwrap_or_else(|| {
                    ServerSession::new(client_id.clone(), self.config.server.queue)
                });
                (key, session, true)
            }
            other => {
                if let Some(old) = other {
                    // Clean start: the old session ends now.
                    self.end_session(now, old);
                }
                let session = ServerSession::new(client_id.clone(), self.config.server.queue);
                let key = self.sessions.insert(SessionEntry::new(client_id.clone()));
                (key, session, false)
            }
        };
        let expiry_interval = tern_session::requested_session_expiry(&connect);
        let entry = self.sessions.get_mut(key).expect("session just set up");
        entry.conn = Some(conn);
        entry.username = username;
        entry.expiry_interval = expiry_interval;
        entry.protocol = version.level();
        if self.durable.is_some() {
            // A session that outlives its connection is stored (again: its
            // interval, user name or will may have changed); one that no
            // longer does, is not.
            let persist = super::sessions::outlives_connection(expiry_interval);
            let was = core::mem::replace(&mut entry.persisted, persist);
            let client_id = client_id.clone();
            if persist {
                self.record_session(key, connect.will.as_ref());
            } else if was {
                self.record(|| StoreOp::DeleteSession { client_id });
            }
        }
        let Some(c) = self.conns.get_mut(conn.key()) else {
            return;
        };
        c.session = Some(key);
        c.private_bridge = connect.bridge && !version.is_v5();
        let accepted = c.server.accept(
            now,
            Accept {
                session,
                session_present,
                assigned_client_id: assigned.filter(|_| version.is_v5()),
                properties: tern_codec::ConnAckProperties {
                    authentication_data: auth_data,
                    ..Default::default()
                },
            },
        );
        debug_assert!(accepted.is_ok(), "a CONNECT awaited a decision");
        self.gate_since(conn, recorded);
        self.stats.clients_connected += 1;
        self.stats.clients_maximum = self.stats.clients_maximum.max(self.stats.clients_connected);
        self.events.push_back(BrokerEvent::Connected {
            conn,
            client_id,
            version,
            session_present,
        });
    }

    /// Refuses a client identifier without the configured prefix
    /// ([`BrokerConfig::client_id_prefix`](crate::BrokerConfig)): CONNACK
    /// 0x85 (3.1.1: return code 2), then close [MQTT-3.1.3-8]. An empty
    /// identifier is judged by the one it would be assigned, as mosquitto
    /// does.
    fn refuse_client_id(&mut self, now: Instant, conn: ConnId, connect: &Connect) -> bool {
        let Some(prefix) = &self.config.client_id_prefix else {
            return false;
        };
        let id = if connect.client_id.is_empty() {
            self.config.assigned_id_prefix.as_bytes()
        } else {
            connect.client_id.as_bytes()
        };
        if id.starts_with(prefix.as_bytes()) {
            return false;
        }
        self.reject(now, conn, connect, ReasonCode::ClientIdentifierNotValid);
        true
    }

    pub(super) fn reject(
        &mut self,
        now: Instant,
        conn: ConnId,
        connect: &Connect,
        code: ReasonCode,
    ) {
        if let Some(c) = self.conns.get_mut(conn.key()) {
            let _ = c.server.reject(now, code);
        }
        self.events.push_back(BrokerEvent::Refused {
            conn,
            client_id: super::compact(&connect.client_id),
            what: super::Refusal::Connect,
            reason: code,
            limit: None,
        });
    }

    pub(super) fn on_closed(
        &mut self,
        now: Instant,
        conn: ConnId,
        reason: CloseReason,
        will: Option<Box<Will>>,
        session_expiry: u32,
    ) {
        let Some(c) = self.conns.get_mut(conn.key()) else {
            return;
        };
        c.closing = true;
        if matches!(
            &reason,
            CloseReason::ProtocolViolation(v)
                if v.reason_code() == ReasonCode::ReceiveMaximumExceeded
        ) {
            // The message over the client's quota is refused with it.
            self.stats.drops.quota += 1;
        }
        let session = c.server.take_session();
        let key = c.session.take();
        self.events.push_back(BrokerEvent::Close(conn));
        let client_id = key
            .and_then(|k| self.sessions.get(k))
            .map(|s| s.client_id.clone());
        self.events.push_back(BrokerEvent::Disconnected {
            conn,
            client_id,
            reason: reason.clone(),
        });
        let Some(key) = key else {
            return;
        };
        self.stats.clients_connected = self.stats.clients_connected.saturating_sub(1);
        // Wills are not published when the broker itself shuts down.
        let will = will.filter(|_| !self.shutting_down).map(|w| *w);
        let Some(entry) = self.sessions.get_mut(key) else {
            return;
        };
        entry.conn = None;
        // DISCONNECT may have changed it (MQTT 5 only).
        entry.expiry_interval = session_expiry;
        if !super::sessions::outlives_connection(session_expiry) {
            // The session ends with the connection: the will goes out now,
            // whatever its delay [MQTT-3.1.3-9].
            if let Some(will) = will {
                self.publish_will(now, Some(key), will);
            }
            self.end_session(now, key);
            return;
        }
        if let Some(session) = session {
            let subscriptions = self.subscriptions.of(key);
            self.store
                .put_session(&session, &subscriptions, session_expiry);
            if let Some(entry) = self.sessions.get_mut(key) {
                entry.offline = Some(Box::new(session));
            }
            self.note_session(key);
        }
        if let Some(will) = will {
            let delay = will.properties.will_delay_interval.unwrap_or(0);
            if delay == 0 {
                self.publish_will(now, Some(key), will);
            } else {
                let due = now + Duration::from_secs(u64::from(delay));
                if let Some(entry) = self.sessions.get_mut(key) {
                    entry.pending_will = Some(Box::new((will, due)));
                }
                self.timers.arm(due, Timer::Will(key));
            }
        }
        self.start_expiry(now, key);
        // Stored offline: its waiting will and its end, which count on
        // while the broker is down.
        self.record_session(key, None);
    }

    /// Records a stored session as it stands now: online, with its
    /// client's `will`; offline, with the will waiting for its delay and
    /// when the session ends. Nothing for a session that is not stored.
    fn record_session(&mut self, key: SessionKey, will: Option<&Will>) {
        let Some(e) = self.sessions.get(key).filter(|e| e.persisted) else {
            return;
        };
        let online = e.conn.is_some();
        let (will, will_due) = match (online, e.pending_will.as_deref()) {
            (true, _) => (will.cloned().map(Box::new), None),
            (false, Some((w, due))) => (Some(Box::new(w.clone())), Some(*due)),
            (false, None) => (None, None),
        };
        let op = StoreOp::PutSession {
            client_id: e.client_id.clone(),
            protocol: e.protocol,
            expiry_interval: e.expiry_interval,
            user_name: e.username.clone(),
            will,
            will_due,
            expires_at: e.expires_at.filter(|_| !online),
        };
        self.record(|| op);
    }

    /// Arms an offline session's expiry timer.
    fn start_expiry(&mut self, now: Instant, key: SessionKey) {
        if let Some(at) = self
            .sessions
            .get_mut(key)
            .and_then(|entry| entry.start_expiry(now))
        {
            self.timers.arm(at, Timer::SessionExpiry(key));
        }
    }

    pub(super) fn will_due(&mut self, now: Instant, key: SessionKey) {
        let Some(entry) = self.sessions.get_mut(key) else {
            return;
        };
        match entry.pending_will.take().map(|w| *w) {
            Some((will, due)) if due <= now => {
                self.publish_will(now, Some(key), will);
                // Published: a restart does not owe it again.
                self.record_session(key, None);
            }
            // Cancelled or re-armed since: put it back.
            other => entry.pending_will = other.map(Box::new),
        }
    }

    pub(super) fn session_expiry_due(&mut self, now: Instant, key: SessionKey) {
        if !self.sessions.get(key).is_some_and(|e| e.has_expired(now)) {
            return;
        }
        if let Some(entry) = self.sessions.get_mut(key) {
            // The will goes out when the session ends, if still pending.
            if let Some((will, _)) = entry.pending_will.take().map(|w| *w) {
                self.publish_will(now, Some(key), will);
            }
        }
        self.stats.sessions_expired += 1;
        self.end_session(now, key);
    }

    /// Removes a session and its subscriptions; publishes a pending will.
    pub(super) fn end_session(&mut self, now: Instant, key: SessionKey) {
        if let Some((will, _)) = self
            .sessions
            .get_mut(key)
            .and_then(|e| e.pending_will.take())
            .map(|w| *w)
        {
            self.publish_will(now, Some(key), will);
        }
        // A session with many subscriptions is removed in slices (`Timer::Sweep`).
        let was_sweeping = self.subscriptions.sweeping();
        if self.subscriptions.remove_session(key) && !was_sweeping {
            self.timers.arm(now, Timer::Sweep);
        }
        if let Some(entry) = self.sessions.remove(key) {
            self.forget_session_memory(&entry);
            self.store.remove_session(&entry.client_id);
            if entry.persisted {
                self.record(|| StoreOp::DeleteSession {
                    client_id: entry.client_id,
                });
            }
        }
    }

    /// Publishes a Will Message as if the client had published it.
    pub(super) fn publish_will(&mut self, now: Instant, from: Option<SessionKey>, will: Will) {
        // Checked as its client's own PUBLISH, when it goes out (mosquitto
        // does the same): the ACL may have changed since the CONNECT.
        if let Some(key) = from {
            let topic = tern_topic::TopicName::from_bytes(will.topic.as_shared_bytes().clone());
            if !topic
                .is_ok_and(|topic| self.authorized(key, &topic, super::security::Access::Write))
            {
                return;
            }
        }
        let p = will.properties;
        let publish = Publish {
            dup: false,
            qos: will.qos,
            retain: will.retain,
            topic: will.topic,
            packet_id: None,
            properties: tern_codec::PublishProperties {
                payload_format_indicator: p.payload_format_indicator,
                message_expiry_interval: p.message_expiry_interval,
                content_type: p.content_type,
                response_topic: p.response_topic,
                correlation_data: p.correlation_data,
                user_properties: p.user_properties,
                ..Default::default()
            }
            .into(),
            payload: will.payload,
        };
        self.publish_message(now, from, publish);
    }
}
