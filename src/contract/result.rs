use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ErrorClass, ErrorInfo, Kind, Timestamp};

/// How a request ended. Every status is published and stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// A provider answered.
    Ok,
    /// Answered from the decision cache or the rule-based fallback (`source` says which).
    Degraded,
    /// No answer and fallback not allowed.
    Failed,
    /// The deadline had passed before any provider call.
    Expired,
    /// Refused by policy (suspended mode, cost cap).
    Rejected,
}

impl Status {
    /// The wire name, also a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Degraded => "degraded",
            Status::Failed => "failed",
            Status::Expired => "expired",
            Status::Rejected => "rejected",
        }
    }
}

/// Where the answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Provider,
    Cache,
    Fallback,
    None,
}

impl Source {
    /// The wire name, also a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Provider => "provider",
            Source::Cache => "cache",
            Source::Fallback => "fallback",
            Source::None => "none",
        }
    }
}

/// The fleet's trading mode, derived from shared provider health.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The top-priority provider is serving.
    Normal,
    /// A lower-priority remote provider is serving.
    Degraded,
    /// Only local/low-tier providers are left: smaller positions, higher confidence bar.
    Conservative,
    /// No provider: cached decisions or rule-based fallback only.
    Minimal,
    /// Manual, or minimal for too long: every signal is `hold`, trading suspended.
    Suspended,
}

impl Mode {
    /// The wire name, also a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Normal => "normal",
            Mode::Degraded => "degraded",
            Mode::Conservative => "conservative",
            Mode::Minimal => "minimal",
            Mode::Suspended => "suspended",
        }
    }
}

/// A trading action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Buy,
    Sell,
    Hold,
}

/// A trading signal for one symbol.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Signal {
    pub action: Action,
    /// 0.0 ..= 1.0
    #[schemars(range(min = 0.0, max = 1.0))]
    pub confidence: f64,
    pub rationale: String,
    /// Fraction of the allowed position, 0.0 ..= 1.0, after the mode's multiplier.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub position_size: f64,
    /// e.g. `intraday`, `1d`, `1w`.
    pub horizon: String,
}

/// The risk adjustments of the mode the fleet was in when the result was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RiskAdjustment {
    /// Multiply position sizes by this.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub position_multiplier: f64,
    /// Act only on signals at least this confident.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min_confidence: f64,
    /// When true, do not trade on this result at all.
    pub trading_suspended: bool,
}

/// What one provider call ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    Ok,
    Timeout,
    RateLimited,
    Overloaded,
    ServerError,
    Network,
    Auth,
    BadRequest,
    ContextLength,
    InvalidResponse,
    ContentFiltered,
    Cancelled,
    DeadlineExceeded,
    BudgetExceeded,
    NoProvider,
    Suspended,
}

impl AttemptOutcome {
    /// The wire name (`ok`, `rate_limited`, …), also used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Ok => "ok",
            AttemptOutcome::Timeout => "timeout",
            AttemptOutcome::RateLimited => "rate_limited",
            AttemptOutcome::Overloaded => "overloaded",
            AttemptOutcome::ServerError => "server_error",
            AttemptOutcome::Network => "network",
            AttemptOutcome::Auth => "auth",
            AttemptOutcome::BadRequest => "bad_request",
            AttemptOutcome::ContextLength => "context_length",
            AttemptOutcome::InvalidResponse => "invalid_response",
            AttemptOutcome::ContentFiltered => "content_filtered",
            AttemptOutcome::Cancelled => "cancelled",
            AttemptOutcome::DeadlineExceeded => "deadline_exceeded",
            AttemptOutcome::BudgetExceeded => "budget_exceeded",
            AttemptOutcome::NoProvider => "no_provider",
            AttemptOutcome::Suspended => "suspended",
        }
    }
}

impl From<ErrorClass> for AttemptOutcome {
    fn from(c: ErrorClass) -> Self {
        match c {
            ErrorClass::Timeout => AttemptOutcome::Timeout,
            ErrorClass::RateLimited => AttemptOutcome::RateLimited,
            ErrorClass::Overloaded => AttemptOutcome::Overloaded,
            ErrorClass::ServerError => AttemptOutcome::ServerError,
            ErrorClass::Network => AttemptOutcome::Network,
            ErrorClass::Auth => AttemptOutcome::Auth,
            ErrorClass::BadRequest => AttemptOutcome::BadRequest,
            ErrorClass::ContextLength => AttemptOutcome::ContextLength,
            ErrorClass::InvalidResponse => AttemptOutcome::InvalidResponse,
            ErrorClass::ContentFiltered => AttemptOutcome::ContentFiltered,
            ErrorClass::Cancelled => AttemptOutcome::Cancelled,
            ErrorClass::DeadlineExceeded => AttemptOutcome::DeadlineExceeded,
            ErrorClass::BudgetExceeded => AttemptOutcome::BudgetExceeded,
            ErrorClass::NoProvider => AttemptOutcome::NoProvider,
            ErrorClass::Suspended => AttemptOutcome::Suspended,
        }
    }
}

/// One provider call made for a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Attempt {
    pub provider: String,
    pub model: String,
    pub outcome: AttemptOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    pub latency_ms: u64,
    /// True when this call was a hedge started while an earlier one was still running.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hedge: bool,
}

/// Tokens used, summed over the calls that were paid for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// The answer to an analysis request, published on `<prefix>.analysis.result.<kind>` with
/// `Nats-Msg-Id: <request_id>` and stored in `ai_outcomes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AnalysisResult {
    pub request_id: String,
    pub kind: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    pub status: Status,
    pub source: Source,
    /// The provider that answered (also set for `cache`: the provider of the cached answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub mode: Mode,
    /// Present for `kind = signal` when there is an answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<Signal>,
    /// Present for the other kinds when there is an answer: a free-form JSON object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<serde_json::Map<String, serde_json::Value>>,
    pub risk: RiskAdjustment,
    pub attempts: Vec<Attempt>,
    pub latency_ms: u64,
    pub usage: Usage,
    #[schemars(range(min = 0.0))]
    pub cost_usd: f64,
    /// Why there is no provider answer (set whenever `status != ok`, and for `ok` never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    pub worker_id: String,
    pub completed_at: Timestamp,
}

#[cfg(test)]
mod attempt_outcome_tests {
    use super::*;

    #[test]
    fn metric_labels_are_the_wire_names() {
        use AttemptOutcome::*;
        let all = [
            Ok,
            Timeout,
            RateLimited,
            Overloaded,
            ServerError,
            Network,
            Auth,
            BadRequest,
            ContextLength,
            InvalidResponse,
            ContentFiltered,
            Cancelled,
            DeadlineExceeded,
            BudgetExceeded,
            NoProvider,
            Suspended,
        ];
        for outcome in all {
            assert_eq!(
                serde_json::to_value(outcome).unwrap(),
                serde_json::Value::from(outcome.as_str())
            );
        }
    }
}
