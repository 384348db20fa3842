//! The write-ahead log: `DIR/tern.log`, where each group of batches is
//! appended as one record and made durable by one `fdatasync`; the redb
//! file is its checkpoint.
//!
//! Why: a redb commit copies every B-tree page a batch touches and costs
//! tens of microseconds of CPU per message on top of its sync, while a
//! durable broker's messages are mostly deleted (delivered and
//! acknowledged) milliseconds after they were written. The log costs one
//! sequential write and one sync per group; a message put and deleted
//! between two checkpoints never reaches redb at all ([`Pending`] cancels
//! the pair).
//!
//! Layout: records from offset 0, each
//! `[len u32 LE][seq u64 LE][CRC-32 of seq and payload, u32 LE][payload]`,
//! the payload the group's [`Op`]s. The file is allocated in zero-filled
//! chunks ahead of the writes, so a write in the middle of a group changes
//! no file size and its sync no metadata. After a checkpoint the log starts
//! again at offset 0 over the old records: replay stops at the first record
//! that is zero, fails its checksum (a torn tail) or does not have a higher
//! `seq` than the one before it (an older generation's record), and applies
//! only those above the checkpoint's `seq` (kept in redb's `meta` table).

use crate::crc::crc32_parts;
use crate::db::{Op, StoreError};
use crate::files::LogFile;
use crate::record::{BodyRecord, Corrupt, Delivery, QueueRecord, Reader, Record, SessionRecord};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The log's file name inside the data directory.
pub const LOG_FILE: &str = "tern.log";

/// Bytes the file grows by, zero-filled, ahead of the writes.
const CHUNK: u64 = 4 << 20;

/// Header bytes of a record.
const HEADER: usize = 16;

/// A record read back: its `seq` and operations.
pub(crate) type Logged = (u64, Vec<Op>);

/// The open log.
#[derive(Debug)]
pub(crate) struct Wal {
    file: Box<dyn LogFile>,
    path: PathBuf,
    /// Where the next record goes.
    pos: u64,
    /// The file's length (allocated, zero-filled).
    allocated: u64,
    /// The `seq` of the last record written or replayed.
    seq: u64,
    /// Reused encoding buffer.
    buf: Vec<u8>,
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |e| StoreError::Io(path.to_path_buf(), e)
}

impl Wal {
    /// Opens (or creates) the log in `dir` and reads the records above
    /// `checkpoint`, in order. The next record is written after them.
    pub(crate) fn open(dir: &Path, checkpoint: u64) -> Result<(Self, Vec<Logged>), StoreError> {
        let path = dir.join(LOG_FILE);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err(&path))?;
        Self::on(Box::new(file), path, checkpoint)
    }

    /// The same on any [`LogFile`] (`path` names it in errors and log lines).
    pub(crate) fn on(
        mut file: Box<dyn LogFile>,
        path: PathBuf,
        checkpoint: u64,
    ) -> Result<(Self, Vec<Logged>), StoreError> {
        let bytes = file.read_all().map_err(io_err(&path))?;
        let allocated = bytes.len() as u64;
        let (records, end) = read_records(&bytes, &path);
        let mut wal = Self {
            file,
            path,
            pos: 0,
            allocated,
            seq: checkpoint,
            buf: Vec::new(),
        };
        let mut replay = Vec::new();
        for (seq, ops) in records {
            wal.seq = wal.seq.max(seq);
            if seq > checkpoint {
                replay.push((seq, ops));
            }
        }
        wal.pos = end;
        Ok((wal, replay))
    }

    /// The `seq` the next record gets.
    pub(crate) fn next_seq(&self) -> u64 {
        self.seq + 1
    }

    /// Bytes written since the last [`rewind`](Self::rewind).
    pub(crate) fn used(&self) -> u64 {
        self.pos
    }

    /// Appends one record holding `ops`; returns its `seq`. Not durable
    /// until [`sync`](Self::sync).
    pub(crate) fn append(&mut self, ops: &[Op]) -> Result<u64, StoreError> {
        let seq = self.seq + 1;
        self.buf.clear();
        self.buf.extend_from_slice(&[0; HEADER]);
        for op in ops {
            encode_op(op, &mut self.buf);
        }
        let len = (self.buf.len() - HEADER) as u32;
        self.buf[0..4].copy_from_slice(&len.to_le_bytes());
        self.buf[4..12].copy_from_slice(&seq.to_le_bytes());
        let crc = crc32_parts(&[&self.buf[4..12], &self.buf[HEADER..]]);
        self.buf[12..16].copy_from_slice(&crc.to_le_bytes());
        let end = self.pos + self.buf.len() as u64;
        let err = io_err(&self.path);
        if end > self.allocated {
            // Zero-fill the next chunks, made durable now, so the group
            // syncs that follow change no file size.
            let to = end.div_ceil(CHUNK) * CHUNK;
            let zeros = vec![0u8; (to - self.allocated) as usize];
            self.file.write_at(self.allocated, &zeros).map_err(&err)?;
            self.file.sync_all().map_err(&err)?;
            self.allocated = to;
        }
        self.file.write_at(self.pos, &self.buf).map_err(&err)?;
        self.pos = end;
        self.seq = seq;
        Ok(seq)
    }

    /// Makes every record appended so far durable (`fdatasync`).
    pub(crate) fn sync(&mut self) -> Result<(), StoreError> {
        self.file.sync_data().map_err(io_err(&self.path))
    }

    /// Starts again at offset 0: everything written is in the checkpoint.
    /// The old records stay until overwritten; their `seq`s are below the
    /// new ones, so replay never takes them.
    pub(crate) fn rewind(&mut self) {
        self.pos = 0;
    }
}

