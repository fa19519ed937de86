//! A 3-node NATS cluster with R3 streams and buckets: one node killed mid-run and brought
//! back loses nothing and duplicates nothing, and the workers never restart.
// Tests may panic: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use ai_failover::bus::runtime;
use ai_failover::config::Api;
use ai_failover::contract::Names;
use async_nats::jetstream;
use common::fleet;
use common::nats::NatsCluster;

const TWO: &[(&str, Api)] = &[("alpha", Api::Openai), ("beta", Api::Anthropic)];

/// Two workers on R3 streams and buckets, and a JetStream client, on `cluster`.
async fn start_workers(
    cluster: &NatsCluster,
    sim: &ai_failover::simulator::SimHandle,
    dir: &std::path::Path,
) -> (Vec<runtime::Running>, jetstream::Context) {
    let mut cfg = fleet::config(&cluster.urls(), sim, TWO, dir, "");
    cfg.nats.replicas = 3;
    cfg.nats.request_timeout_ms = 10_000;
    // The meta leader may still be electing: set-up is retried like a deployment would.
    let mut workers = Vec::new();
    for id in ["c1", "c2"] {
        let mut c = cfg.clone();
        c.worker.id = Some(id.into());
        let c = Arc::new(c);
        let mut started = None;
        for _ in 0..40 {
            match runtime::start(c.clone(), None).await {
                Ok(w) => {
                    started = Some(w);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
        workers.push(started.expect("worker starts against the cluster"));
    }
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(cluster.urls().split(',').collect::<Vec<_>>())
        .await
        .unwrap();
    (workers, jetstream::new(client))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_and_restarted_mid_run_loses_and_duplicates_nothing() {
    let mut cluster = NatsCluster::start();
    let sim = fleet::simulator(TWO).await;
    let dir = tempfile::tempdir().unwrap();
    let (workers, js) = start_workers(&cluster, &sim, dir.path()).await;
    let info = js
        .get_stream("AI_REQUESTS")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(info.config.num_replicas, 3, "R3 streams");
    let names = Names::default();

    let mut ids = Vec::new();
    for i in 0..40 {
        if i == 15 {
            cluster.nodes[1].kill();
        }
        if i == 30 {
            cluster.nodes[1].restart();
        }
        let r = fleet::request(&format!("CL{}", i % 5));
        fleet::publish(&js, &names, &r).await;
        ids.push(r.request_id);
    }
    exactly_once(&js, &ids).await;
    // (Nothing was given up on because the bus was briefly away.)
    for w in workers {
        w.stop().await;
    }
}

/// Every request has exactly one stored result, and none was dead-lettered.
async fn exactly_once(js: &jetstream::Context, ids: &[String]) {
    let results = fleet::await_results(js, ids, Duration::from_secs(90)).await;
    for id in ids {
        assert_eq!(
            results[id].len(),
            1,
            "{id} has {} results",
            results[id].len()
        );
    }
    let letters = fleet::dead_letters(js).await;
    assert!(letters.is_empty(), "dead letters: {letters:?}");
}

/// Asks the leader of `stream` (or of its consumer `consumer`) to step down; whether a new
/// leader was elected.
async fn step_down(client: &async_nats::Client, stream: &str, consumer: Option<&str>) -> bool {
    let subject = match consumer {
        None => format!("$JS.API.STREAM.LEADER.STEPDOWN.{stream}"),
        Some(c) => format!("$JS.API.CONSUMER.LEADER.STEPDOWN.{stream}.{c}"),
    };
    match client.request(subject, "".into()).await {
        Ok(reply) => serde_json::from_slice::<serde_json::Value>(&reply.payload)
            .is_ok_and(|v| v["success"] == true),
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaders_stepping_down_mid_run_lose_and_duplicate_nothing() {
    let cluster = NatsCluster::start();
    let sim = fleet::simulator(TWO).await;
    let dir = tempfile::tempdir().unwrap();
    let (workers, js) = start_workers(&cluster, &sim, dir.path()).await;
    let client = js.client();
    let names = Names::default();
    // Every stream a request's path writes to, and the workers' consumer.
    let leaders: [(&str, Option<&str>); 6] = [
        ("AI_REQUESTS", None),
        ("AI_REQUESTS", Some("workers")),
        ("AI_RESULTS", None),
        ("KV_ai_outcomes", None),
        ("KV_ai_provider_health", None),
        ("KV_ai_budget", None),
    ];
    let mut ids = Vec::new();
    let mut stepped = 0;
    for i in 0..60 {
        if i % 12 == 6 {
            for (stream, consumer) in leaders {
                if step_down(&client, stream, consumer).await {
                    stepped += 1;
                }
            }
        }
        let r = fleet::request(&format!("LD{}", i % 5));
        fleet::publish(&js, &names, &r).await;
        ids.push(r.request_id);
    }
    assert!(stepped >= 12, "only {stepped} leader changes happened");
    exactly_once(&js, &ids).await;
    println!(
        "leader changes: {stepped} stepdowns across {} leaders",
        leaders.len()
    );
    for w in workers {
        w.stop().await;
    }
}
