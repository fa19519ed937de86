//! What can go wrong with a simulated provider. Serde-serialisable so the control API and the
//! CLI take it as JSON; every field is optional, so `{}` is a healthy provider.

use serde::{Deserialize, Serialize};

/// Faults injected into one simulated provider. Replaced as a whole when set.
///
/// Probes (model listings and lookups) meet connection faults, latency, outages, auth and
/// the server-side error classes (see [`FaultClass::hits_probes`]), so active health checks
/// see what real calls see; request-specific classes and body faults hit generations only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Delay before every answer (errors included), as real vendors are slow on errors too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<Latency>,
    /// Probability per call of answering with each error class.
    #[serde(skip_serializing_if = "ErrorRates::is_zero")]
    pub error_rate: ErrorRates,
    /// A window during which every call is a server error (503, Anthropic 529).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outage: Option<Outage>,
    /// Accept calls and never answer them.
    #[serde(skip_serializing_if = "is_false")]
    pub hang: bool,
    /// Send successful bodies a few bytes at a time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slow_drip: Option<SlowDrip>,
    /// `Retry-After` seconds of injected 429s (default 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_s: Option<u64>,
    /// Answer every successful call with this kind of broken body (and injected
    /// `invalid_response` errors with it too).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub malformed: Option<Malformed>,
    /// Dedicated port: closed (ECONNREFUSED). Shared port: connections dropped unanswered.
    #[serde(skip_serializing_if = "is_false")]
    pub refuse_connections: bool,
    /// Stream a success body of exactly this many bytes, to exercise response-size caps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub huge_body_bytes: Option<u64>,
    /// How long an injected `timeout` holds the call before a 504 (default 60 000 ms); the
    /// client's own timeout is expected to fire first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_hold_ms: Option<u64>,
    /// At most this many generation calls answered at once; more are answered 429 at once
    /// (with `retry_after_s`), like a vendor's concurrency limit. Probes are not counted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u32>,
    /// Advise against the simulated market (buy ↔ sell, hold → buy): answers that parse and
    /// look confident but lose money, for the learning loop (`answer::market_action`).
    #[serde(skip_serializing_if = "is_false")]
    pub wrong_advice: bool,
    /// Seeds the fault RNG when the faults are set, so a run is reproducible.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Faults {
    /// Checks rates and ranges; the control API answers 400 with this message.
    pub fn validate(&self) -> Result<(), String> {
        self.error_rate.validate()?;
        if let Some(l) = &self.latency_ms {
            l.validate()?;
        }
        if let Some(d) = &self.slow_drip
            && d.chunk_bytes == 0
        {
            return Err("slow_drip.chunk_bytes must be at least 1".into());
        }
        Ok(())
    }
}

/// A latency distribution in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Latency {
    /// Uniform between `min` and `max`.
    Uniform {
        /// Shortest delay.
        min: u64,
        /// Longest delay.
        max: u64,
    },
    /// Log-normal with this median and 99th percentile: a long tail like real APIs.
    LogNormal {
        /// Median delay.
        p50: u64,
        /// 99th-percentile delay (draws are capped at 4× this).
        p99: u64,
    },
    /// Always the same.
    Fixed(u64),
}

impl Latency {
    fn validate(&self) -> Result<(), String> {
        match *self {
            Latency::Uniform { min, max } if min > max => {
                Err("latency_ms: min must not exceed max".into())
            }
            Latency::LogNormal { p50, p99 } if p50 == 0 || p99 < p50 => {
                Err("latency_ms: need 0 < p50 <= p99".into())
            }
            _ => Ok(()),
        }
    }
}

/// Per-class probabilities (0..=1, summing to at most 1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ErrorRates {
    /// Held for `timeout_hold_ms`, then a 504.
    pub timeout: f64,
    /// 429 with `retry-after` and the vendor's reset headers (Gemini: a `RetryInfo` detail).
    pub rate_limited: f64,
    /// OpenAI 503, Anthropic 529 `overloaded_error`, Gemini 503 `UNAVAILABLE`.
    pub overloaded: f64,
    /// 500 in the vendor's shape.
    pub server_error: f64,
    /// A revoked key: 401 (Gemini 403 `PERMISSION_DENIED`).
    pub auth: f64,
    /// 400 about a request field.
    pub bad_request: f64,
    /// 400 saying the prompt exceeds the context window.
    pub context_length: f64,
    /// 200 with the vendor's refusal (`content_filter`, `refusal`, `blockReason`).
    pub content_filtered: f64,
    /// 200 with a broken body (the `malformed` kind, else an invalid signal).
    pub invalid_response: f64,
}

/// An error class the simulator can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultClass {
    /// No answer in time (504 after a hold).
    Timeout,
    /// 429.
    RateLimited,
    /// The vendor's "overloaded" answer.
    Overloaded,
    /// Another 5xx.
    ServerError,
    /// 401/403 for a key that was valid.
    Auth,
    /// 400: the request's own fault.
    BadRequest,
    /// 400: the prompt does not fit.
    ContextLength,
    /// A safety refusal.
    ContentFiltered,
    /// A 200 that cannot be used.
    InvalidResponse,
}

