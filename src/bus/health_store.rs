//! `ai_provider_health`: the fleet's shared record of each provider, updated with
//! compare-and-set so that N workers count failures together and a breaker opened by one
//! is obeyed by all. The same [`Breaker`] state machine the engine uses runs on the record.

use std::time::Duration;

use async_nats::jetstream::kv::{self, CreateErrorKind, UpdateErrorKind};

use crate::config::BreakerConfig;
use crate::contract::{
    BreakerState, ErrorClass, HealthStatus, LastError, ProviderHealthRecord, Timestamp,
};
use crate::engine::breaker::Breaker;
use crate::engine::clock::Instant;
use crate::engine::slot::status_of;

/// One finished call, as the record counts it.
#[derive(Debug, Clone)]
pub struct CallOutcome {
    pub ok: bool,
    /// Counts toward the breaker (a failure of a class that does).
    pub breaker_failure: bool,
    pub latency: Duration,
    pub error: Option<(ErrorClass, String)>,
}

/// A record's status and breaker before and after a change.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub before: (HealthStatus, BreakerState),
    pub record: ProviderHealthRecord,
    pub reason: String,
}

impl Change {
    /// Whether status or breaker moved (a health event is due).
    pub fn is_transition(&self) -> bool {
        self.before != (self.record.status, self.record.breaker)
    }
}

/// A failure of the bucket.
#[derive(Debug, thiserror::Error)]
#[error("provider health bucket: {0}")]
pub struct StoreError(pub String);

/// Converts between wall-clock record times and monotonic instants.
#[derive(Debug, Clone, Copy)]
pub struct TimeMap {
    pub now: Instant,
    pub utc: Timestamp,
}

impl TimeMap {
    /// Now on both clocks.
    pub fn now() -> Self {
        TimeMap {
            now: Instant::now(),
            utc: chrono::Utc::now(),
        }
    }
    /// A wall-clock time as an instant.
    pub fn instant(&self, t: Timestamp) -> Instant {
        self.now + (t - self.utc).to_std().unwrap_or(Duration::ZERO)
    }
    /// An instant as wall-clock time.
    pub fn utc_of(&self, i: Instant) -> Timestamp {
        self.utc
            + chrono::Duration::from_std(i.saturating_duration_since(self.now)).unwrap_or_default()
    }
}

fn breaker_of(r: &ProviderHealthRecord, t: TimeMap) -> Breaker {
    Breaker {
        state: r.breaker,
        open_until: r.open_until.map(|u| t.instant(u)),
        open_count: r.open_count,
        consecutive_failures: r.consecutive_failures,
        window: r.window,
        probes_in_flight: 0,
        opened_at: None,
    }
}

fn store_breaker(r: &mut ProviderHealthRecord, b: &Breaker, t: TimeMap) {
    r.breaker = b.state;
    r.open_until = b.open_until.map(|i| t.utc_of(i));
    r.open_count = b.open_count;
    r.consecutive_failures = b.consecutive_failures;
    r.window = b.window;
    if b.state != BreakerState::HalfOpen {
        r.probe_owner = None;
        r.probe_until = None;
    }
}

/// Recomputes `status` from the other fields.
pub fn refresh_status(r: &mut ProviderHealthRecord, utc: Timestamp) {
    let forced = r
        .forced
        .as_ref()
        .filter(|f| f.until.is_none_or(|u| utc < u))
        .map(|f| f.status);
    r.status = status_of(forced, r.quarantined, r.breaker, r.success_rate);
}

