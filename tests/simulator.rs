//! The provider simulator against a real HTTP client: envelopes, auth, every fault, the
//! control API and call counting.
// Tests may panic: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use ai_failover::simulator::{
    Api, FaultClass, Faults, Latency, Malformed, Outage, SimConfig, SimHandle, SimProvider,
    Simulator, SlowDrip,
};
use common::eventually;
use serde_json::{Value, json};

fn client(timeout: Duration) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .expect("client")
}

fn http() -> reqwest::Client {
    client(Duration::from_secs(10))
}

async fn start(providers: Vec<SimProvider>) -> SimHandle {
    let mut config = SimConfig::local();
    config.seed = Some(7);
    config.providers = providers;
    Simulator::start(config).await.expect("simulator starts")
}

/// The three vendors, no keys.
async fn three() -> SimHandle {
    start(vec![
        SimProvider::new("openai", Api::Openai),
        SimProvider::new("anthropic", Api::Anthropic),
        SimProvider::new("gemini", Api::Gemini),
    ])
    .await
}

const PROMPT: &str = "kind: signal\nsymbol: AAPL\ncontext: {\"prices\":[1,2,3]}";

/// A real-shaped generation request to `base` (a base URL as the vendor SDK takes it).
fn request(
    http: &reqwest::Client,
    api: Api,
    base: &str,
    key: Option<&str>,
    prompt: &str,
) -> reqwest::RequestBuilder {
    let system = "Answer with JSON only.";
    let rb = match api {
        Api::Openai => http.post(format!("{base}/chat/completions")).json(&json!({
            "model": "gpt-4o-mini",
            "messages": [{"role": "system", "content": system},
                         {"role": "user", "content": prompt}],
            "max_tokens": 256,
        })),
        Api::Anthropic => http
            .post(format!("{base}/v1/messages"))
            .header("anthropic-version", "2023-06-01")
            .json(&json!({
                "model": "claude-haiku-4-5",
                "max_tokens": 256,
                "system": system,
                "messages": [{"role": "user", "content": prompt}],
            })),
        Api::Gemini => http
            .post(format!(
                "{base}/v1beta/models/gemini-2.5-flash:generateContent"
            ))
            .json(&json!({
                "systemInstruction": {"parts": [{"text": system}]},
                "contents": [{"role": "user", "parts": [{"text": prompt}]}],
                "generationConfig": {"maxOutputTokens": 256},
            })),
    };
    match (api, key) {
        (_, None) => rb,
        (Api::Openai, Some(k)) => rb.bearer_auth(k),
        (Api::Anthropic, Some(k)) => rb.header("x-api-key", k),
        (Api::Gemini, Some(k)) => rb.header("x-goog-api-key", k),
    }
}

async fn call(sim: &SimHandle, name: &str, api: Api) -> reqwest::Response {
    let base = sim.base_url(name).unwrap();
    request(&http(), api, &base, None, PROMPT)
        .send()
        .await
        .expect("an HTTP answer")
}

/// The model's text inside each vendor's success envelope.
fn text_of(api: Api, v: &Value) -> String {
    let t = match api {
        Api::Openai => &v["choices"][0]["message"]["content"],
        Api::Anthropic => &v["content"][0]["text"],
        Api::Gemini => &v["candidates"][0]["content"]["parts"][0]["text"],
    };
    t.as_str().expect("text in the envelope").to_owned()
}

fn assert_valid_signal(text: &str) {
    let s: Value = serde_json::from_str(text).expect("the text is JSON");
    assert!(["buy", "sell", "hold"].contains(&s["action"].as_str().unwrap()));
    for field in ["confidence", "position_size"] {
        let x = s[field].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&x), "{field} = {x}");
    }
    assert!(!s["rationale"].as_str().unwrap().is_empty());
    assert!(!s["horizon"].as_str().unwrap().is_empty());
}

async fn status_of(sim: &SimHandle, name: &str, api: Api) -> u16 {
    call(sim, name, api).await.status().as_u16()
}

#[tokio::test]
async fn openai_answers_with_a_chat_completion() {
    let sim = three().await;
    let resp = call(&sim, "openai", Api::Openai).await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .starts_with("req_")
    );
    let v: Value = resp.json().await.unwrap();
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "gpt-4o-mini");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let u = &v["usage"];
    let (p, c) = (
        u["prompt_tokens"].as_u64().unwrap(),
        u["completion_tokens"].as_u64().unwrap(),
    );
    assert!(p >= (PROMPT.len() as u64) / 4 && c > 10);
    assert_eq!(u["total_tokens"].as_u64().unwrap(), p + c);
    assert_valid_signal(&text_of(Api::Openai, &v));
    sim.shutdown().await;
}

