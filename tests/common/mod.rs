//! Test helpers shared by the integration tests: a real `nats-server` per test, configs.
#![allow(dead_code)]

pub mod fleet;
pub mod logs;
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

/// The answer the fake providers give: a buy signal naming `provider`, with fixed usage
/// (1,000 input and 100 output tokens) so cost arithmetic can be checked.
pub fn fake_completion(model: &str, provider: &str) -> ai_failover::providers::Completion {
    use ai_failover::contract::{Action, Signal, Usage};
    ai_failover::providers::Completion {
        model: model.to_string(),
        answer: ai_failover::providers::Answer::Signal(Signal {
            action: Action::Buy,
            confidence: 0.8,
            rationale: format!("from {provider}"),
            position_size: 0.5,
            horizon: "1d".into(),
        }),
        usage: Usage {
            input_tokens: 1_000,
            output_tokens: 100,
        },
        http_status: 200,
    }
}
