//! The fleet mode: derived from the shared provider records the same way on every worker,
//! written to `ai_provider_health/_mode` with compare-and-set, and announced once per change
//! (`<prefix>.events.mode`) by whichever worker wins the write.

use std::sync::Arc;

use parking_lot::Mutex;

use async_nats::HeaderMap;
use async_nats::jetstream::kv;

use crate::config::ProviderConfig;
use crate::contract::{
    Actor, FLEET_MODE_KEY, FleetModeRecord, ManualMode, Mode, ModeEvent, Names, ProviderId,
};
use crate::engine::ports::Fleet;
use crate::engine::{Engine, modes};

use super::alerts::AlertDesk;
use super::fleet::FleetState;
use super::kv_record::{Decided, Decision, KvError, KvRecord};
use super::publish::Publisher;
use crate::telemetry::metrics::name as metric;

/// Announces the fleet mode when it changes.
pub struct ModeAnnouncer {
    /// Raises `mode_changed` for the changes this worker announces.
    alerts: Arc<AlertDesk>,
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
        alerts: Arc<AlertDesk>,
        worker_id: String,
    ) -> Self {
        ModeAnnouncer {
            alerts,
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

    /// The fleet mode: the operator's manual mode while one holds, else the one derived from
    /// the shared records (the same on every worker that has seen the same records, so
    /// workers do not fight over `_mode`).
    pub fn fleet_mode(&self) -> Mode {
        self.fleet
            .manual_mode()
            .unwrap_or_else(|| self.derived_mode())
    }

    /// The mode provider health implies for the fleet, ignoring a manual mode.
    fn derived_mode(&self) -> Mode {
        let views = modes::views_from_records(
            &self.providers,
            &self.fleet.records(),
            crate::engine::clock::wall_now(),
        );
        let derived = modes::derive(&views);
        if self.engine.derived_mode() == Mode::Suspended {
            Mode::Suspended
        } else {
            derived
        }
    }

    /// The providers that can serve, and a reason naming them.
    fn serving(&self) -> (Vec<ProviderId>, String) {
        let healthy: Vec<ProviderId> = modes::views_from_records(
            &self.providers,
            &self.fleet.records(),
            crate::engine::clock::wall_now(),
        )
        .into_iter()
        .filter(|v| v.available)
        .map(|v| v.id.into())
        .collect();
        let reason = if healthy.is_empty() {
            "no provider available".to_string()
        } else {
            format!("serving: {}", healthy.join(", "))
        };
        (healthy, reason)
    }

    fn last(&self) -> Option<Mode> {
        *self.last.lock()
    }

    fn set_last(&self, mode: Mode) {
        *self.last.lock() = Some(mode);
    }

    /// Announces the fleet mode if it changed: one event per change, whichever worker wins
    /// the compare-and-set on `_mode`. A manual mode in the record wins over the derived one
    /// even before this worker's watch has delivered it; one whose TTL ended is dropped here.
    pub async fn announce(&self) {
        let mode = self.fleet_mode();
        metrics::gauge!(metric::MODE).set(mode as u8 as f64);
        if self.last() == Some(mode) {
            return;
        }
        let derived = self.derived_mode();
        let (healthy, serving) = self.serving();
        let now = crate::engine::clock::wall_now();
        let decided = self
            .record
            .modify(FLEET_MODE_KEY, |current| {
                let manual = current.as_ref().and_then(|r| r.manual.clone());
                let held = manual.as_ref().filter(|m| m.holds(now)).cloned();
                let legacy_suspend =
                    manual.is_none() && current.as_ref().is_some_and(|r| r.manual_suspend);
                let mode = match &held {
                    Some(m) => m.mode,
                    None if legacy_suspend => Mode::Suspended,
                    None => derived,
                };
                let ended = manual.is_some() && held.is_none();
                match current {
                    Some(r) if r.mode == mode && !ended => Decision::Keep((mode, None)),
                    current => {
                        let reason = match (&manual, ended) {
                            (Some(m), true) => {
                                format!("manual {} ended; {serving}", m.mode.as_str())
                            }
                            _ => serving.clone(),
                        };
                        let record = FleetModeRecord {
                            mode,
                            since: now,
                            manual_suspend: legacy_suspend
                                || held.as_ref().is_some_and(|m| m.mode == Mode::Suspended),
                            reason: reason.clone(),
                            updated_by: self.worker_id.clone(),
                            manual: held,
                        };
                        let previous = current.map(|r| r.mode);
                        Decision::Write(record, (mode, Some((previous, reason))))
                    }
                }
            })
            .await;
        let (mode, previous, reason) = match decided {
            // Announced already (by another worker, or by us before).
            Ok(Decided::Kept((mode, _))) => {
                self.set_last(mode);
                return;
            }
            Ok(Decided::Written {
                value,
                revision,
                outcome: (mode, Some((previous, reason))),
            }) => {
                self.fleet.set_mode_record(value, revision);
                (mode, previous, reason)
            }
            Ok(Decided::Written {
                outcome: (mode, None),
                ..
            }) => {
                self.set_last(mode);
                return;
            }
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
        if previous == mode {
            return; // a manual mode ended where the derived one already was
        }
        self.publish(ModeEvent {
            mode,
            previous,
            healthy_providers: healthy,
            reason,
            at: now,
            worker_id: self.worker_id.clone(),
            actor: None,
        })
        .await;
    }

    /// Holds the fleet in `manual`'s mode, or clears the manual mode (`None`), for the whole
    /// fleet; announces it with the operator as `actor` and returns the effective mode.
    pub async fn set_manual(
        &self,
        manual: Option<ManualMode>,
        actor: &Actor,
        why: &str,
    ) -> Result<(Mode, Option<ManualMode>), KvError> {
        let derived = self.derived_mode();
        let (healthy, serving) = self.serving();
        let now = crate::engine::clock::wall_now();
        let mode = manual.as_ref().map_or(derived, |m| m.mode);
        let reason = match &manual {
            Some(m) => format!("manual {} by {}: {why}", m.mode.as_str(), actor.label()),
            None => format!("manual mode cleared by {}: {why}; {serving}", actor.label()),
        };
        let decided = self
            .record
            .modify(FLEET_MODE_KEY, |current| {
                let record = FleetModeRecord {
                    mode,
                    since: match &current {
                        Some(r) if r.mode == mode => r.since,
                        _ => now,
                    },
                    manual_suspend: mode == Mode::Suspended && manual.is_some(),
                    reason: reason.clone(),
                    updated_by: self.worker_id.clone(),
                    manual: manual.clone(),
                };
                Decision::Write(record, current.map(|r| r.mode))
            })
            .await?;
        let previous = match decided {
            Decided::Written {
                value,
                revision,
                outcome,
            } => {
                self.fleet.set_mode_record(value, revision);
                outcome
            }
            Decided::Kept(outcome) => outcome,
        };
        self.set_last(mode);
        // Every manual change is announced, even one that leaves the mode as it was: it
        // changes who decides the mode, and dashboards show that.
        self.publish(ModeEvent {
            mode,
            previous: previous.unwrap_or(Mode::Normal),
            healthy_providers: healthy,
            reason,
            at: now,
            worker_id: self.worker_id.clone(),
            actor: Some(actor.clone()),
        })
        .await;
        Ok((mode, manual))
    }

    async fn publish(&self, event: ModeEvent) {
        tracing::warn!(
            mode = event.mode.as_str(),
            previous = event.previous.as_str(),
            actor = event.actor.as_ref().map(|a| a.label()),
            reason = %event.reason,
            "fleet mode changed"
        );
        if let Err(e) = self
            .publisher
            .event(self.names.mode_event(), &event, HeaderMap::new())
            .await
        {
            tracing::warn!(error = %crate::telemetry::chain(&e), "mode event not published");
        }
        self.alerts.mode(&event).await;
    }
}
