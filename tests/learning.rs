//! The learning loop as a fleet: two worker processes, three healthy simulated providers and
//! `engine.strategy = "quality"`. The first provider (priority 1) is always wrong, the
//! second always right, the third right half of the time; a trader reports every outcome.
//! After 300 labelled requests the fleet sends at least 80 % of new requests to the second,
//! still explores the first at about `quality.explore`, and every worker's view of the
//! quality records is the one in `ai_quality`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use ai_failover::config::Api;
use ai_failover::contract::{Action, AnalysisResult, Feedback, Names, QualityRecord, Source};
use async_nats::HeaderMap;
use async_nats::jetstream;
use common::control::get_text;
use common::nats::NatsServer;
use common::{eventually, fleet};
use futures::StreamExt;

const PROVIDERS: &[(&str, Api)] = &[
    ("wrong", Api::Openai),
    ("right", Api::Anthropic),
    ("coin", Api::Gemini),
];
const LABELLED: usize = 300;
const MEASURED: usize = 100;
const ROUND: usize = 50;

/// The market's move after `r`'s advice, as each provider deserves it: against the wrong
/// one, with the right one, and with the coin one every other time.
fn market_return(r: &AnalysisResult, n: usize) -> f64 {
    let action = r.signal.as_ref().expect("a signal").action;
    let agree = match r.provider.as_deref() {
        Some("right") => true,
        Some("wrong") => false,
        _ => n.is_multiple_of(2),
    };
    match (action, agree) {
        (Action::Buy, true) | (Action::Sell, false) => 0.01,
        (Action::Sell, true) | (Action::Buy, false) => -0.01,
        (Action::Hold, true) => 0.0,
        (Action::Hold, false) => 0.02,
    }
}

/// Sends `n` requests and returns their results, in the order they arrive.
async fn round(
    client: &async_nats::Client,
    js: &jetstream::Context,
    names: &Names,
    n: usize,
    offset: usize,
) -> Vec<AnalysisResult> {
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await.unwrap();
    client.flush().await.unwrap();
    for i in 0..n {
        // Many symbols: the simulator's advice depends on the symbol, so every action occurs.
        let mut r = fleet::request(&format!("S{}", offset + i));
        r.reply_to = Some(inbox.clone());
        fleet::publish(js, names, &r).await;
    }
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let msg = tokio::time::timeout(Duration::from_secs(30), replies.next())
            .await
            .expect("every result within 30 s")
            .unwrap();
        out.push(serde_json::from_slice(&msg.payload).unwrap());
    }
    out
}

async fn quality_records(kv: &jetstream::kv::Store) -> Vec<QualityRecord> {
    let mut out = Vec::new();
    let mut keys = kv.keys().await.unwrap();
    while let Some(k) = keys.next().await {
        let entry = kv.get(k.unwrap()).await.unwrap().unwrap();
        out.push(serde_json::from_slice(&entry).unwrap());
    }
    out
}

/// `ai_failover_quality_hit_rate` per provider on a worker's `/metrics`.
async fn hit_rate_gauges(addr: &str) -> BTreeMap<String, f64> {
    get_text(&format!("http://{addr}/metrics"))
        .await
        .lines()
        .filter_map(|l| l.strip_prefix("ai_failover_quality_hit_rate{"))
        .filter_map(|rest| {
            let provider = rest.split("provider=\"").nth(1)?.split('"').next()?;
            let value = rest.rsplit(' ').next()?.parse().ok()?;
            Some((provider.to_string(), value))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_learns_to_route_to_the_provider_that_is_right() {
    let server = NatsServer::start();
    let sim = fleet::simulator(PROVIDERS).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("learning.toml");
    let extra = "[engine]\nstrategy = \"quality\"\nhedging = false\n";
    std::fs::write(
        &config,
        fleet::config_toml(&server.url(), &sim, PROVIDERS, dir.path(), extra),
    )
    .unwrap();
    let workers = fleet::start_workers(&config, 2, "learner", dir.path()).await;
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(client.clone());
    let names = Names::default();
    let quality = js.get_key_value(names.quality_bucket()).await.unwrap();

    // Learn: rounds of requests, each answered and its outcome reported before the next.
    let mut labelled = 0usize;
    let mut first_round: HashMap<String, usize> = HashMap::new();
    while labelled < LABELLED {
        let results = round(&client, &js, &names, ROUND, labelled).await;
        for (i, r) in results.iter().enumerate() {
            assert_eq!(r.source, Source::Provider, "{r:?}");
            if labelled == 0 {
                *first_round
                    .entry(r.provider.as_deref().unwrap().to_string())
                    .or_default() += 1;
            }
            let feedback = Feedback::outcome(&r.request_id, 3600, market_return(r, labelled + i));
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", feedback.msg_id().as_str());
            js.publish_with_headers(
                names.feedback(r.kind),
                headers,
                serde_json::to_vec(&feedback).unwrap().into(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        }
        labelled += results.len();
        let want = labelled as u64;
        eventually(
            Duration::from_secs(20),
            "the round's outcomes folded",
            async || {
                quality_records(&quality)
                    .await
                    .iter()
                    .map(|r| r.labelled)
                    .sum::<u64>()
                    == want
            },
        )
        .await;
    }
    // Before anything was learnt the priority prior led, but not alone.
    assert!(
        first_round.len() >= 2,
        "the first round explored: {first_round:?}"
    );

    // Measure: where the next requests go.
    let results = round(&client, &js, &names, MEASURED, labelled).await;
    let mut share: BTreeMap<String, usize> = BTreeMap::new();
    for r in &results {
        *share
            .entry(r.provider.as_deref().unwrap().to_string())
            .or_default() += 1;
    }
    eprintln!("first round {first_round:?}; after {labelled} labelled: {share:?}");
    let to = |p: &str| share.get(p).copied().unwrap_or(0);
    assert!(to("right") >= 80, "≥ 80 % to the right provider: {share:?}");
    // explore = 0.05: each of the two others leads about one request in twenty.
    assert!(
        (1..=15).contains(&to("wrong")),
        "the wrong one is still explored: {share:?}"
    );

    // Every worker routes by the records in the bucket.
    let records = quality_records(&quality).await;
    let stored: BTreeMap<String, f64> = records
        .iter()
        .map(|r| (r.provider.as_deref().unwrap().to_string(), r.hit_rate))
        .collect();
    assert!(
        stored["right"] > 0.99 && stored["wrong"] < 0.01,
        "{stored:?}"
    );
    // Right every other time, over the few requests it got: somewhere in between.
    assert!(stored["coin"] > 0.05 && stored["coin"] < 0.95, "{stored:?}");
    for l in &workers.listens {
        let gauges = eventually(Duration::from_secs(10), "the worker's gauges", async || {
            let g = hit_rate_gauges(l).await;
            let same = g.len() == stored.len()
                && stored
                    .iter()
                    .all(|(p, v)| g.get(p).is_some_and(|x| (x - v).abs() < 1e-9));
            same.then_some(g)
        })
        .await;
        assert_eq!(gauges.len(), 3, "{gauges:?}");
    }
}
