//! `[secrets]`: the master key that encrypts provider keys in `ai_secrets` (AES-256-GCM):
//! 32 random bytes, hex-encoded (`openssl rand -hex 32`), from a variable or a file, never
//! from this file itself.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::checker::Checker;

/// `[secrets]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsConfig {
    /// Environment variable holding the master key ...
    pub master_key_env: Option<String>,
    /// ... or a file holding it (e.g. a mounted secret).
    pub master_key_file: Option<std::path::PathBuf>,
    /// The key, read at load; never serialized. `None` when neither is set or it is empty:
    /// then stored keys cannot be read (their providers are unavailable on this worker, with
    /// the reason) and `keys.set` is refused.
    #[serde(skip)]
    pub master_key: Option<SecretString>,
}

impl SecretsConfig {
    /// Whether a master key source is configured at all.
    pub fn configured(&self) -> bool {
        self.master_key_env.is_some() || self.master_key_file.is_some()
    }
}

/// Whether `text` is 32 bytes in hex.
pub fn is_master_key(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The checks of `[secrets]`: a master key that is there must be well-formed.
pub(super) fn check(c: &mut Checker, s: &SecretsConfig) {
    let key = if s.master_key_env.is_some() {
        "secrets.master_key_env"
    } else {
        "secrets.master_key_file"
    };
    c.check(
        !(s.master_key_env.is_some() && s.master_key_file.is_some()),
        key,
        "both master_key_env and master_key_file are given",
        "keep one",
    );
    if let Some(k) = &s.master_key {
        c.check(
            is_master_key(k.expose_secret()),
            key,
            "the master key is not 64 hex digits (the value is not shown)",
            "use 32 random bytes in hex, as `openssl rand -hex 32` prints",
        );
    }
}
