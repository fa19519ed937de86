//! Test helpers shared by the integration tests: a real `nats-server` per test, configs.
#![allow(dead_code)]

pub mod config;
pub mod control;
pub mod fleet;
pub mod logs;
pub mod nats;
pub mod providers;
pub mod workers;

use std::time::Duration;

use ai_failover::config::Config;

/// A valid config around `providers_toml`, pointing at `nats_url`.
pub fn config_with(nats_url: &str, providers_toml: &str) -> Config {
    config::TestConfig::new(nats_url)
        .merge(providers_toml)
        .load()
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

/// What a polled check can say: `true`/`false`, or `Some(value)`/`None`.
pub trait Ready {
    type Value;
    fn ready(self) -> Option<Self::Value>;
}

impl Ready for bool {
    type Value = ();
    fn ready(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Ready for Option<T> {
    type Value = T;
    fn ready(self) -> Option<T> {
        self
    }
}

/// Polls `check` every 20 ms until it is ready, for at most `within` (then fails, naming
/// `what`): an observable condition, not a guess at how long something takes.
pub async fn eventually<R: Ready>(
    within: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> R,
) -> R::Value {
    let until = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = check().await.ready() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
