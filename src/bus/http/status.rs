//! `GET /api/status`: the fleet as the shared KV tells it (mode, provider records, today's
//! spend), with this worker's latency percentiles beside it.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use crate::contract::{
    BreakerState, BudgetRecord, FLEET_MODE_KEY, FleetModeRecord, HealthStatus, ManualMode, Mode,
    ProviderHealthRecord, Timestamp,
};

use super::HttpState;
use crate::bus::spend::budget_key;

/// The whole reply.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReply {
    /// The worker that answered.
    pub worker_id: String,
    /// When it answered.
    pub at: Timestamp,
    /// The fleet mode (from `_mode` in the health bucket; this worker's view until the fleet
    /// has written one).
    pub mode: Mode,
    /// Where `mode` came from: `fleet` or `worker`.
    pub mode_source: String,
    /// Since when the fleet is in `mode`, when known.
    pub mode_since: Option<Timestamp>,
    /// Why, when known.
    pub mode_reason: Option<String>,
    /// The operator's manual mode, while one holds (`mode.set`).
    pub mode_manual: Option<ManualMode>,
    /// Whether this worker is consuming.
    pub ready: bool,
    /// One entry per configured provider, in priority order.
    pub providers: Vec<ProviderStatus>,
}

/// One provider.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProviderStatus {
    /// Provider id.
    pub id: String,
    /// Lower is tried first.
    pub priority: u32,
    /// `remote` or `local`.
    pub tier: String,
    /// Models in the order they are tried.
    pub models: Vec<String>,
    /// Fleet status (this worker's when the KV has no record yet).
    pub status: HealthStatus,
    /// Fleet breaker state (likewise).
    pub breaker: BreakerState,
    /// Fleet-wide success rate over the breaker window.
    pub success_rate: f64,
    /// This worker's median latency of successful calls, when it has enough samples.
    pub latency_ms_p50: Option<f64>,
    /// This worker's p95 latency of successful calls, when it has enough samples.
    pub latency_ms_p95: Option<f64>,
    /// Fleet-wide spend today (UTC), from `ai_budget`.
    pub spend_today_usd: f64,
    /// Calls booked against today's budget.
    pub calls_today: u64,
    /// The configured daily budget, if any.
    pub daily_budget_usd: Option<f64>,
    /// The shared record as stored, for tools that want every field.
    pub record: Option<ProviderHealthRecord>,
}

/// `GET /api/status`.
pub async fn status(State(s): State<HttpState>) -> Json<StatusReply> {
    Json(build(&s).await)
}

async fn build(s: &HttpState) -> StatusReply {
    let now = crate::engine::clock::wall_now();
    let fleet_mode: Option<FleetModeRecord> = match s.bus.health.get(FLEET_MODE_KEY).await {
        Ok(Some(b)) => serde_json::from_slice(&b).ok(),
        _ => None,
    };
    let mut providers = Vec::with_capacity(s.cfg.providers.len());
    for p in &s.cfg.providers {
        let record: Option<ProviderHealthRecord> = match s.bus.health.get(&p.id).await {
            Ok(Some(b)) => serde_json::from_slice(&b).ok(),
            _ => None,
        };
        let budget: Option<BudgetRecord> = match s.bus.budget.get(budget_key(&p.id, now)).await {
            Ok(Some(b)) => serde_json::from_slice(&b).ok(),
            _ => None,
        };
        let local = s.engine.provider_status(&p.id);
        let (p50, p95) = s
            .engine
            .slots()
            .iter()
            .find(|slot| slot.id() == p.id)
            .map(|slot| {
                let mut h = slot.health();
                (h.stats.percentile_ms(0.5), h.stats.percentile_ms(0.95))
            })
            .unwrap_or((None, None));
        let (status, breaker) = match (&record, local) {
            (Some(r), _) => (r.status, r.breaker),
            (None, Some(l)) => l,
            (None, None) => (HealthStatus::Healthy, BreakerState::Closed),
        };
        providers.push(ProviderStatus {
            id: p.id.to_string(),
            priority: p.priority,
            tier: serde_json::to_value(p.tier)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            models: p.models.clone(),
            status,
            breaker,
            success_rate: record.as_ref().map_or(1.0, |r| r.success_rate),
            latency_ms_p50: p50,
            latency_ms_p95: p95,
            spend_today_usd: budget.as_ref().map_or(0.0, |b| b.spend_usd),
            calls_today: budget.as_ref().map_or(0, |b| b.calls),
            daily_budget_usd: p.daily_budget_usd,
            record,
        });
    }
    providers.sort_by_key(|p| p.priority);
    let (mode, mode_source) = match &fleet_mode {
        Some(r) => (r.manual_at(now).unwrap_or(r.mode), "fleet"),
        None => (s.engine.mode(), "worker"),
    };
    let mode_manual = fleet_mode
        .as_ref()
        .and_then(|r| r.manual.clone())
        .filter(|m| m.holds(now));
    StatusReply {
        worker_id: s.worker_id.clone(),
        at: now,
        mode,
        mode_source: mode_source.into(),
        mode_since: fleet_mode.as_ref().map(|r| r.since),
        mode_reason: fleet_mode.map(|r| r.reason),
        mode_manual,
        ready: s.ready.load(std::sync::atomic::Ordering::Relaxed),
        providers,
    }
}
