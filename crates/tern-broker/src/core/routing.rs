//! Messages: PUBLISH routing, retained messages, SUBSCRIBE and UNSUBSCRIBE.

use super::{
    Broker, ConnId, SessionKey, StoreOp, Subscription,
    auth::allowed,
    durable,
    limits::Limit,
    retained::{Applied, forwarded_properties},
    security::Access,
};
use std::sync::Arc;
use tern_codec::{MqttString, Publish, QoS, ReasonCode, RetainHandling, Subscribe, Unsubscribe};
use tern_session::{AckToken, Enqueued, Instant, MessageBody};
use tern_topic::{SubscriptionFilter, TopicName};

impl Broker {
    pub(super) fn on_publish(
        &mut self,
        now: Instant,
        conn: ConnId,
        mut publish: Publish,
        ack: Option<AckToken>,
    ) {
        self.stats.messages_received += 1;
        self.stats
            .publish_received
            .count(publish.qos, publish.payload.len());
        let Some((key, bridge, private_bridge)) = self
            .conns
            .get(conn.key())
            .and_then(|c| Some((c.session?, c.bridge, c.private_bridge)))
        else {
            return;
        };
        if private_bridge {
            // From a 3.x bridge (try_private), which carries no
            // properties: marked as bridged here, as a Tern bridge marks
            // what it forwards, so Tern bridges do not send it out again
            // (two brokers bridged both ways over 3.1.1 do not loop).
            if let Some(session) = self.sessions.get(key) {
                publish
                    .properties
                    .user_properties
                    .push(tern_codec::UserProperty {
                        key: MqttString::from_static(super::BRIDGED_PROPERTY),
                        value: session.client_id.clone(),
                    });
            }
        }
        if let Some(limit) = self.topic_over(publish.topic.as_bytes()) {
            let what = super::Refusal::Publish(super::compact(&publish.topic));
            self.refuse_deep_publish(now, conn, ack, limit, what);
            return;
        }
        if self.over_budget() {
            self.refuse_over_budget(now, conn, &publish, ack, Limit::Memory);
            return;
        }
        if self.client_over_share(key) {
            self.refuse_over_budget(now, conn, &publish, ack, Limit::ClientMemory);
            return;
        }
        // Storage operations recorded before this PUBLISH: any more after
        // it, and its acknowledgement waits for them to be synced.
        let recorded = self.durable.as_ref().map_or(0, |d| d.pending());
        // Kept for the log line of a refusal (shares the packet's bytes).
        let topic_name = publish.topic.clone();
        // The topic is validated once, here, and routed as validated.
        let reason = match TopicName::from_bytes(publish.topic.as_shared_bytes().clone()) {
            // `$SYS` belongs to the broker (and a bridge's state to the bridge).
            Ok(topic)
                if topic.as_bytes().starts_with(b"$SYS")
                    && !(bridge && topic.as_bytes().starts_with(b"$SYS/broker/connection/")) =>
            {
                ReasonCode::NotAuthorized
            }
            // Refused: MQTT 5 gets PUBACK/PUBREC 0x87; MQTT 3.x has no
            // failure code there, so it is acknowledged and dropped, as
            // mosquitto does (3.1.1 [MQTT-3.3.5-2]).
            Ok(topic) if !self.authorized(key, &topic, Access::Write) => ReasonCode::NotAuthorized,
            Ok(topic) => {
                self.top_topics.count(now, &publish.topic);
                self.backpressure.begin_publish();
                let (retain, qos) = (publish.retain, publish.qos);
                // A QoS 2 message from a stored session reaches no one
                // before its acceptance is synced (see `durable.rs`).
                let hold = qos == QoS::ExactlyOnce && self.stored_client_id(key).is_some();
                if let (true, Some(d)) = (hold, self.durable.as_mut()) {
                    d.collect_routed();
                }
                let routed = self.publish_to(now, Some(key), topic, publish);
                self.block_if_congested(now, conn);
                if routed.retained_over_limit {
                    // Delivered live, but not retained: too many retained
                    // messages or bytes. MQTT 5 PUBACK/PUBREC 0x97 Quota
                    // exceeded (3.4.2.1, 3.5.2.1); MQTT 3.1.1 has no failure
                    // code there and is acknowledged [MQTT-3.3.5-2].
                    let what = super::Refusal::Publish(super::compact(&topic_name));
                    self.limit_refused(conn, Limit::Retained, what, ReasonCode::QuotaExceeded);
                    ReasonCode::QuotaExceeded
                } else if routed.count == 0 && !routed.remote {
                    self.stats.drops.no_subscribers += 1;
                    ReasonCode::NoMatchingSubscribers
                } else if routed.taken == 0 && !routed.remote && !retain && qos != QoS::AtMostOnce {
                    // Every recipient's queue was full (messages or bytes):
                    // accepted by no one, so refused visibly rather than
                    // acknowledged and dropped: MQTT 5 PUBACK/PUBREC 0x97
                    // Quota exceeded. MQTT 3.1.1 has no failure code there
                    // and is acknowledged, as mosquitto does [MQTT-3.3.5-2].
                    let what = super::Refusal::Publish(super::compact(&topic_name));
                    self.limit_refused(conn, Limit::Queue, what, ReasonCode::QuotaExceeded);
                    ReasonCode::QuotaExceeded
                } else {
                    ReasonCode::Success
                }
            }
            Err(_) => ReasonCode::TopicNameInvalid,
        };
        if reason == ReasonCode::NotAuthorized {
            self.stats.drops.not_authorized += 1;
            self.refused(
                key,
                conn,
                super::Refusal::Publish(super::compact(&topic_name)),
                reason,
            );
        }
        if let Some(token) = ack.filter(|t| t.qos() == QoS::ExactlyOnce && reason.is_success()) {
            // Accepted QoS 2 state: a resend after a restart is not routed
            // again; the PUBREC waits for it.
            if let Some(client_id) = self.stored_client_id(key) {
                self.record(|| StoreOp::PutIncoming {
                    client_id,
                    packet_id: token.packet_id(),
                });
            }
        }
        // The connections that got it wait for the batch that records it.
        let routed_to = self
            .durable
            .as_mut()
            .map(|d| d.take_routed())
            .unwrap_or_default();
        if !routed_to.is_empty() && self.recorded() > recorded {
            if let Some(d) = self.durable.as_mut() {
                for to in routed_to {
                    if let Some(c) = self.conns.get_mut(to.key()) {
                        c.gate = Some(d.gate(to));
                    }
                }
            }
        }
        if let Some(token) = ack {
            let now_or_held = match self.durable.as_mut() {
                None => Some((token, reason)),
                Some(d) => {
                    let promises = d.pending() > recorded;
                    let v5 = self
                        .conns
                        .get(conn.key())
                        .is_some_and(|c| c.server.version().is_v5());
                    d.hold(conn, key, v5, token, reason, promises)
                }
            };
            if let Some((token, reason)) = now_or_held {
                if let Some(c) = self.conns.get_mut(conn.key()) {
                    let _ = c.server.ack(now, token, reason);
                }
            }
        }
    }

