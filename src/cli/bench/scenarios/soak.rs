//! `ai-failover bench soak [--minutes N]`: hours, not seconds. Three worker processes take an
//! open-loop stream of requests while the providers go through a rotating mix of faults and
//! one worker is restarted every few minutes (worker 1 never is, so it shows the long-run
//! memory trend). It reports lost and duplicated requests, each worker's RSS and open file
//! descriptors over time, the KV key counts and stream sizes, and p99 per 5-minute window.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream;
use futures::StreamExt;
use serde::Serialize;

use crate::contract::Names;
use crate::simulator::{ErrorRates, Faults, Latency, Outage};

use super::catalog::{Change, PROVIDERS, Plan, baseline};
use super::fleet::{Fleet, Restarter, rss_mib};
use super::load;

/// Options of `ai-failover bench soak`.
#[derive(Debug, Clone, clap::Args)]
pub struct SoakArgs {
    /// How long requests are sent.
    #[arg(long, default_value_t = 30.0)]
    pub minutes: f64,
    /// Requests per second, open loop.
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// Worker processes (at least 2: one is never restarted, the others take turns).
    #[arg(long, default_value_t = 3)]
    pub workers: usize,
    /// A worker is restarted this often.
    #[arg(long, default_value_t = 180)]
    pub restart_every_s: u64,
    /// Where to write the JSON report.
    #[arg(long, default_value = "soak-results.json")]
    pub json: PathBuf,
    #[arg(long, default_value_t = 11)]
    pub seed: u64,
}

/// One look at the fleet.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub at_s: u64,
    /// Per worker: (RSS MiB, open file descriptors); `None` while it restarts.
    pub workers: Vec<Option<(f64, usize)>>,
    pub health_keys: usize,
    pub outcome_keys: usize,
    pub results_stored: u64,
    pub requests_pending: u64,
    pub events_stored: u64,
}

/// One 5-minute window of requests, by send time.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    pub from_min: u64,
    pub sent: usize,
    pub answered: usize,
    pub ok: usize,
    pub p99_ms: f64,
}

/// The report.
#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    pub minutes: f64,
    pub rate: f64,
    pub sent: usize,
    pub lost: usize,
    /// Requests with more than one stored result in `AI_RESULTS`.
    pub duplicated_stored: usize,
    /// Extra deliveries live subscribers saw (a redelivery after a crash replays the
    /// stored result; the stream drops it as a duplicate).
    pub duplicate_deliveries: usize,
    pub restarts: usize,
    pub samples: Vec<Sample>,
    pub windows: Vec<Window>,
    /// RSS of worker 1 (never restarted): after warm-up, at the end, and the growth.
    pub rss_warm_mib: f64,
    pub rss_end_mib: f64,
    pub rss_growth_pct: f64,
}

/// The fault mix: every 90 s the next shape hits the next provider for 45 s.
fn plan(run: Duration) -> Plan {
    let shapes: [Faults; 5] = [
        Faults {
            outage: Some(Outage {
                start_ms: 0,
                duration_ms: None,
            }),
            ..baseline()
        },
        Faults {
            latency_ms: Some(Latency::LogNormal {
                p50: 1_500,
                p99: 4_000,
            }),
            ..Faults::default()
        },
        Faults {
            error_rate: ErrorRates {
                rate_limited: 0.3,
                ..Default::default()
            },
            ..baseline()
        },
        Faults {
            hang: true,
            ..Faults::default()
        },
        Faults {
            error_rate: ErrorRates {
                server_error: 0.2,
                ..Default::default()
            },
            ..baseline()
        },
    ];
    let mut changes = Vec::new();
    let mut at = Duration::from_secs(30);
    let mut i = 0;
    while at + Duration::from_secs(45) < run {
        let provider = PROVIDERS[i % PROVIDERS.len()].0;
        changes.push(Change {
            at,
            provider,
            faults: shapes[i % shapes.len()].clone(),
        });
        changes.push(Change {
            at: at + Duration::from_secs(45),
            provider,
            faults: baseline(),
        });
        at += Duration::from_secs(90);
        i += 1;
    }
    Plan {
        run,
        window: (Duration::ZERO, run),
        faulty: PROVIDERS.iter().map(|p| p.0).collect(),
        changes,
        deadlines_ms: None,
    }
}

