//! The REST API (`/api/ai/failover/...`) on a worker's HTTP port, against a real nats-server:
//! bearer tokens and roles (401, 403, 200), the same answers as the NATS endpoints, clear
//! errors for bad bodies, every call in the audit trail, and the dashboard behind a token.
// Tests may panic: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use ai_failover::contract::{AuditChannel, AuditOutcome, AuditRecord, Mode, Names, StatusReply};
use async_nats::jetstream;
use common::control::http;
use common::nats::NatsServer;
use common::workers::{TestWorker, fleet, start_worker_with};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

const VIEWER_TOKEN: &str = "viewer-token-8c1f0e7d2a";
const OPERATOR_TOKEN: &str = "operator-token-5b9e33c1f4";

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

/// The REST API of one worker.
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn new(w: &TestWorker) -> Api {
        Api {
            http: http(),
            base: format!("http://{}", w.running.http_addr.unwrap()),
        }
    }

    /// `GET /api/ai/failover/<path>` with `token`: the status and the JSON body.
    async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let mut request = self
            .http
            .get(format!("{}/api/ai/failover/{path}", self.base));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        Self::read(request).await
    }

    /// `POST /api/ai/failover/<path>` with `token` and a JSON body.
    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        let mut request = self
            .http
            .post(format!("{}/api/ai/failover/{path}", self.base))
            .json(&body);
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        Self::read(request).await
    }

    async fn read(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.send().await.unwrap();
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED {
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
        }
        (status, response.json().await.unwrap_or(Value::Null))
    }
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
    let api = Api::new(&w);
    let base = api.base.clone();
    let http = http();
    let nats = async_nats::connect(server.url()).await.unwrap();
    let (viewer, operator) = (Some(VIEWER_TOKEN), Some(OPERATOR_TOKEN));

    // No token, a wrong token: 401, with the scheme to use.
    assert_eq!(api.get("status", None).await.0, StatusCode::UNAUTHORIZED);
    let wrong = Some("viewer-token-8c1f0e7d2b");
    assert_eq!(api.get("status", wrong).await.0, StatusCode::UNAUTHORIZED);

    // The viewer reads, and gets what the NATS endpoint answers.
    let (code, status) = api.get("status", viewer).await;
    assert_eq!(code, StatusCode::OK);
    let status: StatusReply = serde_json::from_value(status).unwrap();
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
        let (code, body) = api.get(path, viewer).await;
        assert_eq!(code, StatusCode::OK, "{path}: {body}");
    }
    let (_, best) = api.get("best-provider?providers=backup", viewer).await;
    assert_eq!(best["provider"], "backup");

    // ... but cannot change anything: 403 with a viewer token, 401 without one.
    let drill = json!({"mode": "suspended", "reason": "viewer tries"});
    assert_eq!(
        api.post("mode", viewer, drill).await.0,
        StatusCode::FORBIDDEN
    );
    let down = json!({"provider": "primary", "status": "down"});
    assert_eq!(
        api.post("force-status", None, down).await.0,
        StatusCode::UNAUTHORIZED
    );

    // The operator changes; a bad body is a 400 naming the field, and changes nothing.
    let colored = json!({"provider": "primary", "status": "down", "color": "red"});
    let (code, body) = api.post("force-status", operator, colored).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("color"), "{body}");
    let panic = json!({"mode": "panic", "reason": "x"});
    assert_eq!(
        api.post("mode", operator, panic).await.0,
        StatusCode::BAD_REQUEST
    );
    let incident = json!({"provider": "primary", "status": "down", "reason": "vendor incident"});
    let (code, forced) = api.post("force-status", operator, incident).await;
    assert_eq!(code, StatusCode::OK, "{forced}");
    assert_eq!(forced["record"]["forced"]["status"], "down");
    let hold = json!({"mode": "conservative", "reason": "volatile open", "ttl_ms": 600000});
    let (code, set) = api.post("mode", operator, hold).await;
    assert_eq!(code, StatusCode::OK, "{set}");
    assert_eq!(set["mode"], "conservative");
    assert_eq!(set["manual"]["actor"]["token_id"], "on-call");
    let (_, status) = api.get("status", viewer).await;
    assert_eq!(status["mode"], "conservative");

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
    let api = Api::new(&w);
    assert_eq!(api.get("health-summary", None).await.0, StatusCode::OK);
    for path in [
        "mode",
        "force-status",
        "health-check",
        "start-monitoring",
        "test-failover",
    ] {
        let (code, _) = api.post(path, None, json!({})).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{path}");
    }
    let dashboard = api.http.get(format!("{}/", api.base)).send().await.unwrap();
    assert_eq!(dashboard.status(), StatusCode::OK);
    w.running.stop().await;
}