    /// A PUBLISH whose topic has more than `max_topic_levels` levels or
    /// `max_topic_length` bytes is refused, never routed nor retained. MQTT 5: QoS 1/2 get PUBACK/PUBREC
    /// 0x90 Topic Name invalid ("not accepted by this Server", 3.4.2.1,
    /// 3.5.2.1), QoS 0 is dropped (it has no acknowledgement). MQTT 3.1.1
    /// has no failure code in PUBACK: the connection is closed, as
    /// [MQTT-3.3.5-2] allows for a PUBLISH the Server does not accept (a
    /// positive acknowledgement would drop a QoS 1/2 message silently).
    fn refuse_deep_publish(
        &mut self,
        now: Instant,
        conn: ConnId,
        ack: Option<AckToken>,
        limit: Limit,
        what: super::Refusal,
    ) {
        let Some(c) = self.conns.get_mut(conn.key()) else {
            return;
        };
        let reason = if c.server.version().is_v5() {
            if let Some(token) = ack {
                let _ = c.server.ack(now, token, ReasonCode::TopicNameInvalid);
            }
            self.stats.messages_dropped += 1;
            ReasonCode::TopicNameInvalid
        } else {
            if let Some(token) = ack {
                c.server.drop_unanswered(token);
            }
            c.server.close(now, ReasonCode::TopicNameInvalid);
            ReasonCode::TopicNameInvalid
        };
        self.limit_refused(conn, limit, what, reason);
    }

