//! Every worker's copy of the `ai_quality` records (what the `quality` strategy routes by and
//! the gauges report), and the fleet-wide read the control service answers with.

use std::collections::HashMap;
use std::sync::Arc;

use async_nats::jetstream::kv::{self, Operation};
use futures::TryStreamExt;
use parking_lot::RwLock;
use tokio_util::sync::CancellationToken;

use crate::contract::{Kind, QualityRecord, Source};
use crate::engine::quality::{self, Evidence};
use crate::telemetry::metrics::name as metric;

use super::kv_record::{KvError, KvRecord};

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

    /// Forgets the record at `key` (deleted or purged). The next outcome of that key then
    /// folds the whole log again: deleting a record recomputes it (with the current
    /// `quality.half_life_s`; each outcome keeps the judgement it was logged with).
    pub fn remove(&self, key: &str) -> Option<QualityRecord> {
        self.records.write().remove(key)
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
    /// Runs until `stop` fires.
    pub async fn run(self, stop: CancellationToken) {
        super::kv_watch::follow(&self.kv, "quality records", &stop, |e| self.apply(e)).await;
    }

    fn apply(&self, entry: &kv::Entry) {
        if entry.operation != Operation::Put {
            if let Some(r) = self.book.remove(&entry.key) {
                let l = labels(&r);
                metrics::gauge!(metric::QUALITY_SAMPLES, &l).set(0.0);
                metrics::gauge!(metric::QUALITY_HIT_RATE, &l).set(f64::NAN);
            }
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
    let list = |e: async_nats::Error| KvError::List {
        what: "quality record",
        source: e,
    };
    let keys: Vec<String> = kv
        .keys()
        .await
        .map_err(|e| list(e.into()))?
        .try_collect()
        .await
        .map_err(|e| list(e.into()))?;
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        let record = match records.get(&key).await {
            Ok(r) => r,
            // Rebuilt from the log by the next fold of that key; the others still answer.
            Err(e @ KvError::Corrupt { .. }) => {
                tracing::warn!(error = %crate::telemetry::chain(&e), "quality record skipped");
                continue;
            }
            Err(e) => return Err(e),
        };
        if let Some(v) = record.filter(|v| kind.is_none_or(|k| v.value.kind == k)) {
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
