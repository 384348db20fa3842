//! A simulated disk for the crash simulator (feature `sim`): the store's
//! two files in memory, with what was synced kept apart from what was only
//! written, and a crash that keeps what a real machine could keep.
//!
//! - Writes land in the file as the program sees it (`current`) and are
//!   remembered, in order, until a sync makes the file's image durable.
//! - [`SimDisk::crash`] returns the disk as it is found after the crash,
//!   chosen from a seed: a *power cut* keeps only each file's synced image,
//!   except that the last unsynced write may survive torn (a prefix of it
//!   kept) or garbled (all of it there, some bytes wrong); a *process
//!   crash* keeps every write (the kernel had them). The old disk is dead
//!   afterwards: whatever the crashed store still does to it fails.
//! - [`SimDisk::fail_sync`] makes a later sync fail (a disk error): nothing
//!   it would have covered becomes durable.
//!
//! The log's file implements [`LogFile`] and the database's
//! redb's `StorageBackend`, so the production code runs on it unchanged.

use crate::files::LogFile;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

/// One write since the file's last sync.
#[derive(Debug, Clone)]
enum Write {
    Data(u64, Vec<u8>),
    /// Zeros (the log's chunks ahead of its writes), kept as a length.
    Zeros(u64, u64),
    Len(u64),
}

/// A file's contents: the bytes up to the end of its last non-zero
/// write, and its length, zeros beyond (so the log's zero-filled chunks
/// cost no copies).
#[derive(Debug, Clone, Default)]
struct Image {
    bytes: Vec<u8>,
    len: usize,
}

impl Image {
    fn set_len(&mut self, n: usize) {
        self.bytes.truncate(n);
        self.len = n;
    }

    fn write(&mut self, o: usize, data: &[u8]) {
        let end = o + data.len();
        self.len = self.len.max(end);
        if self.bytes.len() < end {
            self.bytes.resize(end, 0);
        }
        self.bytes[o..end].copy_from_slice(data);
    }

    fn zeros(&mut self, o: usize, n: usize) {
        self.len = self.len.max(o + n);
        let have = self.bytes.len().min(o + n);
        if o < have {
            self.bytes[o..have].fill(0);
        }
    }

    fn read(&self, o: usize, n: usize) -> Option<Vec<u8>> {
        if o + n > self.len {
            return None;
        }
        let mut out = vec![0; n];
        let have = self.bytes.len().min(o + n);
        if o < have {
            out[..have - o].copy_from_slice(&self.bytes[o..have]);
        }
        Some(out)
    }

    fn to_vec(&self) -> Vec<u8> {
        let mut out = vec![0; self.len];
        out[..self.bytes.len()].copy_from_slice(&self.bytes);
        out
    }
}

#[derive(Debug, Clone, Default)]
struct FileState {
    /// The image as of its last sync.
    durable: Image,
    /// The image as the program sees it.
    current: Image,
    /// Writes since the last sync, in order.
    pending: Vec<Write>,
}

#[derive(Debug, Default)]
struct State {
    files: BTreeMap<String, FileState>,
    /// Syncs so far.
    syncs: u64,
    /// The sync with this number fails.
    fail_at: Option<u64>,
    /// The disk crashed: every write and sync fails.
    dead: bool,
}

/// The simulated disk: cheap to clone, every clone the same disk.
#[derive(Debug, Clone, Default)]
pub struct SimDisk(Arc<Mutex<State>>);

/// One file on a [`SimDisk`].
#[derive(Debug, Clone)]
pub struct SimFile {
    disk: SimDisk,
    name: String,
}

/// What a crash kept of the last unsynced write of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// Nothing was unsynced.
    Clean,
    /// Every unsynced write was lost.
    Lost,
    /// The first `n` bytes of the last write survived, the rest was lost.
    Torn(usize),
    /// The last write survived with bytes garbled.
    Garbled,
    /// Every write survived (a process crash: the kernel had them).
    All,
}

