//! Feedback ingestion: execution and outcome reports from `<prefix>.feedback.<kind>`, joined
//! to their signal in `ai_signals`; each new outcome is judged and logged once to the quality
//! log, from which the quality records are folded (`quality_fold`).
//!
//! decode (bad → dead letter on `<prefix>.analysis.dead.feedback`) → find the signal (not
//! there yet: wait up to 10 s for a result that may still be on its way, then dead letter
//! `unknown_request`) → a duplicate (same horizon, same execution) changes nothing → log the
//! outcome's judgement (`Nats-Msg-Id: <request_id>:<horizon_s>`) → join it to the signal
//! with compare-and-set → ack. A crash anywhere is repaired by the redelivery: the log drops
//! the second copy, the signal shows the horizon already joined.

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, AckKind, stream};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::contract::{
    DeadLetterClass, Execution, ExecutionEntry, Feedback, Kind, Names, OutcomeEntry, OutcomeRecord,
    OutcomeReport, QualityObservation, Report, SignalRecord,
};
use crate::engine::quality::judge;
use crate::telemetry::metrics::name as metric;

use super::consume::Handler;
use super::decode::{self, Rejection, kind_token};
use super::history::StatsShares;
use super::hold::{self, FinishError};
use super::kv_record::{Decided, Decision, KvError, Versioned};
use super::outcomes::Outcomes;
use super::publish::{PublishError, Publisher};
use super::signals::Signals;

/// How long feedback waits for its signal before it is `unknown_request`: the result may
/// still be on its way when the trader reports on it.
pub const UNKNOWN_AFTER: Duration = Duration::from_secs(10);

/// A failure that leaves the report to be delivered again.
#[derive(Debug, thiserror::Error)]
enum FeedbackError {
    #[error(transparent)]
    Signal(#[from] KvError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Finish(#[from] FinishError),
    #[error("the signal of {0} expired while its feedback was joined")]
    Vanished(String),
    #[error("cannot read quality log entry {seq}")]
    Log {
        seq: u64,
        #[source]
        source: async_nats::Error,
    },
    #[error(transparent)]
    Outcome(#[from] super::outcomes::OutcomeError),
}

/// How a report ended, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handled {
    Joined,
    Duplicate,
    /// Its signal is not there yet: delivered again shortly.
    Waiting,
    DeadLettered,
}

/// What ingesting feedback needs.
pub struct FeedbackIngest {
    pub cfg: Arc<Config>,
    pub names: Names,
    pub signals: Signals,
    /// Where a signal lost in a crash is rebuilt from (the stored result).
    pub outcomes: Outcomes,
    pub publisher: Publisher,
    /// Counts the dead letters into the history.
    pub stats: StatsShares,
    /// The quality log, read back when a horizon turns out to be logged already.
    pub log: stream::Stream,
    pub worker_id: String,
}

/// Decodes and validates a report received on `subject`, with the kind its subject names.
pub fn decode_feedback(
    subject: &str,
    payload: &[u8],
    max_bytes: usize,
) -> Result<(Kind, Feedback), Rejection> {
    let reject = |class, message: String, request_id: Option<String>| Rejection {
        class,
        message,
        request_id,
    };
    if payload.len() > max_bytes {
        let message = format!("{} bytes is over the {max_bytes}-byte limit", payload.len());
        return Err(reject(DeadLetterClass::TooLarge, message, None));
    }
    let token = kind_token(subject);
    let Some(kind) = Kind::from_token(token) else {
        let message = format!(
            "subject {subject}: `{token}` is not a kind (signal, portfolio, risk, sentiment)"
        );
        return Err(reject(DeadLetterClass::InvalidRequest, message, None));
    };
    let feedback = serde_json::from_slice::<Feedback>(payload).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            return reject(DeadLetterClass::InvalidJson, format!("not JSON: {e}"), None);
        }
        let id = serde_json::from_slice::<serde_json::Value>(payload)
            .ok()
            .and_then(|v| v.get("request_id")?.as_str().map(str::to_string))
            .filter(|id| crate::contract::is_valid_request_id(id));
        let message = format!("not a feedback report: {e}");
        reject(DeadLetterClass::InvalidRequest, message, id)
    })?;
    feedback.validate().map_err(|e| {
        let id = crate::contract::is_valid_request_id(&feedback.request_id)
            .then(|| feedback.request_id.clone());
        reject(DeadLetterClass::InvalidRequest, e.to_string(), id)
    })?;
    Ok((kind, feedback))
}

impl FeedbackIngest {
    fn ack_wait(&self) -> Duration {
        Duration::from_millis(self.cfg.worker.ack_wait_ms)
    }

