//! The storage thread under a durable QoS 1 fan-in's load, without a
//! broker: what group commit costs before any protocol work.
//!
//! `cargo run --release -p tern-benches --example group_commit -- [RATE] [SECONDS] [PAYLOAD]`
//!
//! One submitter (as the broker's one core task) hands in, at `RATE`
//! messages a second (open loop, paced from the start time so a slow
//! commit does not lower the offered rate), one batch per message: its
//! body (`PAYLOAD` bytes), its queue entry for the one subscriber, and the
//! deletion of the queue entry of the message 16 before it (the subscriber's
//! PUBACK). `sync = always`. The latency is from submit to the `Synced`
//! report that covers it: the time a PUBACK would be held. With `RATE` 0
//! it submits as fast as it can and reports the rate the thread sustains.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tern_store::record::{BodyRecord, Delivery, QueueRecord, SessionRecord};
use tern_store::{Db, Op, Storage, Sync};

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("RATE SECONDS PAYLOAD: numbers"))
        .collect();
    let rate = args.first().copied().unwrap_or(10_000);
    let secs = args.get(1).copied().unwrap_or(5);
    let payload = args.get(2).copied().unwrap_or(64) as usize;
    let dir = std::env::temp_dir().join(format!("tern-store-group-commit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let db = Db::open(&dir).expect("store opens");
    db.apply(
        &[Op::PutSession(SessionRecord {
            client_id: "sub".into(),
            protocol: 5,
            expiry_interval: u32::MAX,
            expires_at_ms: None,
            user_name: None,
            will: None,
            will_due_ms: None,
        })],
        true,
    )
    .expect("session stored");

    // Submit times of batches not yet reported, and latencies measured.
    let pending: Arc<Mutex<VecDeque<(u64, Instant)>>> = Arc::default();
    let latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let commits = Arc::new(Mutex::new(0u64));
    let storage = {
        let pending = pending.clone();
        let latencies = latencies.clone();
        let commits = commits.clone();
        Storage::spawn(db, Sync::Always, move |r| {
            let seq = r.expect("commit").seq;
            let now = Instant::now();
            *commits.lock().unwrap() += 1;
            let mut p = pending.lock().unwrap();
            let mut l = latencies.lock().unwrap();
            while p.front().is_some_and(|(s, _)| *s <= seq) {
                let (_, at) = p.pop_front().unwrap();
                l.push(now - at);
            }
        })
    };

    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut seq = 0u64;
    while Instant::now() < end {
        if rate > 0 {
            let due = start + Duration::from_secs_f64(seq as f64 / rate as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        } else if pending.lock().unwrap().len() > 20_000 {
            std::thread::yield_now();
            continue;
        }
        seq += 1;
        let mut ops = vec![
            Op::PutBody {
                id: seq,
                body: BodyRecord {
                    topic: "plant/7/temp".into(),
                    payload: vec![0x5a; payload],
                    qos: 1,
                    retain: false,
                    properties: vec![],
                    expires_at_ms: None,
                    owner: None,
                },
            },
            Op::PutQueue {
                client_id: "sub".into(),
                seq,
                record: QueueRecord {
                    body: seq,
                    qos: 1,
                    delivery: Delivery::Queued,
                    subscription_ids: Vec::new(),
                },
            },
        ];
        if seq > 16 {
            ops.push(Op::DeleteQueue {
                client_id: "sub".into(),
                seq: seq - 16,
            });
        }
        pending.lock().unwrap().push_back((seq, Instant::now()));
        storage.submit(seq, ops);
    }
    let submitted = start.elapsed();
    storage.close();
    let elapsed = start.elapsed();
    let mut l = latencies.lock().unwrap().clone();
    l.sort();
    let q = |p: f64| l[((l.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3;
    let commits = *commits.lock().unwrap();
    println!(
        "offered {} msg/s for {secs} s ({payload} B): {seq} messages, {:.0} msg/s stored, {commits} commits ({:.1} messages each), held p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (submitting took {:.2} s)",
        if rate == 0 {
            "max".to_string()
        } else {
            rate.to_string()
        },
        seq as f64 / elapsed.as_secs_f64(),
        seq as f64 / commits.max(1) as f64,
        q(0.5),
        q(0.99),
        q(1.0),
        submitted.as_secs_f64(),
    );
    let _ = std::fs::remove_dir_all(&dir);
}
