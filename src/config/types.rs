use std::path::PathBuf;

use secrecy::SecretString;

pub use super::access::{AuditConfig, ControlConfig, HttpConfig, HttpToken};
pub use super::alerts::{AlertsConfig, WebhookConfig, WebhookFormat, redacted};
pub use super::history::HistoryConfig;
pub use super::learning::{FeedbackConfig, QualityConfig};
pub use super::secrets::{SecretsConfig, is_master_key};
use serde::{Deserialize, Serialize};

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub nats: NatsConfig,
    #[serde(default)]
    pub worker: WorkerConfig,
    #[serde(default)]
    pub engine: EngineConfig,
    /// Breaker defaults; a provider may override any of them.
    #[serde(default)]
    pub breaker: BreakerConfig,
    #[serde(default)]
    pub modes: ModesConfig,
    #[serde(default)]
    pub providers: Vec<ProviderConfig>,
    #[serde(default)]
    pub control: ControlConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub feedback: FeedbackConfig,
    #[serde(default)]
    pub quality: QualityConfig,
    #[serde(default)]
    pub alerts: AlertsConfig,
    #[serde(default)]
    pub history: HistoryConfig,
    #[serde(default)]
    pub secrets: SecretsConfig,
    /// Per-tenant terms (`[[tenants]]`), re-read while running.
    #[serde(default)]
    pub tenants: Vec<super::TenantConfig>,
    /// The file this configuration was loaded from, if any: workers re-read its
    /// `[[tenants]]` while running.
    #[serde(skip)]
    pub file: Option<std::path::PathBuf>,
}

/// `[nats]`: where the bus is and how names are derived.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// One URL or a comma-separated list of cluster seeds.
    pub url: String,
    /// Subject prefix; stream and bucket names derive from it.
    pub prefix: String,
    /// Stream and KV replicas (3 on a cluster).
    pub replicas: usize,
    pub creds_file: Option<PathBuf>,
    pub nkey_file: Option<PathBuf>,
    /// Environment variable holding a token.
    pub token_env: Option<String>,
    pub user: Option<String>,
    /// Environment variable holding the password for `user`.
    pub password_env: Option<String>,
    pub tls_ca_file: Option<PathBuf>,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Bound on every JetStream API call and publish ack.
    pub request_timeout_ms: u64,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            url: "nats://127.0.0.1:4222".into(),
            prefix: "ai".into(),
            replicas: 1,
            creds_file: None,
            nkey_file: None,
            token_env: None,
            user: None,
            password_env: None,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            request_timeout_ms: 5_000,
        }
    }
}

/// `[worker]`: the consume loop.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// Defaults to `<hostname>-<pid>-<random>`.
    pub id: Option<String>,
    /// Concurrent requests per worker.
    pub max_in_flight: usize,
    pub default_deadline_ms: u64,
    /// Larger requests are dead-lettered as `too_large`.
    pub max_request_bytes: usize,
    /// `/metrics`, `/healthz`, `/readyz`, dashboard. Empty string = off.
    pub http_listen: String,
    /// Consumer ack wait; in-progress acks are sent every third of it.
    pub ack_wait_ms: u64,
    /// Deliveries before a message is dead-lettered as `max_deliveries`.
    pub max_deliver: i64,
    /// Fleet-wide cap on unacknowledged messages.
    pub max_ack_pending: i64,
    /// How long SIGTERM waits for in-flight work before naking it.
    pub shutdown_grace_ms: u64,
    /// The only subjects a request's `reply_to` may name (by prefix); a request naming
    /// another is dead-lettered. Never `$…` or the fleet's own prefix: a request must not
    /// make a worker write into KV, streams or events with the worker's credentials.
    pub reply_prefixes: Vec<String>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            id: None,
            max_in_flight: 64,
            default_deadline_ms: 30_000,
            max_request_bytes: 256 * 1024,
            http_listen: "127.0.0.1:9464".into(),
            ack_wait_ms: 30_000,
            max_deliver: 5,
            max_ack_pending: 1_000,
            shutdown_grace_ms: 10_000,
            reply_prefixes: vec!["_INBOX.".into()],
        }
    }
}

