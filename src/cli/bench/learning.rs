//! `ai-failover bench learning`: the learning loop's two figures.
//!
//! - **Learning curve** (engine, no NATS): two equally fast providers, one right 70 % of the
//!   time and one 40 %, the worse one at the better priority (the harder start). Each request
//!   is routed by the engine's real `quality` strategy, its outcome drawn from the chosen
//!   provider's accuracy and folded with the same code the fleet folds with. Reported: how
//!   many labelled requests until at least 80 % of the next 100 go to the better provider,
//!   and the regret (hits lost against always choosing it) over the first 1,000.
//! - **Feedback ingestion** (end to end): worker processes, the simulator and NATS; a steady
//!   request load measured alone and while 1,000 outcome reports per second are published,
//!   alternately, in one run. Reported: the ingestion rate, the backlog left when the flood
//!   stops, the request latency with and without it, and that every report counted once.

use std::collections::HashMap;
use std::future::IntoFuture;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use async_trait::async_trait;
use futures::StreamExt;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::bus::quality_view::QualityBook;
use crate::contract::{
    AnalysisRequest, Feedback, Kind, Names, QualityObservation, QualityRecord, Source, quality_key,
};
use crate::engine::clock::SystemClock;
use crate::engine::ports::{Fleet, NullSink};
use crate::engine::quality::{self, Evidence};
use crate::engine::{Engine, Job};
use crate::providers::Provider;
use crate::providers::fake::Fake;

use super::scenarios::fleet::Fleet as ProcessFleet;
use super::{Line, line, percentile};

/// Options of `ai-failover bench learning`.
#[derive(Debug, Clone, clap::Args)]
pub struct LearningArgs {
    /// Simulated learning runs (each 1,000 requests).
    #[arg(long, default_value_t = 100)]
    pub runs: usize,
    /// Outcome reports per second during the flood.
    #[arg(long, default_value_t = 1000)]
    pub feedback_rate: u32,
    /// Seconds per measured phase (two phases with the flood, two without).
    #[arg(long, default_value_t = 15)]
    pub phase_secs: u64,
    /// Requests per second throughout.
    #[arg(long, default_value_t = 40)]
    pub request_rate: u32,
    /// Skip the end-to-end ingestion measurement.
    #[arg(long)]
    pub skip_ingestion: bool,
    /// Where to write the JSON report.
    #[arg(long, default_value = "bench-learning.json")]
    pub json: PathBuf,
}

/// The two providers' chance of being right.
const ACCURACY: [f64; 2] = [0.4, 0.7];
const REQUESTS_PER_RUN: usize = 1000;

/// The quality half-life of the runs (the default's).
const HALF_LIFE_S: u64 = 604_800;

/// The fleet's view for one engine: a worker's own book of quality records, without NATS.
#[derive(Default)]
struct Book(QualityBook);

#[async_trait]
impl Fleet for Book {
    fn quality(&self, provider: &str, kind: Kind) -> Evidence {
        self.0.evidence(provider, kind, HALF_LIFE_S)
    }
}

/// Plans sampled to measure where the policy sends traffic at a checkpoint.
const PROBES: usize = 200;
/// Labelled requests between two checkpoints.
const CHECK_EVERY: usize = 10;

/// What one learning run saw.
struct Run {
    /// Which provider (0 worse, 1 better) each labelled request went to first.
    chosen: Vec<usize>,
    /// Labelled requests when the policy first sent ≥ 80 % of its traffic to the better one.
    learnt_after: Option<usize>,
}

