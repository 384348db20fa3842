//! Packet identifiers are never reused while in flight, and in-flight
//! windows respect Receive Maximum [MQTT-2.2.1-3] [MQTT-4.9.0-2].
//!
//! - **Client commands.** `publish`, `subscribe` and `unsubscribe` never
//!   return an identifier that is still open; it opens there and closes
//!   with its completion event (`Published`, `PublishDropped`,
//!   `Subscribed`, `Unsubscribed`). A completion for an identifier that is
//!   not open is a violation. After healing, every client that ends
//!   connected has no open identifier: every flow finished.
//! - **On the wire, each direction.** A PUBLISH with DUP 0 and QoS > 0
//!   never carries an identifier its sender still has open for the session.
//!   It opens there and closes when the sender processes the matching
//!   PUBACK, PUBCOMP or failing PUBREC. The broker's side resets when the
//!   client's broker session is new; the client's side resets when it
//!   processes a CONNACK with Session Present 0 (the server kept nothing)
//!   or restarts without its session.
//! - **Receive Maximum.** On one connection, the identifiers the broker has
//!   sent a PUBLISH or PUBREL for and not yet seen completed never number
//!   more than the client's Receive Maximum; likewise an MQTT 5 client
//!   towards the broker's (MQTT 3.1.1 has no Receive Maximum).

use super::{Checker, Verdict};
use crate::model::{Model, Obs};
use std::collections::{BTreeMap, BTreeSet};
use tern_broker::Broker;
use tern_codec::{Packet, PacketId, QoS};
use tern_session::{ClientEvent, Instant};

#[derive(Debug, Default)]
struct Side {
    /// Open identifiers for the session.
    open: BTreeSet<PacketId>,
    /// Per link: identifiers sent on it and not completed.
    on_wire: BTreeMap<u64, BTreeSet<PacketId>>,
}

impl Side {
    fn sent(&mut self, link: u64, packet: &Packet, who: &str, max: u16) -> Verdict {
        match packet {
            Packet::Publish(p) if p.qos != QoS::AtMostOnce => {
                let Some(id) = p.packet_id else {
                    return Err(format!(
                        "{who} sent a QoS {} PUBLISH without an identifier",
                        p.qos.as_u8()
                    ));
                };
                if !p.dup && !self.open.insert(id) {
                    return Err(format!(
                        "{who} sent a new PUBLISH (DUP 0) with identifier {id}, still in flight"
                    ));
                }
                self.on_wire.entry(link).or_default().insert(id);
            }
            Packet::PubRel(r) => {
                self.on_wire.entry(link).or_default().insert(r.packet_id);
            }
            _ => return Ok(()),
        }
        let n = self.on_wire.get(&link).map_or(0, BTreeSet::len);
        if n > usize::from(max) {
            return Err(format!(
                "{who} has {n} QoS 1/2 messages in flight on one connection, above the peer's Receive Maximum {max}"
            ));
        }
        Ok(())
    }

    fn acked(&mut self, link: u64, packet: &Packet) {
        let id = match packet {
            Packet::PubAck(a) => a.packet_id,
            Packet::PubComp(a) => a.packet_id,
            Packet::PubRec(a) if a.reason_code.is_error() => a.packet_id,
            _ => return,
        };
        self.open.remove(&id);
        if let Some(w) = self.on_wire.get_mut(&link) {
            w.remove(&id);
        }
    }

    fn reset(&mut self) {
        self.open.clear();
        self.on_wire.clear();
    }
}

/// The packet identifier checker.
#[derive(Debug, Default)]
pub struct PacketIds {
    broker_receive_maximum: u16,
    /// Per client: identifiers the application holds open.
    app: BTreeMap<usize, BTreeSet<PacketId>>,
    /// Per client: whether it is connected.
    connected: BTreeMap<usize, bool>,
    /// Per client: the client's sending side.
    client: BTreeMap<usize, Side>,
    /// Per client: the broker's sending side, with the session generation.
    broker: BTreeMap<usize, (u32, Side)>,
    /// Identifiers opened (commands and new PUBLISH packets on the wire).
    opened: u64,
}

