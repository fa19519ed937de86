//! The engine: runs one request through selection, calls, hedging, retries, failover,
//! deadline, budgets and fallback, and returns its result.
//!
//! One `Engine`, its methods in one file per part of a request's path: `shared` (fleet state
//! in, views out), `checks` (probes and health checks), `request` (entry checks, waiting,
//! fallback), `attempts` (the walk through the candidates), `hedge` (racing a slow call),
//! `book` (what a finished call does to health, spend and events) and `finish` (the
//! result).

mod attempts;
mod book;
mod checks;
mod finish;
mod hedge;
mod request;
mod shared;

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::config::Config;
use crate::contract::{
    AnalysisRequest, Attempt, BreakerState, ErrorClass, ErrorInfo, ProviderId, ProviderModel,
    Source, Timestamp, Usage,
};
use crate::providers::{Answer, Completion, Provider, ProviderError};

use super::breaker::Breaker;
use super::clock::{Clock, Instant};
use super::ports::{EventSink, Fleet};
use super::retry_budget::RetryBudget;
use super::selection::Candidate;
use super::slot::Slot;

/// A request as taken from the bus.
#[derive(Debug, Clone)]
pub struct Job {
    pub request: AnalysisRequest,
    /// When the request was published (JetStream time): the deadline counts from here.
    pub published_at: Timestamp,
    /// The request's tenant (from its subject) and what that changes in routing.
    pub tenant: super::tenancy::Tenancy,
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
    /// The request's tenant, for the spend it books.
    tenant: Option<String>,
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
    injected: &'a HashMap<ProviderId, ErrorClass>,
    /// The request's tenant (its own keys are used for its calls).
    tenant: Option<&'a str>,
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
    /// Requests planned so far, per kind: the `quality` strategy's exploration turns.
    plans: [std::sync::atomic::AtomicU64; crate::contract::Kind::ALL.len()],
    minimal_since: Mutex<Option<Instant>>,
    /// Woken whenever a provider call ends: a request waiting for room at a full provider.
    freed: Arc<tokio::sync::Notify>,
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
        let freed = Arc::new(tokio::sync::Notify::new());
        let slots = cfg
            .providers
            .iter()
            .zip(providers)
            .map(|(p, a)| Slot::new(p.clone(), cfg.breaker_for(p), a, freed.clone()))
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
            plans: Default::default(),
            minimal_since: Mutex::new(None),
            freed,
            cfg,
        }
    }

    /// Replaces the RNG (weighted selection, jitter) with a seeded one, for tests.
    pub fn with_seed(self, seed: u64) -> Self {
        *self.rng.lock() = StdRng::seed_from_u64(seed);
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
}

/// An answer and where it came from.
struct Answered {
    answer: Answer,
    source: Source,
    provider: Option<ProviderId>,
    model: Option<String>,
}
