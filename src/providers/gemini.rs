//! Google Gemini `generateContent` (`POST /v1beta/models/{model}:generateContent`).
//!
//! The key goes in the `x-goog-api-key` header, never in the `?key=` query parameter the
//! quick-start examples use: URLs end up in logs, traces and reqwest's error messages.
//! Blocks come in two forms: the prompt itself (`promptFeedback.blockReason`, no
//! candidates) or the answer (`finishReason`).

use reqwest::{Client, RequestBuilder, Url};

use super::key_slot::KeySlot;
use serde_json::{Value, json};

use super::adapter::Wire;
use super::http::secret_header;
use super::reply::{Reply, Stop, malformed, tokens};
use super::{ProviderCall, ProviderError};
use crate::config::Api;
use crate::contract::{ErrorClass, Usage};

/// `finishReason` values that mean the answer was withheld on policy grounds.
const FILTERED: [&str; 6] = [
    "SAFETY",
    "PROHIBITED_CONTENT",
    "BLOCKLIST",
    "SPII",
    "RECITATION",
    "IMAGE_SAFETY",
];

/// The Gemini wire API.
#[derive(Debug)]
pub(crate) struct Gemini {
    /// The bare host, e.g. `https://generativelanguage.googleapis.com`.
    base_url: String,
    key: KeySlot,
}

impl Gemini {
    pub(crate) fn new(base_url: &str, key: KeySlot) -> Self {
        Gemini {
            base_url: base_url.trim_end_matches('/').to_string(),
            key,
        }
    }

    /// `{base}/v1beta/models/{model}{suffix}`, with the model name percent-encoded as one
    /// path segment so that a stray `/` or `?` in configuration cannot change the URL.
    fn model_url(&self, model: &str, suffix: &str) -> Result<Url, ProviderError> {
        let model = model.strip_prefix("models/").unwrap_or(model);
        let mut url = Url::parse(&self.base_url)
            .map_err(|_| ProviderError::new(ErrorClass::Network, "base_url is not a valid URL"))?;
        url.path_segments_mut()
            .map_err(|_| ProviderError::new(ErrorClass::Network, "base_url cannot have a path"))?
            .pop_if_empty()
            .extend(["v1beta", "models", &format!("{model}{suffix}")]);
        Ok(url)
    }

    /// `request` with the key of `tenant`'s calls (its own, else the fleet's).
    fn headed(
        &self,
        request: RequestBuilder,
        tenant: Option<&str>,
    ) -> Result<RequestBuilder, ProviderError> {
        Ok(match self.key.get_for(tenant)? {
            Some(key) => request.header("x-goog-api-key", secret_header("", &key)?),
            None => request,
        })
    }
}

impl Wire for Gemini {
    const API: Api = Api::Gemini;

    fn completion(
        &self,
        client: &Client,
        call: &ProviderCall,
    ) -> Result<RequestBuilder, ProviderError> {
        let body = json!({
            "systemInstruction": {"parts": [{"text": call.system}]},
            "contents": [{"role": "user", "parts": [{"text": call.user}]}],
            "generationConfig": {
                "responseMimeType": "application/json",
                "maxOutputTokens": call.max_output_tokens,
            },
        });
        let request = client
            .post(self.model_url(&call.model, ":generateContent")?)
            .header("x-request-id", &call.request_id)
            .json(&body);
        self.headed(request, call.tenant.as_deref())
    }

    fn probe(&self, client: &Client, model: &str) -> Result<RequestBuilder, ProviderError> {
        self.headed(client.get(self.model_url(model, "")?), None)
    }

    fn reply(&self, body: &Value, model: &str) -> Result<Reply, ProviderError> {
        let candidate = body.pointer("/candidates/0");
        let block = body
            .pointer("/promptFeedback/blockReason")
            .and_then(Value::as_str);
        let finish = candidate
            .and_then(|c| c.get("finishReason"))
            .and_then(Value::as_str);
        let stop = match (block, finish) {
            (Some(reason), _) => Stop::Filtered(format!("blockReason {reason}")),
            (None, Some(reason)) if FILTERED.contains(&reason) => {
                Stop::Filtered(format!("finishReason {reason}"))
            }
            (None, Some("MAX_TOKENS")) => Stop::Truncated,
            _ => Stop::Complete,
        };
        if candidate.is_none() && stop == Stop::Complete {
            return Err(malformed("no candidates"));
        }
        // Thinking models return their thoughts as parts marked `thought: true`; they are
        // not the answer.
        let text: String = candidate
            .and_then(|c| c.pointer("/content/parts"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|part| part.get("thought").and_then(Value::as_bool) != Some(true))
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .collect();
        Ok(Reply {
            model: body
                .get("modelVersion")
                .and_then(Value::as_str)
                .unwrap_or(model)
                .to_string(),
            text,
            usage: Usage {
                input_tokens: tokens(body, "/usageMetadata/promptTokenCount"),
                // Thinking tokens are billed at the output price.
                output_tokens: tokens(body, "/usageMetadata/candidatesTokenCount")
                    + tokens(body, "/usageMetadata/thoughtsTokenCount"),
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

    #[test]
    fn model_urls_are_one_encoded_segment() {
        let g = Gemini::new(
            "https://generativelanguage.googleapis.com/",
            KeySlot::new(None),
        );
        assert_eq!(
            g.model_url("models/gemini-2.5-flash", ":generateContent")
                .unwrap()
                .as_str(),
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
        );
        let odd = g.model_url("a/b?key=x", "").unwrap();
        assert_eq!(odd.query(), None);
        assert!(
            odd.path().ends_with("/models/a%2Fb%3Fkey=x"),
            "{}",
            odd.path()
        );
    }
}
