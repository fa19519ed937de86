//! Configuration loading: each bad value stops start-up with the key and the fix.
// Tests may panic: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use ai_failover::config::{self, ConfigError};
use common::config::TestConfig;

const NATS: &str = "[nats]\nurl = \"nats://127.0.0.1:4222\"\n";

fn provider(id: &str, extra: &str) -> String {
    format!(
        "[[providers]]\nid = \"{id}\"\napi = \"openai\"\nbase_url = \"http://127.0.0.1:1/v1\"\nmodels = [\"m\"]\ntier = \"local\"\n{extra}\n"
    )
}

fn err(toml: &str) -> ConfigError {
    config::load_str(toml).expect_err("config should be rejected")
}

#[test]
fn the_example_config_is_valid_apart_from_missing_keys() {
    let text = std::fs::read_to_string("config/example.toml").unwrap();
    let e = err(&text);
    // The three remote providers need keys from the environment; nothing else is wrong.
    let keys = e.keys();
    assert_eq!(
        keys,
        vec![
            "providers[0].api_key_env",
            "providers[1].api_key_env",
            "providers[2].api_key_env"
        ],
        "{e}"
    );
    assert!(e.to_string().contains("OPENAI_API_KEY"), "{e}");
}

#[test]
fn duplicate_ids_are_named() {
    let e = err(&format!("{NATS}{}{}", provider("a", ""), provider("a", "")));
    assert_eq!(e.keys(), vec!["providers[1].id"]);
    assert!(e.to_string().contains("duplicate provider id `a`"), "{e}");
}

#[test]
fn an_unknown_api_names_the_key_and_the_choices() {
    let toml = format!(
        "{NATS}{}",
        provider("a", "").replace("\"openai\"", "\"cohere\"")
    );
    let e = err(&toml);
    let text = e.to_string();
    assert!(text.contains("providers.0.api"), "{text}");
    assert!(
        text.contains("cohere") && text.contains("anthropic"),
        "{text}"
    );
}

#[test]
fn an_empty_model_list_is_rejected() {
    let toml = format!("{NATS}{}", provider("a", "").replace("[\"m\"]", "[]"));
    let e = err(&toml);
    assert_eq!(e.keys(), vec!["providers[0].models"]);
    assert!(e.to_string().contains("fix:"), "{e}");
}

#[test]
fn a_remote_provider_without_its_key_is_rejected() {
    let toml = format!(
        "{NATS}{}",
        provider("a", "").replace(
            "tier = \"local\"",
            "tier = \"remote\"\napi_key_env = \"AI_FAILOVER_TEST_SURELY_UNSET_KEY\""
        )
    );
    let e = err(&toml);
    assert_eq!(e.keys(), vec!["providers[0].api_key_env"]);
    assert!(
        e.to_string().contains("AI_FAILOVER_TEST_SURELY_UNSET_KEY"),
        "{e}"
    );
}

#[test]
fn a_key_file_is_read_and_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, "sk-CANARY-config-0001\n").unwrap();
    let toml = format!(
        "{NATS}{}",
        provider("a", "").replace(
            "tier = \"local\"",
            &format!("tier = \"remote\"\napi_key_file = \"{}\"", key.display())
        )
    );
    let cfg = config::load_str(&toml).expect("valid");
    assert!(cfg.providers[0].api_key.is_some());
    let debug = format!("{cfg:?}");
    assert!(!debug.contains("CANARY"), "{debug}");
    let json = serde_json::to_string(&cfg).unwrap();
    assert!(!json.contains("CANARY"), "{json}");
}

#[test]
fn bad_urls_are_rejected() {
    let toml = format!(
        "[nats]\nurl = \"http://x\"\n{}",
        provider("a", "").replace("http://127.0.0.1:1/v1", "not a url")
    );
    let e = err(&toml);
    assert_eq!(e.keys(), vec!["nats.url", "providers[0].base_url"]);
}

