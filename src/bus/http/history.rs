//! `GET /api/history?limit=N`: the last events stored in the events stream, oldest first, so
//! a dashboard opened after an incident still shows it.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::HttpState;
use super::events::event_type;

/// At most this many events per call: each is one stream read.
const MAX_LIMIT: u64 = 200;

/// Query parameters.
#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    /// How many of the latest events (default 50, at most 200).
    limit: Option<u64>,
}

/// One stored event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredEvent {
    /// `health`, `failover` or `mode`, as on `/api/events`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Stream sequence.
    pub seq: u64,
    /// The event as published.
    pub event: serde_json::Value,
}

/// `GET /api/history`.
pub async fn history(
    State(s): State<HttpState>,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<Vec<StoredEvent>>, (StatusCode, String)> {
    let unavailable = |e: String| (StatusCode::SERVICE_UNAVAILABLE, e);
    let stream = s
        .bus
        .js
        .get_stream(s.bus.names.events_stream())
        .await
        .map_err(|e| unavailable(format!("events stream: {e}")))?;
    let state = &stream.cached_info().state;
    let limit = q.limit.unwrap_or(50).clamp(1, MAX_LIMIT);
    if state.messages == 0 {
        return Ok(Json(Vec::new()));
    }
    let first = state
        .first_sequence
        .max(state.last_sequence.saturating_sub(limit - 1));
    let mut out = Vec::new();
    for seq in first..=state.last_sequence {
        // A sequence can be gone (limits, deletes): skip it.
        let Ok(msg) = stream.get_raw_message(seq).await else {
            continue;
        };
        let Ok(event) = serde_json::from_slice(&msg.payload) else {
            continue;
        };
        out.push(StoredEvent {
            kind: event_type(s.bus.names.prefix(), &msg.subject).to_string(),
            seq,
            event,
        });
    }
    Ok(Json(out))
}
