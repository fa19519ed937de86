//! Where engine events go: a bounded queue drained by one task that publishes failover events,
//! merges call outcomes into the shared health records (failures at once, successes batched,
//! so writes stay at a bounded rate), publishes a health event for each transition it wrote,
//! and keeps budgets and the decision cache up to date.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::contract::{
    BudgetRecord, CachedDecision, HealthEvent, Names, ProviderHealthRecord, Timestamp,
};
use crate::engine::Engine;
use crate::engine::policy::policy;
use crate::engine::ports::{EngineEvent, EventSink};

use super::fleet::{FleetState, cache_key};
use super::health_store::{CallOutcome, Change, apply_outcomes};
use super::publish::Publisher;

/// Events waiting beyond this are dropped (and counted) rather than slowing requests.
const QUEUE: usize = 16_384;
/// Batched successes and spend are written at most this often.
const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// A cached decision is rewritten at most this often per key.
const CACHE_EVERY: Duration = Duration::from_secs(1);

/// The engine's sink: queues events for [`run`].
#[derive(Clone)]
pub struct BusSink {
    tx: mpsc::Sender<EngineEvent>,
}

impl EventSink for BusSink {
    fn emit(&self, event: EngineEvent) {
        if self.tx.try_send(event).is_err() {
            metrics::counter!("ai_failover_events_dropped_total").increment(1);
        }
    }
}

/// A sink and the receiver [`run`] drains.
pub fn channel() -> (BusSink, mpsc::Receiver<EngineEvent>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (BusSink { tx }, rx)
}

/// Everything the event task writes to.
pub struct EventTask {
    pub cfg: Arc<Config>,
    pub names: Names,
    pub publisher: Publisher,
    pub fleet: Arc<FleetState>,
    pub budget: async_nats::jetstream::kv::Store,
    pub engine: Arc<Engine>,
    pub worker_id: String,
}

/// Publishes a health event for a transition this worker wrote.
pub async fn announce(task: &EventTask, change: &Change) {
    if !change.is_transition() {
        return;
    }
    let r = &change.record;
    let event = HealthEvent {
        provider: r.provider.clone(),
        status: r.status,
        previous_status: change.before.0,
        breaker: r.breaker,
        previous_breaker: change.before.1,
        reason: change.reason.clone(),
        success_rate: r.success_rate,
        latency_ms_ewma: r.latency_ms_ewma,
        latency_ms_p95: r.latency_ms_p95,
        consecutive_failures: r.consecutive_failures,
        forced: r.forced.is_some(),
        at: r.updated_at,
        worker_id: task.worker_id.clone(),
    };
    tracing::info!(
        provider = %r.provider, status = r.status.as_str(), breaker = r.breaker.as_str(),
        reason = %change.reason, "provider health changed"
    );
    if let Err(e) = task
        .publisher
        .event(
            task.names.health_event(&r.provider),
            &event,
            HeaderMap::new(),
        )
        .await
    {
        tracing::warn!(error = %e, "health event not published");
    }
    if task.fleet.set_record(r.clone(), change.revision) {
        task.engine.apply_shared(r);
    }
    // This worker wrote the transition and holds the newest record: it announces the mode.
    let mut last = None;
    super::watch::announce_mode(task, task.fleet.health().kv(), &mut last).await;
}

/// Drains engine events until the sink side is dropped.
pub async fn run(task: Arc<EventTask>, mut rx: mpsc::Receiver<EngineEvent>) {
    let mut pending: HashMap<String, Vec<CallOutcome>> = HashMap::new();
    let mut spend: HashMap<SpendKey, Spent> = HashMap::new();
    let mut cached_at: HashMap<String, tokio::time::Instant> = HashMap::new();
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = rx.recv() => {
                let Some(event) = event else { break };
                let urgent = handle(&task, event, &mut pending, &mut spend, &mut cached_at).await;
                if let Some(provider) = urgent {
                    flush_provider(&task, &provider, &mut pending).await;
                }
            }
            _ = tick.tick() => {
                let providers: Vec<String> = pending.keys().cloned().collect();
                for p in providers {
                    flush_provider(&task, &p, &mut pending).await;
                }
                flush_spend(&task, &mut spend).await;
            }
        }
    }
    let providers: Vec<String> = pending.keys().cloned().collect();
    for p in providers {
        flush_provider(&task, &p, &mut pending).await;
    }
    flush_spend(&task, &mut spend).await;
}

