//! The HTTP plumbing every adapter shares: one way to build a client, a body reader that
//! will not hold more than the configured cap in memory, and the mapping of transport
//! failures to error classes.

use std::time::Duration;

use reqwest::header::HeaderValue;
use reqwest::{Client, Response, redirect};
use secrecy::{ExposeSecret, SecretString};
use tokio::time::{Instant, timeout_at};

use super::ProviderError;
use super::message;
use crate::config::ProviderConfig;
use crate::contract::ErrorClass;

/// The HTTP client could not be built (the TLS stack failed to initialise).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client: {0}")]
pub struct ClientError(#[source] reqwest::Error);

/// A client for one provider.
///
/// There is no client-wide total timeout: each call brings its own, bounded by the
/// request's deadline. Redirects are not followed, because reqwest only strips
/// `Authorization` on a cross-host redirect and would forward `x-api-key` or
/// `x-goog-api-key` to wherever a 3xx points.
pub fn client(cfg: &ProviderConfig) -> Result<Client, ClientError> {
    // reqwest is built without a default crypto provider; install ring for the process.
    // Err means one is already installed, which is just as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::builder()
        .connect_timeout(Duration::from_millis(cfg.connect_timeout_ms))
        .redirect(redirect::Policy::none())
        .user_agent(concat!("ai-failover/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(ClientError)
}

/// A header value carrying a secret (`prefix` + key), marked sensitive so that it never
/// shows in `Debug` output or in HTTP/2 header compression tables.
pub fn secret_header(prefix: &str, key: &SecretString) -> Result<HeaderValue, ProviderError> {
    let mut value =
        HeaderValue::try_from(format!("{prefix}{}", key.expose_secret())).map_err(|_| {
            // Only an operator can fix a key with a newline in it; the error says which
            // rule it broke, never the key.
            ProviderError::new(
                ErrorClass::Auth,
                "the API key contains characters not allowed in an HTTP header",
            )
        })?;
    value.set_sensitive(true);
    Ok(value)
}

/// Reads the whole body of `response`, failing as soon as it would exceed `max_bytes`
/// (a 100 MB answer is refused after `max_bytes`, not buffered) or when `deadline`
/// passes (a body that drips or never ends).
pub async fn read_body(
    mut response: Response,
    max_bytes: usize,
    deadline: Instant,
) -> Result<Vec<u8>, ProviderError> {
    let declared = response.content_length();
    if declared.is_some_and(|len| len > max_bytes as u64) {
        return Err(too_large(max_bytes));
    }
    let initial = declared.map_or(8 * 1024, |len| len as usize).min(max_bytes);
    let mut body = Vec::with_capacity(initial);
    loop {
        let chunk = timeout_at(deadline, response.chunk())
            .await
            .map_err(|_| timed_out())?
            .map_err(from_reqwest)?;
        let Some(chunk) = chunk else {
            return Ok(body);
        };
        if body.len() + chunk.len() > max_bytes {
            return Err(too_large(max_bytes));
        }
        body.extend_from_slice(&chunk);
    }
}

/// The error for a call that did not finish in time.
pub fn timed_out() -> ProviderError {
    ProviderError::new(
        ErrorClass::Timeout,
        "no complete answer within the call timeout",
    )
}

fn too_large(max_bytes: usize) -> ProviderError {
    ProviderError::new(
        ErrorClass::InvalidResponse,
        format!("body larger than {max_bytes} bytes"),
    )
}

/// Classifies a transport failure. The message is the innermost cause (e.g. "Connection
/// refused"); reqwest's own text carries the URL, which is safe (keys travel in headers)
/// but long.
pub fn from_reqwest(err: reqwest::Error) -> ProviderError {
    let (class, what) = if err.is_timeout() {
        (ErrorClass::Timeout, "timed out")
    } else if err.is_connect() {
        (ErrorClass::Network, "cannot connect")
    } else if err.is_builder() {
        (
            ErrorClass::Network,
            "cannot build the request (check base_url and model)",
        )
    } else if err.is_body() || err.is_decode() {
        (ErrorClass::InvalidResponse, "broken response body")
    } else {
        (ErrorClass::Network, "request failed")
    };
    let detail = match innermost_cause(&err) {
        Some(cause) => cause,
        None => err.without_url().to_string(),
    };
    ProviderError::new(class, message::short(&format!("{what}: {detail}")))
}

fn innermost_cause(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cause = err.source()?;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    Some(cause.to_string())
}
