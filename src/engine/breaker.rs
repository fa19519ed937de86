//! A circuit breaker as a pure state machine: every method takes `now`, nothing sleeps.
//!
//! closed → open after `consecutive_failures` failures in a row, or a failure (or slow-call)
//! share ≥ the threshold over the window once `min_calls` are in it; open for `open_ms`,
//! doubling on each re-open up to `max_open_ms` (a re-open never shortens an existing open
//! deadline); then half-open, admitting `half_open_probes` calls; a probe success closes it,
//! a probe failure re-opens it for longer.
//!
//! The window is a decaying counter (`calls`, `failures`, `slow`, halved when full) rather than
//! a ring of outcomes, so the same state fits the fleet-shared KV record and can be merged
//! there with compare-and-set.

use std::time::Duration;

use crate::config::BreakerConfig;
use crate::contract::{BreakerState, WindowCounts};

use super::clock::Instant;

/// The breaker's state, as stored locally and (translated) in `ai_provider_health`.
#[derive(Debug, Clone, PartialEq)]
pub struct Breaker {
    pub state: BreakerState,
    pub open_until: Option<Instant>,
    /// Opens since the last close: drives the growing open duration.
    pub open_count: u32,
    pub consecutive_failures: u32,
    pub window: WindowCounts,
    /// Probes admitted and not yet finished while half-open.
    pub probes_in_flight: u32,
    /// When this breaker last opened (here or by adoption): a fleet record older than this
    /// that says "closed" is stale and must not close it.
    pub opened_at: Option<Instant>,
}

/// Whether a call may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Closed: call freely.
    Allowed,
    /// Half-open: this call is a probe (report its outcome!).
    Probe,
    /// Open (or half-open with its probes taken): not before `retry_at`, if known.
    Rejected { retry_at: Option<Instant> },
}

/// A change of breaker state, with why.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub from: BreakerState,
    pub to: BreakerState,
    pub reason: String,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            state: BreakerState::Closed,
            open_until: None,
            open_count: 0,
            consecutive_failures: 0,
            window: WindowCounts::default(),
            probes_in_flight: 0,
            opened_at: None,
        }
    }
}

impl Breaker {
    /// Half-opens an open breaker whose time is up; returns the transition if any.
    pub fn tick(&mut self, now: Instant) -> Option<Transition> {
        if self.state == BreakerState::Open && self.open_until.is_none_or(|u| now >= u) {
            self.state = BreakerState::HalfOpen;
            self.probes_in_flight = 0;
            return Some(Transition {
                from: BreakerState::Open,
                to: BreakerState::HalfOpen,
                reason: "open period elapsed; admitting a probe".into(),
            });
        }
        None
    }

    /// May a call go ahead now? A `Probe` admission reserves a probe slot.
    pub fn admit(&mut self, cfg: &BreakerConfig, now: Instant) -> Admission {
        self.tick(now);
        match self.state {
            BreakerState::Closed => Admission::Allowed,
            BreakerState::Open => Admission::Rejected {
                retry_at: self.open_until,
            },
            BreakerState::HalfOpen if self.probes_in_flight < cfg.half_open_probes => {
                self.probes_in_flight += 1;
                Admission::Probe
            }
            BreakerState::HalfOpen => Admission::Rejected { retry_at: None },
        }
    }

    /// Whether a call would be admitted now, without reserving anything.
    pub fn would_admit(&self, cfg: &BreakerConfig, now: Instant) -> bool {
        match self.state {
            BreakerState::Closed => true,
            BreakerState::Open => self.open_until.is_none_or(|u| now >= u),
            BreakerState::HalfOpen => self.probes_in_flight < cfg.half_open_probes,
        }
    }

    fn count(&mut self, cfg: &BreakerConfig, failed: bool, slow: bool) {
        let w = &mut self.window;
        if w.calls >= cfg.window {
            // Decay instead of a ring: old calls weigh half as much.
            w.calls /= 2;
            w.failures /= 2;
            w.slow /= 2;
        }
        w.calls += 1;
        w.failures += failed as u32;
        w.slow += slow as u32;
    }

