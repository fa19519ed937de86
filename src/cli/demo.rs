//! `ai-failover demo`: a real fleet on one machine. Starts (or finds) a nats-server with
//! JetStream, the provider simulator with three providers, worker processes, a steady stream
//! of requests; injects an outage of the top provider and later its recovery; shows where
//! requests go, every failover, breaker and mode change live; ends with a summary and cleans
//! up after itself.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream;
use futures::StreamExt;

use super::local::{Children, start_nats};
use crate::config::Api;
use crate::contract::{
    AnalysisRequest, AnalysisResult, FailoverEvent, HealthEvent, ModeEvent, Names, Source, Status,
};
use crate::simulator::{Faults, Latency, SimConfig, SimProvider, Simulator};

/// Options of the demo.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Use this NATS server instead of starting one (it must have JetStream).
    #[arg(long)]
    pub nats_url: Option<String>,
    /// Worker processes to start.
    #[arg(long, default_value_t = 3)]
    pub workers: usize,
    /// Requests per second.
    #[arg(long, default_value_t = 20)]
    pub rate: u32,
    /// Seconds of normal traffic before the outage.
    #[arg(long, default_value_t = 8)]
    pub warmup_secs: u64,
    /// Seconds the top provider stays down.
    #[arg(long, default_value_t = 12)]
    pub outage_secs: u64,
    /// Seconds of traffic after the recovery.
    #[arg(long, default_value_t = 15)]
    pub after_secs: u64,
    /// Make this simulated provider's advice systematically wrong, route by realised
    /// quality (`engine.strategy = "quality"`) and report each signal's outcome as a trader
    /// would: traffic moves away from the provider as its outcomes come in.
    #[arg(long, value_name = "PROVIDER")]
    pub wrong_advice: Option<String>,
}

const KEY: &str = "demo-key-not-a-secret";
const SYMBOLS: [&str; 4] = ["AAPL", "MSFT", "NVDA", "TSLA"];
const PROVIDERS: [(&str, Api, &str); 3] = [
    ("openai", Api::Openai, "gpt-4.1"),
    ("anthropic", Api::Anthropic, "claude-sonnet-4-5"),
    ("gemini", Api::Gemini, "gemini-2.5-flash"),
];

fn worker_config(
    nats_url: &str,
    sim: &crate::simulator::SimHandle,
    key: &Path,
    learning: bool,
) -> String {
    let strategy = if learning { "quality" } else { "priority" };
    let mut toml = format!(
        "[nats]\nurl = \"{nats_url}\"\n\n[worker]\nhttp_listen = \"\"\nack_wait_ms = 10000\n\n\
         [engine]\nhealth_check_interval_ms = 3000\nhedge_floor_ms = 400\nstrategy = \"{strategy}\"\n\n\
         [quality]\nmin_samples = 10\n\n\
         [breaker]\nconsecutive_failures = 3\nopen_ms = 2000\nmax_open_ms = 4000\n\n\
         [history]\ninterval_ms = 5000\ngrace_ms = 2000\n\n"
    );
    for (i, (id, api, model)) in PROVIDERS.iter().enumerate() {
        let api = match api {
            Api::Openai => "openai",
            Api::Anthropic => "anthropic",
            Api::Gemini => "gemini",
        };
        toml += &format!(
            "[[providers]]\nid = \"{id}\"\napi = \"{api}\"\nbase_url = \"{}\"\napi_key_file = \"{}\"\n\
             models = [\"{model}\"]\npriority = {}\ntimeout_ms = 4000\n\
             cost = {{ input_per_mtok = 2.0, output_per_mtok = 8.0 }}\n\n",
            sim.base_url(id).expect("simulated provider"),
            key.display(),
            i + 1
        );
    }
    toml
}

