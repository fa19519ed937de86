//! The learning loop's settings: `[feedback]` (how long reports and signals are kept) and
//! `[quality]` (how outcomes are judged and how the `quality` strategy routes by them).

use serde::{Deserialize, Serialize};

use super::checker::Checker;

/// `[feedback]`: the `AI_FEEDBACK` stream and the `ai_signals` bucket.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedbackConfig {
    /// How long execution and outcome reports are kept.
    pub retention_days: u32,
    /// How long an answered request's signal waits for its feedback.
    pub signals_retention_days: u32,
    /// Feedback reports one worker handles at once.
    pub max_in_flight: usize,
}

impl Default for FeedbackConfig {
    fn default() -> Self {
        FeedbackConfig {
            retention_days: 400,
            signals_retention_days: 30,
            max_in_flight: 64,
        }
    }
}

/// `[quality]`: judging advice by its outcome, and routing by it (`engine.strategy =
/// "quality"`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct QualityConfig {
    /// An outcome this old weighs half as much as a fresh one.
    pub half_life_s: u64,
    /// A `hold` is right when |return| ≤ this; `buy` needs more than it, `sell` less than −it.
    pub neutral_band: f64,
    /// Below this many (decayed) outcomes a provider's priority still shapes its estimate.
    pub min_samples: u32,
    /// The least share of traffic each healthy provider that is not the best one gets, so
    /// that every one keeps being measured.
    pub explore: f64,
    /// How much a provider's cost counts against its hit rate (0 = not at all; 1 = the most
    /// expensive candidate loses a whole hit rate).
    pub cost_weight: f64,
    /// The same for its observed latency.
    pub latency_weight: f64,
}

impl Default for QualityConfig {
    fn default() -> Self {
        QualityConfig {
            half_life_s: 604_800,
            neutral_band: 0.001,
            min_samples: 20,
            explore: 0.05,
            cost_weight: 0.0,
            latency_weight: 0.0,
        }
    }
}

/// The checks of both sections.
pub(super) fn check(c: &mut Checker, f: &FeedbackConfig, q: &QualityConfig) {
    c.check(
        (1..=36_500).contains(&f.retention_days),
        "feedback.retention_days",
        format!("{} days", f.retention_days),
        "keep feedback between 1 and 36500 days (default 400)",
    );
    c.check(
        (1..=3_650).contains(&f.signals_retention_days),
        "feedback.signals_retention_days",
        format!("{} days", f.signals_retention_days),
        "keep signals between 1 and 3650 days (default 30): feedback for an older signal is dead-lettered",
    );
    c.check(
        (1..=4096).contains(&f.max_in_flight),
        "feedback.max_in_flight",
        f.max_in_flight.to_string(),
        "use 1..=4096 (default 64)",
    );
    c.check(
        q.half_life_s >= 60,
        "quality.half_life_s",
        format!("{} s", q.half_life_s),
        "use at least 60 seconds (default 604800, a week)",
    );
    c.check(
        q.neutral_band.is_finite() && (0.0..0.5).contains(&q.neutral_band),
        "quality.neutral_band",
        q.neutral_band.to_string(),
        "use a return fraction in 0.0..0.5 (default 0.001 = 0.1 %)",
    );
    c.check(
        (1..=100_000).contains(&q.min_samples),
        "quality.min_samples",
        q.min_samples.to_string(),
        "use 1..=100000 (default 20)",
    );
    c.check(
        (0.0..=0.3).contains(&q.explore),
        "quality.explore",
        q.explore.to_string(),
        "use a share between 0 and 0.3 (default 0.05); 0 stops measuring the others",
    );
    for (key, v) in [
        ("quality.cost_weight", q.cost_weight),
        ("quality.latency_weight", q.latency_weight),
    ] {
        c.check(
            (0.0..=10.0).contains(&v),
            key,
            v.to_string(),
            "use a weight between 0 and 10 (default 0)",
        );
    }
}
