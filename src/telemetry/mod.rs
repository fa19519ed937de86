//! Logs, traces and metrics.
//!
//! [`init`] sets up logging (text or JSON, filtered by `RUST_LOG`) and, when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, an OpenTelemetry layer exporting spans over
//! OTLP/HTTP; [`propagation`] carries W3C trace context over NATS either way.
//! [`metrics::install`] sets up the Prometheus recorder that `/metrics` renders.

pub mod logging;
pub mod metrics;
pub mod otel;
pub mod propagation;

use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Level;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub use logging::LogFormat;

/// What [`init`] sets up.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Text or JSON log lines.
    pub log_format: LogFormat,
    /// The log filter when `RUST_LOG` is not set (e.g. `info`).
    pub default_filter: &'static str,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            log_format: LogFormat::default(),
            default_filter: "info",
        }
    }
}

/// Keeps the tracer alive; dropping it flushes spans still queued for export.
#[must_use = "dropping the guard shuts tracing export down"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take()
            && let Err(e) = p.shutdown()
        {
            eprintln!("trace export did not shut down cleanly: {e}");
        }
    }
}

/// Installs the global subscriber: log lines on stderr filtered by `RUST_LOG` and, when traces
/// are exported, the OpenTelemetry layer. That layer has its own filter (all of this crate's
/// spans, its events at info and above) so `RUST_LOG=warn` quiets logs without thinning traces.
///
/// Without an exporter there is no OpenTelemetry layer: building spans nobody receives cost
/// the worker about a tenth of its CPU per request. Trace context still flows (see
/// [`propagation::outgoing_headers`]).
/// A second call (tests) installs nothing and returns an inert guard.
pub fn init(opts: Options) -> TelemetryGuard {
    let tracing = otel::provider();
    let otel_layer = tracing.exporting.then(|| {
        otel::layer(&tracing.provider).with_filter(
            filter_fn(|m| {
                // Every span of this crate (the per-request ones are at debug level, to keep
                // them out of log lines by default), and events at info and above.
                m.target().starts_with("ai_failover") && (m.is_span() || *m.level() <= Level::INFO)
            })
            .with_max_level_hint(Level::DEBUG),
        )
    });
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match opts.log_format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().with_current_span(true).boxed(),
    };
    let installed = tracing_subscriber::registry()
        .with(fmt.with_filter(logging::env_filter(opts.default_filter)))
        .with(otel_layer)
        .try_init()
        .is_ok();
    if !installed {
        return TelemetryGuard { provider: None };
    }
    if let Some(e) = &tracing.export_error {
        tracing::warn!(error = %e, "OTLP trace export disabled: the exporter could not be built");
    } else if tracing.exporting {
        tracing::info!(
            endpoint = %std::env::var(otel::ENDPOINT_ENV).unwrap_or_default(),
            "exporting traces over OTLP/HTTP"
        );
    }
    TelemetryGuard {
        provider: tracing.exporting.then_some(tracing.provider),
    }
}

/// An error and every cause behind it on one line (`a: b: c`), for log lines and replies:
/// errors keep their causes as `source()`, and `Display` alone shows only the first.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}

#[cfg(test)]
mod chain_tests {
    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn every_cause_is_named() {
        let e = Outer(std::io::Error::other("inner"));
        assert_eq!(super::chain(&e), "outer: inner");
    }
}
