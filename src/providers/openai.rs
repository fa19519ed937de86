//! OpenAI chat completions, which xAI, Ollama (`/v1`), vLLM and most gateways also speak.
//!
//! One quirk splits the family: OpenAI's own newer models reject `max_tokens` (it is
//! deprecated in favour of `max_completion_tokens`) and, for reasoning models, any
//! `temperature`, while Ollama and older compatible servers only know `max_tokens`.
//! Sending both fails on OpenAI, so the host decides.

use reqwest::header::AUTHORIZATION;
use reqwest::{Client, RequestBuilder};

use super::key_slot::KeySlot;
use serde_json::{Value, json};

use super::adapter::Wire;
use super::http::secret_header;
use super::message;
use super::reply::{Reply, Stop, malformed, tokens};
use super::{ProviderCall, ProviderError};
use crate::config::Api;
use crate::contract::Usage;

/// The OpenAI-compatible wire API.
#[derive(Debug)]
pub(crate) struct OpenAi {
    /// With the version path, e.g. `https://api.openai.com/v1`; no trailing slash.
    base_url: String,
    /// Local servers have none: then no `Authorization` header is sent at all.
    key: KeySlot,
    /// Talking to api.openai.com itself rather than a compatible server.
    official: bool,
}

impl OpenAi {
    pub(crate) fn new(base_url: &str, key: KeySlot) -> Self {
        let base_url = base_url.trim_end_matches('/').to_string();
        let official = url::Url::parse(&base_url)
            .ok()
            .is_some_and(|u| u.host_str() == Some("api.openai.com"));
        OpenAi {
            base_url,
            key,
            official,
        }
    }

    /// `request` with the key of `tenant`'s calls (its own, else the fleet's).
    fn authorized(
        &self,
        request: RequestBuilder,
        tenant: Option<&str>,
    ) -> Result<RequestBuilder, ProviderError> {
        Ok(match self.key.get_for(tenant)? {
            Some(key) => request.header(AUTHORIZATION, secret_header("Bearer ", &key)?),
            None => request,
        })
    }

    fn body(&self, call: &ProviderCall) -> Value {
        let mut body = json!({
            "model": call.model,
            "messages": [
                {"role": "system", "content": call.system},
                {"role": "user", "content": call.user},
            ],
            "response_format": {"type": "json_object"},
        });
        let limit = if self.official {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        body[limit] = json!(call.max_output_tokens);
        if !(self.official && is_reasoning_model(&call.model)) {
            // Same market data, same advice: sampling noise is not a trading opinion.
            body["temperature"] = json!(0);
        }
        body
    }
}

/// OpenAI's reasoning families (o1, o3, o4-mini, gpt-5…) accept only the default
/// temperature and answer 400 to any other.
fn is_reasoning_model(model: &str) -> bool {
    let mut chars = model.chars();
    (chars.next() == Some('o') && chars.next().is_some_and(|c| c.is_ascii_digit()))
        || model.starts_with("gpt-5")
}

impl Wire for OpenAi {
    const API: Api = Api::Openai;

    fn completion(
        &self,
        client: &Client,
        call: &ProviderCall,
    ) -> Result<RequestBuilder, ProviderError> {
        let request = client
            .post(format!("{}/chat/completions", self.base_url))
            .header("X-Client-Request-Id", &call.request_id)
            .json(&self.body(call));
        self.authorized(request, call.tenant.as_deref())
    }

    fn probe(&self, client: &Client, _model: &str) -> Result<RequestBuilder, ProviderError> {
        self.authorized(client.get(format!("{}/models", self.base_url)), None)
    }

    fn reply(&self, body: &Value, model: &str) -> Result<Reply, ProviderError> {
        let choice = body
            .pointer("/choices/0")
            .ok_or_else(|| malformed("no choices"))?;
        let message = choice.get("message");
        let text = |field| message.and_then(|m| m.get(field)).and_then(Value::as_str);
        let finish = choice.get("finish_reason").and_then(Value::as_str);
        let stop = match (text("refusal").filter(|r| !r.is_empty()), finish) {
            (Some(refusal), _) => Stop::Filtered(format!("refusal: {}", message::short(refusal))),
            (None, Some("content_filter")) => Stop::Filtered("finish_reason content_filter".into()),
            (None, Some("length")) => Stop::Truncated,
            _ => Stop::Complete,
        };
        Ok(Reply {
            model: body
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or(model)
                .to_string(),
            text: text("content").unwrap_or_default().to_string(),
            usage: Usage {
                input_tokens: tokens(body, "/usage/prompt_tokens"),
                output_tokens: tokens(body, "/usage/completion_tokens"),
            },
            stop,
        })
    }

    fn keys(&self) -> &KeySlot {
        &self.key
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Kind;
    use std::time::Duration;

    fn call(model: &str) -> ProviderCall {
        ProviderCall {
            request_id: "r1".into(),
            model: model.into(),
            kind: Kind::Signal,
            system: "s".into(),
            user: "u".into(),
            max_output_tokens: 256,
            timeout: Duration::from_secs(1),
            tenant: None,
        }
    }

    #[test]
    fn the_token_limit_field_follows_the_host() {
        let openai = OpenAi::new("https://api.openai.com/v1/", KeySlot::new(None));
        let body = openai.body(&call("gpt-4.1-mini"));
        assert_eq!(body["max_completion_tokens"], 256);
        assert!(body.get("max_tokens").is_none());
        assert_eq!(body["temperature"], 0);
        let reasoning = openai.body(&call("o4-mini"));
        assert!(reasoning.get("temperature").is_none());
        let ollama = OpenAi::new("http://localhost:11434/v1", KeySlot::new(None));
        let body = ollama.body(&call("llama3.1"));
        assert_eq!(body["max_tokens"], 256);
        assert!(body.get("max_completion_tokens").is_none());
        assert_eq!(body["temperature"], 0);
    }

    #[test]
    fn reasoning_models_are_recognised() {
        for m in ["o1", "o3-mini", "o4-mini", "gpt-5", "gpt-5-mini"] {
            assert!(is_reasoning_model(m), "{m}");
        }
        for m in ["gpt-4o", "gpt-4.1", "omni-moderation-latest", "llama3"] {
            assert!(!is_reasoning_model(m), "{m}");
        }
    }
}
