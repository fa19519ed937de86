//! W3C trace context over NATS headers.

use async_nats::HeaderMap;

/// Headers for everything published because of a message that carried `incoming`: the trace
/// context continues (`traceparent`/`tracestate` carried over). Unparseable values are dropped
/// rather than failing the publish.
pub fn outgoing_headers(incoming: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in ["traceparent", "tracestate"] {
        if let Some(v) = incoming.get(name)
            && let Ok(s) = std::str::from_utf8(v.as_str().as_bytes())
            && !s.is_empty()
            && s.is_ascii()
        {
            out.insert(name, s);
        }
    }
    out
}
