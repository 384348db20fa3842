//! Subscriptions: the tree every PUBLISH is matched against, the one place
//! that changes it, and the choice of recipients.
//!
//! Invariants:
//! - The tree is the one source of truth for who receives what: routing
//!   reads nothing else.
//! - The tree is also the only record of a session's subscriptions: what a
//!   [`Store`](super::Store) keeps is listed from the tree's per-session
//!   index ([`of`](Subscriptions::of)) when the session is stored, and a
//!   restarted broker rebuilds the tree from that list
//!   ([`restore`](Subscriptions::restore)). The session itself
//!   ([`ServerSession`](tern_session::ServerSession)) holds none, so there
//!   is no second copy to keep in step.
//! - Matching reuses one buffer: choosing the recipients of a message
//!   allocates only for Subscription Identifiers.
//! - An ended session's subscriptions leave the tree in slices of at most
//!   [`SWEEP_SLICE`] (`dying`), so one client's many subscriptions never
//!   stop the broker for long. Until then routing skips them: their key
//!   names no session (keys are never reused), and a shared group's member
//!   is chosen among live sessions only.

use super::sessions::SessionKey;
use super::store::{StoredSubscription, StoredSubscriptions};
use tern_codec::{MqttString, QoS, SubscriptionId};
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

    /// `key` subscribes to `filter` (`parsed`) with `subscription`; returns
    /// whether it replaced one.
    pub(super) fn subscribe(
        &mut self,
        key: SessionKey,
        filter: &MqttString,
        parsed: &SubscriptionFilter,
        subscription: Subscription,
    ) -> bool {
        let existed = self.tree.insert(key, parsed, subscription).is_some();
        if let Some(interest) = self.interest.as_mut() {
            interest.add(key, filter, parsed);
        }
        existed
    }

    /// `key` unsubscribes from `filter` (`parsed`); returns whether it had
    /// that subscription.
    pub(super) fn unsubscribe(
        &mut self,
        key: SessionKey,
        filter: &MqttString,
        parsed: &SubscriptionFilter,
    ) -> bool {
        let existed = self.tree.remove(&key, parsed).is_some();
        if let Some(interest) = self.interest.as_mut() {
            interest.remove(key, filter);
        }
        existed
    }

    /// How many subscriptions `key` has.
    pub(super) fn count_of(&self, key: SessionKey) -> usize {
        self.tree.client_len(&key)
    }

    /// Whether `key` has a subscription to `parsed`.
    pub(super) fn has(&self, key: SessionKey, parsed: &SubscriptionFilter) -> bool {
        self.tree.get(&key, parsed).is_some()
    }

    /// What `key`'s subscriptions count against the memory budget, summed
    /// from the tree (see [`Broker::memory_recount`](super::Broker::memory_recount)).
    pub(super) fn bytes_of(&self, key: SessionKey) -> usize {
        self.tree
            .client_subscriptions(&key)
            .map(|(filter, _)| super::memory::subscription_bytes(&filter))
            .sum()
    }

    /// `key`'s subscriptions as a store keeps them, listed from the tree.
    pub(super) fn of(&self, key: SessionKey) -> StoredSubscriptions {
        self.tree
            .client_subscriptions(&key)
            .filter_map(|(filter, s)| {
                let filter = MqttString::from_utf8(filter).ok()?;
                let stored = StoredSubscription {
                    options: s.options,
                    subscription_id: s.id,
                };
                Some((filter, stored))
            })
            .collect()
    }

    /// Rebuilds a restored session's subscriptions from what its store
    /// kept; returns the filters that entered the tree (one that no longer
    /// parses is dropped).
    pub(super) fn restore(
        &mut self,
        key: SessionKey,
        stored: StoredSubscriptions,
    ) -> Vec<MqttString> {
        let mut restored = Vec::with_capacity(stored.len());
        for (filter, s) in stored {
            let Ok(parsed) = SubscriptionFilter::parse(filter.as_shared_bytes().clone()) else {
                continue;
            };
            let subscription = Subscription {
                options: s.options,
                id: s.subscription_id,
            };
            if self.tree.insert(key, &parsed, subscription).is_none() {
                if let Some(interest) = self.interest.as_mut() {
                    interest.add(key, &filter, &parsed);
                }
                restored.push(filter);
            }
        }
        restored
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
