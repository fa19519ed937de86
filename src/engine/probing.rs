//! The fleet prober's rules, without I/O: when to probe an open provider next, and what a
//! probe's outcome says about it.
//!
//! While a provider's breaker is open, one worker of the fleet sends it a cheap probe (a model
//! listing) about every `probe_interval_ms`, so its recovery is seen within about a second
//! and no live request has to be the trial. A probe that hangs until its timeout makes the
//! next one wait longer (2, then 4 intervals), so a hung provider costs the fleet a handful
//! of stuck connections over a long outage, not one a second.

use std::time::Duration;

use crate::contract::ErrorClass;

use super::clock::Instant;
use super::policy::policy;

/// The most the gap after timed-out probes grows to, in probe intervals.
pub const MAX_GAP_INTERVALS: u32 = 4;

/// What a probe said about its provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeVerdict {
    /// It answered: it can serve again (once its open period is over).
    Up,
    /// It failed the way a down provider fails (timeout, 5xx, connection refused …).
    Down(ErrorClass),
    /// The probe cannot tell (the cheap endpoint is missing or refused, the key is bad, a
    /// rate limit): live trial calls decide instead.
    Inconclusive(ErrorClass),
}

impl ProbeVerdict {
    /// The verdict on a probe that ended with `outcome`.
    pub fn of(outcome: Result<(), ErrorClass>) -> Self {
        match outcome {
            Ok(()) => ProbeVerdict::Up,
            Err(class) if policy(class).breaker_failure => ProbeVerdict::Down(class),
            Err(class) => ProbeVerdict::Inconclusive(class),
        }
    }

    /// The metric label: `up`, `down` or `inconclusive`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeVerdict::Up => "up",
            ProbeVerdict::Down(_) => "down",
            ProbeVerdict::Inconclusive(_) => "inconclusive",
        }
    }
}

/// When the next probe of one provider is due.
#[derive(Debug, Clone)]
pub struct ProbeSchedule {
    interval: Duration,
    next_at: Option<Instant>,
    timeouts_in_a_row: u32,
}

impl ProbeSchedule {
    /// Probes every `interval` (from one probe's start to the next's).
    pub fn new(interval: Duration) -> Self {
        ProbeSchedule {
            interval,
            next_at: None,
            timeouts_in_a_row: 0,
        }
    }

    /// Whether a probe may start at `now`.
    pub fn due(&self, now: Instant) -> bool {
        self.next_at.is_none_or(|at| now >= at)
    }

    /// Books a probe that started at `started` and ended at `ended` (`timed_out` when it got
    /// no answer at all). The next starts an interval after this one started; after
    /// timeouts, 2, then 4 intervals after this one ended.
    pub fn record(&mut self, started: Instant, ended: Instant, timed_out: bool) {
        if timed_out {
            let factor = 2u32
                .saturating_pow(self.timeouts_in_a_row + 1)
                .min(MAX_GAP_INTERVALS);
            self.timeouts_in_a_row = self.timeouts_in_a_row.saturating_add(1);
            self.next_at = Some(ended + self.interval * factor);
        } else {
            self.timeouts_in_a_row = 0;
            self.next_at = Some((started + self.interval).max(ended));
        }
    }

    /// Forgets the history (the provider closed, or another worker probes it).
    pub fn reset(&mut self) {
        self.next_at = None;
        self.timeouts_in_a_row = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn fast_failures_probe_once_an_interval() {
        let mut s = ProbeSchedule::new(S);
        let t = Instant::now();
        assert!(s.due(t));
        s.record(t, t + Duration::from_millis(40), false);
        assert!(!s.due(t + Duration::from_millis(999)));
        assert!(s.due(t + S));
    }

    #[test]
    fn timeouts_space_probes_out_to_four_intervals() {
        let mut s = ProbeSchedule::new(S);
        let mut t = Instant::now();
        let timeout = Duration::from_secs(2);
        let mut gaps = Vec::new();
        for _ in 0..5 {
            let ended = t + timeout;
            s.record(t, ended, true);
            let next = (0..100)
                .map(|ms| ended + Duration::from_millis(ms * 100))
                .find(|at| s.due(*at))
                .unwrap();
            gaps.push(next.duration_since(ended).as_secs());
            t = next;
        }
        assert_eq!(gaps, [2, 4, 4, 4, 4]);
        // An answer (even an error) brings the cadence back.
        s.record(t, t + Duration::from_millis(10), false);
        assert!(s.due(t + S));
    }

    #[test]
    fn verdicts_follow_the_error_policy() {
        assert_eq!(ProbeVerdict::of(Ok(())), ProbeVerdict::Up);
        for class in [
            ErrorClass::Timeout,
            ErrorClass::Overloaded,
            ErrorClass::Network,
        ] {
            assert_eq!(ProbeVerdict::of(Err(class)), ProbeVerdict::Down(class));
        }
        for class in [
            ErrorClass::BadRequest,
            ErrorClass::Auth,
            ErrorClass::RateLimited,
        ] {
            assert_eq!(
                ProbeVerdict::of(Err(class)),
                ProbeVerdict::Inconclusive(class)
            );
        }
    }
}
