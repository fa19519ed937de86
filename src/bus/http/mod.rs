//! The worker's small HTTP port (`worker.http_listen`): Prometheus `/metrics`, `/healthz`,
//! `/readyz`, the JSON status and event feeds, and the live dashboard at `/`.
//!
//! It lives in `bus` because its answers come from the bus (shared KV, the events subject)
//! and the engine; `runtime::start` hands it the state.

mod api;
mod auth;
mod events;
mod history;
mod probes;
mod status;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::engine::Engine;

use super::control::Ctx;
use super::setup::Bus;

pub use status::{ProviderStatus, StatusReply};

/// What the handlers read.
#[derive(Clone)]
pub struct HttpState {
    /// The configuration (providers, budgets).
    pub cfg: Arc<Config>,
    /// Connection, names and buckets.
    pub bus: Bus,
    /// This worker's view, for what the shared KV does not hold (local latency percentiles,
    /// the mode before the fleet record exists).
    pub engine: Arc<Engine>,
    /// `Running.ready`: true once the worker consumes.
    pub ready: Arc<AtomicBool>,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// This worker's id.
    pub worker_id: String,
    /// Ends open event streams when the worker stops.
    pub shutdown: CancellationToken,
    /// The control service's handlers, which the REST API shares.
    pub control: Arc<Ctx>,
}

/// The routes: the probes open, the dashboard and its data behind a viewer token once any
/// token is configured, the REST API checking tokens itself (it audits refusals).
pub fn router(state: HttpState) -> Router {
    let dashboard = Router::new()
        .route("/", get(probes::dashboard))
        .route("/api/status", get(status::status))
        .route("/api/events", get(events::events))
        .route("/api/history", get(history::history))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_viewer,
        ));
    Router::new()
        .route("/metrics", get(probes::metrics))
        .route("/healthz", get(probes::healthz))
        .route("/readyz", get(probes::readyz))
        .merge(dashboard)
        .merge(api::routes())
        .with_state(state)
}

/// The port could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("worker.http_listen `{listen}`: cannot listen there")]
pub struct HttpError {
    pub listen: String,
    #[source]
    pub source: std::io::Error,
}

/// Binds `listen` and serves until `state.shutdown` fires. `Ok(None)` when `listen` is empty
/// (the port is off); a bind failure is an error, since an operator asked for the port.
pub async fn spawn(
    listen: &str,
    state: HttpState,
) -> Result<Option<(SocketAddr, JoinHandle<()>)>, HttpError> {
    if listen.trim().is_empty() {
        return Ok(None);
    }
    let err = |source| HttpError {
        listen: listen.to_string(),
        source,
    };
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(err)?;
    let addr = listener.local_addr().map_err(err)?;
    let stop = state.shutdown.clone();
    let app = router(state);
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "HTTP port stopped");
        }
    });
    tracing::info!(%addr, "serving /metrics, /healthz, /readyz and the dashboard");
    Ok(Some((addr, task)))
}
