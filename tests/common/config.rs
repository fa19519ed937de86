//! The one way tests build a configuration: TOML tables given piece by piece (a later key of
//! a table replaces an earlier one, so test defaults and a test's own settings combine
//! without duplicate-table errors), providers appended, then loaded and validated like a
//! real file.

use ai_failover::config::{self, Config};

/// A configuration being put together.
#[derive(Debug, Clone, Default)]
pub struct TestConfig {
    /// `(table header, [(key, line)])`, in first-seen order.
    tables: Vec<(String, Vec<(String, String)>)>,
    /// `[[providers]]` entries, verbatim.
    providers: Vec<String>,
}

impl TestConfig {
    /// A configuration for a worker at `nats_url`, with the HTTP port off.
    pub fn new(nats_url: &str) -> Self {
        TestConfig::default()
            .set("nats", "url", &format!("\"{nats_url}\""))
            .set("worker", "http_listen", "\"\"")
    }

    /// `key = value` in `[table]` (replacing an earlier value).
    pub fn set(mut self, table: &str, key: &str, value: &str) -> Self {
        let line = format!("{key} = {value}");
        let entries = match self.tables.iter_mut().find(|(h, _)| h == table) {
            Some((_, entries)) => entries,
            None => {
                self.tables.push((table.to_string(), Vec::new()));
                &mut self.tables.last_mut().expect("just pushed").1
            }
        };
        match entries.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = line,
            None => entries.push((key.to_string(), line)),
        }
        self
    }

    /// The tables and providers of a TOML text, merged in.
    pub fn merge(mut self, toml: &str) -> Self {
        let mut table = String::new();
        let mut provider: Option<String> = None;
        for line in toml.lines() {
            let trimmed = line.trim();
            if trimmed == "[[providers]]" {
                self.providers.extend(provider.take());
                provider = Some(String::new());
                continue;
            }
            if trimmed.starts_with('[') {
                self.providers.extend(provider.take());
                table = trimmed.trim_matches(['[', ']']).to_string();
                continue;
            }
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            if let Some(p) = provider.as_mut() {
                p.push_str(line);
                p.push('\n');
            } else if let Some((key, value)) = trimmed.split_once('=') {
                self = self.set(&table, key.trim(), value.trim());
            }
        }
        self.providers.extend(provider);
        self
    }

    /// Adds a `[[providers]]` entry (its keys, without the header).
    pub fn provider(mut self, body: &str) -> Self {
        self.providers.push(body.to_string());
        self
    }

    /// The TOML text.
    pub fn toml(&self) -> String {
        let mut out = String::new();
        for (header, entries) in &self.tables {
            out += &format!("[{header}]\n");
            for (_, line) in entries {
                out += line;
                out.push('\n');
            }
        }
        for p in &self.providers {
            out += "[[providers]]\n";
            out += p;
            if !p.ends_with('\n') {
                out.push('\n');
            }
        }
        out
    }

    /// Loaded and validated as a worker would.
    pub fn load(&self) -> Config {
        let toml = self.toml();
        config::load_str(&toml).unwrap_or_else(|e| panic!("test config is invalid: {e}\n{toml}"))
    }

    /// Loaded and validated as a client would (provider keys not needed).
    pub fn load_for_client(&self) -> Config {
        let toml = self.toml();
        config::load_str_for_client(&toml)
            .unwrap_or_else(|e| panic!("test config is invalid: {e}\n{toml}"))
    }
}
