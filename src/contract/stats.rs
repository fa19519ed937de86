//! History: `AI_STATS` holds, per interval (a minute by default), one rollup per configured
//! provider on `<prefix>.stats.<provider>` and one for the fleet on `<prefix>.stats._fleet`,
//! written once for the fleet. Reports and the dashboard's charts are computed from them.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{BreakerState, Mode, ProviderId, Timestamp};

/// Each latency bucket is this much wider than the one before: a percentile read from the
/// buckets is within 5 % of the exact one.
const GROWTH: f64 = 1.1;
/// The last bucket (about 24 minutes): longer calls are counted in it.
const LAST_BUCKET: u16 = 150;

/// Latencies of successful calls, in ms, as a histogram that merges exactly across workers
/// and intervals. On the wire a list of `[i, count]` pairs, ascending: bucket `i` counts calls
/// that took more than 1.1^(i-1) and at most 1.1^i ms (bucket 0: 1 ms or less).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(from = "Vec<[u64; 2]>", into = "Vec<[u64; 2]>")]
pub struct LatencyHistogram(pub BTreeMap<u16, u64>);

impl From<Vec<[u64; 2]>> for LatencyHistogram {
    fn from(pairs: Vec<[u64; 2]>) -> Self {
        let mut h = LatencyHistogram::default();
        for [b, n] in pairs {
            *h.0.entry(b.min(LAST_BUCKET as u64) as u16).or_default() += n;
        }
        h
    }
}

impl From<LatencyHistogram> for Vec<[u64; 2]> {
    fn from(h: LatencyHistogram) -> Self {
        h.0.into_iter().map(|(b, n)| [b as u64, n]).collect()
    }
}

impl LatencyHistogram {
    /// Counts one call that took `ms`.
    pub fn record(&mut self, ms: f64) {
        let bucket = if ms <= 1.0 {
            0
        } else {
            (ms.ln() / GROWTH.ln()).ceil().min(LAST_BUCKET as f64) as u16
        };
        *self.0.entry(bucket).or_default() += 1;
    }

    /// Adds `other`'s counts.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        for (b, n) in &other.0 {
            *self.0.entry(*b).or_default() += n;
        }
    }

    /// Calls counted.
    pub fn count(&self) -> u64 {
        self.0.values().sum()
    }

    /// The `p` percentile (0..=1) in ms, rounded to a tenth, or `None` without calls: the
    /// geometric middle of the bucket holding it.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64 * p).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (b, n) in &self.0 {
            seen += n;
            if seen >= rank {
                let ms = if *b == 0 {
                    1.0
                } else {
                    GROWTH.powf(*b as f64 - 0.5)
                };
                return Some((ms * 10.0).round() / 10.0);
            }
        }
        None
    }
}

/// What a provider's calls did in an interval: a worker's share (kept in `ai_stats_window`
/// while the interval runs) or the fleet's sum (in the rollup).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CallCounts {
    /// Calls made (hedges and probes included).
    pub calls: u64,
    pub successes: u64,
    /// Failed calls by error class.
    #[serde(default)]
    pub failures: BTreeMap<String, u64>,
    /// Latencies of the successful calls.
    #[serde(default)]
    pub latency_ms: LatencyHistogram,
    pub cost_usd: f64,
    /// Requests that failed over away from this provider.
    pub failovers_away: u64,
}

impl CallCounts {
    /// Adds `other`'s counts.
    pub fn merge(&mut self, other: &CallCounts) {
        self.calls += other.calls;
        self.successes += other.successes;
        for (class, n) in &other.failures {
            *self.failures.entry(class.clone()).or_default() += n;
        }
        self.latency_ms.merge(&other.latency_ms);
        self.cost_usd += other.cost_usd;
        self.failovers_away += other.failovers_away;
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        *self == CallCounts::default()
    }
}

/// What the fleet did in an interval, besides calling providers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FleetCounts {
    /// Requests answered (any status).
    pub requests: u64,
    /// Of those, answered by the rule-based fallback.
    pub fallbacks: u64,
    /// Dead letters written.
    pub dead_letters: u64,
}

impl FleetCounts {
    /// Adds `other`'s counts.
    pub fn merge(&mut self, other: &FleetCounts) {
        self.requests += other.requests;
        self.fallbacks += other.fallbacks;
        self.dead_letters += other.dead_letters;
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        *self == FleetCounts::default()
    }
}

/// A fleet breaker transition of one provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BreakerChange {
    pub at: Timestamp,
    pub from: BreakerState,
    pub to: BreakerState,
    /// Why, when it opened: the error class of the failure that opened it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

/// `<prefix>.stats.<provider>`: one provider's interval `[start, end)`, for the whole fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProviderRollup {
    pub provider: ProviderId,
    pub start: Timestamp,
    pub end: Timestamp,
    #[serde(flatten)]
    pub counts: CallCounts,
    /// Latency percentiles of the successful calls (none without one).
    #[serde(default)]
    pub p50_ms: Option<f64>,
    #[serde(default)]
    pub p95_ms: Option<f64>,
    pub breaker_at_start: BreakerState,
    pub breaker_at_end: BreakerState,
    /// Transitions within the interval, oldest first.
    #[serde(default)]
    pub breaker_changes: Vec<BreakerChange>,
    /// How long of the interval its breaker was not closed (open or half-open).
    pub open_ms: u64,
    /// The worker that wrote it.
    pub worker_id: String,
}

/// A change of the fleet's mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ModeChange {
    pub at: Timestamp,
    pub from: Mode,
    pub to: Mode,
    pub reason: String,
}

/// `<prefix>.stats._fleet`: the fleet's interval `[start, end)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FleetRollup {
    pub start: Timestamp,
    pub end: Timestamp,
    #[serde(flatten)]
    pub counts: FleetCounts,
    pub mode_at_start: Mode,
    pub mode_at_end: Mode,
    /// Changes within the interval, oldest first.
    #[serde(default)]
    pub mode_changes: Vec<ModeChange>,
    pub worker_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_from_merged_histograms_are_within_five_percent() {
        let (mut a, mut b) = (LatencyHistogram::default(), LatencyHistogram::default());
        for ms in 1..=500 {
            a.record(ms as f64);
        }
        for ms in 501..=1000 {
            b.record(ms as f64);
        }
        a.merge(&b);
        assert_eq!(a.count(), 1000);
        for (p, exact) in [(0.5, 500.0), (0.95, 950.0), (0.99, 990.0)] {
            let got = a.percentile(p).unwrap();
            assert!((got - exact).abs() / exact < 0.05, "p{p}: {got} vs {exact}");
        }
        assert_eq!(LatencyHistogram::default().percentile(0.5), None);
        let mut tiny = LatencyHistogram::default();
        tiny.record(0.2);
        assert_eq!(tiny.percentile(0.95), Some(1.0));
    }

    #[test]
    fn histograms_travel_as_pairs() {
        let mut h = LatencyHistogram::default();
        h.record(100.0);
        h.record(0.5);
        let json = serde_json::to_value(&h).unwrap();
        assert_eq!(json, serde_json::json!([[0, 1], [49, 1]]));
        assert_eq!(serde_json::from_value::<LatencyHistogram>(json).unwrap(), h);
    }
}
