//! The fleet's shared state applied to this engine, and the views others read of it.

use std::time::Duration;

use crate::contract::{
    AnalysisRequest, BreakerState, HealthStatus, Mode, ProviderHealthRecord, ProviderId, Timestamp,
};
use crate::engine::breaker::Breaker;
use crate::engine::clock::TimeMap;
use crate::engine::modes::{self, ProviderView};
use crate::engine::ports::EngineEvent;
use crate::engine::selection::{self, Inputs};
use crate::engine::tenancy::Tenancy;

use super::{Engine, one_from_opening};

impl Engine {
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
                provider: record.provider.to_string(),
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

    /// The mode this worker sees now: the operator's manual mode while one holds, else the
    /// one provider health implies (suspension after too long in minimal included).
    pub fn mode(&self) -> Mode {
        self.fleet
            .manual_mode()
            .unwrap_or_else(|| self.derived_mode())
    }

    /// The mode provider health implies, ignoring a manual mode.
    pub fn derived_mode(&self) -> Mode {
        let derived = modes::derive(&self.provider_views());
        let now = self.clock.now();
        let mut since = self.minimal_since.lock();
        if derived == Mode::Minimal {
            since.get_or_insert(now);
        } else {
            *since = None;
        }
        let limit = self.cfg.modes.suspend_after_minimal_ms;
        let too_long = limit > 0
            && since.is_some_and(|s| now.duration_since(s) >= Duration::from_millis(limit));
        if too_long { Mode::Suspended } else { derived }
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
    pub fn candidate_order(&self, request: &AnalysisRequest) -> Vec<(ProviderId, String)> {
        let prompt = crate::providers::prompt::build(request);
        // A view, not a request: it explores nothing.
        let plan = self.plan(request, &Tenancy::default(), &prompt, None);
        plan.candidates
            .iter()
            .map(|c| (self.slots[c.slot].id().into(), c.model.clone()))
            .collect()
    }

    /// Takes the next exploration turn of `kind`: requests are counted per kind, so that
    /// every kind's traffic explores.
    pub(super) fn next_tick(&self, kind: crate::contract::Kind) -> u64 {
        self.plans[kind_index(kind)].fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    pub(super) fn plan(
        &self,
        request: &AnalysisRequest,
        tenancy: &Tenancy,
        (system, user): &(String, String),
        tick: Option<u64>,
    ) -> selection::Plan {
        let spent = |p: &str| self.fleet.spent_today(p);
        let quality = |p: &str| self.fleet.quality(p, request.kind);
        let inputs = Inputs {
            request,
            now: self.clock.now(),
            strategy: self.cfg.engine.strategy,
            input_tokens: ((system.len() + user.len()) / 4) as u64,
            max_output_tokens: self.cfg.engine.max_output_tokens as u64,
            spent_today: &spent,
            quality: &quality,
            quality_cfg: &self.cfg.quality,
            tick,
            tenancy,
        };
        selection::plan(&self.slots, &inputs, &mut *self.rng.lock())
    }
}

fn kind_index(kind: crate::contract::Kind) -> usize {
    crate::contract::Kind::ALL
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(0)
}
