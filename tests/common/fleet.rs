//! Fleet-level helpers: a simulator with named providers, a config pointing at it, request
//! publishing and result collection over real NATS.

use std::collections::HashMap;
use std::time::Duration;

use ai_failover::config::{Api, Config};

use super::config::TestConfig;
use ai_failover::contract::{AnalysisRequest, AnalysisResult, DeadLetter, Names};
use ai_failover::simulator::{SimConfig, SimHandle, SimProvider, Simulator};
use async_nats::jetstream;
use futures::StreamExt;

/// The fake key every simulated provider expects; it must never appear anywhere.
pub const CANARY_KEY: &str = "sk-CANARY-9f8e7d6c5b4a";

/// A simulator serving `providers` (name, api), all expecting [`CANARY_KEY`]. Log lines are
/// captured from here on, so [`await_results`] can check that the key was never logged.
pub async fn simulator(providers: &[(&str, Api)]) -> SimHandle {
    super::logs::capture();
    let mut cfg = SimConfig::local();
    cfg.seed = Some(42);
    for (name, api) in providers {
        cfg = cfg.provider(SimProvider::new(*name, *api).with_key(CANARY_KEY));
    }
    Simulator::start(cfg).await.expect("simulator starts")
}

/// A worker config pointing at `sim` for `providers` in priority order, with the canary key
/// in a file and `extra` TOML (tables) merged in.
pub fn config(
    nats_url: &str,
    sim: &SimHandle,
    providers: &[(&str, Api)],
    key_dir: &std::path::Path,
    extra: &str,
) -> Config {
    fleet_config(nats_url, sim, providers, key_dir, extra).load()
}

/// The TOML text behind [`config`], for workers run as separate processes.
pub fn config_toml(
    nats_url: &str,
    sim: &SimHandle,
    providers: &[(&str, Api)],
    key_dir: &std::path::Path,
    extra: &str,
) -> String {
    fleet_config(nats_url, sim, providers, key_dir, extra).toml()
}

fn fleet_config(
    nats_url: &str,
    sim: &SimHandle,
    providers: &[(&str, Api)],
    key_dir: &std::path::Path,
    extra: &str,
) -> TestConfig {
    let key = key_dir.join("api-key");
    std::fs::write(&key, CANARY_KEY).unwrap();
    let mut cfg = TestConfig::new(nats_url)
        .set("worker", "shutdown_grace_ms", "2000")
        .set("worker", "ack_wait_ms", "5000")
        .merge(extra);
    for (i, (name, api)) in providers.iter().enumerate() {
        let api = match api {
            Api::Openai => "openai",
            Api::Anthropic => "anthropic",
            Api::Gemini => "gemini",
        };
        cfg = cfg.provider(&format!(
            "id = \"{name}\"\napi = \"{api}\"\nbase_url = \"{}\"\napi_key_file = \"{}\"\nmodels = [\"{name}-large\", \"{name}-small\"]\npriority = {}\ntimeout_ms = 3000\ncost = {{ input_per_mtok = 1.0, output_per_mtok = 5.0 }}\n",
            sim.base_url(name).unwrap(),
            key.display(),
            i + 1
        ));
    }
    cfg
}

/// Starts `ai-failover worker --id <id> --config <config>` as its own process (so a test can
/// SIGKILL or SIGTERM it), logging at debug level into `log` for [`super::logs::assert_not_in_file`].
pub fn worker_process(
    config: &std::path::Path,
    id: &str,
    log: &std::path::Path,
) -> std::process::Child {
    worker_process_with(config, id, log, &[])
}

/// [`worker_process`] with extra environment variables (e.g. `AI_FAILOVER_WORKER__HTTP_LISTEN`).
pub fn worker_process_with(
    config: &std::path::Path,
    id: &str,
    log: &std::path::Path,
    envs: &[(&str, &str)],
) -> std::process::Child {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("worker log file");
    std::process::Command::new(env!("CARGO_BIN_EXE_ai-failover"))
        .args(["worker", "--id", id, "--config"])
        .arg(config)
        .env("RUST_LOG", "info,ai_failover=debug")
        .envs(envs.iter().copied())
        .stdout(file.try_clone().expect("log file handle"))
        .stderr(file)
        .spawn()
        .expect("spawn a worker process")
}

/// A signal request for `symbol` with a rising price series.
pub fn request(symbol: &str) -> AnalysisRequest {
    let mut r = AnalysisRequest::signal(symbol);
    r.context = Some(
        serde_json::from_value(serde_json::json!({
            "prices": [100.0, 100.5, 101.0, 101.2, 101.9, 102.4]
        }))
        .unwrap(),
    );
    r.deadline_ms = Some(20_000);
    r
}

/// Publishes `request` to JetStream with `Nats-Msg-Id`, retrying while NATS is away.
pub async fn publish(js: &jetstream::Context, names: &Names, request: &AnalysisRequest) {
    publish_raw(
        js,
        names.request(request.kind),
        &request.request_id,
        serde_json::to_vec(request).unwrap(),
    )
    .await
}

