//! Power loss, simulated under redb: a storage backend that keeps what was
//! synced apart from what was only written, and a crash that keeps the
//! synced image plus a random subset of the later writes (a disk may
//! reorder them), the last of which may be torn at a 512-byte sector.
//! Over many seeds: every batch whose durable commit returned is there
//! after the crash, none is half there, and the references are sound.
//!
//! This is what `kill -9` cannot show (the kernel keeps a killed process's
//! writes): the promise of `sync = "always"` against the machine stopping.

use crate::db::{Db, Op};
use crate::record::{BodyRecord, Delivery, QueueRecord, SessionRecord};
use std::sync::{Arc, Mutex};

/// One write since the last sync.
#[derive(Debug, Clone)]
enum Write {
    Data(u64, Vec<u8>),
    Len(u64),
}

#[derive(Debug, Default)]
struct Disk {
    /// The image as of the last sync.
    durable: Vec<u8>,
    /// The image as the program sees it.
    current: Vec<u8>,
    /// Writes since the last sync, in order.
    pending: Vec<Write>,
    /// Writes left before the machine stops (`None`: no limit).
    budget: Option<usize>,
}

#[derive(Debug, Clone, Default)]
struct SimDisk(Arc<Mutex<Disk>>);

fn stopped() -> std::io::Error {
    std::io::Error::other("the machine stopped")
}

impl redb::StorageBackend for SimDisk {
    fn len(&self) -> Result<u64, std::io::Error> {
        Ok(self.0.lock().unwrap().current.len() as u64)
    }
    fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, std::io::Error> {
        let d = self.0.lock().unwrap();
        let o = offset as usize;
        d.current
            .get(o..o + len)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "read past the end")
            })
    }
    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        let mut d = self.0.lock().unwrap();
        d.spend()?;
        d.current.resize(len as usize, 0);
        d.pending.push(Write::Len(len));
        Ok(())
    }
    fn sync_data(&self, _eventual: bool) -> Result<(), std::io::Error> {
        let mut d = self.0.lock().unwrap();
        d.spend()?;
        d.durable = d.current.clone();
        d.pending.clear();
        Ok(())
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        let mut d = self.0.lock().unwrap();
        d.spend()?;
        let o = offset as usize;
        if d.current.len() < o + data.len() {
            d.current.resize(o + data.len(), 0);
        }
        d.current[o..o + data.len()].copy_from_slice(data);
        d.pending.push(Write::Data(offset, data.to_vec()));
        Ok(())
    }
}

impl Disk {
    fn spend(&mut self) -> Result<(), std::io::Error> {
        match &mut self.budget {
            Some(0) => Err(stopped()),
            Some(n) => {
                *n -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// The image after a power cut: the synced one, plus each later write
    /// with even odds, the last one kept torn at a sector boundary.
    fn crash(&self, rng: &mut Rng) -> Vec<u8> {
        let mut image = self.durable.clone();
        let kept: Vec<&Write> = self.pending.iter().filter(|_| rng.below(2) == 0).collect();
        for (i, w) in kept.iter().enumerate() {
            match w {
                Write::Len(n) => image.resize(*n as usize, 0),
                Write::Data(offset, data) => {
                    let mut data = &data[..];
                    if i + 1 == kept.len() && data.len() > 512 {
                        data = &data[..512 * rng.below(data.len() as u64 / 512) as usize];
                    }
                    let o = *offset as usize;
                    if image.len() < o + data.len() {
                        image.resize(o + data.len(), 0);
                    }
                    image[o..o + data.len()].copy_from_slice(data);
                }
            }
        }
        image
    }
}

/// SplitMix64: one seed replays a run.
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

#[path = "../tests/support/batches.rs"]
pub(crate) mod batches;

fn batch(seq: u64) -> Vec<Op> {
    batches::batch(seq, 4, 300)
}

/// One seed: batches committed durably until the machine stops at a random
/// write, then a power cut, then start-up on what the disk kept.
fn one_seed(seed: u64) -> Result<(), String> {
    let mut rng = Rng(seed);
    let disk = SimDisk::default();
    let db = Db::with_backend(disk.clone()).map_err(|e| e.to_string())?;
    disk.0.lock().unwrap().budget = Some(1 + rng.below(400) as usize);
    let mut committed = 0u64;
    for seq in 1..=1_000u64 {
        match db.apply(&batch(seq), true) {
            Ok(()) => committed = seq,
            Err(_) => break,
        }
    }
    // redb may panic on the way down once its storage fails: it is gone.
    drop(std::panic::catch_unwind(std::panic::AssertUnwindSafe(
        move || drop(db),
    )));
    let image = disk.0.lock().unwrap().crash(&mut rng);
    let after = SimDisk::default();
    {
        let mut d = after.0.lock().unwrap();
        d.current = image.clone();
        d.durable = image;
    }
    let db = Db::with_backend(after).map_err(|e| format!("reopen: {e}"))?;
    let problems = crate::inspect::check_db(&db)
        .map_err(|e| e.to_string())?
        .problems;
    if !problems.is_empty() {
        return Err(format!("check: {problems:?}"));
    }
    let loaded = db.load().map_err(|e| e.to_string())?;
    if loaded.set_aside != 0 {
        return Err(format!("{} records set aside", loaded.set_aside));
    }
    let stored: std::collections::BTreeMap<u64, usize> = loaded
        .sessions
        .iter()
        .map(|s| (s.record.client_id[1..].parse().unwrap_or(0), s.queue.len()))
        .collect();
    let last = stored.keys().last().copied().unwrap_or(0);
    if last < committed {
        return Err(format!("committed {committed}, found up to {last}"));
    }
    if last > committed + 1 {
        return Err(format!("committed {committed}, found {last}"));
    }
    for seq in 1..=last {
        let want = if seq + 2 <= last { 1 } else { 2 };
        if stored.get(&seq) != Some(&want) {
            return Err(format!(
                "batch {seq} of {last}: {:?} queue entries, not {want}",
                stored.get(&seq)
            ));
        }
    }
    Ok(())
}

#[test]
fn every_durable_commit_survives_power_loss() {
    let seeds: u64 = std::env::var("TERN_STORE_POWER_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let failures: Vec<String> = (0..seeds)
        .filter_map(|s| one_seed(s).err().map(|e| format!("seed {s}: {e}")))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {seeds} seeds failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
