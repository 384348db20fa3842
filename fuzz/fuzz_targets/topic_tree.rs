//! Arbitrary operations on a `SubscriptionTree` and a `RetainedIndex`,
//! checked after every step against a naive list scanned with the spec
//! matcher; at the end everything is removed and no node may be left.
//! Arbitrary bytes also go through the validators, which must not panic and
//! must agree with each other.
#![no_main]

use arbitrary::{Result, Unstructured};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use tern_topic::{
    MatchBuffer, RetainedIndex, SubscriptionFilter, SubscriptionTree, TopicFilter, TopicName,
    matches,
};

/// Levels that make filters and topics collide, plus arbitrary text.
fn level(u: &mut Unstructured<'_>) -> Result<String> {
    Ok(match u.int_in_range(0..=8u8)? {
        0 => "a".into(),
        1 => "b".into(),
        2 => String::new(),
        3 => "$SYS".into(),
        4 => "$".into(),
        5 => "+".into(),
        6 => "#".into(),
        7 => "$share".into(),
        _ => u.arbitrary::<String>()?.chars().take(6).collect(),
    })
}

/// A '/'-joined string of up to five levels: often a valid filter, sometimes
/// a valid topic, sometimes neither.
fn path(u: &mut Unstructured<'_>) -> Result<String> {
    let n = u.int_in_range(1..=5u8)?;
    let mut levels = Vec::new();
    for _ in 0..n {
        levels.push(level(u)?);
    }
    Ok(levels.join("/"))
}

fn subscription(u: &mut Unstructured<'_>) -> Result<Option<SubscriptionFilter>> {
    let mut text = path(u)?;
    if u.ratio(1, 4)? {
        text = format!("$share/g{}/{text}", u.int_in_range(0..=2u8)?);
    }
    Ok(SubscriptionFilter::parse(Bytes::from(text)).ok())
}

fn topic(u: &mut Unstructured<'_>) -> Result<Option<TopicName>> {
    Ok(TopicName::from_bytes(Bytes::from(path(u)?)).ok())
}

type Naive = BTreeMap<(u8, SubscriptionFilter), u8>;

/// A shared group as compared: (group, filter, members as (key, QoS)).
type Group = (String, String, Vec<(u8, u8)>);

fn check_topic(
    tree: &SubscriptionTree<u8, u8>,
    naive: &Naive,
    t: &TopicName,
    buf: &mut MatchBuffer,
) {
    let mut found = tree.matches(t, buf);
    let mut plain: Vec<(u8, String, u8)> = found
        .plain()
        .map(|m| (*m.key(), m.filter().to_string(), *m.value()))
        .collect();
    plain.sort();
    let mut shared: Vec<Group> = found
        .shared()
        .map(|g| {
            (
                g.group().to_string(),
                g.filter().to_string(),
                g.members().to_vec(),
            )
        })
        .collect();
    shared.sort();
    let clients: Vec<(u8, usize)> = found.per_client().map(|c| (*c.key(), c.len())).collect();

    let mut want_plain = Vec::new();
    let mut want_shared: BTreeMap<(String, String), Vec<(u8, u8)>> = BTreeMap::new();
    let mut want_clients: BTreeMap<u8, usize> = BTreeMap::new();
    for ((k, f), v) in naive {
        if !matches(f.filter(), t) {
            continue;
        }
        match f.group() {
            None => {
                want_plain.push((*k, f.filter().to_string(), *v));
                *want_clients.entry(*k).or_default() += 1;
            }
            Some(g) => want_shared
                .entry((g.to_string(), f.filter().to_string()))
                .or_default()
                .push((*k, *v)),
        }
    }
    want_plain.sort();
    let want_shared: Vec<_> = want_shared
        .into_iter()
        .map(|((g, f), m)| (g, f, m))
        .collect();
    assert_eq!(plain, want_plain, "plain matches for {t}");
    assert_eq!(shared, want_shared, "shared matches for {t}");
    assert_eq!(
        clients,
        want_clients.into_iter().collect::<Vec<_>>(),
        "per client for {t}"
    );
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let mut tree = SubscriptionTree::new();
    let mut naive = Naive::new();
    let mut retained = RetainedIndex::new();
    let mut naive_retained: BTreeMap<TopicName, u8> = BTreeMap::new();
    let mut buf = MatchBuffer::new();
    for _ in 0..64 {
        if u.is_empty() {
            break;
        }
        match u.int_in_range(0..=8u8)? {
            0 | 1 => {
                let (k, v) = (u.int_in_range(0..=4u8)?, u.arbitrary::<u8>()?);
                if let Some(f) = subscription(u)? {
                    assert_eq!(tree.insert(k, &f, v), naive.insert((k, f), v));
                }
            }
            2 => {
                let k = u.int_in_range(0..=4u8)?;
                if let Some(f) = subscription(u)? {
                    assert_eq!(tree.remove(&k, &f), naive.remove(&(k, f)));
                }
            }
            3 => {
                let k = u.int_in_range(0..=4u8)?;
                let before = naive.len();
                naive.retain(|(key, _), _| *key != k);
                assert_eq!(tree.remove_client(&k), before - naive.len());
            }
            4 => {
                if let Some(t) = topic(u)? {
                    check_topic(&tree, &naive, &t, &mut buf);
                    // Round robin picks a member of each matched group.
                    let groups: Vec<_> = buf.shared_groups().collect();
                    for g in groups {
                        assert!(tree.select_round_robin(g, |_, _| true).is_some());
                    }
                }
            }
            5 => {
                let v = u.arbitrary::<u8>()?;
                if let Some(t) = topic(u)? {
                    assert_eq!(retained.insert(t.clone(), v), naive_retained.insert(t, v));
                }
            }
            6 => {
                if let Some(t) = topic(u)? {
                    assert_eq!(retained.remove(&t), naive_retained.remove(&t));
                }
            }
            7 => {
                if let Ok(f) = TopicFilter::from_bytes(Bytes::from(path(u)?)) {
                    let mut got: Vec<(TopicName, u8)> = retained
                        .matching(&f)
                        .map(|(t, v)| (t.clone(), *v))
                        .collect();
                    got.sort();
                    let want: Vec<(TopicName, u8)> = naive_retained
                        .iter()
                        .filter(|(t, _)| matches(&f, t))
                        .map(|(t, v)| (t.clone(), *v))
                        .collect();
                    assert_eq!(got, want, "retained matching {f}");
                }
            }
            _ => {
                // Raw bytes: the validators never panic, and agree.
                let raw = Bytes::from(u.arbitrary::<Vec<u8>>()?);
                let name = TopicName::from_bytes(raw.clone());
                let filter = TopicFilter::from_bytes(raw.clone());
                if name.is_ok() {
                    assert!(filter.is_ok(), "every topic name is a valid filter");
                }
                if let Ok(parsed) = SubscriptionFilter::parse(raw.clone()) {
                    assert_eq!(parsed.to_string().as_bytes(), &raw[..]);
                    if parsed.group().is_none() {
                        assert!(filter.is_ok());
                    }
                }
            }
        }
        assert_eq!(tree.len(), naive.len());
        assert_eq!(retained.len(), naive_retained.len());
    }
    for (k, f) in naive.keys() {
        // Some already went with their client; both paths must work.
        if tree.remove(k, f).is_none() {
            assert_eq!(tree.client_len(k), 0);
        }
        tree.remove_client(k);
    }
    assert_eq!((tree.len(), tree.node_count()), (0, 0));
    for t in naive_retained.keys() {
        assert!(retained.remove(t).is_some());
    }
    assert_eq!((retained.len(), retained.node_count()), (0, 0));
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
