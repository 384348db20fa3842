//! Session ownership across nodes (issue 18): who owns each client
//! identifier, the claim a CONNECT makes, and the release that hands a
//! session over. The broker core decides what a session is; this module
//! only carries it.
//!
//! - The JetStream KV bucket `<PREFIX>_SESSIONS` maps each client
//!   identifier (its bytes in hex, as KV keys allow few characters) to the
//!   node that owns it. A claim sets it to this node by compare-and-set on
//!   the entry's revision, retried when another claim got in between, so
//!   of two nodes claiming at once one wins and the other then takes the
//!   session from it.
//! - The old owner, if it is alive (heard within three heartbeats), is
//!   asked on `<prefix>.s.<node>` with `[1: keep][client id]`; it answers
//!   with the session ([`crate::handover`]) or nothing. A dead owner is not
//!   asked: the claiming node goes on with a new session.
//! - Every claim is answered to the core, whatever fails (KV, NATS, a
//!   silent peer): a CONNECT never waits more than [`ASK_TIMEOUT`] for
//!   the old owner.

use crate::handover;
use async_nats::jetstream::kv;
use bytes::{BufMut, Bytes, BytesMut};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tern_broker::server::ClusterInput;
use tokio::sync::mpsc;

/// How long a claiming node waits for the old owner's answer.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// Client identifiers longer than this (in bytes) are not tracked in the
/// KV bucket (a key would be too long for NATS): their sessions stay on
/// the node they connect to.
pub const MAX_TRACKED_ID: usize = 1024;

/// What a claim needs of the link, cloned into its own task.
#[derive(Clone)]
pub(crate) struct Claims {
    pub(crate) client: async_nats::Client,
    pub(crate) kv: Option<kv::Store>,
    pub(crate) prefix: String,
    pub(crate) node_id: String,
    pub(crate) input: mpsc::Sender<ClusterInput>,
    pub(crate) stats: Arc<SessionStats>,
}

/// Session moves, counted.
#[derive(Debug, Default)]
pub struct SessionStats {
    /// Claims made (CONNECTs for an identifier this node held no session for).
    pub claims: AtomicU64,
    /// Claims that took a session from another live node.
    pub taken: AtomicU64,
    /// Claims whose old owner was gone: its session was not recovered.
    pub owner_gone: AtomicU64,
    /// Sessions handed to another node.
    pub released: AtomicU64,
    /// Claims or releases that failed on NATS (answered with no session).
    pub failed: AtomicU64,
}

