//! The database file: tables, keys, applying a batch of [`Op`]s in one
//! transaction, and loading at start-up.
//!
//! One redb file, `DIR/tern.redb`, with these tables (keys in brackets;
//! `client` is a `u16` big-endian length then the client identifier, so one
//! session's records sort together and a prefix range finds them):
//!
//! | table | key | value |
//! |---|---|---|
//! | `meta` | name (`clock`; `wal`: the last log record applied) | `u64` |
//! | `sessions` | client id | [`SessionRecord`] |
//! | `subscriptions` | client ++ filter | [`SubscriptionRecord`] |
//! | `queue` | client ++ seq (`u64` BE) | [`QueueRecord`] |
//! | `bodies` | body id (`u64` BE) | [`BodyRecord`] |
//! | `refs` | body id (`u64` BE) | `u64`: queue entries referring to it |
//! | `incoming` | client ++ packet id (`u16` BE) | `()`: QoS 2 awaiting PUBREL |
//! | `retained` | topic | [`BodyRecord`] |
//! | `set_aside` | table name ++ `0` ++ key | the raw bytes found |
//!
//! A body is written once and referenced by queue entries; the store keeps
//! its reference count, and deletes it with its last entry (or at the end of
//! the batch that wrote it, when nothing refers to it), so delivered data is
//! reclaimed as the broker runs: redb reuses the freed pages.

use crate::record::{BodyRecord, Corrupt, QueueRecord, Record, SessionRecord, SubscriptionRecord};
use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

type Table = TableDefinition<'static, &'static [u8], &'static [u8]>;

pub(crate) const META: Table = TableDefinition::new("meta");
pub(crate) const SESSIONS: Table = TableDefinition::new("sessions");
pub(crate) const SUBSCRIPTIONS: Table = TableDefinition::new("subscriptions");
pub(crate) const QUEUE: Table = TableDefinition::new("queue");
pub(crate) const BODIES: Table = TableDefinition::new("bodies");
pub(crate) const REFS: Table = TableDefinition::new("refs");
pub(crate) const INCOMING: Table = TableDefinition::new("incoming");
pub(crate) const RETAINED: Table = TableDefinition::new("retained");
pub(crate) const SET_ASIDE: Table = TableDefinition::new("set_aside");

/// Every table, in the order `check` and `dump` walk them.
pub(crate) const TABLES: [(Table, &str); 9] = [
    (META, "meta"),
    (SESSIONS, "sessions"),
    (SUBSCRIPTIONS, "subscriptions"),
    (QUEUE, "queue"),
    (BODIES, "bodies"),
    (REFS, "refs"),
    (INCOMING, "incoming"),
    (RETAINED, "retained"),
    (SET_ASIDE, "set_aside"),
];

/// The database's file name inside the data directory.
pub const FILE: &str = "tern.redb";

/// One change to the stored state. A batch of them is applied in one
/// transaction and made durable by one fsync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A session was created or changed.
    PutSession(SessionRecord),
    /// A session ended: it, its subscriptions, queue and incoming QoS 2
    /// state go.
    DeleteSession(String),
    /// A subscription was made or replaced.
    PutSubscription {
        /// Its session.
        client_id: String,
        /// Its topic filter.
        filter: String,
        /// Its options.
        record: SubscriptionRecord,
    },
    /// A subscription was removed.
    DeleteSubscription {
        /// Its session.
        client_id: String,
        /// Its topic filter.
        filter: String,
    },
    /// A message body, before the queue entries that refer to it.
    PutBody {
        /// Its id, unique for the life of the store.
        id: u64,
        /// The message.
        body: BodyRecord,
    },
    /// A message was queued for a session, or its flow state changed.
    PutQueue {
        /// Its session.
        client_id: String,
        /// Its place in the session's queue.
        seq: u64,
        /// The entry.
        record: QueueRecord,
    },
    /// A message was delivered (or dropped) and acknowledged.
    DeleteQueue {
        /// Its session.
        client_id: String,
        /// Its place in the session's queue.
        seq: u64,
    },
    /// An incoming QoS 2 PUBLISH was received; PUBREL is awaited.
    PutIncoming {
        /// Its session.
        client_id: String,
        /// Its packet identifier.
        packet_id: u16,
    },
    /// The PUBREL came.
    DeleteIncoming {
        /// Its session.
        client_id: String,
        /// Its packet identifier.
        packet_id: u16,
    },
    /// A retained message was set or replaced.
    PutRetained {
        /// Its topic.
        topic: String,
        /// The message.
        body: BodyRecord,
    },
    /// A retained message was cleared.
    DeleteRetained {
        /// Its topic.
        topic: String,
    },
    /// The wall clock, in Unix milliseconds, as the broker saw it: after a
    /// restart time starts no earlier than this, so expiry never runs
    /// backwards across a restart whose clock was set back.
    Clock(u64),
}

