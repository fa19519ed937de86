//! `ai_budget`: the fleet's spend per provider and UTC day. Each worker books what its calls
//! cost and adds it to the day's record with compare-and-set every flush; the flush also
//! reads back the fleet's total, which daily budgets are checked against. A tenant's spend
//! goes the same way into its own record per day (`_tenant.<tenant>.<date>`, per provider
//! inside), read back for its daily budget.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use async_nats::jetstream::kv;

use crate::contract::{
    BudgetRecord, DEFAULT_TENANT, TenantSpendRecord, Timestamp, tenant_spend_key,
};

use super::alerts::AlertDesk;
use super::fleet::FleetState;
use super::kv_record::{Decided, Decision, KvError, KvRecord};
use super::tenants::TenantBook;

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
    tenants: KvRecord<TenantSpendRecord>,
    /// Spend booked per tenant since the last flush, by (tenant, day), per provider.
    tenant_pending: HashMap<(String, chrono::NaiveDate), HashMap<String, Spent>>,
    /// Whose spend is booked and read back (the tenants with a daily budget read back).
    book: Option<Arc<TenantBook>>,
}

impl SpendBook {
    /// Books into `budget` for `providers`, keeping `fleet`'s view of today's totals.
    pub fn new(budget: kv::Store, providers: Vec<String>, fleet: Arc<FleetState>) -> Self {
        SpendBook {
            tenants: KvRecord::new(budget.clone(), "tenant spend record"),
            tenant_pending: HashMap::new(),
            book: None,
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

    /// Books tenants' spend too, and reads back the spend of those with a daily budget in
    /// `book`.
    pub fn with_tenants(mut self, book: Arc<TenantBook>) -> Self {
        self.book = Some(book);
        self
    }

    /// Books one call's cost under the day it was spent (even if its write waits past
    /// midnight), for the request's tenant and, unless it was made with the tenant's own key
    /// (`own_key`), for the provider's fleet budget.
    pub fn book(&mut self, provider: String, usd: f64, tenant: Option<String>, own_key: bool) {
        let day = crate::engine::clock::wall_now().date_naive();
        // Only tenants with terms (or served on the `default` entry's) are booked: a fleet
        // without `[[tenants]]` writes nothing more than before.
        if let Some(book) = &self.book
            && book.serves(tenant.as_deref())
        {
            let tenant = tenant.unwrap_or_else(|| DEFAULT_TENANT.to_string());
            let spent = self
                .tenant_pending
                .entry((tenant, day))
                .or_default()
                .entry(provider.clone())
                .or_default();
            spent.usd += usd;
            spent.calls += 1;
        }
        if own_key {
            return;
        }
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
        self.flush_tenants(now).await;
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
        let date = day.format("%Y-%m-%d").to_string();
        let (before, total) = add_or_read(
            &self.records,
            &day_key(provider, day),
            (add.calls > 0).then_some(|r: &mut BudgetRecord| {
                r.spend_usd += add.usd;
                r.calls += add.calls;
                r.updated_at = now;
            }),
            || BudgetRecord {
                provider: provider.into(),
                date: date.clone(),
                spend_usd: 0.0,
                calls: 0,
                updated_at: now,
            },
            |r| r.spend_usd,
        )
        .await?;
        // This write, and only this one, took the spend from `before` to `total`.
        if let (Some((desk, thresholds)), Some(&limit)) = (&self.alerts, self.limits.get(provider))
        {
            desk.budget(provider, &date, before, total, limit, thresholds)
                .await;
        }
        Ok(total)
    }

    /// Adds the tenants' booked spend to their records, and reads back today's spend of every
    /// tenant with a daily budget. Like the providers' spend, what cannot be written is kept.
    async fn flush_tenants(&mut self, now: Timestamp) {
        let Some(book) = self.book.clone() else {
            return;
        };
        let today = now.date_naive();
        let mut due: Vec<((String, chrono::NaiveDate), HashMap<String, Spent>)> =
            self.tenant_pending.drain().collect();
        for t in book.budgeted() {
            if !due.iter().any(|((id, day), _)| *id == t && *day == today) {
                due.push(((t, today), HashMap::new()));
            }
        }
        for ((tenant, day), add) in due {
            match self.add_tenant(&book, &tenant, day, &add, now).await {
                Ok(total) if day == today => self.fleet.set_tenant_spend(&tenant, total),
                Ok(_) => {}
                Err(e) => {
                    let error = crate::telemetry::chain(&e);
                    tracing::warn!(%tenant, %day, %error, "tenant spend not updated; retrying at the next flush");
                    if !add.is_empty() {
                        self.tenant_pending.insert((tenant, day), add);
                    }
                }
            }
        }
    }

    /// Adds `add` (per provider) to the tenant's record of `day`; returns its total that day.
    async fn add_tenant(
        &self,
        book: &TenantBook,
        tenant: &str,
        day: chrono::NaiveDate,
        add: &HashMap<String, Spent>,
        now: Timestamp,
    ) -> Result<f64, KvError> {
        let date = day.format("%Y-%m-%d").to_string();
        let (before, total) = add_or_read(
            &self.tenants,
            &tenant_spend_key(tenant, &date),
            (!add.is_empty()).then_some(|r: &mut TenantSpendRecord| {
                for (provider, spent) in add {
                    r.spend_usd += spent.usd;
                    r.calls += spent.calls;
                    *r.by_provider.entry(provider.into()).or_default() += spent.usd;
                }
                r.updated_at = now;
            }),
            || TenantSpendRecord {
                tenant: tenant.into(),
                date: date.clone(),
                spend_usd: 0.0,
                calls: 0,
                by_provider: Default::default(),
                updated_at: now,
            },
            |r| r.spend_usd,
        )
        .await?;
        // This write, and only this one, took the tenant's spend from `before` to `total`.
        if let (Some((desk, thresholds)), Some(limit)) = (&self.alerts, book.own_budget(tenant)) {
            desk.tenant_budget(tenant, &date, (before, total), limit, thresholds)
                .await;
        }
        Ok(total)
    }
}

/// Applies `add` to the spend record at `key` (starting from `fresh`) with compare-and-set
/// and returns the spend before and after this write; with nothing to add (`None`) only
/// reads it (before = after).
async fn add_or_read<T: Serialize + DeserializeOwned>(
    records: &KvRecord<T>,
    key: &str,
    add: Option<impl Fn(&mut T)>,
    fresh: impl Fn() -> T,
    spend: impl Fn(&T) -> f64,
) -> Result<(f64, f64), KvError> {
    let Some(add) = add else {
        let total = records.get(key).await?.map_or(0.0, |r| spend(&r.value));
        return Ok((total, total));
    };
    let decided = records
        .modify(key, |current| {
            let mut record = current.unwrap_or_else(&fresh);
            let before = spend(&record);
            add(&mut record);
            let after = spend(&record);
            Decision::Write(record, (before, after))
        })
        .await?;
    Ok(match decided {
        Decided::Written { outcome, .. } | Decided::Kept(outcome) => outcome,
    })
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
