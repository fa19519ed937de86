//! The engine's semantics, each rule a test: fake providers, tokio's paused clock, no sleeps.
// Tests may panic: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ai_failover::config::{Config, Tier};
use ai_failover::contract::{
    Action, AnalysisRequest, BreakerState, ErrorClass, HealthStatus, Kind, Mode, Source, Status,
};
use ai_failover::engine::clock::SystemClock;
use ai_failover::engine::ports::{EngineEvent, EventSink, LocalFleet};
use ai_failover::engine::{Engine, Job};
use ai_failover::providers::Provider;
use ai_failover::providers::fake::{Fake, Step};

#[derive(Default)]
struct Recorder(Mutex<Vec<EngineEvent>>);

impl EventSink for Recorder {
    fn emit(&self, event: EngineEvent) {
        self.0.lock().unwrap().push(event);
    }
}

impl Recorder {
    fn failovers(&self) -> Vec<(String, Option<String>, ErrorClass, bool)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                EngineEvent::Failover(f) => Some((
                    f.from.provider.to_string(),
                    f.to.as_ref().map(|t| t.provider.to_string()),
                    f.error_class,
                    f.hedge,
                )),
                _ => None,
            })
            .collect()
    }
    fn count(&self, pred: impl Fn(&EngineEvent) -> bool) -> usize {
        self.0.lock().unwrap().iter().filter(|e| pred(e)).count()
    }
}

fn cfg(ids: &[(&str, &[&str])], extra: &str) -> Config {
    let mut cfg = common::config::TestConfig::new("nats://127.0.0.1:4222").merge(extra);
    for (i, (id, models)) in ids.iter().enumerate() {
        let models: Vec<String> = models.iter().map(|m| format!("\"{m}\"")).collect();
        cfg = cfg.provider(&format!(
            "id = \"{id}\"\napi = \"openai\"\nbase_url = \"http://127.0.0.1:1/v1\"\nmodels = [{}]\npriority = {}\ntier = \"local\"\ncost = {{ input_per_mtok = 1.0, output_per_mtok = 10.0 }}\n",
            models.join(","),
            i + 1
        ));
    }
    let mut c = cfg.load();
    // Remote tier without needing keys in the environment (validation already ran).
    for p in &mut c.providers {
        p.tier = Tier::Remote;
    }
    c
}

const NO_HEDGE: &str = "[engine]\nhedging = false\n";

struct Rig {
    engine: Engine,
    events: Arc<Recorder>,
}

fn rig(cfg: Config, fakes: &[Arc<Fake>]) -> Rig {
    let events = Arc::new(Recorder::default());
    let providers: Vec<Arc<dyn Provider>> = fakes
        .iter()
        .map(|f| f.clone() as Arc<dyn Provider>)
        .collect();
    let engine = Engine::new(
        Arc::new(cfg),
        providers,
        Arc::new(SystemClock),
        events.clone(),
        Arc::new(LocalFleet),
        "w-test",
    )
    .with_seed(1);
    Rig { engine, events }
}

fn job(symbol: &str) -> Job {
    let mut r = AnalysisRequest::signal(symbol);
    r.context = Some(
        serde_json::from_value(
            serde_json::json!({"prices": [100.0, 101.0, 102.0, 103.0, 104.0, 105.0]}),
        )
        .unwrap(),
    );
    Job {
        request: r,
        published_at: chrono::Utc::now(),
        tenant: Default::default(),
    }
}

async fn done(engine: &Engine, job: Job) -> ai_failover::contract::AnalysisResult {
    *engine.handle(job).await
}

/// Which provider answered a fresh request for `X` (`None`: nobody did).
async fn answered_by(engine: &Engine) -> Option<String> {
    done(engine, job("X")).await.provider.map(String::from)
}

const FAST: Duration = Duration::from_millis(20);

#[tokio::test(start_paused = true)]
async fn each_retryable_class_fails_over_to_the_next_provider() {
    for class in [
        ErrorClass::Timeout,
        ErrorClass::ServerError,
        ErrorClass::Overloaded,
        ErrorClass::Network,
        ErrorClass::InvalidResponse,
        ErrorClass::ContentFiltered,
        ErrorClass::RateLimited,
        ErrorClass::Auth,
    ] {
        let a = Fake::new("a", Step::Fail(class, FAST));
        let b = Fake::new("b", Step::Ok(FAST));
        let r = rig(
            cfg(&[("a", &["a1"]), ("b", &["b1"])], NO_HEDGE),
            &[a.clone(), b.clone()],
        );
        let res = done(&r.engine, job("AAPL")).await;
        assert_eq!(res.status, Status::Ok, "{class}");
        assert_eq!(res.provider.as_deref(), Some("b"), "{class}");
        assert_eq!(res.attempts.len(), 2, "{class}");
        assert_eq!(res.attempts[0].outcome, class.into());
        assert_eq!(
            r.events.failovers(),
            vec![("a".into(), Some("b".into()), class, false)],
            "{class}"
        );
        assert_eq!((a.calls(), b.calls()), (1, 1), "{class}");
    }
}

