//! The process's Prometheus recorder and the gauges that mirror fleet state.
//!
//! Counters and histograms are emitted where things happen (`bus::worker`, `bus::events`);
//! the gauges here are set from the shared provider records and budgets so `/metrics`
//! answers "what state is each provider in" without reading the KV.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::contract::{BreakerState, HealthStatus, ProviderHealthRecord};

/// Every metric's name, in one place: the code counts with these, `describe` documents them,
/// and a test checks `docs/metrics.md` lists exactly these.
pub mod name {
    pub const ALERT_DELIVERIES_TOTAL: &str = "ai_failover_alert_deliveries_total";
    pub const ALERTS_TOTAL: &str = "ai_failover_alerts_total";
    pub const ATTEMPTS_TOTAL: &str = "ai_failover_attempts_total";
    pub const AUDIT_FAILURES: &str = "ai_failover_audit_failures_total";
    pub const AUDIT_RECORDS: &str = "ai_failover_audit_records_total";
    pub const BUDGET_LIMIT_USD: &str = "ai_failover_budget_limit_usd";
    pub const BREAKER_STATE: &str = "ai_failover_breaker_state";
    pub const CLOCK_CORRECTION_MS: &str = "ai_failover_clock_correction_ms";
    pub const BUS_RETRIES_TOTAL: &str = "ai_failover_bus_retries_total";
    pub const DEAD_LETTERS_TOTAL: &str = "ai_failover_dead_letters_total";
    pub const EVENTS_DROPPED_TOTAL: &str = "ai_failover_events_dropped_total";
    pub const FAILOVERS_TOTAL: &str = "ai_failover_failovers_total";
    pub const FEEDBACK_TOTAL: &str = "ai_failover_feedback_total";
    pub const FEEDBACK_UNMATCHED_TOTAL: &str = "ai_failover_feedback_unmatched_total";
    pub const FENCED_CALLS_TOTAL: &str = "ai_failover_fenced_calls_total";
    pub const FENCED_TOTAL: &str = "ai_failover_fenced_total";
    pub const HANDLE_SECONDS: &str = "ai_failover_handle_seconds";
    pub const IN_FLIGHT: &str = "ai_failover_in_flight";
    pub const KV_RACES_TOTAL: &str = "ai_failover_kv_races_total";
    pub const MAX_DELIVERIES_TOTAL: &str = "ai_failover_max_deliveries_total";
    pub const MODE: &str = "ai_failover_mode";
    pub const PROBES_TOTAL: &str = "ai_failover_probes_total";
    pub const PROVIDER_LATENCY_P95_SECONDS: &str = "ai_failover_provider_latency_p95_seconds";
    pub const QUALITY_FOLDED_TOTAL: &str = "ai_failover_quality_folded_total";
    pub const QUALITY_HIT_RATE: &str = "ai_failover_quality_hit_rate";
    pub const QUALITY_SAMPLES: &str = "ai_failover_quality_samples";
    pub const PROVIDER_STATUS: &str = "ai_failover_provider_status";
    pub const PROVIDER_SUCCESS_RATE: &str = "ai_failover_provider_success_rate";
    pub const REPLAYED_TOTAL: &str = "ai_failover_replayed_total";
    pub const REQUEST_LATENCY_SECONDS: &str = "ai_failover_request_latency_seconds";
    pub const REQUESTS_TOTAL: &str = "ai_failover_requests_total";
    pub const SHED_TOTAL: &str = "ai_failover_shed_total";
    pub const SPEND_TODAY_USD: &str = "ai_failover_spend_today_usd";
    pub const SPEND_USD_MICROS_TOTAL: &str = "ai_failover_spend_usd_micros_total";
    pub const TAKEOVERS_TOTAL: &str = "ai_failover_takeovers_total";
    pub const TENANT_REFUSED_TOTAL: &str = "ai_failover_tenant_refused_total";
    pub const TENANT_REQUESTS_TOTAL: &str = "ai_failover_tenant_requests_total";
    pub const TENANT_SPEND_TODAY_USD: &str = "ai_failover_tenant_spend_today_usd";

