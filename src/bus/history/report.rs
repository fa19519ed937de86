//! A report from rollups: pure, so what it says about outages, availability and trends is
//! tested without a bus.

use std::collections::{BTreeMap, HashSet};

use crate::contract::{
    BreakerState, BudgetRecord, CallCounts, DayCost, FleetCounts, FleetReport, FleetRollup,
    ModeSpan, Outage, ProviderId, ProviderReport, ProviderRollup, ReportReply, Timestamp,
    TrendPoint,
};

/// Trend steps: the first one giving at most `MAX_POINTS` points over the period is used
/// (never shorter than the history's interval).
const STEPS_MS: [u64; 10] = [
    5_000,
    10_000,
    30_000,
    60_000,
    300_000,
    900_000,
    3_600_000,
    6 * 3_600_000,
    86_400_000,
    7 * 86_400_000,
];
const MAX_POINTS: u64 = 180;
/// Outages and mode spans listed in a reply (the latest; the totals count all).
const MAX_LISTED: usize = 500;

/// The latest `MAX_LISTED` of `items`, and how many there were.
fn latest<T>(mut items: Vec<T>) -> (Vec<T>, u64) {
    let total = items.len() as u64;
    items.drain(..items.len().saturating_sub(MAX_LISTED));
    (items, total)
}

/// Everything a report is made of.
pub struct Inputs {
    pub since: Timestamp,
    pub until: Timestamp,
    /// The history's interval (`history.interval_ms`): no trend step is shorter.
    pub interval_ms: u64,
    /// The configured providers, in the order they are reported.
    pub providers: Vec<ProviderId>,
    pub rollups: Vec<ProviderRollup>,
    pub fleet: Vec<FleetRollup>,
    /// The daily spend records of the period.
    pub spend: Vec<BudgetRecord>,
}

/// Parses `7d`, `24h`, `90m`, `30s` into a duration.
pub fn parse_since(text: &str) -> Option<chrono::TimeDelta> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = text.split_at(split);
    let n: i64 = n.parse().ok().filter(|n| *n > 0)?;
    match unit {
        "s" => chrono::TimeDelta::try_seconds(n),
        "m" => chrono::TimeDelta::try_minutes(n),
        "h" => chrono::TimeDelta::try_hours(n),
        "d" => chrono::TimeDelta::try_days(n),
        _ => None,
    }
}

fn step_ms(since: Timestamp, until: Timestamp, interval_ms: u64) -> u64 {
    let span = (until - since).num_milliseconds().max(1) as u64;
    STEPS_MS
        .into_iter()
        .find(|s| span.div_ceil(*s) <= MAX_POINTS)
        .unwrap_or(STEPS_MS[STEPS_MS.len() - 1])
        .max(interval_ms)
}

fn ms(d: chrono::TimeDelta) -> u64 {
    d.num_milliseconds().max(0) as u64
}

/// Builds the report.
pub fn build(mut inputs: Inputs) -> ReportReply {
    let step = step_ms(inputs.since, inputs.until, inputs.interval_ms);
    // A late worker's copy of a rollup the stream no longer remembered: count it once.
    let mut seen = HashSet::new();
    inputs
        .rollups
        .retain(|r| r.end > inputs.since && seen.insert((r.provider.clone(), r.start)));
    inputs.rollups.sort_by_key(|r| r.start);
    let mut seen = HashSet::new();
    inputs
        .fleet
        .retain(|r| r.end > inputs.since && seen.insert(r.start));
    inputs.fleet.sort_by_key(|r| r.start);
    let providers = inputs
        .providers
        .iter()
        .map(|p| {
            let rollups: Vec<&ProviderRollup> =
                inputs.rollups.iter().filter(|r| &r.provider == p).collect();
            let spend: Vec<&BudgetRecord> =
                inputs.spend.iter().filter(|b| &b.provider == p).collect();
            provider(p, &rollups, &spend, inputs.since, inputs.until, step)
        })
        .collect();
    ReportReply {
        since: inputs.since,
        until: inputs.until,
        step_ms: step,
        providers,
        fleet: fleet(&inputs.fleet),
    }
}

