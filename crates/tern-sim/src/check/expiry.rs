//! Expired messages are never sent onward, and the interval sent counts down
//! [MQTT-3.3.2-5] [MQTT-3.3.2-6].
//!
//! - **Broker to subscriber.** When the broker first sends a message to a
//!   subscriber (PUBLISH with DUP 0), some routing of it (or the retained
//!   copy it was sent from, stored at a routing) satisfies both: its
//!   Message Expiry Interval `E` as received had not passed
//!   (`now < routed_at + E`), and the interval sent is the remaining time
//!   rounded up to whole seconds, `ceil(routed_at + E - now)`, as
//!   tern-session rounds it. A message published without an interval is
//!   sent without one.
//! - **Client to broker.** When a client first sends a message (DUP 0), the
//!   interval the application gave it at `publish` had not passed, and the
//!   interval sent is `ceil(published_at + E - now)` (the time it waited in
//!   the client's queue, however many connections that took, is deducted).

use super::{Checker, Verdict, ceil_secs};
use crate::model::{Model, MsgId, Obs};
use core::time::Duration;
use tern_codec::Packet;
use tern_session::Instant;

/// The message-expiry checker.
#[derive(Debug, Default)]
pub struct Expiry {
    /// Sends of messages with a Message Expiry Interval checked.
    checked: u64,
}

/// Whether a PUBLISH sent at `now` with interval `sent` honours an
/// interval `e` that started counting at `start` (an MQTT 3.1.1 receiver
/// gets no properties: only the deadline applies).
fn honours(start: Instant, e: u32, now: Instant, sent: Option<u32>, v5: bool) -> bool {
    let deadline = start + Duration::from_secs(u64::from(e));
    if now >= deadline {
        return false;
    }
    !v5 || sent.map(u64::from) == Some(ceil_secs(deadline - now))
}

impl Checker for Expiry {
    fn name(&self) -> &'static str {
        "expiry"
    }

    fn coverage(&self) -> Vec<(&'static str, u64)> {
        vec![("expiring sends", self.checked)]
    }

    fn observe(&mut self, now: Instant, model: &Model, obs: &Obs<'_>) -> Verdict {
        match obs {
            Obs::BrokerSent {
                client,
                link,
                packet: Packet::Publish(p),
            } if !p.dup => {
                let v5 = model.conns.get(link).is_none_or(|c| c.v5);
                let Some(m) = MsgId::parse(&p.payload).and_then(|id| model.msgs.get(&id)) else {
                    return Ok(());
                };
                let sent = p.properties.message_expiry_interval;
                let routed: Vec<_> = m.routings.iter().filter(|r| r.at <= now).collect();
                if routed.iter().all(|r| r.expiry.is_none()) {
                    if sent.is_some() {
                        return Err(format!(
                            "the broker sent {} to c{client} with Message Expiry Interval {sent:?}, but it was published without one",
                            m.id
                        ));
                    }
                    return Ok(());
                }
                self.checked += 1;
                let ok = routed.iter().any(|r| match r.expiry {
                    Some(e) => honours(r.at, e, now, sent, v5),
                    None => sent.is_none(),
                });
                if !ok {
                    let detail: Vec<String> = routed
                        .iter()
                        .map(|r| format!("routed at {} with {:?}", r.at, r.expiry))
                        .collect();
                    return Err(format!(
                        "the broker first sent {} to c{client} at {now} with Message Expiry Interval {sent:?}; {}",
                        m.id,
                        detail.join(", ")
                    ));
                }
            }
            Obs::ClientSent {
                client,
                link,
                packet: Packet::Publish(p),
            } if !p.dup => {
                let v5 = model.conns.get(link).is_none_or(|c| c.v5);
                let Some(m) = MsgId::parse(&p.payload).and_then(|id| model.msgs.get(&id)) else {
                    return Ok(());
                };
                let Some(e) = m.expiry else {
                    return Ok(());
                };
                let sent = p.properties.message_expiry_interval;
                self.checked += 1;
                if !honours(m.published_at, e, now, sent, v5) {
                    return Err(format!(
                        "c{client} sent {} (DUP 0) at {now} with Message Expiry Interval {sent:?}; it was published at {} with {e}s",
                        m.id, m.published_at
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    }
}
