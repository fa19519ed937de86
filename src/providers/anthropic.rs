//! Anthropic Messages (`POST /v1/messages`).
//!
//! Anthropic has no JSON output mode, so the answer's shape rests on the system prompt and
//! the tolerant parser. A refusal is a normal 200 with `stop_reason: "refusal"`.

use reqwest::{Client, RequestBuilder};

use super::key_slot::KeySlot;
use serde_json::{Value, json};

use super::adapter::Wire;
use super::http::secret_header;
use super::reply::{Reply, Stop, malformed, tokens};
use super::{ProviderCall, ProviderError};
use crate::config::Api;
use crate::contract::Usage;

/// The API version every request pins, so a server-side default change cannot alter shapes.
pub const VERSION: &str = "2023-06-01";

/// The Anthropic Messages wire API.
#[derive(Debug)]
pub(crate) struct Anthropic {
    /// The bare host, e.g. `https://api.anthropic.com`; no trailing slash.
    base_url: String,
    key: KeySlot,
}

impl Anthropic {
    pub(crate) fn new(base_url: &str, key: KeySlot) -> Self {
        Anthropic {
            base_url: base_url.trim_end_matches('/').to_string(),
            key,
        }
    }

    /// `request` with the key of `tenant`'s calls (its own, else the fleet's).
    fn headed(
        &self,
        request: RequestBuilder,
        tenant: Option<&str>,
    ) -> Result<RequestBuilder, ProviderError> {
        let request = request.header("anthropic-version", VERSION);
        Ok(match self.key.get_for(tenant)? {
            Some(key) => request.header("x-api-key", secret_header("", &key)?),
            None => request,
        })
    }
}

impl Wire for Anthropic {
    const API: Api = Api::Anthropic;

    fn completion(
        &self,
        client: &Client,
        call: &ProviderCall,
    ) -> Result<RequestBuilder, ProviderError> {
        let body = json!({
            "model": call.model,
            "max_tokens": call.max_output_tokens,
            "system": call.system,
            "messages": [{"role": "user", "content": call.user}],
        });
        // Anthropic has no client request-id header; x-request-id at least shows up in
        // proxies and our own traces.
        let request = client
            .post(format!("{}/v1/messages", self.base_url))
            .header("x-request-id", &call.request_id)
            .json(&body);
        self.headed(request, call.tenant.as_deref())
    }

    fn probe(&self, client: &Client, _model: &str) -> Result<RequestBuilder, ProviderError> {
        self.headed(
            client.get(format!("{}/v1/models?limit=1", self.base_url)),
            None,
        )
    }

    fn reply(&self, body: &Value, model: &str) -> Result<Reply, ProviderError> {
        let content = body
            .get("content")
            .and_then(Value::as_array)
            .ok_or_else(|| malformed("no content array"))?;
        let text: String = content
            .iter()
            .filter(|block| block.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|block| block.get("text").and_then(Value::as_str))
            .collect();
        let stop = match body.get("stop_reason").and_then(Value::as_str) {
            Some("refusal") => Stop::Filtered("stop_reason refusal".into()),
            Some("max_tokens" | "model_context_window_exceeded") => Stop::Truncated,
            _ => Stop::Complete,
        };
        Ok(Reply {
            model: body
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or(model)
                .to_string(),
            text,
            usage: Usage {
                input_tokens: tokens(body, "/usage/input_tokens"),
                output_tokens: tokens(body, "/usage/output_tokens"),
            },
            stop,
        })
    }

    fn keys(&self) -> &KeySlot {
        &self.key
    }
}