/// The `i`th request of a steady stream: a signal for one of four symbols, each with a price
/// series that moves a little with every request (enough for the rule-based fallback to have
/// an opinion). Deadline: the worker's default.
pub(crate) fn request(i: u64, prices: &mut BTreeMap<&'static str, Vec<f64>>) -> AnalysisRequest {
    let symbol = SYMBOLS[(i % SYMBOLS.len() as u64) as usize];
    let series = prices.entry(symbol).or_insert_with(|| vec![100.0]);
    // A deterministic wiggle: enough movement for the rule-based fallback to have an opinion.
    let last = *series.last().unwrap();
    let step = ((i as f64 * 0.7).sin() + (i as f64 * 0.13).cos()) * 0.4;
    series.push((last + step).max(1.0));
    if series.len() > 30 {
        series.remove(0);
    }
    let mut r = AnalysisRequest::signal(symbol);
    r.context = Some(
        serde_json::from_value(serde_json::json!({ "prices": series.clone() })).expect("object"),
    );
    r
}

/// The demo's trader: reports how the market moved after the signal in `r` (the simulated
/// market of `market_action`, against the signal one time in five, as markets are noisy).
async fn report_outcome(
    js: &jetstream::Context,
    names: &Names,
    r: &AnalysisResult,
    n: u64,
) -> anyhow::Result<()> {
    let symbol = r.symbol.as_deref().unwrap_or("");
    let mut ret = match crate::simulator::market_action(symbol) {
        "buy" => 0.01,
        "sell" => -0.01,
        _ => 0.0,
    };
    if n.is_multiple_of(5) {
        ret = if ret == 0.0 { 0.01 } else { -ret };
    }
    let feedback = crate::contract::Feedback::outcome(&r.request_id, 3600, ret);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", feedback.msg_id().as_str());
    js.publish_with_headers(
        names.feedback(r.kind),
        headers,
        serde_json::to_vec(&feedback)?.into(),
    )
    .await?
    .await?;
    Ok(())
}

/// The fleet's quality records at the end of a learning demo.
async fn print_quality(client: &async_nats::Client, names: &Names) {
    let reply = client
        .request(names.control("quality-summary"), "{}".into())
        .await;
    match reply.map(|m| serde_json::from_slice::<crate::contract::QualitySummaryReply>(&m.payload))
    {
        Ok(Ok(q)) => print!(
            "\nsignal quality (from the outcomes reported):\n{}",
            super::quality::table(&q.records)
        ),
        _ => println!("signal quality: not available"),
    }
}

