//! The adapters against mock vendors: what a request carries, how a good answer is read,
//! and the liveness probe. Every test runs for all three wire APIs.
// Tests may panic: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use ai_failover::contract::{Action, ErrorClass, Kind};
use ai_failover::providers::Answer;
use common::providers::*;
use serde_json::json;
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer};

#[tokio::test]
async fn a_good_answer_is_parsed_with_its_usage() {
    for vendor in ALL {
        let server = MockServer::start().await;
        let (auth, auth_value) = vendor.auth(KEY);
        Mock::given(method("POST"))
            .and(path(vendor.path()))
            .and(header(auth, auth_value.as_str()))
            .and(header(vendor.request_id_header(), REQUEST_ID))
            .and(header("content-type", "application/json"))
            .and(body_partial_json(vendor.json_option()))
            .respond_with(json_response(200, &vendor.success(SIGNAL, 123, 45)))
            .expect(1)
            .mount(&server)
            .await;
        let completion = provider(vendor, &server, Some(KEY))
            .complete(&call())
            .await
            .unwrap_or_else(|e| panic!("{vendor:?}: {e}"));
        assert_eq!(completion.model, "test-model-2025", "{vendor:?}");
        assert_eq!(completion.http_status, 200);
        assert_eq!(completion.usage.input_tokens, 123, "{vendor:?}");
        assert_eq!(completion.usage.output_tokens, 45, "{vendor:?}");
        let Answer::Signal(signal) = completion.answer else {
            panic!("{vendor:?}: not a signal");
        };
        assert_eq!(signal.action, Action::Buy);
        assert_eq!(signal.confidence, 0.8);
        assert_eq!(signal.position_size, 0.5);
        assert_eq!(signal.horizon, "1w");
    }
}

#[tokio::test]
async fn fenced_answers_and_other_kinds_parse() {
    for vendor in ALL {
        let text = "```json\n{\"summary\":\"calm\",\"score\":0.2,\"factors\":[\"low vol\"]}\n```";
        let server = serve(vendor, json_response(200, &vendor.success(text, 1, 1))).await;
        let mut c = call();
        c.kind = Kind::Risk;
        let completion = provider(vendor, &server, Some(KEY))
            .complete(&c)
            .await
            .unwrap();
        let Answer::Analysis(analysis) = completion.answer else {
            panic!("{vendor:?}: not an analysis");
        };
        assert_eq!(analysis["summary"], "calm");
    }
}

#[tokio::test]
async fn requests_carry_the_vendor_shapes() {
    for vendor in ALL {
        let server = serve(vendor, json_response(200, &vendor.success(SIGNAL, 1, 1))).await;
        provider(vendor, &server, Some(KEY))
            .complete(&call())
            .await
            .unwrap();
        let requests = server.received_requests().await.unwrap();
        let request = &requests[0];
        assert_eq!(
            request.url.query(),
            None,
            "{vendor:?}: nothing in the query"
        );
        let body: serde_json::Value = request.body_json().unwrap();
        match vendor {
            Vendor::OpenAi => {
                assert_eq!(body["model"], MODEL);
                assert_eq!(body["messages"][0]["role"], "system");
                assert_eq!(body["messages"][1]["role"], "user");
                assert_eq!(body["messages"][1]["content"], call().user);
                // Not api.openai.com: the field every compatible server knows.
                assert_eq!(body["max_tokens"], 64);
                assert_eq!(body["temperature"], 0);
            }
            Vendor::Anthropic => {
                assert_eq!(request.headers["anthropic-version"], "2023-06-01");
                assert_eq!(body["model"], MODEL);
                assert_eq!(
                    body["messages"],
                    json!([{"role": "user", "content": call().user}])
                );
            }
            Vendor::Gemini => {
                assert_eq!(
                    body["systemInstruction"],
                    json!({"parts": [{"text": call().system}]})
                );
                assert_eq!(body["contents"][0]["role"], "user");
                assert_eq!(body["contents"][0]["parts"][0]["text"], call().user);
                assert_eq!(body["generationConfig"]["maxOutputTokens"], 64);
            }
        }
    }
}

#[tokio::test]
async fn without_a_key_no_auth_header_is_sent() {
    for vendor in ALL {
        let server = serve(vendor, json_response(200, &vendor.success(SIGNAL, 1, 1))).await;
        provider(vendor, &server, None)
            .complete(&call())
            .await
            .unwrap();
        let empty_key = provider(vendor, &server, Some(""));
        empty_key.complete(&call()).await.unwrap();
        let (auth, _) = vendor.auth("");
        for request in server.received_requests().await.unwrap() {
            assert!(!request.headers.contains_key(auth), "{vendor:?}");
        }
    }
}

#[tokio::test]
async fn probes_use_the_free_endpoint() {
    for vendor in ALL {
        let server = MockServer::start().await;
        let (auth, auth_value) = vendor.auth(KEY);
        let models = json!({"data": [{"id": MODEL}], "name": format!("models/{MODEL}")});
        Mock::given(method("GET"))
            .and(path(vendor.probe_path()))
            .and(header(auth, auth_value.as_str()))
            .respond_with(json_response(200, &models))
            .expect(1)
            .mount(&server)
            .await;
        provider(vendor, &server, Some(KEY))
            .probe(MODEL, std::time::Duration::from_secs(2))
            .await
            .unwrap_or_else(|e| panic!("{vendor:?}: {e}"));
        if vendor == Vendor::Anthropic {
            let requests = server.received_requests().await.unwrap();
            assert_eq!(requests[0].url.query(), Some("limit=1"));
        }
    }
}

#[tokio::test]
async fn a_failing_probe_is_classified() {
    for vendor in ALL {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(json_response(401, &vendor.auth_error(401)))
            .mount(&server)
            .await;
        let err = provider(vendor, &server, Some(KEY))
            .probe(MODEL, std::time::Duration::from_secs(2))
            .await
            .unwrap_err();
        assert_eq!(err.class, ErrorClass::Auth, "{vendor:?}");
    }
}

#[tokio::test]
async fn a_truncated_but_complete_answer_is_accepted() {
    for vendor in ALL {
        let server = serve(vendor, json_response(200, &vendor.truncated(SIGNAL))).await;
        let completion = provider(vendor, &server, Some(KEY))
            .complete(&call())
            .await
            .unwrap_or_else(|e| panic!("{vendor:?}: {e}"));
        assert!(matches!(completion.answer, Answer::Signal(_)));
    }
}
