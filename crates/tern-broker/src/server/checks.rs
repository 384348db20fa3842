//! Runs the core's password checks ([`Broker::poll_auth_check`]) off the
//! core task: each on tokio's blocking pool, at most `workers` at once (a
//! storm of CONNECTs queues here instead of taking every core from the
//! routing task), first come first served. Outcomes come back to the core
//! task on a channel it selects on.
//!
//! [`Broker::poll_auth_check`]: crate::Broker::poll_auth_check

use crate::{ConnId, PendingCheck};
use std::sync::Arc;
use tern_codec::ReasonCode;
use tokio::sync::{Semaphore, mpsc};

/// A check's outcome, for [`crate::Broker::handle_auth_checked`].
pub(crate) type Checked = (ConnId, Result<(), ReasonCode>);

/// Hands checks to worker threads.
#[derive(Debug, Clone)]
pub(crate) struct Checker {
    permits: Arc<Semaphore>,
    done: mpsc::UnboundedSender<Checked>,
}

/// How many checks run at once: all cores but the one the core task needs,
/// and at least one.
pub(crate) fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get().saturating_sub(1))
        .max(1)
}

impl Checker {
    /// A checker running at most `workers` checks at once, and where their
    /// outcomes arrive. The channel holds at most one outcome per
    /// connection waiting for a check.
    pub(crate) fn new(workers: usize) -> (Self, mpsc::UnboundedReceiver<Checked>) {
        let (done, rx) = mpsc::unbounded_channel();
        let checker = Self {
            permits: Arc::new(Semaphore::new(workers)),
            done,
        };
        (checker, rx)
    }

    /// Runs a check when a worker is free.
    pub(crate) fn run(&self, pending: PendingCheck) {
        let permits = Arc::clone(&self.permits);
        let done = self.done.clone();
        tokio::spawn(async move {
            let Ok(_permit) = permits.acquire_owned().await else {
                return;
            };
            let PendingCheck { conn, check } = pending;
            let outcome = tokio::task::spawn_blocking(move || check.run())
                .await
                // A check that panicked refuses the client.
                .unwrap_or(Err(ReasonCode::UnspecifiedError));
            let _ = done.send((conn, outcome));
        });
    }
}