/// One learning run: [`REQUESTS_PER_RUN`] requests, each served by the engine (selection,
/// exploration turns and all) and labelled at once; every [`CHECK_EVERY`] labels (until it
/// is reached) [`PROBES`] more requests, not labelled, show where it sends traffic.
async fn learning_run(seed: u64) -> Run {
    let cfg = super::fakes::config(
        "nats://127.0.0.1:4222",
        "bench",
        &["worse", "better"],
        "[engine]\nstrategy = \"quality\"\nhedging = false\n",
    );
    let providers: Vec<Arc<dyn Provider>> = vec![Fake::instant("worse"), Fake::instant("better")];
    let book = Arc::new(Book::default());
    let mut records: HashMap<&str, QualityRecord> = HashMap::new();
    let engine = Engine::new(
        Arc::new(cfg),
        providers,
        Arc::new(SystemClock),
        Arc::new(NullSink),
        book.clone(),
        "bench",
    )
    .with_seed(seed);
    let mut outcomes = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5eed);
    let first = async || {
        let job = Job {
            request: AnalysisRequest::signal("AAPL"),
            published_at: chrono::Utc::now(),
            tenant: Default::default(),
        };
        let result = engine.handle(job).await;
        usize::from(result.provider.as_deref() == Some("better"))
    };
    let mut run = Run {
        chosen: Vec::with_capacity(REQUESTS_PER_RUN),
        learnt_after: None,
    };
    for seq in 0..REQUESTS_PER_RUN as u64 {
        if run.learnt_after.is_none() && (seq as usize).is_multiple_of(CHECK_EVERY) {
            let mut better = 0;
            for _ in 0..PROBES {
                better += first().await;
            }
            if better * 5 >= PROBES * 4 {
                run.learnt_after = Some(seq as usize);
            }
        }
        let chosen = first().await;
        let hit = outcomes.random::<f64>() < ACCURACY[chosen];
        let name = ["worse", "better"][chosen];
        let obs = QualityObservation {
            request_id: seq.to_string(),
            horizon_s: 60,
            provider: Some(name.into()),
            model: Some("m".into()),
            kind: Kind::Signal,
            source: Source::Provider,
            hit,
            signed_return: if hit { 0.01 } else { -0.01 },
            confidence: 0.7,
            return_: if hit { 0.01 } else { -0.01 },
            pnl_usd: None,
            reported_at: chrono::Utc::now(),
            at: chrono::Utc::now(),
        };
        // Folded as the fleet folds it, and seen as a worker's watch would see it.
        let r = records
            .entry(name)
            .or_insert_with(|| quality::empty_record(&obs));
        quality::fold(r, &obs, seq + 1, HALF_LIFE_S);
        book.0.set(&quality_key(name, "m", Kind::Signal), r.clone());
        run.chosen.push(chosen);
    }
    run
}

#[derive(Debug, Serialize)]
struct Report {
    lines: Vec<Line>,
}

/// Runs the learning benchmark.
pub async fn run(args: LearningArgs) -> anyhow::Result<()> {
    let mut lines = Vec::new();
    eprintln!("learning curve: {} simulated runs…", args.runs);
    let (mut learnt, mut regret, mut late_share) = (Vec::new(), Vec::new(), Vec::new());
    let mut never = 0usize;
    for seed in 0..args.runs as u64 {
        let run = learning_run(seed).await;
        let chosen = run.chosen;
        match run.learnt_after {
            Some(t) => learnt.push(t as f64),
            None => never += 1,
        }
        let lost: f64 = chosen.iter().map(|&c| ACCURACY[1] - ACCURACY[c]).sum();
        regret.push(lost);
        let tail = &chosen[chosen.len() - 200..];
        late_share.push(tail.iter().sum::<usize>() as f64 / tail.len() as f64);
    }
    lines.push(line(
        "learning: labelled requests until ≥ 80 % go to the better provider, median",
        percentile(&mut learnt, 0.5),
        "requests",
        Some("≤ 300"),
        format!(
            "70 % vs 40 % right, the worse one at priority 1; {} runs, {never} never reached 80 %",
            args.runs
        ),
    ));
    lines.push(line(
        "learning: the same, p90 of runs",
        percentile(&mut learnt, 0.9),
        "requests",
        None,
        String::new(),
    ));
    lines.push(line(
        "learning: regret over the first 1,000 requests, median",
        percentile(&mut regret, 0.5),
        "hits lost",
        None,
        "against always choosing the better provider (uniform choice would lose 150)".into(),
    ));
    lines.push(line(
        "learning: share to the better provider, requests 801–1,000, median",
        percentile(&mut late_share, 0.5) * 100.0,
        "%",
        None,
        "the rest is the exploration floor (quality.explore = 5 %)".into(),
    ));
    if !args.skip_ingestion {
        eprintln!("feedback ingestion: worker processes, the simulator and NATS…");
        lines.extend(ingestion(&args).await?);
    }
    println!("\n{:<78} {:>12}  target", "measurement", "value");
    for l in &lines {
        println!(
            "{:<78} {:>9.1} {:<3} {}",
            l.name,
            l.value,
            l.unit,
            l.target.as_deref().unwrap_or("")
        );
        if !l.note.is_empty() {
            println!("    {}", l.note);
        }
    }
    std::fs::write(&args.json, serde_json::to_string_pretty(&Report { lines })?)?;
    println!("\nwrote {}", args.json.display());
    Ok(())
}

