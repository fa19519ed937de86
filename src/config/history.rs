//! `[history]`: how often the fleet rolls up what each provider did (stream `AI_STATS`) and
//! how long rollups and spend records are kept.

use serde::{Deserialize, Serialize};

use super::checker::Checker;

/// `[history]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryConfig {
    /// One rollup per provider per interval (a minute).
    pub interval_ms: u64,
    /// An interval's rollup is written this long after it ends, once every worker has
    /// added its share (the workers add theirs twice a second).
    pub grace_ms: u64,
    /// How long rollups, and the daily spend records, are kept.
    pub retention_days: u32,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            interval_ms: 60_000,
            grace_ms: 5_000,
            retention_days: 90,
        }
    }
}

/// The checks of `[history]`.
pub(super) fn check(c: &mut Checker, h: &HistoryConfig) {
    c.check(
        (2_000..=3_600_000).contains(&h.interval_ms),
        "history.interval_ms",
        h.interval_ms.to_string(),
        "use 2000..=3600000 (default 60000, a minute)",
    );
    c.check(
        h.grace_ms >= 1_000 && h.grace_ms * 2 <= h.interval_ms,
        "history.grace_ms",
        h.grace_ms.to_string(),
        "use at least 1000 and at most half of history.interval_ms (default 5000)",
    );
    c.check(
        (1..=3_650).contains(&h.retention_days),
        "history.retention_days",
        h.retention_days.to_string(),
        "keep history between 1 and 3650 days (default 90)",
    );
}