fn provider(
    id: &ProviderId,
    rollups: &[&ProviderRollup],
    spend: &[&BudgetRecord],
    since: Timestamp,
    until: Timestamp,
    step: u64,
) -> ProviderReport {
    let mut total = CallCounts::default();
    let (mut observed, mut open) = (0, 0);
    let mut points: BTreeMap<i64, (CallCounts, u64)> = BTreeMap::new();
    for r in rollups {
        total.merge(&r.counts);
        observed += ms(r.end - r.start);
        open += r.open_ms;
        // Points on the step's own grid (not the request's `since`): each rollup in one.
        let bucket = r.start.timestamp_millis().div_euclid(step as i64);
        let point = points.entry(bucket).or_default();
        point.0.merge(&r.counts);
        point.1 += r.open_ms;
    }
    let outages = outages(rollups, since, until);
    let ended: Vec<u64> = outages
        .iter()
        .filter(|o| o.end.is_some())
        .map(|o| o.duration_ms)
        .collect();
    let hours = observed as f64 / 3_600_000.0;
    let mttr_ms = (!ended.is_empty()).then(|| ended.iter().sum::<u64>() / ended.len() as u64);
    let (outages, outages_total) = latest(outages);
    let mut cost_per_day: Vec<DayCost> = spend
        .iter()
        .map(|b| DayCost {
            day: b.date.clone(),
            usd: b.spend_usd,
            calls: b.calls,
        })
        .collect();
    cost_per_day.sort_by(|a, b| a.day.cmp(&b.day));
    ProviderReport {
        provider: id.clone(),
        observed_ms: observed,
        availability_pct: if observed == 0 {
            100.0
        } else {
            100.0 * (1.0 - open.min(observed) as f64 / observed as f64)
        },
        mttr_ms,
        outages,
        outages_total,
        calls: total.calls,
        successes: total.successes,
        failures: total.failures.clone(),
        p50_ms: total.latency_ms.percentile(0.5),
        p95_ms: total.latency_ms.percentile(0.95),
        cost_usd: total.cost_usd,
        cost_per_day,
        failovers_away: total.failovers_away,
        failovers_per_hour: if hours > 0.0 {
            total.failovers_away as f64 / hours
        } else {
            0.0
        },
        trend: points
            .into_iter()
            .map(|(bucket, (c, open_ms))| TrendPoint {
                at: chrono::DateTime::from_timestamp_millis(bucket * step as i64).unwrap_or(since),
                calls: c.calls,
                success_rate: (c.calls > 0).then(|| c.successes as f64 / c.calls as f64),
                p95_ms: c.latency_ms.percentile(0.95),
                cost_usd: c.cost_usd,
                failovers_away: c.failovers_away,
                open_ms,
            })
            .collect(),
    }
}

/// Outages from the breaker's transitions: from leaving `closed` to returning to it. Each
/// rollup's state at its start is checked against what came before, so a transition no
/// rollup recorded (a gap while no worker ran, a worker that had just started) still opens or
/// ends an outage, at that rollup's start.
fn outages(rollups: &[&ProviderRollup], since: Timestamp, until: Timestamp) -> Vec<Outage> {
    let mut out = Vec::new();
    let mut current: Option<(Timestamp, String)> = None;
    let end = |out: &mut Vec<Outage>, (start, cause): (Timestamp, String), at: Timestamp| {
        out.push(Outage {
            start,
            end: Some(at),
            duration_ms: ms(at - start),
            cause,
        });
    };
    for (i, r) in rollups.iter().enumerate() {
        let open = r.breaker_at_start != BreakerState::Closed;
        match current.take() {
            Some(o) if !open => end(&mut out, o, r.start),
            None if open => {
                let cause = if i == 0 {
                    "open before the period"
                } else {
                    "unknown (its opening was not recorded)"
                };
                current = Some((r.start.max(since), cause.to_string()));
            }
            kept => current = kept,
        }
        for change in &r.breaker_changes {
            match current.take() {
                Some(o) if change.to == BreakerState::Closed => end(&mut out, o, change.at),
                None if change.to != BreakerState::Closed => {
                    let cause = change.cause.clone().unwrap_or_else(|| "unknown".into());
                    current = Some((change.at, cause));
                }
                kept => current = kept,
            }
        }
    }
    if let Some((start, cause)) = current {
        out.push(Outage {
            start,
            end: None,
            duration_ms: ms(until - start),
            cause,
        });
    }
    out
}

