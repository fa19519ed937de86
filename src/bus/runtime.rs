//! Assembles and runs one worker: connection, set-up, engine, and the services around the
//! consume loop (the event loop, the health watch, the monitor, the prober, the settler,
//! the control service, the HTTP port). Each service owns only what it needs and runs as a
//! task this module awaits on shutdown: nothing is aborted and nothing slept on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::contract::{FLEET_MODE_KEY, FleetModeRecord, ProviderHealthRecord};
use crate::engine::Engine;
use crate::engine::clock::SystemClock;
use crate::providers::Provider;
use crate::providers::http::ClientError;

use super::advisories::Settler;
use super::alerts::{AlertDesk, StallWatch, WebhookDelivery};
use super::announce::HealthAnnouncer;
use super::audit::Auditor;
use super::clock_sync::ClockSync;
use super::consume::{Pick, SharedConsumer};
use super::control::{self, Ctx};
use super::events::{self, EventLoop, OutcomeBook};
use super::feedback::FeedbackIngest;
use super::fleet::FleetState;
use super::health_store::HealthStore;
use super::history::{Roller, SharesWriter, StatsShares, Timeline};
use super::http::{self, HttpError, HttpState};
use super::kv_record::KvRecord;
use super::mode::ModeAnnouncer;
use super::monitor::Monitor;
use super::outcomes::Outcomes;
use super::prober::Prober;
use super::publish::Publisher;
use super::quality_fold::QualityFolder;
use super::quality_view::QualityWatch;
use super::secrets::Keyring;
use super::setup::{self, BusError};
use super::signals::Signals;
use super::spend::SpendBook;
use super::tenants::{Gate, TenantBook};
use super::watch::HealthWatch;
use super::worker::Worker;

/// A worker that could not start, and why.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Provider(#[from] ClientError),
    #[error(transparent)]
    Http(#[from] HttpError),
}

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

/// A running worker and its services.
pub struct Running {
    pub engine: Arc<Engine>,
    pub fleet: Arc<FleetState>,
    /// Where `worker.http_listen` is served (`None` when it is off).
    pub http_addr: Option<SocketAddr>,
    worker_id: String,
    client: async_nats::Client,
    /// Stops pulling requests (the consume loop then finishes what it holds).
    consuming: CancellationToken,
    consume: JoinHandle<()>,
    /// Stops the services around the consume loop.
    services: CancellationToken,
    background: Vec<JoinHandle<()>>,
    /// Tells the event loop to write out what is queued and end.
    events_stop: CancellationToken,
    events: JoinHandle<()>,
}

/// Starts a worker. `providers` replaces the HTTP adapters (tests); `None` builds them from
/// the configuration.
pub async fn start(
    cfg: Arc<Config>,
    providers: Option<Vec<Arc<dyn Provider>>>,
) -> Result<Running, StartError> {
    // Setting up holds every handle of the worker across awaits: a future of many kilobytes,
    // kept on the heap rather than on the caller's stack (a test thread has 2 MiB).
    Box::pin(set_up(cfg, providers)).await
}

