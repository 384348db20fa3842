//! Tern's durable store: what a broker keeps on disk so that sessions,
//! subscriptions, queued and in-flight messages, incoming QoS 2 state and
//! retained messages survive a restart or a `kill -9`.
//!
//! - [`Db`]: the database file (redb) in a data directory, its tables and
//!   record layout ([`record`]), applying a batch of [`Op`]s in one
//!   transaction, and start-up loading ([`Db::load`]) that sets corrupt
//!   records aside instead of refusing to start.
//! - [`Storage`]: the storage thread. The broker submits batches with
//!   increasing sequence numbers; the thread appends everything waiting to
//!   the write-ahead log (`DIR/tern.log`, [`LOG_FILE`]) as one record with
//!   one fsync (group commit) and reports [`Synced`] with the highest
//!   sequence number covered. redb is the log's checkpoint; `Db::open`
//!   replays what the log holds beyond it. The broker releases the
//!   acknowledgements a batch covers only then.
//! - [`check`] and [`dump`]: `tern store check DIR` and `tern store dump DIR`.
//! - [`LogWriter`]: the storage thread's work without the thread or a
//!   clock, for a deterministic driver; the thread runs on it too.
//! - [`LogFile`]: the log's file operations, and with the `sim` feature
//!   `sim_disk`: a simulated disk for both files, whose crash loses every
//!   unsynced write and may tear the last one (tern-sim's crash points).
//!
//! This crate knows nothing of MQTT packets: the broker maps its state to
//! the records here (properties and wills are opaque bytes it encoded).
//!
//! ```
//! use tern_store::{Db, Op, Storage, Sync, record::SessionRecord};
//! let dir = std::env::temp_dir().join(format!("tern-store-doc-{}", std::process::id()));
//! let db = Db::open(&dir).unwrap();
//! let (tx, rx) = std::sync::mpsc::channel();
//! let storage = Storage::spawn(db, Sync::Always, move |r| tx.send(r.unwrap().seq).unwrap());
//! storage.submit(1, vec![Op::PutSession(SessionRecord {
//!     client_id: "c1".into(), protocol: 5, expiry_interval: 3600,
//!     expires_at_ms: None, user_name: None, will: None, will_due_ms: None,
//! })]);
//! assert_eq!(rx.recv().unwrap(), 1); // on disk now
//! storage.close();
//! let loaded = Db::open(&dir).unwrap().load().unwrap();
//! assert_eq!(loaded.sessions[0].record.client_id, "c1");
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```

#![forbid(unsafe_code)]

mod crc;
mod db;
mod files;
mod inspect;
pub mod record;
#[cfg(feature = "sim")]
pub mod sim_disk;
mod thread;
mod wal;

pub use db::{Db, FILE, Loaded, LoadedSession, Op, StoreError};
pub use files::LogFile;
pub use inspect::{Report, check, dump};
pub use thread::{LogWriter, Storage, Sync, Synced};
pub use wal::LOG_FILE;

#[cfg(test)]
mod power_loss;
#[cfg(test)]
mod tests;
