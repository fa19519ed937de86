//! The engine: runs one request through selection, calls, hedging, retries, failover,
//! deadline, budgets and fallback, and returns its result.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Either, select};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tracing::Instrument;

use crate::config::Config;
use crate::contract::{
    Action, AnalysisRequest, AnalysisResult, Attempt, AttemptOutcome, BreakerState, ErrorClass,
    ErrorInfo, FailoverEvent, HealthStatus, Kind, Mode, ProviderHealthRecord, ProviderModel,
    Source, Status, Timestamp, Usage,
};
use crate::providers::{Answer, Completion, Provider, ProviderCall, ProviderError};

use super::backoff::full_jitter;
use super::breaker::{Admission, Breaker};
use super::clock::{Clock, Instant, TimeMap};
use super::fallback;
use super::modes::{self, ProviderView};
use super::policy::policy;
use super::ports::{EngineEvent, EventSink, Fleet};
use super::retry_budget::RetryBudget;
use super::selection::{self, Candidate, Inputs};
use super::slot::Slot;
/// A request as taken from the bus.
#[derive(Debug, Clone)]
pub struct Job {
    pub request: AnalysisRequest,
    /// When the request was published (JetStream time): the deadline counts from here.
    pub published_at: Timestamp,
}

/// A call's end, as the engine books it.
type CallResult = Result<Completion, ProviderError>;

/// A call's end and how long it took.
type Timed = (CallResult, Duration);

/// What one run through the candidates gathered.
#[derive(Default)]
struct Trace {
    attempts: Vec<Attempt>,
    usage: Usage,
    cost: f64,
    last_error: Option<ErrorInfo>,
    /// The last (provider, model) that failed, for the failover event of the next move.
    pending_failover: Option<(ProviderModel, ErrorClass)>,
    /// Some candidate was called.
    called: bool,
    /// A class that ends the request (bad request, context length with no larger model).
    terminal: bool,
    /// A `test-failover` run: its answer must not reach the shared decision cache.
    synthetic: bool,
}

/// Whether one more failure opens `b` (never for a breaker that opens at the first).
fn one_from_opening(b: &Breaker, cfg: &crate::config::BreakerConfig) -> bool {
    b.state == BreakerState::Closed
        && cfg.consecutive_failures >= 2
        && b.consecutive_failures + 1 >= cfg.consecutive_failures
}

/// One request on its way through the candidates: what every call of it shares.
struct Pass<'a> {
    request: &'a AnalysisRequest,
    /// (system, user) prompt, built once.
    prompt: &'a (String, String),
    deadline: Instant,
    /// `test-failover`: providers made to fail with a class without being called.
    injected: &'a HashMap<String, ErrorClass>,
}

/// A primary and its hedge, racing.
struct Race<'a> {
    primary: &'a Candidate,
    hedge: &'a Candidate,
    primary_started: Instant,
    hedge_started: Instant,
}

/// A finished call, as [`Engine::book`] takes it.
struct Booked<'a> {
    slot: &'a Slot,
    model: &'a str,
    latency: Duration,
    hedge: bool,
}

/// How often a request that may wait (`max_wait_ms`) looks again for a provider that came
/// back: planning is microseconds, and the fleet's prober closes a breaker within a second
/// of a provider's recovery.
const WAIT_POLL: Duration = Duration::from_millis(100);

/// How long a provider whose call ran past its usual latency is tried after the others
/// (unless it answers first): long enough for the slow calls to end and open its breaker
/// if it hangs, short enough that a one-off slow answer costs it little traffic.
const STALL: Duration = Duration::from_secs(1);

/// The failover engine of one worker.
pub struct Engine {
    cfg: Arc<Config>,
    slots: Vec<Slot>,
    clock: Arc<dyn Clock>,
    sink: Arc<dyn EventSink>,
    fleet: Arc<dyn Fleet>,
    worker_id: String,
    retry_budget: Mutex<RetryBudget>,
    rng: Mutex<StdRng>,
    minimal_since: Mutex<Option<Instant>>,
}

impl Engine {
    /// An engine over `providers` (one per `cfg.providers` entry, same order).
    pub fn new(
        cfg: Arc<Config>,
        providers: Vec<Arc<dyn Provider>>,
        clock: Arc<dyn Clock>,
        sink: Arc<dyn EventSink>,
        fleet: Arc<dyn Fleet>,
        worker_id: impl Into<String>,
    ) -> Self {
        assert_eq!(
            cfg.providers.len(),
            providers.len(),
            "one adapter per provider"
        );
        let slots = cfg
            .providers
            .iter()
            .zip(providers)
            .map(|(p, a)| Slot::new(p.clone(), cfg.breaker_for(p), a))
            .collect();
        let e = &cfg.engine;
        let budget = RetryBudget::new(e.retry_budget_ratio, e.retry_budget_min_per_sec);
        Engine {
            slots,
            clock,
            sink,
            fleet,
            worker_id: worker_id.into(),
            retry_budget: Mutex::new(budget),
            rng: Mutex::new(StdRng::from_os_rng()),
            minimal_since: Mutex::new(None),
            cfg,
        }
    }

