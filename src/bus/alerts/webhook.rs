//! Delivering alerts to one webhook: a durable consumer of `AI_ALERTS` per webhook
//! (`alerts-<id>`), shared by the workers, so the fleet sends each alert once per webhook and
//! a worker dying mid-delivery loses none. Each POST carries `Idempotency-Key: <alert_id>`.
//! 5xx, 429, timeouts and connection errors are retried with growing pauses for up to
//! `alerts.max_retry_ms`; other 4xx are not. A failing webhook holds up no other, and no
//! request.

use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use tokio_util::sync::CancellationToken;

use crate::config::{AlertsConfig, WebhookConfig, redacted};
use crate::contract::AlertRecord;
use crate::telemetry::metrics::name as metric;

use super::super::consume::Handler;
use super::super::hold;
use super::format;

/// The longest pause between two tries.
const MAX_PAUSE: Duration = Duration::from_secs(300);

/// One webhook's delivery.
pub struct WebhookDelivery {
    pub webhook: WebhookConfig,
    /// Resolved at start-up (checked by the config); never logged.
    url: String,
    /// PagerDuty's; never logged.
    routing_key: Option<String>,
    client: reqwest::Client,
    max_retry: Duration,
    /// The consumer's ack wait (set-up's).
    ack_wait: Duration,
}

/// How a POST ended.
enum Posted {
    Delivered,
    /// Worth trying again (5xx, 429, timeout, no connection).
    Retry(String),
    /// Refused for good (another 4xx).
    Refused(String),
}

impl WebhookDelivery {
    /// The delivery of `webhook` (its URL resolved), with `alerts`' timeout and retry limit.
    pub fn new(webhook: WebhookConfig, alerts: &AlertsConfig) -> Option<Self> {
        let url = webhook.resolve_url()?;
        // reqwest is built without a default crypto provider (see `providers::http`).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(alerts.timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .ok()?;
        Some(WebhookDelivery {
            routing_key: webhook.routing_key(),
            webhook,
            url,
            client,
            max_retry: Duration::from_millis(alerts.max_retry_ms),
            ack_wait: super::super::setup::alert_ack_wait(alerts),
        })
    }

    /// POSTs `alert` once (`ai-failover alerts test`): `Err` says why it was not accepted,
    /// without the URL.
    pub async fn send_once(&self, alert: &AlertRecord) -> Result<(), String> {
        match self.post(alert).await {
            Posted::Delivered => Ok(()),
            Posted::Retry(why) | Posted::Refused(why) => Err(why),
        }
    }

    /// Where it goes, for people: the host only.
    pub fn destination(&self) -> String {
        redacted(&self.url)
    }

    async fn post(&self, alert: &AlertRecord) -> Posted {
        let sent = self
            .client
            .post(&self.url)
            .header("Idempotency-Key", alert.alert_id.as_str())
            .header(
                "User-Agent",
                concat!("ai-failover/", env!("CARGO_PKG_VERSION")),
            )
            .json(&format::render(
                self.webhook.format,
                alert,
                self.routing_key.as_deref(),
            ))
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => Posted::Delivered,
            Ok(r) if r.status().is_server_error() || r.status().as_u16() == 429 => {
                Posted::Retry(format!("HTTP {}", r.status().as_u16()))
            }
            Ok(r) => Posted::Refused(format!("HTTP {}", r.status().as_u16())),
            // Without the URL: reqwest's errors name it.
            Err(e) if e.is_timeout() => Posted::Retry("timed out".into()),
            Err(e) if e.is_connect() => Posted::Retry("cannot connect".into()),
            Err(_) => Posted::Retry("request failed".into()),
        }
    }
}

#[async_trait::async_trait]
impl Handler for WebhookDelivery {
    async fn handle(&self, msg: jetstream::Message, stop: CancellationToken) {
        let id = self.webhook.id.as_str();
        let alert = match serde_json::from_slice::<AlertRecord>(&msg.payload) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(webhook = id, error = %e, "unreadable alert dropped");
                let _ = msg.ack_with(AckKind::Term).await;
                return;
            }
        };
        let ack_wait = self.ack_wait;
        if !self.webhook.wants(alert.alert_type, alert.severity) {
            let _ = hold::finish(&msg, ack_wait, AckKind::Ack, "ack", &stop).await;
            return;
        }
        let label = |result: &'static str| {
            metrics::counter!(metric::ALERT_DELIVERIES_TOTAL, "webhook" => id.to_string(), "result" => result)
                .increment(1);
        };
        let age = (crate::engine::clock::wall_now() - alert.at)
            .to_std()
            .unwrap_or_default();
        let url = redacted(&self.url);
        match self.post(&alert).await {
            Posted::Delivered => {
                label("delivered");
                let _ = hold::finish(&msg, ack_wait, AckKind::Ack, "ack", &stop).await;
            }
            Posted::Retry(why) if age < self.max_retry => {
                label("retried");
                let tries = hold::deliveries(&msg);
                let pause = (Duration::from_secs(1)
                    * 2u32.pow(tries.saturating_sub(1).min(16) as u32))
                .min(MAX_PAUSE);
                tracing::warn!(webhook = id, %url, alert = %alert.alert_id, %why, tries, retry_s = pause.as_secs(), "alert not delivered; trying again");
                let _ = msg.ack_with(AckKind::Nak(Some(pause))).await;
            }
            Posted::Retry(why) | Posted::Refused(why) => {
                label("failed");
                tracing::error!(webhook = id, %url, alert = %alert.alert_id, %why, "alert not delivered; giving up");
                let _ = msg.ack_with(AckKind::Term).await;
            }
        }
    }
}
