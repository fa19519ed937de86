//! The promise, per scenario: what the default configuration must deliver at the default load
//! (2 workers, 20 requests/s, a 40 s run). Checked against the median report and printed.

use serde::Serialize;

use super::catalog::Scenario;
use super::report::ScenarioReport;

/// The breaker's default open period: no breaker may close sooner after opening.
const OPEN_MS: f64 = 5_000.0;

/// One target and whether the run met it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub what: String,
    pub value: Option<f64>,
    pub limit: String,
    pub met: bool,
}

fn at_most(what: &str, value: Option<f64>, max: f64) -> Check {
    Check {
        what: what.into(),
        value,
        limit: format!("<= {max}"),
        met: value.is_some_and(|v| v <= max),
    }
}

fn below(what: &str, value: Option<f64>, max: f64) -> Check {
    Check {
        what: what.into(),
        value,
        limit: format!("< {max}"),
        met: value.is_some_and(|v| v < max),
    }
}

fn at_least(what: &str, value: Option<f64>, min: f64) -> Check {
    Check {
        what: what.into(),
        value,
        limit: format!(">= {min}"),
        met: value.is_some_and(|v| v >= min),
    }
}

/// Like [`at_least`], but met when nothing happened at all (`None`).
fn at_least_if_any(what: &str, value: Option<f64>, min: f64) -> Check {
    Check {
        met: value.is_none_or(|v| v >= min),
        ..at_least(what, value, min)
    }
}

/// The targets of `scenario`, checked against `r`; `window_s` is the fault's length.
pub fn check(scenario: Scenario, r: &ScenarioReport, window_s: f64) -> Vec<Check> {
    let f = &r.fault;
    let d = &r.during;
    let probes = f.probes_sent.unwrap_or(f.probes_during);
    match scenario {
        Scenario::Hang => vec![
            below("p99 during (ms)", Some(d.p99_ms), 1_000.0),
            at_most(
                "calls reaching the hung provider, probes included",
                Some(f.calls_during + f.probes_during),
                10.0,
            ),
            below(
                "slowest answer during (ms): no wait on the 5 s timeout",
                Some(d.max_ms),
                5_000.0,
            ),
        ],
        Scenario::Outage503 | Scenario::Refused => vec![
            at_most("calls wasted fleet-wide", Some(f.wasted_calls), 3.0),
            at_most("back in use after it heals (s)", f.back_after_s, 5.0),
            at_most(
                "probes while down (at most 1/s)",
                Some(probes),
                window_s + 1.0,
            ),
        ],
        Scenario::RateLimit => vec![
            below("p99 during (ms)", Some(d.p99_ms), 500.0),
            below(
                "slowest answer during (ms): nobody sleeps on Retry-After",
                Some(d.max_ms),
                5_000.0,
            ),
        ],
        Scenario::AllDown => {
            let normal = r.before.p99_ms * 1.5 + 50.0;
            vec![
                at_least("answered during (share)", Some(d.answered_rate), 1.0),
                below(
                    "fallback p99 once all are known down (ms)",
                    f.known_down_fallback_p99_ms,
                    100.0,
                ),
                at_most(
                    "p99 from 5 s after recovery (ms), vs 1.5 × before + 50",
                    f.settled_after_p99_ms,
                    normal.round(),
                ),
            ]
        }
        Scenario::Flapping | Scenario::Brownout => vec![
            at_least("success during (share)", Some(d.success_rate), 1.0),
            below("p99 during (ms)", Some(d.p99_ms), 1_000.0),
            at_least_if_any(
                "shortest open period (s)",
                f.shortest_open_s,
                OPEN_MS / 1_000.0 * 0.95,
            ),
        ],
        Scenario::Slow => vec![
            at_least("success during (share)", Some(d.success_rate), 1.0),
            below("p99 during (ms)", Some(d.p99_ms), 1_000.0),
        ],
        Scenario::DeadlineSqueeze => vec![
            at_least("answered during (share)", Some(d.answered_rate), 1.0),
            at_most(
                "answers after their deadline during (share)",
                Some(ratio(d.late, d.answered)),
                0.01,
            ),
            at_least(
                "answered by a provider during (share)",
                Some(d.success_rate),
                0.95,
            ),
        ],
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 { 0.0 } else { a / b }
}