/// RSS in MiB and open file descriptors of process `pid`.
fn process_usage(pid: u32) -> Option<(f64, usize)> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some((rss_mib(pid)?, fds))
}

async fn keys(js: &jetstream::Context, bucket: String) -> usize {
    match js.get_key_value(bucket).await {
        Ok(kv) => match kv.keys().await {
            Ok(keys) => keys.count().await,
            Err(_) => 0,
        },
        Err(_) => 0,
    }
}

async fn stream_messages(js: &jetstream::Context, name: String) -> u64 {
    match js.get_stream(name).await {
        Ok(mut s) => s.info().await.map_or(0, |i| i.state.messages),
        Err(_) => 0,
    }
}

async fn sample(js: &jetstream::Context, names: &Names, pids: &[u32], at: Duration) -> Sample {
    Sample {
        at_s: at.as_secs(),
        workers: pids.iter().map(|p| process_usage(*p)).collect(),
        health_keys: keys(js, names.health_bucket()).await,
        outcome_keys: keys(js, names.outcomes_bucket()).await,
        results_stored: stream_messages(js, names.results_stream()).await,
        requests_pending: stream_messages(js, names.requests_stream()).await,
        events_stored: stream_messages(js, names.events_stream()).await,
    }
}

/// Samples every minute and restarts workers 2..N in turn until `run` is over.
async fn watch(
    js: &jetstream::Context,
    restarter: &mut Restarter,
    run: Duration,
    restart_every: Duration,
) -> anyhow::Result<(Vec<Sample>, usize)> {
    let names = Names::default();
    let start = Instant::now();
    let mut samples = vec![sample(js, &names, &restarter.pids, Duration::ZERO).await];
    let mut next_sample = Duration::from_secs(60);
    let mut next_restart = restart_every;
    let mut restarts = 0;
    let n = restarter.pids.len();
    while start.elapsed() < run {
        let next = next_sample.min(next_restart);
        tokio::time::sleep_until((start + next).into()).await;
        if next == next_restart {
            let victim = 2 + restarts % (n - 1);
            restarter.restart(victim).await?;
            restarts += 1;
            next_restart += restart_every;
        } else {
            samples.push(sample(js, &names, &restarter.pids, start.elapsed()).await);
            next_sample += Duration::from_secs(60);
        }
    }
    samples.push(sample(js, &names, &restarter.pids, start.elapsed()).await);
    Ok((samples, restarts))
}

/// Stored results per request id in `AI_RESULTS`.
async fn stored_counts(js: &jetstream::Context) -> anyhow::Result<HashMap<String, usize>> {
    let names = Names::default();
    let stream = js.get_stream(names.results_stream()).await?;
    let total = stream.clone().info().await?.state.messages;
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
        .await?;
    let mut messages = consumer.messages().await?;
    let mut counts = HashMap::new();
    for _ in 0..total {
        let Some(msg) = tokio::time::timeout(Duration::from_secs(10), messages.next()).await?
        else {
            break;
        };
        let msg = msg?;
        if let Ok(r) = serde_json::from_slice::<crate::contract::AnalysisResult>(&msg.payload) {
            *counts.entry(r.request_id).or_insert(0) += 1;
        }
    }
    Ok(counts)
}

fn p99(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * 0.99).ceil() as usize).clamp(1, v.len()) - 1]
}

