//! The broker's end of a cluster link (issue 18): two channels between the
//! core task and a transport task (tern-cluster's NATS link) that the core
//! knows nothing of.
//!
//! ```text
//!   core task ──ClusterOutput (interest: unbounded; messages: bounded, try_send)──▶ link task
//!   core task ◀──ClusterInput (bounded: a slow core slows the link)──────────────── link task
//! ```
//!
//! Interest changes are few (one per distinct filter's first or last
//! subscription) and must not be lost, so their channel is unbounded.
//! Messages are many: the core task never waits for the link, so a message
//! that finds the channel full is dropped and counted
//! ([`ClusterPeer::dropped`]); cross-node delivery is at most once in this
//! first cut anyway (see ARCHITECTURE.md, "Cluster").

use crate::ClusterOutput;
use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU64, Ordering},
};
use tern_codec::Publish;
use tokio::sync::mpsc;

/// Messages waiting for the link at most.
pub const CLUSTER_CAPACITY: usize = 16 * 1024;

/// What a link hands the core.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClusterInput {
    /// A message another node published.
    Publish(Publish),
    /// Node `node`'s interest in `filter` begins (`on`) or ends.
    Interest {
        /// The node.
        node: String,
        /// The filter.
        filter: String,
        /// Whether it begins.
        on: bool,
    },
    /// Node `node` is gone (left, or silent past its time): its interest goes.
    NodeGone(String),
    /// The answer to a [`ClusterOutput::Claim`]: the session the old owner
    /// handed over, if any.
    Claimed {
        /// The client identifier claimed.
        client_id: String,
        /// Its session, from the node that held it.
        session: Option<Box<crate::SessionHandover>>,
    },
    /// Another node claimed `client_id`: close its connection here and
    /// answer on `reply` with its session (if `keep` and it outlived the
    /// connection).
    Release {
        /// The client identifier.
        client_id: String,
        /// Hand the session over (otherwise it ends here).
        keep: bool,
        /// Where the session goes.
        reply: tokio::sync::oneshot::Sender<Option<Box<crate::SessionHandover>>>,
    },
    /// The link's connection to NATS came up (`true`) or went down.
    Connected(bool),
}

/// The core task's end.
#[derive(Debug)]
pub struct ClusterLink {
    pub(crate) interest: mpsc::UnboundedSender<ClusterOutput>,
    pub(crate) messages: mpsc::Sender<Publish>,
    pub(crate) input: mpsc::Receiver<ClusterInput>,
    pub(crate) dropped: Arc<AtomicU64>,
    pub(crate) counters: Arc<ClusterCounters>,
}

/// What the transport reports for `/metrics`: whether it is connected to
/// NATS, and the messages it carried each way. Atomics it bumps as it goes;
/// a scrape reads them without asking the core task.
#[derive(Debug, Default)]
pub struct ClusterCounters {
    /// Connected to a NATS server now.
    pub connected: AtomicBool,
    /// Messages published to the cluster.
    pub forwarded: AtomicU64,
    /// Messages from other nodes handed to this broker.
    pub received: AtomicU64,
}

/// The cluster's figures at one moment (see [`ClusterCounters`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterCounts {
    /// Connected to a NATS server.
    pub connected: bool,
    /// Messages published to the cluster.
    pub forwarded: u64,
    /// Messages from other nodes handed to this broker.
    pub received: u64,
    /// Messages dropped because the link's channel was full.
    pub dropped: u64,
}

/// Reads the link's figures (for the monitoring listener).
#[derive(Debug, Clone)]
pub(crate) struct ClusterReader {
    dropped: Arc<AtomicU64>,
    counters: Arc<ClusterCounters>,
}

impl ClusterReader {
    pub(crate) fn read(&self) -> ClusterCounts {
        let c = &self.counters;
        ClusterCounts {
            connected: c.connected.load(Ordering::Relaxed),
            forwarded: c.forwarded.load(Ordering::Relaxed),
            received: c.received.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

/// The transport's end.
#[derive(Debug)]
pub struct ClusterPeer {
    /// Interest changes of this node ([`ClusterOutput::Interest`]), in order.
    pub interest: mpsc::UnboundedReceiver<ClusterOutput>,
    /// Messages to publish to the cluster.
    pub messages: mpsc::Receiver<Publish>,
    /// Where to hand what the cluster says.
    pub input: mpsc::Sender<ClusterInput>,
    /// Messages the core dropped because `messages` was full.
    pub dropped: Arc<AtomicU64>,
    /// For the transport to keep up to date.
    pub counters: Arc<ClusterCounters>,
}

/// A new link: give the [`ClusterLink`] to [`start_clustered`](super::start_clustered)
/// and the [`ClusterPeer`] to the transport.
pub fn cluster_link() -> (ClusterLink, ClusterPeer) {
    let (interest_tx, interest_rx) = mpsc::unbounded_channel();
    let (messages_tx, messages_rx) = mpsc::channel(CLUSTER_CAPACITY);
    let (input_tx, input_rx) = mpsc::channel(CLUSTER_CAPACITY);
    let dropped = Arc::new(AtomicU64::new(0));
    let counters = Arc::new(ClusterCounters::default());
    (
        ClusterLink {
            interest: interest_tx,
            messages: messages_tx,
            input: input_rx,
            dropped: dropped.clone(),
            counters: counters.clone(),
        },
        ClusterPeer {
            interest: interest_rx,
            messages: messages_rx,
            input: input_tx,
            dropped,
            counters,
        },
    )
}

impl ClusterLink {
    /// What the monitoring listener reads.
    pub(crate) fn reader(&self) -> ClusterReader {
        ClusterReader {
            dropped: self.dropped.clone(),
            counters: self.counters.clone(),
        }
    }

    /// Hands one output to the link; never waits. Returns an output other
    /// than a message that the link can no longer take (it stopped).
    pub(crate) fn send(&self, out: ClusterOutput) -> Option<ClusterOutput> {
        match out {
            ClusterOutput::Publish(p) => {
                if self.messages.try_send(p).is_err() {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
                None
            }
            other => self.interest.send(other).err().map(|e| e.0),
        }
    }

    /// The next input, or never if the link has gone.
    pub(crate) async fn recv(link: &mut Option<Self>) -> ClusterInput {
        match link.as_mut() {
            Some(l) => match l.input.recv().await {
                Some(input) => input,
                None => {
                    tracing::warn!("the cluster link stopped");
                    *link = None;
                    std::future::pending().await
                }
            },
            None => std::future::pending().await,
        }
    }
}
