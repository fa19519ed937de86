//! Provider adapters: one per wire API, each speaking the vendor's real request and response
//! shapes over reqwest, all behind the one [`Provider`] trait the engine calls.
//!
//! An adapter turns a [`ProviderCall`] into an HTTP request, and the HTTP answer into either a
//! [`Completion`] (a parsed, range-checked signal or analysis plus token usage) or a
//! [`ProviderError`] whose [`ErrorClass`] drives the engine's retry/failover policy.

pub mod classify;
pub mod fake;
pub mod http;
pub mod message;
pub mod parse;
pub mod prompt;
pub mod retry_after;

pub use key_slot::{KeySlot, KeyState};

mod adapter;
mod anthropic;
mod gemini;
pub mod key_slot;
mod openai;
mod reply;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::ExposeSecret;

use crate::config::{Api, EngineConfig, ProviderConfig};
use crate::contract::{ErrorClass, Kind, Signal, Usage};

use adapter::HttpAdapter;

/// One call to one model of one provider, as the engine asks for it.
#[derive(Debug, Clone)]
pub struct ProviderCall {
    /// Sent as `X-Client-Request-Id` (OpenAI) or `x-request-id` so calls can be traced.
    pub request_id: String,
    pub model: String,
    pub kind: Kind,
    /// Instructions: answer with JSON of the expected shape.
    pub system: String,
    /// The request itself: symbol, context, extra prompt.
    pub user: String,
    pub max_output_tokens: u32,
    /// Total time allowed for this call (already bounded by the request's deadline).
    pub timeout: Duration,
    /// The request's tenant (`None`: the default tenant): its own key is used if it has one.
    pub tenant: Option<String>,
}

/// A parsed answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// For `kind = signal`.
    Signal(Signal),
    /// For the other kinds: a JSON object.
    Analysis(serde_json::Map<String, serde_json::Value>),
}

/// A successful call.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The model that answered, as the vendor reports it.
    pub model: String,
    pub answer: Answer,
    pub usage: Usage,
    pub http_status: u16,
}

/// A failed call, classified. `message` never contains the API key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{class}: {message}")]
pub struct ProviderError {
    pub class: ErrorClass,
    pub message: String,
    pub http_status: Option<u16>,
    /// From `Retry-After` (seconds or HTTP-date) or a vendor rate-limit reset header.
    pub retry_after: Option<Duration>,
    /// Tokens billed even though the answer was unusable (e.g. an invalid signal).
    pub usage: Option<Usage>,
}

impl ProviderError {
    /// An error of `class` with no HTTP details.
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        ProviderError {
            class,
            message: message.into(),
            http_status: None,
            retry_after: None,
            usage: None,
        }
    }

    /// The same error with an HTTP status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.http_status = Some(status);
        self
    }
}

/// A language-model provider the engine can call.
#[async_trait]
pub trait Provider: Send + Sync {
    /// The configured id (`openai`, `anthropic`, `local`, …).
    fn id(&self) -> &str;

    /// Asks `call.model` for an analysis and parses the answer.
    async fn complete(&self, call: &ProviderCall) -> Result<Completion, ProviderError>;

    /// Whether `tenant`'s calls go out with a key of its own (billed to it, not the fleet).
    fn has_tenant_key(&self, _tenant: &str) -> bool {
        false
    }

    /// A cheap liveness check: a models listing or at most one output token, never a full
    /// analysis.
    async fn probe(&self, model: &str, timeout: Duration) -> Result<(), ProviderError>;
}

/// The adapter for `cfg.api` with the configured key, or why its HTTP client could not be
/// built.
pub fn try_build(
    cfg: &ProviderConfig,
    engine: &EngineConfig,
) -> Result<Arc<dyn Provider>, http::ClientError> {
    try_build_with(cfg, engine, configured_key(cfg))
}

/// The key from `api_key_env` / `api_key_file` in a slot of its own. A remote provider
/// without one (its key lives in the encrypted store) holds none usable: calls fail with
/// `key_unavailable` rather than go out without credentials.
pub fn configured_key(cfg: &ProviderConfig) -> KeySlot {
    // An empty key (an exported but empty variable) means "no key", as for a local server.
    let key = cfg
        .api_key
        .clone()
        .filter(|k| !k.expose_secret().is_empty());
    let slot = KeySlot::new(key.clone());
    if key.is_none() && cfg.tier == crate::config::Tier::Remote {
        slot.set(KeyState::Unusable(format!(
            "no key for {}: set one with `ai-failover keys set --provider {}`",
            cfg.id, cfg.id
        )));
    }
    slot
}

/// The adapter for `cfg.api` calling with whatever `key` holds at each call.
pub fn try_build_with(
    cfg: &ProviderConfig,
    engine: &EngineConfig,
    key: KeySlot,
) -> Result<Arc<dyn Provider>, http::ClientError> {
    let client = http::client(cfg)?;
    let id = cfg.id.to_string();
    let max = engine.max_response_bytes;
    Ok(match cfg.api {
        Api::Openai => Arc::new(HttpAdapter::new(
            id,
            client,
            max,
            openai::OpenAi::new(&cfg.base_url, key),
        )),
        Api::Anthropic => Arc::new(HttpAdapter::new(
            id,
            client,
            max,
            anthropic::Anthropic::new(&cfg.base_url, key),
        )),
        Api::Gemini => Arc::new(HttpAdapter::new(
            id,
            client,
            max,
            gemini::Gemini::new(&cfg.base_url, key),
        )),
    })
}
