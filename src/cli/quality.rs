//! `ai-failover quality [--kind K] [--json]`: how good each provider's, model's and kind's
//! advice has been, from the control service's `quality-summary` (so a viewer's credentials
//! are enough), with the cache's and the fallback's for comparison.

use anyhow::Context;

use crate::contract::{Kind, QualityRecord, QualitySummaryReply, Source};

use super::client;
use super::control;

/// `quality` arguments.
#[derive(Debug, clap::Args)]
pub struct QualityArgs {
    #[command(flatten)]
    pub file: super::ConfigFile,
    /// Only this kind (signal, portfolio, risk, sentiment).
    #[arg(long)]
    pub kind: Option<String>,
    /// Print the reply's JSON.
    #[arg(long)]
    pub json: bool,
}

/// Fetches and prints the records.
pub async fn run(args: QualityArgs) -> anyhow::Result<()> {
    let kind = match &args.kind {
        None => None,
        Some(k) => Some(Kind::from_token(k).with_context(|| {
            format!("`{k}` is not a kind: use signal, portfolio, risk or sentiment")
        })?),
    };
    let body = match kind {
        Some(k) => serde_json::json!({ "kind": k }).to_string(),
        None => "{}".to_string(),
    };
    let c = client::connect(&args.file.config, "ai-failover quality").await?;
    let summary: QualitySummaryReply = control::fetch(&c, "quality-summary", body, 10_000).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(());
    }
    print!("{}", table(&summary.records));
    Ok(())
}

/// Who gave the advice: `provider/model`, or `(cache)` / `(fallback)`.
fn source_name(r: &QualityRecord) -> String {
    match r.source {
        Source::Cache => "(cache)".into(),
        Source::Fallback => "(fallback)".into(),
        _ => format!(
            "{}/{}",
            r.provider.as_deref().unwrap_or("?"),
            r.model.as_deref().unwrap_or("?")
        ),
    }
}

/// The records as an aligned table.
pub fn table(records: &[QualityRecord]) -> String {
    if records.is_empty() {
        return "no outcomes yet: publish feedback to <prefix>.feedback.<kind> (see the README)\n"
            .into();
    }
    let width = records
        .iter()
        .map(|r| source_name(r).len())
        .max()
        .unwrap_or(6)
        .max(6);
    let mut out = format!(
        "{:<9} {:<width$} {:>8} {:>9} {:>8} {:>13} {:>6}\n",
        "kind", "source", "n", "labelled", "hit", "mean signed", "brier"
    );
    for r in records {
        out.push_str(&format!(
            "{:<9} {:<width$} {:>8.1} {:>9} {:>7.1}% {:>+12.3}% {:>6.3}\n",
            r.kind.as_str(),
            source_name(r),
            r.n,
            r.labelled,
            r.hit_rate * 100.0,
            r.mean_signed_return * 100.0,
            r.brier,
        ));
    }
    out
}
