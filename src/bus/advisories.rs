//! Requests JetStream gave up on.
//!
//! When a request reaches `worker.max_deliver` without any worker finishing it (every delivery
//! died with its worker, or the last one could not even be dead-lettered), the server stops
//! delivering it, leaves it in the work queue and sends a MAX_DELIVERIES advisory. One worker
//! (a queue group) takes each advisory, fetches the message by sequence and settles it: the
//! stored result is published again if the request was in fact answered, otherwise the message
//! is dead-lettered; then it is deleted from the stream. Nothing is stranded unseen.

use std::time::Duration;

use async_nats::Subscriber;
use async_nats::jetstream::message::StreamMessage;
use futures::StreamExt;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::contract::{DeadLetterClass, Names, OutcomeRecord, WORKER_CONSUMER};

use super::decode::{Rejection, dead_letter, dead_letter_msg_id, decode};
use super::worker::Worker;

/// The fields of `io.nats.jetstream.advisory.v1.max_deliver` this module uses.
#[derive(Debug, Deserialize)]
struct MaxDeliveries {
    stream_seq: u64,
    deliveries: u64,
}

/// How an advisory was settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    /// The request had been answered: its stored result was published again.
    Answered,
    DeadLettered,
    /// The message had already left the stream (a late ack landed).
    Gone,
}

/// The advisory subject for the workers' consumer on the requests stream.
pub fn subject(names: &Names) -> String {
    format!(
        "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.{WORKER_CONSUMER}",
        names.requests_stream()
    )
}

/// Subscribes (one queue group for the fleet) and waits until the server has the
/// subscription, so that no advisory raised by this worker's first pulls is missed.
pub async fn subscribe(client: &async_nats::Client, names: &Names) -> anyhow::Result<Subscriber> {
    let group = format!("{}.advisories", names.prefix());
    let sub = client.queue_subscribe(subject(names), group).await?;
    client.flush().await?;
    Ok(sub)
}

/// Settles advisories until `shutdown` fires; each one in its own task, since settling may
/// wait for a live owner to finish.
pub async fn run(worker: Worker, mut advisories: Subscriber, shutdown: CancellationToken) {
    loop {
        let msg = tokio::select! {
            m = advisories.next() => m,
            _ = shutdown.cancelled() => None,
        };
        let Some(msg) = msg else { break };
        let advisory = match serde_json::from_slice::<MaxDeliveries>(&msg.payload) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "unreadable MAX_DELIVERIES advisory");
                continue;
            }
        };
        let worker = worker.clone();
        tokio::spawn(async move {
            let seq = advisory.stream_seq;
            match settle(&worker, &advisory).await {
                Ok(how) => {
                    tracing::warn!(stream_seq = seq, deliveries = advisory.deliveries, how = ?how,
                        "settled a request JetStream stopped delivering");
                    metrics::counter!("ai_failover_max_deliveries_total",
                        "how" => format!("{how:?}").to_lowercase())
                    .increment(1);
                }
                Err(e) => tracing::error!(stream_seq = seq, error = %e,
                    "could not settle a request JetStream stopped delivering; it stays in the stream"),
            }
        });
    }
}

async fn settle(worker: &Worker, advisory: &MaxDeliveries) -> anyhow::Result<Settled> {
    let seq = advisory.stream_seq;
    let message = match worker.bus.requests.get_raw_message(seq).await {
        Ok(m) => m,
        Err(e)
            if e.kind() == async_nats::jetstream::stream::RawMessageErrorKind::NoMessageFound =>
        {
            return Ok(Settled::Gone);
        }
        Err(e) => anyhow::bail!("fetch message {seq}: {e}"),
    };
    let settled = match decode(
        &message.subject,
        &message.payload,
        worker.cfg.worker.max_request_bytes,
    ) {
        Err(rejection) => {
            publish_dead_letter(worker, &message, advisory, rejection).await?;
            Settled::DeadLettered
        }
        Ok(request) => match answered(worker, &request.request_id).await? {
            Some(result) => {
                worker
                    .publisher
                    .result(&result, request.reply_to.as_deref(), Default::default())
                    .await?;
                Settled::Answered
            }
            None => {
                let rejection = Rejection {
                    class: DeadLetterClass::MaxDeliveries,
                    message: format!(
                        "no worker finished it in {} deliveries (workers died or failed on each)",
                        advisory.deliveries
                    ),
                    request_id: Some(request.request_id),
                };
                publish_dead_letter(worker, &message, advisory, rejection).await?;
                Settled::DeadLettered
            }
        },
    };
    worker
        .bus
        .requests
        .delete_message(seq)
        .await
        .map_err(|e| anyhow::anyhow!("delete message {seq}: {e}"))?;
    Ok(settled)
}

/// The stored result of `request_id`; while a live worker still owns the request, waits (up
/// to two heartbeat periods past its last heartbeat) for it to finish.
async fn answered(
    worker: &Worker,
    request_id: &str,
) -> anyhow::Result<Option<crate::contract::AnalysisResult>> {
    let stale_after = Duration::from_millis(worker.cfg.worker.ack_wait_ms);
    loop {
        match worker.outcomes.get(request_id).await? {
            Some((OutcomeRecord::Done { result }, _)) => return Ok(Some(*result)),
            Some((OutcomeRecord::InProgress { heartbeat_at, .. }, _))
                if beat_within(heartbeat_at, stale_after * 2) =>
            {
                // Polling the record: the owner's completion has no event of its own here.
                tokio::time::sleep(stale_after / 4).await;
            }
            _ => return Ok(None),
        }
    }
}

/// True if the owner's last heartbeat is younger than `within` (or in the future: clocks
/// differ between workers).
fn beat_within(heartbeat_at: crate::contract::Timestamp, within: Duration) -> bool {
    (chrono::Utc::now() - heartbeat_at)
        .to_std()
        .map_or(true, |age| age < within)
}

async fn publish_dead_letter(
    worker: &Worker,
    message: &StreamMessage,
    advisory: &MaxDeliveries,
    rejection: Rejection,
) -> anyhow::Result<()> {
    let dl = dead_letter(
        &message.subject,
        &message.payload,
        rejection,
        advisory.deliveries,
        &worker.worker_id,
        chrono::Utc::now(),
    );
    let msg_id = dead_letter_msg_id(&worker.bus.names.requests_stream(), advisory.stream_seq);
    worker.publisher.dead_letter(&dl, Some(&msg_id)).await?;
    metrics::counter!("ai_failover_dead_letters_total", "class" => dl.error.class.as_str())
        .increment(1);
    Ok(())
}