/// Publishes requests at `rate` for `secs` and returns their latencies (publish → result, ms).
async fn requests_phase(
    js: &jetstream::Context,
    client: &async_nats::Client,
    names: &Names,
    rate: u32,
    secs: u64,
) -> anyhow::Result<Vec<f64>> {
    let mut results = client.subscribe(names.results_filter()).await?;
    client.flush().await?;
    let mut sent: HashMap<String, Instant> = HashMap::new();
    let mut latencies = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(1) as f64));
    let stop = Instant::now() + Duration::from_secs(secs);
    let total = rate as u64 * secs;
    let mut n = 0u64;
    while latencies.len() < total as usize {
        tokio::select! {
            _ = tick.tick(), if n < total => {
                let r = AnalysisRequest::signal(&format!("L{}", n % 50));
                sent.insert(r.request_id.clone(), Instant::now());
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Msg-Id", r.request_id.as_str());
                js.publish_with_headers(names.request(r.kind), headers, serde_json::to_vec(&r)?.into()).await?;
                n += 1;
            }
            Some(m) = results.next() => {
                if let Ok(r) = serde_json::from_slice::<crate::contract::AnalysisResult>(&m.payload)
                    && let Some(t0) = sent.remove(&r.request_id)
                {
                    latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
                }
            }
            _ = tokio::time::sleep_until((stop + Duration::from_secs(30)).into()) => {
                anyhow::bail!("{} requests unanswered 30 s after the phase", sent.len());
            }
        }
    }
    Ok(latencies)
}

/// Publishes `total` outcome reports at `rate` per second about `signals` (each report a new
/// horizon, so each is joined and counted); returns how many were sent.
async fn flood(
    js: jetstream::Context,
    names: Names,
    signals: Arc<Vec<String>>,
    rate: u32,
    total: u64,
    first_horizon: u64,
) -> anyhow::Result<u64> {
    let start = Instant::now();
    let mut acks = futures::stream::FuturesUnordered::new();
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
        tokio::time::sleep_until(due.into()).await;
        let id = &signals[(i as usize) % signals.len()];
        let horizon = first_horizon + i / signals.len() as u64;
        let feedback = Feedback::outcome(id, horizon, if i % 3 == 0 { -0.01 } else { 0.01 });
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", feedback.msg_id().as_str());
        let body = serde_json::to_vec(&feedback)?;
        let ack = js
            .publish_with_headers(names.feedback(Kind::Signal), headers, body.into())
            .await?;
        acks.push(ack.into_future());
        while acks.len() > 256 {
            acks.next().await.transpose()?;
        }
    }
    while let Some(ack) = acks.next().await {
        ack?;
    }
    Ok(total)
}

