//! The tenants' current terms, shared by every part of a worker, and the reload that keeps
//! them current: the config file is read again every [`RELOAD_EVERY`]; a valid change of
//! `[[tenants]]` applies to the next request, an invalid file is reported and ignored (the
//! terms in force stay).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, TenantConfig};
use crate::contract::DEFAULT_TENANT;

/// How often the config file is read again for `[[tenants]]`.
pub const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// The `[[tenants]]` in force.
pub struct TenantBook {
    terms: watch::Sender<Arc<Vec<TenantConfig>>>,
}

impl TenantBook {
    /// The terms of `cfg`.
    pub fn new(cfg: &Config) -> Self {
        crate::telemetry::metrics::set_tenants(queued(&cfg.tenants));
        TenantBook {
            terms: watch::Sender::new(Arc::new(cfg.tenants.clone())),
        }
    }

    /// The terms of `tenant` (`None`: the default tenant): its own entry, else the `default`
    /// entry's (a tenant the server knows but the file does not is served as the default
    /// tenant is), else none.
    pub fn terms(&self, tenant: Option<&str>) -> Option<TenantConfig> {
        self.looking_up(tenant, |t| t.cloned())
    }

    /// Whether `tenant` is served on any terms (see [`Self::terms`]), without copying them.
    pub fn serves(&self, tenant: Option<&str>) -> bool {
        self.looking_up(tenant, |t| t.is_some())
    }

    /// The daily budget of `tenant`'s own entry (not one it is served on as the default).
    pub fn own_budget(&self, tenant: &str) -> Option<f64> {
        self.terms
            .borrow()
            .iter()
            .find(|t| t.id == tenant)
            .and_then(|t| t.daily_budget_usd)
    }

    /// `what` of the entry [`Self::terms`] finds for `tenant`.
    fn looking_up<R>(
        &self,
        tenant: Option<&str>,
        what: impl FnOnce(Option<&TenantConfig>) -> R,
    ) -> R {
        let all = self.terms.borrow();
        let id = tenant.unwrap_or(DEFAULT_TENANT);
        what(
            all.iter()
                .find(|t| t.id == id)
                .or_else(|| all.iter().find(|t| t.id == DEFAULT_TENANT)),
        )
    }

    /// Every configured tenant but `default`: the tenants with request streams of their own.
    pub fn queued(&self) -> Vec<String> {
        queued(&self.terms.borrow())
    }

    /// The tenants with a daily budget (whose spend each worker reads back).
    pub fn budgeted(&self) -> Vec<String> {
        self.terms
            .borrow()
            .iter()
            .filter(|t| t.daily_budget_usd.is_some())
            .map(|t| t.id.clone())
            .collect()
    }

    /// Changes of the terms, for whoever must follow them (the tenants' queues).
    pub fn subscribe(&self) -> watch::Receiver<Arc<Vec<TenantConfig>>> {
        self.terms.subscribe()
    }

    /// Puts `tenants` in force; whether anything changed.
    pub fn replace(&self, tenants: Vec<TenantConfig>) -> bool {
        self.terms.send_if_modified(|current| {
            if **current == tenants {
                return false;
            }
            crate::telemetry::metrics::set_tenants(queued(&tenants));
            *current = Arc::new(tenants);
            true
        })
    }
}

/// The tenants of `all` with queues of their own.
pub fn queued(all: &[TenantConfig]) -> Vec<String> {
    all.iter()
        .filter(|t| t.id != DEFAULT_TENANT)
        .map(|t| t.id.clone())
        .collect()
}

/// Reads `path` again every [`RELOAD_EVERY`] until `stop`, putting its `[[tenants]]` in force
/// when they change. A file that does not load (a typo mid-edit), or whose tenants name a
/// provider this worker does not run (providers change only with a restart), changes nothing
/// and is reported once per distinct error.
pub async fn follow_file(
    book: Arc<TenantBook>,
    running: Arc<Config>,
    path: PathBuf,
    stop: CancellationToken,
) {
    let mut last_error: Option<String> = None;
    let mut last_text: Option<String> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(RELOAD_EVERY) => {}
            _ = stop.cancelled() => return,
        }
        let Ok(text) = tokio::fs::read_to_string(&path).await else {
            continue;
        };
        if last_text.as_ref() == Some(&text) {
            continue;
        }
        match crate::config::load_str(&text)
            .map_err(|e| e.to_string())
            .and_then(|cfg| unknown_provider(&cfg.tenants, &running).map_or(Ok(cfg), Err))
        {
            Ok(cfg) => {
                last_error = None;
                last_text = Some(text);
                if book.replace(cfg.tenants) {
                    let tenants: Vec<String> =
                        book.terms.borrow().iter().map(|t| t.id.clone()).collect();
                    tracing::info!(file = %path.display(), ?tenants, "tenant terms reloaded");
                }
            }
            Err(error) => {
                if last_error.as_ref() != Some(&error) {
                    tracing::error!(file = %path.display(), %error,
                        "config file not reloaded; the tenant terms in force stay");
                    last_error = Some(error);
                }
            }
        }
    }
}

/// A provider named by `tenants` that `running` does not run, as an error to report.
fn unknown_provider(tenants: &[TenantConfig], running: &Config) -> Option<String> {
    let runs = |p: &crate::contract::ProviderId| running.providers.iter().any(|q| q.id == *p);
    tenants.iter().find_map(|t| {
        let named = t.providers.iter().flatten().chain(t.models.keys());
        named.clone().find(|p| !runs(p)).map(|p| {
            format!(
                "tenants `{}` names provider `{p}`, which this worker does not run (new providers need a restart)",
                t.id
            )
        })
    })
}
