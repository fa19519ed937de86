use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

wire_enum! {
    /// Why a provider call (or a whole request) did not produce a valid answer.
    ///
    /// Each class has its own retry/failover policy in the engine (see `engine::policy`).
    pub enum ErrorClass {
        /// No complete answer within the call's timeout (connect or total).
        Timeout,
        /// HTTP 429 or a vendor rate-limit signal; honour `Retry-After`.
        RateLimited,
        /// The vendor says it is overloaded (Anthropic 529, Gemini 503 `UNAVAILABLE`).
        Overloaded,
        /// Any other 5xx.
        ServerError,
        /// Connection refused/reset, DNS, TLS: the request never got a full HTTP answer.
        Network,
        /// 401/403: the key is wrong or revoked. Disables the provider; never retried.
        Auth,
        /// The request's own fault (400/404/422): no failover, it would fail everywhere.
        BadRequest,
        /// The prompt does not fit the model's context window: try a larger-context model.
        ContextLength,
        /// The body was unparseable, truncated, too large, or not a valid signal/analysis.
        InvalidResponse,
        /// The vendor refused to answer on safety grounds.
        ContentFiltered,
        /// The call was cancelled (a hedge lost, the deadline passed, shutdown).
        Cancelled,
        /// The request's deadline passed.
        DeadlineExceeded,
        /// A daily budget (a provider's or the tenant's) or the request's cost cap stopped the
        /// call.
        BudgetExceeded,
        /// No provider could be tried (all open, forced down, filtered out).
        NoProvider,
        /// Refused by policy (suspended mode).
        Suspended,
        /// This worker holds no usable key for the provider: its record in `ai_secrets`
        /// cannot be decrypted (wrong or missing master key, a corrupt record). Not the
        /// provider's fault: fails over, never opens the breaker or quarantines.
        KeyUnavailable,
        /// The tenant sent more requests over the last 60 s than its
        /// `max_requests_per_minute`: answered `rejected` without any provider call.
        QuotaExceeded,
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error as reported on the wire: a class plus a human-readable message (never a secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorInfo {
    pub class: ErrorClass,
    pub message: String,
}
