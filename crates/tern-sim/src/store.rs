//! A [`Store`] shared by successive broker instances, so a graceful broker
//! restart keeps sessions and retained messages.

use std::sync::{Arc, Mutex, PoisonError};
use tern_broker::{MemoryStore, RetainedMessage, Store, StoredState};
use tern_codec::{MqttString, Will};
use tern_session::{Instant, ServerSession};
use tern_topic::TopicName;

/// A [`MemoryStore`] behind a shared handle: the simulator keeps one and
/// hands a clone to each broker it starts.
#[derive(Debug, Clone, Default)]
pub struct SharedStore(Arc<Mutex<MemoryStore>>);

impl SharedStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut MemoryStore) -> R) -> R {
        let mut guard = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
    }
}

impl Store for SharedStore {
    fn put_retained(&mut self, topic: &TopicName, message: &RetainedMessage) {
        self.with(|s| s.put_retained(topic, message));
    }

    fn remove_retained(&mut self, topic: &TopicName) {
        self.with(|s| s.remove_retained(topic));
    }

    fn put_session(
        &mut self,
        session: &ServerSession,
        subscriptions: &[(MqttString, tern_broker::StoredSubscription)],
        expiry_interval: u32,
    ) {
        self.with(|s| s.put_session(session, subscriptions, expiry_interval));
    }

    fn remove_session(&mut self, client_id: &MqttString) {
        self.with(|s| s.remove_session(client_id));
    }

    fn put_offline_state(
        &mut self,
        client_id: &MqttString,
        expires_at: Option<Instant>,
        pending_will: Option<(&Will, Instant)>,
    ) {
        self.with(|s| s.put_offline_state(client_id, expires_at, pending_will));
    }

    fn load(&mut self) -> StoredState {
        self.with(|s| s.load())
    }
}
