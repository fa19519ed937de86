//! Throughput of the worker against a pass-through loop doing the same JetStream work (claim,
//! store the outcome, record the signal, publish the result, double-ack), and
//! latency at a paced load.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;

use crate::bus::outcomes::{Claim, Outcomes};
use crate::bus::publish::Publisher;
use crate::bus::signals::Signals;
use crate::bus::{runtime, setup};
use crate::contract::{
    AnalysisRequest, AnalysisResult, Mode, Names, RiskAdjustment, Source, Status, Usage,
};
use crate::providers::Provider;

use super::{cpu, fakes};

/// A throughput measurement.
pub struct Throughput {
    pub rps: f64,
    /// CPU per request, of this process (including the load generator) and of the server.
    pub cpu: cpu::PerRequest,
}

fn requests(n: usize) -> Vec<AnalysisRequest> {
    (0..n)
        .map(|i| {
            let mut r = AnalysisRequest::signal(["AAPL", "MSFT", "NVDA", "TSLA"][i % 4]);
            r.context = Some(
                serde_json::from_value(
                    serde_json::json!({"prices": [100.0, 101.0, 102.5, 101.8, 103.0]}),
                )
                .expect("object"),
            );
            r
        })
        .collect()
}

async fn publish_all(
    js: &jetstream::Context,
    names: &Names,
    reqs: &[AnalysisRequest],
) -> anyhow::Result<()> {
    let mut acks = Vec::with_capacity(reqs.len());
    for r in reqs {
        let mut h = async_nats::HeaderMap::new();
        h.insert("Nats-Msg-Id", r.request_id.as_str());
        acks.push(
            js.publish_with_headers(names.request(r.kind), h, serde_json::to_vec(r)?.into())
                .await?,
        );
    }
    for a in acks {
        a.await?;
    }
    Ok(())
}

/// Publishes `n` requests and waits for `n` results; returns the rate.
async fn drive(nats: &str, server_pid: u32, names: &Names, n: usize) -> anyhow::Result<Throughput> {
    let client = async_nats::connect(nats).await?;
    let js = jetstream::new(client.clone());
    let mut results = client.subscribe(names.results_filter()).await?;
    let reqs = requests(n);
    let start = Instant::now();
    let meter = cpu::Meter::start(server_pid);
    let publisher = tokio::spawn({
        let js = js.clone();
        let names = names.clone();
        async move { publish_all(&js, &names, &reqs).await }
    });
    let mut seen = 0;
    while seen < n {
        tokio::time::timeout(Duration::from_secs(60), results.next())
            .await
            .map_err(|_| anyhow::anyhow!("results stopped after {seen} of {n}"))?;
        seen += 1;
    }
    publisher.await??;
    Ok(Throughput {
        rps: n as f64 / start.elapsed().as_secs_f64(),
        cpu: meter.stop(n),
    })
}

fn template(worker: &str) -> AnalysisResult {
    AnalysisResult {
        request_id: String::new(),
        kind: crate::contract::Kind::Signal,
        symbol: Some("AAPL".into()),
        status: Status::Ok,
        source: Source::Provider,
        provider: Some("a".into()),
        model: Some("m".into()),
        mode: Mode::Normal,
        signal: Some(crate::contract::Signal {
            action: crate::contract::Action::Buy,
            confidence: 0.7,
            rationale: "bench".into(),
            position_size: 0.3,
            horizon: "1d".into(),
        }),
        analysis: None,
        risk: RiskAdjustment {
            position_multiplier: 1.0,
            min_confidence: 0.0,
            trading_suspended: false,
        },
        attempts: vec![],
        latency_ms: 0,
        usage: Usage {
            input_tokens: 400,
            output_tokens: 60,
        },
        cost_usd: 0.0,
        error: None,
        worker_id: worker.into(),
        completed_at: chrono::Utc::now(),
        tenant: None,
    }
}

/// A consume loop with the worker's JetStream work and no engine.
async fn passthrough_loop(
    nats: String,
    prefix: String,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let cfg = fakes::config(&nats, &prefix, &["a"], "");
    let client = setup::connect(&cfg.nats).await?;
    let bus = setup::ensure(&client, &cfg).await?;
    let outcomes = Outcomes::new(bus.outcomes.clone(), Duration::from_secs(30));
    let publisher = Publisher::new(bus.js.clone(), client.clone(), bus.names.clone());
    let signals = Signals::new(bus.signals.clone());
    let permits = Arc::new(tokio::sync::Semaphore::new(cfg.worker.max_in_flight));
    while !stop.is_cancelled() {
        let first = permits.clone().acquire_owned().await?;
        let mut slots = vec![first];
        while let Ok(p) = permits.clone().try_acquire_owned() {
            slots.push(p);
        }
        let mut batch = bus
            .consumer
            .batch()
            .max_messages(slots.len())
            .expires(Duration::from_millis(500))
            .messages()
            .await?;
        while let Some(Ok(msg)) = batch.next().await {
            let slot = slots.pop().expect("batch fits the slots");
            let (outcomes, publisher) = (outcomes.clone(), publisher.clone());
            let signals = signals.clone();
            tokio::spawn(async move {
                let req: AnalysisRequest =
                    serde_json::from_slice(&msg.payload).expect("bench request");
                if let Ok(Claim::Owned { revision, .. }) = outcomes
                    .claim(&req.request_id, "pass", chrono::Utc::now())
                    .await
                {
                    let mut result = template("pass");
                    result.request_id = req.request_id.clone();
                    let _ = outcomes.complete(&result, revision).await;
                    // As the worker does: the signal store's record alongside the publish.
                    let _ = tokio::join!(
                        signals.record(&result),
                        publisher.result(&result, None, async_nats::HeaderMap::new())
                    );
                }
                let _ = msg.double_ack_with(AckKind::Ack).await;
                drop(slot);
            });
        }
    }
    Ok(())
}

