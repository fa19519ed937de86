//! `ai_provider_health`: the fleet's shared record of each provider, changed only with
//! compare-and-set (through [`KvRecord`]) so that N workers count failures together and a
//! breaker opened by one is obeyed by all. What a change does to a record is
//! [`super::fleet_health`]'s pure business; this is the I/O.

use std::time::Duration;

use async_nats::jetstream::kv;

use crate::contract::{BreakerState, HealthStatus, ProviderHealthRecord};
use crate::engine::clock::TimeMap;

use super::fleet_health::refresh_status;
use super::kv_record::{Decided, Decision, KvError, KvRecord};

/// A record's status and breaker before and after a change.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub before: (HealthStatus, BreakerState),
    pub record: ProviderHealthRecord,
    /// The KV revision the change was written at: a worker applies a record only if it is
    /// newer than the last one it applied (the watch may already have delivered a later one).
    pub revision: u64,
    pub reason: String,
}

impl Change {
    /// Whether status or breaker moved (a health event is due).
    pub fn is_transition(&self) -> bool {
        self.before != (self.record.status, self.record.breaker)
    }
}

/// Reads and writes provider records with compare-and-set.
#[derive(Clone)]
pub struct HealthStore {
    records: KvRecord<ProviderHealthRecord>,
    worker_id: String,
}

impl HealthStore {
    /// Over the health bucket, writing as `worker_id`.
    pub fn new(kv: kv::Store, worker_id: impl Into<String>) -> Self {
        HealthStore {
            records: KvRecord::new(kv, "provider health record"),
            worker_id: worker_id.into(),
        }
    }

    /// The bucket.
    pub fn kv(&self) -> &kv::Store {
        self.records.store()
    }

    /// The record of `provider` and its revision (a fresh record and 0 when there is none).
    pub async fn get(&self, provider: &str) -> Result<(ProviderHealthRecord, u64), KvError> {
        Ok(match self.records.get(provider).await? {
            Some(v) => (v.value, v.revision),
            None => (ProviderHealthRecord::new(provider, &self.worker_id), 0),
        })
    }

    /// Read-modify-write of `provider`'s record until the compare-and-set wins. `change`
    /// returns a reason, or `None` to leave the record alone.
    pub async fn modify(
        &self,
        provider: &str,
        mut change: impl FnMut(&mut ProviderHealthRecord, TimeMap) -> Option<String>,
    ) -> Result<Option<Change>, KvError> {
        let decided = self
            .records
            .modify(provider, |current| {
                let mut record =
                    current.unwrap_or_else(|| ProviderHealthRecord::new(provider, &self.worker_id));
                let before = (record.status, record.breaker);
                let t = TimeMap::now();
                let Some(reason) = change(&mut record, t) else {
                    return Decision::Keep(None);
                };
                refresh_status(&mut record, t.utc);
                if record.breaker != before.1 {
                    record.breaker_changed_at = Some(t.utc);
                }
                record.updated_at = t.utc;
                record.updated_by = self.worker_id.clone();
                Decision::Write(record, Some((before, reason)))
            })
            .await?;
        Ok(match decided {
            Decided::Written {
                value,
                revision,
                outcome: Some((before, reason)),
            } => Some(Change {
                before,
                record: value,
                revision,
                reason,
            }),
            _ => None,
        })
    }

    /// Takes the fleet's half-open probe of `provider` for `ttl`; false if another live
    /// worker holds it.
    pub async fn acquire_probe(&self, provider: &str, ttl: Duration) -> Result<bool, KvError> {
        let me = self.worker_id.clone();
        let change = self
            .modify(provider, |r, t| {
                let held = r
                    .probe_owner
                    .as_ref()
                    .is_some_and(|o| *o != me && r.probe_until.is_some_and(|u| t.utc < u));
                if held {
                    return None;
                }
                r.probe_owner = Some(me.clone());
                r.probe_until = Some(t.utc + chrono::Duration::from_std(ttl).unwrap_or_default());
                Some("probe slot taken".into())
            })
            .await?;
        Ok(change.is_some())
    }
}
