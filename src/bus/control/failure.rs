//! Why a control request failed, and how that goes on the wire: the micro protocol's error
//! headers (`Nats-Service-Error`, `Nats-Service-Error-Code`) plus a JSON [`ControlError`]
//! body, so that both micro-aware tools and plain JSON clients see the reason.

use crate::contract::{AuditOutcome, ControlError};

/// A control request that could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum ControlFailure {
    /// The body is not the JSON the endpoint takes.
    #[error("invalid request for `{endpoint}`: {message}")]
    BadRequest { endpoint: String, message: String },
    /// The request names a provider the fleet does not have.
    #[error("unknown provider `{given}`; known providers: {}", known.join(", "))]
    UnknownProvider { given: String, known: Vec<String> },
    /// A field value is out of range.
    #[error("{0}")]
    Invalid(String),
    /// The caller may not make this call.
    #[error("denied: {0}")]
    Denied(String),
    /// The shared state (KV, events stream) could not be read or written.
    #[error("fleet state unavailable: {0}")]
    Unavailable(String),
}

impl ControlFailure {
    /// The micro-protocol status code (HTTP-like).
    pub fn code(&self) -> u16 {
        match self {
            ControlFailure::BadRequest { .. } | ControlFailure::Invalid(_) => 400,
            ControlFailure::UnknownProvider { .. } => 404,
            ControlFailure::Denied(_) => 403,
            ControlFailure::Unavailable(_) => 503,
        }
    }

    /// How the audit trail records it.
    pub fn outcome(&self) -> AuditOutcome {
        match self {
            ControlFailure::Denied(_) => AuditOutcome::Denied,
            _ => AuditOutcome::Error,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> ControlError {
        ControlError {
            error: self.to_string(),
        }
    }

    /// The description for the `Nats-Service-Error` header (one line: headers cannot hold
    /// line breaks).
    pub fn header_text(&self) -> String {
        self.to_string().replace(['\r', '\n'], " ")
    }
}

impl From<super::super::kv_record::KvError> for ControlFailure {
    fn from(e: super::super::kv_record::KvError) -> Self {
        ControlFailure::Unavailable(crate::telemetry::chain(&e))
    }
}

impl From<super::super::event_log::EventLogError> for ControlFailure {
    fn from(e: super::super::event_log::EventLogError) -> Self {
        ControlFailure::Unavailable(crate::telemetry::chain(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_provider_names_the_known_ones() {
        let f = ControlFailure::UnknownProvider {
            given: "nope".into(),
            known: vec!["a".into(), "b".into()],
        };
        assert_eq!(f.code(), 404);
        assert_eq!(
            f.body().error,
            "unknown provider `nope`; known providers: a, b"
        );
    }

    #[test]
    fn header_text_is_one_line() {
        let f = ControlFailure::Invalid("two\nlines".into());
        assert_eq!(f.header_text(), "two lines");
    }
}
