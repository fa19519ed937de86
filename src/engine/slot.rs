//! One configured provider at run time: its adapter plus this worker's view of its health
//! (breaker, statistics, operator overrides, quarantine, rate limit).

use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use std::time::Duration;

use crate::config::{BreakerConfig, ProviderConfig};
use crate::contract::{BreakerState, ForcedStatus, HealthStatus};
use crate::providers::Provider;

use super::breaker::{Admission, Breaker};
use super::clock::Instant;
use super::concurrency::Concurrency;
use super::stats::Stats;

/// Mutable health state of one provider.
#[derive(Debug, Default)]
pub struct Health {
    pub breaker: Breaker,
    pub stats: Stats,
    /// An operator override and when it expires.
    pub forced: Option<(ForcedStatus, Option<Instant>)>,
    pub quarantined: bool,
    pub rate_limited_until: Option<Instant>,
    /// The provider's probe slot in the fleet's shared record is held until then (by the
    /// fleet's prober, usually): it alone tries an open provider, so no other live request
    /// serves as the trial.
    pub probed_by_fleet_until: Option<Instant>,
    /// A call here ran past the provider's usual latency without an answer (a hedge went
    /// out): until then, or until it answers, new requests try it after the others. A
    /// provider that hangs thus stops receiving calls at the first sign of it, well before
    /// enough slow calls have ended to open its breaker.
    pub stalled_until: Option<Instant>,
    /// The provider is one failure from opening its breaker (fleet-wide): until then (about
    /// as long as a call in flight to it takes), or until it answers, new requests try it
    /// after the others instead of piling onto a provider whose verdict is pending.
    pub suspect_until: Option<Instant>,
}

impl Health {
    /// The operator override still in force at `now`.
    pub fn forced_at(&self, now: Instant) -> Option<ForcedStatus> {
        self.forced
            .and_then(|(s, until)| until.is_none_or(|u| now < u).then_some(s))
    }

    /// Why this provider cannot be called now, and when it might be callable again.
    pub fn blocked(&self, cfg: &BreakerConfig, now: Instant) -> Option<(String, Option<Instant>)> {
        match self.forced_at(now) {
            Some(ForcedStatus::Down) => return Some(("forced down".into(), None)),
            Some(ForcedStatus::Disabled) => return Some(("disabled".into(), None)),
            Some(ForcedStatus::Up) => return None,
            None => {}
        }
        if self.quarantined {
            return Some(("quarantined after an auth failure".into(), None));
        }
        if let Some(u) = self.rate_limited_until.filter(|u| now < *u) {
            return Some(("rate limited".into(), Some(u)));
        }
        if self.breaker.state != BreakerState::Closed && self.probed_by_fleet(now) {
            return Some((
                "breaker open; the fleet's prober is trying it".into(),
                self.breaker.open_until,
            ));
        }
        if !self.breaker.would_admit(cfg, now) {
            return Some(("breaker open".into(), self.breaker.open_until));
        }
        None
    }

    /// Whether new requests should try the provider after the others at `now`: it is
    /// stalled or suspect (see `stalled_until`, `suspect_until`).
    pub fn tried_last(&self, now: Instant) -> bool {
        [self.stalled_until, self.suspect_until]
            .into_iter()
            .flatten()
            .any(|u| now < u)
    }

    /// Notes that the provider answered: it is neither stalled nor suspect any more.
    pub fn answered(&mut self) {
        self.stalled_until = None;
        self.suspect_until = None;
    }

    /// Whether the fleet's probe slot of this provider is held at `now`.
    pub fn probed_by_fleet(&self, now: Instant) -> bool {
        self.probed_by_fleet_until.is_some_and(|u| now < u)
    }

    /// Whether the provider counts as serving for the fleet mode: switched on, not
    /// quarantined, breaker closed (a half-open breaker has not proven recovery yet; a rate
    /// limit is temporary and does not count).
    pub fn available(&self, now: Instant) -> bool {
        match self.forced_at(now) {
            Some(ForcedStatus::Up) => true,
            Some(ForcedStatus::Down | ForcedStatus::Disabled) => false,
            None => !self.quarantined && self.breaker.state == BreakerState::Closed,
        }
    }