#[tokio::test(start_paused = true)]
async fn failover_also_moves_between_models_of_one_provider() {
    let a = Fake::new("a", Step::Ok(FAST)).then(&[Step::Fail(ErrorClass::InvalidResponse, FAST)]);
    let r = rig(
        cfg(&[("a", &["big", "small"])], NO_HEDGE),
        std::slice::from_ref(&a),
    );
    let res = done(&r.engine, job("AAPL")).await;
    assert_eq!(res.model.as_deref(), Some("small"));
    assert_eq!(a.models(), vec!["big", "small"]);
    assert_eq!(r.events.failovers().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn bad_request_does_not_fail_over() {
    let a = Fake::new("a", Step::Fail(ErrorClass::BadRequest, FAST));
    let b = Fake::new("b", Step::Ok(FAST));
    let r = rig(
        cfg(&[("a", &["a1"]), ("b", &["b1"])], NO_HEDGE),
        &[a.clone(), b.clone()],
    );
    let res = done(&r.engine, job("AAPL")).await;
    assert_eq!(res.status, Status::Failed);
    assert_eq!(res.error.unwrap().class, ErrorClass::BadRequest);
    assert_eq!(b.calls(), 0);
    assert!(r.events.failovers().is_empty());
}

#[tokio::test(start_paused = true)]
async fn context_length_moves_to_a_larger_context_model() {
    let a = Fake::new("a", Step::Ok(FAST)).then(&[Step::Fail(ErrorClass::ContextLength, FAST)]);
    let mut c = cfg(&[("a", &["small"])], NO_HEDGE);
    c.providers[0].large_context_models = vec!["huge".into()];
    let r = rig(c, std::slice::from_ref(&a));
    let res = done(&r.engine, job("AAPL")).await;
    assert_eq!(res.status, Status::Ok);
    assert_eq!(res.model.as_deref(), Some("huge"));
}

#[tokio::test(start_paused = true)]
async fn auth_quarantines_the_provider_for_later_requests() {
    let a = Fake::new("a", Step::Fail(ErrorClass::Auth, FAST));
    let b = Fake::new("b", Step::Ok(FAST));
    let r = rig(
        cfg(&[("a", &["a1"]), ("b", &["b1"])], NO_HEDGE),
        &[a.clone(), b.clone()],
    );
    for _ in 0..3 {
        assert_eq!(
            done(&r.engine, job("AAPL")).await.provider.as_deref(),
            Some("b")
        );
    }
    assert_eq!(a.calls(), 1, "a quarantined provider is never called again");
    assert_eq!(
        r.events
            .count(|e| matches!(e, EngineEvent::Quarantine { provider, .. } if provider == "a")),
        1
    );
    // Long after any breaker would have half-opened, it stays off until an operator clears it.
    tokio::time::advance(Duration::from_secs(3600)).await;
    done(&r.engine, job("AAPL")).await;
    assert_eq!(a.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn breaker_opens_half_opens_and_closes() {
    // a fails three times, then recovers.
    let a = Fake::new("a", Step::Ok(FAST)).then(&[
        Step::Fail(ErrorClass::ServerError, FAST),
        Step::Fail(ErrorClass::ServerError, FAST),
        Step::Fail(ErrorClass::ServerError, FAST),
    ]);
    let b = Fake::new("b", Step::Ok(FAST));
    let r = rig(
        cfg(
            &[("a", &["a1"]), ("b", &["b1"])],
            &format!("{NO_HEDGE}[breaker]\nopen_ms = 5000\n"),
        ),
        &[a.clone(), b.clone()],
    );
    for _ in 0..3 {
        done(&r.engine, job("AAPL")).await;
        // One failure from opening, a is tried after b for a second: wait that out.
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    assert_eq!(r.engine.provider_status("a").unwrap().1, BreakerState::Open);
    assert_eq!(r.engine.mode(), Mode::Degraded);
    // While open, a is skipped without a call.
    let res = done(&r.engine, job("AAPL")).await;
    assert_eq!(res.provider.as_deref(), Some("b"));
    assert_eq!(a.calls(), 3);
    // After the open period, one probe goes to a, succeeds, and closes the breaker.
    tokio::time::advance(Duration::from_millis(5_000)).await;
    let res = done(&r.engine, job("AAPL")).await;
    assert_eq!(res.provider.as_deref(), Some("a"));
    assert_eq!(
        r.engine.provider_status("a").unwrap().1,
        BreakerState::Closed
    );
    assert_eq!(r.engine.mode(), Mode::Normal);
    let transitions: Vec<(BreakerState, BreakerState)> = r
        .events
        .0
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            EngineEvent::Breaker {
                provider,
                transition,
            } if provider == "a" => Some((transition.from, transition.to)),
            _ => None,
        })
        .collect();
    assert_eq!(
        transitions,
        vec![
            (BreakerState::Closed, BreakerState::Open),
            (BreakerState::HalfOpen, BreakerState::Closed)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn the_deadline_bounds_everything_and_the_fallback_is_marked_and_capped() {
    let a = Fake::new("a", Step::Hang);
    let b = Fake::new("b", Step::Hang);
    let r = rig(
        cfg(&[("a", &["a1"]), ("b", &["b1"])], ""),
        &[a.clone(), b.clone()],
    );
    let mut j = job("AAPL");
    j.request.deadline_ms = Some(1_500);
    let started = tokio::time::Instant::now();
    let res = done(&r.engine, j).await;
    let took = started.elapsed();
    assert!(took <= Duration::from_millis(1_500), "took {took:?}");
    assert_eq!(res.status, Status::Degraded);
    assert_eq!(res.source, Source::Fallback);
    let s = res.signal.unwrap();
    assert!(s.confidence <= 0.4);
    assert!(s.rationale.contains("rule-based fallback"));
    assert_eq!(s.action, Action::Buy, "rising prices");
    // The move to the fallback is a failover event too.
    assert!(r.events.failovers().iter().any(|f| f.1.is_none()));
}

#[tokio::test(start_paused = true)]
async fn without_fallback_the_request_fails() {
    let a = Fake::new("a", Step::Fail(ErrorClass::ServerError, FAST));
    let r = rig(cfg(&[("a", &["a1"])], NO_HEDGE), std::slice::from_ref(&a));
    let mut j = job("AAPL");
    j.request.allow_fallback = false;
    let res = done(&r.engine, j).await;
    assert_eq!(res.status, Status::Failed);
    assert_eq!(res.source, Source::None);
    assert!(res.signal.is_none());
}

#[tokio::test(start_paused = true)]
async fn an_expired_request_calls_nobody() {
    let a = Fake::new("a", Step::Ok(FAST));
    let r = rig(cfg(&[("a", &["a1"])], NO_HEDGE), std::slice::from_ref(&a));
    let mut j = job("AAPL");
    j.request.deadline_ms = Some(1_000);
    j.published_at = chrono::Utc::now() - chrono::Duration::seconds(2);
    let res = done(&r.engine, j).await;
    assert_eq!((res.status, res.source), (Status::Expired, Source::None));
    assert_eq!(a.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_hanging_provider_costs_a_fraction_of_a_second_and_counts_as_failing() {
    let a = Fake::new("a", Step::Hang);
    let b = Fake::new("b", Step::Ok(FAST));
    let r = rig(
        cfg(&[("a", &["a1"]), ("b", &["b1"])], ""),
        &[a.clone(), b.clone()],
    );
    let started = tokio::time::Instant::now();
    let res = done(&r.engine, job("AAPL")).await;
    let took = started.elapsed();
    assert_eq!(res.provider.as_deref(), Some("b"));
    assert!(took < Duration::from_millis(500), "took {took:?}");
    assert_eq!(
        r.events.failovers(),
        vec![("a".into(), Some("b".into()), ErrorClass::Timeout, true)]
    );
    // Three hung calls open a's breaker although none waited for a's timeout; a is tried
    // again only once its stall (a second) is over.
    for n in 2..=3 {
        done(&r.engine, job("AAPL")).await;
        assert_eq!(
            a.calls(),
            n - 1,
            "a stalled provider is tried after the others"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        done(&r.engine, job("AAPL")).await;
        assert_eq!(a.calls(), n);
    }
    assert_eq!(r.engine.provider_status("a").unwrap().1, BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn rate_limits_are_honoured_without_sleeping() {
    let a = Fake::new("a", Step::Ok(FAST)).then(&[Step::RateLimited(Duration::from_secs(30))]);
    let b = Fake::new("b", Step::Ok(FAST));
    let r = rig(
        cfg(&[("a", &["a1"]), ("b", &["b1"])], NO_HEDGE),
        &[a.clone(), b.clone()],
    );
    let started = tokio::time::Instant::now();
    assert_eq!(answered_by(&r.engine).await.as_deref(), Some("b"));
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(answered_by(&r.engine).await.as_deref(), Some("b"));
    assert_eq!(a.calls(), 1, "skipped until Retry-After");
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(answered_by(&r.engine).await.as_deref(), Some("a"));
}

#[tokio::test(start_paused = true)]
async fn retries_on_the_last_provider_back_off_within_the_budget() {
    let a = Fake::new("a", Step::Ok(FAST)).then(&[Step::Fail(ErrorClass::ServerError, FAST)]);
    let r = rig(cfg(&[("a", &["a1"])], NO_HEDGE), std::slice::from_ref(&a));
    let res = done(&r.engine, job("X")).await;
    assert_eq!(res.status, Status::Ok);
    assert_eq!(a.calls(), 2, "one retry after a backoff");
    assert!(r.events.failovers().is_empty(), "a retry is not a failover");
}

#[tokio::test(start_paused = true)]
async fn an_outage_never_multiplies_load() {
    let a = Fake::new("a", Step::Fail(ErrorClass::ServerError, FAST));
    let b = Fake::new("b", Step::Fail(ErrorClass::ServerError, FAST));
    let r = rig(
        cfg(
            &[("a", &["a1"]), ("b", &["b1"])],
            "[breaker]\nconsecutive_failures = 1000\nmin_calls = 20\nfailure_rate = 1.0\n[engine]\nretry_budget_min_per_sec = 0.1\nmax_retries_per_provider = 3\n",
        ),
        &[a.clone(), b.clone()],
    );
    for _ in 0..100 {
        done(&r.engine, job("X")).await;
    }
    let total = a.calls() + b.calls();
    // One call per provider per request plus at most 20% extras (and a floor of one).
    assert!(total <= 2 * 100 + 21, "{total} calls for 100 requests");
}

#[tokio::test(start_paused = true)]
async fn cost_caps_reject_and_daily_budgets_skip() {
    let a = Fake::new("a", Step::Ok(FAST));
    let b = Fake::new("b", Step::Ok(FAST));
    let r = rig(
        cfg(&[("a", &["a1"]), ("b", &["b1"])], NO_HEDGE),
        &[a.clone(), b.clone()],
    );
    let mut j = job("X");
    j.request.max_cost_usd = Some(0.000_001);
    let res = done(&r.engine, j).await;
    assert_eq!(res.status, Status::Rejected);
    assert_eq!(res.error.unwrap().class, ErrorClass::BudgetExceeded);
    assert_eq!(a.calls() + b.calls(), 0);

    let mut c = cfg(&[("a", &["a1"]), ("b", &["b1"])], NO_HEDGE);
    c.providers[0].daily_budget_usd = Some(0.000_001);
    let r = rig(c, &[a.clone(), b.clone()]);
    assert_eq!(answered_by(&r.engine).await.as_deref(), Some("b"));
    assert_eq!(a.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn results_carry_cost_usage_and_mode_risk() {
    let a = Fake::new("a", Step::Ok(FAST));
    let r = rig(cfg(&[("a", &["a1"])], NO_HEDGE), &[a]);
    let res = done(&r.engine, job("X")).await;
    assert_eq!(res.usage.input_tokens, 1_000);
    // 1000 in at $1/Mtok + 100 out at $10/Mtok.
    assert!((res.cost_usd - 0.002).abs() < 1e-12, "{}", res.cost_usd);
    assert_eq!(res.mode, Mode::Normal);
    assert_eq!(res.signal.unwrap().position_size, 0.5);
    assert!(r.events.count(|e| matches!(e, EngineEvent::Cacheable(_))) == 1);
}

#[tokio::test(start_paused = true)]
async fn only_local_providers_left_means_conservative_risk() {
    let a = Fake::new("a", Step::Fail(ErrorClass::Auth, FAST));
    let l = Fake::new("l", Step::Ok(FAST));
    let mut c = cfg(&[("a", &["a1"]), ("l", &["l1"])], NO_HEDGE);
    c.providers[1].tier = Tier::Local;
    let r = rig(c, &[a, l]);
    let res = done(&r.engine, job("X")).await;
    assert_eq!(res.mode, Mode::Conservative);
    assert_eq!(res.signal.unwrap().position_size, 0.5 * 0.5);
    assert!(res.risk.min_confidence >= 0.7);
}

#[tokio::test(start_paused = true)]
async fn with_every_provider_down_the_fallback_answers_at_once() {
    let a = Fake::new("a", Step::Fail(ErrorClass::ServerError, FAST));
    let r = rig(
        cfg(
            &[("a", &["a1"])],
            &format!("{NO_HEDGE}[breaker]\nconsecutive_failures = 1\nopen_ms = 2000\n"),
        ),
        std::slice::from_ref(&a),
    );
    done(&r.engine, job("X")).await; // opens the breaker
    let started = tokio::time::Instant::now();
    let res = done(&r.engine, job("X")).await;
    assert_eq!(res.source, Source::Fallback);
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "no waiting unless asked for"
    );
    assert_eq!(a.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_request_that_may_wait_is_answered_when_its_provider_comes_back() {
    let a = Fake::new("a", Step::Ok(FAST)).then(&[Step::Fail(ErrorClass::ServerError, FAST)]);
    let r = rig(
        cfg(
            &[("a", &["a1"])],
            "[engine]\nhedging = false\nmax_retries_per_provider = 0\n\
             [breaker]\nconsecutive_failures = 1\nopen_ms = 2000\n",
        ),
        std::slice::from_ref(&a),
    );
    done(&r.engine, job("X")).await; // fails once, opens the breaker for 2 s
    let mut j = job("X");
    j.request.max_wait_ms = Some(5_000);
    let started = tokio::time::Instant::now();
    let res = done(&r.engine, j.clone()).await;
    let waited = started.elapsed();
    assert_eq!(
        (res.status, res.provider.as_deref()),
        (Status::Ok, Some("a"))
    );
    assert!(
        waited >= Duration::from_millis(1_900) && waited <= Duration::from_millis(2_200),
        "answered when the open period ended, after {waited:?}"
    );
    // A wait shorter than the outage ends in the fallback, when the wait is over.
    let a = Fake::new("a", Step::Fail(ErrorClass::ServerError, FAST));
    let r = rig(
        cfg(
            &[("a", &["a1"])],
            &format!("{NO_HEDGE}[breaker]\nconsecutive_failures = 1\nopen_ms = 60000\n"),
        ),
        std::slice::from_ref(&a),
    );
    done(&r.engine, job("X")).await;
    j.request.max_wait_ms = Some(1_000);
    let started = tokio::time::Instant::now();
    let res = done(&r.engine, j).await;
    assert_eq!(res.source, Source::Fallback);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(800) && waited <= Duration::from_millis(1_000),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn no_call_starts_that_cannot_come_back_before_the_deadline() {
    let slow = Duration::from_millis(800);
    let a = Fake::new("a", Step::Ok(slow));
    let b = Fake::new("b", Step::Ok(FAST));
    let r = rig(
        cfg(&[("a", &["a1"]), ("b", &["b1"])], NO_HEDGE),
        &[a.clone(), b.clone()],
    );
    // a answers, slowly: its median becomes 800 ms.
    for _ in 0..5 {
        assert_eq!(answered_by(&r.engine).await.as_deref(), Some("a"));
    }
    let mut j = job("X");
    j.request.deadline_ms = Some(500);
    let res = done(&r.engine, j.clone()).await;
    assert_eq!(
        res.provider.as_deref(),
        Some("b"),
        "a cannot make it in 500 ms"
    );
    assert_eq!(a.calls(), 5);
    // Not even the fastest provider gets a call with less than the floor (100 ms) left:
    // the answer is the fallback, at once.
    j.request.deadline_ms = Some(60);
    let started = tokio::time::Instant::now();
    let res = done(&r.engine, j).await;
    assert_eq!(res.source, Source::Fallback);
    assert!(res.attempts.is_empty(), "{:?}", res.attempts);
    assert_eq!(res.error.unwrap().class, ErrorClass::DeadlineExceeded);
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!((a.calls(), b.calls()), (5, 1));
}

#[tokio::test(start_paused = true)]
async fn a_call_cut_short_by_the_deadline_is_not_held_against_the_provider() {
    let a = Fake::new("a", Step::Ok(Duration::from_millis(400)));
    let r = rig(
        cfg(
            &[("a", &["a1"])],
            &format!("{NO_HEDGE}[breaker]\nconsecutive_failures = 1\n"),
        ),
        std::slice::from_ref(&a),
    );
    for _ in 0..3 {
        let mut j = job("X");
        j.request.deadline_ms = Some(200);
        let res = done(&r.engine, j).await;
        assert_eq!(res.source, Source::Fallback);
        assert!(res.attempts.iter().all(|a| a.outcome
            == ai_failover::contract::AttemptOutcome::Failed(ErrorClass::DeadlineExceeded)));
    }
    // The first call was cut; it taught the engine a needs more than 200 ms.
    assert_eq!(a.calls(), 1);
    // Three requests whose deadlines were too short for a: a is still healthy.
    assert_eq!(
        r.engine.provider_status("a").unwrap(),
        (
            ai_failover::contract::HealthStatus::Healthy,
            BreakerState::Closed
        )
    );
}

#[tokio::test(start_paused = true)]
async fn a_hedge_goes_out_early_enough_for_a_short_deadline() {
    let a = Fake::new("a", Step::Hang);
    let b = Fake::new("b", Step::Ok(FAST));
    let r = rig(
        cfg(&[("a", &["a1"]), ("b", &["b1"])], ""),
        &[a.clone(), b.clone()],
    );
    let mut j = job("X");
    // The hedge would normally wait 250 ms (the floor); b needs ~100 ms, so it goes at 100.
    j.request.deadline_ms = Some(200);
    let started = tokio::time::Instant::now();
    let res = done(&r.engine, j).await;
    assert_eq!(
        (res.status, res.provider.as_deref()),
        (Status::Ok, Some("b"))
    );
    assert!(
        started.elapsed() <= Duration::from_millis(130),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn hedges_of_a_failing_provider_are_not_rationed() {
    let a = Fake::new("a", Step::Hang);
    let b = Fake::new("b", Step::Ok(FAST));
    // A budget of one extra call per 10 s: enough for the first hedge only.
    let r = rig(
        cfg(
            &[("a", &["a1"]), ("b", &["b1"])],
            "[engine]\nretry_budget_ratio = 0.0\nretry_budget_min_per_sec = 0.1\n\
             [breaker]\nconsecutive_failures = 100\nmin_calls = 100\nwindow = 100\n",
        ),
        &[a.clone(), b.clone()],
    );
    for i in 0..5 {
        // A second apart, so that a is tried first each time (it is not stalled any more).
        tokio::time::advance(Duration::from_secs(1)).await;
        let started = tokio::time::Instant::now();
        let res = done(&r.engine, job("X")).await;
        assert_eq!(res.provider.as_deref(), Some("b"), "request {i}");
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "request {i} waited {:?} for a hung provider",
            started.elapsed()
        );
    }
    assert_eq!(a.calls(), 5);
}

#[tokio::test(start_paused = true)]
async fn a_provider_slower_than_usual_is_tried_last_for_a_second() {
    let a = Fake::new("a", Step::Ok(FAST)).then(&[Step::Hang]);
    let b = Fake::new("b", Step::Ok(FAST));
    let r = rig(
        cfg(&[("a", &["a1"]), ("b", &["b1"])], ""),
        &[a.clone(), b.clone()],
    );
    // a's call hangs: the hedge to b answers, and a is stalled.
    assert_eq!(answered_by(&r.engine).await.as_deref(), Some("b"));
    assert_eq!(r.engine.candidate_order(&job("X").request)[0].0, "b");
    assert_eq!(answered_by(&r.engine).await.as_deref(), Some("b"));
    assert_eq!(a.calls(), 1, "no new call went to the stalled provider");
    // A second later a leads again, and answers.
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(answered_by(&r.engine).await.as_deref(), Some("a"));
}

#[tokio::test(start_paused = true)]
async fn a_half_open_trial_is_hedged_and_never_left_to_hang() {
    let a = Fake::new("a", Step::Hang).then(&[Step::Fail(ErrorClass::ServerError, FAST)]);
    let b = Fake::new("b", Step::Ok(FAST));
    let r = rig(
        cfg(
            &[("a", &["a1"]), ("b", &["b1"])],
            "[breaker]\nconsecutive_failures = 1\nopen_ms = 1000\nmax_open_ms = 1000\n",
        ),
        &[a.clone(), b.clone()],
    );
    done(&r.engine, job("X")).await; // a fails, its breaker opens
    tokio::time::advance(Duration::from_millis(1_000)).await;
    let started = tokio::time::Instant::now();
    let res = done(&r.engine, job("X")).await; // the trial: a hangs, b answers
    assert_eq!(res.provider.as_deref(), Some("b"));
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(a.calls(), 2, "the trial went to a");
    assert_eq!(r.engine.provider_status("a").unwrap().1, BreakerState::Open);
}

/// Provider `a` fails and its breaker opens for a second after one request; `b` answers.
async fn a_opened_b_answers() -> (Arc<Fake>, Rig) {
    let a = Fake::new("a", Step::Fail(ErrorClass::ServerError, FAST));
    let b = Fake::new("b", Step::Ok(FAST));
    let r = rig(
        cfg(
            &[("a", &["a1"]), ("b", &["b1"])],
            &format!("{NO_HEDGE}[breaker]\nconsecutive_failures = 1\nopen_ms = 1000\n"),
        ),
        &[a.clone(), b],
    );
    done(&r.engine, job("X")).await;
    (a, r)
}

/// A shared health record, written by `owner`, saying `id`'s breaker is open for a second.
fn shared_open(id: &str, owner: &str) -> ai_failover::contract::ProviderHealthRecord {
    let mut record = ai_failover::contract::ProviderHealthRecord::new(id, owner);
    record.breaker = BreakerState::Open;
    record.open_until = Some(chrono::Utc::now() + chrono::Duration::seconds(1));
    record
}

#[tokio::test(start_paused = true)]
async fn no_live_trial_while_the_fleet_prober_holds_the_slot() {
    let (a, r) = a_opened_b_answers().await;
    let mut record = shared_open("a", "w-prober");
    record.breaker_changed_at = Some(chrono::Utc::now());
    record.probe_owner = Some("w-prober".into());
    record.probe_until = Some(chrono::Utc::now() + chrono::Duration::seconds(10));
    r.engine.apply_shared(&record);
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(answered_by(&r.engine).await.as_deref(), Some("b"));
    assert_eq!(
        a.calls(),
        1,
        "the open period is over, but the prober does the trying"
    );
    // Once the prober's slot runs out (it died), live trials resume.
    tokio::time::advance(Duration::from_secs(6)).await;
    done(&r.engine, job("X")).await;
    assert_eq!(a.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn test_failover_injection_leaves_fleet_state_alone() {
    let a = Fake::new("a", Step::Ok(FAST));
    let b = Fake::new("b", Step::Ok(FAST));
    let r = rig(
        cfg(
            &[("a", &["a1"]), ("b", &["b1"])],
            &format!("{NO_HEDGE}[breaker]\nconsecutive_failures = 1\n"),
        ),
        &[a.clone(), b.clone()],
    );
    let injected = HashMap::from([("a".into(), ErrorClass::ServerError)]);
    let res = r.engine.handle_with(job("X"), &injected).await;
    assert_eq!(res.provider.as_deref(), Some("b"));
    assert_eq!(res.attempts[0].outcome, ErrorClass::ServerError.into());
    assert_eq!(
        a.calls(),
        0,
        "the failing provider is simulated, not called"
    );
    assert_eq!(
        r.engine.provider_status("a").unwrap().1,
        BreakerState::Closed
    );
    assert!(r.events.failovers().is_empty());
    assert_eq!(
        r.events
            .count(|e| matches!(e, EngineEvent::Cacheable(_) | EngineEvent::Spend { .. })),
        0,
        "a synthetic answer is neither cached nor paid into the budget"
    );
}

#[tokio::test(start_paused = true)]
async fn forced_down_holds_even_when_an_open_breaker_would_probe() {
    let (a, r) = a_opened_b_answers().await;
    assert_eq!(r.engine.provider_status("a").unwrap().1, BreakerState::Open);
    let mut record = shared_open("a", "operator");
    record.open_count = 1;
    record.forced = Some(ai_failover::contract::Forced {
        status: ai_failover::contract::ForcedStatus::Down,
        until: None,
        reason: None,
    });
    r.engine.apply_shared(&record);
    // Long past the open period, where the breaker alone would admit a half-open probe.
    tokio::time::advance(Duration::from_millis(5_000)).await;
    let res = done(&r.engine, job("X")).await;
    assert_eq!(res.provider.as_deref(), Some("b"));
    assert_eq!(a.calls(), 1, "no probe slips past an operator's `down`");
}

#[tokio::test(start_paused = true)]
async fn other_kinds_get_an_analysis_from_the_fallback() {
    let a = Fake::new("a", Step::Fail(ErrorClass::ServerError, FAST));
    let r = rig(cfg(&[("a", &["a1"])], NO_HEDGE), &[a]);
    let mut j = job("X");
    j.request.kind = Kind::Risk;
    let res = done(&r.engine, j).await;
    assert_eq!(res.source, Source::Fallback);
    assert!(res.signal.is_none());
    assert_eq!(res.analysis.unwrap()["method"], "rule_based_fallback");
}

#[tokio::test(start_paused = true)]
async fn calls_cut_short_by_their_own_deadline_never_open_a_breaker() {
    // Overload: the provider answers, slowly (2 s), and every request has 1 s left.
    let a = Fake::new("a", Step::Ok(Duration::from_secs(2)));
    let r = rig(
        cfg(
            &[("a", &["a1"])],
            &format!("{NO_HEDGE}[breaker]\nconsecutive_failures = 2\n"),
        ),
        std::slice::from_ref(&a),
    );
    for i in 0..10 {
        let mut j = job(&format!("S{i}"));
        j.request.deadline_ms = Some(1_000);
        let res = done(&r.engine, j).await;
        assert_eq!(res.status, Status::Degraded);
        assert!(
            res.attempts
                .iter()
                .all(|a| a.outcome == ErrorClass::DeadlineExceeded.into()),
            "cut by the request, not a provider timeout: {:?}",
            res.attempts
        );
    }
    // A cut call says the provider needs more than the time it had: after the first, no
    // call is started that would be cut again.
    assert_eq!(a.calls(), 1);
    assert_eq!(
        r.engine.provider_status("a").unwrap(),
        (HealthStatus::Healthy, BreakerState::Closed)
    );
    // With time to wait, the same provider answers.
    let res = done(&r.engine, job("LATER")).await;
    assert_eq!(res.status, Status::Ok);
}

/// A fleet that has learnt: `a` always right, `b` rarely, `c` half the time.
struct Learnt;

#[async_trait::async_trait]
impl ai_failover::engine::ports::Fleet for Learnt {
    fn quality(
        &self,
        provider: &str,
        _kind: ai_failover::contract::Kind,
    ) -> ai_failover::engine::quality::Evidence {
        let hits = match provider {
            "a" => 200.0,
            "b" => 20.0,
            _ => 100.0,
        };
        ai_failover::engine::quality::Evidence { n: 200.0, hits }
    }
}

#[tokio::test(start_paused = true)]
async fn the_quality_strategy_never_routes_past_a_quarantine() {
    let a = Fake::new("a", Step::Ok(FAST));
    let (b, c) = (
        Fake::new("b", Step::Ok(FAST)),
        Fake::new("c", Step::Ok(FAST)),
    );
    // In the configuration's order: `a` has the lowest priority.
    let providers: Vec<Arc<dyn Provider>> = vec![c.clone(), b.clone(), a.clone()];
    let extra = "[engine]\nhedging = false\nstrategy = \"quality\"\n";
    let engine = Engine::new(
        Arc::new(cfg(
            &[("c", &["c1"]), ("b", &["b1"]), ("a", &["a1"])],
            extra,
        )),
        providers,
        Arc::new(SystemClock),
        Arc::new(Recorder::default()),
        Arc::new(Learnt),
        "w-test",
    )
    .with_seed(3);
    let mut by = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..40 {
        *by.entry(answered_by(&engine).await.unwrap()).or_default() += 1;
    }
    // The best record leads whatever its priority; each other provider explores 1 in 20.
    assert_eq!(by.get("a"), Some(&36), "{by:?}");
    assert_eq!((by.get("b"), by.get("c")), (Some(&2), Some(&2)), "{by:?}");

    // Once `a` is quarantined, the quality strategy never routes to it, however good it was.
    a.fail_with(Some(ErrorClass::Auth));
    let before = a.calls();
    while a.calls() == before {
        done(&engine, job("X")).await;
    }
    let calls = a.calls();
    let mut after = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..40 {
        *after
            .entry(answered_by(&engine).await.unwrap())
            .or_default() += 1;
    }
    assert_eq!(
        a.calls(),
        calls,
        "a quarantined provider is not called: {after:?}"
    );
    assert!(
        after.get("c") > after.get("b"),
        "the next best leads: {after:?}"
    );
}
