//! Each real adapter against the simulator speaking its wire API: answers parse, every
//! injected fault is classified right, and a hostile provider still leaves the request
//! answered by the next one.
// Tests may panic: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use ai_failover::config::{self, Api};
use ai_failover::contract::{ErrorClass, Kind, Source, Status};
use ai_failover::engine::clock::SystemClock;
use ai_failover::engine::ports::{LocalFleet, NullSink};
use ai_failover::engine::{Engine, Job};
use ai_failover::providers::{self, Provider, ProviderCall};
use ai_failover::simulator::{ErrorRates, Faults, Malformed, SimHandle, SlowDrip};
use common::fleet::{self, CANARY_KEY};

const APIS: [(&str, Api); 3] = [
    ("oa", Api::Openai),
    ("an", Api::Anthropic),
    ("ge", Api::Gemini),
];

fn adapter(sim: &SimHandle, name: &str, api: Api, dir: &std::path::Path) -> Arc<dyn Provider> {
    let cfg = fleet::config(
        "nats://127.0.0.1:4222",
        sim,
        &[(name, api)],
        dir,
        "[engine]\nmax_response_bytes = 65536\n",
    );
    providers::try_build(&cfg.providers[0], &cfg.engine).unwrap()
}

fn call(name: &str) -> ProviderCall {
    let request = fleet::request("AAPL");
    let (system, user) = providers::prompt::build(&request);
    ProviderCall {
        request_id: request.request_id,
        model: format!("{name}-large"),
        kind: Kind::Signal,
        system,
        user,
        max_output_tokens: 256,
        timeout: Duration::from_millis(1_500),
        tenant: None,
    }
}

fn rates(f: impl FnOnce(&mut ErrorRates)) -> Faults {
    let mut r = ErrorRates::default();
    f(&mut r);
    Faults {
        error_rate: r,
        ..Faults::default()
    }
}

#[tokio::test]
async fn every_adapter_gets_a_parsed_answer_with_usage_and_a_free_probe() {
    let sim = fleet::simulator(&APIS).await;
    let dir = tempfile::tempdir().unwrap();
    for (name, api) in APIS {
        let p = adapter(&sim, name, api, dir.path());
        let c = call(name);
        let done = p
            .complete(&c)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            done.usage.input_tokens > 0 && done.usage.output_tokens > 0,
            "{name}"
        );
        assert!(
            matches!(done.answer, providers::Answer::Signal(_)),
            "{name}"
        );
        p.probe(&c.model, Duration::from_secs(1))
            .await
            .unwrap_or_else(|e| panic!("{name} probe: {e}"));
        let calls = sim.calls();
        assert_eq!(
            calls[name].total, 1,
            "{name}: the probe is not a billed call"
        );
        assert_eq!(
            calls[name].by_request_id.get(&c.request_id),
            Some(&1),
            "{name}: request id sent"
        );
    }
}