    async fn serve(
        &self,
        msg: &jetstream::Message,
        stop: &CancellationToken,
    ) -> Result<(Handled, &'static str), FeedbackError> {
        let max = self.cfg.worker.max_request_bytes;
        let (kind, feedback) = match decode_feedback(&msg.subject, &msg.payload, max) {
            Ok(f) => f,
            Err(rejection) => return Ok((self.reject(msg, rejection, stop).await?, "invalid")),
        };
        let report = feedback.feedback_type().as_str();
        let id = feedback.request_id.clone();
        let tenant = self.names.tenant_of(&msg.subject);
        let key = crate::contract::scoped_request_key(tenant, &id);
        let Some(signal) = self.signal(&key).await? else {
            let age = (crate::engine::clock::wall_now() - hold::published_at(msg))
                .to_std()
                .unwrap_or_default();
            if age < UNKNOWN_AFTER {
                let wait = (UNKNOWN_AFTER - age).max(Duration::from_millis(250));
                let _ = msg.ack_with(AckKind::Nak(Some(wait))).await;
                return Ok((Handled::Waiting, report));
            }
            metrics::counter!(metric::FEEDBACK_UNMATCHED_TOTAL).increment(1);
            let message = format!(
                "no signal for request {id}: the fleet never answered it with advice (unknown, failed or expired), or its signal is older than feedback.signals_retention_days"
            );
            let rejection = Rejection {
                class: DeadLetterClass::UnknownRequest,
                message,
                request_id: Some(id),
            };
            return Ok((self.reject(msg, rejection, stop).await?, report));
        };
        if signal.kind != kind {
            let message = format!(
                "feedback on {} about a {} request: publish it to {}",
                msg.subject,
                signal.kind.as_str(),
                self.names.feedback(signal.kind)
            );
            let rejection = Rejection {
                class: DeadLetterClass::InvalidRequest,
                message,
                request_id: Some(id),
            };
            return Ok((self.reject(msg, rejection, stop).await?, report));
        }
        let handled = match feedback.report {
            Report::Execution { execution } => {
                self.join_execution(&key, execution, feedback.at).await?
            }
            Report::Outcome { outcome } => self.join_outcome(&signal, outcome, feedback.at).await?,
        };
        hold::finish(msg, self.ack_wait(), AckKind::Ack, "ack", stop).await?;
        Ok((handled, report))
    }

    /// The signal of `id`; one lost in a crash between storing a result and recording its
    /// signal is rebuilt from the stored result.
    async fn signal(&self, id: &str) -> Result<Option<SignalRecord>, FeedbackError> {
        if let Some(Versioned { value, .. }) = self.signals.get(id).await? {
            return Ok(Some(value));
        }
        let Some((OutcomeRecord::Done { result }, _)) = self.outcomes.get(id).await? else {
            return Ok(None);
        };
        self.signals.record(&result).await?;
        Ok(self.signals.get(id).await?.map(|v| v.value))
    }

    /// The last execution report wins; the same one again changes nothing.
    async fn join_execution(
        &self,
        id: &str,
        execution: Execution,
        at: crate::contract::Timestamp,
    ) -> Result<Handled, FeedbackError> {
        let entry = ExecutionEntry { execution, at };
        let decided = self
            .signals
            .modify(id, |current| match current {
                None => Decision::Keep(None),
                Some(s) => match &s.execution {
                    Some(e) if *e == entry || e.at > entry.at => {
                        Decision::Keep(Some(Handled::Duplicate))
                    }
                    _ => {
                        let mut s = s;
                        s.execution = Some(entry.clone());
                        Decision::Write(s, Some(Handled::Joined))
                    }
                },
            })
            .await?;
        settled(decided, id)
    }

