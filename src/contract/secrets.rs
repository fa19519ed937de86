//! Provider API keys at rest: KV `ai_secrets/<provider>` (the fleet's key) and
//! `ai_secrets/<provider>.<tenant>` (a tenant's own key, used for its calls), each encrypted with AES-256-GCM
//! under the fleet's master key (`[secrets]`), set, listed and deleted through the control
//! endpoints `keys.set`, `keys.list` and `keys.delete` (operators only; every call audited).
//! Nothing here ever holds a key in clear.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Actor, ProviderId, Timestamp};

/// The `ai_secrets` key of `provider`'s key for `tenant` (`None`: the fleet's own).
pub fn secret_key(provider: &str, tenant: Option<&str>) -> String {
    match tenant {
        None => provider.to_string(),
        Some(t) => format!("{provider}.{t}"),
    }
}

/// `ai_secrets/<provider>` or `ai_secrets/<provider>.<tenant>`: one key, encrypted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SecretRecord {
    pub provider: ProviderId,
    /// The tenant whose calls use it (bring your own key); absent: the fleet's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Names this version of the key (a UUID).
    pub key_id: String,
    /// The first 16 hex digits of the key's SHA-256: tells two keys apart, reveals nothing.
    pub fingerprint: String,
    /// `aes-256-gcm`.
    pub algorithm: String,
    /// The first 16 hex digits of the master key's SHA-256: a worker with another master key
    /// says so instead of failing to decrypt.
    pub master_key_id: String,
    /// Base64, 12 bytes.
    pub nonce: String,
    /// Base64: the encrypted key and its 16-byte tag. The additional data is the record's
    /// `ai_secrets` key (the provider id, and the tenant's), so a copy under another name
    /// does not open.
    pub ciphertext: String,
    pub created_at: Timestamp,
    pub set_by: Actor,
}

/// `keys.set` request. The CLI reads the key from standard input, never from its arguments.
#[derive(Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeysSetRequest {
    pub provider: String,
    /// A tenant's own key, used for that tenant's calls (bring your own key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The key itself: validated against the provider with a free call, then stored
    /// encrypted. Redacted in the audit trail.
    pub api_key: String,
}

/// What is shown of a stored key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct KeyInfo {
    pub provider: ProviderId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    pub key_id: String,
    pub fingerprint: String,
    pub created_at: Timestamp,
    pub set_by: Actor,
}

/// `keys.set` reply: the key was accepted by the provider and stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct KeysSetReply {
    pub key: KeyInfo,
}

/// `keys.list` reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct KeysListReply {
    pub keys: Vec<KeyInfo>,
}

/// `keys.delete` request: the provider falls back to its `api_key_env` / `api_key_file`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeysDeleteRequest {
    pub provider: String,
    /// Delete the tenant's own key (its calls go back to the fleet's key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// `keys.delete` reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct KeysDeleteReply {
    /// False when there was no stored key.
    pub deleted: bool,
}

impl std::fmt::Debug for KeysSetRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeysSetRequest")
            .field("provider", &self.provider)
            .field("tenant", &self.tenant)
            .field("api_key", &"[redacted]")
            .finish()
    }
}

impl SecretRecord {
    /// Its key in `ai_secrets`.
    pub fn store_key(&self) -> String {
        secret_key(&self.provider, self.tenant.as_deref())
    }
}

impl From<&SecretRecord> for KeyInfo {
    fn from(r: &SecretRecord) -> Self {
        KeyInfo {
            provider: r.provider.clone(),
            tenant: r.tenant.clone(),
            key_id: r.key_id.clone(),
            fingerprint: r.fingerprint.clone(),
            created_at: r.created_at,
            set_by: r.set_by.clone(),
        }
    }
}