/// The command.
pub async fn run(args: SoakArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.workers >= 2, "--workers must be at least 2");
    anyhow::ensure!(args.minutes > 0.0, "--minutes must be positive");
    let run = Duration::from_secs_f64(args.minutes * 60.0);
    let plan = plan(run);
    let exe = std::env::current_exe()?;
    eprintln!(
        "soak: {} workers, {} req/s for {:.1} min, a fault every 90 s, a restart every {} s…",
        args.workers, args.rate, args.minutes, args.restart_every_s
    );
    let fleet = Fleet::start(&exe, args.workers, args.seed).await?;
    let client = async_nats::connect(&fleet.nats_url).await?;
    let js = jetstream::new(client);
    let mut restarter = fleet.restarter();
    let (recorded, watched) = tokio::join!(
        load::run(&fleet.nats_url, &fleet.sim, &plan, args.rate, args.seed),
        watch(
            &js,
            &mut restarter,
            run,
            Duration::from_secs(args.restart_every_s)
        )
    );
    let recorded = recorded.context("the load")?;
    let (samples, restarts) = watched.context("watching the fleet")?;
    let stored = stored_counts(&js).await.context("reading AI_RESULTS")?;
    drop(restarter);
    fleet.stop().await;

    let lost = recorded
        .sent
        .iter()
        .filter(|s| !recorded.results.contains_key(&s.id) && !stored.contains_key(&s.id))
        .count();
    let duplicated_stored = stored.values().filter(|n| **n > 1).count();
    let mut windows = Vec::new();
    let window = Duration::from_secs(300);
    let mut from = Duration::ZERO;
    while from < run {
        let sent: Vec<_> = recorded
            .sent
            .iter()
            .filter(|s| s.at >= from && s.at < from + window)
            .collect();
        let latencies: Vec<f64> = sent
            .iter()
            .filter_map(|s| recorded.results.get(&s.id).map(|r| (r, s)))
            .map(|(r, s)| r.at.saturating_sub(s.at).as_secs_f64() * 1000.0)
            .collect();
        let ok = sent
            .iter()
            .filter(|s| {
                recorded
                    .results
                    .get(&s.id)
                    .is_some_and(|r| r.result.status == crate::contract::Status::Ok)
            })
            .count();
        windows.push(Window {
            from_min: from.as_secs() / 60,
            sent: sent.len(),
            answered: latencies.len(),
            ok,
            p99_ms: p99(latencies),
        });
        from += window;
    }
    let rss = |s: &Sample| s.workers.first().copied().flatten().map_or(0.0, |w| w.0);
    let warm = samples
        .iter()
        .find(|s| s.at_s >= 300.min(run.as_secs() / 2))
        .map_or(0.0, rss);
    let end = samples.last().map_or(0.0, rss);
    let report = SoakReport {
        minutes: args.minutes,
        rate: args.rate,
        sent: recorded.sent.len(),
        lost,
        duplicated_stored,
        duplicate_deliveries: recorded.duplicates,
        restarts,
        samples,
        windows,
        rss_warm_mib: warm,
        rss_end_mib: end,
        rss_growth_pct: if warm > 0.0 {
            (end - warm) / warm * 100.0
        } else {
            0.0
        },
    };
    print(&report);
    std::fs::write(&args.json, serde_json::to_string_pretty(&report)?)?;
    eprintln!("JSON report: {}", args.json.display());
    anyhow::ensure!(
        report.lost == 0 && report.duplicated_stored == 0,
        "{} lost, {} duplicated",
        report.lost,
        report.duplicated_stored
    );
    Ok(())
}

fn print(r: &SoakReport) {
    println!(
        "soak: {:.1} min at {} req/s: sent {}, lost {}, duplicated (stored) {}, replayed deliveries {}, worker restarts {}",
        r.minutes, r.rate, r.sent, r.lost, r.duplicated_stored, r.duplicate_deliveries, r.restarts
    );
    println!("window     sent  answered    ok    p99 ms");
    for w in &r.windows {
        println!(
            "{:>3} min  {:>6}  {:>8}  {:>5}  {:>8.0}",
            w.from_min, w.sent, w.answered, w.ok, w.p99_ms
        );
    }
    println!(
        "at s   worker RSS MiB / fds                      health keys  outcome keys  results  pending  events"
    );
    for s in &r.samples {
        let workers: Vec<String> = s
            .workers
            .iter()
            .map(|w| w.map_or("-".into(), |(rss, fds)| format!("{rss:.1}/{fds}")))
            .collect();
        println!(
            "{:>5}  {:<40}  {:>11}  {:>12}  {:>7}  {:>7}  {:>6}",
            s.at_s,
            workers.join("  "),
            s.health_keys,
            s.outcome_keys,
            s.results_stored,
            s.requests_pending,
            s.events_stored
        );
    }
    println!(
        "worker 1 (never restarted) RSS: {:.1} MiB after warm-up, {:.1} MiB at the end ({:+.1} %)",
        r.rss_warm_mib, r.rss_end_mib, r.rss_growth_pct
    );
}
