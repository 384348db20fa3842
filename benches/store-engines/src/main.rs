//! redb against fjall on the durable broker's workload (issue 14).
//!
//! `cargo run --release --manifest-path benches/store-engines/Cargo.toml -- [RECORDS] [BATCH] [WRITERS]`
//!
//! The workload, the same for both engines, in one process, one after the other:
//!
//! - `WRITERS` logical writers (sessions), keys `session (u32 BE) ++ seq (u64 BE)`,
//!   values of 100 bytes (a queue entry or a small message body);
//! - batches of `BATCH` writes taken round-robin from the writers, each batch
//!   one transaction made durable with one fsync (group commit);
//! - half the sessions are online: their entries are deleted four batches
//!   after they were written (delivered and acknowledged), in the same
//!   transaction as that batch's writes; the other half are offline and
//!   keep theirs;
//! - then a range scan of every offline session's prefix, the disk used,
//!   every offline session drained (deleted, in batches), the disk used
//!   again, and the time to reopen;
//! - last, torn-tail and corruption trials on copies of the directory: the
//!   last 100 bytes of the newest file cut off, and one byte in the middle
//!   of the largest file flipped; does the engine open, and how many records
//!   does it return?
//!
//! Figures go to stdout as a Markdown table, for BENCHMARKS.md.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const VALUE: [u8; 100] = [0x5a; 100];
/// Deletes trail writes by this many batches.
const LAG: usize = 4;

fn key(session: u32, seq: u64) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..4].copy_from_slice(&session.to_be_bytes());
    k[4..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// One engine under test.
trait Engine {
    fn name(&self) -> &'static str;
    /// Writes `puts` and deletes `dels` in one durable transaction.
    fn commit(&mut self, puts: &[[u8; 12]], dels: &[[u8; 12]]);
    /// Entries under a session's prefix.
    fn scan(&self, session: u32) -> usize;
    /// Every entry.
    fn count(&self) -> usize;
}

struct Redb {
    db: redb::Database,
}

const TABLE: redb::TableDefinition<'_, &[u8], &[u8]> = redb::TableDefinition::new("q");

impl Redb {
    fn open(dir: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let db = redb::Database::create(dir.join("db.redb")).map_err(|e| e.to_string())?;
        let txn = db.begin_write().map_err(|e| e.to_string())?;
        txn.open_table(TABLE).map_err(|e| e.to_string())?;
        txn.commit().map_err(|e| e.to_string())?;
        Ok(Self { db })
    }
}

impl Engine for Redb {
    fn name(&self) -> &'static str {
        "redb 2.6"
    }
    fn commit(&mut self, puts: &[[u8; 12]], dels: &[[u8; 12]]) {
        let mut txn = self.db.begin_write().unwrap();
        txn.set_durability(redb::Durability::Immediate);
        {
            let mut t = txn.open_table(TABLE).unwrap();
            for k in puts {
                t.insert(&k[..], &VALUE[..]).unwrap();
            }
            for k in dels {
                t.remove(&k[..]).unwrap();
            }
        }
        txn.commit().unwrap();
    }
    fn scan(&self, session: u32) -> usize {
        let txn = self.db.begin_read().unwrap();
        let t = txn.open_table(TABLE).unwrap();
        let lo = key(session, 0);
        let hi = key(session, u64::MAX);
        t.range(&lo[..]..=&hi[..]).unwrap().count()
    }
    fn count(&self) -> usize {
        use redb::ReadableTableMetadata;
        let txn = self.db.begin_read().unwrap();
        let t = txn.open_table(TABLE).unwrap();
        t.len().unwrap() as usize
    }
}

struct Fjall {
    ks: fjall::Keyspace,
    part: fjall::PartitionHandle,
}

impl Fjall {
    fn open(dir: &Path) -> Result<Self, String> {
        let ks = fjall::Config::new(dir)
            // The broker decides when to sync: once per batch.
            .manual_journal_persist(true)
            .open()
            .map_err(|e| e.to_string())?;
        let part = ks
            .open_partition("q", fjall::PartitionCreateOptions::default())
            .map_err(|e| e.to_string())?;
        Ok(Self { ks, part })
    }
}

impl Engine for Fjall {
    fn name(&self) -> &'static str {
        "fjall 2.11"
    }
    fn commit(&mut self, puts: &[[u8; 12]], dels: &[[u8; 12]]) {
        let mut b = self
            .ks
            .batch()
            .durability(Some(fjall::PersistMode::SyncAll));
        for k in puts {
            b.insert(&self.part, &k[..], &VALUE[..]);
        }
        for k in dels {
            b.remove(&self.part, &k[..]);
        }
        b.commit().unwrap();
    }
    fn scan(&self, session: u32) -> usize {
        self.part.prefix(session.to_be_bytes()).count()
    }
    fn count(&self) -> usize {
        self.part.iter().count()
    }
}