async fn set_up(
    cfg: Arc<Config>,
    providers: Option<Vec<Arc<dyn Provider>>>,
) -> Result<Running, StartError> {
    let worker_id = cfg.worker.id.clone().unwrap_or_else(default_worker_id);
    let client = setup::connect_named(&cfg.nats, &format!("ai-failover {worker_id}")).await?;
    let bus = setup::ensure(&client, &cfg).await?;
    // Stored keys take precedence over configured ones, from the first call on.
    let keyring = Arc::new(Keyring::new(&cfg));
    keyring.load(&bus.secrets).await;
    let providers = match providers {
        Some(p) => p,
        None => cfg
            .providers
            .iter()
            .map(|p| {
                let slot = keyring
                    .slot(&p.id)
                    .unwrap_or_else(|| crate::providers::configured_key(p));
                crate::providers::try_build_with(p, &cfg.engine, slot)
            })
            .collect::<Result<_, _>>()?,
    };
    // Before anything counts: metrics recorded earlier would be lost.
    let metrics = crate::telemetry::metrics::install();
    for p in &cfg.providers {
        if let Some(limit) = p.daily_budget_usd {
            let provider = p.id.to_string();
            metrics::gauge!(crate::telemetry::metrics::name::BUDGET_LIMIT_USD, "provider" => provider)
                .set(limit);
        }
    }
    // On the server's time before the first deadline is judged.
    let clock_sync = ClockSync {
        kv: bus.health.clone(),
        worker_id: worker_id.clone(),
    };
    clock_sync.sync().await;
    let health = HealthStore::new(bus.health.clone(), worker_id.clone());
    let probe_ttl = Duration::from_millis(
        cfg.providers
            .iter()
            .map(|p| p.timeout_ms)
            .max()
            .unwrap_or(20_000),
    );
    let fleet = Arc::new(FleetState::new(
        health.clone(),
        bus.cache.clone(),
        probe_ttl,
        cfg.quality.half_life_s,
    ));
    let tenants = Arc::new(TenantBook::new(&cfg));
    let (sink, rx) = events::channel();
    let engine = Arc::new(Engine::new(
        cfg.clone(),
        providers,
        Arc::new(SystemClock),
        Arc::new(sink),
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
    // An operator's manual mode holds from the first request on.
    if let Ok(Some(entry)) = bus.health.entry(FLEET_MODE_KEY).await
        && let Ok(record) = serde_json::from_slice::<FleetModeRecord>(&entry.value)
    {
        fleet.set_mode_record(record, entry.revision);
    }
    let publisher = Publisher::new(bus.js.clone(), client.clone(), bus.names.clone());
    let alerts = Arc::new(AlertDesk::new(
        publisher.clone(),
        bus.health.clone(),
        Duration::from_millis(cfg.alerts.repeat_after_ms),
        worker_id.clone(),
    ));
    let mode = Arc::new(ModeAnnouncer::new(
        cfg.providers.clone(),
        fleet.clone(),
        engine.clone(),
        bus.health.clone(),
        publisher.clone(),
        alerts.clone(),
        worker_id.clone(),
    ));
    let announcer = Arc::new(HealthAnnouncer::new(
        publisher.clone(),
        fleet.clone(),
        engine.clone(),
        mode.clone(),
        alerts.clone(),
        worker_id.clone(),
    ));
    let outcomes = Outcomes::new(
        bus.outcomes.clone(),
        Duration::from_millis(cfg.worker.ack_wait_ms),
    );
    let stats = StatsShares::new(cfg.history.interval_ms);
    let timeline = Arc::new(Timeline::default());
    let settler = Arc::new(Settler {
        cfg: cfg.clone(),
        names: bus.names.clone(),
        js: bus.js.clone(),
        outcomes: outcomes.clone(),
        publisher: publisher.clone(),
        stats: stats.clone(),
        worker_id: worker_id.clone(),
    });
    let control = Arc::new(Ctx {
        cfg: cfg.clone(),
        bus: bus.clone(),
        engine: engine.clone(),
        fleet: fleet.clone(),
        announcer: announcer.clone(),
        mode: mode.clone(),
        auditor: Auditor::new(bus.js.clone(), bus.names.clone(), worker_id.clone()),
        worker_id: worker_id.clone(),
    });
    let ready = Arc::new(AtomicBool::new(false));
    let consuming = CancellationToken::new();
    let services = CancellationToken::new();
    // Before any task starts: a port that cannot be bound fails the start cleanly.
    let served = http::spawn(
        &cfg.worker.http_listen,
        HttpState {
            cfg: cfg.clone(),
            bus: bus.clone(),
            engine: engine.clone(),
            ready: ready.clone(),
            metrics,
            worker_id: worker_id.clone(),
            shutdown: services.clone(),
            control: control.clone(),
        },
    )
    .await?;
    let http_addr = served.as_ref().map(|(a, _)| *a);

    let events_stop = CancellationToken::new();
    let event_loop = EventLoop::new(
        OutcomeBook::new(cfg.clone(), engine.clone(), health, announcer.clone()),
        SpendBook::new(
            bus.budget.clone(),
            cfg.providers.iter().map(|p| p.id.to_string()).collect(),
            fleet.clone(),
        )
        .with_alerts(
            cfg.providers
                .iter()
                .filter_map(|p| Some((p.id.to_string(), p.daily_budget_usd?)))
                .collect(),
            alerts.clone(),
            cfg.alerts.budget_thresholds.clone(),
        )
        .with_tenants(tenants.clone()),
        bus.cache.clone(),
        publisher.clone(),
        SharesWriter::new(stats.clone(), bus.stats_window.clone(), worker_id.clone()),
    );
    let events = tokio::spawn(event_loop.run(rx, events_stop.clone()));
    let roller = Roller {
        cfg: cfg.clone(),
        js: bus.js.clone(),
        timeline: timeline.clone(),
        publisher: publisher.clone(),
        alerts: alerts.clone(),
        worker_id: worker_id.clone(),
    };
    let stall = StallWatch {
        consumer: bus.consumer.clone(),
        desk: alerts.clone(),
        stall_after: Duration::from_millis(cfg.alerts.stall_after_ms),
    };
    let watch = HealthWatch {
        kv: bus.health.clone(),
        engine: engine.clone(),
        fleet: fleet.clone(),
        mode,
        timeline,
    };
    let monitor = Monitor {
        engine: engine.clone(),
        kv: bus.health.clone(),
        worker_id: worker_id.clone(),
        default_interval_ms: cfg.engine.health_check_interval_ms,
    };
    let prober = Prober {
        cfg: cfg.clone(),
        engine: engine.clone(),
        fleet: fleet.clone(),
        announcer: announcer.clone(),
        kv: bus.health.clone(),
        worker_id: worker_id.clone(),
    };
    let signals = Signals::new(bus.signals.clone());
    let feedback = Arc::new(FeedbackIngest {
        cfg: cfg.clone(),
        names: bus.names.clone(),
        signals: signals.clone(),
        outcomes: outcomes.clone(),
        publisher: publisher.clone(),
        stats: stats.clone(),
        log: bus.quality_log.clone(),
        worker_id: worker_id.clone(),
    });
    let folder = Arc::new(QualityFolder {
        names: bus.names.clone(),
        log: bus.quality_log.clone(),
        records: KvRecord::new(bus.quality.clone(), "quality record"),
        half_life_s: cfg.quality.half_life_s,
        ack_wait: Duration::from_millis(cfg.worker.ack_wait_ms),
        folding: Default::default(),
    });
    let quality_watch = QualityWatch {
        kv: bus.quality.clone(),
        book: fleet.quality_book(),
    };
    let shared = |what, consumer, pick: Pick, at_once| SharedConsumer {
        what,
        client: client.clone(),
        cfg: cfg.clone(),
        consumer,
        pick,
        at_once,
    };
    let mut background = vec![
        tokio::spawn(
            shared(
                "feedback",
                bus.feedback.clone(),
                Box::new(|b| Some(b.feedback)),
                cfg.feedback.max_in_flight,
            )
            .run(services.clone(), feedback.clone()),
        ),
        tokio::spawn(
            shared(
                "quality log",
                bus.quality_folders.clone(),
                Box::new(|b| Some(b.quality_folders)),
                cfg.feedback.max_in_flight,
            )
            .run(services.clone(), folder),
        ),
        tokio::spawn(quality_watch.run(services.clone())),
        tokio::spawn(watch.run(services.clone())),
        tokio::spawn(monitor.run(services.clone())),
        tokio::spawn(prober.run(services.clone())),
        tokio::spawn(clock_sync.run(services.clone())),
        tokio::spawn(roller.run(services.clone())),
        tokio::spawn(stall.run(services.clone())),
        tokio::spawn({
            let (keyring, kv, stop) = (keyring.clone(), bus.secrets.clone(), services.clone());
            async move { keyring.run(kv, stop).await }
        }),
    ];
    background.push(control::start(control.clone(), services.clone()).await?);
    if let Some(file) = cfg.file.clone() {
        background.push(tokio::spawn(super::tenants::follow_file(
            tenants.clone(),
            cfg.clone(),
            file,
            services.clone(),
        )));
    }
    background.extend(served.map(|(_, h)| h));
    background.push(tokio::spawn(
        shared(
            "MAX_DELIVERIES advisories",
            bus.settlers.clone(),
            Box::new(|b| Some(b.settlers)),
            super::advisories::SETTLING_AT_ONCE,
        )
        .run(services.clone(), settler.clone()),
    ));
    // One delivery per webhook, each on its own consumer: a failing one holds up no other.
    for (id, consumer) in bus.alert_consumers.clone() {
        let Some(delivery) = cfg
            .alerts
            .webhooks
            .iter()
            .find(|w| w.id == id)
            .and_then(|w| WebhookDelivery::new(w.clone(), &cfg.alerts))
        else {
            continue;
        };
        let find = id.clone();
        let pick = Box::new(move |b: super::setup::Bus| {
            b.alert_consumers
                .into_iter()
                .find(|(i, _)| *i == find)
                .map(|(_, c)| c)
        });
        background.push(tokio::spawn(
            shared("alerts", consumer, pick, 8).run(services.clone(), Arc::new(delivery)),
        ));
    }
    let worker = Worker {
        cfg: cfg.clone(),
        client: client.clone(),
        consumer: bus.consumer.clone(),
        tenant_queues: bus.tenant_queues.clone(),
        feedback: feedback.clone(),
        names: bus.names.clone(),
        tenants: tenants.clone(),
        gate: Gate::new(tenants.clone(), bus.quotas.clone(), fleet.clone()),
        engine: engine.clone(),
        outcomes,
        publisher,
        signals,
        settler,
        stats,
        worker_id: worker_id.clone(),
        ready,
    };
    let consume = tokio::spawn(worker.run(consuming.clone()));
    Ok(Running {
        engine,
        fleet,
        http_addr,
        worker_id,
        client,
        consuming,
        consume,
        services,
        background,
        events_stop,
        events,
    })
}

impl Running {
    /// The worker id.
    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// A token that stops consuming when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.consuming.clone()
    }

    /// Graceful stop: stop pulling and finish or return in-flight work; stop the services
    /// and wait for them; write out every queued event (the last requests' spend and
    /// health); drain the connection.
    pub async fn stop(self) {
        self.consuming.cancel();
        let _ = self.consume.await;
        self.services.cancel();
        for h in self.background {
            let _ = h.await;
        }
        self.events_stop.cancel();
        let _ = self.events.await;
        let _ = self.client.drain().await;
    }
}
