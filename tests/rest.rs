//! The REST API (`/api/ai/failover/...`) on a worker's HTTP port, against a real nats-server:
//! bearer tokens and roles (401, 403, 200), the same answers as the NATS endpoints, clear
//! errors for bad bodies, every call in the audit trail, and the dashboard behind a token.
// Tests may panic: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use ai_failover::contract::{AuditChannel, AuditOutcome, AuditRecord, Mode, Names, StatusReply};
use async_nats::jetstream;
use common::nats::NatsServer;
use common::workers::{fleet, start_worker_with};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

const VIEWER_TOKEN: &str = "viewer-token-8c1f0e7d2a";
const OPERATOR_TOKEN: &str = "operator-token-5b9e33c1f4";

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Every audit record stored so far.
async fn audit_records(client: &async_nats::Client) -> Vec<AuditRecord> {
    let stream = jetstream::new(client.clone())
        .get_stream(Names::default().audit_stream())
        .await
        .unwrap();
    let total = stream.clone().info().await.unwrap().state.messages;
    let mut records = Vec::new();
    for seq in 1..=total {
        let msg = stream.get_raw_message(seq).await.unwrap();
        records.push(serde_json::from_slice(&msg.payload).unwrap());
    }
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_decide_who_reads_and_who_changes_and_every_call_is_audited() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, token: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("{token}\n")).unwrap();
        path.display().to_string()
    };
    let tokens = format!(
        r#"[{{ id = "dashboard", token_file = "{}", role = "viewer" }}, {{ id = "on-call", token_file = "{}", role = "operator" }}]"#,
        file("viewer", VIEWER_TOKEN),
        file("operator", OPERATOR_TOKEN)
    );
    let mut cfg = fleet(&server.url(), "ai")
        .set("worker", "http_listen", "\"127.0.0.1:0\"")
        .set("http", "tokens", &tokens)
        .load_for_client();
    cfg.worker.id = Some("w1".into());
    let w = start_worker_with(cfg).await;
    let base = format!("http://{}", w.running.http_addr.unwrap());
    let api = |path: &str| format!("{base}/api/ai/failover/{path}");
    let http = http();
    let nats = async_nats::connect(server.url()).await.unwrap();

    // No token, a wrong token: 401, with the scheme to use.
    let none = http.get(api("status")).send().await.unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(none.headers()["www-authenticate"], "Bearer");
    let wrong = http
        .get(api("status"))
        .bearer_auth("viewer-token-8c1f0e7d2b")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    // The viewer reads, and gets what the NATS endpoint answers.
    let status: StatusReply = http
        .get(api("status"))
        .bearer_auth(VIEWER_TOKEN)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status.mode, Mode::Normal);
    let ids: Vec<&str> = status
        .providers
        .iter()
        .map(|r| r.provider.as_str())
        .collect();
    assert_eq!(ids, ["primary", "backup"]);
    for path in [
        "best-provider?kind=signal&providers=backup,primary",
        "failover-history?limit=5",
        "health-summary",
    ] {
        let r = http
            .get(api(path))
            .bearer_auth(VIEWER_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "{path}: {}",
            r.text().await.unwrap()
        );
    }
    let best: Value = http
        .get(api("best-provider?providers=backup"))
        .bearer_auth(VIEWER_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(best["provider"], "backup");

    // ... but cannot change anything: 403, and nothing changed.
    let forbidden = http
        .post(api("mode"))
        .bearer_auth(VIEWER_TOKEN)
        .json(&json!({"mode": "suspended", "reason": "viewer tries"}))
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    let no_token_change = http
        .post(api("force-status"))
        .json(&json!({"provider": "primary", "status": "down"}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_token_change.status(), StatusCode::UNAUTHORIZED);

    // The operator changes; a bad body is a 400 naming the field, and changes nothing.
    let unknown_field = http
        .post(api("force-status"))
        .bearer_auth(OPERATOR_TOKEN)
        .json(&json!({"provider": "primary", "status": "down", "color": "red"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown_field.status(), StatusCode::BAD_REQUEST);
    let body: Value = unknown_field.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("color"), "{body}");
    let unknown_mode = http
        .post(api("mode"))
        .bearer_auth(OPERATOR_TOKEN)
        .json(&json!({"mode": "panic", "reason": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown_mode.status(), StatusCode::BAD_REQUEST);
    let forced: Value = http
        .post(api("force-status"))
        .bearer_auth(OPERATOR_TOKEN)
        .json(&json!({"provider": "primary", "status": "down", "reason": "vendor incident"}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(forced["record"]["forced"]["status"], "down");
    let set: Value = http
        .post(api("mode"))
        .bearer_auth(OPERATOR_TOKEN)
        .json(&json!({"mode": "conservative", "reason": "volatile open", "ttl_ms": 600000}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(set["mode"], "conservative");
    assert_eq!(set["manual"]["actor"]["token_id"], "on-call");
    let status: StatusReply = http
        .get(api("status"))
        .bearer_auth(VIEWER_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status.mode, Mode::Conservative);

    // Every call above reached the trail, under the NATS endpoint's name.
    let records = audit_records(&nats).await;
    let count = |endpoint: &str, outcome: AuditOutcome, token: Option<&str>| {
        records
            .iter()
            .filter(|r| {
                r.endpoint == endpoint
                    && r.outcome == outcome
                    && r.actor.token_id.as_deref() == token
                    && r.channel == AuditChannel::Rest
            })
            .count()
    };
    assert_eq!(
        count("status", AuditOutcome::Denied, None),
        2,
        "{records:#?}"
    );
    assert_eq!(count("status", AuditOutcome::Ok, Some("dashboard")), 2);
    assert_eq!(
        count("mode.set", AuditOutcome::Denied, Some("dashboard")),
        1
    );
    assert_eq!(count("force-status", AuditOutcome::Denied, None), 1);
    assert_eq!(
        count("force-status", AuditOutcome::Error, Some("on-call")),
        1
    );
    assert_eq!(count("mode.set", AuditOutcome::Error, Some("on-call")), 1);
    assert_eq!(count("force-status", AuditOutcome::Ok, Some("on-call")), 1);
    let set = records
        .iter()
        .find(|r| r.endpoint == "mode.set" && r.outcome == AuditOutcome::Ok)
        .unwrap();
    assert_eq!(set.arguments["reason"], "volatile open");
    assert!(set.actor.verified);
    let text = serde_json::to_string(&records).unwrap();
    assert!(
        !text.contains(OPERATOR_TOKEN) && !text.contains(VIEWER_TOKEN),
        "a token reached the trail"
    );

    // The probes stay open; the dashboard and its data need a viewer token.
    for open in ["/healthz", "/metrics"] {
        let r = http.get(format!("{base}{open}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{open}");
    }
    for closed in ["/", "/api/status", "/api/history"] {
        let r = http.get(format!("{base}{closed}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{closed}");
        let r = http
            .get(format!("{base}{closed}?access_token={VIEWER_TOKEN}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{closed} with a token");
    }
    let mut events = http
        .get(format!("{base}/api/events?max_ms=200"))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .unwrap()
        .bytes_stream();
    while events.next().await.is_some() {}
    w.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tokens_the_api_reads_but_never_changes() {
    let server = NatsServer::start();
    let mut cfg = fleet(&server.url(), "ai")
        .set("worker", "http_listen", "\"127.0.0.1:0\"")
        .load_for_client();
    cfg.worker.id = Some("w1".into());
    let w = start_worker_with(cfg).await;
    let base = format!("http://{}/api/ai/failover", w.running.http_addr.unwrap());
    let http = http();
    let read = http
        .get(format!("{base}/health-summary"))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    for path in [
        "mode",
        "force-status",
        "health-check",
        "start-monitoring",
        "test-failover",
    ] {
        let r = http
            .post(format!("{base}/{path}"))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    let dashboard = http
        .get(format!("http://{}/", w.running.http_addr.unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(dashboard.status(), StatusCode::OK);
    w.running.stop().await;
}