fn disk(dir: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let m = e.metadata().unwrap();
        n += if m.is_dir() { disk(&e.path()) } else { m.len() };
    }
    n
}

fn files(dir: &Path, out: &mut Vec<(PathBuf, std::fs::Metadata)>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let m = e.metadata().unwrap();
        if m.is_dir() {
            files(&e.path(), out);
        } else {
            out.push((e.path(), m));
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let t = to.join(e.file_name());
        if e.metadata().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), t).unwrap();
        }
    }
}

struct Figures {
    name: &'static str,
    writes_per_s: f64,
    p50: Duration,
    p99: Duration,
    scan_per_session: Duration,
    disk_live: u64,
    disk_drained: u64,
    reopen: Duration,
    torn: String,
    flipped: String,
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p) as usize]
}

fn run<E: Engine>(
    open: impl Fn(&Path) -> Result<E, String>,
    dir: &Path,
    records: usize,
    batch: usize,
    writers: u32,
) -> Figures {
    let _ = std::fs::remove_dir_all(dir);
    let mut e = open(dir).unwrap();
    let name = e.name();
    let mut seq = vec![0u64; writers as usize];
    let mut history: Vec<Vec<[u8; 12]>> = Vec::new();
    let mut lat = Vec::new();
    let start = Instant::now();
    let mut w = 0u32;
    for _ in 0..records / batch {
        let puts: Vec<[u8; 12]> = (0..batch)
            .map(|_| {
                let s = w;
                w = (w + 1) % writers;
                seq[s as usize] += 1;
                key(s, seq[s as usize])
            })
            .collect();
        // Online sessions (even ids) acknowledge LAG batches later.
        let dels: Vec<[u8; 12]> = if history.len() >= LAG {
            history[history.len() - LAG]
                .iter()
                .filter(|k| k[3] % 2 == 0)
                .copied()
                .collect()
        } else {
            Vec::new()
        };
        let t = Instant::now();
        e.commit(&puts, &dels);
        lat.push(t.elapsed());
        history.push(puts);
    }
    let elapsed = start.elapsed();
    let writes_per_s = (records / batch * batch) as f64 / elapsed.as_secs_f64();

    let t = Instant::now();
    let mut offline = 0;
    for s in (1..writers).step_by(2) {
        offline += e.scan(s);
    }
    let scan_per_session = t.elapsed() / (writers / 2);
    assert!(offline > 0);
    let disk_live = disk(dir);

    // Drain every offline session, in batches, as their clients come back.
    let mut all: Vec<[u8; 12]> = history
        .iter()
        .flatten()
        .filter(|k| k[3] % 2 == 1)
        .copied()
        .collect();
    // And the online sessions' last LAG batches.
    for h in history.iter().rev().take(LAG) {
        all.extend(h.iter().filter(|k| k[3] % 2 == 0));
    }
    for chunk in all.chunks(batch * 4) {
        e.commit(&[], chunk);
    }
    assert_eq!(e.count(), 0);
    drop(e);
    let disk_drained = disk(dir);

    // Reopen a live store: write one backlog again, then reopen it.
    let _ = std::fs::remove_dir_all(dir);
    let mut e = open(dir).unwrap();
    let mut n = 0u64;
    for _ in 0..records / batch {
        let puts: Vec<[u8; 12]> = (0..batch)
            .map(|i| {
                n += 1;
                key(i as u32 % writers, n)
            })
            .collect();
        e.commit(&puts, &[]);
    }
    let live = e.count();
    drop(e);
    let t = Instant::now();
    let e = open(dir).unwrap();
    let reopened = e.count();
    let reopen = t.elapsed();
    assert_eq!(live, reopened);
    drop(e);

    // Torn tail: the newest file loses its last 100 bytes.
    let torn = {
        let d = dir.with_extension("torn");
        let _ = std::fs::remove_dir_all(&d);
        copy_dir(dir, &d);
        let mut fs = Vec::new();
        files(&d, &mut fs);
        fs.retain(|(_, m)| m.len() > 100);
        fs.sort_by_key(|(_, m)| m.modified().unwrap());
        let (p, m) = fs.last().unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
        f.set_len(m.len() - 100).unwrap();
        drop(f);
        let r = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            open(&d).map(|e| e.count())
        })) {
            Ok(Ok(c)) => format!("opens, {c} of {live}"),
            Ok(Err(err)) => format!("refuses: {}", err.chars().take(60).collect::<String>()),
            Err(_) => "panics".to_string(),
        };
        let _ = std::fs::remove_dir_all(&d);
        r
    };
    // Corruption: one byte in the middle of the largest file flipped.
    let flipped = {
        let d = dir.with_extension("flip");
        let _ = std::fs::remove_dir_all(&d);
        copy_dir(dir, &d);
        let mut fs = Vec::new();
        files(&d, &mut fs);
        fs.sort_by_key(|(_, m)| m.len());
        let (p, _) = fs.last().unwrap();
        let mut bytes = std::fs::read(p).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(p, bytes).unwrap();
        let r = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            open(&d).map(|e| e.count())
        })) {
            Ok(Ok(c)) => format!("opens, {c} of {live}"),
            Ok(Err(err)) => format!("refuses: {}", err.chars().take(60).collect::<String>()),
            Err(_) => "panics".to_string(),
        };
        let _ = std::fs::remove_dir_all(&d);
        r
    };
    let _ = std::fs::remove_dir_all(dir);
    Figures {
        name,
        writes_per_s,
        p50: pct(&mut lat, 0.5),
        p99: pct(&mut lat, 0.99),
        scan_per_session,
        disk_live,
        disk_drained,
        reopen,
        torn,
        flipped,
    }
}

