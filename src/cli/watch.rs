//! `ai-failover watch`: live health, failover and mode events from `AI_EVENTS`, one line
//! each, through an ordered consumer (no durable state left behind on the server).

use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::consumer::DeliverPolicy;
use futures::StreamExt;

use crate::bus::event_log;
use crate::contract::{FailoverEvent, HealthEvent, ModeEvent, Names, Timestamp};

use super::client;

/// `watch` arguments.
#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub file: super::ConfigFile,
    /// Print each event's raw JSON, one per line.
    #[arg(long)]
    pub json: bool,
    /// Replay stored events from this long ago first (e.g. 90s, 15m, 2h, 1d).
    #[arg(long, value_parser = parse_duration)]
    pub since: Option<Duration>,
}

/// Parses `500ms`, `30s`, `15m`, `2h`, `1d` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 30s, 15m, 2h or 1d"))?;
    let ms = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "unknown unit `{unit}` in `{s}`: use ms, s, m, h or d"
            ));
        }
    };
    Ok(Duration::from_millis(n.saturating_mul(ms)))
}

/// Where to start: new events only, or stored ones from `since` ago.
fn start_at(since: Option<Duration>) -> anyhow::Result<DeliverPolicy> {
    let Some(since) = since else {
        return Ok(DeliverPolicy::New);
    };
    let from = chrono::Utc::now() - chrono::Duration::from_std(since)?;
    // async-nats takes a `time::OffsetDateTime`; going through its serde form spares this
    // crate a direct dependency on `time` for one value.
    let policy = serde_json::json!({
        "deliver_policy": "by_start_time",
        "opt_start_time": from.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
    });
    serde_json::from_value(policy).context("building the start time")
}

/// Follows the events until Ctrl-C or the connection ends.
pub async fn run(args: WatchArgs) -> anyhow::Result<()> {
    let c = client::connect(&args.file.config, "ai-failover watch").await?;
    let consumer = event_log::ordered(
        &c.js,
        &c.names,
        c.names.events_filter(),
        start_at(args.since)?,
    )
    .await;
    let mut events: futures::stream::BoxStream<'_, anyhow::Result<(String, bytes::Bytes)>> =
        match consumer {
            Ok(consumer) => consumer
                .messages()
                .await?
                .map(|m| {
                    let m = m.context("reading events")?;
                    Ok((m.subject.to_string(), m.payload.clone()))
                })
                .boxed(),
            // A viewer's account imports the events but not JetStream: live events only.
            Err(e) if args.since.is_none() => {
                eprintln!(
                    "no access to the events stream ({}); following live events",
                    crate::telemetry::chain(&e)
                );
                c.nats
                    .subscribe(c.names.events_filter())
                    .await?
                    .map(|m| Ok((m.subject.to_string(), m.payload)))
                    .boxed()
            }
            Err(e) => {
                return Err(e).context("start a worker or run `ai-failover setup` first");
            }
        };
    loop {
        let next = tokio::select! {
            m = events.next() => m,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let Some(event) = next else { return Ok(()) };
        let (subject, payload) = event?;
        if args.json {
            println!("{}", String::from_utf8_lossy(&payload));
        } else {
            println!("{}", line(&c.names, &subject, &payload));
        }
    }
}

fn time(at: Timestamp) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// One readable line: time, kind, who, what, why.
pub fn line(names: &Names, subject: &str, payload: &[u8]) -> String {
    let health_prefix = names.health_event("");
    if subject == names.failover_event() {
        if let Ok(e) = serde_json::from_slice::<FailoverEvent>(payload) {
            let to = e.to.as_ref().map_or("fallback".to_string(), |t| {
                format!("{}/{}", t.provider, t.model)
            });
            let hedge = if e.hedge { " (hedge)" } else { "" };
            return format!(
                "{}  failover  {}/{} -> {to}  {}{hedge}  request {}  by {}",
                time(e.at),
                e.from.provider,
                e.from.model,
                e.error_class,
                e.request_id,
                e.worker_id
            );
        }
    } else if subject == names.mode_event() {
        if let Ok(e) = serde_json::from_slice::<ModeEvent>(payload) {
            let actor = e
                .actor
                .as_ref()
                .map_or(String::new(), |a| format!("  set by {}", a.label()));
            return format!(
                "{}  mode      {} -> {}  {}  by {}{actor}",
                time(e.at),
                e.previous.as_str(),
                e.mode.as_str(),
                e.reason,
                e.worker_id
            );
        }
    } else if subject.starts_with(&health_prefix)
        && let Ok(e) = serde_json::from_slice::<HealthEvent>(payload)
    {
        let forced = if e.forced { " (forced)" } else { "" };
        return format!(
            "{}  health    {}  {} -> {}{forced}  breaker {} -> {}  {}  by {}",
            time(e.at),
            e.provider,
            e.previous_status.as_str(),
            e.status.as_str(),
            e.previous_breaker.as_str(),
            e.breaker.as_str(),
            e.reason,
            e.worker_id
        );
    }
    format!(
        "{}  {subject}  {}",
        time(chrono::Utc::now()),
        String::from_utf8_lossy(payload)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{ErrorClass, ProviderModel};

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert!(parse_duration("5w").is_err());
        assert!(parse_duration("m").is_err());
    }

    #[test]
    fn since_becomes_a_start_time() {
        let p = start_at(Some(Duration::from_secs(60))).unwrap();
        assert!(matches!(p, DeliverPolicy::ByStartTime { .. }), "{p:?}");
        assert!(matches!(start_at(None).unwrap(), DeliverPolicy::New));
    }

    #[test]
    fn a_failover_reads_as_one_line() {
        let names = Names::default();
        let e = FailoverEvent {
            request_id: "r1".into(),
            from: ProviderModel {
                provider: "openai".into(),
                model: "gpt".into(),
            },
            to: None,
            error_class: ErrorClass::Timeout,
            hedge: false,
            at: chrono::Utc::now(),
            worker_id: "w1".into(),
        };
        let l = line(
            &names,
            "ai.events.failover",
            &serde_json::to_vec(&e).unwrap(),
        );
        assert!(
            l.contains("failover  openai/gpt -> fallback  timeout  request r1  by w1"),
            "{l}"
        );
    }
}
