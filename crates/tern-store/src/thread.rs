//! The storage thread: takes submitted batches of [`Op`]s, and for
//! everything that is waiting (group commit, no cap) appends one record to
//! the write-ahead log and (under [`Sync::Always`]) syncs it once, then
//! reports completion by sequence number. redb gets what the log holds at
//! checkpoints (every 8 MiB of log, at a 1 s pause and at close), minus
//! the writes that were deleted again meanwhile (see `wal.rs`). A store
//! without a log (simulated backends) commits each group to redb.
//!
//! Why a thread and not a tokio task: a commit blocks in `fsync` for
//! milliseconds, and while it does, the next batch gathers in the channel;
//! the broker's core task never waits for the disk, it only holds back the
//! acknowledgements a batch covers until [`Synced`] comes back.

use crate::db::{Db, Op, StoreError};
use crate::wal::{Pending, Wal};
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

/// The log is checkpointed into redb once it holds this many bytes.
const CHECKPOINT_BYTES: u64 = 8 << 20;

/// ... or once the thread has had nothing to do for this long.
const IDLE_CHECKPOINT: Duration = Duration::from_secs(1);

/// Everything waiting after `first`, without waiting: one group. `None`
/// for the sequence number when the group holds no batch.
fn gather(first: Msg, rx: &mpsc::Receiver<Msg>) -> (Vec<Op>, Option<u64>, bool) {
    let mut ops = Vec::new();
    let mut seq = None;
    let mut next = Some(first);
    while let Some(m) = next {
        match m {
            Msg::Batch(s, mut o) => {
                ops.append(&mut o);
                seq = Some(s);
            }
            Msg::Close => return (ops, seq, true),
        }
        next = rx.try_recv().ok();
    }
    (ops, seq, false)
}

/// The storage thread's work on the log, without the thread or a clock:
/// append a group, sync it, checkpoint into redb. The thread drives it
/// with its timing rules; the crash simulator drives the same calls on
/// virtual time over a simulated disk.
#[derive(Debug)]
pub struct LogWriter {
    db: Db,
    wal: Wal,
    pending: Pending,
    checkpoint_bytes: u64,
}

impl LogWriter {
    /// The writer of a store opened with its log ([`Db::open`]); gives the
    /// store back when it has none.
    pub fn new(mut db: Db) -> Result<Self, Box<Db>> {
        match db.wal.take() {
            Some(wal) => Ok(Self {
                db,
                wal,
                pending: Pending::default(),
                checkpoint_bytes: CHECKPOINT_BYTES,
            }),
            None => Err(Box::new(db)),
        }
    }

    /// Checkpoint once the log holds this many bytes (8 MiB unless set).
    pub fn set_checkpoint_bytes(&mut self, bytes: u64) {
        self.checkpoint_bytes = bytes;
    }

    /// Appends `ops` (one group) to the log as one record: written, not
    /// yet durable.
    pub fn append(&mut self, ops: Vec<Op>) -> Result<(), StoreError> {
        self.wal.append(&ops)?;
        for op in ops {
            self.pending.push(op);
        }
        Ok(())
    }

    /// Makes every record appended so far durable (one `fdatasync`).
    pub fn sync(&mut self) -> Result<(), StoreError> {
        self.wal.sync()
    }

    /// Bytes in the log since the last checkpoint.
    pub fn logged(&self) -> u64 {
        self.wal.used()
    }

    /// Whether the log has grown to the checkpoint size.
    pub fn wants_checkpoint(&self) -> bool {
        self.wal.used() >= self.checkpoint_bytes
    }

    /// Applies what the log holds (minus what cancelled out) to redb in one
    /// durable transaction, and starts the log again.
    pub fn checkpoint(&mut self) -> Result<(), StoreError> {
        let ops = self.pending.take();
        let db = &self.db;
        guarded(|| db.checkpoint(&ops, self.wal.next_seq() - 1))?;
        self.wal.rewind();
        Ok(())
    }

    /// The store.
    pub fn db(&self) -> &Db {
        &self.db
    }
}

/// With the log: each group is one record and (under [`Sync::Always`])
/// one `fdatasync`; redb is written at checkpoints only.
fn run_logged(
    mut log: LogWriter,
    sync: Sync,
    rx: &mpsc::Receiver<Msg>,
    mut on_synced: impl FnMut(Result<Synced, StoreError>),
) {
    let mut last_sync = Instant::now();
    let mut last_input = Instant::now();
    let mut dirty = false;
    loop {
        let wait = match sync {
            Sync::Interval(every) if dirty => every.saturating_sub(last_sync.elapsed()),
            _ => IDLE_CHECKPOINT,
        };
        let first = match rx.recv_timeout(wait) {
            Ok(m) => m,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let mut r = Ok(());
                if dirty {
                    r = log.sync();
                    last_sync = Instant::now();
                    dirty = false;
                }
                if r.is_ok() && log.logged() > 0 && last_input.elapsed() >= IDLE_CHECKPOINT {
                    r = log.checkpoint();
                }
                if let Err(e) = r {
                    on_synced(Err(e));
                    return;
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Msg::Close,
        };
        let (ops, seq, close) = gather(first, rx);
        last_input = Instant::now();
        if let Some(seq) = seq {
            let durable = match sync {
                Sync::Always => true,
                Sync::Interval(every) => close || last_sync.elapsed() >= every,
            };
            let r = log.append(ops).and_then(|()| {
                if durable {
                    log.sync()?;
                }
                Ok(())
            });
            if let Err(e) = r {
                on_synced(Err(e));
                return;
            }
            if durable {
                last_sync = Instant::now();
                dirty = false;
            } else {
                dirty = true;
            }
            on_synced(Ok(Synced { seq }));
        }
        if close || log.wants_checkpoint() {
            if let Err(e) = log.checkpoint() {
                on_synced(Err(e));
                return;
            }
        }
        if close {
            return;
        }
    }
}

/// Without the log: each group is one redb commit.
fn run_direct(
    db: &Db,
    sync: Sync,
    rx: &mpsc::Receiver<Msg>,
    mut on_synced: impl FnMut(Result<Synced, StoreError>),
) {
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
        let (ops, seq, close) = gather(first, rx);
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
}

impl Storage {
    /// Starts the storage thread over `db`. `on_synced` is called on that
    /// thread after each commit, in sequence order; on a failed commit it
    /// gets the error and the thread stops (nothing later is reported, so
    /// nothing later is acknowledged).
    pub fn spawn(
        db: Db,
        sync: Sync,
        on_synced: impl FnMut(Result<Synced, StoreError>) + Send + 'static,
    ) -> Self {
        let (tx, rx) = mpsc::channel::<Msg>();
        let thread = std::thread::Builder::new()
            .name("tern-store".into())
            .spawn(move || match LogWriter::new(db) {
                Ok(log) => run_logged(log, sync, &rx, on_synced),
                Err(db) => run_direct(&db, sync, &rx, on_synced),
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