    /// A PUBLISH while the memory budget, or its client's share of it, is
    /// spent (`memory.rs`, `limit`) is refused, neither routed nor retained.
    /// QoS 0 is dropped, counted and reported (it has no
    /// acknowledgement). MQTT 5 QoS 1/2 get PUBACK/PUBREC 0x97 Quota
    /// exceeded (3.4.2.1, 3.5.2.1). MQTT 3.1.1 has no failure code there:
    /// the connection is closed, as [MQTT-3.3.5-2] allows, so the message
    /// is never acknowledged and dropped (the client sends it again).
    fn refuse_over_budget(
        &mut self,
        now: Instant,
        conn: ConnId,
        publish: &Publish,
        ack: Option<AckToken>,
        limit: Limit,
    ) {
        self.stats.messages_dropped += 1;
        let Some(c) = self.conns.get_mut(conn.key()) else {
            return;
        };
        let code = ReasonCode::QuotaExceeded;
        // QoS 0 has nothing to answer, but is reported like the others (the
        // shell's refusal log thins a flood of them per connection).
        match ack {
            None => {}
            Some(token) if c.server.version().is_v5() => {
                let _ = c.server.ack(now, token, code);
            }
            Some(token) => {
                c.server.drop_unanswered(token);
                c.server.close(now, code);
            }
        }
        let what = super::Refusal::Publish(super::compact(&publish.topic));
        self.limit_refused(conn, limit, what, code);
    }

    /// Applies a message's retain flag and routes it; returns how many
    /// deliveries it made.
    pub(super) fn publish_message(
        &mut self,
        now: Instant,
        from: Option<SessionKey>,
        publish: Publish,
    ) -> usize {
        let Ok(topic) = TopicName::from_bytes(publish.topic.as_shared_bytes().clone()) else {
            return 0;
        };
        if self.topic_over(topic.as_bytes()).is_some() {
            // A will's topic over the limits (they were lowered since its
            // CONNECT was accepted): neither routed nor retained.
            self.stats.messages_dropped += 1;
            return 0;
        }
        self.publish_to(now, from, topic, publish).count
    }

    /// [`publish_message`](Self::publish_message) with the topic already
    /// validated (it is `publish.topic`): offered to the cluster (if any),
    /// then [`publish_local`](Self::publish_local).
    fn publish_to(
        &mut self,
        now: Instant,
        from: Option<SessionKey>,
        topic: TopicName,
        publish: Publish,
    ) -> Routed {
        let remote = self.offer_to_cluster(&topic, &publish);
        Routed {
            remote,
            ..self.publish_local(now, from, topic, publish)
        }
    }

    /// Applies a message's retain flag and routes it to this node's
    /// subscribers.
    pub(super) fn publish_local(
        &mut self,
        now: Instant,
        from: Option<SessionKey>,
        topic: TopicName,
        publish: Publish,
    ) -> Routed {
        let limits = self.config.retained;
        // At the memory budget nothing new is retained (a will, a message
        // from another node: a client's own PUBLISH is refused before
        // this); deleting one frees memory and goes ahead.
        // `$SYS` values are the broker's own, replaced in place.
        let over_budget = publish.retain
            && !publish.payload.is_empty()
            && !topic.as_bytes().starts_with(b"$SYS")
            && self.over_budget();
        // The publishing client owns what it retains (per-client limits).
        let owner = from
            .and_then(|k| self.sessions.get(k))
            .map(|e| &e.client_id);
        let applied = (publish.retain && !over_budget).then(|| match self.durable.as_deref_mut() {
            None => self
                .retained
                .apply(now, &topic, &publish, owner, limits, &mut *self.store),
            Some(log) => self.retained.apply(
                now,
                &topic,
                &publish,
                owner,
                limits,
                &mut durable::Recording {
                    inner: &mut *self.store,
                    log,
                },
            ),
        });
        let mut routed = self.route(now, from, &topic, &publish);
        routed.retained_over_limit = over_budget || applied == Some(Applied::OverLimit);
        routed
    }

