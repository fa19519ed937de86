//! Settling requests that JetStream will not deliver again.
//!
//! A request that fails on its last delivery (`worker.max_deliver`) is settled by the worker
//! holding it; one whose last delivery died with its worker is left in the work queue by the
//! server, which sends a MAX_DELIVERIES advisory. The advisory is kept in `AI_ADVISORIES`
//! (the server raises it once, as a core NATS message, even while no worker is running), and
//! one worker takes it through the shared `settlers` consumer, fetches the message by
//! sequence, settles it and deletes it; an advisory that cannot be settled yet is delivered
//! again later. Settling takes the request's `ai_outcomes` record first (waiting while a live
//! worker still owns it): a stored result is published again; otherwise the request is
//! dead-lettered, and the taken record makes a late `complete` by a presumed-dead owner fail,
//! so no request ends with both.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, stream};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::contract::{AnalysisResult, DeadLetterClass, Names};

use super::consume::Handler;
use super::decode::{Rejection, dead_letter, dead_letter_msg_id, decode};
use super::history::StatsShares;
use super::hold::{self, hold_limit};
use super::outcomes::{Claim, OutcomeError, Outcomes};
use super::publish::{PublishError, Publisher};
use crate::telemetry::metrics::name as metric;

/// Why a request could not be settled (it is tried again later).
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    #[error("no delivery info on the message")]
    Info(#[source] async_nats::Error),
    #[error("cannot fetch request message {seq}")]
    Fetch {
        seq: u64,
        #[source]
        source: stream::RawMessageError,
    },
    #[error("cannot find requests stream {stream}")]
    Stream {
        stream: String,
        #[source]
        source: jetstream::context::GetStreamError,
    },
    #[error("cannot delete request message {seq}")]
    Delete {
        seq: u64,
        #[source]
        source: stream::DeleteMessageError,
    },
    #[error("{worker_id} still owns request {request_id}")]
    Owned {
        worker_id: String,
        request_id: String,
    },
    #[error(transparent)]
    Outcome(#[from] OutcomeError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("cannot finish the held message")]
    Finish(#[source] hold::FinishError),
}

/// The fields of `io.nats.jetstream.advisory.v1.max_deliver` this module uses.
#[derive(Debug, Deserialize)]
struct MaxDeliveries {
    /// The requests stream the message is in: the fleet's or a tenant's.
    stream: String,
    stream_seq: u64,
    deliveries: u64,
}

/// How a request was settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// It had been answered: its stored result was published again.
    Answered,
    DeadLettered,
    /// The message had already left the stream (a late ack landed).
    Gone,
}

impl Settled {
    /// The `how` label of `ai_failover_max_deliveries_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Settled::Answered => "answered",
            Settled::DeadLettered => "deadlettered",
            Settled::Gone => "gone",
        }
    }
}

/// The request message being settled.
pub struct Undeliverable<'a> {
    /// The stream holding it (the fleet's requests stream or a tenant's).
    pub stream: &'a str,
    pub subject: &'a str,
    pub payload: &'a [u8],
    pub deliveries: u64,
    pub stream_seq: u64,
    /// What the settler holds (the request's last delivery, or the advisory): kept alive
    /// with progress acks while settling waits and while a write rides out a bus outage.
    pub held: &'a jetstream::Message,
}

impl<'a> Undeliverable<'a> {
    /// The delivery `msg` of a request, held by the caller.
    pub fn delivery(msg: &'a jetstream::Message) -> Result<Self, SettleError> {
        let info = msg.info().map_err(SettleError::Info)?;
        Ok(Undeliverable {
            stream: info.stream,
            subject: &msg.subject,
            payload: &msg.payload,
            deliveries: info.delivered.max(1) as u64,
            stream_seq: info.stream_sequence,
            held: msg,
        })
    }
}

/// Advisories settled at once by one worker: after a mass failure the rest wait in the
/// stream for this worker or another instead of piling up as tasks here.
pub const SETTLING_AT_ONCE: usize = 16;

