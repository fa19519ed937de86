//! Call accounting: how often each provider was called, per request id, and a log of every
//! call. Tests use the per-request counts to prove a provider was not paid twice.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::FaultClass;

/// One provider's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderCalls {
    /// Completion calls (generate/messages/chat), whatever their outcome.
    pub total: u64,
    /// Probe calls (model listings, model lookups); not billed by real vendors.
    pub probes: u64,
    /// Completion calls per `X-Client-Request-Id` / `x-request-id`.
    pub by_request_id: BTreeMap<String, u64>,
}

/// How a call was answered. Serialised as one flat snake_case string (`ok`,
/// `server_error`, `hung`, …) so the log is easy to filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// A well-formed answer.
    Ok,
    /// An injected or genuine error of this class.
    Error(FaultClass),
    /// A 200 with a broken body.
    Malformed,
    /// The key was missing or wrong.
    Unauthorized,
    /// Inside an outage window.
    Outage,
    /// Never answered.
    Hung,
    /// Connection dropped without an answer.
    Refused,
    /// The client hung up (its timeout, a hedge that won elsewhere) before the answer.
    Abandoned,
}

impl CallOutcome {
    const PLAIN: [CallOutcome; 7] = [
        CallOutcome::Ok,
        CallOutcome::Malformed,
        CallOutcome::Unauthorized,
        CallOutcome::Outage,
        CallOutcome::Hung,
        CallOutcome::Refused,
        CallOutcome::Abandoned,
    ];

    /// The wire name: an error's class name, or the outcome's own.
    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Ok => "ok",
            CallOutcome::Error(class) => class.as_str(),
            CallOutcome::Malformed => "malformed",
            CallOutcome::Unauthorized => "unauthorized",
            CallOutcome::Outage => "outage",
            CallOutcome::Hung => "hung",
            CallOutcome::Refused => "refused",
            CallOutcome::Abandoned => "abandoned",
        }
    }
}

impl Serialize for CallOutcome {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for CallOutcome {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Self::PLAIN
            .into_iter()
            .chain(FaultClass::ALL.map(CallOutcome::Error))
            .find(|o| o.as_str() == name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown call outcome {name:?}")))
    }
}

/// One line of the call log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// The simulated provider's name.
    pub provider: String,
    /// Empty for probes that name no model.
    pub model: String,
    /// From `X-Client-Request-Id` or `x-request-id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// A models listing or lookup rather than a generation.
    pub probe: bool,
    /// How it was answered.
    pub outcome: CallOutcome,
    /// None when no HTTP answer was sent (hung, refused).
    pub http_status: Option<u16>,
    /// Time until the answer began (injected latency included).
    pub latency_ms: u64,
    /// When the answer was decided.
    pub at: chrono::DateTime<chrono::Utc>,
}

/// The in-memory ledger shared by every handler.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    pub(crate) calls: BTreeMap<String, ProviderCalls>,
    pub(crate) log: Vec<CallRecord>,
}

/// Upper bound on the log so a long-running simulator does not grow without limit.
const LOG_CAP: usize = 100_000;

impl Ledger {
    /// Counts a call as it arrives, before any fault, so hung calls count too.
    pub(crate) fn count(&mut self, provider: &str, probe: bool, request_id: Option<&str>) {
        let c = self.calls.entry(provider.to_owned()).or_default();
        if probe {
            c.probes += 1;
            return;
        }
        c.total += 1;
        if let Some(id) = request_id {
            *c.by_request_id.entry(id.to_owned()).or_default() += 1;
        }
    }

    /// Appends to the log, dropping the oldest half when full.
    pub(crate) fn record(&mut self, r: CallRecord) {
        if self.log.len() >= LOG_CAP {
            self.log.drain(..LOG_CAP / 2);
        }
        self.log.push(r);
    }

    /// Zeroes the counters and empties the log, keeping provider entries.
    pub(crate) fn reset(&mut self) {
        for c in self.calls.values_mut() {
            *c = ProviderCalls::default();
        }
        self.log.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_flat_strings() {
        let o = CallOutcome::Error(FaultClass::RateLimited);
        assert_eq!(serde_json::to_value(o).unwrap(), "rate_limited");
        for o in CallOutcome::PLAIN
            .into_iter()
            .chain(FaultClass::ALL.map(CallOutcome::Error))
        {
            let back: CallOutcome =
                serde_json::from_value(serde_json::to_value(o).unwrap()).unwrap();
            assert_eq!(back, o);
        }
    }
}
