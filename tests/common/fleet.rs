//! Fleet-level helpers: a simulator with named providers, a config pointing at it, request
//! publishing and result collection over real NATS.

use std::collections::HashMap;
use std::time::Duration;

use ai_failover::config::{self, Api, Config};
use ai_failover::contract::{AnalysisRequest, AnalysisResult, DeadLetter, Names};
use ai_failover::simulator::{SimConfig, SimHandle, SimProvider, Simulator};
use async_nats::jetstream;
use futures::StreamExt;

/// The fake key every simulated provider expects; it must never appear anywhere.
pub const CANARY_KEY: &str = "sk-CANARY-9f8e7d6c5b4a";

/// A simulator serving `providers` (name, api), all expecting [`CANARY_KEY`].
pub async fn simulator(providers: &[(&str, Api)]) -> SimHandle {
    let mut cfg = SimConfig::local();
    cfg.seed = Some(42);
    for (name, api) in providers {
        cfg = cfg.provider(SimProvider::new(*name, *api).with_key(CANARY_KEY));
    }
    Simulator::start(cfg).await.expect("simulator starts")
}

/// A worker config pointing at `sim` for `providers` in priority order, with the canary key
/// in a file and `extra` TOML (sections) appended.
pub fn config(
    nats_url: &str,
    sim: &SimHandle,
    providers: &[(&str, Api)],
    key_dir: &std::path::Path,
    extra: &str,
) -> Config {
    let toml = config_toml(nats_url, sim, providers, key_dir, extra);
    config::load_str(&toml).unwrap_or_else(|e| panic!("fleet test config: {e}\n{toml}"))
}

/// The TOML text behind [`config`], for workers run as separate processes.
pub fn config_toml(
    nats_url: &str,
    sim: &SimHandle,
    providers: &[(&str, Api)],
    key_dir: &std::path::Path,
    extra: &str,
) -> String {
    let key = key_dir.join("api-key");
    std::fs::write(&key, CANARY_KEY).unwrap();
    let ack = if extra.contains("ack_wait_ms") {
        ""
    } else {
        "ack_wait_ms = 5000\n"
    };
    let worker = format!("[worker]\nhttp_listen = \"\"\nshutdown_grace_ms = 2000\n{ack}");
    let mut toml = if extra.contains("[worker]\n") {
        format!(
            "[nats]\nurl = \"{nats_url}\"\n{}\n",
            extra.replace("[worker]\n", &worker)
        )
    } else {
        format!("[nats]\nurl = \"{nats_url}\"\n{worker}{extra}\n")
    };
    for (i, (name, api)) in providers.iter().enumerate() {
        let api = match api {
            Api::Openai => "openai",
            Api::Anthropic => "anthropic",
            Api::Gemini => "gemini",
        };
        toml += &format!(
            "[[providers]]\nid = \"{name}\"\napi = \"{api}\"\nbase_url = \"{}\"\napi_key_file = \"{}\"\nmodels = [\"{name}-large\", \"{name}-small\"]\npriority = {}\ntimeout_ms = 3000\ncost = {{ input_per_mtok = 1.0, output_per_mtok = 5.0 }}\n",
            sim.base_url(name).unwrap(),
            key.display(),
            i + 1
        );
    }
    toml
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
/// returns the stored results grouped by request id.
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
                return by_id;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every request got a result within {within:?}"
        );
        // Polling a stream's state: results arrive from other tasks and processes.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every dead letter stored so far.
pub async fn dead_letters(js: &jetstream::Context) -> Vec<DeadLetter> {
    stored(js, "AI_DEADLETTER").await
}

/// Polls `cond` every 20 ms until it holds or `within` passes.
pub async fn eventually(within: Duration, what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
