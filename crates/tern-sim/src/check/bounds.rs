//! Memory stays within the configured limits, and nobody breaks the protocol.
//!
//! - **Queues.** Whenever the broker settles, every session's queue holds at
//!   most `QueueLimits::max_messages` messages and `max_bytes` bytes of
//!   topic and payload.
//! - **Sessions.** The broker never holds more sessions than there are
//!   distinct client identifiers.
//! - **The memory account.** Whenever the broker settles, the running
//!   sums the memory budget reads equal a recount from scratch
//!   (`Broker::memory_recount`): a drift would make the budget refuse
//!   everyone, or nobody.
//! - **No protocol violations.** Tern clients and the Tern broker never
//!   close a connection because the other side broke a rule (either side's
//!   `ProtocolViolation`).

use super::{Checker, Limits, Verdict};
use crate::model::{Model, Obs};
use tern_broker::{Broker, BrokerEvent};
use tern_session::{ClientEvent, CloseReason, Instant};

/// The bounds checker.
#[derive(Debug)]
pub struct Bounds {
    limits: Limits,
}

impl Bounds {
    /// A checker for these limits.
    pub fn new(limits: Limits) -> Self {
        Self { limits }
    }
}

impl Checker for Bounds {
    fn name(&self) -> &'static str {
        "bounds"
    }

    fn observe(&mut self, _now: Instant, _model: &Model, obs: &Obs<'_>) -> Verdict {
        match obs {
            Obs::ClientEvent {
                client,
                event: ClientEvent::Closed(CloseReason::ProtocolViolation(v)),
            } => Err(format!(
                "c{client} closed its connection: the broker broke a rule: {v}"
            )),
            Obs::Broker {
                client,
                event:
                    BrokerEvent::Disconnected {
                        reason: CloseReason::ProtocolViolation(v),
                        ..
                    },
                ..
            } => Err(format!(
                "the broker closed c{}'s connection: the client broke a rule: {v}",
                client.map_or("?".into(), |c| c.to_string())
            )),
            _ => Ok(()),
        }
    }

    fn check_broker(&mut self, _now: Instant, model: &Model, broker: &Broker) -> Verdict {
        let q = self.limits.queue;
        for client_id in &model.client_ids {
            let Some(s) = broker.session(client_id) else {
                continue;
            };
            if s.queue_len() > q.max_messages || s.queued_bytes() > q.max_bytes {
                return Err(format!(
                    "{client_id}'s session queues {} messages / {} bytes, above the limits {} / {}",
                    s.queue_len(),
                    s.queued_bytes(),
                    q.max_messages,
                    q.max_bytes
                ));
            }
        }
        let running = broker.memory_use();
        let recounted = broker.memory_recount();
        if running != recounted {
            return Err(format!(
                "the memory account drifted: its running sums say {running:?}, a recount {recounted:?}"
            ));
        }
        if broker.session_count() > model.client_ids.len() {
            return Err(format!(
                "the broker holds {} sessions for {} client identifiers",
                broker.session_count(),
                model.client_ids.len()
            ));
        }
        Ok(())
    }
}
