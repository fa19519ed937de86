//! `ai_quality`: folding the quality log into the records, and every worker's live copy of
//! them (what the `quality` strategy routes by).
//!
//! Each outcome is logged once (`AI_QUALITY_LOG`, one subject per quality key). A record
//! remembers the last log sequence it folded; whoever handles an entry folds every entry of
//! that key after the record's mark, in log order, and writes the record with
//! compare-and-set. So an entry is counted exactly once however many workers race, crash or
//! see it redelivered, and a busy key is folded in batches.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv::{self, Operation};
use async_nats::jetstream::stream::{self, DirectGetErrorKind};
use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use parking_lot::RwLock;
use tokio_util::sync::CancellationToken;

use crate::contract::{Kind, Names, QualityObservation, QualityRecord, Source};
use crate::engine::quality::{self, Evidence};
use crate::telemetry::metrics::name as metric;

use super::hold;
use super::kv_record::{KvError, KvRecord};

/// Most log entries folded into one write.
const FOLD_BATCH: usize = 500;
/// Writes lost to other folders before the entry is left for its redelivery.
const MAX_ROUNDS: usize = 32;

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
    #[error("the quality record `{0}` kept moving; folding later")]
    Busy(String),
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

impl QualityFolder {
    /// Folds the log through `msg`'s entry, then acknowledges it.
    pub async fn handle(&self, msg: jetstream::Message, stop: CancellationToken) {
        let Some(key) = self.names.quality_key_of(&msg.subject).map(str::to_string) else {
            let _ = msg.ack_with(AckKind::Term).await;
            return;
        };
        let seq = msg.info().map(|i| i.stream_sequence).unwrap_or(u64::MAX);
        let lock = self.folding.of(&key);
        let folded = {
            let _one_at_a_time = lock.lock().await;
            self.fold_through(&msg.subject, &key, seq).await
        };
        match folded {
            Ok(()) => {
                let _ = hold::finish(&msg, self.ack_wait, AckKind::Ack, "ack", &stop).await;
            }
            Err(e) => {
                let retry = hold::nak_delay(hold::deliveries(&msg), self.ack_wait);
                let error = crate::telemetry::chain(&e);
                tracing::warn!(key, %error, "outcome not folded yet; trying again later");
                let _ = msg.ack_with(AckKind::Nak(Some(retry))).await;
            }
        }
    }

    async fn fold_through(&self, subject: &str, key: &str, seq: u64) -> Result<(), FoldError> {
        for _ in 0..MAX_ROUNDS {
            let current = self.records.get(key).await?;
            let revision = current.as_ref().map_or(0, |c| c.revision);
            let mut record = current.map(|c| c.value);
            let mark = record.as_ref().map_or(0, |r| r.applied_seq);
            if mark >= seq {
                return Ok(());
            }
            let mut next = mark + 1;
            let mut folded = 0u64;
            while folded < FOLD_BATCH as u64 {
                let entry = match self
                    .log
                    .direct_get_next_for_subject(subject, Some(next))
                    .await
                {
                    Ok(m) => m,
                    Err(e) if e.kind() == DirectGetErrorKind::NotFound => break,
                    Err(e) => {
                        return Err(FoldError::Read {
                            after: next,
                            source: e.into(),
                        });
                    }
                };
                next = entry.sequence + 1;
                match serde_json::from_slice::<QualityObservation>(&entry.payload) {
                    Ok(obs) => {
                        let r = record.get_or_insert_with(|| quality::empty_record(&obs));
                        quality::fold(r, &obs, entry.sequence, self.half_life_s);
                        folded += 1;
                    }
                    Err(e) => {
                        tracing::warn!(key, seq = entry.sequence, error = %e, "unreadable quality log entry skipped");
                        if let Some(r) = record.as_mut() {
                            r.applied_seq = entry.sequence;
                        }
                    }
                }
            }
            let Some(record) = record else {
                // Nothing readable up to our entry: it was skipped above or is not there.
                return Ok(());
            };
            if self.records.write(key, &record, revision).await?.is_some() {
                metrics::counter!(metric::QUALITY_FOLDED_TOTAL).increment(folded);
                if record.applied_seq >= seq {
                    return Ok(());
                }
            } else {
                metrics::counter!(metric::KV_RACES_TOTAL, "record" => "quality record")
                    .increment(1);
            }
        }
        Err(FoldError::Busy(key.to_string()))
    }
}

