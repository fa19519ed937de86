//! In-process workers with fake providers, for control-service and CLI tests.

use std::sync::Arc;
use std::time::Duration;

use ai_failover::bus::runtime::{self, Running};
use ai_failover::config::{self, Config};

use super::config::TestConfig;
use ai_failover::contract::{AnalysisRequest, AnalysisResult, Names};
use ai_failover::providers::Provider;
use ai_failover::providers::fake::Fake;
use async_nats::HeaderMap;
use futures::StreamExt;

/// Two remote providers, `primary` (priority 1) and `backup` (priority 2), with prices so
/// spend is booked. Their keys are never set: workers get fakes, clients need none.
pub fn fleet_toml(nats_url: &str, prefix: &str) -> String {
    fleet(nats_url, prefix).toml()
}

/// [`fleet_toml`] as a builder, to add to.
pub fn fleet(nats_url: &str, prefix: &str) -> TestConfig {
    let provider = |id: &str, prio: u32| {
        format!(
            "id = \"{id}\"\napi = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\
             models = [\"{id}-m1\"]\npriority = {prio}\ntier = \"remote\"\n\
             api_key_env = \"AI_FAILOVER_TEST_NEVER_SET_KEY\"\n\
             cost = {{ input_per_mtok = 1.0, output_per_mtok = 10.0 }}\n"
        )
    };
    TestConfig::new(nats_url)
        .set("nats", "prefix", &format!("\"{prefix}\""))
        .set("engine", "hedging", "false")
        .provider(&provider("primary", 1))
        .provider(&provider("backup", 2))
}

/// The fleet configuration as a worker in this process uses it.
pub fn fleet_config(nats_url: &str, prefix: &str, worker_id: &str) -> Config {
    let mut cfg = config::load_str_for_client(&fleet_toml(nats_url, prefix))
        .unwrap_or_else(|e| panic!("test config is invalid: {e}"));
    cfg.worker.id = Some(worker_id.to_string());
    cfg
}

/// One running worker and its fakes.
pub struct TestWorker {
    pub running: Running,
    pub primary: Arc<Fake>,
    pub backup: Arc<Fake>,
}

/// Starts a worker named `id` in this process.
pub async fn start_worker(nats_url: &str, prefix: &str, id: &str) -> TestWorker {
    start_worker_with(fleet_config(nats_url, prefix, id)).await
}

/// Starts a worker in this process with `cfg` (built on [`fleet_toml`]: its providers are
/// `primary` and `backup`, both fakes here).
pub async fn start_worker_with(cfg: Config) -> TestWorker {
    // Probes always pass: active monitoring must not add failures the tests did not ask for.
    let primary = Fake::instant("primary").probes_always_pass();
    let backup = Fake::instant("backup").probes_always_pass();
    let providers: Vec<Arc<dyn Provider>> = vec![primary.clone(), backup.clone()];
    let running = runtime::start(Arc::new(cfg), Some(providers))
        .await
        .expect("worker starts");
    TestWorker {
        running,
        primary,
        backup,
    }
}

/// A signal request for `symbol` with a few prices.
pub fn signal(symbol: &str) -> AnalysisRequest {
    let mut request = AnalysisRequest::signal(symbol);
    request.context =
        Some(serde_json::from_value(serde_json::json!({"prices": [1.0, 2.0, 3.0, 4.0]})).unwrap());
    request
}

/// Publishes a signal request for `symbol` and waits for its result.
pub async fn ask(client: &async_nats::Client, names: &Names, symbol: &str) -> AnalysisResult {
    ask_with(client, names, signal(symbol)).await
}

/// Publishes `request` and waits for its result on a reply inbox subscribed first.
pub async fn ask_with(
    client: &async_nats::Client,
    names: &Names,
    mut request: AnalysisRequest,
) -> AnalysisResult {
    let js = async_nats::jetstream::new(client.clone());
    let inbox = client.new_inbox();
    request.reply_to = Some(inbox.clone());
    let mut replies = client.subscribe(inbox).await.unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", request.request_id.as_str());
    js.publish_with_headers(
        names.request(request.kind),
        headers,
        serde_json::to_vec(&request).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(20), replies.next())
        .await
        .expect("a result within 20 s")
        .expect("inbox open");
    serde_json::from_slice(&msg.payload).expect("a result")
}
