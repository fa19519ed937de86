//! Writing the rollups: each worker, shortly after every interval ends (`history.grace_ms`,
//! once all shares are in), writes each configured provider's rollup and the fleet's, with
//! `Nats-Msg-Id: <subject>:<start_ms>`. The stream keeps the first and drops the others, so
//! the fleet writes one per interval however many workers it has, and any one of them
//! suffices. The worker whose write was kept raises the interval's alerts (`slow_provider`,
//! `dead_letters`), once for the fleet.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer::DeliverPolicy};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::contract::{
    CallCounts, FLEET_STATS, FleetCounts, FleetRollup, ProviderRollup, Timestamp,
};

use super::super::alerts::AlertDesk;
use super::super::event_log::{self, EventLogError};
use super::super::publish::Publisher;
use super::shares::{interval_start_ms, share_prefix};
use super::timeline::Timeline;

/// Writes the fleet's rollups.
pub struct Roller {
    pub cfg: Arc<Config>,
    /// Reads the workers' totals from `ai_stats_window`.
    pub js: jetstream::Context,
    pub timeline: Arc<Timeline>,
    pub publisher: Publisher,
    pub alerts: Arc<AlertDesk>,
    pub worker_id: String,
}

/// Every worker's totals of one interval, summed per subject.
#[derive(Default)]
struct IntervalTotals {
    calls: HashMap<String, CallCounts>,
    fleet: FleetCounts,
}

/// How long reading one interval's totals may take.
const TOTALS_WAIT: Duration = Duration::from_secs(5);

