//! `ai-failover status`: the provider table and fleet mode, read straight from the shared KV
//! buckets (works with no worker running, unlike the `status` control endpoint).

use serde::Serialize;

use crate::bus::fleet_view;
use crate::contract::{Mode, ProviderHealthRecord, Timestamp};

use super::client;

/// `status` arguments.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub file: super::ConfigFile,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One provider's row: its shared record plus today's fleet spend.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    #[serde(flatten)]
    pub record: ProviderHealthRecord,
    pub spend_today_usd: f64,
}

/// The whole view (`--json` prints this).
#[derive(Debug, Clone, Serialize)]
pub struct FleetStatus {
    pub mode: Mode,
    pub monitoring: bool,
    pub providers: Vec<Row>,
    pub at: Timestamp,
}

/// Reads the fleet's status and prints it.
pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let c = client::connect(&args.file.config, "ai-failover status").await?;
    let health = c.bucket(c.names.health_bucket()).await?;
    let budget = c.bucket(c.names.budget_bucket()).await?;
    let mut providers = Vec::new();
    for (record, _) in fleet_view::provider_records(&health, &c.cfg).await? {
        let spend_today_usd = fleet_view::spend_today(&budget, &record.provider).await?;
        providers.push(Row {
            record,
            spend_today_usd,
        });
    }
    let status = FleetStatus {
        mode: fleet_view::fleet_mode(&health).await?,
        monitoring: fleet_view::monitoring(&health, &c.cfg).await.enabled,
        providers,
        at: chrono::Utc::now(),
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&status).expect("status serializes")
        );
    } else {
        print!("{}", table(&status));
    }
    Ok(())
}

/// The readable table.
pub fn table(s: &FleetStatus) -> String {
    let mut out = format!(
        "fleet mode: {}   active monitoring: {}\n",
        s.mode.as_str(),
        if s.monitoring { "on" } else { "off" }
    );
    let head = [
        "PROVIDER",
        "STATUS",
        "BREAKER",
        "SUCCESS",
        "P95 MS",
        "FAILS",
        "OPEN UNTIL",
        "FORCED",
        "QUARANTINED",
        "SPEND TODAY",
    ];
    let rows: Vec<[String; 10]> = s
        .providers
        .iter()
        .map(|row| {
            let r = &row.record;
            let forced = r.forced.as_ref().map_or("-".to_string(), |f| {
                let what = format!("{:?}", f.status).to_lowercase();
                match f.until {
                    Some(u) => format!("{what} until {}", u.format("%H:%M:%S")),
                    None => what,
                }
            });
            [
                r.provider.to_string(),
                r.status.as_str().to_string(),
                r.breaker.as_str().to_string(),
                format!("{:.1}%", r.success_rate * 100.0),
                format!("{:.0}", r.latency_ms_p95),
                r.consecutive_failures.to_string(),
                r.open_until
                    .map_or("-".into(), |u| u.format("%H:%M:%S").to_string()),
                forced,
                if r.quarantined { "yes" } else { "no" }.to_string(),
                format!("${:.4}", row.spend_today_usd),
            ]
        })
        .collect();
    let mut widths = head.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let render = |cells: &[String]| {
        let line: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("{}\n", line.join("  ").trim_end())
    };
    out += &render(&head.map(String::from));
    for row in &rows {
        out += &render(row);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{Forced, ForcedStatus, HealthStatus};

    #[test]
    fn the_table_shows_overrides_and_spend() {
        let mut r = ProviderHealthRecord::new("openai", "w1");
        r.forced = Some(Forced {
            status: ForcedStatus::Down,
            until: None,
            reason: None,
        });
        r.status = HealthStatus::Disabled;
        let s = FleetStatus {
            mode: Mode::Degraded,
            monitoring: false,
            providers: vec![Row {
                record: r,
                spend_today_usd: 1.5,
            }],
            at: chrono::Utc::now(),
        };
        let t = table(&s);
        assert!(
            t.starts_with("fleet mode: degraded   active monitoring: off\n"),
            "{t}"
        );
        let row = t.lines().nth(2).unwrap();
        assert!(row.starts_with("openai"), "{t}");
        for cell in ["disabled", "closed", "100.0%", "down", "no", "$1.5000"] {
            assert!(row.contains(cell), "{cell} missing in {row}");
        }
    }
}
