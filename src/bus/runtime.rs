//! Assembles and runs one worker: connection, set-up, engine, shared health, event
//! publishing, health watch, active monitoring and the consume loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::contract::ProviderHealthRecord;
use crate::engine::Engine;
use crate::engine::clock::SystemClock;
use crate::providers::Provider;

use super::events::{self, BusSink, EventTask};
use super::fleet::FleetState;
use super::health_store::HealthStore;
use super::http::{self, HttpState};
use super::outcomes::Outcomes;
use super::publish::Publisher;
use super::setup::{self, Bus};
use super::worker::Worker;
use super::{advisories, control, monitor, prober, watch};

/// A default worker id: host, process id and a random suffix.
pub fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into());
    let suffix: u16 = rand::random();
    format!("{host}-{}-{suffix:04x}", std::process::id())
}

/// A running worker and its background tasks.
pub struct Running {
    pub worker: Worker,
    pub bus: Bus,
    pub engine: Arc<Engine>,
    pub fleet: Arc<FleetState>,
    pub sink: BusSink,
    pub events: Arc<EventTask>,
    pub ready: Arc<AtomicBool>,
    /// Where `worker.http_listen` is served (`None` when it is off).
    pub http_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    consume: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
}

/// Starts a worker. `providers` replaces the HTTP adapters (tests); `None` builds them from
/// the configuration.
pub async fn start(
    cfg: Arc<Config>,
    providers: Option<Vec<Arc<dyn Provider>>>,
) -> anyhow::Result<Running> {
    let worker_id = cfg.worker.id.clone().unwrap_or_else(default_worker_id);
    let client = setup::connect_named(&cfg.nats, &format!("ai-failover {worker_id}")).await?;
    let bus = setup::ensure(&client, &cfg).await?;
    let providers = match providers {
        Some(p) => p,
        None => cfg
            .providers
            .iter()
            .map(|p| crate::providers::try_build(p, &cfg.engine))
            .collect::<Result<_, _>>()?,
    };
    let health = HealthStore::new(bus.health.clone(), worker_id.clone());
    let probe_ttl = Duration::from_millis(
        cfg.providers
            .iter()
            .map(|p| p.timeout_ms)
            .max()
            .unwrap_or(20_000),
    );
    let fleet = Arc::new(FleetState::new(health, bus.cache.clone(), probe_ttl));
    let (sink, rx) = events::channel();
    let engine = Arc::new(Engine::new(
        cfg.clone(),
        providers,
        Arc::new(SystemClock),
        Arc::new(sink.clone()),
        fleet.clone(),
        worker_id.clone(),
    ));
    // Start from the fleet's current view before taking any request.
    for p in &cfg.providers {
        if let Ok(Some(entry)) = bus.health.entry(&p.id).await
            && let Ok(record) = serde_json::from_slice::<ProviderHealthRecord>(&entry.value)
            && fleet.set_record(record.clone(), entry.revision)
        {
            engine.apply_shared(&record);
        }
    }
    let publisher = Publisher::new(bus.js.clone(), client.clone(), bus.names.clone());
    let task = Arc::new(EventTask {
        cfg: cfg.clone(),
        names: bus.names.clone(),
        publisher: publisher.clone(),
        fleet: fleet.clone(),
        budget: bus.budget.clone(),
        engine: engine.clone(),
        worker_id: worker_id.clone(),
    });
    let ready = Arc::new(AtomicBool::new(false));
    let worker = Worker {
        cfg: cfg.clone(),
        bus: bus.clone(),
        engine: engine.clone(),
        outcomes: Outcomes::new(
            bus.outcomes.clone(),
            Duration::from_millis(cfg.worker.ack_wait_ms),
        ),
        publisher,
        worker_id: worker_id.clone(),
        ready: ready.clone(),
    };
    let shutdown = CancellationToken::new();
    // Before any task starts: a port that cannot be bound fails the start cleanly.
    let served = http::spawn(
        &cfg.worker.http_listen,
        HttpState {
            cfg: cfg.clone(),
            bus: bus.clone(),
            engine: engine.clone(),
            ready: ready.clone(),
            metrics: crate::telemetry::metrics::install(),
            worker_id: worker_id.clone(),
            shutdown: shutdown.clone(),
        },
    )
    .await?;
    let http_addr = served.as_ref().map(|(a, _)| *a);
    let mut background = vec![
        tokio::spawn(events::run(task.clone(), rx)),
        tokio::spawn(watch::run(task.clone(), bus.health.clone())),
        tokio::spawn(monitor::run(task.clone(), sink.clone(), bus.health.clone())),
        tokio::spawn(prober::run(task.clone(), bus.health.clone())),
        control::start(bus.clone(), task.clone(), sink.clone()).await?,
    ];
    background.extend(served.map(|(_, h)| h));
    background.push(tokio::spawn(advisories::run(
        Arc::new(worker.clone()),
        shutdown.clone(),
    )));
    let consume = tokio::spawn(worker.clone().run(shutdown.clone()));
    Ok(Running {
        worker,
        bus,
        engine,
        fleet,
        sink,
        events: task,
        ready,
        http_addr,
        shutdown,
        consume,
        background,
    })
}

impl Running {
    /// The worker id.
    pub fn worker_id(&self) -> &str {
        &self.worker.worker_id
    }

    /// A token that stops consuming when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Graceful stop: stop pulling, finish or return in-flight work, flush events, drain.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.consume.await;
        drop(self.worker);
        drop(self.sink);
        drop(self.events);
        // Give the event task a moment to flush what the last requests produced.
        tokio::time::sleep(Duration::from_millis(300)).await;
        for h in self.background {
            h.abort();
        }
        let _ = self.bus.client.drain().await;
    }
}
