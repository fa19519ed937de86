//! Health events: a worker that wrote a provider's record with a status or breaker transition
//! announces it (`<prefix>.events.health.<provider>`, once for the fleet, since only the
//! compare-and-set winner wrote it), applies the record at once, and lets the mode follow.

use std::sync::Arc;

use async_nats::HeaderMap;

use crate::contract::HealthEvent;
use crate::engine::Engine;

use super::alerts::AlertDesk;
use super::fleet::FleetState;
use super::health_store::Change;
use super::kv_record::KvError;
use super::mode::ModeAnnouncer;
use super::publish::Publisher;

/// Announces the transitions this worker writes.
pub struct HealthAnnouncer {
    publisher: Publisher,
    /// Raises the alerts of the transitions this worker writes.
    alerts: Arc<AlertDesk>,
    fleet: Arc<FleetState>,
    engine: Arc<Engine>,
    mode: Arc<ModeAnnouncer>,
    worker_id: String,
}

impl HealthAnnouncer {
    /// Publishing with `publisher`, applying to `fleet` and `engine`, then announcing `mode`.
    pub fn new(
        publisher: Publisher,
        fleet: Arc<FleetState>,
        engine: Arc<Engine>,
        mode: Arc<ModeAnnouncer>,
        alerts: Arc<AlertDesk>,
        worker_id: String,
    ) -> Self {
        HealthAnnouncer {
            publisher,
            alerts,
            fleet,
            engine,
            mode,
            worker_id,
        }
    }

    /// Publishes a health event for a transition this worker wrote.
    pub async fn announce(&self, change: &Change) {
        if !change.is_transition() {
            return;
        }
        let r = &change.record;
        let event = HealthEvent {
            provider: r.provider.clone(),
            status: r.status,
            previous_status: change.before.0,
            breaker: r.breaker,
            previous_breaker: change.before.1,
            reason: change.reason.clone(),
            success_rate: r.success_rate,
            latency_ms_ewma: r.latency_ms_ewma,
            latency_ms_p95: r.latency_ms_p95,
            consecutive_failures: r.consecutive_failures,
            forced: r.forced.is_some(),
            at: r.updated_at,
            worker_id: self.worker_id.clone(),
        };
        tracing::info!(
            provider = %r.provider, status = r.status.as_str(), breaker = r.breaker.as_str(),
            reason = %change.reason, "provider health changed"
        );
        let subject = self.publisher.names().health_event(&r.provider);
        if let Err(e) = self
            .publisher
            .event(subject, &event, HeaderMap::new())
            .await
        {
            tracing::warn!(error = %crate::telemetry::chain(&e), "health event not published");
        }
        self.alerts.health(change.before, r, &change.reason).await;
        if self.fleet.set_record(r.clone(), change.revision) {
            self.engine.apply_shared(r);
        }
        // This worker wrote the transition and holds the newest record: it announces the mode.
        self.mode.announce().await;
    }

    /// Announces a change written to a provider record, or logs why it could not be written.
    pub async fn report(&self, changed: Result<Option<Change>, KvError>) {
        match changed {
            Ok(Some(change)) => self.announce(&change).await,
            Ok(None) => {}
            Err(e) => {
                let error = crate::telemetry::chain(&e);
                tracing::warn!(%error, "provider health not updated");
            }
        }
    }
}