impl PacketIds {
    /// A checker for a broker with this Receive Maximum.
    pub fn new(broker_receive_maximum: u16) -> Self {
        Self {
            broker_receive_maximum,
            ..Self::default()
        }
    }

    fn open(&mut self, client: usize, id: PacketId) -> Verdict {
        self.opened += 1;
        if !self.app.entry(client).or_default().insert(id) {
            return Err(format!(
                "c{client}: the session handed out identifier {id}, which is still in flight"
            ));
        }
        Ok(())
    }

    fn broker_side(&mut self, model: &Model, client: usize) -> &mut Side {
        let generation = model.session_of(client).map_or(0, |s| s.generation);
        let entry = self.broker.entry(client).or_default();
        if entry.0 != generation {
            *entry = (generation, Side::default());
        }
        &mut entry.1
    }
}

impl Checker for PacketIds {
    fn name(&self) -> &'static str {
        "packet-ids"
    }

    fn coverage(&self) -> Vec<(&'static str, u64)> {
        vec![("identifiers handed out", self.opened)]
    }

    fn observe(&mut self, _now: Instant, model: &Model, obs: &Obs<'_>) -> Verdict {
        match obs {
            Obs::AppPublish {
                client,
                packet_id: Some(id),
                ..
            }
            | Obs::AppRequest {
                client,
                packet_id: id,
            } => self.open(*client, *id)?,
            Obs::ClientRestart {
                client,
                with_session,
            } => {
                self.connected.insert(*client, false);
                if !with_session {
                    self.app.remove(client);
                    self.client.remove(client);
                }
            }
            Obs::ClientEvent { client, event } => {
                let closes = match event {
                    ClientEvent::Published { packet_id, .. }
                    | ClientEvent::Subscribed { packet_id, .. }
                    | ClientEvent::Unsubscribed { packet_id, .. }
                    | ClientEvent::PublishDropped {
                        packet_id: Some(packet_id),
                    } => Some(*packet_id),
                    ClientEvent::Connected { .. } => {
                        self.connected.insert(*client, true);
                        None
                    }
                    ClientEvent::Closed(_) => {
                        self.connected.insert(*client, false);
                        None
                    }
                    _ => None,
                };
                if let Some(id) = closes {
                    if !self.app.entry(*client).or_default().remove(&id) {
                        return Err(format!(
                            "c{client}: a completion event for identifier {id}, which was not in flight ({event:?})"
                        ));
                    }
                }
            }
            Obs::ClientSent {
                client,
                link,
                packet,
            } => {
                // MQTT 3.1.1 has no Receive Maximum: the client cannot know one.
                let v5 = model.conns.get(link).is_none_or(|c| c.v5);
                let max = if v5 {
                    self.broker_receive_maximum
                } else {
                    u16::MAX
                };
                self.client.entry(*client).or_default().sent(
                    *link,
                    packet,
                    &format!("c{client}"),
                    max,
                )?;
            }
            Obs::ClientProcessed {
                client,
                link,
                packet,
            } => {
                if let Packet::ConnAck(c) = packet {
                    if !c.session_present {
                        self.client.entry(*client).or_default().reset();
                    }
                }
                self.client.entry(*client).or_default().acked(*link, packet);
            }
            Obs::BrokerSent {
                client,
                link,
                packet,
            } => {
                let max = model
                    .conns
                    .get(link)
                    .map_or(u16::MAX, |c| c.receive_maximum);
                self.broker_side(model, *client).sent(
                    *link,
                    packet,
                    &format!("the broker (to c{client})"),
                    max,
                )?;
            }
            Obs::BrokerProcessed {
                client,
                link,
                packet,
            } => self.broker_side(model, *client).acked(*link, packet),
            _ => {}
        }
        Ok(())
    }

    fn finish(&mut self, _now: Instant, _model: &Model, _broker: &Broker) -> Verdict {
        for (client, open) in &self.app {
            if self.connected.get(client) == Some(&true) && !open.is_empty() {
                return Err(format!(
                    "c{client} ends connected after healing with flows still open: {open:?}"
                ));
            }
        }
        Ok(())
    }
}
