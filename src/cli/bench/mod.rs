//! `ai-failover bench`: the numbers behind the README's claims, measured in one run so that
//! ratios hold on a noisy machine. Prints a table and writes JSON.

mod cpu;
mod failover;
pub mod fakes;
pub mod learning;
mod memory;
pub mod quota;
pub mod scenarios;
mod throughput;

use std::time::Duration;

use serde::Serialize;

use super::local::{Children, start_nats};

/// Pass-through/worker throughput pairs per run.
const ROUNDS: usize = 5;

/// Options of the benchmark run.
#[derive(Debug, Clone, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    /// A benchmark other than the default set.
    #[command(subcommand)]
    pub which: Option<Which>,
    /// Requests per throughput measurement.
    #[arg(long, default_value_t = 4000)]
    pub requests: usize,
    /// Where to write the JSON report.
    #[arg(long, default_value = "bench-results.json")]
    pub json: std::path::PathBuf,
    /// Skip the memory measurement (it needs the simulator and a worker process).
    #[arg(long)]
    pub skip_memory: bool,
}

/// The benchmarks that are not part of the default set.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Which {
    /// The fleet end to end under fault shapes (hangs, outages, recovery, total outage,
    /// deadlines): worker processes, the simulator and an open-loop load over JetStream.
    Scenarios(scenarios::ScenarioArgs),
    /// Hours, not seconds: worker processes under a rotating fault mix and restarts, with
    /// memory, descriptors, KV keys, stream sizes and p99 over time.
    Soak(scenarios::soak::SoakArgs),
    /// Offered load three times what the providers can serve (a concurrency limit with
    /// 429s, and slow answers): goodput, deadlines, memory, backlog.
    Overload(scenarios::overload::OverloadArgs),
    /// The learning loop: labelled requests until routing favours the provider that is
    /// right (engine), and feedback ingestion at 1,000 reports/s against request latency
    /// (worker processes over NATS).
    Learning(learning::LearningArgs),
    /// A tenant's quota across several workers: admitted vs quota over several minutes at
    /// twice the quota's load.
    Quota(quota::QuotaArgs),
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    pub name: String,
    pub value: f64,
    pub unit: String,
    pub target: Option<String>,
    pub note: String,
}

fn line(name: &str, value: f64, unit: &str, target: Option<&str>, note: String) -> Line {
    Line {
        name: name.into(),
        value,
        unit: unit.into(),
        target: target.map(str::to_string),
        note,
    }
}

