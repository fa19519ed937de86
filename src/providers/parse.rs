//! Turning a model's text into a range-checked [`Answer`].
//!
//! Models wrap JSON in fences or prose even when told not to, so the parser looks for the
//! first complete JSON object in the text. It is strict about the values, though: a signal
//! with `confidence: 85` would size a position 85× too large, so it is rejected rather
//! than guessed at, and the engine fails over.

use serde_json::{Map, Value};

use super::{Answer, ProviderError};
use crate::contract::{Action, ErrorClass, Kind, Signal};

/// Horizon used when the model gives none.
pub const DEFAULT_HORIZON: &str = "1d";

/// How many `{` positions are tried before giving up, so prose full of braces costs
/// bounded work.
const MAX_OBJECT_STARTS: usize = 16;

/// Parses a model's answer for `kind`; any violation is an `invalid_response` with a short
/// reason (never the whole text, which may be large).
pub fn parse_answer(kind: Kind, text: &str) -> Result<Answer, ProviderError> {
    let object = extract_object(text).ok_or_else(|| invalid("answer has no JSON object"))?;
    match kind {
        Kind::Signal => signal(&object).map(Answer::Signal),
        _ => Ok(Answer::Analysis(object)),
    }
}

/// The first complete JSON object in `text`: the whole text when it is one, else the first
/// `{` from which one parses (trailing prose is ignored).
fn extract_object(text: &str) -> Option<Map<String, Value>> {
    if let Ok(Value::Object(map)) = serde_json::from_str(text.trim()) {
        return Some(map);
    }
    text.match_indices('{')
        .take(MAX_OBJECT_STARTS)
        .find_map(|(start, _)| {
            let mut values = serde_json::Deserializer::from_str(&text[start..]).into_iter();
            match values.next() {
                Some(Ok(Value::Object(map))) => Some(map),
                _ => None,
            }
        })
}

fn signal(object: &Map<String, Value>) -> Result<Signal, ProviderError> {
    let action = match object.get("action") {
        Some(Value::String(a)) => match a.trim().to_ascii_lowercase().as_str() {
            "buy" => Action::Buy,
            "sell" => Action::Sell,
            "hold" => Action::Hold,
            _ => return Err(invalid(format!("unknown action \"{}\"", clip(a, 32)))),
        },
        Some(_) => return Err(invalid("action is not a string")),
        None => return Err(invalid("action is missing")),
    };
    let confidence =
        unit_number(object, "confidence")?.ok_or_else(|| invalid("confidence is missing"))?;
    let rationale = match object.get("rationale") {
        Some(Value::String(r)) if !r.trim().is_empty() => r.trim().to_string(),
        Some(Value::String(_)) => return Err(invalid("rationale is empty")),
        Some(_) => return Err(invalid("rationale is not a string")),
        None => return Err(invalid("rationale is missing")),
    };
    let position_size = unit_number(object, "position_size")?.unwrap_or(confidence);
    let horizon = match object.get("horizon") {
        None | Some(Value::Null) => DEFAULT_HORIZON.to_string(),
        Some(Value::String(h)) if h.trim().is_empty() => DEFAULT_HORIZON.to_string(),
        Some(Value::String(h)) => h.trim().to_string(),
        Some(_) => return Err(invalid("horizon is not a string")),
    };
    Ok(Signal {
        action,
        confidence,
        rationale,
        position_size,
        horizon,
    })
}

/// An optional number in `0.0..=1.0`; `null` counts as absent.
fn unit_number(object: &Map<String, Value>, field: &str) -> Result<Option<f64>, ProviderError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(x) if (0.0..=1.0).contains(&x) => Ok(Some(x)),
            _ => Err(invalid(format!("{field} {n} is outside 0..=1"))),
        },
        Some(_) => Err(invalid(format!("{field} is not a number"))),
    }
}

fn invalid(reason: impl Into<String>) -> ProviderError {
    ProviderError::new(ErrorClass::InvalidResponse, reason)
}

