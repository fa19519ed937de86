//! Where engine events go: a bounded queue drained by one loop that publishes failover
//! events, counts call outcomes into the shared provider records (failures at once,
//! successes in batches, so writes stay at a bounded rate), books spend, and keeps the
//! decision cache. On shutdown it takes what is still queued and writes it all before it
//! ends: the last requests' spend and health are not lost.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::kv;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::contract::{AnalysisResult, CachedDecision, ErrorClass, FailoverEvent};
use crate::engine::Engine;
use crate::engine::policy::policy;
use crate::engine::ports::{EngineEvent, EventSink};

use super::announce::HealthAnnouncer;
use super::fleet::cache_key;
use super::fleet_health::{CallOutcome, apply_outcomes};
use super::health_store::HealthStore;
use super::history::SharesWriter;
use super::publish::Publisher;
use super::spend::SpendBook;
use crate::telemetry::metrics::name as metric;

/// Events waiting beyond this are dropped (and counted) rather than slowing requests.
const QUEUE: usize = 16_384;
/// Batched successes and spend are written at most this often.
const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// A cached decision is rewritten at most this often per key.
const CACHE_EVERY: Duration = Duration::from_secs(1);

/// The engine's sink: queues events for the [`EventLoop`].
#[derive(Clone)]
pub struct BusSink {
    tx: mpsc::Sender<EngineEvent>,
}

impl EventSink for BusSink {
    fn emit(&self, event: EngineEvent) {
        if self.tx.try_send(event).is_err() {
            metrics::counter!(metric::EVENTS_DROPPED_TOTAL).increment(1);
        }
    }
}

/// A sink and the receiver an [`EventLoop`] drains.
pub fn channel() -> (BusSink, mpsc::Receiver<EngineEvent>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (BusSink { tx }, rx)
}

/// Call outcomes not yet counted into the shared provider records.
pub struct OutcomeBook {
    cfg: Arc<Config>,
    engine: Arc<Engine>,
    health: HealthStore,
    announcer: Arc<HealthAnnouncer>,
    pending: HashMap<String, Vec<CallOutcome>>,
}

impl OutcomeBook {
    /// Counting outcomes into `health` and announcing transitions with `announcer`.
    pub fn new(
        cfg: Arc<Config>,
        engine: Arc<Engine>,
        health: HealthStore,
        announcer: Arc<HealthAnnouncer>,
    ) -> Self {
        OutcomeBook {
            cfg,
            engine,
            health,
            announcer,
            pending: HashMap::new(),
        }
    }

    /// Queues one outcome; true when it must be written now (a failure the breaker counts).
    fn book(&mut self, provider: &str, outcome: CallOutcome) -> bool {
        let urgent = outcome.breaker_failure;
        self.pending
            .entry(provider.to_string())
            .or_default()
            .push(outcome);
        urgent
    }

    /// Writes `provider`'s queued outcomes into its record.
    async fn flush(&mut self, provider: &str) {
        let Some(outcomes) = self.pending.remove(provider).filter(|o| !o.is_empty()) else {
            return;
        };
        let Some(pcfg) = self.cfg.provider(provider) else {
            return;
        };
        let bcfg = self.cfg.breaker_for(pcfg);
        let p95 = self
            .engine
            .slots()
            .iter()
            .find(|s| s.id() == provider)
            .map_or(0.0, |s| s.health().stats.p95_ms());
        let changed = self
            .health
            .modify(provider, |r, t| {
                Some(apply_outcomes(r, &bcfg, &outcomes, p95, t))
            })
            .await;
        self.announcer.report(changed).await;
    }

    async fn flush_all(&mut self) {
        let providers: Vec<String> = self.pending.keys().cloned().collect();
        for p in providers {
            self.flush(&p).await;
        }
    }
}

/// The last good decision per `kind.symbol`, in `ai_decision_cache`.
struct DecisionCache {
    kv: kv::Store,
    written_at: HashMap<String, tokio::time::Instant>,
}

impl DecisionCache {
    async fn keep(&mut self, result: AnalysisResult) {
        let Some(symbol) = result.symbol.clone() else {
            return;
        };
        let key = cache_key(result.tenant.as_deref(), result.kind, &symbol);
        let now = tokio::time::Instant::now();
        if self
            .written_at
            .get(&key)
            .is_some_and(|t| now.duration_since(*t) < CACHE_EVERY)
        {
            return;
        }
        self.written_at.insert(key.clone(), now);
        let entry = CachedDecision {
            cached_at: result.completed_at,
            result,
        };
        let body = match serde_json::to_vec(&entry) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "decision not cached");
                return;
            }
        };
        if let Err(e) = self.kv.put(key, body.into()).await {
            tracing::warn!(error = %e, "decision not cached");
        }
    }
}

/// The loop that takes engine events off the queue.
pub struct EventLoop {
    outcomes: OutcomeBook,
    spend: SpendBook,
    cache: DecisionCache,
    publisher: Publisher,
    stats: SharesWriter,
}

