//! The process's Prometheus recorder and the gauges that mirror fleet state.
//!
//! Counters and histograms are emitted where things happen (`bus::worker`, `bus::events`);
//! the gauges here are set from the shared provider records and budgets so `/metrics`
//! answers "what state is each provider in" without reading the KV.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::contract::{BreakerState, HealthStatus, ProviderHealthRecord};

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
    metrics::gauge!("ai_failover_breaker_state", "provider" => p.clone())
        .set(breaker_value(r.breaker));
    metrics::gauge!("ai_failover_provider_status", "provider" => p.clone())
        .set(status_value(r.status));
    metrics::gauge!("ai_failover_provider_success_rate", "provider" => p.clone())
        .set(r.success_rate);
    metrics::gauge!("ai_failover_provider_latency_p95_seconds", "provider" => p)
        .set(r.latency_ms_p95 / 1_000.0);
}

/// Sets a provider's fleet-wide spend today.
pub fn spend_today(provider: &str, usd: f64) {
    metrics::gauge!("ai_failover_spend_today_usd", "provider" => provider.to_string()).set(usd);
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "ai_failover_requests_total",
        "Requests answered, by status, source and fleet mode"
    );
    describe_histogram!(
        "ai_failover_request_latency_seconds",
        Unit::Seconds,
        "Engine time per answered request, by status"
    );
    describe_histogram!(
        "ai_failover_handle_seconds",
        Unit::Seconds,
        "Time to handle one message end to end, by how it ended"
    );
    describe_gauge!("ai_failover_in_flight", "Requests being handled now");
    describe_counter!(
        "ai_failover_dead_letters_total",
        "Messages dead-lettered, by class"
    );
    describe_counter!(
        "ai_failover_attempts_total",
        "Provider calls, by provider and outcome"
    );
    describe_counter!(
        "ai_failover_probes_total",
        "Probes the fleet's prober sent to providers with an open breaker, by verdict"
    );
    describe_counter!(
        "ai_failover_failovers_total",
        "Moves to another provider or model, by the provider left"
    );
    describe_gauge!(
        "ai_failover_breaker_state",
        "Circuit breaker per provider: 0 closed, 1 half_open, 2 open"
    );
    describe_gauge!(
        "ai_failover_provider_status",
        "Health per provider: 0 healthy, 1 degraded, 2 unhealthy, 3 disabled"
    );
    describe_gauge!(
        "ai_failover_provider_success_rate",
        "Fleet-wide success rate per provider over its window (0-1)"
    );
    describe_gauge!(
        "ai_failover_provider_latency_p95_seconds",
        Unit::Seconds,
        "Fleet-shared p95 call latency per provider"
    );
    describe_gauge!(
        "ai_failover_spend_today_usd",
        "Fleet-wide spend today per provider, in USD"
    );
    describe_gauge!(
        "ai_failover_mode",
        "Fleet mode: 0 normal, 1 degraded, 2 conservative, 3 minimal, 4 suspended"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(a.render().contains("ai_failover_spend_today_usd"));
    }
}