    /// Delivers a message to every matching subscription: one delivery per
    /// client at the highest granted QoS with every Subscription Identifier
    /// [MQTT-3.3.4-2] [MQTT-3.3.4-3], and one member of each shared group.
    fn route(
        &mut self,
        now: Instant,
        from: Option<SessionKey>,
        topic: &TopicName,
        publish: &Publish,
    ) -> Routed {
        // Reused between messages: routing allocates nothing per message.
        let mut deliveries = std::mem::take(&mut self.deliveries);
        let (sessions, auth) = (&self.sessions, &mut self.auth);
        self.subscriptions.route(
            topic,
            from,
            publish.retain,
            &mut deliveries,
            |k| sessions.get(k).map(|s| s.conn.is_some()),
            |k| allowed(&mut **auth, sessions, k, topic, Access::Read),
        );
        let count = deliveries.len();
        if count == 0 {
            self.deliveries = deliveries;
            return Routed::default();
        }
        // A QoS 1/2 message to a stored session is stored: numbered here,
        // its body written with its first queue entry (a QoS 0 one only
        // for offline sessions under `queue_qos0`, numbered below).
        let tag = match self.durable.as_mut() {
            Some(d) if publish.qos != QoS::AtMostOnce => Some(d.message_id()),
            _ => None,
        };
        // One shared body for every recipient; each delivery is a few words.
        let body = Arc::new(MessageBody {
            topic: publish.topic.clone(),
            payload: publish.payload.clone(),
            properties: if publish.properties.is_allocated() {
                forwarded_properties(&publish.properties).into()
            } else {
                tern_codec::PublishPropertiesBox::new()
            },
            tag,
        });
        let mut taken = 0;
        let mut body_stored = false;
        // A QoS 0 delivery is stored only for an offline stored session
        // with `queue_qos0` on; any other goes with an untagged body (a
        // tagged one is reported on its way out, to delete its entry).
        let mut untagged: Option<Arc<MessageBody>> = None;
        let mut tagged_qos0: Option<Arc<MessageBody>> = None;
        for d in deliveries.drain(..) {
            let qos = publish.qos.min(d.qos);
            let stores_qos0 = qos == QoS::AtMostOnce
                && self.config.queue_qos0_offline
                && self
                    .sessions
                    .get(d.to)
                    .is_some_and(|e| e.persisted && e.conn.is_none());
            let delivered = match (qos, stores_qos0, body.tag) {
                (QoS::AtMostOnce, false, Some(_)) => untagged
                    .get_or_insert_with(|| {
                        Arc::new(MessageBody {
                            tag: None,
                            ..(*body).clone()
                        })
                    })
                    .clone(),
                (QoS::AtMostOnce, true, None) => match self.durable.as_mut() {
                    Some(dur) => tagged_qos0
                        .get_or_insert_with(|| {
                            let tag = Some(dur.message_id());
                            Arc::new(MessageBody {
                                tag,
                                ..(*body).clone()
                            })
                        })
                        .clone(),
                    None => body.clone(),
                },
                _ => body.clone(),
            };
            let tag = delivered.tag;
            let out = tern_session::Delivery {
                body: delivered.clone(),
                qos,
                retain: d.retain,
                packet_id: None,
                subscription_ids: d.subscription_ids,
            };
            let subscription_ids = if tag.is_some() {
                out.subscription_ids.clone()
            } else {
                Vec::new()
            };
            let took = self.deliver(now, d.to, out);
            taken += usize::from(took);
            if took {
                if let (Some(dur), Some(conn)) =
                    (self.durable.as_mut(), self.sessions.conn_of(d.to))
                {
                    dur.routed_to(conn);
                }
            }
            if let (true, Some(tag)) = (took, tag) {
                if let Some(client_id) = self.stored_client_id(d.to) {
                    if !core::mem::replace(&mut body_stored, true) {
                        let body = delivered;
                        let expires_at = publish
                            .properties
                            .message_expiry_interval
                            .map(|secs| now + core::time::Duration::from_secs(u64::from(secs)));
                        self.record(|| StoreOp::PutBody {
                            id: tag.get(),
                            body,
                            qos: publish.qos,
                            retain: publish.retain,
                            expires_at,
                        });
                    }
                    self.record(|| StoreOp::PutQueue {
                        client_id,
                        seq: tag.get(),
                        qos,
                        subscription_ids,
                    });
                }
            }
        }
        self.deliveries = deliveries;
        Routed {
            count,
            taken,
            remote: false,
            retained_over_limit: false,
        }
    }

