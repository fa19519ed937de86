//! From a vendor's error answer to an [`ErrorClass`].
//!
//! The class decides what the engine does next (wait, fail over, disable the provider, or
//! give up because the request itself is bad), so the rules look past the status code at
//! the vendor's error type and message: an OpenAI 429 `insufficient_quota` will not clear
//! by waiting, and a Gemini 400 `API_KEY_INVALID` is an auth failure, not a bad request.

use std::time::SystemTime;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;

use super::{ProviderError, message, retry_after};
use crate::config::Api;
use crate::contract::ErrorClass;

/// Classifies a non-2xx answer. A body that is not JSON is classified by status alone.
pub fn classify(api: Api, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ProviderError {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let error = json.as_ref().and_then(VendorError::find);
    let detail = match &error {
        Some(e) => e.message.map(message::short),
        None if json.is_none() && !body.is_empty() => Some("(body is not JSON)".to_string()),
        None => None,
    };
    let error = error.unwrap_or_default();
    let class = class_of(api, status.as_u16(), &error);
    finish(api, class, status, detail, headers, &error)
}

/// Classifies a 2xx answer whose body is an error object (gateways and compatible servers
/// do this), or `None` when the body is not one. The status the error object claims, if
/// any, decides; an error object that claims nothing counts as a server error.
pub fn error_in_body(
    api: Api,
    status: StatusCode,
    headers: &HeaderMap,
    body: &Value,
) -> Option<ProviderError> {
    let error = VendorError::find(body)?;
    let claimed = error.claimed_status().unwrap_or(500);
    let class = class_of(api, claimed, &error);
    let detail = error.message.map(message::short);
    Some(finish(api, class, status, detail, headers, &error))
}

fn finish(
    api: Api,
    class: ErrorClass,
    status: StatusCode,
    detail: Option<String>,
    headers: &HeaderMap,
    error: &VendorError,
) -> ProviderError {
    let head = format!(
        "HTTP {} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let text = match detail {
        Some(d) => format!("{}: {d}", head.trim_end()),
        None => head.trim_end().to_string(),
    };
    let mut err = ProviderError::new(class, text).with_status(status.as_u16());
    err.retry_after = retry_after::from_headers(api, headers, SystemTime::now())
        .or_else(|| error.raw.and_then(retry_after::from_google_details));
    err
}

/// The parts of a vendor error object the rules look at. Shapes seen:
/// OpenAI `{"error":{"message","type","code","param"}}`,
/// Anthropic `{"type":"error","error":{"type","message"}}`,
/// Gemini `{"error":{"code":429,"message","status","details":[{"reason"}]}}` (sometimes
/// wrapped in an array), vLLM `{"object":"error","message","type","code"}`,
/// Ollama `{"error":"message"}`.
#[derive(Debug, Default)]
struct VendorError<'a> {
    raw: Option<&'a Value>,
    message: Option<&'a str>,
    kind: Option<&'a str>,
    code: Option<&'a Value>,
    status: Option<&'a str>,
    reasons: Vec<&'a str>,
}

impl<'a> VendorError<'a> {
    fn find(body: &'a Value) -> Option<Self> {
        let body = match body {
            Value::Array(items) => items.first()?,
            other => other,
        };
        let object = match body.get("error") {
            Some(Value::String(message)) => {
                return Some(VendorError {
                    message: Some(message),
                    ..Default::default()
                });
            }
            Some(error @ Value::Object(_)) => error,
            _ if body.get("object").and_then(Value::as_str) == Some("error") => body,
            _ => return None,
        };
        let text = |field: &str| object.get(field).and_then(Value::as_str);
        let reasons = object
            .get("details")
            .and_then(Value::as_array)
            .map(|details| {
                details
                    .iter()
                    .filter_map(|d| d.get("reason").and_then(Value::as_str))
                    .collect()
            })
            .unwrap_or_default();
        Some(VendorError {
            raw: Some(object),
            message: text("message"),
            kind: text("type"),
            code: object.get("code").filter(|c| !c.is_null()),
            status: text("status"),
            reasons,
        })
    }

