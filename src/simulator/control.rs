//! The control API under `/_sim` on the shared listener: inspect and change faults, read
//! call counts and the call log, while the simulator runs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::calls::{CallRecord, ProviderCalls};
use super::state::Shared;
use super::urls::{base_url, dedicated_base_url};
use super::{Api, Faults, Outage, SimError};

#[derive(Debug, Clone)]
struct Ctl {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

/// `GET /_sim/providers`: one provider as the control API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderView {
    /// Provider name.
    pub name: String,
    /// Wire API it speaks.
    pub api: Api,
    /// Base URL on the shared listener, as the vendor SDK takes it.
    pub base_url: String,
    /// Base URL of its dedicated listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedicated_base_url: Option<String>,
    /// Whether calls must carry a key (the key itself is never shown).
    pub requires_key: bool,
    /// Faults in force.
    pub faults: Faults,
    /// Call counts so far.
    pub calls: ProviderCalls,
}

/// `POST /_sim/providers/{name}/outage`: absent `duration_ms` = until cleared.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutageRequest {
    #[serde(default)]
    start_ms: u64,
    #[serde(default)]
    duration_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct LogQuery {
    provider: Option<String>,
}

/// The `/_sim` routes.
pub(crate) fn router(shared: Arc<Shared>, addr: SocketAddr) -> Router {
    Router::new()
        .route("/providers", get(providers))
        .route(
            "/providers/{name}/faults",
            put(set_faults).delete(clear_faults),
        )
        .route("/providers/{name}/outage", post(outage))
        .route("/calls", get(calls))
        .route("/log", get(log))
        .route("/reset", post(reset))
        .with_state(Ctl { shared, addr })
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": message.to_string() }))).into_response()
}

impl IntoResponse for SimError {
    fn into_response(self) -> Response {
        let status = match self {
            SimError::UnknownProvider(_) => StatusCode::NOT_FOUND,
            _ => StatusCode::BAD_REQUEST,
        };
        error(status, self)
    }
}

fn view(ctl: &Ctl, name: &str, calls: &BTreeMap<String, ProviderCalls>) -> Option<ProviderView> {
    let p = ctl.shared.providers.get(name)?;
    Some(ProviderView {
        name: p.name.clone(),
        api: p.api,
        base_url: base_url(p.api, ctl.addr, Some(&p.name)),
        dedicated_base_url: p.dedicated.map(|a| dedicated_base_url(p.api, a)),
        requires_key: p.expected_key.is_some(),
        faults: p.faults(),
        calls: calls.get(name).cloned().unwrap_or_default(),
    })
}

async fn providers(State(ctl): State<Ctl>) -> Json<Vec<ProviderView>> {
    let calls = ctl.shared.calls();
    let views = ctl
        .shared
        .providers
        .keys()
        .filter_map(|n| view(&ctl, n, &calls))
        .collect();
    Json(views)
}

/// Parses the body ourselves so a bad `Faults` gets a JSON 400 saying why.
async fn set_faults(State(ctl): State<Ctl>, Path(name): Path<String>, body: Bytes) -> Response {
    let faults: Faults = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid faults: {e}")),
    };
    apply(&ctl, &name, |s| s.set_faults(&name, faults))
}

async fn clear_faults(State(ctl): State<Ctl>, Path(name): Path<String>) -> Response {
    apply(&ctl, &name, |s| s.set_faults(&name, Faults::default()))
}

async fn outage(State(ctl): State<Ctl>, Path(name): Path<String>, body: Bytes) -> Response {
    let req: OutageRequest = if body.is_empty() {
        OutageRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid outage: {e}")),
        }
    };
    let outage = Outage {
        start_ms: req.start_ms,
        duration_ms: req.duration_ms,
    };
    apply(&ctl, &name, |s| s.start_outage(&name, outage))
}

/// Runs a change and answers with the provider's new view.
fn apply(ctl: &Ctl, name: &str, change: impl FnOnce(&Shared) -> Result<(), SimError>) -> Response {
    match change(&ctl.shared) {
        Ok(()) => Json(view(ctl, name, &ctl.shared.calls())).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn calls(State(ctl): State<Ctl>) -> Json<BTreeMap<String, ProviderCalls>> {
    Json(ctl.shared.calls())
}

async fn log(State(ctl): State<Ctl>, Query(q): Query<LogQuery>) -> Json<Vec<CallRecord>> {
    let mut log = ctl.shared.log();
    if let Some(p) = q.provider {
        log.retain(|r| r.provider == p);
    }
    Json(log)
}

/// Zeroes call counts and the log; faults are left as they are.
async fn reset(State(ctl): State<Ctl>) -> StatusCode {
    ctl.shared.reset_calls();
    StatusCode::NO_CONTENT
}
