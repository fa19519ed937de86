//! Connecting to NATS and creating the streams, the shared consumer and the KV buckets.
//! Every step is idempotent (create-or-update), so every worker runs it at start-up.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, stream};

use crate::config::{Config, NatsConfig};
use crate::contract::{
    FEEDBACK_CONSUMER, Names, QUALITY_CONSUMER, SETTLER_CONSUMER, WORKER_CONSUMER, alert_consumer,
};

/// A failure talking to NATS, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot connect to NATS at {url}")]
    Connect {
        url: String,
        #[source]
        source: async_nats::Error,
    },
    #[error("cannot read NATS credential `{what}`")]
    Credential {
        what: &'static str,
        #[source]
        source: async_nats::Error,
    },
    #[error("cannot set up {what}")]
    Setup {
        what: String,
        #[source]
        source: async_nats::Error,
    },
}

/// A set-up step's error, naming the step.
pub fn setup_err<E: Into<async_nats::Error>>(
    what: impl Into<String>,
) -> impl FnOnce(E) -> BusError {
    let what = what.into();
    move |e| BusError::Setup {
        what,
        source: e.into(),
    }
}

/// Connects with the auth and TLS options of `[nats]`, retrying the first connect and
/// reconnecting forever afterwards (a worker outlives NATS restarts).
pub async fn connect(cfg: &NatsConfig) -> Result<async_nats::Client, BusError> {
    connect_named(cfg, "ai-failover").await
}

/// [`connect`] with a client name shown in NATS monitoring.
pub async fn connect_named(cfg: &NatsConfig, name: &str) -> Result<async_nats::Client, BusError> {
    let cred = |what: &'static str, e: async_nats::Error| BusError::Credential { what, source: e };
    let mut opts = async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5))
        .request_timeout(Some(Duration::from_millis(cfg.request_timeout_ms)));
    if let Some(path) = &cfg.creds_file {
        opts = opts
            .credentials_file(path)
            .await
            .map_err(|e| cred("nats.creds_file", e.into()))?;
    }
    if let Some(path) = &cfg.nkey_file {
        let seed = std::fs::read_to_string(path).map_err(|e| cred("nats.nkey_file", e.into()))?;
        opts = opts.nkey(seed.trim().to_string());
    }
    if let Some(var) = &cfg.token_env {
        let token = std::env::var(var).map_err(|e| cred("nats.token_env", e.into()))?;
        opts = opts.token(token);
    }
    if let Some(user) = &cfg.user {
        let var = cfg.password_env.as_deref().unwrap_or("NATS_PASSWORD");
        let pass = std::env::var(var).map_err(|e| cred("nats.password_env", e.into()))?;
        opts = opts.user_and_password(user.clone(), pass);
    }
    if let Some(ca) = &cfg.tls_ca_file {
        opts = opts.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&cfg.tls_cert_file, &cfg.tls_key_file) {
        opts = opts.add_client_certificate(cert.clone(), key.clone());
    }
    let addrs: Vec<async_nats::ServerAddr> = cfg
        .url
        .split(',')
        .map(|u| u.trim().parse())
        .collect::<Result<_, _>>()
        .map_err(|e: std::io::Error| BusError::Connect {
            url: cfg.url.clone(),
            source: e.into(),
        })?;
    // retry_on_initial_connect makes connect() return at once; wait for the first
    // connection so that set-up errors are about JetStream, not about reachability.
    let client = opts.connect(addrs).await.map_err(|e| BusError::Connect {
        url: cfg.url.clone(),
        source: e.into(),
    })?;
    Ok(client)
}

