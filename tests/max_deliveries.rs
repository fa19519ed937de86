//! Requests that use up their deliveries without any worker finishing them (each delivery
//! died with its worker) are settled from JetStream's MAX_DELIVERIES advisory: one that had
//! in fact been answered gets its stored result published, the other is dead-lettered, and
//! neither stays stranded in the work queue or costs a provider call, even when the advisory
//! is raised while no worker is running.
// Tests may panic: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use ai_failover::bus::outcomes::{Claim, Outcomes};
use ai_failover::bus::{runtime, setup};
use ai_failover::config::{Api, Config};
use ai_failover::contract::{AnalysisResult, DeadLetter, DeadLetterClass, Names};
use ai_failover::simulator::{CallRecord, SimHandle};
use async_nats::jetstream;
use common::fleet;
use common::nats::NatsServer;
use futures::StreamExt;

const TWO: &[(&str, Api)] = &[("alpha", Api::Openai), ("beta", Api::Anthropic)];

/// A stored result for `request_id`, from the schema examples.
fn result_for(request_id: &str) -> AnalysisResult {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schemas/examples/valid/analysis_result.ok.json"
    ))
    .unwrap();
    let mut result: AnalysisResult = serde_json::from_str(&text).unwrap();
    result.request_id = request_id.to_string();
    result
}

/// A server, the simulator and the bus set up, with two deliveries per request and a 1 s ack
/// wait (no worker running yet).
struct Setup {
    _server: NatsServer,
    sim: SimHandle,
    _dir: tempfile::TempDir,
    cfg: Config,
    client: async_nats::Client,
    js: jetstream::Context,
    bus: setup::Bus,
}

async fn set_up() -> Setup {
    let server = NatsServer::start();
    let sim = fleet::simulator(TWO).await;
    let dir = tempfile::tempdir().unwrap();
    let extra = "[worker]\nack_wait_ms = 1000\nmax_deliver = 2\n";
    let cfg = fleet::config(&server.url(), &sim, TWO, dir.path(), extra);
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(client.clone());
    let bus = setup::ensure(&client, &cfg).await.unwrap();
    Setup {
        _server: server,
        sim,
        _dir: dir,
        cfg,
        client,
        js,
        bus,
    }
}

/// Plays the workers that die holding the messages: takes both deliveries of each of the
/// `count` requests waiting, and answers none.
async fn die_holding(bus: &setup::Bus, count: usize) {
    for delivery in 1..=2 {
        let mut batch = bus
            .consumer
            .batch()
            .max_messages(count)
            .expires(Duration::from_secs(10))
            .messages()
            .await
            .unwrap();
        let mut taken = 0;
        while let Some(msg) = batch.next().await {
            assert_eq!(msg.unwrap().info().unwrap().delivered, delivery);
            taken += 1;
        }
        assert_eq!(taken, count, "delivery {delivery} of every request");
    }
}

/// Waits for the dead letter of `request_id` and returns it, checking it is the only one and
/// says the deliveries ran out.
async fn the_only_dead_letter(js: &jetstream::Context, request_id: &str) -> DeadLetter {
    common::eventually(
        Duration::from_secs(20),
        &format!("the dead letter of {request_id}"),
        async || {
            fleet::dead_letters(js)
                .await
                .iter()
                .any(|d| d.request_id.as_deref() == Some(request_id))
        },
    )
    .await;
    let mut letters = fleet::dead_letters(js).await;
    assert_eq!(letters.len(), 1, "only {request_id}: {letters:?}");
    let letter = letters.remove(0);
    assert_eq!(letter.error.class, DeadLetterClass::MaxDeliveries);
    letter
}

/// How many messages `stream` holds.
async fn messages_in(js: &jetstream::Context, stream: &str) -> u64 {
    let mut stream = js.get_stream(stream).await.unwrap();
    stream.info().await.unwrap().state.messages
}