/// Applies call outcomes, in order, to a record.
pub fn apply_outcomes(
    r: &mut ProviderHealthRecord,
    cfg: &BreakerConfig,
    outcomes: &[CallOutcome],
    p95_ms: f64,
    t: TimeMap,
) -> String {
    let mut b = breaker_of(r, t);
    let mut reason = String::new();
    if let Some(tr) = b.tick(t.now) {
        reason = tr.reason;
    }
    for o in outcomes {
        let tr = if o.ok {
            let ms = o.latency.as_secs_f64() * 1_000.0;
            r.latency_ms_ewma = if r.latency_ms_ewma == 0.0 {
                ms
            } else {
                r.latency_ms_ewma + 0.2 * (ms - r.latency_ms_ewma)
            };
            b.on_success(cfg, t.now, o.latency)
        } else if o.breaker_failure {
            let what = o.error.as_ref().map_or("failure", |(c, _)| c.as_str());
            b.on_failure(cfg, t.now, o.latency, what)
        } else {
            None
        };
        if let Some((class, message)) = &o.error {
            r.last_error = Some(LastError {
                class: *class,
                message: message.clone(),
                at: t.utc,
            });
        }
        if let Some(tr) = tr {
            reason = tr.reason;
        }
    }
    store_breaker(r, &b, t);
    r.success_rate = if r.window.calls == 0 {
        1.0
    } else {
        1.0 - r.window.failures as f64 / r.window.calls as f64
    };
    if p95_ms > 0.0 {
        r.latency_ms_p95 = p95_ms;
    }
    if reason.is_empty() {
        reason = format!(
            "success rate {:.0}% over the last {} calls",
            r.success_rate * 100.0,
            r.window.calls
        );
    }
    reason
}

/// Reads and writes provider records with compare-and-set.
#[derive(Clone)]
pub struct HealthStore {
    kv: kv::Store,
    worker_id: String,
}

impl HealthStore {
    /// Over the health bucket, writing as `worker_id`.
    pub fn new(kv: kv::Store, worker_id: impl Into<String>) -> Self {
        HealthStore {
            kv,
            worker_id: worker_id.into(),
        }
    }

    /// The bucket.
    pub fn kv(&self) -> &kv::Store {
        &self.kv
    }

    /// The record of `provider` and its revision (0 = none yet).
    pub async fn get(&self, provider: &str) -> Result<(ProviderHealthRecord, u64), StoreError> {
        let entry = self
            .kv
            .entry(provider)
            .await
            .map_err(|e| StoreError(e.to_string()))?;
        match entry {
            Some(e) if e.operation == kv::Operation::Put => {
                let r = serde_json::from_slice(&e.value)
                    .map_err(|e| StoreError(format!("record of {provider}: {e}")))?;
                Ok((r, e.revision))
            }
            _ => Ok((ProviderHealthRecord::new(provider, &self.worker_id), 0)),
        }
    }

    /// Read-modify-write of `provider`'s record until the compare-and-set wins. `change`
    /// returns a reason, or `None` to leave the record alone.
    pub async fn modify(
        &self,
        provider: &str,
        mut change: impl FnMut(&mut ProviderHealthRecord, TimeMap) -> Option<String>,
    ) -> Result<Option<Change>, StoreError> {
        for _ in 0..16 {
            let (mut record, revision) = self.get(provider).await?;
            let before = (record.status, record.breaker);
            let t = TimeMap::now();
            let Some(reason) = change(&mut record, t) else {
                return Ok(None);
            };
            refresh_status(&mut record, t.utc);
            if record.breaker != before.1 {
                record.breaker_changed_at = Some(t.utc);
            }
            record.updated_at = t.utc;
            record.updated_by = self.worker_id.clone();
            let body: bytes::Bytes = serde_json::to_vec(&record)
                .expect("records serialize")
                .into();
            let written = if revision == 0 {
                self.kv
                    .create(provider, body)
                    .await
                    .map_err(|e| (e.kind() == CreateErrorKind::AlreadyExists, e.to_string()))
            } else {
                self.kv.update(provider, body, revision).await.map_err(|e| {
                    (
                        e.kind() == UpdateErrorKind::WrongLastRevision,
                        e.to_string(),
                    )
                })
            };
            match written {
                Ok(_) => {
                    return Ok(Some(Change {
                        before,
                        record,
                        reason,
                    }));
                }
                Err((true, _)) => continue, // lost a race: read again
                Err((false, e)) => return Err(StoreError(e)),
            }
        }
        Err(StoreError(format!(
            "record of {provider} kept changing; gave up"
        )))
    }

    /// Takes the fleet's half-open probe of `provider` for `ttl`; false if another live
    /// worker holds it.
    pub async fn acquire_probe(&self, provider: &str, ttl: Duration) -> Result<bool, StoreError> {
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
