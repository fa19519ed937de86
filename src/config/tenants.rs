//! `[[tenants]]`: per-desk provider preferences, models, quotas and budgets. Tenants are
//! named by the server (their subjects, see `deploy/nats/server.conf`); this section only
//! says how each one is served. Re-read from the config file while workers run (see
//! `bus::tenants`): a change applies to the next request, without a restart.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::checker::Checker;
use super::types::Config;
use crate::contract::{ProviderId, is_tenant_id};

/// One `[[tenants]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// The tenant's id, as in its subjects (`ai.tenant.<id>.…`); `default` configures the
    /// requests on the plain subjects.
    pub id: String,
    /// Allow-list and preference order. Absent: every provider, in the strategy's order.
    #[serde(default)]
    pub providers: Option<Vec<ProviderId>>,
    /// Per-provider model list used instead of the provider's `models` for this tenant.
    #[serde(default)]
    pub models: BTreeMap<ProviderId, Vec<String>>,
    /// Requests admitted over any 60 s, fleet-wide. Absent: no quota.
    #[serde(default)]
    pub max_requests_per_minute: Option<u32>,
    /// What the tenant may spend per UTC day, fleet-wide, over all providers. Absent: no
    /// tenant budget (the providers' own budgets still apply).
    #[serde(default)]
    pub daily_budget_usd: Option<f64>,
    /// The per-request cost cap, unless the request sets a lower one.
    #[serde(default)]
    pub max_cost_usd: Option<f64>,
    /// Whether the decision cache or the rule-based fallback may answer this tenant's
    /// requests (a request may only narrow this).
    #[serde(default = "yes")]
    pub allow_fallback: bool,
}

fn yes() -> bool {
    true
}

/// The most requests per minute a quota may allow: the window's record keeps one count per
/// second, so this only bounds typos.
pub const MAX_QUOTA: u32 = 1_000_000;

/// The checks of `[[tenants]]`, against the configured providers.
pub(super) fn check(c: &mut Checker, cfg: &Config) {
    let mut seen = std::collections::HashSet::new();
    for (i, t) in cfg.tenants.iter().enumerate() {
        let key = |field: &str| format!("tenants[{i}].{field}");
        c.check(
            is_tenant_id(&t.id),
            key("id"),
            format!("`{}` is not a tenant id", t.id),
            "use 1-32 characters from [a-z0-9_], starting with a letter (as in the tenant's subjects)",
        );
        c.check(
            seen.insert(t.id.as_str()),
            key("id"),
            format!("tenant `{}` is configured twice", t.id),
            "keep one entry per tenant",
        );
        let known = |p: &ProviderId| cfg.providers.iter().any(|q| q.id == p.as_str());
        if let Some(list) = &t.providers {
            c.check(
                !list.is_empty(),
                key("providers"),
                "an empty list would let the tenant call no provider",
                "list at least one provider id, or leave `providers` out for all of them",
            );
            for p in list {
                c.check(
                    known(p),
                    key("providers"),
                    format!("`{p}` is not a configured provider"),
                    "use ids from [[providers]]",
                );
            }
        }
        for (p, models) in &t.models {
            c.check(
                known(p),
                key("models"),
                format!("`{p}` is not a configured provider"),
                "use ids from [[providers]] as the keys",
            );
            c.check(
                !models.is_empty() && models.iter().all(|m| !m.trim().is_empty()),
                key("models"),
                format!("the model list of `{p}` is empty or has an empty name"),
                "list the model names to use for this tenant, best first",
            );
        }
        if let Some(n) = t.max_requests_per_minute {
            c.check(
                (1..=MAX_QUOTA).contains(&n),
                key("max_requests_per_minute"),
                format!("{n} requests"),
                "use 1..=1000000, or leave it out for no quota",
            );
        }
        for (field, v) in [
            ("daily_budget_usd", t.daily_budget_usd),
            ("max_cost_usd", t.max_cost_usd),
        ] {
            if let Some(v) = v {
                c.check(
                    v.is_finite() && v >= 0.0,
                    key(field),
                    format!("{v} is not an amount"),
                    "use a finite number of USD >= 0, or leave it out",
                );
            }
        }
    }
}