/// Handles to everything a worker uses on the bus.
#[derive(Clone)]
pub struct Bus {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub names: Names,
    pub requests: stream::Stream,
    pub consumer: consumer::PullConsumer,
    /// The settlers' consumer on the advisories stream (see `advisories`).
    pub settlers: consumer::PullConsumer,
    pub health: kv::Store,
    pub outcomes: kv::Store,
    pub budget: kv::Store,
    pub cache: kv::Store,
    /// The feedback consumer all workers share (see `feedback`).
    pub feedback: consumer::PullConsumer,
    /// The quality log (read by sequence when folding) and its shared consumer.
    pub quality_log: stream::Stream,
    pub quality_folders: consumer::PullConsumer,
    pub signals: kv::Store,
    pub quality: kv::Store,
    /// Each webhook's delivery consumer on `AI_ALERTS`, by webhook id.
    pub alert_consumers: Vec<(String, consumer::PullConsumer)>,
    /// The workers' shares of the current intervals' rollups (see `history`).
    pub stats_window: kv::Store,
    /// Provider keys, encrypted (see `secrets`).
    pub secrets: kv::Store,
    /// Each tenant's admitted requests per second (see `tenants`).
    pub quotas: kv::Store,
    /// The workers' consumers on each tenant's streams, by tenant.
    pub tenant_queues: Vec<(String, super::tenants::TenantQueue)>,
}

/// How long a stored outcome answers redeliveries and duplicates.
pub const OUTCOME_TTL: Duration = Duration::from_secs(24 * 3600);

/// The results stream's duplicate window: long enough to cover every redelivery of a request
/// (`max_deliver` × `ack_wait`, twice over), and never below two minutes.
pub fn results_duplicate_window(cfg: &Config) -> Duration {
    let redeliveries = cfg.worker.ack_wait_ms * cfg.worker.max_deliver.max(1) as u64 * 2;
    Duration::from_millis(redeliveries.max(120_000))
}

