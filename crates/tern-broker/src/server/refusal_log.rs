//! How often a connection's refusals are logged: the first, then at most
//! one line per [`INTERVAL`], which says how many were not logged since.
//!
//! Every refusal is still counted (`$SYS/broker/limits/refused`,
//! `tern_messages_dropped_total{reason}`); only the log lines are thinned.
//! A client publishing into a full queue is refused once per message:
//! writing a line for each took more of the broker's time than routing
//! them (issue 13, qos1-unacked: 29,000 warnings in a 1.2 s flood, and a
//! bystander's p99 of 0.6-1.7 s).

use tern_session::Instant;

/// At most one refusal line per connection this often.
pub(crate) const INTERVAL: core::time::Duration = core::time::Duration::from_secs(1);

/// One connection's refusal lines.
#[derive(Debug, Default)]
pub(crate) struct RefusalLog {
    /// When a line was last written.
    last: Option<Instant>,
    /// Refusals since then that were not.
    skipped: u64,
}

impl RefusalLog {
    /// A refusal at `now`: `Some(n)` if it is to be logged, `n` the
    /// refusals not logged before it; `None` if not.
    pub(crate) fn admit(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now < last + INTERVAL => {
                self.skipped += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(core::mem::take(&mut self.skipped))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::time::Duration;

    #[test]
    fn the_first_is_logged_then_one_a_second_with_the_count_skipped() {
        let mut log = RefusalLog::default();
        let t = Instant::ZERO + Duration::from_secs(5);
        assert_eq!(log.admit(t), Some(0));
        for ms in 1..1000 {
            assert_eq!(log.admit(t + Duration::from_millis(ms)), None);
        }
        assert_eq!(log.admit(t + INTERVAL), Some(999));
        assert_eq!(log.admit(t + INTERVAL), None);
        assert_eq!(log.admit(t + 3 * INTERVAL), Some(1));
    }
}
