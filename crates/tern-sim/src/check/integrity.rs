//! Every delivery is real, and QoS 2 never duplicates within a session.
//!
//! - **No phantoms.** Every message a client application receives carries
//!   the identity of a message some application published (or of a will
//!   the model says was published by then), on the same topic, at a QoS no
//!   higher than it was published with, and the client had at some point
//!   been granted a filter that matches the topic. An empty payload (which
//!   clears a retained message) must be on a topic some client published an
//!   empty payload to.
//! - **QoS 2 at most once per flow.** Within one client session (from a
//!   clean state to the next: restart without the session, or a CONNACK
//!   with Session Present 0), a client delivers a message at QoS 2 no more
//!   often than the broker started QoS 2 flows for it (sent a PUBLISH with
//!   DUP 0; resends of a flow carry DUP 1) [MQTT-4.3.3-10]. A client that
//!   restarted without its state but resumed the broker's session may see
//!   the broker's open flows once more, so flows are counted over the
//!   client's whole life and deliveries per client session. A flow the
//!   client refused (a failing PUBREC) counts twice: if that PUBREC is lost
//!   the resend is a new message [MQTT-4.3.3-9].

use super::{Checker, Verdict};
use crate::model::{Model, MsgId, Obs, WillState, split_shared, topic_matches};
use std::collections::{BTreeMap, BTreeSet};
use tern_codec::{Packet, QoS};
use tern_session::{ClientEvent, Instant};

/// The integrity checker.
#[derive(Debug, Default)]
pub struct Integrity {
    /// Topics an application published an empty payload to.
    empty_topics: BTreeSet<String>,
    /// Per client: QoS 2 flows the broker started (DUP 0 PUBLISH sent).
    flows: BTreeMap<usize, BTreeMap<MsgId, u32>>,
    /// Per client: QoS 2 deliveries this session.
    delivered: BTreeMap<usize, BTreeMap<MsgId, u32>>,
    /// Deliveries checked.
    checked: u64,
    /// Per client and packet identifier: the message of the last QoS 2
    /// PUBLISH the client processed.
    last_qos2: BTreeMap<(usize, tern_codec::PacketId), MsgId>,
}

impl Integrity {
    fn flows(&mut self, client: usize) -> &mut BTreeMap<MsgId, u32> {
        self.flows.entry(client).or_default()
    }
}

impl Checker for Integrity {
    fn name(&self) -> &'static str {
        "integrity"
    }

    fn coverage(&self) -> Vec<(&'static str, u64)> {
        vec![("deliveries", self.checked)]
    }

    fn observe(&mut self, _now: Instant, model: &Model, obs: &Obs<'_>) -> Verdict {
        match obs {
            Obs::AppPublish { publish, .. } if publish.payload.is_empty() => {
                self.empty_topics.insert(publish.topic.to_string());
            }
            // The client forgot which QoS 2 messages it delivered; flows the
            // broker still holds may be delivered again.
            Obs::ClientRestart {
                client,
                with_session: false,
            } => {
                self.delivered.remove(client);
            }
            Obs::ClientProcessed {
                client,
                packet: Packet::Publish(p),
                ..
            } if p.qos == QoS::ExactlyOnce => {
                if let (Some(id), Some(msg)) = (p.packet_id, MsgId::parse(&p.payload)) {
                    self.last_qos2.insert((*client, id), msg);
                }
            }
            // A refusal (failing PUBREC) ends the flow for the client: if the
            // broker resends it (the PUBREC was lost), it is a new message
            // [MQTT-4.3.3-9].
            Obs::ClientSent {
                client,
                packet: Packet::PubRec(r),
                ..
            } if r.reason_code.is_error() => {
                if let Some(msg) = self.last_qos2.get(&(*client, r.packet_id)).copied() {
                    *self.flows(*client).entry(msg).or_default() += 1;
                }
            }
            Obs::BrokerSent {
                client,
                packet: Packet::Publish(p),
                ..
            } if p.qos == QoS::ExactlyOnce && !p.dup => {
                if let Some(id) = MsgId::parse(&p.payload) {
                    *self.flows(*client).entry(id).or_default() += 1;
                }
            }
            Obs::ClientEvent { client, event } => match event {
                ClientEvent::Connected {
                    session_present: false,
                    ..
                } => {
                    self.delivered.remove(client);
                }
                ClientEvent::Message { publish, .. } => {
                    self.checked += 1;
                    let client_id = &model.client_ids[*client];
                    let topic = publish.topic.as_str();
                    if publish.payload.is_empty() {
                        if !self.empty_topics.contains(topic) {
                            return Err(format!(
                                "c{client} received an empty message on {topic}, which nobody published"
                            ));
                        }
                    } else {
                        let Some(id) = MsgId::parse(&publish.payload) else {
                            return Err(format!(
                                "c{client} received a message nobody published: {:?}",
                                publish.payload
                            ));
                        };
                        let (origin_topic, origin_qos) = if id.will {
                            match model.wills.get(&id) {
                                Some(w) if w.state == WillState::Published || w.tie => {
                                    (w.spec.topic.as_str(), w.spec.qos)
                                }
                                Some(w) => {
                                    return Err(format!(
                                        "c{client} received will {id}, which the broker must not have published ({:?}, due {})",
                                        w.state, w.due
                                    ));
                                }
                                None => {
                                    return Err(format!(
                                        "c{client} received will {id}, but no connection with that will ended"
                                    ));
                                }
                            }
                        } else {
                            match model.msgs.get(&id) {
                                Some(m) if !m.routings.is_empty() => (m.topic.as_str(), m.qos),
                                Some(_) => {
                                    return Err(format!(
                                        "c{client} received {id} before the broker routed it"
                                    ));
                                }
                                None => {
                                    return Err(format!(
                                        "c{client} received {id}, which was never published"
                                    ));
                                }
                            }
                        };
                        if origin_topic != topic {
                            return Err(format!(
                                "c{client} received {id} on {topic}, but it was published to {origin_topic}"
                            ));
                        }
                        if publish.qos > origin_qos {
                            return Err(format!(
                                "c{client} received {id} at QoS {} above its published QoS {}",
                                publish.qos.as_u8(),
                                origin_qos.as_u8()
                            ));
                        }
                        if publish.qos == QoS::ExactlyOnce {
                            let flows = self.flows(*client).get(&id).copied().unwrap_or(0);
                            let n = self
                                .delivered
                                .entry(*client)
                                .or_default()
                                .entry(id)
                                .or_default();
                            *n += 1;
                            if *n > flows {
                                return Err(format!(
                                    "c{client} delivered {id} at QoS 2 {n} times in one session, but the broker started {flows} flows for it"
                                ));
                            }
                        }
                    }
                    let matched = model.ever_filters.get(client_id).is_some_and(|filters| {
                        filters
                            .iter()
                            .any(|f| topic_matches(split_shared(f).1, topic))
                    });
                    if !matched {
                        return Err(format!(
                            "c{client} received a message on {topic}, which none of its filters ever matched"
                        ));
                    }
                }
                _ => {}
            },
            _ => {}
        }
        Ok(())
    }
}
