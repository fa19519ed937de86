//! Encrypted provider keys with live rotation: `ai-failover keys set` reads a key from
//! standard input, a worker validates it with the provider (a rejected key is refused and
//! nothing is stored), stores it sealed in `ai_secrets` (the value does not contain it), and
//! every running worker calls with it from its next call on, without a restart, lifting the
//! quarantine the old key caused. A worker with another master key starts and reports the
//! provider unavailable instead of guessing. The key never appears in KV, audit, logs or
//! any output.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use ai_failover::config::Api;
use ai_failover::contract::{AnalysisResult, AuditRecord, Names, SecretRecord, Source};
use ai_failover::simulator::{SimConfig, SimProvider, Simulator};
use async_nats::jetstream;

use common::nats::NatsServer;
use common::{eventually, fleet};

/// The key p1 accepts: set through the store, it must never be seen anywhere.
const NEW_KEY: &str = "sk-CANARY-rotated-5e1f0a";
/// The key p1's configuration starts with: the provider rejects it.
const OLD_KEY: &str = "sk-old-revoked-0000";
/// A key p1 rejects, offered through `keys set`.
const BAD_KEY: &str = "sk-CANARY-rejected-77aa";
const MASTER: &str = "4f1c2b3a5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708";
const OTHER_MASTER: &str = "0000000000000000000000000000000000000000000000000000000000000001";

fn config(
    nats: &str,
    sim: &ai_failover::simulator::SimHandle,
    dir: &std::path::Path,
    master: &str,
    name: &str,
) -> std::path::PathBuf {
    let write = |file: &str, text: &str| {
        let path = dir.join(file);
        std::fs::write(&path, text).unwrap();
        path
    };
    let old = write("p1-key", OLD_KEY);
    let p2 = write("p2-key", fleet::CANARY_KEY);
    let master = write(&format!("{name}-master"), master);
    let toml = common::config::TestConfig::new(nats)
        .set("worker", "ack_wait_ms", "5000")
        .set("engine", "hedging", "false")
        .set("secrets", "master_key_file", &format!("\"{}\"", master.display()))
        .provider(&format!(
            "id = \"p1\"\napi = \"openai\"\nbase_url = \"{}\"\napi_key_file = \"{}\"\nmodels = [\"p1-m\"]\npriority = 1\ntimeout_ms = 3000\n",
            sim.base_url("p1").unwrap(),
            old.display()
        ))
        .provider(&format!(
            "id = \"p2\"\napi = \"anthropic\"\nbase_url = \"{}\"\napi_key_file = \"{}\"\nmodels = [\"p2-m\"]\npriority = 2\ntimeout_ms = 3000\n",
            sim.base_url("p2").unwrap(),
            p2.display()
        ))
        .toml();
    write(&format!("{name}.toml"), &toml)
}

