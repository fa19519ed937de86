//! Reads streams back with ordered consumers: the stored failover history (for
//! `failover-history` and `health-summary`), the rollups (for `report`), and a live tail of
//! the events (for `watch`).

use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;

use crate::contract::{FailoverEvent, Names};

/// A failure reading the events stream.
#[derive(Debug, thiserror::Error)]
pub enum EventLogError {
    #[error("cannot read stream {stream}")]
    Read {
        stream: String,
        #[source]
        source: async_nats::Error,
    },
    #[error("read {seen} of {stored} stored messages within {} ms", max_wait.as_millis())]
    Slow {
        seen: u64,
        stored: u64,
        max_wait: Duration,
    },
}

/// A read of `stream` that failed.
fn err<E: Into<async_nats::Error>>(stream: &str) -> impl Fn(E) -> EventLogError + '_ {
    move |e| EventLogError::Read {
        stream: stream.to_string(),
        source: e.into(),
    }
}

/// An ordered consumer on `filter` in the events stream, starting at `from`.
pub async fn ordered(
    js: &jetstream::Context,
    names: &Names,
    filter: String,
    from: consumer::DeliverPolicy,
) -> Result<consumer::Consumer<consumer::pull::OrderedConfig>, EventLogError> {
    ordered_in(js, &names.events_stream(), filter, from).await
}

/// An ordered consumer on `filter` in `stream`, starting at `from`.
async fn ordered_in(
    js: &jetstream::Context,
    stream: &str,
    filter: String,
    from: consumer::DeliverPolicy,
) -> Result<consumer::Consumer<consumer::pull::OrderedConfig>, EventLogError> {
    js.get_stream(stream)
        .await
        .map_err(err(stream))?
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: filter,
            deliver_policy: from,
            ..Default::default()
        })
        .await
        .map_err(err(stream))
}

/// Replays every message stored in `stream` on `filter` from `from` on, oldest first, into
/// `visit`. Stops at the last message stored when it started (a live stream never ends by
/// itself) or after `max_wait`.
pub async fn replay(
    js: &jetstream::Context,
    stream: String,
    filter: String,
    from: consumer::DeliverPolicy,
    max_wait: Duration,
    mut visit: impl FnMut(&jetstream::Message),
) -> Result<(), EventLogError> {
    let consumer = ordered_in(js, &stream, filter, from).await?;
    let stored = consumer.cached_info().num_pending;
    if stored == 0 {
        return Ok(());
    }
    let mut messages = consumer.messages().await.map_err(err(&stream))?;
    let until = tokio::time::Instant::now() + max_wait;
    let mut seen = 0;
    while seen < stored {
        let next = tokio::time::timeout_at(until, messages.next()).await;
        let msg = match next {
            Ok(Some(Ok(m))) => m,
            Ok(Some(Err(e))) => return Err(err(&stream)(e)),
            Ok(None) => break,
            Err(_) => {
                return Err(EventLogError::Slow {
                    seen,
                    stored: stored as u64,
                    max_wait,
                });
            }
        };
        seen += 1;
        visit(&msg);
        if msg.info().is_ok_and(|i| i.pending == 0) {
            break;
        }
    }
    Ok(())
}

/// Replays every stored failover event, oldest first, into `visit` (see [`replay`]).
pub async fn replay_failovers(
    js: &jetstream::Context,
    names: &Names,
    max_wait: Duration,
    mut visit: impl FnMut(FailoverEvent),
) -> Result<(), EventLogError> {
    replay(
        js,
        names.events_stream(),
        names.failover_event(),
        consumer::DeliverPolicy::All,
        max_wait,
        |msg| match serde_json::from_slice::<FailoverEvent>(&msg.payload) {
            Ok(event) => visit(event),
            // Another program may publish here too; one odd message must not hide the rest.
            Err(e) => tracing::debug!(error = %e, "skipping an unreadable failover event"),
        },
    )
    .await
}

/// The newest `limit` failover events (only those away from `provider` when given), oldest
/// first.
pub async fn last_failovers(
    js: &jetstream::Context,
    names: &Names,
    limit: usize,
    provider: Option<&str>,
    max_wait: Duration,
) -> Result<Vec<FailoverEvent>, EventLogError> {
    let mut ring = std::collections::VecDeque::with_capacity(limit.min(1024));
    replay_failovers(js, names, max_wait, |e| {
        if provider.is_some_and(|p| p != e.from.provider) || limit == 0 {
            return;
        }
        if ring.len() == limit {
            ring.pop_front();
        }
        ring.push_back(e);
    })
    .await?;
    Ok(ring.into())
}
