//! The busiest topics, for the dashboard: a fixed number of slots whatever
//! the number of topics (the "space-saving" heavy-hitters summary of
//! Metwally et al.).
//!
//! Every [`SAMPLE`]th PUBLISH a client sends is counted, with weight
//! [`SAMPLE`]; a topic already in a slot gains that weight, a new one
//! takes the slot with the smallest count and starts from that count plus
//! the weight (so a count over-estimates by at most the evicted count).
//! Every [`HALF_LIFE`] of the time handed in, all counts are halved, so
//! the ranking follows the current traffic rather than all-time totals.
//! A sampled message costs a scan of [`SLOTS`] short entries; the others
//! cost one increment.

use core::time::Duration;
use tern_codec::MqttString;
use tern_session::Instant;

/// Topics tracked.
pub(crate) const SLOTS: usize = 16;
/// One PUBLISH in this many is counted.
pub(crate) const SAMPLE: u64 = 4;
/// Counts halve this often.
pub(crate) const HALF_LIFE: Duration = Duration::from_secs(10);

/// A topic and its message count: an estimate, weighted towards the
/// last few halving periods (10 s each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopTopic {
    /// The topic name.
    pub topic: String,
    /// Messages, estimated and decayed.
    pub messages: u64,
}

/// The summary.
#[derive(Debug, Default)]
pub(crate) struct TopTopics {
    slots: Vec<(MqttString, u64)>,
    seen: u64,
    last_decay: Option<Instant>,
}

impl TopTopics {
    /// Counts one PUBLISH on `topic`.
    pub(crate) fn count(&mut self, now: Instant, topic: &MqttString) {
        self.seen = self.seen.wrapping_add(1);
        if self.seen % SAMPLE != 0 {
            return;
        }
        self.decay(now);
        if let Some(slot) = self.slots.iter_mut().find(|(t, _)| t == topic) {
            slot.1 += SAMPLE;
            return;
        }
        // Not a slice of the read buffer: a slot may live long.
        let topic = super::compact(topic);
        if self.slots.len() < SLOTS {
            self.slots.push((topic, SAMPLE));
            return;
        }
        if let Some(min) = self.slots.iter_mut().min_by_key(|(_, n)| *n) {
            *min = (topic, min.1 + SAMPLE);
        }
    }

    fn decay(&mut self, now: Instant) {
        let Some(last) = self.last_decay else {
            self.last_decay = Some(now);
            return;
        };
        if now - last < HALF_LIFE {
            return;
        }
        let halvings = ((now - last).as_secs() / HALF_LIFE.as_secs()).min(63) as u32;
        for (_, n) in &mut self.slots {
            *n >>= halvings;
        }
        self.slots.retain(|(_, n)| *n > 0);
        self.last_decay = Some(last + HALF_LIFE * halvings);
    }

    /// The tracked topics, busiest first (ties by name).
    pub(crate) fn top(&self) -> Vec<TopTopic> {
        let mut top: Vec<TopTopic> = self
            .slots
            .iter()
            .map(|(t, n)| TopTopic {
                topic: t.as_str().to_string(),
                messages: *n,
            })
            .collect();
        top.sort_by(|a, b| b.messages.cmp(&a.messages).then(a.topic.cmp(&b.topic)));
        top
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(s: &str) -> MqttString {
        MqttString::try_from(s.to_string()).unwrap()
    }

    #[test]
    fn a_busy_topic_stands_out_among_many_quiet_ones() {
        let mut top = TopTopics::default();
        let now = Instant::ZERO;
        for i in 0..10_000u32 {
            top.count(now, &t(&format!("quiet/{i}")));
            top.count(now, &t("busy/a"));
            top.count(now, &t("busy/a"));
        }
        let ranked = top.top();
        assert!(ranked.len() <= SLOTS);
        assert_eq!(ranked[0].topic, "busy/a", "{ranked:?}");
        // The estimate is within the sampling error of 20,000.
        assert!(
            (19_000..=21_000).contains(&ranked[0].messages),
            "{ranked:?}"
        );
    }

    #[test]
    fn counts_decay_so_the_ranking_follows_current_traffic() {
        let mut top = TopTopics::default();
        for _ in 0..4000 {
            top.count(Instant::ZERO, &t("old"));
        }
        let later = Instant::ZERO + HALF_LIFE * 5;
        for _ in 0..400 {
            top.count(later, &t("new"));
        }
        let ranked = top.top();
        assert_eq!(ranked[0].topic, "new", "{ranked:?}");
        assert_eq!(ranked[1].messages, 4000 >> 5, "{ranked:?}");
    }

    proptest! {
        /// Whatever the traffic, the slots stay bounded and a topic that
        /// carries more than a `1/SLOTS` share of the counted messages is
        /// in them (space-saving's guarantee).
        #[test]
        fn bounded_and_heavy_hitters_kept(topics in proptest::collection::vec(0u8..64, 0..2000)) {
            let mut top = TopTopics::default();
            let mut counted = std::collections::BTreeMap::new();
            for (i, n) in topics.iter().enumerate() {
                let name = format!("t/{n}");
                if (i as u64 + 1) % SAMPLE == 0 {
                    *counted.entry(name.clone()).or_insert(0u64) += 1;
                }
                top.count(Instant::ZERO, &t(&name));
            }
            let ranked = top.top();
            prop_assert!(ranked.len() <= SLOTS);
            let total: u64 = counted.values().sum();
            for (name, n) in counted {
                if n * SLOTS as u64 > total {
                    prop_assert!(ranked.iter().any(|r| r.topic == name), "{} missing", name);
                }
            }
        }
    }
}
