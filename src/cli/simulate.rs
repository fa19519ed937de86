//! `ai-failover simulate`: the simulator as a standalone process (compose, demos, manual
//! failover drills through the control API).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};

use crate::simulator::{Api, Faults, SimConfig, SimProvider, Simulator};

/// Options of the `simulate` subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// Shared listener: every provider under `/<name>/…`, the control API under `/_sim`.
    #[arg(long, env = "AI_FAILOVER_SIM_LISTEN", default_value = "127.0.0.1:8700")]
    pub listen: SocketAddr,
    /// A provider as NAME=API[@ADDR] (API: openai | anthropic | gemini; ADDR: a dedicated
    /// port). Repeatable; default: openai=openai, anthropic=anthropic, gemini=gemini.
    #[arg(long = "provider", value_name = "NAME=API[@ADDR]", value_parser = parse_provider)]
    pub providers: Vec<ProviderSpec>,
    /// Expected key as NAME=KEY, or NAME=env:VAR to read it from the environment
    /// (keeps it out of `ps`). Repeatable.
    #[arg(long = "key", value_name = "NAME=KEY", value_parser = parse_pair)]
    pub keys: Vec<(String, String)>,
    /// Initial faults as NAME=JSON. Repeatable; applied after `--faults-file`.
    #[arg(long = "faults", value_name = "NAME=JSON", value_parser = parse_pair)]
    pub faults: Vec<(String, String)>,
    /// A JSON object mapping provider names to faults.
    #[arg(long, value_name = "FILE")]
    pub faults_file: Option<PathBuf>,
    /// Seed for the fault RNGs, for reproducible runs.
    #[arg(long, env = "AI_FAILOVER_SIM_SEED")]
    pub seed: Option<u64>,
}

/// `--provider NAME=API[@ADDR]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderSpec {
    /// Path prefix and key of the provider.
    pub name: String,
    /// Wire API it speaks.
    pub api: Api,
    /// Its own listener, if any.
    pub dedicated: Option<SocketAddr>,
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=VALUE, got {s:?}"))?;
    Ok((k.trim().to_owned(), v.to_owned()))
}

fn parse_provider(s: &str) -> Result<ProviderSpec, String> {
    let (name, rest) = parse_pair(s)?;
    let (api, addr) = match rest.split_once('@') {
        Some((api, addr)) => (api, Some(addr)),
        None => (rest.as_str(), None),
    };
    let api = match api.trim() {
        "openai" => Api::Openai,
        "anthropic" => Api::Anthropic,
        "gemini" => Api::Gemini,
        other => {
            return Err(format!(
                "unknown api {other:?} (openai | anthropic | gemini)"
            ));
        }
    };
    let dedicated = addr
        .map(|a| a.parse().map_err(|e| format!("bad address {a:?}: {e}")))
        .transpose()?;
    Ok(ProviderSpec {
        name,
        api,
        dedicated,
    })
}

impl SimulateArgs {
    /// The simulator configuration these options describe.
    pub fn to_config(&self) -> anyhow::Result<SimConfig> {
        let specs = if self.providers.is_empty() {
            ["openai", "anthropic", "gemini"]
                .into_iter()
                .map(|n| parse_provider(&format!("{n}={n}")))
                .collect::<Result<Vec<_>, _>>()
                .map_err(anyhow::Error::msg)?
        } else {
            self.providers.clone()
        };
        let mut faults: BTreeMap<String, Faults> = match &self.faults_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                serde_json::from_str(&text)
                    .with_context(|| format!("parsing faults in {}", path.display()))?
            }
            None => BTreeMap::new(),
        };
        for (name, json) in &self.faults {
            let f = serde_json::from_str(json).with_context(|| format!("--faults {name}"))?;
            faults.insert(name.clone(), f);
        }
        let mut keys = BTreeMap::new();
        for (name, key) in &self.keys {
            let key = match key.strip_prefix("env:") {
                Some(var) => std::env::var(var).with_context(|| format!("--key {name}: ${var}"))?,
                None => key.clone(),
            };
            keys.insert(name.clone(), key);
        }
        for name in faults.keys().chain(keys.keys()) {
            if !specs.iter().any(|s| &s.name == name) {
                bail!("faults or key given for unknown provider {name:?}");
            }
        }
        let providers = specs
            .into_iter()
            .map(|s| SimProvider {
                expected_key: keys.remove(&s.name),
                faults: faults.remove(&s.name).unwrap_or_default(),
                dedicated_listen: s.dedicated,
                name: s.name,
                api: s.api,
            })
            .collect();
        let config = SimConfig {
            listen: self.listen,
            providers,
            seed: self.seed,
        };
        config.validate().map_err(anyhow::Error::msg)?;
        Ok(config)
    }
}

/// Runs the simulator until Ctrl-C or SIGTERM, printing each provider's base URL.
pub async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let sim = Simulator::start(args.to_config()?).await?;
    for name in sim.providers() {
        let url = sim.base_url(&name).unwrap_or_default();
        match sim.dedicated_base_url(&name) {
            Some(d) => println!("{name}: {url} (dedicated: {d})"),
            None => println!("{name}: {url}"),
        }
    }
    println!("control: {}", sim.control_url());
    shutdown_signal().await;
    sim.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cmd {
        #[command(flatten)]
        args: SimulateArgs,
    }

    #[test]
    fn builds_a_config_from_flags() {
        let cmd = Cmd::try_parse_from([
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--provider",
            "openai=openai",
            "--provider",
            "local=openai@127.0.0.1:0",
            "--key",
            "openai=sk-test",
            "--faults",
            r#"local={"hang":true}"#,
        ])
        .unwrap();
        let c = cmd.args.to_config().unwrap();
        assert_eq!(c.providers.len(), 2);
        assert_eq!(c.providers[0].expected_key.as_deref(), Some("sk-test"));
        assert!(c.providers[1].faults.hang);
        assert!(c.providers[1].dedicated_listen.is_some());
    }

    #[test]
    fn rejects_unknown_names_and_apis() {
        assert!(parse_provider("x=grok").is_err());
        let cmd = Cmd::try_parse_from(["sim", "--key", "nobody=k"]).unwrap();
        assert!(cmd.args.to_config().is_err());
    }
}