/// What start-up finds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// Sessions, in client identifier order, each with what belongs to it.
    pub sessions: Vec<LoadedSession>,
    /// Retained messages by topic.
    pub retained: Vec<(String, BodyRecord)>,
    /// The last clock stored (Unix milliseconds), 0 if none.
    pub clock_ms: u64,
    /// The smallest body id never used.
    pub next_body_id: u64,
    /// Records set aside as corrupt or orphaned during this load.
    pub set_aside: usize,
}

/// A session as start-up finds it. Queue entries refer to bodies, which are
/// read when needed ([`Db::body`]), not at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedSession {
    /// The session.
    pub record: SessionRecord,
    /// Its subscriptions by filter.
    pub subscriptions: Vec<(String, SubscriptionRecord)>,
    /// Its queue by sequence number.
    pub queue: Vec<(u64, QueueRecord)>,
    /// Incoming QoS 2 packet identifiers awaiting PUBREL.
    pub incoming: Vec<u16>,
}

/// Why the store cannot be used.
#[derive(Debug)]
pub enum StoreError {
    /// Another process (a running broker) holds the directory.
    InUse(PathBuf),
    /// The directory cannot be created or read.
    Io(PathBuf, std::io::Error),
    /// The database failed.
    Db(String),
}

impl core::fmt::Display for StoreError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::InUse(p) => write!(
                f,
                "{}: in use by another process (a running broker?)",
                p.display()
            ),
            Self::Io(p, e) => write!(f, "{}: {e}", p.display()),
            Self::Db(e) => write!(f, "store: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

fn db_err(e: impl core::fmt::Display) -> StoreError {
    StoreError::Db(e.to_string())
}

/// `u16` BE length ++ client id ++ suffix.
pub(crate) fn client_key(client_id: &str, suffix: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + client_id.len() + suffix.len());
    k.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
    k.extend_from_slice(client_id.as_bytes());
    k.extend_from_slice(suffix);
    k
}

/// Splits a `client_key` into client id and suffix.
pub(crate) fn split_client_key(key: &[u8]) -> Result<(&str, &[u8]), Corrupt> {
    let n = u16::from_be_bytes(
        key.get(..2)
            .ok_or(Corrupt)?
            .try_into()
            .map_err(|_| Corrupt)?,
    ) as usize;
    let id = key.get(2..2 + n).ok_or(Corrupt)?;
    let id = core::str::from_utf8(id).map_err(|_| Corrupt)?;
    Ok((id, &key[2 + n..]))
}

/// The open database file, with its write-ahead log (the `wal` module) when
/// opened by [`Db::open`].
#[derive(Debug)]
pub struct Db {
    pub(crate) db: redb::Database,
    path: PathBuf,
    /// The log the storage thread appends to; `None`: every group is a
    /// redb commit of its own ([`Db::open_existing`], simulated backends).
    pub(crate) wal: Option<crate::wal::Wal>,
}