#[test]
fn bad_numbers_and_unknown_keys_are_rejected() {
    let e = err(&format!(
        "{NATS}[breaker]\nmin_calls = 50\nwindow = 20\n{}",
        provider("a", "")
    ));
    assert_eq!(e.keys(), vec!["breaker.min_calls"]);
    let e = err(&format!(
        "{NATS}[worker]\nmax_inflight = 3\n{}",
        provider("a", "")
    ));
    assert!(e.to_string().contains("max_inflight"), "{e}");
    let e = err(NATS);
    assert_eq!(e.keys(), vec!["providers"]);
}

#[test]
fn a_provider_breaker_override_is_layered_over_the_defaults() {
    let cfg = config::load_str(&format!(
        "{NATS}{}",
        provider("a", "breaker = { open_ms = 100 }")
    ))
    .unwrap();
    let b = cfg.breaker_for(&cfg.providers[0]);
    assert_eq!(b.open_ms, 100);
    assert_eq!(b.consecutive_failures, cfg.breaker.consecutive_failures);
}

#[test]
fn clients_load_a_config_without_provider_keys_but_keep_every_other_rule() {
    let text = std::fs::read_to_string("config/example.toml").unwrap();
    let cfg = config::load_str_for_client(&text).expect("clients need no provider keys");
    assert_eq!(cfg.providers.len(), 4);

    let bad = format!("{NATS}{}", provider("a", "").replace("[\"m\"]", "[]"));
    let e = config::load_str_for_client(&bad).expect_err("an empty model list is still wrong");
    assert_eq!(e.keys(), vec!["providers[0].models"]);
}

#[test]
fn reply_prefixes_that_would_reach_system_or_fleet_subjects_are_refused() {
    for bad in ["$KV.", "$", "ai.events.", "ai.", "a", "", "desk.*", "> "] {
        let toml = format!(
            "{NATS}[worker]\nreply_prefixes = [\"_INBOX.\", \"{bad}\"]\n{}",
            provider("a", "")
        );
        let e = err(&toml);
        assert_eq!(e.keys(), vec!["worker.reply_prefixes"], "{bad}: {e}");
        assert!(e.to_string().contains(&format!("`{bad}`")), "{e}");
    }
    let ok = format!(
        "{NATS}[worker]\nreply_prefixes = [\"_INBOX.\", \"desk.replies.\", \"aim.\"]\n{}",
        provider("a", "")
    );
    let cfg = config::load_str(&ok).expect("safe prefixes");
    assert_eq!(cfg.worker.reply_prefixes.len(), 3);
}

#[test]
fn the_test_config_builder_merges_tables_and_lets_later_keys_win() {
    let toml = TestConfig::new("nats://x:1")
        .merge("[engine]\nhedging = false\n[worker]\nack_wait_ms = 1000\n")
        .merge("[engine]\nhedge_floor_ms = 9\n[[providers]]\nid = \"a\"\n")
        .toml();
    assert_eq!(toml.matches("[engine]").count(), 1, "{toml}");
    assert!(
        toml.contains("hedging = false\nhedge_floor_ms = 9"),
        "{toml}"
    );
    assert!(
        toml.contains("http_listen = \"\"\nack_wait_ms = 1000"),
        "{toml}"
    );
    assert!(toml.ends_with("[[providers]]\nid = \"a\"\n"), "{toml}");
}