impl FaultClass {
    /// Every class, in the order rates are summed.
    pub const ALL: [FaultClass; 9] = [
        FaultClass::Timeout,
        FaultClass::RateLimited,
        FaultClass::Overloaded,
        FaultClass::ServerError,
        FaultClass::Auth,
        FaultClass::BadRequest,
        FaultClass::ContextLength,
        FaultClass::ContentFiltered,
        FaultClass::InvalidResponse,
    ];

    /// The snake_case name used in JSON, matching `ErrorClass` names.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultClass::Timeout => "timeout",
            FaultClass::RateLimited => "rate_limited",
            FaultClass::Overloaded => "overloaded",
            FaultClass::ServerError => "server_error",
            FaultClass::Auth => "auth",
            FaultClass::BadRequest => "bad_request",
            FaultClass::ContextLength => "context_length",
            FaultClass::ContentFiltered => "content_filtered",
            FaultClass::InvalidResponse => "invalid_response",
        }
    }

    /// Whether the class is about the server rather than the request, so a probe (which
    /// carries no prompt) can meet it too.
    pub fn hits_probes(self) -> bool {
        matches!(
            self,
            FaultClass::Timeout
                | FaultClass::RateLimited
                | FaultClass::Overloaded
                | FaultClass::ServerError
                | FaultClass::Auth
        )
    }
}

impl ErrorRates {
    /// Every class with its rate, in a fixed order so a seeded run picks the same classes.
    pub fn entries(&self) -> [(FaultClass, f64); 9] {
        [
            (FaultClass::Timeout, self.timeout),
            (FaultClass::RateLimited, self.rate_limited),
            (FaultClass::Overloaded, self.overloaded),
            (FaultClass::ServerError, self.server_error),
            (FaultClass::Auth, self.auth),
            (FaultClass::BadRequest, self.bad_request),
            (FaultClass::ContextLength, self.context_length),
            (FaultClass::ContentFiltered, self.content_filtered),
            (FaultClass::InvalidResponse, self.invalid_response),
        ]
    }

    /// True when no error is injected.
    pub fn is_zero(&self) -> bool {
        self.entries().iter().all(|(_, r)| *r == 0.0)
    }

    /// The class a uniform draw `u` in `[0, 1)` falls on, if any.
    pub fn pick(&self, u: f64) -> Option<FaultClass> {
        let mut acc = 0.0;
        for (class, rate) in self.entries() {
            acc += rate;
            if u < acc {
                return Some(class);
            }
        }
        None
    }

    fn validate(&self) -> Result<(), String> {
        let mut sum = 0.0;
        for (class, rate) in self.entries() {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!(
                    "error_rate.{} must be within 0..=1",
                    class.as_str()
                ));
            }
            sum += rate;
        }
        if sum > 1.0 + 1e-9 {
            return Err(format!("error rates sum to {sum}, more than 1"));
        }
        Ok(())
    }
}

/// An outage window, relative to the moment the faults were set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Outage {
    /// When the outage begins, after the faults are set.
    pub start_ms: u64,
    /// How long it lasts; absent = until the faults are cleared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

impl Outage {
    /// Whether `elapsed_ms` after the faults were set falls in the window.
    pub fn covers(&self, elapsed_ms: u64) -> bool {
        elapsed_ms >= self.start_ms
            && self
                .duration_ms
                .is_none_or(|d| elapsed_ms < self.start_ms.saturating_add(d))
    }
}

/// Slow delivery of a success body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlowDrip {
    /// Bytes per chunk.
    #[serde(default = "default_chunk")]
    pub chunk_bytes: usize,
    /// Pause before each chunk after the first.
    pub interval_ms: u64,
}

fn default_chunk() -> usize {
    8
}

/// Ways a 200 answer can be broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Malformed {
    /// The vendor envelope cut off half-way.
    TruncatedJson,
    /// Not JSON at all (an HTML error page from a proxy).
    NotJson,
    /// A valid envelope whose text is prose, not JSON.
    TextNotJson,
    /// A valid envelope and JSON, but the signal breaks its ranges (confidence 1.7).
    InvalidSignal,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_json() {
        let f: Faults = serde_json::from_str(
            r#"{"latency_ms":{"p50":20,"p99":200},"error_rate":{"rate_limited":0.5},
                "outage":{"duration_ms":100},"retry_after_s":3,"malformed":"invalid_signal"}"#,
        )
        .unwrap();
        assert_eq!(f.latency_ms, Some(Latency::LogNormal { p50: 20, p99: 200 }));
        assert_eq!(f.error_rate.pick(0.4), Some(FaultClass::RateLimited));
        assert_eq!(f.error_rate.pick(0.6), None);
        assert!(f.outage.unwrap().covers(0) && !f.outage.unwrap().covers(100));
        assert!(f.validate().is_ok());
        let uniform: Latency = serde_json::from_str(r#"{"min":1,"max":2}"#).unwrap();
        assert_eq!(uniform, Latency::Uniform { min: 1, max: 2 });
    }

    #[test]
    fn rejects_rates_over_one() {
        let f: Faults =
            serde_json::from_str(r#"{"error_rate":{"timeout":0.7,"auth":0.7}}"#).unwrap();
        assert!(f.validate().is_err());
        assert!(serde_json::from_str::<Faults>(r#"{"nope":1}"#).is_err());
    }

    #[test]
    fn open_ended_outage_lasts() {
        let o = Outage {
            start_ms: 10,
            duration_ms: None,
        };
        assert!(!o.covers(9) && o.covers(10) && o.covers(u64::MAX));
    }
}
