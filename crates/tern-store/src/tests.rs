//! Stories against a real database file in a temporary directory.

use crate::db::{Db, Op, QUEUE, SESSIONS, client_key};
use crate::record::{BodyRecord, Delivery, QueueRecord, SessionRecord, SubscriptionRecord};
use crate::{Storage, Sync, check, dump};
use redb::ReadableTable;
use std::path::PathBuf;

/// A fresh directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("tern-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn session(id: &str) -> SessionRecord {
    SessionRecord {
        client_id: id.into(),
        protocol: 5,
        expiry_interval: 3600,
        expires_at_ms: Some(1_000),
        user_name: Some("u".into()),
        will: Some(vec![1, 2, 3]),
        will_due_ms: None,
    }
}

fn body(topic: &str) -> BodyRecord {
    BodyRecord {
        topic: topic.into(),
        payload: b"hello".to_vec(),
        qos: 1,
        retain: false,
        properties: vec![],
        expires_at_ms: None,
        owner: None,
    }
}

fn queued(body: u64) -> QueueRecord {
    QueueRecord {
        body,
        qos: 1,
        delivery: Delivery::Queued,
        subscription_ids: vec![7],
    }
}

fn put_queue(c: &str, seq: u64, body: u64) -> Op {
    Op::PutQueue {
        client_id: c.into(),
        seq,
        record: queued(body),
    }
}

#[test]
fn everything_comes_back_after_reopen() {
    let dir = TempDir::new("reopen");
    {
        let db = Db::open(&dir.0).unwrap();
        db.apply(
            &[
                Op::PutSession(session("a")),
                Op::PutSubscription {
                    client_id: "a".into(),
                    filter: "t/#".into(),
                    record: SubscriptionRecord {
                        options: 1,
                        identifier: Some(7),
                    },
                },
                Op::PutBody {
                    id: 5,
                    body: body("t/1"),
                },
                put_queue("a", 1, 5),
                Op::PutQueue {
                    client_id: "a".into(),
                    seq: 2,
                    record: QueueRecord {
                        delivery: Delivery::Sent(9),
                        ..queued(5)
                    },
                },
                Op::PutIncoming {
                    client_id: "a".into(),
                    packet_id: 3,
                },
                Op::PutRetained {
                    topic: "r".into(),
                    body: body("r"),
                },
                Op::Clock(42),
            ],
            true,
        )
        .unwrap();
    }
    let loaded = Db::open(&dir.0).unwrap().load().unwrap();
    assert_eq!(loaded.sessions.len(), 1);
    let s = &loaded.sessions[0];
    assert_eq!(s.record, session("a"));
    assert_eq!(
        s.subscriptions,
        vec![(
            "t/#".to_string(),
            SubscriptionRecord {
                options: 1,
                identifier: Some(7)
            }
        )]
    );
    assert_eq!(s.queue.len(), 2);
    assert_eq!(s.queue[1].1.delivery, Delivery::Sent(9));
    assert_eq!(s.incoming, vec![3]);
    assert_eq!(loaded.retained, vec![("r".to_string(), body("r"))]);
    assert_eq!(loaded.clock_ms, 42);
    assert_eq!(loaded.next_body_id, 6);
    assert_eq!(loaded.set_aside, 0);
    assert_eq!(check(&dir.0).unwrap().problems, Vec::<String>::new());
}

