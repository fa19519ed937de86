//! Requests and replies of the control micro-service (`<prefix>.control.<endpoint>`).
//! Fleet-level answers are read from the shared KV, not from the one worker that replies.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    AnalysisResult, Attempt, BreakerState, FailoverEvent, ForcedStatus, HealthStatus, Kind, Mode,
    ProviderHealthRecord, ProviderId, Status, Timestamp,
};

/// The control service's endpoints; each answers on `<prefix>.control.<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Status,
    HealthCheck,
    ForceStatus,
    BestProvider,
    FailoverHistory,
    HealthSummary,
    MonitoringStart,
    MonitoringStop,
    TestFailover,
    ModeSet,
    QualitySummary,
    Report,
    KeysSet,
    KeysList,
    KeysDelete,
}

wire_enum! {
    /// Who may call an endpoint. The NATS server enforces it (`deploy/nats/server.conf`), the
    /// REST API enforces it from the bearer token's role, and the service checks it again
    /// when the server vouched for the caller. Ordered: an operator may do what a viewer may.
    #[derive(PartialOrd, Ord)]
    pub enum Role {
        /// Reads: status, best provider, history, summaries.
        Viewer,
        /// Everything, including changes and paid health checks.
        Operator,
    }
}

impl Endpoint {
    /// Every endpoint.
    pub const ALL: [Endpoint; 15] = [
        Endpoint::Status,
        Endpoint::HealthCheck,
        Endpoint::ForceStatus,
        Endpoint::BestProvider,
        Endpoint::FailoverHistory,
        Endpoint::HealthSummary,
        Endpoint::MonitoringStart,
        Endpoint::MonitoringStop,
        Endpoint::TestFailover,
        Endpoint::ModeSet,
        Endpoint::QualitySummary,
        Endpoint::Report,
        Endpoint::KeysSet,
        Endpoint::KeysList,
        Endpoint::KeysDelete,
    ];

    /// The name, relative to `<prefix>.control.`.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Status => "status",
            Endpoint::HealthCheck => "health-check",
            Endpoint::ForceStatus => "force-status",
            Endpoint::BestProvider => "best-provider",
            Endpoint::FailoverHistory => "failover-history",
            Endpoint::HealthSummary => "health-summary",
            Endpoint::MonitoringStart => "monitoring.start",
            Endpoint::MonitoringStop => "monitoring.stop",
            Endpoint::TestFailover => "test-failover",
            Endpoint::ModeSet => "mode.set",
            Endpoint::QualitySummary => "quality-summary",
            Endpoint::Report => "report",
            Endpoint::KeysSet => "keys.set",
            Endpoint::KeysList => "keys.list",
            Endpoint::KeysDelete => "keys.delete",
        }
    }

    /// The least role that may call it: anything that changes the fleet, or pays a provider,
    /// is the operator's.
    pub fn role(self) -> Role {
        match self {
            Endpoint::Status
            | Endpoint::BestProvider
            | Endpoint::FailoverHistory
            | Endpoint::HealthSummary
            | Endpoint::QualitySummary
            | Endpoint::Report => Role::Viewer,
            Endpoint::HealthCheck
            | Endpoint::ForceStatus
            | Endpoint::MonitoringStart
            | Endpoint::MonitoringStop
            | Endpoint::TestFailover
            | Endpoint::ModeSet
            | Endpoint::KeysSet
            | Endpoint::KeysList
            | Endpoint::KeysDelete => Role::Operator,
        }
    }

    /// The endpoint called `name`.
    pub fn from_name(name: &str) -> Option<Endpoint> {
        Endpoint::ALL.into_iter().find(|e| e.name() == name)
    }
}

/// Any endpoint's error reply (also sent as the micro protocol's error headers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ControlError {
    pub error: String,
}

/// `status` reply: the fleet's mode and every provider's shared record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StatusReply {
    pub mode: Mode,
    pub providers: Vec<ProviderHealthRecord>,
    pub monitoring: bool,
    pub answered_by: String,
    pub at: Timestamp,
}

/// `health-check` request: probe one provider, or all when `provider` is absent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderId>,
}

/// One probe's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProbeResult {
    pub provider: ProviderId,
    pub ok: bool,
    pub latency_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<super::ErrorInfo>,
}

/// `health-check` reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HealthCheckReply {
    pub results: Vec<ProbeResult>,
}