/// ms until the feedback consumer and the quality log's have nothing pending or
/// unacknowledged: every report joined and every outcome folded.
async fn drain_ms(js: &jetstream::Context, names: &Names) -> anyhow::Result<f64> {
    let t0 = Instant::now();
    for (stream, consumer) in [
        (names.feedback_stream(), crate::contract::FEEDBACK_CONSUMER),
        (
            names.quality_log_stream(),
            crate::contract::QUALITY_CONSUMER,
        ),
    ] {
        loop {
            let mut c: jetstream::consumer::PullConsumer = js
                .get_stream(&stream)
                .await?
                .get_consumer(consumer)
                .await
                .map_err(|e| anyhow::anyhow!("consumer {consumer}: {e}"))?;
            let info = c.info().await?;
            if info.num_pending == 0 && info.num_ack_pending == 0 {
                break;
            }
            anyhow::ensure!(
                t0.elapsed() < Duration::from_secs(120),
                "{stream} never drained"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(t0.elapsed().as_secs_f64() * 1000.0)
}

async fn ingestion(args: &LearningArgs) -> anyhow::Result<Vec<Line>> {
    let exe = std::env::current_exe()?;
    let fleet = ProcessFleet::start(&exe, 2, 11).await?;
    let client = async_nats::connect(&fleet.nats_url).await?;
    let js = jetstream::new(client.clone());
    let names = Names::default();
    // Signals to report on: requests answered before the measurement.
    let mut warm = client.subscribe(names.results_filter()).await?;
    client.flush().await?;
    let mut ids = Vec::new();
    for i in 0..400 {
        let r = AnalysisRequest::signal(&format!("W{i}"));
        js.publish(names.request(r.kind), serde_json::to_vec(&r)?.into())
            .await?
            .await?;
        ids.push(r.request_id);
    }
    let mut answered = 0;
    while answered < ids.len() {
        tokio::time::timeout(Duration::from_secs(30), warm.next()).await?;
        answered += 1;
    }
    drop(warm);
    let signals = Arc::new(ids);
    let (mut quiet, mut flooded, mut drains) = (Vec::new(), Vec::new(), Vec::new());
    let (mut reports, mut flood_secs) = (0u64, 0.0);
    for round in 0..2u64 {
        quiet.extend(
            requests_phase(&js, &client, &names, args.request_rate, args.phase_secs).await?,
        );
        let started = Instant::now();
        let sender = tokio::spawn(flood(
            js.clone(),
            names.clone(),
            signals.clone(),
            args.feedback_rate,
            args.feedback_rate as u64 * args.phase_secs,
            60 + round * 1_000_000,
        ));
        flooded.extend(
            requests_phase(&js, &client, &names, args.request_rate, args.phase_secs).await?,
        );
        reports += sender.await??;
        let drain = drain_ms(&js, &names).await?;
        flood_secs += started.elapsed().as_secs_f64();
        drains.push(drain);
    }
    // Capacity: a burst published as fast as one client can, until the fleet has handled it.
    let burst = 20_000u64;
    let started = Instant::now();
    let sent = flood(
        js.clone(),
        names.clone(),
        signals.clone(),
        1_000_000,
        burst,
        5_000_000,
    )
    .await?;
    drain_ms(&js, &names).await?;
    let capacity = sent as f64 / started.elapsed().as_secs_f64();
    reports += sent;
    // Every report counted once: the quality records hold exactly what was sent.
    let quality = js.get_key_value(names.quality_bucket()).await?;
    let mut counted = 0u64;
    let mut keys = quality.keys().await?;
    while let Some(k) = keys.next().await {
        if let Some(v) = quality.get(k?).await? {
            counted += serde_json::from_slice::<QualityRecord>(&v)?.labelled;
        }
    }
    fleet.stop().await;
    let (q50, q99) = (percentile(&mut quiet, 0.5), percentile(&mut quiet, 0.99));
    let (f50, f99) = (
        percentile(&mut flooded, 0.5),
        percentile(&mut flooded, 0.99),
    );
    Ok(vec![
        line(
            "ingestion: outcome reports handled per second during the flood",
            (reports - sent) as f64 / flood_secs,
            "msg/s",
            None,
            format!(
                "{} reports at {}/s over 2 × {} s, 2 worker processes; in all {reports} sent, {counted} counted (must equal)",
                reports - sent,
                args.feedback_rate,
                args.phase_secs
            ),
        ),
        line(
            "ingestion: capacity (a 20,000-report burst, published to handled)",
            capacity,
            "msg/s",
            None,
            "as fast as one publisher sends; 2 worker processes on the same 2 cores".into(),
        ),
        line(
            "ingestion: kept up: backlog left when the flood stopped (time to drain), worst",
            drains.iter().copied().fold(0.0, f64::max),
            "ms",
            Some("< 1000"),
            String::new(),
        ),
        line(
            "ingestion: request latency p50, without → with the flood",
            f50,
            "ms",
            Some(&format!("≤ {:.1} (+10 %)", q50 * 1.1)),
            format!(
                "without: {q50:.1} ms; {} req/s, simulated providers ~60 ms",
                args.request_rate
            ),
        ),
        line(
            "ingestion: request latency p99, without → with the flood",
            f99,
            "ms",
            Some(&format!("≤ {:.1} (+10 %)", q99 * 1.1)),
            format!("without: {q99:.1} ms"),
        ),
    ])
}
