//! Tenants, with a real nats-server running `deploy/nats/server.conf`: the server's account
//! mappings name the tenant, each tenant sees only its own results and replies, equal
//! request ids of two tenants never meet, a quota holds across three workers, a tenant's
//! provider order is obeyed, and its terms are reloaded from the config file without a
//! restart (a new tenant's queue included).
// Tests may panic: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use ai_failover::config;
use ai_failover::contract::{AnalysisResult, ErrorClass, Names, Status};
use async_nats::jetstream;
use common::fleet::publish_raw;
use common::nats::NatsServer;
use common::workers::{TestWorker, fleet, signal, start_worker_with};
use futures::StreamExt;

const USERS: [&str; 6] = ["worker", "trader", "viewer", "operator", "acme", "globex"];
const WAIT: Duration = Duration::from_secs(20);

fn conf() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/nats/server.conf")
}

fn password_var(user: &str) -> String {
    format!("AI_FAILOVER_{}_PASSWORD", user.to_uppercase())
}

async fn connect(url: &str, user: &str) -> async_nats::Client {
    let password = std::env::var(password_var(user)).unwrap();
    async_nats::ConnectOptions::with_user_and_password(user.into(), password)
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("{user} connects: {e}"))
}

/// Publishes a signal request `id` as whoever `client` is, on the plain subject (the server
/// maps a tenant's), optionally with a `reply_to`.
async fn send(client: &async_nats::Client, id: &str, reply_to: Option<&str>) {
    let mut request = signal("AAPL");
    request.request_id = id.to_string();
    request.reply_to = reply_to.map(str::to_string);
    let js = jetstream::new(client.clone());
    let names = Names::default();
    publish_raw(
        &js,
        names.request(request.kind),
        id,
        serde_json::to_vec(&request).unwrap(),
    )
    .await;
}

/// A subscription to `tenant`'s results as the fleet's account sees them.
async fn tenant_results(client: &async_nats::Client, tenant: &str) -> async_nats::Subscriber {
    let sub = client
        .subscribe(format!("ai.tenant.{tenant}.analysis.result.>"))
        .await
        .unwrap();
    client.flush().await.unwrap();
    sub
}

/// The next `n` results on `sub`.
async fn results(sub: &mut async_nats::Subscriber, n: usize) -> Vec<AnalysisResult> {
    let mut out = Vec::new();
    while out.len() < n {
        let msg = tokio::time::timeout(WAIT, sub.next())
            .await
            .unwrap_or_else(|_| panic!("{} of {n} results", out.len()))
            .unwrap();
        out.push(serde_json::from_slice(&msg.payload).unwrap());
    }
    out
}

const TENANTS: &str = r#"
[[tenants]]
id = "acme"
providers = ["backup", "primary"]
max_requests_per_minute = 10

[[tenants]]
id = "globex"
"#;

#[test]
fn tenants_are_isolated_and_a_quota_holds_across_three_workers() {
    let passwords: Vec<(String, String)> = USERS
        .iter()
        .map(|u| (password_var(u), uuid::Uuid::new_v4().simple().to_string()))
        .collect();
    common::control::with_env(&passwords.clone(), || isolated(passwords));
}