    /// Every name above.
    pub const ALL: &[&str] = &[
        ALERT_DELIVERIES_TOTAL,
        ALERTS_TOTAL,
        ATTEMPTS_TOTAL,
        AUDIT_FAILURES,
        AUDIT_RECORDS,
        BREAKER_STATE,
        BUDGET_LIMIT_USD,
        BUS_RETRIES_TOTAL,
        CLOCK_CORRECTION_MS,
        DEAD_LETTERS_TOTAL,
        EVENTS_DROPPED_TOTAL,
        FAILOVERS_TOTAL,
        FEEDBACK_TOTAL,
        FEEDBACK_UNMATCHED_TOTAL,
        FENCED_CALLS_TOTAL,
        FENCED_TOTAL,
        HANDLE_SECONDS,
        IN_FLIGHT,
        KV_RACES_TOTAL,
        MAX_DELIVERIES_TOTAL,
        MODE,
        PROBES_TOTAL,
        PROVIDER_LATENCY_P95_SECONDS,
        PROVIDER_STATUS,
        PROVIDER_SUCCESS_RATE,
        QUALITY_FOLDED_TOTAL,
        QUALITY_HIT_RATE,
        QUALITY_SAMPLES,
        REPLAYED_TOTAL,
        REQUEST_LATENCY_SECONDS,
        REQUESTS_TOTAL,
        SHED_TOTAL,
        SPEND_TODAY_USD,
        SPEND_USD_MICROS_TOTAL,
        TAKEOVERS_TOTAL,
        TENANT_REFUSED_TOTAL,
        TENANT_REQUESTS_TOTAL,
        TENANT_SPEND_TODAY_USD,
    ];
}

/// Histogram samples are folded into their summaries this often.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder once per process and returns its handle; later calls
/// return the same handle. If another recorder was installed first (an embedding program),
/// the handle still renders, just without what that recorder took.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            describe();
            let upkeep = handle.clone();
            // A plain thread: install() may run before (or without) a tokio runtime.
            let _ = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP_EVERY);
                        upkeep.run_upkeep();
                    }
                });
            handle
        })
        .clone()
}

/// `ai_failover_breaker_state` value of a breaker state.
pub fn breaker_value(state: BreakerState) -> f64 {
    match state {
        BreakerState::Closed => 0.0,
        BreakerState::HalfOpen => 1.0,
        BreakerState::Open => 2.0,
    }
}

/// `ai_failover_provider_status` value of a health status.
pub fn status_value(status: HealthStatus) -> f64 {
    match status {
        HealthStatus::Healthy => 0.0,
        HealthStatus::Degraded => 1.0,
        HealthStatus::Unhealthy => 2.0,
        HealthStatus::Disabled => 3.0,
    }
}

/// Mirrors a provider's shared record into its gauges.
pub fn provider_record(r: &ProviderHealthRecord) {
    let p = r.provider.clone();
    metrics::gauge!(name::BREAKER_STATE, "provider" => p.to_string()).set(breaker_value(r.breaker));
    metrics::gauge!(name::PROVIDER_STATUS, "provider" => p.to_string()).set(status_value(r.status));
    metrics::gauge!(name::PROVIDER_SUCCESS_RATE, "provider" => p.to_string()).set(r.success_rate);
    metrics::gauge!(name::PROVIDER_LATENCY_P95_SECONDS, "provider" => p.to_string())
        .set(r.latency_ms_p95 / 1_000.0);
}

/// Sets a tenant's fleet-wide spend today.
pub fn tenant_spend_today(tenant: &str, usd: f64) {
    metrics::gauge!(name::TENANT_SPEND_TODAY_USD, "tenant" => tenant_label(tenant)).set(usd);
}

/// The tenants configured on this worker (`[[tenants]]`), whose ids label metrics.
static TENANTS: std::sync::RwLock<Vec<String>> = std::sync::RwLock::new(Vec::new());

/// Sets the tenants whose ids may label metrics (kept current by the tenant reload).
pub fn set_tenants(ids: Vec<String>) {
    if let Ok(mut t) = TENANTS.write() {
        *t = ids;
    }
}

/// The `tenant` label of `tenant`: its id when configured (or `default`), else `other`, so
/// a label's values stay bounded by the configuration whatever the server maps.
pub fn tenant_label(tenant: &str) -> String {
    let known = tenant == crate::contract::DEFAULT_TENANT
        || TENANTS
            .read()
            .is_ok_and(|t| t.iter().any(|id| id == tenant));
    if known {
        tenant.to_string()
    } else {
        "other".to_string()
    }
}