/// SplitMix64, for the crash's choices: one seed, one outcome.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n.max(1)
    }
}

fn failed(what: &str) -> std::io::Error {
    std::io::Error::other(format!("simulated disk: {what}"))
}

fn apply(image: &mut Image, w: &Write) {
    match w {
        Write::Len(n) => image.set_len(*n as usize),
        Write::Data(offset, data) => image.write(*offset as usize, data),
        Write::Zeros(offset, n) => image.zeros(*offset as usize, *n as usize),
    }
}

impl SimDisk {
    /// An empty disk.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The file `name` (created empty when first written).
    pub fn file(&self, name: &str) -> SimFile {
        SimFile {
            disk: self.clone(),
            name: name.to_string(),
        }
    }

    /// Renames `name` to `name.corrupt-N` (as the store does with a
    /// database file it cannot open) and returns the new name.
    pub fn set_aside(&self, name: &str) -> String {
        self.with(|s| {
            let aside = (0..)
                .map(|n| format!("{name}.corrupt-{n}"))
                .find(|n| !s.files.contains_key(n))
                .unwrap_or_default();
            if let Some(f) = s.files.remove(name) {
                s.files.insert(aside.clone(), f);
            }
            aside
        })
    }

    /// The names of the files on the disk.
    pub fn names(&self) -> Vec<String> {
        self.with(|s| s.files.keys().cloned().collect())
    }

    /// Makes the `n`th sync from now fail (1: the next one).
    pub fn fail_sync(&self, n: u64) {
        self.with(|s| s.fail_at = Some(s.syncs + n.max(1)));
    }

    /// Bytes written and not yet synced, over every file.
    pub fn unsynced_bytes(&self) -> usize {
        self.with(|s| {
            s.files
                .values()
                .flat_map(|f| &f.pending)
                .map(|w| match w {
                    Write::Data(_, d) => d.len(),
                    Write::Zeros(_, n) => *n as usize,
                    Write::Len(_) => 0,
                })
                .sum()
        })
    }

    /// The disk as found after a crash at this moment, the choices made
    /// from `seed`; this disk is dead from now on. Also returns what each
    /// file kept of its unsynced writes.
    pub fn crash(&self, seed: u64) -> (SimDisk, Vec<(String, Kept)>) {
        let mut rng = Rng(seed);
        let power_cut = rng.below(4) != 0;
        let mut kept = Vec::new();
        let files = self.with(|s| {
            s.dead = true;
            let mut out = BTreeMap::new();
            for (name, f) in &s.files {
                let (image, k) = if f.pending.is_empty() {
                    (f.durable.clone(), Kept::Clean)
                } else if !power_cut {
                    (f.current.clone(), Kept::All)
                } else {
                    let mut image = f.durable.clone();
                    let last = f.pending.last().cloned();
                    let k = match (last, rng.below(3)) {
                        (Some(Write::Data(offset, data)), 1) => {
                            let n = rng.below(data.len() as u64) as usize;
                            apply(&mut image, &Write::Data(offset, data[..n].to_vec()));
                            Kept::Torn(n)
                        }
                        (Some(Write::Data(offset, mut data)), 2) if !data.is_empty() => {
                            let at = rng.below(data.len() as u64) as usize;
                            let n = 1 + rng.below(64.min(data.len() - at) as u64) as usize;
                            for b in &mut data[at..at + n] {
                                *b ^= 1 + rng.below(255) as u8;
                            }
                            apply(&mut image, &Write::Data(offset, data));
                            Kept::Garbled
                        }
                        (Some(Write::Zeros(offset, n)), 1 | 2) => {
                            let k = rng.below(n);
                            apply(&mut image, &Write::Zeros(offset, k));
                            Kept::Torn(k as usize)
                        }
                        (Some(w @ Write::Len(_)), 1 | 2) => {
                            apply(&mut image, &w);
                            Kept::Torn(0)
                        }
                        _ => Kept::Lost,
                    };
                    (image, k)
                };
                kept.push((name.clone(), k));
                out.insert(
                    name.clone(),
                    FileState {
                        durable: image.clone(),
                        current: image,
                        pending: Vec::new(),
                    },
                );
            }
            out
        });
        let after = SimDisk::new();
        after.with(|s| s.files = files);
        (after, kept)
    }
}

