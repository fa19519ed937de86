//! The worker's HTTP port against a real nats-server and the provider simulator: probes,
//! `/metrics`, `/api/status`, the SSE event feed with a real failover, trace context on the
//! published result, and (when Chromium is installed) the dashboard rendered by a real
//! headless browser.
// Tests may panic: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use ai_failover::bus::runtime::{self, Running};
use ai_failover::simulator::{Api, Faults, Outage, SimConfig, SimHandle, SimProvider, Simulator};
use futures::StreamExt;
use serde_json::{Value, json};

use common::control::http;
use common::nats::NatsServer;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PUBLISHER_SPAN: &str = "00f067aa0ba902b7";

/// openai in a full outage (every call a 503), anthropic healthy.
async fn simulator() -> SimHandle {
    let mut config = SimConfig::local();
    config.seed = Some(7);
    let mut openai = SimProvider::new("openai", Api::Openai);
    openai.faults = Faults {
        outage: Some(Outage {
            start_ms: 0,
            duration_ms: None,
        }),
        ..Faults::default()
    };
    config.providers = vec![openai, SimProvider::new("anthropic", Api::Anthropic)];
    Simulator::start(config).await.expect("simulator starts")
}

async fn worker(nats: &NatsServer, sim: &SimHandle, key_file: &std::path::Path) -> Running {
    let key = key_file.display();
    let toml = format!(
        r#"
[nats]
url = "{url}"
[worker]
http_listen = "127.0.0.1:0"
[engine]
hedging = false
[[providers]]
id = "openai"
api = "openai"
base_url = "{openai}"
api_key_file = "{key}"
models = ["gpt-4.1"]
priority = 1
timeout_ms = 3000
daily_budget_usd = 10.0
[[providers]]
id = "anthropic"
api = "anthropic"
base_url = "{anthropic}"
api_key_file = "{key}"
models = ["claude-sonnet-4-5"]
priority = 2
timeout_ms = 3000
cost = {{ input_per_mtok = 3.0, output_per_mtok = 15.0 }}
daily_budget_usd = 5.0
"#,
        url = nats.url(),
        openai = sim.base_url("openai").unwrap(),
        anthropic = sim.base_url("anthropic").unwrap(),
    );
    let cfg = ai_failover::config::load_str(&toml).expect("config");
    runtime::start(Arc::new(cfg), None)
        .await
        .expect("worker starts")
}

