//! The learning loop's wire shapes: what trading components report back about a signal
//! (`<prefix>.feedback.<kind>`), the signals store (`ai_signals`, one record per answered
//! request) and the quality records (`ai_quality`, one per provider/model/kind, plus the
//! cache's and the fallback's).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Action, Kind, ProviderId, Source, Timestamp, is_valid_request_id};

/// Longest horizon an outcome may report: ten years.
pub const MAX_HORIZON_S: u64 = 10 * 366 * 24 * 3600;
/// Longest `reason` kept with an execution report.
pub const MAX_REASON_CHARS: usize = 500;

wire_enum! {
    /// Which report a feedback message carries (also the last part of its `Nats-Msg-Id`).
    pub enum FeedbackType {
        /// Whether and how the trader acted on the signal.
        Execution,
        /// How the instrument moved over a horizon after the signal.
        Outcome,
    }
}

wire_enum! {
    /// The side of an executed trade.
    pub enum Side {
        Buy,
        Sell,
    }
}

/// `execution`: whether the trader followed the signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Execution {
    pub executed: bool,
    /// Required when `executed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub side: Option<Side>,
    /// Required when `executed`; > 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<f64>,
    /// Required when `executed`; > 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
    /// Why the signal was not followed (required when not `executed`).
    #[serde(default)]
    pub reason: Option<String>,
}

/// `outcome`: the instrument's move over `horizon_s` seconds after the signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OutcomeReport {
    #[schemars(range(min = 1, max = 316_224_000))]
    pub horizon_s: u64,
    /// The price change over the horizon as a fraction: +0.012 is +1.2 %.
    #[serde(rename = "return")]
    #[schemars(range(min = -1.0))]
    pub return_: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pnl_usd: Option<f64>,
}

/// The report a feedback message carries, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Report {
    Execution { execution: Execution },
    Outcome { outcome: OutcomeReport },
}

/// `<prefix>.feedback.<kind>`: what became of a signal. Published with
/// `Nats-Msg-Id: <request_id>:<type>[:<horizon_s>]`; a re-publish is idempotent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Feedback {
    /// The request the signal answered.
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]{1,128}$"))]
    pub request_id: String,
    /// When the trader observed it.
    pub at: Timestamp,
    #[serde(flatten)]
    pub report: Report,
}

/// Why feedback that parsed is still not acceptable; names the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidFeedback {
    #[error("request_id must match [A-Za-z0-9_-]{{1,128}}")]
    BadRequestId,
    #[error("execution.{0} is required when execution.executed is true")]
    MissingExecutionField(&'static str),
    #[error("execution.{0} must be a finite number > 0")]
    BadExecutionNumber(&'static str),
    #[error(
        "execution.reason is required (1..={MAX_REASON_CHARS} characters) when execution.executed is false"
    )]
    MissingReason,
    #[error("execution.reason must be at most {MAX_REASON_CHARS} characters")]
    LongReason,
    #[error("outcome.horizon_s must be between 1 and {MAX_HORIZON_S}")]
    BadHorizon,
    #[error("outcome.return must be a finite number >= -1 (a fraction: 0.012 is +1.2 %)")]
    BadReturn,
    #[error("outcome.pnl_usd must be a finite number")]
    BadPnl,
}

impl Feedback {
    /// An outcome report made now: `ret` over `horizon_s` after the signal of `request_id`.
    pub fn outcome(request_id: &str, horizon_s: u64, ret: f64) -> Self {
        Feedback {
            request_id: request_id.to_string(),
            at: super::now(),
            report: Report::Outcome {
                outcome: OutcomeReport {
                    horizon_s,
                    return_: ret,
                    pnl_usd: None,
                },
            },
        }
    }

    /// The report's type.
    pub fn feedback_type(&self) -> FeedbackType {
        match self.report {
            Report::Execution { .. } => FeedbackType::Execution,
            Report::Outcome { .. } => FeedbackType::Outcome,
        }
    }

    /// Its identity: `<request_id>:<type>[:<horizon_s>]`, the `Nats-Msg-Id` publishers set.
    pub fn msg_id(&self) -> String {
        match &self.report {
            Report::Execution { .. } => format!("{}:execution", self.request_id),
            Report::Outcome { outcome } => {
                format!("{}:outcome:{}", self.request_id, outcome.horizon_s)
            }
        }
    }

    /// Checks every rule the schema cannot express.
    pub fn validate(&self) -> Result<(), InvalidFeedback> {
        if !is_valid_request_id(&self.request_id) {
            return Err(InvalidFeedback::BadRequestId);
        }
        match &self.report {
            Report::Execution { execution: e } => e.validate(),
            Report::Outcome { outcome: o } => o.validate(),
        }
    }
}

