//! `ai_outcomes`: the source of truth of each request's progress, keyed by request id.
//!
//! A worker claims a request with `create` (only one can), heartbeats it while the engine
//! runs, and stores the result with compare-and-set before publishing it. A redelivery that
//! finds `done` is answered from here, so a provider is never paid twice; one that finds an
//! `in_progress` entry with a stale heartbeat takes it over (the only double-pay case).

use std::time::Duration;

use async_nats::jetstream::kv::{self, CreateErrorKind, UpdateErrorKind};

use crate::contract::{AnalysisResult, OutcomeRecord, Timestamp};

/// A failure talking to the outcomes bucket.
#[derive(Debug, thiserror::Error)]
pub enum OutcomeError {
    #[error("outcomes bucket: {0}")]
    Kv(String),
    #[error("outcome record of {0} is not valid JSON: {1}")]
    Corrupt(String, String),
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
    kv: kv::Store,
    /// A heartbeat older than this means the owner is dead.
    stale_after: Duration,
}

fn encode(r: &OutcomeRecord) -> bytes::Bytes {
    serde_json::to_vec(r)
        .expect("outcome records serialize")
        .into()
}

impl Outcomes {
    /// Over `kv`; heartbeats older than `stale_after` (the consumer's ack wait) are dead.
    pub fn new(kv: kv::Store, stale_after: Duration) -> Self {
        Outcomes { kv, stale_after }
    }

    /// The record of `request_id`, with its revision.
    pub async fn get(
        &self,
        request_id: &str,
    ) -> Result<Option<(OutcomeRecord, u64)>, OutcomeError> {
        let Some(entry) = self
            .kv
            .entry(request_id)
            .await
            .map_err(|e| OutcomeError::Kv(e.to_string()))?
        else {
            return Ok(None);
        };
        if entry.operation != kv::Operation::Put {
            return Ok(None);
        }
        let record = serde_json::from_slice(&entry.value)
            .map_err(|e| OutcomeError::Corrupt(request_id.into(), e.to_string()))?;
        Ok(Some((record, entry.revision)))
    }

    /// Claims `request_id` for `worker_id`.
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
        // Two rounds: a record deleted or taken over between our read and write is retried.
        for _ in 0..3 {
            match self.kv.create(request_id, encode(&fresh(1))).await {
                Ok(revision) => return Ok(Claim::Owned { revision, run: 1 }),
                Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {}
                Err(e) => return Err(OutcomeError::Kv(e.to_string())),
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
                    match self
                        .kv
                        .update(request_id, encode(&fresh(run + 1)), revision)
                        .await
                    {
                        Ok(revision) => {
                            return Ok(Claim::Owned {
                                revision,
                                run: run + 1,
                            });
                        }
                        Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => continue,
                        Err(e) => return Err(OutcomeError::Kv(e.to_string())),
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
        self.cas(&result.request_id, &record, revision).await
    }

    /// Gives a claim back (parking, shutdown) so the redelivery can claim it at once.
    pub async fn release(&self, request_id: &str, revision: u64) -> Result<(), OutcomeError> {
        self.kv
            .delete_expect_revision(request_id, Some(revision))
            .await
            .map_err(|e| OutcomeError::Kv(e.to_string()))
    }

    async fn cas(
        &self,
        request_id: &str,
        record: &OutcomeRecord,
        revision: u64,
    ) -> Result<u64, OutcomeError> {
        match self.kv.update(request_id, encode(record), revision).await {
            Ok(r) => Ok(r),
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => {
                Err(OutcomeError::Lost(request_id.into()))
            }
            Err(e) => Err(OutcomeError::Kv(e.to_string())),
        }
    }
}
