//! Property tests: the subscription tree and the retained index give the same
//! answers as a naive list scanned with the spec matcher, after any sequence
//! of inserts, replacements and removals; and they shrink back to no nodes.

use proptest::prelude::*;
use std::collections::BTreeMap;
use tern_topic::{
    MatchBuffer, RetainedIndex, SubscriptionFilter, SubscriptionTree, TopicFilter, TopicName,
    matches,
};

/// A small level alphabet so filters and topics collide often. Includes the
/// empty level and `$` levels.
const LEVELS: &[&str] = &["a", "b", "", "$SYS", "$"];

fn topic_strategy() -> impl Strategy<Value = TopicName> {
    prop::collection::vec(prop::sample::select(LEVELS), 1..5)
        .prop_filter_map("a topic needs a character", |levels| {
            TopicName::try_from(levels.join("/")).ok()
        })
}

fn filter_strategy() -> impl Strategy<Value = TopicFilter> {
    let level = prop_oneof![
        3 => prop::sample::select(LEVELS).prop_map(str::to_string),
        2 => Just("+".to_string()),
    ];
    (prop::collection::vec(level, 0..4), any::<bool>()).prop_filter_map(
        "a filter needs a character",
        |(mut levels, hash)| {
            if hash {
                levels.push("#".into());
            }
            TopicFilter::try_from(levels.join("/")).ok()
        },
    )
}

fn subscription_strategy() -> impl Strategy<Value = SubscriptionFilter> {
    (filter_strategy(), prop::option::weighted(0.3, 0..2u8)).prop_map(|(filter, group)| match group
    {
        None => SubscriptionFilter::Plain(filter),
        Some(g) => SubscriptionFilter::parse_str(&format!("$share/g{g}/{filter}")).unwrap(),
    })
}

#[derive(Debug, Clone)]
enum TreeOp {
    Insert(u8, SubscriptionFilter, u8),
    Remove(u8, SubscriptionFilter),
    RemoveClient(u8),
}

fn tree_op() -> impl Strategy<Value = TreeOp> {
    prop_oneof![
        6 => (0..5u8, subscription_strategy(), any::<u8>()).prop_map(|(k, f, v)| TreeOp::Insert(k, f, v)),
        3 => (0..5u8, subscription_strategy()).prop_map(|(k, f)| TreeOp::Remove(k, f)),
        1 => (0..5u8).prop_map(TreeOp::RemoveClient),
    ]
}

/// The reference: every subscription in a map, scanned with `matches`.
type Naive = BTreeMap<(u8, SubscriptionFilter), u8>;

fn apply(tree: &mut SubscriptionTree<u8, u8>, naive: &mut Naive, op: &TreeOp) {
    match op {
        TreeOp::Insert(k, f, v) => {
            assert_eq!(tree.insert(*k, f, *v), naive.insert((*k, f.clone()), *v));
        }
        TreeOp::Remove(k, f) => {
            assert_eq!(tree.remove(k, f), naive.remove(&(*k, f.clone())));
        }
        TreeOp::RemoveClient(k) => {
            let before = naive.len();
            naive.retain(|(key, _), _| key != k);
            assert_eq!(tree.remove_client(k), before - naive.len());
        }
    }
}

/// A shared match: group, filter, and the members with their values.
type SharedAnswer = (String, String, Vec<(u8, u8)>);

/// What a broker learns from matching one topic, in a canonical order.
#[derive(Debug, PartialEq)]
struct Answer {
    plain: Vec<(u8, String, u8)>,
    shared: Vec<SharedAnswer>,
    per_client: Vec<(u8, Vec<u8>)>,
}

fn tree_answer(
    tree: &SubscriptionTree<u8, u8>,
    topic: &TopicName,
    buf: &mut MatchBuffer,
) -> Answer {
    let mut found = tree.matches(topic, buf);
    let mut plain: Vec<_> = found
        .plain()
        .map(|m| (*m.key(), m.filter().to_string(), *m.value()))
        .collect();
    plain.sort();
    let mut shared: Vec<_> = found
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
    // Within a client, per_client keeps the order `plain` visits in.
    let visit_order: Vec<(u8, u8)> = found.plain().map(|m| (*m.key(), *m.value())).collect();
    let per_client: Vec<_> = found
        .per_client()
        .map(|c| {
            let mut values: Vec<u8> = c.values().copied().collect();
            let in_visit_order: Vec<u8> = visit_order
                .iter()
                .filter(|(k, _)| k == c.key())
                .map(|(_, v)| *v)
                .collect();
            assert_eq!(values, in_visit_order, "client {}", c.key());
            values.sort();
            (*c.key(), values)
        })
        .collect();
    Answer {
        plain,
        shared,
        per_client,
    }
}

fn naive_answer(naive: &Naive, topic: &TopicName) -> Answer {
    let mut plain = Vec::new();
    let mut groups: BTreeMap<(String, String), Vec<(u8, u8)>> = BTreeMap::new();
    for ((k, f), v) in naive {
        if !matches(f.filter(), topic) {
            continue;
        }
        match f.group() {
            None => plain.push((*k, f.filter().to_string(), *v)),
            Some(g) => groups
                .entry((g.to_string(), f.filter().to_string()))
                .or_default()
                .push((*k, *v)),
        }
    }
    plain.sort();
    let mut per_client: BTreeMap<u8, Vec<u8>> = BTreeMap::new();
    for (k, _, v) in &plain {
        per_client.entry(*k).or_default().push(*v);
    }
    Answer {
        plain,
        shared: groups
            .into_iter()
            .map(|((g, f), mut members)| {
                members.sort();
                (g, f, members)
            })
            .collect(),
        per_client: per_client
            .into_iter()
            .map(|(k, mut vs)| {
                vs.sort();
                (k, vs)
            })
            .collect(),
    }
}

