//! `ai-failover control ENDPOINT [JSON]`: a thin client of the control service. Prints the
//! reply; an error reply (micro-protocol error headers) is printed too and fails the command.

use std::time::Duration;

use anyhow::{Context, bail};
use async_nats::service::{NATS_SERVICE_ERROR, NATS_SERVICE_ERROR_CODE};

use crate::contract::Endpoint;

use super::client;

/// `control` arguments.
#[derive(Debug, clap::Args)]
pub struct ControlArgs {
    #[command(flatten)]
    pub file: super::ConfigFile,
    /// status | health-check | force-status | best-provider | failover-history |
    /// health-summary | monitoring.start | monitoring.stop | test-failover | mode.set |
    /// quality-summary
    pub endpoint: String,
    /// The request body (default `{}`).
    pub json: Option<String>,
    /// How long to wait for the reply (health checks and test-failover call providers).
    #[arg(long, default_value_t = 30_000)]
    pub timeout_ms: u64,
}

/// Sends the request and prints the reply.
pub async fn run(args: ControlArgs) -> anyhow::Result<()> {
    if args.endpoint == "keys.set" {
        bail!(
            "keys.set takes a key: use `ai-failover keys set --provider ID`, which reads it from standard input (a key given here would be in the shell's history and the process list)"
        );
    }
    if Endpoint::from_name(&args.endpoint).is_none() {
        let known: Vec<&str> = Endpoint::ALL.iter().map(|e| e.name()).collect();
        bail!(
            "unknown endpoint `{}`; the service has: {}",
            args.endpoint,
            known.join(", ")
        );
    }
    let body = args.json.unwrap_or_else(|| "{}".into());
    serde_json::from_str::<serde_json::Value>(&body).context("the request body is not JSON")?;
    let c = client::connect(&args.file.config, "ai-failover control").await?;
    let reply = send(&c, &args.endpoint, body, args.timeout_ms).await?;
    let text = match serde_json::from_slice::<serde_json::Value>(&reply.payload) {
        Ok(v) => serde_json::to_string_pretty(&v).expect("json"),
        Err(_) => String::from_utf8_lossy(&reply.payload).into_owned(),
    };
    println!("{text}");
    refused(&args.endpoint, &reply)
}

/// Sends `body` to `endpoint` and returns the reply, error replies included.
pub async fn send(
    c: &client::Client,
    endpoint: &str,
    body: String,
    timeout_ms: u64,
) -> anyhow::Result<async_nats::Message> {
    let subject = c.names.control(endpoint);
    let request = async_nats::Request::new()
        .payload(body.into())
        .timeout(Some(Duration::from_millis(timeout_ms)));
    c.nats
        .send_request(subject.clone(), request)
        .await
        .with_context(|| format!("no answer on {subject}: is a worker running?"))
}

/// Calls `endpoint` and decodes its reply; an error reply or an unexpected body fails.
pub async fn fetch<T: serde::de::DeserializeOwned>(
    c: &client::Client,
    endpoint: &str,
    body: String,
    timeout_ms: u64,
) -> anyhow::Result<T> {
    let reply = send(c, endpoint, body, timeout_ms).await?;
    refused(endpoint, &reply)?;
    serde_json::from_slice(&reply.payload).with_context(|| format!("unexpected {endpoint} reply"))
}

/// Fails when `reply` is the service's error reply (micro-protocol error headers).
pub fn refused(endpoint: &str, reply: &async_nats::Message) -> anyhow::Result<()> {
    if let Some(h) = &reply.headers
        && let Some(error) = h.get(NATS_SERVICE_ERROR)
    {
        let code = h
            .get(NATS_SERVICE_ERROR_CODE)
            .map_or("?".to_string(), |c| c.to_string());
        bail!("{endpoint} refused the request ({code}): {error}");
    }
    Ok(())
}
