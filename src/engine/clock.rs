//! Time as the engine sees it. Monotonic instants are tokio's (so tests run on a paused,
//! auto-advancing clock with no real sleeps); wall-clock time comes through [`Clock`] so
//! budget days and timestamps can be pinned in tests.

use std::sync::Mutex;

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
        let mut t = self.0.lock().unwrap();
        *t += chrono::Duration::from_std(by).expect("small duration");
    }
}

impl Clock for ManualClock {
    fn utc(&self) -> Timestamp {
        *self.0.lock().unwrap()
    }
}
