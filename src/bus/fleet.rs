//! The fleet-shared state a worker reads (provider records, today's spend, suspension) and
//! the [`Fleet`] port the engine reads it through.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use std::time::Duration;

use async_nats::jetstream::kv;
use async_trait::async_trait;

use crate::contract::{
    CachedDecision, FleetModeRecord, Kind, Mode, ProviderHealthRecord, ProviderId,
};
use crate::engine::ports::Fleet;
use crate::engine::quality::Evidence;

use super::health_store::HealthStore;
use super::quality_view::QualityBook;

/// `ai_decision_cache` keys: `<kind>.<symbol>` for the default tenant, `<tenant>.<kind>.<symbol>`
/// for the others (a tenant's cached advice is its own), with characters KV keys cannot hold
/// escaped (so a symbol is one token and the two shapes never meet).
pub fn cache_key(tenant: Option<&str>, kind: Kind, symbol: &str) -> String {
    let safe: String = symbol
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_string()
            } else {
                format!("={:02X}", c as u32 & 0xff)
            }
        })
        .collect();
    match tenant {
        None => format!("{}.{safe}", kind.as_str()),
        Some(t) => format!("{t}.{}.{safe}", kind.as_str()),
    }
}

/// Each provider's newest shared record, with the KV revision it was written at.
#[derive(Debug, Default)]
pub struct Records(RwLock<HashMap<ProviderId, (ProviderHealthRecord, u64)>>);

impl Records {
    /// Keeps `record`, written at `revision`, unless a newer one is known; returns whether it
    /// was newer.
    pub fn set(&self, record: ProviderHealthRecord, revision: u64) -> bool {
        let mut map = self.0.write();
        if map
            .get(&record.provider)
            .is_some_and(|(_, known)| *known >= revision)
        {
            return false;
        }
        map.insert(record.provider.clone(), (record, revision));
        true
    }

    /// Every record, by provider id.
    pub fn all(&self) -> Vec<ProviderHealthRecord> {
        let map = self.0.read();
        let mut v: Vec<_> = map.values().map(|(r, _)| r.clone()).collect();
        v.sort_by(|a, b| a.provider.cmp(&b.provider));
        v
    }
}

/// What this worker knows of the fleet.
pub struct FleetState {
    records: Records,
    spend: RwLock<HashMap<String, f64>>,
    /// Each tenant's spend today, fleet-wide (as of the last flush).
    tenant_spend: RwLock<HashMap<String, f64>>,
    /// The `_mode` record last seen and its KV revision: it carries the operator's manual mode.
    mode_record: RwLock<Option<(FleetModeRecord, u64)>>,
    health: HealthStore,
    cache: kv::Store,
    probe_ttl: Duration,
    /// The fleet's quality records, for the `quality` strategy.
    quality: Arc<QualityBook>,
    quality_half_life_s: u64,
}

impl FleetState {
    /// Over the health store and decision cache; a probe slot is held for `probe_ttl`.
    /// Quality evidence decays with `quality_half_life_s`.
    pub fn new(
        health: HealthStore,
        cache: kv::Store,
        probe_ttl: Duration,
        quality_half_life_s: u64,
    ) -> Self {
        FleetState {
            records: Records::default(),
            spend: RwLock::default(),
            tenant_spend: RwLock::default(),
            mode_record: RwLock::default(),
            health,
            cache,
            probe_ttl,
            quality: Arc::default(),
            quality_half_life_s,
        }
    }

    /// The quality records as this worker knows them (kept by the quality watch).
    pub fn quality_book(&self) -> Arc<QualityBook> {
        self.quality.clone()
    }

    /// The health store.
    pub fn health(&self) -> &HealthStore {
        &self.health
    }

    /// Stores a provider's record written at KV `revision` (seen on the watch, read at
    /// start-up, or written by this worker) unless a newer one is already known; returns
    /// whether it was newer. The same record reaches a worker twice when it wrote it itself
    /// (its own write, then the watch), and the two can arrive in either order: applying an
    /// older record after a newer one would resurrect, say, an open breaker the fleet has
    /// already closed.
    pub fn set_record(&self, record: ProviderHealthRecord, revision: u64) -> bool {
        // Every newer record passes here: the gauges follow.
        let gauges = record.clone();
        let newer = self.records.set(record, revision);
        if newer {
            crate::telemetry::metrics::provider_record(&gauges);
        }
        newer
    }

