//! Subscriptions: the tree every PUBLISH is matched against, the one place
//! that changes it, and the choice of recipients.
//!
//! Invariants:
//! - The tree is the one source of truth for who receives what: routing
//!   reads nothing else.
//! - A session's record of its subscriptions (filter text and options, in
//!   [`ServerSession::subscriptions`]) is what a [`Store`](super::Store)
//!   keeps and what a restarted broker rebuilds the tree from. It is
//!   written only here, in the same call that changes the tree, and the
//!   tree is built from it on restore; so both always hold the same
//!   subscriptions (checked after each change in debug builds).
//! - Matching reuses one buffer: choosing the recipients of a message
//!   allocates only for Subscription Identifiers.
//! - An ended session's subscriptions leave the tree in slices of at most
//!   [`SWEEP_SLICE`] (`dying`), so one client's many subscriptions never
//!   stop the broker for long. Until then routing skips them: their key
//!   names no session (keys are never reused), and a shared group's member
//!   is chosen among live sessions only.

use super::sessions::SessionKey;
use tern_codec::{MqttString, QoS, SubscriptionId};
use tern_session::{ServerSession, StoredSubscription};
use tern_topic::{DeliveryOptions, MatchBuffer, SubscriptionFilter, SubscriptionTree, TopicName};

/// Subscriptions of ended sessions removed per slice: at most
/// `max_topic_levels` tree nodes each, so a slice is a few milliseconds of
/// work at most.
pub(super) const SWEEP_SLICE: usize = 256;

/// A subscription as the tree stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Subscription {
    pub(crate) options: tern_codec::SubscriptionOptions,
    pub(crate) id: Option<SubscriptionId>,
}

impl DeliveryOptions for Subscription {
    type Qos = QoS;
    fn granted_qos(&self) -> QoS {
        self.options.qos
    }
    fn subscription_identifier(&self) -> Option<u32> {
        self.id.map(SubscriptionId::get)
    }
}

/// One delivery decided by routing.
#[derive(Debug)]
pub(super) struct Delivery {
    /// The receiving session.
    pub(super) to: SessionKey,
    /// The highest QoS its matching subscriptions granted.
    pub(super) qos: QoS,
    /// The RETAIN flag it gets.
    pub(super) retain: bool,
    /// Every matching subscription's identifier.
    pub(super) subscription_ids: Vec<SubscriptionId>,
}

/// Every session's subscriptions.
#[derive(Debug, Default)]
pub(super) struct Subscriptions {
    tree: SubscriptionTree<SessionKey, Subscription>,
    match_buf: MatchBuffer,
    /// Distinct filters counted for a cluster, when there is one (see
    /// `cluster.rs`): changed here, with the tree.
    pub(super) interest: Option<super::cluster::LocalInterest>,
    /// Ended sessions whose subscriptions are still being removed, oldest
    /// first.
    dying: std::collections::VecDeque<SessionKey>,
}

impl Subscriptions {
    /// How many subscriptions there are (a shared one counts once per member).
    pub(super) fn len(&self) -> usize {
        self.tree.len()
    }

    /// `key` subscribes to `filter` (`parsed`) with `subscription`, noted in
    /// its session's `record` too; returns whether it replaced one.
    pub(super) fn subscribe(
        &mut self,
        key: SessionKey,
        record: &mut ServerSession,
        filter: &MqttString,
        parsed: &SubscriptionFilter,
        subscription: Subscription,
    ) -> bool {
        let existed = self.tree.insert(key, parsed, subscription).is_some();
        if let Some(interest) = self.interest.as_mut() {
            interest.add(key, filter, parsed);
        }
        record.add_subscription(
            // Not a slice of the SUBSCRIBE's read buffer (see `compact`).
            super::compact(filter),
            StoredSubscription {
                options: subscription.options,
                subscription_id: subscription.id,
            },
        );
        self.check(key, record);
        existed
    }

    /// `key` unsubscribes from `filter` (`parsed`), in its session's
    /// `record` too; returns whether it had that subscription.
    pub(super) fn unsubscribe(
        &mut self,
        key: SessionKey,
        record: &mut ServerSession,
        filter: &MqttString,
        parsed: &SubscriptionFilter,
    ) -> bool {
        let existed = self.tree.remove(&key, parsed).is_some();
        if let Some(interest) = self.interest.as_mut() {
            interest.remove(key, filter);
        }
        record.remove_subscription(filter.as_bytes());
        self.check(key, record);
        existed
    }

