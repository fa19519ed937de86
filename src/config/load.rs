use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::SecretString;

use super::types::Config;
use super::validate::{ConfigError, Rules, validate};

/// Environment overrides: `AI_FAILOVER_NATS__URL=nats://…` sets `nats.url` (`__` nests).
/// A provider's `base_url` is overridden by `AI_FAILOVER_PROVIDER_<ID>_BASE_URL`
/// (id upper-cased, `-` → `_`), since list entries cannot be addressed by index.
pub const ENV_PREFIX: &str = "AI_FAILOVER_";

/// Loads and validates the file at `path` plus environment overrides.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let mut cfg = load_str(&read(path)?)?;
    cfg.file = Some(path.to_path_buf());
    Ok(cfg)
}

/// Loads and validates TOML text plus environment overrides.
pub fn load_str(toml: &str) -> Result<Config, ConfigError> {
    load_with(toml, Rules::Worker)
}

/// [`load`] for the command-line clients (publish, status, watch, control): every rule
/// applies except that remote providers need an API key, since clients never call them.
pub fn load_for_client(path: &Path) -> Result<Config, ConfigError> {
    load_str_for_client(&read(path)?)
}

/// [`load_str`] with the client rules of [`load_for_client`].
pub fn load_str_for_client(toml: &str) -> Result<Config, ConfigError> {
    load_with(toml, Rules::Client)
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

fn load_with(toml: &str, rules: Rules) -> Result<Config, ConfigError> {
    let figment = Figment::from(Toml::string(toml)).merge(
        Env::prefixed(ENV_PREFIX)
            // Only `SECTION__KEY` names are configuration: every key lives in a section, and
            // the CLI's own variables (AI_FAILOVER_CONFIG, _WORKER_ID, _LOG_FORMAT) share the
            // prefix without being configuration.
            .filter(|k| !k.as_str().starts_with("provider_") && k.as_str().contains("__"))
            .split("__"),
    );
    let mut cfg: Config = figment.extract().map_err(|e| {
        let key = if e.path.is_empty() {
            "(top level)".to_string()
        } else {
            e.path.join(".")
        };
        ConfigError::Parse {
            key,
            message: e.kind.to_string(),
        }
    })?;
    for p in &mut cfg.providers {
        let var = format!(
            "{ENV_PREFIX}PROVIDER_{}_BASE_URL",
            p.id.to_uppercase().replace('-', "_")
        );
        if let Ok(url) = std::env::var(&var) {
            p.base_url = url;
        }
        p.api_key = read_key(p.api_key_env.as_deref(), p.api_key_file.as_deref());
    }
    cfg.secrets.master_key = read_key(
        cfg.secrets.master_key_env.as_deref(),
        cfg.secrets.master_key_file.as_deref(),
    );
    for t in &mut cfg.http.tokens {
        t.token = read_key(t.token_env.as_deref(), t.token_file.as_deref());
    }
    match validate(&cfg, rules) {
        problems if problems.is_empty() => Ok(cfg),
        problems => Err(ConfigError::Invalid(problems)),
    }
}

fn read_key(env: Option<&str>, file: Option<&Path>) -> Option<SecretString> {
    let raw = match (env, file) {
        (Some(var), _) => std::env::var(var).ok(),
        (None, Some(f)) => std::fs::read_to_string(f).ok(),
        (None, None) => None,
    }?;
    let trimmed = raw.trim();
    (!trimmed.is_empty()).then(|| SecretString::from(trimmed.to_string()))
}
