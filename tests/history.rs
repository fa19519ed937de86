//! History: a fleet of worker processes writes one rollup per provider (and one for the
//! fleet) per interval to `AI_STATS`, whatever the number of workers and whether a provider
//! had calls; `report` finds an outage with its real duration; and the interval-based alerts
//! (`slow_provider`, `dead_letters`) and the stall watch (`fleet_stalled`) fire and clear.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ai_failover::config::Api;
use ai_failover::contract::{
    AlertRecord, AlertType, AnalysisResult, FleetRollup, Names, ProviderRollup, ReportReply,
};
use ai_failover::simulator::{Faults, Latency};
use async_nats::jetstream;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use common::nats::NatsServer;
use common::{eventually, fleet};

const PROVIDERS: &[(&str, Api)] = &[
    ("p1", Api::Openai),
    ("p2", Api::Anthropic),
    ("p3", Api::Gemini),
];

/// Three-second intervals, so a test sees many.
const HISTORY: &str = "[history]\ninterval_ms = 3000\ngrace_ms = 1500\n";

/// Every rollup stored so far: the providers' and the fleet's.
async fn rollups(js: &jetstream::Context) -> (Vec<ProviderRollup>, Vec<FleetRollup>) {
    let (mut providers, mut fleet) = (Vec::new(), Vec::new());
    for v in fleet::stored::<Value>(js, "AI_STATS").await {
        if v.get("provider").is_some() {
            providers.push(serde_json::from_value(v).unwrap());
        } else {
            fleet.push(serde_json::from_value(v).unwrap());
        }
    }
    (providers, fleet)
}

