//! The roles of `deploy/nats/server.conf`, enforced by a real nats-server: a trader can do
//! its job and nothing else, a viewer reads but cannot change, an operator can do everything
//! and is named in the audit trail by the server-stamped identity.
// Tests may panic: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use ai_failover::contract::{
    AuditChannel, AuditOutcome, AuditRecord, Endpoint, ForcedStatus, Mode, ModeEvent, ModeSetReply,
    Names, ProviderHealthRecord, Role, Status, StatusReply,
};
use async_nats::jetstream;
use common::control::{call, call_raw, error_code};
use common::nats::NatsServer;
use common::workers::{ask, ask_with, fleet, signal, start_worker_with};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

const USERS: [&str; 6] = ["worker", "trader", "viewer", "operator", "acme", "globex"];
const WAIT: Duration = Duration::from_secs(10);

fn conf() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/nats/server.conf")
}

fn password_var(user: &str) -> String {
    format!("AI_FAILOVER_{}_PASSWORD", user.to_uppercase())
}

/// A client connected as `user`, and the server's errors to it (permission violations).
struct Caller {
    client: async_nats::Client,
    errors: UnboundedReceiver<String>,
}

impl Caller {
    async fn connect(url: &str, user: &str, password: &str) -> Caller {
        let (tx, errors) = unbounded_channel();
        let client =
            async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
                .name(format!("roles-test {user}"))
                .event_callback(move |event| {
                    let tx = tx.clone();
                    async move {
                        if let async_nats::Event::ServerError(e) = event {
                            let _ = tx.send(e.to_string());
                        }
                    }
                })
                .connect(url)
                .await
                .unwrap_or_else(|e| panic!("{user} connects: {e}"));
        Caller { client, errors }
    }

    /// Waits for the server to refuse an action on `subject`.
    async fn refused(&mut self, what: &str, subject: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let e = tokio::time::timeout_at(deadline, self.errors.recv())
                .await
                .unwrap_or_else(|_| panic!("{what}: the server did not refuse {subject}"))
                .expect("error channel open");
            if e.to_lowercase().contains("permissions violation") && e.contains(subject) {
                return;
            }
        }
    }

    /// Publishes to `subject` (with a reply inbox, as a request would) and waits for the
    /// server's refusal.
    async fn publish_refused(&mut self, what: &str, subject: &str, body: &str) {
        let inbox = self.client.new_inbox();
        self.client
            .publish_with_reply(subject.to_string(), inbox, body.to_string().into())
            .await
            .unwrap();
        self.client.flush().await.unwrap();
        self.refused(what, subject).await;
    }

    /// A control call that must succeed.
    async fn control<T: serde::de::DeserializeOwned>(&self, endpoint: &str, body: Value) -> T {
        call(&self.client, &Names::default(), endpoint, body).await
    }

    async fn control_raw(&self, endpoint: &str, body: Value) -> async_nats::Message {
        call_raw(&self.client, &Names::default(), endpoint, &body.to_string()).await
    }
}

