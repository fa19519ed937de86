//! The consume loop: take a request, answer it exactly as DESIGN.md's "Delivery" says, and
//! never lose one.
//!
//! validate (bad → dead letter, terminate) → claim in `ai_outcomes` (already done → publish
//! the stored result again, double-ack) → run the engine, with in-progress acks and outcome
//! heartbeats → store `done` → publish the result and await its ack → double-ack.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, AckKind};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing::field::Empty;

use crate::config::Config;
use crate::contract::{AnalysisResult, ErrorClass, Names, Source, scoped_request_key};
use crate::engine::{Engine, Job};

use super::advisories::{SettleError, Settler, Undeliverable};
use super::decode::{Rejection, decode, kind_token};
use super::history::StatsShares;
use super::hold::{self, FinishError};
use super::kv_record::KvError;
use super::outcomes::{Claim, OutcomeError, Outcomes};
use super::publish::{PublishError, Publisher};
use super::signals::Signals;
use super::tenants::{Admission, Gate, TenantBook};
use crate::telemetry::metrics::name as metric;

/// Why a message could not be finished now (it is given back, or settled on its last
/// delivery).
#[derive(Debug, thiserror::Error)]
enum ServeError {
    #[error(transparent)]
    Outcome(#[from] OutcomeError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Signal(#[from] KvError),
    #[error(transparent)]
    Settle(#[from] SettleError),
    #[error(transparent)]
    Finish(#[from] FinishError),
    #[error("nak not sent")]
    Nak(#[source] async_nats::Error),
    #[error("{0} owns it on its last delivery")]
    OwnedElsewhere(String),
}

/// The consume loop of one worker, and what serving a request needs.
pub struct Worker {
    pub cfg: Arc<Config>,
    pub client: async_nats::Client,
    /// The durable `workers` consumer, recreated by set-up if it disappears.
    pub consumer: jetstream::consumer::PullConsumer,
    /// The consumers of each tenant's streams, by tenant (see `queues`).
    pub tenant_queues: Vec<(String, super::tenants::TenantQueue)>,
    /// Handles tenants' feedback (each tenant's stream gets a consumer, see `queues`).
    pub feedback: Arc<super::feedback::FeedbackIngest>,
    pub names: Names,
    /// The tenants' terms in force.
    pub tenants: Arc<TenantBook>,
    /// Quotas and budgets of the tenants.
    pub gate: Gate,
    pub engine: Arc<Engine>,
    pub outcomes: Outcomes,
    pub publisher: Publisher,
    pub signals: Signals,
    pub settler: Arc<Settler>,
    /// Counts answered requests into the history.
    pub stats: StatsShares,
    pub worker_id: String,
    /// True once the worker is consuming (`/readyz`).
    pub ready: Arc<AtomicBool>,
}

/// How a message ended, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handled {
    Answered,
    Replayed,
    DeadLettered,
    Busy,
    Retried,
    /// Finished after another worker took the request over: discarded, not published.
    Fenced,
}

impl Handled {
    /// The `how` label of `ai_failover_handle_seconds`.
    fn as_str(self) -> &'static str {
        match self {
            Handled::Answered => "answered",
            Handled::Replayed => "replayed",
            Handled::DeadLettered => "deadlettered",
            Handled::Busy => "busy",
            Handled::Retried => "retried",
            Handled::Fenced => "fenced",
        }
    }
}

/// The request's span, a child of the publisher's trace when the message carries one. Its
/// fields are filled in as they become known (after decoding, and at the end).
///
/// At debug level: exported traces always get it (see `telemetry::init`), log lines only with
/// `RUST_LOG=…debug`, because the log layer formats a span's fields whether or not a line is
/// ever written, a cost that showed in the throughput benchmark. With neither, the span is
/// disabled and costs next to nothing. Lines logged while serving a request name its
/// `request_id` themselves.
fn request_span(msg: &jetstream::Message) -> tracing::Span {
    let span = tracing::debug_span!(
        "request",
        subject = %msg.subject,
        request_id = Empty,
        kind = Empty,
        symbol = Empty,
        status = Empty,
        source = Empty,
        mode = Empty,
        provider = Empty,
    );
    if let Some(headers) = &msg.headers
        && !span.is_disabled()
    {
        crate::telemetry::propagation::set_parent(&span, headers);
    }
    span
}

impl Worker {
    /// Consumes every queue (the fleet's requests and each tenant's, see `queues`) until
    /// `shutdown` fires, then stops pulling and finishes (or naks) in-flight work within the
    /// grace period.
    pub async fn run(self, shutdown: CancellationToken) {
        // One shared copy: a `Worker` holds stream and consumer infos, too big to clone per
        // request.
        let this = Arc::new(self);
        let permits = Arc::new(Semaphore::new(this.cfg.worker.max_in_flight));
        let hard_stop = CancellationToken::new();
        this.ready.store(true, Ordering::Relaxed);
        tracing::info!(worker_id = %this.worker_id, "consuming requests");
        Box::pin(super::queues::consume_all(
            this.clone(),
            permits.clone(),
            &hard_stop,
            &shutdown,
        ))
        .await;
        this.ready.store(false, Ordering::Relaxed);
        // Graceful stop: wait for in-flight work, then cancel what is left (it naks).
        let all = this.cfg.worker.max_in_flight as u32;
        let grace = Duration::from_millis(this.cfg.worker.shutdown_grace_ms);
        if tokio::time::timeout(grace, permits.acquire_many(all))
            .await
            .is_err()
        {
            tracing::warn!("grace period over; returning in-flight requests to the queue");
            hard_stop.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), permits.acquire_many(all)).await;
        }
        tracing::info!("worker stopped");
    }

