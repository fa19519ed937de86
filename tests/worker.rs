//! The worker fleet against a real nats-server and the provider simulator (real HTTP).
// Tests may panic: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ai_failover::bus::runtime::{self, Running};
use ai_failover::config::{Api, Config};
use ai_failover::contract::{
    AnalysisResult, BreakerState, DeadLetterClass, FailoverEvent, HealthEvent, Mode, ModeEvent,
    Names, Source, Status,
};
use ai_failover::simulator::{Faults, SimHandle};
use async_nats::jetstream;
use common::fleet::{self, CANARY_KEY};
use common::logs;
use common::nats::NatsServer;

const TWO: &[(&str, Api)] = &[("alpha", Api::Openai), ("beta", Api::Anthropic)];

struct Rig {
    server: NatsServer,
    sim: SimHandle,
    cfg: Config,
    js: jetstream::Context,
    names: Names,
    _keys: tempfile::TempDir,
}

async fn rig(providers: &[(&str, Api)], extra: &str) -> Rig {
    let server = NatsServer::start();
    let sim = fleet::simulator(providers).await;
    let keys = tempfile::tempdir().unwrap();
    let cfg = fleet::config(&server.url(), &sim, providers, keys.path(), extra);
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(client);
    Rig {
        names: Names::new(cfg.nats.prefix.clone()),
        server,
        sim,
        cfg,
        js,
        _keys: keys,
    }
}

impl Rig {
    async fn worker(&self, id: &str) -> Running {
        let mut cfg = self.cfg.clone();
        cfg.worker.id = Some(id.into());
        runtime::start(Arc::new(cfg), None)
            .await
            .expect("worker starts")
    }

    async fn send(&self, n: usize, prefix: &str) -> Vec<String> {
        let mut ids = Vec::new();
        for i in 0..n {
            let r = fleet::request(&format!("{prefix}{}", i % 5));
            fleet::publish(&self.js, &self.names, &r).await;
            ids.push(r.request_id);
        }
        ids
    }

    fn calls(&self, provider: &str) -> u64 {
        self.sim.calls().get(provider).map_or(0, |c| c.total)
    }
}

/// A worker as its own process (so it can be SIGKILLed or SIGTERMed), with alpha slowed to
/// `alpha_ms` per call so requests are in flight when the test acts.
fn slow_alpha_worker_process(
    rig: &Rig,
    extra: &str,
    alpha_ms: u64,
    id: &str,
    dir: &std::path::Path,
) -> std::process::Child {
    rig.sim
        .set_faults(
            "alpha",
            Faults {
                latency_ms: Some(ai_failover::simulator::Latency::Fixed(alpha_ms)),
                ..Faults::default()
            },
        )
        .unwrap();
    let path = dir.join("worker.toml");
    std::fs::write(
        &path,
        fleet::config_toml(&rig.server.url(), &rig.sim, TWO, dir, extra),
    )
    .unwrap();
    fleet::worker_process(&path, id, &dir.join("worker.log"))
}