    /// Records a successful call that took `latency`.
    pub fn on_success(
        &mut self,
        cfg: &BreakerConfig,
        now: Instant,
        latency: Duration,
    ) -> Option<Transition> {
        let slow = latency >= Duration::from_millis(cfg.slow_call_ms);
        self.consecutive_failures = 0;
        match self.state {
            BreakerState::HalfOpen => {
                self.close();
                Some(Transition {
                    from: BreakerState::HalfOpen,
                    to: BreakerState::Closed,
                    reason: "probe succeeded".into(),
                })
            }
            BreakerState::Closed => {
                self.count(cfg, false, slow);
                self.trip_on_rates(cfg, now)
            }
            // A call admitted before another worker opened it: the fleet's view wins.
            BreakerState::Open => None,
        }
    }

    /// Records a success that ended before the last failure already counted (it reached
    /// the shared record late): it counts in the window, but it neither resets the failures
    /// in a row nor closes anything.
    pub fn on_late_success(&mut self, cfg: &BreakerConfig, latency: Duration) {
        if self.state == BreakerState::Closed {
            let slow = latency >= Duration::from_millis(cfg.slow_call_ms);
            self.count(cfg, false, slow);
        }
    }

    /// Records a failed call (one whose class counts toward the breaker).
    pub fn on_failure(
        &mut self,
        cfg: &BreakerConfig,
        now: Instant,
        latency: Duration,
        what: &str,
    ) -> Option<Transition> {
        let slow = latency >= Duration::from_millis(cfg.slow_call_ms);
        self.consecutive_failures += 1;
        match self.state {
            BreakerState::HalfOpen => Some(self.open(
                cfg,
                now,
                BreakerState::HalfOpen,
                format!("probe failed ({what})"),
            )),
            BreakerState::Closed => {
                self.count(cfg, true, slow);
                if self.consecutive_failures >= cfg.consecutive_failures {
                    let reason = format!(
                        "{} consecutive failures ({what})",
                        self.consecutive_failures
                    );
                    return Some(self.open(cfg, now, BreakerState::Closed, reason));
                }
                self.trip_on_rates(cfg, now)
            }
            BreakerState::Open => None,
        }
    }

    /// Releases a probe slot whose call ended without a verdict (cancelled, not counted).
    pub fn release_probe(&mut self) {
        self.probes_in_flight = self.probes_in_flight.saturating_sub(1);
    }

    fn trip_on_rates(&mut self, cfg: &BreakerConfig, now: Instant) -> Option<Transition> {
        let w = self.window;
        if w.calls < cfg.min_calls {
            return None;
        }
        let failure_rate = w.failures as f64 / w.calls as f64;
        let slow_rate = w.slow as f64 / w.calls as f64;
        let reason = if failure_rate >= cfg.failure_rate {
            format!(
                "failure rate {:.0}% over {} calls",
                failure_rate * 100.0,
                w.calls
            )
        } else if slow_rate >= cfg.slow_call_rate {
            format!(
                "slow-call rate {:.0}% over {} calls",
                slow_rate * 100.0,
                w.calls
            )
        } else {
            return None;
        };
        Some(self.open(cfg, now, BreakerState::Closed, reason))
    }

    /// The open duration for the next open: `open_ms · 2^open_count`, capped.
    pub fn next_open_duration(&self, cfg: &BreakerConfig) -> Duration {
        let factor = 2u64.saturating_pow(self.open_count.min(20));
        Duration::from_millis(cfg.open_ms.saturating_mul(factor).min(cfg.max_open_ms))
    }

    fn open(
        &mut self,
        cfg: &BreakerConfig,
        now: Instant,
        from: BreakerState,
        reason: String,
    ) -> Transition {
        let until = now + self.next_open_duration(cfg);
        // Never shorten an open deadline someone else (or an earlier open) set.
        self.open_until = Some(self.open_until.map_or(until, |u| u.max(until)));
        self.open_count += 1;
        self.state = BreakerState::Open;
        self.probes_in_flight = 0;
        self.opened_at = Some(now);
        Transition {
            from,
            to: BreakerState::Open,
            reason,
        }
    }