    /// Replaces the RNG (weighted selection, jitter) with a seeded one, for tests.
    pub fn with_seed(self, seed: u64) -> Self {
        *self.rng.lock().unwrap() = StdRng::seed_from_u64(seed);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The worker id stamped on results and events.
    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// The provider slots, in configuration order.
    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    fn slot(&self, id: &str) -> Option<&Slot> {
        self.slots.iter().find(|s| s.id() == id)
    }

    // ----- fleet state in -------------------------------------------------------------

    /// Applies the fleet's shared record of a provider (from the KV watch): overrides,
    /// quarantine, rate limit and breaker state decided by other workers.
    pub fn apply_shared(&self, record: &ProviderHealthRecord) {
        let Some(slot) = self.slot(&record.provider) else {
            return;
        };
        let times = TimeMap::of(&*self.clock);
        let to_instant = |t: Timestamp| times.instant(t);
        let suspicion = self.suspicion(slot);
        let mut h = slot.health();
        h.forced = record
            .forced
            .as_ref()
            .map(|f| (f.status, f.until.map(to_instant)));
        h.quarantined = record.quarantined;
        h.rate_limited_until = record.rate_limited_until.map(to_instant);
        // The fleet's count of failures in a row: one more opens the breaker.
        let fleet_count = Breaker {
            state: record.breaker,
            consecutive_failures: record.consecutive_failures,
            ..Breaker::default()
        };
        h.suspect_until = match &record.last_error {
            Some(e) if one_from_opening(&fleet_count, &slot.breaker_cfg) => {
                Some(to_instant(e.at) + suspicion)
            }
            _ if record.consecutive_failures == 0 => None,
            _ => h.suspect_until,
        };
        // Someone holds the provider's probe slot (the fleet's prober, usually; perhaps this
        // worker): no other live trial until it is free.
        h.probed_by_fleet_until = record
            .probe_owner
            .as_ref()
            .and(record.probe_until)
            .map(to_instant);
        let transition = h.breaker.adopt(
            record.breaker,
            record.open_until.map(to_instant),
            record.open_count,
            record.breaker_changed_at.map(to_instant),
        );
        drop(h);
        if let Some(transition) = transition {
            self.sink.emit(EngineEvent::Breaker {
                provider: record.provider.clone(),
                transition,
            });
        }
    }

    // ----- views out -----------------------------------------------------------------

    /// Availability of every provider, as mode derivation sees it.
    pub fn provider_views(&self) -> Vec<ProviderView> {
        let now = self.clock.now();
        self.slots
            .iter()
            .map(|s| ProviderView {
                id: s.id().to_string(),
                priority: s.cfg.priority,
                tier: s.cfg.tier,
                available: s.health().available(now),
            })
            .collect()
    }

    /// The mode this worker sees now (suspension included).
    pub fn mode(&self) -> Mode {
        let derived = modes::derive(&self.provider_views());
        let now = self.clock.now();
        let mut since = self.minimal_since.lock().unwrap();
        if derived == Mode::Minimal {
            since.get_or_insert(now);
        } else {
            *since = None;
        }
        let limit = self.cfg.modes.suspend_after_minimal_ms;
        let too_long = limit > 0
            && since.is_some_and(|s| now.duration_since(s) >= Duration::from_millis(limit));
        if self.fleet.manually_suspended() || too_long {
            Mode::Suspended
        } else {
            derived
        }
    }

    /// Health status and breaker state of `provider` as this worker sees them.
    pub fn provider_status(&self, provider: &str) -> Option<(HealthStatus, BreakerState)> {
        let now = self.clock.now();
        self.slot(provider).map(|s| {
            let h = s.health();
            (h.status(now), h.breaker.state)
        })
    }

    /// The order in which a request would try providers now.
    pub fn candidate_order(&self, request: &AnalysisRequest) -> Vec<(String, String)> {
        let prompt = crate::providers::prompt::build(request);
        let plan = self.plan(request, &prompt);
        plan.candidates
            .iter()
            .map(|c| (self.slots[c.slot].id().to_string(), c.model.clone()))
            .collect()
    }

    fn plan(
        &self,
        request: &AnalysisRequest,
        (system, user): &(String, String),
    ) -> selection::Plan {
        let spent = |p: &str| self.fleet.spent_today(p);
        let inputs = Inputs {
            request,
            now: self.clock.now(),
            strategy: self.cfg.engine.strategy,
            input_tokens: ((system.len() + user.len()) / 4) as u64,
            max_output_tokens: self.cfg.engine.max_output_tokens as u64,
            spent_today: &spent,
        };
        selection::plan(&self.slots, &inputs, &mut *self.rng.lock().unwrap())
    }

    // ----- health checks ---------------------------------------------------------------

    /// Sends `provider` one cheap probe (its model listing) bounded by `timeout` and says how
    /// long it took; books nothing (the fleet's prober books it in the shared record).
    pub async fn probe(
        &self,
        provider: &str,
        timeout: Duration,
    ) -> Option<Result<Duration, ProviderError>> {
        let slot = self.slot(provider)?;
        let model = slot.cfg.models.first()?.clone();
        let started = self.clock.now();
        let res = match tokio::time::timeout(timeout, slot.provider.probe(&model, timeout)).await {
            Ok(r) => r,
            Err(_) => Err(ProviderError::new(
                ErrorClass::Timeout,
                format!("probe got no answer within {} ms", timeout.as_millis()),
            )),
        };
        Some(res.map(|()| self.clock.now().duration_since(started)))
    }

    /// Probes `provider` with its cheap health endpoint and books the outcome: a success
    /// after the open period closes the breaker (recovery), a failure counts.
    pub async fn health_check(&self, provider: &str) -> Option<Result<Duration, ProviderError>> {
        let slot = self.slot(provider)?;
        let timeout = Duration::from_millis(slot.cfg.timeout_ms.min(10_000));
        let started = self.clock.now();
        let res = self.probe(provider, timeout).await?.map(drop);
        let now = self.clock.now();
        let latency = now.duration_since(started);
        let transition = {
            let mut h = slot.health();
            let b = &mut h.breaker;
            b.tick(now);
            match &res {
                Ok(()) if b.state == BreakerState::HalfOpen => {
                    b.on_success(&slot.breaker_cfg, now, latency)
                }
                Ok(()) => None,
                Err(e) if policy(e.class).breaker_failure => {
                    b.on_failure(&slot.breaker_cfg, now, latency, e.class.as_str())
                }
                Err(_) => None,
            }
        };
        if let Some(transition) = transition {
            self.sink.emit(EngineEvent::Breaker {
                provider: provider.to_string(),
                transition,
            });
        }
        // Booked with the fleet like a real call.
        let class = res.as_ref().err().map(|e| e.class);
        self.sink.emit(EngineEvent::Attempt {
            request_id: "health-check".into(),
            attempt: Attempt {
                provider: provider.to_string(),
                model: slot.cfg.models.first().cloned().unwrap_or_default(),
                outcome: class.map_or(AttemptOutcome::Ok, AttemptOutcome::from),
                http_status: res.as_ref().err().and_then(|e| e.http_status),
                latency_ms: if res.is_ok() {
                    latency.as_millis() as u64
                } else {
                    0
                },
                hedge: false,
            },
            class,
            message: res.as_ref().err().map(|e| e.message.clone()),
            synthetic: false,
        });
        Some(res.map(|()| latency))
    }

    // ----- the request path -----------------------------------------------------------

    /// Runs one request to its result.
    pub async fn handle(&self, job: Job) -> Box<AnalysisResult> {
        self.handle_with(job, &HashMap::new()).await
    }

    /// [`handle`](Self::handle) with some providers made to fail with a given class without
    /// calling them and without touching fleet state (`test-failover`).
    pub async fn handle_with(
        &self,
        job: Job,
        injected: &HashMap<String, ErrorClass>,
    ) -> Box<AnalysisResult> {
        let started = self.clock.now();
        let utc = self.clock.utc();
        let request = &job.request;
        let budget_ms = request
            .deadline_ms
            .unwrap_or(self.cfg.worker.default_deadline_ms);
        let age = (utc - job.published_at).to_std().unwrap_or(Duration::ZERO);
        let budget = Duration::from_millis(budget_ms);
        if age >= budget {
            let error = ErrorInfo {
                class: ErrorClass::DeadlineExceeded,
                message: format!(
                    "request is {} ms old, past its {budget_ms} ms deadline",
                    age.as_millis()
                ),
            };
            return self.finish(
                request,
                started,
                Trace::default(),
                None,
                Status::Expired,
                Some(error),
            );
        }
        let deadline = started + (budget - age);

        if self.mode() == Mode::Suspended {
            let error = ErrorInfo {
                class: ErrorClass::Suspended,
                message: "trading is suspended; no provider was called".into(),
            };
            return self.finish(
                request,
                started,
                Trace::default(),
                None,
                Status::Rejected,
                Some(error),
            );
        }

        // Built once: its size prices the candidates, its text goes to every attempt.
        let prompt = crate::providers::prompt::build(request);
        let pass = Pass {
            request,
            prompt: &prompt,
            deadline,
            injected,
        };
        let mut trace = Trace {
            synthetic: !injected.is_empty(),
            ..Trace::default()
        };
        let wait_until = self.wait_until(&job, started, age, deadline);
        loop {
            let plan = self.plan(request, &prompt);
            if plan.candidates.is_empty()
                && !plan.skipped.is_empty()
                && plan.skipped.iter().all(|s| s.cost_cap)
            {
                let error = ErrorInfo {
                    class: ErrorClass::BudgetExceeded,
                    message: "every provider's estimated cost is over max_cost_usd".into(),
                };
                return self.finish(request, started, trace, None, Status::Rejected, Some(error));
            }
            if let Some(answer) = self
                .run_candidates(&pass, plan.candidates, &mut trace)
                .await
            {
                return self.finish(request, started, trace, Some(answer), Status::Ok, None);
            }
            // Nothing answered. Wait for a provider to come back only when the request asked
            // to (`max_wait_ms`): otherwise the cached or rule-based answer goes out now,
            // which is what a trader needs while the fleet knows every provider is down.
            let now = self.clock.now();
            match wait_until {
                Some(until) if !trace.terminal && now + WAIT_POLL < until => {
                    tokio::time::sleep(WAIT_POLL).await;
                }
                _ => break,
            }
        }

        let error = trace.last_error.clone().unwrap_or(ErrorInfo {
            class: ErrorClass::NoProvider,
            message: "no provider was available".into(),
        });
        if request.allow_fallback && !trace.terminal {
            let from = trace.pending_failover.take();
            let fb = self.fallback(request).await;
            if let Some((from, class)) = from {
                let synthetic = trace.synthetic;
                self.emit_failover(&request.request_id, from, None, class, false, synthetic);
            }
            return self.finish(
                request,
                started,
                trace,
                Some(fb),
                Status::Degraded,
                Some(error),
            );
        }
        self.finish(request, started, trace, None, Status::Failed, Some(error))
    }

    /// Until when `job` may wait for a provider to come back: its `max_wait_ms` from the
    /// publish time, leaving room for a call before the deadline; `None` when it may not.
    fn wait_until(
        &self,
        job: &Job,
        started: Instant,
        age: Duration,
        deadline: Instant,
    ) -> Option<Instant> {
        let max_wait = Duration::from_millis(job.request.max_wait_ms.filter(|w| *w > 0)?);
        let room = Duration::from_millis(self.cfg.engine.min_call_ms);
        let until = (started + max_wait.checked_sub(age)?).min(deadline.checked_sub(room)?);
        (until > started).then_some(until)
    }

    async fn fallback(&self, request: &AnalysisRequest) -> Answered {
        if let Some(symbol) = &request.symbol
            && let Some(cached) = self.fleet.cached_decision(request.kind, symbol).await
        {
            let age = (self.clock.utc() - cached.cached_at)
                .to_std()
                .unwrap_or(Duration::MAX);
            if age <= Duration::from_millis(self.cfg.engine.cache_max_age_ms) {
                let r = cached.result;
                let answer = match (r.signal, r.analysis) {
                    (Some(s), _) => Some(Answer::Signal(s)),
                    (None, Some(a)) => Some(Answer::Analysis(a)),
                    _ => None,
                };
                if let Some(answer) = answer {
                    return Answered {
                        answer,
                        source: Source::Cache,
                        provider: r.provider,
                        model: r.model,
                    };
                }
            }
        }
        Answered {
            answer: fallback::rule_based(request, self.cfg.engine.fallback_max_confidence),
            source: Source::Fallback,
            provider: None,
            model: None,
        }
    }

    async fn run_candidates(
        &self,
        pass: &Pass<'_>,
        candidates: Vec<Candidate>,
        trace: &mut Trace,
    ) -> Option<Answered> {
        let request = pass.request;
        let deadline = pass.deadline;
        let synthetic = trace.synthetic;
        let floor = Duration::from_millis(self.cfg.engine.min_call_ms);
        let mut queue: VecDeque<Candidate> = candidates.into();
        let mut dropped: HashSet<usize> = HashSet::new();
        let mut retries: HashMap<usize, u32> = HashMap::new();
        let mut first = true;

        while let Some(cand) = queue.pop_front() {
            if dropped.contains(&cand.slot) {
                continue;
            }
            let now = self.clock.now();
            if now >= deadline {
                trace.last_error = Some(ErrorInfo {
                    class: ErrorClass::DeadlineExceeded,
                    message: "deadline reached before a provider answered".into(),
                });
                break;
            }
            let slot = &self.slots[cand.slot];
            // Never start a call that cannot plausibly come back before the deadline.
            let left = deadline.saturating_duration_since(now);
            let needed = slot.plausible_latency(floor);
            if left < needed {
                trace.last_error = Some(ErrorInfo {
                    class: ErrorClass::DeadlineExceeded,
                    message: format!(
                        "{} usually needs {} ms; only {} ms were left before the deadline",
                        slot.id(),
                        needed.as_millis(),
                        left.as_millis()
                    ),
                });
                continue;
            }
            let probe = match slot.admit(now) {
                Admission::Allowed => false,
                Admission::Probe => true,
                Admission::Rejected { .. } => continue,
            };
            if probe && !self.fleet.acquire_probe(slot.id()).await {
                slot.health().breaker.release_probe();
                continue;
            }
            if first {
                self.retry_budget
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .record_call(now);
                first = false;
            }
            let here = ProviderModel {
                provider: slot.id().to_string(),
                model: cand.model.clone(),
            };
            if let Some((from, class)) = trace.pending_failover.take() {
                self.emit_failover(
                    &request.request_id,
                    from,
                    Some(here.clone()),
                    class,
                    false,
                    synthetic,
                );
            }

            // A hedge partner: the next candidate on another provider, admitted now, that can
            // still answer in time. A probe is hedged too: a trial call is never a live
            // request left to hang.
            let partner = if self.cfg.engine.hedging {
                queue.iter().position(|c| {
                    let other = &self.slots[c.slot];
                    c.slot != cand.slot
                        && !dropped.contains(&c.slot)
                        && other.health().blocked(&other.breaker_cfg, now).is_none()
                        && other.plausible_latency(floor) <= left
                })
            } else {
                None
            };
            trace.called = true;
            let n = trace.attempts.len() + 1;
            let primary = self.start_call(pass, &cand, (n, false));
            let ((res, latency), winner) = match partner {
                None => (primary.await, cand.clone()),
                Some(pos) => {
                    let partner_slot = &self.slots[queue[pos].slot];
                    // Ask the partner once this provider is slower than usual, or earlier if
                    // waiting that long would leave the partner too little time.
                    let usual =
                        slot.hedge_after(Duration::from_millis(self.cfg.engine.hedge_floor_ms));
                    let latest = deadline
                        .checked_sub(partner_slot.plausible_latency(floor))
                        .unwrap_or(now);
                    let timer = tokio::time::sleep_until((now + usual).min(latest)).boxed();
                    match select(primary, timer).await {
                        Either::Left((res, _)) => (res, cand.clone()),
                        Either::Right(((), primary)) => {
                            slot.health().stalled_until = Some(self.clock.now() + STALL);
                            let other = if self.may_hedge(slot, probe) {
                                queue.remove(pos)
                            } else {
                                None
                            };
                            match other {
                                None => (primary.await, cand.clone()),
                                Some(other) => {
                                    let there = ProviderModel {
                                        provider: self.slots[other.slot].id().to_string(),
                                        model: other.model.clone(),
                                    };
                                    self.emit_failover(
                                        &request.request_id,
                                        here.clone(),
                                        Some(there),
                                        ErrorClass::Timeout,
                                        true,
                                        synthetic,
                                    );
                                    let hedge = self.start_call(pass, &other, (n + 1, true));
                                    let race = Race {
                                        primary: &cand,
                                        hedge: &other,
                                        primary_started: now,
                                        hedge_started: self.clock.now(),
                                    };
                                    self.race(primary, hedge, race, trace, request).await
                                }
                            }
                        }
                    }
                }
            };
            let winner_slot = &self.slots[winner.slot];
            let hedged = winner != cand;
            let call = Booked {
                slot: winner_slot,
                model: &winner.model,
                latency,
                hedge: hedged,
            };
            match self.book(call, res, trace, request) {
                Ok(completion) => {
                    return Some(Answered {
                        answer: completion.answer,
                        source: Source::Provider,
                        provider: Some(winner_slot.id().to_string()),
                        model: Some(completion.model),
                    });
                }
                // Cut short by the request's own deadline: nobody's fault, nothing left to try.
                Err(err) if err.class == ErrorClass::DeadlineExceeded => break,
                Err(err) => {
                    let p = policy(err.class);
                    if !p.failover {
                        trace.terminal = true;
                        break;
                    }
                    if err.class == ErrorClass::ContextLength {
                        let larger: Vec<Candidate> = self
                            .slots
                            .iter()
                            .enumerate()
                            .flat_map(|(i, s)| {
                                s.cfg.large_context_models.iter().map(move |m| Candidate {
                                    slot: i,
                                    model: m.clone(),
                                })
                            })
                            .filter(|c| *c != winner)
                            .collect();
                        if larger.is_empty() {
                            trace.terminal = true;
                            break;
                        }
                        queue = larger.into();
                    }
                    let others_left = queue
                        .iter()
                        .any(|c| c.slot != winner.slot && !dropped.contains(&c.slot));
                    let tries = retries.entry(winner.slot).or_insert(0);
                    if p.retry_same
                        && !others_left
                        && *tries < self.cfg.engine.max_retries_per_provider
                        && self
                            .retry_budget
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .try_spend(self.clock.now())
                    {
                        let wait = full_jitter(
                            &mut *self.rng.lock().unwrap_or_else(|p| p.into_inner()),
                            Duration::from_millis(self.cfg.engine.backoff_base_ms),
                            Duration::from_millis(self.cfg.engine.backoff_max_ms),
                            *tries,
                        );
                        *tries += 1;
                        if self.clock.now() + wait < deadline {
                            tokio::time::sleep(wait).await;
                            queue.push_front(winner.clone());
                            continue;
                        }
                    }
                    if p.skip_provider {
                        dropped.insert(winner.slot);
                    }
                    trace.pending_failover = Some((
                        ProviderModel {
                            provider: winner_slot.id().to_string(),
                            model: winner.model.clone(),
                        },
                        err.class,
                    ));
                }
            }
        }
        None
    }

    /// How long a provider one failure from opening is tried after the others: about as
    /// long as a call in flight to it takes to end (its usual latency, once to twice, drawn
    /// per worker so that the workers of the fleet do not all try it again at the same
    /// moment: the first retry's verdict reaches the others before theirs is due).
    fn suspicion(&self, slot: &Slot) -> Duration {
        let usual = slot.hedge_after(Duration::from_millis(self.cfg.engine.hedge_floor_ms));
        let spread: f64 = self.rng.lock().unwrap_or_else(|p| p.into_inner()).random();
        usual.mul_f64(1.0 + spread).min(STALL)
    }

    /// Whether a slow call on `slot` may be hedged now. Hedges of a provider that is failing
    /// (its last call here failed, or this call is its trial) are not rationed: that is
    /// exactly when they are needed, and they only move load that provider cannot serve.
    /// Otherwise they come out of the retry budget, so that a merely busy fleet does not
    /// double its load.
    fn may_hedge(&self, slot: &Slot, probe: bool) -> bool {
        probe
            || slot.health().breaker.consecutive_failures > 0
            || self
                .retry_budget
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .try_spend(self.clock.now())
    }

    /// Races a slow primary against its hedge: the first valid answer wins; a failure of one
    /// waits for the other; the loser is cancelled, and counts as a slow failure of its
    /// provider when it had run longer than that provider usually takes.
    async fn race(
        &self,
        primary: BoxFuture<'_, Timed>,
        hedge: BoxFuture<'_, Timed>,
        race: Race<'_>,
        trace: &mut Trace,
        request: &AnalysisRequest,
    ) -> (Timed, Candidate) {
        // Whichever ends first: its candidate, whether it is the hedge, and the other side.
        let (done, rest, (first, second), first_is_hedge, second_started) =
            match select(primary, hedge).await {
                Either::Left((done, rest)) => (
                    done,
                    rest,
                    (race.primary, race.hedge),
                    false,
                    race.hedge_started,
                ),
                Either::Right((done, rest)) => (
                    done,
                    rest,
                    (race.hedge, race.primary),
                    true,
                    race.primary_started,
                ),
            };
        let (res, took) = done;
        if res.is_ok() {
            self.cancelled(second, second_started, !first_is_hedge, trace, request);
            return ((res, took), first.clone());
        }
        let call = Booked {
            slot: &self.slots[first.slot],
            model: &first.model,
            latency: took,
            hedge: first_is_hedge,
        };
        let _ = self.book(call, res, trace, request);
        (rest.await, second.clone())
    }

    /// Books a call dropped because the other side of a hedge won. One that had run longer
    /// than its provider usually takes is a slow failure toward that provider's breaker (a
    /// hung provider is found this way, without waiting for its timeout); a quicker one is
    /// only a cancelled attempt.
    fn cancelled(
        &self,
        c: &Candidate,
        started: Instant,
        hedge: bool,
        trace: &mut Trace,
        request: &AnalysisRequest,
    ) {
        let slot = &self.slots[c.slot];
        let ran = self.clock.now().duration_since(started);
        let usual = slot.hedge_after(Duration::from_millis(self.cfg.engine.hedge_floor_ms));
        if ran >= usual {
            let err = ProviderError::new(
                ErrorClass::Timeout,
                format!(
                    "no answer after {} ms, slower than usual; the other call answered first",
                    ran.as_millis()
                ),
            );
            let call = Booked {
                slot,
                model: &c.model,
                latency: ran,
                hedge,
            };
            let _ = self.book(call, Err(err), trace, request);
            if let Some(a) = trace.attempts.last_mut() {
                a.outcome = AttemptOutcome::Cancelled;
            }
        } else {
            slot.health().breaker.release_probe();
            trace.attempts.push(Attempt {
                provider: slot.id().to_string(),
                model: c.model.clone(),
                outcome: AttemptOutcome::Cancelled,
                http_status: None,
                latency_ms: ran.as_millis() as u64,
                hedge,
            });
        }
    }

    fn start_call<'a>(
        &'a self,
        pass: &Pass<'_>,
        cand: &Candidate,
        (attempt, hedge): (usize, bool),
    ) -> BoxFuture<'a, Timed> {
        let slot = &self.slots[cand.slot];
        let provider = slot.provider.clone();
        let injected = pass.injected.get(slot.id()).copied();
        let clock = self.clock.clone();
        let deadline = pass.deadline;
        let configured = Duration::from_millis(slot.cfg.timeout_ms);
        let call = ProviderCall {
            request_id: pass.request.request_id.clone(),
            model: cand.model.clone(),
            kind: pass.request.kind,
            system: pass.prompt.0.clone(),
            user: pass.prompt.1.clone(),
            max_output_tokens: self.cfg.engine.max_output_tokens,
            timeout: configured.min(deadline.saturating_duration_since(clock.now())),
        };
        // A call cut short by the request's deadline is the provider's fault only if it had
        // already run longer than the provider usually takes.
        let usual = slot.hedge_after(Duration::from_millis(self.cfg.engine.hedge_floor_ms));
        // Debug level, like the request span it sits in (see `bus::worker::request_span`).
        let span = tracing::debug_span!(
            "provider_call",
            provider = slot.id(),
            model = %call.model,
            attempt,
            hedge,
            error_class = tracing::field::Empty,
        );
        let record = span.clone();
        async move {
            if let Some(class) = injected {
                record.record("error_class", class.as_str());
                let err = ProviderError::new(class, "injected by test-failover");
                return (Err(err), Duration::ZERO);
            }
            let started = clock.now();
            let bound = deadline
                .saturating_duration_since(started)
                .min(call.timeout);
            let res = match tokio::time::timeout(bound, provider.complete(&call)).await {
                Ok(res) => res,
                Err(_) => {
                    let took = clock.now().duration_since(started);
                    let class = if bound < configured && took < usual {
                        ErrorClass::DeadlineExceeded
                    } else {
                        ErrorClass::Timeout
                    };
                    Err(ProviderError::new(
                        class,
                        format!("no answer within {} ms", bound.as_millis()),
                    ))
                }
            };
            if let Err(e) = &res {
                record.record("error_class", e.class.as_str());
            }
            (res, clock.now().duration_since(started))
        }
        .instrument(span)
        .boxed()
    }

    /// Books a finished call: breaker, statistics, spend, attempt record and events.
    fn book(
        &self,
        call: Booked<'_>,
        res: CallResult,
        trace: &mut Trace,
        request: &AnalysisRequest,
    ) -> CallResult {
        let Booked {
            slot,
            model,
            latency,
            hedge,
        } = call;
        let synthetic = trace.synthetic;
        let now = self.clock.now();
        let (outcome, http_status, usage, class, message) = match &res {
            Ok(c) => (
                AttemptOutcome::Ok,
                Some(c.http_status),
                Some(c.usage),
                None,
                None,
            ),
            Err(e) => (
                AttemptOutcome::from(e.class),
                e.http_status,
                e.usage,
                Some(e.class),
                Some(e.message.clone()),
            ),
        };
        let attempt = Attempt {
            provider: slot.id().to_string(),
            model: model.to_string(),
            outcome,
            http_status,
            latency_ms: latency.as_millis() as u64,
            hedge,
        };
        trace.attempts.push(attempt.clone());
        if let Some(u) = usage {
            trace.usage.input_tokens += u.input_tokens;
            trace.usage.output_tokens += u.output_tokens;
            let usd = slot.cfg.cost.of(u.input_tokens, u.output_tokens);
            trace.cost += usd;
            if !synthetic && usd > 0.0 {
                self.sink.emit(EngineEvent::Spend {
                    provider: slot.id().to_string(),
                    usd,
                });
            }
        }
        if let Err(e) = &res {
            trace.last_error = Some(ErrorInfo {
                class: e.class,
                message: format!("{}: {}", slot.id(), e.message),
            });
        }
        self.sink.emit(EngineEvent::Attempt {
            request_id: request.request_id.clone(),
            attempt,
            class,
            message,
            synthetic,
        });
        if synthetic {
            // test-failover never touches health, breakers or budgets.
            let mut h = slot.health();
            if h.breaker.state == BreakerState::HalfOpen {
                h.breaker.release_probe();
            }
            return res;
        }
        let suspicion = self.suspicion(slot);
        let transition = {
            let mut h = slot.health();
            // A call the request itself cut short says nothing about the provider.
            let cut = res.as_ref().is_err_and(|e| {
                matches!(
                    e.class,
                    ErrorClass::DeadlineExceeded | ErrorClass::Cancelled
                )
            });
            if !cut {
                h.stats.record(res.is_ok(), latency);
            }
            match &res {
                Ok(_) => {
                    h.answered();
                    h.breaker.on_success(&slot.breaker_cfg, now, latency)
                }
                Err(e) => {
                    let p = policy(e.class);
                    if p.quarantine {
                        h.quarantined = true;
                    }
                    if e.class == ErrorClass::RateLimited {
                        let wait = e.retry_after.unwrap_or(Duration::from_secs(1));
                        h.rate_limited_until = Some(now + wait);
                    }
                    if p.breaker_failure {
                        let tr =
                            h.breaker
                                .on_failure(&slot.breaker_cfg, now, latency, e.class.as_str());
                        if one_from_opening(&h.breaker, &slot.breaker_cfg) {
                            h.suspect_until = Some(now + suspicion);
                        }
                        tr
                    } else {
                        if h.breaker.state == BreakerState::HalfOpen {
                            h.breaker.release_probe();
                        }
                        None
                    }
                }
            }
        };
        if let Some(transition) = transition {
            self.sink.emit(EngineEvent::Breaker {
                provider: slot.id().to_string(),
                transition,
            });
        }
        if let Err(e) = &res {
            if policy(e.class).quarantine {
                self.sink.emit(EngineEvent::Quarantine {
                    provider: slot.id().to_string(),
                    reason: e.message.clone(),
                });
            }
            if e.class == ErrorClass::RateLimited {
                let wait = e.retry_after.unwrap_or(Duration::from_secs(1));
                self.sink.emit(EngineEvent::RateLimited {
                    provider: slot.id().to_string(),
                    until: self.clock.utc() + chrono::Duration::from_std(wait).unwrap_or_default(),
                });
            }
        }
        res
    }

    fn emit_failover(
        &self,
        request_id: &str,
        from: ProviderModel,
        to: Option<ProviderModel>,
        class: ErrorClass,
        hedge: bool,
        synthetic: bool,
    ) {
        if synthetic {
            return;
        }
        self.sink.emit(EngineEvent::Failover(FailoverEvent {
            request_id: request_id.to_string(),
            from,
            to,
            error_class: class,
            hedge,
            at: self.clock.utc(),
            worker_id: self.worker_id.clone(),
        }));
    }

    fn finish(
        &self,
        request: &AnalysisRequest,
        started: Instant,
        trace: Trace,
        answered: Option<Answered>,
        status: Status,
        error: Option<ErrorInfo>,
    ) -> Box<AnalysisResult> {
        let mode = self.mode();
        let risk = modes::risk(mode, &self.cfg.modes);
        let (mut signal, mut analysis, source, provider, model) = match answered {
            Some(a) => {
                let (s, an) = match a.answer {
                    Answer::Signal(s) => (Some(s), None),
                    Answer::Analysis(m) => (None, Some(m)),
                };
                (s, an, a.source, a.provider, a.model)
            }
            None => (None, None, Source::None, None, None),
        };
        if let Some(s) = signal.as_mut() {
            s.position_size = (s.position_size * risk.position_multiplier).clamp(0.0, 1.0);
        }
        if risk.trading_suspended && request.kind == Kind::Signal {
            signal = Some(crate::contract::Signal {
                action: Action::Hold,
                confidence: signal.as_ref().map_or(0.0, |s| s.confidence),
                rationale: "trading suspended: holding".into(),
                position_size: 0.0,
                horizon: signal
                    .as_ref()
                    .map_or("intraday".into(), |s| s.horizon.clone()),
            });
            analysis = None;
        }
        let cacheable = !trace.synthetic;
        let result = AnalysisResult {
            request_id: request.request_id.clone(),
            kind: request.kind,
            symbol: request.symbol.clone(),
            status,
            source,
            provider,
            model,
            mode,
            signal,
            analysis,
            risk,
            attempts: trace.attempts,
            latency_ms: self.clock.now().duration_since(started).as_millis() as u64,
            usage: trace.usage,
            cost_usd: trace.cost,
            error: if status == Status::Ok { None } else { error },
            worker_id: self.worker_id.clone(),
            completed_at: self.clock.utc(),
        };
        if cacheable
            && status == Status::Ok
            && source == Source::Provider
            && result.symbol.is_some()
        {
            self.sink
                .emit(EngineEvent::Cacheable(Box::new(result.clone())));
        }
        Box::new(result)
    }
}

/// An answer and where it came from.
struct Answered {
    answer: Answer,
    source: Source,
    provider: Option<String>,
    model: Option<String>,
}
