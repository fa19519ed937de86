//! The OpenTelemetry tracer, exporting over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is
//! set (without it, `telemetry::init` installs no tracing layer at all).

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;

/// The variable that turns export on (the standard OTLP one; the exporter also honours
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `…_HEADERS` and `…_TIMEOUT`).
pub const ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// The service name when `OTEL_SERVICE_NAME` does not give one.
pub const SERVICE_NAME: &str = "ai-failover";

/// The tracer provider and whether it exports.
pub struct Tracing {
    /// Builds the spans (and, when exporting, batches them to the collector).
    pub provider: SdkTracerProvider,
    /// The exporter could not be built (bad endpoint): the message, to log once logging is up.
    pub export_error: Option<String>,
    /// Spans leave the process.
    pub exporting: bool,
}

/// A provider for this process. Without an endpoint no exporter is built at all, so nothing
/// tries (and fails, loudly, in a loop) to reach a collector that is not there.
pub fn provider() -> Tracing {
    let mut builder = SdkTracerProvider::builder().with_resource(resource());
    let mut export_error = None;
    let mut exporting = false;
    if std::env::var(ENDPOINT_ENV).is_ok_and(|v| !v.trim().is_empty()) {
        // reqwest is built without a default TLS provider; the client build panics without
        // one, even for a plain-HTTP endpoint.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // The default blocking client: the SDK's batch processor exports from its own
        // thread, where an async client would find no tokio reactor.
        match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
        {
            Ok(exporter) => {
                builder = builder.with_batch_exporter(exporter);
                exporting = true;
            }
            Err(e) => export_error = Some(e.to_string()),
        }
    }
    Tracing {
        provider: builder.build(),
        export_error,
        exporting,
    }
}

/// The OpenTelemetry layer over `provider`, as `telemetry::init` installs it when exporting.
///
/// Entering a span (every poll of an instrumented future) would otherwise also activate its
/// OpenTelemetry context and time it: for other OpenTelemetry instrumentation (there is none
/// here; propagation reads the span itself) and `busy_ns`/`idle_ns` attributes, at a third of
/// the layer's cost. Thread ids mean little on a work-stealing runtime.
pub fn layer<S>(
    provider: &SdkTracerProvider,
) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    tracing_opentelemetry::layer()
        .with_tracer(tracer(provider))
        .with_context_activation(false)
        .with_tracked_inactivity(false)
        .with_threads(false)
}

/// A tracer of `provider` for this crate's spans.
pub fn tracer(provider: &SdkTracerProvider) -> opentelemetry_sdk::trace::Tracer {
    provider.tracer(SERVICE_NAME)
}

fn resource() -> Resource {
    let builder = Resource::builder();
    // The builder already reads OTEL_SERVICE_NAME; only fill in when it is absent.
    if std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.is_empty()) {
        builder.build()
    } else {
        builder.with_service_name(SERVICE_NAME).build()
    }
}