async fn isolated(passwords: Vec<(String, String)>) {
    let server =
        NatsServer::start_with_env(vec!["-c".into(), conf().display().to_string()], passwords);
    let url = server.url();
    let toml = format!(
        "{}\n{TENANTS}",
        fleet(&url, "ai")
            .set("nats", "user", "\"worker\"")
            .set("nats", "password_env", "\"AI_FAILOVER_WORKER_PASSWORD\"")
            .toml()
    );
    let mut workers: Vec<TestWorker> = Vec::new();
    for i in 0..3 {
        let mut cfg = config::load_str_for_client(&toml).unwrap();
        cfg.worker.id = Some(format!("w{i}"));
        workers.push(start_worker_with(cfg).await);
    }
    let acme = connect(&url, "acme").await;
    let globex = connect(&url, "globex").await;
    let trader = connect(&url, "trader").await;
    let mut acme_results = acme.subscribe("ai.analysis.result.>").await.unwrap();
    let mut acme_replies = acme.subscribe("_INBOX.acme-test.>").await.unwrap();
    let mut globex_results = globex.subscribe("ai.analysis.result.>").await.unwrap();
    let mut trader_results = trader.subscribe("ai.analysis.result.>").await.unwrap();
    for c in [&acme, &globex, &trader] {
        c.flush().await.unwrap();
    }

    // The same request ids from both tenants, at the same time: 12 each.
    let ids: Vec<String> = (0..12).map(|i| format!("same-id-{i}")).collect();
    let reply = "_INBOX.acme-test.1";
    let (a, g) = (acme.clone(), globex.clone());
    let (ids_a, ids_g) = (ids.clone(), ids.clone());
    let sent_a = tokio::spawn(async move {
        for (i, id) in ids_a.iter().enumerate() {
            send(&a, id, (i == 0).then_some(reply)).await;
        }
    });
    let sent_g = tokio::spawn(async move {
        for id in &ids_g {
            send(&g, id, None).await;
        }
    });
    sent_a.await.unwrap();
    sent_g.await.unwrap();

    let mine = results(&mut acme_results, 12).await;
    let theirs = results(&mut globex_results, 12).await;
    // Each tenant got exactly its own twelve, nobody else's.
    assert!(
        mine.iter().all(|r| r.tenant.as_deref() == Some("acme")),
        "{mine:?}"
    );
    assert!(
        theirs.iter().all(|r| r.tenant.as_deref() == Some("globex")),
        "{theirs:?}"
    );
    for got in [&mine, &theirs] {
        let mut seen: Vec<&str> = got.iter().map(|r| r.request_id.as_str()).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 12, "every request answered once");
    }
    // acme's quota: 10 admitted over three workers, not 30; the rest refused unpaid.
    let admitted: Vec<&AnalysisResult> = mine.iter().filter(|r| r.status == Status::Ok).collect();
    let refused: Vec<&AnalysisResult> = mine
        .iter()
        .filter(|r| {
            r.error
                .as_ref()
                .is_some_and(|e| e.class == ErrorClass::QuotaExceeded)
        })
        .collect();
    assert_eq!((admitted.len(), refused.len()), (10, 2), "{mine:?}");
    assert!(
        refused
            .iter()
            .all(|r| r.status == Status::Rejected && r.attempts.is_empty())
    );
    // acme prefers backup; globex (no terms) follows the priority: primary.
    assert!(
        admitted
            .iter()
            .all(|r| r.provider.as_deref() == Some("backup")),
        "{admitted:?}"
    );
    assert!(
        theirs
            .iter()
            .all(|r| r.status == Status::Ok && r.provider.as_deref() == Some("primary"))
    );
    let calls = |f: fn(&TestWorker) -> usize| workers.iter().map(f).sum::<usize>();
    assert_eq!(
        calls(|w| w.backup.calls()),
        10,
        "no call for a refused request"
    );
    assert_eq!(calls(|w| w.primary.calls()), 12);
    // The reply went to acme's own inbox, through its account.
    let replied = results(&mut acme_replies, 1).await;
    assert_eq!(replied[0].request_id, ids[0]);
    assert_eq!(replied[0].tenant.as_deref(), Some("acme"));
    // Both report an outcome for the same request id with the same message id: each is kept
    // (a stream of its own per tenant) and joined to its own tenant's signal.
    let reported = admitted[0].request_id.clone();
    for (client, ret) in [(&acme, 0.01), (&globex, -0.02)] {
        let report = serde_json::json!({"request_id": reported, "type": "outcome",
            "at": "2026-11-28T10:00:00Z", "outcome": {"horizon_s": 60, "return": ret}});
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("{reported}:outcome:60").as_str());
        let ack = jetstream::new(client.clone())
            .publish_with_headers("ai.feedback.signal", headers, report.to_string().into())
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(
            !ack.duplicate,
            "one tenant's report never suppresses another's"
        );
    }
    let worker_client = connect(&url, "worker").await;
    let signals = jetstream::new(worker_client)
        .get_key_value("ai_signals")
        .await
        .unwrap();
    for (tenant, ret) in [("acme", 0.01), ("globex", -0.02)] {
        let key = format!("{tenant}.{reported}");
        let joined = common::eventually(WAIT, "the outcome joined", async || {
            let v = signals.get(key.as_str()).await.ok()??;
            let s: ai_failover::contract::SignalRecord = serde_json::from_slice(&v).ok()?;
            s.outcomes.first().map(|o| o.return_)
        })
        .await;
        assert_eq!(joined, ret, "{tenant}");
    }
    // Nothing of theirs reached the default tenant's trader, nor another tenant's.
    for sub in [&mut trader_results, &mut globex_results, &mut acme_results] {
        let more = tokio::time::timeout(Duration::from_millis(500), sub.next()).await;
        assert!(more.is_err(), "an unexpected result: {more:?}");
    }
    for w in workers {
        w.running.stop().await;
    }
}

