//! Folding the quality log (`AI_QUALITY_LOG`, one subject per quality key) into the
//! `ai_quality` records, each outcome exactly once.
//!
//! A record remembers the last log sequence folded into it. Whoever handles an entry folds
//! every entry of that key after the record's mark, in log order (read by sequence through
//! the direct-get API), and writes the record with compare-and-set. So an entry counts once
//! however many workers race, crash or see it redelivered, and a busy key is folded in
//! batches. The log keeps every entry as long as feedback is kept, so a record that is lost
//! or corrupt is folded again from the start.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::stream::{self, DirectGetErrorKind};
use async_nats::jetstream::{self, AckKind};
use tokio_util::sync::CancellationToken;

use crate::contract::{Names, QualityObservation, QualityRecord};
use crate::engine::quality;
use crate::telemetry::metrics::name as metric;

use super::consume::Handler;
use super::hold;
use super::kv_record::{KvError, KvRecord};

/// Most log entries folded into one write.
const FOLD_BATCH: usize = 500;
/// Writes lost to other folders before the entry is left for its redelivery.
const MAX_RACES: usize = 32;

/// Why an entry could not be folded now (it is delivered again).
#[derive(Debug, thiserror::Error)]
enum FoldError {
    #[error(transparent)]
    Record(#[from] KvError),
    #[error("cannot read the quality log after sequence {after}")]
    Read {
        after: u64,
        #[source]
        source: async_nats::Error,
    },
    #[error("the log read stopped before sequence {seq} (a replica behind the leader?)")]
    Behind { seq: u64 },
    #[error("the quality record `{0}` kept changing under us")]
    Contended(String),
    #[error("the worker is stopping")]
    Stopped,
}

/// Folds the quality log into `ai_quality`.
pub struct QualityFolder {
    pub names: Names,
    pub log: stream::Stream,
    pub records: KvRecord<QualityRecord>,
    pub half_life_s: u64,
    pub ack_wait: Duration,
    /// One fold per key at a time in this worker: the entries that queue behind a fold are
    /// usually folded by it, and are then only acknowledged.
    pub folding: KeyLocks,
}

/// A lock per quality key.
#[derive(Default)]
pub struct KeyLocks(parking_lot::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl KeyLocks {
    fn of(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.0.lock().entry(key.to_string()).or_default().clone()
    }
}

/// A record as read for folding: its value (none, or none usable) and revision.
struct Current {
    record: Option<QualityRecord>,
    revision: u64,
}

impl QualityFolder {
    /// The record of `key`; a corrupt one (written by hand?) is replaced by folding the log
    /// again from its start.
    async fn current(&self, key: &str) -> Result<Current, FoldError> {
        match self.records.get(key).await {
            Ok(v) => Ok(Current {
                revision: v.as_ref().map_or(0, |v| v.revision),
                record: v.map(|v| v.value),
            }),
            Err(KvError::Corrupt { .. }) => {
                tracing::error!(
                    key,
                    "quality record is not readable; folding the log again from its start"
                );
                let entry =
                    self.records
                        .store()
                        .entry(key)
                        .await
                        .map_err(|source| KvError::Read {
                            what: "quality record",
                            key: key.to_string(),
                            source,
                        })?;
                Ok(Current {
                    record: None,
                    revision: entry.map_or(0, |e| e.revision),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Folds the log of `key` through `seq`. A long way behind (a rebuilt record), it folds
    /// batch after batch, keeping `msg` alive with progress acks and stopping when `stop` fires.
    async fn fold_through(
        &self,
        msg: &jetstream::Message,
        key: &str,
        seq: u64,
        stop: &CancellationToken,
    ) -> Result<(), FoldError> {
        let subject = msg.subject.as_str();
        let mut races = 0;
        while races < MAX_RACES {
            if stop.is_cancelled() {
                return Err(FoldError::Stopped);
            }
            let Current {
                mut record,
                revision,
            } = self.current(key).await?;
            let mark = record.as_ref().map_or(0, |r| r.applied_seq);
            if mark >= seq {
                return Ok(());
            }
            // The highest sequence read, readable or not.
            let mut reached = mark;
            let mut folded = 0u64;
            while folded < FOLD_BATCH as u64 {
                let entry = match self
                    .log
                    .direct_get_next_for_subject(subject, Some(reached + 1))
                    .await
                {
                    Ok(m) => m,
                    Err(e) if e.kind() == DirectGetErrorKind::NotFound => break,
                    Err(e) => {
                        return Err(FoldError::Read {
                            after: reached,
                            source: e.into(),
                        });
                    }
                };
                reached = entry.sequence;
                match serde_json::from_slice::<QualityObservation>(&entry.payload) {
                    Ok(obs) => {
                        let r = record.get_or_insert_with(|| quality::empty_record(&obs));
                        quality::fold(r, &obs, entry.sequence, self.half_life_s);
                        folded += 1;
                    }
                    Err(e) => {
                        tracing::error!(key, seq = entry.sequence, error = %e, "unreadable quality log entry skipped");
                        if let Some(r) = record.as_mut() {
                            r.applied_seq = entry.sequence;
                        }
                    }
                }
            }
            let batch_full = folded == FOLD_BATCH as u64;
            if reached < seq && !batch_full {
                // The entry was delivered, so it exists: this read came from a replica that
                // has not caught up. Nothing is written; the redelivery reads again.
                return Err(FoldError::Behind { seq });
            }
            let Some(record) = record.filter(|_| folded > 0) else {
                // Only unreadable entries up to ours: nothing to count.
                return Ok(());
            };
            if self.records.write(key, &record, revision).await?.is_some() {
                metrics::counter!(metric::QUALITY_FOLDED_TOTAL).increment(folded);
                if reached >= seq {
                    return Ok(());
                }
                // A full batch short of ours: the next round folds on from the new mark.
                let _ = msg.ack_with(AckKind::Progress).await;
                continue;
            }
            races += 1;
            metrics::counter!(metric::KV_RACES_TOTAL, "record" => "quality record").increment(1);
        }
        Err(FoldError::Contended(key.to_string()))
    }
}

#[async_trait::async_trait]
impl Handler for QualityFolder {
    /// Folds the log through `msg`'s entry, then acknowledges it.
    async fn handle(&self, msg: jetstream::Message, stop: CancellationToken) {
        let Some(key) = self.names.quality_key_of(&msg.subject).map(str::to_string) else {
            let _ = msg.ack_with(AckKind::Term).await;
            return;
        };
        let Ok(seq) = msg.info().map(|i| i.stream_sequence) else {
            // Not a message of the log's consumer: nothing to fold.
            let _ = msg.ack_with(AckKind::Term).await;
            return;
        };
        let lock = self.folding.of(&key);
        let folded = {
            let _one_at_a_time = lock.lock().await;
            self.fold_through(&msg, &key, seq, &stop).await
        };
        match folded {
            Ok(()) => {
                if let Err(e) = hold::finish(&msg, self.ack_wait, AckKind::Ack, "ack", &stop).await
                {
                    // Delivered again: the record's mark then says it is folded.
                    let error = crate::telemetry::chain(&e);
                    tracing::warn!(key, %error, "folded outcome not acknowledged");
                }
            }
            Err(e) => {
                let retry = hold::nak_delay(hold::deliveries(&msg), self.ack_wait);
                let error = crate::telemetry::chain(&e);
                tracing::warn!(key, %error, "outcome not folded yet; trying again later");
                let _ = msg.ack_with(AckKind::Nak(Some(retry))).await;
            }
        }
    }
}
