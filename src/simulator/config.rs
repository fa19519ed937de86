//! What to simulate: the providers, their wire APIs, keys and initial faults.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::Faults;
pub use crate::config::Api;

/// One simulated provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimProvider {
    /// Path prefix on the shared listener (`/<name>/…`); also the key in call counts.
    pub name: String,
    /// The vendor wire API it speaks.
    pub api: Api,
    /// When set, calls must carry this key in the vendor's auth header.
    #[serde(default)]
    pub expected_key: Option<String>,
    /// Faults in force from the start.
    #[serde(default)]
    pub faults: Faults,
    /// An extra listener serving this provider alone, with unprefixed paths. Needed to
    /// simulate refused connections (a closed port) rather than dropped ones.
    #[serde(default)]
    pub dedicated_listen: Option<SocketAddr>,
}

impl SimProvider {
    /// A healthy provider with no key and no dedicated port.
    pub fn new(name: impl Into<String>, api: Api) -> Self {
        SimProvider {
            name: name.into(),
            api,
            expected_key: None,
            faults: Faults::default(),
            dedicated_listen: None,
        }
    }

    /// The same provider requiring `key`.
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.expected_key = Some(key.into());
        self
    }

    /// The same provider with initial `faults`.
    pub fn with_faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }

    /// The same provider with its own listener too.
    pub fn with_dedicated(mut self, addr: SocketAddr) -> Self {
        self.dedicated_listen = Some(addr);
        self
    }
}

/// The whole simulator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimConfig {
    /// The shared listener (port 0 = any free port).
    pub listen: SocketAddr,
    /// The simulated providers, each under `/<name>` on `listen`.
    pub providers: Vec<SimProvider>,
    /// Seeds the fault RNGs (each provider's faults may override it); absent = entropy.
    #[serde(default)]
    pub seed: Option<u64>,
}

impl SimConfig {
    /// Listens on a free loopback port; add providers with [`SimConfig::provider`].
    pub fn local() -> Self {
        SimConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            providers: Vec::new(),
            seed: None,
        }
    }

    /// Adds a provider.
    pub fn provider(mut self, p: SimProvider) -> Self {
        self.providers.push(p);
        self
    }

    /// Rejects names that cannot be a path prefix, duplicates and bad faults.
    pub fn validate(&self) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for p in &self.providers {
            let ok = !p.name.is_empty()
                && !p.name.starts_with('_')
                && p.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
            if !ok {
                return Err(format!(
                    "provider name {:?}: use [A-Za-z0-9._-], not starting with '_'",
                    p.name
                ));
            }
            if !seen.insert(p.name.as_str()) {
                return Err(format!("provider {:?} given twice", p.name));
            }
            p.faults
                .validate()
                .map_err(|e| format!("provider {:?}: {e}", p.name))?;
        }
        Ok(())
    }
}
