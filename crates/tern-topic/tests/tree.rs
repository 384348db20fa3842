//! Behaviour of the subscription tree and the retained index beyond matching.

use tern_topic::{
    DeliveryOptions, MatchBuffer, RetainedIndex, SubscriptionFilter, SubscriptionTree, TopicFilter,
    TopicName,
};

fn sub(text: &str) -> SubscriptionFilter {
    SubscriptionFilter::parse_str(text).unwrap()
}

fn topic(text: &str) -> TopicName {
    TopicName::try_from(text).unwrap()
}

/// (client, filter) of every plain match, in the tree's order.
fn plain_matches<V>(tree: &SubscriptionTree<u32, V>, t: &str) -> Vec<(u32, String)> {
    let mut buf = MatchBuffer::new();
    tree.matches(&topic(t), &mut buf)
        .plain()
        .map(|m| (*m.key(), m.filter().to_string()))
        .collect()
}

#[test]
fn an_identical_filter_replaces_the_subscription_mqtt_3_8_4_3() {
    let mut tree = SubscriptionTree::new();
    assert_eq!(tree.insert(1u32, &sub("a/+"), 0u8), None);
    assert_eq!(
        tree.insert(1, &sub("a/+"), 2),
        Some(0),
        "replaced, old value back"
    );
    assert_eq!(tree.len(), 1);
    assert_eq!(tree.get(&1, &sub("a/+")), Some(&2));
    assert_eq!(
        plain_matches(&tree, "a/b"),
        [(1, "a/+".to_string())],
        "one delivery, not two"
    );
    // A shared subscription to the same filter is a different subscription.
    assert_eq!(tree.insert(1, &sub("$share/g/a/+"), 1), None);
    assert_eq!(tree.len(), 2);
    assert_eq!(tree.client_len(&1), 2);
}

#[test]
fn removing_an_unknown_subscription_changes_nothing_mqtt_3_10_4_1() {
    let mut tree = SubscriptionTree::new();
    tree.insert(1u32, &sub("a/b"), ());
    assert_eq!(
        tree.remove(&1, &sub("a/+")),
        None,
        "filters compare character by character"
    );
    assert_eq!(tree.remove(&2, &sub("a/b")), None, "another client's");
    assert_eq!(
        tree.remove(&1, &sub("$share/g/a/b")),
        None,
        "shared is not plain"
    );
    assert_eq!(
        tree.remove(&1, &sub("a")),
        None,
        "an interior node is no subscription"
    );
    assert_eq!(tree.len(), 1);
    assert_eq!(tree.remove(&1, &sub("a/b")), Some(()));
    assert_eq!((tree.len(), tree.node_count()), (0, 0));
}

#[test]
fn removing_the_last_subscription_frees_its_nodes() {
    let mut tree = SubscriptionTree::new();
    tree.insert(1u32, &sub("a/b/c/d"), ());
    tree.insert(2u32, &sub("a/b"), ());
    assert_eq!(tree.node_count(), 4);
    tree.remove(&1, &sub("a/b/c/d"));
    assert_eq!(tree.node_count(), 2, "c and d freed, a/b still subscribed");
    tree.insert(3u32, &sub("$share/g/a/b/+/#"), ());
    assert_eq!(tree.node_count(), 4);
    tree.remove(&3, &sub("$share/g/a/b/+/#"));
    assert_eq!(tree.node_count(), 2);
    tree.remove(&2, &sub("a/b"));
    assert_eq!(tree.node_count(), 0);
}

#[test]
fn remove_client_removes_every_subscription_of_one_client() {
    let mut tree = SubscriptionTree::new();
    for f in ["a/b", "a/+", "#", "$share/g/a/b", "$share/h/a/b"] {
        tree.insert(1u32, &sub(f), ());
        tree.insert(2u32, &sub(f), ());
    }
    tree.insert(2u32, &sub("only/two"), ());
    assert_eq!(tree.remove_client(&1), 5);
    assert_eq!(tree.remove_client(&1), 0, "already gone");
    assert_eq!(tree.len(), 6);
    assert_eq!(tree.client_len(&2), 6);
    let mut buf = MatchBuffer::new();
    let found = tree.matches(&topic("a/b"), &mut buf);
    assert!(found.plain().all(|m| *m.key() == 2));
    assert!(
        found
            .shared()
            .all(|g| g.members().iter().map(|(k, _)| *k).eq([2]))
    );
    assert_eq!(tree.remove_client(&2), 6);
    assert_eq!((tree.len(), tree.node_count()), (0, 0));
}