/// Handles one event; returns a provider whose pending outcomes must be written now.
async fn handle(
    task: &EventTask,
    event: EngineEvent,
    pending: &mut HashMap<String, Vec<CallOutcome>>,
    spend: &mut HashMap<SpendKey, Spent>,
    cached_at: &mut HashMap<String, tokio::time::Instant>,
) -> Option<String> {
    match event {
        EngineEvent::Attempt {
            attempt,
            class,
            message,
            synthetic,
            ..
        } => {
            metrics::counter!("ai_failover_attempts_total",
                "provider" => attempt.provider.clone(), "outcome" => attempt.outcome.as_str())
            .increment(1);
            if synthetic {
                return None;
            }
            let counts = class.is_some_and(|c| policy(c).breaker_failure);
            let outcome = CallOutcome {
                ok: class.is_none(),
                breaker_failure: counts,
                latency: Duration::from_millis(attempt.latency_ms),
                error: class.map(|c| (c, message.unwrap_or_default())),
                // The engine emits as the call ends; the queue adds microseconds.
                at: chrono::Utc::now(),
            };
            pending
                .entry(attempt.provider.clone())
                .or_default()
                .push(outcome);
            counts.then_some(attempt.provider)
        }
        EngineEvent::Failover(f) => {
            metrics::counter!("ai_failover_failovers_total", "from" => f.from.provider.clone())
                .increment(1);
            tracing::info!(
                request_id = %f.request_id, from = %f.from.provider,
                to = f.to.as_ref().map_or("fallback", |t| t.provider.as_str()),
                class = %f.error_class, hedge = f.hedge, "failover"
            );
            if let Err(e) = task
                .publisher
                .event(task.names.failover_event(), &f, HeaderMap::new())
                .await
            {
                tracing::warn!(error = %e, "failover event not published");
            }
            None
        }
        EngineEvent::Breaker {
            provider,
            transition,
        } => {
            tracing::debug!(%provider, from = transition.from.as_str(), to = transition.to.as_str(),
                reason = %transition.reason, "local breaker transition");
            None
        }
        EngineEvent::Quarantine { provider, reason } => {
            tracing::error!(%provider, %reason, "auth failure: provider quarantined fleet-wide until an operator clears it");
            let changed = task
                .fleet
                .health()
                .modify(&provider, |r, _| {
                    (!r.quarantined).then(|| {
                        r.quarantined = true;
                        format!("quarantined after an auth failure: {reason}")
                    })
                })
                .await;
            report(task, changed).await;
            None
        }
        EngineEvent::RateLimited { provider, until } => {
            let changed = task
                .fleet
                .health()
                .modify(&provider, |r, _| {
                    (r.rate_limited_until.is_none_or(|u| u < until)).then(|| {
                        r.rate_limited_until = Some(until);
                        "rate limited".to_string()
                    })
                })
                .await;
            report(task, changed).await;
            None
        }
        EngineEvent::Spend { provider, usd } => {
            metrics::counter!("ai_failover_spend_usd_micros_total", "provider" => provider.clone())
                .increment((usd * 1e6) as u64);
            // Booked under the day it was spent, even if its write waits past midnight.
            let day = chrono::Utc::now().date_naive();
            let spent = spend.entry((provider, day)).or_default();
            spent.usd += usd;
            spent.calls += 1;
            None
        }
        EngineEvent::Cacheable(result) => {
            let symbol = result.symbol.clone()?;
            let key = cache_key(result.kind, &symbol);
            let now = tokio::time::Instant::now();
            if cached_at
                .get(&key)
                .is_some_and(|t| now.duration_since(*t) < CACHE_EVERY)
            {
                return None;
            }
            cached_at.insert(key.clone(), now);
            let entry = CachedDecision {
                cached_at: result.completed_at,
                result: *result,
            };
            let body = serde_json::to_vec(&entry).expect("cache entries serialize");
            if let Err(e) = task.fleet.cache().put(key, body.into()).await {
                tracing::warn!(error = %e, "decision not cached");
            }
            None
        }
    }
}

/// Announces a change written to a provider record, or logs why it could not be written.
pub(super) async fn report(
    task: &EventTask,
    changed: Result<Option<Change>, super::health_store::StoreError>,
) {
    match changed {
        Ok(Some(change)) => announce(task, &change).await,
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "provider health not updated"),
    }
}

async fn flush_provider(
    task: &EventTask,
    provider: &str,
    pending: &mut HashMap<String, Vec<CallOutcome>>,
) {
    let Some(outcomes) = pending.remove(provider).filter(|o| !o.is_empty()) else {
        return;
    };
    let Some(pcfg) = task.cfg.provider(provider) else {
        return;
    };
    let bcfg = task.cfg.breaker_for(pcfg);
    let p95 = task
        .engine
        .slots()
        .iter()
        .find(|s| s.id() == provider)
        .map_or(0.0, |s| s.health().stats.p95_ms());
    let changed = task
        .fleet
        .health()
        .modify(provider, |r: &mut ProviderHealthRecord, t| {
            Some(apply_outcomes(r, &bcfg, &outcomes, p95, t))
        })
        .await;
    report(task, changed).await;
}

/// Spend booked since the last flush, for one provider and day.
#[derive(Debug, Default, Clone, Copy)]
struct Spent {
    usd: f64,
    calls: u64,
}

/// A provider and the (UTC) day its spend belongs to.
type SpendKey = (String, chrono::NaiveDate);

/// `<provider>.<yyyy-mm-dd>` in `ai_budget`.
pub fn budget_key(provider: &str, day: Timestamp) -> String {
    day_key(provider, day.date_naive())
}

