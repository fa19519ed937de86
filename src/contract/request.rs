use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ProviderId;

wire_enum! {
    /// The analysis a trading component asks for; also the last token of the request subject.
    pub enum Kind {
        /// A buy/sell/hold signal for one symbol.
        Signal,
        /// An analysis of the positions in `context`.
        Portfolio,
        /// A risk assessment.
        Risk,
        /// A sentiment reading, typically of `context.news`.
        Sentiment,
    }
}

impl Kind {
    /// Every kind, in subject order.
    pub const ALL: [Kind; 4] = [Kind::Signal, Kind::Portfolio, Kind::Risk, Kind::Sentiment];

    /// Parses a subject token.
    pub fn from_token(token: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == token)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The request-id rule: `[A-Za-z0-9_-]{1,128}`; it becomes a KV key and a `Nats-Msg-Id`.
pub const REQUEST_ID_PATTERN: &str = "^[A-Za-z0-9_-]{1,128}$";

/// An analysis request, published on `<prefix>.analysis.request.<kind>` with
/// `Nats-Msg-Id: <request_id>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AnalysisRequest {
    /// Set by the publisher (a UUID is best); the idempotency key of the whole pipeline.
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]{1,128}$"))]
    pub request_id: String,
    /// Must match the subject's kind token.
    pub kind: Kind,
    /// The instrument; required for `kind = signal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub symbol: Option<String>,
    /// Extra instructions appended to the analysis prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Free-form market context. `prices` (numbers, oldest first) feeds the rule-based fallback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<serde_json::Map<String, serde_json::Value>>,
    /// Time budget in ms from the JetStream publish time; past it the answer is `expired`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3_600_000))]
    pub deadline_ms: Option<u64>,
    /// Optional allow-list of provider ids; order among them follows the strategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub providers: Option<Vec<ProviderId>>,
    /// Optional cap on what this one request may spend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub max_cost_usd: Option<f64>,
    /// Whether the decision cache or the rule-based fallback may answer. Default `true`.
    #[serde(default = "default_true")]
    pub allow_fallback: bool,
    /// How long (ms from the JetStream publish time, within the deadline) this request may
    /// wait for a provider to come back when none can be called now, before it falls back.
    /// Absent or 0: no waiting; the cached or rule-based answer comes at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 3_600_000))]
    pub max_wait_ms: Option<u64>,
    /// A core-NATS subject that also gets the result. It must start with one of the
    /// fleet's `worker.reply_prefixes` (default `_INBOX.`), else the request is
    /// dead-lettered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
}

fn default_true() -> bool {
    true
}

/// Why a request that parsed as JSON is still not acceptable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidRequest {
    #[error("request_id must match [A-Za-z0-9_-]{{1,128}}")]
    BadRequestId,
    #[error("kind `{body}` in the body does not match the subject's kind `{subject}`")]
    KindMismatch { body: Kind, subject: String },
    #[error("symbol is required for kind=signal")]
    MissingSymbol,
    #[error("symbol must be 1..=64 characters")]
    BadSymbol,
    #[error("deadline_ms must be between 1 and 3600000")]
    BadDeadline,
    #[error("max_wait_ms must be between 0 and 3600000")]
    BadMaxWait,
    #[error("max_cost_usd must be a finite number >= 0")]
    BadCostCap,
    #[error("providers must not be empty when given")]
    EmptyProviderList,
    #[error("context.prices must be an array of finite numbers")]
    BadPrices,
    #[error("reply_to must be a valid NATS subject without wildcards")]
    BadReplyTo,
}