/// Operations the log in `dir` holds above `checkpoint` (read only).
pub(crate) fn logged_above(dir: &Path, checkpoint: u64) -> u64 {
    let path = dir.join(LOG_FILE);
    let Ok(bytes) = std::fs::read(&path) else {
        return 0;
    };
    read_records(&bytes, &path)
        .0
        .iter()
        .filter(|(seq, _)| *seq > checkpoint)
        .map(|(_, ops)| ops.len() as u64)
        .sum()
}

/// The valid records at the start of `bytes`, and where they end.
fn read_records(bytes: &[u8], path: &Path) -> (Vec<Logged>, u64) {
    let mut out = Vec::new();
    let mut at = 0usize;
    let mut last = 0u64;
    while let Some(h) = bytes.get(at..at + HEADER) {
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let seq = u64::from_le_bytes(h[4..12].try_into().unwrap_or_default());
        let crc = u32::from_le_bytes([h[12], h[13], h[14], h[15]]);
        if len == 0 && seq == 0 {
            break; // the zero-filled end
        }
        let Some(payload) = bytes.get(at + HEADER..at + HEADER + len) else {
            tracing::warn!(
                "{}: torn record at offset {at} (cut short); the log ends there",
                path.display()
            );
            break;
        };
        if seq <= last {
            break; // a record of an older generation: the log ends there
        }
        if crc32_parts(&[&h[4..12], payload]) != crc {
            tracing::warn!(
                "{}: torn or corrupt record at offset {at} (checksum); the log ends there",
                path.display()
            );
            break;
        }
        match decode_ops(payload) {
            Ok(ops) => out.push((seq, ops)),
            Err(Corrupt) => {
                tracing::error!(
                    "{}: record at offset {at} passes its checksum but does not parse; the log ends there",
                    path.display()
                );
                break;
            }
        }
        last = seq;
        at += HEADER + len;
    }
    (out, at as u64)
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn encode_op(op: &Op, out: &mut Vec<u8>) {
    match op {
        Op::PutSession(s) => {
            out.push(1);
            put_bytes(out, &s.encode());
        }
        Op::DeleteSession(c) => {
            out.push(2);
            put_bytes(out, c.as_bytes());
        }
        Op::PutSubscription {
            client_id,
            filter,
            record,
        } => {
            out.push(3);
            put_bytes(out, client_id.as_bytes());
            put_bytes(out, filter.as_bytes());
            put_bytes(out, &record.encode());
        }
        Op::DeleteSubscription { client_id, filter } => {
            out.push(4);
            put_bytes(out, client_id.as_bytes());
            put_bytes(out, filter.as_bytes());
        }
        Op::PutBody { id, body } => {
            out.push(5);
            out.extend_from_slice(&id.to_le_bytes());
            put_bytes(out, &body.encode());
        }
        Op::PutQueue {
            client_id,
            seq,
            record,
        } => {
            out.push(6);
            put_bytes(out, client_id.as_bytes());
            out.extend_from_slice(&seq.to_le_bytes());
            put_bytes(out, &record.encode());
        }
        Op::DeleteQueue { client_id, seq } => {
            out.push(7);
            put_bytes(out, client_id.as_bytes());
            out.extend_from_slice(&seq.to_le_bytes());
        }
        Op::PutIncoming {
            client_id,
            packet_id,
        } => {
            out.push(8);
            put_bytes(out, client_id.as_bytes());
            out.extend_from_slice(&packet_id.to_le_bytes());
        }
        Op::DeleteIncoming {
            client_id,
            packet_id,
        } => {
            out.push(9);
            put_bytes(out, client_id.as_bytes());
            out.extend_from_slice(&packet_id.to_le_bytes());
        }
        Op::PutRetained { topic, body } => {
            out.push(10);
            put_bytes(out, topic.as_bytes());
            put_bytes(out, &body.encode());
        }
        Op::DeleteRetained { topic } => {
            out.push(11);
            put_bytes(out, topic.as_bytes());
        }
        Op::Clock(ms) => {
            out.push(12);
            out.extend_from_slice(&ms.to_le_bytes());
        }
    }
}

fn decode_ops(payload: &[u8]) -> Result<Vec<Op>, Corrupt> {
    let mut c = Reader::raw(payload);
    let mut ops = Vec::new();
    while !c.is_empty() {
        ops.push(match c.u8()? {
            1 => Op::PutSession(SessionRecord::decode(c.bytes()?)?),
            2 => Op::DeleteSession(c.string()?),
            3 => Op::PutSubscription {
                client_id: c.string()?,
                filter: c.string()?,
                record: Record::decode(c.bytes()?)?,
            },
            4 => Op::DeleteSubscription {
                client_id: c.string()?,
                filter: c.string()?,
            },
            5 => Op::PutBody {
                id: c.u64()?,
                body: BodyRecord::decode(c.bytes()?)?,
            },
            6 => Op::PutQueue {
                client_id: c.string()?,
                seq: c.u64()?,
                record: QueueRecord::decode(c.bytes()?)?,
            },
            7 => Op::DeleteQueue {
                client_id: c.string()?,
                seq: c.u64()?,
            },
            8 => Op::PutIncoming {
                client_id: c.string()?,
                packet_id: c.u16()?,
            },
            9 => Op::DeleteIncoming {
                client_id: c.string()?,
                packet_id: c.u16()?,
            },
            10 => Op::PutRetained {
                topic: c.string()?,
                body: BodyRecord::decode(c.bytes()?)?,
            },
            11 => Op::DeleteRetained { topic: c.string()? },
            12 => Op::Clock(c.u64()?),
            _ => return Err(Corrupt),
        });
    }
    Ok(ops)
}

/// The operations logged since the last checkpoint, with the pairs that
/// cancel out taken away: a queue entry created and deleted in the same
/// window (with its body, once no entry of the window refers to it) never
/// reaches redb, nor does an incoming QoS 2 record and its release.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    ops: Vec<Option<Op>>,
    /// Queue entries created in this window: the indices of their puts.
    queued: BTreeMap<(String, u64), Vec<usize>>,
    /// Bodies written in this window: index, and live entries of this
    /// window referring to it.
    bodies: HashMap<u64, (usize, u32)>,
    /// Incoming QoS 2 records written in this window.
    incoming: BTreeMap<(String, u16), usize>,
    /// Operations still live.
    live: usize,
}

