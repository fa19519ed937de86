//! Clock skew: workers whose clocks are 5 s ahead of and behind the NATS server's judge
//! deadlines on the server's time (JetStream publish stamps and a measured offset), so no
//! fresh request is expired and no stale one is paid for.
// Tests may panic: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Child;
use std::time::Duration;

use ai_failover::config::Api;
use ai_failover::contract::{AnalysisRequest, Names, Status};
use async_nats::jetstream;
use common::control::{metric, wait_ready};
use common::fleet;
use common::nats::{NatsServer, free_port};

const PROVIDERS: &[(&str, Api)] = &[("alpha", Api::Openai)];

/// A worker process whose clock is `skew_ms` off, ready to consume; and its HTTP port.
async fn skewed_worker(config: &std::path::Path, id: &str, skew_ms: i64) -> (Child, String) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let skew = skew_ms.to_string();
    let child = fleet::worker_process_with(
        config,
        id,
        &config.with_file_name(format!("{id}.log")),
        &[
            ("AI_FAILOVER_WORKER__HTTP_LISTEN", &listen),
            ("AI_FAILOVER_CLOCK_OFFSET_MS", &skew),
        ],
    );
    wait_ready(&listen).await;
    (child, listen)
}

/// The correction the worker measured, from its `/metrics`.
async fn correction(listen: &str) -> f64 {
    metric(listen, "ai_failover_clock_correction_ms").await
}

fn requests(n: usize, tag: &str, deadline_ms: u64) -> Vec<AnalysisRequest> {
    (0..n)
        .map(|i| {
            let mut r = fleet::request(&format!("{tag}{i}"));
            r.deadline_ms = Some(deadline_ms);
            r
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skewed_workers_judge_deadlines_on_the_servers_time() {
    let server = NatsServer::start();
    let sim = fleet::simulator(PROVIDERS).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("skew.toml");
    std::fs::write(
        &config,
        fleet::config_toml(&server.url(), &sim, PROVIDERS, dir.path(), ""),
    )
    .unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(client);
    let names = Names::default();

    // 5 s ahead: fresh requests with 3 s deadlines look 5 s old to its own clock.
    let (mut ahead, listen) = skewed_worker(&config, "ahead", 5_000).await;
    let measured = correction(&listen).await;
    assert!(
        (-5_300.0..=-4_700.0).contains(&measured),
        "measured {measured} ms, the skew is +5000"
    );
    let fresh = requests(10, "FRESH", 3_000);
    for r in &fresh {
        fleet::publish(&js, &names, r).await;
    }
    let ids: Vec<String> = fresh.iter().map(|r| r.request_id.clone()).collect();
    let results = fleet::await_results(&js, &ids, Duration::from_secs(30)).await;
    for id in &ids {
        assert_eq!(results[id][0].status, Status::Ok, "{:?}", results[id][0]);
    }
    let _ = ahead.kill();
    let _ = ahead.wait();

    // 5 s behind: requests that waited past their 1 s deadline look fresh to its own clock.
    let stale = requests(10, "STALE", 1_000);
    for r in &stale {
        fleet::publish(&js, &names, r).await;
    }
    // The fault shape itself: the requests age in the queue with no worker running.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let (mut behind, listen) = skewed_worker(&config, "behind", -5_000).await;
    let measured = correction(&listen).await;
    assert!(
        (4_700.0..=5_300.0).contains(&measured),
        "measured {measured} ms, the skew is -5000"
    );
    let ids: Vec<String> = stale.iter().map(|r| r.request_id.clone()).collect();
    let results = fleet::await_results(&js, &ids, Duration::from_secs(30)).await;
    for id in &ids {
        assert_eq!(
            results[id][0].status,
            Status::Expired,
            "{:?}",
            results[id][0]
        );
    }
    let paid = sim
        .log()
        .into_iter()
        .filter(|c| !c.probe && c.request_id.as_ref().is_some_and(|id| ids.contains(id)))
        .count();
    assert_eq!(paid, 0, "stale requests were sent to a provider");
    // ... while a fresh one is still served.
    let now = requests(1, "NOW", 3_000);
    fleet::publish(&js, &names, &now[0]).await;
    let result =
        fleet::await_results(&js, &[now[0].request_id.clone()], Duration::from_secs(30)).await;
    assert_eq!(result[&now[0].request_id][0].status, Status::Ok);
    let _ = behind.kill();
    let _ = behind.wait();
}
