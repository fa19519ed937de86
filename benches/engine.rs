//! The engine's own overhead per request: an instant in-process provider, so what is measured
//! is selection, booking, events and result building (no HTTP, no NATS).
#![allow(clippy::unwrap_used)]

use ai_failover::cli::bench::fakes;
use ai_failover::contract::AnalysisRequest;
use ai_failover::engine::Job;
use criterion::{Criterion, criterion_group, criterion_main};

fn job() -> Job {
    let mut r = AnalysisRequest::signal("AAPL");
    r.context =
        Some(serde_json::from_value(serde_json::json!({"prices": [1.0, 2.0, 3.0]})).unwrap());
    Job {
        request: r,
        published_at: chrono::Utc::now(),
        tenant: Default::default(),
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (ok, _, _) = fakes::engine_a_then_b(false);
    c.bench_function("engine: request answered by the first provider", |b| {
        b.iter(|| rt.block_on(ok.handle(job())))
    });
    let (failover, _, _) = fakes::engine_a_then_b(true);
    c.bench_function("engine: request with one failover", |b| {
        b.iter(|| rt.block_on(failover.handle(job())))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