    /// Tells the shell a client's request was refused (for its log).
    fn refused(&mut self, key: SessionKey, conn: ConnId, what: super::Refusal, reason: ReasonCode) {
        if let Some(entry) = self.sessions.get(key) {
            self.events.push_back(super::BrokerEvent::Refused {
                conn,
                client_id: entry.client_id.clone(),
                what,
                reason,
                limit: None,
            });
        }
    }

    /// Hands a message to a session: its connection's queue while online,
    /// its offline queue otherwise. `now` stamps it in the queue: its
    /// Message Expiry Interval counts from there. Whether the session took
    /// it (a QoS 0 message an offline session does not queue counts as
    /// taken: QoS 0 promises nothing more).
    pub(super) fn deliver(
        &mut self,
        now: Instant,
        to: SessionKey,
        message: tern_session::Delivery,
    ) -> bool {
        if message.qos == QoS::AtMostOnce && self.over_budget() {
            // At the memory budget QoS 0 is not queued: dropped, counted.
            self.stats.messages_dropped += 1;
            self.stats.drops.memory_limit += 1;
            return true;
        }
        if self.recipient_over_share(to) {
            // Its client holds its share of the memory: not queued, a full
            // queue's drop (QoS 0 promises nothing more; a QoS 1/2 message
            // nobody took is refused to its publisher).
            self.stats.messages_dropped += 1;
            self.stats.drops.queue_full += 1;
            return message.qos == QoS::AtMostOnce;
        }
        let Some(entry) = self.sessions.get_mut(to) else {
            return false;
        };
        let outcome = match entry.conn {
            Some(conn) => {
                let Some(c) = self.conns.get_mut(conn.key()) else {
                    return false;
                };
                let outcome = c.server.send(now, message).ok();
                let queue = c.server.session().map(|s| s.held());
                self.mark_ready(conn);
                if let Some((len, bytes)) = queue {
                    self.note_congestion(to, len, bytes);
                }
                outcome
            }
            None => {
                if message.qos == QoS::AtMostOnce && !self.config.queue_qos0_offline {
                    return true;
                }
                entry.offline.as_mut().map(|s| s.enqueue(now, message))
            }
        };
        self.note_session(to);
        match outcome {
            Some(Enqueued::Queued) => true,
            Some(Enqueued::QueuedDroppingOldest(old)) => {
                self.stats.messages_dropped += old.len() as u64;
                self.stats.drops.queue_full += old.len() as u64;
                if let Some(client_id) = self.stored_client_id(to) {
                    for m in &old {
                        if let Some(tag) = m.message.body.tag {
                            let client_id = client_id.clone();
                            self.record(|| StoreOp::DeleteQueue {
                                client_id,
                                seq: tag.get(),
                            });
                        }
                    }
                }
                true
            }
            Some(Enqueued::Rejected(_)) => {
                self.stats.messages_dropped += 1;
                self.stats.drops.queue_full += 1;
                false
            }
            None => {
                self.stats.messages_dropped += 1;
                false
            }
        }
    }