/// Percentile of `v` (sorted in place).
pub fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Runs every measurement of the default set, or the benchmark named by a subcommand.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.which {
        Some(Which::Scenarios(s)) => return scenarios::run(s).await,
        Some(Which::Soak(s)) => return scenarios::soak::run(s).await,
        Some(Which::Overload(o)) => return scenarios::overload::run(o).await,
        Some(Which::Learning(l)) => return learning::run(l).await,
        Some(Which::Quota(q)) => return quota::run(q).await,
        None => {}
    }
    let dir = tempfile::Builder::new()
        .prefix("ai-failover-bench")
        .tempdir()?;
    let mut children = Children(Vec::new());
    let nats = start_nats(dir.path(), &mut children).await?;
    let server_pid = children.0.last().map_or(0, |(_, c)| c.id());
    let mut lines = Vec::new();
    let n = args.requests;

    eprintln!("failover timing (engine)…");
    // First, on a runtime of its own: engine time only, before any NATS load starts (the
    // server and earlier phases' clients would otherwise preempt it on two cores).
    let (mut engine_wall, mut engine_cpu) = std::thread::spawn(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(failover::engine_failover_us(5_000))
    })
    .join()
    .expect("failover timing thread");
    lines.push(line(
        "failover: error → next provider called, p50",
        percentile(&mut engine_cpu, 0.5),
        "µs",
        None,
        format!(
            "engine time: CPU time of the engine's thread, {} failed-over requests",
            engine_cpu.len()
        ),
    ));
    lines.push(line(
        "failover: error → next provider called, p99",
        percentile(&mut engine_cpu, 0.99),
        "µs",
        Some("< 1000"),
        String::new(),
    ));
    lines.push(line(
        "failover: the same by wall clock, p50",
        percentile(&mut engine_wall, 0.5),
        "µs",
        None,
        "includes time the VM/OS kept the thread off the CPU".into(),
    ));
    lines.push(line(
        "failover: the same by wall clock, p99",
        percentile(&mut engine_wall, 0.99),
        "µs",
        None,
        String::new(),
    ));
    eprintln!("throughput: pass-through loop vs worker, {n} requests each…");
    // Alternating rounds, each on fresh streams: a noisy spell on the machine then hits one
    // pair, not the whole comparison, and the median pair ratio is reported.
    let (mut pass, mut one, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    // CPU µs per request: [pass-through, worker] × [this process, server].
    let mut cpu: [[Vec<f64>; 3]; 2] = Default::default();
    for round in 0..ROUNDS {
        let p = throughput::passthrough(&nats, server_pid, &format!("bpass{round}"), n).await?;
        let w = throughput::workers(&nats, server_pid, &format!("bw1r{round}"), n, 1).await?;
        ratios.push(w.rps / p.rps);
        pass.push(p.rps);
        one.push(w.rps);
        for (i, t) in [&p, &w].into_iter().enumerate() {
            cpu[i][0].push(t.cpu.client_us);
            cpu[i][1].push(t.cpu.server_us);
            cpu[i][2].push(t.cpu.client_sleeps);
        }
    }
    let ratio_note = format!(
        "median of {ROUNDS} alternating rounds; each round: {}",
        ratios
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let one_rps = percentile(&mut one, 0.5);
    lines.push(line(
        "pass-through throughput",
        percentile(&mut pass, 0.5),
        "req/s",
        None,
        "consume, claim + store outcome in KV, publish result with Msg-Id, double-ack".into(),
    ));
    lines.push(line(
        "worker throughput (1 worker)",
        one_rps,
        "req/s",
        None,
        "the same plus the engine, events, shared health".into(),
    ));
    lines.push(line(
        "worker / pass-through",
        percentile(&mut ratios, 0.5),
        "ratio",
        Some(">= 0.8"),
        ratio_note,
    ));

    for (i, who) in ["pass-through", "worker"].into_iter().enumerate() {
        lines.push(line(
            &format!("CPU per request, {who}: this process"),
            percentile(&mut cpu[i][0], 0.5),
            "µs",
            None,
            "median of the rounds; the load generator (publish, await acks, read results) included"
                .into(),
        ));
        lines.push(line(
            &format!("CPU per request, {who}: nats-server"),
            percentile(&mut cpu[i][1], 0.5),
            "µs",
            None,
            "median of the rounds; at the kernel's clock-tick resolution".into(),
        ));
        lines.push(line(
            &format!("thread sleeps per request, {who}: this process"),
            percentile(&mut cpu[i][2], 0.5),
            "count",
            None,
            "voluntary context switches; each one is a wake-up the host can delay".into(),
        ));
    }

    let rate = (one_rps / 2.0).max(10.0);
    eprintln!("added latency at half of peak ({rate:.0} req/s)…");
    // Alternating rounds again; each percentile is the median of the rounds' percentiles.
    let mut rounds: [[Vec<f64>; 2]; 2] = Default::default();
    let mut steal = Vec::new();
    for round in 0..ROUNDS {
        for (i, pass) in [false, true].into_iter().enumerate() {
            let prefix = format!("blat{}{round}", if pass { "p" } else { "w" });
            let stolen = cpu::Steal::start();
            let (mut lat, _) =
                throughput::paced_latency(&nats, &prefix, rate, Duration::from_secs(3), pass)
                    .await?;
            rounds[i][0].push(percentile(&mut lat, 0.5));
            rounds[i][1].push(percentile(&mut lat, 0.99));
            if !pass {
                steal.push(stolen.percent());
            }
        }
    }
    let each = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let [[mut w50, mut w99], [mut p50, mut p99]] = rounds;
    // Notes first: `percentile` sorts in place.
    let notes = [&w50, &w99, &p50, &p99].map(|v| each(v));
    lines.push(line(
        "added latency p50 (worker)",
        percentile(&mut w50, 0.5),
        "ms",
        Some("< 2"),
        format!(
            "publish → result received, instant provider, {rate:.0} req/s; median of {ROUNDS} rounds: {}",
            notes[0]
        ),
    ));
    lines.push(line(
        "added latency p99 (worker)",
        percentile(&mut w99, 0.5),
        "ms",
        Some("< 10"),
        format!("rounds: {}", notes[1]),
    ));
    let steal_note = format!("worker rounds: {}", each(&steal));
    lines.push(line(
        "host CPU steal during the latency rounds",
        percentile(&mut steal, 0.5),
        "%",
        None,
        steal_note,
    ));
    lines.push(line(
        "latency p50 (pass-through)",
        percentile(&mut p50, 0.5),
        "ms",
        None,
        format!("same load, for reference; rounds: {}", notes[2]),
    ));
    lines.push(line(
        "latency p99 (pass-through)",
        percentile(&mut p99, 0.5),
        "ms",
        None,
        format!("rounds: {}", notes[3]),
    ));

    for workers in [2, 4] {
        eprintln!("scale: {workers} workers…");
        let r = throughput::workers(&nats, server_pid, &format!("bw{workers}"), n, workers).await?;
        lines.push(line(
            &format!("worker throughput ({workers} workers)"),
            r.rps,
            "req/s",
            None,
            "in one process on this 2-core machine".into(),
        ));
    }

    eprintln!("failover timing (fleet)…");
    let mut prop = failover::breaker_propagation_ms(&nats, "bprop", 20).await?;
    lines.push(line(
        "breaker open on worker A → worker B stops, p50",
        percentile(&mut prop, 0.5),
        "ms",
        None,
        "KV compare-and-set + watch".into(),
    ));
    lines.push(line(
        "breaker open on worker A → worker B stops, p99",
        percentile(&mut prop, 0.99),
        "ms",
        Some("< 50"),
        String::new(),
    ));
    let (recovered_ms, open_ms) = failover::recovery_ms(&nats, "brec").await?;
    lines.push(line(
        "provider back → first successful call",
        recovered_ms,
        "ms",
        Some(&format!("<= open {open_ms} ms + one probe")),
        "measured from the moment the provider heals".into(),
    ));

    if !args.skip_memory {
        eprintln!("memory: a worker process with 1000 requests in flight…");
        let (rss, hwm) = memory::rss_with_in_flight(&nats, dir.path(), 1_000).await?;
        lines.push(line(
            "worker RSS with 1000 in flight",
            rss,
            "MiB",
            Some("< 64"),
            format!("peak (VmHWM) {hwm:.1} MiB"),
        ));
    }

    report(&lines, &args.json)?;
    drop(children);
    Ok(())
}

/// Prints `lines` as a table and writes them, with the machine, date and command, as JSON
/// to `json`.
fn report(lines: &[Line], json: &std::path::Path) -> anyhow::Result<()> {
    print_table(lines);
    let report = serde_json::json!({
        "machine": machine(),
        "date": chrono::Utc::now().to_rfc3339(),
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "results": lines,
    });
    std::fs::write(json, serde_json::to_string_pretty(&report)?)?;
    eprintln!("JSON written to {}", json.display());
    Ok(())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores, {cpu}")
}

fn print_table(lines: &[Line]) {
    println!(
        "\n{:<50} {:>12} {:<6} {:<26} note",
        "measurement", "value", "unit", "target"
    );
    for l in lines {
        println!(
            "{:<50} {:>12.3} {:<6} {:<26} {}",
            l.name,
            l.value,
            l.unit,
            l.target.as_deref().unwrap_or(""),
            l.note
        );
    }
    println!("machine: {}", machine());
}
