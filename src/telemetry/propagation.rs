//! W3C trace context over NATS headers.
//!
//! A request's `traceparent` becomes the parent of the worker's request span; everything the
//! worker publishes because of that request carries a `traceparent` with the same trace id
//! and the worker's span as parent (the exported request span, or a fresh span id when traces
//! are not exported), so the trace continues through the fleet.

use async_nats::HeaderMap;
use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Reads NATS headers for a propagator.
pub struct HeaderExtractor<'a>(pub &'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_ref()).collect()
    }
}

/// Writes a propagator's fields into NATS headers.
pub struct HeaderInjector<'a>(pub &'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        // Header values cannot hold line breaks; a propagator never emits them, but a value
        // that would corrupt the message is dropped rather than sent.
        if value.is_ascii() && !value.contains(['\r', '\n']) {
            self.0.insert(key, value.as_str());
        }
    }
}

/// The trace context `headers` carry; an empty context when they carry none or it does not
/// parse.
pub fn extract(headers: &HeaderMap) -> Context {
    // Against an empty context, not the current one: `extract` falls back to its base
    // context when the headers do not parse, and inside a span that would be the span itself.
    TraceContextPropagator::new().extract_with_context(&Context::new(), &HeaderExtractor(headers))
}

/// Makes `headers`' trace context the parent of `span`. Call before the span is first
/// entered: the OpenTelemetry side of a span is built then, and its parent is fixed.
pub fn set_parent(span: &tracing::Span, headers: &HeaderMap) {
    let cx = extract(headers);
    if cx.span().span_context().is_valid() {
        // Fails only when the span is disabled or no OpenTelemetry layer is installed; the
        // outgoing headers then fall back to the incoming context.
        let _ = span.set_parent(cx);
    }
}

/// Headers for everything published because of a message that carried `incoming`.
///
/// When `incoming` has a valid `traceparent`, the result carries one with the same trace id
/// whose parent is the worker's span, plus any valid `tracestate`. Without a valid incoming
/// context there is no trace to continue and no header is written: values that do not parse
/// are dropped instead of failing the publish. The worker's span is the current span when
/// traces are exported; otherwise (no OpenTelemetry layer, so spans have no ids) it is a
/// fresh span id in the same trace, so the trace is continued and never copied verbatim.
pub fn outgoing_headers(incoming: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    let parent = extract(incoming);
    let parent_ctx = parent.span().span_context().clone();
    if !parent_ctx.is_valid() {
        return out;
    }
    let current = tracing::Span::current().context();
    let continues = {
        let sc = current.span().span_context().clone();
        sc.is_valid() && sc.trace_id() == parent_ctx.trace_id()
    };
    let cx = if continues {
        current
    } else {
        let worker_span = SpanContext::new(
            parent_ctx.trace_id(),
            RandomIdGenerator::default().new_span_id(),
            parent_ctx.trace_flags(),
            false,
            parent_ctx.trace_state().clone(),
        );
        Context::new().with_remote_span_context(worker_span)
    };
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(&mut out));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanId, TraceId};
    use tracing_subscriber::layer::SubscriberExt;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, *v);
        }
        h
    }

    fn ids(h: &HeaderMap) -> (TraceId, SpanId) {
        let cx = extract(h);
        let sc = cx.span().span_context().clone();
        assert!(sc.is_valid(), "no valid traceparent in {h:?}");
        (sc.trace_id(), sc.span_id())
    }

    /// Runs `f` inside a worker-like span whose parent came from `incoming`, with the
    /// OpenTelemetry layer the worker installs when it exports traces.
    fn in_worker_span<T>(incoming: &HeaderMap, f: impl FnOnce() -> T) -> T {
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let layer = super::super::otel::layer(&provider);
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request");
            set_parent(&span, incoming);
            span.in_scope(f)
        })
    }

    #[test]
    fn trace_continues_with_the_current_span_as_parent() {
        let incoming = headers(&[("traceparent", PARENT), ("tracestate", "vendor=abc")]);
        let (out, worker_span) = in_worker_span(&incoming, || {
            let current = tracing::Span::current().context();
            (
                outgoing_headers(&incoming),
                current.span().span_context().span_id(),
            )
        });
        let (trace_in, span_in) = ids(&incoming);
        let (trace_out, span_out) = ids(&out);
        assert_eq!(trace_out, trace_in, "same trace");
        assert_ne!(
            span_out, span_in,
            "the parent is the worker's span, not the publisher's"
        );
        assert_eq!(
            span_out, worker_span,
            "the span the layer built and exports"
        );
        assert_ne!(out.get("traceparent").unwrap().as_str(), PARENT);
        assert_eq!(out.get("tracestate").unwrap().as_str(), "vendor=abc");
    }

    #[test]
    fn garbage_in_means_no_header_out() {
        for bad in [
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            let incoming = headers(&[("traceparent", bad), ("tracestate", "a=b")]);
            let out = in_worker_span(&incoming, || outgoing_headers(&incoming));
            assert!(out.get("traceparent").is_none(), "{bad} gave {out:?}");
            assert!(out.get("tracestate").is_none(), "{bad} gave {out:?}");
        }
    }

    #[test]
    fn no_trace_in_means_no_header_out() {
        let out = in_worker_span(&HeaderMap::new(), || outgoing_headers(&HeaderMap::new()));
        assert!(out.is_empty());
    }

    #[test]
    fn without_a_tracing_layer_the_trace_continues_under_a_fresh_span() {
        // As a worker runs when traces are not exported: no OpenTelemetry layer at all.
        let incoming = headers(&[("traceparent", PARENT), ("tracestate", "vendor=abc")]);
        let first = outgoing_headers(&incoming);
        let second = outgoing_headers(&incoming);
        let (trace_in, span_in) = ids(&incoming);
        let (trace_out, span_out) = ids(&first);
        assert_eq!(trace_out, trace_in, "same trace");
        assert_ne!(span_out, span_in, "not copied verbatim");
        assert_ne!(ids(&second).1, span_out, "a new span id each time");
        let flags = |h: &HeaderMap| {
            h.get("traceparent")
                .unwrap()
                .as_str()
                .rsplit('-')
                .next()
                .map(str::to_string)
        };
        assert_eq!(flags(&first), flags(&incoming), "sampling decision kept");
        assert_eq!(first.get("tracestate").unwrap().as_str(), "vendor=abc");
    }
}
