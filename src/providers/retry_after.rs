//! How long a vendor asks us to stay away, from whichever signal it sends.
//!
//! The engine skips a rate-limited provider until then instead of sleeping, so an
//! over-long value only costs availability; still, a broken or hostile header must not
//! park a provider for a day, hence [`MAX`].

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::config::Api;

/// The longest wait we accept from any header or body.
pub const MAX: Duration = Duration::from_secs(3600);

/// The wait a response's headers ask for, standard headers first, then the vendor's
/// rate-limit reset headers. `now` is a parameter so HTTP-dates and RFC 3339 instants
/// can be tested.
pub fn from_headers(api: Api, headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let standard = header(headers, "retry-after-ms")
        .and_then(|v| v.parse::<f64>().ok())
        .and_then(|ms| seconds(ms / 1000.0))
        .or_else(|| header(headers, "retry-after").and_then(|v| retry_after_value(v, now)));
    let wait = standard.or_else(|| match api {
        Api::Openai => vendor_reset(headers, "x-ratelimit-", go_duration),
        Api::Anthropic => vendor_reset(headers, "anthropic-ratelimit-", |v| rfc3339(v, now)),
        Api::Gemini => None,
    })?;
    Some(wait.min(MAX))
}

/// Gemini's wait: `error.details[]` entry of type `google.rpc.RetryInfo`, e.g.
/// `{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "30s"}`.
pub fn from_google_details(error: &Value) -> Option<Duration> {
    error
        .get("details")?
        .as_array()?
        .iter()
        .filter(|d| {
            d.get("@type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.ends_with("google.rpc.RetryInfo"))
        })
        .find_map(|d| d.get("retryDelay")?.as_str().and_then(go_duration))
        .map(|d| d.min(MAX))
}

/// `Retry-After`: delta-seconds or an HTTP-date (RFC 9110 §10.2.3).
fn retry_after_value(value: &str, now: SystemTime) -> Option<Duration> {
    if let Ok(secs) = value.parse::<f64>() {
        return seconds(secs);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The vendor's `<prefix>{requests,tokens,…}-reset` headers. When a limit's `-remaining`
/// is 0 that limit is the one that bit, so its reset wins (the longest of those); when
/// none says 0, the earliest reset is the best guess at when a request can pass again.
fn vendor_reset(
    headers: &HeaderMap,
    prefix: &str,
    parse: impl Fn(&str) -> Option<Duration>,
) -> Option<Duration> {
    const LIMITS: [&str; 4] = ["requests", "tokens", "input-tokens", "output-tokens"];
    let mut exhausted: Option<Duration> = None;
    let mut earliest: Option<Duration> = None;
    for limit in LIMITS {
        // OpenAI spells it `x-ratelimit-reset-requests`, Anthropic
        // `anthropic-ratelimit-requests-reset`.
        let reset = header(headers, &format!("{prefix}reset-{limit}"))
            .or_else(|| header(headers, &format!("{prefix}{limit}-reset")))
            .and_then(&parse);
        let Some(reset) = reset else { continue };
        let remaining = header(headers, &format!("{prefix}remaining-{limit}"))
            .or_else(|| header(headers, &format!("{prefix}{limit}-remaining")));
        if remaining.is_some_and(|r| r.trim() == "0") {
            exhausted = exhausted.max(Some(reset));
        }
        earliest = Some(earliest.map_or(reset, |e| e.min(reset)));
    }
    exhausted.or(earliest)
}

/// An RFC 3339 instant as a wait from `now` (Anthropic's reset headers).
fn rfc3339(value: &str, now: SystemTime) -> Option<Duration> {
    let at: SystemTime = chrono::DateTime::parse_from_rfc3339(value).ok()?.into();
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A Go-style duration as OpenAI and protobuf JSON write it: `1s`, `6m0s`, `250ms`,
/// `1h2m3.5s`, `0.250s`.
pub(crate) fn go_duration(value: &str) -> Option<Duration> {
    let mut rest = value.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0_f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += number * scale;
        rest = &rest[unit_len..];
    }
    seconds(total)
}

/// Seconds as a duration, refusing negatives and NaN; huge values saturate to [`MAX`].
fn seconds(secs: f64) -> Option<Duration> {
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(MAX.as_secs_f64())))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok().map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect()
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn delta_seconds_and_http_date() {
        let now = at(1_445_412_480); // Wed, 21 Oct 2015 07:28:00 GMT
        let h = headers(&[("retry-after", "7")]);
        assert_eq!(
            from_headers(Api::Openai, &h, now),
            Some(Duration::from_secs(7))
        );
        let h = headers(&[("retry-after", "Wed, 21 Oct 2015 07:28:30 GMT")]);
        assert_eq!(
            from_headers(Api::Gemini, &h, now),
            Some(Duration::from_secs(30))
        );
        let h = headers(&[("retry-after", "Wed, 21 Oct 2015 07:00:00 GMT")]);
        assert_eq!(from_headers(Api::Gemini, &h, now), Some(Duration::ZERO));
        let h = headers(&[("retry-after", "soon")]);
        assert_eq!(from_headers(Api::Gemini, &h, now), None);
    }

    #[test]
    fn retry_after_ms_wins_and_values_are_capped() {
        let h = headers(&[("retry-after-ms", "1500"), ("retry-after", "9")]);
        assert_eq!(
            from_headers(Api::Openai, &h, at(0)),
            Some(Duration::from_millis(1500))
        );
        let h = headers(&[("retry-after", "999999")]);
        assert_eq!(from_headers(Api::Openai, &h, at(0)), Some(MAX));
        let h = headers(&[("retry-after", "-3")]);
        assert_eq!(from_headers(Api::Openai, &h, at(0)), None);
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(go_duration("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(go_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(go_duration("2m3.5s"), Some(Duration::from_millis(123_500)));
        assert_eq!(go_duration("1h"), Some(MAX));
        assert_eq!(go_duration("0.250s"), Some(Duration::from_millis(250)));
        assert_eq!(go_duration(""), None);
        assert_eq!(go_duration("5"), None);
        assert_eq!(go_duration("5d"), None);
        assert_eq!(go_duration("48h"), Some(MAX));
    }

    #[test]
    fn openai_prefers_the_exhausted_limit() {
        let h = headers(&[
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "1s"),
            ("x-ratelimit-remaining-tokens", "1200"),
            ("x-ratelimit-reset-tokens", "6m0s"),
        ]);
        assert_eq!(
            from_headers(Api::Openai, &h, at(0)),
            Some(Duration::from_secs(1))
        );
        let h = headers(&[
            ("x-ratelimit-remaining-tokens", "0"),
            ("x-ratelimit-reset-tokens", "6m0s"),
            ("x-ratelimit-reset-requests", "250ms"),
        ]);
        assert_eq!(
            from_headers(Api::Openai, &h, at(0)),
            Some(Duration::from_secs(360))
        );
        let h = headers(&[
            ("x-ratelimit-reset-tokens", "6m0s"),
            ("x-ratelimit-reset-requests", "250ms"),
        ]);
        assert_eq!(
            from_headers(Api::Openai, &h, at(0)),
            Some(Duration::from_millis(250))
        );
    }

    #[test]
    fn anthropic_reset_instants() {
        let now: SystemTime = chrono::DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z")
            .unwrap()
            .into();
        let h = headers(&[
            ("anthropic-ratelimit-requests-remaining", "0"),
            ("anthropic-ratelimit-requests-reset", "2025-01-01T00:00:20Z"),
            ("anthropic-ratelimit-tokens-reset", "2025-01-01T00:00:05Z"),
        ]);
        assert_eq!(
            from_headers(Api::Anthropic, &h, now),
            Some(Duration::from_secs(20))
        );
        // The standard header wins over the vendor's.
        let h = headers(&[
            ("retry-after", "3"),
            ("anthropic-ratelimit-requests-reset", "2025-01-01T00:00:20Z"),
        ]);
        assert_eq!(
            from_headers(Api::Anthropic, &h, now),
            Some(Duration::from_secs(3))
        );
        // Vendor headers of another API are not read.
        let h = headers(&[("x-ratelimit-reset-requests", "1s")]);
        assert_eq!(from_headers(Api::Anthropic, &h, now), None);
    }

    #[test]
    fn google_retry_info() {
        let error = serde_json::json!({
            "code": 429,
            "details": [
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "30s"}
            ]
        });
        assert_eq!(from_google_details(&error), Some(Duration::from_secs(30)));
        assert_eq!(from_google_details(&serde_json::json!({"code": 429})), None);
    }
}
