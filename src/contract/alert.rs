//! Alerts: what the fleet tells people (`<prefix>.alerts.<type>`, stream `AI_ALERTS`), each
//! decided once for the fleet and delivered to the configured webhooks.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ProviderId, Timestamp};

wire_enum! {
    /// What an alert is about; also the last token of its subject.
    pub enum AlertType {
        /// A provider stopped answering (its breaker opened, or it turned unhealthy).
        ProviderDown,
        /// A provider that was down answers again (healthy, breaker closed).
        ProviderRecovered,
        /// A provider rejected its API key: off until an operator clears it.
        ProviderQuarantined,
        /// The fleet's trading mode changed.
        ModeChanged,
        /// A provider's spend today crossed a fraction of its daily budget
        /// (`details.threshold`, `details.spend_usd`, `details.limit_usd`).
        BudgetThreshold,
        /// Dead letters are being written faster than `alerts.dead_letters_per_minute`.
        DeadLetters,
        /// Requests are waiting and no worker has finished one for `alerts.stall_after_ms`
        /// (`to`: `stalled`; `flowing` again when they move).
        FleetStalled,
        /// A provider's p95 latency over an interval is above `alerts.slow_p95_ms` (`to`:
        /// `slow`; `normal` again when it is back under).
        SlowProvider,
        /// Sent by `ai-failover alerts test` to check a webhook; never raised by the fleet.
        Test,
    }
}

wire_enum! {
    /// How urgent an alert is.
    #[derive(PartialOrd, Ord)]
    pub enum Severity {
        Info,
        Warning,
        Critical,
    }
}

/// `<prefix>.alerts.<type>`: one alert, as stored and as delivered (the `json` format's body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AlertRecord {
    /// Unique; webhooks get it as `Idempotency-Key`, so a redelivery can be recognised.
    pub alert_id: String,
    #[serde(rename = "type")]
    pub alert_type: AlertType,
    pub severity: Severity,
    pub at: Timestamp,
    /// The provider it concerns, if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderId>,
    /// The state before (a health status, a mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The state now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// One human sentence.
    pub message: String,
    /// Type-specific facts.
    #[serde(default)]
    pub details: serde_json::Map<String, serde_json::Value>,
    /// The worker that decided it.
    pub worker_id: String,
    /// The tenant it concerns, if one (a tenant's budget threshold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}