impl Db {
    /// Opens (or creates) the store in `dir`.
    ///
    /// A file redb cannot open as a database (damaged beyond its own repair)
    /// is renamed `tern.redb.corrupt-N` with an error logged, and an empty
    /// store is started: a broker never refuses to start over its store. A
    /// directory another process holds is an error.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Io(dir.to_path_buf(), e))?;
        let path = dir.join(FILE);
        let db = match Self::open_file(&path) {
            Ok(db) => db,
            Err(StoreError::InUse(p)) => return Err(StoreError::InUse(p)),
            Err(e) if path.exists() => {
                let aside = (0..)
                    .map(|n| dir.join(format!("{FILE}.corrupt-{n}")))
                    .find(|p| !p.exists())
                    .unwrap_or_else(|| dir.join(format!("{FILE}.corrupt")));
                tracing::error!(
                    "{}: cannot be opened ({e}); set aside as {} and starting with an empty store",
                    path.display(),
                    aside.display()
                );
                std::fs::rename(&path, &aside).map_err(|e| StoreError::Io(path.clone(), e))?;
                Self::open_file(&path)?
            }
            Err(e) => return Err(e),
        };
        Self::with_log(db, path, |checkpoint| {
            crate::wal::Wal::open(dir, checkpoint)
        })
    }

    /// The store on a simulated disk (the crash simulator): the same
    /// start-up as [`Db::open`] (redb's own repair, then the log's replay
    /// above the checkpoint), with both files on `disk`.
    #[cfg(feature = "sim")]
    pub fn open_on(disk: &crate::sim_disk::SimDisk) -> Result<Self, StoreError> {
        let path = PathBuf::from(format!("<simulated>/{FILE}"));
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Self::builder().create_with_backend(disk.file(FILE))
        }));
        let db = match opened {
            Ok(Ok(db)) => db,
            // As `open`: a file redb cannot open is set aside, and the
            // broker starts with an empty store.
            failed => {
                let e = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "redb panicked opening it".into(),
                };
                let aside = disk.set_aside(FILE);
                tracing::error!(
                    "{}: cannot be opened ({e}); set aside as {aside} and starting with an empty store",
                    path.display()
                );
                Self::builder()
                    .create_with_backend(disk.file(FILE))
                    .map_err(db_err)?
            }
        };
        let log = PathBuf::from(format!("<simulated>/{}", crate::wal::LOG_FILE));
        Self::with_log(db, path, |checkpoint| {
            crate::wal::Wal::on(Box::new(disk.file(crate::wal::LOG_FILE)), log, checkpoint)
        })
    }

    /// The rest of start-up on an open redb file: tables, then whatever
    /// the log holds above the checkpoint goes into redb in one durable
    /// commit, and the log starts again.
    fn with_log(
        db: redb::Database,
        path: PathBuf,
        open_log: impl FnOnce(u64) -> Result<(crate::wal::Wal, Vec<crate::wal::Logged>), StoreError>,
    ) -> Result<Self, StoreError> {
        let mut this = Self {
            db,
            path,
            wal: None,
        };
        this.create_tables()?;
        let checkpoint = this.checkpoint_seq()?;
        let (mut wal, replay) = open_log(checkpoint)?;
        if let Some(&(last, _)) = replay.last() {
            let n: usize = replay.iter().map(|(_, ops)| ops.len()).sum();
            tracing::info!(
                "store: replaying {} logged groups ({n} operations) above checkpoint {checkpoint}",
                replay.len()
            );
            let ops: Vec<Op> = replay.into_iter().flat_map(|(_, ops)| ops).collect();
            this.checkpoint(&ops, last)?;
        }
        wal.rewind();
        this.wal = Some(wal);
        Ok(this)
    }

    /// The `seq` of the last log record the redb file holds (0: none).
    pub(crate) fn checkpoint_seq(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(META).map_err(db_err)?;
        Ok(match t.get(&b"wal"[..]).map_err(db_err)? {
            Some(v) => u64::decode(v.value()).unwrap_or(0),
            None => 0,
        })
    }

    /// Applies logged `ops` (every record up to `seq`) in one durable
    /// transaction that also records `seq` as the checkpoint.
    pub(crate) fn checkpoint(&self, ops: &[Op], seq: u64) -> Result<(), StoreError> {
        self.apply_with(ops, true, Some(seq))
    }

    /// Opens an existing store for `tern store check` and `dump`: no file
    /// is created, and a damaged one is reported, not set aside.
    pub fn open_existing(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(FILE);
        if !path.is_file() {
            return Err(StoreError::Io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no store here"),
            ));
        }
        let db = Self::open_file(&path)?;
        Ok(Self {
            db,
            path,
            wal: None,
        })
    }

    /// A store on another storage backend (the power-loss simulation).
    #[cfg(test)]
    pub(crate) fn with_backend(backend: impl redb::StorageBackend) -> Result<Self, StoreError> {
        let db = redb::Database::builder()
            .create_with_backend(backend)
            .map_err(db_err)?;
        let this = Self {
            db,
            path: PathBuf::from("<simulated>"),
            wal: None,
        };
        this.create_tables()?;
        Ok(this)
    }

    fn open_file(path: &Path) -> Result<redb::Database, StoreError> {
        // redb asserts on some damage (a file shorter than its header says)
        // instead of returning an error: treat that as damage too.
        let opened = std::panic::catch_unwind(|| Self::builder().create(path));
        match opened {
            Ok(Ok(db)) => Ok(db),
            Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => {
                Err(StoreError::InUse(path.to_path_buf()))
            }
            Ok(Err(e)) => Err(db_err(e)),
            Err(_) => Err(StoreError::Db(
                "the database file is damaged (redb panicked opening it)".into(),
            )),
        }
    }

    /// redb's builder as every store opens it.
    fn builder() -> redb::Builder {
        let mut builder = redb::Database::builder();
        builder.set_repair_callback(|_| {
            tracing::warn!("store: repairing after an unclean stop");
        });
        builder
    }

    fn create_tables(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(db_err)?;
        for (t, _) in TABLES {
            txn.open_table(t).map_err(db_err)?;
        }
        txn.commit().map_err(db_err)
    }

    /// The database file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Applies `ops` in one transaction; `durable`: fsync before returning
    /// (otherwise the next durable commit covers it).
    pub fn apply(&self, ops: &[Op], durable: bool) -> Result<(), StoreError> {
        self.apply_with(ops, durable, None)
    }

    fn apply_with(
        &self,
        ops: &[Op],
        durable: bool,
        checkpoint: Option<u64>,
    ) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(db_err)?;
        txn.set_durability(if durable {
            redb::Durability::Immediate
        } else {
            redb::Durability::None
        });
        {
            let mut w = Tables::open(&txn)?;
            let mut new_bodies = BTreeSet::new();
            for op in ops {
                w.apply(op, &mut new_bodies)?;
            }
            // A body nothing came to refer to in its own batch (every
            // session it was meant for already had it) goes now.
            for id in new_bodies {
                if w.refs(id)? == 0 {
                    w.bodies.remove(&id.to_be_bytes()[..]).map_err(db_err)?;
                }
            }
            if let Some(seq) = checkpoint {
                w.meta
                    .insert(&b"wal"[..], &seq.encode()[..])
                    .map_err(db_err)?;
            }
        }
        txn.commit().map_err(db_err)
    }

    /// Makes every earlier non-durable commit durable.
    pub fn sync(&self) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(db_err)?;
        txn.set_durability(redb::Durability::Immediate);
        txn.commit().map_err(db_err)
    }

    /// A message body, read when a queue entry needs it. `None`: gone or
    /// corrupt (logged).
    pub fn body(&self, id: u64) -> Result<Option<BodyRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(BODIES).map_err(db_err)?;
        let Some(v) = t.get(&id.to_be_bytes()[..]).map_err(db_err)? else {
            return Ok(None);
        };
        match BodyRecord::decode(v.value()) {
            Ok(b) => Ok(Some(b)),
            Err(Corrupt) => {
                tracing::error!("store: body {id} is corrupt; its deliveries are dropped");
                Ok(None)
            }
        }
    }

    /// Loads sessions, subscriptions, queue entries (not their bodies),
    /// incoming QoS 2 state and retained messages. Corrupt records, and
    /// records whose session or body is gone, are moved to `set_aside` with
    /// a log line each; start-up goes on without them.
    pub fn load(&self) -> Result<Loaded, StoreError> {
        let txn = self.db.begin_write().map_err(db_err)?;
        let mut loaded = Loaded::default();
        {
            let mut w = Tables::open(&txn)?;
            let mut aside: Vec<(&'static str, Vec<u8>, Vec<u8>)> = Vec::new();

            let mut sessions = std::collections::BTreeMap::new();
            for e in w.sessions.iter().map_err(db_err)? {
                let (k, v) = e.map_err(db_err)?;
                match SessionRecord::decode(v.value()) {
                    Ok(s) if s.client_id.as_bytes() == k.value() => {
                        sessions.insert(
                            s.client_id.clone(),
                            LoadedSession {
                                record: s,
                                subscriptions: Vec::new(),
                                queue: Vec::new(),
                                incoming: Vec::new(),
                            },
                        );
                    }
                    _ => aside.push(("sessions", k.value().to_vec(), v.value().to_vec())),
                }
            }
            for e in w.subscriptions.iter().map_err(db_err)? {
                let (k, v) = e.map_err(db_err)?;
                let parsed = split_client_key(k.value()).and_then(|(c, f)| {
                    let f = core::str::from_utf8(f).map_err(|_| Corrupt)?;
                    Ok((c, f, SubscriptionRecord::decode(v.value())?))
                });
                match parsed {
                    Ok((c, f, r)) if sessions.contains_key(c) => {
                        if let Some(s) = sessions.get_mut(c) {
                            s.subscriptions.push((f.to_string(), r));
                        }
                    }
                    _ => aside.push(("subscriptions", k.value().to_vec(), v.value().to_vec())),
                }
            }
            for e in w.queue.iter().map_err(db_err)? {
                let (k, v) = e.map_err(db_err)?;
                let parsed = split_client_key(k.value()).and_then(|(c, s)| {
                    let seq = u64::from_be_bytes(s.try_into().map_err(|_| Corrupt)?);
                    Ok((c, seq, QueueRecord::decode(v.value())?))
                });
                match parsed {
                    Ok((c, seq, r))
                        if sessions.contains_key(c)
                            && w.bodies
                                .get(&r.body.to_be_bytes()[..])
                                .map_err(db_err)?
                                .is_some() =>
                    {
                        if let Some(s) = sessions.get_mut(c) {
                            s.queue.push((seq, r));
                        }
                    }
                    _ => aside.push(("queue", k.value().to_vec(), v.value().to_vec())),
                }
            }
            for e in w.incoming.iter().map_err(db_err)? {
                let (k, v) = e.map_err(db_err)?;
                let parsed = split_client_key(k.value()).and_then(|(c, id)| {
                    <()>::decode(v.value())?;
                    Ok((c, u16::from_be_bytes(id.try_into().map_err(|_| Corrupt)?)))
                });
                match parsed {
                    Ok((c, id)) if sessions.contains_key(c) => {
                        if let Some(s) = sessions.get_mut(c) {
                            s.incoming.push(id);
                        }
                    }
                    _ => aside.push(("incoming", k.value().to_vec(), v.value().to_vec())),
                }
            }
            for e in w.retained.iter().map_err(db_err)? {
                let (k, v) = e.map_err(db_err)?;
                match BodyRecord::decode(v.value()) {
                    Ok(b) if b.topic.as_bytes() == k.value() => {
                        loaded.retained.push((b.topic.clone(), b))
                    }
                    _ => aside.push(("retained", k.value().to_vec(), v.value().to_vec())),
                }
            }
            if let Some(v) = w.meta.get(&b"clock"[..]).map_err(db_err)? {
                loaded.clock_ms = u64::decode(v.value()).unwrap_or(0);
            }
            if let Some(e) = w.bodies.last().map_err(db_err)? {
                let k = e.0.value();
                loaded.next_body_id = k
                    .try_into()
                    .map(u64::from_be_bytes)
                    .unwrap_or(0)
                    .saturating_add(1);
            }
            for (table, k, v) in &aside {
                tracing::error!(
                    "store: a {table} record (key {}) is corrupt or orphaned; set aside",
                    hex(k)
                );
                if *table == "queue" {
                    if let Ok(r) = QueueRecord::decode(v) {
                        w.unref(r.body)?;
                    }
                }
                let t = match *table {
                    "sessions" => &mut w.sessions,
                    "subscriptions" => &mut w.subscriptions,
                    "queue" => &mut w.queue,
                    "incoming" => &mut w.incoming,
                    _ => &mut w.retained,
                };
                t.remove(&k[..]).map_err(db_err)?;
                let mut key = table.as_bytes().to_vec();
                key.push(0);
                key.extend_from_slice(k);
                w.set_aside.insert(&key[..], &v[..]).map_err(db_err)?;
            }
            loaded.set_aside = aside.len();
            loaded.sessions = sessions.into_values().collect();
        }
        txn.commit().map_err(db_err)?;
        Ok(loaded)
    }

    /// Walks every table for `tern store check` and `tern store dump`:
    /// `visit(table, key, value)`.
    pub fn walk(
        &self,
        mut visit: impl FnMut(&'static str, &[u8], &[u8]),
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        for (t, name) in TABLES {
            let table = txn.open_table(t).map_err(db_err)?;
            for e in table.iter().map_err(db_err)? {
                let (k, v) = e.map_err(db_err)?;
                visit(name, k.value(), v.value());
            }
        }
        Ok(())
    }

    /// Records per table.
    pub fn counts(&self) -> Result<Vec<(&'static str, u64)>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        TABLES
            .iter()
            .map(|(t, name)| {
                Ok((
                    *name,
                    txn.open_table(*t).map_err(db_err)?.len().map_err(db_err)?,
                ))
            })
            .collect()
    }
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// The tables of one write transaction.
struct Tables<'t> {
    meta: redb::Table<'t, &'static [u8], &'static [u8]>,
    sessions: redb::Table<'t, &'static [u8], &'static [u8]>,
    subscriptions: redb::Table<'t, &'static [u8], &'static [u8]>,
    queue: redb::Table<'t, &'static [u8], &'static [u8]>,
    bodies: redb::Table<'t, &'static [u8], &'static [u8]>,
    refs: redb::Table<'t, &'static [u8], &'static [u8]>,
    incoming: redb::Table<'t, &'static [u8], &'static [u8]>,
    retained: redb::Table<'t, &'static [u8], &'static [u8]>,
    set_aside: redb::Table<'t, &'static [u8], &'static [u8]>,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t redb::WriteTransaction) -> Result<Self, StoreError> {
        Ok(Self {
            meta: txn.open_table(META).map_err(db_err)?,
            sessions: txn.open_table(SESSIONS).map_err(db_err)?,
            subscriptions: txn.open_table(SUBSCRIPTIONS).map_err(db_err)?,
            queue: txn.open_table(QUEUE).map_err(db_err)?,
            bodies: txn.open_table(BODIES).map_err(db_err)?,
            refs: txn.open_table(REFS).map_err(db_err)?,
            incoming: txn.open_table(INCOMING).map_err(db_err)?,
            retained: txn.open_table(RETAINED).map_err(db_err)?,
            set_aside: txn.open_table(SET_ASIDE).map_err(db_err)?,
        })
    }

    fn refs(&self, id: u64) -> Result<u64, StoreError> {
        Ok(
            match self.refs.get(&id.to_be_bytes()[..]).map_err(db_err)? {
                Some(v) => u64::decode(v.value()).unwrap_or(0),
                None => 0,
            },
        )
    }

    fn set_refs(&mut self, id: u64, n: u64) -> Result<(), StoreError> {
        let k = id.to_be_bytes();
        if n == 0 {
            self.refs.remove(&k[..]).map_err(db_err)?;
            self.bodies.remove(&k[..]).map_err(db_err)?;
        } else {
            self.refs.insert(&k[..], &n.encode()[..]).map_err(db_err)?;
        }
        Ok(())
    }

    fn unref(&mut self, id: u64) -> Result<(), StoreError> {
        let n = self.refs(id)?;
        self.set_refs(id, n.saturating_sub(1))
    }

    /// Removes a queue entry and drops its body's reference.
    fn remove_queue(&mut self, key: &[u8]) -> Result<(), StoreError> {
        let old = self
            .queue
            .remove(key)
            .map_err(db_err)?
            .map(|v| QueueRecord::decode(v.value()));
        if let Some(Ok(r)) = old {
            self.unref(r.body)?;
        }
        Ok(())
    }

    fn apply(&mut self, op: &Op, new_bodies: &mut BTreeSet<u64>) -> Result<(), StoreError> {
        match op {
            Op::PutSession(s) => {
                self.sessions
                    .insert(s.client_id.as_bytes(), &s.encode()[..])
                    .map_err(db_err)?;
            }
            Op::DeleteSession(c) => {
                self.sessions.remove(c.as_bytes()).map_err(db_err)?;
                let prefix = client_key(c, &[]);
                let queued: Vec<Vec<u8>> = prefixed(&self.queue, &prefix)?;
                for k in queued {
                    self.remove_queue(&k)?;
                }
                for k in prefixed(&self.subscriptions, &prefix)? {
                    self.subscriptions.remove(&k[..]).map_err(db_err)?;
                }
                for k in prefixed(&self.incoming, &prefix)? {
                    self.incoming.remove(&k[..]).map_err(db_err)?;
                }
            }
            Op::PutSubscription {
                client_id,
                filter,
                record,
            } => {
                let k = client_key(client_id, filter.as_bytes());
                self.subscriptions
                    .insert(&k[..], &record.encode()[..])
                    .map_err(db_err)?;
            }
            Op::DeleteSubscription { client_id, filter } => {
                let k = client_key(client_id, filter.as_bytes());
                self.subscriptions.remove(&k[..]).map_err(db_err)?;
            }
            Op::PutBody { id, body } => {
                self.bodies
                    .insert(&id.to_be_bytes()[..], &body.encode()[..])
                    .map_err(db_err)?;
                new_bodies.insert(*id);
            }
            Op::PutQueue {
                client_id,
                seq,
                record,
            } => {
                let k = client_key(client_id, &seq.to_be_bytes());
                let old = self
                    .queue
                    .insert(&k[..], &record.encode()[..])
                    .map_err(db_err)?
                    .map(|v| QueueRecord::decode(v.value()));
                match old {
                    // A flow-state change of the same message.
                    Some(Ok(r)) if r.body == record.body => {}
                    other => {
                        if let Some(Ok(r)) = other {
                            self.unref(r.body)?;
                        }
                        let n = self.refs(record.body)?;
                        self.set_refs(record.body, n + 1)?;
                    }
                }
            }
            Op::DeleteQueue { client_id, seq } => {
                self.remove_queue(&client_key(client_id, &seq.to_be_bytes()))?;
            }
            Op::PutIncoming {
                client_id,
                packet_id,
            } => {
                let k = client_key(client_id, &packet_id.to_be_bytes());
                self.incoming
                    .insert(&k[..], &().encode()[..])
                    .map_err(db_err)?;
            }
            Op::DeleteIncoming {
                client_id,
                packet_id,
            } => {
                let k = client_key(client_id, &packet_id.to_be_bytes());
                self.incoming.remove(&k[..]).map_err(db_err)?;
            }
            Op::PutRetained { topic, body } => {
                self.retained
                    .insert(topic.as_bytes(), &body.encode()[..])
                    .map_err(db_err)?;
            }
            Op::DeleteRetained { topic } => {
                self.retained.remove(topic.as_bytes()).map_err(db_err)?;
            }
            Op::Clock(ms) => {
                self.meta
                    .insert(&b"clock"[..], &ms.encode()[..])
                    .map_err(db_err)?;
            }
        }
        Ok(())
    }
}

/// The keys under `prefix`.
fn prefixed(
    t: &redb::Table<'_, &'static [u8], &'static [u8]>,
    prefix: &[u8],
) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut out = Vec::new();
    for e in t.range(prefix..).map_err(db_err)? {
        let (k, _) = e.map_err(db_err)?;
        if !k.value().starts_with(prefix) {
            break;
        }
        out.push(k.value().to_vec());
    }
    Ok(out)
}
