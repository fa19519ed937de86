//! Reads the fleet's shared state from the KV buckets: provider records, the announced mode,
//! the monitoring switch and today's spend. The control service answers from here (not from
//! the memory of the one worker that replies), and so do the command-line clients.

use async_nats::jetstream::kv::{self, Operation};

use crate::config::Config;
use crate::contract::{
    BudgetRecord, FLEET_MODE_KEY, FleetModeRecord, Mode, MonitoringRecord, ProviderHealthRecord,
};

use super::events::budget_key;
use super::health_store::{HealthStore, StoreError};
use super::monitor;

/// The record of every configured provider, in configuration order. A provider the fleet
/// has never written a record for gets a fresh one (healthy, breaker closed): that is what
/// every worker assumes for it too.
pub async fn provider_records(
    health: &kv::Store,
    cfg: &Config,
) -> Result<Vec<(ProviderHealthRecord, u64)>, StoreError> {
    let store = HealthStore::new(health.clone(), "(no record yet)");
    let mut out = Vec::with_capacity(cfg.providers.len());
    for p in &cfg.providers {
        out.push(store.get(&p.id).await?);
    }
    Ok(out)
}

/// The fleet mode last announced in `_mode` (`suspended` while an operator holds it);
/// `normal` before any worker announced one.
pub async fn fleet_mode(health: &kv::Store) -> Result<Mode, StoreError> {
    let entry = health
        .entry(FLEET_MODE_KEY)
        .await
        .map_err(|e| StoreError(e.to_string()))?;
    let Some(entry) = entry.filter(|e| e.operation == Operation::Put) else {
        return Ok(Mode::Normal);
    };
    let record: FleetModeRecord = serde_json::from_slice(&entry.value)
        .map_err(|e| StoreError(format!("record {FLEET_MODE_KEY}: {e}")))?;
    Ok(if record.manual_suspend {
        Mode::Suspended
    } else {
        record.mode
    })
}

/// The active-monitoring switch (the configured interval, on, when never set).
pub async fn monitoring(health: &kv::Store, cfg: &Config) -> MonitoringRecord {
    monitor::monitoring(health, cfg.engine.health_check_interval_ms).await
}

/// The fleet's spend on `provider` today (UTC), 0 when nothing was booked.
pub async fn spend_today(budget: &kv::Store, provider: &str) -> Result<f64, StoreError> {
    let key = budget_key(provider, chrono::Utc::now());
    let bytes = budget
        .get(&key)
        .await
        .map_err(|e| StoreError(e.to_string()))?;
    match bytes {
        None => Ok(0.0),
        Some(b) => serde_json::from_slice::<BudgetRecord>(&b)
            .map(|r| r.spend_usd)
            .map_err(|e| StoreError(format!("budget {key}: {e}"))),
    }
}