/// How candidates are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Configured priority, then health score.
    Priority,
    /// Lowest observed latency first.
    Latency,
    /// Cheapest first.
    Cost,
    /// Random, weighted by `weight` × health.
    Weighted,
    /// By the realised hit rate of each provider's advice (`[quality]`): Thompson sampling,
    /// with priority as the prior and a minimum exploration share.
    Quality,
}

/// `[engine]`: failover behaviour.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    pub strategy: Strategy,
    /// Ask the next provider when the first is slower than its p95.
    pub hedging: bool,
    /// Never hedge before this many ms.
    pub hedge_floor_ms: u64,
    /// Retries and hedges may be at most this share of recent calls ...
    pub retry_budget_ratio: f64,
    /// ... plus this many per second as a floor.
    pub retry_budget_min_per_sec: f64,
    /// Retries on the same provider for retryable classes.
    pub max_retries_per_provider: u32,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// Cached decisions older than this are not used.
    pub cache_max_age_ms: u64,
    /// Confidence cap of the rule-based fallback.
    pub fallback_max_confidence: f64,
    /// Active health-check interval.
    pub health_check_interval_ms: u64,
    /// While a provider's breaker is open, the fleet's prober (one elected worker) sends it
    /// a cheap probe this often; the first success after the open period closes the breaker
    /// for the whole fleet, so live requests never have to be the trial.
    pub probe_interval_ms: u64,
    /// A probe that takes longer than this failed (and the next one waits longer).
    pub probe_timeout_ms: u64,
    /// A provider call is not started when less time than this is left before the request's
    /// deadline, nor when less is left than the provider's observed median latency.
    pub min_call_ms: u64,
    /// Output tokens asked of a provider.
    pub max_output_tokens: u32,
    /// Largest provider response body read.
    pub max_response_bytes: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            strategy: Strategy::Priority,
            hedging: true,
            hedge_floor_ms: 250,
            retry_budget_ratio: 0.2,
            retry_budget_min_per_sec: 2.0,
            max_retries_per_provider: 1,
            backoff_base_ms: 100,
            backoff_max_ms: 2_000,
            cache_max_age_ms: 300_000,
            fallback_max_confidence: 0.4,
            health_check_interval_ms: 300_000,
            probe_interval_ms: 1_000,
            probe_timeout_ms: 2_000,
            min_call_ms: 100,
            max_output_tokens: 512,
            max_response_bytes: 1 << 20,
        }
    }
}

/// `[breaker]`: circuit-breaker thresholds.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    pub consecutive_failures: u32,
    /// Open at this failure share over the last `window` calls once `min_calls` is reached.
    pub failure_rate: f64,
    pub window: u32,
    pub min_calls: u32,
    /// A call slower than this counts as slow ...
    pub slow_call_ms: u64,
    /// ... and this share of slow calls in the window opens the breaker.
    pub slow_call_rate: f64,
    pub open_ms: u64,
    pub max_open_ms: u64,
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            consecutive_failures: 3,
            failure_rate: 0.5,
            window: 20,
            min_calls: 10,
            slow_call_ms: 10_000,
            slow_call_rate: 0.8,
            open_ms: 5_000,
            max_open_ms: 60_000,
            half_open_probes: 1,
        }
    }
}

/// A provider's partial override of `[breaker]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerOverride {
    pub consecutive_failures: Option<u32>,
    pub failure_rate: Option<f64>,
    pub window: Option<u32>,
    pub min_calls: Option<u32>,
    pub slow_call_ms: Option<u64>,
    pub slow_call_rate: Option<f64>,
    pub open_ms: Option<u64>,
    pub max_open_ms: Option<u64>,
    pub half_open_probes: Option<u32>,
}

impl BreakerConfig {
    /// These defaults with `o`'s fields laid over them.
    pub fn with(&self, o: &BreakerOverride) -> BreakerConfig {
        BreakerConfig {
            consecutive_failures: o.consecutive_failures.unwrap_or(self.consecutive_failures),
            failure_rate: o.failure_rate.unwrap_or(self.failure_rate),
            window: o.window.unwrap_or(self.window),
            min_calls: o.min_calls.unwrap_or(self.min_calls),
            slow_call_ms: o.slow_call_ms.unwrap_or(self.slow_call_ms),
            slow_call_rate: o.slow_call_rate.unwrap_or(self.slow_call_rate),
            open_ms: o.open_ms.unwrap_or(self.open_ms),
            max_open_ms: o.max_open_ms.unwrap_or(self.max_open_ms),
            half_open_probes: o.half_open_probes.unwrap_or(self.half_open_probes),
        }
    }
}