/// The exact (unsorted) order of a tree's answer, for the determinism check.
fn raw_order(tree: &SubscriptionTree<u8, u8>, topic: &TopicName) -> Vec<(u8, String)> {
    let mut buf = MatchBuffer::new();
    let found = tree.matches(topic, &mut buf);
    found
        .plain()
        .map(|m| (*m.key(), m.filter().to_string()))
        .chain(
            found
                .shared()
                .map(|g| (g.members()[0].0, g.group().to_string())),
        )
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_tree_answers_like_a_naive_scan(
        ops in prop::collection::vec(tree_op(), 0..40),
        topics in prop::collection::vec(topic_strategy(), 1..8),
        removal_order in any::<prop::sample::Index>(),
    ) {
        let mut tree = SubscriptionTree::new();
        let mut naive = Naive::new();
        let mut buf = MatchBuffer::new();
        for op in &ops {
            apply(&mut tree, &mut naive, op);
            prop_assert_eq!(tree.len(), naive.len());
            for topic in &topics {
                prop_assert_eq!(tree_answer(&tree, topic, &mut buf), naive_answer(&naive, topic));
            }
        }
        for ((k, f), v) in &naive {
            prop_assert_eq!(tree.get(k, f), Some(v));
        }
        // Each client's subscriptions, rebuilt from the tree, are exactly
        // its entries in the reference, filter text and value.
        for k in 0..5u8 {
            let mut listed: Vec<_> = tree
                .client_subscriptions(&k)
                .map(|(f, v)| (String::from_utf8(f.to_vec()).unwrap(), *v))
                .collect();
            listed.sort();
            let mut expected: Vec<_> = naive
                .iter()
                .filter(|((key, _), _)| *key == k)
                .map(|((_, f), v)| (f.to_string(), *v))
                .collect();
            expected.sort();
            prop_assert_eq!(listed, expected);
            prop_assert_eq!(tree.client_len(&k), naive.keys().filter(|(key, _)| *key == k).count());
        }

        // Determinism: the same operations give the same order.
        let mut again = SubscriptionTree::new();
        let mut naive_again = Naive::new();
        for op in &ops {
            apply(&mut again, &mut naive_again, op);
        }
        for topic in &topics {
            prop_assert_eq!(raw_order(&tree, topic), raw_order(&again, topic));
        }

        // Remove everything, in an order that depends on the case, some by
        // client and some one by one: no node is left.
        let mut rest: Vec<_> = naive.keys().cloned().collect();
        if !rest.is_empty() {
            let start = removal_order.index(rest.len());
            rest.rotate_left(start);
        }
        for (i, (k, f)) in rest.iter().enumerate() {
            if i % 3 == 0 {
                tree.remove_client(k);
            } else {
                tree.remove(k, f);
            }
        }
        prop_assert_eq!(tree.len(), 0);
        prop_assert_eq!(tree.node_count(), 0);
    }
}

#[derive(Debug, Clone)]
enum RetainedOp {
    Insert(TopicName, u8),
    Remove(TopicName),
    Clear,
}

fn retained_op() -> impl Strategy<Value = RetainedOp> {
    prop_oneof![
        10 => (topic_strategy(), any::<u8>()).prop_map(|(t, v)| RetainedOp::Insert(t, v)),
        5 => topic_strategy().prop_map(RetainedOp::Remove),
        1 => Just(RetainedOp::Clear),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_retained_index_answers_like_a_naive_scan(
        ops in prop::collection::vec(retained_op(), 0..40),
        filters in prop::collection::vec(filter_strategy(), 1..8),
    ) {
        let mut index = RetainedIndex::new();
        let mut naive: BTreeMap<TopicName, u8> = BTreeMap::new();
        for op in &ops {
            match op {
                RetainedOp::Insert(t, v) => {
                    prop_assert_eq!(index.insert(t.clone(), *v), naive.insert(t.clone(), *v));
                }
                RetainedOp::Remove(t) => prop_assert_eq!(index.remove(t), naive.remove(t)),
                RetainedOp::Clear => {
                    index.clear();
                    naive.clear();
                }
            }
            prop_assert_eq!(index.len(), naive.len());
            for filter in &filters {
                let mut got: Vec<(String, u8)> = index
                    .matching(filter)
                    .map(|(t, v)| (t.to_string(), *v))
                    .collect();
                got.sort();
                let want: Vec<(String, u8)> = naive
                    .iter()
                    .filter(|(t, _)| matches(filter, t))
                    .map(|(t, v)| (t.to_string(), *v))
                    .collect();
                prop_assert_eq!(got, want, "filter {}", filter);
            }
        }
        for (t, v) in &naive {
            prop_assert_eq!(index.get(t), Some(v));
        }
        prop_assert_eq!(index.iter().count(), naive.len());
        for t in naive.keys() {
            prop_assert!(index.remove(t).is_some());
        }
        prop_assert_eq!(index.node_count(), 0);
    }
}
