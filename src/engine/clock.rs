//! Time as the engine sees it. Monotonic instants are tokio's (so tests run on a paused,
//! auto-advancing clock with no real sleeps); wall-clock time comes through [`Clock`] so
//! budget days and timestamps can be pinned in tests.

use std::sync::atomic::{AtomicI64, Ordering};

use parking_lot::Mutex;

use crate::contract::Timestamp;

pub use tokio::time::Instant;

/// A skew added to this host's clock, to run a worker as if its clock were wrong (set from
/// `AI_FAILOVER_CLOCK_OFFSET_MS` at start-up; 0 in production).
static INJECTED_MS: AtomicI64 = AtomicI64::new(0);
/// How far the NATS server's clock is ahead of this host's (skew included), as last measured:
/// added to every wall-clock reading, so deadlines, heartbeats, leases and open periods are
/// all on the server's time, the one that stamps every message.
static CORRECTION_MS: AtomicI64 = AtomicI64::new(0);

/// The environment variable that skews this process's clock (tests, drills).
pub const OFFSET_ENV: &str = "AI_FAILOVER_CLOCK_OFFSET_MS";

fn plus_ms(t: Timestamp, ms: i64) -> Timestamp {
    t + chrono::Duration::milliseconds(ms)
}

/// This host's clock, as it is (with any injected skew): what a naive worker would use.
pub fn local_now() -> Timestamp {
    plus_ms(chrono::Utc::now(), INJECTED_MS.load(Ordering::Relaxed))
}

/// The fleet's wall-clock time: this host's clock corrected to the NATS server's.
pub fn wall_now() -> Timestamp {
    plus_ms(local_now(), CORRECTION_MS.load(Ordering::Relaxed))
}

/// Skews this process's clock by `ms` (see [`OFFSET_ENV`]).
pub fn inject_skew_ms(ms: i64) {
    INJECTED_MS.store(ms, Ordering::Relaxed);
}

/// Sets the measured correction to the server's clock.
pub fn set_correction_ms(ms: i64) {
    CORRECTION_MS.store(ms, Ordering::Relaxed);
}

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
            utc: wall_now(),
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
        wall_now()
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
