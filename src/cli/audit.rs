//! `ai-failover audit [--since 24h] [--json]`: the audit trail, oldest first. Read one
//! record at a time through the stream's direct-get API, the one part of JetStream an
//! operator's account imports (`deploy/nats/server.conf`), so it works with the operator's
//! credentials as well as with the workers'.

use std::time::Duration;

use anyhow::{Context, bail};
use async_nats::StatusCode;

use crate::contract::{AuditOutcome, AuditRecord, Timestamp};

use super::client;
use super::watch::parse_duration;

/// `audit` arguments.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub file: super::ConfigFile,
    /// How far back to list (e.g. 90s, 15m, 24h, 30d).
    #[arg(long, value_parser = parse_duration, default_value = "24h")]
    pub since: Duration,
    /// Print each record's JSON, one per line.
    #[arg(long)]
    pub json: bool,
}

/// Lists the records.
pub async fn run(args: AuditArgs) -> anyhow::Result<()> {
    let c = client::connect(&args.file.config, "ai-failover audit").await?;
    let from = chrono::Utc::now() - chrono::Duration::from_std(args.since)?;
    let subject = format!("$JS.API.DIRECT.GET.{}", c.names.audit_stream());
    let filter = c.names.audit_filter();
    let mut next: Option<u64> = None;
    let mut shown = 0usize;
    loop {
        // The first read starts at the time asked for (servers before 2.11 ignore
        // `start_time`: the time check below then skips the older records).
        let body = match next {
            None => serde_json::json!({
                "start_time": from.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                "next_by_subj": filter,
            }),
            Some(seq) => serde_json::json!({ "seq": seq, "next_by_subj": filter }),
        };
        let reply = c
            .nats
            .request(subject.clone(), body.to_string().into())
            .await
            .with_context(|| {
                format!("reading {subject}: is a worker running, and may this user read the audit trail?")
            })?;
        match reply.status {
            Some(StatusCode::NOT_FOUND) => break,
            Some(s) if s != StatusCode::OK => bail!(
                "the server refused to read the audit trail: {s} {}",
                reply.description.unwrap_or_default()
            ),
            _ => {}
        }
        let seq: u64 = reply
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Sequence"))
            .and_then(|v| v.as_str().parse().ok())
            .context("a stored record came without its sequence")?;
        next = Some(seq + 1);
        let record: AuditRecord = match serde_json::from_slice(&reply.payload) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("record {seq} is not an audit record: {e}");
                continue;
            }
        };
        if record.at < from {
            continue;
        }
        shown += 1;
        if args.json {
            println!("{}", String::from_utf8_lossy(&reply.payload));
        } else {
            println!("{}", line(&record));
        }
    }
    if !args.json {
        eprintln!("{shown} record(s) since {}", time(from));
    }
    Ok(())
}

fn time(at: Timestamp) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// One readable line: time, outcome, endpoint, who, arguments, why.
pub fn line(r: &AuditRecord) -> String {
    let verified = if r.actor.verified {
        ""
    } else {
        " (unverified)"
    };
    let why = match (&r.outcome, &r.error) {
        (AuditOutcome::Ok, _) | (_, None) => String::new(),
        (_, Some(e)) => format!("  {e}"),
    };
    format!(
        "{}  {:<6}  {:<16}  {}{verified} via {}  {}  on {}{why}",
        time(r.at),
        r.outcome.as_str(),
        r.endpoint,
        r.actor.label(),
        r.channel.as_str(),
        r.arguments,
        r.worker_id,
    )
}
