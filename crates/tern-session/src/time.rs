//! Time as the caller tells it: a monotonic instant that works in `no_std`.

use core::{
    fmt,
    ops::{Add, Sub},
    time::Duration,
};

/// A point on the caller's monotonic clock, in nanoseconds since an epoch the
/// caller chooses (its start-up, say).
///
/// The state machines never read a clock: every input carries `now`, and
/// deadlines come back from `poll_timeout` as `Instant`s on the same scale.
/// A tokio shell converts with `Instant::from_nanos((now - start).as_nanos() as u64)`;
/// a simulation just counts.
///
/// ```
/// use core::time::Duration;
/// use tern_session::Instant;
///
/// let t = Instant::from_secs(10);
/// assert_eq!(t + Duration::from_millis(500), Instant::from_millis(10_500));
/// assert_eq!(Instant::from_secs(12) - t, Duration::from_secs(2));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Instant(u64);

impl Instant {
    /// The epoch.
    pub const ZERO: Instant = Instant(0);

    /// An instant `nanos` nanoseconds after the epoch.
    pub const fn from_nanos(nanos: u64) -> Self {
        Self(nanos)
    }

    /// An instant `millis` milliseconds after the epoch.
    pub const fn from_millis(millis: u64) -> Self {
        Self(millis.saturating_mul(1_000_000))
    }

    /// An instant `secs` seconds after the epoch.
    pub const fn from_secs(secs: u64) -> Self {
        Self(secs.saturating_mul(1_000_000_000))
    }

    /// Nanoseconds since the epoch.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// The time since `earlier`, or zero if `earlier` is later.
    pub const fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// `self + d`, saturating at the end of time.
    pub fn saturating_add(self, d: Duration) -> Instant {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(nanos))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        self.saturating_add(d)
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    /// Saturating: an earlier minus a later instant is zero.
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

/// Conversions to and from `std::time::Instant`, for drivers on `std`.
///
/// A driver picks an epoch once (its start) and converts every clock
/// reading with it; nothing here reads the clock.
///
/// ```
/// use std::time::Duration;
/// use tern_session::Instant;
///
/// let epoch = std::time::Instant::now();
/// let later = epoch + Duration::from_millis(1500);
/// let t = Instant::from_std(epoch, later);
/// assert_eq!(t, Instant::from_millis(1500));
/// assert_eq!(t.to_std(epoch), later);
/// ```
#[cfg(feature = "std")]
impl Instant {
    /// `t` on the scale that starts at `epoch` (zero if `t` is earlier).
    pub fn from_std(epoch: std::time::Instant, t: std::time::Instant) -> Instant {
        Instant::ZERO.saturating_add(t.saturating_duration_since(epoch))
    }

    /// This instant on `std`'s clock, given the epoch it counts from.
    pub fn to_std(self, epoch: std::time::Instant) -> std::time::Instant {
        epoch + Duration::from_nanos(self.0)
    }
}

/// How long a blocking read may wait when the session's next deadline is
/// `deadline` (from `poll_timeout`): `None` (wait for input) when there is
/// no deadline, and never zero, which `std`'s `set_read_timeout` refuses:
/// a deadline already passed gives one millisecond, after which the driver
/// calls `handle_timeout`.
///
/// ```
/// use std::time::Duration;
/// use tern_session::{read_timeout, Instant};
///
/// let now = Instant::from_secs(10);
/// assert_eq!(read_timeout(now, None), None);
/// assert_eq!(read_timeout(now, Some(Instant::from_secs(12))), Some(Duration::from_secs(2)));
/// assert_eq!(read_timeout(now, Some(Instant::from_secs(9))), Some(Duration::from_millis(1)));
/// ```
#[cfg(feature = "std")]
pub fn read_timeout(now: Instant, deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| (d - now).max(Duration::from_millis(1)))
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = Duration::from_nanos(self.0);
        write!(f, "{}.{:09}s", d.as_secs(), d.subsec_nanos())
    }
}
