//! Watches `ai_provider_health` so every worker obeys what any worker decided (an open
//! breaker, an operator override, a quarantine) within milliseconds, and announces the fleet
//! mode once per change (compare-and-set on `_mode`: the winner publishes).

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::kv::{self, CreateErrorKind, Operation, UpdateErrorKind};
use futures::StreamExt;

use crate::contract::{FLEET_MODE_KEY, FleetModeRecord, Mode, ModeEvent, ProviderHealthRecord};
use crate::engine::modes;
use crate::engine::ports::Fleet;

use super::events::EventTask;

/// Runs the watch forever, re-establishing it after errors (a watch that ends or stalls is
/// restarted; it runs in its own task so it is always polled).
pub async fn run(task: Arc<EventTask>, kv: kv::Store) {
    let mut last_mode: Option<Mode> = None;
    loop {
        match kv.watch_all().await {
            Ok(mut watch) => {
                let mut ticker = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tokio::select! {
                        entry = watch.next() => match entry {
                            Some(Ok(entry)) => apply(&task, &entry),
                            Some(Err(e)) => {
                                tracing::warn!(error = %e, "health watch error; restarting it");
                                break;
                            }
                            None => break,
                        },
                        // Overrides expire and minimal turns into suspended without a KV
                        // write: re-derive the mode on a tick. (Transitions written by a
                        // worker are announced by that worker, see `events::announce`.)
                        _ = ticker.tick() => announce_mode(&task, &kv, &mut last_mode).await,
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot watch provider health"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn apply(task: &EventTask, entry: &kv::Entry) {
    if entry.operation != Operation::Put {
        return;
    }
    if entry.key == FLEET_MODE_KEY {
        if let Ok(r) = serde_json::from_slice::<FleetModeRecord>(&entry.value) {
            task.fleet.set_suspended(r.manual_suspend);
        }
        return;
    }
    if entry.key.starts_with('_') {
        return;
    }
    match serde_json::from_slice::<ProviderHealthRecord>(&entry.value) {
        Ok(record) => {
            if task.fleet.set_record(record.clone(), entry.revision) {
                task.engine.apply_shared(&record);
            }
        }
        Err(e) => tracing::warn!(key = %entry.key, error = %e, "unreadable health record"),
    }
}

/// The fleet mode derived from the shared records (the same on every worker that has seen
/// the same records, so workers do not fight over `_mode`).
pub fn fleet_mode(task: &EventTask) -> Mode {
    let views = modes::views_from_records(
        &task.cfg.providers,
        &task.fleet.records(),
        chrono::Utc::now(),
    );
    let derived = modes::derive(&views);
    if task.fleet.manually_suspended() || task.engine.mode() == Mode::Suspended {
        Mode::Suspended
    } else {
        derived
    }
}

/// Announces the fleet mode if it changed: one event per change, whichever worker wins the
/// compare-and-set on `_mode`.
pub async fn announce_mode(task: &EventTask, kv: &kv::Store, last: &mut Option<Mode>) {
    let mode = fleet_mode(task);
    metrics::gauge!("ai_failover_mode").set(mode as u8 as f64);
    if *last == Some(mode) {
        return;
    }
    for _ in 0..8 {
        let entry = match kv.entry(FLEET_MODE_KEY).await {
            Ok(e) => e.filter(|e| e.operation == Operation::Put),
            Err(_) => return,
        };
        let current: Option<(FleetModeRecord, u64)> = entry.and_then(|e| {
            serde_json::from_slice(&e.value)
                .ok()
                .map(|r| (r, e.revision))
        });
        let previous = current.as_ref().map_or(Mode::Normal, |(r, _)| r.mode);
        if current.as_ref().is_some_and(|(r, _)| r.mode == mode) {
            *last = Some(mode);
            return;
        }
        let healthy: Vec<String> = modes::views_from_records(
            &task.cfg.providers,
            &task.fleet.records(),
            chrono::Utc::now(),
        )
        .into_iter()
        .filter(|v| v.available)
        .map(|v| v.id)
        .collect();
        let reason = if healthy.is_empty() {
            "no provider available".to_string()
        } else {
            format!("serving: {}", healthy.join(", "))
        };
        let now = chrono::Utc::now();
        let record = FleetModeRecord {
            mode,
            since: now,
            manual_suspend: current.as_ref().is_some_and(|(r, _)| r.manual_suspend),
            reason: reason.clone(),
            updated_by: task.worker_id.clone(),
        };
        let body: bytes::Bytes = serde_json::to_vec(&record).expect("mode").into();
        let written = match &current {
            None => kv
                .create(FLEET_MODE_KEY, body)
                .await
                .map_err(|e| e.kind() == CreateErrorKind::AlreadyExists),
            Some((_, rev)) => kv
                .update(FLEET_MODE_KEY, body, *rev)
                .await
                .map_err(|e| e.kind() == UpdateErrorKind::WrongLastRevision),
        };
        match written {
            Ok(_) => {
                *last = Some(mode);
                if current.is_none() && mode == Mode::Normal {
                    return; // the first record of a healthy fleet is not a change
                }
                let event = ModeEvent {
                    mode,
                    previous,
                    healthy_providers: healthy,
                    reason,
                    at: now,
                    worker_id: task.worker_id.clone(),
                };
                tracing::warn!(
                    mode = mode.as_str(),
                    previous = previous.as_str(),
                    "fleet mode changed"
                );
                if let Err(e) = task
                    .publisher
                    .event(task.names.mode_event(), &event, HeaderMap::new())
                    .await
                {
                    tracing::warn!(error = %e, "mode event not published");
                }
                return;
            }
            Err(true) => continue,
            Err(false) => return,
        }
    }
}
