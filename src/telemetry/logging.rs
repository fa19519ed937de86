//! Log output: human text or one JSON object per line, filtered by `RUST_LOG`.

use tracing_subscriber::EnvFilter;

/// Targets that stay at `warn` whatever `RUST_LOG` says: the OpenTelemetry SDK logs a failed
/// export at ERROR on every batch and HTTP client crates are chatty at debug, so without this
/// a missing collector or `RUST_LOG=debug` would drown the worker's own lines. The filter
/// matches by prefix, so `opentelemetry` also covers `opentelemetry_sdk` and
/// `opentelemetry-otlp`, and `hyper` covers `hyper_util`.
pub const QUIET_TARGETS: &[&str] = &["opentelemetry", "hyper", "reqwest", "h2"];

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl LogFormat {
    /// The environment variable that selects the format where no flag does.
    pub const ENV: &'static str = "AI_FAILOVER_LOG_FORMAT";

    /// The format named by [`Self::ENV`]; text when unset or unrecognised.
    pub fn from_env() -> Self {
        match std::env::var(Self::ENV) {
            Ok(v) if v.trim().eq_ignore_ascii_case("json") => LogFormat::Json,
            _ => LogFormat::Text,
        }
    }
}

/// `RUST_LOG` (default `default`, e.g. `info`; an unparseable value falls back to it rather
/// than silencing everything), with [`QUIET_TARGETS`] held at `warn`.
pub fn env_filter(default: &str) -> EnvFilter {
    filter_from(
        std::env::var(EnvFilter::DEFAULT_ENV).ok().as_deref(),
        default,
    )
}

/// [`env_filter`] over an explicit `RUST_LOG` value.
pub fn filter_from(rust_log: Option<&str>, default: &str) -> EnvFilter {
    let mut filter = rust_log
        .filter(|s| !s.trim().is_empty())
        .and_then(|s| EnvFilter::try_new(s).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    for target in QUIET_TARGETS {
        if let Ok(d) = format!("{target}=warn").parse() {
            filter = filter.add_directive(d);
        }
    }
    filter
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_targets_stay_quiet_even_at_debug() {
        let f = filter_from(Some("debug"), "info").to_string();
        for t in QUIET_TARGETS {
            assert!(f.contains(&format!("{t}=warn")), "{f}");
        }
    }

    #[test]
    fn garbage_rust_log_means_info() {
        let f = filter_from(Some("=[["), "info").to_string();
        assert!(f.contains("info"), "{f}");
    }
}