#[test]
fn a_body_is_written_once_and_goes_with_its_last_reference() {
    let dir = TempDir::new("refs");
    let db = Db::open(&dir.0).unwrap();
    db.apply(
        &[
            Op::PutSession(session("a")),
            Op::PutSession(session("b")),
            Op::PutBody {
                id: 1,
                body: body("t"),
            },
            put_queue("a", 1, 1),
            put_queue("b", 1, 1),
            // Delivered to nobody in its own batch: reclaimed at once.
            Op::PutBody {
                id: 2,
                body: body("t"),
            },
        ],
        true,
    )
    .unwrap();
    assert_eq!(db.body(1).unwrap(), Some(body("t")));
    assert_eq!(db.body(2).unwrap(), None);
    // A flow-state change keeps the one reference.
    db.apply(
        &[Op::PutQueue {
            client_id: "a".into(),
            seq: 1,
            record: QueueRecord {
                delivery: Delivery::Sent(1),
                ..queued(1)
            },
        }],
        true,
    )
    .unwrap();
    db.apply(
        &[Op::DeleteQueue {
            client_id: "a".into(),
            seq: 1,
        }],
        true,
    )
    .unwrap();
    assert!(db.body(1).unwrap().is_some());
    drop(db);
    assert_eq!(check(&dir.0).unwrap().problems, Vec::<String>::new());
    let db = Db::open(&dir.0).unwrap();
    // The session ending drops its queue and so the body.
    db.apply(&[Op::DeleteSession("b".into())], true).unwrap();
    assert_eq!(db.body(1).unwrap(), None);
    let counts = db.counts().unwrap();
    for t in ["bodies", "refs", "queue"] {
        assert_eq!(counts.iter().find(|c| c.0 == t).unwrap().1, 0, "{t}");
    }
    drop(db);
    assert_eq!(check(&dir.0).unwrap().problems, Vec::<String>::new());
}

#[test]
fn a_corrupt_record_is_set_aside_and_start_up_goes_on() {
    let dir = TempDir::new("corrupt");
    let db = Db::open(&dir.0).unwrap();
    db.apply(
        &[
            Op::PutSession(session("a")),
            Op::PutSession(session("b")),
            Op::PutBody {
                id: 1,
                body: body("t"),
            },
            put_queue("a", 1, 1),
            put_queue("b", 1, 1),
        ],
        true,
    )
    .unwrap();
    // Damage b's session record and a's queue entry in place.
    {
        let txn = db.db.begin_write().unwrap();
        {
            let mut t = txn.open_table(SESSIONS).unwrap();
            let mut v = t.get(&b"b"[..]).unwrap().unwrap().value().to_vec();
            v[3] ^= 0x40;
            t.insert(&b"b"[..], &v[..]).unwrap();
            let mut q = txn.open_table(QUEUE).unwrap();
            q.insert(&client_key("a", &1u64.to_be_bytes())[..], &b"junk"[..])
                .unwrap();
        }
        txn.commit().unwrap();
    }
    drop(db);
    let problems = check(&dir.0).unwrap().problems;
    assert!(problems.len() >= 2, "{problems:?}");
    let db = Db::open(&dir.0).unwrap();
    let loaded = db.load().unwrap();
    // b's session and its (orphaned) queue entry, and a's junk entry.
    assert_eq!(loaded.set_aside, 3);
    assert_eq!(loaded.sessions.len(), 1);
    assert_eq!(loaded.sessions[0].record.client_id, "a");
    assert!(loaded.sessions[0].queue.is_empty());
    // Set aside, not lost: the raw records are kept for an operator.
    let aside = db
        .counts()
        .unwrap()
        .into_iter()
        .find(|c| c.0 == "set_aside")
        .unwrap()
        .1;
    assert_eq!(aside, 3);
    // Loading again finds nothing more wrong.
    assert_eq!(db.load().unwrap().set_aside, 0);
}

#[test]
fn a_damaged_file_is_set_aside_and_the_broker_starts_empty() {
    let dir = TempDir::new("damaged");
    {
        let db = Db::open(&dir.0).unwrap();
        let ops: Vec<Op> = (0..200)
            .map(|i| Op::PutSession(session(&format!("c{i}"))))
            .collect();
        db.apply(&ops, true).unwrap();
    }
    let f = dir.0.join(crate::FILE);
    let len = std::fs::metadata(&f).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&f)
        .unwrap()
        .set_len(len / 3)
        .unwrap();
    // An operator's check reports it and changes nothing.
    assert!(check(&dir.0).is_err());
    assert_eq!(std::fs::metadata(&f).unwrap().len(), len / 3);
    // The broker starts anyway, on an empty store, the old file kept.
    let db = Db::open(&dir.0).unwrap();
    assert!(db.load().unwrap().sessions.is_empty());
    assert!(dir.0.join(format!("{}.corrupt-0", crate::FILE)).is_file());
}