/// Creates or updates every stream, the shared consumer and the buckets, and returns handles.
pub async fn ensure(client: &async_nats::Client, cfg: &Config) -> Result<Bus, BusError> {
    let names = Names::new(cfg.nats.prefix.clone());
    let mut js = jetstream::new(client.clone());
    js.set_timeout(Duration::from_millis(cfg.nats.request_timeout_ms));
    // Tenants with a queue: the configured ones, and any whose stream exists (a tenant taken
    // out of the file may still have requests waiting, and the server may still map to it).
    // Boxed, like the tenants' queues below: set-up is one large future already.
    let tenants = Box::pin(super::tenants::tenants_with_queues(&js, cfg, &names)).await?;
    let replicas = cfg.nats.replicas;
    let day = Duration::from_secs(24 * 3600);
    let history = day * cfg.history.retention_days;
    let advisory_subjects =
        Box::pin(super::tenants::advisory_subjects(&js, &names, &tenants)).await?;
    for config in stream_configs(cfg, &names, advisory_subjects) {
        let name = config.name.clone();
        js.create_or_update_stream(config)
            .await
            .map_err(setup_err(format!("stream {name}")))?;
    }
    let requests = js
        .get_stream(names.requests_stream())
        .await
        .map_err(setup_err("requests stream"))?;
    let consumer = requests
        .create_consumer(consumer_config(cfg, &names))
        .await
        .map_err(setup_err(format!("consumer {WORKER_CONSUMER}")))?;
    let settlers = js
        .get_stream(names.advisories_stream())
        .await
        .map_err(setup_err("advisories stream"))?
        .create_consumer(settler_config(cfg))
        .await
        .map_err(setup_err(format!("consumer {SETTLER_CONSUMER}")))?;

    let mut tenant_queues = Vec::new();
    for tenant in tenants {
        // Not fatal: the queue is tried again while running (see `queues`).
        match Box::pin(super::tenants::ensure_queue(&js, cfg, &names, &tenant)).await {
            Ok(consumer) => tenant_queues.push((tenant, consumer)),
            Err(e) => {
                let error = crate::telemetry::chain(&e);
                tracing::error!(%tenant, %error, "tenant's queue not set up yet");
            }
        }
    }

    let feedback = js
        .get_stream(names.feedback_stream())
        .await
        .map_err(setup_err("feedback stream"))?
        .create_consumer(feedback_consumer_config(cfg))
        .await
        .map_err(setup_err(format!("consumer {FEEDBACK_CONSUMER}")))?;
    let quality_log = js
        .get_stream(names.quality_log_stream())
        .await
        .map_err(setup_err("quality log stream"))?;
    let quality_folders = quality_log
        .create_consumer(quality_consumer_config(cfg))
        .await
        .map_err(setup_err(format!("consumer {QUALITY_CONSUMER}")))?;
    let alerts = js
        .get_stream(names.alerts_stream())
        .await
        .map_err(setup_err("alerts stream"))?;
    let mut alert_consumers = Vec::new();
    for w in &cfg.alerts.webhooks {
        let name = alert_consumer(&w.id);
        let consumer = alerts
            .create_consumer(alert_consumer_config(cfg, &names, &name))
            .await
            .map_err(setup_err(format!("consumer {name}")))?;
        alert_consumers.push((w.id.clone(), consumer));
    }

    let bucket = |name: String, history: i64, max_age: Duration| kv::Config {
        bucket: name,
        history,
        max_age,
        storage: stream::StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    };
    let store = |config: kv::Config| {
        let js = js.clone();
        async move {
            let name = config.bucket.clone();
            js.create_or_update_key_value(config)
                .await
                .map_err(setup_err(format!("bucket {name}")))
        }
    };
    let health = store(bucket(names.health_bucket(), 5, Duration::ZERO)).await?;
    let outcomes = store(bucket(names.outcomes_bucket(), 1, OUTCOME_TTL)).await?;
    // Spend history is kept as long as the rollups: reports show cost per day.
    let budget = store(bucket(names.budget_bucket(), 1, history)).await?;
    let cache = store(bucket(names.cache_bucket(), 1, day)).await?;
    let signals = store(bucket(
        names.signals_bucket(),
        1,
        day * cfg.feedback.signals_retention_days,
    ))
    .await?;
    let quality = store(bucket(names.quality_bucket(), 1, Duration::ZERO)).await?;
    // Keys are kept until replaced or deleted; the audit trail says who set which.
    let secrets = store(bucket(names.secrets_bucket(), 1, Duration::ZERO)).await?;
    // A quota window covers the last two minutes of a tenant's requests.
    let quotas = store(bucket(names.quotas_bucket(), 1, Duration::from_secs(600))).await?;
    // Shares are read once, just after their interval: an hour is plenty.
    let stats_window = store(bucket(
        names.stats_window_bucket(),
        1,
        Duration::from_millis(cfg.history.interval_ms * 2).max(Duration::from_secs(3600)),
    ))
    .await?;
    Ok(Bus {
        client: client.clone(),
        js,
        names,
        requests,
        consumer,
        settlers,
        health,
        outcomes,
        budget,
        cache,
        feedback,
        quality_log,
        quality_folders,
        signals,
        quality,
        alert_consumers,
        stats_window,
        secrets,
        quotas,
        tenant_queues,
    })
}

