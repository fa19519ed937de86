//! In-process workers with fake providers, for control-service and CLI tests.

use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ai_failover::bus::runtime::{self, Running};
use ai_failover::config::{self, Config};
use ai_failover::contract::{AnalysisRequest, AnalysisResult, ErrorClass, Names};
use ai_failover::providers::{Completion, Provider, ProviderCall, ProviderError};
use async_nats::HeaderMap;
use async_trait::async_trait;
use futures::StreamExt;

/// Two remote providers, `primary` (priority 1) and `backup` (priority 2), with prices so
/// spend is booked. Their keys are never set: workers get fakes, clients need none.
pub fn fleet_toml(nats_url: &str, prefix: &str) -> String {
    let provider = |id: &str, prio: u32| {
        format!(
            "[[providers]]\nid = \"{id}\"\napi = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\
             models = [\"{id}-m1\"]\npriority = {prio}\ntier = \"remote\"\n\
             api_key_env = \"AI_FAILOVER_TEST_NEVER_SET_KEY\"\n\
             cost = {{ input_per_mtok = 1.0, output_per_mtok = 10.0 }}\n"
        )
    };
    format!(
        "[nats]\nurl = \"{nats_url}\"\nprefix = \"{prefix}\"\n[worker]\nhttp_listen = \"\"\n\
         [engine]\nhedging = false\n{}{}",
        provider("primary", 1),
        provider("backup", 2)
    )
}

/// The fleet configuration as a worker in this process uses it.
pub fn fleet_config(nats_url: &str, prefix: &str, worker_id: &str) -> Config {
    let mut cfg = config::load_str_for_client(&fleet_toml(nats_url, prefix))
        .unwrap_or_else(|e| panic!("test config is invalid: {e}"));
    cfg.worker.id = Some(worker_id.to_string());
    cfg
}

/// A fake provider that answers a buy signal, or fails with a class set at run time.
pub struct Fake {
    id: String,
    failing: Mutex<Option<ErrorClass>>,
    calls: AtomicUsize,
}

impl Fake {
    /// A healthy fake.
    pub fn new(id: &str) -> Arc<Self> {
        Arc::new(Fake {
            id: id.into(),
            failing: Mutex::new(None),
            calls: AtomicUsize::new(0),
        })
    }

    /// From now on every call fails with `class` (`None`: succeeds).
    pub fn fail_with(&self, class: Option<ErrorClass>) {
        *self.failing.lock().unwrap() = class;
    }

    /// Calls made so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Provider for Fake {
    fn id(&self) -> &str {
        &self.id
    }

    async fn complete(&self, call: &ProviderCall) -> Result<Completion, ProviderError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(class) = *self.failing.lock().unwrap() {
            return Err(ProviderError::new(class, format!("{} failed", self.id)).with_status(503));
        }
        Ok(super::fake_completion(&call.model, &self.id))
    }

    // Probes always pass: active monitoring must not add failures the tests did not ask for.
    async fn probe(&self, _model: &str, _timeout: Duration) -> Result<(), ProviderError> {
        Ok(())
    }
}

/// One running worker and its fakes.
pub struct TestWorker {
    pub running: Running,
    pub primary: Arc<Fake>,
    pub backup: Arc<Fake>,
}

/// Starts a worker named `id` in this process.
pub async fn start_worker(nats_url: &str, prefix: &str, id: &str) -> TestWorker {
    let primary = Fake::new("primary");
    let backup = Fake::new("backup");
    let providers: Vec<Arc<dyn Provider>> = vec![primary.clone(), backup.clone()];
    let running = runtime::start(
        Arc::new(fleet_config(nats_url, prefix, id)),
        Some(providers),
    )
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

/// Polls `check` every 20 ms until it yields a value, for at most `within`: an observable
/// condition, not a guess at how long something takes.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let until = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
