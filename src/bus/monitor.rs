//! Active health checks, run by one elected worker of the fleet (the `_monitor_lease`), on
//! the configured interval unless an operator stopped monitoring (`_monitoring`).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use tokio_util::sync::CancellationToken;

use crate::contract::{MONITOR_LEASE_KEY, MONITORING_KEY, MonitoringRecord, ProbeResult};
use crate::engine::Engine;

use super::kv_record::KvRecord;
use super::lease::Lease;

/// The monitoring switch and interval (the configured interval, on, when never set).
pub async fn monitoring(kv: &kv::Store, default_ms: u64) -> MonitoringRecord {
    let stored = KvRecord::<MonitoringRecord>::new(kv.clone(), "monitoring switch")
        .get(MONITORING_KEY)
        .await
        .ok()
        .flatten();
    stored.map_or(
        MonitoringRecord {
            enabled: true,
            interval_ms: default_ms,
            updated_at: crate::engine::clock::wall_now(),
            updated_by: "config".into(),
        },
        |v| v.value,
    )
}

/// Probes every provider (or one) now; the engine books the outcomes like real calls.
pub async fn check_now(engine: &Engine, only: Option<&str>) -> Vec<ProbeResult> {
    let mut out = Vec::new();
    for slot in engine.slots() {
        let id = slot.id().to_string();
        if only.is_some_and(|o| o != id) {
            continue;
        }
        let Some(res) = engine.health_check(&id).await else {
            continue;
        };
        out.push(match res {
            Ok(latency) => ProbeResult {
                provider: id.into(),
                ok: true,
                latency_ms: latency.as_millis() as u64,
                error: None,
            },
            Err(e) => ProbeResult {
                provider: id.into(),
                ok: false,
                latency_ms: 0,
                error: Some(crate::contract::ErrorInfo {
                    class: e.class,
                    message: e.message,
                }),
            },
        });
    }
    out
}

/// The elected worker's periodic checks.
pub struct Monitor {
    pub engine: Arc<Engine>,
    /// The health bucket: the lease and the monitoring switch live there.
    pub kv: kv::Store,
    pub worker_id: String,
    /// The configured interval, until an operator sets another.
    pub default_interval_ms: u64,
}

impl Monitor {
    /// Holds the lease when it can and checks on the interval while holding it, until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let lease = Lease::new(self.kv.clone(), MONITOR_LEASE_KEY, self.worker_id.clone());
        let mut last_check: Option<tokio::time::Instant> = None;
        while !stop.is_cancelled() {
            let m = monitoring(&self.kv, self.default_interval_ms).await;
            let interval = Duration::from_millis(m.interval_ms.max(1_000));
            // Renew well inside the lease so a live holder never loses it.
            let tick = (interval / 3).clamp(Duration::from_millis(500), Duration::from_secs(10));
            let leader = lease.hold(tick * 3).await;
            let due = last_check.is_none_or(|t| t.elapsed() >= interval);
            if leader && m.enabled && due {
                let results = check_now(&self.engine, None).await;
                tracing::debug!(checked = results.len(), "active health checks done");
                last_check = Some(tokio::time::Instant::now());
            }
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = stop.cancelled() => return,
            }
        }
    }
}
