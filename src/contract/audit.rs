//! The audit trail (`<prefix>.audit.<endpoint>`, stream `AI_AUDIT`): one record per control
//! call that reached a worker, over NATS or the REST API, whatever its outcome.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Timestamp;

/// Who made a call. Over NATS the identity comes only from the server-stamped
/// `Nats-Request-Info` header (never from the payload): `verified` says the server gave one.
/// Over the REST API it is the id of the bearer token that was presented.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Actor {
    /// True when the NATS server vouched for the caller, or a configured token matched.
    pub verified: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The client's connection name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The `[[http.tokens]]` id of a REST caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
}

impl Actor {
    /// A caller nobody vouched for.
    pub fn unverified() -> Actor {
        Actor::default()
    }

    /// A REST caller whose bearer token matched `[[http.tokens]]` entry `id`.
    pub fn token(id: &str) -> Actor {
        Actor {
            verified: true,
            token_id: Some(id.to_string()),
            ..Actor::default()
        }
    }

    /// A short name for logs and the dashboard: `operator@OPS`, `token:ops-laptop`, `unverified`.
    pub fn label(&self) -> String {
        match (&self.token_id, &self.user, &self.account) {
            (Some(id), _, _) => format!("token:{id}"),
            (None, Some(user), Some(account)) => format!("{user}@{account}"),
            (None, Some(user), None) => user.clone(),
            (None, None, Some(account)) => format!("@{account}"),
            (None, None, None) => "unverified".into(),
        }
    }
}

wire_enum! {
    /// How an audited call ended.
    pub enum AuditOutcome {
        /// Done as asked.
        Ok,
        /// Refused: the caller's role does not allow it (or no valid token was presented).
        Denied,
        /// Bad request or a failure while acting on it; nothing was changed.
        Error,
    }
}

wire_enum! {
    /// The way the call came in.
    pub enum AuditChannel {
        /// The control micro-service (`<prefix>.control.<endpoint>`), also what the CLI uses.
        Nats,
        /// The REST API (`/api/ai/failover/...`).
        Rest,
    }
}

/// `<prefix>.audit.<endpoint>` (stream `AI_AUDIT`): one control call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AuditRecord {
    pub audit_id: String,
    pub at: Timestamp,
    pub actor: Actor,
    /// The control endpoint's name (`force-status`, `mode.set`, …); REST calls are audited
    /// under the endpoint they mirror.
    pub endpoint: String,
    pub channel: AuditChannel,
    /// The request's arguments as sent, with secret-looking fields redacted; the raw text
    /// (cut to 1 KiB) under `unparsed` when the body was not JSON.
    pub arguments: serde_json::Value,
    pub outcome: AuditOutcome,
    /// Why the call was denied or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub worker_id: String,
}
