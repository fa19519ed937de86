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

/// How a call was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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
}

/// One line of the call log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    pub provider: String,
    /// Empty for probes that name no model.
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub probe: bool,
    pub outcome: CallOutcome,
    pub http_status: Option<u16>,
    /// Time until the answer began (injected latency included).
    pub latency_ms: u64,
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