/// What `force-status` sets; `clear` removes an override and a quarantine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ForceAction {
    Up,
    Down,
    Disabled,
    Clear,
}

impl ForceAction {
    /// The override this action installs (`None` for `clear`).
    pub fn forced_status(self) -> Option<ForcedStatus> {
        match self {
            ForceAction::Up => Some(ForcedStatus::Up),
            ForceAction::Down => Some(ForcedStatus::Down),
            ForceAction::Disabled => Some(ForcedStatus::Disabled),
            ForceAction::Clear => None,
        }
    }
}

/// `force-status` request, obeyed by the whole fleet through `ai_provider_health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ForceStatusRequest {
    pub provider: ProviderId,
    pub status: ForceAction,
    /// Override expires after this many ms; absent = until cleared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `force-status` reply: the record as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ForceStatusReply {
    pub record: ProviderHealthRecord,
}

/// `best-provider` request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BestProviderRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<Kind>,
    /// Optional allow-list, as in a request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub providers: Option<Vec<ProviderId>>,
}

/// `best-provider` reply: who would be asked first right now (none in minimal mode).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BestProviderReply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The candidates in the order they would be tried.
    pub order: Vec<ProviderId>,
    pub mode: Mode,
}

/// `failover-history` request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FailoverHistoryRequest {
    /// Most recent N events (default 50, at most 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Only events moving away from this provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderId>,
}

/// `failover-history` reply, oldest first, read from `AI_EVENTS`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FailoverHistoryReply {
    pub events: Vec<FailoverEvent>,
}

/// One provider's line in `health-summary`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProviderSummary {
    pub provider: ProviderId,
    pub status: HealthStatus,
    pub breaker: BreakerState,
    pub success_rate: f64,
    pub latency_ms_ewma: f64,
    pub latency_ms_p95: f64,
    /// Share of the last window's calls that succeeded, as a rough uptime.
    pub uptime: f64,
    /// Failovers away from this provider in the events stream's history.
    pub failovers_from: u64,
    pub spend_today_usd: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_budget_usd: Option<f64>,
}

/// `health-summary` reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HealthSummaryReply {
    pub mode: Mode,
    pub providers: Vec<ProviderSummary>,
    pub failovers_total: u64,
    pub at: Timestamp,
}

/// `monitoring.start` request (`monitoring.stop` takes an empty body).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MonitoringRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u64>,
}

/// `monitoring.*` reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MonitoringReply {
    pub enabled: bool,
    pub interval_ms: u64,
}

/// `test-failover` request: a synthetic request with one provider made to fail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestFailoverRequest {
    /// The provider to make fail.
    pub fail_provider: ProviderId,
    /// The error it fails with (default `server_error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<super::ErrorClass>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
}

/// `test-failover` reply: the attempt trace; fleet state is not touched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TestFailoverReply {
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_by: Option<String>,
    pub attempts: Vec<Attempt>,
    pub result: Box<AnalysisResult>,
}

/// What `mode.set` asks for: a mode to hold fleet-wide, or `auto` to go back to the derived one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ModeChoice {
    Normal,
    Conservative,
    Minimal,
    Suspended,
    /// Clear the manual mode: the fleet mode is derived from provider health again.
    Auto,
}

impl ModeChoice {
    /// The mode it holds (`None` for `auto`).
    pub fn mode(self) -> Option<Mode> {
        match self {
            ModeChoice::Normal => Some(Mode::Normal),
            ModeChoice::Conservative => Some(Mode::Conservative),
            ModeChoice::Minimal => Some(Mode::Minimal),
            ModeChoice::Suspended => Some(Mode::Suspended),
            ModeChoice::Auto => None,
        }
    }
}

/// `mode.set` request (operator).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModeSetRequest {
    pub mode: ModeChoice,
    /// Why; shown in the mode event, the dashboard and the audit trail.
    pub reason: String,
    /// The manual mode ends by itself after this many ms; absent = until `auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
}

/// `mode.set` reply: the effective fleet mode and the manual mode now held, if any.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ModeSetReply {
    pub mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manual: Option<super::ManualMode>,
}

/// `quality-summary` request: every quality record, or one kind's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QualitySummaryRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<super::Kind>,
}

/// `quality-summary` reply: the `ai_quality` records, best hit rate first within a kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct QualitySummaryReply {
    pub records: Vec<super::QualityRecord>,
}
