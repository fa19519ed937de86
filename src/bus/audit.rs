//! The audit trail: one [`AuditRecord`] per control call on `<prefix>.audit.<endpoint>`
//! (stream `AI_AUDIT`), written before the caller gets its reply, so a caller who saw an
//! answer can find the record.

use async_nats::HeaderMap;
use async_nats::jetstream;
use serde_json::{Map, Value};

use crate::contract::{Actor, AuditChannel, AuditOutcome, AuditRecord, Endpoint, Names};
use crate::telemetry::metrics::name as metric;

/// Header the NATS server stamps on a request that crossed accounts through a service import
/// with `share: true`: the caller's account, user, connection name and host, as the server
/// knows them.
pub const REQUEST_INFO_HEADER: &str = "Nats-Request-Info";

/// Field names whose values never enter the trail.
const SECRET_WORDS: [&str; 6] = [
    "key",
    "token",
    "secret",
    "password",
    "authorization",
    "credential",
];

/// How much of a body that is not JSON is kept.
const UNPARSED_MAX: usize = 1024;

/// One control call, as the audit trail sees it.
pub struct Call<'a> {
    pub endpoint: Endpoint,
    pub channel: AuditChannel,
    pub actor: Actor,
    pub body: &'a [u8],
}

/// Writes audit records.
#[derive(Clone)]
pub struct Auditor {
    js: jetstream::Context,
    names: Names,
    worker_id: String,
}

impl Auditor {
    pub fn new(js: jetstream::Context, names: Names, worker_id: String) -> Self {
        Auditor {
            js,
            names,
            worker_id,
        }
    }

    /// Records `call` with its outcome and waits for the stream to have it. A record that
    /// cannot be written is logged and counted (`ai_failover_audit_failures_total`), not
    /// turned into a failure of the call: the change is made already.
    pub async fn record(&self, call: &Call<'_>, outcome: AuditOutcome, error: Option<String>) {
        let record = AuditRecord {
            audit_id: uuid::Uuid::new_v4().to_string(),
            at: crate::engine::clock::wall_now(),
            actor: call.actor.clone(),
            endpoint: call.endpoint.name().to_string(),
            channel: call.channel,
            arguments: if call.endpoint == Endpoint::KeysSet {
                key_arguments(call.body)
            } else {
                arguments(call.body)
            },
            outcome,
            error,
            worker_id: self.worker_id.clone(),
        };
        let subject = self.names.audit(call.endpoint.name());
        let written = async {
            let payload = serde_json::to_vec(&record)?;
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", record.audit_id.as_str());
            self.js
                .publish_with_headers(subject, headers, payload.into())
                .await?
                .await?;
            Ok::<_, async_nats::Error>(())
        };
        metrics::counter!(metric::AUDIT_RECORDS, "outcome" => outcome.as_str()).increment(1);
        if let Err(e) = written.await {
            metrics::counter!(metric::AUDIT_FAILURES).increment(1);
            tracing::error!(
                endpoint = call.endpoint.name(),
                actor = %call.actor.label(),
                outcome = outcome.as_str(),
                error = %e,
                "audit record not written"
            );
        }
    }
}

/// The caller as the NATS server describes it in `Nats-Request-Info`; unverified when the
/// header is absent or unreadable (a client cannot forge it: the server sets it on the way
/// through the import, and a payload is never read for identity).
pub fn actor_from_headers(headers: Option<&HeaderMap>) -> Actor {
    #[derive(serde::Deserialize)]
    struct RequestInfo {
        #[serde(default)]
        acc: Option<String>,
        #[serde(default)]
        user: Option<String>,
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        host: Option<String>,
    }
    let Some(info) = headers
        .and_then(|h| h.get(REQUEST_INFO_HEADER))
        .and_then(|v| serde_json::from_str::<RequestInfo>(v.as_str()).ok())
    else {
        return Actor::unverified();
    };
    let some = |s: Option<String>| s.filter(|s| !s.is_empty());
    Actor {
        verified: true,
        user: some(info.user),
        account: some(info.acc),
        name: some(info.name),
        host: some(info.host),
        token_id: None,
    }
}

/// A `keys.set` request for the trail: only the provider it names, whatever the body's shape
/// (a key sent as a bare string or in an odd field is never kept).
fn key_arguments(body: &[u8]) -> Value {
    let parsed = serde_json::from_slice::<Value>(body).ok();
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(name)?.as_str())
            .filter(|s| s.len() <= 64)
            .map(str::to_string)
    };
    match field("provider") {
        Some(p) => {
            let mut args = serde_json::json!({ "provider": p, "api_key": "[redacted]" });
            // Only a well-formed tenant id is kept: anything else might be key material.
            if let Some(t) = field("tenant").filter(|t| crate::contract::is_tenant_id(t)) {
                args["tenant"] = t.into();
            }
            args
        }
        None => serde_json::json!({ "unparsed_bytes": body.len() }),
    }
}

/// The request's arguments for the trail: JSON with secret-looking fields redacted, or the
/// start of the raw text when it is not JSON.
pub fn arguments(body: &[u8]) -> Value {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Value::Object(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(mut v) => {
            redact(&mut v);
            v
        }
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let cut: String = text.chars().take(UNPARSED_MAX).collect();
            serde_json::json!({ "unparsed": cut })
        }
    }
}

fn redact(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                let k = k.to_ascii_lowercase();
                if SECRET_WORDS.iter().any(|w| k.contains(w)) {
                    *v = Value::String("[redacted]".into());
                } else {
                    redact(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_looking_fields_are_redacted_at_any_depth() {
        let v = arguments(
            br#"{"provider":"openai","api_key":"sk-canary","nested":[{"Authorization":"Bearer x"}]}"#,
        );
        let text = v.to_string();
        assert!(
            !text.contains("sk-canary") && !text.contains("Bearer"),
            "{text}"
        );
        assert_eq!(v["provider"], "openai");
        assert_eq!(v["api_key"], "[redacted]");
    }

    #[test]
    fn a_body_that_is_not_json_is_kept_short() {
        let body = vec![b'x'; 5000];
        let v = arguments(&body);
        assert_eq!(v["unparsed"].as_str().map(str::len), Some(UNPARSED_MAX));
        assert_eq!(arguments(b"  "), serde_json::json!({}));
    }

    #[test]
    fn identity_comes_only_from_the_server_header() {
        assert_eq!(actor_from_headers(None), Actor::unverified());
        let mut h = HeaderMap::new();
        h.insert(
            REQUEST_INFO_HEADER,
            r#"{"acc":"OPS","user":"operator","name":"ai-failover control","host":"127.0.0.1","rtt":"1ms"}"#,
        );
        let a = actor_from_headers(Some(&h));
        assert!(a.verified);
        assert_eq!(a.label(), "operator@OPS");
        assert_eq!(a.host.as_deref(), Some("127.0.0.1"));
        let mut bad = HeaderMap::new();
        bad.insert(REQUEST_INFO_HEADER, "not json");
        assert!(!actor_from_headers(Some(&bad)).verified);
    }
}
