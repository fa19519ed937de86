//! The fleet's prober: one elected worker (a short lease, `_prober_lease`) probes every
//! provider whose shared breaker is open, about once a second, and closes the breaker for the
//! whole fleet on the first success after the open period. Meanwhile it holds the provider's
//! probe slot in `ai_provider_health`, so no worker sends a live request as a half-open trial:
//! a hung provider never holds a trader's request, and recovery is seen within a second or
//! two instead of after an open period that doubles while the provider is down.
//!
//! When the prober dies its lease and slot run out within seconds; another worker takes the
//! role, and until then workers fall back to hedged live trials.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use tokio::task::JoinSet;

use crate::contract::{BreakerState, ErrorClass, PROBER_LEASE_KEY, ProviderHealthRecord};
use crate::engine::clock::Instant;
use crate::engine::probing::{MAX_GAP_INTERVALS, ProbeSchedule, ProbeVerdict};

use super::events::{EventTask, report};
use super::health_store::{apply_probe, claim_probe_slot};
use super::monitor::hold_lease;

/// How often the prober looks at the records and renews its lease.
const TICK: Duration = Duration::from_millis(100);
/// The lease is renewed every second and lasts three.
const LEASE_RENEW: Duration = Duration::from_secs(1);
const LEASE_TTL: Duration = Duration::from_secs(3);

/// One probe's end.
struct Probed {
    provider: String,
    started: Instant,
    ended: Instant,
    outcome: Result<(), (ErrorClass, String)>,
}

/// Whether `r` is a provider the fleet prober should try now: breaker not closed, open
/// period over (or ending within `lead`: the prober takes the probe slot before any worker's
/// breaker half-opens, and a success before the period is over could not close it anyway),
/// not switched off or quarantined by an operator, and its probe slot free or already ours.
fn wants_probe(
    r: &ProviderHealthRecord,
    me: &str,
    now: crate::contract::Timestamp,
    lead: Duration,
) -> bool {
    let lead = chrono::Duration::from_std(lead).unwrap_or_default();
    let period_ending = r.open_until.is_none_or(|u| now + lead >= u);
    let forced = r
        .forced
        .as_ref()
        .is_some_and(|f| f.until.is_none_or(|u| now < u));
    let slot_taken = r
        .probe_owner
        .as_ref()
        .is_some_and(|o| o != me && r.probe_until.is_some_and(|u| now < u));
    r.breaker != BreakerState::Closed && period_ending && !forced && !r.quarantined && !slot_taken
}

/// Runs forever: holds the lease when it can, and while holding it probes open providers.
pub async fn run(task: Arc<EventTask>, kv: kv::Store) {
    let e = &task.cfg.engine;
    let interval = Duration::from_millis(e.probe_interval_ms);
    let timeout = Duration::from_millis(e.probe_timeout_ms);
    // Held from before a probe starts until after the next one could start (the longest
    // gap follows timeouts), with a margin: no worker's breaker half-opens in between.
    let hold = timeout + interval * (MAX_GAP_INTERVALS + 1);
    let mut schedules: HashMap<String, ProbeSchedule> = HashMap::new();
    let mut probing: JoinSet<Probed> = JoinSet::new();
    let mut busy: HashSet<String> = HashSet::new();
    let mut leader = false;
    let mut renewed: Option<Instant> = None;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let now = Instant::now();
                if renewed.is_none_or(|r| now.duration_since(r) >= LEASE_RENEW) {
                    leader = hold_lease(&kv, PROBER_LEASE_KEY, &task.worker_id, LEASE_TTL).await;
                    renewed = Some(now);
                }
                if !leader {
                    schedules.clear();
                    continue;
                }
                let utc = chrono::Utc::now();
                for record in task.fleet.records() {
                    let id = record.provider.clone();
                    let schedule = schedules
                        .entry(id.clone())
                        .or_insert_with(|| ProbeSchedule::new(interval));
                    if !wants_probe(&record, &task.worker_id, utc, interval) {
                        schedule.reset();
                        continue;
                    }
                    if busy.contains(&id) || !schedule.due(now) {
                        continue;
                    }
                    if !claim(&task, &id, timeout + interval).await {
                        continue;
                    }
                    busy.insert(id.clone());
                    let engine = task.engine.clone();
                    probing.spawn(async move {
                        let started = Instant::now();
                        let outcome = match engine.probe(&id, timeout).await {
                            Some(Ok(_)) => Ok(()),
                            Some(Err(e)) => Err((e.class, e.message)),
                            None => Err((ErrorClass::NoProvider, "not configured here".into())),
                        };
                        Probed { provider: id, started, ended: Instant::now(), outcome }
                    });
                }
            }
            Some(done) = probing.join_next() => {
                let Ok(p) = done else { continue };
                busy.remove(&p.provider);
                let timed_out = matches!(p.outcome, Err((ErrorClass::Timeout, _)));
                if let Some(s) = schedules.get_mut(&p.provider) {
                    s.record(p.started, p.ended, timed_out);
                }
                book(&task, &p, hold).await;
            }
        }
    }
}

