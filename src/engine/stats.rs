//! Passive health statistics of one provider: latency EWMA and p95, success rate.
//! They order candidates (health score) and time the hedge.

use std::collections::VecDeque;
use std::time::Duration;

const SAMPLES: usize = 128;
const EWMA_ALPHA: f64 = 0.2;
/// A call cut after `t` would have needed more than `t`; it is counted as needing this
/// multiple of it, so that the estimate catches up with a provider slower than measured.
const CUT_MARGIN: f64 = 1.25;

/// Rolling statistics over the last calls.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    latencies_ms: VecDeque<f64>,
    outcomes: VecDeque<bool>,
    /// Successes among `outcomes`, kept as calls come and go.
    successes: usize,
    ewma_ms: Option<f64>,
    /// `latencies_ms` sorted, rebuilt on the first percentile asked after a new sample:
    /// several are read per request (plausible latency, hedge delay) and one sort serves all.
    sorted_ms: Vec<f64>,
    sorted_stale: bool,
}

impl Stats {
    /// Records one finished call.
    pub fn record(&mut self, ok: bool, latency: Duration) {
        let ms = latency.as_secs_f64() * 1_000.0;
        if ok {
            // Only successful calls describe how fast the provider answers.
            if self.latencies_ms.len() == SAMPLES {
                self.latencies_ms.pop_front();
            }
            self.latencies_ms.push_back(ms);
            self.sorted_stale = true;
            self.ewma_ms = Some(match self.ewma_ms {
                None => ms,
                Some(e) => e + EWMA_ALPHA * (ms - e),
            });
        }
        if self.outcomes.len() == SAMPLES && self.outcomes.pop_front() == Some(true) {
            self.successes -= 1;
        }
        self.outcomes.push_back(ok);
        self.successes += ok as usize;
    }

    /// Records a call cut short by its request's deadline after `ran` without an answer: the
    /// provider needed at least that long. Not an outcome (it was nobody's failure), but a
    /// latency sample when it says more than the history does (at or above its 90th
    /// percentile, or with no history): otherwise, under overload, only the calls that fit
    /// are ever measured and the estimate of what a call needs never catches up.
    pub fn record_cut(&mut self, ran: Duration) {
        // It needed more than it had: a censored sample, taken as a quarter more.
        let ms = ran.as_secs_f64() * 1_000.0 * CUT_MARGIN;
        if self.percentile_ms(0.9).is_some_and(|p90| ms < p90) {
            return;
        }
        if self.latencies_ms.len() == SAMPLES {
            self.latencies_ms.pop_front();
        }
        self.latencies_ms.push_back(ms);
        self.sorted_stale = true;
    }

    /// Share of recent calls that succeeded (1.0 with no history: innocent until proven).
    pub fn success_rate(&self) -> f64 {
        if self.outcomes.is_empty() {
            return 1.0;
        }
        self.successes as f64 / self.outcomes.len() as f64
    }

    /// Exponentially weighted latency of successful calls, in ms.
    pub fn ewma_ms(&self) -> f64 {
        self.ewma_ms.unwrap_or(0.0)
    }

    /// A latency percentile of successful calls, in ms (`None` with too little history).
    pub fn percentile_ms(&mut self, p: f64) -> Option<f64> {
        if self.latencies_ms.len() < 5 {
            return None;
        }
        if self.sorted_stale || self.sorted_ms.len() != self.latencies_ms.len() {
            self.sorted_ms.clear();
            self.sorted_ms.extend(self.latencies_ms.iter().copied());
            self.sorted_ms.sort_by(f64::total_cmp);
            self.sorted_stale = false;
        }
        let v = &self.sorted_ms;
        let idx = ((v.len() as f64 - 1.0) * p).round() as usize;
        Some(v[idx.min(v.len() - 1)])
    }

    /// What a call likely needs, in ms: the 90th percentile, or with little history the
    /// longest sample (`None` with none at all).
    pub fn likely_ms(&mut self) -> Option<f64> {
        self.percentile_ms(0.9)
            .or_else(|| self.latencies_ms.iter().copied().reduce(f64::max))
    }

    /// p95 latency in ms, 0 without history.
    pub fn p95_ms(&mut self) -> f64 {
        self.percentile_ms(0.95).unwrap_or(0.0)
    }

    /// A 0..1 score: success rate, discounted by latency.
    pub fn score(&self) -> f64 {
        self.success_rate() / (1.0 + self.ewma_ms() / 1_000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_rates() {
        let mut s = Stats::default();
        assert_eq!(s.success_rate(), 1.0);
        assert_eq!(s.percentile_ms(0.95), None);
        for ms in 1..=100 {
            s.record(true, Duration::from_millis(ms));
        }
        s.record(false, Duration::from_millis(5_000));
        assert_eq!(s.p95_ms(), 95.0);
        assert!((s.success_rate() - 100.0 / 101.0).abs() < 1e-9);
        assert!(s.ewma_ms() > 50.0);
        // The windows slide: 128 more failures leave no success.
        for _ in 0..128 {
            s.record(false, Duration::from_millis(1));
        }
        assert_eq!(s.success_rate(), 0.0);
        // A new fast sample moves the percentiles.
        for _ in 0..128 {
            s.record(true, Duration::from_millis(3));
        }
        assert_eq!(s.p95_ms(), 3.0);
    }
}
