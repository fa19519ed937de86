//! What a tenant's terms change in routing: the preference order of its providers and the
//! models it uses. Its allow-list, cost cap and fallback switch are applied to the request
//! itself before the engine sees it (they only ever narrow what the request asked).

use std::collections::BTreeMap;

use crate::config::TenantConfig;
use crate::contract::ProviderId;

/// A request's tenant, as routing sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tenancy {
    /// The tenant's id; `None` for the default tenant (the plain subjects).
    pub id: Option<String>,
    /// Providers in the tenant's order of preference; empty: the strategy's order.
    pub preference: Vec<ProviderId>,
    /// Models used instead of a provider's configured ones.
    pub models: BTreeMap<ProviderId, Vec<String>>,
}

impl Tenancy {
    /// The routing terms of tenant `id` under `terms` (its configuration, if any).
    pub fn new(id: Option<&str>, terms: Option<&TenantConfig>) -> Self {
        Tenancy {
            id: id.map(str::to_string),
            preference: terms.and_then(|t| t.providers.clone()).unwrap_or_default(),
            models: terms.map(|t| t.models.clone()).unwrap_or_default(),
        }
    }

    /// Where `provider` stands in the tenant's preference (all equal without one).
    pub fn rank(&self, provider: &str) -> usize {
        self.preference
            .iter()
            .position(|p| p.as_str() == provider)
            .unwrap_or(self.preference.len())
    }

    /// The models to try on `provider` for this tenant.
    pub fn models<'a>(&'a self, provider: &str, configured: &'a [String]) -> &'a [String] {
        self.models
            .get(provider)
            .map(Vec::as_slice)
            .unwrap_or(configured)
    }
}
