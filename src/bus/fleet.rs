//! The fleet-shared state a worker reads (provider records, today's spend, suspension) and
//! the [`Fleet`] port the engine reads it through.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream::kv;
use async_trait::async_trait;

use crate::contract::{CachedDecision, Kind, ProviderHealthRecord};
use crate::engine::ports::Fleet;

use super::health_store::HealthStore;

/// `ai_decision_cache` keys: `<kind>.<symbol>`, with characters KV keys cannot hold escaped.
pub fn cache_key(kind: Kind, symbol: &str) -> String {
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
    format!("{}.{safe}", kind.as_str())
}

/// What this worker knows of the fleet.
pub struct FleetState {
    records: RwLock<HashMap<String, ProviderHealthRecord>>,
    spend: RwLock<HashMap<String, f64>>,
    suspended: AtomicBool,
    health: HealthStore,
    cache: kv::Store,
    probe_ttl: Duration,
}

impl FleetState {
    /// Over the health store and decision cache; a probe slot is held for `probe_ttl`.
    pub fn new(health: HealthStore, cache: kv::Store, probe_ttl: Duration) -> Self {
        FleetState {
            records: RwLock::default(),
            spend: RwLock::default(),
            suspended: AtomicBool::new(false),
            health,
            cache,
            probe_ttl,
        }
    }

    /// The health store.
    pub fn health(&self) -> &HealthStore {
        &self.health
    }

    /// Stores a record seen on the watch.
    pub fn set_record(&self, record: ProviderHealthRecord) {
        // Every record change passes here (watch, start-up, own writes): the gauges follow.
        crate::telemetry::metrics::provider_record(&record);
        self.records
            .write()
            .unwrap()
            .insert(record.provider.clone(), record);
    }

    /// Every known provider record.
    pub fn records(&self) -> Vec<ProviderHealthRecord> {
        let mut v: Vec<_> = self.records.read().unwrap().values().cloned().collect();
        v.sort_by(|a, b| a.provider.cmp(&b.provider));
        v
    }

    /// Sets today's fleet spend of `provider`.
    pub fn set_spend(&self, provider: &str, usd: f64) {
        crate::telemetry::metrics::spend_today(provider, usd);
        self.spend
            .write()
            .unwrap()
            .insert(provider.to_string(), usd);
    }

    /// Sets the operator's suspension flag.
    pub fn set_suspended(&self, on: bool) {
        self.suspended.store(on, Ordering::Relaxed);
    }

    /// The decision cache bucket.
    pub fn cache(&self) -> &kv::Store {
        &self.cache
    }
}

#[async_trait]
impl Fleet for FleetState {
    fn spent_today(&self, provider: &str) -> f64 {
        self.spend
            .read()
            .unwrap()
            .get(provider)
            .copied()
            .unwrap_or(0.0)
    }

    async fn cached_decision(&self, kind: Kind, symbol: &str) -> Option<CachedDecision> {
        let bytes = self.cache.get(cache_key(kind, symbol)).await.ok()??;
        serde_json::from_slice(&bytes).ok()
    }

    async fn acquire_probe(&self, provider: &str) -> bool {
        // If the bucket is unreachable, probing locally is better than never recovering.
        self.health
            .acquire_probe(provider, self.probe_ttl)
            .await
            .unwrap_or(true)
    }

    fn manually_suspended(&self) -> bool {
        self.suspended.load(Ordering::Relaxed)
    }
}

/// Shared handle.
pub type SharedFleet = Arc<FleetState>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_keys_are_kv_safe() {
        assert_eq!(cache_key(Kind::Signal, "AAPL"), "signal.AAPL");
        assert_eq!(cache_key(Kind::Risk, "BRK.B"), "risk.BRK=2EB");
        assert_eq!(cache_key(Kind::Signal, "^GSPC"), "signal.=5EGSPC");
    }
}
