//! The queues a worker pulls requests from: the fleet's requests stream and, for each
//! tenant, the tenant's own stream. One pull loop per queue, all sharing the worker's
//! in-flight slots, plus a consumer of each tenant's feedback stream; a tenant added while
//! running (a reloaded `[[tenants]]`) gets its streams and its loops without a restart.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::PullConsumer};
use futures::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
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
    // How many pull loops share the slots.
    let pulling_loops = Arc::new(AtomicUsize::new(0));
    let spawn = |loops: &mut JoinSet<()>, queue: Queue, consumer: PullConsumer| {
        pulling_loops.fetch_add(1, Ordering::Relaxed);
        loops.spawn(pull(
            worker.clone(),
            queue,
            consumer,
            permits.clone(),
            pulling_loops.clone(),
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
        // Not waited for at shutdown (it finishes what it holds on its own), so that it
        // never delays the grace period of the requests.
        tokio::spawn(
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
#[allow(clippy::too_many_arguments)]
async fn pull(
    worker: Arc<Worker>,
    queue: Queue,
    mut consumer: PullConsumer,
    permits: Arc<Semaphore>,
    loops: Arc<AtomicUsize>,
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
        // Slots are taken as messages arrive, not held through the long poll: an idle queue
        // keeps none from the others. Each loop asks for its share of the free slots, so
        // that all of them together ask for about as many as are free; a message that finds
        // none free (another queue's took it) waits with progress acks (`dispatch`). The
        // semaphore is fair: a loop waiting here queues behind the messages waiting there.
        let free = tokio::select! {
            p = permits.acquire() => match p {
                Ok(p) => {
                    drop(p);
                    permits.available_permits().max(1)
                }
                Err(_) => break, // closed: nothing more will be served
            },
            _ = shutdown.cancelled() => break,
        };
        let share = free.div_ceil(loops.load(Ordering::Relaxed).max(1));
        let batch = consumer
            .batch()
            .max_messages(share)
            .expires(Duration::from_secs(2))
            .messages()
            .await;
        let failed = match batch {
            Err(e) => Some(e.to_string()),
            Ok(batch) => dispatch(&worker, batch, &permits, &hard_stop, &shutdown).await,
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

/// Hands each message of `batch` to a task of its own, holding one of `permits` (taken
/// when the message arrives: a queue waiting for messages holds no slot, so an idle
/// queue never keeps another's requests waiting). Returns why the pull failed if it
/// failed before delivering anything (the pull request itself, or the server's answer to
/// it: a deleted consumer shows only there), so that the caller backs off and, every
/// fifth time, runs set-up again instead of pulling again at once.
async fn dispatch(
    worker: &Arc<Worker>,
    mut batch: jetstream::consumer::pull::Batch,
    permits: &Arc<Semaphore>,
    hard_stop: &CancellationToken,
    shutdown: &CancellationToken,
) -> Option<String> {
    let mut delivered = 0usize;
    loop {
        let next = tokio::select! {
            m = batch.next() => m,
            _ = shutdown.cancelled() => {
                give_back(&mut batch).await;
                None
            }
        };
        let msg = match next? {
            Ok(m) => m,
            Err(e) if delivered == 0 => return Some(e.to_string()),
            Err(e) => {
                tracing::debug!(error = %e, "pull batch error");
                return None;
            }
        };
        delivered += 1;
        let (me, stop) = (worker.clone(), hard_stop.clone());
        match permits.clone().try_acquire_owned() {
            Ok(slot) => {
                tokio::spawn(async move {
                    me.serve(msg, stop).await;
                    drop(slot);
                });
            }
            // No slot free: this message waits in a task of its own (kept alive with
            // progress acks), so the rest of the batch is read on and none of it sits
            // unacknowledged in the client's buffer.
            Err(_) => {
                let (permits, shutdown) = (permits.clone(), shutdown.clone());
                tokio::spawn(async move {
                    if let Some(slot) = wait_for_slot(&me, &msg, permits, &shutdown).await {
                        me.serve(msg, stop).await;
                        drop(slot);
                    }
                });
            }
        }
    }
}

/// After shutdown: gives back what the batch still delivers (it would otherwise come back
/// only after the ack wait).
async fn give_back(batch: &mut jetstream::consumer::pull::Batch) {
    while let Ok(Some(Ok(msg))) =
        tokio::time::timeout(Duration::from_millis(50), batch.next()).await
    {
        let _ = msg.ack_with(AckKind::Nak(None)).await;
    }
}

/// A slot for `msg`, which arrived while every slot was busy (another queue took the
/// last): it is kept from being redelivered with progress acks meanwhile. `None` when
/// shutting down (the message is given back).
async fn wait_for_slot(
    worker: &Worker,
    msg: &jetstream::Message,
    permits: Arc<Semaphore>,
    shutdown: &CancellationToken,
) -> Option<OwnedSemaphorePermit> {
    let beat = worker.ack_wait() / 3;
    let mut progress = tokio::time::interval_at(tokio::time::Instant::now() + beat, beat);
    // One acquisition, kept across the beats: the semaphore is first come, first served.
    let slot = permits.acquire_owned();
    tokio::pin!(slot);
    loop {
        tokio::select! {
            slot = &mut slot => return slot.ok(),
            _ = progress.tick() => { let _ = msg.ack_with(AckKind::Progress).await; }
            _ = shutdown.cancelled() => {
                let _ = msg.ack_with(AckKind::Nak(None)).await;
                return None;
            }
        }
    }
}