    fn close(&mut self) {
        *self = Breaker::default();
    }

    /// Adopts a state another worker decided (from the shared record, whose breaker last
    /// changed state at `changed`). Open deadlines only ever move later; a remote close is
    /// adopted (a probe somewhere succeeded) only if it happened after this breaker opened:
    /// a record that has been closed since before then merely has not counted our failures
    /// yet.
    pub fn adopt(
        &mut self,
        state: BreakerState,
        open_until: Option<Instant>,
        open_count: u32,
        changed: Option<Instant>,
    ) -> Option<Transition> {
        let from = self.state;
        match state {
            // A trial is under way here and the fleet says only what we knew (open until a
            // moment already past): re-opening would just start another trial at once.
            BreakerState::Open
                if self.state == BreakerState::HalfOpen
                    && open_until.is_none_or(|u| self.open_until.is_some_and(|mine| u <= mine)) => {
            }
            BreakerState::Open => {
                if self.state != BreakerState::Open {
                    self.opened_at = changed.or(self.opened_at);
                }
                self.state = BreakerState::Open;
                self.open_until = match (self.open_until, open_until) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
                self.open_count = self.open_count.max(open_count);
                self.probes_in_flight = 0;
            }
            BreakerState::Closed
                if from != BreakerState::Closed
                    && changed.is_some_and(|c| self.opened_at.is_none_or(|o| c > o)) =>
            {
                self.close()
            }
            // Half-open is a local decision (each worker's own probe slot).
            _ => {}
        }
        (from != self.state).then(|| Transition {
            from,
            to: self.state,
            reason: "adopted from the fleet".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            consecutive_failures: 3,
            failure_rate: 0.5,
            window: 10,
            min_calls: 4,
            slow_call_ms: 1_000,
            slow_call_rate: 0.8,
            open_ms: 1_000,
            max_open_ms: 4_000,
            half_open_probes: 1,
        }
    }
    const FAST: Duration = Duration::from_millis(10);

    #[test]
    fn opens_after_consecutive_failures_and_half_opens_after_the_open_time() {
        let c = cfg();
        let t0 = Instant::now();
        let mut b = Breaker::default();
        assert!(b.on_failure(&c, t0, FAST, "server_error").is_none());
        assert!(b.on_failure(&c, t0, FAST, "server_error").is_none());
        let tr = b.on_failure(&c, t0, FAST, "server_error").unwrap();
        assert_eq!((tr.from, tr.to), (BreakerState::Closed, BreakerState::Open));
        assert!(tr.reason.contains("3 consecutive"));
        assert_eq!(
            b.admit(&c, t0 + Duration::from_millis(999)),
            Admission::Rejected {
                retry_at: Some(t0 + Duration::from_millis(1_000))
            }
        );
        assert_eq!(
            b.admit(&c, t0 + Duration::from_millis(1_000)),
            Admission::Probe
        );
        assert_eq!(b.state, BreakerState::HalfOpen);
        // Only one probe at a time.
        assert!(matches!(
            b.admit(&c, t0 + Duration::from_millis(1_001)),
            Admission::Rejected { .. }
        ));
        let tr = b
            .on_success(&c, t0 + Duration::from_millis(1_010), FAST)
            .unwrap();
        assert_eq!(tr.to, BreakerState::Closed);
        assert_eq!(b, Breaker::default());
    }

    #[test]
    fn a_failed_probe_reopens_for_longer_up_to_the_cap() {
        let c = cfg();
        let mut now = Instant::now();
        let mut b = Breaker::default();
        for _ in 0..3 {
            b.on_failure(&c, now, FAST, "timeout");
        }
        let mut expected = [1_000u64, 2_000, 4_000, 4_000].into_iter();
        let first = expected.next().unwrap();
        assert_eq!(b.open_until, Some(now + Duration::from_millis(first)));
        for want in expected {
            now = b.open_until.unwrap();
            assert_eq!(b.admit(&c, now), Admission::Probe);
            let tr = b.on_failure(&c, now, FAST, "timeout").unwrap();
            assert_eq!(
                (tr.from, tr.to),
                (BreakerState::HalfOpen, BreakerState::Open)
            );
            assert_eq!(b.open_until, Some(now + Duration::from_millis(want)));
        }
    }

    #[test]
    fn failure_rate_over_the_window_opens_it() {
        let c = cfg();
        let t = Instant::now();
        let mut b = Breaker::default();
        // S F S F: never 3 in a row, but 50% once min_calls (4) is reached.
        assert!(b.on_success(&c, t, FAST).is_none());
        assert!(b.on_failure(&c, t, FAST, "x").is_none());
        assert!(b.on_success(&c, t, FAST).is_none());
        let tr = b.on_failure(&c, t, FAST, "x").unwrap();
        assert!(tr.reason.contains("failure rate 50%"), "{}", tr.reason);
    }

    #[test]
    fn slow_calls_open_it() {
        let c = cfg();
        let t = Instant::now();
        let mut b = Breaker::default();
        let slow = Duration::from_millis(1_500);
        for _ in 0..3 {
            assert!(b.on_success(&c, t, slow).is_none());
        }
        let tr = b.on_success(&c, t, slow).unwrap();
        assert!(tr.reason.contains("slow-call rate"), "{}", tr.reason);
    }

    #[test]
    fn reopening_never_shortens_an_open_deadline() {
        let c = cfg();
        let t = Instant::now();
        let mut b = Breaker::default();
        let far = t + Duration::from_secs(60);
        b.adopt(BreakerState::Open, Some(far), 1, Some(t));
        // A local trip computing an earlier deadline keeps the later one.
        b.state = BreakerState::Closed;
        for _ in 0..3 {
            b.on_failure(&c, t, FAST, "x");
        }
        assert_eq!(b.open_until, Some(far));
        // Adopting an earlier remote deadline doesn't shorten it either.
        b.adopt(
            BreakerState::Open,
            Some(t + Duration::from_secs(1)),
            0,
            Some(t),
        );
        assert_eq!(b.open_until, Some(far));
    }

    #[test]
    fn a_stale_open_record_does_not_interrupt_a_trial() {
        let c = cfg();
        let t = Instant::now();
        let mut b = Breaker::default();
        for _ in 0..3 {
            b.on_failure(&c, t, FAST, "x");
        }
        let until = b.open_until;
        assert_eq!(b.admit(&c, until.unwrap()), Admission::Probe);
        // The fleet's record still says "open until" the moment that just passed.
        assert!(b.adopt(BreakerState::Open, until, 1, Some(t)).is_none());
        assert_eq!((b.state, b.probes_in_flight), (BreakerState::HalfOpen, 1));
        // A later deadline (another worker's trial failed) re-opens it.
        let later = until.map(|u| u + Duration::from_secs(2));
        assert!(b.adopt(BreakerState::Open, later, 2, Some(t)).is_some());
        assert_eq!((b.state, b.open_until), (BreakerState::Open, later));
    }

    #[test]
    fn adopting_a_remote_close_resets_the_breaker() {
        let t = Instant::now();
        let mut b = Breaker::default();
        b.adopt(BreakerState::Open, Some(t), 2, Some(t));
        let tr = b
            .adopt(
                BreakerState::Closed,
                None,
                0,
                Some(t + Duration::from_millis(1)),
            )
            .unwrap();
        assert_eq!(tr.to, BreakerState::Closed);
        assert_eq!(b, Breaker::default());
    }

    #[test]
    fn a_stale_closed_record_does_not_close_a_breaker_opened_after_it() {
        let c = cfg();
        let t = Instant::now();
        let mut b = Breaker::default();
        for _ in 0..3 {
            b.on_failure(&c, t + Duration::from_millis(10), FAST, "x");
        }
        // A record closed since before our open (it had counted only some of the failures),
        // or one that never changed state at all.
        assert!(b.adopt(BreakerState::Closed, None, 0, Some(t)).is_none());
        assert!(b.adopt(BreakerState::Closed, None, 0, None).is_none());
        assert_eq!(b.state, BreakerState::Open);
    }
}
