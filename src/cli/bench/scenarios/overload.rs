//! `ai-failover bench overload`: offered load three times what the providers can serve.
//!
//! Two shapes, each against 3 worker processes with the default configuration:
//! - `limit`: every provider answers in ~500 ms and takes at most 4 calls at once; more are
//!   answered 429 at once (a vendor's concurrency limit). Capacity: 3 × 4 / 0.5 s = 24/s.
//! - `slow`: every provider answers in ~1 s with no limit, and each worker takes at most 8
//!   requests at once (`worker.max_in_flight`). Capacity: 3 × 8 / 1 s = 24/s.
//!
//! Requests carry 3 s deadlines. It checks what the issue promises: every request answered,
//! none lost; no provider call started after its request's deadline; goodput (`ok` answers
//! per second) at least 80 % of capacity; breakers left closed; the backlog drained once the
//! load stops; worker RSS under 128 MiB.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

use crate::contract::Status;
use crate::simulator::{Faults, Latency};

use super::catalog::{Change, PROVIDERS, Plan};
use super::fleet::{Fleet, rss_mib};
use super::load;

/// Options of `ai-failover bench overload`.
#[derive(Debug, Clone, clap::Args)]
pub struct OverloadArgs {
    /// `limit`, `slow` or `both`.
    #[arg(long, default_value = "both")]
    pub shape: String,
    /// Seconds of overload.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Offered load as a multiple of capacity.
    #[arg(long, default_value_t = 3.0)]
    pub factor: f64,
    /// Where to write the JSON report.
    #[arg(long, default_value = "overload-results.json")]
    pub json: PathBuf,
    #[arg(long, default_value_t = 5)]
    pub seed: u64,
}

/// The deadline every request carries.
const DEADLINE_MS: u64 = 3_000;
const WORKERS: usize = 3;
/// Goodput must reach this share of capacity.
const GOODPUT_TARGET: f64 = 0.8;
const RSS_LIMIT_MIB: f64 = 128.0;

/// One shape's figures.
#[derive(Debug, Clone, Serialize)]
pub struct OverloadReport {
    pub shape: String,
    pub capacity_per_s: f64,
    pub offered_per_s: f64,
    pub sent: usize,
    pub lost: usize,
    pub statuses: HashMap<String, usize>,
    /// Attempts by outcome (and `hedge` for hedged calls), over every result.
    pub attempts: HashMap<String, usize>,
    /// `ok` answers per second while the load was on.
    pub goodput_per_s: f64,
    pub goodput_share: f64,
    /// Provider calls that started after their request's deadline.
    pub calls_after_deadline: usize,
    pub provider_calls: usize,
    pub rejected_429: usize,
    /// Calls the worker gave up on before the answer (cut by a deadline, or a lost hedge).
    pub abandoned_calls: usize,
    /// Breakers that opened during the run.
    pub breaker_opens: usize,
    /// Seconds from the end of the load until the last answer.
    pub drained_after_s: f64,
    pub max_rss_mib: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub passed: bool,
    pub failures: Vec<String>,
}

struct Shape {
    name: &'static str,
    faults: Faults,
    /// Overrides for the workers.
    env: Vec<(String, String)>,
    capacity: f64,
}

fn shapes(which: &str) -> anyhow::Result<Vec<Shape>> {
    let limit = Shape {
        name: "limit",
        faults: Faults {
            latency_ms: Some(Latency::LogNormal { p50: 500, p99: 700 }),
            max_concurrent: Some(4),
            retry_after_s: Some(1),
            ..Faults::default()
        },
        env: Vec::new(),
        capacity: 3.0 * 4.0 / 0.5,
    };
    let slow = Shape {
        name: "slow",
        faults: Faults {
            latency_ms: Some(Latency::LogNormal {
                p50: 1_000,
                p99: 1_300,
            }),
            ..Faults::default()
        },
        env: vec![("AI_FAILOVER_WORKER__MAX_IN_FLIGHT".into(), "8".into())],
        capacity: WORKERS as f64 * 8.0 / 1.0,
    };
    Ok(match which {
        "limit" => vec![limit],
        "slow" => vec![slow],
        "both" => vec![limit, slow],
        other => anyhow::bail!("unknown --shape `{other}`: use limit, slow or both"),
    })
}

