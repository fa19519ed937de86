//! Failover timing: engine time from a provider error to the next provider's call, breaker
//! propagation between two workers, and time to recover after a provider heals.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bus::runtime;
use crate::contract::{BreakerState, Status};
use crate::engine::Job;
use crate::providers::Provider;

use super::fakes;
use crate::contract::ErrorClass;
use crate::providers::fake::Fake;

fn job() -> Job {
    Job {
        request: crate::contract::AnalysisRequest::signal("AAPL"),
        published_at: chrono::Utc::now(),
        tenant: Default::default(),
    }
}

/// µs from provider A's error to provider B's call over `n` requests (engine only, on one
/// thread), as (wall clock, thread CPU time).
pub async fn engine_failover_us(n: usize) -> (Vec<f64>, Vec<f64>) {
    let (engine, a, b) = fakes::engine_a_then_b(true);
    let (mut wall, mut cpu) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        a.clear_stamps();
        b.clear_stamps();
        let r = engine.handle(job()).await;
        debug_assert_eq!(r.status, Status::Ok);
        // Only requests that really failed over count (a stale stamp would measure nothing).
        let (Some(failed), Some(called)) = (a.last_failure(), b.last_call()) else {
            continue;
        };
        wall.push(called.wall.duration_since(failed.wall).as_secs_f64() * 1e6);
        cpu.push(called.cpu.saturating_sub(failed.cpu).as_secs_f64() * 1e6);
    }
    (wall, cpu)
}

async fn wait_for(
    what: &str,
    within: Duration,
    mut cond: impl FnMut() -> bool,
) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + within;
    while !cond() {
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        // A tight poll: we are measuring milliseconds.
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    Ok(Instant::now())
}

/// ms from worker A opening a breaker to worker B refusing that provider, over `trials`.
pub async fn breaker_propagation_ms(
    nats: &str,
    prefix: &str,
    trials: usize,
) -> anyhow::Result<Vec<f64>> {
    let extra = "[engine]\nhedging = false\n[breaker]\nopen_ms = 60000\nmax_open_ms = 60000\n";
    let a = Fake::instant("a");
    let mut workers = Vec::new();
    for i in 0..2 {
        let mut cfg = fakes::config(nats, prefix, &["a", "b"], extra);
        cfg.worker.id = Some(format!("prop-{i}"));
        let providers: Vec<Arc<dyn Provider>> = vec![a.clone(), Fake::instant("b")];
        workers.push(runtime::start(Arc::new(cfg), Some(providers)).await?);
    }
    let (w1, w2) = (&workers[0], &workers[1]);
    let mut out = Vec::new();
    for _ in 0..trials {
        a.fail_with(Some(ErrorClass::ServerError));
        while w1.engine.provider_status("a").map(|s| s.1) != Some(BreakerState::Open) {
            w1.engine.handle(job()).await;
        }
        let opened = Instant::now();
        let seen = wait_for(
            "worker B to see the open breaker",
            Duration::from_secs(5),
            || w2.engine.provider_status("a").map(|s| s.1) == Some(BreakerState::Open),
        )
        .await?;
        out.push(seen.duration_since(opened).as_secs_f64() * 1e3);
        // Close it fleet-wide again (as an operator's force-status up then clear would).
        a.fail_with(None);
        w1.fleet
            .health()
            .modify("a", |r, _| {
                r.breaker = BreakerState::Closed;
                r.open_until = None;
                r.open_count = 0;
                r.consecutive_failures = 0;
                r.window = Default::default();
                Some("bench reset".into())
            })
            .await?;
        wait_for(
            "both workers to close the breaker",
            Duration::from_secs(5),
            || {
                [w1, w2].iter().all(|w| {
                    w.engine.provider_status("a").map(|s| s.1) == Some(BreakerState::Closed)
                })
            },
        )
        .await?;
    }
    for w in workers {
        w.stop().await;
    }
    Ok(out)
}

/// ms from a provider healing to its first successful call, with its breaker open.
pub async fn recovery_ms(nats: &str, prefix: &str) -> anyhow::Result<(f64, u64)> {
    let open_ms = 1_000;
    let extra = format!(
        "[engine]\nhedging = false\n[breaker]\nopen_ms = {open_ms}\nmax_open_ms = {open_ms}\n"
    );
    let a = Fake::instant("a");
    let cfg = fakes::config(nats, prefix, &["a", "b"], &extra);
    let providers: Vec<Arc<dyn Provider>> = vec![a.clone(), Fake::instant("b")];
    let w = runtime::start(Arc::new(cfg), Some(providers)).await?;
    a.fail_with(Some(ErrorClass::ServerError));
    while w.engine.provider_status("a").map(|s| s.1) != Some(BreakerState::Open) {
        w.engine.handle(job()).await;
    }
    a.fail_with(None);
    let healed = Instant::now();
    // Steady traffic, as in production: the first request after the open period probes.
    loop {
        let r = w.engine.handle(job()).await;
        if r.provider.as_deref() == Some("a") {
            break;
        }
        anyhow::ensure!(
            healed.elapsed() < Duration::from_secs(30),
            "provider a never came back"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let ms = healed.elapsed().as_secs_f64() * 1e3;
    w.stop().await;
    Ok((ms, open_ms))
}
