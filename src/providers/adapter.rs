//! The one [`Provider`] implementation, generic over a vendor's wire shapes.
//!
//! Sending, the size- and time-capped read, error classification and key scrubbing are the
//! same for every vendor, so they live here once; a [`Wire`] only knows how its vendor
//! spells a request and an answer.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Client, RequestBuilder, StatusCode};
use secrecy::ExposeSecret;
use serde_json::Value;
use tokio::time::{Instant, timeout_at};

use super::classify::{classify, error_in_body};
use super::http::{from_reqwest, read_body, timed_out};
use super::reply::Reply;
use super::{Completion, Provider, ProviderCall, ProviderError, message};
use crate::config::Api;
use crate::contract::ErrorClass;

/// A vendor's request and answer shapes.
pub(crate) trait Wire: Send + Sync + 'static {
    /// Which error and rate-limit conventions apply.
    const API: Api;

    /// The request that asks `call.model` for an answer (URL, headers, JSON body).
    fn completion(
        &self,
        client: &Client,
        call: &ProviderCall,
    ) -> Result<RequestBuilder, ProviderError>;

    /// A request that costs nothing and proves the key and the endpoint work.
    fn probe(&self, client: &Client, model: &str) -> Result<RequestBuilder, ProviderError>;

    /// The answer in a 2xx body; `model` is what was asked for, used when the vendor
    /// does not say which model answered.
    fn reply(&self, body: &Value, model: &str) -> Result<Reply, ProviderError>;

    /// The keys it calls with, so that the one a call used can be scrubbed from any message
    /// a vendor echoes it in.
    fn keys(&self) -> &super::KeySlot;
}

/// A provider speaking the wire API `W` over HTTP.
#[derive(Debug)]
pub(crate) struct HttpAdapter<W> {
    id: String,
    client: Client,
    max_response_bytes: usize,
    wire: W,
}

impl<W: Wire> HttpAdapter<W> {
    pub(crate) fn new(id: String, client: Client, max_response_bytes: usize, wire: W) -> Self {
        HttpAdapter {
            id,
            client,
            max_response_bytes,
            wire,
        }
    }

    /// Sends `request` and returns the JSON of a 2xx answer that is not an error object;
    /// everything else becomes a classified error. `timeout` covers the whole exchange,
    /// connect to last body byte.
    async fn exchange(
        &self,
        request: RequestBuilder,
        timeout: Duration,
    ) -> Result<(StatusCode, Value), ProviderError> {
        let deadline = Instant::now() + timeout;
        let response = timeout_at(deadline, request.timeout(timeout).send())
            .await
            .map_err(|_| timed_out())?
            .map_err(from_reqwest)?;
        let status = response.status();
        let headers = response.headers().clone();
        if !status.is_success() {
            // The status is what matters; an error body too big or too slow to read
            // still leaves the status to classify by.
            let body = read_body(response, self.max_response_bytes, deadline)
                .await
                .unwrap_or_default();
            return Err(classify(W::API, status, &headers, &body));
        }
        let body = read_body(response, self.max_response_bytes, deadline)
            .await
            .map_err(|e| e.with_status(status.as_u16()))?;
        let invalid = |reason: String| {
            ProviderError::new(ErrorClass::InvalidResponse, reason).with_status(status.as_u16())
        };
        let text =
            std::str::from_utf8(&body).map_err(|_| invalid("body is not valid UTF-8".into()))?;
        let json: Value = serde_json::from_str(text)
            .map_err(|e| invalid(format!("body is not valid JSON: {e}")))?;
        if let Some(error) = error_in_body(W::API, status, &headers, &json) {
            return Err(error);
        }
        Ok((status, json))
    }

    /// The same error with any echo of the key blanked out. A tenant's own key the vendor
    /// refuses or rate-limits is that tenant's problem, not the provider's: `key_unavailable`
    /// (fails over, never quarantines or pauses the provider for the fleet).
    /// `used` is the key the call went out with and, for a tenant's own key, the tenant (read
    /// when the call was made: a key rotated meanwhile is not the one to scrub or blame).
    fn scrub(&self, mut error: ProviderError, used: &UsedKey<'_>) -> ProviderError {
        if let Some(key) = &used.key {
            error.message = message::without(&error.message, key.expose_secret());
        }
        let key_bound = matches!(error.class, ErrorClass::Auth | ErrorClass::RateLimited);
        if key_bound && let Some(t) = used.tenants_own {
            let what = if error.class == ErrorClass::Auth {
                "refused"
            } else {
                "rate-limited"
            };
            error.class = ErrorClass::KeyUnavailable;
            error.message = format!("tenant {t}'s own key was {what}: {}", error.message);
        }
        error
    }
}

/// The key a call went out with, and whose it was.
struct UsedKey<'a> {
    key: Option<secrecy::SecretString>,
    /// The tenant whose own key it was; `None` for the fleet's.
    tenants_own: Option<&'a str>,
}

impl<'a> UsedKey<'a> {
    fn of(keys: &super::KeySlot, tenant: Option<&'a str>) -> Self {
        UsedKey {
            key: keys.current_for(tenant),
            tenants_own: tenant.filter(|t| keys.has_tenant_key(t)),
        }
    }
}

#[async_trait]
impl<W: Wire> Provider for HttpAdapter<W> {
    fn id(&self) -> &str {
        &self.id
    }

    async fn complete(&self, call: &ProviderCall) -> Result<Completion, ProviderError> {
        let used = UsedKey::of(self.wire.keys(), call.tenant.as_deref());
        let result = async {
            let request = self.wire.completion(&self.client, call)?;
            let (status, body) = self.exchange(request, call.timeout).await?;
            let reply = self
                .wire
                .reply(&body, &call.model)
                .map_err(|e| e.with_status(status.as_u16()))?;
            reply.into_completion(call.kind, status.as_u16())
        };
        result.await.map_err(|e| self.scrub(e, &used))
    }

    fn has_tenant_key(&self, tenant: &str) -> bool {
        self.wire.keys().has_tenant_key(tenant)
    }

    async fn probe(&self, model: &str, timeout: Duration) -> Result<(), ProviderError> {
        let result = async {
            let request = self.wire.probe(&self.client, model)?;
            self.exchange(request, timeout).await.map(drop)
        };
        let used = UsedKey::of(self.wire.keys(), None);
        result.await.map_err(|e| self.scrub(e, &used))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::key_slot::KeySlot;
    use crate::providers::openai::OpenAi;
    use secrecy::SecretString;

    #[test]
    fn debug_output_hides_the_key() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let key = SecretString::from("sk-CANARY-debug");
        let adapter = HttpAdapter::new(
            "p".into(),
            Client::new(),
            1024,
            OpenAi::new("http://localhost/v1", KeySlot::new(Some(key))),
        );
        let debug = format!("{adapter:?}");
        assert!(debug.contains("REDACTED"), "{debug}");
        assert!(!debug.contains("CANARY"), "{debug}");
    }
}
