//! Short runs of the fault-shape benchmark (`ai-failover bench scenarios`) with loose bounds,
//! so that a regression of the fleet's end-to-end fault behaviour fails CI. Each run starts a
//! real nats-server, the simulator and two worker processes, and sends 20 requests/s for 16 s
//! with the fault from 4 s to 12 s. The full benchmark, with the real targets, is not a test.
// Tests may panic: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use ai_failover::cli::bench::scenarios::{Options, Scenario, ScenarioReport, run_one};

async fn run(scenario: Scenario) -> ScenarioReport {
    let opts = Options {
        rate: 20.0,
        duration: Duration::from_secs(16),
        workers: 2,
        exe: env!("CARGO_BIN_EXE_ai-failover").into(),
        seed: 11,
    };
    let report = run_one(scenario, &opts)
        .await
        .unwrap_or_else(|e| panic!("{} did not run: {e:#}", scenario.name()));
    assert!(report.fault_errors.is_empty(), "{:?}", report.fault_errors);
    for (phase, p) in [
        ("before", &report.before),
        ("during", &report.during),
        ("after", &report.after),
    ] {
        assert!(p.sent > 0.0, "{phase}: nothing sent");
        assert_eq!(
            p.answered_rate,
            1.0,
            "{}: every request is answered ({phase}): {report:#?}",
            scenario.name()
        );
    }
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_provider_costs_a_fraction_of_a_second_and_few_calls() {
    let r = run(Scenario::Hang).await;
    let d = &r.during;
    assert!(d.p99_ms < 2_000.0, "p99 during the hang: {} ms", d.p99_ms);
    assert!(
        d.max_ms < 5_000.0,
        "a request waited out the 5 s timeout: {} ms",
        d.max_ms
    );
    let reached = r.fault.calls_during + r.fault.probes_during;
    assert!(reached <= 20.0, "{reached} calls reached the hung provider");
    assert!(r.after.p99_ms < 1_000.0, "after: {} ms", r.after.p99_ms);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_wastes_few_calls_and_recovery_is_seen_within_seconds() {
    let r = run(Scenario::Outage503).await;
    assert_eq!(r.during.success_rate, 1.0, "{:#?}", r.during);
    assert!(
        r.fault.wasted_calls <= 8.0,
        "{} calls wasted",
        r.fault.wasted_calls
    );
    let back = r.fault.back_after_s.expect("the provider is used again");
    assert!(back <= 8.0, "back {back} s after it healed");
    let probes = r
        .fault
        .probes_sent
        .expect("the workers report their probes");
    assert!(
        (1.0..=10.0).contains(&probes),
        "{probes} probes over an 8 s outage"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_provider_down_the_fallback_answers_at_once() {
    let r = run(Scenario::AllDown).await;
    let known = r
        .fault
        .known_down_fallback_p99_ms
        .expect("the fleet announced minimal mode and answered from the fallback");
    assert!(known < 500.0, "fallback p99 once all were down: {known} ms");
    let settled = r
        .fault
        .settled_after_p99_ms
        .expect("requests after recovery");
    assert!(settled < 1_000.0, "p99 after recovery: {settled} ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_cannot_start_is_named_and_the_run_fails() {
    let opts = Options {
        rate: 20.0,
        duration: Duration::from_secs(16),
        workers: 1,
        // Exits at once with status 1, whatever it is asked.
        exe: "/bin/false".into(),
        seed: 1,
    };
    let started = std::time::Instant::now();
    let err = run_one(Scenario::Hang, &opts).await.unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("worker 1 exited"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "noticed at once, not at a timeout"
    );
}

/// Three times what the providers can serve, for 15 s, both shapes (a concurrency limit
/// with 429s; slow answers): nothing lost, no call after its deadline, no breaker opened by
/// the load, and goodput near capacity. The bounds are looser than the benchmark's 80 %
/// (`ai-failover bench overload`): the run is short, its first seconds are warm-up, and
/// a debug build runs the workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_keeps_goodput_near_capacity_and_loses_nothing() {
    use ai_failover::cli::bench::scenarios::overload::{OverloadArgs, measure};
    let args = OverloadArgs {
        shape: "both".into(),
        seconds: 15,
        factor: 3.0,
        json: std::env::temp_dir().join("ai-failover-overload-test.json"),
        seed: 5,
    };
    let reports = measure(&args, env!("CARGO_BIN_EXE_ai-failover").as_ref())
        .await
        .unwrap_or_else(|e| panic!("overload did not run: {e:#}"));
    for r in &reports {
        assert_eq!(r.lost, 0, "{r:#?}");
        assert_eq!(r.calls_after_deadline, 0, "{r:#?}");
        assert!(r.goodput_share >= 0.6, "goodput: {r:#?}");
        assert!(r.max_rss_mib < 128.0, "{r:#?}");
        assert!(r.drained_after_s < 5.0, "the backlog drains: {r:#?}");
    }
    let limit = reports.iter().find(|r| r.shape == "limit").unwrap();
    assert_eq!(
        limit.breaker_opens, 0,
        "429s from a full provider open nothing"
    );
}