    /// A horizon counts once: logged for the quality records, then joined to the signal.
    async fn join_outcome(
        &self,
        signal: &SignalRecord,
        outcome: OutcomeReport,
        at: crate::contract::Timestamp,
    ) -> Result<Handled, FeedbackError> {
        let horizon = outcome.horizon_s;
        if signal.outcomes.iter().any(|o| o.horizon_s == horizon) {
            return Ok(Handled::Duplicate);
        }
        let band = self.cfg.quality.neutral_band;
        let judged = signal.action.map(|a| judge(a, outcome.return_, band));
        let mut entry = OutcomeEntry {
            horizon_s: horizon,
            return_: outcome.return_,
            pnl_usd: outcome.pnl_usd,
            at,
            hit: judged.map(|(hit, _)| hit),
        };
        if let (Some(key), Some((hit, signed_return))) = (signal.quality_key(), judged) {
            let observation = QualityObservation {
                request_id: signal.request_id.clone(),
                horizon_s: horizon,
                provider: signal.provider.clone(),
                model: signal.model.clone(),
                kind: signal.kind,
                source: signal.source,
                hit,
                signed_return,
                confidence: signal.confidence.unwrap_or(0.5),
                return_: outcome.return_,
                pnl_usd: outcome.pnl_usd,
                reported_at: at,
                at: crate::engine::clock::wall_now(),
            };
            let mut headers = HeaderMap::new();
            headers.insert(
                "Nats-Msg-Id",
                format!("{}:{horizon}", signal.record_key()).as_str(),
            );
            let ack = self
                .publisher
                .stored(self.names.quality_log(&key), &observation, headers)
                .await?;
            if ack.duplicate {
                // Logged before: by this report's earlier delivery, or by another report on
                // the same horizon racing it. The signal gets what was counted.
                let counted = self.logged(ack.sequence).await?;
                entry = OutcomeEntry {
                    horizon_s: horizon,
                    return_: counted.return_,
                    pnl_usd: counted.pnl_usd,
                    at: counted.reported_at,
                    hit: Some(counted.hit),
                };
            }
        }
        let id = &signal.record_key();
        let decided = self
            .signals
            .modify(id, |current| match current {
                None => Decision::Keep(None),
                Some(s) if s.outcomes.iter().any(|o| o.horizon_s == horizon) => {
                    Decision::Keep(Some(Handled::Duplicate))
                }
                Some(mut s) => {
                    s.outcomes.push(entry.clone());
                    Decision::Write(s, Some(Handled::Joined))
                }
            })
            .await?;
        settled(decided, id)
    }

    /// The quality log's entry `seq`.
    async fn logged(&self, seq: u64) -> Result<QualityObservation, FeedbackError> {
        let err = |source: async_nats::Error| FeedbackError::Log { seq, source };
        let msg = self.log.direct_get(seq).await.map_err(|e| err(e.into()))?;
        serde_json::from_slice(&msg.payload).map_err(|e| err(e.into()))
    }

    /// Dead-letters a report on `<prefix>.analysis.dead.feedback` and takes it off the stream.
    async fn reject(
        &self,
        msg: &jetstream::Message,
        rejection: Rejection,
        stop: &CancellationToken,
    ) -> Result<Handled, FeedbackError> {
        tracing::info!(subject = %msg.subject, class = rejection.class.as_str(),
            error = %rejection.message, "feedback dead-lettered");
        let class = rejection.class;
        let mut letter = decode::dead_letter(
            &msg.subject,
            &msg.payload,
            rejection,
            hold::deliveries(msg),
            &self.worker_id,
            crate::engine::clock::wall_now(),
        );
        letter.kind = "feedback".into();
        let seq = msg.info().map(|i| i.stream_sequence).unwrap_or_default();
        let msg_id = decode::dead_letter_msg_id(&self.names.feedback_stream(), seq);
        if self.publisher.dead_letter(&letter, Some(&msg_id)).await? {
            self.stats.dead_letter();
        }
        metrics::counter!(metric::DEAD_LETTERS_TOTAL, "class" => class.as_str()).increment(1);
        hold::finish(msg, self.ack_wait(), AckKind::Term, "terminate", stop).await?;
        Ok(Handled::DeadLettered)
    }
}

/// What a signal update decided; a signal that disappeared meanwhile (expired) is retried,
/// and then found missing.
fn settled(
    decided: Decided<SignalRecord, Option<Handled>>,
    id: &str,
) -> Result<Handled, FeedbackError> {
    let outcome = match decided {
        Decided::Written { outcome, .. } | Decided::Kept(outcome) => outcome,
    };
    outcome.ok_or_else(|| FeedbackError::Vanished(id.to_string()))
}

#[async_trait::async_trait]
impl Handler for FeedbackIngest {
    /// Handles one report and settles its message (ack, nak, or dead letter and term).
    async fn handle(&self, msg: jetstream::Message, stop: CancellationToken) {
        match self.serve(&msg, &stop).await {
            Ok((handled, report)) => {
                let label = match handled {
                    Handled::Joined => "joined",
                    Handled::Duplicate => "duplicate",
                    Handled::Waiting => return,
                    Handled::DeadLettered => "rejected",
                };
                metrics::counter!(metric::FEEDBACK_TOTAL, "type" => report, "result" => label)
                    .increment(1);
            }
            Err(e) => {
                let tries = hold::deliveries(&msg);
                let retry = hold::nak_delay(tries, self.ack_wait());
                let error = crate::telemetry::chain(&e);
                tracing::warn!(subject = %msg.subject, %error, tries, "feedback not handled; trying again later");
                let _ = msg.ack_with(AckKind::Nak(Some(retry))).await;
            }
        }
    }
}
