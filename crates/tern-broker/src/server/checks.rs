//! Runs the core's password checks ([`Broker::poll_auth_check`]) off the
//! core task: on `workers` threads of their own, first come first served (a
//! storm of CONNECTs queues here instead of taking every core from the
//! routing task). The threads run at a lower scheduling priority (`[security]
//! check_threads_nice`, by default 10, on Linux): when hashing and routing want the same core,
//! routing wins, so a storm of slow hashes (argon2id, tens of
//! milliseconds each) delays the CONNACKs it causes rather than other
//! clients' messages. Outcomes come back to the core task on a channel it
//! selects on.
//!
//! [`Broker::poll_auth_check`]: crate::Broker::poll_auth_check

use crate::{ConnId, PendingCheck};
use std::sync::{Arc, Mutex, mpsc as std_mpsc};
use tern_codec::ReasonCode;
use tokio::sync::mpsc;

/// A check's outcome, for [`crate::Broker::handle_auth_checked`].
pub(crate) type Checked = (ConnId, Result<(), ReasonCode>);

/// Hands checks to the check threads; they end when it is dropped.
#[derive(Debug, Clone)]
pub(crate) struct Checker {
    queue: std_mpsc::Sender<PendingCheck>,
}

/// How many checks run at once: all cores but the one the core task needs,
/// and at least one.
pub(crate) fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get().saturating_sub(1))
        .max(1)
}

impl Checker {
    /// A checker running at most `workers` checks at once (on as many
    /// threads, started now, each at nice value `nice`), and where their
    /// outcomes arrive. The channel holds at most one outcome per
    /// connection waiting for a check.
    pub(crate) fn new(workers: usize, nice: i32) -> (Self, mpsc::UnboundedReceiver<Checked>) {
        let (done, rx) = mpsc::unbounded_channel();
        let (queue, pending) = std_mpsc::channel::<PendingCheck>();
        let pending = Arc::new(Mutex::new(pending));
        for i in 0..workers {
            let (pending, done) = (pending.clone(), done.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("tern-check-{i}"))
                .spawn(move || work(&pending, &done, nice));
            if let Err(e) = spawned {
                tracing::error!("cannot start a password check thread: {e}");
            }
        }
        (Self { queue }, rx)
    }

    /// Queues a check for the next free thread.
    pub(crate) fn run(&self, pending: PendingCheck) {
        if let Err(std_mpsc::SendError(pending)) = self.queue.send(pending) {
            // No thread is left to run it: refuse rather than hang.
            tracing::error!("no password check thread: refusing the client");
            let _ = pending;
        }
    }
}

/// A check thread: lowers its priority, then runs checks until the
/// [`Checker`] is gone or the core stops listening.
fn work(
    pending: &Mutex<std_mpsc::Receiver<PendingCheck>>,
    done: &mpsc::UnboundedSender<Checked>,
    nice: i32,
) {
    lower_priority(nice);
    loop {
        let next = pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .recv();
        let Ok(PendingCheck { conn, check }) = next else {
            return;
        };
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check.run()))
            // A check that panicked refuses the client.
            .unwrap_or(Err(ReasonCode::UnspecifiedError));
        if done.send((conn, outcome)).is_err() {
            return;
        }
    }
}

/// Sets this thread's nice value to `nice` (Linux: nice is per thread);
/// elsewhere, or if refused, it keeps the process's priority.
fn lower_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), nice) {
        tracing::warn!("cannot set the check thread's nice value to {nice}: {e}");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}
