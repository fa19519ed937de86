//! This worker's share of a provider's concurrency. A vendor that takes only so many calls
//! at once answers the rest 429; with several workers sharing it, each learns its share the
//! way TCP does (AIMD): a 429 while other calls to it are in flight cuts the limit to 70 %
//! of them, each success raises it by 1/limit. A request that finds every candidate at its
//! limit waits for a call to end (while its deadline allows) instead of falling back or
//! blocking the provider: under overload the provider is kept exactly full.

use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

/// Above this the limit is dropped again: the provider has shown no limit for a long time.
const UNLIMITED_ABOVE: f64 = 4096.0;
/// The cut on a 429.
const DECREASE: f64 = 0.7;

#[derive(Debug, Default)]
struct State {
    in_flight: u32,
    /// `None` until the provider first says it is full.
    limit: Option<f64>,
}

/// One provider's calls in flight from this worker, and its learnt limit.
#[derive(Debug)]
pub struct Concurrency {
    state: Arc<Mutex<State>>,
    /// Woken whenever a call to any provider ends (shared by all of the engine's slots).
    freed: Arc<Notify>,
}

/// A call counted in flight until dropped.
#[derive(Debug)]
pub struct InFlight {
    state: Arc<Mutex<State>>,
    freed: Arc<Notify>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.state.lock().in_flight -= 1;
        self.freed.notify_waiters();
    }
}

impl Concurrency {
    /// Counting calls to one provider; `freed` is woken when any call ends.
    pub fn new(freed: Arc<Notify>) -> Self {
        Concurrency {
            state: Arc::default(),
            freed,
        }
    }

    /// Whether a call may start now.
    pub fn has_room(&self) -> bool {
        let s = self.state.lock();
        s.limit
            .is_none_or(|l| f64::from(s.in_flight) < l.floor().max(1.0))
    }

    /// Counts a call in flight until the returned guard drops. Admission is the caller's
    /// ([`has_room`](Self::has_room)): a probe or a race may go one over the limit.
    pub fn start(&self) -> InFlight {
        self.state.lock().in_flight += 1;
        self.guard()
    }

    fn guard(&self) -> InFlight {
        InFlight {
            state: self.state.clone(),
            freed: self.freed.clone(),
        }
    }

    /// Calls in flight now.
    pub fn in_flight(&self) -> u32 {
        self.state.lock().in_flight
    }

    /// The learnt limit, if the provider ever said it was full.
    pub fn limit(&self) -> Option<f64> {
        self.state.lock().limit
    }

    /// The provider answered 429 while `others` other calls to it were in flight: it is
    /// full, and this worker's share is less than that (at least one call).
    pub fn on_full(&self, others: u32) {
        let mut s = self.state.lock();
        let seen = f64::from(others).min(s.limit.unwrap_or(f64::MAX));
        s.limit = Some((seen * DECREASE).max(1.0));
    }

    /// A call answered: one more may fit.
    pub fn on_success(&self) {
        let mut s = self.state.lock();
        if let Some(l) = s.limit {
            let next = l + 1.0 / l;
            s.limit = (next < UNLIMITED_ABOVE).then_some(next);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A call as the engine starts one: only when there is room.
    fn admitted(c: &Concurrency) -> Option<InFlight> {
        c.has_room().then(|| c.start())
    }

    #[test]
    fn a_429_under_load_sets_a_limit_that_successes_raise() {
        let c = Concurrency::new(Arc::default());
        let calls: Vec<InFlight> = (0..10).map(|_| admitted(&c).unwrap()).collect();
        assert_eq!(c.in_flight(), 10);
        c.on_full(10);
        assert_eq!(c.limit(), Some(7.0));
        assert!(!c.has_room(), "10 in flight, limit 7");
        drop(calls);
        assert_eq!(c.in_flight(), 0);
        let held: Vec<InFlight> = (0..7).map(|_| admitted(&c).unwrap()).collect();
        assert!(admitted(&c).is_none());
        for _ in 0..8 {
            c.on_success();
        }
        assert!(c.limit().unwrap() >= 8.0);
        assert!(admitted(&c).is_some(), "room for an eighth");
        drop(held);
        c.on_full(0);
        assert_eq!(c.limit(), Some(1.0), "refused alone: one call at a time");
        assert_eq!(
            c.start().state.lock().in_flight,
            1,
            "a probe ignores the limit"
        );
    }
}