async fn wait_ready(http: &reqwest::Client, base: &str) {
    for _ in 0..200 {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("/readyz never became 200");
}

/// Reads SSE frames until one of type `kind` whose data contains `needle`.
async fn next_event(
    body: &mut (impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    buf: &mut String,
    kind: &str,
    needle: &str,
) -> Value {
    let found = async {
        loop {
            while let Some(end) = buf.find("\n\n") {
                let frame: String = buf.drain(..end + 2).collect();
                let mut event = "message";
                let mut data = String::new();
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if event == kind && data.contains(needle) {
                    return serde_json::from_str(&data).expect("event data is JSON");
                }
            }
            let chunk = body.next().await.expect("stream open").expect("chunk");
            buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    tokio::time::timeout(Duration::from_secs(20), found)
        .await
        .unwrap_or_else(|_| panic!("no {kind} event containing {needle:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_port_serves_probes_status_metrics_and_live_failovers() {
    // As `main` does: the OpenTelemetry layer gives the worker's spans the ids that results
    // carry as their parent.
    let _telemetry = ai_failover::telemetry::init(ai_failover::telemetry::Options::default());
    let nats = NatsServer::start();
    let sim = simulator().await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, "sim-key").unwrap();
    let running = worker(&nats, &sim, &key_file).await;
    let addr = running.http_addr.expect("http port is on");
    let base = format!("http://{addr}");
    let http = http();

    // Probes.
    let health = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    wait_ready(&http, &base).await;

    // The dashboard page is the embedded one.
    let page = http.get(&base).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("<section id=\"mode\"") && html.contains("EventSource"));
    assert!(html.contains("id=\"quality\"") && html.contains("/api/ai/failover/quality-summary"));

    // Subscribe to events before causing any, and to results to see their trace context.
    let events = http.get(format!("{base}/api/events")).send().await.unwrap();
    assert_eq!(events.status(), 200);
    assert!(
        events.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut body = events.bytes_stream();
    let mut buf = String::new();
    next_event(&mut body, &mut buf, "ready", "worker_id").await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut results = client.subscribe("ai.analysis.result.>").await.unwrap();
    client.flush().await.unwrap();

    // One request: openai is down, so the worker fails over to anthropic.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", "dash-req-1");
    headers.insert(
        "traceparent",
        format!("00-{TRACE_ID}-{PUBLISHER_SPAN}-01").as_str(),
    );
    let request = json!({
        "request_id": "dash-req-1", "kind": "signal", "symbol": "AAPL",
        "context": { "prices": [1.0, 2.0, 3.0, 4.0] }, "allow_fallback": true
    });
    client
        .publish_with_headers(
            "ai.analysis.request.signal",
            headers,
            serde_json::to_vec(&request).unwrap().into(),
        )
        .await
        .unwrap();
    client.flush().await.unwrap();

    let failover = next_event(&mut body, &mut buf, "failover", "dash-req-1").await;
    assert_eq!(failover["from"]["provider"], "openai");
    assert_eq!(failover["to"]["provider"], "anthropic");
    // The simulator's outage is a 503 that says "overloaded"; either class is a failover.
    assert!(
        ["overloaded", "server_error"].contains(&failover["error_class"].as_str().unwrap()),
        "{failover}"
    );

    // The result continues the publisher's trace, with the worker's span as parent.
    let result = tokio::time::timeout(Duration::from_secs(20), results.next())
        .await
        .expect("a result")
        .unwrap();
    let answer: Value = serde_json::from_slice(&result.payload).unwrap();
    assert_eq!(answer["status"], "ok");
    assert_eq!(answer["provider"], "anthropic");
    let traceparent = result
        .headers
        .as_ref()
        .and_then(|h| h.get("traceparent"))
        .expect("result carries traceparent")
        .as_str()
        .to_string();
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(parts[1], TRACE_ID, "same trace");
    assert_ne!(parts[2], PUBLISHER_SPAN, "parent is the worker's span");

    // A trader reports the outcome: the quality panel's data has it.
    let outcome = json!({"request_id": "dash-req-1", "type": "outcome",
        "at": "2026-11-27T15:00:00Z", "outcome": {"horizon_s": 3600, "return": 0.02}});
    client
        .publish("ai.feedback.signal", outcome.to_string().into())
        .await
        .unwrap();
    let quality = common::eventually(Duration::from_secs(15), "the quality record", async || {
        let q = common::control::get_json(&format!("{base}/api/ai/failover/quality-summary")).await;
        q["records"].as_array().filter(|r| !r.is_empty()).cloned()
    })
    .await;
    assert_eq!(quality[0]["provider"], "anthropic");
    assert_eq!(quality[0]["labelled"], 1);

    // Metrics, once the request is counted.
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics.contains("ai_failover_requests_total") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        metrics.contains(r#"ai_failover_requests_total{status="ok",source="provider""#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"ai_failover_failovers_total{from="openai"}"#));
    assert!(metrics.contains("ai_failover_breaker_state{provider="));

    // Status: shape, and the openai failure recorded in the shared record.
    let mut status = Value::Null;
    for _ in 0..100 {
        status = http
            .get(format!("{base}/api/status"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let openai_failures = status["providers"][0]["record"]["consecutive_failures"]
            .as_u64()
            .unwrap_or(0);
        if openai_failures > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status["worker_id"], running.worker_id());
    assert_eq!(status["ready"], true);
    assert!(status["mode"].is_string(), "{status}");
    let providers = status["providers"].as_array().expect("providers");
    assert_eq!(providers.len(), 2);
    assert_eq!(providers[0]["id"], "openai");
    assert_eq!(providers[1]["id"], "anthropic");
    for p in providers {
        for field in [
            "status",
            "breaker",
            "success_rate",
            "spend_today_usd",
            "daily_budget_usd",
        ] {
            assert!(!p[field].is_null(), "{field} missing in {p}");
        }
    }
    assert!(
        providers[0]["record"]["consecutive_failures"].as_u64() > Some(0),
        "{status}"
    );

    // History has the failover for a dashboard opened later.
    let history = common::control::get_json(&format!("{base}/api/history?limit=20")).await;
    assert!(
        history
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "failover" && e["event"]["request_id"] == "dash-req-1"),
        "{history}"
    );

    browser_renders(&base).await;

    drop(body);
    running.stop().await;
    // After stop the port may be gone or answer not ready; either way, never "ready".
    if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
        assert_ne!(r.status(), 200);
    }
    sim.shutdown().await;
}

/// The page's JavaScript renders cards, mode and the failover in a real headless browser.
async fn browser_renders(base: &str) {
    let chromium = std::path::Path::new("/usr/bin/chromium");
    if !chromium.exists() {
        println!("SKIPPED browser check: /usr/bin/chromium is not installed");
        return;
    }
    let profile = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--virtual-time-budget=8000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        // A bounded live feed: the browser waits for open requests before its clock moves.
        .arg(format!("{base}/?live_ms=3000"))
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("chromium finished")
        .expect("chromium ran");
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains(r#"class="card" data-provider="openai""#),
        "no openai card:\n{dom}"
    );
    assert!(dom.contains(r#"class="card" data-provider="anthropic""#));
    assert!(
        !dom.contains(r#"<section id="mode" data-mode="">"#),
        "mode not rendered"
    );
    assert!(
        dom.contains(r#"data-request-id="dash-req-1""#),
        "no failover row:\n{dom}"
    );
    assert!(
        dom.contains(r#"class="quality-row" data-provider="anthropic""#),
        "no quality row:\n{dom}"
    );
}
