//! Reading history back for a report: the rollups stored since a time (`AI_STATS`, by the
//! stream's own timestamps) and the daily spend records (`ai_budget`).

use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv};

use crate::contract::{BudgetRecord, FleetRollup, Names, ProviderId, ProviderRollup, Timestamp};

use super::super::event_log::{self, EventLogError};
use super::super::kv_record::{KvError, KvRecord};
use super::super::spend::budget_key;
use super::report::Inputs;

/// A failure reading history.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("cannot read the rollups")]
    Rollups(#[from] EventLogError),
    #[error("cannot read the spend records")]
    Spend(#[from] KvError),
}

/// Where history is read from.
pub struct HistoryStore<'a> {
    pub js: &'a jetstream::Context,
    pub names: &'a Names,
    pub budget: &'a kv::Store,
    /// `history.interval_ms`.
    pub interval_ms: u64,
}

/// Reads what a report over `[since, until]` of `providers` needs, waiting at most
/// `max_wait` for the rollups.
pub async fn inputs(
    from: HistoryStore<'_>,
    providers: Vec<ProviderId>,
    (since, until): (Timestamp, Timestamp),
    max_wait: Duration,
) -> Result<Inputs, HistoryError> {
    let HistoryStore {
        js,
        names,
        budget,
        interval_ms,
    } = from;
    let (mut rollups, mut fleet) = (Vec::new(), Vec::new());
    let fleet_subject = names.fleet_stats();
    // A rollup is written after its interval ends: every one overlapping the period was
    // stored after `since`.
    let start_time = time::OffsetDateTime::from_unix_timestamp_nanos(
        since.timestamp_nanos_opt().unwrap_or_default() as i128,
    )
    .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    event_log::replay(
        js,
        names.stats_stream(),
        names.stats_filter(),
        consumer::DeliverPolicy::ByStartTime { start_time },
        max_wait,
        |msg| {
            let read = if msg.subject.as_str() == fleet_subject {
                serde_json::from_slice::<FleetRollup>(&msg.payload).map(|r| fleet.push(r))
            } else {
                serde_json::from_slice::<ProviderRollup>(&msg.payload).map(|r| rollups.push(r))
            };
            if let Err(e) = read {
                tracing::debug!(subject = %msg.subject, error = %e, "skipping an unreadable rollup");
            }
        },
    )
    .await?;
    rollups.retain(|r| r.end > since && r.start < until);
    fleet.retain(|r| r.end > since && r.start < until);
    let records = KvRecord::<BudgetRecord>::new(budget.clone(), "budget record");
    let mut spend = Vec::new();
    let mut day = since;
    while day.date_naive() <= until.date_naive() {
        for p in &providers {
            if let Some(r) = records.get(&budget_key(p, day)).await? {
                spend.push(r.value);
            }
        }
        day += chrono::TimeDelta::days(1);
    }
    Ok(Inputs {
        since,
        until,
        interval_ms,
        providers,
        rollups,
        fleet,
        spend,
    })
}
