//! The checked-in JSON Schemas match the Rust types, and the example messages in
//! `schemas/examples/` are accepted (`valid/`) or rejected (`invalid/`) by them.
// Tests may panic: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use ai_failover::contract::schemas;

#[test]
fn checked_in_schemas_match_the_types() {
    let dir = Path::new("schemas");
    let mut drifted = Vec::new();
    for (stem, generated) in schemas::all() {
        let path = dir.join(format!("{stem}.json"));
        match std::fs::read_to_string(&path) {
            Ok(on_disk) if on_disk == generated => {}
            Ok(_) => drifted.push(format!("{} differs", path.display())),
            Err(e) => drifted.push(format!("{} unreadable: {e}", path.display())),
        }
    }
    let known: Vec<String> = schemas::all()
        .iter()
        .map(|(s, _)| format!("{s}.json"))
        .collect();
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        if name.ends_with(".json") && !known.contains(&name) {
            drifted.push(format!("schemas/{name} has no type behind it"));
        }
    }
    assert!(
        drifted.is_empty(),
        "schemas drifted from the types; run `cargo run -- schemas` and review the diff:\n{}",
        drifted.join("\n")
    );
}

fn validator(stem: &str) -> jsonschema::Validator {
    let text = std::fs::read_to_string(format!("schemas/{stem}.json"))
        .unwrap_or_else(|e| panic!("schema {stem}: {e}"));
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("schema {stem} invalid: {e}"))
}

/// `(schema stem, file name, instance)` for every example in `dir`.
fn examples(dir: &str) -> Vec<(String, String, serde_json::Value)> {
    let mut out: Vec<_> = std::fs::read_dir(format!("schemas/examples/{dir}"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            let stem = name.split('.').next().unwrap().to_string();
            let value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap())
                .unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
            (stem, name, value)
        })
        .collect();
    out.sort_by(|a, b| a.1.cmp(&b.1));
    out
}

#[test]
fn valid_examples_pass_their_schema() {
    let all = examples("valid");
    assert!(
        all.len() >= 8,
        "expected the valid examples, found {}",
        all.len()
    );
    for (stem, name, value) in all {
        let errors: Vec<String> = validator(&stem)
            .iter_errors(&value)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{name} should be valid: {errors:?}");
    }
}

#[test]
fn invalid_examples_are_rejected_by_their_schema() {
    let all = examples("invalid");
    let names: Vec<&str> = all.iter().map(|(_, n, _)| n.as_str()).collect();
    for must in [
        "analysis_request.missing_request_id.json",
        "analysis_result.confidence_1_7.json",
        "analysis_result.unknown_action.json",
        "feedback.outcome_without_return.json",
    ] {
        assert!(names.contains(&must), "missing negative example {must}");
    }
    for (stem, name, value) in &all {
        assert!(
            !validator(stem).is_valid(value),
            "{name} should be rejected by schemas/{stem}.json"
        );
    }
}

#[test]
fn valid_examples_also_decode_into_the_rust_types() {
    use ai_failover::contract::*;
    for (stem, name, value) in examples("valid") {
        let ok = match stem.as_str() {
            "analysis_request" => serde_json::from_value::<AnalysisRequest>(value).is_ok(),
            "analysis_result" => serde_json::from_value::<AnalysisResult>(value).is_ok(),
            "health_event" => serde_json::from_value::<HealthEvent>(value).is_ok(),
            "failover_event" => serde_json::from_value::<FailoverEvent>(value).is_ok(),
            "mode_event" => serde_json::from_value::<ModeEvent>(value).is_ok(),
            "dead_letter" => serde_json::from_value::<DeadLetter>(value).is_ok(),
            "outcome_record" => serde_json::from_value::<OutcomeRecord>(value).is_ok(),
            "feedback" => {
                serde_json::from_value::<Feedback>(value).is_ok_and(|f| f.validate().is_ok())
            }
            "signal_record" => serde_json::from_value::<SignalRecord>(value).is_ok(),
            "quality_record" => serde_json::from_value::<QualityRecord>(value).is_ok(),
            "alert_record" => serde_json::from_value::<AlertRecord>(value).is_ok(),
            "provider_rollup" => serde_json::from_value::<ProviderRollup>(value).is_ok(),
            "fleet_rollup" => serde_json::from_value::<FleetRollup>(value).is_ok(),
            "secret_record" => serde_json::from_value::<SecretRecord>(value).is_ok(),
            other => panic!("add a decode check for {other}"),
        };
        assert!(ok, "{name} does not decode into its Rust type");
    }
}
