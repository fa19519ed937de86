//! Test helpers shared by the integration tests: a real `nats-server` per test, configs.
#![allow(dead_code)]

pub mod fleet;
pub mod nats;
pub mod workers;

use ai_failover::config::{self, Config};

/// A valid config around `providers_toml`, pointing at `nats_url`.
pub fn config_with(nats_url: &str, providers_toml: &str) -> Config {
    let toml =
        format!("[nats]\nurl = \"{nats_url}\"\n[worker]\nhttp_listen = \"\"\n{providers_toml}");
    config::load_str(&toml).unwrap_or_else(|e| panic!("test config is invalid: {e}"))
}

/// One local (keyless) provider: enough for set-up tests.
pub const ONE_LOCAL_PROVIDER: &str = r#"
[[providers]]
id = "local"
api = "openai"
base_url = "http://127.0.0.1:9/v1"
models = ["m1"]
tier = "local"
"#;