#[test]
fn a_second_opener_is_refused_by_name() {
    let dir = TempDir::new("inuse");
    let _db = Db::open(&dir.0).unwrap();
    let e = Db::open(&dir.0).unwrap_err().to_string();
    assert!(e.contains("in use"), "{e}");
}

#[test]
fn the_thread_reports_every_batch_in_order() {
    for sync in [
        Sync::Always,
        Sync::Interval(std::time::Duration::from_millis(5)),
    ] {
        let dir = TempDir::new("thread");
        let db = Db::open(&dir.0).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let storage = Storage::spawn(db, sync, move |r| tx.send(r.unwrap().seq).unwrap());
        for seq in 1..=200u64 {
            storage.submit(seq, vec![Op::PutSession(session(&format!("c{seq}")))]);
        }
        let mut last = 0;
        while last < 200 {
            let seq = rx.recv().unwrap();
            assert!(seq > last, "{seq} after {last}");
            last = seq;
        }
        storage.close();
        let loaded = Db::open(&dir.0).unwrap().load().unwrap();
        assert_eq!(loaded.sessions.len(), 200);
    }
}

#[test]
fn dump_prints_every_record() {
    let dir = TempDir::new("dump");
    {
        let db = Db::open(&dir.0).unwrap();
        db.apply(
            &[
                Op::PutSession(session("a")),
                Op::PutRetained {
                    topic: "r/1".into(),
                    body: body("r/1"),
                },
            ],
            true,
        )
        .unwrap();
    }
    let mut out = Vec::new();
    dump(&dir.0, &mut out).unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("sessions \"a\" SessionRecord"), "{out}");
    assert!(out.contains("retained \"r/1\" BodyRecord"), "{out}");
}

/// Delivered data is reclaimed as the broker runs: under steady churn
/// (each round queues 500 messages and deletes the previous round's), the
/// file stops growing once freed pages are reused.
#[test]
fn disk_stays_bounded_under_churn() {
    let dir = TempDir::new("churn");
    let db = Db::open(&dir.0).unwrap();
    db.apply(&[Op::PutSession(session("a"))], true).unwrap();
    let size = || std::fs::metadata(dir.0.join(crate::FILE)).unwrap().len();
    let mut sizes = Vec::new();
    for round in 0..60u64 {
        let mut ops = Vec::new();
        for i in 0..500u64 {
            let id = round * 500 + i + 1;
            ops.push(Op::PutBody {
                id,
                body: BodyRecord {
                    payload: vec![7; 100],
                    ..body("t")
                },
            });
            ops.push(put_queue("a", id, id));
            if round > 0 {
                ops.push(Op::DeleteQueue {
                    client_id: "a".into(),
                    seq: id - 500,
                });
            }
        }
        db.apply(&ops, true).unwrap();
        sizes.push(size());
    }
    // 30,000 messages went through; about 500 are live at any time.
    let (early, late) = (sizes[9], sizes[59]);
    assert!(
        late <= early + early / 2,
        "file grew from {early} to {late} bytes: {sizes:?}"
    );
    let counts = db.counts().unwrap();
    assert_eq!(counts.iter().find(|c| c.0 == "bodies").unwrap().1, 500);
}

/// Opens `dir`, appends `groups` to the log (each synced), and stops as a
/// crash would: no checkpoint, no close.
fn log_then_crash(dir: &std::path::Path, groups: &[Vec<Op>]) {
    let mut db = Db::open(dir).unwrap();
    let mut wal = db.wal.take().unwrap();
    for g in groups {
        wal.append(g).unwrap();
        wal.sync().unwrap();
    }
}