    pub(super) fn on_subscribe(&mut self, now: Instant, conn: ConnId, subscribe: Subscribe) {
        let Some(c) = self.conns.get(conn.key()) else {
            return;
        };
        let Some(key) = c.session else {
            return;
        };
        let v5 = c.server.version().is_v5();
        let private_bridge = c.private_bridge;
        let id = subscribe.properties.subscription_identifier;
        // A stored session's subscriptions are stored too, and its SUBACK
        // waits for them to be synced.
        let stored = self.stored_client_id(key);
        let recorded = self.recorded();
        let mut codes = Vec::with_capacity(subscribe.filters.len());
        let mut retained_for = Vec::new();
        for requested in &subscribe.filters {
            let parsed = match SubscriptionFilter::parse(requested.filter.as_shared_bytes().clone())
            {
                Ok(parsed) => parsed,
                Err(_) => {
                    codes.push(ReasonCode::TopicFilterInvalid);
                    continue;
                }
            };
            let shared = parsed.group().is_some();
            if shared && requested.options.no_local {
                // [MQTT-3.8.3-4]
                if let Some(c) = self.conns.get_mut(conn.key()) {
                    c.server.close(now, ReasonCode::ProtocolError);
                }
                return;
            }
            // How many `key` holds, and whether this one replaces one.
            let held = self.subscriptions.count_of(key);
            let replaces = self.subscriptions.has(key, &parsed);
            let code = if let Some(limit) = self.filter_over(requested.filter.as_bytes()) {
                // More than `max_topic_levels` or `max_topic_length`: 0x8F
                // "correctly formed but not allowed for this Client"
                // (3.9.3); 3.1.1 gets 0x80 [MQTT-3.9.3-2], below. Nothing
                // enters the tree.
                let what = super::Refusal::Subscribe(super::compact(&requested.filter));
                self.limit_refused(conn, limit, what, ReasonCode::TopicFilterInvalid);
                ReasonCode::TopicFilterInvalid
            } else if !replaces && held >= self.config.max_subscriptions {
                // A new subscription past `max_subscriptions`: 0x97 Quota
                // exceeded (3.9.3); a replaced one does not add.
                let what = super::Refusal::Subscribe(super::compact(&requested.filter));
                self.limit_refused(conn, Limit::Subscriptions, what, ReasonCode::QuotaExceeded);
                ReasonCode::QuotaExceeded
            } else if !replaces && self.over_budget() {
                // A new subscription at the memory budget: 0x97 Quota
                // exceeded (3.9.3); 3.1.1 gets 0x80 [MQTT-3.9.3-2], below.
                let what = super::Refusal::Subscribe(super::compact(&requested.filter));
                self.limit_refused(conn, Limit::Memory, what, ReasonCode::QuotaExceeded);
                ReasonCode::QuotaExceeded
            } else if !replaces && self.client_over_share(key) {
                // Its client holds its share of the memory: the same.
                let what = super::Refusal::Subscribe(super::compact(&requested.filter));
                self.limit_refused(conn, Limit::ClientMemory, what, ReasonCode::QuotaExceeded);
                ReasonCode::QuotaExceeded
            } else if shared && !self.config.server.shared_subscriptions {
                ReasonCode::SharedSubscriptionsNotSupported
            } else if parsed.filter().has_wildcards() && !self.config.server.wildcard_subscriptions
            {
                ReasonCode::WildcardSubscriptionsNotSupported
            } else if !self.sessions.get(key).is_some_and(|s| {
                let client = super::Client {
                    client_id: s.client_id.as_str(),
                    username: s.username.as_ref().map(|u| u.as_str()),
                };
                self.auth.authorize_subscribe(client, &parsed)
            }) {
                self.refused(
                    key,
                    conn,
                    super::Refusal::Subscribe(super::compact(&requested.filter)),
                    ReasonCode::NotAuthorized,
                );
                ReasonCode::NotAuthorized
            } else {
                let granted = requested.options.qos.min(self.config.server.maximum_qos);
                let mut options = tern_codec::SubscriptionOptions {
                    qos: granted,
                    ..requested.options
                };
                if private_bridge && !shared {
                    // mosquitto's try_private: a 3.x bridge gets neither its
                    // own messages back nor retain flags cleared.
                    options.no_local = true;
                    options.retain_as_published = true;
                }
                let existed = self.subscriptions.subscribe(
                    key,
                    &requested.filter,
                    &parsed,
                    Subscription { options, id },
                );
                if !existed {
                    self.note_subscription(key, requested.filter.as_bytes(), true);
                }
                if let Some(client_id) = &stored {
                    self.record(|| StoreOp::PutSubscription {
                        client_id: client_id.clone(),
                        filter: super::compact(&requested.filter),
                        options,
                        id,
                    });
                }
                // Retained messages on subscribe [MQTT-3.3.1-9] [MQTT-3.3.1-10]
                // [MQTT-3.3.1-11]; not for shared subscriptions.
                let send = match options.retain_handling {
                    RetainHandling::SendAtSubscribe => true,
                    RetainHandling::SendAtSubscribeIfNew => !existed,
                    RetainHandling::DoNotSend => false,
                };
                if send && !shared {
                    retained_for.push((parsed.filter().clone(), granted));
                }
                ReasonCode::granted(granted)
            };
            codes.push(code);
        }
        let codes = if v5 {
            codes
        } else {
            codes
                .into_iter()
                .map(|c| {
                    if c.is_error() {
                        ReasonCode::UnspecifiedError
                    } else {
                        c
                    }
                })
                .collect()
        };
        if let Some(c) = self.conns.get_mut(conn.key()) {
            let _ = c
                .server
                .suback(now, subscribe.packet_id, codes, Default::default());
        }
        self.gate_since(conn, recorded);
        for (filter, granted) in retained_for {
            let (sessions, auth) = (&self.sessions, &mut self.auth);
            // Expired messages it finds are removed, recorded when durable.
            let mut recording;
            let store: &mut dyn super::Store = match self.durable.as_deref_mut() {
                None => &mut *self.store,
                Some(log) => {
                    recording = durable::Recording {
                        inner: &mut *self.store,
                        log,
                    };
                    &mut recording
                }
            };
            let topics = self
                .retained
                .for_subscription(now, &filter, store, |topic| {
                    allowed(&mut **auth, sessions, key, topic, Access::Read)
                });
            // Not straight into the queue: into the connection's backlog,
            // which feeds the queue as it drains (`refill_retained`).
            if let Some(c) = self.conns.get_mut(conn.key()) {
                c.retained_backlog.push(now, granted, id, topics);
            }
            self.refill_retained(conn);
            self.mark_ready(conn);
        }
    }

