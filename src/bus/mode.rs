//! The fleet mode: derived from the shared provider records the same way on every worker,
//! written to `ai_provider_health/_mode` with compare-and-set, and announced once per change
//! (`<prefix>.events.mode`) by whichever worker wins the write.

use std::sync::Arc;

use parking_lot::Mutex;

use async_nats::HeaderMap;
use async_nats::jetstream::kv;

use crate::config::ProviderConfig;
use crate::contract::{FLEET_MODE_KEY, FleetModeRecord, Mode, ModeEvent, Names};
use crate::engine::ports::Fleet;
use crate::engine::{Engine, modes};

use super::fleet::FleetState;
use super::kv_record::{Decided, Decision, KvRecord};
use super::publish::Publisher;
use crate::telemetry::metrics::name as metric;

/// Announces the fleet mode when it changes.
pub struct ModeAnnouncer {
    providers: Vec<ProviderConfig>,
    fleet: Arc<FleetState>,
    engine: Arc<Engine>,
    record: KvRecord<FleetModeRecord>,
    publisher: Publisher,
    names: Names,
    worker_id: String,
    /// The mode this worker last saw announced: nothing to do while it holds.
    last: Mutex<Option<Mode>>,
}

impl ModeAnnouncer {
    /// Over the health bucket `health`, for `providers`.
    pub fn new(
        providers: Vec<ProviderConfig>,
        fleet: Arc<FleetState>,
        engine: Arc<Engine>,
        health: kv::Store,
        publisher: Publisher,
        worker_id: String,
    ) -> Self {
        ModeAnnouncer {
            providers,
            fleet,
            engine,
            record: KvRecord::new(health, "fleet mode record"),
            names: publisher.names().clone(),
            publisher,
            worker_id,
            last: Mutex::new(None),
        }
    }

    /// The fleet mode derived from the shared records (the same on every worker that has
    /// seen the same records, so workers do not fight over `_mode`).
    pub fn fleet_mode(&self) -> Mode {
        let views =
            modes::views_from_records(&self.providers, &self.fleet.records(), chrono::Utc::now());
        let derived = modes::derive(&views);
        if self.fleet.manually_suspended() || self.engine.mode() == Mode::Suspended {
            Mode::Suspended
        } else {
            derived
        }
    }

    fn last(&self) -> Option<Mode> {
        *self.last.lock()
    }

    fn set_last(&self, mode: Mode) {
        *self.last.lock() = Some(mode);
    }

    /// Announces the fleet mode if it changed: one event per change, whichever worker wins
    /// the compare-and-set on `_mode`.
    pub async fn announce(&self) {
        let mode = self.fleet_mode();
        metrics::gauge!(metric::MODE).set(mode as u8 as f64);
        if self.last() == Some(mode) {
            return;
        }
        let healthy: Vec<crate::contract::ProviderId> =
            modes::views_from_records(&self.providers, &self.fleet.records(), chrono::Utc::now())
                .into_iter()
                .filter(|v| v.available)
                .map(|v| v.id.into())
                .collect();
        let reason = if healthy.is_empty() {
            "no provider available".to_string()
        } else {
            format!("serving: {}", healthy.join(", "))
        };
        let now = chrono::Utc::now();
        let decided = self
            .record
            .modify(FLEET_MODE_KEY, |current| match current {
                Some(r) if r.mode == mode => Decision::Keep(None),
                current => {
                    let record = FleetModeRecord {
                        mode,
                        since: now,
                        manual_suspend: current.as_ref().is_some_and(|r| r.manual_suspend),
                        reason: reason.clone(),
                        updated_by: self.worker_id.clone(),
                    };
                    let previous = current.map(|r| r.mode);
                    Decision::Write(record, Some(previous))
                }
            })
            .await;
        let previous = match decided {
            // Announced already (by another worker, or by us before).
            Ok(Decided::Kept(_)) => {
                self.set_last(mode);
                return;
            }
            Ok(Decided::Written { outcome, .. }) => outcome.flatten(),
            Err(e) => {
                let error = crate::telemetry::chain(&e);
                tracing::warn!(%error, "fleet mode not written");
                return;
            }
        };
        self.set_last(mode);
        let Some(previous) = previous.or((mode != Mode::Normal).then_some(Mode::Normal)) else {
            return; // the first record of a healthy fleet is not a change
        };
        let event = ModeEvent {
            mode,
            previous,
            healthy_providers: healthy,
            reason,
            at: now,
            worker_id: self.worker_id.clone(),
        };
        tracing::warn!(
            mode = mode.as_str(),
            previous = previous.as_str(),
            "fleet mode changed"
        );
        if let Err(e) = self
            .publisher
            .event(self.names.mode_event(), &event, HeaderMap::new())
            .await
        {
            tracing::warn!(error = %crate::telemetry::chain(&e), "mode event not published");
        }
    }
}