#[tokio::test]
async fn every_injected_fault_is_classified_for_every_vendor() {
    let sim = fleet::simulator(&APIS).await;
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(Faults, ErrorClass)> = vec![
        (rates(|r| r.rate_limited = 1.0), ErrorClass::RateLimited),
        (rates(|r| r.overloaded = 1.0), ErrorClass::Overloaded),
        (rates(|r| r.server_error = 1.0), ErrorClass::ServerError),
        (rates(|r| r.auth = 1.0), ErrorClass::Auth),
        (rates(|r| r.bad_request = 1.0), ErrorClass::BadRequest),
        (rates(|r| r.context_length = 1.0), ErrorClass::ContextLength),
        (
            rates(|r| r.content_filtered = 1.0),
            ErrorClass::ContentFiltered,
        ),
        (
            Faults {
                hang: true,
                ..Faults::default()
            },
            ErrorClass::Timeout,
        ),
        (
            Faults {
                slow_drip: Some(SlowDrip {
                    chunk_bytes: 4,
                    interval_ms: 200,
                }),
                ..Faults::default()
            },
            ErrorClass::Timeout,
        ),
        (
            Faults {
                huge_body_bytes: Some(10 << 20),
                ..Faults::default()
            },
            ErrorClass::InvalidResponse,
        ),
        (
            Faults {
                malformed: Some(Malformed::TruncatedJson),
                ..Faults::default()
            },
            ErrorClass::InvalidResponse,
        ),
        (
            Faults {
                malformed: Some(Malformed::NotJson),
                ..Faults::default()
            },
            ErrorClass::InvalidResponse,
        ),
        (
            Faults {
                malformed: Some(Malformed::InvalidSignal),
                ..Faults::default()
            },
            ErrorClass::InvalidResponse,
        ),
    ];
    for (name, api) in APIS {
        let p = adapter(&sim, name, api, dir.path());
        for (faults, want) in &cases {
            sim.set_faults(name, faults.clone()).unwrap();
            let err = p.complete(&call(name)).await.expect_err("a fault");
            assert_eq!(err.class, *want, "{name} with {faults:?}: {err}");
            assert!(!err.message.contains(CANARY_KEY), "{name}: key in an error");
            if *want == ErrorClass::RateLimited {
                assert!(err.retry_after.is_some(), "{name}: retry-after read");
            }
        }
        sim.clear_faults(name).unwrap();
    }
}

#[tokio::test]
async fn a_hostile_provider_still_leaves_the_request_answered_by_the_next() {
    let sim = fleet::simulator(&APIS).await;
    let dir = tempfile::tempdir().unwrap();
    let providers_toml = [("oa", Api::Openai), ("an", Api::Anthropic)];
    let cfg = fleet::config(
        "nats://127.0.0.1:4222",
        &sim,
        &providers_toml,
        dir.path(),
        "[engine]\nmax_response_bytes = 65536\nhedge_floor_ms = 300\n",
    );
    let hostile = [
        Faults {
            hang: true,
            ..Faults::default()
        },
        Faults {
            slow_drip: Some(SlowDrip {
                chunk_bytes: 1,
                interval_ms: 100,
            }),
            ..Faults::default()
        },
        Faults {
            huge_body_bytes: Some(100 << 20),
            ..Faults::default()
        },
        Faults {
            malformed: Some(Malformed::InvalidSignal),
            ..Faults::default()
        },
        Faults {
            malformed: Some(Malformed::TextNotJson),
            ..Faults::default()
        },
    ];
    for faults in hostile {
        sim.set_faults("oa", faults.clone()).unwrap();
        let adapters: Vec<Arc<dyn Provider>> = cfg
            .providers
            .iter()
            .map(|p| providers::try_build(p, &cfg.engine).unwrap())
            .collect();
        let engine = Engine::new(
            Arc::new(cfg.clone()),
            adapters,
            Arc::new(SystemClock),
            Arc::new(NullSink),
            Arc::new(LocalFleet),
            "t",
        );
        let started = std::time::Instant::now();
        let job = Job {
            request: fleet::request("AAPL"),
            published_at: chrono::Utc::now(),
            tenant: Default::default(),
        };
        let r = engine.handle(job).await;
        assert_eq!(
            (r.status, r.source),
            (Status::Ok, Source::Provider),
            "{faults:?}: {r:?}"
        );
        assert_eq!(r.provider.as_deref(), Some("an"), "{faults:?}");
        // Hedging bounds a hanging or dripping provider to a fraction of its 3 s timeout.
        assert!(
            started.elapsed() < Duration::from_millis(2_500),
            "{faults:?} took {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn the_config_loader_is_used_as_users_use_it() {
    // Guard against the test config drifting from what `config::load_str` accepts.
    assert!(config::load_str("[[providers]]\nid = \"x\"\napi = \"openai\"\nbase_url = \"http://h/v1\"\nmodels = [\"m\"]\ntier = \"local\"\n").is_ok());
}