/// Sets a provider's fleet-wide spend today.
pub fn spend_today(provider: &str, usd: f64) {
    metrics::gauge!(name::SPEND_TODAY_USD, "provider" => provider.to_string()).set(usd);
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        name::REQUESTS_TOTAL,
        "Requests answered, by status, source and fleet mode"
    );
    describe_histogram!(
        name::REQUEST_LATENCY_SECONDS,
        Unit::Seconds,
        "Engine time per answered request, by status"
    );
    describe_histogram!(
        name::HANDLE_SECONDS,
        Unit::Seconds,
        "Time to handle one message end to end, by how it ended"
    );
    describe_gauge!(name::IN_FLIGHT, "Requests being handled now");
    describe_gauge!(
        name::BUDGET_LIMIT_USD,
        "Each provider's configured daily budget (compare with ai_failover_spend_today_usd)"
    );
    describe_counter!(
        name::ALERTS_TOTAL,
        "Alerts this worker decided, by type and result (raised, suppressed as a repeat)"
    );
    describe_counter!(
        name::ALERT_DELIVERIES_TOTAL,
        "POSTs of alerts to webhooks, by webhook id and result (delivered, retried, failed)"
    );
    describe_counter!(
        name::FEEDBACK_TOTAL,
        "Feedback reports handled, by type (execution, outcome, invalid) and result (joined, duplicate, rejected)"
    );
    describe_counter!(
        name::FEEDBACK_UNMATCHED_TOTAL,
        "Feedback reports about a request the fleet has no signal for (dead-lettered unknown_request)"
    );
    describe_counter!(
        name::QUALITY_FOLDED_TOTAL,
        "Outcomes this worker folded into the quality records"
    );
    describe_gauge!(
        name::QUALITY_HIT_RATE,
        "Decayed hit rate of each source's advice, by provider, model and kind (provider _cache / _fallback for those)"
    );
    describe_gauge!(
        name::QUALITY_SAMPLES,
        "Decayed number of outcomes behind ai_failover_quality_hit_rate"
    );
    describe_counter!(name::DEAD_LETTERS_TOTAL, "Messages dead-lettered, by class");
    describe_counter!(
        name::ATTEMPTS_TOTAL,
        "Provider calls, by provider and outcome"
    );
    describe_counter!(
        name::KV_RACES_TOTAL,
        "Compare-and-set writes to a shared record that lost a race and were tried again"
    );
    describe_counter!(
        name::PROBES_TOTAL,
        "Probes the fleet's prober sent to providers with an open breaker, by verdict"
    );
    describe_counter!(
        name::FAILOVERS_TOTAL,
        "Moves to another provider or model, by the provider left"
    );
    describe_gauge!(
        name::BREAKER_STATE,
        "Circuit breaker per provider: 0 closed, 1 half_open, 2 open"
    );
    describe_gauge!(
        name::PROVIDER_STATUS,
        "Health per provider: 0 healthy, 1 degraded, 2 unhealthy, 3 disabled"
    );
    describe_gauge!(
        name::PROVIDER_SUCCESS_RATE,
        "Fleet-wide success rate per provider over its window (0-1)"
    );
    describe_gauge!(
        name::PROVIDER_LATENCY_P95_SECONDS,
        Unit::Seconds,
        "Fleet-shared p95 call latency per provider"
    );
    describe_gauge!(
        name::SPEND_TODAY_USD,
        "Fleet-wide spend today per provider, in USD"
    );
    describe_counter!(
        name::TENANT_REQUESTS_TOTAL,
        "Requests answered per tenant (configured tenants, default, other), by status"
    );
    describe_counter!(
        name::TENANT_REFUSED_TOTAL,
        "Tenant requests refused before any call, by class (quota_exceeded, budget_exceeded)"
    );
    describe_gauge!(
        name::TENANT_SPEND_TODAY_USD,
        "Fleet-wide spend today per tenant with a daily budget, in USD"
    );
    describe_gauge!(
        name::MODE,
        "Fleet mode: 0 normal, 1 degraded, 2 conservative, 3 minimal, 4 suspended"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_docs_list_every_metric_and_no_other() {
        let docs = std::fs::read_to_string("docs/metrics.md").unwrap();
        let documented: std::collections::BTreeSet<&str> = docs
            .split('`')
            .filter(|w| w.len() > "ai_failover_".len())
            .filter(|w| w.starts_with("ai_failover_") && !w.contains(' '))
            .collect();
        let known: std::collections::BTreeSet<&str> = name::ALL.iter().copied().collect();
        assert_eq!(documented, known);
    }

    #[test]
    fn install_is_idempotent_and_renders_gauges() {
        let a = install();
        let b = install();
        let mut r = ProviderHealthRecord::new("openai", "w1");
        r.breaker = BreakerState::Open;
        r.status = HealthStatus::Unhealthy;
        provider_record(&r);
        spend_today("openai", 1.25);
        let text = b.render();
        assert!(
            text.contains(r#"ai_failover_breaker_state{provider="openai"} 2"#),
            "{text}"
        );
        assert!(text.contains(r#"ai_failover_provider_status{provider="openai"} 2"#));
        assert!(text.contains(r#"ai_failover_spend_today_usd{provider="openai"} 1.25"#));
        assert!(a.render().contains(name::SPEND_TODAY_USD));
    }
}
