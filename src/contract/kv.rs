use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    Actor, AnalysisResult, BreakerState, ErrorClass, HealthStatus, Mode, ProviderId, Timestamp,
};

/// Keys in `ai_provider_health` that start with `_` hold fleet coordination records
/// (mode, monitor lease, monitoring switch), not providers; dashboards skip them.
pub const FLEET_MODE_KEY: &str = "_mode";
/// Lease of the worker elected to run active health checks.
pub const MONITOR_LEASE_KEY: &str = "_monitor_lease";
/// The lease of the fleet's prober: the one worker that probes providers whose breaker is
/// open (short, so the role moves within seconds when its holder dies).
pub const PROBER_LEASE_KEY: &str = "_prober_lease";
/// Written by each worker now and then to read back the server's time (see
/// `bus::clock_sync`); its value, `{"worker_id": …}`, means nothing else.
pub const CLOCK_KEY: &str = "_clock";
/// Whether active monitoring is on (`monitoring.start` / `monitoring.stop`).
pub const MONITORING_KEY: &str = "_monitoring";

/// Calls counted in the breaker's sliding window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WindowCounts {
    pub calls: u32,
    pub failures: u32,
    pub slow: u32,
}

/// The last error a provider returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LastError {
    pub class: ErrorClass,
    pub message: String,
    pub at: Timestamp,
}

/// What an operator forces a provider to, in `force-status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ForcedStatus {
    /// Treat as healthy and close the breaker.
    Up,
    /// Treat as down: never called, breaker held open.
    Down,
    /// Switched off (maintenance, key rotation).
    Disabled,
}

/// An operator override with an optional expiry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Forced {
    pub status: ForcedStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `ai_provider_health/<provider>`: the fleet's shared view of one provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProviderHealthRecord {
    pub provider: ProviderId,
    pub status: HealthStatus,
    pub breaker: BreakerState,
    /// While `breaker = open`: no calls before this instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_until: Option<Timestamp>,
    /// How many times in a row the breaker re-opened (drives the growing open duration).
    pub open_count: u32,
    pub consecutive_failures: u32,
    pub window: WindowCounts,
    #[schemars(range(min = 0.0, max = 1.0))]
    pub success_rate: f64,
    pub latency_ms_ewma: f64,
    pub latency_ms_p95: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<LastError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forced: Option<Forced>,
    /// Set after an `auth` failure; only an operator (`force-status up`) clears it.
    #[serde(default)]
    pub quarantined: bool,
    /// The worker holding the single half-open probe, and until when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_until: Option<Timestamp>,
    /// When `breaker` last changed state (absent: never). A worker whose own breaker opened
    /// after this ignores a `closed` here as stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker_changed_at: Option<Timestamp>,
    /// Until when the provider asked us to back off (`Retry-After`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limited_until: Option<Timestamp>,
    pub updated_at: Timestamp,
    pub updated_by: String,
}

impl ProviderHealthRecord {
    /// A fresh record: healthy, breaker closed, no history.
    pub fn new(provider: &str, by: &str) -> Self {
        ProviderHealthRecord {
            provider: provider.into(),
            status: HealthStatus::Healthy,
            breaker: BreakerState::Closed,
            open_until: None,
            open_count: 0,
            consecutive_failures: 0,
            window: WindowCounts::default(),
            success_rate: 1.0,
            latency_ms_ewma: 0.0,
            latency_ms_p95: 0.0,
            last_error: None,
            forced: None,
            quarantined: false,
            probe_owner: None,
            probe_until: None,
            breaker_changed_at: None,
            rate_limited_until: None,
            updated_at: super::now(),
            updated_by: by.to_string(),
        }
    }
}

/// `ai_outcomes/<request_id>`: the source of truth of a request's progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum OutcomeRecord {
    /// A worker is running the request; a heartbeat older than `ack_wait` means it died.
    InProgress {
        worker_id: String,
        started_at: Timestamp,
        heartbeat_at: Timestamp,
        /// 1 for the first run, +1 for each takeover.
        run: u32,
    },
    /// Finished: this is the one stored result.
    Done { result: Box<AnalysisResult> },
}

/// `ai_budget/<provider>.<yyyy-mm-dd>`: fleet-wide spend of one provider on one UTC day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BudgetRecord {
    pub provider: ProviderId,
    pub date: String,
    #[schemars(range(min = 0.0))]
    pub spend_usd: f64,
    pub calls: u64,
    pub updated_at: Timestamp,
}

/// `ai_decision_cache/<kind>.<symbol>`: the last good provider answer for a symbol.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CachedDecision {
    pub result: AnalysisResult,
    pub cached_at: Timestamp,
}

/// `ai_provider_health/_mode`: the fleet mode last announced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FleetModeRecord {
    pub mode: Mode,
    pub since: Timestamp,
    /// Set while an operator holds the fleet suspended (also `manual.mode == suspended`).
    #[serde(default)]
    pub manual_suspend: bool,
    pub reason: String,
    pub updated_by: String,
    /// A mode an operator set with `mode.set`; it overrides the derived mode until cleared
    /// (`auto`) or until `until`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manual: Option<ManualMode>,
}

/// A mode held by an operator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ManualMode {
    pub mode: Mode,
    pub reason: String,
    pub set_at: Timestamp,
    /// When it ends by itself; absent = until `mode.set auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Timestamp>,
    pub actor: Actor,
}

impl ManualMode {
    /// Whether it still holds at `now`.
    pub fn holds(&self, now: Timestamp) -> bool {
        self.until.is_none_or(|u| now < u)
    }
}

impl FleetModeRecord {
    /// The manual mode that holds at `now`: `manual` within its TTL, else a bare
    /// `manual_suspend` (set by hand in the KV, as before `mode.set` existed).
    pub fn manual_at(&self, now: Timestamp) -> Option<Mode> {
        match &self.manual {
            Some(m) if m.holds(now) => Some(m.mode),
            Some(_) => None,
            None => self.manual_suspend.then_some(Mode::Suspended),
        }
    }
}

/// `ai_provider_health/_monitor_lease` and `_prober_lease`: the worker holding a fleet role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LeaseRecord {
    pub holder: String,
    pub until: Timestamp,
}

/// `ai_provider_health/_monitoring`: active-monitoring switch and interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MonitoringRecord {
    pub enabled: bool,
    pub interval_ms: u64,
    pub updated_at: Timestamp,
    pub updated_by: String,
}
