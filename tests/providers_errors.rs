//! Every error class each adapter must produce, from vendor-shaped mock answers.
// Tests may panic: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant, SystemTime};

use ai_failover::config::EngineConfig;
use ai_failover::contract::ErrorClass;
use ai_failover::providers::{ProviderError, try_build};
use common::providers::*;
use serde_json::json;
use wiremock::ResponseTemplate;

/// The error `vendor`'s adapter gets for `response`.
async fn error_for(vendor: Vendor, response: ResponseTemplate) -> ProviderError {
    let server = serve(vendor, response).await;
    provider(vendor, &server, Some(KEY))
        .complete(&call())
        .await
        .expect_err("the call should fail")
}

async fn assert_class(
    vendor: Vendor,
    response: ResponseTemplate,
    class: ErrorClass,
) -> ProviderError {
    let err = error_for(vendor, response).await;
    assert_eq!(err.class, class, "{vendor:?}: {err:?}");
    err
}

#[tokio::test]
async fn rate_limits_honour_retry_after_seconds() {
    for vendor in ALL {
        let body = vendor.error(429, "rate_limit_error", "Rate limit reached");
        let response = json_response(429, &body).insert_header("retry-after", "7");
        let err = assert_class(vendor, response, ErrorClass::RateLimited).await;
        assert_eq!(err.retry_after, Some(Duration::from_secs(7)), "{vendor:?}");
        assert_eq!(err.http_status, Some(429));
        assert!(
            err.message.contains("Rate limit reached"),
            "{}",
            err.message
        );
    }
}

#[tokio::test]
async fn rate_limits_honour_retry_after_dates() {
    for vendor in ALL {
        let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        let response = ResponseTemplate::new(429).insert_header("retry-after", at.as_str());
        let err = assert_class(vendor, response, ErrorClass::RateLimited).await;
        let wait = err.retry_after.expect("a wait");
        assert!(
            (Duration::from_secs(27)..=Duration::from_secs(30)).contains(&wait),
            "{vendor:?}: {wait:?}"
        );
    }
}

#[tokio::test]
async fn rate_limits_read_the_vendor_reset_signals() {
    // OpenAI: Go durations; the exhausted limit's reset wins.
    let response = ResponseTemplate::new(429)
        .set_body_json(Vendor::OpenAi.error(429, "requests", "Rate limit reached for requests"))
        .insert_header("x-ratelimit-remaining-requests", "0")
        .insert_header("x-ratelimit-reset-requests", "6m0s")
        .insert_header("x-ratelimit-remaining-tokens", "9000")
        .insert_header("x-ratelimit-reset-tokens", "250ms");
    let err = assert_class(Vendor::OpenAi, response, ErrorClass::RateLimited).await;
    assert_eq!(err.retry_after, Some(Duration::from_secs(360)));

    // Anthropic: RFC 3339 instants.
    let reset = chrono::Utc::now() + chrono::Duration::seconds(20);
    let response = ResponseTemplate::new(429)
        .set_body_json(Vendor::Anthropic.error(
            429,
            "rate_limit_error",
            "Number of requests has exceeded your rate limit",
        ))
        .insert_header("anthropic-ratelimit-requests-remaining", "0")
        .insert_header(
            "anthropic-ratelimit-requests-reset",
            reset.to_rfc3339().as_str(),
        );
    let err = assert_class(Vendor::Anthropic, response, ErrorClass::RateLimited).await;
    let wait = err.retry_after.expect("a wait");
    assert!(
        (Duration::from_secs(17)..=Duration::from_secs(20)).contains(&wait),
        "{wait:?}"
    );

    // Gemini: RetryInfo in the body.
    let body = json!({"error": {"code": 429,
        "message": "You exceeded your current quota, please check your plan and billing details.",
        "status": "RESOURCE_EXHAUSTED",
        "details": [
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
             "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests"}]},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "30s"}]}});
    let err = assert_class(
        Vendor::Gemini,
        json_response(429, &body),
        ErrorClass::RateLimited,
    )
    .await;
    assert_eq!(err.retry_after, Some(Duration::from_secs(30)));
}

