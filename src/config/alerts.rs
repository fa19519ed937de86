//! `[alerts]`: where the fleet's alerts go (`[[alerts.webhooks]]`) and how delivery retries.

use serde::{Deserialize, Serialize};

use super::checker::Checker;
use crate::contract::{AlertType, Severity};

/// `[alerts]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// A failing webhook is retried (with growing pauses) for this long after the alert.
    pub max_retry_ms: u64,
    /// The same alert (type, subject and state) again within this is not sent again.
    pub repeat_after_ms: u64,
    /// A webhook that has not answered in this long has failed (and is retried).
    pub timeout_ms: u64,
    /// Fractions of each provider's `daily_budget_usd` whose crossing raises
    /// `budget_threshold` (once per threshold, provider and day, for the fleet).
    pub budget_thresholds: Vec<f64>,
    /// `dead_letters` when the fleet writes more dead letters than this per minute (over a
    /// history interval).
    pub dead_letters_per_minute: f64,
    /// `slow_provider` when a provider's p95 latency over a history interval is above this
    /// ...
    pub slow_p95_ms: u64,
    /// ... over at least this many successful calls.
    pub slow_min_calls: u64,
    /// `fleet_stalled` when requests wait and none has been finished for this long.
    pub stall_after_ms: u64,
    pub webhooks: Vec<WebhookConfig>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            max_retry_ms: 3_600_000,
            repeat_after_ms: 600_000,
            timeout_ms: 5_000,
            budget_thresholds: vec![0.5, 0.8, 1.0],
            dead_letters_per_minute: 10.0,
            slow_p95_ms: 10_000,
            slow_min_calls: 5,
            stall_after_ms: 60_000,
            webhooks: Vec::new(),
        }
    }
}

/// The body a webhook gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// The alert record itself (`schemas/alert_record.json`).
    Json,
    /// A Slack incoming webhook (`text` and blocks).
    Slack,
    /// A Discord webhook (an embed coloured by severity).
    Discord,
    /// A Microsoft Teams incoming webhook (a MessageCard).
    Teams,
    /// PagerDuty Events API v2 (`url = "https://events.pagerduty.com/v2/enqueue"`): triggers
    /// on an outage and resolves on the recovery, by dedup key. Needs `routing_key_env`.
    Pagerduty,
}

/// One `[[alerts.webhooks]]` entry. Its URL is a secret: never logged or shown in full.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Names it in logs, metrics and its consumer (`alerts-<id>`).
    pub id: String,
    /// The URL itself (a local receiver) ...
    #[serde(default)]
    pub url: Option<String>,
    /// ... or the environment variable holding it.
    #[serde(default)]
    pub url_env: Option<String>,
    #[serde(default = "json")]
    pub format: WebhookFormat,
    /// The alert types it gets (default: all).
    #[serde(default)]
    pub types: Vec<AlertType>,
    #[serde(default = "info")]
    pub min_severity: Severity,
    /// `pagerduty`: the environment variable holding the integration's routing key.
    #[serde(default)]
    pub routing_key_env: Option<String>,
}

fn json() -> WebhookFormat {
    WebhookFormat::Json
}

fn info() -> Severity {
    Severity::Info
}

impl WebhookConfig {
    /// The URL, from the file or the environment.
    pub fn resolve_url(&self) -> Option<String> {
        match (&self.url, &self.url_env) {
            (Some(u), _) => Some(u.clone()),
            (None, Some(var)) => std::env::var(var).ok().filter(|v| !v.trim().is_empty()),
            (None, None) => None,
        }
    }

    /// PagerDuty's routing key, from the environment.
    pub fn routing_key(&self) -> Option<String> {
        let var = self.routing_key_env.as_deref()?;
        std::env::var(var).ok().filter(|v| !v.trim().is_empty())
    }

    /// Whether it wants alerts of `alert_type` at `severity`.
    pub fn wants(&self, alert_type: AlertType, severity: Severity) -> bool {
        (self.types.is_empty() || self.types.contains(&alert_type)) && severity >= self.min_severity
    }
}

