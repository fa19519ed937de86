//! Time as the engine sees it. Monotonic instants are tokio's (so tests run on a paused,
//! auto-advancing clock with no real sleeps); wall-clock time comes through [`Clock`] so
//! budget days and timestamps can be pinned in tests.

use parking_lot::Mutex;

use crate::contract::Timestamp;

pub use tokio::time::Instant;

/// Wall-clock time and the monotonic clock.
pub trait Clock: Send + Sync {
    /// Monotonic now.
    fn now(&self) -> Instant {
        Instant::now()
    }
    /// Wall-clock now (UTC).
    fn utc(&self) -> Timestamp;
}

/// One moment on both clocks, to convert between the wall-clock times of shared records and
/// the monotonic instants the engine schedules with (past and future alike).
#[derive(Debug, Clone, Copy)]
pub struct TimeMap {
    pub now: Instant,
    pub utc: Timestamp,
}

impl TimeMap {
    /// Now on the real clocks.
    pub fn now() -> Self {
        TimeMap {
            now: Instant::now(),
            utc: chrono::Utc::now(),
        }
    }

    /// Now on `clock`.
    pub fn of(clock: &dyn Clock) -> Self {
        TimeMap {
            now: clock.now(),
            utc: clock.utc(),
        }
    }

    /// A wall-clock time as an instant (one too far in the past for the monotonic clock
    /// becomes its earliest instant).
    pub fn instant(&self, t: Timestamp) -> Instant {
        match (t - self.utc).to_std() {
            Ok(ahead) => self.now + ahead,
            Err(_) => {
                let behind = (self.utc - t).to_std().unwrap_or_default();
                self.now.checked_sub(behind).unwrap_or(self.now)
            }
        }
    }

    /// An instant as wall-clock time.
    pub fn utc_of(&self, i: Instant) -> Timestamp {
        if i >= self.now {
            self.utc + chrono::Duration::from_std(i - self.now).unwrap_or_default()
        } else {
            self.utc - chrono::Duration::from_std(self.now - i).unwrap_or_default()
        }
    }
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn utc(&self) -> Timestamp {
        chrono::Utc::now()
    }
}

/// A wall clock that moves only when told to, for tests. Monotonic time is tokio's: pause it
/// with `#[tokio::test(start_paused = true)]`.
#[derive(Debug)]
pub struct ManualClock(Mutex<Timestamp>);

impl ManualClock {
    /// Starts at `at`.
    pub fn new(at: Timestamp) -> Self {
        ManualClock(Mutex::new(at))
    }
    /// Moves wall time forward.
    pub fn advance(&self, by: std::time::Duration) {
        let mut t = self.0.lock();
        let by = chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
        *t = t
            .checked_add_signed(by)
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
    }
}

impl Clock for ManualClock {
    fn utc(&self) -> Timestamp {
        *self.0.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn conversions_round_trip_in_the_past_and_the_future() {
        let t = TimeMap::now();
        for secs in [-30i64, -1, 0, 1, 30] {
            let utc = t.utc + chrono::Duration::seconds(secs);
            let back = t.utc_of(t.instant(utc));
            assert!((back - utc).num_milliseconds().abs() <= 1, "{secs} s");
        }
        let earlier = t.instant(t.utc - chrono::Duration::seconds(2));
        assert_eq!(t.now.duration_since(earlier), Duration::from_secs(2));
    }
}
