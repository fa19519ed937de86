//! Who may operate the fleet: `[control]` (the NATS control service), `[audit]` (the trail
//! of every control call) and `[http]` (the REST API's bearer tokens).

use std::path::PathBuf;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::contract::Role;

/// `[control]`: checks the control service makes itself, on top of the NATS server's
/// permissions (`deploy/nats/server.conf`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// Refuse every control call the NATS server did not stamp with the caller's identity
    /// (`Nats-Request-Info`, present when the call crosses accounts through a service import
    /// with `share: true`). On with `deploy/nats/server.conf`.
    pub require_identity: bool,
    /// NATS users allowed the operator's endpoints when the server names the caller; empty =
    /// leave it to the server's permissions.
    pub operators: Vec<String>,
}

/// `[audit]`: the `AI_AUDIT` stream.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// How long records are kept.
    pub retention_days: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            retention_days: 400,
        }
    }
}

/// `[http]`: the REST API on `worker.http_listen`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Bearer tokens; with none, the REST API answers only reads and the dashboard is open.
    pub tokens: Vec<HttpToken>,
}

/// One `[[http.tokens]]` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpToken {
    /// Named in the audit trail as `actor.token_id`.
    pub id: String,
    /// Environment variable holding the token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// File holding the token (e.g. a mounted secret).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    pub role: Role,
    /// The token, read from `token_env`/`token_file` at load; never serialized.
    #[serde(skip)]
    pub token: Option<SecretString>,
}
