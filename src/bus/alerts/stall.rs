//! `fleet_stalled`: requests wait in the work queue and none has left it (answered, dead
//! lettered, settled) for `alerts.stall_after_ms`. Every worker watches the requests stream,
//! so a stall is seen while any worker lives, even one whose own requests are all stuck; the
//! desk raises it once for the fleet. A fleet with no live worker cannot say so itself: that
//! is what an alert on the workers' absent metrics is for (see the README).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::stream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::AlertDesk;

/// Watches the requests stream for a stall.
pub struct StallWatch {
    pub requests: stream::Stream,
    pub desk: Arc<AlertDesk>,
    pub stall_after: Duration,
}

/// What the watch knows between looks.
#[derive(Debug)]
struct Progress {
    /// Requests that have left the queue since the stream began.
    done: Option<u64>,
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
            done: None,
            moved_at: Instant::now(),
            stalled: false,
        };
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return,
            }
            let (waiting, last_seq) = match self.requests.info().await {
                Ok(info) => (info.state.messages, info.state.last_sequence),
                Err(e) => {
                    tracing::debug!(error = %e, "requests stream not read; stall check skipped");
                    continue;
                }
            };
            self.look(&mut progress, waiting, last_seq).await;
        }
    }

    /// One look: `waiting` requests in the queue, `last_seq` the last one ever stored.
    async fn look(&self, p: &mut Progress, waiting: u64, last_seq: u64) {
        // In a work queue a request leaves when it is acked, terminated or deleted.
        let done = last_seq.saturating_sub(waiting);
        if waiting == 0 || p.done != Some(done) {
            p.done = Some(done);
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
