//! The engine's own overhead per request: an instant in-process provider, so what is measured
//! is selection, booking, events and result building (no HTTP, no NATS).

use std::sync::Arc;
use std::time::Duration;

use ai_failover::config;
use ai_failover::contract::{Action, AnalysisRequest, ErrorClass, Signal, Usage};
use ai_failover::engine::clock::SystemClock;
use ai_failover::engine::ports::{LocalFleet, NullSink};
use ai_failover::engine::{Engine, Job};
use ai_failover::providers::{Answer, Completion, Provider, ProviderCall, ProviderError};
use async_trait::async_trait;
use criterion::{Criterion, criterion_group, criterion_main};

struct Instant0 {
    id: &'static str,
    fail: bool,
}

#[async_trait]
impl Provider for Instant0 {
    fn id(&self) -> &str {
        self.id
    }
    async fn complete(&self, call: &ProviderCall) -> Result<Completion, ProviderError> {
        if self.fail {
            return Err(ProviderError::new(ErrorClass::ServerError, "down"));
        }
        Ok(Completion {
            model: call.model.clone(),
            answer: Answer::Signal(Signal {
                action: Action::Buy,
                confidence: 0.7,
                rationale: "bench".into(),
                position_size: 0.3,
                horizon: "1d".into(),
            }),
            usage: Usage {
                input_tokens: 400,
                output_tokens: 60,
            },
            http_status: 200,
        })
    }
    async fn probe(&self, _m: &str, _t: Duration) -> Result<(), ProviderError> {
        Ok(())
    }
}

fn engine(first_fails: bool) -> Engine {
    let toml = "[engine]\nhedging = false\n[breaker]\nconsecutive_failures = 1000000000\nfailure_rate = 1.0\nwindow = 1000\nmin_calls = 1000\n\
        [[providers]]\nid = \"a\"\napi = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\nmodels = [\"m\"]\ntier = \"local\"\npriority = 1\n\
        [[providers]]\nid = \"b\"\napi = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\nmodels = [\"m\"]\ntier = \"local\"\npriority = 2\n";
    let cfg = config::load_str(toml).expect("valid");
    let providers: Vec<Arc<dyn Provider>> = vec![
        Arc::new(Instant0 {
            id: "a",
            fail: first_fails,
        }),
        Arc::new(Instant0 {
            id: "b",
            fail: false,
        }),
    ];
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
