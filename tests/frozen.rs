//! A frozen worker (SIGSTOP: a GC-like pause, a stalled VM) holding requests for longer than
//! the ack wait: another worker takes them over, and when the frozen one thaws and finishes,
//! its late results are fenced off by the outcome's compare-and-set and published nowhere.
// Tests may panic: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::process::{Child, Command};
use std::time::Duration;

use ai_failover::config::Api;
use ai_failover::contract::{AnalysisResult, Names, OutcomeRecord};
use ai_failover::simulator::{Faults, Latency};
use async_nats::jetstream;
use common::control::{metric, wait_ready};
use common::fleet;
use common::nats::{NatsServer, free_port};
use futures::StreamExt;

const PROVIDERS: &[(&str, Api)] = &[("alpha", Api::Openai), ("beta", Api::Anthropic)];
const N: usize = 12;

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thawed_worker_publishes_nothing_and_its_late_calls_are_counted() {
    let server = NatsServer::start();
    let sim = fleet::simulator(PROVIDERS).await;
    // Slow enough that the first worker is mid-call on every request when it freezes.
    for (name, _) in PROVIDERS {
        let faults = Faults {
            latency_ms: Some(Latency::Fixed(1_500)),
            ..Faults::default()
        };
        sim.set_faults(name, faults).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("frozen.toml");
    let extra = "[worker]\nack_wait_ms = 2000\nmax_deliver = 20\n[engine]\nhedging = false\n";
    std::fs::write(
        &config,
        fleet::config_toml(&server.url(), &sim, PROVIDERS, dir.path(), extra),
    )
    .unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut frozen = fleet::worker_process_with(
        &config,
        "frozen",
        &dir.path().join("frozen.log"),
        &[("AI_FAILOVER_WORKER__HTTP_LISTEN", &listen)],
    );
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(client.clone());
    let names = Names::default();
    wait_ready(&listen).await;
    // Every publish to the results subject, as a live (core) subscriber sees it.
    let mut live = client.subscribe(names.results_filter()).await.unwrap();
    client.flush().await.unwrap();

    let mut ids = Vec::new();
    for i in 0..N {
        let r = fleet::request(&format!("F{i}"));
        fleet::publish(&js, &names, &r).await;
        ids.push(r.request_id);
    }
    // Freeze it once it has claimed every request (and so is calling the providers).
    let outcomes = js.get_key_value(names.outcomes_bucket()).await.unwrap();
    common::eventually(
        Duration::from_secs(20),
        "every request claimed",
        async || {
            let mut claimed = 0;
            for id in &ids {
                if let Ok(Some(b)) = outcomes.get(id).await
                    && matches!(
                        serde_json::from_slice::<OutcomeRecord>(&b),
                        Ok(OutcomeRecord::InProgress { .. })
                    )
                {
                    claimed += 1;
                }
            }
            claimed == N
        },
    )
    .await;
    signal(&frozen, "-STOP");

    // Another worker takes them over once the claims go stale, and answers all of them.
    let mut rescuer = fleet::worker_process(&config, "rescuer", &dir.path().join("rescuer.log"));
    let results = fleet::await_results(&js, &ids, Duration::from_secs(60)).await;
    for id in &ids {
        assert_eq!(results[id].len(), 1, "{id}");
        assert_eq!(results[id][0].worker_id, "rescuer");
    }

    // Thaw: the frozen worker finishes every call it had in flight, and is fenced off.
    signal(&frozen, "-CONT");
    common::eventually(
        Duration::from_secs(30),
        "the thawed worker to discard every late result",
        async || metric(&listen, "ai_failover_fenced_total").await as usize == N,
    )
    .await;
    let fenced_calls = metric(&listen, "ai_failover_fenced_calls_total").await as usize;

    // Exactly one delivery per request reached live subscribers: the rescuer's.
    let mut seen: HashMap<String, usize> = HashMap::new();
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(500), live.next()).await {
        let r: AnalysisResult = serde_json::from_slice(&msg.payload).unwrap();
        assert_eq!(r.worker_id, "rescuer", "the thawed worker published {r:?}");
        *seen.entry(r.request_id).or_default() += 1;
    }
    for id in &ids {
        assert_eq!(seen.get(id), Some(&1), "{id}: {seen:?}");
    }
    // Each stored result still has exactly one copy.
    let again = fleet::await_results(&js, &ids, Duration::from_secs(10)).await;
    assert!(again.values().all(|r| r.len() == 1));
    // The calls paid twice are counted: at least every call beyond the rescuer's own.
    let rescuer_calls: usize = ids.iter().map(|id| results[id][0].attempts.len()).sum();
    let all_calls = sim
        .log()
        .into_iter()
        .filter(|c| !c.probe && c.request_id.as_ref().is_some_and(|id| ids.contains(id)))
        .count();
    assert!(
        fenced_calls >= all_calls - rescuer_calls,
        "fenced calls {fenced_calls} < extra calls {}",
        all_calls - rescuer_calls
    );
    assert!(
        fenced_calls >= N,
        "every frozen request had a call in flight"
    );
    for w in [&mut frozen, &mut rescuer] {
        let _ = w.kill();
        let _ = w.wait();
    }
}