/// Waits until neither the work queue nor the advisories hold a message.
async fn queues_end_empty(js: &jetstream::Context) {
    common::eventually(
        Duration::from_secs(20),
        "the work queue and the advisories to be empty",
        async || {
            messages_in(js, "AI_REQUESTS").await == 0 && messages_in(js, "AI_ADVISORIES").await == 0
        },
    )
    .await;
}

/// Provider calls other than health probes.
fn paid_calls(sim: &SimHandle) -> Vec<CallRecord> {
    sim.log().into_iter().filter(|c| !c.probe).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_whose_every_delivery_died_are_settled_from_the_advisory() {
    let Setup {
        sim, cfg, js, bus, ..
    } = &set_up().await;
    let names = Names::default();

    let died = fleet::request("DIED");
    let acked_late = fleet::request("ACKLOST");
    fleet::publish(js, &names, &died).await;
    fleet::publish(js, &names, &acked_late).await;
    die_holding(bus, 2).await;
    // One of them had been answered before its worker died: the outcome was stored, the ack
    // never landed.
    let outcomes = Outcomes::new(bus.outcomes.clone(), Duration::from_secs(1));
    let Claim::Owned { revision, .. } = outcomes
        .claim(&acked_late.request_id, "ghost", chrono::Utc::now())
        .await
        .unwrap()
    else {
        panic!("a fresh claim")
    };
    outcomes
        .complete(&result_for(&acked_late.request_id), revision)
        .await
        .unwrap();

    // A healthy worker's first pull makes the server give up on both and raise the advisories.
    let worker = runtime::start(Arc::new(cfg.clone()), None).await.unwrap();
    let results = fleet::await_results(
        js,
        std::slice::from_ref(&acked_late.request_id),
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(results[&acked_late.request_id].len(), 1);
    let letter = the_only_dead_letter(js, &died.request_id).await;
    assert_eq!(letter.delivery_count, 2);
    assert!(
        letter.error.message.contains("2 deliveries"),
        "{}",
        letter.error.message
    );
    queues_end_empty(js).await;
    let stored = fleet::stored::<AnalysisResult>(js, "AI_RESULTS").await;
    assert!(
        stored.iter().all(|r| r.request_id != died.request_id),
        "the dead-lettered request has no result"
    );
    let calls = paid_calls(sim);
    assert!(
        calls.is_empty(),
        "no provider was called for either: {calls:?}"
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_advisory_raised_while_no_worker_runs_is_settled_by_the_next_worker() {
    let Setup {
        sim,
        cfg,
        client,
        js,
        bus,
        ..
    } = &set_up().await;
    let names = Names::default();
    let mut advisory = client
        .subscribe(names.max_deliveries_advisory())
        .await
        .unwrap();
    client.flush().await.unwrap();

    let orphan = fleet::request("ORPHAN");
    fleet::publish(js, &names, &orphan).await;
    // The whole fleet dies holding it, twice.
    die_holding(bus, 1).await;
    // One more pull, by a worker that dies before it could do anything with the advisory its
    // pull makes the server raise: nothing is delivered.
    let mut batch = bus
        .consumer
        .batch()
        .max_messages(1)
        .expires(Duration::from_secs(3))
        .messages()
        .await
        .unwrap();
    assert!(batch.next().await.is_none(), "no third delivery");
    let raised = tokio::time::timeout(Duration::from_secs(20), advisory.next())
        .await
        .expect("the server gives up on the request")
        .unwrap();
    assert!(
        String::from_utf8_lossy(&raised.payload).contains("max_deliver"),
        "{raised:?}"
    );
    // Raised with no worker running, and kept (the stream stores it on its own time).
    common::eventually(
        Duration::from_secs(10),
        "the advisory kept in AI_ADVISORIES",
        async || messages_in(js, "AI_ADVISORIES").await == 1,
    )
    .await;

    let worker = runtime::start(Arc::new(cfg.clone()), None).await.unwrap();
    the_only_dead_letter(js, &orphan.request_id).await;
    queues_end_empty(js).await;
    let calls = paid_calls(sim);
    assert!(calls.is_empty(), "no provider was called: {calls:?}");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_settlers_consumer_is_recreated_by_the_running_worker() {
    let Setup { cfg, js, .. } = &set_up().await;
    let worker = runtime::start(Arc::new(cfg.clone()), None).await.unwrap();
    let advisories = js.get_stream("AI_ADVISORIES").await.unwrap();
    advisories.delete_consumer("settlers").await.unwrap();

    // An advisory about a message that is no longer in the stream: settled as gone.
    let names = Names::default();
    js.publish(
        names.max_deliveries_advisory(),
        r#"{"stream_seq": 999999, "deliveries": 5}"#.into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    common::eventually(
        Duration::from_secs(30),
        "the consumer back and the advisory settled",
        async || {
            let stream = js.get_stream("AI_ADVISORIES").await.unwrap();
            messages_in(js, "AI_ADVISORIES").await == 0
                && stream
                    .get_consumer::<jetstream::consumer::pull::Config>("settlers")
                    .await
                    .is_ok()
        },
    )
    .await;
    worker.stop().await;
}

/// A tenant's request stream is settled the same way: its advisory is kept, the answered
/// request's stored result goes to the tenant's own subject, the other is dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_requests_are_settled_from_their_own_stream() {
    let server = NatsServer::start();
    let sim = fleet::simulator(TWO).await;
    let dir = tempfile::tempdir().unwrap();
    let extra = "[worker]\nack_wait_ms = 1000\nmax_deliver = 2\n";
    let mut cfg = fleet::config(&server.url(), &sim, TWO, dir.path(), extra);
    cfg.tenants.push(ai_failover::config::TenantConfig {
        id: "acme".into(),
        providers: None,
        models: Default::default(),
        max_requests_per_minute: None,
        daily_budget_usd: None,
        max_cost_usd: None,
        allow_fallback: true,
    });
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(client.clone());
    let bus = setup::ensure(&client, &cfg).await.unwrap();
    let (tenant, queue) = bus.tenant_queues[0].clone();
    assert_eq!(tenant, "acme");
    let mut results = client
        .subscribe("ai.tenant.acme.analysis.result.>")
        .await
        .unwrap();
    client.flush().await.unwrap();

    let subject = "ai.tenant.acme.analysis.request.signal".to_string();
    let died = fleet::request("DIED");
    let acked_late = fleet::request("ACKLOST");
    for r in [&died, &acked_late] {
        fleet::publish_raw(
            &js,
            subject.clone(),
            &r.request_id,
            serde_json::to_vec(r).unwrap(),
        )
        .await;
    }
    let holder = setup::Bus {
        consumer: queue.requests,
        ..bus.clone()
    };
    die_holding(&holder, 2).await;
    let outcomes = Outcomes::new(bus.outcomes.clone(), Duration::from_secs(1));
    let key = format!("acme.{}", acked_late.request_id);
    let Claim::Owned { revision, .. } = outcomes
        .claim(&key, "ghost", chrono::Utc::now())
        .await
        .unwrap()
    else {
        panic!("a fresh claim")
    };
    let mut stored = result_for(&acked_late.request_id);
    stored.tenant = Some("acme".into());
    outcomes.complete(&stored, revision).await.unwrap();

    let worker = runtime::start(Arc::new(cfg.clone()), None).await.unwrap();
    let settled = tokio::time::timeout(Duration::from_secs(20), results.next())
        .await
        .expect("the stored result, on the tenant's subject")
        .unwrap();
    let settled: AnalysisResult = serde_json::from_slice(&settled.payload).unwrap();
    assert_eq!(
        (settled.request_id.as_str(), settled.tenant.as_deref()),
        (acked_late.request_id.as_str(), Some("acme"))
    );
    let letter = the_only_dead_letter(&js, &died.request_id).await;
    assert_eq!(letter.subject, subject);
    common::eventually(
        Duration::from_secs(20),
        "the tenant's queue and the advisories to be empty",
        async || {
            messages_in(&js, "AI_TENANT_ACME").await == 0
                && messages_in(&js, "AI_ADVISORIES").await == 0
        },
    )
    .await;
    assert!(paid_calls(&sim).is_empty());
    worker.stop().await;
}