#[test]
fn nats_tls_and_credentials_must_be_usable_as_given() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("client.pem");
    std::fs::write(&cert, "PEM").unwrap();
    let with = |nats: &str| format!("{NATS}{nats}\n{}", provider("a", ""));
    // A certificate without its key would be ignored silently: refused, naming the key.
    let e = err(&with(&format!("tls_cert_file = \"{}\"", cert.display())));
    assert_eq!(e.keys(), vec!["nats.tls_key_file"], "{e}");
    let e = err(&with(&format!("tls_key_file = \"{}\"", cert.display())));
    assert_eq!(e.keys(), vec!["nats.tls_cert_file"], "{e}");
    // A file that is not there.
    let e = err(&with("tls_ca_file = \"/nonexistent/ca.pem\""));
    assert_eq!(e.keys(), vec!["nats.tls_ca_file"], "{e}");
    assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    let e = err(&with("nkey_file = \"/nonexistent/user.nk\""));
    assert_eq!(e.keys(), vec!["nats.nkey_file"], "{e}");
    // A user whose password variable is unset, a password without a user, an unset token.
    let e = err(&with(
        "user = \"worker\"\npassword_env = \"AI_FAILOVER_TEST_NEVER_SET_PASSWORD\"",
    ));
    assert_eq!(e.keys(), vec!["nats.password_env"], "{e}");
    assert!(
        e.to_string()
            .contains("AI_FAILOVER_TEST_NEVER_SET_PASSWORD"),
        "{e}"
    );
    let e = err(&with("password_env = \"HOME\""));
    assert_eq!(e.keys(), vec!["nats.password_env"], "{e}");
    let e = err(&with("token_env = \"AI_FAILOVER_TEST_NEVER_SET_TOKEN\""));
    assert_eq!(e.keys(), vec!["nats.token_env"], "{e}");
    // Client commands are held to the same rules: they connect the same way.
    let e = config::load_str_for_client(&with("tls_ca_file = \"/nonexistent/ca.pem\""))
        .expect_err("a client needs the file too");
    assert_eq!(e.keys(), vec!["nats.tls_ca_file"]);
    let both = format!(
        "tls_cert_file = \"{0}\"\ntls_key_file = \"{0}\"\ntls_ca_file = \"{0}\"",
        cert.display()
    );
    config::load_str(&with(&both)).expect("files that exist, in pairs");
}