/// Publishes raw bytes with a message id, retrying for up to 30 s.
pub async fn publish_raw(js: &jetstream::Context, subject: String, msg_id: &str, body: Vec<u8>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", msg_id);
        let sent = match js
            .publish_with_headers(subject.clone(), headers, body.clone().into())
            .await
        {
            Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match sent {
            Ok(()) => return,
            Err(e) if tokio::time::Instant::now() > deadline => panic!("publish failed: {e}"),
            // Waiting out a NATS restart: there is no event to await from here.
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Every message stored in `stream`, decoded.
pub async fn stored<T: serde::de::DeserializeOwned>(
    js: &jetstream::Context,
    stream: &str,
) -> Vec<T> {
    // In a cluster a stream may be electing a leader right after a node died: retry the
    // reads a test makes, like any client would.
    let mut tries = 0;
    let (consumer, total) = loop {
        let attempt = async {
            let stream = js.get_stream(stream).await.map_err(|e| e.to_string())?;
            let consumer = stream
                .create_consumer(jetstream::consumer::pull::OrderedConfig {
                    deliver_policy: jetstream::consumer::DeliverPolicy::All,
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())?;
            let mut info = stream.clone();
            let total = info.info().await.map_err(|e| e.to_string())?.state.messages as usize;
            Ok::<_, String>((consumer, total))
        };
        match attempt.await {
            Ok(ok) => break ok,
            Err(e) if tries >= 40 => panic!("cannot read stream {stream}: {e}"),
            Err(_) => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    };
    let mut out = Vec::with_capacity(total);
    if total == 0 {
        return out;
    }
    let mut messages = consumer.messages().await.expect("messages");
    while out.len() < total {
        let msg = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .expect("stored messages arrive")
            .expect("stream open")
            .expect("message");
        out.push(serde_json::from_slice(&msg.payload).expect("stored JSON decodes"));
    }
    out
}

/// Waits until `AI_RESULTS` holds results for every id in `ids` (bounded by `within`), and
/// returns the stored results grouped by request id. Also checks that no log line written so
/// far holds [`CANARY_KEY`].
pub async fn await_results(
    js: &jetstream::Context,
    ids: &[String],
    within: Duration,
) -> HashMap<String, Vec<AnalysisResult>> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let mut by_id: HashMap<String, Vec<AnalysisResult>> = HashMap::new();
        if let Ok(mut s) = js.get_stream("AI_RESULTS").await
            && let Ok(info) = s.info().await
            && info.state.messages as usize >= ids.len()
        {
            for r in stored::<AnalysisResult>(js, "AI_RESULTS").await {
                by_id.entry(r.request_id.clone()).or_default().push(r);
            }
            if ids.iter().all(|id| by_id.contains_key(id)) {
                super::logs::assert_not_logged(CANARY_KEY);
                return by_id;
            }
        }
        if tokio::time::Instant::now() >= deadline {
            panic!(
                "not every request got a result within {within:?}\n{}",
                explain_missing(js, ids).await
            );
        }
        // Polling a stream's state: results arrive from other tasks and processes.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Why requests have no result: for each missing id, its `ai_outcomes` record and any dead
/// letter naming it. Written for failure messages, so it never panics itself.
async fn explain_missing(js: &jetstream::Context, ids: &[String]) -> String {
    let mut answered = std::collections::HashSet::new();
    if let Ok(Ok(results)) = tokio::time::timeout(
        Duration::from_secs(15),
        tokio::spawn({
            let js = js.clone();
            async move { stored::<AnalysisResult>(&js, "AI_RESULTS").await }
        }),
    )
    .await
    {
        answered.extend(results.into_iter().map(|r| r.request_id));
    }
    let dead: Vec<DeadLetter> = tokio::time::timeout(
        Duration::from_secs(15),
        tokio::spawn({
            let js = js.clone();
            async move { dead_letters(&js).await }
        }),
    )
    .await
    .ok()
    .and_then(Result::ok)
    .unwrap_or_default();
    let outcomes = js.get_key_value("ai_outcomes").await.ok();
    let mut out = String::new();
    for id in ids.iter().filter(|id| !answered.contains(*id)) {
        let record = match &outcomes {
            Some(kv) => match kv.entry(id.as_str()).await {
                Ok(Some(e)) => format!(
                    "{:?} rev {}: {}",
                    e.operation,
                    e.revision,
                    String::from_utf8_lossy(&e.value)
                ),
                Ok(None) => "no outcome record".into(),
                Err(e) => format!("outcome unreadable: {e}"),
            },
            None => "outcomes bucket unreachable".into(),
        };
        let letters: Vec<String> = dead
            .iter()
            .filter(|d| d.request_id.as_deref() == Some(id.as_str()))
            .map(|d| format!("{:?}: {}", d.error.class, d.error.message))
            .collect();
        out += &format!("  {id}: {record}; dead letters: {letters:?}\n");
    }
    format!("missing:\n{out}{} dead letters in all", dead.len())
}

/// Every dead letter stored so far.
pub async fn dead_letters(js: &jetstream::Context) -> Vec<DeadLetter> {
    stored(js, "AI_DEADLETTER").await
}

/// Worker processes, each with its HTTP port, killed however the test ends.
pub struct Workers {
    pub children: Vec<std::process::Child>,
    /// Each worker's `http_listen` address.
    pub listens: Vec<String>,
}

impl Drop for Workers {
    fn drop(&mut self) {
        for w in &mut self.children {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

/// Starts `n` worker processes `<name>-<i>` on `config` (logs `<dir>/w<i>.log`) and waits
/// until each consumes.
pub async fn start_workers(
    config: &std::path::Path,
    n: usize,
    name: &str,
    dir: &std::path::Path,
) -> Workers {
    let listens: Vec<String> = (0..n)
        .map(|_| format!("127.0.0.1:{}", super::nats::free_port()))
        .collect();
    let children = listens
        .iter()
        .enumerate()
        .map(|(i, listen)| {
            worker_process_with(
                config,
                &format!("{name}-{i}"),
                &dir.join(format!("w{i}.log")),
                &[("AI_FAILOVER_WORKER__HTTP_LISTEN", listen)],
            )
        })
        .collect();
    let workers = Workers { children, listens };
    for l in &workers.listens {
        super::control::wait_ready(l).await;
    }
    workers
}