    pub(super) fn on_unsubscribe(&mut self, now: Instant, conn: ConnId, unsubscribe: Unsubscribe) {
        let Some(key) = self.conns.get(conn.key()).and_then(|c| c.session) else {
            return;
        };
        let stored = self.stored_client_id(key);
        let recorded = self.recorded();
        let mut codes = Vec::with_capacity(unsubscribe.filters.len());
        for filter in &unsubscribe.filters {
            let code = match SubscriptionFilter::parse(filter.as_shared_bytes().clone()) {
                Ok(parsed) => {
                    if self.subscriptions.unsubscribe(key, filter, &parsed) {
                        self.note_subscription(key, filter.as_bytes(), false);
                        if let Some(client_id) = &stored {
                            self.record(|| StoreOp::DeleteSubscription {
                                client_id: client_id.clone(),
                                filter: super::compact(filter),
                            });
                        }
                        ReasonCode::Success
                    } else {
                        ReasonCode::NoSubscriptionExisted
                    }
                }
                Err(_) => ReasonCode::TopicFilterInvalid,
            };
            codes.push(code);
        }
        if let Some(c) = self.conns.get_mut(conn.key()) {
            let _ = c
                .server
                .unsuback(now, unsubscribe.packet_id, codes, Default::default());
        }
        self.gate_since(conn, recorded);
    }
}

impl Broker {
    /// The client identifier of a session kept in the durable store.
    pub(super) fn stored_client_id(&self, key: SessionKey) -> Option<tern_codec::MqttString> {
        self.sessions
            .get(key)
            .filter(|e| e.persisted)
            .map(|e| e.client_id.clone())
    }
}

/// What routing one message did: how many sessions it was routed to, and
/// how many of them took it (the others' queues were full), and whether it
/// went to other nodes.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Routed {
    count: usize,
    taken: usize,
    /// Whether it was handed out to the cluster too.
    remote: bool,
    /// It was to be retained, and was not: the retained limits.
    retained_over_limit: bool,
}
