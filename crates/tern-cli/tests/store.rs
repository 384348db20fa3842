//! `tern store check` and `tern store dump` on data directories written by
//! tern-store: sound, damaged, missing, and held by another process.

use assert_cmd::Command;
use predicates::prelude::*;
use std::path::{Path, PathBuf};
use tern_store::record::{BodyRecord, Delivery, QueueRecord, SessionRecord};
use tern_store::{Db, Op};

fn tern_store(args: &[&str], dir: &Path) -> assert_cmd::assert::Assert {
    Command::cargo_bin("tern")
        .expect("the tern binary is built")
        .arg("store")
        .args(args)
        .arg(dir)
        .assert()
}

fn dir(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("tern-cli-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    p
}

fn fill(dir: &Path) {
    let db = Db::open(dir).expect("store opens");
    let mut ops = vec![Op::PutBody {
        id: 1,
        body: BodyRecord {
            topic: "plant/7/temp".into(),
            payload: b"21.5".to_vec(),
            qos: 1,
            retain: false,
            properties: vec![],
            expires_at_ms: None,
            owner: None,
        },
    }];
    for i in 0..50 {
        let client_id = format!("sensor-{i}");
        ops.push(Op::PutSession(SessionRecord {
            client_id: client_id.clone(),
            protocol: 4,
            expiry_interval: u32::MAX,
            expires_at_ms: None,
            user_name: None,
            will: None,
            will_due_ms: None,
        }));
        ops.push(Op::PutQueue {
            client_id,
            seq: 1,
            record: QueueRecord {
                body: 1,
                qos: 1,
                delivery: Delivery::Queued,
                subscription_ids: Vec::new(),
            },
        });
    }
    db.apply(&ops, true).expect("batch commits");
}

#[test]
fn check_counts_a_sound_store_and_dump_prints_it() {
    let d = dir("sound");
    fill(&d);
    tern_store(&["check"], &d)
        .success()
        .stdout(predicate::str::contains("sessions: 50"))
        .stdout(predicate::str::contains("queue: 50"))
        .stdout(predicate::str::contains("bodies: 1"))
        .stdout(predicate::str::contains("log: 0"))
        .stdout(predicate::str::ends_with("ok\n"));
    tern_store(&["dump"], &d)
        .success()
        .stdout(predicate::str::contains("sessions \"sensor-17\""))
        .stdout(predicate::str::contains(
            "bodies 1 BodyRecord { topic: \"plant/7/temp\"",
        ))
        .stdout(predicate::str::contains("refs 1 50"));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn check_reports_a_damaged_file_and_leaves_it_alone() {
    let d = dir("damaged");
    fill(&d);
    let f = d.join(tern_store::FILE);
    let len = std::fs::metadata(&f).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&f)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    tern_store(&["check"], &d)
        .code(1)
        .stderr(predicate::str::contains("damaged"));
    assert_eq!(std::fs::metadata(&f).unwrap().len(), len / 2);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn check_names_a_directory_without_a_store() {
    let d = dir("missing");
    tern_store(&["check"], &d).code(1).stderr(
        predicate::str::contains("tern.redb").and(predicate::str::contains("no store here")),
    );
}

#[test]
fn check_refuses_a_store_in_use() {
    let d = dir("inuse");
    fill(&d);
    // This process holds it, as a running broker would.
    let _held = Db::open(&d).unwrap();
    tern_store(&["check"], &d)
        .code(1)
        .stderr(predicate::str::contains("in use by another process"));
    let _ = std::fs::remove_dir_all(&d);
}