    /// The status shown on dashboards.
    pub fn status(&self, now: Instant) -> HealthStatus {
        status_of(
            self.forced_at(now),
            self.quarantined,
            self.breaker.state,
            self.stats.success_rate(),
        )
    }
}

/// A provider's health status from its override, quarantine, breaker and success rate.
pub fn status_of(
    forced: Option<ForcedStatus>,
    quarantined: bool,
    breaker: BreakerState,
    success_rate: f64,
) -> HealthStatus {
    match forced {
        Some(ForcedStatus::Down | ForcedStatus::Disabled) => return HealthStatus::Disabled,
        Some(ForcedStatus::Up) => return HealthStatus::Healthy,
        None => {}
    }
    if quarantined {
        return HealthStatus::Disabled;
    }
    match breaker {
        BreakerState::Open => HealthStatus::Unhealthy,
        BreakerState::HalfOpen => HealthStatus::Degraded,
        BreakerState::Closed if success_rate < 0.9 => HealthStatus::Degraded,
        BreakerState::Closed => HealthStatus::Healthy,
    }
}

/// A provider slot.
pub struct Slot {
    pub cfg: ProviderConfig,
    pub breaker_cfg: BreakerConfig,
    pub provider: Arc<dyn Provider>,
    /// This worker's calls in flight to it, and the share of its concurrency learnt.
    pub concurrency: Concurrency,
    health: Mutex<Health>,
}

impl Slot {
    /// A slot for `provider` configured by `cfg`.
    pub fn new(
        cfg: ProviderConfig,
        breaker_cfg: BreakerConfig,
        provider: Arc<dyn Provider>,
        freed: Arc<tokio::sync::Notify>,
    ) -> Self {
        Slot {
            cfg,
            breaker_cfg,
            provider,
            concurrency: Concurrency::new(freed),
            health: Mutex::new(Health::default()),
        }
    }

    /// The provider id.
    pub fn id(&self) -> &str {
        &self.cfg.id
    }

    /// Locks the health state (held only for short, non-async sections).
    pub fn health(&self) -> MutexGuard<'_, Health> {
        self.health.lock()
    }

    /// Admission through overrides and the breaker; `Up` overrides the breaker.
    pub fn admit(&self, now: Instant) -> Admission {
        let mut h = self.health();
        if h.forced_at(now) == Some(ForcedStatus::Up) {
            return Admission::Allowed;
        }
        if h.breaker.state != BreakerState::Closed && h.probed_by_fleet(now) {
            return Admission::Rejected {
                retry_at: h.breaker.open_until,
            };
        }
        if let Some((_, retry_at)) = h.blocked(&self.breaker_cfg, now)
            && h.breaker.state != BreakerState::Open
        {
            return Admission::Rejected { retry_at };
        }
        h.breaker.admit(&self.breaker_cfg, now)
    }

    /// When hedging, how long to wait for this provider before asking the next one; a call
    /// that has run this long is slower than the provider usually is.
    pub fn hedge_after(&self, floor: Duration) -> Duration {
        let p95 = self.health().stats.p95_ms();
        floor.max(Duration::from_secs_f64(p95 / 1_000.0))
    }

    /// The time a call to this provider is likely to need: its observed 90th-percentile
    /// latency (its longest, with little history), never below `floor`; a provider with no
    /// history is innocent and needs only `floor`. A call is not started with less time left
    /// than this: under overload requests reach a worker late, and a call started on the
    /// median would be cut by the deadline half the time, holding a slot (and paying) for
    /// nothing.
    pub fn likely_latency(&self, floor: Duration) -> Duration {
        let likely = self.health().stats.likely_ms().unwrap_or(0.0);
        floor.max(Duration::from_secs_f64(likely / 1_000.0))
    }
}
