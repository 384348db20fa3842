//! The storage thread: applies submitted batches of [`Op`]s, one
//! transaction and (under [`Sync::Always`]) one fsync for everything that
//! is waiting (group commit), and reports completion by sequence number.
//!
//! Why a thread and not a tokio task: a commit blocks in `fsync` for
//! milliseconds, and while it does, the next batch gathers in the channel;
//! the broker's core task never waits for the disk, it only holds back the
//! acknowledgements a batch covers until [`Synced`] comes back.

use crate::db::{Db, Op, StoreError};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a completion promises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    /// Every batch is fsynced before it is reported: a reported batch
    /// survives a crash of the process or the machine.
    Always,
    /// Batches are reported once written (they survive the process being
    /// killed, not a crash of the machine or a power cut); an fsync runs at
    /// most this often, so a machine crash loses at most this window.
    Interval(Duration),
}

/// A completion: every batch submitted with a sequence number up to and
/// including `seq` is applied (and durable as [`Sync`] promises).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Synced {
    /// The highest sequence number covered.
    pub seq: u64,
}

enum Msg {
    Batch(u64, Vec<Op>),
    Close,
}

/// The handle to a running storage thread.
#[derive(Debug)]
pub struct Storage {
    tx: mpsc::Sender<Msg>,
    thread: Option<JoinHandle<()>>,
}

/// Runs a database call; a panic inside redb (it asserts on some storage
/// failures) becomes an error, so the thread reports it instead of dying
/// silently with acknowledgements held forever.
fn guarded(f: impl FnOnce() -> Result<(), StoreError>) -> Result<(), StoreError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| {
        Err(StoreError::Db(
            "the database panicked (storage failure)".into(),
        ))
    })
}

/// Most batches folded into one commit.
const MAX_GROUP: usize = 4096;

impl Storage {
    /// Starts the storage thread over `db`. `on_synced` is called on that
    /// thread after each commit, in sequence order; on a failed commit it
    /// gets the error and the thread stops (nothing later is reported, so
    /// nothing later is acknowledged).
    pub fn spawn(
        db: Db,
        sync: Sync,
        mut on_synced: impl FnMut(Result<Synced, StoreError>) + Send + 'static,
    ) -> Self {
        let (tx, rx) = mpsc::channel::<Msg>();
        let thread = std::thread::Builder::new()
            .name("tern-store".into())
            .spawn(move || {
                let mut last_sync = Instant::now();
                let mut dirty = false;
                loop {
                    let first = match sync {
                        Sync::Always => rx.recv().ok(),
                        Sync::Interval(every) => {
                            let wait = every.saturating_sub(last_sync.elapsed());
                            match rx.recv_timeout(wait) {
                                Ok(m) => Some(m),
                                Err(mpsc::RecvTimeoutError::Timeout) => {
                                    if dirty {
                                        if let Err(e) = guarded(|| db.sync()) {
                                            on_synced(Err(e));
                                            return;
                                        }
                                        dirty = false;
                                    }
                                    last_sync = Instant::now();
                                    continue;
                                }
                                Err(mpsc::RecvTimeoutError::Disconnected) => None,
                            }
                        }
                    };
                    let Some(first) = first else { break };
                    // Group commit: everything already waiting joins.
                    let mut ops = Vec::new();
                    let mut seq = None;
                    let mut close = false;
                    let mut next = Some(first);
                    let mut n = 0;
                    while let Some(m) = next {
                        match m {
                            Msg::Batch(s, mut o) => {
                                ops.append(&mut o);
                                seq = Some(s);
                            }
                            Msg::Close => {
                                close = true;
                                break;
                            }
                        }
                        n += 1;
                        next = if n < MAX_GROUP {
                            rx.try_recv().ok()
                        } else {
                            None
                        };
                    }
                    if let Some(seq) = seq {
                        let durable = match sync {
                            Sync::Always => true,
                            Sync::Interval(every) => close || last_sync.elapsed() >= every,
                        };
                        match guarded(|| db.apply(&ops, durable)) {
                            Ok(()) => {
                                if durable {
                                    last_sync = Instant::now();
                                    dirty = false;
                                } else {
                                    dirty = true;
                                }
                                on_synced(Ok(Synced { seq }));
                            }
                            Err(e) => {
                                on_synced(Err(e));
                                return;
                            }
                        }
                    }
                    if close {
                        break;
                    }
                }
                if dirty {
                    let _ = guarded(|| db.sync());
                }
            })
            .map_err(|e| tracing::error!("cannot start the storage thread: {e}"))
            .ok();
        Self { tx, thread }
    }

    /// Hands a batch to the thread. Sequence numbers must increase.
    pub fn submit(&self, seq: u64, ops: Vec<Op>) {
        let _ = self.tx.send(Msg::Batch(seq, ops));
    }

    /// Commits what is pending, syncs, and stops the thread.
    pub fn close(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.tx.send(Msg::Close);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        self.stop();
    }
}
