//! `ai_budget`: the fleet's spend per provider and UTC day. Each worker books what its calls
//! cost and adds it to the day's record with compare-and-set every flush; the flush also
//! reads back the fleet's total, which daily budgets are checked against.

use std::collections::HashMap;
use std::sync::Arc;

use async_nats::jetstream::kv;

use crate::contract::{BudgetRecord, Timestamp};

use super::alerts::AlertDesk;
use super::fleet::FleetState;
use super::kv_record::{Decided, Decision, KvError, KvRecord};

/// Spend booked since the last flush, for one provider and day.
#[derive(Debug, Default, Clone, Copy)]
struct Spent {
    usd: f64,
    calls: u64,
}

/// A provider and the (UTC) day its spend belongs to.
type SpendKey = (String, chrono::NaiveDate);

/// `<provider>.<yyyy-mm-dd>` in `ai_budget`.
pub fn budget_key(provider: &str, day: Timestamp) -> String {
    day_key(provider, day.date_naive())
}

fn day_key(provider: &str, day: chrono::NaiveDate) -> String {
    format!("{provider}.{}", day.format("%Y-%m-%d"))
}

/// This worker's spend not yet added to the fleet's records.
pub struct SpendBook {
    records: KvRecord<BudgetRecord>,
    providers: Vec<String>,
    fleet: Arc<FleetState>,
    pending: HashMap<SpendKey, Spent>,
    /// Daily budgets by provider, and where crossing a share of one is announced.
    limits: HashMap<String, f64>,
    alerts: Option<(Arc<AlertDesk>, Vec<f64>)>,
}

impl SpendBook {
    /// Books into `budget` for `providers`, keeping `fleet`'s view of today's totals.
    pub fn new(budget: kv::Store, providers: Vec<String>, fleet: Arc<FleetState>) -> Self {
        SpendBook {
            records: KvRecord::new(budget, "budget record"),
            providers,
            fleet,
            pending: HashMap::new(),
            limits: HashMap::new(),
            alerts: None,
        }
    }

    /// Raises `budget_threshold` alerts through `desk` when a write of this worker's takes a
    /// provider's spend across one of `thresholds` (fractions) of its `limits`.
    pub fn with_alerts(
        mut self,
        limits: HashMap<String, f64>,
        desk: Arc<AlertDesk>,
        thresholds: Vec<f64>,
    ) -> Self {
        self.limits = limits;
        self.alerts = Some((desk, thresholds));
        self
    }

    /// Books one call's cost under the day it was spent (even if its write waits past
    /// midnight).
    pub fn book(&mut self, provider: String, usd: f64) {
        let day = crate::engine::clock::wall_now().date_naive();
        let spent = self.pending.entry((provider, day)).or_default();
        spent.usd += usd;
        spent.calls += 1;
    }

    /// Adds what was booked to the fleet's records and refreshes today's totals. Spend that
    /// cannot be written is kept for the next flush: a lost write must not make spend
    /// disappear (one that landed but timed out counts twice, the safe side for a budget).
    pub async fn flush(&mut self) {
        let now = crate::engine::clock::wall_now();
        let today = now.date_naive();
        let providers: Vec<&str> = self.providers.iter().map(String::as_str).collect();
        for ((provider, day), add) in due(&mut self.pending, &providers, today) {
            match self.add(&provider, add, day, now).await {
                Ok(total) if day == today => self.fleet.set_spend(&provider, total),
                Ok(_) => {}
                Err(e) => {
                    let error = crate::telemetry::chain(&e);
                    tracing::warn!(%provider, %day, %error, "budget not updated; retrying at the next flush");
                    if add.calls > 0 {
                        let kept = self.pending.entry((provider, day)).or_default();
                        kept.usd += add.usd;
                        kept.calls += add.calls;
                    }
                }
            }
        }
    }

    /// Adds `add` to `day`'s record of `provider` and returns the fleet's total spend that
    /// day; with nothing to add it only reads.
    async fn add(
        &self,
        provider: &str,
        add: Spent,
        day: chrono::NaiveDate,
        now: Timestamp,
    ) -> Result<f64, KvError> {
        let key = day_key(provider, day);
        if add.calls == 0 {
            let record = self.records.get(&key).await?;
            return Ok(record.map_or(0.0, |r| r.value.spend_usd));
        }
        let decided = self
            .records
            .modify(&key, |current| {
                let mut record = current.unwrap_or_else(|| BudgetRecord {
                    provider: provider.into(),
                    date: day.format("%Y-%m-%d").to_string(),
                    spend_usd: 0.0,
                    calls: 0,
                    updated_at: now,
                });
                let before = record.spend_usd;
                record.spend_usd += add.usd;
                record.calls += add.calls;
                record.updated_at = now;
                let total = record.spend_usd;
                Decision::Write(record, (before, total))
            })
            .await?;
        let (before, total) = match decided {
            Decided::Written { outcome, .. } | Decided::Kept(outcome) => outcome,
        };
        // This write, and only this one, took the spend from `before` to `total`.
        if let (Some((desk, thresholds)), Some(&limit)) = (&self.alerts, self.limits.get(provider))
        {
            let day = day.format("%Y-%m-%d").to_string();
            desk.budget(provider, &day, before, total, limit, thresholds)
                .await;
        }
        Ok(total)
    }
}

/// What a flush writes: everything booked (emptying `pending`), under the day it was spent,
/// plus a read of today's record for every provider without new spend.
fn due(
    pending: &mut HashMap<SpendKey, Spent>,
    providers: &[&str],
    today: chrono::NaiveDate,
) -> Vec<(SpendKey, Spent)> {
    let mut due: Vec<(SpendKey, Spent)> = pending.drain().collect();
    for p in providers {
        if !due.iter().any(|((id, day), _)| id == p && *day == today) {
            due.push(((p.to_string(), today), Spent::default()));
        }
    }
    due
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spend_waiting_past_midnight_stays_on_its_own_day() {
        let yesterday = chrono::NaiveDate::from_ymd_opt(2026, 11, 21).unwrap();
        let today = yesterday.succ_opt().unwrap();
        let mut spend = HashMap::new();
        let spent = |usd, calls| Spent { usd, calls };
        spend.insert(("a".to_string(), yesterday), spent(0.5, 2));
        spend.insert(("a".to_string(), today), spent(0.25, 1));
        let mut due = due(&mut spend, &["a", "b"], today);
        due.sort_by(|x, y| x.0.cmp(&y.0));
        let got: Vec<(String, chrono::NaiveDate, f64, u64)> = due
            .into_iter()
            .map(|((p, d), s)| (p, d, s.usd, s.calls))
            .collect();
        assert_eq!(
            got,
            [
                ("a".to_string(), yesterday, 0.5, 2),
                ("a".to_string(), today, 0.25, 1),
                ("b".to_string(), today, 0.0, 0),
            ]
        );
        assert!(spend.is_empty());
        assert_eq!(day_key("a", yesterday), "a.2026-11-21");
    }
}
