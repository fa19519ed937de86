//! Chaos: requests flow through three worker processes while workers are SIGKILLed and
//! restarted at random and providers fail at random. Every request gets exactly one stored
//! result; successful (billed) provider calls per request prove nobody was paid twice except
//! requests in flight at a kill, which are counted and reported.
//!
//! Short by default; `CHAOS_REQUESTS=3000 scripts/chaos.sh` for the long run.
// Tests may panic: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::process::{Child, Command};
use std::time::Duration;

use ai_failover::config::Api;
use ai_failover::contract::{Names, Status};
use ai_failover::simulator::{CallOutcome, ErrorRates, Faults, Latency};
use async_nats::jetstream;
use common::fleet;
use common::nats::NatsServer;
use rand::{Rng, SeedableRng};

const PROVIDERS: &[(&str, Api)] = &[
    ("alpha", Api::Openai),
    ("beta", Api::Anthropic),
    ("gamma", Api::Gemini),
];

/// Worker `id` as a process, logging into `<dir>/<id>.log`.
fn spawn(config: &std::path::Path, id: &str) -> Child {
    let log = config.with_file_name(format!("{id}.log"));
    fleet::worker_process(config, id, &log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_and_provider_faults_lose_nothing_and_pay_twice_only_at_a_kill() {
    let n: usize = std::env::var("CHAOS_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let server = NatsServer::start();
    let sim = fleet::simulator(PROVIDERS).await;
    let faulty = |rate: f64, min: u64, max: u64| Faults {
        error_rate: ErrorRates {
            server_error: rate,
            ..Default::default()
        },
        latency_ms: Some(Latency::Uniform { min, max }),
        seed: Some(11),
        ..Faults::default()
    };
    sim.set_faults("alpha", faulty(0.15, 20, 150)).unwrap();
    sim.set_faults("beta", faulty(0.10, 20, 100)).unwrap();
    sim.set_faults("gamma", faulty(0.0, 10, 60)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("chaos.toml");
    let extra = "[worker]\nack_wait_ms = 2000\nmax_deliver = 20\n[breaker]\nopen_ms = 500\nmax_open_ms = 2000\n";
    std::fs::write(
        &config,
        fleet::config_toml(&server.url(), &sim, PROVIDERS, dir.path(), extra),
    )
    .unwrap();

    let mut workers: Vec<Child> = (0..3)
        .map(|i| spawn(&config, &format!("chaos-{i}")))
        .collect();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(client);
    let names = Names::default();
    // Wait for the first worker to create the streams.
    common::eventually(Duration::from_secs(20), "the streams", async || {
        js.get_stream("AI_REQUESTS").await.is_ok()
    })
    .await;

    let publisher = tokio::spawn({
        let js = js.clone();
        async move {
            let mut ids = Vec::new();
            for i in 0..n {
                let r = fleet::request(&format!("C{}", i % 7));
                fleet::publish(&js, &names, &r).await;
                ids.push(r.request_id);
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
            ids
        }
    });
    let mut rng = rand::rngs::StdRng::seed_from_u64(1234);
    let mut kills = 0;
    let mut generation = 3;
    while !publisher.is_finished() {
        tokio::time::sleep(Duration::from_millis(rng.random_range(600..1_400))).await;
        let victim = rng.random_range(0..workers.len());
        workers[victim].kill().unwrap();
        workers[victim].wait().unwrap();
        kills += 1;
        workers[victim] = spawn(&config, &format!("chaos-{generation}"));
        generation += 1;
    }
    let ids = publisher.await.unwrap();
    let results = fleet::await_results(&js, &ids, Duration::from_secs(120)).await;

    let mut statuses: HashMap<Status, usize> = HashMap::new();
    for id in &ids {
        assert_eq!(
            results[id].len(),
            1,
            "{id} has {} stored results",
            results[id].len()
        );
        *statuses.entry(results[id][0].status).or_default() += 1;
    }
    let mut billed: HashMap<String, usize> = HashMap::new();
    for call in sim
        .log()
        .into_iter()
        .filter(|c| !c.probe && c.outcome == CallOutcome::Ok)
    {
        if let Some(id) = call.request_id {
            *billed.entry(id).or_default() += 1;
        }
    }
    let paid_twice = ids
        .iter()
        .filter(|id| billed.get(*id).copied().unwrap_or(0) > 1)
        .count();
    println!(
        "chaos: {n} requests, {kills} SIGKILLs, statuses {statuses:?}, paid twice: {paid_twice} \
         (only requests in flight at a kill may be)"
    );
    // At most the requests a killed worker held in flight can be paid again.
    assert!(
        paid_twice <= kills * 64,
        "{paid_twice} requests paid twice after {kills} kills"
    );
    assert!(kills >= 2, "the run was long enough to kill workers");
    for mut w in workers {
        let _ = Command::new("kill")
            .args(["-TERM", &w.id().to_string()])
            .status();
        let _ = w.wait();
    }
    // Every worker's log, killed ones included, at debug level: no API key.
    for g in 0..generation {
        common::logs::assert_not_in_file(
            &dir.path().join(format!("chaos-{g}.log")),
            fleet::CANARY_KEY,
        );
    }
}