/// Takes the provider's probe slot for the probe about to go out (`for_` covers it and the
/// booking after it); false when another worker holds it or the bucket cannot be written.
async fn claim(task: &EventTask, provider: &str, for_: Duration) -> bool {
    let me = task.worker_id.clone();
    let until = chrono::Utc::now() + chrono::Duration::from_std(for_).unwrap_or_default();
    let claimed = task
        .fleet
        .health()
        .modify(provider, |r, t| claim_probe_slot(r, &me, until, t))
        .await;
    match claimed {
        // Written, or ours already for long enough.
        Ok(Some(_)) => true,
        Ok(None) => task
            .fleet
            .health()
            .get(provider)
            .await
            .is_ok_and(|(r, _)| r.probe_owner.as_deref() == Some(me.as_str())),
        Err(e) => {
            tracing::warn!(provider, error = %e, "probe slot not taken");
            false
        }
    }
}

/// Writes a probe's verdict into the provider's shared record (and announces a recovery).
async fn book(task: &EventTask, p: &Probed, hold: Duration) {
    let (verdict, message) = match &p.outcome {
        Ok(()) => (ProbeVerdict::Up, String::new()),
        Err((class, message)) => (ProbeVerdict::of(Err(*class)), message.clone()),
    };
    metrics::counter!("ai_failover_probes_total",
        "provider" => p.provider.clone(), "verdict" => verdict.as_str())
    .increment(1);
    tracing::debug!(provider = %p.provider, verdict = verdict.as_str(), %message, "fleet probe");
    let me = task.worker_id.clone();
    let changed = task
        .fleet
        .health()
        .modify(&p.provider, |r, t| {
            apply_probe(r, verdict, &message, &me, hold, t)
        })
        .await;
    report(task, changed).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{ForcedStatus, Timestamp};

    fn record(breaker: BreakerState) -> ProviderHealthRecord {
        let mut r = ProviderHealthRecord::new("p", "w0");
        r.breaker = breaker;
        r
    }

    #[test]
    fn only_open_switched_on_providers_with_a_free_slot_are_probed() {
        let now: Timestamp = chrono::Utc::now();
        let later = now + chrono::Duration::seconds(5);
        let lead = Duration::from_secs(1);
        let wants_probe = |r: &ProviderHealthRecord, me: &str, now| wants_probe(r, me, now, lead);
        assert!(!wants_probe(&record(BreakerState::Closed), "me", now));
        assert!(wants_probe(&record(BreakerState::Open), "me", now));
        assert!(wants_probe(&record(BreakerState::HalfOpen), "me", now));
        let mut r = record(BreakerState::Open);
        r.quarantined = true;
        assert!(!wants_probe(&r, "me", now));
        let mut r = record(BreakerState::Open);
        r.forced = Some(crate::contract::Forced {
            status: ForcedStatus::Down,
            until: Some(later),
            reason: None,
        });
        assert!(!wants_probe(&r, "me", now));
        let mut r = record(BreakerState::Open);
        r.probe_owner = Some("other".into());
        r.probe_until = Some(later);
        assert!(!wants_probe(&r, "me", now));
        r.probe_owner = Some("me".into());
        assert!(wants_probe(&r, "me", now));
        r.probe_owner = Some("other".into());
        r.probe_until = Some(now - chrono::Duration::seconds(1));
        assert!(wants_probe(&r, "me", now));
        // Not while the open period has more than `lead` to run.
        r.open_until = Some(later);
        assert!(!wants_probe(&r, "me", now));
        r.open_until = Some(now + chrono::Duration::milliseconds(900));
        assert!(wants_probe(&r, "me", now));
    }
}
