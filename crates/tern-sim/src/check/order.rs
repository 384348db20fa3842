//! Per-publisher, per-topic order [MQTT-4.6.0-1] [MQTT-4.6.0-5] [MQTT-4.6.0-6].
//!
//! - **The broker receives in publish order.** Among one publisher's QoS 1
//!   and 2 messages on one topic, the broker routes each for the first time
//!   in the order the application published them.
//! - **Subscribers receive in that order.** For each client session (reset
//!   by a restart without the session or a CONNACK with Session Present 0),
//!   the first deliveries of one publisher's messages on one topic arrive in
//!   publish order. Counted are live deliveries (RETAIN 0) at QoS 1 or 2 of
//!   messages the broker routed exactly once: a message routed twice (its
//!   publisher resent it after losing its session, or a QoS 1 resend) may
//!   legitimately overtake later ones for a subscriber that joined between
//!   the routings. Topics the client reached through a shared subscription
//!   are not ordered topics and are skipped [MQTT-4.6.0-6].

use super::{Checker, Verdict};
use crate::model::{Model, MsgId, Obs, split_shared, topic_matches};
use std::collections::{BTreeMap, BTreeSet};
use tern_broker::Broker;
use tern_codec::QoS;
use tern_session::{ClientEvent, Instant};

/// The order checker.
#[derive(Debug, Default)]
pub struct Order {
    /// Per client: sessions, each the live QoS ≥ 1 deliveries in order.
    sessions: BTreeMap<usize, Vec<Vec<MsgId>>>,
    /// Ordered pairs compared.
    pairs: u64,
}

impl Order {
    fn new_session(&mut self, client: usize) {
        self.sessions.entry(client).or_default().push(Vec::new());
    }
}

impl Checker for Order {
    fn name(&self) -> &'static str {
        "order"
    }

    fn observe(&mut self, _now: Instant, _model: &Model, obs: &Obs<'_>) -> Verdict {
        match obs {
            Obs::ClientRestart {
                client,
                with_session: false,
            } => self.new_session(*client),
            Obs::ClientEvent { client, event } => match event {
                ClientEvent::Connected {
                    session_present: false,
                    ..
                } => self.new_session(*client),
                ClientEvent::Message { publish, .. }
                    if !publish.retain && publish.qos != QoS::AtMostOnce =>
                {
                    if let Some(id) = MsgId::parse(&publish.payload).filter(|id| !id.will) {
                        let s = self.sessions.entry(*client).or_default();
                        if s.is_empty() {
                            s.push(Vec::new());
                        }
                        if let Some(cur) = s.last_mut() {
                            cur.push(id);
                        }
                    }
                }
                _ => {}
            },
            _ => {}
        }
        Ok(())
    }

    fn coverage(&self) -> Vec<(&'static str, u64)> {
        vec![("ordered pairs", self.pairs)]
    }

    fn finish(&mut self, _now: Instant, model: &Model, _broker: &Broker) -> Verdict {
        // The broker's first routings, per publisher and topic.
        let mut firsts: BTreeMap<(u16, &str), Vec<(u64, u32)>> = BTreeMap::new();
        for m in model.msgs.values() {
            if m.qos == QoS::AtMostOnce {
                continue;
            }
            if let Some(r) = m.routings.first() {
                firsts
                    .entry((m.id.from, m.topic.as_str()))
                    .or_default()
                    .push((r.step, m.id.seq));
            }
        }
        for ((from, topic), mut list) in firsts {
            list.sort_unstable();
            for pair in list.windows(2) {
                if pair[1].1 < pair[0].1 {
                    return Err(format!(
                        "the broker routed m{from}:{} before m{from}:{} on {topic}, against publish order",
                        pair[1].1, pair[0].1
                    ));
                }
            }
        }
        for (client, sessions) in &self.sessions {
            let shared: Vec<&str> = model
                .ever_filters
                .get(&model.client_ids[*client])
                .map(|fs| {
                    fs.iter()
                        .filter_map(|f| match split_shared(f) {
                            (Some(_), filter) => Some(filter),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default();
            for deliveries in sessions {
                let mut seen = BTreeSet::new();
                let mut last: BTreeMap<(u16, &str), u32> = BTreeMap::new();
                for id in deliveries {
                    if !seen.insert(*id) {
                        continue;
                    }
                    let Some(m) = model.msgs.get(id) else {
                        continue;
                    };
                    if m.routings.len() != 1 || shared.iter().any(|f| topic_matches(f, &m.topic)) {
                        continue;
                    }
                    let key = (id.from, m.topic.as_str());
                    if let Some(&prev) = last.get(&key) {
                        self.pairs += 1;
                        if id.seq < prev {
                            return Err(format!(
                                "c{client} received {id} after m{}:{prev} on {}, against publish order",
                                id.from, m.topic
                            ));
                        }
                    }
                    last.insert(key, id.seq);
                }
            }
        }
        Ok(())
    }
}
