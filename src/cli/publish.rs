//! `ai-failover publish`: send one analysis request and print its result.
//!
//! The result is awaited on a private `reply_to` inbox subscribed before the request is
//! published, so it cannot be missed; if nothing arrives in time, the stored outcome in
//! `ai_outcomes` is checked once before giving up (a reply is best effort, the store is not).

use std::time::Duration;

use anyhow::{Context, bail};
use async_nats::HeaderMap;
use futures::StreamExt;

use crate::contract::{AnalysisRequest, AnalysisResult, Kind, OutcomeRecord};

use super::client;

/// Extra wait past the request's deadline: queueing, the worker's publish, the network.
const MARGIN: Duration = Duration::from_secs(5);

/// `publish` arguments.
#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    #[command(flatten)]
    pub file: super::ConfigFile,
    /// The instrument (required for --kind signal).
    #[arg(long)]
    pub symbol: Option<String>,
    /// signal | portfolio | risk | sentiment.
    #[arg(long, default_value = "signal", value_parser = parse_kind)]
    pub kind: Kind,
    /// Prices, oldest first, comma-separated (context.prices; feeds the rule-based fallback).
    #[arg(long, value_delimiter = ',')]
    pub prices: Vec<f64>,
    /// Extra instructions for the analysis.
    #[arg(long)]
    pub prompt: Option<String>,
    /// Time budget from publish time (default: the config's worker.default_deadline_ms).
    #[arg(long)]
    pub deadline_ms: Option<u64>,
    /// Allow only these providers (repeat the flag).
    #[arg(long = "provider")]
    pub providers: Vec<String>,
    /// Refuse the cache and rule-based fallback: no provider answer = `failed`.
    #[arg(long)]
    pub no_fallback: bool,
    /// Request id (default: a fresh UUID).
    #[arg(long)]
    pub request_id: Option<String>,
    /// Print the result as JSON instead of a summary.
    #[arg(long)]
    pub json: bool,
}

fn parse_kind(s: &str) -> Result<Kind, String> {
    Kind::from_token(s)
        .ok_or_else(|| format!("`{s}` is not one of signal, portfolio, risk, sentiment"))
}

/// The request the arguments describe.
pub fn build_request(args: &PublishArgs) -> anyhow::Result<AnalysisRequest> {
    let mut request = AnalysisRequest::signal(args.symbol.as_deref().unwrap_or(""));
    request.kind = args.kind;
    request.symbol = args.symbol.clone();
    if let Some(id) = &args.request_id {
        request.request_id = id.clone();
    }
    request.prompt = args.prompt.clone();
    request.deadline_ms = args.deadline_ms;
    request.allow_fallback = !args.no_fallback;
    if !args.providers.is_empty() {
        request.providers = Some(args.providers.iter().map(Into::into).collect());
    }
    if !args.prices.is_empty() {
        let prices = args.prices.iter().map(|p| serde_json::json!(p)).collect();
        request.context = Some(serde_json::Map::from_iter([(
            "prices".to_string(),
            serde_json::Value::Array(prices),
        )]));
    }
    request
        .validate(Some(args.kind.as_str()))
        .context("the request would be dead-lettered")?;
    Ok(request)
}

