//! Reads the fleet's shared state from the KV buckets: provider records, the announced mode,
//! the monitoring switch and today's spend. The control service answers from here (not from
//! the memory of the one worker that replies), and so do the command-line clients.

use async_nats::jetstream::kv;

use crate::config::Config;
use crate::contract::{
    BudgetRecord, FLEET_MODE_KEY, FleetModeRecord, Mode, MonitoringRecord, ProviderHealthRecord,
};

use super::health_store::HealthStore;
use super::kv_record::{KvError, KvRecord};
use super::monitor;
use super::spend::budget_key;

/// The record of every configured provider, in configuration order. A provider the fleet
/// has never written a record for gets a fresh one (healthy, breaker closed): that is what
/// every worker assumes for it too.
pub async fn provider_records(
    health: &kv::Store,
    cfg: &Config,
) -> Result<Vec<(ProviderHealthRecord, u64)>, KvError> {
    let store = HealthStore::new(health.clone(), "(no record yet)");
    let mut out = Vec::with_capacity(cfg.providers.len());
    for p in &cfg.providers {
        out.push(store.get(&p.id).await?);
    }
    Ok(out)
}

/// The effective fleet mode: an operator's manual mode while it holds, else the one last
/// announced in `_mode`; `normal` before any worker announced one.
pub async fn fleet_mode(health: &kv::Store) -> Result<Mode, KvError> {
    let record = KvRecord::<FleetModeRecord>::new(health.clone(), "fleet mode record")
        .get(FLEET_MODE_KEY)
        .await?;
    Ok(match record {
        None => Mode::Normal,
        Some(r) => r
            .value
            .manual_at(crate::engine::clock::wall_now())
            .unwrap_or(r.value.mode),
    })
}

/// The active-monitoring switch (the configured interval, on, when never set).
pub async fn monitoring(health: &kv::Store, cfg: &Config) -> MonitoringRecord {
    monitor::monitoring(health, cfg.engine.health_check_interval_ms).await
}

/// The fleet's spend on `provider` today (UTC), 0 when nothing was booked.
pub async fn spend_today(budget: &kv::Store, provider: &str) -> Result<f64, KvError> {
    let key = budget_key(provider, crate::engine::clock::wall_now());
    let record = KvRecord::<BudgetRecord>::new(budget.clone(), "budget record")
        .get(&key)
        .await?;
    Ok(record.map_or(0.0, |r| r.value.spend_usd))
}