    /// Serves one message to its end.
    pub(super) async fn serve(&self, msg: jetstream::Message, stop: CancellationToken) {
        let subject = msg.subject.to_string();
        let started = std::time::Instant::now();
        metrics::gauge!(metric::IN_FLIGHT).increment(1.0);
        let handled = self
            .handle(&msg, &subject, &stop)
            .instrument(request_span(&msg))
            .await;
        metrics::gauge!(metric::IN_FLIGHT).decrement(1.0);
        let handled = match handled {
            Ok(h) => h,
            Err(e) => {
                let n = hold::deliveries(&msg);
                if n >= self.cfg.worker.max_deliver as u64 {
                    // Boxed: a rare path whose future would otherwise swell every request's.
                    let settled = Box::pin(self.settle_last_delivery(&msg, n, &stop)).await;
                    if let Err(why) = settled {
                        // Left to the MAX_DELIVERIES advisory (`advisories`).
                        let (error, settle_error) =
                            (crate::telemetry::chain(&e), crate::telemetry::chain(&why));
                        tracing::error!(%error, %settle_error, subject, delivered = n,
                            "request failed on its last delivery and could not be settled");
                        let _ = msg.ack_with(AckKind::Nak(None)).await;
                    }
                } else {
                    let wait = hold::nak_delay(n, self.ack_wait());
                    let error = crate::telemetry::chain(&e);
                    tracing::warn!(%error, subject, delivered = n, retry_ms = wait.as_millis() as u64,
                        "request not finished; it will be redelivered");
                    let _ = msg.ack_with(AckKind::Nak(Some(wait))).await;
                }
                Handled::Retried
            }
        };
        metrics::histogram!(metric::HANDLE_SECONDS, "how" => handled.as_str())
            .record(started.elapsed().as_secs_f64());
    }

    /// A request that failed on its last delivery: published from its stored result or
    /// dead-lettered (see `advisories`), then taken off the queue.
    async fn settle_last_delivery(
        &self,
        msg: &jetstream::Message,
        delivered: u64,
        stop: &CancellationToken,
    ) -> Result<(), ServeError> {
        let undeliverable = Undeliverable::delivery(msg)?;
        let how = self.settler.settle(&undeliverable, stop).await?;
        tracing::warn!(subject = %msg.subject, delivered, how = how.as_str(), "settled a request on its last delivery");
        self.terminate(msg, stop).await
    }

    /// The consumer's ack wait.
    pub(super) fn ack_wait(&self) -> Duration {
        Duration::from_millis(self.cfg.worker.ack_wait_ms)
    }

    async fn dead_letter(
        &self,
        msg: &jetstream::Message,
        subject: &str,
        rejection: Rejection,
        stop: &CancellationToken,
    ) -> Result<Handled, ServeError> {
        tracing::warn!(subject, class = rejection.class.as_str(), reason = %rejection.message, "dead-lettering a request");
        let undeliverable = Undeliverable::delivery(msg)?;
        self.settler
            .dead_letter(&undeliverable, rejection, stop)
            .await?;
        self.terminate(msg, stop).await?;
        Ok(Handled::DeadLettered)
    }

