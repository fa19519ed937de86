//! `ai-failover bench quota`: how exactly a tenant's quota holds across a fleet. Several
//! workers (in this process, over one nats-server) serve one tenant whose offered load is
//! twice its `max_requests_per_minute`, for several minutes; the report compares what was
//! admitted with the quota, per minute and over every 60 s window.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use futures::StreamExt;

use crate::bus::runtime;
use crate::contract::{AnalysisRequest, AnalysisResult, ErrorClass, Names, Status};
use crate::providers::Provider;
use crate::providers::fake::Fake;

use super::super::local::{Children, start_nats};
use super::{fakes, line};

/// Options of `bench quota`.
#[derive(Debug, Clone, clap::Args)]
pub struct QuotaArgs {
    /// Workers sharing the quota.
    #[arg(long, default_value_t = 3)]
    pub workers: usize,
    /// How long the tenant offers load.
    #[arg(long, default_value_t = 180)]
    pub seconds: u64,
    /// The tenant's `max_requests_per_minute`.
    #[arg(long, default_value_t = 120)]
    pub quota: u32,
    /// Offered load as a multiple of the quota.
    #[arg(long, default_value_t = 2.0)]
    pub load: f64,
    /// Where to write the JSON report.
    #[arg(long, default_value = "bench-quota.json")]
    pub json: std::path::PathBuf,
}

/// Runs the benchmark.
pub async fn run(args: QuotaArgs) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("ai-failover-quota")
        .tempdir()?;
    let mut children = Children(Vec::new());
    let nats = start_nats(dir.path(), &mut children).await?;
    let extra = format!(
        "[engine]\nhedging = false\n[[tenants]]\nid = \"acme\"\nmax_requests_per_minute = {}\n",
        args.quota
    );
    let mut workers = Vec::new();
    for i in 0..args.workers {
        let mut cfg = fakes::config(&nats, "ai", &["a"], &extra);
        cfg.worker.id = Some(format!("quota-{i}"));
        let providers: Vec<Arc<dyn Provider>> = vec![Fake::instant("a")];
        workers.push(runtime::start(Arc::new(cfg), Some(providers)).await?);
    }
    let client = async_nats::connect(&nats).await?;
    let js = async_nats::jetstream::new(client.clone());
    let names = Names::default();
    let mut results = client.subscribe("ai.tenant.acme.analysis.result.>").await?;
    client.flush().await?;

    let rate = f64::from(args.quota) * args.load / 60.0;
    let total = (rate * args.seconds as f64) as usize;
    eprintln!(
        "quota {}/min, {} workers, offering {rate:.1} req/s for {} s ({total} requests)…",
        args.quota, args.workers, args.seconds
    );
    let started = Instant::now();
    let mut sent_at: HashMap<String, f64> = HashMap::new();
    let subject = format!("{}.tenant.acme.analysis.request.signal", names.prefix());
    for i in 0..total {
        let due = started + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let request = AnalysisRequest::signal("AAPL");
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", request.request_id.as_str());
        let ack = js
            .publish_with_headers(
                subject.clone(),
                headers,
                serde_json::to_vec(&request)?.into(),
            )
            .await?;
        ack.await?;
        // Wall-clock time, on the same second grid as the server's publish time that the
        // quota counts by (both clocks are this machine's).
        let now = chrono::Utc::now();
        sent_at.insert(request.request_id, now.timestamp_millis() as f64 / 1_000.0);
    }
    // Every request is answered, admitted or refused.
    let mut answered: HashMap<String, AnalysisResult> = HashMap::new();
    while answered.len() < total {
        let msg = tokio::time::timeout(Duration::from_secs(30), results.next())
            .await
            .map_err(|_| anyhow::anyhow!("{} of {total} answered after 30 s", answered.len()))?
            .ok_or_else(|| anyhow::anyhow!("results subscription ended"))?;
        let r: AnalysisResult = serde_json::from_slice(&msg.payload)?;
        answered.insert(r.request_id.clone(), r);
    }
    for w in workers {
        w.stop().await;
    }

    let mut admitted: Vec<f64> = Vec::new();
    let mut refused = 0usize;
    let mut other = 0usize;
    for (id, r) in &answered {
        let at = sent_at.get(id).copied().unwrap_or(f64::NAN);
        match (r.status, r.error.as_ref().map(|e| e.class)) {
            (Status::Ok, _) => admitted.push(at),
            (Status::Rejected, Some(ErrorClass::QuotaExceeded)) => refused += 1,
            _ => other += 1,
        }
    }
    admitted.sort_by(f64::total_cmp);
    let quota = f64::from(args.quota);
    let minutes = args.seconds as f64 / 60.0;
    // The most admitted within any 60 s of send times, and in any window of 60 whole seconds
    // (how the quota counts: by publish second).
    let secs: Vec<u64> = admitted.iter().map(|t| *t as u64).collect();
    let whole_secs: Vec<f64> = secs.iter().map(|s| *s as f64).collect();
    let whole = most_within(&whole_secs, 60.0);
    // What one exact limiter (the same 60-whole-second rule, no fleet, no races) admits of
    // the same arrivals: the fleet should match it.
    let mut offered: Vec<f64> = sent_at.values().copied().collect();
    offered.sort_by(f64::total_cmp);
    let first = offered.first().map_or(0, |t| *t as u64);
    let mut ideal_window = crate::contract::QuotaWindow::default();
    let ideal = offered
        .iter()
        .filter(|t| ideal_window.admit(**t as u64, args.quota))
        .count();
    let per_minute: Vec<usize> = (0..minutes.ceil() as u64)
        .map(|m| secs.iter().filter(|s| (**s - first) / 60 == m).count())
        .collect();
    let lines = vec![
        line(
            "quota: admitted by the fleet / by one exact limiter",
            admitted.len() as f64 / ideal as f64,
            "×",
            Some("1.000"),
            format!(
                "{} admitted ({ideal} by an exact limiter on the same arrivals), {refused} refused quota_exceeded, {other} other, of {total} offered over {minutes:.1} min at {:.1}× the quota ({:.0}/min); admitted per minute: {per_minute:?}",
                admitted.len(),
                args.load,
                quota * args.load,
            ),
        ),
        line(
            "quota: most admitted in any 60 whole seconds",
            whole as f64,
            "req",
            Some(&format!("≤ {}", args.quota)),
            format!("{} workers admitting against one ai_quotas record", args.workers),
        ),
        line(
            "quota: most admitted in any 60.000 s (send times)",
            most_within(&admitted, 60.0) as f64,
            "req",
            Some(&format!("≈ {}", args.quota)),
            "client send times; the quota counts whole publish seconds, so a window cut mid-second may hold one second's more".into(),
        ),
    ];
    super::report(&lines, &args.json)
}

/// The most of the sorted `times` that lie within less than `width` of each other.
fn most_within(times: &[f64], width: f64) -> usize {
    let (mut best, mut j) = (0, 0);
    for i in 0..times.len() {
        while times[i] - times[j] >= width {
            j += 1;
        }
        best = best.max(i - j + 1);
    }
    best
}
