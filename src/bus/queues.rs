//! The queues a worker pulls requests from: the fleet's requests stream and, for each
//! tenant, the tenant's own stream. One pull loop per queue, all sharing the worker's
//! in-flight slots, plus a consumer of each tenant's feedback stream; a tenant added while
//! running (a reloaded `[[tenants]]`) gets its streams and its loops without a restart.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::consume::SharedConsumer;
use super::tenants::TenantQueue;
use super::worker::Worker;

/// Which queue a pull loop serves.
#[derive(Debug, Clone)]
enum Queue {
    /// The fleet's requests stream (the default tenant).
    Fleet,
    /// A tenant's stream.
    Tenant(String),
}

/// How often the tenants' queues are checked against the terms in force, besides on each
/// reload (a queue whose set-up failed is tried again).
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// Pulls from every queue until `shutdown`; returns once every loop has stopped pulling.
pub(super) async fn consume_all(
    worker: Arc<Worker>,
    permits: Arc<Semaphore>,
    hard_stop: &CancellationToken,
    shutdown: &CancellationToken,
) {
    let mut loops = JoinSet::new();
    let spawn = |loops: &mut JoinSet<()>, queue: Queue, consumer: PullConsumer| {
        loops.spawn(pull(
            worker.clone(),
            queue,
            consumer,
            permits.clone(),
            hard_stop.clone(),
            shutdown.clone(),
        ));
    };
    let serve_tenant = |loops: &mut JoinSet<()>, tenant: &str, queue: &TenantQueue| {
        spawn(
            loops,
            Queue::Tenant(tenant.to_string()),
            queue.requests.clone(),
        );
        loops.spawn(
            feedback_consumer(&worker, tenant, queue)
                .run(shutdown.clone(), worker.feedback.clone()),
        );
    };
    spawn(&mut loops, Queue::Fleet, worker.consumer.clone());
    let mut pulling: HashSet<String> = HashSet::new();
    for (tenant, queue) in &worker.tenant_queues {
        pulling.insert(tenant.clone());
        serve_tenant(&mut loops, tenant, queue);
    }
    let mut terms = worker.tenants.subscribe();
    let mut check = tokio::time::interval(CHECK_EVERY);
    let js = jetstream::new(worker.client.clone());
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = terms.changed() => {}
            _ = check.tick() => {}
        }
        for tenant in worker.tenants.queued() {
            if pulling.contains(&tenant) {
                continue;
            }
            // Boxed: set-up's future is large, and this loop lives as long as the worker.
            let ensured = super::tenants::ensure_queue(&js, &worker.cfg, &worker.names, &tenant);
            match Box::pin(ensured).await {
                Ok(queue) => {
                    tracing::info!(%tenant, "serving a new tenant's requests");
                    pulling.insert(tenant.clone());
                    serve_tenant(&mut loops, &tenant, &queue);
                }
                Err(e) => {
                    let error = crate::telemetry::chain(&e);
                    tracing::warn!(%tenant, %error, "cannot set up the tenant's queue yet");
                }
            }
        }
    }
    while loops.join_next().await.is_some() {}
}

/// Pulls from one queue until `shutdown`, as many messages at a time as there are free
/// slots, recreating its consumer after repeated failures (after a server restart it may be
/// gone).
async fn pull(
    worker: Arc<Worker>,
    queue: Queue,
    mut consumer: PullConsumer,
    permits: Arc<Semaphore>,
    hard_stop: CancellationToken,
    shutdown: CancellationToken,
) {
    let mut consecutive_errors = 0u32;
    // The fleet's queue stands for the worker's readiness (`/readyz`).
    let ready = |ok: bool| {
        if matches!(queue, Queue::Fleet) {
            worker.ready.store(ok, Ordering::Relaxed);
        }
    };
    while !shutdown.is_cancelled() {
        // Pull only as many messages as there are free slots: buffered messages would burn
        // their ack wait before being touched. The slots are taken as messages arrive, not
        // held through the long poll: another queue may take one meanwhile, and a message
        // that then waits for a slot is kept alive with progress acks (`dispatch`).
        let free = tokio::select! {
            p = permits.acquire() => match p {
                Ok(_) => permits.available_permits().max(1),
                Err(_) => break, // closed: nothing more will be served
            },
            _ = shutdown.cancelled() => break,
        };
        let batch = consumer
            .batch()
            .max_messages(free)
            .expires(Duration::from_secs(2))
            .messages()
            .await;
        let failed = match batch {
            Err(e) => Some(e.to_string()),
            Ok(batch) => {
                worker
                    .dispatch(batch, &permits, &hard_stop, &shutdown)
                    .await
            }
        };
        let Some(why) = failed else {
            consecutive_errors = 0;
            ready(true);
            continue;
        };
        consecutive_errors += 1;
        ready(false);
        tracing::warn!(error = %why, consecutive_errors, ?queue, "cannot pull requests");
        if consecutive_errors.is_multiple_of(5)
            && let Some(c) = recreate(&worker, &queue).await
        {
            consumer = c;
        }
        let wait = Duration::from_millis(100 * consecutive_errors.min(20) as u64);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => break,
        }
    }
}

/// Runs the queue's set-up again and returns its consumer.
async fn recreate(worker: &Worker, queue: &Queue) -> Option<PullConsumer> {
    match queue {
        Queue::Fleet => Box::pin(super::setup::ensure(&worker.client, &worker.cfg))
            .await
            .ok()
            .map(|bus| bus.consumer),
        Queue::Tenant(t) => {
            let js = jetstream::new(worker.client.clone());
            Box::pin(super::tenants::ensure_queue(
                &js,
                &worker.cfg,
                &worker.names,
                t,
            ))
            .await
            .ok()
            .map(|q| q.requests)
        }
    }
}

/// The shared consumer of `tenant`'s feedback, found again in a fresh set-up by its tenant.
fn feedback_consumer(worker: &Worker, tenant: &str, queue: &TenantQueue) -> SharedConsumer {
    let tenant = tenant.to_string();
    SharedConsumer {
        what: "tenant feedback",
        client: worker.client.clone(),
        cfg: worker.cfg.clone(),
        consumer: queue.feedback.clone(),
        pick: Box::new(move |bus| {
            bus.tenant_queues
                .into_iter()
                .find(|(t, _)| *t == tenant)
                .map(|(_, q)| q.feedback)
        }),
        at_once: worker.cfg.feedback.max_in_flight,
    }
}
