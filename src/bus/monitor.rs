//! Active health checks, run by one elected worker of the fleet (a lease in
//! `ai_provider_health/_monitor_lease`), on the configured interval unless an operator
//! stopped monitoring (`_monitoring`).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv::{self, CreateErrorKind, Operation, UpdateErrorKind};

use crate::contract::{
    Attempt, AttemptOutcome, LeaseRecord, MONITOR_LEASE_KEY, MONITORING_KEY, MonitoringRecord,
    ProbeResult,
};
use crate::engine::ports::{EngineEvent, EventSink};

use super::events::{BusSink, EventTask};

/// Tries to take or renew the lease at `key` (a fleet role) for `ttl`; true when this
/// worker holds it.
pub async fn hold_lease(kv: &kv::Store, key: &str, me: &str, ttl: Duration) -> bool {
    let now = chrono::Utc::now();
    let entry = match kv.entry(key).await {
        Ok(e) => e.filter(|e| e.operation == Operation::Put),
        Err(_) => return false,
    };
    let lease = LeaseRecord {
        holder: me.to_string(),
        until: now + chrono::Duration::from_std(ttl).unwrap_or_default(),
    };
    let body: bytes::Bytes = serde_json::to_vec(&lease).expect("lease").into();
    match entry {
        None => match kv.create(key, body).await {
            Ok(_) => true,
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => false,
            Err(_) => false,
        },
        Some(e) => {
            let current: Option<LeaseRecord> = serde_json::from_slice(&e.value).ok();
            let free = current
                .as_ref()
                .is_none_or(|l| l.holder == me || l.until < now);
            if !free {
                return false;
            }
            match kv.update(key, body, e.revision).await {
                Ok(_) => true,
                Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => false,
                Err(_) => false,
            }
        }
    }
}

/// The monitoring switch and interval (config default when never set).
pub async fn monitoring(kv: &kv::Store, default_ms: u64) -> MonitoringRecord {
    let stored = kv
        .get(MONITORING_KEY)
        .await
        .ok()
        .flatten()
        .and_then(|b| serde_json::from_slice(&b).ok());
    stored.unwrap_or(MonitoringRecord {
        enabled: true,
        interval_ms: default_ms,
        updated_at: chrono::Utc::now(),
        updated_by: "config".into(),
    })
}

/// Probes every provider (or one) now and books the outcomes like real calls.
pub async fn check_now(task: &EventTask, sink: &BusSink, only: Option<&str>) -> Vec<ProbeResult> {
    let mut out = Vec::new();
    for slot in task.engine.slots() {
        let id = slot.id().to_string();
        if only.is_some_and(|o| o != id) {
            continue;
        }
        let Some(res) = task.engine.health_check(&id).await else {
            continue;
        };
        let (ok, latency, error) = match &res {
            Ok(d) => (true, *d, None),
            Err(e) => (
                false,
                Duration::ZERO,
                Some(crate::contract::ErrorInfo {
                    class: e.class,
                    message: e.message.clone(),
                }),
            ),
        };
        sink.emit(EngineEvent::Attempt {
            request_id: "health-check".into(),
            attempt: Attempt {
                provider: id.clone(),
                model: slot.cfg.models[0].clone(),
                outcome: error
                    .as_ref()
                    .map_or(AttemptOutcome::Ok, |e| e.class.into()),
                http_status: res.as_ref().err().and_then(|e| e.http_status),
                latency_ms: latency.as_millis() as u64,
                hedge: false,
            },
            class: error.as_ref().map(|e| e.class),
            message: error.as_ref().map(|e| e.message.clone()),
            synthetic: false,
        });
        out.push(ProbeResult {
            provider: id,
            ok,
            latency_ms: latency.as_millis() as u64,
            error,
        });
    }
    out
}

/// Runs forever: holds the lease when it can and probes on the interval while holding it.
pub async fn run(task: Arc<EventTask>, sink: BusSink, kv: kv::Store) {
    let default_ms = task.cfg.engine.health_check_interval_ms;
    let mut last_check: Option<tokio::time::Instant> = None;
    loop {
        let m = monitoring(&kv, default_ms).await;
        let interval = Duration::from_millis(m.interval_ms.max(1_000));
        // Renew well inside the lease so a live holder never loses it.
        let tick = (interval / 3).clamp(Duration::from_millis(500), Duration::from_secs(10));
        let leader = hold_lease(&kv, MONITOR_LEASE_KEY, &task.worker_id, tick * 3).await;
        let due = last_check.is_none_or(|t| t.elapsed() >= interval);
        if leader && m.enabled && due {
            let results = check_now(&task, &sink, None).await;
            tracing::debug!(checked = results.len(), "active health checks done");
            last_check = Some(tokio::time::Instant::now());
        }
        tokio::time::sleep(tick).await;
    }
}
