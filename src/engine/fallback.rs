//! The deterministic rule-based analysis used when no provider can answer in time:
//! trend (short vs. long moving average) and momentum of `context.prices`, confidence capped.

use serde_json::json;

use crate::contract::{Action, AnalysisRequest, Kind, Signal};
use crate::providers::Answer;

/// Score (a fractional move) above which the rule says buy, below minus it sell.
const THRESHOLD: f64 = 0.002;

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

struct Reading {
    trend: f64,
    momentum: f64,
    volatility: f64,
    used: usize,
}

fn read(prices: &[f64]) -> Option<Reading> {
    let n = prices.len();
    if n < 2 || prices.iter().any(|p| *p <= 0.0) {
        return None;
    }
    let short = mean(&prices[n.saturating_sub(5)..]);
    let long = mean(&prices[n.saturating_sub(20)..]);
    let back = 5.min(n - 1);
    let momentum = prices[n - 1] / prices[n - 1 - back] - 1.0;
    let returns: Vec<f64> = prices.windows(2).map(|w| w[1] / w[0] - 1.0).collect();
    let m = mean(&returns);
    let volatility =
        (returns.iter().map(|r| (r - m).powi(2)).sum::<f64>() / returns.len() as f64).sqrt();
    Some(Reading {
        trend: short / long - 1.0,
        momentum,
        volatility,
        used: n.min(20),
    })
}

/// The rule-based answer for `request`, its confidence at most `max_confidence`.
pub fn rule_based(request: &AnalysisRequest, max_confidence: f64) -> Answer {
    let prices = request.prices();
    let reading = read(&prices);
    match request.kind {
        Kind::Signal => Answer::Signal(match reading {
            None => Signal {
                action: Action::Hold,
                confidence: 0.05f64.min(max_confidence),
                rationale: "rule-based fallback: fewer than 2 usable prices, holding".into(),
                position_size: 0.0,
                horizon: "intraday".into(),
            },
            Some(r) => {
                let score = 0.5 * r.trend + 0.5 * r.momentum;
                let action = if score > THRESHOLD {
                    Action::Buy
                } else if score < -THRESHOLD {
                    Action::Sell
                } else {
                    Action::Hold
                };
                // A 1% combined move earns 0.2 confidence, never above the cap.
                let confidence = (score.abs() * 20.0).clamp(0.05, max_confidence.max(0.05));
                let confidence = confidence.min(max_confidence);
                Signal {
                    action,
                    confidence,
                    rationale: format!(
                        "rule-based fallback over {} prices: trend {:+.2}%, momentum {:+.2}%",
                        r.used,
                        r.trend * 100.0,
                        r.momentum * 100.0
                    ),
                    position_size: if action == Action::Hold {
                        0.0
                    } else {
                        confidence
                    },
                    horizon: "intraday".into(),
                }
            }
        }),
        _ => {
            let mut analysis = serde_json::Map::new();
            analysis.insert("method".into(), json!("rule_based_fallback"));
            analysis.insert("confidence".into(), json!(max_confidence.min(0.2)));
            match reading {
                Some(r) => {
                    analysis.insert("trend_pct".into(), json!(r.trend * 100.0));
                    analysis.insert("momentum_pct".into(), json!(r.momentum * 100.0));
                    analysis.insert("volatility_pct".into(), json!(r.volatility * 100.0));
                    analysis.insert("prices_used".into(), json!(r.used));
                    analysis.insert(
                        "summary".into(),
                        json!("no AI provider available; figures are mechanical"),
                    );
                }
                None => {
                    analysis.insert(
                        "summary".into(),
                        json!("no AI provider available and no prices to analyse"),
                    );
                }
            }
            Answer::Analysis(analysis)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_prices(prices: &[f64]) -> AnalysisRequest {
        let mut r = AnalysisRequest::signal("AAPL");
        r.context = Some(serde_json::from_value(json!({ "prices": prices })).unwrap());
        r
    }

    fn signal(a: Answer) -> Signal {
        match a {
            Answer::Signal(s) => s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rising_prices_buy_falling_sell_flat_hold() {
        let up: Vec<f64> = (0..30).map(|i| 100.0 + i as f64).collect();
        let down: Vec<f64> = up.iter().rev().copied().collect();
        let flat = vec![100.0; 30];
        assert_eq!(
            signal(rule_based(&with_prices(&up), 0.4)).action,
            Action::Buy
        );
        assert_eq!(
            signal(rule_based(&with_prices(&down), 0.4)).action,
            Action::Sell
        );
        let f = signal(rule_based(&with_prices(&flat), 0.4));
        assert_eq!(f.action, Action::Hold);
        assert_eq!(f.position_size, 0.0);
    }

    #[test]
    fn confidence_is_capped_and_the_answer_is_deterministic() {
        let spike: Vec<f64> = (0..10).map(|i| 100.0 * 1.5f64.powi(i)).collect();
        let a = signal(rule_based(&with_prices(&spike), 0.3));
        assert!(a.confidence <= 0.3);
        assert_eq!(a, signal(rule_based(&with_prices(&spike), 0.3)));
        assert!(a.rationale.starts_with("rule-based fallback"));
    }

    #[test]
    fn no_prices_holds_with_minimal_confidence() {
        let s = signal(rule_based(&AnalysisRequest::signal("X"), 0.4));
        assert_eq!(s.action, Action::Hold);
        assert!(s.confidence <= 0.05);
    }
}
