use std::collections::HashSet;

use secrecy::ExposeSecret;

use super::checker::{Checker, Problem};
use super::types::*;

/// Why the configuration could not be loaded. Never contains a secret value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {message}")]
    Read { path: String, message: String },
    #[error("config error at `{key}`: {message}")]
    Parse { key: String, message: String },
    #[error("invalid configuration:\n{}", list(.0))]
    Invalid(Vec<Problem>),
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfigError {
    /// The offending keys, for tests and tooling.
    pub fn keys(&self) -> Vec<String> {
        match self {
            ConfigError::Read { .. } => vec![],
            ConfigError::Parse { key, .. } => vec![key.clone()],
            ConfigError::Invalid(ps) => ps.iter().map(|p| p.key.clone()).collect(),
        }
    }
}

/// Whether `reply_prefix` keeps every `reply_to` it admits away from `$…` subjects (KV, the
/// JetStream API, system subjects) and from the fleet's own `<fleet_prefix>.…` subjects.
pub fn reply_prefix_is_safe(reply_prefix: &str, fleet_prefix: &str) -> bool {
    let own = format!("{fleet_prefix}.");
    !reply_prefix.is_empty()
        && !reply_prefix.starts_with('$')
        && !reply_prefix.contains(['*', '>', ' ', '\t', '\r', '\n'])
        && !reply_prefix.starts_with(&own)
        && !own.starts_with(reply_prefix)
}

