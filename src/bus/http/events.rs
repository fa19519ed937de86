//! `GET /api/events`: every message on `<prefix>.events.>` as Server-Sent Events, typed by
//! the subject's kind (`health`, `failover`, `mode`), data = the event's JSON.

use std::convert::Infallible;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{FutureExt, StreamExt, stream};
use serde::Deserialize;

use super::HttpState;

/// Query parameters.
#[derive(Debug, Default, Deserialize)]
pub struct EventsQuery {
    /// End the stream after this many milliseconds. Headless browsers taking a snapshot
    /// (`--virtual-time-budget`) wait for open requests forever; a bounded stream lets them
    /// finish. Absent: the stream lasts as long as the client or the worker.
    max_ms: Option<u64>,
}

/// `GET /api/events`. A core-NATS subscription per client: events are live (history is
/// `/api/history`), a slow browser cannot hold back JetStream, and nothing is acked.
pub async fn events(State(s): State<HttpState>, Query(q): Query<EventsQuery>) -> Response {
    let subject = format!("{}.events.>", s.bus.names.prefix());
    let sub = match s.bus.client.subscribe(subject).await {
        Ok(sub) => sub,
        Err(e) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot subscribe: {e}\n"),
            )
                .into_response();
        }
    };
    // A first event once the subscription is in place: a client knows from then on that it
    // misses nothing.
    let hello = Event::default()
        .event("ready")
        .data(format!(r#"{{"worker_id":{:?}}}"#, s.worker_id));
    let prefix = s.bus.names.prefix().to_string();
    let live = sub.map(move |msg| to_event(&prefix, &msg.subject, &msg.payload));
    let limit = match q.max_ms {
        Some(ms) => tokio::time::sleep(std::time::Duration::from_millis(ms)).boxed(),
        None => futures::future::pending().boxed(),
    };
    let end = futures::future::select(s.shutdown.clone().cancelled_owned().boxed(), limit);
    let stream = stream::once(async move { hello })
        .chain(live)
        .take_until(end)
        .map(Ok::<_, Infallible>);
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// `ai.events.health.openai` → `health`; `ai.events.failover` → `failover`.
pub fn event_type<'a>(prefix: &str, subject: &'a str) -> &'a str {
    subject
        .strip_prefix(prefix)
        .and_then(|s| s.strip_prefix(".events."))
        .and_then(|s| s.split('.').next())
        .filter(|s| !s.is_empty())
        .unwrap_or("event")
}

fn to_event(prefix: &str, subject: &str, payload: &[u8]) -> Event {
    // Events are JSON on one line; a payload that is not UTF-8 cannot be SSE data.
    let data = String::from_utf8_lossy(payload).replace(['\r', '\n'], " ");
    Event::default()
        .event(event_type(prefix, subject))
        .data(data)
}

#[cfg(test)]
mod tests {
    use super::event_type;

    #[test]
    fn event_types_come_from_the_subject() {
        assert_eq!(event_type("ai", "ai.events.health.openai"), "health");
        assert_eq!(event_type("ai", "ai.events.failover"), "failover");
        assert_eq!(event_type("ai", "ai.events.mode"), "mode");
        assert_eq!(event_type("x-y", "x-y.events.mode"), "mode");
        assert_eq!(event_type("ai", "other"), "event");
    }
}
