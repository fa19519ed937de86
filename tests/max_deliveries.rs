//! Requests that use up their deliveries without any worker finishing them (each delivery
//! died with its worker) are settled from JetStream's MAX_DELIVERIES advisory: one that had
//! in fact been answered gets its stored result published, the other is dead-lettered, and
//! neither stays stranded in the work queue or costs a provider call, even when the advisory
//! is raised while no worker is running.

mod common;

use std::sync::Arc;
use std::time::Duration;

use ai_failover::bus::outcomes::{Claim, Outcomes};
use ai_failover::bus::{runtime, setup};
use ai_failover::config::Api;
use ai_failover::contract::{AnalysisResult, DeadLetterClass, Names};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_whose_every_delivery_died_are_settled_from_the_advisory() {
    let server = NatsServer::start();
    let sim = fleet::simulator(TWO).await;
    let dir = tempfile::tempdir().unwrap();
    let extra = "[worker]\nack_wait_ms = 1000\nmax_deliver = 2\n";
    let cfg = fleet::config(&server.url(), &sim, TWO, dir.path(), extra);
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(client.clone());
    let bus = setup::ensure(&client, &cfg).await.unwrap();
    let names = Names::default();

    let died = fleet::request("DIED");
    let acked_late = fleet::request("ACKLOST");
    fleet::publish(&js, &names, &died).await;
    fleet::publish(&js, &names, &acked_late).await;
    // Play the workers that die holding the messages: take every delivery, answer none.
    for delivery in 1..=2 {
        let mut batch = bus
            .consumer
            .batch()
            .max_messages(2)
            .expires(Duration::from_secs(10))
            .messages()
            .await
            .unwrap();
        let mut taken = 0;
        while let Some(msg) = batch.next().await {
            assert_eq!(msg.unwrap().info().unwrap().delivered, delivery);
            taken += 1;
        }
        assert_eq!(taken, 2, "delivery {delivery} of both requests");
    }
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
        &js,
        std::slice::from_ref(&acked_late.request_id),
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(results[&acked_late.request_id].len(), 1);
    fleet::eventually(
        Duration::from_secs(20),
        "the dead letter of the request nobody answered",
        async || {
            fleet::dead_letters(&js)
                .await
                .iter()
                .any(|d| d.request_id.as_deref() == Some(died.request_id.as_str()))
        },
    )
    .await;
    let letters = fleet::dead_letters(&js).await;
    assert_eq!(letters.len(), 1, "only the unanswered request: {letters:?}");
    assert_eq!(letters[0].error.class, DeadLetterClass::MaxDeliveries);
    assert_eq!(letters[0].delivery_count, 2);
    assert!(
        letters[0].error.message.contains("2 deliveries"),
        "{}",
        letters[0].error.message
    );
    fleet::eventually(
        Duration::from_secs(20),
        "the work queue to be empty",
        async || {
            let mut stream = js.get_stream("AI_REQUESTS").await.unwrap();
            stream.info().await.unwrap().state.messages == 0
        },
    )
    .await;
    let stored = fleet::stored::<AnalysisResult>(&js, "AI_RESULTS").await;
    assert!(
        stored.iter().all(|r| r.request_id != died.request_id),
        "the dead-lettered request has no result"
    );
    let calls: Vec<_> = sim.log().into_iter().filter(|c| !c.probe).collect();
    assert!(
        calls.is_empty(),
        "no provider was called for either: {calls:?}"
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_advisory_raised_while_no_worker_runs_is_settled_by_the_next_worker() {
    let server = NatsServer::start();
    let sim = fleet::simulator(TWO).await;
    let dir = tempfile::tempdir().unwrap();
    let extra = "[worker]\nack_wait_ms = 1000\nmax_deliver = 2\n";
    let cfg = fleet::config(&server.url(), &sim, TWO, dir.path(), extra);
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(client.clone());
    let bus = setup::ensure(&client, &cfg).await.unwrap();
    let names = Names::default();
    let mut advisory = client
        .subscribe(names.max_deliveries_advisory())
        .await
        .unwrap();
    client.flush().await.unwrap();

    let orphan = fleet::request("ORPHAN");
    fleet::publish(&js, &names, &orphan).await;
    // The whole fleet dies holding it, twice.
    for delivery in 1..=2 {
        let mut batch = bus
            .consumer
            .batch()
            .max_messages(1)
            .expires(Duration::from_secs(10))
            .messages()
            .await
            .unwrap();
        let msg = batch.next().await.expect("a delivery").unwrap();
        assert_eq!(msg.info().unwrap().delivered, delivery);
    }
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
    fleet::eventually(
        Duration::from_secs(10),
        "the advisory kept in AI_ADVISORIES",
        async || {
            let mut kept = js.get_stream("AI_ADVISORIES").await.unwrap();
            kept.info().await.unwrap().state.messages == 1
        },
    )
    .await;

    let worker = runtime::start(Arc::new(cfg.clone()), None).await.unwrap();
    fleet::eventually(
        Duration::from_secs(20),
        "the dead letter of the orphaned request",
        async || {
            fleet::dead_letters(&js)
                .await
                .iter()
                .any(|d| d.request_id.as_deref() == Some(orphan.request_id.as_str()))
        },
    )
    .await;
    let letters = fleet::dead_letters(&js).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].error.class, DeadLetterClass::MaxDeliveries);
    fleet::eventually(
        Duration::from_secs(20),
        "the work queue and the advisories to be empty",
        async || {
            let mut requests = js.get_stream("AI_REQUESTS").await.unwrap();
            let mut advisories = js.get_stream("AI_ADVISORIES").await.unwrap();
            requests.info().await.unwrap().state.messages == 0
                && advisories.info().await.unwrap().state.messages == 0
        },
    )
    .await;
    let calls: Vec<_> = sim.log().into_iter().filter(|c| !c.probe).collect();
    assert!(calls.is_empty(), "no provider was called: {calls:?}");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_settlers_consumer_is_recreated_by_the_running_worker() {
    let server = NatsServer::start();
    let sim = fleet::simulator(TWO).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = fleet::config(&server.url(), &sim, TWO, dir.path(), "");
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(client.clone());
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
    fleet::eventually(
        Duration::from_secs(30),
        "the consumer back and the advisory settled",
        async || {
            let mut stream = js.get_stream("AI_ADVISORIES").await.unwrap();
            stream.info().await.unwrap().state.messages == 0
                && stream
                    .get_consumer::<jetstream::consumer::pull::Config>("settlers")
                    .await
                    .is_ok()
        },
    )
    .await;
    worker.stop().await;
}
