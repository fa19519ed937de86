use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ErrorClass, ErrorInfo, Kind, ProviderId, Timestamp};

wire_enum! {
    /// How a request ended. Every status is published and stored.
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
}

wire_enum! {
    /// Where the answer came from.
    pub enum Source {
        Provider,
        Cache,
        Fallback,
        None,
    }
}

wire_enum! {
    /// The fleet's trading mode, derived from shared provider health.
    #[derive(PartialOrd, Ord)]
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

/// What one provider call ended with: `ok`, or its error's class. On the wire one flat
/// string: `ok` or the class's name (`timeout`, `rate_limited`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttemptOutcome {
    Ok,
    Failed(ErrorClass),
}

impl AttemptOutcome {
    /// The wire name (`ok`, `rate_limited`, …), also used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Ok => "ok",
            AttemptOutcome::Failed(class) => class.as_str(),
        }
    }

    /// The outcome called `name` on the wire.
    pub fn from_name(name: &str) -> Option<Self> {
        use strum::VariantArray;
        if name == "ok" {
            return Some(AttemptOutcome::Ok);
        }
        ErrorClass::VARIANTS
            .iter()
            .find(|c| c.as_str() == name)
            .map(|c| AttemptOutcome::Failed(*c))
    }
}

impl From<ErrorClass> for AttemptOutcome {
    fn from(c: ErrorClass) -> Self {
        AttemptOutcome::Failed(c)
    }
}

impl Serialize for AttemptOutcome {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for AttemptOutcome {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        AttemptOutcome::from_name(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown attempt outcome `{name}`")))
    }
}

impl JsonSchema for AttemptOutcome {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "AttemptOutcome".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        use strum::VariantArray;
        let names: Vec<&str> = std::iter::once("ok")
            .chain(ErrorClass::VARIANTS.iter().map(|c| c.as_str()))
            .collect();
        schemars::json_schema!({
            "description": "What one provider call ended with.",
            "type": "string",
            "enum": names,
        })
    }
}

/// One provider call made for a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Attempt {
    pub provider: ProviderId,
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
    pub provider: Option<ProviderId>,
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
    /// The tenant the request came from (its subject's `ai.tenant.<tenant>.`); absent for the
    /// default tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

impl AnalysisResult {
    /// Its key in `ai_outcomes` and its `Nats-Msg-Id` (see
    /// [`scoped_request_key`](super::scoped_request_key)).
    pub fn record_key(&self) -> String {
        super::scoped_request_key(self.tenant.as_deref(), &self.request_id)
    }
}

#[cfg(test)]
mod tests {
    use strum::VariantArray;

    use super::*;
    use crate::contract::{BreakerState, DeadLetterClass, HealthStatus, Kind};

    /// `as_str` (metric labels, logs) and serde (the wire) agree for `T`'s every variant.
    fn same_names<T: Serialize + Copy>(all: &[T], as_str: impl Fn(T) -> &'static str) {
        for v in all {
            assert_eq!(
                serde_json::to_value(v).unwrap(),
                serde_json::Value::from(as_str(*v))
            );
        }
    }

    #[test]
    fn every_wire_enum_has_the_same_name_on_the_wire_and_in_labels() {
        same_names(ErrorClass::VARIANTS, ErrorClass::as_str);
        same_names(Status::VARIANTS, Status::as_str);
        same_names(Source::VARIANTS, Source::as_str);
        same_names(Mode::VARIANTS, Mode::as_str);
        same_names(HealthStatus::VARIANTS, HealthStatus::as_str);
        same_names(BreakerState::VARIANTS, BreakerState::as_str);
        same_names(DeadLetterClass::VARIANTS, DeadLetterClass::as_str);
        same_names(Kind::VARIANTS, Kind::as_str);
        let outcomes: Vec<AttemptOutcome> = std::iter::once(AttemptOutcome::Ok)
            .chain(
                ErrorClass::VARIANTS
                    .iter()
                    .map(|c| AttemptOutcome::Failed(*c)),
            )
            .collect();
        same_names(&outcomes, AttemptOutcome::as_str);
        for o in outcomes {
            let back: AttemptOutcome =
                serde_json::from_value(serde_json::to_value(o).unwrap()).unwrap();
            assert_eq!(back, o);
        }
        assert!(serde_json::from_str::<AttemptOutcome>(r#""nope""#).is_err());
    }
}
