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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_and_restarted_mid_run_loses_and_duplicates_nothing() {
    let mut cluster = NatsCluster::start();
    let sim = fleet::simulator(TWO).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = fleet::config(&cluster.urls(), &sim, TWO, dir.path(), "");
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
    let js = jetstream::new(client);
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
    let results = fleet::await_results(&js, &ids, Duration::from_secs(90)).await;
    for id in &ids {
        assert_eq!(
            results[id].len(),
            1,
            "{id} has {} results",
            results[id].len()
        );
    }
    // Nothing was given up on because the bus was briefly away.
    let letters = fleet::dead_letters(&js).await;
    assert!(letters.is_empty(), "dead letters: {letters:?}");
    for w in workers {
        w.stop().await;
    }
}
