//! The storage thread's promise against a real `kill -9`: a child process
//! (this test binary, re-run as `child_writer`) writes batches the way a
//! broker would (sessions, bodies shared by queue entries, deliveries
//! deleted soon after) and prints each sequence number the thread reports
//! synced; the parent SIGKILLs it at a different moment each run, reopens
//! the directory and checks that every batch reported synced is there, that
//! no batch is half there, and that `check` finds the references sound.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use tern_store::record::{BodyRecord, Delivery, QueueRecord, SessionRecord};
use tern_store::{Db, Op, Storage, Sync};

const CHILD_DIR: &str = "TERN_STORE_KILL9_DIR";

#[path = "support/batches.rs"]
mod batches;

fn batch(seq: u64) -> Vec<Op> {
    batches::batch(seq, 5, 100)
}

/// Not a test on its own: the child the parent kills (it returns at once
/// unless the parent set its directory).
#[test]
fn child_writer() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let db = Db::open(std::path::Path::new(&dir)).unwrap();
    let storage = Storage::spawn(db, Sync::Always, |r| {
        println!("synced {}", r.unwrap().seq);
    });
    // Paced like connections handing in work: several batches gather
    // during each fsync and go out in one commit.
    for seq in 1..=20_000u64 {
        storage.submit(seq, batch(seq));
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    storage.close();
}

#[test]
fn every_reported_batch_survives_sigkill() {
    let exe = std::env::current_exe().unwrap();
    for (run, kill_after) in [1u64, 4, 13, 40].into_iter().enumerate() {
        let dir =
            std::env::temp_dir().join(format!("tern-store-kill9-{}-{run}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "child_writer",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_DIR, &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut reports = 0;
        let mut synced = 0u64;
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            if let Some(n) = line.strip_prefix("synced ") {
                synced = n.parse().unwrap();
                reports += 1;
                if reports == kill_after {
                    break;
                }
            }
        }
        // SIGKILL, by PID, mid-stream: later batches may be half written.
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(synced > 0, "run {run}: the child reported nothing");

        let report = tern_store::check(&dir).unwrap();
        assert_eq!(report.problems, Vec::<String>::new(), "run {run}");
        let loaded = Db::open(&dir).unwrap().load().unwrap();
        assert_eq!(loaded.set_aside, 0, "run {run}");
        let stored: std::collections::BTreeMap<u64, usize> = loaded
            .sessions
            .iter()
            .map(|s| (s.record.client_id[1..].parse().unwrap(), s.queue.len()))
            .collect();
        let last = *stored.keys().last().unwrap();
        assert!(
            last >= synced,
            "run {run}: synced {synced}, stored up to {last}"
        );
        // Every batch up to the last stored is whole: no gaps, and each
        // session's queue is as its batch and the later delivery left it.
        for seq in 1..=last {
            let want = if seq + 2 <= last { 1 } else { 2 };
            assert_eq!(
                stored.get(&seq),
                Some(&want),
                "run {run}: batch {seq} of {last} (synced {synced})"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