/// The child of the crash trial: writes `records` in batches, then aborts
/// without closing the database.
fn crash_child(engine: &str, dir: &Path, records: usize, batch: usize) -> ! {
    fn fill<E: Engine>(mut e: E, records: usize, batch: usize) {
        let mut n = 0u64;
        for _ in 0..records / batch {
            let puts: Vec<[u8; 12]> = (0..batch)
                .map(|i| {
                    n += 1;
                    key(i as u32 % 64, n)
                })
                .collect();
            e.commit(&puts, &[]);
        }
    }
    match engine {
        "redb" => fill(Redb::open(dir).unwrap(), records, batch),
        _ => fill(Fjall::open(dir).unwrap(), records, batch),
    }
    std::process::abort()
}

/// Reopen after a process that wrote `records` was killed: how long, and
/// how many records came back.
fn reopen_after_abort<E: Engine>(
    engine: &str,
    open: impl Fn(&Path) -> Result<E, String>,
    dir: &Path,
    records: usize,
    batch: usize,
) -> String {
    let _ = std::fs::remove_dir_all(dir);
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["crash", engine])
        .arg(dir)
        .args([records.to_string(), batch.to_string()])
        .status()
        .unwrap();
    assert!(!status.success());
    let t = Instant::now();
    let e = open(dir).unwrap();
    let n = e.count();
    let r = format!(
        "{:.1} ms, {n} of {}",
        t.elapsed().as_secs_f64() * 1e3,
        records / batch * batch
    );
    drop(e);
    let _ = std::fs::remove_dir_all(dir);
    r
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("crash") {
        crash_child(
            &argv[2],
            Path::new(&argv[3]),
            argv[4].parse().unwrap(),
            argv[5].parse().unwrap(),
        );
    }
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("RECORDS BATCH WRITERS: numbers"))
        .collect();
    let records = args.first().copied().unwrap_or(200_000);
    let batch = args.get(1).copied().unwrap_or(64);
    let writers = args.get(2).copied().unwrap_or(64) as u32;
    let base = std::env::temp_dir().join(format!("tern-store-engines-{}", std::process::id()));
    std::fs::create_dir_all(&base).unwrap();
    println!(
        "{records} writes of 100 B, batches of {batch} (one fsync each), {writers} sessions, half offline"
    );
    println!();
    println!(
        "| engine | writes/s | commit p50 | commit p99 | scan / offline session | disk, backlog live | disk, all drained | reopen | last 100 B torn | one byte flipped |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let figs = [
        run(Redb::open, &base.join("redb"), records, batch, writers),
        run(Fjall::open, &base.join("fjall"), records, batch, writers),
    ];
    for f in figs {
        println!(
            "| {} | {:.0} | {:.2} ms | {:.2} ms | {:.0} µs | {:.1} MB | {:.1} MB | {:.1} ms | {} | {} |",
            f.name,
            f.writes_per_s,
            f.p50.as_secs_f64() * 1e3,
            f.p99.as_secs_f64() * 1e3,
            f.scan_per_session.as_secs_f64() * 1e6,
            f.disk_live as f64 / 1e6,
            f.disk_drained as f64 / 1e6,
            f.reopen.as_secs_f64() * 1e3,
            f.torn,
            f.flipped,
        );
    }
    println!();
    println!("Reopen after the writing process aborted (no clean close) with {records} records:");
    println!(
        "redb: {}; fjall: {}",
        reopen_after_abort("redb", Redb::open, &base.join("redb-crash"), records, batch),
        reopen_after_abort(
            "fjall",
            Fjall::open,
            &base.join("fjall-crash"),
            records,
            batch
        ),
    );
    let _ = std::fs::remove_dir_all(&base);
}