fn percentile(mut v: Vec<f64>, q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1]
}

async fn run_shape(
    shape: Shape,
    args: &OverloadArgs,
    exe: &std::path::Path,
) -> anyhow::Result<OverloadReport> {
    let run = Duration::from_secs(args.seconds);
    let offered = shape.capacity * args.factor;
    let plan = Plan {
        run,
        window: (Duration::ZERO, run),
        faulty: Vec::new(),
        changes: PROVIDERS
            .iter()
            .map(|(id, _, _)| Change {
                at: Duration::ZERO,
                provider: id,
                faults: shape.faults.clone(),
            })
            .collect(),
        deadlines_ms: Some((DEADLINE_MS, DEADLINE_MS)),
    };
    let fleet = Fleet::start_with(exe, WORKERS, args.seed, shape.env.clone()).await?;
    let pids = fleet.worker_pids();
    // RSS is sampled while the load runs, every second.
    let max_rss = std::sync::Arc::new(parking_lot::Mutex::new(0.0f64));
    let sampler = tokio::spawn({
        let max_rss = max_rss.clone();
        async move {
            loop {
                for p in &pids {
                    let rss = rss_mib(*p).unwrap_or(0.0);
                    let mut max = max_rss.lock();
                    *max = max.max(rss);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    });
    let recorded = load::run(&fleet.nats_url, &fleet.sim, &plan, offered, args.seed).await;
    sampler.abort();
    let max_rss = *max_rss.lock();
    let log = fleet.sim.log();
    fleet.stop().await;
    let rec = recorded.with_context(|| format!("shape {}", shape.name))?;

    let mut statuses: HashMap<String, usize> = HashMap::new();
    let mut attempts: HashMap<String, usize> = HashMap::new();
    for r in rec.results.values() {
        for a in &r.result.attempts {
            let outcome = serde_json::to_value(a.outcome)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            *attempts.entry(outcome).or_default() += 1;
            if a.hedge {
                *attempts.entry("hedge".into()).or_default() += 1;
            }
        }
    }
    let mut latencies = Vec::new();
    let mut ok_in_run = 0usize;
    let mut last_answer = Duration::ZERO;
    for s in &rec.sent {
        if let Some(r) = rec.results.get(&s.id) {
            *statuses.entry(r.result.status.as_str().into()).or_default() += 1;
            latencies.push(r.at.saturating_sub(s.at).as_secs_f64() * 1000.0);
            last_answer = last_answer.max(r.at);
            if r.result.status == Status::Ok && r.at <= run {
                ok_in_run += 1;
            }
        }
    }
    let lost = rec.sent.len() - latencies.len();
    let sent_at: HashMap<&str, Duration> = rec.sent.iter().map(|s| (s.id.as_str(), s.at)).collect();
    let mut after_deadline = 0;
    let mut calls = 0;
    let mut rejected = 0;
    let mut abandoned = 0;
    for c in log.iter().filter(|c| !c.probe) {
        let Some(sent) = c.request_id.as_deref().and_then(|id| sent_at.get(id)) else {
            continue;
        };
        calls += 1;
        if c.http_status == Some(429) {
            rejected += 1;
        }
        if c.outcome == crate::simulator::CallOutcome::Abandoned {
            abandoned += 1;
        }
        let started = c.at - chrono::Duration::milliseconds(c.latency_ms as i64);
        let deadline = rec.t0
            + chrono::Duration::from_std(*sent).unwrap_or_default()
            + chrono::Duration::milliseconds(DEADLINE_MS as i64);
        if started > deadline {
            after_deadline += 1;
        }
    }
    let breaker_opens = rec
        .health
        .iter()
        .filter(|(_, e)| {
            e.breaker == crate::contract::BreakerState::Open
                && e.previous_breaker != crate::contract::BreakerState::Open
        })
        .count();
    let goodput = ok_in_run as f64 / run.as_secs_f64();
    let share = goodput / shape.capacity;
    let drained_after = last_answer.saturating_sub(run).as_secs_f64();
    let mut failures = Vec::new();
    if lost > 0 {
        failures.push(format!("{lost} requests unanswered"));
    }
    if after_deadline > 0 {
        failures.push(format!(
            "{after_deadline} calls started after their deadline"
        ));
    }
    if share < GOODPUT_TARGET {
        failures.push(format!(
            "goodput {goodput:.1}/s is {:.0} % of capacity (target {:.0} %)",
            share * 100.0,
            GOODPUT_TARGET * 100.0
        ));
    }
    if max_rss >= RSS_LIMIT_MIB {
        failures.push(format!("a worker reached {max_rss:.0} MiB"));
    }
    Ok(OverloadReport {
        shape: shape.name.into(),
        capacity_per_s: shape.capacity,
        offered_per_s: offered,
        sent: rec.sent.len(),
        lost,
        statuses,
        attempts,
        goodput_per_s: goodput,
        goodput_share: share,
        calls_after_deadline: after_deadline,
        provider_calls: calls,
        rejected_429: rejected,
        abandoned_calls: abandoned,
        breaker_opens,
        drained_after_s: drained_after,
        max_rss_mib: max_rss,
        p50_ms: percentile(latencies.clone(), 0.5),
        p99_ms: percentile(latencies, 0.99),
        passed: failures.is_empty(),
        failures,
    })
}

/// Each shape of `args` on a fresh fleet whose workers run `exe`.
pub async fn measure(
    args: &OverloadArgs,
    exe: &std::path::Path,
) -> anyhow::Result<Vec<OverloadReport>> {
    anyhow::ensure!(args.seconds >= 5, "--seconds must be at least 5");
    anyhow::ensure!(args.factor > 0.0, "--factor must be positive");
    let mut reports = Vec::new();
    for shape in shapes(&args.shape)? {
        eprintln!(
            "overload `{}`: {:.0} req/s offered against {:.0}/s of capacity for {} s…",
            shape.name,
            shape.capacity * args.factor,
            shape.capacity,
            args.seconds
        );
        reports.push(run_shape(shape, args, exe).await?);
    }
    Ok(reports)
}

/// The command: each shape on a fresh fleet; fails when a target is missed.
pub async fn run(args: OverloadArgs) -> anyhow::Result<()> {
    let reports = measure(&args, &std::env::current_exe()?).await?;
    for r in &reports {
        println!(
            "{:<6} offered {:>5.1}/s  capacity {:>4.1}/s  goodput {:>5.1}/s ({:>3.0} %)  sent {}  lost {}  {:?}",
            r.shape,
            r.offered_per_s,
            r.capacity_per_s,
            r.goodput_per_s,
            r.goodput_share * 100.0,
            r.sent,
            r.lost,
            r.statuses
        );
        println!(
            "       attempts {:?}\n       calls {} (429: {}, abandoned: {}), after deadline {}, breaker opens {}, drained {:.1} s after the load, p50 {:.0} ms, p99 {:.0} ms, max RSS {:.1} MiB{}",
            r.attempts,
            r.provider_calls,
            r.rejected_429,
            r.abandoned_calls,
            r.calls_after_deadline,
            r.breaker_opens,
            r.drained_after_s,
            r.p50_ms,
            r.p99_ms,
            r.max_rss_mib,
            if r.passed {
                String::new()
            } else {
                format!("\n       MISSED: {}", r.failures.join("; "))
            }
        );
    }
    std::fs::write(&args.json, serde_json::to_string_pretty(&reports)?)?;
    eprintln!("JSON report: {}", args.json.display());
    let missed: Vec<String> = reports
        .iter()
        .filter(|r| !r.passed)
        .map(|r| format!("{}: {}", r.shape, r.failures.join("; ")))
        .collect();
    anyhow::ensure!(missed.is_empty(), "targets missed: {}", missed.join(" | "));
    Ok(())
}