impl EventLoop {
    /// Counting outcomes into `outcomes`, booking into `spend`, caching decisions in `cache`,
    /// publishing failovers with `publisher`, and counting calls, costs and failovers into
    /// the history's `stats`.
    pub fn new(
        outcomes: OutcomeBook,
        spend: SpendBook,
        cache: kv::Store,
        publisher: Publisher,
        stats: SharesWriter,
    ) -> Self {
        EventLoop {
            outcomes,
            spend,
            cache: DecisionCache {
                kv: cache,
                written_at: HashMap::new(),
            },
            publisher,
            stats,
        }
    }

    /// Drains `rx` until `stop` fires; then takes what is still queued (no more is
    /// accepted), writes everything out, and returns.
    pub async fn run(mut self, mut rx: mpsc::Receiver<EngineEvent>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = rx.recv() => match event {
                    Some(event) => self.handle(event).await,
                    None => break,
                },
                _ = tick.tick() => {
                    self.outcomes.flush_all().await;
                    self.spend.flush().await;
                    self.stats.write().await;
                }
                _ = stop.cancelled() => {
                    rx.close();
                    while let Some(event) = rx.recv().await {
                        self.handle(event).await;
                    }
                    break;
                }
            }
        }
        self.outcomes.flush_all().await;
        self.spend.flush().await;
        self.stats.write().await;
    }

    async fn handle(&mut self, event: EngineEvent) {
        match event {
            EngineEvent::Attempt {
                attempt,
                class,
                message,
                synthetic,
                ..
            } => {
                metrics::counter!(metric::ATTEMPTS_TOTAL,
                    "provider" => attempt.provider.to_string(), "outcome" => attempt.outcome.as_str())
                .increment(1);
                // Not the provider's doing (a test call, this worker's own key store): the
                // fleet's view of the provider is left alone.
                if synthetic || class == Some(ErrorClass::KeyUnavailable) {
                    return;
                }
                self.stats.shares().call(
                    &attempt.provider,
                    class,
                    Duration::from_millis(attempt.latency_ms),
                );
                let outcome = CallOutcome {
                    ok: class.is_none(),
                    breaker_failure: class.is_some_and(|c| policy(c).breaker_failure),
                    latency: Duration::from_millis(attempt.latency_ms),
                    error: class.map(|c| (c, message.unwrap_or_default())),
                    // The engine emits as the call ends; the queue adds microseconds.
                    at: crate::engine::clock::wall_now(),
                };
                if self.outcomes.book(&attempt.provider, outcome) {
                    self.outcomes.flush(&attempt.provider).await;
                }
            }
            EngineEvent::Failover(f) => self.failover(f).await,
            EngineEvent::Breaker {
                provider,
                transition,
            } => {
                tracing::debug!(%provider, from = transition.from.as_str(), to = transition.to.as_str(),
                    reason = %transition.reason, "local breaker transition");
            }
            EngineEvent::Quarantine { provider, reason } => {
                tracing::error!(%provider, %reason, "auth failure: provider quarantined fleet-wide until an operator clears it");
                let changed = self
                    .outcomes
                    .health
                    .modify(&provider, |r, _| {
                        (!r.quarantined).then(|| {
                            r.quarantined = true;
                            format!("quarantined after an auth failure: {reason}")
                        })
                    })
                    .await;
                self.outcomes.announcer.report(changed).await;
            }
            EngineEvent::RateLimited { provider, until } => {
                let changed = self
                    .outcomes
                    .health
                    .modify(&provider, |r, _| {
                        (r.rate_limited_until.is_none_or(|u| u < until)).then(|| {
                            r.rate_limited_until = Some(until);
                            "rate limited".to_string()
                        })
                    })
                    .await;
                self.outcomes.announcer.report(changed).await;
            }
            EngineEvent::Spend {
                provider,
                usd,
                tenant,
                own_key,
            } => {
                metrics::counter!(metric::SPEND_USD_MICROS_TOTAL, "provider" => provider.clone())
                    .increment((usd * 1e6) as u64);
                self.stats.shares().cost(&provider, usd);
                self.spend.book(provider, usd, tenant, own_key);
            }
            EngineEvent::Cacheable(result) => self.cache.keep(*result).await,
        }
    }

    async fn failover(&self, f: FailoverEvent) {
        self.stats.shares().failover(&f.from.provider);
        metrics::counter!(metric::FAILOVERS_TOTAL, "from" => f.from.provider.to_string())
            .increment(1);
        tracing::info!(
            request_id = %f.request_id, from = %f.from.provider,
            to = f.to.as_ref().map_or("fallback", |t| t.provider.as_str()),
            class = %f.error_class, hedge = f.hedge, "failover"
        );
        let subject = self.publisher.names().failover_event();
        if let Err(e) = self.publisher.event(subject, &f, HeaderMap::new()).await {
            tracing::warn!(error = %crate::telemetry::chain(&e), "failover event not published");
        }
    }
}
