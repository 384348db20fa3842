//! The retained set is the last retained publish per topic
//! [MQTT-3.3.1-5] [MQTT-3.3.1-6] [MQTT-3.3.1-7] [MQTT-3.3.2-5].
//!
//! After healing, a fresh client subscribes to `#` (Retain Handling 0). The
//! retained messages it receives (RETAIN 1) are exactly, topic for topic,
//! the last retained message the broker processed on each topic (in the
//! order it processed them; a retained will counts when it is published; an
//! empty payload clears the topic), leaving out those whose Message Expiry
//! Interval had passed when the broker processed the SUBSCRIBE. `$`-topics
//! do not match `#` [MQTT-4.7.2-1]. When the broker's queue limit is
//! smaller than the retained set, the probe's session drops some copies,
//! and a copy may expire while it waits behind others: as many topics as
//! the session reports dropping (queue full or expired) may be missing, no
//! more, and what arrives must still be right.

use super::{Checker, Verdict};
use crate::model::{Model, MsgId, Obs, Role};
use std::collections::BTreeMap;
use tern_broker::Broker;
use tern_codec::Packet;
use tern_session::{ClientEvent, Instant};

/// The retained-state checker.
#[derive(Debug, Default)]
pub struct Retained {
    /// What the model held when the probe's SUBSCRIBE was processed.
    expected: Option<BTreeMap<String, MsgId>>,
    /// What the probe received with RETAIN 1.
    received: BTreeMap<String, Vec<MsgId>>,
}

impl Retained {
    fn expected_len(&self) -> u64 {
        self.expected.as_ref().map_or(0, |e| e.len() as u64)
    }
}

impl Retained {
    /// Compares a received retained set with the expected one; `dropped`
    /// is how many copies the probe's session dropped (a small queue limit,
    /// or expiry while queued), which excuses as many missing topics.
    pub fn compare(
        expected: &BTreeMap<String, MsgId>,
        received: &BTreeMap<String, Vec<MsgId>>,
        dropped: u64,
    ) -> Verdict {
        let mut missing = Vec::new();
        for (topic, want) in expected {
            match received.get(topic).map(Vec::as_slice) {
                Some([got]) if got == want => {}
                Some(got) => {
                    return Err(format!(
                        "retained on {topic}: expected {want}, the probe got {got:?}"
                    ));
                }
                None => missing.push(format!("{topic} ({want})")),
            }
        }
        if missing.len() as u64 > dropped {
            return Err(format!(
                "retained: the probe got nothing on {} (its queue dropped {dropped})",
                missing.join(", ")
            ));
        }
        for (topic, got) in received {
            if !expected.contains_key(topic) {
                return Err(format!(
                    "retained on {topic}: expected nothing, the probe got {got:?}"
                ));
            }
        }
        Ok(())
    }
}

impl Checker for Retained {
    fn name(&self) -> &'static str {
        "retained"
    }

    fn observe(&mut self, now: Instant, model: &Model, obs: &Obs<'_>) -> Verdict {
        match obs {
            Obs::BrokerProcessed {
                client,
                packet: Packet::Subscribe(_),
                ..
            } if model.roles.get(*client) == Some(&Role::RetainedProbe) => {
                self.expected.get_or_insert_with(|| model.retained_at(now));
            }
            Obs::ClientEvent {
                client,
                event: ClientEvent::Message { publish, .. },
            } if model.roles.get(*client) == Some(&Role::RetainedProbe) && publish.retain => {
                if let Some(id) = MsgId::parse(&publish.payload) {
                    self.received
                        .entry(publish.topic.to_string())
                        .or_default()
                        .push(id);
                } else {
                    return Err(format!(
                        "the probe received a retained message on {} that carries no identity",
                        publish.topic
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn coverage(&self) -> Vec<(&'static str, u64)> {
        vec![("retained topics", self.expected_len())]
    }

    fn finish(&mut self, _now: Instant, model: &Model, broker: &Broker) -> Verdict {
        let Some(expected) = &self.expected else {
            return Err("the retained probe's SUBSCRIBE was never processed".into());
        };
        let probe = model.roles.iter().position(|r| *r == Role::RetainedProbe);
        let dropped = probe
            .and_then(|p| broker.session(&model.client_ids[p]))
            .map_or(0, |s| s.dropped_queue_full() + s.dropped_expired());
        Self::compare(expected, &self.received, dropped)
    }
}