fn exactly_one(results: &HashMap<String, Vec<AnalysisResult>>, ids: &[String]) {
    for id in ids {
        assert_eq!(
            results[id].len(),
            1,
            "request {id} has {} stored results",
            results[id].len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_the_load_and_every_request_gets_one_result() {
    let rig = rig(TWO, "").await;
    rig.sim
        .set_faults(
            "alpha",
            Faults {
                latency_ms: Some(ai_failover::simulator::Latency::Fixed(30)),
                ..Faults::default()
            },
        )
        .unwrap();
    let w1 = rig.worker("w1").await;
    let w2 = rig.worker("w2").await;
    let ids = rig.send(60, "SYM").await;
    let results = fleet::await_results(&rig.js, &ids, Duration::from_secs(30)).await;
    exactly_one(&results, &ids);
    let mut by_worker: HashMap<String, usize> = HashMap::new();
    for r in results.values().flatten() {
        assert_eq!(r.status, Status::Ok, "{r:?}");
        assert_eq!(r.provider.as_deref(), Some("alpha"));
        *by_worker.entry(r.worker_id.clone()).or_default() += 1;
    }
    assert_eq!(by_worker.len(), 2, "both workers served: {by_worker:?}");
    // One provider call per request.
    assert_eq!(rig.calls("alpha"), 60);
    w1.stop().await;
    w2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_mid_run_fails_over_with_events_and_a_breaker() {
    let rig = rig(TWO, "[engine]\nhedging = false\n").await;
    let w = rig.worker("w1").await;
    let before = rig.send(5, "PRE").await;
    let results = fleet::await_results(&rig.js, &before, Duration::from_secs(20)).await;
    assert!(
        results
            .values()
            .flatten()
            .all(|r| r.provider.as_deref() == Some("alpha"))
    );

    rig.sim.start_outage("alpha", None).unwrap();
    let during = rig.send(20, "OUT").await;
    let results = fleet::await_results(&rig.js, &during, Duration::from_secs(30)).await;
    exactly_one(&results, &during);
    for r in results
        .values()
        .flatten()
        .filter(|r| during.contains(&r.request_id))
    {
        assert_eq!(r.status, Status::Ok, "{r:?}");
        assert_eq!(r.provider.as_deref(), Some("beta"));
    }
    // Requests already in flight when the outage began each tried alpha once (no retries on
    // alpha while beta could serve); once the breaker is open alpha is not called at all.
    let alpha_calls = rig.calls("alpha");
    assert!(alpha_calls <= 5 + 20, "alpha called {alpha_calls} times");
    let later = rig.send(10, "LATER").await;
    fleet::await_results(&rig.js, &later, Duration::from_secs(20)).await;
    assert_eq!(
        rig.calls("alpha"),
        alpha_calls,
        "alpha called while its breaker was open"
    );

    common::eventually(
        Duration::from_secs(10),
        "failover, health and mode events",
        async || {
            let events: Vec<serde_json::Value> = fleet::stored(&rig.js, "AI_EVENTS").await;
            let failovers = events.iter().filter(|e| e.get("from").is_some()).count();
            let opened = events.iter().any(|e| {
                serde_json::from_value::<HealthEvent>(e.clone())
                    .is_ok_and(|h| h.provider == "alpha" && h.breaker == BreakerState::Open)
            });
            // The mode is re-derived each second: its event follows the breaker's.
            let degraded = events.iter().any(|e| {
                serde_json::from_value::<ModeEvent>(e.clone())
                    .is_ok_and(|m| m.mode == Mode::Degraded)
            });
            // Two requests fail over; the third failure that opens the breaker may be the
            // prober's free verdict probe rather than a third paid call.
            failovers >= 2 && opened && degraded
        },
    )
    .await;
    let events: Vec<serde_json::Value> = fleet::stored(&rig.js, "AI_EVENTS").await;
    let f: FailoverEvent = events
        .iter()
        .find_map(|e| serde_json::from_value(e.clone()).ok())
        .expect("a failover event");
    assert_eq!(f.from.provider, "alpha");
    assert_eq!(f.to.unwrap().provider, "beta");
    let mode: Vec<ModeEvent> = events
        .iter()
        .filter_map(|e| serde_json::from_value(e.clone()).ok())
        .collect();
    assert!(mode.iter().any(|m| m.mode == Mode::Degraded), "{mode:?}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_opened_on_one_worker_is_obeyed_by_the_other() {
    let rig = rig(TWO, "[engine]\nhedging = false\n").await;
    let w1 = rig.worker("w1").await;
    let w2 = rig.worker("w2").await;
    rig.sim.start_outage("alpha", None).unwrap();
    // Drive failures through w1's engine only, on requests that may use alpha alone (a
    // provider one failure from opening is otherwise tried after the others).
    for i in 0..3 {
        let mut request = fleet::request(&format!("W1{i}"));
        request.providers = Some(vec!["alpha".into()]);
        let job = ai_failover::engine::Job {
            request,
            published_at: chrono::Utc::now(),
            tenant: Default::default(),
        };
        w1.engine.handle(job).await;
    }
    assert_eq!(
        w1.engine.provider_status("alpha").unwrap().1,
        BreakerState::Open
    );
    common::eventually(
        Duration::from_secs(5),
        "w2 to adopt alpha's open breaker",
        async || w2.engine.provider_status("alpha").unwrap().1 == BreakerState::Open,
    )
    .await;
    let alpha_calls = rig.calls("alpha");
    let ids = rig.send(10, "AFTER").await;
    let results = fleet::await_results(&rig.js, &ids, Duration::from_secs(20)).await;
    assert!(
        results
            .values()
            .flatten()
            .all(|r| r.provider.as_deref() == Some("beta"))
    );
    assert_eq!(
        rig.calls("alpha"),
        alpha_calls,
        "nobody called alpha while it was open"
    );
    w1.stop().await;
    w2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_request_gets_one_result_and_one_provider_call() {
    let rig = rig(TWO, "").await;
    let w = rig.worker("w1").await;
    let r = fleet::request("DUP");
    // Same Msg-Id twice: the stream drops the second.
    fleet::publish(&rig.js, &rig.names, &r).await;
    fleet::publish(&rig.js, &rig.names, &r).await;
    let ids = vec![r.request_id.clone()];
    fleet::await_results(&rig.js, &ids, Duration::from_secs(20)).await;
    // Same request id under another Msg-Id (a publisher that lost its dedup state): the
    // stored outcome answers it; no second provider call, no second stored result.
    fleet::publish_raw(
        &rig.js,
        rig.names.request(r.kind),
        "another-msg-id",
        serde_json::to_vec(&r).unwrap(),
    )
    .await;
    common::eventually(
        Duration::from_secs(10),
        "the replay to be acked",
        async || {
            let mut c = rig.js.get_stream("AI_REQUESTS").await.unwrap();
            c.info().await.unwrap().state.messages == 0
        },
    )
    .await;
    let results = fleet::await_results(&rig.js, &ids, Duration::from_secs(5)).await;
    assert_eq!(results[&r.request_id].len(), 1);
    let calls = rig.sim.calls();
    assert_eq!(calls["alpha"].by_request_id.get(&r.request_id), Some(&1));
    assert_eq!(calls["alpha"].total, 1);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_are_dead_lettered_and_the_worker_keeps_serving() {
    let rig = rig(TWO, "[worker]\n").await;
    let w = rig.worker("w1").await;
    let subject = rig.names.request(ai_failover::contract::Kind::Signal);
    fleet::publish_raw(&rig.js, subject.clone(), "bad-1", b"{not json".to_vec()).await;
    fleet::publish_raw(
        &rig.js,
        subject.clone(),
        "bad-2",
        br#"{"request_id":"ok-id","kind":"signal"}"#.to_vec(),
    )
    .await;
    let big = format!(
        r#"{{"request_id":"big","kind":"signal","symbol":"X","prompt":"{}"}}"#,
        "x".repeat(300 * 1024)
    );
    fleet::publish_raw(&rig.js, subject.clone(), "bad-3", big.into_bytes()).await;
    fleet::publish_raw(
        &rig.js,
        rig.names.request(ai_failover::contract::Kind::Risk),
        "bad-4",
        br#"{"request_id":"mismatch","kind":"signal","symbol":"X"}"#.to_vec(),
    )
    .await;
    let good = rig.send(3, "GOOD").await;
    fleet::await_results(&rig.js, &good, Duration::from_secs(20)).await;
    common::eventually(Duration::from_secs(10), "four dead letters", async || {
        fleet::dead_letters(&rig.js).await.len() == 4
    })
    .await;
    let mut classes: Vec<DeadLetterClass> = fleet::dead_letters(&rig.js)
        .await
        .iter()
        .map(|d| d.error.class)
        .collect();
    classes.sort_by_key(|c| c.as_str());
    assert_eq!(
        classes,
        vec![
            DeadLetterClass::InvalidJson,
            DeadLetterClass::InvalidRequest,
            DeadLetterClass::InvalidRequest,
            DeadLetterClass::TooLarge
        ]
    );
    // Nothing is left in the queue: bad messages were terminated, not retried.
    let mut s = rig.js.get_stream("AI_REQUESTS").await.unwrap();
    assert_eq!(s.info().await.unwrap().state.messages, 0);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_cannot_make_a_worker_publish_outside_the_reply_prefixes() {
    use futures::StreamExt;
    let rig = rig(TWO, "").await;
    let w = rig.worker("w1").await;
    let client = async_nats::connect(rig.server.url()).await.unwrap();
    let hostile = [
        "$KV.ai_provider_health.alpha",
        "ai.events.mode",
        "desk.replies.x",
    ];
    let mut spies = Vec::new();
    for subject in hostile {
        spies.push(client.subscribe(subject).await.unwrap());
    }
    let inbox = client.new_inbox();
    let mut mine = client.subscribe(inbox.clone()).await.unwrap();
    client.flush().await.unwrap();
    for (i, subject) in hostile.iter().enumerate() {
        let mut r = fleet::request("EVIL");
        r.request_id = format!("hostile-{i}");
        r.reply_to = Some(subject.to_string());
        fleet::publish(&rig.js, &rig.names, &r).await;
    }
    let mut good = fleet::request("GOOD");
    good.reply_to = Some(inbox);
    fleet::publish(&rig.js, &rig.names, &good).await;

    let reply = tokio::time::timeout(Duration::from_secs(20), mine.next())
        .await
        .expect("the allowed reply_to gets the result")
        .unwrap();
    let result: AnalysisResult = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(result.request_id, good.request_id);
    common::eventually(Duration::from_secs(10), "three dead letters", async || {
        fleet::dead_letters(&rig.js).await.len() == 3
    })
    .await;
    for d in fleet::dead_letters(&rig.js).await {
        assert_eq!(d.error.class, DeadLetterClass::InvalidRequest);
        assert!(d.error.message.contains("reply_to"), "{}", d.error.message);
        assert!(d.request_id.unwrap().starts_with("hostile-"));
    }
    // Dead-lettered, so never answered: no result reached the hostile subjects (the health
    // record and mode events go on being written there by the fleet itself).
    for (spy, subject) in spies.iter_mut().zip(hostile) {
        while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(300), spy.next()).await {
            let text = String::from_utf8_lossy(&m.payload);
            assert!(
                !text.contains("hostile-"),
                "a result reached {subject}: {text}"
            );
        }
    }
    // The health record is still a health record.
    let kv = rig.js.get_key_value("ai_provider_health").await.unwrap();
    if let Some(bytes) = kv.get("alpha").await.unwrap() {
        serde_json::from_slice::<ai_failover::contract::ProviderHealthRecord>(&bytes)
            .expect("alpha's record was not overwritten");
    }
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_worker_writes_out_its_last_spend_and_health() {
    let rig = rig(TWO, "").await;
    let w = rig.worker("w1").await;
    let ids = rig.send(20, "LAST").await;
    fleet::await_results(&rig.js, &ids, Duration::from_secs(20)).await;
    // At once: the spend of these calls is still queued or batched for the next flush.
    w.stop().await;
    let budget = rig.js.get_key_value("ai_budget").await.unwrap();
    let key = format!("alpha.{}", chrono::Utc::now().format("%Y-%m-%d"));
    let bytes = budget
        .get(&key)
        .await
        .unwrap()
        .expect("alpha's spend was written");
    let spent: ai_failover::contract::BudgetRecord = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(spent.calls, 20, "{spent:?}");
    assert!(spent.spend_usd > 0.0);
    let health = rig.js.get_key_value("ai_provider_health").await.unwrap();
    let bytes = health.get("alpha").await.unwrap().expect("alpha's record");
    let record: ai_failover::contract::ProviderHealthRecord =
        serde_json::from_slice(&bytes).unwrap();
    assert!(
        record.window.calls > 0 && record.success_rate == 1.0,
        "{record:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_providers_down_gives_marked_fallback_results_and_mode_events() {
    let rig = rig(
        TWO,
        "[engine]\nhedging = false\n[worker]\nmax_deliver = 2\n",
    )
    .await;
    rig.sim.start_outage("alpha", None).unwrap();
    rig.sim.start_outage("beta", None).unwrap();
    let w = rig.worker("w1").await;
    let ids = rig.send(10, "DOWN").await;
    let results = fleet::await_results(&rig.js, &ids, Duration::from_secs(40)).await;
    for r in results.values().flatten() {
        assert_eq!(r.status, Status::Degraded, "{r:?}");
        assert!(matches!(r.source, Source::Fallback | Source::Cache));
        assert!(r.signal.as_ref().unwrap().confidence <= rig.cfg.engine.fallback_max_confidence);
        assert!(r.error.is_some());
    }
    common::eventually(Duration::from_secs(5), "a minimal-mode event", async || {
        let events: Vec<serde_json::Value> = fleet::stored(&rig.js, "AI_EVENTS").await;
        events
            .iter()
            .filter_map(|e| serde_json::from_value::<ModeEvent>(e.clone()).ok())
            .any(|m| m.mode == Mode::Minimal)
    })
    .await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_nats_server_loses_nothing() {
    let mut rig = rig(TWO, "").await;
    let w = rig.worker("w1").await;
    let first = rig.send(10, "BEFORE").await;
    fleet::await_results(&rig.js, &first, Duration::from_secs(20)).await;
    rig.server.restart();
    // The worker reconnects by itself; requests published after the restart are served.
    let second = rig.send(10, "AFTER").await;
    let mut all = first.clone();
    all.extend(second);
    let results = fleet::await_results(&rig.js, &all, Duration::from_secs(60)).await;
    exactly_one(&results, &all);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_workers_consumer_is_recreated_and_nothing_is_lost() {
    let rig = rig(TWO, "").await;
    let w = rig.worker("w1").await;
    let first = rig.send(5, "BEFORE").await;
    fleet::await_results(&rig.js, &first, Duration::from_secs(20)).await;
    // An operator's mistake: the shared consumer is deleted under the running worker.
    let requests = rig.js.get_stream("AI_REQUESTS").await.unwrap();
    requests.delete_consumer("workers").await.unwrap();
    let second = rig.send(5, "AFTER").await;
    let results = fleet::await_results(&rig.js, &second, Duration::from_secs(30)).await;
    exactly_one(&results, &second);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_key_never_leaks_into_results_events_kv_or_dead_letters() {
    let rig = rig(TWO, "[engine]\nhedging = false\n").await;
    rig.sim
        .set_faults(
            "alpha",
            Faults {
                error_rate: ai_failover::simulator::ErrorRates {
                    auth: 1.0,
                    ..Default::default()
                },
                ..Faults::default()
            },
        )
        .unwrap();
    let w = rig.worker("w1").await;
    let ids = rig.send(5, "KEY").await;
    fleet::publish_raw(
        &rig.js,
        rig.names.request(ai_failover::contract::Kind::Signal),
        "dl",
        b"nope".to_vec(),
    )
    .await;
    fleet::await_results(&rig.js, &ids, Duration::from_secs(20)).await;
    common::eventually(
        Duration::from_secs(5),
        "the quarantine to reach KV",
        async || {
            let kv = rig.js.get_key_value("ai_provider_health").await.unwrap();
            kv.get("alpha")
                .await
                .unwrap()
                .is_some_and(|v| String::from_utf8_lossy(&v).contains("\"quarantined\":true"))
        },
    )
    .await;
    let mut everything = String::new();
    for stream in [
        "AI_RESULTS",
        "AI_EVENTS",
        "AI_DEADLETTER",
        "KV_ai_provider_health",
        "KV_ai_outcomes",
        "KV_ai_budget",
        "KV_ai_decision_cache",
    ] {
        for v in fleet::stored::<serde_json::Value>(&rig.js, stream).await {
            everything.push_str(&v.to_string());
        }
    }
    assert!(
        everything.contains("quarantined"),
        "the check looked at real data"
    );
    assert!(!everything.contains(CANARY_KEY), "the API key leaked");
    assert!(!everything.contains("CANARY"), "part of the API key leaked");
    w.stop().await;
    // And not in a log line, even at debug level.
    assert!(
        logs::logged("quarantined"),
        "the check looked at real log lines"
    );
    logs::assert_not_logged("CANARY");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_request_loses_nothing() {
    let extra = "[worker]\nack_wait_ms = 2000\n[engine]\nhedging = false\n";
    let rig = rig(TWO, extra).await;
    let dir = tempfile::tempdir().unwrap();
    let mut victim = slow_alpha_worker_process(&rig, extra, 1_500, "victim", dir.path());
    let ids = rig.send(4, "KILL").await;
    common::eventually(
        Duration::from_secs(20),
        "the victim to be mid-call",
        async || rig.calls("alpha") >= 4,
    )
    .await;
    victim.kill().expect("SIGKILL the worker");
    victim.wait().unwrap();
    let survivor = rig.worker("survivor").await;
    let results = fleet::await_results(&rig.js, &ids, Duration::from_secs(30)).await;
    exactly_one(&results, &ids);
    for r in results.values().flatten() {
        assert_eq!(r.status, Status::Ok);
        assert_eq!(r.worker_id, "survivor", "the killed worker never finished");
    }
    // Requests in flight at the kill were paid at most twice, never more.
    let calls = rig.sim.calls();
    for id in &ids {
        let n = calls["alpha"].by_request_id.get(id).copied().unwrap_or(0);
        assert!((1..=2).contains(&n), "{id} called {n} times");
    }
    survivor.stop().await;
    logs::assert_not_in_file(&dir.path().join("worker.log"), CANARY_KEY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_then_exits() {
    let extra = "[engine]\nhedging = false\n";
    let rig = rig(TWO, extra).await;
    let dir = tempfile::tempdir().unwrap();
    let mut worker = slow_alpha_worker_process(&rig, extra, 1_000, "draining", dir.path());
    let ids = rig.send(3, "TERM").await;
    common::eventually(
        Duration::from_secs(20),
        "three requests in flight",
        async || rig.calls("alpha") >= 3,
    )
    .await;
    let term = std::process::Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = tokio::task::spawn_blocking(move || worker.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "a drained worker exits cleanly: {status}");
    // Everything it had taken was finished before it left: no other worker ran.
    let results = fleet::await_results(&rig.js, &ids, Duration::from_secs(5)).await;
    exactly_one(&results, &ids);
    assert!(
        results
            .values()
            .flatten()
            .all(|r| r.worker_id == "draining" && r.status == Status::Ok)
    );
    let mut s = rig.js.get_stream("AI_REQUESTS").await.unwrap();
    assert_eq!(
        s.info().await.unwrap().state.messages,
        0,
        "nothing left unacknowledged"
    );
    logs::assert_not_in_file(&dir.path().join("worker.log"), CANARY_KEY);
}