/// Every worker's copy of the quality records, kept by [`QualityWatch`].
#[derive(Default)]
pub struct QualityBook {
    records: RwLock<HashMap<String, QualityRecord>>,
}

impl QualityBook {
    /// Keeps `record` (seen on the watch).
    pub fn set(&self, key: &str, record: QualityRecord) {
        self.records.write().insert(key.to_string(), record);
    }

    /// What the fleet knows of `provider`'s advice for `kind`, all its models together,
    /// decayed to now.
    pub fn evidence(&self, provider: &str, kind: Kind, half_life_s: u64) -> Evidence {
        let now = crate::engine::clock::wall_now();
        self.records
            .read()
            .values()
            .filter(|r| {
                r.kind == kind
                    && r.source == Source::Provider
                    && r.provider.as_deref() == Some(provider)
            })
            .map(|r| quality::evidence_at(r, now, half_life_s))
            .fold(Evidence::default(), |a, b| a + b)
    }
}

/// The labels of a record's gauges: provider (`_cache` / `_fallback` for those), model, kind.
fn labels(r: &QualityRecord) -> [(&'static str, String); 3] {
    let provider = match r.source {
        Source::Cache => "_cache".to_string(),
        Source::Fallback => "_fallback".to_string(),
        _ => r.provider.as_deref().unwrap_or("_").to_string(),
    };
    [
        ("provider", provider),
        ("model", r.model.clone().unwrap_or_default()),
        ("kind", r.kind.as_str().to_string()),
    ]
}

/// Keeps a worker's [`QualityBook`] and gauges in step with `ai_quality`.
pub struct QualityWatch {
    pub kv: kv::Store,
    pub book: Arc<QualityBook>,
}

impl QualityWatch {
    /// Runs until `stop` fires, re-establishing the watch after errors.
    pub async fn run(self, stop: CancellationToken) {
        while !stop.is_cancelled() {
            match self.kv.watch_all().await {
                Ok(mut watch) => loop {
                    tokio::select! {
                        entry = watch.next() => match entry {
                            Some(Ok(entry)) => self.apply(&entry),
                            Some(Err(e)) => {
                                tracing::warn!(error = %e, "quality watch error; restarting it");
                                break;
                            }
                            None => break,
                        },
                        _ = stop.cancelled() => return,
                    }
                },
                Err(e) => tracing::warn!(error = %e, "cannot watch the quality records"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = stop.cancelled() => return,
            }
        }
    }

    fn apply(&self, entry: &kv::Entry) {
        if entry.operation != Operation::Put {
            return;
        }
        match serde_json::from_slice::<QualityRecord>(&entry.value) {
            Ok(r) => {
                let l = labels(&r);
                metrics::gauge!(metric::QUALITY_HIT_RATE, &l).set(r.hit_rate);
                metrics::gauge!(metric::QUALITY_SAMPLES, &l).set(r.n);
                self.book.set(&entry.key, r);
            }
            Err(e) => tracing::warn!(key = %entry.key, error = %e, "unreadable quality record"),
        }
    }
}

/// Every record in `ai_quality` (of `kind`, when given): best hit rate first within a kind.
pub async fn all_records(
    kv: &kv::Store,
    kind: Option<Kind>,
) -> Result<Vec<QualityRecord>, KvError> {
    let records: KvRecord<QualityRecord> = KvRecord::new(kv.clone(), "quality record");
    let keys: Vec<String> = match kv.keys().await {
        Ok(keys) => keys.filter_map(|k| async move { k.ok() }).collect().await,
        Err(e) => {
            return Err(KvError::List {
                what: "quality record",
                source: e.into(),
            });
        }
    };
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        if let Some(v) = records.get(&key).await?
            && kind.is_none_or(|k| v.value.kind == k)
        {
            out.push(v.value);
        }
    }
    out.sort_by(|a, b| {
        a.kind
            .as_str()
            .cmp(b.kind.as_str())
            .then(b.hit_rate.total_cmp(&a.hit_rate))
            .then(b.n.total_cmp(&a.n))
    });
    Ok(out)
}
