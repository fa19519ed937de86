//! Property tests over hostile input: request decoding and provider-answer parsing never panic,
//! every reject has a reason, every accepted value is in range. Short by default (CI); set
//! `PROPTEST_CASES=200000 cargo test --release --test fuzz` (scripts/fuzz.sh) for a long run.
// Tests may panic: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ai_failover::bus::decode::{Intake, Rejection, dead_letter, decode};
use ai_failover::config::Api;
use ai_failover::contract::{DeadLetterClass, Kind};
use ai_failover::providers::{Answer, classify::classify, parse::parse_answer};
use proptest::prelude::*;

const SUBJECT: &str = "ai.analysis.request.signal";

fn json_ish() -> impl Strategy<Value = String> {
    // Fragments of real requests recombined, so the fuzzer reaches past the JSON parser.
    let parts = prop::sample::select(vec![
        "{",
        "}",
        "\"request_id\":",
        "\"kind\":",
        "\"signal\"",
        "\"risk\"",
        "\"symbol\":",
        "\"AAPL\"",
        "\"deadline_ms\":",
        "0",
        "-1",
        "1e309",
        "30000",
        "\"context\":",
        "{\"prices\":[1,2,\"x\"]}",
        "\"providers\":[]",
        "\"max_cost_usd\":",
        "NaN",
        "null",
        "true",
        ",",
        ":",
        "\"r-1\"",
        "\"a b\"",
        "\"reply_to\":",
        "\"a.>\"",
        "\"_INBOX.x\"",
        "\"$KV.b.k\"",
        "[",
        "]",
        "\u{0}",
        "\u{feff}",
    ]);
    prop::collection::vec(parts, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn decoding_never_panics_and_every_reject_has_a_reason(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        check_decode(&bytes)?;
    }

    #[test]
    fn decoding_request_shaped_text_never_panics(text in json_ish()) {
        check_decode(text.as_bytes())?;
    }

    #[test]
    fn answers_parse_into_in_range_signals_or_a_classified_error(text in "\\PC{0,400}", kind in prop::sample::select(Kind::ALL.to_vec())) {
        match parse_answer(kind, &text) {
            Ok(Answer::Signal(s)) => {
                prop_assert!((0.0..=1.0).contains(&s.confidence));
                prop_assert!((0.0..=1.0).contains(&s.position_size));
            }
            Ok(Answer::Analysis(_)) => prop_assert!(kind != Kind::Signal),
            Err(e) => prop_assert!(!e.message.is_empty()),
        }
    }

    #[test]
    fn signal_like_json_is_checked_field_by_field(
        action in prop::sample::select(vec!["buy", "SELL", "Hold", "short", "", "1"]),
        confidence in prop::num::f64::ANY,
        size in prop::num::f64::ANY,
    ) {
        let text = format!(r#"```json
{{"action":"{action}","confidence":{confidence},"rationale":"r","position_size":{size}}}
```"#);
        if let Ok(Answer::Signal(s)) = parse_answer(Kind::Signal, &text) {
            prop_assert!((0.0..=1.0).contains(&s.confidence));
            prop_assert!((0.0..=1.0).contains(&s.position_size));
        }
    }

    #[test]
    fn error_bodies_of_any_shape_are_classified(
        status in 400u16..600,
        body in prop::collection::vec(any::<u8>(), 0..512),
        api in prop::sample::select(vec![Api::Openai, Api::Anthropic, Api::Gemini]),
    ) {
        let status = reqwest::StatusCode::from_u16(status).unwrap();
        let e = classify(api, status, &reqwest::header::HeaderMap::new(), &body);
        prop_assert_eq!(e.http_status, Some(status.as_u16()));
    }
}

/// 2,000 cases per property unless `PROPTEST_CASES` says otherwise.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

fn check_decode(bytes: &[u8]) -> Result<(), TestCaseError> {
    let inbox = ["_INBOX.".to_string()];
    let intake = Intake {
        max_bytes: 1024,
        reply_prefixes: &inbox,
    };
    match decode(SUBJECT, bytes, intake) {
        Ok(r) => {
            prop_assert!(r.validate(Some("signal")).is_ok());
            prop_assert_eq!(r.kind, Kind::Signal);
            prop_assert!(r.reply_to.is_none_or(|to| to.starts_with("_INBOX.")));
        }
        Err(rejection @ Rejection { .. }) => {
            prop_assert!(!rejection.message.is_empty());
            if bytes.len() > 1024 {
                prop_assert_eq!(rejection.class, DeadLetterClass::TooLarge);
            }
            let dl = dead_letter(SUBJECT, bytes, rejection, 1, "w", chrono::Utc::now());
            prop_assert_eq!(dl.payload_bytes, bytes.len() as u64);
            prop_assert!(serde_json::to_string(&dl).is_ok());
        }
    }
    Ok(())
}