/// Every stream of the fleet, configured (a plain function: built here, the configurations
/// do not swell the set-up future's frame).
fn stream_configs(
    cfg: &Config,
    names: &Names,
    advisory_subjects: Vec<String>,
) -> Vec<stream::Config> {
    let day = Duration::from_secs(24 * 3600);
    let requests = requests_stream_config(
        cfg,
        names.requests_stream(),
        names.requests_filter(),
        "ai-failover analysis requests (work queue)",
    );
    let results = stream::Config {
        // The fleet's results, and the tenants' (each tenant's account sees its own).
        subjects: vec![names.results_filter(), names.tenant_results_filter()],
        duplicate_window: results_duplicate_window(cfg),
        max_age: 7 * day,
        ..file_stream(
            cfg,
            names.results_stream(),
            names.results_filter(),
            "ai-failover results, one per request",
        )
    };
    let events = stream::Config {
        max_age: 7 * day,
        max_messages: 1_000_000,
        ..file_stream(
            cfg,
            names.events_stream(),
            names.events_filter(),
            "ai-failover health, failover and mode events",
        )
    };
    let dead = stream::Config {
        // A request's letter is keyed by its stream sequence and may be written both by the
        // worker on its last delivery and from the advisory: as long as requests come back.
        duplicate_window: results_duplicate_window(cfg),
        max_age: 30 * day,
        ..file_stream(
            cfg,
            names.dead_letter_stream(),
            names.dead_letter_filter(),
            "ai-failover dead letters",
        )
    };
    // The server raises a MAX_DELIVERIES advisory once, as a core NATS message, whether or
    // not a worker is listening (even with the whole fleet down): kept here, it waits for
    // the next worker instead of being lost with its request.
    let advisories = stream::Config {
        subjects: advisory_subjects,
        retention: stream::RetentionPolicy::WorkQueue,
        max_age: 30 * day,
        ..file_stream(
            cfg,
            names.advisories_stream(),
            names.max_deliveries_advisory(),
            "ai-failover: requests JetStream stopped delivering, until a worker settles them",
        )
    };
    // Who did what to the fleet: kept long (audits ask for a year and more), readable one
    // record at a time through the direct-get API, which an operator's account may import.
    let audit = stream::Config {
        max_age: day * cfg.audit.retention_days,
        allow_direct: true,
        ..file_stream(
            cfg,
            names.audit_stream(),
            names.audit_filter(),
            "ai-failover audit trail: one record per control call",
        )
    };
    let feedback = feedback_stream_config(
        cfg,
        names.feedback_stream(),
        names.feedback_filter(),
        "ai-failover execution and outcome feedback",
    );
    // The quality log is read by sequence (direct get) while folding.
    let quality_log = stream::Config {
        duplicate_window: QUALITY_LOG_DUPLICATE_WINDOW,
        allow_direct: true,
        ..feedback_stream_config(
            cfg,
            names.quality_log_stream(),
            names.quality_log_filter(),
            "ai-failover counted outcomes, folded into ai_quality",
        )
    };
    // Alerts are kept a month: what paged whom, replayable.
    let alerts = stream::Config {
        max_age: 30 * day,
        ..file_stream(
            cfg,
            names.alerts_stream(),
            names.alerts_filter(),
            "ai-failover alerts, delivered to the configured webhooks",
        )
    };
    // History: one rollup per provider per interval, written by every worker and kept once
    // (`Nats-Msg-Id`); the duplicate window covers the latest a worker still writes one.
    let stats = stream::Config {
        duplicate_window: Duration::from_millis((cfg.history.interval_ms * 2).max(120_000)),
        max_age: day * cfg.history.retention_days,
        ..file_stream(
            cfg,
            names.stats_stream(),
            names.stats_filter(),
            "ai-failover history: one rollup per provider per interval",
        )
    };
    vec![
        requests,
        results,
        events,
        dead,
        advisories,
        audit,
        feedback,
        quality_log,
        alerts,
        stats,
    ]
}

/// A file-stored stream of `subject` with the fleet's replicas; the rest as JetStream's
/// defaults.
fn file_stream(cfg: &Config, name: String, subject: String, description: &str) -> stream::Config {
    stream::Config {
        name,
        description: Some(description.into()),
        subjects: vec![subject],
        storage: stream::StorageType::File,
        num_replicas: cfg.nats.replicas,
        ..Default::default()
    }
}

/// A stream of feedback: the fleet's or a tenant's. Feedback is the record of what the advice
/// was worth: kept as long as audits are.
pub fn feedback_stream_config(
    cfg: &Config,
    name: String,
    subject: String,
    description: &str,
) -> stream::Config {
    stream::Config {
        duplicate_window: FEEDBACK_DUPLICATE_WINDOW,
        max_age: Duration::from_secs(24 * 3600) * cfg.feedback.retention_days,
        ..file_stream(cfg, name, subject, description)
    }
}

