//! Watches `ai_provider_health` so every worker obeys what any worker decided (an open
//! breaker, an operator override, a quarantine) within milliseconds, and re-derives the fleet
//! mode each second (overrides expire and minimal turns into suspended without a KV write).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv::{self, Operation};
use tokio_util::sync::CancellationToken;

use crate::contract::{FLEET_MODE_KEY, FleetModeRecord, ProviderHealthRecord};
use crate::engine::Engine;

use super::fleet::FleetState;
use super::history::Timeline;
use super::mode::ModeAnnouncer;

/// What the watch updates.
pub struct HealthWatch {
    pub kv: kv::Store,
    pub engine: Arc<Engine>,
    pub fleet: Arc<FleetState>,
    pub mode: Arc<ModeAnnouncer>,
    /// Keeps the transitions for the history.
    pub timeline: Arc<Timeline>,
}

impl HealthWatch {
    /// Runs until `stop` fires: follows the bucket, and re-derives the mode each second.
    pub async fn run(self, stop: CancellationToken) {
        let announce = async {
            let mut ticker = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = ticker.tick() => self.mode.announce().await,
                    _ = stop.cancelled() => return,
                }
            }
        };
        let follow = super::kv_watch::follow(&self.kv, "provider health", &stop, |e| self.apply(e));
        tokio::join!(follow, announce);
    }

    fn apply(&self, entry: &kv::Entry) {
        if entry.operation != Operation::Put {
            return;
        }
        if entry.key == FLEET_MODE_KEY {
            if let Ok(r) = serde_json::from_slice::<FleetModeRecord>(&entry.value) {
                self.timeline.mode(&r);
                self.fleet.set_mode_record(r, entry.revision);
            }
            return;
        }
        if entry.key.starts_with('_') {
            return;
        }
        match serde_json::from_slice::<ProviderHealthRecord>(&entry.value) {
            Ok(record) => {
                self.timeline.provider(&record);
                if self.fleet.set_record(record.clone(), entry.revision) {
                    self.engine.apply_shared(&record);
                }
            }
            Err(e) => tracing::warn!(key = %entry.key, error = %e, "unreadable health record"),
        }
    }
}
