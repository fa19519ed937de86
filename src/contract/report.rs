//! `report` (control `<prefix>.control.report`, REST `/api/ai/failover/report`, CLI
//! `ai-failover report`): availability, outages, latency trend, cost and failovers per
//! provider and the fleet's mode timeline over a period, computed from `AI_STATS` and the
//! spend records.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Mode, ProviderId, Timestamp};

/// `report` request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportRequest {
    /// How far back: `<n>` followed by `m` (minutes), `h`, or `d`, e.g. `90m`, `24h`, `7d`
    /// (default `7d`, at most the history's retention).
    #[serde(default)]
    pub since: Option<String>,
}

/// `report` reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReportReply {
    pub since: Timestamp,
    pub until: Timestamp,
    /// The width of each trend point, in ms (at most 180 points over the period, never
    /// shorter than the history's interval).
    pub step_ms: u64,
    pub providers: Vec<ProviderReport>,
    pub fleet: FleetReport,
}

/// One provider over the period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProviderReport {
    pub provider: ProviderId,
    /// How much of the period the fleet was running and recording (its rollups' span).
    pub observed_ms: u64,
    /// Share of the observed time its breaker was closed, in percent (100 with nothing
    /// observed).
    pub availability_pct: f64,
    /// From its breaker opening to it closing (half-open in between is still out): the
    /// latest 500, so that a reply stays small whatever the period.
    pub outages: Vec<Outage>,
    /// All outages of the period (more than listed when a provider flapped a lot).
    #[serde(default)]
    pub outages_total: u64,
    /// Mean duration of the outages that ended (all of them, listed or not).
    pub mttr_ms: Option<u64>,
    pub calls: u64,
    pub successes: u64,
    /// Failed calls by error class.
    pub failures: BTreeMap<String, u64>,
    /// Over the whole period, of successful calls.
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub cost_usd: f64,
    /// Spend per UTC day, from the budget records (every call the fleet paid for).
    pub cost_per_day: Vec<DayCost>,
    pub failovers_away: u64,
    /// Failovers away from it per observed hour.
    pub failovers_per_hour: f64,
    /// One point per `step_ms`, oldest first, where anything was observed.
    pub trend: Vec<TrendPoint>,
}

/// An outage: its breaker was not closed from `start` to `end`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Outage {
    pub start: Timestamp,
    /// `None` while it lasts.
    pub end: Option<Timestamp>,
    /// Until `end`, or until the report for an outage that lasts.
    pub duration_ms: u64,
    /// The error class that opened the breaker, when known.
    pub cause: String,
}

/// A provider's figures over one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TrendPoint {
    pub at: Timestamp,
    pub calls: u64,
    /// Of its calls (none without one).
    pub success_rate: Option<f64>,
    pub p95_ms: Option<f64>,
    pub cost_usd: f64,
    pub failovers_away: u64,
    /// How long its breaker was not closed within the step.
    pub open_ms: u64,
}

/// Spend on one UTC day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DayCost {
    /// `yyyy-mm-dd`.
    pub day: String,
    pub usd: f64,
    pub calls: u64,
}

/// The fleet over the period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FleetReport {
    pub requests: u64,
    pub fallbacks: u64,
    pub dead_letters: u64,
    /// The mode timeline, oldest first; the last span lasts (`end` is `None`) while the
    /// fleet records.
    pub modes: Vec<ModeSpan>,
    /// All spans of the period (`modes` lists the latest 500).
    #[serde(default)]
    pub modes_total: u64,
}

/// The fleet was in `mode` from `start` to `end`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ModeSpan {
    pub mode: Mode,
    pub start: Timestamp,
    pub end: Option<Timestamp>,
    /// Why it entered the mode (empty for the first span when it began before the period).
    pub reason: String,
}
