//! This worker's share of the current intervals' rollups. Every call, failover, cost, answer
//! and dead letter is counted here in memory into this worker's running total of its interval,
//! and on every tick of the worker's event loop (which also writes the last totals when the
//! worker stops) the totals that changed are put in `ai_stats_window` under
//! `<provider>.<start_ms>.<worker_id>` (or `_fleet.<start_ms>.<worker_id>`). A put of a total
//! is idempotent: a write that landed but timed out is simply written again, never counted
//! twice. The roller sums the workers' totals of an interval once it is over.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use parking_lot::Mutex;
use serde::Serialize;

use crate::contract::{CallCounts, ErrorClass, FLEET_STATS, FleetCounts, Timestamp};

/// Intervals this many behind the current one are no longer written: the roller has read
/// them (a total that could not be written by then is lost to the history, and logged).
const KEEP_INTERVALS: i64 = 2;

/// The interval `at` falls in, as its start in ms since the epoch.
pub fn interval_start(at: Timestamp, interval_ms: u64) -> i64 {
    interval_start_ms(at.timestamp_millis(), interval_ms as i64)
}

/// The start of the interval `ms` falls in.
pub fn interval_start_ms(ms: i64, interval_ms: i64) -> i64 {
    ms - ms.rem_euclid(interval_ms)
}

/// The prefix of every worker's total of `subject`'s (a provider's, or `_fleet`) interval in
/// `ai_stats_window`; a worker's key is this plus its id.
pub fn share_prefix(subject: &str, start_ms: i64) -> String {
    format!("{subject}.{start_ms}.")
}

/// A running total and whether it changed since it was last written.
#[derive(Default)]
struct Total<T> {
    value: T,
    dirty: bool,
}

/// Which running total: a provider's in an interval, or the fleet's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum TotalOf {
    Provider(String, i64),
    Fleet(i64),
}

impl TotalOf {
    fn prefix(&self) -> String {
        match self {
            TotalOf::Provider(p, start) => share_prefix(p, *start),
            TotalOf::Fleet(start) => share_prefix(FLEET_STATS, *start),
        }
    }
}

#[derive(Default)]
struct Totals {
    calls: HashMap<(String, i64), Total<CallCounts>>,
    fleet: HashMap<i64, Total<FleetCounts>>,
}

/// Counts what this worker did, by interval. Cheap to clone; every clone counts into the same
/// totals.
#[derive(Clone)]
pub struct StatsShares {
    totals: Arc<Mutex<Totals>>,
    interval_ms: u64,
}

impl StatsShares {
    /// Counting into intervals of `interval_ms`.
    pub fn new(interval_ms: u64) -> Self {
        StatsShares {
            totals: Arc::default(),
            interval_ms,
        }
    }

    fn now(&self) -> i64 {
        interval_start(crate::engine::clock::wall_now(), self.interval_ms)
    }

    fn provider(&self, provider: &str, count: impl FnOnce(&mut CallCounts)) {
        let start = self.now();
        let mut t = self.totals.lock();
        let total = t.calls.entry((provider.to_string(), start)).or_default();
        count(&mut total.value);
        total.dirty = true;
    }

    fn fleet(&self, count: impl FnOnce(&mut FleetCounts)) {
        let start = self.now();
        let mut t = self.totals.lock();
        let total = t.fleet.entry(start).or_default();
        count(&mut total.value);
        total.dirty = true;
    }

    /// A call to `provider` ended: answered (`failure` is `None`) or failed with a class. A
    /// call its own request cut short (deadline, cancelled hedge) is nobody's failure and is
    /// not counted, as in the engine's health.
    pub fn call(&self, provider: &str, failure: Option<ErrorClass>, latency: Duration) {
        if matches!(
            failure,
            Some(ErrorClass::DeadlineExceeded | ErrorClass::Cancelled | ErrorClass::KeyUnavailable)
        ) {
            return;
        }
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

    /// The totals to write (marked clean), after dropping intervals no longer written.
    fn changed(&self) -> Vec<(TotalOf, Vec<u8>)> {
        let oldest = self.now() - KEEP_INTERVALS * self.interval_ms as i64;
        let mut t = self.totals.lock();
        let dropped = |dirty: bool, what: &str| {
            if dirty {
                tracing::warn!(
                    what,
                    "a stats total was not written in time; the history misses it"
                );
            }
        };
        t.calls.retain(|(p, start), total| {
            let keep = *start >= oldest;
            if !keep {
                dropped(total.dirty, p);
            }
            keep
        });
        t.fleet.retain(|start, total| {
            let keep = *start >= oldest;
            if !keep {
                dropped(total.dirty, FLEET_STATS);
            }
            keep
        });
        let mut out = Vec::new();
        for ((p, start), total) in t.calls.iter_mut().filter(|(_, t)| t.dirty) {
            total.dirty = false;
            out.extend(encoded(TotalOf::Provider(p.clone(), *start), &total.value));
        }
        for (start, total) in t.fleet.iter_mut().filter(|(_, t)| t.dirty) {
            total.dirty = false;
            out.extend(encoded(TotalOf::Fleet(*start), &total.value));
        }
        out
    }

    /// Marks a total whose write failed as changed again.
    fn unwritten(&self, which: &TotalOf) {
        let mut t = self.totals.lock();
        let total = match which {
            TotalOf::Provider(p, start) => {
                t.calls.get_mut(&(p.clone(), *start)).map(|t| &mut t.dirty)
            }
            TotalOf::Fleet(start) => t.fleet.get_mut(start).map(|t| &mut t.dirty),
        };
        if let Some(dirty) = total {
            *dirty = true;
        }
    }
}

fn encoded<T: Serialize>(which: TotalOf, value: &T) -> Option<(TotalOf, Vec<u8>)> {
    serde_json::to_vec(value).ok().map(|v| (which, v))
}

/// Writes this worker's totals to `ai_stats_window`.
pub struct SharesWriter {
    shares: StatsShares,
    window: kv::Store,
    worker_id: String,
}

impl SharesWriter {
    /// Writing `shares` into the `ai_stats_window` bucket under `worker_id`.
    pub fn new(shares: StatsShares, window: kv::Store, worker_id: String) -> Self {
        SharesWriter {
            shares,
            window,
            worker_id,
        }
    }

    /// Where this worker counts.
    pub fn shares(&self) -> &StatsShares {
        &self.shares
    }

    /// Puts every total that changed, at once; one that cannot be written is tried again at
    /// the next write.
    pub async fn write(&self) {
        let puts = self.shares.changed().into_iter().map(|(which, value)| {
            let key = format!("{}{}", which.prefix(), self.worker_id);
            async move {
                if let Err(e) = self.window.put(&key, value.into()).await {
                    tracing::debug!(%key, error = %e, "stats total not written; retrying");
                    self.shares.unwritten(&which);
                }
            }
        });
        futures::future::join_all(puts).await;
    }
}
