//! Streaming bodies for the delivery faults: a slow drip and a huge body. Both are streamed
//! so the client sees them arrive over time (no Content-Length to check up front).

use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use futures::stream;
use tokio_util::sync::CancellationToken;

use super::SlowDrip;

/// Sends `body` in chunks of `drip.chunk_bytes`, pausing `drip.interval_ms` before each chunk
/// after the first. Stops early at shutdown.
pub(crate) fn drip(body: Bytes, drip: SlowDrip, shutdown: CancellationToken) -> Body {
    let interval = Duration::from_millis(drip.interval_ms);
    let chunk = drip.chunk_bytes.max(1);
    let s = stream::unfold((body, true), move |(rest, first)| {
        let shutdown = shutdown.clone();
        async move {
            if rest.is_empty() {
                return None;
            }
            if !first {
                tokio::select! {
                    () = tokio::time::sleep(interval) => {}
                    () = shutdown.cancelled() => return None,
                }
            }
            let mut rest = rest;
            let head = rest.split_to(chunk.min(rest.len()));
            Some((Ok::<_, std::io::Error>(head), (rest, false)))
        }
    });
    Body::from_stream(s)
}

const HUGE_CHUNK: usize = 64 * 1024;

/// A JSON-looking body of exactly `total` bytes: `{"simulated_huge_body":"xxxx…"}`, cut
/// short when `total` is smaller than the frame.
pub(crate) fn huge(total: u64) -> Body {
    const HEAD: &[u8] = b"{\"simulated_huge_body\":\"";
    const TAIL: &[u8] = b"\"}";
    let filler = Bytes::from(vec![b'x'; HUGE_CHUNK]);
    let frame = (HEAD.len() + TAIL.len()) as u64;
    let middle = total.saturating_sub(frame);
    let head = Bytes::from_static(&HEAD[..HEAD.len().min(total as usize)]);
    let tail_len = TAIL
        .len()
        .min(total.saturating_sub(HEAD.len() as u64) as usize);
    let tail = Bytes::from_static(&TAIL[..tail_len]);
    let full = middle / HUGE_CHUNK as u64;
    let last = (middle % HUGE_CHUNK as u64) as usize;
    let chunks = std::iter::once(head)
        .chain(std::iter::repeat_n(filler.clone(), full as usize))
        .chain(std::iter::once(filler.slice(..last)))
        .chain(std::iter::once(tail))
        .filter(|b| !b.is_empty())
        .map(Ok::<_, std::io::Error>);
    Body::from_stream(stream::iter(chunks))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn len(body: Body) -> usize {
        axum::body::to_bytes(body, usize::MAX).await.unwrap().len()
    }

    #[tokio::test]
    async fn huge_is_exact() {
        for n in [0u64, 5, 26, 27, 1000, 3 * 65_536 + 17] {
            assert_eq!(len(huge(n)).await as u64, n);
        }
    }

    #[tokio::test]
    async fn drip_sends_everything() {
        let d = SlowDrip {
            chunk_bytes: 3,
            interval_ms: 1,
        };
        let b = Bytes::from_static(b"0123456789");
        assert_eq!(len(drip(b, d, CancellationToken::new())).await, 10);
    }
}