#[tokio::test]
async fn server_errors() {
    for vendor in ALL {
        for status in [500, 502, 503, 504] {
            let response = ResponseTemplate::new(status)
                .set_body_raw("<html><body>upstream error</body></html>", "text/html");
            let err = assert_class(vendor, response, ErrorClass::ServerError).await;
            assert_eq!(err.http_status, Some(status));
        }
        let body = vendor.error(500, "api_error", "Internal server error");
        assert_class(vendor, json_response(500, &body), ErrorClass::ServerError).await;
    }
}

#[tokio::test]
async fn overload_signals() {
    let body = Vendor::Anthropic.error(529, "overloaded_error", "Overloaded");
    let err = assert_class(
        Vendor::Anthropic,
        json_response(529, &body),
        ErrorClass::Overloaded,
    )
    .await;
    assert_eq!(err.http_status, Some(529));

    let body = Vendor::Gemini.error(
        503,
        "UNAVAILABLE",
        "The model is overloaded. Please try again later.",
    );
    assert_class(
        Vendor::Gemini,
        json_response(503, &body),
        ErrorClass::Overloaded,
    )
    .await;
    let body = Vendor::Gemini.error(503, "UNAVAILABLE", "The service is currently unavailable.");
    assert_class(
        Vendor::Gemini,
        json_response(503, &body),
        ErrorClass::Overloaded,
    )
    .await;

    let body = Vendor::OpenAi.error(
        503,
        "server_error",
        "The engine is currently overloaded, please try again later",
    );
    assert_class(
        Vendor::OpenAi,
        json_response(503, &body),
        ErrorClass::Overloaded,
    )
    .await;
}

#[tokio::test]
async fn auth_failures() {
    for vendor in ALL {
        for status in [401, 403] {
            let body = vendor.auth_error(status);
            assert_class(vendor, json_response(status, &body), ErrorClass::Auth).await;
        }
    }
    let body = json!({"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
        "status": "INVALID_ARGUMENT",
        "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                     "domain": "googleapis.com",
                     "metadata": {"service": "generativelanguage.googleapis.com"}}]}});
    assert_class(Vendor::Gemini, json_response(400, &body), ErrorClass::Auth).await;
    let body = Vendor::OpenAi.error(
        429,
        "insufficient_quota",
        "You exceeded your current quota, please check your plan and billing details.",
    );
    assert_class(Vendor::OpenAi, json_response(429, &body), ErrorClass::Auth).await;
}

#[tokio::test]
async fn request_timeout_status() {
    for vendor in ALL {
        assert_class(vendor, ResponseTemplate::new(408), ErrorClass::Timeout).await;
    }
}

#[tokio::test]
async fn context_length_and_other_bad_requests() {
    for vendor in ALL {
        let err = assert_class(
            vendor,
            json_response(400, &vendor.context_length()),
            ErrorClass::ContextLength,
        )
        .await;
        assert_eq!(err.http_status, Some(400));
        assert_class(
            vendor,
            json_response(400, &vendor.bad_request()),
            ErrorClass::BadRequest,
        )
        .await;
        assert_class(
            vendor,
            ResponseTemplate::new(404).set_body_string("Not Found"),
            ErrorClass::BadRequest,
        )
        .await;
    }
    let body = Vendor::OpenAi.error(
        400,
        "content_policy_violation",
        "Your request was rejected as a result of our safety system.",
    );
    assert_class(
        Vendor::OpenAi,
        json_response(400, &body),
        ErrorClass::ContentFiltered,
    )
    .await;
}

#[tokio::test]
async fn content_filtering_in_a_200() {
    for vendor in ALL {
        for body in vendor.filtered() {
            let err = assert_class(
                vendor,
                json_response(200, &body),
                ErrorClass::ContentFiltered,
            )
            .await;
            assert_eq!(err.http_status, Some(200));
            assert!(
                err.usage.is_some(),
                "{vendor:?}: billed tokens are reported"
            );
        }
    }
}

#[tokio::test]
async fn broken_bodies_are_invalid_responses() {
    for vendor in ALL {
        let whole = vendor.success(SIGNAL, 1, 1).to_string();
        let cut = &whole[..whole.len() / 2];
        for body in [cut, "<html>hello</html>", ""] {
            let response =
                ResponseTemplate::new(200).set_body_raw(body.to_string(), "application/json");
            let err = assert_class(vendor, response, ErrorClass::InvalidResponse).await;
            assert_eq!(err.http_status, Some(200));
        }
        let response = ResponseTemplate::new(200)
            .set_body_raw(vec![b'{', 0xff, 0xfe, b'}'], "application/json");
        let err = assert_class(vendor, response, ErrorClass::InvalidResponse).await;
        assert!(err.message.contains("UTF-8"), "{}", err.message);
        // Valid JSON, but not this vendor's shape.
        let response = json_response(200, &json!({"hello": "world"}));
        assert_class(vendor, response, ErrorClass::InvalidResponse).await;
    }
}

