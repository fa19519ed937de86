use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Actor, ErrorClass, Mode, ProviderId, Timestamp};

wire_enum! {
    /// A provider's health as the fleet sees it.
    pub enum HealthStatus {
        Healthy,
        Degraded,
        Unhealthy,
        /// Forced off by an operator, or quarantined after an `auth` failure.
        Disabled,
    }
}

wire_enum! {
    /// A circuit breaker's state.
    pub enum BreakerState {
        Closed,
        Open,
        HalfOpen,
    }
}

/// `<prefix>.events.health.<provider>`: published on every status or breaker transition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HealthEvent {
    pub provider: ProviderId,
    pub status: HealthStatus,
    pub previous_status: HealthStatus,
    pub breaker: BreakerState,
    pub previous_breaker: BreakerState,
    pub reason: String,
    #[schemars(range(min = 0.0, max = 1.0))]
    pub success_rate: f64,
    pub latency_ms_ewma: f64,
    pub latency_ms_p95: f64,
    pub consecutive_failures: u32,
    /// True when an operator forced this status.
    pub forced: bool,
    pub at: Timestamp,
    pub worker_id: String,
}

/// A (provider, model) pair.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct ProviderModel {
    pub provider: ProviderId,
    pub model: String,
}

/// `<prefix>.events.failover`: any move to another (provider, model) after a failed attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FailoverEvent {
    pub request_id: String,
    pub from: ProviderModel,
    /// `null` when the move is to the cache or the rule-based fallback.
    pub to: Option<ProviderModel>,
    pub error_class: ErrorClass,
    /// True when `to` was started as a hedge while `from` was still running.
    #[serde(default)]
    pub hedge: bool,
    pub at: Timestamp,
    pub worker_id: String,
}

/// `<prefix>.events.mode`: published once per change of the fleet mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ModeEvent {
    pub mode: Mode,
    pub previous: Mode,
    pub healthy_providers: Vec<ProviderId>,
    pub reason: String,
    pub at: Timestamp,
    pub worker_id: String,
    /// The operator who set or cleared a manual mode (`mode.set`), in the audit record's
    /// form; absent when the mode followed provider health.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
}