/// Deletes the streams and buckets under `prefix` once its round is over.
///
/// Each round runs on fresh streams; left in place, their messages and keys stay in the
/// server's memory, and on two cores the Go garbage collector marking that ever larger heap
/// (over 100 MB by the end of a run) showed up in every later round's latency tail, the
/// pass-through's as much as the worker's.
async fn teardown(nats: &str, prefix: &str) -> anyhow::Result<()> {
    let names = Names::new(prefix);
    let client = async_nats::connect(nats).await?;
    let js = jetstream::new(client.clone());
    for stream in [
        names.requests_stream(),
        names.results_stream(),
        names.events_stream(),
        names.dead_letter_stream(),
        names.advisories_stream(),
        names.audit_stream(),
        names.feedback_stream(),
        names.quality_log_stream(),
    ] {
        js.delete_stream(&stream).await?;
    }
    for bucket in [
        names.health_bucket(),
        names.outcomes_bucket(),
        names.budget_bucket(),
        names.cache_bucket(),
        names.signals_bucket(),
        names.quality_bucket(),
    ] {
        js.delete_key_value(&bucket).await?;
    }
    client.drain().await?;
    Ok(())
}

/// Throughput of the pass-through loop.
pub async fn passthrough(
    nats: &str,
    server_pid: u32,
    prefix: &str,
    n: usize,
) -> anyhow::Result<Throughput> {
    let stop = tokio_util::sync::CancellationToken::new();
    let names = Names::new(prefix);
    // Set-up first, so the measurement starts with the streams in place.
    let cfg = fakes::config(nats, prefix, &["a"], "");
    setup::ensure(&setup::connect(&cfg.nats).await?, &cfg).await?;
    let task = tokio::spawn(passthrough_loop(nats.into(), prefix.into(), stop.clone()));
    let t = drive(nats, server_pid, &names, n).await?;
    stop.cancel();
    let _ = task.await;
    teardown(nats, prefix).await?;
    Ok(t)
}

/// Throughput of `count` workers (in this process) with an instant provider.
pub async fn workers(
    nats: &str,
    server_pid: u32,
    prefix: &str,
    n: usize,
    count: usize,
) -> anyhow::Result<Throughput> {
    let mut running = Vec::new();
    for i in 0..count {
        let mut cfg = fakes::config(nats, prefix, &["a"], "");
        cfg.worker.id = Some(format!("bench-{prefix}-{i}"));
        let p: Arc<dyn Provider> = crate::providers::fake::Fake::instant("a");
        running.push(runtime::start(Arc::new(cfg), Some(vec![p])).await?);
    }
    let t = drive(nats, server_pid, &Names::new(prefix), n).await?;
    for r in running {
        r.stop().await;
    }
    teardown(nats, prefix).await?;
    Ok(t)
}

/// Publish → result latencies (ms) at `rate` for `duration`, through a worker or the
/// pass-through loop.
pub async fn paced_latency(
    nats: &str,
    prefix: &str,
    rate: f64,
    duration: Duration,
    pass: bool,
) -> anyhow::Result<(Vec<f64>, usize)> {
    let stop = tokio_util::sync::CancellationToken::new();
    let cfg = fakes::config(nats, prefix, &["a"], "");
    let mut worker = None;
    let mut task = None;
    if pass {
        setup::ensure(&setup::connect(&cfg.nats).await?, &cfg).await?;
        task = Some(tokio::spawn(passthrough_loop(
            nats.into(),
            prefix.into(),
            stop.clone(),
        )));
    } else {
        let p: Arc<dyn Provider> = crate::providers::fake::Fake::instant("a");
        worker = Some(runtime::start(Arc::new(cfg), Some(vec![p])).await?);
    }
    let names = Names::new(prefix);
    let client = async_nats::connect(nats).await?;
    let js = jetstream::new(client.clone());
    let mut results = client.subscribe(names.results_filter()).await?;
    let total = (rate * duration.as_secs_f64()) as usize;
    let reqs = requests(total);
    let sent: Arc<parking_lot::Mutex<HashMap<String, Instant>>> = Arc::default();
    let pub_task = tokio::spawn({
        let (js, names, sent) = (js.clone(), names.clone(), sent.clone());
        async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            for r in reqs {
                tick.tick().await;
                let mut h = async_nats::HeaderMap::new();
                h.insert("Nats-Msg-Id", r.request_id.as_str());
                sent.lock().insert(r.request_id.clone(), Instant::now());
                let body = serde_json::to_vec(&r).expect("request");
                let ack = js
                    .publish_with_headers(names.request(r.kind), h, body.into())
                    .await;
                // Acks are awaited off the pacing path.
                if let Ok(ack) = ack {
                    tokio::spawn(ack.into_future());
                }
            }
        }
    });
    let mut lat = Vec::with_capacity(total);
    while lat.len() < total {
        let msg = tokio::time::timeout(Duration::from_secs(30), results.next())
            .await
            .map_err(|_| anyhow::anyhow!("latency run stalled"))?
            .ok_or_else(|| anyhow::anyhow!("subscription closed"))?;
        let now = Instant::now();
        if let Ok(r) = serde_json::from_slice::<AnalysisResult>(&msg.payload)
            && let Some(t0) = sent.lock().remove(&r.request_id)
        {
            lat.push(now.duration_since(t0).as_secs_f64() * 1_000.0);
        }
    }
    pub_task.await?;
    stop.cancel();
    if let Some(t) = task {
        let _ = t.await;
    }
    if let Some(w) = worker {
        w.stop().await;
    }
    teardown(nats, prefix).await?;
    Ok((lat, total))
}
