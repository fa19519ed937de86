//! Following a bucket: every record's current value, then every change, for as long as the
//! worker runs; a watch that fails is established again (after a NATS restart, say).

use std::time::Duration;

use async_nats::jetstream::kv;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

/// Shows `apply` every entry of `kv` and every change after it until `stop` fires. `what`
/// names the bucket in logs.
pub async fn follow(
    kv: &kv::Store,
    what: &str,
    stop: &CancellationToken,
    mut apply: impl FnMut(&kv::Entry),
) {
    while !stop.is_cancelled() {
        // The latest value of every key first (`watch_all` would start at new changes only,
        // losing whatever changed while a watch was being (re-)established), then changes.
        match kv.watch_with_history(">").await {
            Ok(mut watch) => loop {
                tokio::select! {
                    entry = watch.next() => match entry {
                        Some(Ok(entry)) => apply(&entry),
                        Some(Err(e)) => {
                            tracing::warn!(what, error = %e, "watch error; restarting it");
                            break;
                        }
                        None => break,
                    },
                    _ = stop.cancelled() => return,
                }
            },
            Err(e) => tracing::warn!(what, error = %e, "cannot watch the bucket"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.cancelled() => return,
        }
    }
}
