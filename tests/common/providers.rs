//! Shared helpers for the provider adapter tests: one table of what each vendor's real
//! answers look like, so every scenario runs against all three wire APIs.

use std::sync::Arc;
use std::time::Duration;

use ai_failover::config::{Api, EngineConfig, ProviderConfig};
use ai_failover::contract::Kind;
use ai_failover::providers::{self, Provider, ProviderCall};
use secrecy::SecretString;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub const MODEL: &str = "test-model";
pub const REQUEST_ID: &str = "req-0001";
pub const KEY: &str = "test-key-123";

/// A valid signal, as a model would write it.
pub const SIGNAL: &str = r#"{"action":"buy","confidence":0.8,"rationale":"higher highs","position_size":0.5,"horizon":"1w"}"#;

/// The three wire APIs under test.
pub const ALL: [Vendor; 3] = [Vendor::OpenAi, Vendor::Anthropic, Vendor::Gemini];

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Vendor {
    OpenAi,
    Anthropic,
    Gemini,
}

impl Vendor {
    pub fn api(self) -> Api {
        match self {
            Vendor::OpenAi => Api::Openai,
            Vendor::Anthropic => Api::Anthropic,
            Vendor::Gemini => Api::Gemini,
        }
    }

    /// `base_url` as the vendor's SDK takes it.
    pub fn base_url(self, server: &MockServer) -> String {
        match self {
            Vendor::OpenAi => format!("{}/v1", server.uri()),
            _ => server.uri(),
        }
    }

    /// Where completions are POSTed.
    pub fn path(self) -> String {
        match self {
            Vendor::OpenAi => "/v1/chat/completions".into(),
            Vendor::Anthropic => "/v1/messages".into(),
            Vendor::Gemini => format!("/v1beta/models/{MODEL}:generateContent"),
        }
    }

    /// The auth header and the value it must carry for `key`.
    pub fn auth(self, key: &str) -> (&'static str, String) {
        match self {
            Vendor::OpenAi => ("authorization", format!("Bearer {key}")),
            Vendor::Anthropic => ("x-api-key", key.to_string()),
            Vendor::Gemini => ("x-goog-api-key", key.to_string()),
        }
    }

