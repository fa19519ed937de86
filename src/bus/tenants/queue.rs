//! A tenant's queues: its own work-queue stream of requests and its own feedback stream (so
//! that its `Nats-Msg-Id`s are de-duplicated among its own messages only), the workers'
//! consumers on them, and its requests' MAX_DELIVERIES advisory in the advisories stream.
//! Idempotent, like all set-up.

use async_nats::jetstream::{self, consumer};

use crate::config::Config;
use crate::contract::{FEEDBACK_CONSUMER, Names, WORKER_CONSUMER};

use super::super::setup::{
    BusError, consumer_config, feedback_consumer_config, feedback_stream_config,
    requests_stream_config, setup_err,
};

/// The consumers of one tenant's queues.
#[derive(Clone)]
pub struct TenantQueue {
    /// The workers' consumer on its requests.
    pub requests: consumer::PullConsumer,
    /// The workers' consumer on its feedback.
    pub feedback: consumer::PullConsumer,
}

/// Creates (or updates) `tenant`'s streams and the workers' consumers on them.
pub async fn ensure_queue(
    js: &jetstream::Context,
    cfg: &Config,
    names: &Names,
    tenant: &str,
) -> Result<TenantQueue, BusError> {
    let name = names.tenant_requests_stream(tenant);
    let filter = names.tenant_requests_filter(tenant);
    let description = format!("ai-failover analysis requests of tenant {tenant} (work queue)");
    let requests = stream(
        js,
        requests_stream_config(cfg, name.clone(), filter.clone(), &description),
    )
    .await?;
    // The advisory of this stream's consumer must be kept like the fleet's.
    let advisory = names.max_deliveries_advisory_of(&name);
    let mut advisories = js
        .get_stream(names.advisories_stream())
        .await
        .map_err(setup_err("advisories stream"))?;
    let mut config = advisories
        .info()
        .await
        .map_err(setup_err("advisories stream"))?
        .config
        .clone();
    if !config.subjects.contains(&advisory) {
        config.subjects.push(advisory);
        js.update_stream(config)
            .await
            .map_err(setup_err("advisories stream"))?;
    }
    let requests = requests
        .create_consumer(consumer::pull::Config {
            filter_subject: filter,
            description: Some(format!("ai-failover workers, tenant {tenant}")),
            ..consumer_config(cfg, names)
        })
        .await
        .map_err(setup_err(format!("consumer {WORKER_CONSUMER} of {name}")))?;
    let feedback_name = names.tenant_feedback_stream(tenant);
    let feedback = stream(
        js,
        feedback_stream_config(
            cfg,
            feedback_name.clone(),
            names.tenant_feedback_filter(tenant),
            &format!("ai-failover execution and outcome feedback of tenant {tenant}"),
        ),
    )
    .await?
    .create_consumer(feedback_consumer_config(cfg))
    .await
    .map_err(setup_err(format!(
        "consumer {FEEDBACK_CONSUMER} of {feedback_name}"
    )))?;
    Ok(TenantQueue { requests, feedback })
}

/// Creates or updates the stream of `config` and returns it.
async fn stream(
    js: &jetstream::Context,
    config: jetstream::stream::Config,
) -> Result<jetstream::stream::Stream, BusError> {
    let name = config.name.clone();
    js.create_or_update_stream(config)
        .await
        .map_err(setup_err(format!("stream {name}")))?;
    js.get_stream(&name)
        .await
        .map_err(setup_err(format!("stream {name}")))
}

/// The MAX_DELIVERIES advisories the advisories stream keeps: the requests stream's and each
/// tenant queue's, plus whatever it keeps already (a tenant added while running adds its own,
/// see `tenants::queue`): set-up never takes one away.
pub async fn advisory_subjects(
    js: &jetstream::Context,
    names: &Names,
    tenants: &[String],
) -> Result<Vec<String>, BusError> {
    let mut subjects = vec![names.max_deliveries_advisory()];
    for t in tenants {
        subjects.push(names.max_deliveries_advisory_of(&names.tenant_requests_stream(t)));
    }
    // Only "not there yet" means nothing to keep: any other failure must not shrink it.
    let kept = match js.get_stream(names.advisories_stream()).await {
        Ok(mut s) => {
            let info = s.info().await.map_err(setup_err("advisories stream"))?;
            info.config.subjects.clone()
        }
        Err(e) if stream_not_found(&e) => Vec::new(),
        Err(e) => return Err(setup_err("advisories stream")(e)),
    };
    for k in kept {
        if !subjects.contains(&k) {
            subjects.push(k);
        }
    }
    Ok(subjects)
}

fn stream_not_found(e: &jetstream::context::GetStreamError) -> bool {
    matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(j)
        if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
}

/// The configured tenants and those with a request stream already: a stream named like a
/// tenant's of this fleet whose only subject is that tenant's requests (another fleet's
/// streams may share the name's start when its prefix does).
pub async fn tenants_with_queues(
    js: &jetstream::Context,
    cfg: &Config,
    names: &Names,
) -> Result<Vec<String>, BusError> {
    use futures::StreamExt;
    let mut tenants = super::book::queued(&cfg.tenants);
    let mut streams = js.stream_names();
    while let Some(name) = streams.next().await {
        let name = name.map_err(setup_err("stream names"))?;
        let Some(t) = names.tenant_of_stream(&name) else {
            continue;
        };
        if tenants.contains(&t) {
            continue;
        }
        let mut stream = js
            .get_stream(&name)
            .await
            .map_err(setup_err(format!("stream {name}")))?;
        let info = stream
            .info()
            .await
            .map_err(setup_err(format!("stream {name}")))?;
        if info.config.subjects == [names.tenant_requests_filter(&t)] {
            tenants.push(t);
        }
    }
    Ok(tenants)
}