#[test]
fn logged_groups_come_back_after_a_crash() {
    let dir = TempDir::new("wal-replay");
    log_then_crash(
        &dir.0,
        &[
            vec![Op::PutSession(session("a"))],
            vec![
                Op::PutBody {
                    id: 1,
                    body: body("t"),
                },
                put_queue("a", 1, 1),
            ],
            vec![
                Op::PutBody {
                    id: 2,
                    body: body("t"),
                },
                put_queue("a", 2, 2),
            ],
            vec![Op::DeleteQueue {
                client_id: "a".into(),
                seq: 1,
            }],
        ],
    );
    let db = Db::open(&dir.0).unwrap();
    let loaded = db.load().unwrap();
    assert_eq!(loaded.sessions.len(), 1);
    let seqs: Vec<u64> = loaded.sessions[0].queue.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, [2]);
    assert!(db.body(1).unwrap().is_none(), "delivered body reclaimed");
    drop(db);
    assert_eq!(check(&dir.0).unwrap().problems, Vec::<String>::new());
    // Replayed once: the checkpoint covers the records, and a second
    // start finds the same state.
    let db = Db::open(&dir.0).unwrap();
    assert_eq!(db.load().unwrap().sessions[0].queue.len(), 1);
}

#[test]
fn a_torn_last_record_is_dropped_and_the_rest_replayed() {
    let dir = TempDir::new("wal-torn");
    log_then_crash(
        &dir.0,
        &[
            vec![Op::PutSession(session("a"))],
            vec![Op::PutSession(session("b"))],
        ],
    );
    // Tear the second record: flip a byte of its payload.
    let log = dir.0.join(crate::LOG_FILE);
    let mut bytes = std::fs::read(&log).unwrap();
    let first = 16 + u32::from_le_bytes(bytes[0..4].try_into().unwrap()) as usize;
    bytes[first + 20] ^= 0xff;
    std::fs::write(&log, &bytes).unwrap();
    let db = Db::open(&dir.0).unwrap();
    let ids: Vec<String> = db
        .load()
        .unwrap()
        .sessions
        .into_iter()
        .map(|s| s.record.client_id)
        .collect();
    assert_eq!(ids, ["a"]);
}

#[test]
fn records_of_an_older_generation_are_never_replayed() {
    let dir = TempDir::new("wal-generations");
    {
        // A long first generation, checkpointed (a clean close).
        let db = Db::open(&dir.0).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let storage = Storage::spawn(db, Sync::Always, move |r| tx.send(r.unwrap().seq).unwrap());
        for i in 1..=20u64 {
            storage.submit(i, vec![Op::PutSession(session(&format!("s{i:02}")))]);
        }
        for i in 1..=20u64 {
            storage.submit(20 + i, vec![Op::DeleteSession(format!("s{i:02}"))]);
        }
        while rx.recv().unwrap() < 40 {}
        storage.close();
    }
    // A short second generation over it, then a crash: the old records
    // after it (whose sessions were deleted) must not come back.
    log_then_crash(&dir.0, &[vec![Op::PutSession(session("new"))]]);
    let db = Db::open(&dir.0).unwrap();
    let ids: Vec<String> = db
        .load()
        .unwrap()
        .sessions
        .into_iter()
        .map(|s| s.record.client_id)
        .collect();
    assert_eq!(ids, ["new"]);
}

#[test]
fn writes_deleted_before_a_checkpoint_never_reach_redb() {
    use crate::wal::Pending;
    let mut p = Pending::default();
    p.push(Op::PutBody {
        id: 1,
        body: body("t"),
    });
    p.push(put_queue("a", 1, 1));
    p.push(put_queue("b", 1, 1));
    p.push(Op::PutBody {
        id: 2,
        body: body("t"),
    });
    p.push(put_queue("a", 2, 2));
    p.push(Op::DeleteQueue {
        client_id: "a".into(),
        seq: 1,
    });
    p.push(Op::DeleteQueue {
        client_id: "a".into(),
        seq: 2,
    });
    // Entry b/1 was created before this window: its delete stays.
    p.push(Op::DeleteQueue {
        client_id: "c".into(),
        seq: 9,
    });
    p.push(Op::PutIncoming {
        client_id: "a".into(),
        packet_id: 5,
    });
    p.push(Op::DeleteIncoming {
        client_id: "a".into(),
        packet_id: 5,
    });
    assert_eq!(p.live(), 4);
    assert_eq!(
        p.take(),
        [
            Op::PutBody {
                id: 1,
                body: body("t")
            },
            put_queue("b", 1, 1),
            Op::DeleteQueue {
                client_id: "c".into(),
                seq: 9
            },
            Op::DeleteIncoming {
                client_id: "a".into(),
                packet_id: 5
            },
        ]
    );
}