/// The mode timeline; as for outages, a rollup's mode at its start that differs from the one
/// before begins a new span there.
fn fleet(rollups: &[FleetRollup]) -> FleetReport {
    let mut counts = FleetCounts::default();
    let mut modes: Vec<ModeSpan> = Vec::new();
    let enter = |modes: &mut Vec<ModeSpan>, mode, at, reason: &str| {
        if modes.last().is_some_and(|m| m.mode == mode) {
            return;
        }
        if let Some(last) = modes.last_mut() {
            last.end = Some(at);
        }
        modes.push(ModeSpan {
            mode,
            start: at,
            end: None,
            reason: reason.to_string(),
        });
    };
    for r in rollups {
        counts.merge(&r.counts);
        let reason = if modes.is_empty() {
            ""
        } else {
            "unknown (not recorded)"
        };
        enter(&mut modes, r.mode_at_start, r.start, reason);
        for c in &r.mode_changes {
            enter(&mut modes, c.to, c.at, &c.reason);
        }
    }
    let (modes, modes_total) = latest(modes);
    FleetReport {
        requests: counts.requests,
        fallbacks: counts.fallbacks,
        dead_letters: counts.dead_letters,
        modes,
        modes_total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{BreakerChange, Mode, ModeChange};

    fn t(s: i64) -> Timestamp {
        chrono::DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn rollup(start: i64, changes: &[(i64, BreakerState, BreakerState)]) -> ProviderRollup {
        let mut counts = CallCounts {
            calls: 10,
            successes: 9,
            ..Default::default()
        };
        counts.failovers_away = 1;
        for ms in [
            100.0, 200.0, 300.0, 400.0, 500.0, 600.0, 700.0, 800.0, 900.0,
        ] {
            counts.latency_ms.record(ms);
        }
        ProviderRollup {
            provider: "openai".into(),
            start: t(start),
            end: t(start + 60),
            counts,
            p50_ms: None,
            p95_ms: None,
            breaker_at_start: BreakerState::Closed,
            breaker_at_end: BreakerState::Closed,
            breaker_changes: changes
                .iter()
                .map(|&(at, from, to)| BreakerChange {
                    at: t(at),
                    from,
                    to,
                    cause: Some("server_error".into()),
                })
                .collect(),
            open_ms: 0,
            worker_id: "w".into(),
        }
    }

    #[test]
    fn outages_availability_and_trend() {
        use BreakerState::*;
        let mut a = rollup(
            0,
            &[
                (30, Closed, Open),
                (40, Open, HalfOpen),
                (45, HalfOpen, Open),
            ],
        );
        a.open_ms = 30_000;
        let mut b = rollup(60, &[(70, Open, HalfOpen), (75, HalfOpen, Closed)]);
        b.breaker_at_start = Open;
        b.open_ms = 15_000;
        let c = rollup(120, &[(150, Closed, Open)]);
        let mut c_open = c.clone();
        c_open.open_ms = 30_000;
        let report = build(Inputs {
            since: t(0),
            until: t(200),
            interval_ms: 60_000,
            providers: vec!["openai".into(), "grok".into()],
            // Out of order and one duplicate: both happen when reading a stream back.
            rollups: vec![c_open, a.clone(), b, a],
            fleet: vec![],
            spend: vec![],
        });
        let p = &report.providers[0];
        assert_eq!(p.outages.len(), 2);
        assert_eq!((p.outages[0].start, p.outages[0].end), (t(30), Some(t(75))));
        assert_eq!(p.outages[0].duration_ms, 45_000);
        assert_eq!(p.outages[0].cause, "server_error");
        assert_eq!((p.outages[1].end, p.outages[1].duration_ms), (None, 50_000));
        assert_eq!(p.mttr_ms, Some(45_000));
        assert_eq!(p.outages_total, 2);
        assert_eq!(p.observed_ms, 180_000);
        assert!((p.availability_pct - 100.0 * (1.0 - 75.0 / 180.0)).abs() < 1e-9);
        assert_eq!((p.calls, p.failovers_away), (30, 3));
        assert!((p.failovers_per_hour - 60.0).abs() < 1e-9);
        assert_eq!(report.step_ms, 60_000);
        assert_eq!(p.trend.len(), 3);
        assert_eq!(p.trend[1].at, t(60));
        assert!((p.p95_ms.unwrap() - 900.0).abs() / 900.0 < 0.05);
        // A provider with no rollups was not observed: no outage, nothing to hold against it.
        let g = &report.providers[1];
        assert_eq!(
            (g.observed_ms, g.availability_pct, g.outages.len()),
            (0, 100.0, 0)
        );
    }

    #[test]
    fn transitions_no_rollup_recorded_still_open_and_end_outages() {
        use BreakerState::*;
        // A worker that had just started wrote the second rollup: it begins open without the
        // opening, and the third one begins closed without the closing.
        let a = rollup(0, &[]);
        let mut b = rollup(60, &[]);
        b.breaker_at_start = Open;
        let c = rollup(120, &[(130, Closed, Open), (150, Open, Closed)]);
        let report = build(Inputs {
            since: t(0),
            until: t(200),
            interval_ms: 60_000,
            providers: vec!["openai".into()],
            rollups: vec![a, b, c],
            fleet: vec![],
            spend: vec![],
        });
        let o: Vec<_> = report.providers[0]
            .outages
            .iter()
            .map(|o| (o.start, o.end))
            .collect();
        assert_eq!(o, [(t(60), Some(t(120))), (t(130), Some(t(150)))]);
        assert!(report.providers[0].outages[0].cause.starts_with("unknown"));
    }

    #[test]
    fn a_flapping_provider_lists_its_latest_outages_and_counts_them_all() {
        use BreakerState::*;
        let changes: Vec<(i64, BreakerState, BreakerState)> = (0..600)
            .flat_map(|i| [(i * 10, Closed, Open), (i * 10 + 5, Open, Closed)])
            .collect();
        let report = build(Inputs {
            since: t(0),
            until: t(6_000),
            interval_ms: 60_000,
            providers: vec!["openai".into()],
            rollups: vec![rollup(0, &changes)],
            fleet: vec![],
            spend: vec![],
        });
        let p = &report.providers[0];
        assert_eq!((p.outages.len(), p.outages_total), (500, 600));
        assert_eq!(p.outages.last().unwrap().start, t(5_990));
        assert_eq!(p.mttr_ms, Some(5_000));
    }

    #[test]
    fn the_mode_timeline() {
        let fleet = |start: i64, at_start: Mode, changes: Vec<ModeChange>| FleetRollup {
            start: t(start),
            end: t(start + 60),
            counts: FleetCounts {
                requests: 5,
                fallbacks: 1,
                dead_letters: 0,
            },
            mode_at_start: at_start,
            mode_at_end: changes.last().map_or(at_start, |c| c.to),
            mode_changes: changes,
            worker_id: "w".into(),
        };
        let change = |at, from, to| ModeChange {
            at: t(at),
            from,
            to,
            reason: format!("{from:?} to {to:?}"),
        };
        let report = build(Inputs {
            since: t(0),
            until: t(120),
            interval_ms: 60_000,
            providers: vec![],
            rollups: vec![],
            fleet: vec![
                fleet(
                    60,
                    Mode::Degraded,
                    vec![change(90, Mode::Degraded, Mode::Normal)],
                ),
                fleet(
                    0,
                    Mode::Normal,
                    vec![change(20, Mode::Normal, Mode::Degraded)],
                ),
            ],
            spend: vec![],
        });
        let modes: Vec<_> = report
            .fleet
            .modes
            .iter()
            .map(|m| (m.mode, m.start, m.end))
            .collect();
        assert_eq!(
            modes,
            [
                (Mode::Normal, t(0), Some(t(20))),
                (Mode::Degraded, t(20), Some(t(90))),
                (Mode::Normal, t(90), None)
            ]
        );
        assert_eq!((report.fleet.requests, report.fleet.fallbacks), (10, 2));
    }

    #[test]
    fn periods_and_steps() {
        assert_eq!(parse_since("7d"), chrono::TimeDelta::try_days(7));
        assert_eq!(parse_since("90m"), chrono::TimeDelta::try_minutes(90));
        for bad in ["", "7", "d", "0h", "7w", "-1d", "1.5h"] {
            assert_eq!(parse_since(bad), None, "{bad}");
        }
        assert_eq!(step_ms(t(0), t(900), 2_000), 5_000);
        assert_eq!(step_ms(t(0), t(3_600), 2_000), 30_000);
        assert_eq!(step_ms(t(0), t(3_600), 60_000), 60_000);
        assert_eq!(step_ms(t(0), t(86_400), 60_000), 900_000);
        assert_eq!(step_ms(t(0), t(7 * 86_400), 60_000), 3_600_000);
    }
}
