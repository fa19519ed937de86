//! The people-facing clients, run as the built binary against a real nats-server and a
//! worker in this process (over fake providers).
// Tests may panic: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Output;

use ai_failover::contract::{AnalysisResult, Status, StatusReply};
use common::nats::NatsServer;
use common::workers::{fleet_config, fleet_toml, start_worker};

/// Runs `ai-failover ARGS…` and returns its output.
async fn run(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_ai-failover"))
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("AI_FAILOVER_CONFIG")
        .kill_on_drop(true)
        .output()
        .await
        .expect("run the binary")
}

fn write_config(dir: &Path, url: &str, prefix: &str) -> String {
    let path = dir.join(format!("{prefix}.toml"));
    std::fs::write(&path, fleet_toml(url, prefix)).unwrap();
    path.display().to_string()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_status_and_control_talk_to_a_running_worker() {
    let server = NatsServer::start();
    let w = start_worker(&server.url(), "ai", "w1").await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &server.url(), "ai");

    let out = run(&[
        "publish",
        "--config",
        &config,
        "--symbol",
        "AAPL",
        "--prices",
        "1,2,3",
        "--deadline-ms",
        "10000",
    ])
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("signal AAPL"), "{stdout}");
    assert!(
        stdout.contains("status   ok (source provider)  from primary/primary-m1"),
        "{stdout}"
    );
    assert!(stdout.contains("BUY  confidence 0.80"), "{stdout}");
    assert!(
        stdout.contains("attempts primary/primary-m1 ok 200"),
        "{stdout}"
    );

    let out = run(&[
        "publish",
        "--config",
        &config,
        "--symbol",
        "MSFT",
        "--provider",
        "backup",
        "--json",
    ])
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let result: AnalysisResult = serde_json::from_str(&stdout).expect("--json prints a result");
    assert_eq!(result.status, Status::Ok);
    assert_eq!(result.provider.as_deref(), Some("backup"));
    assert_eq!(result.symbol.as_deref(), Some("MSFT"));

    let out = run(&["status", "--config", &config]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.starts_with("fleet mode: normal"), "{stdout}");
    let primary = stdout
        .lines()
        .find(|l| l.starts_with("primary"))
        .expect("a primary row");
    assert!(
        primary.contains("healthy") && primary.contains("closed"),
        "{primary}"
    );

    let out = run(&["control", "--config", &config, "status"]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let status: StatusReply = serde_json::from_str(&stdout).unwrap();
    assert_eq!(status.answered_by, "w1");

    let out = run(&[
        "control",
        "--config",
        &config,
        "force-status",
        r#"{"provider":"nope","status":"down"}"#,
    ])
    .await;
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stdout.contains("known providers: primary, backup"),
        "{stdout}"
    );
    assert!(stderr.contains("(404)"), "{stderr}");
    w.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_fails_when_no_worker_answers_in_time() {
    let server = NatsServer::start();
    // Streams exist but nobody consumes them.
    let cfg = fleet_config(&server.url(), "idle", "nobody");
    let client = ai_failover::bus::setup::connect(&cfg.nats).await.unwrap();
    ai_failover::bus::setup::ensure(&client, &cfg)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &server.url(), "idle");

    let out = run(&[
        "publish",
        "--config",
        &config,
        "--symbol",
        "AAPL",
        "--deadline-ms",
        "200",
    ])
    .await;
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}");
    assert!(stderr.contains("no result for request"), "{stderr}");
}

#[tokio::test]
async fn an_unknown_scenario_is_refused_with_the_known_ones() {
    let out = run(&["bench", "scenarios", "--scenarios", "hang,meltdown"]).await;
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("unknown scenario `meltdown`"), "{stderr}");
    for known in ["outage_503", "hang", "all_down", "deadline_squeeze"] {
        assert!(stderr.contains(known), "{stderr}");
    }
}