/// The history's report of the demo's run (rollups every 5 s here; a minute by default).
async fn print_report(client: &async_nats::Client, names: &Names) {
    let reply = client
        .request(names.control("report"), r#"{"since":"15m"}"#.into())
        .await;
    match reply.map(|m| serde_json::from_slice::<crate::contract::ReportReply>(&m.payload)) {
        Ok(Ok(r)) => print!(
            "\nhistory (ai-failover report, from 5 s rollups in AI_STATS):\n{}",
            super::report::text(&r)
        ),
        _ => println!("history report: not available"),
    }
}

#[derive(Default)]
struct Tally {
    sent: u64,
    results: u64,
    by_status: BTreeMap<&'static str, u64>,
    by_source: BTreeMap<&'static str, u64>,
    by_provider: BTreeMap<String, u64>,
    window_provider: BTreeMap<String, u64>,
    failovers: u64,
    latencies_ms: Vec<f64>,
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn clock(start: Instant) -> String {
    format!("[{:>5.1}s]", start.elapsed().as_secs_f64())
}

/// Runs the demo to its end.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("ai-failover-demo")
        .tempdir()?;
    let mut children = Children(Vec::new());
    let nats_url = match &args.nats_url {
        Some(u) => u.clone(),
        None => start_nats(dir.path(), &mut children).await?,
    };
    println!("nats-server with JetStream at {nats_url}");

    let mut sim_cfg = SimConfig::local();
    sim_cfg.seed = Some(7);
    // Realistic-looking latency with a long tail; the outage comes on top of it.
    let baseline = Faults {
        latency_ms: Some(Latency::LogNormal { p50: 60, p99: 250 }),
        ..Faults::default()
    };
    if let Some(p) = &args.wrong_advice {
        anyhow::ensure!(
            PROVIDERS.iter().any(|(id, _, _)| id == p),
            "--wrong-advice {p}: the demo's providers are openai, anthropic and gemini"
        );
    }
    let faults_of = |id: &str| Faults {
        wrong_advice: args.wrong_advice.as_deref() == Some(id),
        ..baseline.clone()
    };
    for (id, api, _) in PROVIDERS {
        sim_cfg = sim_cfg.provider(
            SimProvider::new(id, api)
                .with_key(KEY)
                .with_faults(faults_of(id)),
        );
    }
    let sim = Simulator::start(sim_cfg).await?;
    println!(
        "provider simulator at {} (openai, anthropic, gemini wire APIs)",
        sim.control_url()
    );

    let key = dir.path().join("api-key");
    std::fs::write(&key, KEY)?;
    let config = dir.path().join("demo.toml");
    let learning = args.wrong_advice.is_some();
    std::fs::write(&config, worker_config(&nats_url, &sim, &key, learning))?;
    let exe = std::env::current_exe()?;
    for n in 1..=args.workers {
        let log = std::fs::File::create(dir.path().join(format!("worker-{n}.log")))?;
        let child = Command::new(&exe)
            .args(["worker", "--id", &format!("demo-w{n}"), "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("start a worker")?;
        children.0.push((format!("worker {n}"), child));
    }
    println!(
        "{} worker processes started (logs in {})",
        args.workers,
        dir.path().display()
    );

    let client = async_nats::connect(&nats_url).await?;
    let js = jetstream::new(client.clone());
    let names = Names::default();
    let mut results = client.subscribe(names.results_filter()).await?;
    let mut events = client.subscribe(names.events_filter()).await?;
    // Wait until the workers have created the streams and are consuming.
    let deadline = Instant::now() + Duration::from_secs(60);
    while js.get_stream(names.requests_stream()).await.is_err() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "workers did not start; see their logs"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let start = Instant::now();
    let outage_at = Duration::from_secs(args.warmup_secs);
    let recover_at = outage_at + Duration::from_secs(args.outage_secs);
    let stop_at = recover_at + Duration::from_secs(args.after_secs);
    let interval = Duration::from_secs_f64(1.0 / args.rate.max(1) as f64);
    let mut send_tick = tokio::time::interval(interval);
    let mut report_tick = tokio::time::interval(Duration::from_secs(2));
    let mut sent_at: HashMap<String, Instant> = HashMap::new();
    let mut prices = BTreeMap::new();
    let mut tally = Tally::default();
    let mut phase = 0;
    println!(
        "\n{} sending {} requests/s for {:?} — top provider: openai",
        clock(start),
        args.rate,
        SYMBOLS
    );

    loop {
        let elapsed = start.elapsed();
        if phase == 0 && elapsed >= outage_at {
            sim.start_outage("openai", None)?;
            println!(
                "{} >>> OUTAGE: openai now answers every call with 503 errors",
                clock(start)
            );
            phase = 1;
        } else if phase == 1 && elapsed >= recover_at {
            sim.set_faults("openai", faults_of("openai"))?;
            println!(
                "{} >>> RECOVERY: openai is healthy again (the breaker will probe it)",
                clock(start)
            );
            phase = 2;
        }
        let draining = elapsed >= stop_at;
        if draining && (tally.results >= tally.sent || elapsed >= stop_at + Duration::from_secs(20))
        {
            break;
        }
        tokio::select! {
            _ = send_tick.tick(), if !draining => {
                let mut r = request(tally.sent, &mut prices);
                r.deadline_ms = Some(15_000);
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Msg-Id", r.request_id.as_str());
                sent_at.insert(r.request_id.clone(), Instant::now());
                js.publish_with_headers(names.request(r.kind), headers, serde_json::to_vec(&r)?.into())
                    .await?
                    .await?;
                tally.sent += 1;
            }
            Some(msg) = results.next() => {
                let Ok(r) = serde_json::from_slice::<AnalysisResult>(&msg.payload) else { continue };
                let Some(t0) = sent_at.remove(&r.request_id) else { continue };
                tally.results += 1;
                tally.latencies_ms.push(t0.elapsed().as_secs_f64() * 1_000.0);
                *tally.by_status.entry(r.status.as_str()).or_default() += 1;
                *tally.by_source.entry(r.source.as_str()).or_default() += 1;
                let who = match (r.source, &r.provider) {
                    (Source::Provider, Some(p)) => p.to_string(),
                    (s, _) => s.as_str().to_string(),
                };
                *tally.by_provider.entry(who.clone()).or_default() += 1;
                *tally.window_provider.entry(who).or_default() += 1;
                if learning && r.signal.is_some() {
                    report_outcome(&js, &names, &r, tally.results).await?;
                }
            }
            Some(msg) = events.next() => {
                let subject = msg.subject.as_str();
                if subject.ends_with(".failover") {
                    if let Ok(f) = serde_json::from_slice::<FailoverEvent>(&msg.payload) {
                        tally.failovers += 1;
                        // Show the first few of each burst; the 2 s report counts the rest.
                        if tally.failovers <= 5 || tally.failovers % 25 == 0 {
                            let to = f.to.map_or("fallback".to_string(), |t| t.provider.to_string());
                            let hedge = if f.hedge { " (hedge)" } else { "" };
                            println!("{}   failover #{:<4} {} -> {} on {}{} [{}]", clock(start), tally.failovers,
                                f.from.provider, to, f.error_class, hedge, f.worker_id);
                        }
                    }
                } else if subject.contains(".health.") {
                    if let Ok(h) = serde_json::from_slice::<HealthEvent>(&msg.payload) {
                        println!("{}   health   {:<9} {} -> {}, breaker {} -> {} ({})", clock(start), h.provider,
                            h.previous_status.as_str(), h.status.as_str(),
                            h.previous_breaker.as_str(), h.breaker.as_str(), h.reason);
                    }
                } else if subject.ends_with(".mode")
                    && let Ok(m) = serde_json::from_slice::<ModeEvent>(&msg.payload) {
                    println!("{}   MODE     {} -> {} ({})", clock(start), m.previous.as_str(),
                        m.mode.as_str(), m.reason);
                }
            }
            _ = report_tick.tick() => {
                let window: Vec<String> = tally.window_provider.iter().map(|(k, v)| format!("{k} {v}")).collect();
                let mut lat = tally.latencies_ms.clone();
                println!("{}   sent {:<5} answered {:<5} last 2s: {:<40} failovers {:<4} p50 {:.0} ms",
                    clock(start), tally.sent, tally.results, window.join(", "), tally.failovers,
                    percentile(&mut lat, 0.5));
                tally.window_provider.clear();
            }
        }
    }

    let mut lat = tally.latencies_ms.clone();
    println!("\n=== summary ===");
    println!("requests sent      {}", tally.sent);
    println!(
        "results received   {} ({} unanswered)",
        tally.results,
        tally.sent - tally.results
    );
    println!("by status          {:?}", tally.by_status);
    println!("by source          {:?}", tally.by_source);
    println!("answered by        {:?}", tally.by_provider);
    println!("failover events    {}", tally.failovers);
    println!(
        "latency            p50 {:.0} ms, p99 {:.0} ms (publish -> result, simulated providers ~60 ms p50)",
        percentile(&mut lat, 0.5),
        percentile(&mut lat, 0.99)
    );
    let ok = tally
        .by_status
        .get(Status::Ok.as_str())
        .copied()
        .unwrap_or(0);
    println!(
        "success            {:.1}% answered by a provider",
        100.0 * ok as f64 / tally.sent.max(1) as f64
    );
    if learning {
        print_quality(&client, &names).await;
    }
    print_report(&client, &names).await;
    drop(children); // SIGTERM the workers (they drain), then nats-server
    sim.shutdown().await;
    println!(
        "cleaned up: workers stopped, simulator and nats-server shut down, temp files removed"
    );
    anyhow::ensure!(
        tally.results == tally.sent,
        "{} requests got no result",
        tally.sent - tally.results
    );
    Ok(())
}