    /// Rebuilds a restored session's subscriptions from its record; a
    /// filter that no longer parses is dropped from the record.
    pub(super) fn restore(&mut self, key: SessionKey, record: &mut ServerSession) {
        let mut invalid = Vec::new();
        for (filter, s) in record.subscriptions() {
            match SubscriptionFilter::parse(filter.as_shared_bytes().clone()) {
                Ok(parsed) => {
                    if let Some(interest) = self.interest.as_mut() {
                        interest.add(key, filter, &parsed);
                    }
                    self.tree.insert(
                        key,
                        &parsed,
                        Subscription {
                            options: s.options,
                            id: s.subscription_id,
                        },
                    );
                }
                Err(_) => invalid.push(filter.clone()),
            }
        }
        for filter in invalid {
            record.remove_subscription(filter.as_bytes());
        }
        self.check(key, record);
    }

    /// A session ended: all its subscriptions go (its record goes with
    /// it), the first [`SWEEP_SLICE`] now and the rest by
    /// [`sweep`](Self::sweep); `true` if some are left for it.
    pub(super) fn remove_session(&mut self, key: SessionKey) -> bool {
        if let Some(interest) = self.interest.as_mut() {
            interest.remove_session(key);
        }
        self.dying.push_back(key);
        self.sweep()
    }

    /// Whether ended sessions' subscriptions are still being removed.
    pub(super) fn sweeping(&self) -> bool {
        !self.dying.is_empty()
    }

    /// Removes up to [`SWEEP_SLICE`] subscriptions of ended sessions;
    /// `true` if some are left.
    pub(super) fn sweep(&mut self) -> bool {
        let mut budget = SWEEP_SLICE;
        while let Some(&key) = self.dying.front() {
            let (removed, done) = self.tree.remove_client_some(&key, budget);
            budget -= removed;
            if done {
                self.dying.pop_front();
            }
            if budget == 0 {
                break;
            }
        }
        if self.dying.is_empty() && self.dying.capacity() > 16 {
            self.dying = Default::default();
        }
        !self.dying.is_empty()
    }

    /// The tree and the record hold as many subscriptions (debug builds).
    fn check(&self, key: SessionKey, record: &ServerSession) {
        debug_assert_eq!(
            self.tree.client_len(&key),
            record.subscriptions().len(),
            "a session's subscriptions and the tree disagree"
        );
    }

    /// Chooses a message's recipients into `out`: one delivery per session
    /// at the highest granted QoS with every Subscription Identifier
    /// [MQTT-3.3.4-2] [MQTT-3.3.4-3], and one member of each shared group
    /// (round robin among the online, or any live one if none is: `online`
    /// is `None` for a key whose session ended). `from` is the
    /// publishing session (for No Local), `retain` the message's RETAIN
    /// flag; `allowed` says whether a session may receive it.
    pub(super) fn route(
        &mut self,
        topic: &TopicName,
        from: Option<SessionKey>,
        retain: bool,
        out: &mut Vec<Delivery>,
        online: impl Fn(SessionKey) -> Option<bool>,
        mut allowed: impl FnMut(SessionKey) -> bool,
    ) {
        let mut matches = self.tree.matches(topic, &mut self.match_buf);
        for client in matches.per_client() {
            let to = *client.key();
            let own = Some(to) == from;
            let mut qos = None;
            let mut retain_as_published = false;
            let mut subscription_ids = Vec::new();
            for s in client.values() {
                // No Local: not back to the publisher [MQTT-3.8.3-3].
                if own && s.options.no_local {
                    continue;
                }
                qos = qos.max(Some(s.options.qos));
                retain_as_published |= s.options.retain_as_published;
                subscription_ids.extend(s.id);
            }
            if let Some(qos) = qos {
                if !allowed(to) {
                    continue;
                }
                out.push(Delivery {
                    to,
                    qos,
                    // [MQTT-3.3.1-12] [MQTT-3.3.1-13]
                    retain: retain_as_published && retain,
                    subscription_ids,
                });
            }
        }
        let groups: Vec<_> = self.match_buf.shared_groups().collect();
        for group in groups {
            // Round robin among online members; with none online, queue for one.
            let chosen = match self
                .tree
                .select_round_robin(group, |k, _| online(*k) == Some(true))
            {
                Some((k, s)) => Some((*k, *s)),
                // Not an ended session whose subscriptions wait for the sweep.
                None => self
                    .tree
                    .select_round_robin(group, |k, _| online(*k).is_some())
                    .map(|(k, s)| (*k, *s)),
            };
            if let Some((to, s)) = chosen {
                if !allowed(to) {
                    continue;
                }
                out.push(Delivery {
                    to,
                    qos: s.options.qos,
                    retain: s.options.retain_as_published && retain,
                    subscription_ids: s.id.into_iter().collect(),
                });
            }
        }
    }
}