    async fn handle(
        &self,
        msg: &jetstream::Message,
        subject: &str,
        stop: &CancellationToken,
    ) -> Result<Handled, ServeError> {
        let request = match decode(subject, &msg.payload, (&self.cfg.worker).into()) {
            Ok(r) => r,
            Err(rejection) => {
                return Box::pin(self.dead_letter(msg, subject, rejection, stop)).await;
            }
        };
        let headers = msg.headers.clone().unwrap_or_default();
        // The tenant is the one the server's mapping wrote into the subject, never the
        // payload's word; its records are its own (`scoped_request_key`).
        let tenant = self.names.tenant_of(subject);
        let id = scoped_request_key(tenant, &request.request_id);
        let span = tracing::Span::current();
        span.record("request_id", request.request_id.as_str());
        span.record("kind", request.kind.as_str());
        if let Some(symbol) = &request.symbol {
            span.record("symbol", symbol.as_str());
        }
        let n = hold::deliveries(msg);
        let last_delivery = n >= self.cfg.worker.max_deliver as u64;
        let (revision, run) = match self.claim(msg, &id, stop).await? {
            Claim::Done(result) => {
                // Answered before (a redelivery or a duplicate publish): never pay twice.
                self.publish(msg, &result, request.reply_to.as_deref(), &headers, stop)
                    .await?;
                self.ack(msg, stop).await?;
                metrics::counter!(metric::REPLAYED_TOTAL).increment(1);
                return Ok(Handled::Replayed);
            }
            Claim::Busy { worker_id } if last_delivery => {
                // Not given back: settling it (`serve`) waits for the owner's answer.
                return Err(ServeError::OwnedElsewhere(worker_id));
            }
            Claim::Busy { worker_id } => {
                tracing::debug!(request_id = %id, owner = %worker_id, "another worker is on it");
                msg.ack_with(AckKind::Nak(Some(self.ack_wait() / 2)))
                    .await
                    .map_err(ServeError::Nak)?;
                return Ok(Handled::Busy);
            }
            Claim::Owned { revision, run } => (revision, run),
        };
        if run > 1 {
            // The one case where a provider may be paid twice: the first owner died mid-call.
            metrics::counter!(metric::TAKEOVERS_TOTAL).increment(1);
            tracing::warn!(request_id = %id, run, "took over a request from a dead worker");
        }

        let published_at = hold::published_at(msg);
        let admitted = hold::holding(
            msg,
            self.ack_wait(),
            stop,
            "admit",
            KvError::is_transient,
            || self.gate.admit(tenant, &request, published_at, run > 1),
        )
        .await?;
        let (result, revision) = match admitted {
            Admission::Refused(error) => (self.engine.refuse(&request, tenant, error), revision),
            Admission::Admitted { request, tenancy } => {
                let job = Job {
                    request: *request,
                    published_at,
                    tenant: tenancy,
                };
                match self.run_engine(msg, job, &id, revision, run, stop).await? {
                    Some(ran) => ran,
                    None => return Ok(Handled::Retried),
                }
            }
        };
        self.finish(msg, &request, &id, result, revision, &headers, stop)
            .await
    }

