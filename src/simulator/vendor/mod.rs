//! The three vendor wire formats: how each one's requests are read and how its answers and
//! errors look, byte for byte where it matters to a client (status, body shape, headers).
//! Each submodule offers the same functions; this module picks one by [`Api`].

mod anthropic;
mod gemini;
mod openai;

use axum::http::HeaderMap;
use serde_json::Value;

use super::{Api, FaultClass};

/// A request as the simulator needs it, whatever the vendor.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Parsed {
    pub model: String,
    /// System and user text joined, which is what the answer is derived from.
    pub prompt: String,
}

/// An error answer: status, extra headers, JSON body.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ErrorReply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Value,
}

impl ErrorReply {
    pub(crate) fn new(status: u16, body: Value) -> Self {
        ErrorReply {
            status,
            headers: Vec::new(),
            body,
        }
    }
}

/// A successful generation, before the vendor envelope.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Generation {
    pub model: String,
    /// The model's text (a JSON document, or something broken on purpose).
    pub text: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// Context for building an injected error.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ErrorCtx<'a> {
    pub model: &'a str,
    pub retry_after_s: u64,
    pub input_tokens: u64,
}

/// Reads a generation request. `path_model` is the model named in the URL (Gemini).
pub(crate) fn parse(
    api: Api,
    headers: &HeaderMap,
    body: &[u8],
    path_model: Option<&str>,
) -> Result<Parsed, ErrorReply> {
    match api {
        Api::Openai => openai::parse(body),
        Api::Anthropic => anthropic::parse(headers, body),
        Api::Gemini => gemini::parse(body, path_model.unwrap_or_default()),
    }
}

/// The key the client presented in this vendor's way, if any.
pub(crate) fn presented_key(api: Api, headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    match api {
        Api::Openai => header("authorization")
            .and_then(|v| v.strip_prefix("Bearer ").map(|k| k.trim().to_owned())),
        Api::Anthropic => header("x-api-key"),
        // Gemini takes the key as a header or a `key=` query parameter.
        Api::Gemini => header("x-goog-api-key").or_else(|| {
            query?
                .split('&')
                .find_map(|kv| kv.strip_prefix("key=").map(str::to_owned))
        }),
    }
}

/// The vendor's answer to a missing (`None`) or wrong key.
pub(crate) fn auth_error(api: Api, presented: Option<&str>) -> ErrorReply {
    match api {
        Api::Openai => openai::auth_error(presented),
        Api::Anthropic => anthropic::auth_error(presented),
        Api::Gemini => gemini::auth_error(presented),
    }
}

/// An injected error of `class` (not `InvalidResponse` or `ContentFiltered`, which are 200s).
pub(crate) fn error(api: Api, class: FaultClass, ctx: &ErrorCtx<'_>) -> ErrorReply {
    match api {
        Api::Openai => openai::error(class, ctx),
        Api::Anthropic => anthropic::error(class, ctx),
        Api::Gemini => gemini::error(class, ctx),
    }
}

/// What every call gets during an outage: the vendor's "down" answer.
pub(crate) fn outage(api: Api) -> ErrorReply {
    match api {
        Api::Openai => openai::error(FaultClass::Overloaded, &ErrorCtx::none()),
        Api::Anthropic => anthropic::error(FaultClass::Overloaded, &ErrorCtx::none()),
        Api::Gemini => gemini::error(FaultClass::Overloaded, &ErrorCtx::none()),
    }
}

impl ErrorCtx<'static> {
    fn none() -> Self {
        Self::probe(1)
    }

    /// Context of a probe, which names no model and carries no prompt.
    pub(crate) fn probe(retry_after_s: u64) -> Self {
        ErrorCtx {
            model: "",
            retry_after_s,
            input_tokens: 0,
        }
    }
}

/// The success envelope around `g.text`.
pub(crate) fn success(api: Api, g: &Generation) -> Value {
    match api {
        Api::Openai => openai::success(g),
        Api::Anthropic => anthropic::success(g),
        Api::Gemini => gemini::success(g),
    }
}

/// A 200 in which the vendor declined to answer on safety grounds.
pub(crate) fn filtered(api: Api, g: &Generation) -> Value {
    match api {
        Api::Openai => openai::filtered(g),
        Api::Anthropic => anthropic::filtered(g),
        Api::Gemini => gemini::filtered(g),
    }
}

/// Headers each vendor puts on every answer (request ids and the like).
pub(crate) fn common_headers(api: Api) -> Vec<(&'static str, String)> {
    match api {
        Api::Openai => openai::common_headers(),
        Api::Anthropic => anthropic::common_headers(),
        Api::Gemini => Vec::new(),
    }
}

/// The probe answer: a model listing (OpenAI, Anthropic) or one model (Gemini).
pub(crate) fn models(api: Api, models: &[String]) -> Value {
    match api {
        Api::Openai => openai::models(models),
        Api::Anthropic => anthropic::models(models),
        Api::Gemini => gemini::model(models.first().map_or("gemini-2.5-flash", String::as_str)),
    }
}

/// The prompt text of a message `content`: a string or an array of text parts.
pub(crate) fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// A random id body, e.g. for `chatcmpl-…`, `msg_…`, `req_…`.
pub(crate) fn random_id(len: usize) -> String {
    uuid::Uuid::new_v4()
        .simple()
        .to_string()
        .chars()
        .chain(uuid::Uuid::new_v4().simple().to_string().chars())
        .take(len)
        .collect()
}

/// The vendor's answer to a path it does not serve.
pub(crate) fn not_found(api: Api, method: &str, path: &str) -> ErrorReply {
    let message = format!("Invalid URL ({method} {path})");
    let body = match api {
        Api::Openai => serde_json::json!({"error": {"message": message,
            "type": "invalid_request_error", "param": null, "code": null}}),
        Api::Anthropic => serde_json::json!({"type": "error",
            "error": {"type": "not_found_error", "message": message}}),
        Api::Gemini => serde_json::json!({"error": {"code": 404, "message": message,
            "status": "NOT_FOUND"}}),
    };
    ErrorReply::new(404, body)
}
