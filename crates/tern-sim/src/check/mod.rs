//! Invariant checkers.
//!
//! Each checker is a small struct that keeps what it needs from the
//! observations, may fail during the run ([`Checker::observe`],
//! [`Checker::check_broker`]) and judges the whole run at the end
//! ([`Checker::finish`], after healing). Each one states, in its module
//! documentation, exactly when its guarantee applies.

mod bounds;
mod delivery;
mod expiry;
mod ids;
mod integrity;
mod order;
mod retained;
mod wills;

pub use bounds::Bounds;
pub use delivery::Delivery;
pub use expiry::Expiry;
pub use ids::PacketIds;
pub use integrity::Integrity;
pub use order::Order;
pub use retained::Retained;
pub use wills::Wills;

use crate::model::{Model, Obs};
use tern_broker::Broker;
use tern_session::{Instant, QueueLimits};

/// A checker's verdict when something is wrong.
pub type Verdict = Result<(), String>;

/// An invariant checker.
pub trait Checker {
    /// A short name for reports.
    fn name(&self) -> &'static str;

    /// Sees one observation (after the model applied it).
    fn observe(&mut self, now: Instant, model: &Model, obs: &Obs<'_>) -> Verdict {
        let _ = (now, model, obs);
        Ok(())
    }

    /// Looks at the broker's state after it settled.
    fn check_broker(&mut self, now: Instant, model: &Model, broker: &Broker) -> Verdict {
        let _ = (now, model, broker);
        Ok(())
    }

    /// Judges the whole run, after healing.
    fn finish(&mut self, now: Instant, model: &Model, broker: &Broker) -> Verdict {
        let _ = (now, model, broker);
        Ok(())
    }

    /// How much the checker checked (for reports): name and count pairs.
    fn coverage(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}

/// The limits the bounds checker holds the broker to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Each session's queue bounds.
    pub queue: QueueLimits,
    /// The broker's Receive Maximum.
    pub broker_receive_maximum: u16,
}

/// Every checker.
pub fn all(limits: Limits) -> Vec<Box<dyn Checker>> {
    vec![
        Box::new(Integrity::default()),
        Box::new(Delivery::default()),
        Box::new(Order::default()),
        Box::new(PacketIds::new(limits.broker_receive_maximum)),
        Box::new(Retained::default()),
        Box::new(Wills::default()),
        Box::new(Expiry::default()),
        Box::new(Bounds::new(limits)),
    ]
}

/// Rounds a duration up to whole seconds, as tern-session does for the
/// remaining Message Expiry Interval.
pub(crate) fn ceil_secs(d: core::time::Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}
