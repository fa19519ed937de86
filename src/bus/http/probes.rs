//! `/metrics`, `/healthz`, `/readyz` and the dashboard page.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse};

use super::HttpState;

/// The dashboard: one self-contained page (inline CSS and JS, no external fetches), so it
/// works on an air-gapped trading network and needs no build step.
const DASHBOARD: &str = include_str!("dashboard.html");

/// `GET /`.
pub async fn dashboard() -> Html<&'static str> {
    Html(DASHBOARD)
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(s): State<HttpState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

/// `GET /healthz`: the process answers, so it is alive.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: 200 while the worker consumes requests, 503 before, while it cannot pull,
/// and once it stops.
pub async fn readyz(State(s): State<HttpState>) -> (StatusCode, &'static str) {
    if s.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not consuming\n")
    }
}