    /// Every identifier and the message, lower-cased, for substring rules.
    fn haystack(&self) -> String {
        let code = self.code.map(|c| match c {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        [self.message, self.kind, code.as_deref(), self.status]
            .into_iter()
            .flatten()
            .chain(self.reasons.iter().copied())
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
    }

    /// The HTTP status an error object inside a 2xx stands for.
    fn claimed_status(&self) -> Option<u16> {
        if let Some(code) = self.code.and_then(Value::as_u64)
            && (400..600).contains(&code)
        {
            return Some(code as u16);
        }
        let by_name = |name: &str| -> Option<u16> {
            Some(match name {
                "authentication_error" | "UNAUTHENTICATED" => 401,
                "billing_error" => 402,
                "permission_error" | "PERMISSION_DENIED" => 403,
                "not_found_error" | "NOT_FOUND" => 404,
                "request_too_large" => 413,
                "rate_limit_error" | "rate_limit_exceeded" | "RESOURCE_EXHAUSTED" => 429,
                "invalid_request_error" | "INVALID_ARGUMENT" | "FAILED_PRECONDITION" => 400,
                "api_error" | "server_error" | "INTERNAL" => 500,
                "UNAVAILABLE" => 503,
                "timeout_error" | "DEADLINE_EXCEEDED" => 504,
                "overloaded_error" => 529,
                _ => return None,
            })
        };
        self.kind
            .and_then(by_name)
            .or_else(|| self.status.and_then(by_name))
    }
}

/// Phrases of "the prompt does not fit", from OpenAI, vLLM, xAI, Anthropic and Gemini.
/// One list for all APIs: OpenAI-compatible gateways relay other vendors' messages.
const CONTEXT_LENGTH: [&str; 7] = [
    "context_length_exceeded",
    "maximum context length",
    "maximum prompt length",
    "prompt is too long",
    "exceed context limit",
    "exceeds the maximum number of tokens",
    "input token count",
];

/// Codes of "refused on content policy" (OpenAI, Azure OpenAI).
const CONTENT_POLICY: [&str; 2] = ["content_filter", "content_policy_violation"];

fn class_of(api: Api, status: u16, error: &VendorError) -> ErrorClass {
    let text = error.haystack();
    let says = |needle: &str| text.contains(needle);
    // Problems only an operator can fix come first, whatever the status: waiting or
    // retrying elsewhere with the same key will not help.
    let operator_only = match api {
        Api::Openai => says("insufficient_quota"),
        Api::Anthropic => says("billing_error") || says("credit balance is too low"),
        Api::Gemini => {
            says("api_key_invalid") || says("api key not valid") || says("api key not found")
        }
    };
    if (401..=403).contains(&status) || operator_only {
        return ErrorClass::Auth;
    }
    let overloaded = status == 529
        || says("overloaded")
        || (api == Api::Gemini && status == 503 && error.status == Some("UNAVAILABLE"));
    match status {
        408 => ErrorClass::Timeout,
        429 => ErrorClass::RateLimited,
        500..=599 if overloaded => ErrorClass::Overloaded,
        500..=599 => ErrorClass::ServerError,
        400..=499 if CONTEXT_LENGTH.iter().any(|p| says(p)) => ErrorClass::ContextLength,
        400..=499 if CONTENT_POLICY.iter().any(|p| says(p)) => ErrorClass::ContentFiltered,
        400..=499 => ErrorClass::BadRequest,
        // A 3xx (redirects are not followed) or anything stranger: the endpoint is not
        // the API we expect, and another provider may well be.
        _ => ErrorClass::InvalidResponse,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn class(api: Api, status: u16, body: &str) -> ErrorClass {
        let status = StatusCode::from_u16(status).unwrap();
        classify(api, status, &HeaderMap::new(), body.as_bytes()).class
    }

    #[test]
    fn statuses_alone() {
        for api in [Api::Openai, Api::Anthropic, Api::Gemini] {
            assert_eq!(class(api, 401, ""), ErrorClass::Auth);
            assert_eq!(class(api, 403, "<html>"), ErrorClass::Auth);
            assert_eq!(class(api, 408, ""), ErrorClass::Timeout);
            assert_eq!(class(api, 429, ""), ErrorClass::RateLimited);
            assert_eq!(class(api, 529, ""), ErrorClass::Overloaded);
            for s in [500, 502, 503, 504] {
                assert_eq!(
                    class(api, s, "<html>bad gateway</html>"),
                    ErrorClass::ServerError
                );
            }
            assert_eq!(class(api, 400, "not json"), ErrorClass::BadRequest);
            assert_eq!(class(api, 404, ""), ErrorClass::BadRequest);
            assert_eq!(class(api, 301, ""), ErrorClass::InvalidResponse);
        }
    }

    #[test]
    fn openai_rules() {
        let quota = r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;
        assert_eq!(class(Api::Openai, 429, quota), ErrorClass::Auth);
        let context = r#"{"error":{"message":"This model's maximum context length is 128000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;
        assert_eq!(class(Api::Openai, 400, context), ErrorClass::ContextLength);
        let policy = r#"{"error":{"message":"rejected","type":"invalid_request_error","code":"content_policy_violation"}}"#;
        assert_eq!(class(Api::Openai, 400, policy), ErrorClass::ContentFiltered);
        let overloaded = r#"{"error":{"message":"The engine is currently overloaded, please try again later","type":"server_error"}}"#;
        assert_eq!(class(Api::Openai, 503, overloaded), ErrorClass::Overloaded);
        let vllm = r#"{"object":"error","message":"This model's maximum context length is 4096 tokens.","type":"BadRequestError","code":400}"#;
        assert_eq!(class(Api::Openai, 400, vllm), ErrorClass::ContextLength);
    }

    #[test]
    fn anthropic_rules() {
        let overloaded =
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert_eq!(
            class(Api::Anthropic, 529, overloaded),
            ErrorClass::Overloaded
        );
        let long = r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 215000 tokens > 200000 maximum"}}"#;
        assert_eq!(class(Api::Anthropic, 400, long), ErrorClass::ContextLength);
        let credit = r#"{"type":"error","error":{"type":"invalid_request_error","message":"Your credit balance is too low to access the Anthropic API."}}"#;
        assert_eq!(class(Api::Anthropic, 400, credit), ErrorClass::Auth);
    }

    #[test]
    fn gemini_rules() {
        let key = r#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com"}]}}"#;
        assert_eq!(class(Api::Gemini, 400, key), ErrorClass::Auth);
        let unavailable = r#"{"error":{"code":503,"message":"The service is currently unavailable.","status":"UNAVAILABLE"}}"#;
        assert_eq!(class(Api::Gemini, 503, unavailable), ErrorClass::Overloaded);
        assert_eq!(
            class(Api::Openai, 503, unavailable),
            ErrorClass::ServerError
        );
        let tokens = r#"{"error":{"code":400,"message":"The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).","status":"INVALID_ARGUMENT"}}"#;
        assert_eq!(class(Api::Gemini, 400, tokens), ErrorClass::ContextLength);
        let wrapped = format!("[{unavailable}]");
        assert_eq!(class(Api::Gemini, 503, &wrapped), ErrorClass::Overloaded);
    }

    #[test]
    fn messages_come_from_the_vendor_and_retry_info_is_read() {
        let body = r#"{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"30s"}]}}"#;
        let err = classify(
            Api::Gemini,
            StatusCode::TOO_MANY_REQUESTS,
            &HeaderMap::new(),
            body.as_bytes(),
        );
        assert_eq!(err.class, ErrorClass::RateLimited);
        assert_eq!(err.http_status, Some(429));
        assert_eq!(err.retry_after, Some(Duration::from_secs(30)));
        assert_eq!(
            err.message,
            "HTTP 429 Too Many Requests: Resource has been exhausted (e.g. check quota)."
        );
        let err = classify(
            Api::Openai,
            StatusCode::BAD_GATEWAY,
            &HeaderMap::new(),
            b"<html>",
        );
        assert_eq!(err.message, "HTTP 502 Bad Gateway: (body is not JSON)");
    }

    #[test]
    fn error_objects_inside_a_2xx() {
        let ok = StatusCode::OK;
        let h = HeaderMap::new();
        let openrouter: Value =
            serde_json::from_str(r#"{"error":{"code":429,"message":"Rate limit exceeded"}}"#)
                .unwrap();
        let err = error_in_body(Api::Openai, ok, &h, &openrouter).unwrap();
        assert_eq!(err.class, ErrorClass::RateLimited);
        assert_eq!(err.http_status, Some(200));
        let anthropic: Value = serde_json::from_str(
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        )
        .unwrap();
        assert_eq!(
            error_in_body(Api::Anthropic, ok, &h, &anthropic)
                .unwrap()
                .class,
            ErrorClass::Overloaded
        );
        let vague: Value = serde_json::from_str(r#"{"error":"boom"}"#).unwrap();
        assert_eq!(
            error_in_body(Api::Openai, ok, &h, &vague).unwrap().class,
            ErrorClass::ServerError
        );
        let fine: Value = serde_json::from_str(r#"{"choices":[],"error":null}"#).unwrap();
        assert!(error_in_body(Api::Openai, ok, &h, &fine).is_none());
    }
}