#[test]
fn remove_client_some_removes_a_client_in_slices_of_at_most_max() {
    let mut tree = SubscriptionTree::new();
    for f in ["a/b", "a/+", "#", "$share/g/a/b", "$share/h/a/b"] {
        tree.insert(1u32, &sub(f), ());
        tree.insert(2u32, &sub(f), ());
    }
    assert_eq!(tree.remove_client_some(&1, 2), (2, false));
    assert_eq!(tree.client_len(&1), 3);
    assert_eq!(tree.len(), 8);
    assert_eq!(tree.remove_client_some(&1, 2), (2, false));
    assert_eq!(tree.remove_client_some(&1, 2), (1, true));
    assert_eq!(tree.remove_client_some(&1, 2), (0, true), "already gone");
    assert_eq!(tree.len(), 5);
    let mut buf = MatchBuffer::new();
    let found = tree.matches(&topic("a/b"), &mut buf);
    assert!(found.plain().all(|m| *m.key() == 2));
    assert!(
        found
            .shared()
            .all(|g| g.members().iter().map(|(k, _)| *k).eq([2]))
    );
    assert_eq!(tree.remove_client_some(&2, usize::MAX), (5, true));
    assert_eq!((tree.len(), tree.node_count()), (0, 0));
}

#[test]
fn the_dollar_rule_in_the_tree_mqtt_4_7_2_1() {
    let mut tree = SubscriptionTree::new();
    tree.insert(1u32, &sub("#"), ());
    tree.insert(2u32, &sub("+/x"), ());
    tree.insert(3u32, &sub("$SYS/#"), ());
    tree.insert(4u32, &sub("$SYS/+"), ());
    tree.insert(5u32, &sub("$share/g/#"), ());
    let mut clients: Vec<u32> = plain_matches(&tree, "$SYS/x")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    clients.sort();
    assert_eq!(clients, [3, 4]);
    let mut buf = MatchBuffer::new();
    assert_eq!(tree.matches(&topic("$SYS/x"), &mut buf).shared_len(), 0);
    let mut clients: Vec<u32> = plain_matches(&tree, "a/x")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    clients.sort();
    assert_eq!(clients, [1, 2]);
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Options {
    qos: u8,
    id: Option<u32>,
}

impl DeliveryOptions for Options {
    type Qos = u8;
    fn granted_qos(&self) -> u8 {
        self.qos
    }
    fn subscription_identifier(&self) -> Option<u32> {
        self.id
    }
}

#[test]
fn overlapping_subscriptions_merge_into_one_delivery_per_client() {
    let mut tree = SubscriptionTree::new();
    let o = |qos, id| Options { qos, id };
    tree.insert(7u32, &sub("a/+"), o(1, Some(5)));
    tree.insert(7u32, &sub("a/#"), o(2, Some(9)));
    tree.insert(7u32, &sub("#"), o(0, None));
    tree.insert(3u32, &sub("a/b"), o(0, Some(1)));
    tree.insert(4u32, &sub("x"), o(2, None));
    // A shared subscription is delivered on its own, not merged.
    tree.insert(3u32, &sub("$share/g/a/b"), o(2, Some(4)));

    let mut buf = MatchBuffer::new();
    let mut found = tree.matches(&topic("a/b"), &mut buf);
    assert_eq!(found.plain_len(), 4);
    let merged: Vec<(u32, u8, Vec<u32>, usize)> = found
        .per_client()
        .map(|c| {
            let mut ids: Vec<u32> = c.subscription_identifiers().collect();
            ids.sort();
            (*c.key(), c.max_qos(), ids, c.len())
        })
        .collect();
    assert_eq!(
        merged,
        [(3, 0, vec![1], 1), (7, 2, vec![5, 9], 3)],
        "3.1.1: once at the highest QoS; 5.0: every identifier"
    );
    // The order within a client follows `plain`.
    let plain_values: Vec<Options> = found
        .plain()
        .filter(|m| *m.key() == 7)
        .map(|m| *m.value())
        .collect();
    let mut per_client = found.per_client();
    let seven = per_client.find(|c| *c.key() == 7).unwrap();
    assert_eq!(seven.values().copied().collect::<Vec<_>>(), plain_values);
}

#[test]
fn shared_groups_yield_once_per_group_and_rotate_round_robin() {
    let mut tree = SubscriptionTree::new();
    for client in [1u32, 2, 3] {
        tree.insert(client, &sub("$share/workers/jobs/+"), client * 10);
    }
    tree.insert(9u32, &sub("$share/audit/jobs/#"), 90);
    tree.insert(8u32, &sub("$share/other/jobs/+"), 80);
    let mut buf = MatchBuffer::new();
    let found = tree.matches(&topic("jobs/1"), &mut buf);
    let mut groups: Vec<(String, String, Vec<u32>)> = found
        .shared()
        .map(|g| {
            let members = g.members().iter().map(|(k, _)| *k).collect();
            (g.group().to_string(), g.filter().to_string(), members)
        })
        .collect();
    groups.sort();
    assert_eq!(
        groups,
        [
            ("audit".into(), "jobs/#".into(), vec![9]),
            ("other".into(), "jobs/+".into(), vec![8]),
            ("workers".into(), "jobs/+".into(), vec![1, 2, 3]),
        ]
    );
    assert_eq!(found.plain_len(), 0);
    let workers = found
        .shared()
        .find(|g| g.group() == "workers")
        .unwrap()
        .handle();

    let mut pick = |accept: &dyn Fn(&u32) -> bool| {
        tree.select_round_robin(workers, |k, _| accept(k))
            .map(|(k, v)| (*k, *v))
    };
    assert_eq!(pick(&|_| true), Some((1, 10)));
    assert_eq!(pick(&|_| true), Some((2, 20)));
    assert_eq!(pick(&|k| *k != 3), Some((1, 10)), "3 refused: wraps to 1");
    assert_eq!(pick(&|_| true), Some((2, 20)));
    assert_eq!(pick(&|_| true), Some((3, 30)));
    assert_eq!(pick(&|_| false), None, "nobody online");

    // A member leaving invalidates the handle; the rotation carries on after
    // the last choice (3): the next is 1.
    tree.remove(&2, &sub("$share/workers/jobs/+"));
    assert_eq!(
        tree.select_round_robin(workers, |_, _| true),
        None,
        "stale handle"
    );
    let found = tree.matches(&topic("jobs/1"), &mut buf);
    let workers = found
        .shared()
        .find(|g| g.group() == "workers")
        .unwrap()
        .handle();
    assert_eq!(
        tree.select_round_robin(workers, |_, _| true)
            .map(|(k, _)| *k),
        Some(1)
    );
    assert_eq!(
        tree.select_round_robin(workers, |_, _| true)
            .map(|(k, _)| *k),
        Some(3)
    );
}

#[test]
fn a_client_with_shared_and_plain_subscriptions_gets_both() {
    let mut tree = SubscriptionTree::new();
    tree.insert(1u32, &sub("a/b"), ());
    tree.insert(1u32, &sub("$share/g/a/b"), ());
    let mut buf = MatchBuffer::new();
    let found = tree.matches(&topic("a/b"), &mut buf);
    assert_eq!((found.plain_len(), found.shared_len()), (1, 1));
}

fn build(ops: &[(u32, &str, bool)]) -> SubscriptionTree<u32, ()> {
    let mut tree = SubscriptionTree::new();
    for &(client, filter, insert) in ops {
        if insert {
            tree.insert(client, &sub(filter), ());
        } else {
            tree.remove(&client, &sub(filter));
        }
    }
    tree
}

#[test]
fn the_same_operations_give_the_same_match_order() {
    let ops = [
        (5, "a/+/c", true),
        (1, "#", true),
        (3, "a/b/c", true),
        (2, "a/#", true),
        (4, "+/b/+", true),
        (1, "a/b/c", true),
        (3, "a/b/c", false),
        (6, "a/b/#", true),
    ];
    let first = plain_matches(&build(&ops), "a/b/c");
    assert_eq!(first.len(), 6);
    for _ in 0..3 {
        assert_eq!(plain_matches(&build(&ops), "a/b/c"), first);
    }
}

#[test]
fn churn_returns_the_tree_to_empty() {
    let mut tree = SubscriptionTree::new();
    tree.insert(0u32, &sub("keep/this"), 99);
    for round in 0..5u32 {
        for i in 0..200u32 {
            let f = format!("r/{}/{}/+/#", i % 17, i);
            tree.insert(i + 1, &sub(&f), round);
            tree.insert(i + 1, &sub(&format!("$share/g{}/{f}", i % 3)), round);
        }
        assert_eq!(tree.len(), 401);
        for i in 0..200u32 {
            assert_eq!(tree.remove_client(&(i + 1)), 2);
        }
        assert_eq!(tree.len(), 1);
        assert_eq!(tree.node_count(), 2, "only keep/this is left");
    }
    tree.clear();
    assert_eq!((tree.len(), tree.node_count()), (0, 0));
}

#[test]
fn retained_insert_replace_remove_and_clear() {
    let mut index = RetainedIndex::new();
    assert_eq!(index.insert(topic("a/b"), 1), None);
    assert_eq!(index.insert(topic("a/b"), 2), Some(1), "replace");
    assert_eq!(index.insert(topic("a"), 3), None);
    assert_eq!(
        index.insert(topic("a/b/"), 4),
        None,
        "a trailing empty level is another topic"
    );
    assert_eq!(index.len(), 3);
    assert_eq!(index.get(&topic("a/b")), Some(&2));
    assert_eq!(index.get(&topic("a/c")), None);
    let filter = TopicFilter::try_from("a/#").unwrap();
    let mut found: Vec<(String, i32)> = index
        .matching(&filter)
        .map(|(t, v)| (t.to_string(), *v))
        .collect();
    found.sort();
    assert_eq!(
        found,
        [("a".into(), 3), ("a/b".into(), 2), ("a/b/".into(), 4)]
    );
    assert_eq!(index.remove(&topic("a/b")), Some(2));
    assert_eq!(index.remove(&topic("a/b")), None);
    assert_eq!(
        index.node_count(),
        3,
        "a, b and the empty level stay for a/b/"
    );
    assert_eq!(index.remove(&topic("a/b/")), Some(4));
    assert_eq!(index.node_count(), 1);
    index.insert(topic("$SYS/x"), 5);
    assert_eq!(index.iter().count(), 2, "iter includes $ topics");
    index.clear();
    assert_eq!((index.len(), index.node_count()), (0, 0));
    assert_eq!(index.matching(&filter).count(), 0);
}

#[test]
fn a_retained_slot_reads_its_topic_again_until_it_is_removed() {
    let name = |s: &str| TopicName::try_from(s.to_string()).unwrap();
    let mut index = RetainedIndex::new();
    for t in ["a/1", "a/2", "b/1"] {
        index.insert(name(t), t.to_string());
    }
    let mut matches = index.matching(&TopicFilter::try_from("a/+").unwrap());
    let mut slots = Vec::new();
    while let Some((slot, topic, value)) = matches.next_slot() {
        assert_eq!(topic.as_str(), value);
        slots.push((slot, value.clone()));
    }
    assert_eq!(slots.len(), 2);
    for (slot, value) in &slots {
        assert_eq!(index.at(*slot).map(|(_, v)| v), Some(value));
    }
    // Removed: the slot holds nothing, or (reused) another topic.
    let (gone, _) = slots.iter().find(|(_, v)| v == "a/2").unwrap();
    index.remove(&name("a/2"));
    assert_eq!(index.at(*gone), None);
    index.insert(name("c/9"), "c/9".to_string());
    assert_ne!(index.at(*gone).map(|(_, v)| v.as_str()), Some("a/2"));
    // Emptied: every old slot reads nothing (the slab shrank), no panic.
    index.clear();
    for (slot, _) in &slots {
        assert_eq!(index.at(*slot), None);
    }
}