/// Risk adjustments applied to results made in one mode.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModeRisk {
    pub position_multiplier: f64,
    pub min_confidence: f64,
}

/// `[modes]`: multipliers and thresholds per mode.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModesConfig {
    pub normal: ModeRisk,
    pub degraded: ModeRisk,
    pub conservative: ModeRisk,
    pub minimal: ModeRisk,
    /// Minimal for this long ⇒ suspended (0 = never automatically).
    pub suspend_after_minimal_ms: u64,
}

impl Default for ModesConfig {
    fn default() -> Self {
        ModesConfig {
            normal: ModeRisk {
                position_multiplier: 1.0,
                min_confidence: 0.0,
            },
            degraded: ModeRisk {
                position_multiplier: 0.8,
                min_confidence: 0.55,
            },
            conservative: ModeRisk {
                position_multiplier: 0.5,
                min_confidence: 0.7,
            },
            minimal: ModeRisk {
                position_multiplier: 0.25,
                min_confidence: 0.8,
            },
            suspend_after_minimal_ms: 600_000,
        }
    }
}

/// The wire API a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    /// OpenAI chat completions; also xAI, Ollama, vLLM and other compatible servers.
    Openai,
    /// Anthropic Messages.
    Anthropic,
    /// Google Gemini generateContent.
    Gemini,
}

/// Where a provider runs; local-only ⇒ conservative mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    Remote,
    Local,
}

/// Prices in USD per million tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Cost {
    #[serde(default)]
    pub input_per_mtok: f64,
    #[serde(default)]
    pub output_per_mtok: f64,
}

impl Cost {
    /// USD for this many tokens.
    pub fn of(&self, input_tokens: u64, output_tokens: u64) -> f64 {
        (input_tokens as f64 * self.input_per_mtok + output_tokens as f64 * self.output_per_mtok)
            / 1_000_000.0
    }
}

/// `[[providers]]`: one LLM provider.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Name used in subjects, KV keys, events: `[a-z0-9_-]+`.
    pub id: crate::contract::ProviderId,
    pub api: Api,
    /// As the vendor SDK takes it: OpenAI-compatible with the version path (`…/v1`),
    /// Anthropic and Gemini the bare host.
    pub base_url: String,
    /// Environment variable holding the API key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// File holding the API key (e.g. a mounted secret).
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// Tried in order within the provider.
    pub models: Vec<String>,
    /// Models with a larger context window, tried after a `context_length` error.
    #[serde(default)]
    pub large_context_models: Vec<String>,
    #[serde(default = "default_priority")]
    pub priority: u32,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    #[serde(default)]
    pub cost: Cost,
    #[serde(default)]
    pub daily_budget_usd: Option<f64>,
    #[serde(default = "default_tier")]
    pub tier: Tier,
    /// Share of traffic under the `weighted` strategy.
    #[serde(default = "default_weight")]
    pub weight: f64,
    #[serde(default)]
    pub breaker: Option<BreakerOverride>,
    /// The key, read from `api_key_env`/`api_key_file` at load; never serialized.
    #[serde(skip)]
    pub api_key: Option<SecretString>,
}

fn default_priority() -> u32 {
    10
}
fn default_timeout_ms() -> u64 {
    20_000
}
fn default_connect_timeout_ms() -> u64 {
    2_000
}
fn default_tier() -> Tier {
    Tier::Remote
}
fn default_weight() -> f64 {
    1.0
}

impl Config {
    /// The effective breaker settings of `provider`.
    pub fn breaker_for(&self, provider: &ProviderConfig) -> BreakerConfig {
        match &provider.breaker {
            Some(o) => self.breaker.with(o),
            None => self.breaker.clone(),
        }
    }

    /// The provider with this id.
    pub fn provider(&self, id: &str) -> Option<&ProviderConfig> {
        self.providers.iter().find(|p| p.id == id)
    }
}
