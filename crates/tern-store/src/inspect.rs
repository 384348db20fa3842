//! `tern store check` and `tern store dump`: read a store without changing
//! a record.

use crate::db::{Db, StoreError, hex, split_client_key};
use crate::record::{BodyRecord, QueueRecord, Record, SessionRecord, SubscriptionRecord};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// What `check` found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Records per table.
    pub counts: Vec<(&'static str, u64)>,
    /// Every problem, one line each; empty when the store is sound.
    pub problems: Vec<String>,
}

/// Decodes every record and checks the references between them: each
/// subscription, queue entry and incoming QoS 2 record belongs to a stored
/// session, each queue entry's body exists, and each body's reference count
/// is the number of queue entries that refer to it.
///
/// Operations still in the write-ahead log (a broker stopped without a
/// checkpoint: they are applied at its next start) are counted as `log`;
/// the checks see the redb file only.
pub fn check(dir: &Path) -> Result<Report, StoreError> {
    let db = Db::open_existing(dir)?;
    let mut report = check_db(&db)?;
    let logged = crate::wal::logged_above(dir, db.checkpoint_seq()?);
    report.counts.push(("log", logged));
    Ok(report)
}

/// [`check`] on an open store.
pub(crate) fn check_db(db: &Db) -> Result<Report, StoreError> {
    let mut report = Report {
        counts: db.counts()?,
        problems: Vec::new(),
    };
    let mut sessions = BTreeSet::new();
    let mut bodies = BTreeSet::new();
    let mut refs = BTreeMap::new();
    let mut used: BTreeMap<u64, u64> = BTreeMap::new();
    let mut owned: Vec<(&'static str, String, Vec<u8>)> = Vec::new();
    db.walk(|table, k, v| {
        let bad = |p: &mut Vec<String>, what: &str| p.push(format!("{table} {}: {what}", hex(k)));
        let p = &mut report.problems;
        match table {
            "sessions" => match SessionRecord::decode(v) {
                Ok(s) if s.client_id.as_bytes() == k => {
                    sessions.insert(s.client_id);
                }
                Ok(_) => bad(p, "key is not the record's client id"),
                Err(e) => bad(p, &e.to_string()),
            },
            "subscriptions" | "incoming" | "queue" => {
                let decoded = match table {
                    "subscriptions" => SubscriptionRecord::decode(v).map(|_| None),
                    "incoming" => <()>::decode(v).map(|()| None),
                    _ => QueueRecord::decode(v).map(|q| Some(q.body)),
                };
                match (split_client_key(k), decoded) {
                    (Ok((c, _)), Ok(body)) => {
                        owned.push((table, c.to_string(), k.to_vec()));
                        if let Some(b) = body {
                            *used.entry(b).or_default() += 1;
                        }
                    }
                    (Err(e), _) | (_, Err(e)) => bad(p, &e.to_string()),
                }
            }
            "bodies" => match (k.try_into().map(u64::from_be_bytes), BodyRecord::decode(v)) {
                (Ok(id), Ok(_)) => {
                    bodies.insert(id);
                }
                _ => bad(p, "corrupt body"),
            },
            "refs" => match (k.try_into().map(u64::from_be_bytes), u64::decode(v)) {
                (Ok(id), Ok(n)) => {
                    refs.insert(id, n);
                }
                _ => bad(p, "corrupt reference count"),
            },
            "retained" => match BodyRecord::decode(v) {
                Ok(b) if b.topic.as_bytes() == k => {}
                Ok(_) => bad(p, "key is not the record's topic"),
                Err(e) => bad(p, &e.to_string()),
            },
            "meta" => {
                if u64::decode(v).is_err() {
                    bad(p, "corrupt");
                }
            }
            _ => p.push(format!(
                "set_aside: {} record(s) set aside earlier ({})",
                1,
                hex(k)
            )),
        }
    })?;
    for (table, c, k) in owned {
        if !sessions.contains(&c) {
            report
                .problems
                .push(format!("{table} {}: no session {c:?}", hex(&k)));
        }
    }
    for (id, n) in &used {
        if !bodies.contains(id) {
            report.problems.push(format!(
                "queue: body {id} is missing ({n} entries refer to it)"
            ));
        }
        if refs.get(id) != Some(n) {
            report.problems.push(format!(
                "refs {id}: {} stored, {n} queue entries refer to it",
                refs.get(id).copied().unwrap_or(0)
            ));
        }
    }
    for id in &bodies {
        if !used.contains_key(id) {
            report
                .problems
                .push(format!("bodies {id}: nothing refers to it"));
        }
    }
    Ok(report)
}

/// Writes every record, one line each: table, key, decoded value.
pub fn dump(dir: &Path, out: &mut dyn std::io::Write) -> Result<(), StoreError> {
    let db = Db::open_existing(dir)?;
    let mut err = None;
    db.walk(|table, k, v| {
        let key = match table {
            "sessions" | "retained" | "meta" => format!("{:?}", String::from_utf8_lossy(k)),
            "bodies" | "refs" => k
                .try_into()
                .map(u64::from_be_bytes)
                .map_or_else(|_| hex(k), |n| n.to_string()),
            "subscriptions" => split_client_key(k).map_or_else(
                |_| hex(k),
                |(c, f)| format!("{c:?} {:?}", String::from_utf8_lossy(f)),
            ),
            "queue" | "incoming" => split_client_key(k).map_or_else(
                |_| hex(k),
                |(c, s)| {
                    let n = match s.len() {
                        8 => u64::from_be_bytes(s.try_into().unwrap_or_default()),
                        2 => u64::from(u16::from_be_bytes(s.try_into().unwrap_or_default())),
                        _ => u64::MAX,
                    };
                    format!("{c:?} {n}")
                },
            ),
            _ => hex(k),
        };
        let value = match table {
            "sessions" => SessionRecord::decode(v).map(|r| format!("{r:?}")),
            "subscriptions" => SubscriptionRecord::decode(v).map(|r| format!("{r:?}")),
            "queue" => QueueRecord::decode(v).map(|r| format!("{r:?}")),
            "bodies" | "retained" => BodyRecord::decode(v).map(|r| format!("{r:?}")),
            "refs" | "meta" => u64::decode(v).map(|r| r.to_string()),
            "incoming" => <()>::decode(v).map(|()| "awaiting PUBREL".to_string()),
            _ => Ok(hex(v)),
        };
        let value = value.unwrap_or_else(|e| format!("{e}: {}", hex(v)));
        if let Err(e) = writeln!(out, "{table} {key} {value}") {
            err.get_or_insert(e);
        }
    })?;
    match err {
        Some(e) => Err(StoreError::Io(dir.to_path_buf(), e)),
        None => Ok(()),
    }
}
