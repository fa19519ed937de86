//! Which (provider, model) pairs a request may try, in which order.

use rand::Rng;

use crate::config::{QualityConfig, Strategy};
use crate::contract::AnalysisRequest;

use super::clock::Instant;
use super::quality::{self, Arm, Evidence};
use super::slot::Slot;
use super::tenancy::Tenancy;

/// A (provider slot, model) to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub slot: usize,
    pub model: String,
}

/// Why a provider was left out, and when it may be callable again.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    pub provider: String,
    pub reason: String,
    pub retry_at: Option<Instant>,
    /// Left out by the request's cost cap (`rejected` when every provider is).
    pub cost_cap: bool,
}

/// The ordered candidates and what was left out.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub candidates: Vec<Candidate>,
    pub skipped: Vec<Skipped>,
}

/// What selection needs to know about the request and the moment.
pub struct Inputs<'a> {
    pub request: &'a AnalysisRequest,
    pub now: Instant,
    pub strategy: Strategy,
    /// Estimated prompt tokens, for cost estimates.
    pub input_tokens: u64,
    pub max_output_tokens: u64,
    /// Fleet spend today per slot.
    pub spent_today: &'a dyn Fn(&str) -> f64,
    /// The fleet's evidence of each provider's advice for the request's kind (`quality`).
    pub quality: &'a dyn Fn(&str) -> Evidence,
    pub quality_cfg: &'a QualityConfig,
    /// The request's exploration turn under the `quality` strategy (a counter of requests);
    /// `None` for a view of the order (`best-provider`), which explores nothing.
    pub tick: Option<u64>,
    /// The tenant's preference order and models.
    pub tenancy: &'a Tenancy,
}

/// The worst-case cost of one call to `slot`.
pub fn estimated_cost(slot: &Slot, input_tokens: u64, max_output_tokens: u64) -> f64 {
    slot.cfg.cost.of(input_tokens, max_output_tokens)
}

/// Orders the callable providers by `strategy` and expands each into its models.
pub fn plan(slots: &[Slot], inputs: &Inputs<'_>, rng: &mut impl Rng) -> Plan {
    let mut out = Plan::default();
    // (slot, tried last, estimated cost): stalled or suspect providers go last, whatever the
    // strategy.
    let mut eligible: Vec<(usize, bool, f64)> = Vec::new();
    for (i, slot) in slots.iter().enumerate() {
        let skip = |reason: &str, retry_at, cost_cap| Skipped {
            provider: slot.id().into(),
            reason: reason.to_string(),
            retry_at,
            cost_cap,
        };
        if let Some(allow) = &inputs.request.providers
            && !allow.iter().any(|p| p == slot.id())
        {
            continue;
        }
        if let Some((reason, retry_at)) = slot.health().blocked(&slot.breaker_cfg, inputs.now) {
            out.skipped.push(skip(&reason, retry_at, false));
            continue;
        }
        let estimate = estimated_cost(slot, inputs.input_tokens, inputs.max_output_tokens);
        // A tenant calling with its own key pays for it: the fleet's budget does not apply.
        let own_key = inputs
            .tenancy
            .id
            .as_deref()
            .is_some_and(|t| slot.provider.has_tenant_key(t));
        if let Some(budget) = slot.cfg.daily_budget_usd
            && !own_key
            && (inputs.spent_today)(slot.id()) + estimate > budget
        {
            out.skipped.push(skip("daily budget spent", None, false));
            continue;
        }
        if let Some(cap) = inputs.request.max_cost_usd
            && estimate > cap
        {
            out.skipped
                .push(skip("over the request's cost cap", None, true));
            continue;
        }
        eligible.push((i, slot.health().tried_last(inputs.now), estimate));
    }
    let keys = strategy_keys(slots, &eligible, inputs, rng);
    let mut eligible: Vec<(usize, bool, f64)> = eligible
        .into_iter()
        .zip(keys)
        .map(|((i, last, _), key)| (i, last, key))
        .collect();
    // A tenant's preference ranks above the strategy (not above health).
    let rank = |i: usize| inputs.tenancy.rank(slots[i].id());
    eligible.sort_by(|a, b| {
        a.1.cmp(&b.1)
            .then(rank(a.0).cmp(&rank(b.0)))
            .then(a.2.total_cmp(&b.2))
            .then(slots[a.0].cfg.priority.cmp(&slots[b.0].cfg.priority))
    });
    for (i, _, _) in eligible {
        for model in inputs.tenancy.models(slots[i].id(), &slots[i].cfg.models) {
            out.candidates.push(Candidate {
                slot: i,
                model: model.clone(),
            });
        }
    }
    out
}

/// Each eligible slot's sort key under the strategy, lower first.
fn strategy_keys(
    slots: &[Slot],
    eligible: &[(usize, bool, f64)],
    inputs: &Inputs<'_>,
    rng: &mut impl Rng,
) -> Vec<f64> {
    if inputs.strategy == Strategy::Quality {
        let arms: Vec<Arm> = eligible
            .iter()
            .map(|&(i, _, cost)| Arm {
                priority: slots[i].cfg.priority,
                evidence: (inputs.quality)(slots[i].id()),
                cost,
                latency_ms: slots[i].health().stats.ewma_ms(),
            })
            .collect();
        return quality::scores(&arms, inputs.quality_cfg, inputs.tick, rng)
            .into_iter()
            .map(|s| -s)
            .collect();
    }
    eligible
        .iter()
        .map(|&(i, _, estimate)| {
            let slot = &slots[i];
            let h = slot.health();
            match inputs.strategy {
                Strategy::Priority => slot.cfg.priority as f64 - h.stats.score() * 0.5,
                Strategy::Latency => h.stats.ewma_ms(),
                Strategy::Cost => estimate,
                Strategy::Weighted => {
                    // Efraimidis–Spirakis: sorting by -u^(1/w) samples an order by weight.
                    let w = (slot.cfg.weight * h.stats.success_rate()).max(1e-6);
                    -rng.random::<f64>().powf(1.0 / w)
                }
                Strategy::Quality => 0.0,
            }
        })
        .collect()
}