/// Publishes the request and prints its result; fails when none arrives in time.
pub async fn run(args: PublishArgs) -> anyhow::Result<()> {
    let c = client::connect(&args.file.config, "ai-failover publish").await?;
    let mut request = build_request(&args)?;
    let inbox = c.nats.new_inbox();
    request.reply_to = Some(inbox.clone());
    let mut replies = c
        .nats
        .subscribe(inbox)
        .await
        .context("subscribing to the reply inbox")?;

    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", request.request_id.as_str());
    let body = serde_json::to_vec(&request).expect("requests serialize");
    let subject = c.names.request(request.kind);
    let ack =
        c.js.publish_with_headers(subject.clone(), headers, body.into())
            .await
            .with_context(|| format!("publishing to {subject}"))?
            .await
            .with_context(|| {
                format!("{subject} was not stored: start a worker or run `ai-failover setup` first")
            })?;
    if ack.duplicate {
        eprintln!(
            "note: request {} was already published; waiting for its result",
            request.request_id
        );
    }

    let deadline = Duration::from_millis(
        request
            .deadline_ms
            .unwrap_or(c.cfg.worker.default_deadline_ms),
    ) + MARGIN;
    let waited = tokio::time::timeout(deadline, async {
        while let Some(msg) = replies.next().await {
            match serde_json::from_slice::<AnalysisResult>(&msg.payload) {
                Ok(r) if r.request_id == request.request_id => return Some(r),
                _ => continue,
            }
        }
        None
    })
    .await;
    let result = match waited {
        Ok(Some(r)) => r,
        _ => match stored_result(&c, &request.request_id).await {
            Some(r) => r,
            None => bail!(
                "no result for request {} within {} ms",
                request.request_id,
                deadline.as_millis()
            ),
        },
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&result).expect("results serialize")
        );
    } else {
        print!("{}", summary(&result));
    }
    Ok(())
}

async fn stored_result(c: &client::Client, request_id: &str) -> Option<AnalysisResult> {
    let outcomes = c.bucket(c.names.outcomes_bucket()).await.ok()?;
    let bytes = outcomes.get(request_id).await.ok()??;
    match serde_json::from_slice(&bytes).ok()? {
        OutcomeRecord::Done { result } => Some(*result),
        OutcomeRecord::InProgress { .. } => None,
    }
}

/// A readable multi-line summary of a result.
pub fn summary(r: &AnalysisResult) -> String {
    let mut out = String::new();
    let mut line = |label: &str, text: String| out.push_str(&format!("{label:<9}{text}\n"));
    let what = match &r.symbol {
        Some(s) => format!("{} {s}", r.kind),
        None => r.kind.to_string(),
    };
    line("request", format!("{}  {what}", r.request_id));
    let by = match (&r.provider, &r.model) {
        (Some(p), Some(m)) => format!("  from {p}/{m}"),
        (Some(p), None) => format!("  from {p}"),
        _ => String::new(),
    };
    line(
        "status",
        format!(
            "{} (source {}){by}  mode {}",
            r.status.as_str(),
            r.source.as_str(),
            r.mode.as_str()
        ),
    );
    if let Some(s) = &r.signal {
        line(
            "signal",
            format!(
                "{}  confidence {:.2}  size {:.2}  horizon {}",
                format!("{:?}", s.action).to_uppercase(),
                s.confidence,
                s.position_size,
                s.horizon
            ),
        );
        line("why", s.rationale.clone());
    }
    if let Some(a) = &r.analysis {
        line("analysis", serde_json::Value::Object(a.clone()).to_string());
    }
    if r.risk.trading_suspended {
        line("risk", "trading suspended".into());
    }
    if !r.attempts.is_empty() {
        let trail: Vec<String> = r
            .attempts
            .iter()
            .map(|a| {
                let status = a.http_status.map_or(String::new(), |s| format!(" {s}"));
                let hedge = if a.hedge { " (hedge)" } else { "" };
                let outcome = serde_json::to_value(a.outcome)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                format!(
                    "{}/{} {outcome}{status} {}ms{hedge}",
                    a.provider, a.model, a.latency_ms
                )
            })
            .collect();
        line("attempts", trail.join(" -> "));
    }
    if let Some(e) = &r.error {
        line("error", format!("{}: {}", e.class, e.message));
    }
    line(
        "cost",
        format!(
            "${:.6}  tokens {}/{}  latency {} ms  worker {}",
            r.cost_usd, r.usage.input_tokens, r.usage.output_tokens, r.latency_ms, r.worker_id
        ),
    );
    out
}
