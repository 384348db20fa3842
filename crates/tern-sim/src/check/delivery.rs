//! QoS 1 at least once and QoS 2 exactly once to durable subscribers.
//!
//! A durable subscriber has a persistent session that never expires (MQTT 5
//! Session Expiry `u32::MAX`, MQTT 3.1.1 Clean Session 0), never cleans,
//! never restarts without its session, and makes its non-shared
//! subscriptions once, at the start, with Retain As Published off (so every
//! live delivery has RETAIN 0 and retained-at-subscribe copies, RETAIN 1,
//! are told apart).
//!
//! For every message without a Message Expiry Interval, take its routings
//! (the broker processed a PUBLISH carrying it and routed it) made while one
//! of the subscriber's filters matching the topic existed (its SUBSCRIBE was
//! processed earlier). For each such routing the effective QoS is the lower
//! of the published QoS and the highest QoS granted to those filters. After
//! healing:
//!
//! - if any effective QoS is 1 or 2, the subscriber received the message at
//!   least once (RETAIN 0);
//! - if every effective QoS is 2, it received it no more often than it was
//!   routed (exactly once when routed once);
//! - every delivery's QoS is one of the effective QoS values, and a message
//!   none of whose routings matched a subscription is never delivered live;
//! - the broker never tells a durable subscriber its session is gone.
//!
//! Messages the broker reports dropping from the subscriber's session
//! (queue full, expired) excuse as many missing messages, no more.

use super::{Checker, Verdict};
use crate::model::{Model, MsgId, Obs, Role, topic_matches};
use std::collections::BTreeMap;
use tern_broker::Broker;
use tern_codec::QoS;
use tern_session::{ClientEvent, Instant};

/// The delivery checker.
#[derive(Debug, Default)]
pub struct Delivery {
    /// Live (RETAIN 0) deliveries to durable subscribers: client → message → QoS of each.
    live: BTreeMap<usize, BTreeMap<MsgId, Vec<QoS>>>,
    /// Durable subscribers that have connected once.
    connected: BTreeMap<usize, bool>,
    /// Guarantees checked: at least once, exactly once.
    checked: (u64, u64),
}

impl Checker for Delivery {
    fn name(&self) -> &'static str {
        "delivery"
    }

    fn observe(&mut self, _now: Instant, model: &Model, obs: &Obs<'_>) -> Verdict {
        let Obs::ClientEvent { client, event } = obs else {
            return Ok(());
        };
        if !matches!(
            model.roles.get(*client),
            Some(Role::Durable | Role::WillWatcher)
        ) {
            return Ok(());
        }
        match event {
            ClientEvent::Connected {
                session_present, ..
            } => {
                let before = self.connected.insert(*client, true).is_some();
                if before && !session_present {
                    return Err(format!(
                        "durable subscriber c{client} lost its session (CONNACK Session Present 0)"
                    ));
                }
            }
            ClientEvent::Message { publish, .. } if !publish.retain => {
                if let Some(id) = MsgId::parse(&publish.payload) {
                    self.live
                        .entry(*client)
                        .or_default()
                        .entry(id)
                        .or_default()
                        .push(publish.qos);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn coverage(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("durable at-least-once", self.checked.0),
            ("durable exactly-once", self.checked.1),
        ]
    }

    fn finish(&mut self, _now: Instant, model: &Model, broker: &Broker) -> Verdict {
        for (client, role) in model.roles.iter().enumerate() {
            if *role != Role::Durable {
                continue;
            }
            let client_id = &model.client_ids[client];
            let Some(session) = model.sessions.get(client_id) else {
                continue;
            };
            let subs: Vec<_> = session
                .subs
                .values()
                .filter(|s| s.group.is_none())
                .collect();
            let empty = BTreeMap::new();
            let got = self.live.get(&client).unwrap_or(&empty);
            let dropped = broker
                .session(client_id)
                .map_or(0, |s| s.dropped_queue_full() + s.dropped_expired());
            let mut missing = Vec::new();
            for m in model.msgs.values() {
                if m.expiry.is_some() {
                    continue;
                }
                let effective: Vec<QoS> = m
                    .routings
                    .iter()
                    .filter_map(|r| {
                        let granted = subs
                            .iter()
                            .filter(|s| s.since < r.step && topic_matches(&s.filter, &m.topic))
                            .map(|s| s.qos)
                            .max()?;
                        Some(r.qos.min(granted))
                    })
                    .collect();
                let deliveries = got.get(&m.id).map_or(&[][..], |v| v.as_slice());
                if effective.is_empty() {
                    if !deliveries.is_empty() {
                        return Err(format!(
                            "durable c{client} received {} live, but no routing of it matched a subscription of c{client}",
                            m.id
                        ));
                    }
                    continue;
                }
                if let Some(q) = deliveries.iter().find(|q| !effective.contains(q)) {
                    return Err(format!(
                        "durable c{client} received {} at QoS {}, expected one of {:?}",
                        m.id,
                        q.as_u8(),
                        effective.iter().map(|q| q.as_u8()).collect::<Vec<_>>()
                    ));
                }
                if effective.iter().any(|&q| q != QoS::AtMostOnce) {
                    self.checked.0 += 1;
                    if deliveries.is_empty() {
                        missing.push(m.id);
                    }
                }
                if effective.iter().all(|&q| q == QoS::ExactlyOnce) {
                    self.checked.1 += 1;
                }
                if effective.iter().all(|&q| q == QoS::ExactlyOnce)
                    && deliveries.len() > effective.len()
                {
                    return Err(format!(
                        "durable c{client} received QoS 2 message {} {} times; it was routed {} times",
                        m.id,
                        deliveries.len(),
                        effective.len()
                    ));
                }
            }
            if missing.len() as u64 > dropped {
                let shown: Vec<String> = missing.iter().take(8).map(|id| id.to_string()).collect();
                return Err(format!(
                    "durable c{client} never received {} QoS 1/2 messages routed while it was subscribed (broker dropped {dropped}): {}",
                    missing.len(),
                    shown.join(" ")
                ));
            }
        }
        Ok(())
    }
}
