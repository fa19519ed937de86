//! Holding a message through a bus outage.
//!
//! A JetStream or KV operation that fails because NATS is away, or because a stream is
//! electing a leader after a node died, is retried in place while the message's ack deadline
//! is extended. An outage of the bus then burns none of the request's deliveries, and a valid
//! request is never dead-lettered for the bus's fault.

use std::fmt::Display;
use std::time::Duration;

use crate::telemetry::metrics::name as metric;
use async_nats::jetstream::{self, AckKind};
use tokio_util::sync::CancellationToken;

/// The longest a message is held for one operation: one ack wait, and never less than 30 s
/// (a cluster elects a new stream leader within seconds; a restarting server takes longer).
pub fn hold_limit(ack_wait: Duration) -> Duration {
    ack_wait.max(Duration::from_secs(30))
}

/// How many times `msg` has been delivered (1 for the first delivery).
pub fn deliveries(msg: &jetstream::Message) -> u64 {
    msg.info().map(|i| i.delivered.max(1) as u64).unwrap_or(1)
}

/// The delay before a request that failed is delivered again: 500 ms doubling with each
/// delivery and capped at the ack wait, so that the deliveries outlast a short outage instead
/// of being used up within a couple of seconds.
pub fn nak_delay(delivered: u64, ack_wait: Duration) -> Duration {
    let doublings = delivered.saturating_sub(1).min(16) as u32;
    (Duration::from_millis(500) * 2u32.pow(doublings)).min(ack_wait)
}

/// Runs `op` until it succeeds, fails in a way `transient` says is not worth retrying, the
/// [`hold_limit`] passes or `stop` fires; between tries `msg` gets a progress ack. `what`
/// names the operation in logs and in `ai_failover_bus_retries_total`.
pub async fn holding<T, E: Display, F: Future<Output = Result<T, E>>>(
    msg: &jetstream::Message,
    ack_wait: Duration,
    stop: &CancellationToken,
    what: &'static str,
    transient: impl Fn(&E) -> bool,
    mut op: impl FnMut() -> F,
) -> Result<T, E> {
    let started = tokio::time::Instant::now();
    let limit = hold_limit(ack_wait);
    // Progress acks must arrive well within the ack wait.
    let longest = (ack_wait / 3).min(Duration::from_secs(2));
    let mut wait = Duration::from_millis(50).min(longest);
    let mut tries = 0u32;
    loop {
        match op().await {
            Ok(v) => {
                if tries > 0 {
                    tracing::info!(what, tries, "bus operation went through after retrying");
                }
                return Ok(v);
            }
            Err(e) if transient(&e) && !stop.is_cancelled() && started.elapsed() + wait < limit => {
                tries += 1;
                metrics::counter!(metric::BUS_RETRIES_TOTAL, "op" => what).increment(1);
                tracing::debug!(error = %e, what, tries, "bus operation failed; holding the message and retrying");
                let _ = msg.ack_with(AckKind::Progress).await;
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.cancelled() => {}
                }
                wait = (wait * 2).min(longest);
            }
            Err(e) => return Err(e),
        }
    }
}

/// An ack (or term) the server did not confirm, even after holding the message.
#[derive(Debug, thiserror::Error)]
#[error("{what} not confirmed by the server")]
pub struct FinishError {
    pub what: &'static str,
    #[source]
    pub source: async_nats::Error,
}

/// Ends `msg` with `kind` and waits for the server to confirm, held through a bus outage
/// like every other write; `what` names it in logs and metrics.
pub async fn finish(
    msg: &jetstream::Message,
    ack_wait: Duration,
    kind: AckKind,
    what: &'static str,
    stop: &CancellationToken,
) -> Result<(), FinishError> {
    holding(
        msg,
        ack_wait,
        stop,
        what,
        |_| true,
        || msg.double_ack_with(kind),
    )
    .await
    .map_err(|source| FinishError { what, source })
}

/// When the stream took `msg` (now, if the message does not say).
pub fn published_at(msg: &jetstream::Message) -> crate::contract::Timestamp {
    msg.info()
        .ok()
        .and_then(|i| {
            chrono::DateTime::from_timestamp_nanos(i.published.unix_timestamp_nanos() as i64).into()
        })
        .unwrap_or_else(crate::engine::clock::wall_now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_back_off_up_to_the_ack_wait() {
        let ack_wait = Duration::from_secs(30);
        let delays: Vec<u64> = (1..=8)
            .map(|n| nak_delay(n, ack_wait).as_millis() as u64)
            .collect();
        assert_eq!(
            delays,
            [500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]
        );
        assert_eq!(nak_delay(0, ack_wait), Duration::from_millis(500));
        assert_eq!(nak_delay(u64::MAX, ack_wait), ack_wait);
    }

    #[test]
    fn a_message_is_held_for_at_least_thirty_seconds() {
        assert_eq!(hold_limit(Duration::from_secs(5)), Duration::from_secs(30));
        assert_eq!(hold_limit(Duration::from_secs(90)), Duration::from_secs(90));
    }
}