/// Settles requests JetStream will not deliver again: from the last delivery a worker holds,
/// and from MAX_DELIVERIES advisories. Owns only what settling needs.
pub struct Settler {
    pub cfg: Arc<Config>,
    pub names: Names,
    /// Where the requests streams are: messages are fetched and deleted by sequence.
    pub js: jetstream::Context,
    pub outcomes: Outcomes,
    pub publisher: Publisher,
    /// Counts the dead letters into the history.
    pub stats: StatsShares,
    pub worker_id: String,
}

impl Settler {
    /// The consumer's ack wait.
    pub fn ack_wait(&self) -> Duration {
        Duration::from_millis(self.cfg.worker.ack_wait_ms)
    }

    /// Settles one advisory, then acknowledges it, or leaves it to be delivered again.
    async fn settle_advisory(
        &self,
        advisory: &MaxDeliveries,
        msg: &jetstream::Message,
        stop: &CancellationToken,
    ) {
        let seq = advisory.stream_seq;
        match self.settle_from_advisory(advisory, msg, stop).await {
            Ok(how) => {
                tracing::warn!(
                    stream_seq = seq,
                    deliveries = advisory.deliveries,
                    how = how.as_str(),
                    "settled a request JetStream stopped delivering"
                );
                let acked = hold::finish(msg, self.ack_wait(), AckKind::Ack, "ack", stop).await;
                if let Err(e) = acked {
                    // Delivered again later: settling twice finds the message gone.
                    let error = crate::telemetry::chain(&e);
                    tracing::warn!(stream_seq = seq, %error, "advisory not acknowledged");
                }
            }
            Err(e) => {
                let tries = hold::deliveries(msg);
                let retry = hold::nak_delay(tries, hold_limit(self.ack_wait()));
                let error = crate::telemetry::chain(&e);
                tracing::error!(stream_seq = seq, %error, tries, retry_ms = retry.as_millis() as u64,
                    "could not settle a request JetStream stopped delivering; trying again later");
                let _ = msg.ack_with(AckKind::Nak(Some(retry))).await;
            }
        }
    }

    async fn settle_from_advisory(
        &self,
        advisory: &MaxDeliveries,
        held: &jetstream::Message,
        stop: &CancellationToken,
    ) -> Result<Settled, SettleError> {
        let seq = advisory.stream_seq;
        let requests = self
            .js
            .get_stream(&advisory.stream)
            .await
            .map_err(|source| SettleError::Stream {
                stream: advisory.stream.clone(),
                source,
            })?;
        let message = match requests.get_raw_message(seq).await {
            Ok(m) => m,
            Err(e) if e.kind() == stream::RawMessageErrorKind::NoMessageFound => {
                count(Settled::Gone);
                return Ok(Settled::Gone);
            }
            Err(source) => return Err(SettleError::Fetch { seq, source }),
        };
        let undeliverable = Undeliverable {
            stream: &advisory.stream,
            subject: &message.subject,
            payload: &message.payload,
            deliveries: advisory.deliveries,
            stream_seq: seq,
            held,
        };
        let settled = self.settle(&undeliverable, stop).await?;
        requests
            .delete_message(seq)
            .await
            .map_err(|source| SettleError::Delete { seq, source })?;
        Ok(settled)
    }

    /// Publishes the stored result of the request in `message`, or dead-letters it; the
    /// caller then removes the message from the queue.
    pub async fn settle(
        &self,
        message: &Undeliverable<'_>,
        stop: &CancellationToken,
    ) -> Result<Settled, SettleError> {
        let settled = match decode(message.subject, message.payload, (&self.cfg.worker).into()) {
            Err(rejection) => {
                self.dead_letter(message, rejection, stop).await?;
                Settled::DeadLettered
            }
            Ok(request) => match self
                .take(
                    &key_of(&self.names, message.subject, &request.request_id),
                    message.held,
                    stop,
                )
                .await?
            {
                Some(result) => {
                    self.publisher
                        .result(&result, request.reply_to.as_deref(), Default::default())
                        .await?;
                    Settled::Answered
                }
                None => {
                    let rejection = Rejection {
                        class: DeadLetterClass::MaxDeliveries,
                        message: format!(
                            "no worker finished it in {} deliveries (workers died or failed on each)",
                            message.deliveries
                        ),
                        request_id: Some(request.request_id),
                    };
                    self.dead_letter(message, rejection, stop).await?;
                    Settled::DeadLettered
                }
            },
        };
        count(settled);
        Ok(settled)
    }

