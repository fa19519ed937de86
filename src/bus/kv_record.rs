//! A typed JSON record in a KV bucket, changed only with compare-and-set: the one
//! read-modify-write loop every record the fleet shares goes through (provider health,
//! budgets, the fleet mode, leases, request outcomes).
//!
//! Workers race on these records all the time (two workers counting failures of the same
//! provider); a lost race is normal, so [`KvRecord::modify`] reads again and re-decides, a
//! bounded number of times, counting each lost race in `ai_failover_kv_races_total{record}`.

use std::marker::PhantomData;

use crate::telemetry::metrics::name as metric;
use async_nats::jetstream::kv::{self, CreateErrorKind, Operation, UpdateErrorKind};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Lost races tolerated in one [`KvRecord::modify`] before giving up: far more than a fleet's
/// workers ever collide on one key.
const MAX_RACES: u32 = 16;

/// A failure of a record's bucket, with what and which key.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error("{what} `{key}`: cannot read it")]
    Read {
        what: &'static str,
        key: String,
        #[source]
        source: kv::EntryError,
    },
    #[error("{what} `{key}` is not a valid record")]
    Corrupt {
        what: &'static str,
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{what} `{key}`: cannot write it")]
    Write {
        what: &'static str,
        key: String,
        #[source]
        source: async_nats::Error,
    },
    #[error("cannot list the {what}s")]
    List {
        what: &'static str,
        #[source]
        source: async_nats::Error,
    },
    #[error("{what} `{key}` kept changing under us: lost {MAX_RACES} races in a row")]
    Contended { what: &'static str, key: String },
}

impl KvError {
    /// Whether trying again later may succeed (the bucket was unreachable or busy), as
    /// opposed to a record that is not valid.
    pub fn is_transient(&self) -> bool {
        !matches!(self, KvError::Corrupt { .. })
    }
}

/// A record and the revision it was read at.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub revision: u64,
}

/// What [`KvRecord::modify`]'s closure decided for the record it was shown.
#[derive(Debug)]
pub enum Decision<T, R> {
    /// Write this value (if the record has not changed since it was read) and report `R`.
    Write(T, R),
    /// Leave the record as it is and report `R`.
    Keep(R),
}

/// What [`KvRecord::modify`] did.
#[derive(Debug)]
pub enum Decided<T, R> {
    /// The value was written at `revision`.
    Written { value: T, revision: u64, outcome: R },
    /// The record was left alone.
    Kept(R),
}

/// The records of type `T` in one bucket, `what` naming them in errors and metrics.
pub struct KvRecord<T> {
    kv: kv::Store,
    what: &'static str,
    _record: PhantomData<fn() -> T>,
}

impl<T> Clone for KvRecord<T> {
    fn clone(&self) -> Self {
        KvRecord {
            kv: self.kv.clone(),
            what: self.what,
            _record: PhantomData,
        }
    }
}

/// JSON of a record; the types written here are plain data and always serialize.
fn encode<T: Serialize>(value: &T) -> Result<bytes::Bytes, serde_json::Error> {
    serde_json::to_vec(value).map(Into::into)
}

impl<T: Serialize + DeserializeOwned> KvRecord<T> {
    /// The `what` records of bucket `kv`.
    pub fn new(kv: kv::Store, what: &'static str) -> Self {
        KvRecord {
            kv,
            what,
            _record: PhantomData,
        }
    }

    /// The bucket.
    pub fn store(&self) -> &kv::Store {
        &self.kv
    }

    /// The record at `key` and its revision; `None` if there is none (or it was deleted).
    pub async fn get(&self, key: &str) -> Result<Option<Versioned<T>>, KvError> {
        let entry = self.kv.entry(key).await.map_err(|source| KvError::Read {
            what: self.what,
            key: key.to_string(),
            source,
        })?;
        let Some(entry) = entry.filter(|e| e.operation == Operation::Put) else {
            return Ok(None);
        };
        let value = serde_json::from_slice(&entry.value).map_err(|source| KvError::Corrupt {
            what: self.what,
            key: key.to_string(),
            source,
        })?;
        Ok(Some(Versioned {
            value,
            revision: entry.revision,
        }))
    }

    /// Writes `value` at `key` if the record is still at `revision` (0: if there is none);
    /// the new revision, or `None` when someone else wrote first.
    pub async fn write(&self, key: &str, value: &T, revision: u64) -> Result<Option<u64>, KvError> {
        let err = |source: async_nats::Error| KvError::Write {
            what: self.what,
            key: key.to_string(),
            source,
        };
        let body = encode(value).map_err(|e| err(e.into()))?;
        if revision == 0 {
            match self.kv.create(key, body).await {
                Ok(r) => Ok(Some(r)),
                Err(e) if e.kind() == CreateErrorKind::AlreadyExists => Ok(None),
                Err(e) => Err(err(e.into())),
            }
        } else {
            match self.kv.update(key, body, revision).await {
                Ok(r) => Ok(Some(r)),
                Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => Ok(None),
                Err(e) => Err(err(e.into())),
            }
        }
    }

    /// Writes `value` at `key` whatever is there (an operator's switch: the last writer wins).
    pub async fn put(&self, key: &str, value: &T) -> Result<u64, KvError> {
        let err = |source: async_nats::Error| KvError::Write {
            what: self.what,
            key: key.to_string(),
            source,
        };
        let body = encode(value).map_err(|e| err(e.into()))?;
        self.kv.put(key, body).await.map_err(|e| err(e.into()))
    }

    /// Deletes the record at `key` if it is still at `revision`.
    pub async fn delete(&self, key: &str, revision: u64) -> Result<(), KvError> {
        self.kv
            .delete_expect_revision(key, Some(revision))
            .await
            .map_err(|e| KvError::Write {
                what: self.what,
                key: key.to_string(),
                source: e.into(),
            })
    }

    /// The one read-modify-write loop: shows `decide` the current record (`None` if there is
    /// none), writes what it decides with compare-and-set, and when another writer got there
    /// first, reads again and lets it decide again.
    pub async fn modify<R>(
        &self,
        key: &str,
        mut decide: impl FnMut(Option<T>) -> Decision<T, R>,
    ) -> Result<Decided<T, R>, KvError> {
        for _ in 0..MAX_RACES {
            let current = self.get(key).await?;
            let revision = current.as_ref().map_or(0, |c| c.revision);
            match decide(current.map(|c| c.value)) {
                Decision::Keep(outcome) => return Ok(Decided::Kept(outcome)),
                Decision::Write(value, outcome) => {
                    if let Some(revision) = self.write(key, &value, revision).await? {
                        return Ok(Decided::Written {
                            value,
                            revision,
                            outcome,
                        });
                    }
                    metrics::counter!(metric::KV_RACES_TOTAL, "record" => self.what).increment(1);
                }
            }
        }
        Err(KvError::Contended {
            what: self.what,
            key: key.to_string(),
        })
    }
}
