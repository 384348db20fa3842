//! Where sessions and retained messages are kept beyond the broker's own
//! memory: the [`Store`] hook.

use crate::RetainedMessage;
use std::collections::BTreeMap;
use tern_codec::{MqttString, SubscriptionId, SubscriptionOptions, Will};
use tern_session::{Instant, ServerSession};
use tern_topic::TopicName;

/// Everything a store holds, for a broker that starts up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredState {
    /// Sessions that outlive their connections, as they stood when stored.
    pub sessions: Vec<StoredSession>,
    /// Retained messages by topic.
    pub retained: Vec<(TopicName, RetainedMessage)>,
}

/// A subscription as a store keeps it, by its filter's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredSubscription {
    /// The options (QoS is the granted QoS).
    pub options: SubscriptionOptions,
    /// The Subscription Identifier, if one was given.
    pub subscription_id: Option<SubscriptionId>,
}

/// A session's subscriptions as a store keeps them: filter text (with
/// `$share/{group}/` for a shared one) and options. The broker builds it
/// from its subscription tree, the one place subscriptions live, each
/// time it stores a session, and rebuilds the tree from it at start-up.
pub type StoredSubscriptions = Vec<(MqttString, StoredSubscription)>;

/// A session as a store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    /// The session.
    pub session: ServerSession,
    /// Its subscriptions.
    pub subscriptions: StoredSubscriptions,
    /// Its Session Expiry Interval in seconds (`u32::MAX`: never).
    pub expiry_interval: u32,
    /// When it ends, if known (it was offline when stored at shutdown);
    /// otherwise it ends its Session Expiry Interval after the broker starts.
    pub expires_at: Option<Instant>,
    /// A will waiting for its Will Delay Interval, and when it is due.
    pub pending_will: Option<(Will, Instant)>,
    /// The will of a client that was connected when the broker stopped
    /// (a durable store keeps it from the CONNECT): that connection ended
    /// without a DISCONNECT, so the will is owed after its delay.
    pub lost_will: Option<Will>,
    /// The user name its client last authenticated as.
    pub username: Option<MqttString>,
}

/// Persistence for sessions and retained messages.
///
/// The broker core keeps its working state in memory and tells the store
/// about changes: a retained message set or cleared, a session stored when
/// its client goes offline (and at shutdown), a session removed when it ends.
/// On start-up the broker loads what the store returns. The in-memory
/// [`MemoryStore`] survives a broker restart within one process (the
/// deterministic simulator uses that); a durable store slots in behind the
/// same trait.
pub trait Store: Send {
    /// A retained message was set or replaced.
    fn put_retained(&mut self, topic: &TopicName, message: &RetainedMessage);
    /// A retained message was cleared.
    fn remove_retained(&mut self, topic: &TopicName);
    /// A session outlives its connection; this is its state and its
    /// subscriptions now.
    fn put_session(
        &mut self,
        session: &ServerSession,
        subscriptions: &[(MqttString, StoredSubscription)],
        expiry_interval: u32,
    );
    /// A session ended.
    fn remove_session(&mut self, client_id: &MqttString);
    /// What an offline session's clock says, stored at shutdown after the
    /// session: when it ends (`None`: never) and the will it is waiting to
    /// publish, with when it is due. A store that keeps neither restarts
    /// the session's expiry when the broker starts and loses delayed wills.
    fn put_offline_state(
        &mut self,
        client_id: &MqttString,
        expires_at: Option<Instant>,
        pending_will: Option<(&Will, Instant)>,
    ) {
        let _ = (client_id, expires_at, pending_will);
    }
    /// Everything stored.
    fn load(&mut self) -> StoredState;
}

/// A [`Store`] in memory.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    sessions: BTreeMap<MqttString, StoredSession>,
    retained: BTreeMap<TopicName, RetainedMessage>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store holding `state` (what a durable store loaded), every field
    /// of each session kept.
    pub fn from_state(state: StoredState) -> Self {
        Self {
            sessions: state
                .sessions
                .into_iter()
                .map(|s| (s.session.client_id().clone(), s))
                .collect(),
            retained: state.retained.into_iter().collect(),
        }
    }
}

impl Store for MemoryStore {
    fn put_retained(&mut self, topic: &TopicName, message: &RetainedMessage) {
        self.retained.insert(topic.clone(), message.clone());
    }

    fn remove_retained(&mut self, topic: &TopicName) {
        self.retained.remove(topic);
    }

    fn put_session(
        &mut self,
        session: &ServerSession,
        subscriptions: &[(MqttString, StoredSubscription)],
        expiry_interval: u32,
    ) {
        self.sessions.insert(
            session.client_id().clone(),
            StoredSession {
                session: session.clone(),
                subscriptions: subscriptions.to_vec(),
                expiry_interval,
                expires_at: None,
                pending_will: None,
                lost_will: None,
                username: None,
            },
        );
    }

    fn put_offline_state(
        &mut self,
        client_id: &MqttString,
        expires_at: Option<Instant>,
        pending_will: Option<(&Will, Instant)>,
    ) {
        if let Some(stored) = self.sessions.get_mut(client_id) {
            stored.expires_at = expires_at;
            stored.pending_will = pending_will.map(|(w, due)| (w.clone(), due));
        }
    }

    fn remove_session(&mut self, client_id: &MqttString) {
        self.sessions.remove(client_id);
    }

    fn load(&mut self) -> StoredState {
        StoredState {
            sessions: self.sessions.values().cloned().collect(),
            retained: self
                .retained
                .iter()
                .map(|(t, m)| (t.clone(), m.clone()))
                .collect(),
        }
    }
}
