//! Turning a raw request message into a valid request, or into a dead letter's reason.

use base64::Engine as _;

use crate::config::WorkerConfig;
use crate::contract::{
    AnalysisRequest, DEAD_LETTER_PAYLOAD_LIMIT, DeadLetter, DeadLetterClass, DeadLetterError,
    Timestamp,
};

/// Why a message cannot be served.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub class: DeadLetterClass,
    pub message: String,
    /// The request id, when the payload got that far.
    pub request_id: Option<String>,
}

/// The last token of a request subject (`signal` in `ai.analysis.request.signal`).
pub fn kind_token(subject: &str) -> &str {
    subject.rsplit('.').next().unwrap_or("")
}

/// What the fleet accepts beyond the request schema (from `[worker]`).
#[derive(Debug, Clone, Copy)]
pub struct Intake<'a> {
    /// Larger payloads are `too_large`.
    pub max_bytes: usize,
    /// The only subjects `reply_to` may name, by prefix.
    pub reply_prefixes: &'a [String],
}

impl<'a> From<&'a WorkerConfig> for Intake<'a> {
    fn from(w: &'a WorkerConfig) -> Self {
        Intake {
            max_bytes: w.max_request_bytes,
            reply_prefixes: &w.reply_prefixes,
        }
    }
}

/// Decodes and validates `payload` received on `subject`.
pub fn decode(
    subject: &str,
    payload: &[u8],
    intake: Intake<'_>,
) -> Result<AnalysisRequest, Rejection> {
    let max_bytes = intake.max_bytes;
    let reject = |class, message: String, request_id| Rejection {
        class,
        message,
        request_id,
    };
    if payload.len() > max_bytes {
        return Err(reject(
            DeadLetterClass::TooLarge,
            format!("{} bytes is over the {max_bytes}-byte limit", payload.len()),
            None,
        ));
    }
    // The common case in one pass; only a payload that fails is parsed again, as a JSON
    // value, to tell bad JSON from a bad request and to find its id.
    let request = match serde_json::from_slice::<AnalysisRequest>(payload) {
        Ok(r) => r,
        Err(e) => return Err(diagnose(payload, &e)),
    };
    let id = || {
        crate::contract::is_valid_request_id(&request.request_id)
            .then(|| request.request_id.clone())
    };
    request
        .validate(Some(kind_token(subject)))
        .map_err(|e| reject(DeadLetterClass::InvalidRequest, e.to_string(), id()))?;
    if let Some(reply) = &request.reply_to
        && !reply_allowed(reply, intake.reply_prefixes)
    {
        let message = format!(
            "reply_to `{reply}` is not allowed: replies go only to subjects starting with {} (worker.reply_prefixes)",
            intake.reply_prefixes.join(" or ")
        );
        return Err(reject(DeadLetterClass::InvalidRequest, message, id()));
    }
    Ok(request)
}

/// Whether `reply_to` starts with one of `prefixes`.
pub fn reply_allowed(reply_to: &str, prefixes: &[String]) -> bool {
    prefixes.iter().any(|p| reply_to.starts_with(p.as_str()))
}

/// Why `payload`, which did not parse as an analysis request (`error`), was rejected.
fn diagnose(payload: &[u8], error: &serde_json::Error) -> Rejection {
    let value: serde_json::Value = match serde_json::from_slice(payload) {
        Ok(v) => v,
        Err(e) => {
            return Rejection {
                class: DeadLetterClass::InvalidJson,
                message: format!("not JSON: {e}"),
                request_id: None,
            };
        }
    };
    let request_id = value
        .get("request_id")
        .and_then(|v| v.as_str())
        .filter(|id| crate::contract::is_valid_request_id(id))
        .map(str::to_string);
    Rejection {
        class: DeadLetterClass::InvalidRequest,
        message: format!("not an analysis request: {error}"),
        request_id,
    }
}

/// The `Nats-Msg-Id` of the dead letter for message `seq` of `stream`: whoever writes it (the
/// worker holding the message, or the advisory handler after it) and however often, the dead
/// letter stream keeps one.
pub fn dead_letter_msg_id(stream: &str, seq: u64) -> String {
    format!("{stream}.{seq}")
}