    /// Takes the request's outcome record: its stored result if it was answered, `None` once
    /// the record is ours (nobody owned it, or its owner stopped heartbeating). While a live
    /// worker owns it, waits, up to twice the hold limit.
    async fn take(
        &self,
        request_id: &str,
        held: &jetstream::Message,
        stop: &CancellationToken,
    ) -> Result<Option<AnalysisResult>, SettleError> {
        let ack_wait = self.ack_wait();
        let give_up = tokio::time::Instant::now() + hold_limit(ack_wait) * 2;
        // Not the worker's own id: a request this worker still runs elsewhere is someone
        // else's.
        let settler = format!("{}/settle", self.worker_id);
        loop {
            match self
                .outcomes
                .claim(request_id, &settler, crate::engine::clock::wall_now())
                .await?
            {
                Claim::Done(result) => return Ok(Some(*result)),
                Claim::Owned { .. } => return Ok(None),
                Claim::Busy { worker_id } => {
                    if tokio::time::Instant::now() >= give_up || stop.is_cancelled() {
                        return Err(SettleError::Owned {
                            worker_id,
                            request_id: request_id.to_string(),
                        });
                    }
                    let _ = held.ack_with(AckKind::Progress).await;
                    // Polling the record: the owner's completion has no event of its own.
                    tokio::select! {
                        _ = tokio::time::sleep(ack_wait / 4) => {}
                        _ = stop.cancelled() => {}
                    }
                }
            }
        }
    }

    /// Publishes the dead letter of `message` (keyed by its stream sequence, so writing it
    /// twice stores one letter), riding out a bus outage like every other write of the worker
    /// while the message being settled is held.
    pub async fn dead_letter(
        &self,
        message: &Undeliverable<'_>,
        rejection: Rejection,
        stop: &CancellationToken,
    ) -> Result<(), SettleError> {
        let dl = dead_letter(
            message.subject,
            message.payload,
            rejection,
            message.deliveries,
            &self.worker_id,
            crate::engine::clock::wall_now(),
        );
        let msg_id = dead_letter_msg_id(message.stream, message.stream_seq);
        let publish = || self.publisher.dead_letter(&dl, Some(&msg_id));
        let stored = hold::holding(
            message.held,
            self.ack_wait(),
            stop,
            "dead_letter",
            |_| true,
            publish,
        )
        .await?;
        if stored {
            self.stats.dead_letter();
        }
        metrics::counter!(metric::DEAD_LETTERS_TOTAL, "class" => dl.error.class.as_str())
            .increment(1);
        Ok(())
    }
}

/// The key of a request's records: its id, scoped by the tenant its subject names.
fn key_of(names: &Names, subject: &str, request_id: &str) -> String {
    crate::contract::scoped_request_key(names.tenant_of(subject), request_id)
}

fn count(settled: Settled) {
    metrics::counter!(metric::MAX_DELIVERIES_TOTAL, "how" => settled.as_str()).increment(1);
}

#[async_trait::async_trait]
impl Handler for Settler {
    /// Settles one advisory from the `settlers` consumer (each in its own task, run by
    /// [`SharedConsumer`](super::consume::SharedConsumer), since settling may wait for a live
    /// owner to finish).
    async fn handle(&self, msg: jetstream::Message, stop: CancellationToken) {
        match serde_json::from_slice::<MaxDeliveries>(&msg.payload) {
            Ok(advisory) => self.settle_advisory(&advisory, &msg, &stop).await,
            Err(e) => {
                tracing::warn!(error = %e, "unreadable MAX_DELIVERIES advisory; dropped");
                let _ = msg.ack_with(AckKind::Term).await;
            }
        }
    }
}