/// The KV bucket, created if missing. `None` (with a warning) without
/// JetStream: sessions then stay on their node.
pub(crate) async fn bucket(
    client: &async_nats::Client,
    prefix: &str,
    replicas: usize,
) -> Option<kv::Store> {
    let js = async_nats::jetstream::new(client.clone());
    let name = format!("{}_SESSIONS", prefix.to_uppercase());
    if let Ok(store) = js.get_key_value(&name).await {
        return Some(store);
    }
    match js
        .create_key_value(kv::Config {
            bucket: name.clone(),
            history: 1,
            num_replicas: replicas,
            storage: async_nats::jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
    {
        Ok(store) => Some(store),
        Err(e) => {
            // Another node may have created it meanwhile; or the server
            // (nats-server 2.9) does not take this client's KV request: the
            // bucket is a stream, created as such.
            if let Ok(store) = js.get_key_value(&name).await {
                return Some(store);
            }
            let stream = async_nats::jetstream::stream::Config {
                name: format!("KV_{name}"),
                subjects: vec![format!("$KV.{name}.>")],
                max_messages_per_subject: 1,
                allow_rollup: true,
                deny_delete: true,
                allow_direct: true,
                discard: async_nats::jetstream::stream::DiscardPolicy::New,
                storage: async_nats::jetstream::stream::StorageType::File,
                num_replicas: replicas,
                ..Default::default()
            };
            match js.get_or_create_stream(stream).await {
                Ok(_) => {
                    if let Ok(store) = js.get_key_value(&name).await {
                        return Some(store);
                    }
                }
                Err(e) => tracing::warn!("cluster: stream KV_{name}: {e}"),
            }
            tracing::warn!(
                "cluster: no JetStream KV bucket {name} ({e}): sessions stay on the node they connect to"
            );
            None
        }
    }
}

/// A client identifier as a KV key.
fn key(client_id: &str) -> String {
    let mut k = String::with_capacity(2 + client_id.len() * 2);
    k.push_str("c_");
    for b in client_id.bytes() {
        let _ = write!(k, "{b:02x}");
    }
    k
}

impl Claims {
    /// Claims `client_id` for this node and answers the core with the
    /// session the old owner handed over, if any. `alive`: the peers heard
    /// from lately.
    pub(crate) async fn claim(self, client_id: String, clean_start: bool, alive: BTreeSet<String>) {
        self.stats.claims.fetch_add(1, Ordering::Relaxed);
        let started = std::time::Instant::now();
        let session = match self.take_ownership(&client_id).await {
            Ok(Some(old)) if alive.contains(&old) => {
                let s = self.ask(&old, &client_id, !clean_start).await;
                if s.is_some() {
                    self.stats.taken.fetch_add(1, Ordering::Relaxed);
                }
                s
            }
            Ok(Some(old)) => {
                self.stats.owner_gone.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "cluster: client {client_id:?} was last on node {old}, which is gone: its session there is not recovered"
                );
                None
            }
            Ok(None) => None,
            Err(why) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("cluster: cannot claim client {client_id:?}: {why}");
                None
            }
        };
        tracing::debug!(
            "cluster: claimed client {client_id:?} in {:?} (session {})",
            started.elapsed(),
            if session.is_some() {
                "handed over"
            } else {
                "new"
            }
        );
        let _ = self
            .input
            .send(ClusterInput::Claimed {
                client_id,
                session: session.map(Box::new),
            })
            .await;
    }

    /// Makes this node the owner; returns the previous owner (another node).
    async fn take_ownership(&self, client_id: &str) -> Result<Option<String>, String> {
        let Some(kv) = &self.kv else {
            return Ok(None);
        };
        if client_id.len() > MAX_TRACKED_ID {
            return Ok(None);
        }
        let key = key(client_id);
        let me = Bytes::from(self.node_id.clone().into_bytes());
        for _ in 0..8 {
            let entry = kv.entry(&key).await.map_err(|e| e.to_string())?;
            match entry {
                None => {
                    if kv.create(&key, me.clone()).await.is_ok() {
                        return Ok(None);
                    }
                }
                Some(e) => {
                    let old = (e.operation == kv::Operation::Put)
                        .then(|| String::from_utf8_lossy(&e.value).into_owned())
                        .filter(|old| *old != self.node_id);
                    if old.is_none() && e.operation == kv::Operation::Put {
                        // Already ours.
                        return Ok(None);
                    }
                    if kv.update(&key, me.clone(), e.revision).await.is_ok() {
                        return Ok(old);
                    }
                }
            }
        }
        Err("the owner kept changing".into())
    }

    /// Asks node `old` to release the session.
    async fn ask(
        &self,
        old: &str,
        client_id: &str,
        keep: bool,
    ) -> Option<tern_broker::SessionHandover> {
        let mut request = BytesMut::with_capacity(1 + client_id.len());
        request.put_u8(u8::from(keep));
        request.put_slice(client_id.as_bytes());
        let subject = format!("{}.s.{old}", self.prefix);
        let answer =
            tokio::time::timeout(ASK_TIMEOUT, self.client.request(subject, request.freeze())).await;
        let payload = match answer {
            Ok(Ok(m)) => m.payload,
            Ok(Err(e)) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("cluster: node {old} did not release client {client_id:?}: {e}");
                return None;
            }
            Err(_) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "cluster: node {old} did not release client {client_id:?} within {ASK_TIMEOUT:?}"
                );
                return None;
            }
        };
        if payload.is_empty() {
            return None;
        }
        match handover::decode(payload) {
            Ok(h) => Some(h),
            Err(e) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "cluster: node {old} sent client {client_id:?}'s session malformed: {e:?}"
                );
                None
            }
        }
    }

    /// Another node asks this one to release a session: the core closes
    /// the connection and gives up the session, which goes back as the
    /// answer (empty: none).
    pub(crate) async fn release(self, request: async_nats::Message) {
        let Some(reply) = request.reply.clone() else {
            return;
        };
        let p = request.payload;
        let (Some(&keep), Ok(client_id)) =
            (p.first(), std::str::from_utf8(p.get(1..).unwrap_or(&[])))
        else {
            return;
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let asked = ClusterInput::Release {
            client_id: client_id.to_string(),
            keep: keep == 1,
            reply: tx,
        };
        if self.input.send(asked).await.is_err() {
            return;
        }
        let session = rx.await.ok().flatten();
        let answer = match session {
            None => Bytes::new(),
            Some(mut h) => {
                self.stats.released.fetch_add(1, Ordering::Relaxed);
                let max = self.client.server_info().max_payload;
                let mut bytes = handover::encode(&h).unwrap_or_default();
                if bytes.len() > max {
                    // Over NATS's payload limit: the subscriptions go, the
                    // messages are lost (see ARCHITECTURE.md).
                    tracing::warn!(
                        "cluster: client {client_id:?}'s session is {} bytes, over NATS's {max}: handed over without its {} messages",
                        bytes.len(),
                        h.messages.len()
                    );
                    h.messages.clear();
                    bytes = handover::encode(&h).unwrap_or_default();
                }
                bytes
            }
        };
        if let Err(e) = self.client.publish(reply, answer).await {
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("cluster: cannot answer for client {client_id:?}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_what_nats_kv_allows() {
        assert_eq!(super::key("a.b *>"), "c_612e62202a3e");
        assert_eq!(super::key(""), "c_");
    }
}