    /// Runs the engine on `job`, with in-progress acks and outcome heartbeats while it
    /// works; `None` when stopped (the claim released and the message given back).
    async fn run_engine(
        &self,
        msg: &jetstream::Message,
        job: Job,
        id: &str,
        revision: u64,
        run: u32,
        stop: &CancellationToken,
    ) -> Result<Option<(Box<AnalysisResult>, u64)>, ServeError> {
        let started_at = crate::engine::clock::wall_now();
        let mut revision = revision;
        let beat = self.ack_wait() / 3;
        let engine = self.engine.handle(job);
        tokio::pin!(engine);
        let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + beat, beat);
        let result = loop {
            tokio::select! {
                result = &mut engine => break result,
                _ = heartbeat.tick() => {
                    let _ = msg.ack_with(AckKind::Progress).await;
                    match self.outcomes.heartbeat(id, &self.worker_id, started_at, run, revision, crate::engine::clock::wall_now()).await {
                        Ok(r) => revision = r,
                        Err(e) => tracing::warn!(request_id = %id, error = %crate::telemetry::chain(&e), "heartbeat not stored"),
                    }
                }
                _ = stop.cancelled() => {
                    let _ = self.outcomes.release(id, revision).await;
                    msg.ack_with(AckKind::Nak(None)).await.map_err(ServeError::Nak)?;
                    return Ok(None);
                }
            }
        };
        Ok(Some((result, revision)))
    }

    /// Stores the outcome of a request, publishes its result and acks it.
    #[allow(clippy::too_many_arguments)]
    async fn finish(
        &self,
        msg: &jetstream::Message,
        request: &crate::contract::AnalysisRequest,
        id: &str,
        result: Box<AnalysisResult>,
        revision: u64,
        headers: &HeaderMap,
        stop: &CancellationToken,
    ) -> Result<Handled, ServeError> {
        let span = tracing::Span::current();
        span.record("status", result.status.as_str());
        span.record("source", result.source.as_str());
        span.record("mode", result.mode.as_str());
        if let Some(p) = &result.provider {
            span.record("provider", p.as_str());
        }
        // The stored outcome is the source of truth: write it before publishing.
        let stored = hold::holding(msg, self.ack_wait(), stop, "complete", is_bus_error, || {
            self.outcomes.complete(&result, revision)
        })
        .await;
        if let Err(e) = stored {
            match self.outcomes.get(id).await? {
                // Our own write landed and only its reply was lost (the retry then
                // found the revision moved): this is our answer, not a replay.
                Some((crate::contract::OutcomeRecord::Done { result: done }, _))
                    if done.worker_id == self.worker_id
                        && done.completed_at == result.completed_at => {}
                // Someone took over while we were presumed dead (a frozen process, a stalled
                // VM): the request is theirs. They publish their answer, or their delivery
                // comes back and replays it; this delivery is stale, so it is neither
                // published, acked nor nacked (an ack could end the message under a worker
                // that has not published yet). What we paid for is counted.
                Some(_) if matches!(e, OutcomeError::Lost(_)) => {
                    let paid = result.attempts.len() as u64;
                    metrics::counter!(metric::FENCED_TOTAL).increment(1);
                    metrics::counter!(metric::FENCED_CALLS_TOTAL).increment(paid);
                    tracing::warn!(request_id = %id, calls = paid, "finished after a takeover: result discarded");
                    return Ok(Handled::Fenced);
                }
                _ => return Err(e.into()),
            }
        }
        self.publish(msg, &result, request.reply_to.as_deref(), headers, stop)
            .await?;
        self.ack(msg, stop).await?;
        self.stats.answered(result.source == Source::Fallback);
        let tenant = result
            .tenant
            .as_deref()
            .unwrap_or(crate::contract::DEFAULT_TENANT);
        metrics::counter!(metric::TENANT_REQUESTS_TOTAL,
            "tenant" => crate::telemetry::metrics::tenant_label(tenant),
            "status" => result.status.as_str())
        .increment(1);
        metrics::counter!(
            metric::REQUESTS_TOTAL,
            "status" => result.status.as_str(),
            "source" => result.source.as_str(),
            "mode" => result.mode.as_str()
        )
        .increment(1);
        metrics::histogram!(metric::REQUEST_LATENCY_SECONDS, "status" => result.status.as_str())
            .record(result.latency_ms as f64 / 1_000.0);
        // Saturation: a request that reached a worker too late for any provider to answer
        // in time, answered without a call.
        if result.attempts.is_empty()
            && result
                .error
                .as_ref()
                .is_some_and(|e| e.class == ErrorClass::DeadlineExceeded)
        {
            metrics::counter!(metric::SHED_TOTAL).increment(1);
        }
        Ok(Handled::Answered)
    }

    async fn claim(
        &self,
        msg: &jetstream::Message,
        id: &str,
        stop: &CancellationToken,
    ) -> Result<Claim, OutcomeError> {
        hold::holding(msg, self.ack_wait(), stop, "claim", is_bus_error, || {
            self.outcomes
                .claim(id, &self.worker_id, crate::engine::clock::wall_now())
        })
        .await
    }

    async fn publish(
        &self,
        msg: &jetstream::Message,
        result: &AnalysisResult,
        reply_to: Option<&str>,
        incoming: &HeaderMap,
        stop: &CancellationToken,
    ) -> Result<(), ServeError> {
        let headers = crate::telemetry::propagation::outgoing_headers(incoming);
        // The signal store gets its record alongside the publish (a replay writes it if a
        // crash came between storing the result and this), so feedback finds it.
        let (signal, published) = tokio::join!(
            hold::holding(
                msg,
                self.ack_wait(),
                stop,
                "record_signal",
                KvError::is_transient,
                || self.signals.record(result),
            ),
            hold::holding(
                msg,
                self.ack_wait(),
                stop,
                "publish_result",
                |_| true,
                || self.publisher.result(result, reply_to, headers.clone()),
            )
        );
        published?;
        signal?;
        Ok(())
    }

    /// Takes a message off the queue for good (dead-lettered or settled).
    async fn terminate(
        &self,
        msg: &jetstream::Message,
        stop: &CancellationToken,
    ) -> Result<(), ServeError> {
        Ok(hold::finish(msg, self.ack_wait(), AckKind::Term, "terminate", stop).await?)
    }

    /// Acknowledges `msg` and waits for the server to confirm.
    async fn ack(
        &self,
        msg: &jetstream::Message,
        stop: &CancellationToken,
    ) -> Result<(), ServeError> {
        Ok(hold::finish(msg, self.ack_wait(), AckKind::Ack, "ack", stop).await?)
    }
}

/// Failures of the outcomes bucket itself (worth retrying), as opposed to a lost claim or a
/// corrupt record.
fn is_bus_error(e: &OutcomeError) -> bool {
    matches!(e, OutcomeError::Kv(k) if k.is_transient())
}

/// The request kind token of a subject (re-exported for tools).
pub fn subject_kind(subject: &str) -> &str {
    kind_token(subject)
}
