//! Raising alerts: the worker whose compare-and-set made a transition raises its alert, once
//! for the fleet, on `<prefix>.alerts.<type>`, unless the same alert (type, subject, state)
//! was raised within `alerts.repeat_after_ms` (a flapping provider pages once).

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::kv;
use serde::{Deserialize, Serialize};

use crate::config::AlertsConfig;
use crate::contract::{AlertRecord, ModeEvent, ProviderHealthRecord, Timestamp};
use crate::telemetry::metrics::name as metric;

use super::super::kv_record::{Decision as Cas, KvRecord};
use super::super::publish::Publisher;
use super::decide::{self, Decision};

/// The last time an alert of one type and subject was raised, and in which state.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LastRaised {
    state: String,
    at: Timestamp,
}

/// Raises alerts.
pub struct AlertDesk {
    publisher: Publisher,
    last: KvRecord<LastRaised>,
    repeat_after: Duration,
    worker_id: String,
}

impl AlertDesk {
    /// Publishing with `publisher`; the repeat records live in the health bucket `kv` (keys
    /// `_alert.<type>.<subject>`).
    pub fn new(
        publisher: Publisher,
        kv: kv::Store,
        repeat_after: Duration,
        worker_id: String,
    ) -> Self {
        AlertDesk {
            publisher,
            last: KvRecord::new(kv, "alert repeat record"),
            repeat_after,
            worker_id,
        }
    }

    /// The alert, if any, for a provider transition this worker wrote.
    pub async fn health(
        &self,
        before: (crate::contract::HealthStatus, crate::contract::BreakerState),
        record: &ProviderHealthRecord,
        reason: &str,
    ) {
        if let Some(d) = decide::health(before, record, reason) {
            self.raise(d).await;
        }
    }

    /// The alert for a mode change this worker announced.
    pub async fn mode(&self, event: &ModeEvent) {
        if let Some(d) = decide::mode(event) {
            self.raise(d).await;
        }
    }

    /// The alerts for a budget write of this worker's that took `provider`'s spend on `day`
    /// from `before` to `after` against `limit`.
    pub async fn budget(
        &self,
        provider: &str,
        day: &str,
        before: f64,
        after: f64,
        limit: f64,
        thresholds: &[f64],
    ) {
        for d in decide::budget(provider, day, before, after, limit, thresholds) {
            self.raise(d).await;
        }
    }

    /// The alerts, if any, for a write of a tenant's spend that took it from `before` to
    /// `after` of its daily `limit`.
    pub async fn tenant_budget(
        &self,
        tenant: &str,
        day: &str,
        (before, after): (f64, f64),
        limit: f64,
        thresholds: &[f64],
    ) {
        for d in decide::tenant_budget(tenant, day, before, after, limit, thresholds) {
            self.raise(d).await;
        }
    }

    /// The alert, if any, for a provider's p95 over an interval whose rollup this worker
    /// wrote.
    pub async fn slow(
        &self,
        provider: &str,
        p95_ms: Option<f64>,
        successes: u64,
        cfg: &AlertsConfig,
    ) {
        if let Some(d) = decide::slow(
            provider,
            p95_ms,
            successes,
            cfg.slow_p95_ms,
            cfg.slow_min_calls,
        ) {
            self.raise(d).await;
        }
    }

    /// The alert, if any, for the dead letters of an interval whose rollup this worker wrote.
    pub async fn dead_letters(&self, count: u64, interval_ms: u64, cfg: &AlertsConfig) {
        if let Some(d) = decide::dead_letters(count, interval_ms, cfg.dead_letters_per_minute) {
            self.raise(d).await;
        }
    }

    /// `fleet_stalled`: stalled, or flowing again.
    pub async fn stall(&self, stalled: bool, waiting: u64, for_ms: u64) {
        self.raise(decide::stall(stalled, waiting, for_ms)).await;
    }

    async fn raise(&self, d: Decision) {
        let now = crate::engine::clock::wall_now();
        // Provider ids never start with `_`: a tenant's subject never meets a provider's.
        let subject = match (&d.provider, &d.tenant) {
            (Some(p), _) => p.clone(),
            (None, Some(t)) => format!("_tenant_{t}"),
            (None, None) => "fleet".to_string(),
        };
        let key = format!("_alert.{}.{subject}", d.alert_type.as_str());
        let window = chrono::Duration::from_std(self.repeat_after).unwrap_or_default();
        let fresh = self
            .last
            .modify(&key, |last| match last {
                // An all-clear for an alarm that was never raised (or already cleared).
                Some(l) if d.only_after.is_some_and(|s| s != l.state) => Cas::Keep(true),
                None if d.only_after.is_some() => Cas::Keep(true),
                Some(l) if l.state == d.to && now - l.at < window => Cas::Keep(false),
                _ => Cas::Write(
                    LastRaised {
                        state: d.to.clone(),
                        at: now,
                    },
                    true,
                ),
            })
            .await;
        match fresh {
            Ok(super::super::kv_record::Decided::Kept(true)) => return,
            Ok(super::super::kv_record::Decided::Kept(false)) => {
                metrics::counter!(metric::ALERTS_TOTAL, "type" => d.alert_type.as_str(), "result" => "suppressed").increment(1);
                return;
            }
            Ok(_) => {}
            // Better twice than never: raise an alarm anyway; but not an all-clear, which
            // would be sent for every interval of every provider while the bucket is away.
            Err(e) => {
                tracing::warn!(error = %crate::telemetry::chain(&e), "alert repeat record not read");
                if d.only_after.is_some() {
                    return;
                }
            }
        }
        let alert = AlertRecord {
            alert_id: uuid::Uuid::new_v4().to_string(),
            alert_type: d.alert_type,
            severity: d.severity,
            at: now,
            provider: d.provider.map(Into::into),
            from: Some(d.from),
            to: Some(d.to),
            message: d.message,
            details: d.details,
            worker_id: self.worker_id.clone(),
            tenant: d.tenant,
        };
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", alert.alert_id.as_str());
        let subject = self.publisher.names().alert(alert.alert_type);
        match self.publisher.event(subject, &alert, headers).await {
            Ok(()) => {
                tracing::warn!(alert = alert.alert_type.as_str(), severity = alert.severity.as_str(), message = %alert.message, "alert raised");
                metrics::counter!(metric::ALERTS_TOTAL, "type" => alert.alert_type.as_str(), "result" => "raised").increment(1);
            }
            Err(e) => tracing::error!(error = %crate::telemetry::chain(&e), "alert not published"),
        }
    }
}