fn report_cli(config: &std::path::Path) -> ReportReply {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ai-failover"))
        .args(["report", "--since", "10m", "--json", "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn secs_apart(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    (a - b).num_milliseconds().abs() as f64 / 1_000.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_reported_with_its_duration_and_each_interval_is_rolled_up_once() {
    let server = NatsServer::start();
    let sim = fleet::simulator(PROVIDERS).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("history.toml");
    let extra = format!(
        "[engine]\nhedging = false\n[breaker]\nconsecutive_failures = 3\nopen_ms = 500\nmax_open_ms = 1000\n{HISTORY}"
    );
    std::fs::write(
        &config,
        fleet::config_toml(&server.url(), &sim, PROVIDERS, dir.path(), &extra),
    )
    .unwrap();
    let workers = fleet::start_workers(&config, 2, "historian", dir.path()).await;
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(client.clone());
    let names = Names::default();

    let sent = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let traffic = {
        let (js, names, sent) = (js.clone(), names.clone(), sent.clone());
        tokio::spawn(async move {
            for i in 0.. {
                let r = fleet::request(&format!("H{i}"));
                fleet::publish(&js, &names, &r).await;
                sent.lock().unwrap().push(r.request_id);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    // Calls are being rolled up before the outage.
    eventually(
        Duration::from_secs(20),
        "a rollup with p1 calls",
        async || {
            rollups(&js)
                .await
                .0
                .iter()
                .any(|r| r.provider == "p1" && r.counts.calls > 0)
        },
    )
    .await;

    let outage_start = Utc::now();
    sim.start_outage("p1", None).unwrap();
    // The fault's length, chosen by the test: the report must find it.
    tokio::time::sleep(Duration::from_secs(6)).await;
    sim.set_faults("p1", Faults::default()).unwrap();
    let outage_end = Utc::now();

    // The outage ends when p1's breaker closes again, which the rollups then record.
    let report = eventually(
        Duration::from_secs(30),
        "the outage's end in a report",
        async || {
            let r: ReportReply =
                common::control::call(&client, &names, "report", json!({"since": "10m"})).await;
            r.providers[0]
                .outages
                .last()
                .is_some_and(|o| o.end.is_some())
                .then_some(r)
        },
    )
    .await;
    traffic.abort();
    let p1 = &report.providers[0];
    assert_eq!(p1.provider, "p1");
    assert_eq!(p1.outages.len(), 1, "{:#?}", p1.outages);
    let outage = &p1.outages[0];
    println!(
        "outage reported {} .. {:?} ({} ms, {}); injected {outage_start} .. {outage_end}",
        outage.start, outage.end, outage.duration_ms, outage.cause
    );
    assert!(secs_apart(outage.start, outage_start) <= 3.0, "{outage:?}");
    assert!(
        secs_apart(outage.end.unwrap(), outage_end) <= 3.0,
        "{outage:?}"
    );
    let actual = (outage_end - outage_start).num_milliseconds();
    assert!(
        (outage.duration_ms as i64 - actual).abs() <= 3_000,
        "{outage:?}"
    );
    assert_eq!(p1.mttr_ms, Some(outage.duration_ms));
    // The simulator's outage answers 503: `overloaded`.
    assert_eq!(outage.cause, "overloaded");
    assert!(p1.availability_pct < 100.0 && p1.availability_pct > 0.0);
    assert!(p1.failovers_away > 0, "requests failed over away from p1");
    assert!(
        report.fleet.modes.len() >= 2,
        "the outage shows in the mode timeline"
    );

    // The command line and the REST API give the same report.
    let cli = report_cli(&config);
    assert_eq!(cli.providers[0].outages[0].start, outage.start);
    let rest = common::control::get_json(&format!(
        "http://{}/api/ai/failover/report?since=10m",
        workers.listens[1]
    ))
    .await;
    let rest: ReportReply = serde_json::from_value(rest).unwrap();
    assert_eq!(rest.providers[0].outages[0].start, outage.start);

    // Every interval holds exactly one rollup per provider (p3, never called, included) and
    // one for the fleet, whatever the number of workers; no interval is missing.
    let ids = sent.lock().unwrap().clone();
    fleet::await_results(&js, &ids, Duration::from_secs(30)).await;
    let done = Utc::now();
    eventually(
        Duration::from_secs(15),
        "the interval after the traffic",
        async || rollups(&js).await.1.iter().any(|f| f.start > done),
    )
    .await;
    let (providers, fleet_rollups) = rollups(&js).await;
    let mut starts: BTreeMap<String, Vec<DateTime<Utc>>> = BTreeMap::new();
    for r in &providers {
        starts
            .entry(r.provider.to_string())
            .or_default()
            .push(r.start);
    }
    starts.insert(
        "_fleet".into(),
        fleet_rollups.iter().map(|f| f.start).collect(),
    );
    let fleet_starts: BTreeSet<_> = starts["_fleet"].iter().copied().collect();
    assert_eq!(
        fleet_starts.len(),
        starts["_fleet"].len(),
        "one fleet rollup per interval"
    );
    for (subject, s) in &starts {
        let unique: BTreeSet<_> = s.iter().copied().collect();
        assert_eq!(unique.len(), s.len(), "{subject}: one rollup per interval");
        assert_eq!(unique, fleet_starts, "{subject}: every interval");
    }
    let first = *fleet_starts.first().unwrap();
    let steps: Vec<i64> = fleet_starts
        .iter()
        .map(|s| (*s - first).num_milliseconds())
        .collect();
    assert_eq!(
        steps,
        (0..steps.len() as i64)
            .map(|i| i * 3_000)
            .collect::<Vec<_>>(),
        "consecutive intervals"
    );
    assert!(
        providers
            .iter()
            .any(|r| r.provider == "p3" && r.counts.calls == 0),
        "intervals without calls are rolled up too"
    );
    // What the rollups counted is what the fleet did: every answered request once.
    let results = fleet::stored::<AnalysisResult>(&js, "AI_RESULTS").await;
    let requests: u64 = fleet_rollups.iter().map(|f| f.counts.requests).sum();
    assert_eq!(requests, results.len() as u64, "each answer counted once");
    let from_providers = results.iter().filter(|r| r.provider.is_some()).count() as u64;
    let successes: u64 = providers.iter().map(|r| r.counts.successes).sum();
    assert!(
        successes >= from_providers,
        "{successes} < {from_providers}"
    );
}

/// Waits (at most `within`) for the alerts of `t` that went to `to`, and returns them.
async fn raised(
    js: &jetstream::Context,
    t: AlertType,
    to: &str,
    within: Duration,
) -> Vec<AlertRecord> {
    let what = format!("a {} alert to {to}", t.as_str());
    eventually(within, &what, async || {
        let a = alerts_to(js, t, to).await;
        (!a.is_empty()).then_some(a)
    })
    .await
}

/// The stored alerts of `t` that went to `to`.
async fn alerts_to(js: &jetstream::Context, t: AlertType, to: &str) -> Vec<AlertRecord> {
    fleet::stored::<AlertRecord>(js, "AI_ALERTS")
        .await
        .into_iter()
        .filter(|a| a.alert_type == t && a.to.as_deref() == Some(to))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_providers_dead_letters_and_stalls_raise_alerts() {
    let server = NatsServer::start();
    let sim = fleet::simulator(&PROVIDERS[..1]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("alerts.toml");
    let extra = format!(
        "[worker]\nmax_in_flight = 1\n[engine]\nhedging = false\n{HISTORY}\
         [alerts]\nslow_p95_ms = 300\nslow_min_calls = 2\ndead_letters_per_minute = 1\n\
         stall_after_ms = 1000\nrepeat_after_ms = 600000\n"
    );
    std::fs::write(
        &config,
        fleet::config_toml(&server.url(), &sim, &PROVIDERS[..1], dir.path(), &extra),
    )
    .unwrap();
    let _workers = fleet::start_workers(&config, 1, "watcher", dir.path()).await;
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(client.clone());
    let names = Names::default();
    let ask = |prefix: String, n: usize| {
        let (js, names) = (js.clone(), names.clone());
        async move {
            let mut ids = Vec::new();
            for i in 0..n {
                let r = fleet::request(&format!("{prefix}{i}"));
                ids.push(r.request_id.clone());
                fleet::publish(&js, &names, &r).await;
            }
            ids
        }
    };

    // Dead letters: 5 in an interval of 3 s is 100 a minute, above 1.
    for i in 0..5 {
        fleet::publish_raw(
            &js,
            names.request(ai_failover::contract::Kind::Signal),
            &format!("bad{i}"),
            b"{not json".to_vec(),
        )
        .await;
    }
    let dl = raised(
        &js,
        AlertType::DeadLetters,
        "above",
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(dl.len(), 1);
    assert!(dl[0].details["count"].as_u64().unwrap() >= 1);

    // Slow: every call takes 600 ms, above the 300 ms threshold.
    sim.set_faults(
        "p1",
        Faults {
            latency_ms: Some(Latency::Fixed(600)),
            ..Default::default()
        },
    )
    .unwrap();
    let ids = ask("S".into(), 10).await;
    let slow = raised(
        &js,
        AlertType::SlowProvider,
        "slow",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(slow[0].provider.as_deref(), Some("p1"));
    assert!(
        slow[0].details["p95_ms"].as_f64().unwrap() >= 500.0,
        "{:?}",
        slow[0].details
    );
    fleet::await_results(&js, &ids, Duration::from_secs(30)).await;
    // Fast again: an interval of fast calls only clears it.
    sim.set_faults("p1", Faults::default()).unwrap();
    let mut batch = 0;
    eventually(
        Duration::from_secs(30),
        "slow_provider back to normal",
        async || {
            batch += 1;
            let ids = ask(format!("F{batch}-"), 5).await;
            fleet::await_results(&js, &ids, Duration::from_secs(10)).await;
            !alerts_to(&js, AlertType::SlowProvider, "normal")
                .await
                .is_empty()
        },
    )
    .await;
    assert_eq!(
        alerts_to(&js, AlertType::SlowProvider, "slow").await.len(),
        1,
        "raised once"
    );

    // Stalled: every call hangs (until the 3 s provider timeout) and only one request is
    // taken at a time, so the queue stops moving for longer than a second.
    sim.set_faults(
        "p1",
        Faults {
            hang: true,
            ..Default::default()
        },
    )
    .unwrap();
    let ids = ask("T".into(), 4).await;
    let stalled = raised(
        &js,
        AlertType::FleetStalled,
        "stalled",
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(
        stalled[0].severity,
        ai_failover::contract::Severity::Critical
    );
    assert!(stalled[0].details["waiting"].as_u64().unwrap() >= 1);
    sim.set_faults("p1", Faults::default()).unwrap();
    fleet::await_results(&js, &ids, Duration::from_secs(60)).await;
    eventually(
        Duration::from_secs(20),
        "fleet_stalled back to flowing",
        async || {
            !alerts_to(&js, AlertType::FleetStalled, "flowing")
                .await
                .is_empty()
        },
    )
    .await;
}