fn at_ms(ms: i64) -> Timestamp {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// When the interval starting at `start` (ms) is rolled up: from `grace` after its end until
/// half an interval later. A worker that was away longer leaves it to the others (the
/// stream's duplicate window must still hold the first copy).
fn due(start: i64, interval_ms: i64, grace_ms: i64) -> (i64, i64) {
    let from = start + interval_ms + grace_ms;
    (from, from + interval_ms / 2)
}

/// The first interval a worker started at `now` rolls up: the one that just ended while it is
/// still due (so the first rollup never waits longer than an interval), else the current one.
fn first_interval(now: i64, interval_ms: i64, grace_ms: i64) -> i64 {
    let current = interval_start_ms(now, interval_ms);
    let previous = current - interval_ms;
    if now <= due(previous, interval_ms, grace_ms).1 {
        previous
    } else {
        current
    }
}

impl Roller {
    fn interval_ms(&self) -> i64 {
        self.cfg.history.interval_ms as i64
    }

    fn due(&self, start: i64) -> (i64, i64) {
        due(start, self.interval_ms(), self.cfg.history.grace_ms as i64)
    }

    /// Rolls up every interval as it ends until `stop` fires. At start it also rolls up the
    /// one that just ended, if still due, so that the first rollup never waits longer than
    /// an interval.
    pub async fn run(self, stop: CancellationToken) {
        let now = crate::engine::clock::wall_now().timestamp_millis();
        let mut next = first_interval(now, self.interval_ms(), self.cfg.history.grace_ms as i64);
        loop {
            let (mut from, until) = self.due(next);
            // Of an interval that began before this worker knew the fleet's breakers and
            // mode, a worker that has been watching longer writes the better rollup: write
            // late, leaving it the first word.
            if at_ms(next) < self.timeline.since() {
                from = until - (self.interval_ms() / 8).min(1_000);
            }
            let now = crate::engine::clock::wall_now().timestamp_millis();
            if now < from {
                let wait = Duration::from_millis((from - now) as u64);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.cancelled() => return,
                }
            }
            if crate::engine::clock::wall_now().timestamp_millis() <= until {
                self.roll(next).await;
            } else {
                tracing::debug!(start_ms = next, "interval no longer due; left to the fleet");
            }
            next += self.interval_ms();
            // After a long pause (a frozen process), skip to the interval now due.
            let now = crate::engine::clock::wall_now().timestamp_millis();
            while self.due(next).1 < now {
                next += self.interval_ms();
            }
        }
    }

    /// Writes the rollups of the interval starting at `start_ms`.
    pub async fn roll(&self, start_ms: i64) {
        let (start, end) = (at_ms(start_ms), at_ms(start_ms + self.interval_ms()));
        let mut totals = match self.totals(start_ms).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %crate::telemetry::chain(&e), "stats totals not read; rollups left to the fleet");
                return;
            }
        };
        for p in &self.cfg.providers {
            let counts = totals.calls.remove(p.id.as_str()).unwrap_or_default();
            let breaker = self.timeline.breaker(&p.id, start, end);
            let rollup = ProviderRollup {
                provider: p.id.clone(),
                start,
                end,
                p50_ms: counts.latency_ms.percentile(0.5),
                p95_ms: counts.latency_ms.percentile(0.95),
                counts,
                breaker_at_start: breaker.at_start,
                breaker_at_end: breaker.at_end,
                breaker_changes: breaker.changes,
                open_ms: breaker.open_ms,
                worker_id: self.worker_id.clone(),
            };
            let subject = self.publisher.names().stats(&p.id);
            if self.write(subject, start_ms, &rollup).await {
                self.alerts
                    .slow(
                        &p.id,
                        rollup.p95_ms,
                        rollup.counts.successes,
                        &self.cfg.alerts,
                    )
                    .await;
            }
        }
        let counts = totals.fleet;
        let modes = self.timeline.modes(start, end);
        let rollup = FleetRollup {
            start,
            end,
            counts,
            mode_at_start: modes.at_start,
            mode_at_end: modes.at_end,
            mode_changes: modes.changes,
            worker_id: self.worker_id.clone(),
        };
        let subject = self.publisher.names().fleet_stats();
        if self.write(subject, start_ms, &rollup).await {
            self.alerts
                .dead_letters(
                    rollup.counts.dead_letters,
                    self.interval_ms() as u64,
                    &self.cfg.alerts,
                )
                .await;
        }
    }

    /// The sums of every worker's totals of the interval at `start_ms`, read in one pass.
    async fn totals(&self, start_ms: i64) -> Result<IntervalTotals, EventLogError> {
        let bucket = self.publisher.names().stats_window_bucket();
        let mut totals = IntervalTotals::default();
        event_log::replay(
            &self.js,
            format!("KV_{bucket}"),
            format!("$KV.{bucket}.{}*", share_prefix("*", start_ms)),
            DeliverPolicy::LastPerSubject,
            TOTALS_WAIT,
            |msg| {
                // `$KV.<bucket>.<subject>.<start_ms>.<worker_id>`
                let subject = msg.subject.split('.').nth(2).unwrap_or_default();
                let read = if subject == FLEET_STATS {
                    serde_json::from_slice::<FleetCounts>(&msg.payload)
                        .map(|v| totals.fleet.merge(&v))
                } else {
                    serde_json::from_slice::<CallCounts>(&msg.payload).map(|v| {
                        totals
                            .calls
                            .entry(subject.to_string())
                            .or_default()
                            .merge(&v)
                    })
                };
                // A deleted or purged entry has no body.
                if let Err(e) = read {
                    tracing::debug!(subject = %msg.subject, error = %e, "skipping a stats total");
                }
            },
        )
        .await?;
        Ok(totals)
    }

    /// Publishes one rollup; whether this copy was the one the stream kept.
    async fn write<T: Serialize>(&self, subject: String, start_ms: i64, rollup: &T) -> bool {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("{subject}:{start_ms}").as_str());
        match self
            .publisher
            .stored(subject.clone(), rollup, headers)
            .await
        {
            Ok(ack) => !ack.duplicate,
            Err(e) => {
                tracing::warn!(%subject, error = %crate::telemetry::chain(&e), "rollup not written");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_rollup_is_written_within_an_interval_of_start() {
        let (interval, grace) = (60_000, 5_000);
        let base = 1_800_000_040_000_i64 - 1_800_000_040_000_i64.rem_euclid(interval);
        let mut worst = 0;
        for offset in (0..interval).step_by(250) {
            let now = base + offset;
            let first = first_interval(now, interval, grace);
            let (from, until) = due(first, interval, grace);
            assert!(
                now <= until,
                "at +{offset} ms: the first interval is not due any more"
            );
            worst = worst.max(from.max(now) - now);
        }
        assert!(worst <= 60_000, "first rollup {worst} ms after start");
        // Started just after a boundary: the interval that just ended, once its grace is over.
        assert_eq!(
            first_interval(base + 1_000, interval, grace),
            base - interval
        );
        // Started late in an interval: the current one.
        assert_eq!(first_interval(base + 40_000, interval, grace), base);
    }
}