/// The URL with everything after the host cut off, for logs.
pub fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => format!("{}://{}/…", u.scheme(), u.host_str().unwrap_or("?")),
        Err(_) => "(an unparsable URL)".into(),
    }
}

/// The checks of `[alerts]`.
pub(super) fn check(c: &mut Checker, a: &AlertsConfig) {
    c.check(
        a.timeout_ms >= 100 && a.timeout_ms <= 60_000,
        "alerts.timeout_ms",
        a.timeout_ms.to_string(),
        "use 100..=60000 (default 5000)",
    );
    c.check(
        a.max_retry_ms >= 1_000,
        "alerts.max_retry_ms",
        a.max_retry_ms.to_string(),
        "use at least 1000 (default 3600000, an hour)",
    );
    for (i, t) in a.budget_thresholds.iter().enumerate() {
        c.check(
            t.is_finite() && *t > 0.0 && *t <= 10.0,
            format!("alerts.budget_thresholds[{i}]"),
            t.to_string(),
            "use fractions of the daily budget above 0, e.g. [0.5, 0.8, 1.0]",
        );
    }
    c.check(
        a.dead_letters_per_minute.is_finite() && a.dead_letters_per_minute >= 0.0,
        "alerts.dead_letters_per_minute",
        a.dead_letters_per_minute.to_string(),
        "use a rate of 0 or more (default 10)",
    );
    c.check(
        a.slow_p95_ms >= 1,
        "alerts.slow_p95_ms",
        a.slow_p95_ms.to_string(),
        "use a latency in ms above 0 (default 10000)",
    );
    c.check(
        a.stall_after_ms >= 1_000,
        "alerts.stall_after_ms",
        a.stall_after_ms.to_string(),
        "use at least 1000 (default 60000, a minute)",
    );
    let mut ids = std::collections::HashSet::new();
    for (i, w) in a.webhooks.iter().enumerate() {
        let key = |k: &str| format!("alerts.webhooks[{i}].{k}");
        c.check(
            !w.id.is_empty()
                && w.id.len() <= 32
                && w.id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            key("id"),
            format!("`{}`", w.id),
            "use 1..=32 of [A-Za-z0-9_-]: it names the webhook's consumer",
        );
        c.check(
            ids.insert(w.id.clone()),
            key("id"),
            format!("duplicate webhook id `{}`", w.id),
            "give every [[alerts.webhooks]] its own id",
        );
        if w.format == WebhookFormat::Pagerduty {
            c.check(
                w.routing_key().is_some(),
                key("routing_key_env"),
                match &w.routing_key_env {
                    Some(var) => format!("environment variable `{var}` is not set or empty"),
                    None => "a pagerduty webhook needs a routing key".into(),
                },
                "set routing_key_env to the variable holding the PagerDuty integration key",
            );
        }
        match (&w.url, &w.url_env, w.resolve_url()) {
            (Some(_), Some(_), _) => c.check(
                false,
                key("url"),
                "both url and url_env are given",
                "keep one: url_env for a secret URL, url for a local receiver",
            ),
            (None, None, _) | (Some(_), None, None) => c.check(
                false,
                key("url_env"),
                "no url or url_env",
                "name the environment variable holding the webhook URL (url_env = \"OPS_WEBHOOK_URL\")",
            ),
            (_, Some(var), None) => c.check(
                false,
                key("url_env"),
                format!("environment variable `{var}` is not set or empty"),
                "export it with the webhook URL before starting the worker",
            ),
            (_, _, Some(u)) => c.check(
                url::Url::parse(&u).is_ok_and(|p| matches!(p.scheme(), "http" | "https")),
                if w.url.is_some() { key("url") } else { key("url_env") },
                format!("not an http(s) URL: {}", redacted(&u)),
                "use an http:// or https:// URL",
            ),
        }
    }
}
