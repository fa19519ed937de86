//! `ai-failover report [--since 7d] [--json]`: availability, outages, latency, cost and
//! failovers per provider and the fleet's mode timeline, from the control service's `report`
//! (so a viewer's credentials are enough).

use crate::contract::{ReportReply, ReportRequest};

use super::client;
use super::control;

/// `report` arguments.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub file: super::ConfigFile,
    /// How far back: 90m, 24h, 7d, ...
    #[arg(long, default_value = "7d")]
    pub since: String,
    /// Print the reply's JSON.
    #[arg(long)]
    pub json: bool,
}

/// Fetches and prints the report.
pub async fn run(args: ReportArgs) -> anyhow::Result<()> {
    let body = serde_json::to_string(&ReportRequest {
        since: Some(args.since.clone()),
    })?;
    let c = client::connect(&args.file.config, "ai-failover report").await?;
    let report: ReportReply = control::fetch(&c, "report", body, 30_000).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    print!("{}", text(&report));
    Ok(())
}

fn duration(ms: u64) -> String {
    match ms / 1_000 {
        s if s < 120 => format!("{s}s"),
        s if s < 7_200 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3_600, s % 3_600 / 60),
    }
}

fn opt_ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |ms| format!("{ms:.0} ms"))
}

/// The report as text for a person.
pub fn text(r: &ReportReply) -> String {
    let mut out = format!(
        "report {} .. {}\n\n{:<12} {:>9} {:>8} {:>8} {:>9} {:>10} {:>10} {:>9}\n",
        r.since.format("%Y-%m-%d %H:%M"),
        r.until.format("%Y-%m-%d %H:%M UTC"),
        "provider",
        "avail",
        "outages",
        "MTTR",
        "calls",
        "p95",
        "cost",
        "fo/hour"
    );
    for p in &r.providers {
        out.push_str(&format!(
            "{:<12} {:>8.3}% {:>8} {:>8} {:>9} {:>10} {:>10} {:>9.1}\n",
            p.provider.as_str(),
            p.availability_pct,
            p.outages_total.max(p.outages.len() as u64),
            p.mttr_ms.map_or("-".into(), duration),
            p.calls,
            opt_ms(p.p95_ms),
            format!("${:.2}", p.cost_usd),
            p.failovers_per_hour,
        ));
    }
    let outages: Vec<_> = r
        .providers
        .iter()
        .flat_map(|p| p.outages.iter().map(move |o| (p.provider.as_str(), o)))
        .collect();
    if !outages.is_empty() {
        out.push_str("\noutages\n");
        for (p, o) in outages {
            out.push_str(&format!(
                "  {p:<12} {} .. {}  {:>9}  {}\n",
                o.start.format("%m-%d %H:%M:%S"),
                o.end.map_or("(ongoing)     ".into(), |e| e
                    .format("%m-%d %H:%M:%S")
                    .to_string()),
                duration(o.duration_ms),
                o.cause
            ));
        }
    }
    out.push_str(&format!(
        "\nfleet: {} requests, {} by the fallback, {} dead letters\nmodes\n",
        r.fleet.requests, r.fleet.fallbacks, r.fleet.dead_letters
    ));
    for m in &r.fleet.modes {
        out.push_str(&format!(
            "  {:<10} from {}{}  {}\n",
            m.mode.as_str(),
            m.start.format("%m-%d %H:%M:%S"),
            m.end.map_or(String::new(), |e| format!(
                " to {}",
                e.format("%m-%d %H:%M:%S")
            )),
            m.reason
        ));
    }
    if r.providers.iter().all(|p| p.observed_ms == 0) {
        out.push_str(
            "\nno history yet: workers write a rollup per interval (history.interval_ms)\n",
        );
    }
    out
}
