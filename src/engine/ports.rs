//! What the engine tells the outside world, and what it asks of the fleet. The bus implements
//! both over NATS; tests implement them in memory.

use async_trait::async_trait;

use crate::contract::{
    AnalysisResult, Attempt, CachedDecision, ErrorClass, FailoverEvent, Kind, Mode, Timestamp,
};

use super::breaker::Transition;
use super::quality::Evidence;

/// Something the engine did that others may want to publish, store or count.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineEvent {
    /// A provider call finished (ok or not). Feeds the fleet's shared health.
    Attempt {
        request_id: String,
        attempt: Attempt,
        class: Option<ErrorClass>,
        message: Option<String>,
        /// True when the call was made for `test-failover`: never touches fleet state.
        synthetic: bool,
    },
    /// A move to another (provider, model), or to the fallback (`to: None`).
    Failover(FailoverEvent),
    /// This worker's breaker for `provider` changed state.
    Breaker {
        provider: String,
        transition: Transition,
    },
    /// An `auth` failure: the provider is quarantined fleet-wide until an operator clears it.
    Quarantine { provider: String, reason: String },
    /// The provider asked us to back off until `until`.
    RateLimited { provider: String, until: Timestamp },
    /// Money spent on a provider (for fleet-wide daily budgets).
    /// `tenant`: the request's (`None`: the default tenant); `own_key`: the call went out
    /// with the tenant's own key, so it is billed to the tenant and not to the fleet's
    /// provider budget.
    Spend {
        provider: String,
        usd: f64,
        tenant: Option<String>,
        own_key: bool,
    },
    /// A good provider answer worth caching for `kind.symbol`.
    Cacheable(Box<AnalysisResult>),
}

/// Receives engine events. Must not block: implementations queue and return.
pub trait EventSink: Send + Sync {
    /// Takes one event.
    fn emit(&self, event: EngineEvent);
}

/// A sink that drops everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullSink;

impl EventSink for NullSink {
    fn emit(&self, _event: EngineEvent) {}
}

/// Fleet-shared state the engine reads.
#[async_trait]
pub trait Fleet: Send + Sync {
    /// USD spent today on `provider` by the whole fleet.
    fn spent_today(&self, _provider: &str) -> f64 {
        0.0
    }
    /// The last good decision of `tenant` (`None`: the default tenant) for `kind.symbol`.
    async fn cached_decision(
        &self,
        _tenant: Option<&str>,
        _kind: Kind,
        _symbol: &str,
    ) -> Option<CachedDecision> {
        None
    }
    /// Takes the fleet's single half-open probe slot of `provider`; false if another worker
    /// holds it.
    async fn acquire_probe(&self, _provider: &str) -> bool {
        true
    }
    /// The mode an operator holds the fleet in (`mode.set`), if any.
    fn manual_mode(&self) -> Option<Mode> {
        None
    }
    /// What the fleet has learnt of `provider`'s advice for `kind` (decayed outcomes, all
    /// its models together).
    fn quality(&self, _provider: &str, _kind: Kind) -> Evidence {
        Evidence::default()
    }
}

/// A fleet of one: no shared state.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalFleet;

#[async_trait]
impl Fleet for LocalFleet {}