impl Pending {
    /// Adds a logged operation.
    pub(crate) fn push(&mut self, op: Op) {
        let at = self.ops.len();
        match &op {
            Op::PutBody { id, .. } => {
                self.bodies.insert(*id, (at, 0));
            }
            Op::PutQueue {
                client_id,
                seq,
                record,
            } => {
                let key = (client_id.clone(), *seq);
                if let Some(puts) = self.queued.get_mut(&key) {
                    puts.push(at); // a flow change of an entry of this window
                } else if record.delivery == Delivery::Queued {
                    // Queue entries are created once, with a new id.
                    self.queued.insert(key, vec![at]);
                    if let Some(b) = self.bodies.get_mut(&record.body) {
                        b.1 += 1;
                    }
                }
            }
            Op::DeleteQueue { client_id, seq } => {
                if let Some(puts) = self.queued.remove(&(client_id.clone(), *seq)) {
                    let mut body = None;
                    for i in puts {
                        if let Some(Op::PutQueue { record, .. }) = self.ops[i].take() {
                            body = Some(record.body);
                            self.live -= 1;
                        }
                    }
                    if let Some(id) = body {
                        if let Some(b) = self.bodies.get_mut(&id) {
                            b.1 = b.1.saturating_sub(1);
                            if b.1 == 0 {
                                let (i, _) = *b;
                                self.bodies.remove(&id);
                                if self.ops[i].take().is_some() {
                                    self.live -= 1;
                                }
                            }
                        }
                    }
                    return;
                }
            }
            Op::PutIncoming {
                client_id,
                packet_id,
            } => {
                self.incoming.insert((client_id.clone(), *packet_id), at);
            }
            Op::DeleteIncoming {
                client_id,
                packet_id,
            } => {
                // The put goes; the delete stays (the key may have been in
                // redb before this window).
                if let Some(i) = self.incoming.remove(&(client_id.clone(), *packet_id)) {
                    if self.ops[i].take().is_some() {
                        self.live -= 1;
                    }
                }
            }
            Op::DeleteSession(c) => {
                // Applied in order; later operations on the same keys are
                // not paired with the ones before it.
                let from = (c.clone(), 0);
                let keys: Vec<_> = self
                    .queued
                    .range(from..)
                    .take_while(|(k, _)| k.0 == *c)
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in keys {
                    self.queued.remove(&k);
                }
                let keys: Vec<_> = self
                    .incoming
                    .range((c.clone(), 0)..)
                    .take_while(|(k, _)| k.0 == *c)
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in keys {
                    self.incoming.remove(&k);
                }
            }
            _ => {}
        }
        self.ops.push(Some(op));
        self.live += 1;
    }

    /// Operations still to apply.
    #[cfg(test)]
    pub(crate) fn live(&self) -> usize {
        self.live
    }

    /// Takes the operations to apply, in order, and starts a new window.
    pub(crate) fn take(&mut self) -> Vec<Op> {
        let ops = core::mem::take(&mut self.ops);
        *self = Self::default();
        ops.into_iter().flatten().collect()
    }
}
