//! A will is published exactly when the rules say
//! [MQTT-3.1.2-8] [MQTT-3.1.3-9] [MQTT-3.14.4-3].
//!
//! The model takes the broker's `Disconnected` events as the moment the
//! broker noticed a connection end, and predicts each will: none after a
//! normal DISCONNECT (0x00) or a broker shutdown; otherwise at the end
//! itself when the Will Delay Interval is 0 or the session ends with the
//! connection, else at the earlier of the delay and the session's expiry,
//! unless a new connection for the client identifier is accepted first (it
//! cancels the will when it resumes the session, and publishes it at once
//! when it starts clean).
//!
//! A will watcher (a durable subscriber to `will/#`, subscribed before any
//! other client connects) checks the prediction:
//!
//! - the broker never sends a will before the model says it was published
//!   (checked as it happens);
//! - after healing, the watcher received every QoS 1 and 2 will the model
//!   says was published after its subscription, and no will the model says
//!   was not (QoS 0 wills may be lost while the watcher is offline).

use super::{Checker, Verdict};
use crate::model::{Model, MsgId, Obs, Role, WillState};
use std::collections::BTreeSet;
use tern_broker::{Broker, BrokerEvent, Refusal};
use tern_codec::{Packet, QoS};
use tern_session::{ClientEvent, Instant};

/// The will checker.
#[derive(Debug, Default)]
pub struct Wills {
    /// When the broker processed the watcher's SUBSCRIBE.
    watching_since: Option<Instant>,
    /// Wills the watcher received.
    received: BTreeSet<MsgId>,
    /// Wills judged: published, cancelled or still pending.
    judged: (u64, u64),
}

impl Checker for Wills {
    fn name(&self) -> &'static str {
        "wills"
    }

    fn observe(&mut self, now: Instant, model: &Model, obs: &Obs<'_>) -> Verdict {
        match obs {
            Obs::BrokerProcessed {
                client,
                packet: Packet::Subscribe(_),
                ..
            } if model.roles.get(*client) == Some(&Role::WillWatcher) => {
                self.watching_since.get_or_insert(now);
            }
            // Its SUBSCRIBE refused at a limit: it watches nothing.
            Obs::Broker {
                client: Some(client),
                event:
                    BrokerEvent::Refused {
                        what: Refusal::Subscribe(_),
                        ..
                    },
                ..
            } if model.roles.get(*client) == Some(&Role::WillWatcher) => {
                self.watching_since = None;
            }
            Obs::BrokerSent {
                client,
                packet: Packet::Publish(p),
                ..
            } if !p.dup => {
                let Some(id) = MsgId::parse(&p.payload).filter(|id| id.will) else {
                    return Ok(());
                };
                match model.wills.get(&id) {
                    Some(w) if w.state == WillState::Published || w.tie => {}
                    Some(w) => {
                        return Err(format!(
                            "the broker sent will {id} to c{client} at {now}, but it is {:?} (connection ended {}, due {})",
                            w.state, w.ended_at, w.due
                        ));
                    }
                    None => {
                        return Err(format!(
                            "the broker sent will {id} to c{client}, but the model expects no will from that connection"
                        ));
                    }
                }
            }
            Obs::ClientEvent {
                client,
                event: ClientEvent::Message { publish, .. },
            } if model.roles.get(*client) == Some(&Role::WillWatcher) => {
                if let Some(id) = MsgId::parse(&publish.payload).filter(|id| id.will) {
                    self.received.insert(id);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn coverage(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("wills published", self.judged.0),
            ("wills withheld", self.judged.1),
        ]
    }

    fn finish(&mut self, _now: Instant, model: &Model, _broker: &Broker) -> Verdict {
        let Some(since) = self.watching_since else {
            return Ok(());
        };
        for (id, w) in &model.wills {
            let published = w.state == WillState::Published;
            let got = self.received.contains(id);
            if published {
                self.judged.0 += 1;
            } else {
                self.judged.1 += 1;
            }
            if w.tie {
                continue;
            }
            if published && !got && w.due > since && w.spec.qos != QoS::AtMostOnce {
                return Err(format!(
                    "will {id} of {} (connection ended {}, delay {}s) was due at {} but the watcher never received it",
                    w.client_id, w.ended_at, w.spec.delay, w.due
                ));
            }
            if !published && got {
                return Err(format!(
                    "the watcher received will {id} of {}, which the rules say is {:?}",
                    w.client_id, w.state
                ));
            }
        }
        for id in &self.received {
            if !model.wills.contains_key(id) {
                return Err(format!(
                    "the watcher received will {id}, but the model expects no will from that connection"
                ));
            }
        }
        Ok(())
    }
}
