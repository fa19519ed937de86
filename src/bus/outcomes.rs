//! `ai_outcomes`: the source of truth of each request's progress, keyed by request id.
//!
//! A worker claims a request with `create` (only one can), heartbeats it while the engine
//! runs, and stores the result with compare-and-set before publishing it. A redelivery that
//! finds `done` is answered from here, so a provider is never paid twice; one that finds an
//! `in_progress` entry with a stale heartbeat takes it over (the only double-pay case).

use std::time::Duration;

use async_nats::jetstream::kv;

use crate::contract::{AnalysisResult, OutcomeRecord, Timestamp};

use super::kv_record::{KvError, KvRecord};

/// A failure talking to the outcomes bucket, or a claim that is no longer ours.
#[derive(Debug, thiserror::Error)]
pub enum OutcomeError {
    #[error(transparent)]
    Kv(#[from] KvError),
    #[error("lost the claim on {0}: another worker took it over")]
    Lost(String),
}

/// What a claim found.
#[derive(Debug)]
pub enum Claim {
    /// We own it (first run, or a takeover from a dead worker); `run` counts takeovers.
    Owned { revision: u64, run: u32 },
    /// Already answered: this is the stored result.
    Done(Box<AnalysisResult>),
    /// Another live worker is on it right now.
    Busy { worker_id: String },
}

/// The outcomes bucket.
#[derive(Clone)]
pub struct Outcomes {
    records: KvRecord<OutcomeRecord>,
    /// A heartbeat older than this means the owner is dead.
    stale_after: Duration,
}

impl Outcomes {
    /// Over `kv`; heartbeats older than `stale_after` (the consumer's ack wait) are dead.
    pub fn new(kv: kv::Store, stale_after: Duration) -> Self {
        Outcomes {
            records: KvRecord::new(kv, "outcome record"),
            stale_after,
        }
    }

    /// The record of `request_id`, with its revision.
    pub async fn get(
        &self,
        request_id: &str,
    ) -> Result<Option<(OutcomeRecord, u64)>, OutcomeError> {
        Ok(self
            .records
            .get(request_id)
            .await?
            .map(|v| (v.value, v.revision)))
    }

    /// Claims `request_id` for `worker_id`: create-only, or a takeover of a stale claim.
    pub async fn claim(
        &self,
        request_id: &str,
        worker_id: &str,
        now: Timestamp,
    ) -> Result<Claim, OutcomeError> {
        let fresh = |run| OutcomeRecord::InProgress {
            worker_id: worker_id.to_string(),
            started_at: now,
            heartbeat_at: now,
            run,
        };
        // A record deleted or taken over between our read and write is tried again.
        for _ in 0..3 {
            if let Some(revision) = self.records.write(request_id, &fresh(1), 0).await? {
                return Ok(Claim::Owned { revision, run: 1 });
            }
            let Some((record, revision)) = self.get(request_id).await? else {
                continue;
            };
            match record {
                OutcomeRecord::Done { result } => return Ok(Claim::Done(result)),
                OutcomeRecord::InProgress {
                    worker_id: owner,
                    heartbeat_at,
                    run,
                    ..
                } => {
                    let age = (now - heartbeat_at).to_std().unwrap_or(Duration::ZERO);
                    if age < self.stale_after && owner != worker_id {
                        return Ok(Claim::Busy { worker_id: owner });
                    }
                    let taken = self
                        .records
                        .write(request_id, &fresh(run + 1), revision)
                        .await?;
                    if let Some(revision) = taken {
                        return Ok(Claim::Owned {
                            revision,
                            run: run + 1,
                        });
                    }
                }
            }
        }
        Err(OutcomeError::Lost(request_id.into()))
    }

    /// Refreshes our heartbeat; fails with `Lost` if someone took the request over.
    pub async fn heartbeat(
        &self,
        request_id: &str,
        worker_id: &str,
        started_at: Timestamp,
        run: u32,
        revision: u64,
        now: Timestamp,
    ) -> Result<u64, OutcomeError> {
        let record = OutcomeRecord::InProgress {
            worker_id: worker_id.to_string(),
            started_at,
            heartbeat_at: now,
            run,
        };
        self.cas(request_id, &record, revision).await
    }

    /// Stores the result (compare-and-set against our claim).
    pub async fn complete(
        &self,
        result: &AnalysisResult,
        revision: u64,
    ) -> Result<u64, OutcomeError> {
        let record = OutcomeRecord::Done {
            result: Box::new(result.clone()),
        };
        self.cas(&result.record_key(), &record, revision).await
    }

    /// Gives a claim back (shutdown) so the redelivery can claim it at once.
    pub async fn release(&self, request_id: &str, revision: u64) -> Result<(), OutcomeError> {
        Ok(self.records.delete(request_id, revision).await?)
    }

    async fn cas(
        &self,
        request_id: &str,
        record: &OutcomeRecord,
        revision: u64,
    ) -> Result<u64, OutcomeError> {
        self.records
            .write(request_id, record, revision)
            .await?
            .ok_or_else(|| OutcomeError::Lost(request_id.into()))
    }
}
