//! Anthropic Messages (`POST /v1/messages`). Errors are
//! `{"type":"error","error":{"type","message"},"request_id"}`; overload is 529.

use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::{ErrorCtx, ErrorReply, Generation, Parsed, content_text, random_id};
use crate::simulator::FaultClass;

fn err(status: u16, kind: &str, message: &str) -> ErrorReply {
    ErrorReply::new(
        status,
        json!({
            "type": "error",
            "error": {"type": kind, "message": message},
            "request_id": format!("req_{}", random_id(24)),
        }),
    )
}

pub(super) fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Parsed, ErrorReply> {
    // The real API refuses calls without a version header; adapters must send it.
    if !headers.contains_key("anthropic-version") {
        return Err(err(
            400,
            "invalid_request_error",
            "anthropic-version: header is required",
        ));
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| err(400, "invalid_request_error", &format!("Invalid JSON: {e}")))?;
    let field = |name: &str| v.get(name).filter(|x| !x.is_null());
    let model = field("model")
        .and_then(Value::as_str)
        .ok_or_else(|| err(400, "invalid_request_error", "model: Field required"))?;
    if field("max_tokens").and_then(Value::as_u64).is_none() {
        return Err(err(
            400,
            "invalid_request_error",
            "max_tokens: Field required",
        ));
    }
    let messages = field("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| err(400, "invalid_request_error", "messages: Field required"))?;
    let mut parts: Vec<String> = field("system").map(content_text).into_iter().collect();
    parts.extend(
        messages
            .iter()
            .filter_map(|m| m.get("content"))
            .map(content_text),
    );
    Ok(Parsed {
        model: model.to_owned(),
        prompt: parts.join("\n"),
    })
}

pub(super) fn auth_error(presented: Option<&str>) -> ErrorReply {
    match presented {
        None => err(401, "authentication_error", "x-api-key header is required"),
        Some(_) => err(401, "authentication_error", "invalid x-api-key"),
    }
}

pub(super) fn error(class: FaultClass, ctx: &ErrorCtx<'_>) -> ErrorReply {
    match class {
        FaultClass::RateLimited => {
            let mut e = err(
                429,
                "rate_limit_error",
                "This request would exceed the rate limit for your organization of 50 \
                 requests per minute. For details, refer to: \
                 https://docs.claude.com/en/api/rate-limits.",
            );
            let reset = (chrono::Utc::now() + chrono::Duration::seconds(ctx.retry_after_s as i64))
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            e.headers = vec![
                ("retry-after", ctx.retry_after_s.to_string()),
                ("anthropic-ratelimit-requests-limit", "50".into()),
                ("anthropic-ratelimit-requests-remaining", "0".into()),
                ("anthropic-ratelimit-requests-reset", reset.clone()),
                ("anthropic-ratelimit-input-tokens-limit", "30000".into()),
                ("anthropic-ratelimit-input-tokens-remaining", "30000".into()),
                ("anthropic-ratelimit-input-tokens-reset", reset),
            ];
            e
        }
        FaultClass::Overloaded => err(529, "overloaded_error", "Overloaded"),
        FaultClass::ServerError => err(500, "api_error", "Internal server error"),
        FaultClass::Timeout => err(504, "timeout_error", "Request timed out"),
        FaultClass::Auth => auth_error(Some("revoked")),
        FaultClass::ContextLength => err(
            400,
            "invalid_request_error",
            &format!(
                "prompt is too long: {} tokens > 200000 maximum",
                200_000 + ctx.input_tokens
            ),
        ),
        FaultClass::BadRequest | FaultClass::ContentFiltered | FaultClass::InvalidResponse => err(
            400,
            "invalid_request_error",
            "messages.0.content: Input should be a valid list",
        ),
    }
}

fn envelope(g: &Generation, content: Value, stop_reason: &str) -> Value {
    json!({
        "id": format!("msg_01{}", random_id(22)),
        "type": "message",
        "role": "assistant",
        "model": g.model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": null,
        "usage": {
            "input_tokens": g.input_tokens,
            "output_tokens": g.output_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    })
}

pub(super) fn success(g: &Generation) -> Value {
    envelope(g, json!([{"type": "text", "text": g.text}]), "end_turn")
}

/// Claude's safety refusals arrive as a 200 with `stop_reason: "refusal"`.
pub(super) fn filtered(g: &Generation) -> Value {
    envelope(g, json!([]), "refusal")
}

pub(super) fn common_headers() -> Vec<(&'static str, String)> {
    vec![("request-id", format!("req_{}", random_id(24)))]
}

pub(super) fn models(models: &[String]) -> Value {
    let data: Vec<Value> = models
        .iter()
        .map(|m| {
            json!({"type": "model", "id": m, "display_name": m,
                   "created_at": "2025-05-14T00:00:00Z"})
        })
        .collect();
    json!({
        "data": data,
        "has_more": false,
        "first_id": models.first(),
        "last_id": models.last(),
    })
}