/// Publishes request `id` of `tenant` straight onto its mapped subject (no accounts here).
async fn send_as(js: &jetstream::Context, tenant: &str, id: &str) {
    send_as_with(js, tenant, id, id).await;
}

/// [`send_as`] with its own `Nats-Msg-Id` (a duplicate the stream does not catch).
async fn send_as_with(js: &jetstream::Context, tenant: &str, id: &str, msg_id: &str) {
    let mut request = signal("MSFT");
    request.request_id = id.to_string();
    let subject = format!("ai.tenant.{tenant}.analysis.request.signal");
    publish_raw(js, subject, msg_id, serde_json::to_vec(&request).unwrap()).await;
}

fn write_config(path: &std::path::Path, base: &str, tenants: &str) {
    // Written whole, then renamed: the reload never reads half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{base}\n{tenants}")).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn tenant_terms_are_reloaded_without_a_restart() {
    let key = (
        "AI_FAILOVER_TEST_NEVER_SET_KEY".to_string(),
        "sk-test".to_string(),
    );
    common::control::with_env(&[key], reloaded);
}

async fn reloaded() {
    let server = NatsServer::start();
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("worker.toml");
    let base = fleet(&url, "ai").toml();
    let quota = |n: u32| format!("[[tenants]]\nid = \"acme\"\nmax_requests_per_minute = {n}\n");
    write_config(&path, &base, &quota(2));
    let mut cfg = config::load(&path).unwrap();
    cfg.worker.id = Some("w1".into());
    let worker = start_worker_with(cfg).await;
    let client = async_nats::connect(&url).await.unwrap();
    let js = jetstream::new(client.clone());
    let mut acme = tenant_results(&client, "acme").await;

    for id in ["a1", "a2", "a3"] {
        send_as(&js, "acme", id).await;
    }
    let got = results(&mut acme, 3).await;
    let statuses: HashMap<&str, Status> = got
        .iter()
        .map(|r| (r.request_id.as_str(), r.status))
        .collect();
    assert_eq!(
        statuses.values().filter(|s| **s == Status::Ok).count(),
        2,
        "{got:?}"
    );
    // The same request again (past the stream's de-duplication): the stored answer is
    // replayed to the tenant's subject, nothing is called again, no quota is used.
    let calls = worker.primary.calls();
    send_as_with(&js, "acme", "a1", "a1-again").await;
    let again = results(&mut acme, 1).await.remove(0);
    let first = got.iter().find(|r| r.request_id == "a1").unwrap();
    assert_eq!(
        (&again.completed_at, again.status),
        (&first.completed_at, first.status)
    );
    assert_eq!(worker.primary.calls(), calls);

    // A larger quota and a new tenant, written while the worker runs.
    let new_tenant = "\n[[tenants]]\nid = \"initech\"\n";
    write_config(&path, &base, &format!("{}{new_tenant}", quota(100)));
    // The new tenant's queue appears: its stream is created by the worker.
    common::eventually(WAIT, "initech's request stream", async || {
        js.get_stream("AI_TENANT_INITECH").await.is_ok()
    })
    .await;
    let mut initech = tenant_results(&client, "initech").await;
    send_as(&js, "initech", "i1").await;
    let got = results(&mut initech, 1).await;
    assert_eq!(
        (got[0].status, got[0].tenant.as_deref()),
        (Status::Ok, Some("initech"))
    );

    // The same reload raised acme's quota: admitted again within the same minute.
    send_as(&js, "acme", "a4").await;
    assert_eq!(results(&mut acme, 1).await[0].status, Status::Ok);

    // A tiny daily budget: acme is refused once its spend (already over it) is read back.
    let budget = format!("{}daily_budget_usd = 0.000001\n{new_tenant}", quota(100));
    write_config(&path, &base, &budget);
    let mut n = 0;
    let refused = common::eventually(WAIT, "acme's budget to be spent", async || {
        n += 1;
        send_as(&js, "acme", &format!("b{n}")).await;
        let r = results(&mut acme, 1).await.remove(0);
        (r.status == Status::Rejected).then_some(r)
    })
    .await;
    let error = refused.error.unwrap();
    assert_eq!(error.class, ErrorClass::BudgetExceeded, "{}", error.message);
    assert!(error.message.contains("acme"), "{}", error.message);
    assert!(refused.attempts.is_empty());
    // Its spend is recorded per tenant and provider.
    let budget = js.get_key_value("ai_budget").await.unwrap();
    let today = chrono::Utc::now().format("%Y-%m-%d");
    let record: ai_failover::contract::TenantSpendRecord = serde_json::from_slice(
        &budget
            .get(format!("_tenant.acme.{today}"))
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert!(
        record.spend_usd > 0.000001 && record.by_provider.contains_key("primary"),
        "{record:?}"
    );

    worker.running.stop().await;
}

/// The fleet's key for p1, and the key acme brings.
const FLEET_KEY: &str = "sk-fleet-p1-0001";
const ACME_KEY: &str = "sk-CANARY-acme-own-4b2d";
const MASTER: &str = "4f1c2b3a5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708";

/// Calls to the mock's completions endpoint made with `key`.
async fn calls_with(mock: &wiremock::MockServer, key: &str) -> usize {
    let bearer = format!("Bearer {key}");
    mock.received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path().ends_with("/chat/completions"))
        .filter(|r| {
            r.headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(bearer.as_str())
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_own_key_is_used_for_its_calls_and_billed_to_it() {
    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let server = NatsServer::start();
    common::logs::capture();
    let mock = MockServer::start().await;
    let answer = common::providers::Vendor::OpenAi.success(common::providers::SIGNAL, 1_000, 1_000);
    for key in [FLEET_KEY, ACME_KEY] {
        let bearer = format!("Bearer {key}");
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .and(header("authorization", bearer.as_str()))
            .respond_with(ResponseTemplate::new(200).set_body_json(answer.clone()))
            .mount(&mock)
            .await;
        Mock::given(method("GET"))
            .and(path("/v1/models"))
            .and(header("authorization", bearer.as_str()))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(serde_json::json!({"object": "list", "data": []})),
            )
            .mount(&mock)
            .await;
    }
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let fleet_key = write("p1-key", FLEET_KEY);
    let master = write("master", MASTER);
    let toml = common::config::TestConfig::new(&server.url())
        .set("engine", "hedging", "false")
        .set("secrets", "master_key_file", &format!("\"{}\"", master.display()))
        .provider(&format!(
            "id = \"p1\"\napi = \"openai\"\nbase_url = \"{}/v1\"\napi_key_file = \"{}\"\nmodels = [\"p1-m\"]\npriority = 1\ncost = {{ input_per_mtok = 1.0, output_per_mtok = 10.0 }}\n",
            mock.uri(),
            fleet_key.display()
        ))
        .toml();
    let path = write(
        "worker.toml",
        &format!("{toml}\n[[tenants]]\nid = \"acme\"\n"),
    );
    let mut cfg = config::load(&path).unwrap();
    cfg.worker.id = Some("w1".into());
    let running = ai_failover::bus::runtime::start(std::sync::Arc::new(cfg), None)
        .await
        .unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(client.clone());
    let mut acme = tenant_results(&client, "acme").await;

    // acme brings its own key: validated with the provider, stored sealed.
    let (ok, said) = common::control::keys_cli(
        &path,
        &["set", "--provider", "p1", "--tenant", "acme"],
        ACME_KEY,
    );
    assert!(ok, "{said}");
    assert!(said.contains("acme") && !said.contains(ACME_KEY), "{said}");

    // acme's calls go out with its key (from the next call, no restart); the default
    // tenant's with the fleet's.
    send_as(&js, "acme", "own-1").await;
    let mine = results(&mut acme, 1).await.remove(0);
    assert_eq!(mine.status, Status::Ok, "{mine:?}");
    assert_eq!(calls_with(&mock, ACME_KEY).await, 1);
    let names = Names::default();
    let default = signal("IBM");
    common::fleet::publish(&js, &names, &default).await;
    common::fleet::await_results(&js, std::slice::from_ref(&default.request_id), WAIT).await;
    assert_eq!(calls_with(&mock, FLEET_KEY).await, 1);
    assert_eq!(calls_with(&mock, ACME_KEY).await, 1);

    // Billed to acme, not to the fleet's budget of p1: one call each, the same price.
    let budget = js.get_key_value("ai_budget").await.unwrap();
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let read = |key: String| {
        let budget = budget.clone();
        async move {
            budget
                .get(key)
                .await
                .unwrap()
                .map(|v| serde_json::from_slice::<serde_json::Value>(&v).unwrap())
        }
    };
    let (fleet_spend, acme_spend) = common::eventually(WAIT, "both spends written", async || {
        let fleet = read(format!("p1.{today}")).await?;
        let acme = read(format!("_tenant.acme.{today}")).await?;
        Some((fleet, acme))
    })
    .await;
    let usd = |v: &serde_json::Value| v["spend_usd"].as_f64().unwrap();
    assert!((usd(&acme_spend) - 0.011).abs() < 1e-9, "{acme_spend}");
    assert!(
        (usd(&fleet_spend) - 0.011).abs() < 1e-9,
        "only the default tenant's call: {fleet_spend}"
    );

    // The key is nowhere in clear: not in its record, the list, the audit trail, the logs.
    let secrets = js.get_key_value("ai_secrets").await.unwrap();
    let stored = secrets
        .get("p1.acme")
        .await
        .unwrap()
        .expect("acme's key stored");
    assert!(!String::from_utf8_lossy(&stored).contains(ACME_KEY));
    let audit = common::eventually(WAIT, "keys.set audited", async || {
        let a = common::fleet::stored::<ai_failover::contract::AuditRecord>(&js, "AI_AUDIT").await;
        a.iter().any(|r| r.endpoint == "keys.set").then_some(a)
    })
    .await;
    let trail = serde_json::to_string(&audit).unwrap();
    assert!(
        trail.contains("\"tenant\":\"acme\"") && !trail.contains(ACME_KEY),
        "{trail}"
    );
    for output in [
        serde_json::to_string(&mine).unwrap(),
        serde_json::to_string(&acme_spend).unwrap(),
    ] {
        assert!(!output.contains(ACME_KEY));
    }
    common::logs::assert_not_logged(ACME_KEY);
    running.stop().await;
}
