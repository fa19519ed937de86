//! compose.yaml cannot run here (no Docker engine), so check what can be checked: it parses,
//! every file it references exists, every AI_FAILOVER_* variable it sets names a real config
//! key, the config it runs with loads with those variables, and the services are wired by name.
// Tests may panic: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use serde_yaml_ng::Value;

fn compose() -> Value {
    let mut v: Value = serde_yaml_ng::from_str(&std::fs::read_to_string("compose.yaml").unwrap())
        .expect("compose.yaml parses");
    // Resolve `<<: *worker` the way docker compose does.
    v.apply_merge().expect("merge keys resolve");
    v
}

fn services(c: &Value) -> &serde_yaml_ng::Mapping {
    c.get("services")
        .and_then(Value::as_mapping)
        .expect("services")
}

fn worker_env(c: &Value) -> BTreeMap<String, String> {
    let w = services(c).get("worker-1").expect("worker-1");
    w.get("environment")
        .and_then(Value::as_mapping)
        .expect("worker environment")
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().unwrap().to_string(),
                v.as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn the_compose_file_has_the_fleet_and_its_wiring() {
    let c = compose();
    let s = services(&c);
    for name in [
        "nats",
        "simulator",
        "worker-1",
        "worker-2",
        "worker-3",
        "otel-collector",
        "jaeger",
    ] {
        assert!(s.contains_key(name), "service {name} missing");
    }
    let nats_cmd = format!("{:?}", s.get("nats").unwrap().get("command").unwrap());
    assert!(
        nats_cmd.contains("-js") && nats_cmd.contains("/data"),
        "JetStream with a volume"
    );
    let env = worker_env(&c);
    // Every host name the workers use is a service.
    for (k, v) in &env {
        if let Some(rest) = v.split("://").nth(1) {
            let host = rest.split([':', '/']).next().unwrap();
            assert!(s.contains_key(host), "{k} points at unknown service {host}");
        }
    }
    for w in ["worker-1", "worker-2", "worker-3"] {
        let cmd = format!("{:?}", s.get(w).unwrap().get("command").unwrap());
        assert!(cmd.contains("worker"), "{w} runs a worker");
    }
}

#[test]
fn referenced_files_exist() {
    assert!(std::path::Path::new("Dockerfile").is_file());
    assert!(std::path::Path::new("deploy/otel-collector.yaml").is_file());
    let cmd = format!(
        "{:?}",
        services(&compose())
            .get("worker-1")
            .unwrap()
            .get("command")
            .unwrap()
    );
    assert!(cmd.contains("/etc/ai-failover/compose.toml"));
    assert!(
        std::path::Path::new("config/compose.toml").is_file(),
        "the Dockerfile copies config/"
    );
}

#[test]
fn every_ai_failover_variable_is_a_real_config_key_and_the_config_loads_with_them() {
    let env = worker_env(&compose());
    let cfg_text = std::fs::read_to_string("config/compose.toml").unwrap();
    let base = ai_failover::config::load_str(
        &cfg_text
            .replace("api_key_env", "# api_key_env")
            .replace("[[providers]]", "[[providers]]\ntier = \"local\""),
    )
    .expect("compose config loads once keys are provided");
    let ids: Vec<&str> = base.providers.iter().map(|p| p.id.as_str()).collect();
    let known_sections = serde_json::to_value(&base).unwrap();
    for (k, _) in env.iter().filter(|(k, _)| k.starts_with("AI_FAILOVER_")) {
        let rest = &k["AI_FAILOVER_".len()..];
        if let Some(p) = rest.strip_prefix("PROVIDER_") {
            let id = p
                .strip_suffix("_BASE_URL")
                .unwrap_or_else(|| panic!("{k}: only _BASE_URL is supported"));
            assert!(
                ids.contains(&id.to_lowercase().as_str()),
                "{k}: no provider {id}"
            );
            continue;
        }
        let (section, key) = rest
            .split_once("__")
            .unwrap_or_else(|| panic!("{k}: want SECTION__KEY"));
        let value = known_sections
            .get(section.to_lowercase())
            .and_then(|s| s.get(key.to_lowercase()));
        assert!(value.is_some(), "{k} is not a config key");
    }
    // Every api_key_env the config names is set by compose.
    for line in cfg_text.lines().filter(|l| l.starts_with("api_key_env")) {
        let var = line.split('"').nth(1).unwrap();
        assert!(env.contains_key(var), "compose does not set {var}");
    }
}