impl SimFile {
    fn write_op(&self, w: Write) -> std::io::Result<()> {
        self.disk.with(|s| {
            if s.dead {
                return Err(failed("the machine stopped"));
            }
            let f = s.files.entry(self.name.clone()).or_default();
            apply(&mut f.current, &w);
            f.pending.push(w);
            Ok(())
        })
    }

    fn sync(&self) -> std::io::Result<()> {
        self.disk.with(|s| {
            if s.dead {
                return Err(failed("the machine stopped"));
            }
            s.syncs += 1;
            if s.fail_at == Some(s.syncs) {
                return Err(failed("sync failed (injected)"));
            }
            let f = s.files.entry(self.name.clone()).or_default();
            // The synced image catches up by replaying the writes (cheaper
            // than copying a file mostly unchanged).
            for w in core::mem::take(&mut f.pending) {
                apply(&mut f.durable, &w);
            }
            Ok(())
        })
    }
}

impl LogFile for SimFile {
    fn read_all(&mut self) -> std::io::Result<Vec<u8>> {
        Ok(self.disk.with(|s| {
            s.files
                .get(&self.name)
                .map(|f| f.current.to_vec())
                .unwrap_or_default()
        }))
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        if data.len() > 4096 && data.iter().all(|&b| b == 0) {
            return self.write_op(Write::Zeros(offset, data.len() as u64));
        }
        self.write_op(Write::Data(offset, data.to_vec()))
    }

    fn sync_data(&mut self) -> std::io::Result<()> {
        self.sync()
    }

    fn sync_all(&mut self) -> std::io::Result<()> {
        self.sync()
    }
}

impl redb::StorageBackend for SimFile {
    fn len(&self) -> Result<u64, std::io::Error> {
        Ok(self
            .disk
            .with(|s| s.files.get(&self.name).map_or(0, |f| f.current.len as u64)))
    }

    fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, std::io::Error> {
        self.disk.with(|s| {
            let o = offset as usize;
            s.files
                .get(&self.name)
                .and_then(|f| f.current.read(o, len))
                .ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "read past the end")
                })
        })
    }

    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.write_op(Write::Len(len))
    }

    fn sync_data(&self, _eventual: bool) -> Result<(), std::io::Error> {
        self.sync()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.write_op(Write::Data(offset, data.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_keeps_what_was_synced_and_at_most_the_last_write_torn() {
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..200 {
            let disk = SimDisk::new();
            let mut f = disk.file("f");
            f.write_at(0, b"synced").unwrap();
            f.sync_data().unwrap();
            f.write_at(6, b"lost").unwrap();
            f.write_at(10, b"last").unwrap();
            let (after, kept) = disk.crash(seed);
            let image = after.file("f").read_all().unwrap();
            assert!(image.starts_with(b"synced"), "seed {seed}: {image:?}");
            match kept[0].1 {
                Kept::Lost => assert_eq!(image, b"synced"),
                Kept::All => assert_eq!(image, b"syncedlostlast"),
                Kept::Torn(n) => {
                    // The lost write's place reads as zeros.
                    let mut want = b"synced\0\0\0\0".to_vec();
                    want.extend_from_slice(&b"last"[..n]);
                    assert_eq!(image, want);
                }
                Kept::Garbled => {
                    assert_eq!(image.len(), 14);
                    assert_ne!(&image[10..], b"last");
                }
                Kept::Clean => panic!("seed {seed}: there were unsynced writes"),
            }
            seen.insert(
                format!("{:?}", kept[0].1)
                    .chars()
                    .take(4)
                    .collect::<String>(),
            );
            // The crashed disk is dead.
            assert!(f.write_at(0, b"x").is_err());
        }
        assert_eq!(seen.len(), 4, "every outcome over 200 seeds: {seen:?}");
    }

    #[test]
    fn an_injected_sync_failure_makes_nothing_durable() {
        let disk = SimDisk::new();
        let mut f = disk.file("f");
        f.write_at(0, b"a").unwrap();
        disk.fail_sync(1);
        assert!(f.sync_data().is_err());
        // A power cut that lost the last write keeps only what was synced:
        // nothing.
        let (after, kept) = (1..)
            .map(|seed| disk_after(&disk, seed))
            .find(|(_, k)| k[0].1 == Kept::Lost)
            .unwrap();
        assert_eq!(kept[0].0, "f");
        assert!(after.file("f").read_all().unwrap().is_empty());
    }

    use crate::power_loss::batches;
    use crate::{Db, LogWriter};

    /// One seed: groups appended to the log, some synced, checkpoints now
    /// and then, a sync that may fail, then a crash; the store reopened on
    /// what the disk kept must hold every synced group, whole, and only a
    /// gapless run of groups after them.
    fn log_seed(seed: u64) -> Result<(), String> {
        let mut rng = Rng(seed);
        let disk = SimDisk::new();
        let db = Db::open_on(&disk).map_err(|e| e.to_string())?;
        let mut log = LogWriter::new(db).map_err(|_| "no log")?;
        log.set_checkpoint_bytes(500 + rng.below(8_000));
        if rng.below(3) == 0 {
            disk.fail_sync(1 + rng.below(30));
        }
        let stop = 1 + rng.below(60);
        let mut synced = 0;
        for seq in 1..=stop {
            log.append(batches::batch(seq, 4, rng.below(300) as usize))
                .map_err(|e| e.to_string())?;
            if rng.below(3) != 0 {
                if log.sync().is_err() {
                    break;
                }
                synced = seq;
                if log.wants_checkpoint() && log.checkpoint().is_err() {
                    break;
                }
            }
        }
        let (after, kept) = disk.crash(rng.below(u64::MAX));
        drop(std::panic::catch_unwind(std::panic::AssertUnwindSafe(
            move || drop(log),
        )));
        let db = Db::open_on(&after).map_err(|e| format!("reopen: {e}"))?;
        let loaded = db.load().map_err(|e| e.to_string())?;
        if loaded.set_aside != 0 {
            return Err(format!("{} records set aside", loaded.set_aside));
        }
        let stored: BTreeMap<u64, usize> = loaded
            .sessions
            .iter()
            .map(|s| (s.record.client_id[1..].parse().unwrap_or(0), s.queue.len()))
            .collect();
        let last = stored.keys().last().copied().unwrap_or(0);
        if last < synced {
            return Err(format!(
                "synced up to {synced}, found up to {last} ({kept:?})"
            ));
        }
        for seq in 1..=last {
            let want = if seq + 2 <= last { 1 } else { 2 };
            if stored.get(&seq) != Some(&want) {
                return Err(format!(
                    "group {seq} of {last}: {:?} queue entries, not {want} ({kept:?})",
                    stored.get(&seq)
                ));
            }
        }
        Ok(())
    }

    #[test]
    fn every_synced_log_group_survives_a_simulated_crash_whole() {
        let failures: Vec<String> = (0..16)
            .filter_map(|s| log_seed(s).err().map(|e| format!("seed {s}: {e}")))
            .collect();
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// The crash of a copy of `disk` (crashing kills the disk it is called
    /// on).
    fn disk_after(disk: &SimDisk, seed: u64) -> (SimDisk, Vec<(String, Kept)>) {
        let copy = SimDisk::new();
        let files = disk.with(|s| s.files.clone());
        copy.with(|s| s.files = files);
        copy.crash(seed)
    }
}
