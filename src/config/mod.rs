//! Configuration: one TOML file plus `AI_FAILOVER_*` environment overrides, validated at
//! load so that a bad value stops start-up with the key that is wrong and how to fix it.
//!
//! API keys never live in the file: a provider names the environment variable
//! (`api_key_env`) or file (`api_key_file`) that holds its key, and the key is read into a
//! [`secrecy::SecretString`] that never prints.

mod access;
mod alerts;
mod checker;
mod history;
mod learning;
mod load;
mod secrets;
mod tenants;
mod types;
mod validate;

pub use load::{ENV_PREFIX, load, load_for_client, load_str, load_str_for_client};
pub use tenants::{MAX_QUOTA, TenantConfig};
pub use types::*;
pub use validate::ConfigError;
