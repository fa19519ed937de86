//! A tenant's request queue: its own work-queue stream (so that its request ids are
//! de-duplicated among its own requests only) and the workers' consumer on it, plus its
//! MAX_DELIVERIES advisory in the advisories stream. Idempotent, like all set-up.

use async_nats::jetstream::{self, consumer};

use crate::config::Config;
use crate::contract::{Names, WORKER_CONSUMER};

use super::super::setup::{BusError, consumer_config, requests_stream_config, setup_err};

/// Creates (or updates) `tenant`'s request stream and the workers' consumer on it.
pub async fn ensure_queue(
    js: &jetstream::Context,
    cfg: &Config,
    names: &Names,
    tenant: &str,
) -> Result<consumer::PullConsumer, BusError> {
    let name = names.tenant_requests_stream(tenant);
    let filter = names.tenant_requests_filter(tenant);
    let description = format!("ai-failover analysis requests of tenant {tenant} (work queue)");
    js.create_or_update_stream(requests_stream_config(
        cfg,
        name.clone(),
        filter.clone(),
        &description,
    ))
    .await
    .map_err(setup_err(format!("stream {name}")))?;
    let stream = js
        .get_stream(&name)
        .await
        .map_err(setup_err(format!("stream {name}")))?;
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
    stream
        .create_consumer(consumer::pull::Config {
            filter_subject: filter,
            description: Some(format!("ai-failover workers, tenant {tenant}")),
            ..consumer_config(cfg, names)
        })
        .await
        .map_err(setup_err(format!("consumer {WORKER_CONSUMER} of {name}")))
}
