//! The control micro-service against a real nats-server, with workers running in this
//! process over fake providers. Waits are bounded polls on observable state, never sleeps.
// Tests may panic: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use ai_failover::contract::{
    ControlError, Endpoint, ErrorClass, FailoverHistoryReply, ForceStatusReply, ForcedStatus,
    HealthEvent, HealthStatus, HealthSummaryReply, MONITORING_KEY, Mode, MonitoringRecord,
    MonitoringReply, Names, ProviderHealthRecord, Source, Status, StatusReply, TestFailoverReply,
};
use async_nats::jetstream::{self, kv};
use common::control::{call, call_raw};
use common::eventually;
use common::nats::NatsServer;
use common::workers::{ask, ask_with, signal, start_worker};
use futures::StreamExt;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

/// The stored record of `provider` and its revision (None before the first write).
async fn record(health: &kv::Store, provider: &str) -> Option<(ProviderHealthRecord, u64)> {
    let entry = health.entry(provider).await.unwrap()?;
    Some((
        serde_json::from_slice(&entry.value).unwrap(),
        entry.revision,
    ))
}

async fn health_bucket(client: &async_nats::Client, names: &Names) -> kv::Store {
    jetstream::new(client.clone())
        .get_key_value(names.health_bucket())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_is_discoverable_and_refuses_bad_requests_with_a_reason() {
    let server = NatsServer::start();
    let w = start_worker(&server.url(), "ai", "w1").await;
    let client = async_nats::connect(server.url()).await.unwrap();
    let names = Names::default();

    let ping = client
        .request("$SRV.PING.ai-failover", "".into())
        .await
        .unwrap();
    let pong: Value = serde_json::from_slice(&ping.payload).unwrap();
    assert_eq!(pong["name"], "ai-failover");
    assert_eq!(pong["version"], env!("CARGO_PKG_VERSION"));

    let info = client
        .request("$SRV.INFO.ai-failover", "".into())
        .await
        .unwrap();
    let info: Value = serde_json::from_slice(&info.payload).unwrap();
    let mut subjects: Vec<String> = info["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["subject"].as_str().unwrap().to_string())
        .collect();
    subjects.sort();
    let mut expected: Vec<String> = Endpoint::ALL
        .iter()
        .map(|e| names.control(e.name()))
        .collect();
    expected.sort();
    assert_eq!(subjects, expected);

    let stats = client
        .request("$SRV.STATS.ai-failover", "".into())
        .await
        .unwrap();
    let stats: Value = serde_json::from_slice(&stats.payload).unwrap();
    assert_eq!(stats["name"], "ai-failover");

    // Bad JSON: a micro-protocol error (code + description) and a JSON reason.
    let bad = call_raw(&client, &names, "force-status", "{not json").await;
    let h = bad.headers.as_ref().expect("error headers");
    assert_eq!(h.get("Nats-Service-Error-Code").unwrap().as_str(), "400");
    let body: ControlError = serde_json::from_slice(&bad.payload).unwrap();
    assert!(
        body.error.contains("invalid request for `force-status`"),
        "{body:?}"
    );
    assert_eq!(
        h.get("Nats-Service-Error").unwrap().as_str(),
        body.error.as_str()
    );

    // An unknown provider names the ones the fleet has.
    let unknown = call_raw(
        &client,
        &names,
        "force-status",
        r#"{"provider":"nope","status":"down"}"#,
    )
    .await;
    let h = unknown.headers.as_ref().expect("error headers");
    assert_eq!(h.get("Nats-Service-Error-Code").unwrap().as_str(), "404");
    let body: ControlError = serde_json::from_slice(&unknown.payload).unwrap();
    assert_eq!(
        body.error,
        "unknown provider `nope`; known providers: primary, backup"
    );
    w.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_health_summary_answer_from_the_shared_records() {
    let server = NatsServer::start();
    let w = start_worker(&server.url(), "ai", "w1").await;
    let client = async_nats::connect(server.url()).await.unwrap();
    let names = Names::default();
    let health = health_bucket(&client, &names).await;

    // A record no worker wrote: only an answer read from the KV can contain it.
    let mut planted = ProviderHealthRecord::new("backup", "another-worker");
    planted.latency_ms_p95 = 1234.5;
    planted.latency_ms_ewma = 321.0;
    planted.window.calls = 10;
    planted.window.failures = 1;
    planted.success_rate = 0.9;
    health
        .put("backup", serde_json::to_vec(&planted).unwrap().into())
        .await
        .unwrap();

    let status: StatusReply = call(&client, &names, "status", json!({})).await;
    assert_eq!(status.mode, Mode::Normal);
    assert!(status.monitoring);
    assert_eq!(status.answered_by, "w1");
    let ids: Vec<&str> = status
        .providers
        .iter()
        .map(|r| r.provider.as_str())
        .collect();
    assert_eq!(ids, ["primary", "backup"]);
    assert_eq!(status.providers[1], planted);

    let summary: HealthSummaryReply = call(&client, &names, "health-summary", json!({})).await;
    assert_eq!(summary.mode, Mode::Normal);
    let backup = &summary.providers[1];
    assert_eq!(backup.provider, "backup");
    assert_eq!(backup.latency_ms_p95, 1234.5);
    assert!((backup.uptime - 0.9).abs() < 1e-9);
    assert_eq!(backup.failovers_from, 0);
    assert_eq!(summary.failovers_total, 0);
    w.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_down_on_one_worker_is_obeyed_by_every_worker_and_clear_restores_it() {
    let server = NatsServer::start();
    let w1 = start_worker(&server.url(), "ai", "w1").await;
    let w2 = start_worker(&server.url(), "ai", "w2").await;
    let client = async_nats::connect(server.url()).await.unwrap();
    let names = Names::default();
    let workers = [&w1, &w2];

    let forced: ForceStatusReply = call(
        &client,
        &names,
        "force-status",
        json!({"provider": "primary", "status": "down", "reason": "maintenance"}),
    )
    .await;
    let f = forced.record.forced.as_ref().expect("override stored");
    assert_eq!(f.status, ForcedStatus::Down);
    assert_eq!(f.reason.as_deref(), Some("maintenance"));
    assert_eq!(forced.record.status, HealthStatus::Disabled);
    let writer = forced.record.updated_by.clone();
    assert!(writer == "w1" || writer == "w2", "{writer}");

    // Both workers, the writer and the other one, see it through the KV watch.
    for w in workers {
        eventually(WAIT, "the override to reach every worker", || async {
            (w.running.engine.provider_status("primary").map(|s| s.0)
                == Some(HealthStatus::Disabled))
            .then_some(())
        })
        .await;
    }
    // The transition was announced on the events stream.
    let js = jetstream::new(client.clone());
    let events = js.get_stream(names.events_stream()).await.unwrap();
    let last = events
        .get_last_raw_message_by_subject(&names.health_event("primary"))
        .await
        .unwrap();
    let event: HealthEvent = serde_json::from_slice(&last.payload).unwrap();
    assert!(event.forced);
    assert_eq!(event.status, HealthStatus::Disabled);

    let before: usize = workers.iter().map(|w| w.primary.calls()).sum();
    for i in 0..6 {
        let r = ask(&client, &names, &format!("DOWN{i}")).await;
        assert_eq!(r.status, Status::Ok);
        assert_eq!(r.provider.as_deref(), Some("backup"), "{r:?}");
    }
    let after: usize = workers.iter().map(|w| w.primary.calls()).sum();
    assert_eq!(after, before, "no worker called a provider forced down");

    let cleared: ForceStatusReply = call(
        &client,
        &names,
        "force-status",
        json!({"provider": "primary", "status": "clear"}),
    )
    .await;
    assert!(cleared.record.forced.is_none());
    assert_eq!(cleared.record.status, HealthStatus::Healthy);
    for w in workers {
        eventually(WAIT, "the clear to reach every worker", || async {
            (w.running.engine.provider_status("primary").map(|s| s.0)
                == Some(HealthStatus::Healthy))
            .then_some(())
        })
        .await;
    }
    let r = ask(&client, &names, "UP").await;
    assert_eq!(r.provider.as_deref(), Some("primary"));
    w1.running.stop().await;
    w2.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_history_and_summary_count_the_failovers_that_happened() {
    let server = NatsServer::start();
    let w = start_worker(&server.url(), "ai", "w1").await;
    let client = async_nats::connect(server.url()).await.unwrap();
    let names = Names::default();
    w.primary.fail_with(Some(ErrorClass::ServerError));

    let mut ids = Vec::new();
    for i in 0..2 {
        let r = ask(&client, &names, &format!("FO{i}")).await;
        assert_eq!(r.provider.as_deref(), Some("backup"));
        assert_eq!(r.attempts[0].provider, "primary");
        ids.push(r.request_id);
    }

    let history: FailoverHistoryReply =
        eventually(WAIT, "both failover events in the stream", || async {
            let h: FailoverHistoryReply =
                call(&client, &names, "failover-history", json!({})).await;
            (h.events.len() == 2).then_some(h)
        })
        .await;
    let got: Vec<&str> = history
        .events
        .iter()
        .map(|e| e.request_id.as_str())
        .collect();
    assert_eq!(got, ids, "oldest first");
    for e in &history.events {
        assert_eq!(e.from.provider, "primary");
        assert_eq!(e.to.as_ref().unwrap().provider, "backup");
        assert_eq!(e.error_class, ErrorClass::ServerError);
        assert_eq!(e.worker_id, "w1");
    }
    let newest: FailoverHistoryReply =
        call(&client, &names, "failover-history", json!({"limit": 1})).await;
    assert_eq!(newest.events.len(), 1);
    assert_eq!(newest.events[0].request_id, ids[1]);
    let from_backup: FailoverHistoryReply = call(
        &client,
        &names,
        "failover-history",
        json!({"provider": "backup"}),
    )
    .await;
    assert!(from_backup.events.is_empty());

    // Spend is booked in batches: wait for it, then compare with the KV records.
    let summary: HealthSummaryReply = eventually(WAIT, "backup's spend in the summary", || async {
        let s: HealthSummaryReply = call(&client, &names, "health-summary", json!({})).await;
        (s.providers[1].spend_today_usd > 0.0).then_some(s)
    })
    .await;
    assert_eq!(summary.failovers_total, 2);
    assert_eq!(summary.providers[0].failovers_from, 2);
    assert_eq!(summary.providers[1].failovers_from, 0);
    let health = health_bucket(&client, &names).await;
    let (primary, _) = record(&health, "primary").await.unwrap();
    assert_eq!(primary.window.failures, 2);
    assert_eq!(summary.providers[0].success_rate, primary.success_rate);
    w.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitoring_stop_and_start_toggle_the_shared_switch() {
    let server = NatsServer::start();
    let w = start_worker(&server.url(), "ai", "w1").await;
    let client = async_nats::connect(server.url()).await.unwrap();
    let names = Names::default();
    let health = health_bucket(&client, &names).await;
    let switch = || async {
        let bytes = health.get(MONITORING_KEY).await.unwrap().expect("record");
        serde_json::from_slice::<MonitoringRecord>(&bytes).unwrap()
    };

    let stopped: MonitoringReply = call(&client, &names, "monitoring.stop", json!({})).await;
    assert!(!stopped.enabled);
    assert!(!switch().await.enabled);
    let status: StatusReply = call(&client, &names, "status", json!({})).await;
    assert!(!status.monitoring);

    let started: MonitoringReply = call(
        &client,
        &names,
        "monitoring.start",
        json!({"interval_ms": 60000}),
    )
    .await;
    assert_eq!((started.enabled, started.interval_ms), (true, 60_000));
    let record = switch().await;
    assert!(record.enabled);
    assert_eq!(record.interval_ms, 60_000);
    assert_eq!(record.updated_by, "w1");

    let too_fast = call_raw(
        &client,
        &names,
        "monitoring.start",
        r#"{"interval_ms": 10}"#,
    )
    .await;
    assert!(
        too_fast
            .headers
            .is_some_and(|h| h.get("Nats-Service-Error").is_some())
    );
    w.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_failover_returns_the_trace_and_leaves_fleet_state_alone() {
    let server = NatsServer::start();
    let w = start_worker(&server.url(), "ai", "w1").await;
    let client = async_nats::connect(server.url()).await.unwrap();
    let names = Names::default();
    let health = health_bucket(&client, &names).await;
    let js = jetstream::new(client.clone());
    let cache = js.get_key_value(names.cache_bucket()).await.unwrap();

    // The start-up health checks write one record per provider: wait for both.
    let [(_, primary_rev), (backup, _)] = eventually(WAIT, "both records", || async {
        Some([
            record(&health, "primary").await?,
            record(&health, "backup").await?,
        ])
    })
    .await;
    let primary_calls = w.primary.calls();

    let reply: TestFailoverReply = call(
        &client,
        &names,
        "test-failover",
        json!({"fail_provider": "primary", "error_class": "timeout", "symbol": "TESTFO"}),
    )
    .await;
    assert_eq!(reply.status, Status::Ok);
    assert_eq!(reply.answered_by.as_deref(), Some("backup"));
    let trail: Vec<(&str, String)> = reply
        .attempts
        .iter()
        .map(|a| (a.provider.as_str(), a.outcome.as_str().to_string()))
        .collect();
    assert_eq!(
        trail,
        [("primary", "timeout".to_string()), ("backup", "ok".into())]
    );
    assert_eq!(reply.result.source, Source::Provider);
    assert_eq!(
        w.primary.calls(),
        primary_calls,
        "the injected failure calls no one"
    );

    // A real request to backup goes through the same event queue after the synthetic
    // attempts: once its outcome is in backup's record, theirs would have been too.
    let mut barrier = signal("BARRIER");
    barrier.providers = Some(vec!["backup".into()]);
    let r = ask_with(&client, &names, barrier).await;
    assert_eq!(r.provider.as_deref(), Some("backup"));
    let (after, _) = eventually(WAIT, "the real call in backup's record", || async {
        record(&health, "backup")
            .await
            .filter(|(r, _)| r.window.calls > backup.window.calls)
    })
    .await;
    assert_eq!(
        after.window.calls,
        backup.window.calls + 1,
        "only the real call counts"
    );
    let (_, rev) = record(&health, "primary").await.unwrap();
    assert_eq!(rev, primary_rev, "primary's record was not written");
    assert!(cache.get("signal.TESTFO").await.unwrap().is_none());
    assert!(cache.get("signal.BARRIER").await.unwrap().is_some());
    let history: FailoverHistoryReply = call(&client, &names, "failover-history", json!({})).await;
    assert!(history.events.is_empty(), "{history:?}");

    // An unknown provider is refused before anything runs.
    let unknown = call_raw(&client, &names, "test-failover", r#"{"fail_provider":"x"}"#).await;
    let body: ControlError = serde_json::from_slice(&unknown.payload).unwrap();
    assert!(body.error.contains("known providers: primary, backup"));
    w.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn best_provider_and_health_check_follow_the_fleet() {
    let server = NatsServer::start();
    let w = start_worker(&server.url(), "ai", "w1").await;
    let client = async_nats::connect(server.url()).await.unwrap();
    let names = Names::default();

    let best: ai_failover::contract::BestProviderReply =
        call(&client, &names, "best-provider", json!({})).await;
    assert_eq!(best.provider.as_deref(), Some("primary"));
    assert_eq!(best.model.as_deref(), Some("primary-m1"));
    assert_eq!(best.order, ["primary", "backup"]);
    let only_backup: ai_failover::contract::BestProviderReply = call(
        &client,
        &names,
        "best-provider",
        json!({"providers": ["backup"]}),
    )
    .await;
    assert_eq!(only_backup.order, ["backup"]);

    let checked: ai_failover::contract::HealthCheckReply = call(
        &client,
        &names,
        "health-check",
        json!({"provider": "backup"}),
    )
    .await;
    assert_eq!(checked.results.len(), 1);
    assert!(checked.results[0].ok);
    assert_eq!(checked.results[0].provider, "backup");
    w.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_mode_holds_on_every_worker_until_its_ttl_then_health_decides_again() {
    let server = NatsServer::start();
    let w1 = start_worker(&server.url(), "ai", "w1").await;
    let w2 = start_worker(&server.url(), "ai", "w2").await;
    let client = async_nats::connect(server.url()).await.unwrap();
    let names = Names::default();
    let mut modes = client.subscribe(names.mode_event()).await.unwrap();
    client.flush().await.unwrap();

    // Bad requests change nothing and say what is wrong.
    for (body, says) in [
        (
            json!({"mode": "minimal", "reason": "x", "ttl_ms": 0}),
            "ttl_ms",
        ),
        (
            json!({"mode": "auto", "reason": "x", "ttl_ms": 5}),
            "ttl_ms",
        ),
        (json!({"mode": "minimal", "reason": " "}), "reason"),
        (json!({"mode": "minimal", "reason": "x", "by": "me"}), "by"),
        (json!({"mode": "degraded", "reason": "x"}), "degraded"),
    ] {
        let msg = call_raw(&client, &names, "mode.set", &body.to_string()).await;
        let error: ControlError = serde_json::from_slice(&msg.payload).unwrap();
        assert!(error.error.contains(says), "{body}: {error:?}");
    }

    // `minimal` for 1.5 s: no provider is called, whichever worker takes the request.
    let set: ai_failover::contract::ModeSetReply = call(
        &client,
        &names,
        "mode.set",
        json!({"mode": "minimal", "reason": "provider audit", "ttl_ms": 1500}),
    )
    .await;
    assert_eq!(set.mode, Mode::Minimal);
    let manual = set.manual.unwrap();
    assert!(
        !manual.actor.verified,
        "no server identity without accounts"
    );
    let event = tokio::time::timeout(WAIT, modes.next())
        .await
        .unwrap()
        .unwrap();
    let event: ai_failover::contract::ModeEvent = serde_json::from_slice(&event.payload).unwrap();
    assert_eq!(event.mode, Mode::Minimal);
    assert!(event.actor.is_some() && event.reason.contains("provider audit"));
    // The other worker learns it from the shared record.
    eventually(WAIT, "w2 to hold the manual mode", async || {
        w2.running.engine.mode() == Mode::Minimal
    })
    .await;
    let calls_before = w1.primary.calls() + w2.primary.calls();
    for i in 0..4 {
        let r = ask(&client, &names, &format!("HELD{i}")).await;
        assert_eq!(r.status, Status::Degraded, "{r:?}");
        assert_eq!(r.mode, Mode::Minimal);
        assert!(matches!(r.source, Source::Fallback | Source::Cache));
    }
    assert_eq!(w1.primary.calls() + w2.primary.calls(), calls_before);

    // The TTL ends: the mode follows provider health again, announced once.
    let back = loop {
        let msg = tokio::time::timeout(WAIT, modes.next())
            .await
            .expect("the end of the manual mode is announced")
            .unwrap();
        let e: ai_failover::contract::ModeEvent = serde_json::from_slice(&msg.payload).unwrap();
        if e.mode == Mode::Normal {
            break e;
        }
    };
    assert!(back.reason.contains("manual minimal ended"), "{back:?}");
    let status: StatusReply = call(&client, &names, "status", json!({})).await;
    assert_eq!(status.mode, Mode::Normal);
    let r = ask(&client, &names, "FREE").await;
    assert_eq!(r.status, Status::Ok);
    w1.running.stop().await;
    w2.running.stop().await;
}