/// Runs `ai-failover audit --json --since 1h` with `config`.
fn audit_cli(config: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ai-failover"))
        .args(["audit", "--json", "--since", "1h", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

/// A client config file for `user` in `dir`.
fn client_config(dir: &std::path::Path, url: &str, user: &str) -> PathBuf {
    let path = dir.join(format!("{user}.toml"));
    std::fs::write(
        &path,
        fleet(url, "ai")
            .set("nats", "user", &format!("\"{user}\""))
            .set(
                "nats",
                "password_env",
                &format!("\"{}\"", password_var(user)),
            )
            .toml(),
    )
    .unwrap();
    path
}

/// The server checks the passwords; the workers' config names the variable holding its own.
#[test]
fn each_role_can_do_its_job_and_nothing_else() {
    let passwords: Vec<(String, String)> = USERS
        .iter()
        .map(|u| (password_var(u), uuid::Uuid::new_v4().simple().to_string()))
        .collect();
    common::control::with_env(&passwords.clone(), || roles(passwords));
}

async fn roles(passwords: Vec<(String, String)>) {
    let pw = |user: &str| {
        let var = password_var(user);
        passwords.iter().find(|(v, _)| *v == var).unwrap().1.clone()
    };
    let server = NatsServer::start_with_env(
        vec!["-c".into(), conf().display().to_string()],
        passwords.clone(),
    );
    let url = server.url();
    let names = Names::default();
    let mut cfg = fleet(&url, "ai")
        .set("nats", "user", "\"worker\"")
        .set("nats", "password_env", "\"AI_FAILOVER_WORKER_PASSWORD\"")
        .set("control", "require_identity", "true")
        .set("control", "operators", "[\"operator\"]")
        .load_for_client();
    cfg.worker.id = Some("w1".into());
    let w = start_worker_with(cfg).await;

    let worker = Caller::connect(&url, "worker", &pw("worker")).await;
    let mut trader = Caller::connect(&url, "trader", &pw("trader")).await;
    let mut viewer = Caller::connect(&url, "viewer", &pw("viewer")).await;
    let operator = Caller::connect(&url, "operator", &pw("operator")).await;
    let health = jetstream::new(worker.client.clone())
        .get_key_value(names.health_bucket())
        .await
        .unwrap();

    // ----- the trader: requests in, results out, and nothing else ---------------------
    let mut results = trader
        .client
        .subscribe(names.results_filter())
        .await
        .unwrap();
    let answer = ask(&trader.client, &names, "AAPL").await;
    assert_eq!(answer.status, Status::Ok);
    let published = tokio::time::timeout(WAIT, results.next())
        .await
        .expect("the result on the results subject")
        .unwrap();
    assert_eq!(published.subject.as_str(), names.result(answer.kind));
    // ... and reports what became of the advice.
    let outcome = json!({"request_id": answer.request_id, "type": "outcome",
        "at": "2026-11-27T15:00:00Z", "outcome": {"horizon_s": 60, "return": 0.01}});
    jetstream::new(trader.client.clone())
        .publish(names.feedback(answer.kind), outcome.to_string().into())
        .await
        .unwrap()
        .await
        .expect("the feedback stream takes a trader's report");
    for (what, subject) in [
        ("control", "ai.control.status".to_string()),
        ("a KV record", "$KV.ai_provider_health.primary".into()),
        ("an event", "ai.events.mode".into()),
        (
            "stream administration",
            "$JS.API.STREAM.DELETE.AI_REQUESTS".into(),
        ),
        (
            "reading a bucket",
            "$JS.API.STREAM.INFO.KV_ai_provider_health".into(),
        ),
        ("an audit record", "ai.audit.force-status".into()),
    ] {
        trader.publish_refused(what, &subject, "{}").await;
    }
    let _events = trader.client.subscribe("ai.events.>").await.unwrap();
    trader.refused("reading events", "ai.events.>").await;
    // A reply_to aimed at a KV record: the worker dead-letters it and publishes nothing.
    let before = health.entry("primary").await.unwrap().map(|e| e.revision);
    let mut probe = signal("PROBE");
    probe.reply_to = Some("$KV.ai_provider_health.primary".into());
    let js = jetstream::new(trader.client.clone());
    js.publish(
        names.request(probe.kind),
        serde_json::to_vec(&probe).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let dead = jetstream::new(worker.client.clone())
        .get_stream(names.dead_letter_stream())
        .await
        .unwrap();
    common::eventually(WAIT, "the probe to be dead-lettered", async || {
        dead.clone()
            .info()
            .await
            .is_ok_and(|i| i.state.messages >= 1)
    })
    .await;
    assert_eq!(
        health.entry("primary").await.unwrap().map(|e| e.revision),
        before,
        "nothing was written to the KV record"
    );

    // ----- the viewer: reads, cannot change ---------------------------------------------
    let mut mode_events = viewer.client.subscribe("ai.events.mode").await.unwrap();
    viewer.client.flush().await.unwrap();
    let status: StatusReply = viewer.control("status", json!({})).await;
    assert_eq!(status.mode, Mode::Normal);
    common::eventually(
        WAIT,
        "the trader's outcome in the viewer's quality summary",
        async || {
            let q: ai_failover::contract::QualitySummaryReply =
                viewer.control("quality-summary", json!({})).await;
            q.records.iter().any(|r| r.labelled == 1)
        },
    )
    .await;
    for endpoint in Endpoint::ALL.iter().filter(|e| e.role() == Role::Operator) {
        let subject = names.control(endpoint.name());
        viewer
            .publish_refused(endpoint.name(), &subject, "{}")
            .await;
    }

    // ----- the operator: changes, named in the trail --------------------------------------
    let forced: ai_failover::contract::ForceStatusReply = operator
        .control(
            "force-status",
            json!({"provider": "primary", "status": "down", "reason": "maintenance"}),
        )
        .await;
    assert_eq!(forced.record.forced.unwrap().status, ForcedStatus::Down);
    let set: ModeSetReply = operator
        .control("mode.set", json!({"mode": "suspended", "reason": "drill"}))
        .await;
    assert_eq!(set.mode, Mode::Suspended);
    // The viewer sees it announced, with the operator's identity from the server.
    let announced = loop {
        let msg = tokio::time::timeout(WAIT, mode_events.next())
            .await
            .expect("a mode event")
            .unwrap();
        let e: ModeEvent = serde_json::from_slice(&msg.payload).unwrap();
        if e.mode == Mode::Suspended {
            break e;
        }
    };
    let actor = announced.actor.expect("the event names who set it");
    assert!(actor.verified);
    assert_eq!(actor.user.as_deref(), Some("operator"));
    assert_eq!(actor.account.as_deref(), Some("OPS"));
    // The whole fleet holds it: the trader's next request is refused, not sent.
    let refused = ask_with(&trader.client, &names, signal("MSFT")).await;
    assert_eq!(refused.status, Status::Rejected);
    assert_eq!(
        viewer
            .control::<StatusReply>("status", json!({}))
            .await
            .mode,
        Mode::Suspended
    );
    let cleared: ModeSetReply = operator
        .control("mode.set", json!({"mode": "auto", "reason": "drill over"}))
        .await;
    assert_ne!(cleared.mode, Mode::Suspended);
    assert!(cleared.manual.is_none());

    // A caller the server did not vouch for (same account as the workers): refused by the
    // service, and audited as such.
    let denied = worker.control_raw("status", json!({})).await;
    assert_eq!(error_code(&denied).as_deref(), Some("403"));

    // ----- the audit trail, read as the operator with the CLI -----------------------------
    let dir = tempfile::tempdir().unwrap();
    let out = audit_cli(&client_config(dir.path(), &url, "operator"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "audit as operator: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records: Vec<AuditRecord> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let find = |endpoint: &str, outcome: AuditOutcome| {
        records
            .iter()
            .find(|r| r.endpoint == endpoint && r.outcome == outcome)
            .unwrap_or_else(|| panic!("no {endpoint} {outcome:?} record in {records:#?}"))
    };
    for endpoint in ["force-status", "mode.set"] {
        let r = find(endpoint, AuditOutcome::Ok);
        assert!(r.actor.verified, "{r:?}");
        assert_eq!(r.actor.user.as_deref(), Some("operator"));
        assert_eq!(r.channel, AuditChannel::Nats);
        assert_eq!(r.worker_id, "w1");
    }
    assert_eq!(
        find("mode.set", AuditOutcome::Ok).arguments["reason"],
        "drill"
    );
    let read = find("status", AuditOutcome::Ok);
    assert_eq!(read.actor.user.as_deref(), Some("viewer"));
    let unverified = find("status", AuditOutcome::Denied);
    assert!(!unverified.actor.verified);
    // Refused by the server, the viewer's and trader's attempts never reached a worker.
    assert!(
        records
            .iter()
            .all(|r| r.actor.user.as_deref() != Some("trader")
                && !(r.actor.user.as_deref() == Some("viewer") && r.outcome != AuditOutcome::Ok)),
        "{records:#?}"
    );

    // The viewer may not read the trail.
    let out = audit_cli(&client_config(dir.path(), &url, "viewer"));
    assert!(!out.status.success(), "a viewer read the audit trail");
    assert!(out.stdout.is_empty());

    let record: ProviderHealthRecord =
        serde_json::from_slice(&health.get("primary").await.unwrap().unwrap()).unwrap();
    assert_eq!(record.provider, "primary");
    w.running.stop().await;
}

/// The file's viewer may publish exactly the viewer endpoints: it and `Endpoint::role` are
/// one table written twice, and this keeps them the same.
#[test]
fn the_viewers_permissions_match_the_endpoint_roles() {
    let text = std::fs::read_to_string(conf()).unwrap();
    let start = text.find("user: viewer").expect("a viewer user");
    let end = start
        + text[start..]
            .find("user: operator")
            .expect("then an operator");
    let viewer = &text[start..end];
    for e in Endpoint::ALL {
        let subject = format!("\"ai.control.{}\"", e.name());
        assert_eq!(
            viewer.contains(&subject),
            e.role() == Role::Viewer,
            "{subject} in the viewer's permissions"
        );
    }
}