    /// Every known provider record.
    pub fn records(&self) -> Vec<ProviderHealthRecord> {
        self.records.all()
    }

    /// Sets what `tenant` spent today, fleet-wide.
    pub fn set_tenant_spend(&self, tenant: &str, usd: f64) {
        crate::telemetry::metrics::tenant_spend_today(tenant, usd);
        self.tenant_spend.write().insert(tenant.to_string(), usd);
    }

    /// What `tenant` spent today, fleet-wide, as of the last flush.
    pub fn tenant_spent_today(&self, tenant: &str) -> f64 {
        self.tenant_spend.read().get(tenant).copied().unwrap_or(0.0)
    }

    /// Sets today's fleet spend of `provider`.
    pub fn set_spend(&self, provider: &str, usd: f64) {
        crate::telemetry::metrics::spend_today(provider, usd);
        self.spend.write().insert(provider.to_string(), usd);
    }

    /// Stores the `_mode` record written at KV `revision` unless a newer one is known (the
    /// watch and this worker's own `mode.set` write can arrive in either order).
    pub fn set_mode_record(&self, record: FleetModeRecord, revision: u64) {
        let mut current = self.mode_record.write();
        if current.as_ref().is_none_or(|(_, r)| *r <= revision) {
            *current = Some((record, revision));
        }
    }

    /// The decision cache bucket.
    pub fn cache(&self) -> &kv::Store {
        &self.cache
    }
}

#[async_trait]
impl Fleet for FleetState {
    fn spent_today(&self, provider: &str) -> f64 {
        self.spend.read().get(provider).copied().unwrap_or(0.0)
    }

    async fn cached_decision(
        &self,
        tenant: Option<&str>,
        kind: Kind,
        symbol: &str,
    ) -> Option<CachedDecision> {
        let bytes = self
            .cache
            .get(cache_key(tenant, kind, symbol))
            .await
            .ok()??;
        serde_json::from_slice(&bytes).ok()
    }

    async fn acquire_probe(&self, provider: &str) -> bool {
        // If the bucket is unreachable, probing locally is better than never recovering.
        self.health
            .acquire_probe(provider, self.probe_ttl)
            .await
            .unwrap_or(true)
    }

    fn manual_mode(&self) -> Option<Mode> {
        let record = self.mode_record.read();
        record
            .as_ref()
            .and_then(|(r, _)| r.manual_at(crate::engine::clock::wall_now()))
    }

    fn quality(&self, provider: &str, kind: Kind) -> Evidence {
        self.quality
            .evidence(provider, kind, self.quality_half_life_s)
    }
}

/// Shared handle.
pub type SharedFleet = Arc<FleetState>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_record_never_replaces_a_newer_one() {
        let records = Records::default();
        let mut open = ProviderHealthRecord::new("p", "w1");
        open.breaker = crate::contract::BreakerState::Open;
        let closed = ProviderHealthRecord::new("p", "w2");
        // The watch delivers the close (revision 8) before this worker's own write of the
        // open record (revision 7) is applied.
        assert!(records.set(closed.clone(), 8));
        assert!(!records.set(open, 7));
        assert!(!records.set(closed.clone(), 8), "the same revision twice");
        assert_eq!(records.all(), [closed]);
    }

    #[test]
    fn cache_keys_are_kv_safe() {
        assert_eq!(cache_key(None, Kind::Signal, "AAPL"), "signal.AAPL");
        assert_eq!(cache_key(None, Kind::Risk, "BRK.B"), "risk.BRK=2EB");
        assert_eq!(cache_key(None, Kind::Signal, "^GSPC"), "signal.=5EGSPC");
        assert_eq!(
            cache_key(Some("acme"), Kind::Signal, "AAPL"),
            "acme.signal.AAPL"
        );
    }
}
