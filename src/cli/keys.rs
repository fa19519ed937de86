//! `ai-failover keys set|list|delete`: provider keys in the fleet's encrypted store, through
//! the control service (operators only; every call audited with the key redacted). `set`
//! reads the key from standard input — never from its arguments or environment, which other
//! users of the machine may see — and a worker validates it with the provider before storing.

use std::io::{IsTerminal, Read};

use anyhow::{Context, bail};

use crate::contract::{KeyInfo, KeysDeleteReply, KeysListReply, KeysSetReply};

use super::client;
use super::control;

/// `keys` arguments.
#[derive(Debug, clap::Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub command: KeysCommand,
}

/// The `keys` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Read a provider's key from standard input, have it validated by the provider, and store
    /// it encrypted; running workers use it from their next call.
    Set {
        #[command(flatten)]
        file: super::ConfigFile,
        #[command(flatten)]
        key: KeyOf,
    },
    /// The stored keys: provider, key id, fingerprint, when and by whom (never the key).
    List {
        #[command(flatten)]
        file: super::ConfigFile,
    },
    /// Delete a provider's stored key: it goes back to its api_key_env / api_key_file (a
    /// tenant's: its calls go back to the fleet's key).
    Delete {
        #[command(flatten)]
        file: super::ConfigFile,
        #[command(flatten)]
        key: KeyOf,
    },
}

/// Whose key: a provider's (the fleet's), or a tenant's own for that provider. Also the body
/// of `keys.delete`, and of `keys.set` without the key.
#[derive(Debug, clap::Args, serde::Serialize)]
pub struct KeyOf {
    #[arg(long)]
    provider: String,
    /// A tenant's own key, used for its calls only (bring your own key).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant: Option<String>,
}

/// A validation can take the provider's timeout.
const KEYS_WAIT_MS: u64 = 60_000;

fn line(k: &KeyInfo) -> String {
    let who = k
        .set_by
        .user
        .as_deref()
        .or(k.set_by.name.as_deref())
        .unwrap_or("unknown");
    format!(
        "{:<12} {:<12} {:<36} {}  {}  {who}",
        k.provider.as_str(),
        k.tenant.as_deref().unwrap_or("(fleet)"),
        k.key_id,
        k.fingerprint,
        k.created_at.format("%Y-%m-%d %H:%M:%S")
    )
}

/// Runs the subcommand.
pub async fn run(args: KeysArgs) -> anyhow::Result<()> {
    match args.command {
        KeysCommand::Set { file, key: of } => {
            let provider = &of.provider;
            if std::io::stdin().is_terminal() {
                bail!(
                    "standard input is a terminal, which would echo the key: pipe it in, e.g. `ai-failover keys set --provider {provider} --config F < key-file`"
                );
            }
            let mut key = String::new();
            std::io::stdin()
                .read_to_string(&mut key)
                .context("cannot read the key from standard input")?;
            let key = key.trim();
            if key.is_empty() {
                bail!(
                    "no key on standard input: pipe it in, e.g. `ai-failover keys set --provider {provider} --config F < key-file`"
                );
            }
            let mut body = serde_json::to_value(&of)?;
            body["api_key"] = key.into();
            let body = body.to_string();
            let c = client::connect(&file.config, "ai-failover keys").await?;
            let reply: KeysSetReply = control::fetch(&c, "keys.set", body, KEYS_WAIT_MS).await?;
            println!("stored, validated by {}: {}", provider, line(&reply.key));
        }
        KeysCommand::List { file } => {
            let c = client::connect(&file.config, "ai-failover keys").await?;
            let reply: KeysListReply =
                control::fetch(&c, "keys.list", "{}".into(), KEYS_WAIT_MS).await?;
            if reply.keys.is_empty() {
                println!("no stored keys: every provider uses its api_key_env / api_key_file");
            }
            for k in &reply.keys {
                println!("{}", line(k));
            }
        }
        KeysCommand::Delete { file, key: of } => {
            let body = serde_json::to_string(&of)?;
            let c = client::connect(&file.config, "ai-failover keys").await?;
            let reply: KeysDeleteReply =
                control::fetch(&c, "keys.delete", body, KEYS_WAIT_MS).await?;
            println!(
                "{}",
                if reply.deleted {
                    "deleted: the provider is back on its configured key"
                } else {
                    "no stored key for that provider"
                }
            );
        }
    }
    Ok(())
}
