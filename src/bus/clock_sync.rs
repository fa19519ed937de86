//! Keeps this worker on the NATS server's time. Deadlines are counted from the JetStream
//! publish time, which the server stamps; heartbeats, leases and open periods are compared
//! across workers. A worker whose clock is ahead would expire fresh requests (and take over
//! live ones), one behind would pay for stale requests: so every wall-clock reading is
//! corrected by the measured difference to the server ([`clock::wall_now`]).
//!
//! The measurement: write the `_clock` record and read back the server's store time of that
//! very revision; the server stamped it between the write and its acknowledgement, so the
//! error is at most half that round trip. The best of a few samples is kept.

use std::time::Duration;

use async_nats::jetstream::kv;
use tokio_util::sync::CancellationToken;

use crate::contract::CLOCK_KEY;
use crate::engine::clock;
use crate::telemetry::metrics::name as metric;

/// How often the difference is measured again (clocks drift slowly; NTP steps are rare).
const EVERY: Duration = Duration::from_secs(30);
/// Samples per measurement; the one with the shortest round trip wins.
const SAMPLES: usize = 3;
/// A difference worth a warning: beyond it, an uncorrected worker would misjudge deadlines.
const WARN_MS: i64 = 1_000;

/// The measuring service.
pub struct ClockSync {
    pub kv: kv::Store,
    pub worker_id: String,
}

impl ClockSync {
    /// Measures the difference now and applies it; `None` when the bucket did not answer
    /// (the previous correction stays).
    pub async fn sync(&self) -> Option<i64> {
        let mut best: Option<(Duration, i64)> = None;
        for _ in 0..SAMPLES {
            let Some(sample) = self.sample().await else {
                continue;
            };
            if best.is_none_or(|(rtt, _)| sample.0 < rtt) {
                best = Some(sample);
            }
        }
        let (rtt, ahead) = best?;
        clock::set_correction_ms(ahead);
        metrics::gauge!(metric::CLOCK_CORRECTION_MS).set(ahead as f64);
        if ahead.abs() >= WARN_MS {
            tracing::warn!(
                server_ahead_ms = ahead,
                rtt_ms = rtt.as_millis() as u64,
                "this host's clock differs from the NATS server's: deadlines and leases use the server's time"
            );
        } else {
            tracing::debug!(
                server_ahead_ms = ahead,
                rtt_ms = rtt.as_millis() as u64,
                "clock synced"
            );
        }
        Some(ahead)
    }

    /// The record's value: who wrote it (JSON, like every record in the bucket).
    fn stamp(&self) -> Vec<u8> {
        serde_json::json!({ "worker_id": self.worker_id })
            .to_string()
            .into_bytes()
    }

    /// One round trip: `(round trip, server ahead of this host in ms)`.
    async fn sample(&self) -> Option<(Duration, i64)> {
        let started = tokio::time::Instant::now();
        let sent = clock::local_now();
        let revision = self.kv.put(CLOCK_KEY, self.stamp().into()).await.ok()?;
        let rtt = started.elapsed();
        let entry = self
            .kv
            .entry_for_revision(CLOCK_KEY, revision)
            .await
            .ok()??;
        let stored =
            chrono::DateTime::from_timestamp_nanos(entry.created.unix_timestamp_nanos() as i64);
        let midpoint = sent + chrono::Duration::from_std(rtt / 2).unwrap_or_default();
        Some((rtt, (stored - midpoint).num_milliseconds()))
    }

    /// Measures again every 30 s until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let mut every = tokio::time::interval(EVERY);
        every.tick().await; // the first measurement ran at start-up
        loop {
            tokio::select! {
                _ = every.tick() => { self.sync().await; }
                _ = stop.cancelled() => return,
            }
        }
    }
}
