//! OpenAI chat completions (`POST /v1/chat/completions`), also spoken by xAI, Ollama, vLLM.
//! Errors are `{"error":{"message","type","param","code"}}`.

use serde_json::{Value, json};

use super::{ErrorCtx, ErrorReply, Generation, Parsed, content_text, random_id};
use crate::simulator::FaultClass;

fn err(status: u16, message: &str, kind: &str, param: Value, code: Value) -> ErrorReply {
    ErrorReply::new(
        status,
        json!({"error": {"message": message, "type": kind, "param": param, "code": code}}),
    )
}

fn invalid(message: &str, param: Value, code: Value) -> ErrorReply {
    err(400, message, "invalid_request_error", param, code)
}

pub(super) fn parse(body: &[u8]) -> Result<Parsed, ErrorReply> {
    let v: Value = serde_json::from_slice(body).map_err(|_| {
        invalid(
            "We could not parse the JSON body of your request. (HINT: This likely means you \
             aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)",
            Value::Null,
            Value::Null,
        )
    })?;
    let model = v.get("model").and_then(Value::as_str).ok_or_else(|| {
        invalid(
            "you must provide a model parameter",
            Value::Null,
            Value::Null,
        )
    })?;
    let messages = v.get("messages").and_then(Value::as_array).ok_or_else(|| {
        invalid(
            "Missing required parameter: 'messages'.",
            json!("messages"),
            json!("missing_required_parameter"),
        )
    })?;
    let prompt = messages
        .iter()
        .filter_map(|m| m.get("content"))
        .map(content_text)
        .collect::<Vec<_>>()
        .join("\n");
    Ok(Parsed {
        model: model.to_owned(),
        prompt,
    })
}

pub(super) fn auth_error(presented: Option<&str>) -> ErrorReply {
    match presented {
        None => err(
            401,
            "You didn't provide an API key. You need to provide your API key in an \
             Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            "invalid_request_error",
            Value::Null,
            Value::Null,
        ),
        Some(key) => err(
            401,
            &format!(
                "Incorrect API key provided: {}. You can find your API key at \
                 https://platform.openai.com/account/api-keys.",
                redact(key)
            ),
            "invalid_request_error",
            Value::Null,
            json!("invalid_api_key"),
        ),
    }
}

/// OpenAI shows the first and last four characters of a wrong key.
fn redact(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 8))
}

pub(super) fn error(class: FaultClass, ctx: &ErrorCtx<'_>) -> ErrorReply {
    match class {
        FaultClass::RateLimited => {
            let mut e = err(
                429,
                &format!(
                    "Rate limit reached for {} in organization org-simulated on requests per \
                     min (RPM): Limit 500, Used 500, Requested 1. Please try again in {}s. \
                     Visit https://platform.openai.com/account/rate-limits to learn more.",
                    ctx.model, ctx.retry_after_s
                ),
                "requests",
                Value::Null,
                json!("rate_limit_exceeded"),
            );
            e.headers = vec![
                ("retry-after", ctx.retry_after_s.to_string()),
                ("x-ratelimit-limit-requests", "500".into()),
                ("x-ratelimit-remaining-requests", "0".into()),
                (
                    "x-ratelimit-reset-requests",
                    format!("{}s", ctx.retry_after_s),
                ),
                ("x-ratelimit-limit-tokens", "30000".into()),
                ("x-ratelimit-remaining-tokens", "0".into()),
                (
                    "x-ratelimit-reset-tokens",
                    format!("{}s", ctx.retry_after_s),
                ),
            ];
            e
        }
        FaultClass::Overloaded => err(
            503,
            "The server is overloaded or not ready yet.",
            "server_error",
            Value::Null,
            Value::Null,
        ),
        FaultClass::ServerError => err(
            500,
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            Value::Null,
            Value::Null,
        ),
        FaultClass::Timeout => err(
            504,
            "Request timed out.",
            "server_error",
            Value::Null,
            Value::Null,
        ),
        FaultClass::Auth => auth_error(Some("sk-revoked-simulated-key")),
        FaultClass::ContextLength => invalid(
            &format!(
                "This model's maximum context length is 128000 tokens. However, your messages \
                 resulted in {} tokens. Please reduce the length of the messages.",
                128_000 + ctx.input_tokens
            ),
            json!("messages"),
            json!("context_length_exceeded"),
        ),
        FaultClass::BadRequest | FaultClass::ContentFiltered | FaultClass::InvalidResponse => {
            invalid(
                "Invalid value for 'temperature': expected a number between 0 and 2.",
                json!("temperature"),
                json!("invalid_value"),
            )
        }
    }
}

fn usage(g: &Generation) -> Value {
    json!({
        "prompt_tokens": g.input_tokens,
        "completion_tokens": g.output_tokens,
        "total_tokens": g.input_tokens + g.output_tokens,
    })
}

fn envelope(g: &Generation, message: Value, finish_reason: &str) -> Value {
    json!({
        "id": format!("chatcmpl-{}", random_id(29)),
        "object": "chat.completion",
        "created": chrono::Utc::now().timestamp(),
        "model": g.model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason,
        }],
        "usage": usage(g),
        "system_fingerprint": "fp_simulated",
    })
}

pub(super) fn success(g: &Generation) -> Value {
    envelope(
        g,
        json!({"role": "assistant", "content": g.text, "refusal": null}),
        "stop",
    )
}

pub(super) fn filtered(g: &Generation) -> Value {
    envelope(
        g,
        json!({"role": "assistant", "content": null,
               "refusal": "I'm sorry, but I can't help with that request."}),
        "content_filter",
    )
}

pub(super) fn common_headers() -> Vec<(&'static str, String)> {
    vec![
        ("x-request-id", format!("req_{}", random_id(32))),
        ("openai-version", "2020-10-01".into()),
        ("openai-processing-ms", "1".into()),
    ]
}

pub(super) fn models(models: &[String]) -> Value {
    let created = chrono::Utc::now().timestamp();
    let data: Vec<Value> = models
        .iter()
        .map(|m| json!({"id": m, "object": "model", "created": created, "owned_by": "system"}))
        .collect();
    json!({"object": "list", "data": data})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_like_openai() {
        assert_eq!(redact("sk-abcdefg1234"), "sk-a******1234");
        assert_eq!(redact("short"), "*****");
    }
}
