//! The read loop of a durable consumer the fleet shares (feedback, the quality log): pull,
//! hand each message to a task of its own within a bound on work in flight, and when the
//! consumer fails (a NATS restart may delete it) back off and let set-up recreate it.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

use super::setup::{self, Bus};

/// What handles the messages of a [`SharedConsumer`]: it settles each one itself (ack, nak or
/// term), and stops holding it when `stop` fires.
#[async_trait::async_trait]
pub trait Handler: Send + Sync + 'static {
    async fn handle(&self, msg: jetstream::Message, stop: CancellationToken);
}

/// How a [`SharedConsumer`] finds its consumer in a freshly set-up bus.
pub type Pick = Box<dyn Fn(Bus) -> Option<consumer::PullConsumer> + Send + Sync>;

/// A shared durable consumer and how to find it again.
pub struct SharedConsumer {
    /// Names it in logs.
    pub what: &'static str,
    pub client: async_nats::Client,
    pub cfg: Arc<Config>,
    pub consumer: consumer::PullConsumer,
    /// Finds the consumer again after a failure (set-up has just run: `bus` is fresh).
    pub pick: Pick,
    /// Messages handled at once.
    pub at_once: usize,
}

impl SharedConsumer {
    /// Hands every message to `handler` until `shutdown` fires, then waits (a bounded time)
    /// for the messages in hand.
    pub async fn run(self, shutdown: CancellationToken, handler: Arc<impl Handler>) {
        let what = self.what;
        let permits = Arc::new(Semaphore::new(self.at_once));
        let mut consumer = self.consumer;
        let mut failures = 0u32;
        'outer: while !shutdown.is_cancelled() {
            if failures > 0 {
                if let Ok(bus) = setup::ensure(&self.client, &self.cfg).await
                    && let Some(again) = (self.pick)(bus)
                {
                    consumer = again;
                }
                let wait = Duration::from_millis(200 * failures.min(10) as u64);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.cancelled() => break,
                }
            }
            let messages = consumer
                .stream()
                .max_messages_per_batch(self.at_once)
                .messages()
                .await;
            let mut messages = match messages {
                Ok(m) => m,
                Err(e) => {
                    failures += 1;
                    tracing::warn!(what, error = %e, failures, "cannot read the consumer");
                    continue;
                }
            };
            // A deleted consumer shows as a run of errors or the end of the stream, not as a
            // failure to subscribe.
            let mut errors_in_a_row = 0u32;
            loop {
                let next = tokio::select! {
                    m = messages.next() => m,
                    _ = shutdown.cancelled() => break 'outer,
                };
                let msg = match next {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => {
                        errors_in_a_row += 1;
                        tracing::warn!(what, error = %e, errors_in_a_row, "consumer error");
                        if errors_in_a_row < 3 {
                            continue;
                        }
                        failures += 1;
                        break;
                    }
                    None => {
                        failures += 1;
                        break;
                    }
                };
                (errors_in_a_row, failures) = (0, 0);
                let permit = tokio::select! {
                    p = permits.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break 'outer,
                    },
                    _ = shutdown.cancelled() => break 'outer,
                };
                let (handler, stop) = (handler.clone(), shutdown.clone());
                tokio::spawn(async move {
                    handler.handle(msg, stop).await;
                    drop(permit);
                });
            }
        }
        // What is in hand finishes (each step is bounded by the NATS request timeout); a
        // message that does not is delivered again after its ack wait.
        let all = self.at_once as u32;
        let _ = tokio::time::timeout(Duration::from_secs(5), permits.acquire_many(all)).await;
    }
}