async fn answer(js: &jetstream::Context, names: &Names, symbol: &str) -> AnalysisResult {
    let r = fleet::request(symbol);
    fleet::publish(js, names, &r).await;
    let id = r.request_id.clone();
    fleet::await_results(js, std::slice::from_ref(&id), Duration::from_secs(20))
        .await
        .remove(&id)
        .unwrap()
        .remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_set_from_stdin_is_validated_sealed_and_used_without_a_restart() {
    let server = NatsServer::start();
    common::logs::capture();
    let sim = Simulator::start(
        SimConfig::local()
            .provider(SimProvider::new("p1", Api::Openai).with_key(NEW_KEY))
            .provider(SimProvider::new("p2", Api::Anthropic).with_key(fleet::CANARY_KEY)),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&server.url(), &sim, dir.path(), MASTER, "a");
    let mut workers = fleet::start_workers(&cfg, 1, "keyholder", dir.path()).await;
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(client.clone());
    let names = Names::default();

    // The configured key is revoked: p1 answers 401, the fleet quarantines it, p2 answers.
    let first = answer(&js, &names, "K0").await;
    assert_eq!(first.provider.as_deref(), Some("p2"), "{first:?}");

    // A key the provider rejects is refused with its reason, and nothing is stored.
    let (ok, refused) = common::control::keys_cli(&cfg, &["set", "--provider", "p1"], BAD_KEY);
    assert!(!ok, "{refused}");
    assert!(refused.contains("rejected the key"), "{refused}");
    let secrets = js.get_key_value("ai_secrets").await.unwrap();
    assert!(
        secrets.get("p1").await.unwrap().is_none(),
        "a rejected key is not stored"
    );

    // The right key: validated, sealed, and used for the next call.
    let (ok, stored) =
        common::control::keys_cli(&cfg, &["set", "--provider", "p1"], &format!("{NEW_KEY}\n"));
    let stored_at = Instant::now();
    assert!(ok, "{stored}");
    assert!(stored.contains("stored"), "{stored}");
    let next = answer(&js, &names, "K1").await;
    let used_after = stored_at.elapsed();
    assert_eq!(next.provider.as_deref(), Some("p1"), "{next:?}");
    assert_eq!(next.source, Source::Provider);
    // Measured, not asserted (a loaded machine is not a failure): see the issue note.
    println!("first call with the rotated key answered {used_after:?} after `keys set` exited");

    let raw = secrets.get("p1").await.unwrap().unwrap();
    let record: SecretRecord = serde_json::from_slice(&raw).unwrap();
    assert_eq!(record.algorithm, "aes-256-gcm");
    let (ok, listed) = common::control::keys_cli(&cfg, &["list"], "");
    assert!(
        ok && listed.contains(&record.fingerprint) && listed.contains(&record.key_id),
        "{listed}"
    );

    // A second worker with another master key starts, and says p1 is unavailable to it.
    let other = config(&server.url(), &sim, dir.path(), OTHER_MASTER, "b");
    std::fs::create_dir_all(dir.path().join("b")).unwrap();
    let _second = fleet::start_workers(&other, 1, "stranger", dir.path().join("b").as_path()).await;
    workers.children[0].kill().unwrap();
    let stranger = eventually(
        Duration::from_secs(20),
        "an answer from the stranger",
        async || {
            let r = answer(&js, &names, "K2").await;
            (r.worker_id.starts_with("stranger")).then_some(r)
        },
    )
    .await;
    assert_eq!(stranger.provider.as_deref(), Some("p2"), "{stranger:?}");
    let failed = stranger
        .attempts
        .iter()
        .find(|a| a.provider == "p1")
        .expect("p1 tried");
    assert_eq!(failed.outcome.as_str(), "key_unavailable", "{stranger:?}");

    // Deleted (by the stranger: deleting needs no master key): back to the configured key.
    let (ok, deleted) = common::control::keys_cli(&cfg, &["delete", "--provider", "p1"], "");
    assert!(ok && deleted.contains("deleted"), "{deleted}");

    // A key sent in a body that is not the request's shape is neither kept nor echoed.
    let raw_reply =
        common::control::call_raw(&client, &names, "keys.set", &format!("\"{NEW_KEY}\"")).await;
    assert!(common::control::error_code(&raw_reply).is_some());
    let raw_reply = String::from_utf8_lossy(&raw_reply.payload).into_owned();
    assert!(secrets.get("p1").await.unwrap().is_none());

    // The key is nowhere: not in KV, the audit trail, any output or log.
    let audit = eventually(
        Duration::from_secs(10),
        "the odd keys.set audited",
        async || {
            let a = fleet::stored::<AuditRecord>(&js, "AI_AUDIT").await;
            (a.iter().filter(|r| r.endpoint == "keys.set").count() >= 3).then_some(a)
        },
    )
    .await;
    assert!(audit.iter().any(|a| a.endpoint == "keys.set"), "{audit:?}");
    for text in [
        String::from_utf8_lossy(&raw).into_owned(),
        serde_json::to_string(&audit).unwrap(),
        refused,
        stored,
        listed,
        deleted,
        raw_reply,
    ] {
        for secret in [NEW_KEY, BAD_KEY, "CANARY"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
    common::logs::assert_not_logged("CANARY");
    for log in ["w0.log", "b/w0.log"] {
        common::logs::assert_not_in_file(&dir.path().join(log), "CANARY");
    }
}

/// With `[secrets]`, a remote provider may have no configured key: it holds none usable
/// until one is set, and its calls fail with `key_unavailable` instead of going out
/// without credentials (a 401 would quarantine it for the whole fleet).
#[test]
fn a_remote_provider_without_a_configured_key_waits_for_a_stored_one() {
    let dir = tempfile::tempdir().unwrap();
    let master = dir.path().join("master");
    std::fs::write(&master, MASTER).unwrap();
    let cfg = common::config::TestConfig::new("nats://127.0.0.1:4222")
        .set("secrets", "master_key_file", &format!("\"{}\"", master.display()))
        .provider("id = \"p1\"\napi = \"openai\"\nbase_url = \"https://api.openai.com/v1\"\nmodels = [\"m\"]\n")
        .load();
    let slot = ai_failover::providers::configured_key(&cfg.providers[0]);
    let e = slot.get().unwrap_err();
    assert_eq!(e.class, ai_failover::contract::ErrorClass::KeyUnavailable);
    assert!(e.message.contains("keys set"), "{}", e.message);
    // Without [secrets] the same provider is a configuration error, as before.
    let text = common::config::TestConfig::new("nats://127.0.0.1:4222")
        .provider("id = \"p1\"\napi = \"openai\"\nbase_url = \"https://api.openai.com/v1\"\nmodels = [\"m\"]\n")
        .toml();
    assert!(ai_failover::config::load_str(&text).is_err());
}