#[tokio::test]
async fn anthropic_answers_with_a_message() {
    let sim = three().await;
    let resp = call(&sim, "anthropic", Api::Anthropic).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("request-id"));
    let v: Value = resp.json().await.unwrap();
    assert!(v["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["model"], "claude-haiku-4-5");
    assert_eq!(v["content"][0]["type"], "text");
    assert_eq!(v["stop_reason"], "end_turn");
    assert!(v["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert!(v["usage"]["output_tokens"].as_u64().unwrap() > 0);
    assert_valid_signal(&text_of(Api::Anthropic, &v));

    // The real API insists on a version header.
    let base = sim.base_url("anthropic").unwrap();
    let resp = http()
        .post(format!("{base}/v1/messages"))
        .json(&json!({"model": "m", "max_tokens": 1, "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    sim.shutdown().await;
}

#[tokio::test]
async fn gemini_answers_with_generate_content() {
    let sim = three().await;
    let resp = call(&sim, "gemini", Api::Gemini).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["candidates"][0]["finishReason"], "STOP");
    assert_eq!(v["candidates"][0]["content"]["role"], "model");
    assert_eq!(v["modelVersion"], "gemini-2.5-flash");
    let u = &v["usageMetadata"];
    let (p, c) = (
        u["promptTokenCount"].as_u64().unwrap(),
        u["candidatesTokenCount"].as_u64().unwrap(),
    );
    assert_eq!(u["totalTokenCount"].as_u64().unwrap(), p + c);
    assert_valid_signal(&text_of(Api::Gemini, &v));
    sim.shutdown().await;
}

#[tokio::test]
async fn answers_are_deterministic_and_follow_the_kind() {
    let sim = three().await;
    let base = sim.base_url("openai").unwrap();
    let ask = |prompt: &'static str| {
        let base = base.clone();
        async move {
            let v: Value = request(&http(), Api::Openai, &base, None, prompt)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            serde_json::from_str::<Value>(&text_of(Api::Openai, &v)).unwrap()
        }
    };
    let a = ask("kind: signal\nsymbol: NVDA\nprices: [1]").await;
    let b = ask("kind: signal\nsymbol: NVDA\nprices: [2, 3]").await;
    assert_eq!(a, b, "same symbol, same signal");
    let risk = ask("kind: risk\nsymbol: NVDA").await;
    assert_eq!(risk["kind"], "risk");
    assert!(risk.get("risk_level").is_some() && risk.get("action").is_none());
    sim.shutdown().await;
}

#[tokio::test]
async fn probe_endpoints_answer_and_are_counted_apart() {
    let sim = three().await;
    let h = http();
    let openai = sim.base_url("openai").unwrap();
    let v: Value = h
        .get(format!("{openai}/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["object"], "model");
    let anthropic = sim.base_url("anthropic").unwrap();
    let v: Value = h
        .get(format!("{anthropic}/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"][0]["type"], "model");
    assert_eq!(v["has_more"], false);
    let gemini = sim.base_url("gemini").unwrap();
    let v: Value = h
        .get(format!("{gemini}/v1beta/models/gemini-2.5-pro"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["name"], "models/gemini-2.5-pro");
    let calls = sim.calls();
    for name in ["openai", "anthropic", "gemini"] {
        assert_eq!((calls[name].probes, calls[name].total), (1, 0), "{name}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn auth_is_enforced_the_vendor_way() {
    let sim = start(vec![
        SimProvider::new("openai", Api::Openai).with_key("sk-right"),
        SimProvider::new("anthropic", Api::Anthropic).with_key("sk-ant-right"),
        SimProvider::new("gemini", Api::Gemini).with_key("AIza-right"),
    ])
    .await;
    let h = http();
    // (api, right key, status when missing, status when wrong)
    let cases = [
        (Api::Openai, "openai", "sk-right", 401, 401),
        (Api::Anthropic, "anthropic", "sk-ant-right", 401, 401),
        // Google answers a missing key with 403 and a wrong one with 400 API_KEY_INVALID.
        (Api::Gemini, "gemini", "AIza-right", 403, 400),
    ];
    for (api, name, key, missing, wrong) in cases {
        let base = sim.base_url(name).unwrap();
        let r = request(&h, api, &base, None, PROMPT).send().await.unwrap();
        assert_eq!(r.status(), missing, "{name} without key");
        let r = request(&h, api, &base, Some("nope"), PROMPT)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), wrong, "{name} wrong key");
        let v: Value = r.json().await.unwrap();
        match api {
            Api::Openai => assert_eq!(v["error"]["code"], "invalid_api_key"),
            Api::Anthropic => assert_eq!(v["error"]["type"], "authentication_error"),
            Api::Gemini => assert_eq!(v["error"]["details"][0]["reason"], "API_KEY_INVALID"),
        }
        let r = request(&h, api, &base, Some(key), PROMPT)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{name} right key");
    }
    // Gemini also takes the key as a query parameter.
    let base = sim.base_url("gemini").unwrap();
    let r = h
        .post(format!(
            "{base}/v1beta/models/g:generateContent?key=AIza-right"
        ))
        .json(&json!({"contents": [{"parts": [{"text": "hi"}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    sim.shutdown().await;
}

fn only(class: &str) -> Faults {
    serde_json::from_value(json!({ "error_rate": { class: 1.0 }, "retry_after_s": 7 })).unwrap()
}

#[tokio::test]
async fn error_classes_have_the_vendor_status_body_and_headers() {
    let sim = three().await;
    // (class, [openai, anthropic, gemini] statuses)
    let table = [
        ("rate_limited", [429, 429, 429]),
        ("overloaded", [503, 529, 503]),
        ("server_error", [500, 500, 500]),
        ("auth", [401, 401, 403]),
        ("bad_request", [400, 400, 400]),
        ("context_length", [400, 400, 400]),
    ];
    let apis = [
        ("openai", Api::Openai),
        ("anthropic", Api::Anthropic),
        ("gemini", Api::Gemini),
    ];
    for (class, statuses) in table {
        for ((name, api), status) in apis.into_iter().zip(statuses) {
            sim.set_faults(name, only(class)).unwrap();
            let r = call(&sim, name, api).await;
            assert_eq!(r.status(), status, "{name} {class}");
            let headers = r.headers().clone();
            let v: Value = r.json().await.unwrap();
            match api {
                Api::Openai => assert!(v["error"]["message"].is_string(), "{v}"),
                Api::Anthropic => assert_eq!(v["type"], "error"),
                Api::Gemini => assert_eq!(v["error"]["code"], status),
            }
            match (class, api) {
                ("rate_limited", Api::Openai) => {
                    assert_eq!(headers["retry-after"], "7");
                    assert_eq!(headers["x-ratelimit-remaining-requests"], "0");
                    assert_eq!(headers["x-ratelimit-reset-requests"], "7s");
                    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
                }
                ("rate_limited", Api::Anthropic) => {
                    assert_eq!(headers["retry-after"], "7");
                    assert!(headers.contains_key("anthropic-ratelimit-requests-reset"));
                    assert_eq!(v["error"]["type"], "rate_limit_error");
                }
                ("rate_limited", Api::Gemini) => {
                    assert_eq!(v["error"]["status"], "RESOURCE_EXHAUSTED");
                    let retry = v["error"]["details"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|d| d["@type"] == "type.googleapis.com/google.rpc.RetryInfo")
                        .expect("RetryInfo");
                    assert_eq!(retry["retryDelay"], "7s");
                }
                ("overloaded", Api::Anthropic) => {
                    assert_eq!(v["error"]["type"], "overloaded_error")
                }
                ("overloaded", Api::Gemini) => assert_eq!(v["error"]["status"], "UNAVAILABLE"),
                ("context_length", Api::Openai) => {
                    assert_eq!(v["error"]["code"], "context_length_exceeded")
                }
                ("context_length", Api::Anthropic) => assert!(
                    v["error"]["message"]
                        .as_str()
                        .unwrap()
                        .starts_with("prompt is too long")
                ),
                ("context_length", Api::Gemini) => assert!(
                    v["error"]["message"]
                        .as_str()
                        .unwrap()
                        .contains("input token count")
                ),
                _ => {}
            }
        }
    }
    let outcomes: Vec<_> = sim.log().iter().map(|r| r.outcome).collect();
    assert!(
        outcomes.contains(&ai_failover::simulator::CallOutcome::Error(
            FaultClass::Overloaded
        ))
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn content_filter_is_a_200_refusal() {
    let sim = three().await;
    for (name, api) in [
        ("openai", Api::Openai),
        ("anthropic", Api::Anthropic),
        ("gemini", Api::Gemini),
    ] {
        sim.set_faults(name, only("content_filtered")).unwrap();
        let r = call(&sim, name, api).await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        match api {
            Api::Openai => assert_eq!(v["choices"][0]["finish_reason"], "content_filter"),
            Api::Anthropic => assert_eq!(v["stop_reason"], "refusal"),
            Api::Gemini => assert_eq!(v["promptFeedback"]["blockReason"], "SAFETY"),
        }
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn malformed_answers_break_in_each_way() {
    let sim = three().await;
    let set = |m: Malformed| {
        sim.set_faults(
            "openai",
            Faults {
                malformed: Some(m),
                ..Faults::default()
            },
        )
        .unwrap()
    };
    set(Malformed::TruncatedJson);
    let body = call(&sim, "openai", Api::Openai)
        .await
        .text()
        .await
        .unwrap();
    assert!(serde_json::from_str::<Value>(&body).is_err() && body.starts_with('{'));

    set(Malformed::NotJson);
    let r = call(&sim, "openai", Api::Openai).await;
    assert_eq!(r.headers()["content-type"], "text/html");
    assert!(r.text().await.unwrap().starts_with("<html>"));

    set(Malformed::TextNotJson);
    let v: Value = call(&sim, "openai", Api::Openai)
        .await
        .json()
        .await
        .unwrap();
    assert!(serde_json::from_str::<Value>(&text_of(Api::Openai, &v)).is_err());

    set(Malformed::InvalidSignal);
    let v: Value = call(&sim, "openai", Api::Openai)
        .await
        .json()
        .await
        .unwrap();
    let s: Value = serde_json::from_str(&text_of(Api::Openai, &v)).unwrap();
    assert!(s["confidence"].as_f64().unwrap() > 1.0);

    // The invalid_response class uses the same breakage, on its own draw.
    sim.set_faults("gemini", only("invalid_response")).unwrap();
    let v: Value = call(&sim, "gemini", Api::Gemini)
        .await
        .json()
        .await
        .unwrap();
    let s: Value = serde_json::from_str(&text_of(Api::Gemini, &v)).unwrap();
    assert!(s["confidence"].as_f64().unwrap() > 1.0);
    sim.shutdown().await;
}

#[tokio::test]
async fn outage_window_starts_and_ends() {
    let sim = three().await;
    let outage = Outage {
        start_ms: 500,
        duration_ms: Some(300),
    };
    for name in ["openai", "anthropic"] {
        sim.set_faults(
            name,
            Faults {
                outage: Some(outage),
                ..Faults::default()
            },
        )
        .unwrap();
    }
    // Set just now: the window has not opened yet.
    assert_eq!(status_of(&sim, "openai", Api::Openai).await, 200);
    let within = Duration::from_secs(3);
    eventually(within, "the outage window to open", async || {
        status_of(&sim, "openai", Api::Openai).await == 503
    })
    .await;
    // Anthropic shows an outage as 529 overloaded_error.
    assert_eq!(status_of(&sim, "anthropic", Api::Anthropic).await, 529);
    eventually(within, "the outage window to close", async || {
        status_of(&sim, "openai", Api::Openai).await == 200
    })
    .await;

    // An open-ended outage lasts until cleared.
    sim.start_outage("gemini", None).unwrap();
    assert_eq!(status_of(&sim, "gemini", Api::Gemini).await, 503);
    sim.clear_faults("gemini").unwrap();
    assert_eq!(status_of(&sim, "gemini", Api::Gemini).await, 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn hang_never_answers() {
    let sim = three().await;
    sim.set_faults(
        "anthropic",
        Faults {
            hang: true,
            ..Faults::default()
        },
    )
    .unwrap();
    let base = sim.base_url("anthropic").unwrap();
    let started = Instant::now();
    let err = request(
        &client(Duration::from_millis(300)),
        Api::Anthropic,
        &base,
        None,
        PROMPT,
    )
    .send()
    .await
    .expect_err("no answer");
    assert!(err.is_timeout(), "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        sim.calls()["anthropic"].total,
        1,
        "a hung call still counts"
    );
    // Shutdown ends hung calls instead of waiting for them.
    tokio::time::timeout(Duration::from_secs(5), sim.shutdown())
        .await
        .expect("prompt shutdown");
}

#[tokio::test]
async fn refused_connections_on_a_dedicated_port_and_dropped_on_the_shared_one() {
    let any = "127.0.0.1:0".parse().unwrap();
    let sim = start(vec![
        SimProvider::new("local", Api::Openai).with_dedicated(any),
    ])
    .await;
    let dedicated = sim.dedicated_base_url("local").unwrap();
    let h = http();
    // A pooled connection exists before the fault: it must be dropped too.
    let ok = request(&h, Api::Openai, &dedicated, None, PROMPT)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);

    sim.set_faults(
        "local",
        Faults {
            refuse_connections: true,
            ..Faults::default()
        },
    )
    .unwrap();
    eventually(
        Duration::from_secs(3),
        "the port to close",
        async || match request(&h, Api::Openai, &dedicated, None, PROMPT)
            .send()
            .await
        {
            Err(e) => e.is_connect(),
            Ok(_) => false,
        },
    )
    .await;
    // A fresh client sees ECONNREFUSED right away.
    let err = request(&http(), Api::Openai, &dedicated, None, PROMPT)
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");

    // The shared port cannot close for one provider: the connection is dropped unanswered.
    let shared = sim.base_url("local").unwrap();
    let err = request(&http(), Api::Openai, &shared, None, PROMPT)
        .send()
        .await
        .unwrap_err();
    assert!(err.status().is_none() && !err.is_timeout(), "{err:?}");

    sim.clear_faults("local").unwrap();
    eventually(
        Duration::from_secs(3),
        "the port to open again",
        async || {
            request(&http(), Api::Openai, &dedicated, None, PROMPT)
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        },
    )
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn slow_drip_takes_at_least_the_drip_time() {
    let sim = three().await;
    let drip = SlowDrip {
        chunk_bytes: 64,
        interval_ms: 40,
    };
    sim.set_faults(
        "gemini",
        Faults {
            slow_drip: Some(drip),
            ..Faults::default()
        },
    )
    .unwrap();
    let started = Instant::now();
    let r = call(&sim, "gemini", Api::Gemini).await;
    let body = r.bytes().await.unwrap();
    let chunks = body.len().div_ceil(drip.chunk_bytes) as u32;
    assert!(chunks >= 3, "body of {} bytes", body.len());
    assert!(started.elapsed() >= Duration::from_millis(drip.interval_ms) * (chunks - 1));
    // Slow, but intact.
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_valid_signal(&text_of(Api::Gemini, &v));
    sim.shutdown().await;
}

#[tokio::test]
async fn huge_body_streams_exactly_n_bytes() {
    let sim = three().await;
    let n = 3 * 1024 * 1024 + 5;
    sim.set_faults(
        "openai",
        Faults {
            huge_body_bytes: Some(n),
            ..Faults::default()
        },
    )
    .unwrap();
    let mut r = call(&sim, "openai", Api::Openai).await;
    assert_eq!(r.status(), 200);
    assert!(r.content_length().is_none(), "streamed, no length up front");
    let mut total = 0u64;
    while let Some(chunk) = r.chunk().await.unwrap() {
        total += chunk.len() as u64;
    }
    assert_eq!(total, n);
    sim.shutdown().await;
}

#[tokio::test]
async fn latency_and_timeout_class_delay_the_answer() {
    let sim = three().await;
    sim.set_faults(
        "openai",
        Faults {
            latency_ms: Some(Latency::Fixed(150)),
            ..Faults::default()
        },
    )
    .unwrap();
    let started = Instant::now();
    assert_eq!(status_of(&sim, "openai", Api::Openai).await, 200);
    assert!(started.elapsed() >= Duration::from_millis(150));

    let mut f = only("timeout");
    f.timeout_hold_ms = Some(100);
    sim.set_faults("anthropic", f).unwrap();
    let started = Instant::now();
    let r = call(&sim, "anthropic", Api::Anthropic).await;
    assert_eq!(r.status(), 504);
    assert!(started.elapsed() >= Duration::from_millis(100));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "timeout_error");
    sim.shutdown().await;
}

#[tokio::test]
async fn seeded_error_rates_repeat() {
    let sim = three().await;
    let faults: Faults =
        serde_json::from_value(json!({"error_rate": {"server_error": 0.5}, "seed": 11})).unwrap();
    let mut runs = Vec::new();
    for _ in 0..2 {
        sim.set_faults("openai", faults.clone()).unwrap();
        let mut statuses = Vec::new();
        for _ in 0..12 {
            statuses.push(status_of(&sim, "openai", Api::Openai).await);
        }
        runs.push(statuses);
    }
    assert_eq!(runs[0], runs[1]);
    assert!(
        runs[0].contains(&200) && runs[0].contains(&500),
        "{:?}",
        runs[0]
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn control_api_changes_faults_at_run_time() {
    let sim = three().await;
    let h = http();
    let ctl = sim.control_url();
    let r = h
        .put(format!("{ctl}/providers/openai/faults"))
        .json(&json!({"error_rate": {"server_error": 1.0}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(status_of(&sim, "openai", Api::Openai).await, 500);
    assert_eq!(sim.faults("openai").unwrap().error_rate.server_error, 1.0);

    let list: Value = h
        .get(format!("{ctl}/providers"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let openai = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "openai")
        .unwrap();
    assert_eq!(openai["faults"]["error_rate"]["server_error"], 1.0);
    assert_eq!(openai["calls"]["total"], 1);
    assert_eq!(openai["base_url"], sim.base_url("openai").unwrap());

    let r = h
        .delete(format!("{ctl}/providers/openai/faults"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(status_of(&sim, "openai", Api::Openai).await, 200);

    let r = h
        .post(format!("{ctl}/providers/anthropic/outage"))
        .json(&json!({"duration_ms": 60_000}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(status_of(&sim, "anthropic", Api::Anthropic).await, 529);

    // Bad input is refused with a reason, and nothing changes.
    let r = h
        .put(format!("{ctl}/providers/gemini/faults"))
        .json(&json!({"error_rate": {"timeout": 2.0}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = h
        .put(format!("{ctl}/providers/nobody/faults"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let log: Value = h
        .get(format!("{ctl}/log?provider=openai"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let outcomes: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["server_error", "ok"]);
    assert_eq!(log[1]["model"], "gpt-4o-mini");

    let r = h.post(format!("{ctl}/reset")).send().await.unwrap();
    assert!(r.status().is_success());
    let calls: Value = h
        .get(format!("{ctl}/calls"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(calls["openai"]["total"], 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn calls_are_counted_per_request_id() {
    let sim = three().await;
    let h = http();
    let openai = sim.base_url("openai").unwrap();
    let anthropic = sim.base_url("anthropic").unwrap();
    for _ in 0..2 {
        request(&h, Api::Openai, &openai, None, PROMPT)
            .header("X-Client-Request-Id", "req-1")
            .send()
            .await
            .unwrap();
    }
    request(&h, Api::Anthropic, &anthropic, None, PROMPT)
        .header("x-request-id", "req-2")
        .send()
        .await
        .unwrap();
    request(&h, Api::Openai, &openai, None, PROMPT)
        .send()
        .await
        .unwrap();
    let calls = sim.calls();
    assert_eq!(calls["openai"].total, 3);
    assert_eq!(calls["openai"].by_request_id.get("req-1"), Some(&2));
    assert_eq!(calls["anthropic"].by_request_id.get("req-2"), Some(&1));
    assert_eq!(calls["gemini"].total, 0);
    let logged: Vec<_> = sim.log().into_iter().filter_map(|r| r.request_id).collect();
    assert_eq!(logged, ["req-1", "req-1", "req-2"]);
    sim.reset_calls();
    assert_eq!(sim.calls()["openai"].total, 0);
    assert!(sim.log().is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn probes_see_outages_and_server_errors() {
    let sim = three().await;
    let h = http();
    sim.set_faults("openai", only("server_error")).unwrap();
    let openai = sim.base_url("openai").unwrap();
    let r = h.get(format!("{openai}/models")).send().await.unwrap();
    assert_eq!(r.status(), 500);
    // A request-specific class does not touch probes.
    sim.set_faults("anthropic", only("context_length")).unwrap();
    let anthropic = sim.base_url("anthropic").unwrap();
    let r = h
        .get(format!("{anthropic}/v1/models"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    sim.start_outage("gemini", None).unwrap();
    let gemini = sim.base_url("gemini").unwrap();
    let r = h
        .get(format!("{gemini}/v1beta/models/gemini-2.5-flash"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["status"], "UNAVAILABLE");
    sim.shutdown().await;
}