/// The dead letter for a rejected message.
pub fn dead_letter(
    subject: &str,
    payload: &[u8],
    rejection: Rejection,
    delivery_count: u64,
    worker_id: &str,
    at: Timestamp,
) -> DeadLetter {
    let kept = &payload[..payload.len().min(DEAD_LETTER_PAYLOAD_LIMIT)];
    DeadLetter {
        request_id: rejection.request_id,
        kind: kind_token(subject).to_string(),
        subject: subject.to_string(),
        error: DeadLetterError {
            class: rejection.class,
            message: rejection.message,
        },
        payload_b64: base64::engine::general_purpose::STANDARD.encode(kept),
        payload_bytes: payload.len() as u64,
        delivery_count,
        worker_id: worker_id.to_string(),
        at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &str = "ai.analysis.request.signal";

    fn inbox() -> Vec<String> {
        vec!["_INBOX.".to_string()]
    }

    /// `max_bytes` and the default reply prefixes.
    fn limit(max_bytes: usize) -> Intake<'static> {
        static INBOX: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(inbox);
        Intake {
            max_bytes,
            reply_prefixes: &INBOX,
        }
    }

    #[test]
    fn reply_to_must_start_with_an_allowed_prefix() {
        let ask = |reply: &str| {
            let body = format!(
                r#"{{"request_id":"r9","kind":"signal","symbol":"A","reply_to":"{reply}"}}"#
            );
            decode(S, body.as_bytes(), limit(1024))
        };
        assert!(ask("_INBOX.abc.1").is_ok());
        for hostile in ["$KV.ai_provider_health.openai", "ai.events.mode", "desk.x"] {
            let e = ask(hostile).unwrap_err();
            assert_eq!(e.class, DeadLetterClass::InvalidRequest, "{hostile}");
            assert!(
                e.message.contains("reply_to") && e.message.contains("worker.reply_prefixes"),
                "{}",
                e.message
            );
            assert_eq!(e.request_id.as_deref(), Some("r9"));
        }
    }

    #[test]
    fn each_reason_is_classified() {
        assert_eq!(
            decode(S, b"{oops", limit(1024)).unwrap_err().class,
            DeadLetterClass::InvalidJson
        );
        assert_eq!(
            decode(S, &[b' '; 2048], limit(1024)).unwrap_err().class,
            DeadLetterClass::TooLarge
        );
        let e = decode(S, br#"{"kind":"signal","symbol":"A"}"#, limit(1024)).unwrap_err();
        assert_eq!(e.class, DeadLetterClass::InvalidRequest);
        let e = decode(
            S,
            br#"{"request_id":"r 1","kind":"signal","symbol":"A"}"#,
            limit(1024),
        )
        .unwrap_err();
        assert_eq!(e.class, DeadLetterClass::InvalidRequest);
        let e = decode(S, br#"{"request_id":"r1","kind":"risk"}"#, limit(1024)).unwrap_err();
        assert!(e.message.contains("does not match"), "{}", e.message);
        assert_eq!(e.request_id.as_deref(), Some("r1"));
        assert!(
            decode(
                S,
                br#"{"request_id":"r1","kind":"signal","symbol":"A"}"#,
                limit(1024)
            )
            .is_ok()
        );
    }

    #[test]
    fn a_request_that_does_not_parse_keeps_its_id_and_the_reason() {
        let e = decode(
            S,
            br#"{"request_id":"r2","kind":"signal","symbol":"A","deadline_ms":"soon"}"#,
            limit(1024),
        )
        .unwrap_err();
        assert_eq!(e.class, DeadLetterClass::InvalidRequest);
        assert_eq!(e.request_id.as_deref(), Some("r2"));
        assert!(e.message.contains("invalid type"), "{}", e.message);
        // An ambiguous request (which symbol?) is refused, not read last-key-wins.
        let e = decode(
            S,
            br#"{"request_id":"r3","kind":"signal","symbol":"A","symbol":"B"}"#,
            limit(1024),
        )
        .unwrap_err();
        assert_eq!(e.class, DeadLetterClass::InvalidRequest);
        assert!(
            e.message.contains("duplicate field `symbol`"),
            "{}",
            e.message
        );
        assert_eq!(e.request_id.as_deref(), Some("r3"));
    }

    #[test]
    fn dead_letters_keep_at_most_64_kib_of_payload() {
        let big = vec![b'x'; 100_000];
        let r = decode(S, &big, limit(10)).unwrap_err();
        let dl = dead_letter(S, &big, r, 1, "w", crate::engine::clock::wall_now());
        assert_eq!(dl.payload_bytes, 100_000);
        assert!(dl.payload_b64.len() <= DEAD_LETTER_PAYLOAD_LIMIT * 4 / 3 + 4);
        assert_eq!(dl.kind, "signal");
    }
}