/// At most `max` characters of `s`, for echoing model output in an error.
fn clip(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(text: &str) -> Result<Signal, String> {
        match parse_answer(Kind::Signal, text) {
            Ok(Answer::Signal(s)) => Ok(s),
            Ok(other) => panic!("not a signal: {other:?}"),
            Err(e) => {
                assert_eq!(e.class, ErrorClass::InvalidResponse);
                Err(e.message)
            }
        }
    }

    const GOOD: &str = r#"{"action":"buy","confidence":0.72,"rationale":"uptrend","position_size":0.5,"horizon":"1w"}"#;

    #[test]
    fn a_plain_object_parses() {
        let s = sig(GOOD).unwrap();
        assert_eq!(s.action, Action::Buy);
        assert_eq!(s.confidence, 0.72);
        assert_eq!(s.rationale, "uptrend");
        assert_eq!(s.position_size, 0.5);
        assert_eq!(s.horizon, "1w");
    }

    #[test]
    fn fences_and_prose_are_tolerated() {
        let fenced = format!("```json\n{GOOD}\n```");
        assert_eq!(sig(&fenced).unwrap().action, Action::Buy);
        let prose = format!("Sure! Here is the signal: {GOOD} Let me know {{if}} more.");
        assert_eq!(sig(&prose).unwrap().confidence, 0.72);
        let braces_in_strings =
            r#"note {x} {"action":"hold","confidence":0.5,"rationale":"a } b {"}"#;
        assert_eq!(sig(braces_in_strings).unwrap().rationale, "a } b {");
    }

    #[test]
    fn no_object_is_invalid() {
        assert!(sig("I cannot help with that.").is_err());
        assert!(sig(r#"{"action":"buy","confidence":0.7"#).is_err());
        assert!(sig("[1,2]").is_err());
        assert!(sig("").is_err());
    }

    #[test]
    fn action_is_case_insensitive_and_checked() {
        let s = sig(r#"{"action":" SELL ","confidence":0.3,"rationale":"r"}"#).unwrap();
        assert_eq!(s.action, Action::Sell);
        let e = sig(r#"{"action":"short","confidence":0.3,"rationale":"r"}"#).unwrap_err();
        assert!(e.contains("unknown action \"short\""), "{e}");
        assert!(sig(r#"{"action":1,"confidence":0.3,"rationale":"r"}"#).is_err());
        assert!(sig(r#"{"confidence":0.3,"rationale":"r"}"#).is_err());
    }

    #[test]
    fn confidence_must_be_a_unit_number() {
        let e = sig(r#"{"action":"buy","confidence":1.7,"rationale":"r"}"#).unwrap_err();
        assert!(e.contains("confidence 1.7 is outside 0..=1"), "{e}");
        assert!(sig(r#"{"action":"buy","confidence":85,"rationale":"r"}"#).is_err());
        assert!(sig(r#"{"action":"buy","confidence":-0.1,"rationale":"r"}"#).is_err());
        assert!(sig(r#"{"action":"buy","confidence":"0.5","rationale":"r"}"#).is_err());
        assert!(sig(r#"{"action":"buy","rationale":"r"}"#).is_err());
        assert_eq!(
            sig(r#"{"action":"buy","confidence":1,"rationale":"r"}"#)
                .unwrap()
                .confidence,
            1.0
        );
    }

    #[test]
    fn rationale_is_required() {
        assert!(sig(r#"{"action":"buy","confidence":0.5}"#).is_err());
        assert!(sig(r#"{"action":"buy","confidence":0.5,"rationale":"  "}"#).is_err());
        assert!(sig(r#"{"action":"buy","confidence":0.5,"rationale":3}"#).is_err());
    }

    #[test]
    fn position_size_defaults_to_confidence_and_is_checked() {
        let s = sig(r#"{"action":"buy","confidence":0.6,"rationale":"r"}"#).unwrap();
        assert_eq!(s.position_size, 0.6);
        let s = sig(r#"{"action":"buy","confidence":0.6,"rationale":"r","position_size":null}"#)
            .unwrap();
        assert_eq!(s.position_size, 0.6);
        let e = sig(r#"{"action":"buy","confidence":0.6,"rationale":"r","position_size":2}"#)
            .unwrap_err();
        assert!(e.contains("position_size"), "{e}");
    }

    #[test]
    fn horizon_defaults() {
        let s = sig(r#"{"action":"buy","confidence":0.6,"rationale":"r"}"#).unwrap();
        assert_eq!(s.horizon, DEFAULT_HORIZON);
        let s = sig(r#"{"action":"buy","confidence":0.6,"rationale":"r","horizon":""}"#).unwrap();
        assert_eq!(s.horizon, DEFAULT_HORIZON);
        assert!(sig(r#"{"action":"buy","confidence":0.6,"rationale":"r","horizon":5}"#).is_err());
    }

    #[test]
    fn other_kinds_take_any_object() {
        let a = parse_answer(
            Kind::Risk,
            "```json\n{\"summary\":\"ok\",\"score\":0.1}\n```",
        );
        match a.unwrap() {
            Answer::Analysis(m) => assert_eq!(m["summary"], "ok"),
            other => panic!("{other:?}"),
        }
        assert!(parse_answer(Kind::Sentiment, "no json").is_err());
    }

    #[test]
    fn long_actions_are_clipped_in_messages() {
        let long = "x".repeat(500);
        let e = sig(&format!(
            r#"{{"action":"{long}","confidence":0.5,"rationale":"r"}}"#
        ))
        .unwrap_err();
        assert!(e.len() < 80, "{e}");
    }
}