fn day_key(provider: &str, day: chrono::NaiveDate) -> String {
    format!("{provider}.{}", day.format("%Y-%m-%d"))
}

async fn flush_spend(task: &EventTask, spend: &mut HashMap<SpendKey, Spent>) {
    let now = chrono::Utc::now();
    let today = now.date_naive();
    // Every configured provider is visited today, with or without new spend, to refresh
    // the fleet's total; spend of an earlier day (its write failed before midnight) goes to
    // that day's record.
    let providers: Vec<&str> = task.cfg.providers.iter().map(|p| p.id.as_str()).collect();
    for ((provider, day), add) in due(spend, &providers, today) {
        match book_spend(task, &provider, add, day, now).await {
            Ok(total) if day == today => task.fleet.set_spend(&provider, total),
            Ok(_) => {}
            Err(why) => {
                tracing::warn!(%provider, %day, error = %why, "budget not updated; retrying at the next flush");
                // Kept for the next flush: a lost write must not make spend disappear (a
                // write that did land but timed out counts twice, the safe side for a budget).
                if add.calls > 0 {
                    let kept = spend.entry((provider, day)).or_default();
                    kept.usd += add.usd;
                    kept.calls += add.calls;
                }
            }
        }
    }
}

/// What a flush writes: everything booked (emptying `spend`), under the day it was spent,
/// plus a read of today's record for every provider without new spend.
fn due(
    spend: &mut HashMap<SpendKey, Spent>,
    providers: &[&str],
    today: chrono::NaiveDate,
) -> Vec<(SpendKey, Spent)> {
    let mut due: Vec<(SpendKey, Spent)> = spend.drain().collect();
    for p in providers {
        if !due.iter().any(|((id, day), _)| id == p && *day == today) {
            due.push(((p.to_string(), today), Spent::default()));
        }
    }
    due
}

/// Adds `add` to `day`'s record of `provider` (compare-and-set, retried on races) and returns
/// the fleet's total spend that day; with nothing to add it only reads.
async fn book_spend(
    task: &EventTask,
    provider: &str,
    add: Spent,
    day: chrono::NaiveDate,
    now: Timestamp,
) -> Result<f64, String> {
    use async_nats::jetstream::kv::{CreateErrorKind, Operation, UpdateErrorKind};
    let key = day_key(provider, day);
    for _ in 0..8 {
        let entry = task
            .budget
            .entry(key.clone())
            .await
            .map_err(|e| format!("read: {e}"))?
            .filter(|e| e.operation == Operation::Put);
        let (mut record, revision) = match &entry {
            Some(e) => (
                serde_json::from_slice::<BudgetRecord>(&e.value)
                    .map_err(|e| format!("record {key} is not valid: {e}"))?,
                e.revision,
            ),
            None => (
                BudgetRecord {
                    provider: provider.to_string(),
                    date: day.format("%Y-%m-%d").to_string(),
                    spend_usd: 0.0,
                    calls: 0,
                    updated_at: now,
                },
                0,
            ),
        };
        if add.calls == 0 {
            return Ok(record.spend_usd);
        }
        record.spend_usd += add.usd;
        record.calls += add.calls;
        record.updated_at = now;
        let body: bytes::Bytes = serde_json::to_vec(&record).expect("budget").into();
        let raced = if revision == 0 {
            match task.budget.create(&key, body).await {
                Ok(_) => false,
                Err(e) if e.kind() == CreateErrorKind::AlreadyExists => true,
                Err(e) => return Err(format!("create: {e}")),
            }
        } else {
            match task.budget.update(&key, body, revision).await {
                Ok(_) => false,
                Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => true,
                Err(e) => return Err(format!("update: {e}")),
            }
        };
        if !raced {
            return Ok(record.spend_usd);
        }
    }
    Err("lost eight races in a row".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spend_waiting_past_midnight_stays_on_its_own_day() {
        let yesterday = chrono::NaiveDate::from_ymd_opt(2026, 11, 21).unwrap();
        let today = yesterday.succ_opt().unwrap();
        let mut spend = HashMap::new();
        let spent = |usd, calls| Spent { usd, calls };
        spend.insert(("a".to_string(), yesterday), spent(0.5, 2));
        spend.insert(("a".to_string(), today), spent(0.25, 1));
        let mut due = due(&mut spend, &["a", "b"], today);
        due.sort_by(|x, y| x.0.cmp(&y.0));
        let got: Vec<(String, chrono::NaiveDate, f64, u64)> = due
            .into_iter()
            .map(|((p, d), s)| (p, d, s.usd, s.calls))
            .collect();
        assert_eq!(
            got,
            [
                ("a".to_string(), yesterday, 0.5, 2),
                ("a".to_string(), today, 0.25, 1),
                ("b".to_string(), today, 0.0, 0),
            ]
        );
        assert!(spend.is_empty());
        assert_eq!(day_key("a", yesterday), "a.2026-11-21");
    }
}