fn valid_token(s: &str, max: usize) -> bool {
    (1..=max).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Which rules apply: a worker calls providers and needs their keys; a client (publish,
/// status, watch, control) only talks to NATS and must not need them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rules {
    Worker,
    Client,
}

/// Checks every rule serde cannot; returns all problems at once.
pub(super) fn validate(cfg: &Config, rules: Rules) -> Vec<Problem> {
    let mut c = Checker(Vec::new());
    let n = &cfg.nats;
    for (i, u) in n.url.split(',').map(str::trim).enumerate() {
        let ok = url::Url::parse(u)
            .is_ok_and(|p| matches!(p.scheme(), "nats" | "tls" | "ws" | "wss") && p.has_host());
        c.check(
            ok,
            "nats.url",
            format!("URL #{} `{u}` is not a NATS URL", i + 1),
            "write nats://host:4222 (or tls://, ws://, wss://); separate cluster seeds with commas",
        );
    }
    c.check(
        valid_token(&n.prefix, 32),
        "nats.prefix",
        format!("`{}` is not a valid prefix", n.prefix),
        "use 1-32 characters from [A-Za-z0-9_-] (no dots: it becomes stream and bucket names)",
    );
    c.check(
        (1..=5).contains(&n.replicas),
        "nats.replicas",
        format!("{} replicas", n.replicas),
        "use 1 on a single server, 3 on a cluster (at most 5)",
    );
    c.check(
        n.request_timeout_ms >= 100,
        "nats.request_timeout_ms",
        "below 100 ms",
        "use at least 100 (default 5000)",
    );

    check_nats_auth(&mut c, n);

    let w = &cfg.worker;
    c.check(
        w.max_in_flight >= 1,
        "worker.max_in_flight",
        "must be at least 1",
        "set the number of concurrent requests per worker, e.g. 64",
    );
    c.check(
        w.default_deadline_ms >= 1,
        "worker.default_deadline_ms",
        "must be at least 1",
        "set a deadline in ms, e.g. 30000",
    );
    c.check(
        (1024..=8 * 1024 * 1024).contains(&w.max_request_bytes),
        "worker.max_request_bytes",
        format!("{} bytes", w.max_request_bytes),
        "use 1 KiB..=8 MiB (default 262144)",
    );
    for (i, p) in w.reply_prefixes.iter().enumerate() {
        c.check(
            reply_prefix_is_safe(p, &n.prefix),
            "worker.reply_prefixes",
            format!("entry #{} `{p}` would let a request's reply_to reach a `$` subject, the fleet's own `{}.` subjects, or every subject", i + 1, n.prefix),
            "list the prefixes your clients reply on, e.g. [\"_INBOX.\", \"desk.replies.\"]: not empty, no wildcards or spaces, not starting with `$` or with the nats.prefix",
        );
    }
    c.check(
        w.ack_wait_ms >= 1_000,
        "worker.ack_wait_ms",
        "below 1000 ms",
        "use at least 1000; in-progress acks are sent every third of it",
    );
    c.check(
        w.max_deliver >= 2,
        "worker.max_deliver",
        "must be at least 2",
        "allow redelivery after a crash, e.g. 5",
    );
    c.check(
        w.max_ack_pending >= 1,
        "worker.max_ack_pending",
        "must be at least 1",
        "e.g. 1000",
    );
    if !w.http_listen.is_empty() {
        c.check(
            w.http_listen.parse::<std::net::SocketAddr>().is_ok(),
            "worker.http_listen",
            format!("`{}` is not an address:port", w.http_listen),
            "write e.g. 127.0.0.1:9464, 0.0.0.0:9464, or \"\" to turn it off",
        );
    }

    let e = &cfg.engine;
    c.unit(e.retry_budget_ratio, "engine.retry_budget_ratio".into());
    c.unit(
        e.fallback_max_confidence,
        "engine.fallback_max_confidence".into(),
    );
    c.check(
        e.backoff_base_ms <= e.backoff_max_ms,
        "engine.backoff_base_ms",
        "larger than engine.backoff_max_ms",
        "make backoff_base_ms <= backoff_max_ms",
    );
    c.check(
        e.health_check_interval_ms >= 1_000,
        "engine.health_check_interval_ms",
        "below 1000 ms",
        "use at least 1000 (default 300000 = 5 min)",
    );
    c.check(
        e.probe_interval_ms >= 100,
        "engine.probe_interval_ms",
        "below 100 ms",
        "use e.g. 1000 (about one probe a second for the whole fleet)",
    );
    c.check(
        (100..=60_000).contains(&e.probe_timeout_ms),
        "engine.probe_timeout_ms",
        "outside 100..=60000 ms",
        "use e.g. 2000",
    );
    c.check(
        e.min_call_ms <= 60_000,
        "engine.min_call_ms",
        "above 60000 ms",
        "use e.g. 100",
    );
    c.check(
        e.max_output_tokens >= 16,
        "engine.max_output_tokens",
        "below 16",
        "a signal needs room: use e.g. 512",
    );
    c.check(
        e.max_response_bytes >= 4096,
        "engine.max_response_bytes",
        "below 4096",
        "use e.g. 1048576",
    );

    check_breaker(&mut c, "breaker", &cfg.breaker);

    for (name, m) in [
        ("normal", cfg.modes.normal),
        ("degraded", cfg.modes.degraded),
        ("conservative", cfg.modes.conservative),
        ("minimal", cfg.modes.minimal),
    ] {
        c.unit(
            m.position_multiplier,
            format!("modes.{name}.position_multiplier"),
        );
        c.unit(m.min_confidence, format!("modes.{name}.min_confidence"));
    }

    c.check(
        !cfg.providers.is_empty(),
        "providers",
        "no provider is configured",
        "add at least one [[providers]] table (see config/example.toml)",
    );
    let mut seen = HashSet::new();
    for (i, p) in cfg.providers.iter().enumerate() {
        let k = |f: &str| format!("providers[{i}].{f}");
        c.check(
            valid_token(&p.id, 32)
                && p.id.bytes().all(|b| !b.is_ascii_uppercase())
                && !p.id.starts_with('_'),
            k("id"),
            format!("`{}` is not a valid provider id", p.id),
            "use 1-32 characters from [a-z0-9_-], not starting with `_` (the fleet's own keys \
             do); it becomes a subject token and KV key",
        );
        c.check(
            seen.insert(p.id.clone()),
            k("id"),
            format!("duplicate provider id `{}`", p.id),
            "give every [[providers]] table its own id",
        );
        let url_ok = url::Url::parse(&p.base_url)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
        c.check(
            url_ok,
            k("base_url"),
            format!("`{}` is not an http(s) URL", p.base_url),
            "write it as the vendor SDK takes it, e.g. https://api.openai.com/v1 or https://api.anthropic.com",
        );
        c.check(
            !p.models.is_empty() && p.models.iter().all(|m| !m.trim().is_empty()),
            k("models"),
            "the model list is empty or has an empty name",
            "list the models to try in order, e.g. models = [\"gpt-4o\", \"gpt-4o-mini\"]",
        );
        c.check(
            p.timeout_ms >= 100,
            k("timeout_ms"),
            "below 100 ms",
            "use e.g. 20000",
        );
        c.check(
            p.connect_timeout_ms >= 10,
            k("connect_timeout_ms"),
            "below 10 ms",
            "use e.g. 2000",
        );
        c.check(
            p.cost.input_per_mtok >= 0.0 && p.cost.output_per_mtok >= 0.0,
            k("cost"),
            "negative price",
            "prices are USD per million tokens, >= 0",
        );
        if let Some(b) = p.daily_budget_usd {
            c.check(
                b > 0.0 && b.is_finite(),
                k("daily_budget_usd"),
                format!("{b}"),
                "use a positive amount in USD, or remove the key for no budget",
            );
        }
        c.check(
            p.weight > 0.0 && p.weight.is_finite(),
            k("weight"),
            format!("{}", p.weight),
            "use a positive weight, e.g. 1.0",
        );
        if let Some(o) = &p.breaker {
            check_breaker(&mut c, &k("breaker"), &cfg.breaker.with(o));
        }
        if p.tier == Tier::Remote && rules == Rules::Worker {
            let fix = format!(
                "export the key in the environment variable named by api_key_env (e.g. {}_API_KEY), or point api_key_file at a file holding it",
                p.id.to_uppercase().replace('-', "_")
            );
            match (&p.api_key_env, &p.api_key_file) {
                // Its key is then set with `ai-failover keys set` (encrypted in ai_secrets).
                (None, None) if cfg.secrets.configured() => {}
                (None, None) => c.check(
                    false,
                    k("api_key_env"),
                    "a remote provider needs an API key",
                    &format!(
                        "{fix}; or configure [secrets] and set it with `ai-failover keys set`"
                    ),
                ),
                _ => c.check(
                    p.api_key.is_some(),
                    if p.api_key_env.is_some() {
                        k("api_key_env")
                    } else {
                        k("api_key_file")
                    },
                    match (&p.api_key_env, &p.api_key_file) {
                        (Some(v), _) => format!("environment variable `{v}` is not set or empty"),
                        (None, Some(f)) => {
                            format!("key file `{}` is missing or empty", f.display())
                        }
                        (None, None) => "no api_key_env or api_key_file is given".to_string(),
                    },
                    &fix,
                ),
            }
        }
    }
    c.check(
        (1..=36_500).contains(&cfg.audit.retention_days),
        "audit.retention_days",
        format!("{} days", cfg.audit.retention_days),
        "keep the audit trail between 1 and 36500 days (default 400)",
    );
    super::learning::check(&mut c, &cfg.feedback, &cfg.quality);
    super::history::check(&mut c, &cfg.history);
    super::secrets::check(&mut c, &cfg.secrets);
    super::tenants::check(&mut c, cfg);
    if rules == Rules::Worker {
        super::alerts::check(&mut c, &cfg.alerts);
        check_tokens(&mut c, &cfg.http.tokens);
    }
    c.0
}

/// TLS files and credentials must be usable as given: a certificate without its key would
/// otherwise be ignored silently and the connection made without client authentication.
fn check_nats_auth(c: &mut Checker, n: &NatsConfig) {
    c.check(
        n.tls_cert_file.is_some() == n.tls_key_file.is_some(),
        if n.tls_cert_file.is_some() {
            "nats.tls_key_file"
        } else {
            "nats.tls_cert_file"
        },
        "a client certificate and its key go together; only one is given",
        "set both nats.tls_cert_file and nats.tls_key_file (PEM), or neither",
    );
    let files = [
        ("nats.tls_ca_file", &n.tls_ca_file),
        ("nats.tls_cert_file", &n.tls_cert_file),
        ("nats.tls_key_file", &n.tls_key_file),
        ("nats.creds_file", &n.creds_file),
        ("nats.nkey_file", &n.nkey_file),
    ];
    for (key, file) in files {
        if let Some(f) = file {
            c.check(
                f.is_file(),
                key,
                format!("`{}` does not exist or is not a file", f.display()),
                "point it at a readable file (paths are relative to the working directory)",
            );
        }
    }
    if n.user.is_some() {
        let var = n.password_env.as_deref().unwrap_or("NATS_PASSWORD");
        c.check(
            std::env::var(var).is_ok_and(|v| !v.is_empty()),
            "nats.password_env",
            format!("nats.user is set but the password variable `{var}` is not set or empty"),
            "export the password in that variable, or name another with nats.password_env",
        );
    } else {
        c.check(
            n.password_env.is_none(),
            "nats.password_env",
            "a password without nats.user",
            "set nats.user as well, or remove nats.password_env",
        );
    }
    if let Some(var) = &n.token_env {
        c.check(
            std::env::var(var).is_ok_and(|v| !v.is_empty()),
            "nats.token_env",
            format!("environment variable `{var}` is not set or empty"),
            "export the token in that variable, or remove nats.token_env",
        );
    }
}

/// Shorter tokens can be guessed; ids name callers in the audit trail, so they are unique.
const MIN_TOKEN_LEN: usize = 16;

fn check_tokens(c: &mut Checker, tokens: &[HttpToken]) {
    for (i, t) in tokens.iter().enumerate() {
        let k = |f: &str| format!("http.tokens[{i}].{f}");
        c.check(
            valid_token(&t.id, 64),
            k("id"),
            format!("`{}` is not a valid id", t.id),
            "use 1-64 characters from [A-Za-z0-9_-]",
        );
        c.check(
            !tokens[..i].iter().any(|o| o.id == t.id),
            k("id"),
            format!("`{}` is used twice", t.id),
            "give every token its own id: the audit trail names callers by it",
        );
        match (&t.token_env, &t.token_file) {
            (Some(_), Some(_)) | (None, None) => c.check(
                false,
                k("token_env"),
                "give exactly one of token_env and token_file",
                "name the environment variable (token_env) or the file (token_file) holding the token",
            ),
            (env, file) => {
                let len = t.token.as_ref().map_or(0, |s| s.expose_secret().len());
                let (key, what) = match (env, file) {
                    (Some(v), _) => (k("token_env"), format!("environment variable `{v}`")),
                    (_, Some(f)) => (k("token_file"), format!("token file `{}`", f.display())),
                    (None, None) => (k("token_env"), String::new()),
                };
                c.check(
                    len >= MIN_TOKEN_LEN,
                    key,
                    format!("{what} is unset, empty or shorter than {MIN_TOKEN_LEN} characters"),
                    "put a random token there, e.g. `openssl rand -hex 32`",
                );
            }
        }
    }
}

fn check_breaker(c: &mut Checker, at: &str, b: &BreakerConfig) {
    let k = |f: &str| format!("{at}.{f}");
    c.check(
        b.consecutive_failures >= 1,
        k("consecutive_failures"),
        "must be at least 1",
        "e.g. 3",
    );
    c.check(
        b.failure_rate > 0.0 && b.failure_rate <= 1.0,
        k("failure_rate"),
        format!("{}", b.failure_rate),
        "use a fraction in (0, 1], e.g. 0.5",
    );
    c.check(b.window >= 1, k("window"), "must be at least 1", "e.g. 20");
    c.check(
        b.min_calls >= 1 && b.min_calls <= b.window,
        k("min_calls"),
        format!("{} with window {}", b.min_calls, b.window),
        "use 1 <= min_calls <= window",
    );
    c.check(
        b.slow_call_rate > 0.0 && b.slow_call_rate <= 1.0,
        k("slow_call_rate"),
        format!("{}", b.slow_call_rate),
        "use a fraction in (0, 1], e.g. 0.8",
    );
    c.check(
        b.open_ms >= 1 && b.open_ms <= b.max_open_ms,
        k("open_ms"),
        format!("{} with max_open_ms {}", b.open_ms, b.max_open_ms),
        "use 1 <= open_ms <= max_open_ms",
    );
    c.check(
        b.half_open_probes >= 1,
        k("half_open_probes"),
        "must be at least 1",
        "e.g. 1",
    );
}