    /// The header carrying our request id.
    pub fn request_id_header(self) -> &'static str {
        match self {
            Vendor::OpenAi => "x-client-request-id",
            _ => "x-request-id",
        }
    }

    /// A part of the request body that asks for JSON output (or, for Anthropic, which has
    /// no JSON mode, the system prompt in its own field).
    pub fn json_option(self) -> Value {
        match self {
            Vendor::OpenAi => json!({"response_format": {"type": "json_object"}}),
            Vendor::Anthropic => json!({"system": "answer in JSON", "max_tokens": 64}),
            Vendor::Gemini => json!({"generationConfig": {"responseMimeType": "application/json"}}),
        }
    }

    /// A success body answering `text` with this usage.
    pub fn success(self, text: &str, input: u64, output: u64) -> Value {
        match self {
            Vendor::OpenAi => json!({
                "id": "chatcmpl-abc", "object": "chat.completion", "created": 1_700_000_000,
                "model": "test-model-2025",
                "choices": [{"index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": null},
                    "logprobs": null, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": input, "completion_tokens": output,
                          "total_tokens": input + output}
            }),
            Vendor::Anthropic => json!({
                "id": "msg_01", "type": "message", "role": "assistant",
                "model": "test-model-2025",
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn", "stop_sequence": null,
                "usage": {"input_tokens": input, "output_tokens": output}
            }),
            Vendor::Gemini => json!({
                "candidates": [{"content": {"role": "model", "parts": [{"text": text}]},
                                "finishReason": "STOP", "index": 0}],
                "usageMetadata": {"promptTokenCount": input, "candidatesTokenCount": output,
                                  "totalTokenCount": input + output},
                "modelVersion": "test-model-2025"
            }),
        }
    }

    /// A success body whose answer was cut at the output-token limit.
    pub fn truncated(self, text: &str) -> Value {
        let mut body = self.success(text, 10, 64);
        match self {
            Vendor::OpenAi => body["choices"][0]["finish_reason"] = json!("length"),
            Vendor::Anthropic => body["stop_reason"] = json!("max_tokens"),
            Vendor::Gemini => body["candidates"][0]["finishReason"] = json!("MAX_TOKENS"),
        }
        body
    }

    /// Every way the vendor says "filtered" in a 200.
    pub fn filtered(self) -> Vec<Value> {
        match self {
            Vendor::OpenAi => {
                let mut by_finish = self.success("", 10, 0);
                by_finish["choices"][0]["finish_reason"] = json!("content_filter");
                let mut by_refusal = self.success("", 10, 5);
                by_refusal["choices"][0]["message"] = json!({"role": "assistant", "content": null, "refusal": "I can't help with that."});
                vec![by_finish, by_refusal]
            }
            Vendor::Anthropic => {
                let mut body = self.success("", 10, 0);
                body["content"] = json!([]);
                body["stop_reason"] = json!("refusal");
                vec![body]
            }
            Vendor::Gemini => {
                let by_prompt = json!({
                    "promptFeedback": {"blockReason": "SAFETY",
                        "safetyRatings": [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT",
                                           "probability": "HIGH"}]},
                    "usageMetadata": {"promptTokenCount": 10, "totalTokenCount": 10},
                    "modelVersion": "test-model-2025"
                });
                let mut by_finish = self.success("", 10, 0);
                by_finish["candidates"][0] =
                    json!({"finishReason": "PROHIBITED_CONTENT", "index": 0});
                vec![by_prompt, by_finish]
            }
        }
    }

    /// The vendor's error body shape with this kind/code and message.
    pub fn error(self, status: u16, kind: &str, message: &str) -> Value {
        match self {
            Vendor::OpenAi => json!({"error": {"message": message, "type": kind,
                                               "param": null, "code": kind}}),
            Vendor::Anthropic => json!({"type": "error",
                                        "error": {"type": kind, "message": message},
                                        "request_id": "req_011"}),
            Vendor::Gemini => json!({"error": {"code": status, "message": message,
                                               "status": kind}}),
        }
    }

    /// A 400 that says the prompt does not fit.
    pub fn context_length(self) -> Value {
        match self {
            Vendor::OpenAi => self.error(
                400,
                "context_length_exceeded",
                "This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens.",
            ),
            Vendor::Anthropic => self.error(
                400,
                "invalid_request_error",
                "prompt is too long: 215000 tokens > 200000 maximum",
            ),
            Vendor::Gemini => self.error(
                400,
                "INVALID_ARGUMENT",
                "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
            ),
        }
    }

    /// A 400 about something else.
    pub fn bad_request(self) -> Value {
        match self {
            Vendor::OpenAi => self.error(
                400,
                "invalid_request_error",
                "Invalid value for 'temperature'.",
            ),
            Vendor::Anthropic => {
                self.error(400, "invalid_request_error", "max_tokens: Field required")
            }
            Vendor::Gemini => self.error(400, "INVALID_ARGUMENT", "Invalid JSON payload received."),
        }
    }

    /// The auth error body for 401 and 403.
    pub fn auth_error(self, status: u16) -> Value {
        match (self, status) {
            (Vendor::OpenAi, 401) => {
                self.error(401, "invalid_request_error", "Incorrect API key provided.")
            }
            (Vendor::OpenAi, _) => self.error(
                403,
                "unsupported_country_region_territory",
                "Country, region, or territory not supported",
            ),
            (Vendor::Anthropic, 401) => {
                self.error(401, "authentication_error", "invalid x-api-key")
            }
            (Vendor::Anthropic, _) => self.error(
                403,
                "permission_error",
                "Your API key does not have permission to use the specified resource.",
            ),
            (Vendor::Gemini, 401) => self.error(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials.",
            ),
            (Vendor::Gemini, _) => self.error(
                403,
                "PERMISSION_DENIED",
                "Method doesn't allow unregistered callers.",
            ),
        }
    }

    /// A 200 whose body is an error object, and the class it must get.
    pub fn error_in_200(self) -> Value {
        match self {
            Vendor::OpenAi => {
                json!({"error": {"message": "upstream failed", "type": "server_error", "code": 502}})
            }
            Vendor::Anthropic => self.error(529, "overloaded_error", "Overloaded"),
            Vendor::Gemini => {
                json!([{"error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}}])
            }
        }
    }

    /// Where the liveness probe goes.
    pub fn probe_path(self) -> String {
        match self {
            Vendor::OpenAi => "/v1/models".into(),
            Vendor::Anthropic => "/v1/models".into(),
            Vendor::Gemini => format!("/v1beta/models/{MODEL}"),
        }
    }
}

/// A provider config for `vendor` at `base_url`.
pub fn config(vendor: Vendor, base_url: String, key: Option<&str>) -> ProviderConfig {
    // Without a key it is a local server: a remote provider without one would hold no usable
    // key (its key would be in the encrypted store).
    let tier = if key.is_some_and(|k| !k.is_empty()) {
        "remote"
    } else {
        "local"
    };
    let mut cfg: ProviderConfig = serde_json::from_value(json!({
        "id": "p1", "api": vendor.api(), "base_url": base_url, "models": [MODEL], "tier": tier,
    }))
    .unwrap();
    cfg.api_key = key.map(SecretString::from);
    cfg
}

/// An adapter for `vendor` talking to `server`.
pub fn provider(vendor: Vendor, server: &MockServer, key: Option<&str>) -> Arc<dyn Provider> {
    provider_with_cap(
        vendor,
        server,
        key,
        EngineConfig::default().max_response_bytes,
    )
}

/// The same, with a response size cap.
pub fn provider_with_cap(
    vendor: Vendor,
    server: &MockServer,
    key: Option<&str>,
    max_response_bytes: usize,
) -> Arc<dyn Provider> {
    let engine = EngineConfig {
        max_response_bytes,
        ..EngineConfig::default()
    };
    providers::try_build(&config(vendor, vendor.base_url(server), key), &engine).unwrap()
}

/// A signal call with a generous timeout.
pub fn call() -> ProviderCall {
    ProviderCall {
        request_id: REQUEST_ID.into(),
        model: MODEL.into(),
        kind: Kind::Signal,
        system: "answer in JSON".into(),
        user: "kind: signal\nsymbol: AAPL".into(),
        max_output_tokens: 64,
        timeout: Duration::from_secs(5),
        tenant: None,
    }
}

/// Serves `response` on the vendor's completion path.
pub async fn serve(vendor: Vendor, response: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(vendor.path()))
        .respond_with(response)
        .mount(&server)
        .await;
    server
}

/// A JSON response with `status` and `body`.
pub fn json_response(status: u16, body: &Value) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(body)
}
