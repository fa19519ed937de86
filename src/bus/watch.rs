//! Watches `ai_provider_health` so every worker obeys what any worker decided (an open
//! breaker, an operator override, a quarantine) within milliseconds, and re-derives the fleet
//! mode each second (overrides expire and minimal turns into suspended without a KV write).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv::{self, Operation};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::contract::{FLEET_MODE_KEY, FleetModeRecord, ProviderHealthRecord};
use crate::engine::Engine;

use super::fleet::FleetState;
use super::mode::ModeAnnouncer;

/// What the watch updates.
pub struct HealthWatch {
    pub kv: kv::Store,
    pub engine: Arc<Engine>,
    pub fleet: Arc<FleetState>,
    pub mode: Arc<ModeAnnouncer>,
}

impl HealthWatch {
    /// Runs until `stop` fires, re-establishing the watch after errors (it runs in its own
    /// task so it is always polled).
    pub async fn run(self, stop: CancellationToken) {
        while !stop.is_cancelled() {
            match self.kv.watch_all().await {
                Ok(mut watch) => {
                    let mut ticker = tokio::time::interval(Duration::from_secs(1));
                    loop {
                        tokio::select! {
                            entry = watch.next() => match entry {
                                Some(Ok(entry)) => self.apply(&entry),
                                Some(Err(e)) => {
                                    tracing::warn!(error = %e, "health watch error; restarting it");
                                    break;
                                }
                                None => break,
                            },
                            _ = ticker.tick() => self.mode.announce().await,
                            _ = stop.cancelled() => return,
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot watch provider health"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = stop.cancelled() => return,
            }
        }
    }

    fn apply(&self, entry: &kv::Entry) {
        if entry.operation != Operation::Put {
            return;
        }
        if entry.key == FLEET_MODE_KEY {
            if let Ok(r) = serde_json::from_slice::<FleetModeRecord>(&entry.value) {
                self.fleet.set_mode_record(r, entry.revision);
            }
            return;
        }
        if entry.key.starts_with('_') {
            return;
        }
        match serde_json::from_slice::<ProviderHealthRecord>(&entry.value) {
            Ok(record) => {
                if self.fleet.set_record(record.clone(), entry.revision) {
                    self.engine.apply_shared(&record);
                }
            }
            Err(e) => tracing::warn!(key = %entry.key, error = %e, "unreadable health record"),
        }
    }
}