/// A work-queue stream of requests: the fleet's, or a tenant's.
pub fn requests_stream_config(
    cfg: &Config,
    name: String,
    subject: String,
    description: &str,
) -> stream::Config {
    stream::Config {
        retention: stream::RetentionPolicy::WorkQueue,
        duplicate_window: Duration::from_secs(120),
        max_message_size: (cfg.worker.max_request_bytes as i32)
            .saturating_mul(4)
            .max(1 << 20),
        ..file_stream(cfg, name, subject, description)
    }
}

/// How long a webhook's delivery may hold an alert: one POST (cut at `alerts.timeout_ms`)
/// and its ack.
pub fn alert_ack_wait(alerts: &crate::config::AlertsConfig) -> Duration {
    Duration::from_millis(alerts.timeout_ms) + Duration::from_secs(5)
}

/// A webhook's delivery consumer: alerts raised from its creation on (a webhook added later
/// is not sent the past), each redelivered until delivered or given up.
fn alert_consumer_config(cfg: &Config, names: &Names, name: &str) -> consumer::pull::Config {
    consumer::pull::Config {
        deliver_policy: consumer::DeliverPolicy::New,
        filter_subject: names.alerts_filter(),
        ack_wait: alert_ack_wait(&cfg.alerts),
        ..shared_consumer(cfg, name, "ai-failover alert delivery to one webhook")
    }
}

/// Feedback re-published within this window is dropped by the stream (later duplicates are
/// recognised in the signal store).
pub const FEEDBACK_DUPLICATE_WINDOW: Duration = Duration::from_secs(600);

/// An outcome logged twice within this window counts once. Each outcome is logged just before
/// it is joined to its signal, and a logged horizon is never logged again once joined: only a
/// bus outage longer than this, beginning between the two, could count one twice.
pub const QUALITY_LOG_DUPLICATE_WINDOW: Duration = Duration::from_secs(1800);

/// The feedback consumer: redelivered until handled (a report waits up to 10 s for its
/// signal, then is dead-lettered; bus failures are retried).
pub fn feedback_consumer_config(cfg: &Config) -> consumer::pull::Config {
    shared_consumer(cfg, FEEDBACK_CONSUMER, "ai-failover feedback ingestion")
}

/// The quality log's consumer: each entry is acknowledged once a quality record has folded it.
pub fn quality_consumer_config(cfg: &Config) -> consumer::pull::Config {
    shared_consumer(cfg, QUALITY_CONSUMER, "ai-failover quality folding")
}

/// A durable consumer the workers share, redelivering until a worker has handled a message.
fn shared_consumer(cfg: &Config, name: &str, description: &str) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(name.to_string()),
        description: Some(description.into()),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: Duration::from_millis(cfg.worker.ack_wait_ms),
        max_deliver: -1,
        max_ack_pending: 10_000,
        num_replicas: cfg.nats.replicas,
        ..Default::default()
    }
}

/// The durable pull consumer all workers share.
pub fn consumer_config(cfg: &Config, names: &Names) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(WORKER_CONSUMER.to_string()),
        description: Some("ai-failover workers".into()),
        filter_subject: names.requests_filter(),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: Duration::from_millis(cfg.worker.ack_wait_ms),
        max_deliver: cfg.worker.max_deliver,
        max_ack_pending: cfg.worker.max_ack_pending,
        num_replicas: cfg.nats.replicas,
        ..Default::default()
    }
}

/// The durable pull consumer through which workers settle advisories: redelivered until one
/// succeeds (no delivery limit), with an ack wait that covers one held bus operation.
pub fn settler_config(cfg: &Config) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(SETTLER_CONSUMER.to_string()),
        description: Some("ai-failover settlers of undeliverable requests".into()),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: super::hold::hold_limit(Duration::from_millis(cfg.worker.ack_wait_ms)),
        max_deliver: -1,
        num_replicas: cfg.nats.replicas,
        ..Default::default()
    }
}
