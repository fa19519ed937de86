//! Streams, consumer and buckets are created idempotently against a real nats-server.
// Tests may panic: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use ai_failover::bus::setup::{connect, ensure};
use async_nats::jetstream::stream::RetentionPolicy;
use common::nats::NatsServer;

#[tokio::test]
async fn setup_is_idempotent_and_survives_a_restart() {
    let mut server = NatsServer::start();
    let cfg = common::config_with(&server.url(), common::ONE_LOCAL_PROVIDER);
    let client = connect(&cfg.nats).await.expect("connect");

    let first = ensure(&client, &cfg).await.expect("first set-up");
    let second = ensure(&client, &cfg)
        .await
        .expect("second set-up is a no-op");

    let mut requests = first.js.get_stream("AI_REQUESTS").await.unwrap();
    let info = requests.info().await.unwrap().clone();
    assert_eq!(info.config.retention, RetentionPolicy::WorkQueue);
    assert_eq!(
        info.config.subjects,
        vec!["ai.analysis.request.>".to_string()]
    );
    assert!(info.config.duplicate_window >= std::time::Duration::from_secs(120));
    let mut advisories = first.js.get_stream("AI_ADVISORIES").await.unwrap();
    let ainfo = advisories.info().await.unwrap().clone();
    assert_eq!(ainfo.config.retention, RetentionPolicy::WorkQueue);
    assert_eq!(
        ainfo.config.subjects,
        vec!["$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.AI_REQUESTS.workers".to_string()]
    );
    let mut settlers = second.settlers.clone();
    let sinfo = settlers.info().await.unwrap().clone();
    assert_eq!(sinfo.config.durable_name.as_deref(), Some("settlers"));
    assert_eq!(sinfo.config.max_deliver, -1, "retried until settled");
    for name in ["AI_RESULTS", "AI_EVENTS", "AI_DEADLETTER"] {
        first
            .js
            .get_stream(name)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let mut consumer = second.consumer.clone();
    let cinfo = consumer.info().await.unwrap().clone();
    assert_eq!(cinfo.config.durable_name.as_deref(), Some("workers"));
    assert_eq!(cinfo.config.max_deliver, cfg.worker.max_deliver);
    assert_eq!(
        cinfo.config.ack_wait,
        std::time::Duration::from_millis(cfg.worker.ack_wait_ms)
    );

    // Same streams and consumer after the second run: nothing was duplicated or reset.
    let names = first.js.stream_names();
    use futures::TryStreamExt;
    let mut all: Vec<String> = names.try_collect().await.unwrap();
    all.sort();
    assert_eq!(
        all,
        vec![
            "AI_ADVISORIES",
            "AI_ALERTS",
            "AI_AUDIT",
            "AI_DEADLETTER",
            "AI_EVENTS",
            "AI_FEEDBACK",
            "AI_QUALITY_LOG",
            "AI_REQUESTS",
            "AI_RESULTS",
            "AI_STATS",
            "KV_ai_budget",
            "KV_ai_decision_cache",
            "KV_ai_outcomes",
            "KV_ai_provider_health",
            "KV_ai_quality",
            "KV_ai_quotas",
            "KV_ai_secrets",
            "KV_ai_signals",
            "KV_ai_stats_window",
        ]
    );

    // Data written before a crash is there after the restart, and set-up runs again cleanly.
    second.health.put("probe-key", "v1".into()).await.unwrap();
    server.restart();
    let client = connect(&cfg.nats).await.expect("reconnect");
    let third = ensure(&client, &cfg).await.expect("set-up after restart");
    let got = third.health.get("probe-key").await.unwrap();
    assert_eq!(got.as_deref(), Some(&b"v1"[..]));
}
