//! `ai-failover bench scenarios`: the fleet's end-to-end behaviour under real fault shapes.
//!
//! Each scenario starts a fresh nats-server, the provider simulator and N worker processes
//! with the default configuration, sends an open-loop stream of requests over JetStream,
//! breaks a provider on a timeline ([`catalog`]), and reports per phase (before / during /
//! after the fault) what traders felt and what the faulty provider saw ([`report`]), against
//! the targets of the promise ([`targets`]).

pub mod catalog;
pub mod fleet;
mod load;
pub mod overload;
pub mod report;
pub mod soak;
pub mod targets;

use std::path::PathBuf;
use std::time::Duration;

use crate::telemetry::metrics::name as metric;
use anyhow::Context;

pub use catalog::Scenario;
pub use report::ScenarioReport;

use super::cpu::Steal;

/// Options of `ai-failover bench scenarios`.
#[derive(Debug, Clone, clap::Args)]
pub struct ScenarioArgs {
    /// Requests per second, open loop (sent on schedule whatever the fleet does).
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// Nominal seconds per scenario; the fault starts at a quarter of it and lasts half.
    #[arg(long, default_value_t = 40)]
    pub duration: u64,
    /// Worker processes.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Comma-separated scenarios to run (default: all of them).
    #[arg(long)]
    pub scenarios: Option<String>,
    /// Runs of each scenario; the report gives the median of each figure.
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// Where to write the JSON report.
    #[arg(long, default_value = "scenario-results.json")]
    pub json: PathBuf,
    /// Seeds the simulator's latency draws and the request deadlines.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

/// What one scenario run needs.
#[derive(Debug, Clone)]
pub struct Options {
    pub rate: f64,
    pub duration: Duration,
    pub workers: usize,
    /// The `ai-failover` executable that runs the workers.
    pub exe: PathBuf,
    pub seed: u64,
}

/// Runs `scenario` once against a fresh fleet and reports it.
pub async fn run_one(scenario: Scenario, opts: &Options) -> anyhow::Result<ScenarioReport> {
    let plan = scenario.plan(opts.duration);
    let fleet = fleet::Fleet::start(&opts.exe, opts.workers, opts.seed).await?;
    let steal = Steal::start();
    let recorded = load::run(&fleet.nats_url, &fleet.sim, &plan, opts.rate, opts.seed).await;
    let steal = steal.percent();
    let log = fleet.sim.log();
    let probes = probes_sent(&fleet, &plan).await;
    fleet.stop().await;
    let recorded = recorded.with_context(|| format!("scenario {}", scenario.name()))?;
    Ok(report::analyse(
        scenario.name(),
        &plan,
        &recorded,
        &log,
        probes,
        steal,
    ))
}

/// Probes the workers say they sent to the faulty providers (`None` if they do not say).
async fn probes_sent(fleet: &fleet::Fleet, plan: &catalog::Plan) -> Option<f64> {
    let mut total = None;
    for p in &plan.faulty {
        let label = format!("provider=\"{p}\"");
        if let Some(n) = fleet.counter(metric::PROBES_TOTAL, &label).await {
            *total.get_or_insert(0.0) += n;
        }
    }
    total
}

/// The command: every chosen scenario, `runs` times each; prints a table, writes JSON, and
/// fails when a scenario could not run.
pub async fn run(args: ScenarioArgs) -> anyhow::Result<()> {
    let scenarios = match &args.scenarios {
        Some(list) => Scenario::parse_list(list).map_err(anyhow::Error::msg)?,
        None => Scenario::ALL.to_vec(),
    };
    anyhow::ensure!(!scenarios.is_empty(), "--scenarios names no scenario");
    anyhow::ensure!(args.runs >= 1, "--runs must be at least 1");
    anyhow::ensure!(args.workers >= 1, "--workers must be at least 1");
    anyhow::ensure!(args.duration >= 8, "--duration must be at least 8 s");
    let opts = Options {
        rate: args.rate,
        duration: Duration::from_secs(args.duration),
        workers: args.workers,
        exe: std::env::current_exe()?,
        seed: args.seed,
    };
    let mut out = Vec::new();
    for scenario in scenarios {
        let mut runs = Vec::new();
        for n in 0..args.runs {
            eprintln!(
                "{} (run {} of {}, {:.0} s)…",
                scenario.name(),
                n + 1,
                args.runs,
                scenario.plan(opts.duration).run.as_secs_f64()
            );
            let seed = opts.seed + n as u64;
            runs.push(
                run_one(
                    scenario,
                    &Options {
                        seed,
                        ..opts.clone()
                    },
                )
                .await?,
            );
        }
        let median = report::median(&runs)?;
        let plan = scenario.plan(opts.duration);
        let window_s = (plan.window.1 - plan.window.0).as_secs_f64();
        let checks = targets::check(scenario, &median, window_s);
        print_scenario(&median, &checks, args.runs);
        out.push(serde_json::json!({
            "scenario": scenario.name(),
            "median": median,
            "targets": checks,
            "runs": runs,
        }));
    }
    let report = serde_json::json!({
        "machine": super::machine(),
        "date": chrono::Utc::now().to_rfc3339(),
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "rate": args.rate,
        "duration_s": args.duration,
        "workers": args.workers,
        "runs": args.runs,
        "scenarios": out,
    });
    std::fs::write(&args.json, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("cannot write {}", args.json.display()))?;
    eprintln!("JSON written to {}", args.json.display());
    Ok(())
}

/// A figure with as many decimals as it needs to be read against its target.
fn opt(v: Option<f64>, unit: &str) -> String {
    match v {
        None => "-".into(),
        Some(v) if v.abs() < 10.0 && v.fract() != 0.0 => format!("{v:.3}{unit}"),
        Some(v) => format!("{v:.1}{unit}"),
    }
}

fn print_scenario(r: &ScenarioReport, checks: &[targets::Check], runs: usize) {
    println!(
        "\n== {} (median of {runs} run{}; host CPU steal {:.1} %) ==",
        r.scenario,
        if runs == 1 { "" } else { "s" },
        r.steal_pct
    );
    println!(
        "{:<7} {:>5} {:>6} {:>6} {:>7} {:>7} {:>7} {:>7} {:>9} {:>30}",
        "phase",
        "sent",
        "ok %",
        "ans %",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "calls/req",
        "answered by"
    );
    for (name, p) in [
        ("before", &r.before),
        ("during", &r.during),
        ("after", &r.after),
    ] {
        let by: Vec<String> = p
            .by_provider
            .iter()
            .map(|(k, v)| format!("{k} {v:.0}"))
            .chain(
                p.by_source
                    .iter()
                    .filter(|(k, _)| k.as_str() != "provider")
                    .map(|(k, v)| format!("{k} {v:.0}")),
            )
            .collect();
        println!(
            "{:<7} {:>5.0} {:>6.1} {:>6.1} {:>7.0} {:>7.0} {:>7.0} {:>7.0} {:>9.2} {:>30}",
            name,
            p.sent,
            p.success_rate * 100.0,
            p.answered_rate * 100.0,
            p.p50_ms,
            p.p95_ms,
            p.p99_ms,
            p.max_ms,
            p.calls_per_request,
            by.join(", ")
        );
    }
    let f = &r.fault;
    println!(
        "faulty provider: {:.0} calls during the fault ({:.0} wasted), {:.0} probes reached it ({} sent); \
         stopped after {}; back {} after it healed; {:.0} breaker opens, shortest {}",
        f.calls_during,
        f.wasted_calls,
        f.probes_during,
        opt(f.probes_sent, ""),
        opt(f.stopped_after_s, " s"),
        opt(f.back_after_s, " s"),
        f.breaker_opens,
        opt(f.shortest_open_s, " s"),
    );
    println!(
        "fallback during: p50 {} p99 {}; minimal mode after {}, fallback p99 from then {}; p99 from 5 s after {}",
        opt(r.during.fallback_p50_ms, " ms"),
        opt(r.during.fallback_p99_ms, " ms"),
        opt(f.minimal_after_s, " s"),
        opt(f.known_down_fallback_p99_ms, " ms"),
        opt(f.settled_after_p99_ms, " ms"),
    );
    for e in &r.fault_errors {
        println!("  (fault change refused by the simulator: {e})");
    }
    for c in checks {
        println!(
            "  [{}] {}: {} (target {})",
            if c.met { " ok " } else { "MISS" },
            c.what,
            opt(c.value, ""),
            c.limit
        );
    }
}
