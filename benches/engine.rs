//! The engine's own overhead per request: an instant in-process provider, so what is measured
//! is selection, booking, events and result building (no HTTP, no NATS).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use ai_failover::cli::bench::fakes::{self, Instant0};
use ai_failover::contract::AnalysisRequest;
use ai_failover::engine::clock::SystemClock;
use ai_failover::engine::ports::{LocalFleet, NullSink};
use ai_failover::engine::{Engine, Job};
use ai_failover::providers::Provider;
use criterion::{Criterion, criterion_group, criterion_main};

/// Two instant providers; the first fails every call when `first_fails`.
fn engine(first_fails: bool) -> Engine {
    // A breaker that never opens, so every request really fails over.
    let cfg = fakes::config(
        "nats://127.0.0.1:4222",
        "bench",
        &["a", "b"],
        "[engine]\nhedging = false\n[breaker]\nconsecutive_failures = 1000000000\nfailure_rate = 1.0\nwindow = 1000\nmin_calls = 1000\n",
    );
    let a = Instant0::new("a");
    a.failing.store(first_fails, Ordering::Relaxed);
    let providers: Vec<Arc<dyn Provider>> = vec![a, Instant0::new("b")];
    Engine::new(
        Arc::new(cfg),
        providers,
        Arc::new(SystemClock),
        Arc::new(NullSink),
        Arc::new(LocalFleet),
        "bench",
    )
}

fn job() -> Job {
    let mut r = AnalysisRequest::signal("AAPL");
    r.context =
        Some(serde_json::from_value(serde_json::json!({"prices": [1.0, 2.0, 3.0]})).unwrap());
    Job {
        request: r,
        published_at: chrono::Utc::now(),
        may_park: false,
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ok = engine(false);
    c.bench_function("engine: request answered by the first provider", |b| {
        b.iter(|| rt.block_on(ok.handle(job())))
    });
    let failover = engine(true);
    c.bench_function("engine: request with one failover", |b| {
        b.iter(|| rt.block_on(failover.handle(job())))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