impl Execution {
    fn validate(&self) -> Result<(), InvalidFeedback> {
        if let Some(reason) = &self.reason
            && reason.chars().count() > MAX_REASON_CHARS
        {
            return Err(InvalidFeedback::LongReason);
        }
        if !self.executed {
            return match &self.reason {
                Some(r) if !r.trim().is_empty() => Ok(()),
                _ => Err(InvalidFeedback::MissingReason),
            };
        }
        if self.side.is_none() {
            return Err(InvalidFeedback::MissingExecutionField("side"));
        }
        for (name, value) in [("quantity", self.quantity), ("price", self.price)] {
            match value {
                None => return Err(InvalidFeedback::MissingExecutionField(name)),
                Some(v) if !(v.is_finite() && v > 0.0) => {
                    return Err(InvalidFeedback::BadExecutionNumber(name));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

impl OutcomeReport {
    fn validate(&self) -> Result<(), InvalidFeedback> {
        if !(1..=MAX_HORIZON_S).contains(&self.horizon_s) {
            return Err(InvalidFeedback::BadHorizon);
        }
        if !(self.return_.is_finite() && self.return_ >= -1.0) {
            return Err(InvalidFeedback::BadReturn);
        }
        if self.pnl_usd.is_some_and(|p| !p.is_finite()) {
            return Err(InvalidFeedback::BadPnl);
        }
        Ok(())
    }
}

/// An execution report as joined to its signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ExecutionEntry {
    #[serde(flatten)]
    pub execution: Execution,
    pub at: Timestamp,
}

/// One outcome joined to its signal (one per horizon).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OutcomeEntry {
    pub horizon_s: u64,
    #[serde(rename = "return")]
    pub return_: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pnl_usd: Option<f64>,
    pub at: Timestamp,
    /// Whether the advice was right over this horizon (absent when the answer had no action
    /// to judge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hit: Option<bool>,
}

/// `ai_signals`, key = request_id: an answered request's advice, with what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SignalRecord {
    pub request_id: String,
    pub kind: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    /// The provider that answered (for `cache`, the provider of the cached answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub source: Source,
    /// The advice (absent for analyses without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub confidence: Option<f64>,
    pub created_at: Timestamp,
    /// The last execution report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<ExecutionEntry>,
    /// One per horizon, in arrival order.
    #[serde(default)]
    pub outcomes: Vec<OutcomeEntry>,
    /// The request's tenant; absent for the default tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

impl SignalRecord {
    /// Its key in `ai_signals` (see [`scoped_request_key`](super::scoped_request_key)).
    pub fn record_key(&self) -> String {
        super::scoped_request_key(self.tenant.as_deref(), &self.request_id)
    }

    /// The `ai_quality` key this signal's outcomes count under: `<provider>.<model>.<kind>`
    /// for a provider's answer, `_cache.<kind>` / `_fallback.<kind>` for the others; `None`
    /// when there is nothing to judge (no action, or no answer).
    pub fn quality_key(&self) -> Option<String> {
        self.action?;
        match self.source {
            Source::Provider => Some(quality_key(
                self.provider.as_deref()?,
                self.model.as_deref()?,
                self.kind,
            )),
            Source::Cache => Some(format!("_cache.{}", self.kind.as_str())),
            Source::Fallback => Some(format!("_fallback.{}", self.kind.as_str())),
            Source::None => None,
        }
    }
}

/// `<provider>.<model>.<kind>`, the model made safe for a KV key and a subject token.
pub fn quality_key(provider: &str, model: &str, kind: Kind) -> String {
    format!("{provider}.{}.{}", sanitise_model(model), kind.as_str())
}

/// A model name as one KV-key / subject token: every character outside `[A-Za-z0-9_-]`
/// becomes `_` (`gpt-4.1` → `gpt-4_1`, `llama3.1:8b` → `llama3_1_8b`).
pub fn sanitise_model(model: &str) -> String {
    let s: String = model
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() { "_".into() } else { s }
}

/// `ai_quality`: how good one source's advice has been, with exponential decay
/// (`quality.half_life_s`). `n` and `hits` are decayed counts as of `updated_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct QualityRecord {
    /// Absent for `cache` and `fallback`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub kind: Kind,
    pub source: Source,
    #[schemars(range(min = 0.0))]
    pub n: f64,
    #[schemars(range(min = 0.0))]
    pub hits: f64,
    #[schemars(range(min = 0.0, max = 1.0))]
    pub hit_rate: f64,
    /// +return for buy, −return for sell, 0 for hold; decayed mean.
    pub mean_signed_return: f64,
    /// Mean squared error of `confidence` against the hit (0 = perfectly calibrated).
    #[schemars(range(min = 0.0, max = 1.0))]
    pub brier: f64,
    /// Outcomes counted, never decayed.
    pub labelled: u64,
    /// Decayed sums behind the means.
    pub signed_return_sum: f64,
    pub brier_sum: f64,
    /// The last entry of the quality log folded in (fleet-internal bookkeeping that makes
    /// each outcome count once).
    pub applied_seq: u64,
    pub updated_at: Timestamp,
}

/// One counted outcome, as logged for the quality records (fleet-internal, published with
/// `Nats-Msg-Id: <request_id>:<horizon_s>` so that it is logged once).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct QualityObservation {
    pub request_id: String,
    pub horizon_s: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub kind: Kind,
    pub source: Source,
    pub hit: bool,
    pub signed_return: f64,
    pub confidence: f64,
    /// The report as the trader sent it, so that whoever joins it to the signal records
    /// exactly what was counted.
    #[serde(rename = "return")]
    pub return_: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pnl_usd: Option<f64>,
    pub reported_at: Timestamp,
    /// When it was logged: the records decay by it.
    pub at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: serde_json::Value) -> Feedback {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn the_issues_examples_parse_and_validate() {
        let e = parse(serde_json::json!({"request_id": "r1", "type": "execution",
            "at": "2026-11-27T14:00:00Z",
            "execution": {"executed": true, "side": "buy", "quantity": 10, "price": 189.3, "reason": null}}));
        assert_eq!(e.validate(), Ok(()));
        assert_eq!(e.msg_id(), "r1:execution");
        let o = parse(serde_json::json!({"request_id": "r1", "type": "outcome",
            "at": "2026-11-27T15:00:00Z",
            "outcome": {"horizon_s": 3600, "return": 0.012, "pnl_usd": 23.4}}));
        assert_eq!(o.validate(), Ok(()));
        assert_eq!(o.msg_id(), "r1:outcome:3600");
        assert_eq!(o.feedback_type(), FeedbackType::Outcome);
    }

    #[test]
    fn broken_reports_name_their_field() {
        let mut not_followed = parse(serde_json::json!({"request_id": "r1", "type": "execution",
            "at": "2026-11-27T14:00:00Z", "execution": {"executed": false}}));
        assert_eq!(not_followed.validate(), Err(InvalidFeedback::MissingReason));
        if let Report::Execution { execution } = &mut not_followed.report {
            execution.reason = Some("spread too wide".into());
        }
        assert_eq!(not_followed.validate(), Ok(()));
        let no_price = parse(serde_json::json!({"request_id": "r1", "type": "execution",
            "at": "2026-11-27T14:00:00Z",
            "execution": {"executed": true, "side": "sell", "quantity": 1}}));
        assert!(
            no_price
                .validate()
                .unwrap_err()
                .to_string()
                .contains("execution.price")
        );
        let wild = parse(serde_json::json!({"request_id": "r1", "type": "outcome",
            "at": "2026-11-27T14:00:00Z", "outcome": {"horizon_s": 60, "return": -1.5}}));
        assert!(
            wild.validate()
                .unwrap_err()
                .to_string()
                .contains("outcome.return")
        );
        let missing = serde_json::from_value::<Feedback>(serde_json::json!({"request_id": "r1",
            "type": "outcome", "at": "2026-11-27T14:00:00Z"}));
        assert!(missing.unwrap_err().to_string().contains("outcome"));
    }

    #[test]
    fn quality_keys_are_single_tokens_per_part() {
        assert_eq!(
            quality_key("ollama", "llama3.1:8b", Kind::Signal),
            "ollama.llama3_1_8b.signal"
        );
        let mut s = SignalRecord {
            request_id: "r".into(),
            kind: Kind::Signal,
            symbol: None,
            provider: Some(ProviderId::from("openai")),
            model: Some("gpt-4.1".into()),
            source: Source::Provider,
            action: Some(Action::Buy),
            confidence: Some(0.7),
            created_at: crate::contract::now(),
            execution: None,
            outcomes: vec![],
            tenant: None,
        };
        assert_eq!(s.quality_key().as_deref(), Some("openai.gpt-4_1.signal"));
        s.source = Source::Fallback;
        assert_eq!(s.quality_key().as_deref(), Some("_fallback.signal"));
        s.action = None;
        assert_eq!(s.quality_key(), None);
    }
}