#[test]
fn http_tokens_are_named_unique_secret_and_long_enough() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = |name: &str, token: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, token).unwrap();
        path.display().to_string()
    };
    let long = token_file("long", "0123456789abcdef0123");
    let short = token_file("short", "0123456789");
    let with = |tokens: &str| format!("{NATS}[http]\ntokens = [{tokens}]\n{}", provider("a", ""));
    let cfg = config::load_str(&with(&format!(
        r#"{{ id = "ops", token_file = "{long}", role = "operator" }}"#
    )))
    .expect("a good token");
    assert_eq!(cfg.http.tokens[0].id, "ops");
    let debug = format!("{cfg:?}");
    assert!(!debug.contains("0123456789abcdef0123"), "a token printed");
    for (tokens, key) in [
        (
            format!(r#"{{ id = "ops", token_file = "{short}", role = "operator" }}"#),
            "http.tokens[0].token_file",
        ),
        (
            r#"{ id = "ops", token_env = "AI_FAILOVER_TEST_NEVER_SET_TOKEN", role = "viewer" }"#
                .to_string(),
            "http.tokens[0].token_env",
        ),
        (
            r#"{ id = "ops", role = "viewer" }"#.to_string(),
            "http.tokens[0].token_env",
        ),
        (
            format!(
                r#"{{ id = "ops", token_file = "{long}", role = "viewer" }}, {{ id = "ops", token_file = "{long}", role = "operator" }}"#
            ),
            "http.tokens[1].id",
        ),
        (
            format!(r#"{{ id = "a b", token_file = "{long}", role = "viewer" }}"#),
            "http.tokens[0].id",
        ),
    ] {
        let e = err(&with(&tokens));
        assert_eq!(e.keys(), vec![key], "{tokens}: {e}");
    }
    let e = err(&with(&format!(
        r#"{{ id = "ops", token_file = "{long}", role = "admin" }}"#
    )));
    assert!(e.to_string().contains("admin"), "{e}");
}

#[test]
fn learning_settings_are_checked_and_named() {
    let ok = config::load_str(&format!(
        "{NATS}[engine]\nstrategy = \"quality\"\n[quality]\nexplore = 0.1\ncost_weight = 0.5\n{}",
        provider("a", "")
    ))
    .expect("a quality config loads");
    assert_eq!(ok.engine.strategy, config::Strategy::Quality);
    assert_eq!((ok.quality.explore, ok.quality.min_samples), (0.1, 20));
    assert_eq!(ok.feedback.retention_days, 400);
    for (table, key, value) in [
        ("quality", "explore", "0.9"),
        ("quality", "neutral_band", "-0.01"),
        ("quality", "half_life_s", "5"),
        ("quality", "min_samples", "0"),
        ("quality", "latency_weight", "11.0"),
        ("feedback", "retention_days", "0"),
        ("feedback", "signals_retention_days", "100000"),
    ] {
        let e = err(&format!(
            "{NATS}[{table}]\n{key} = {value}\n{}",
            provider("a", "")
        ));
        assert_eq!(e.keys(), vec![format!("{table}.{key}")], "{e}");
        assert!(e.to_string().contains("fix: "), "{e}");
    }
    let e = err(&format!(
        "{NATS}[engine]\nstrategy = \"best\"\n{}",
        provider("a", "")
    ));
    assert!(
        e.to_string().contains("quality"),
        "the choices are listed: {e}"
    );
}

#[test]
fn webhooks_are_checked_and_named() {
    let hook = |body: &str| format!("{NATS}[[alerts.webhooks]]\n{body}\n{}", provider("a", ""));
    let ok = config::load_str(&hook("id = \"ops\"\nurl = \"http://127.0.0.1:9/hook\"")).unwrap();
    assert_eq!(ok.alerts.webhooks[0].id, "ops");
    for (body, key) in [
        (
            "id = \"ops\"\nurl_env = \"AI_FAILOVER_TEST_UNSET_HOOK\"",
            "alerts.webhooks[0].url_env",
        ),
        (
            "id = \"ops\"\nurl = \"ftp://x/hook\"",
            "alerts.webhooks[0].url",
        ),
        ("id = \"ops\"", "alerts.webhooks[0].url_env"),
        (
            "id = \"o p s\"\nurl = \"http://127.0.0.1:9/\"",
            "alerts.webhooks[0].id",
        ),
    ] {
        let e = err(&hook(body));
        assert_eq!(e.keys(), vec![key.to_string()], "{body}: {e}");
    }
    let e = err(&hook(
        "id = \"ops\"\nurl = \"http://127.0.0.1:9/\"\nformat = \"carrier-pigeon\"",
    ));
    assert!(e.to_string().contains("format"), "{e}");
}

#[test]
fn history_and_fleet_alert_settings_are_checked_and_named() {
    let ok = config::load_str(&format!(
        "{NATS}[history]\ninterval_ms = 10000\ngrace_ms = 2000\n{}",
        provider("a", "")
    ))
    .expect("a history config loads");
    assert_eq!(
        (ok.history.interval_ms, ok.history.retention_days),
        (10_000, 90)
    );
    for (table, key, value) in [
        ("history", "interval_ms", "3600001"),
        ("history", "grace_ms", "40000"),
        ("history", "retention_days", "0"),
        ("alerts", "stall_after_ms", "10"),
        ("alerts", "slow_p95_ms", "0"),
        ("alerts", "dead_letters_per_minute", "-1.0"),
    ] {
        let e = err(&format!(
            "{NATS}[{table}]\n{key} = {value}\n{}",
            provider("a", "")
        ));
        assert_eq!(e.keys(), vec![format!("{table}.{key}")], "{e}");
        assert!(e.to_string().contains("fix: "), "{e}");
    }
    // `_` starts the fleet's own keys and subjects (`ai.stats._fleet`, `_mode`).
    let e = err(&format!("{NATS}{}", provider("_fleet", "")));
    assert_eq!(e.keys(), vec!["providers[0].id"], "{e}");
}

#[test]
fn tenant_terms_are_checked_against_the_providers() {
    let tenants = "\n[[tenants]]\nid = \"acme\"\nproviders = [\"a\", \"nope\"]\n\
                   max_requests_per_minute = 0\n\n[[tenants]]\nid = \"Globex\"\n\
                   models = { a = [] }\n";
    let e = err(&format!("{NATS}{}{tenants}", provider("a", "")));
    assert_eq!(
        e.keys(),
        vec![
            "tenants[0].providers",
            "tenants[0].max_requests_per_minute",
            "tenants[1].id",
            "tenants[1].models"
        ],
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("`nope` is not a configured provider"),
        "{e}"
    );
}
