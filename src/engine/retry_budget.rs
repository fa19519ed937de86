//! A retry budget: retries and hedges may be at most `ratio` of recent first calls, plus a
//! small floor per second, so an outage never multiplies the load on the providers.

use std::collections::VecDeque;
use std::time::Duration;

use super::clock::Instant;

const WINDOW: Duration = Duration::from_secs(10);

/// Sliding-window counts of first calls and extra calls (retries + hedges).
#[derive(Debug)]
pub struct RetryBudget {
    ratio: f64,
    floor: f64,
    calls: VecDeque<Instant>,
    extras: VecDeque<Instant>,
}

impl RetryBudget {
    /// At most `ratio` × first calls + `min_per_sec` × window seconds extras per window.
    pub fn new(ratio: f64, min_per_sec: f64) -> Self {
        RetryBudget {
            ratio,
            floor: min_per_sec * WINDOW.as_secs_f64(),
            calls: VecDeque::new(),
            extras: VecDeque::new(),
        }
    }

    fn expire(&mut self, now: Instant) {
        for q in [&mut self.calls, &mut self.extras] {
            while q.front().is_some_and(|t| now.duration_since(*t) > WINDOW) {
                q.pop_front();
            }
        }
    }

    /// Counts a first call of a request.
    pub fn record_call(&mut self, now: Instant) {
        self.expire(now);
        self.calls.push_back(now);
    }

    /// Takes one retry/hedge from the budget if there is room.
    pub fn try_spend(&mut self, now: Instant) -> bool {
        self.expire(now);
        let allowed = self.ratio * self.calls.len() as f64 + self.floor;
        if (self.extras.len() as f64) < allowed {
            self.extras.push_back(now);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extras_are_capped_by_the_ratio_plus_the_floor() {
        let t = Instant::now();
        let mut b = RetryBudget::new(0.2, 0.1); // floor: 1 per 10 s window
        for _ in 0..100 {
            b.record_call(t);
        }
        let granted = (0..100).filter(|_| b.try_spend(t)).count();
        assert_eq!(granted, 21);
        // The window slides: after it, the budget is back.
        let later = t + WINDOW + Duration::from_millis(1);
        assert!(b.try_spend(later));
    }
}
