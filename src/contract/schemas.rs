//! JSON Schemas (draft 2020-12) of every wire type, generated from the Rust types.
//! `ai-failover schemas` writes them to `schemas/`; a test fails when the files drift.

use schemars::{JsonSchema, schema_for};

use super::*;

fn pretty<T: JsonSchema>() -> String {
    // A schema is a tree of strings, numbers and maps with string keys: it always renders.
    let mut s = serde_json::to_string_pretty(&schema_for!(T)).unwrap_or_default();
    s.push('\n');
    s
}

/// `(file stem, schema JSON)` for every message, event, KV record and control message.
pub fn all() -> Vec<(&'static str, String)> {
    vec![
        ("analysis_request", pretty::<AnalysisRequest>()),
        ("analysis_result", pretty::<AnalysisResult>()),
        ("health_event", pretty::<HealthEvent>()),
        ("failover_event", pretty::<FailoverEvent>()),
        ("mode_event", pretty::<ModeEvent>()),
        ("dead_letter", pretty::<DeadLetter>()),
        ("provider_health_record", pretty::<ProviderHealthRecord>()),
        ("outcome_record", pretty::<OutcomeRecord>()),
        ("budget_record", pretty::<BudgetRecord>()),
        ("tenant_spend_record", pretty::<TenantSpendRecord>()),
        ("quota_window", pretty::<QuotaWindow>()),
        ("cached_decision", pretty::<CachedDecision>()),
        ("fleet_mode_record", pretty::<FleetModeRecord>()),
        ("lease_record", pretty::<LeaseRecord>()),
        ("monitoring_record", pretty::<MonitoringRecord>()),
        ("control_error", pretty::<ControlError>()),
        ("control_status_reply", pretty::<StatusReply>()),
        (
            "control_health_check_request",
            pretty::<HealthCheckRequest>(),
        ),
        ("control_health_check_reply", pretty::<HealthCheckReply>()),
        (
            "control_force_status_request",
            pretty::<ForceStatusRequest>(),
        ),
        ("control_force_status_reply", pretty::<ForceStatusReply>()),
        (
            "control_best_provider_request",
            pretty::<BestProviderRequest>(),
        ),
        ("control_best_provider_reply", pretty::<BestProviderReply>()),
        (
            "control_failover_history_request",
            pretty::<FailoverHistoryRequest>(),
        ),
        (
            "control_failover_history_reply",
            pretty::<FailoverHistoryReply>(),
        ),
        (
            "control_health_summary_reply",
            pretty::<HealthSummaryReply>(),
        ),
        ("control_monitoring_request", pretty::<MonitoringRequest>()),
        ("control_monitoring_reply", pretty::<MonitoringReply>()),
        (
            "control_test_failover_request",
            pretty::<TestFailoverRequest>(),
        ),
        ("control_test_failover_reply", pretty::<TestFailoverReply>()),
        ("control_mode_set_request", pretty::<ModeSetRequest>()),
        ("control_mode_set_reply", pretty::<ModeSetReply>()),
        (
            "control_quality_summary_request",
            pretty::<QualitySummaryRequest>(),
        ),
        (
            "control_quality_summary_reply",
            pretty::<QualitySummaryReply>(),
        ),
        ("control_report_request", pretty::<ReportRequest>()),
        ("control_report_reply", pretty::<ReportReply>()),
        ("control_keys_set_request", pretty::<KeysSetRequest>()),
        ("control_keys_set_reply", pretty::<KeysSetReply>()),
        ("control_keys_list_reply", pretty::<KeysListReply>()),
        ("control_keys_delete_request", pretty::<KeysDeleteRequest>()),
        ("control_keys_delete_reply", pretty::<KeysDeleteReply>()),
        ("secret_record", pretty::<SecretRecord>()),
        ("provider_rollup", pretty::<ProviderRollup>()),
        ("fleet_rollup", pretty::<FleetRollup>()),
        ("feedback", pretty::<Feedback>()),
        ("alert_record", pretty::<AlertRecord>()),
        ("signal_record", pretty::<SignalRecord>()),
        ("quality_record", pretty::<QualityRecord>()),
        ("quality_observation", pretty::<QualityObservation>()),
        ("audit_record", pretty::<AuditRecord>()),
    ]
}

/// Writes every schema to `dir/<stem>.json`; returns how many were written.
pub fn write_all(dir: &std::path::Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let schemas = all();
    for (stem, json) in &schemas {
        std::fs::write(dir.join(format!("{stem}.json")), json)?;
    }
    Ok(schemas.len())
}