/// Whether `id` is a valid request id.
pub fn is_valid_request_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl AnalysisRequest {
    /// A minimal signal request for `symbol` with a fresh UUID.
    pub fn signal(symbol: &str) -> Self {
        AnalysisRequest {
            request_id: uuid::Uuid::new_v4().to_string(),
            kind: Kind::Signal,
            symbol: Some(symbol.to_string()),
            prompt: None,
            context: None,
            deadline_ms: None,
            providers: None,
            max_cost_usd: None,
            allow_fallback: true,
            max_wait_ms: None,
            reply_to: None,
        }
    }

    /// Checks every field rule the schema cannot express, plus the subject's kind token.
    pub fn validate(&self, subject_kind: Option<&str>) -> Result<(), InvalidRequest> {
        if !is_valid_request_id(&self.request_id) {
            return Err(InvalidRequest::BadRequestId);
        }
        if let Some(token) = subject_kind
            && token != self.kind.as_str()
        {
            return Err(InvalidRequest::KindMismatch {
                body: self.kind,
                subject: token.to_string(),
            });
        }
        match &self.symbol {
            None if self.kind == Kind::Signal => return Err(InvalidRequest::MissingSymbol),
            Some(s) if s.is_empty() || s.chars().count() > 64 => {
                return Err(InvalidRequest::BadSymbol);
            }
            _ => {}
        }
        if let Some(d) = self.deadline_ms
            && !(1..=3_600_000).contains(&d)
        {
            return Err(InvalidRequest::BadDeadline);
        }
        if self.max_wait_ms.is_some_and(|w| w > 3_600_000) {
            return Err(InvalidRequest::BadMaxWait);
        }
        if let Some(c) = self.max_cost_usd
            && !(c.is_finite() && c >= 0.0)
        {
            return Err(InvalidRequest::BadCostCap);
        }
        if self.providers.as_ref().is_some_and(|p| p.is_empty()) {
            return Err(InvalidRequest::EmptyProviderList);
        }
        if let Some(prices) = self.context.as_ref().and_then(|c| c.get("prices")) {
            let ok = prices
                .as_array()
                .is_some_and(|a| a.iter().all(|v| v.as_f64().is_some_and(f64::is_finite)));
            if !ok {
                return Err(InvalidRequest::BadPrices);
            }
        }
        if let Some(r) = &self.reply_to {
            let ok = !r.is_empty()
                && !r.contains(['*', '>', ' ', '\t', '\r', '\n'])
                && r.split('.').all(|t| !t.is_empty());
            if !ok {
                return Err(InvalidRequest::BadReplyTo);
            }
        }
        Ok(())
    }

    /// `context.prices` as numbers, oldest first (empty when absent).
    pub fn prices(&self) -> Vec<f64> {
        self.context
            .as_ref()
            .and_then(|c| c.get("prices"))
            .and_then(|p| p.as_array())
            .map(|a| a.iter().filter_map(|v| v.as_f64()).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_follow_the_rule() {
        assert!(is_valid_request_id("a1_B-2"));
        assert!(is_valid_request_id(&"x".repeat(128)));
        assert!(!is_valid_request_id(""));
        assert!(!is_valid_request_id(&"x".repeat(129)));
        assert!(!is_valid_request_id("has.dot"));
        assert!(!is_valid_request_id("spa ce"));
    }

    #[test]
    fn validation_catches_each_rule() {
        let ok = AnalysisRequest::signal("AAPL");
        assert_eq!(ok.validate(Some("signal")), Ok(()));
        let mut r = ok.clone();
        r.symbol = None;
        assert_eq!(r.validate(None), Err(InvalidRequest::MissingSymbol));
        assert!(matches!(
            ok.validate(Some("risk")),
            Err(InvalidRequest::KindMismatch { .. })
        ));
        let mut r = ok.clone();
        r.deadline_ms = Some(0);
        assert_eq!(r.validate(None), Err(InvalidRequest::BadDeadline));
        let mut r = ok.clone();
        r.max_wait_ms = Some(3_600_001);
        assert_eq!(r.validate(None), Err(InvalidRequest::BadMaxWait));
        let mut r = ok.clone();
        r.max_cost_usd = Some(-1.0);
        assert_eq!(r.validate(None), Err(InvalidRequest::BadCostCap));
        let mut r = ok.clone();
        r.context = Some(serde_json::from_str(r#"{"prices":[1,"x"]}"#).unwrap());
        assert_eq!(r.validate(None), Err(InvalidRequest::BadPrices));
        let mut r = ok.clone();
        r.reply_to = Some("a.*".into());
        assert_eq!(r.validate(None), Err(InvalidRequest::BadReplyTo));
    }

    #[test]
    fn allow_fallback_defaults_to_true() {
        let r: AnalysisRequest =
            serde_json::from_str(r#"{"request_id":"r1","kind":"risk"}"#).unwrap();
        assert!(r.allow_fallback);
        assert_eq!(r.validate(Some("risk")), Ok(()));
    }
}
