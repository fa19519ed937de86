//! `fleet_stalled`: requests wait undelivered on the workers' consumer and no worker has taken
//! or finished one (its delivered and ack-floor sequences stand still) for
//! `alerts.stall_after_ms`. A long request in flight while nothing waits is not a stall. Every
//! worker watches the consumer, so a stall is seen while any worker lives, even one whose own
//! requests are all stuck; the desk raises it once for the fleet. A fleet with no live worker cannot say so itself: that
//! is what an alert on the workers' absent metrics is for (see the README).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::AlertDesk;

/// Watches the workers' consumer for a stall.
pub struct StallWatch {
    pub consumer: PullConsumer,
    pub desk: Arc<AlertDesk>,
    pub stall_after: Duration,
}

/// What the watch knows between looks.
#[derive(Debug)]
struct Progress {
    /// The consumer's delivered and ack-floor stream sequences when last seen.
    seen: Option<(u64, u64)>,
    moved_at: Instant,
    stalled: bool,
}

impl StallWatch {
    /// Looks four times per `stall_after` until `stop` fires.
    pub async fn run(mut self, stop: CancellationToken) {
        let every =
            (self.stall_after / 4).clamp(Duration::from_millis(250), Duration::from_secs(15));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut progress = Progress {
            seen: None,
            moved_at: Instant::now(),
            stalled: false,
        };
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return,
            }
            let (waiting, seen) = match self.consumer.info().await {
                Ok(i) => (
                    i.num_pending,
                    (i.delivered.stream_sequence, i.ack_floor.stream_sequence),
                ),
                Err(e) => {
                    tracing::debug!(error = %e, "workers' consumer not read; stall check skipped");
                    continue;
                }
            };
            self.look(&mut progress, waiting, seen).await;
        }
    }

    /// One look: `waiting` requests not delivered yet, `seen` the consumer's sequences.
    async fn look(&self, p: &mut Progress, waiting: u64, seen: (u64, u64)) {
        if waiting == 0 || p.seen != Some(seen) {
            p.seen = Some(seen);
            p.moved_at = Instant::now();
            if p.stalled {
                p.stalled = false;
                self.desk.stall(false, waiting, 0).await;
            }
        } else if !p.stalled && p.moved_at.elapsed() >= self.stall_after {
            p.stalled = true;
            let for_ms = p.moved_at.elapsed().as_millis() as u64;
            self.desk.stall(true, waiting, for_ms).await;
        }
    }
}
