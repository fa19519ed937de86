//! Tenants: desks that share the fleet but must not see each other's work. A tenant's id is
//! never read from a payload: the server's account mappings put it in the subject
//! (`ai.tenant.<tenant>.…`), and requests on the plain subjects belong to [`DEFAULT_TENANT`].

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ProviderId, Timestamp};

/// The tenant of requests published on the plain (unmapped) subjects: the single-team set-up.
pub const DEFAULT_TENANT: &str = "default";

/// Whether `id` is a tenant id: `[a-z][a-z0-9_]{0,31}`. Lower case only, so the upper-cased
/// stream name of each tenant is its own; no `-` or `.`, so it is one subject token and one
/// KV key token.
pub fn is_tenant_id(id: &str) -> bool {
    let mut chars = id.chars();
    id.len() <= 32
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The key a request's records are stored under in `ai_outcomes` and `ai_signals`, and the
/// `Nats-Msg-Id` of its result: the request id for the default tenant (as before tenants),
/// `<tenant>.<request_id>` for the others, so two tenants' equal request ids never meet.
pub fn scoped_request_key(tenant: Option<&str>, request_id: &str) -> String {
    match tenant {
        None => request_id.to_string(),
        Some(t) => format!("{t}.{request_id}"),
    }
}

/// `ai_quotas/<tenant>`: the requests of a tenant admitted in each second of the last two
/// minutes, fleet-wide (written with compare-and-set by whichever worker admits one).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct QuotaWindow {
    /// `[unix second, requests admitted in it]`, by the requests' JetStream publish times.
    pub seconds: Vec<[u64; 2]>,
}

impl QuotaWindow {
    /// Admits one request published in second `at` if fewer than `limit` were admitted in
    /// the 60 s up to it (seconds `at - 59 ..= at`), and forgets seconds over two minutes old.
    pub fn admit(&mut self, at: u64, limit: u32) -> bool {
        self.seconds.retain(|[s, _]| s + 120 > at);
        let used: u64 = self
            .seconds
            .iter()
            .filter(|[s, _]| s + 60 > at && *s <= at)
            .map(|[_, n]| n)
            .sum();
        if used >= u64::from(limit) {
            return false;
        }
        match self.seconds.iter_mut().find(|[s, _]| *s == at) {
            Some([_, n]) => *n += 1,
            None => self.seconds.push([at, 1]),
        }
        true
    }
}

/// `ai_budget/_tenant.<tenant>.<yyyy-mm-dd>`: what a tenant spent on a UTC day, in all and
/// per provider (provider ids never start with `_`, so these keys never meet theirs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TenantSpendRecord {
    pub tenant: String,
    pub date: String,
    #[schemars(range(min = 0.0))]
    pub spend_usd: f64,
    pub calls: u64,
    /// Spend per provider that day.
    pub by_provider: BTreeMap<ProviderId, f64>,
    pub updated_at: Timestamp,
}

/// The key of a tenant's spend record for `date` (`yyyy-mm-dd`).
pub fn tenant_spend_key(tenant: &str, date: &str) -> String {
    format!("_tenant.{tenant}.{date}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_are_one_lower_case_token() {
        for ok in ["acme", "globex", "a", "desk_2", &"a".repeat(32)] {
            assert!(is_tenant_id(ok), "{ok}");
        }
        for bad in [
            "",
            "Acme",
            "2acme",
            "a-b",
            "a.b",
            "a*",
            "_x",
            &"a".repeat(33),
        ] {
            assert!(!is_tenant_id(bad), "{bad}");
        }
    }

    #[test]
    fn a_quota_counts_the_last_60_seconds() {
        let mut w = QuotaWindow::default();
        for _ in 0..10 {
            assert!(w.admit(1_000, 10));
        }
        assert!(!w.admit(1_000, 10), "the 11th in the same second");
        assert!(!w.admit(1_059, 10), "59 s later the 10 still count");
        assert!(w.admit(1_060, 10), "60 s later they no longer do");
        assert!(!w.admit(1_060, 1), "the one just admitted counts");
        // A late message (published before the newest) is judged by its own minute.
        assert!(!w.admit(1_030, 10));
        w.admit(1_300, 10);
        assert_eq!(w.seconds, vec![[1_300, 1]], "old seconds are forgotten");
    }

    #[test]
    fn scoped_keys_keep_the_default_tenant_unchanged() {
        assert_eq!(scoped_request_key(None, "r1"), "r1");
        assert_eq!(scoped_request_key(Some("acme"), "r1"), "acme.r1");
    }
}
