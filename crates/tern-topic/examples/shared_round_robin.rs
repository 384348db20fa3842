//! Shared subscriptions: `$share/{group}/{filter}` delivers each message to
//! one member of each group, here in turn (round robin), next to a plain
//! subscriber who gets every message. `cargo run -p tern-topic --example shared_round_robin`
use tern_topic::{MatchBuffer, SubscriptionFilter, SubscriptionTree, TopicError, TopicName};

fn main() -> Result<(), TopicError> {
    // Subscriptions keyed by client name; the value is the granted QoS.
    let mut tree = SubscriptionTree::new();
    for worker in ["worker-a", "worker-b", "worker-c"] {
        tree.insert(
            worker,
            &SubscriptionFilter::parse_str("$share/workers/jobs/+")?,
            1u8,
        );
    }
    tree.insert("auditor", &SubscriptionFilter::parse_str("jobs/#")?, 0u8);

    let mut buf = MatchBuffer::new();
    let mut turn = 0usize;
    for job in 1..=6 {
        let topic = TopicName::try_from(format!("jobs/{job}").as_str())?;
        let matches = tree.matches(&topic, &mut buf);
        let mut receivers = Vec::new();
        for plain in matches.plain() {
            receivers.push(*plain.key());
        }
        for group in matches.shared() {
            // One member per group: round robin over the group's members.
            let members = group.members();
            receivers.push(members[turn % members.len()].0);
            turn += 1;
        }
        println!("{topic}: {}", receivers.join(", "));
    }
    Ok(())
}
