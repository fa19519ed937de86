//! Admission: whether a tenant's request may be served, and on which terms. Over its quota
//! (requests admitted over the last 60 s, counted fleet-wide in `ai_quotas`) or its daily
//! budget (its spend today, fleet-wide, from `ai_budget`), a request is refused before any
//! provider is called; otherwise the tenant's allow-list, cost cap and fallback switch
//! narrow what the request asked for.

use std::sync::Arc;

use async_nats::jetstream::kv;

use crate::config::TenantConfig;
use crate::contract::{
    AnalysisRequest, DEFAULT_TENANT, ErrorClass, ErrorInfo, QuotaWindow, Timestamp,
};
use crate::engine::tenancy::Tenancy;

use super::super::fleet::FleetState;
use super::super::kv_record::{Decided, Decision, KvError, KvRecord};
use super::TenantBook;

/// What admission decided.
#[derive(Debug)]
pub enum Admission {
    /// Serve `request` (the tenant's terms applied) with `tenancy`.
    Admitted {
        request: Box<AnalysisRequest>,
        tenancy: Tenancy,
    },
    /// Answer `rejected` with this error, without calling anyone.
    Refused(ErrorInfo),
}

/// Admits requests under the tenants' terms.
pub struct Gate {
    book: Arc<TenantBook>,
    quotas: KvRecord<QuotaWindow>,
    fleet: Arc<FleetState>,
}

impl Gate {
    /// Over the terms in `book`, the quota windows in bucket `quotas` and `fleet`'s spend.
    pub fn new(book: Arc<TenantBook>, quotas: kv::Store, fleet: Arc<FleetState>) -> Self {
        Gate {
            book,
            quotas: KvRecord::new(quotas, "quota window"),
            fleet,
        }
    }

    /// Decides `request` of `tenant` (`None`: the default tenant), published at
    /// `published_at`. Refusals do not count against the quota, and neither does a request
    /// run again after a takeover (`rerun`: its first run was admitted, or died admitting it).
    pub async fn admit(
        &self,
        tenant: Option<&str>,
        request: &AnalysisRequest,
        published_at: Timestamp,
        rerun: bool,
    ) -> Result<Admission, KvError> {
        let terms = self.book.terms(tenant);
        let tenancy = Tenancy::new(tenant, terms.as_ref());
        let Some(terms) = terms else {
            return Ok(Admission::Admitted {
                request: Box::new(request.clone()),
                tenancy,
            });
        };
        let id = tenant.unwrap_or(DEFAULT_TENANT);
        let mut left = None;
        if let Some(budget) = terms.daily_budget_usd {
            let spent = self.fleet.tenant_spent_today(id);
            if spent >= budget {
                return Ok(refused(
                    id,
                    ErrorClass::BudgetExceeded,
                    format!(
                        "tenant {id} has spent ${spent:.4} of its ${budget:.2} daily budget; no provider was called"
                    ),
                ));
            }
            left = Some(budget - spent);
        }
        if let Some(limit) = terms.max_requests_per_minute.filter(|_| !rerun) {
            let second = published_at.timestamp().max(0) as u64;
            if !self.count(id, second, limit).await? {
                return Ok(refused(
                    id,
                    ErrorClass::QuotaExceeded,
                    format!(
                        "tenant {id} is over its quota of {limit} requests per minute; no provider was called"
                    ),
                ));
            }
        }
        Ok(Admission::Admitted {
            request: Box::new(narrowed(request, &terms, left)),
            tenancy,
        })
    }
}

impl Gate {
    /// Counts one request of `tenant` published in `second` against its quota; false when
    /// the quota is used up. A window that cannot be read (corrupt) is started afresh: a
    /// broken record must not stop a tenant for good.
    async fn count(&self, tenant: &str, second: u64, limit: u32) -> Result<bool, KvError> {
        let admit = |window: Option<QuotaWindow>| {
            let mut window = window.unwrap_or_default();
            if window.admit(second, limit) {
                Decision::Write(window, true)
            } else {
                Decision::Keep(false)
            }
        };
        let decided = match self.quotas.modify(tenant, admit).await {
            Err(KvError::Corrupt { .. }) => {
                tracing::error!(%tenant, "ai_quotas record unreadable: starting the window afresh");
                let _ = self.quotas.store().delete(tenant).await;
                self.quotas.modify(tenant, admit).await?
            }
            other => other?,
        };
        Ok(match decided {
            Decided::Written { outcome, .. } | Decided::Kept(outcome) => outcome,
        })
    }
}

fn refused(tenant: &str, class: ErrorClass, message: String) -> Admission {
    metrics::counter!(crate::telemetry::metrics::name::TENANT_REFUSED_TOTAL,
        "tenant" => crate::telemetry::metrics::tenant_label(tenant), "class" => class.as_str())
    .increment(1);
    Admission::Refused(ErrorInfo { class, message })
}

/// `request` within the tenant's `terms` (and the `left` of its daily budget): a request may
/// narrow its tenant's terms, never widen them.
pub fn narrowed(
    request: &AnalysisRequest,
    terms: &TenantConfig,
    left: Option<f64>,
) -> AnalysisRequest {
    let mut r = request.clone();
    if let Some(allowed) = &terms.providers {
        r.providers = Some(match &request.providers {
            Some(asked) => asked
                .iter()
                .filter(|p| allowed.contains(p))
                .cloned()
                .collect(),
            None => allowed.clone(),
        });
    }
    r.max_cost_usd = [request.max_cost_usd, terms.max_cost_usd, left]
        .into_iter()
        .flatten()
        .reduce(f64::min);
    r.allow_fallback = request.allow_fallback && terms.allow_fallback;
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{Kind, ProviderId};

    fn terms() -> TenantConfig {
        TenantConfig {
            id: "acme".into(),
            providers: Some(vec![ProviderId::from("b"), ProviderId::from("a")]),
            models: Default::default(),
            max_requests_per_minute: None,
            daily_budget_usd: None,
            max_cost_usd: Some(0.05),
            allow_fallback: false,
        }
    }

    fn request() -> AnalysisRequest {
        serde_json::from_value(serde_json::json!({
            "request_id": "r1", "kind": Kind::Signal, "symbol": "AAPL"
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_request_narrows_its_tenants_terms_but_never_widens_them() {
        let r = narrowed(&request(), &terms(), None);
        assert_eq!(r.providers, Some(vec!["b".into(), "a".into()]));
        assert_eq!(r.max_cost_usd, Some(0.05));
        assert!(!r.allow_fallback);

        let mut asked = request();
        asked.providers = Some(vec!["a".into(), "c".into()]);
        asked.max_cost_usd = Some(0.01);
        let r = narrowed(&asked, &terms(), Some(0.002));
        assert_eq!(r.providers, Some(vec!["a".into()]), "c is not the tenant's");
        assert_eq!(
            r.max_cost_usd,
            Some(0.002),
            "what is left of the budget caps it"
        );

        asked.max_cost_usd = Some(1.0);
        assert_eq!(narrowed(&asked, &terms(), None).max_cost_usd, Some(0.05));
    }
}