#[tokio::test]
async fn invalid_signals_are_invalid_responses_with_usage() {
    for vendor in ALL {
        let answers = [
            r#"{"action":"buy","confidence":1.7,"rationale":"sure"}"#,
            r#"{"action":"short","confidence":0.7,"rationale":"down"}"#,
            r#"{"action":"buy","confidence":0.7}"#,
            "I think you should buy.",
        ];
        for text in answers {
            let body = vendor.success(text, 11, 7);
            let err = assert_class(
                vendor,
                json_response(200, &body),
                ErrorClass::InvalidResponse,
            )
            .await;
            let usage = err.usage.expect("usage of a paid answer");
            assert_eq!((usage.input_tokens, usage.output_tokens), (11, 7));
        }
    }
}

#[tokio::test]
async fn a_truncated_answer_is_an_invalid_response() {
    for vendor in ALL {
        let body = vendor.truncated(r#"{"action":"buy","confidence":0.8,"ratio"#);
        let err = assert_class(
            vendor,
            json_response(200, &body),
            ErrorClass::InvalidResponse,
        )
        .await;
        assert!(
            err.message.contains("output-token limit"),
            "{}",
            err.message
        );
    }
}

#[tokio::test]
async fn an_error_object_inside_a_200_is_classified() {
    let expected = [
        ErrorClass::ServerError,
        ErrorClass::Overloaded,
        ErrorClass::Overloaded,
    ];
    for (vendor, class) in ALL.into_iter().zip(expected) {
        let err = assert_class(vendor, json_response(200, &vendor.error_in_200()), class).await;
        assert_eq!(err.http_status, Some(200));
    }
}

#[tokio::test]
async fn a_slow_answer_times_out() {
    for vendor in ALL {
        let response =
            json_response(200, &vendor.success(SIGNAL, 1, 1)).set_delay(Duration::from_secs(3));
        let server = serve(vendor, response).await;
        let mut c = call();
        c.timeout = Duration::from_millis(300);
        let started = Instant::now();
        let err = provider(vendor, &server, Some(KEY))
            .complete(&c)
            .await
            .unwrap_err();
        assert_eq!(err.class, ErrorClass::Timeout, "{vendor:?}: {err:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn a_refused_connection_is_a_network_error() {
    for vendor in ALL {
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let base = match vendor {
            Vendor::OpenAi => format!("http://127.0.0.1:{port}/v1"),
            _ => format!("http://127.0.0.1:{port}"),
        };
        let p = try_build(&config(vendor, base, Some(KEY)), &EngineConfig::default()).unwrap();
        let err = p.complete(&call()).await.unwrap_err();
        assert_eq!(err.class, ErrorClass::Network, "{vendor:?}: {err:?}");
        assert_eq!(err.http_status, None);
        let err = p.probe(MODEL, Duration::from_secs(1)).await.unwrap_err();
        assert_eq!(err.class, ErrorClass::Network, "{vendor:?}: {err:?}");
    }
}

#[tokio::test]
async fn a_body_over_the_cap_is_refused() {
    for vendor in ALL {
        let padding = "x".repeat(10_000);
        let mut body = vendor.success(SIGNAL, 1, 1);
        body["padding"] = json!(padding);
        let server = serve(vendor, json_response(200, &body)).await;
        let err = provider_with_cap(vendor, &server, Some(KEY), 4096)
            .complete(&call())
            .await
            .unwrap_err();
        assert_eq!(err.class, ErrorClass::InvalidResponse, "{vendor:?}");
        assert_eq!(err.message, "body larger than 4096 bytes");
        // An error status is still classified by status when its body is too big.
        let server = serve(
            vendor,
            ResponseTemplate::new(503).set_body_string(padding.clone()),
        )
        .await;
        let err = provider_with_cap(vendor, &server, Some(KEY), 4096)
            .complete(&call())
            .await
            .unwrap_err();
        assert_eq!(err.class, ErrorClass::ServerError, "{vendor:?}");
    }
}
