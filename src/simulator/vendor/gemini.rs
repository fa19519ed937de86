//! Gemini `POST /v1beta/models/{model}:generateContent`. Errors are Google RPC statuses:
//! `{"error":{"code","message","status","details"}}`. Note: a wrong key is a 400
//! `INVALID_ARGUMENT` with reason `API_KEY_INVALID`, and a missing one a 403, as Google does;
//! a 429 carries its delay in a `RetryInfo` detail, not a `Retry-After` header.

use serde_json::{Value, json};

use super::{ErrorCtx, ErrorReply, Generation, Parsed, content_text};
use crate::simulator::FaultClass;

fn err(code: u16, status: &str, message: &str, details: Value) -> ErrorReply {
    let mut error = json!({"code": code, "message": message, "status": status});
    if details.as_array().is_some_and(|d| !d.is_empty()) {
        error["details"] = details;
    }
    ErrorReply::new(code, json!({ "error": error }))
}

pub(super) fn parse(body: &[u8], model: &str) -> Result<Parsed, ErrorReply> {
    let v: Value = serde_json::from_slice(body).map_err(|_| {
        err(
            400,
            "INVALID_ARGUMENT",
            "Invalid JSON payload received. Unexpected token.",
            json!([]),
        )
    })?;
    let contents = v.get("contents").and_then(Value::as_array).ok_or_else(|| {
        err(
            400,
            "INVALID_ARGUMENT",
            "* GenerateContentRequest.contents: contents is not specified\n",
            json!([]),
        )
    })?;
    // The REST API accepts both camelCase and snake_case field names.
    let system = v
        .get("systemInstruction")
        .or_else(|| v.get("system_instruction"));
    let mut parts: Vec<String> = system
        .and_then(|s| s.get("parts"))
        .map(content_text)
        .into_iter()
        .collect();
    parts.extend(
        contents
            .iter()
            .filter_map(|c| c.get("parts"))
            .map(content_text),
    );
    Ok(Parsed {
        model: model.to_owned(),
        prompt: parts.join("\n"),
    })
}

fn key_invalid(message: &str) -> ErrorReply {
    err(
        400,
        "INVALID_ARGUMENT",
        message,
        json!([
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
             "domain": "googleapis.com",
             "metadata": {"service": "generativelanguage.googleapis.com"}},
            {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US",
             "message": message},
        ]),
    )
}

pub(super) fn auth_error(presented: Option<&str>) -> ErrorReply {
    match presented {
        None => err(
            403,
            "PERMISSION_DENIED",
            "Method doesn't allow unregistered callers (callers without established identity). \
             Please use API Key or other form of API consumer identity to call this API.",
            json!([]),
        ),
        Some(_) => key_invalid("API key not valid. Please pass a valid API key."),
    }
}

pub(super) fn error(class: FaultClass, ctx: &ErrorCtx<'_>) -> ErrorReply {
    match class {
        FaultClass::RateLimited => err(
            429,
            "RESOURCE_EXHAUSTED",
            &format!(
                "You exceeded your current quota, please check your plan and billing details. \
                 Please retry in {}s.",
                ctx.retry_after_s
            ),
            json!([
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                 "violations": [{"quotaMetric":
                    "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                    "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                    "quotaDimensions": {"model": ctx.model, "location": "global"},
                    "quotaValue": "10"}]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo",
                 "retryDelay": format!("{}s", ctx.retry_after_s)},
            ]),
        ),
        FaultClass::Overloaded => err(
            503,
            "UNAVAILABLE",
            "The model is overloaded. Please try again later.",
            json!([]),
        ),
        FaultClass::ServerError => err(
            500,
            "INTERNAL",
            "An internal error has occurred. Please retry or report in \
             https://developers.generativeai.google/guide/troubleshooting",
            json!([]),
        ),
        FaultClass::Timeout => err(
            504,
            "DEADLINE_EXCEEDED",
            "Deadline expired before operation could complete.",
            json!([]),
        ),
        FaultClass::Auth => err(
            403,
            "PERMISSION_DENIED",
            "Your API key was reported as leaked. Please use another API key.",
            json!([]),
        ),
        FaultClass::ContextLength => err(
            400,
            "INVALID_ARGUMENT",
            &format!(
                "The input token count ({}) exceeds the maximum number of tokens allowed \
                 (1048576).",
                1_048_576 + ctx.input_tokens
            ),
            json!([]),
        ),
        FaultClass::BadRequest | FaultClass::ContentFiltered | FaultClass::InvalidResponse => err(
            400,
            "INVALID_ARGUMENT",
            "Invalid value at 'generation_config.temperature' (TYPE_FLOAT), \"hot\"",
            json!([]),
        ),
    }
}

fn usage(g: &Generation) -> Value {
    json!({
        "promptTokenCount": g.input_tokens,
        "candidatesTokenCount": g.output_tokens,
        "totalTokenCount": g.input_tokens + g.output_tokens,
    })
}

pub(super) fn success(g: &Generation) -> Value {
    json!({
        "candidates": [{
            "content": {"parts": [{"text": g.text}], "role": "model"},
            "finishReason": "STOP",
            "index": 0,
        }],
        "usageMetadata": usage(g),
        "modelVersion": g.model,
        "responseId": super::random_id(22),
    })
}

/// A blocked prompt: a 200 with `promptFeedback.blockReason` and no candidates.
pub(super) fn filtered(g: &Generation) -> Value {
    json!({
        "promptFeedback": {
            "blockReason": "SAFETY",
            "safetyRatings": [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT",
                               "probability": "HIGH"}],
        },
        "usageMetadata": {"promptTokenCount": g.input_tokens,
                          "totalTokenCount": g.input_tokens},
        "modelVersion": g.model,
    })
}

pub(super) fn model(name: &str) -> Value {
    json!({
        "name": format!("models/{name}"),
        "version": "001",
        "displayName": name,
        "description": "Simulated Gemini model.",
        "inputTokenLimit": 1_048_576,
        "outputTokenLimit": 65_536,
        "supportedGenerationMethods": ["generateContent", "countTokens"],
        "temperature": 1.0,
        "topP": 0.95,
        "topK": 64,
    })
}
