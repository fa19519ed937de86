//! What every command-line client starts with: the worker's configuration file (loaded
//! without the provider-key rule: clients never call providers) and a NATS connection.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream;

use crate::bus::setup;
use crate::config::{self, Config};
use crate::contract::Names;

/// How long a client waits for NATS before saying it is unreachable (the worker's connect
/// retries forever, which is right for a service and wrong for a command).
const CONNECT_WAIT: Duration = Duration::from_secs(10);

/// A connected client.
pub struct Client {
    pub cfg: Config,
    pub nats: async_nats::Client,
    pub js: jetstream::Context,
    pub names: Names,
}

/// Loads `config` and connects as `name`.
pub async fn connect(config: &Path, name: &str) -> anyhow::Result<Client> {
    let cfg =
        config::load_for_client(config).with_context(|| format!("loading {}", config.display()))?;
    let nats = tokio::time::timeout(CONNECT_WAIT, setup::connect_named(&cfg.nats, name))
        .await
        .with_context(|| {
            format!(
                "NATS at {} did not answer within {} s",
                cfg.nats.url,
                CONNECT_WAIT.as_secs()
            )
        })??;
    let mut js = jetstream::new(nats.clone());
    js.set_timeout(Duration::from_millis(cfg.nats.request_timeout_ms));
    let names = Names::new(cfg.nats.prefix.clone());
    Ok(Client {
        cfg,
        nats,
        js,
        names,
    })
}

impl Client {
    /// A bucket the workers created; a clear error if no worker ever ran set-up.
    pub async fn bucket(&self, name: String) -> anyhow::Result<jetstream::kv::Store> {
        self.js.get_key_value(&name).await.with_context(|| {
            format!("bucket {name} not found: start a worker or run `ai-failover setup` first")
        })
    }
}
