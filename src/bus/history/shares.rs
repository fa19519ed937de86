//! This worker's share of the current intervals' rollups. Every call, failover, cost, answer
//! and dead letter is counted here in memory, and twice a second (by the worker's event loop,
//! which also writes the last shares when the worker stops) added to the interval's record in
//! `ai_stats_window` (`<provider>.<start_ms>`, `_fleet.<start_ms>`) with compare-and-set; the
//! roller sums nothing itself, it reads the fleet's total there.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use parking_lot::Mutex;

use crate::contract::{CallCounts, ErrorClass, FLEET_STATS, FleetCounts, Timestamp};

use super::super::kv_record::{Decision, KvRecord};

/// How often the shares are added to the fleet's records.
pub const FLUSH_EVERY: Duration = Duration::from_millis(500);

/// The interval `at` falls in, as its start in ms since the epoch.
pub fn interval_start(at: Timestamp, interval_ms: u64) -> i64 {
    let ms = at.timestamp_millis();
    ms - ms.rem_euclid(interval_ms as i64)
}

/// The `ai_stats_window` key of `subject`'s (a provider's, or `_fleet`) interval.
pub fn share_key(subject: &str, start_ms: i64) -> String {
    format!("{subject}.{start_ms}")
}

#[derive(Default)]
struct Pending {
    calls: HashMap<(String, i64), CallCounts>,
    fleet: HashMap<i64, FleetCounts>,
}

/// Counts what this worker did, by interval. Cheap to clone; every clone counts into the same
/// book.
#[derive(Clone)]
pub struct StatsShares {
    pending: Arc<Mutex<Pending>>,
    interval_ms: u64,
}

impl StatsShares {
    /// Counting into intervals of `interval_ms`.
    pub fn new(interval_ms: u64) -> Self {
        StatsShares {
            pending: Arc::default(),
            interval_ms,
        }
    }

    fn now(&self) -> i64 {
        interval_start(crate::engine::clock::wall_now(), self.interval_ms)
    }

    fn provider(&self, provider: &str, count: impl FnOnce(&mut CallCounts)) {
        let start = self.now();
        let mut p = self.pending.lock();
        count(p.calls.entry((provider.to_string(), start)).or_default());
    }

    fn fleet(&self, count: impl FnOnce(&mut FleetCounts)) {
        let start = self.now();
        count(self.pending.lock().fleet.entry(start).or_default());
    }

    /// A call to `provider` ended: answered (`failure` is `None`) or failed with a class.
    pub fn call(&self, provider: &str, failure: Option<ErrorClass>, latency: Duration) {
        self.provider(provider, |c| {
            c.calls += 1;
            match failure {
                None => {
                    c.successes += 1;
                    c.latency_ms.record(latency.as_secs_f64() * 1_000.0);
                }
                Some(class) => *c.failures.entry(class.as_str().into()).or_default() += 1,
            }
        });
    }

    /// A request failed over away from `provider`.
    pub fn failover(&self, provider: &str) {
        self.provider(provider, |c| c.failovers_away += 1);
    }

    /// A call to `provider` cost `usd`.
    pub fn cost(&self, provider: &str, usd: f64) {
        self.provider(provider, |c| c.cost_usd += usd);
    }

    /// A request was answered (by the rule-based fallback when `fallback`).
    pub fn answered(&self, fallback: bool) {
        self.fleet(|f| {
            f.requests += 1;
            f.fallbacks += fallback as u64;
        });
    }

    /// A dead letter was written.
    pub fn dead_letter(&self) {
        self.fleet(|f| f.dead_letters += 1);
    }

    fn take(&self) -> Pending {
        std::mem::take(&mut *self.pending.lock())
    }

    /// Puts back what could not be written, to be tried at the next flush.
    fn keep(&self, failed: Pending) {
        let mut p = self.pending.lock();
        for (k, c) in failed.calls {
            p.calls.entry(k).or_default().merge(&c);
        }
        for (k, f) in failed.fleet {
            p.fleet.entry(k).or_default().merge(&f);
        }
    }
}

/// Adds the shares to `ai_stats_window`.
pub struct SharesFlusher {
    pub shares: StatsShares,
    pub calls: KvRecord<CallCounts>,
    pub fleet: KvRecord<FleetCounts>,
}

impl SharesFlusher {
    /// Over the `ai_stats_window` bucket.
    pub fn new(shares: StatsShares, window: kv::Store) -> Self {
        SharesFlusher {
            shares,
            calls: KvRecord::new(window.clone(), "stats share"),
            fleet: KvRecord::new(window, "fleet stats share"),
        }
    }

    /// Where this worker counts.
    pub fn shares(&self) -> &StatsShares {
        &self.shares
    }

    /// Adds everything counted so far; what cannot be written is kept for the next flush.
    pub async fn flush(&self) {
        let pending = self.shares.take();
        let mut failed = Pending::default();
        for ((provider, start), add) in pending.calls {
            let key = share_key(&provider, start);
            let write = self.calls.modify(&key, |current| {
                let mut total = current.unwrap_or_default();
                total.merge(&add);
                Decision::Write(total, ())
            });
            if let Err(e) = write.await {
                tracing::debug!(error = %crate::telemetry::chain(&e), "stats share not written; retrying");
                failed.calls.insert((provider, start), add);
            }
        }
        for (start, add) in pending.fleet {
            let key = share_key(FLEET_STATS, start);
            let write = self.fleet.modify(&key, |current| {
                let mut total = current.unwrap_or_default();
                total.merge(&add);
                Decision::Write(total, ())
            });
            if let Err(e) = write.await {
                tracing::debug!(error = %crate::telemetry::chain(&e), "fleet stats share not written; retrying");
                failed.fleet.insert(start, add);
            }
        }
        self.shares.keep(failed);
    }
}
