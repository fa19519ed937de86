//! The model's "thinking": a deterministic answer derived from the prompt, so the same
//! symbol always gets the same signal and runs are reproducible.

use serde_json::{Value, json};

use crate::contract::Kind;

/// What the prompt asked for, as far as the simulator can tell.
#[derive(Debug, Clone, PartialEq)]
pub struct Asked {
    pub kind: Kind,
    pub symbol: Option<String>,
}

/// Reads the kind and symbol from prompt text: a `kind: signal` / `"kind":"signal"` marker
/// first, keywords second; signal when nothing says otherwise, the common case.
pub fn read_prompt(text: &str) -> Asked {
    let kind = field(text, "kind")
        .and_then(|k| Kind::from_token(&k.to_ascii_lowercase()))
        .or_else(|| {
            let lower = text.to_ascii_lowercase();
            [Kind::Portfolio, Kind::Risk, Kind::Sentiment]
                .into_iter()
                .find(|k| lower.contains(k.as_str()))
        })
        .unwrap_or(Kind::Signal);
    Asked {
        kind,
        symbol: field(text, "symbol"),
    }
}

/// The value after `name:` or `"name":` (quotes and spaces trimmed), first occurrence.
fn field(text: &str, name: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    for pat in [format!("\"{name}\""), name.to_owned()] {
        let mut from = 0;
        while let Some(pos) = lower[from..].find(&pat) {
            let after = from + pos + pat.len();
            let rest = text[after..].trim_start();
            if let Some(v) = rest.strip_prefix(':').or_else(|| rest.strip_prefix('=')) {
                let v: String = v
                    .trim_start()
                    .trim_start_matches('"')
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/'))
                    .collect();
                if !v.is_empty() {
                    return Some(v);
                }
            }
            from = after;
        }
    }
    None
}

/// FNV-1a: stable across Rust releases, unlike `DefaultHasher`.
pub fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What the simulated market does next for `symbol`: the move an honest simulated provider
/// foresees (`buy`: it rises, `sell`: it falls, `hold`: it stays flat). The demo's trader
/// reports outcomes from it.
pub fn market_action(symbol: &str) -> &'static str {
    ["buy", "sell", "hold"][(fnv1a(symbol) % 3) as usize]
}

/// The advice of a provider with `wrong_advice`: always against the market.
pub fn wrong(action: &str) -> &'static str {
    match action {
        "buy" => "sell",
        _ => "buy",
    }
}

/// The JSON object the "model" answers with; `wrong_advice` turns a signal against the
/// market.
pub fn answer(asked: &Asked, prompt: &str, wrong_advice: bool) -> Value {
    let h = fnv1a(asked.symbol.as_deref().unwrap_or(prompt));
    let pct = |shift: u32, span: u64| ((h >> shift) % span) as f64 / 100.0;
    let subject = asked.symbol.as_deref().unwrap_or("the portfolio");
    let pick = |options: [&'static str; 3], shift: u32| options[((h >> shift) % 3) as usize];
    match asked.kind {
        Kind::Signal => {
            let honest = pick(["buy", "sell", "hold"], 0);
            let action = if wrong_advice { wrong(honest) } else { honest };
            json!({
                "action": action,
                "confidence": 0.5 + pct(8, 46),
                "rationale": format!(
                    "Simulated view on {subject}: momentum and volume favour {action}."
                ),
                "position_size": 0.05 + pct(16, 51),
                "horizon": pick(["intraday", "1d", "1w"], 24),
            })
        }
        Kind::Portfolio => json!({
            "kind": "portfolio",
            "summary": format!("Simulated portfolio review for {subject}."),
            "risk_score": pct(8, 101),
            "diversification": pick(["low", "medium", "high"], 0),
            "rebalance": [{"symbol": subject, "target_weight": pct(16, 41)}],
        }),
        Kind::Risk => json!({
            "kind": "risk",
            "summary": format!("Simulated risk assessment for {subject}."),
            "risk_level": pick(["low", "medium", "high"], 0),
            "var_95": pct(8, 11),
            "max_drawdown": pct(16, 31),
        }),
        Kind::Sentiment => json!({
            "kind": "sentiment",
            "summary": format!("Simulated news sentiment for {subject}."),
            "sentiment": pick(["bullish", "bearish", "neutral"], 0),
            "score": pct(8, 201) - 1.0,
        }),
    }
}

/// A signal that parses but breaks its ranges: what `malformed: invalid_signal` sends.
pub fn invalid_signal() -> Value {
    json!({
        "action": "buy",
        "confidence": 1.7,
        "rationale": "Simulated out-of-range signal.",
        "position_size": 2.5,
        "horizon": "1d",
    })
}

/// Vendors bill roughly one token per four characters of English.
pub fn tokens(chars: usize) -> u64 {
    (chars as u64).div_ceil(4).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_markers_and_keywords() {
        let a = read_prompt("kind: signal\nsymbol: AAPL\ncontext: {}");
        assert_eq!(a.kind, Kind::Signal);
        assert_eq!(a.symbol.as_deref(), Some("AAPL"));
        let b = read_prompt(r#"{"kind":"risk","symbol":"BTC-USD"}"#);
        assert_eq!(b.kind, Kind::Risk);
        assert_eq!(b.symbol.as_deref(), Some("BTC-USD"));
        assert_eq!(
            read_prompt("assess the sentiment of news").kind,
            Kind::Sentiment
        );
        assert_eq!(read_prompt("hello").kind, Kind::Signal);
    }

    #[test]
    fn signals_are_deterministic_and_in_range() {
        let asked = read_prompt("symbol: MSFT");
        let a = answer(&asked, "x", false);
        assert_eq!(a, answer(&asked, "a different prompt, same symbol", false));
        assert_eq!(a["action"], market_action("MSFT"));
        let w = answer(&asked, "x", true);
        assert_ne!(w["action"], a["action"]);
        let c = a["confidence"].as_f64().unwrap();
        let p = a["position_size"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&c) && (0.0..=1.0).contains(&p));
        assert!(["buy", "sell", "hold"].contains(&a["action"].as_str().unwrap()));
    }
}
