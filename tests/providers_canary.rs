//! The API key must never leak into an error, whatever the vendor sends back: every error
//! path is triggered with a canary key, including vendors and proxies that echo it.
// Tests may panic: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::TcpListener;
use std::time::Duration;

use ai_failover::config::EngineConfig;
use ai_failover::contract::ErrorClass;
use ai_failover::providers::{ProviderError, try_build};
use common::providers::*;
use serde_json::json;
use wiremock::ResponseTemplate;

const CANARY: &str = "sk-CANARY-7f3a9c2e5b1d4f6a8c0e";

fn assert_clean(vendor: Vendor, what: &str, err: &ProviderError) {
    for text in [err.message.clone(), err.to_string(), format!("{err:?}")] {
        assert!(
            !text.contains("CANARY"),
            "{vendor:?} {what}: leaked in {text}"
        );
    }
}

/// Responses covering every class, several of which echo the key the way a careless
/// vendor or proxy might.
fn responses(vendor: Vendor) -> Vec<(&'static str, ResponseTemplate)> {
    let masked = format!(
        "{}****************{}",
        &CANARY[..8],
        &CANARY[CANARY.len() - 4..]
    );
    vec![
        (
            "401 echo",
            json_response(
                401,
                &vendor.error(
                    401,
                    "invalid_api_key",
                    &format!("Incorrect API key provided: {CANARY}."),
                ),
            ),
        ),
        (
            "401 masked",
            json_response(
                401,
                &vendor.error(
                    401,
                    "invalid_api_key",
                    &format!("Incorrect API key provided: {masked}."),
                ),
            ),
        ),
        ("403", json_response(403, &vendor.auth_error(403))),
        (
            "400 echo",
            json_response(
                400,
                &vendor.error(
                    400,
                    "invalid_request_error",
                    &format!("bad header x-api-key={CANARY}"),
                ),
            ),
        ),
        ("400 context", json_response(400, &vendor.context_length())),
        (
            "429",
            json_response(
                429,
                &vendor.error(429, "rate_limit_error", &format!("limit for key {CANARY}")),
            )
            .insert_header("retry-after", "1"),
        ),
        (
            "500 text echo",
            ResponseTemplate::new(500).set_body_string(format!(
                "proxy error; headers: Authorization: Bearer {CANARY}"
            )),
        ),
        (
            "502 header echo",
            ResponseTemplate::new(502).insert_header("x-echo", CANARY),
        ),
        (
            "503",
            json_response(503, &vendor.error(503, "UNAVAILABLE", "overloaded")),
        ),
        (
            "529",
            json_response(529, &vendor.error(529, "overloaded_error", "Overloaded")),
        ),
        (
            "200 error object",
            json_response(
                200,
                &json!({"error": {"message": format!("key {CANARY} suspended"), "code": 401}}),
            ),
        ),
        ("200 refusal", json_response(200, &vendor.filtered()[0])),
        (
            "200 invalid signal",
            json_response(
                200,
                &vendor.success(
                    &format!(r#"{{"action":"{CANARY}","confidence":0.5,"rationale":"r"}}"#),
                    1,
                    1,
                ),
            ),
        ),
        (
            "200 not json",
            ResponseTemplate::new(200).set_body_string(CANARY),
        ),
        (
            "200 slow",
            json_response(200, &vendor.success(SIGNAL, 1, 1)).set_delay(Duration::from_secs(2)),
        ),
        (
            "200 huge",
            ResponseTemplate::new(200).set_body_string(CANARY.repeat(100_000)),
        ),
    ]
}

#[tokio::test]
async fn the_key_never_appears_in_errors() {
    for vendor in ALL {
        for (what, response) in responses(vendor) {
            let server = serve(vendor, response).await;
            let p = provider_with_cap(vendor, &server, Some(CANARY), 64 * 1024);
            let mut c = call();
            c.timeout = Duration::from_millis(500);
            let err = p.complete(&c).await.expect_err(what);
            assert_clean(vendor, what, &err);
        }
        // Probes share the plumbing; check one echoing probe anyway.
        let server = wiremock::MockServer::start().await;
        wiremock::Mock::given(wiremock::matchers::method("GET"))
            .respond_with(json_response(
                401,
                &vendor.error(401, "x", &format!("bad key {CANARY}")),
            ))
            .mount(&server)
            .await;
        let err = provider(vendor, &server, Some(CANARY))
            .probe(MODEL, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert_eq!(err.class, ErrorClass::Auth);
        assert_clean(vendor, "probe", &err);
    }
}

#[tokio::test]
async fn transport_errors_and_bad_keys_do_not_leak_it_either() {
    for vendor in ALL {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let base = format!("http://127.0.0.1:{port}");
        let cfg = config(vendor, base.clone(), Some(CANARY));
        let err = try_build(&cfg, &EngineConfig::default())
            .unwrap()
            .complete(&call())
            .await
            .unwrap_err();
        assert_eq!(err.class, ErrorClass::Network);
        assert_clean(vendor, "refused", &err);

        // A key that cannot be a header value is an operator problem, reported without it.
        let bad = format!("{CANARY}\n");
        let cfg = config(vendor, base, Some(&bad));
        let err = try_build(&cfg, &EngineConfig::default())
            .unwrap()
            .complete(&call())
            .await
            .unwrap_err();
        assert_eq!(err.class, ErrorClass::Auth, "{vendor:?}");
        assert_clean(vendor, "bad key", &err);
    }
}

#[test]
fn configs_do_not_show_the_key_in_debug() {
    for vendor in ALL {
        let cfg = config(vendor, "http://127.0.0.1:1".into(), Some(CANARY));
        assert!(!format!("{cfg:?}").contains("CANARY"));
    }
}
