//! What the fleet's breakers and mode were when: every worker follows `ai_provider_health`
//! (the health watch shows it every record), so each keeps the recent transitions it saw and
//! can tell, for any interval, how long a breaker was open and how the mode changed. A worker
//! that started later knows the last transition before it from the records themselves
//! (`breaker_changed_at`, the mode's `since`).

use std::collections::HashMap;

use parking_lot::Mutex;

use crate::contract::{
    BreakerChange, BreakerState, FleetModeRecord, Mode, ModeChange, ProviderHealthRecord, Timestamp,
};

/// Points older than this (behind the newest point) are dropped, except the last one before
/// it: intervals are rolled up within seconds of ending.
const KEEP: chrono::TimeDelta = chrono::TimeDelta::hours(2);

/// A state from `at` on.
#[derive(Debug, Clone, PartialEq)]
struct Point<S> {
    at: Timestamp,
    state: S,
    /// Why it changed (a breaker's opening cause, a mode's reason).
    why: Option<String>,
}

/// One thing's states over time, oldest first.
#[derive(Debug, Clone)]
struct Line<S>(Vec<Point<S>>);

impl<S: Copy + PartialEq> Line<S> {
    /// Notes `state` from `at` on, if it is a change.
    fn observe(&mut self, at: Timestamp, state: S, why: Option<String>) {
        if self.0.last().is_some_and(|p| p.state == state) {
            return;
        }
        // A record's change time can be older than a point seen before it (a worker's clock,
        // a late watch): keep the line in order.
        let at = self.0.last().map_or(at, |p| p.at.max(at));
        self.0.push(Point { at, state, why });
        if let Some(cut) = self.0.iter().rposition(|p| p.at < at - KEEP) {
            self.0.drain(..cut);
        }
    }

    /// The state at `t` (`initial` before anything was seen).
    fn at(&self, t: Timestamp, initial: S) -> S {
        self.0
            .iter()
            .rev()
            .find(|p| p.at <= t)
            .map_or(initial, |p| p.state)
    }

    /// The changes in `[start, end)`, each with the state before it.
    fn changes(&self, start: Timestamp, end: Timestamp, initial: S) -> Vec<(Point<S>, S)> {
        let mut before = initial;
        let mut out = Vec::new();
        for p in &self.0 {
            // The first point seen may only restate what was assumed before it.
            if p.at >= start && p.at < end && p.state != before {
                out.push((p.clone(), before));
            }
            before = p.state;
        }
        out
    }
}

impl<S: Copy + PartialEq> Default for Line<S> {
    fn default() -> Self {
        Line(Vec::new())
    }
}

/// A provider's breaker over `[start, end)`.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerSpan {
    pub at_start: BreakerState,
    pub at_end: BreakerState,
    pub changes: Vec<BreakerChange>,
    /// Time not closed.
    pub open_ms: u64,
}

/// The fleet's mode over `[start, end)`.
#[derive(Debug, Clone, PartialEq)]
pub struct ModeSpan {
    pub at_start: Mode,
    pub at_end: Mode,
    pub changes: Vec<ModeChange>,
}

/// The transitions this worker has seen.
pub struct Timeline {
    breakers: Mutex<HashMap<String, Line<BreakerState>>>,
    mode: Mutex<Line<Mode>>,
    since: Timestamp,
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline {
            breakers: Mutex::default(),
            mode: Mutex::default(),
            since: crate::engine::clock::wall_now(),
        }
    }
}

impl Timeline {
    /// From when on it has seen every transition (before, it knows only the last one of
    /// each record).
    pub fn since(&self) -> Timestamp {
        self.since
    }

    /// Notes a provider's record (from the watch).
    pub fn provider(&self, r: &ProviderHealthRecord) {
        let at = r.breaker_changed_at.unwrap_or(r.updated_at);
        let cause = (r.breaker != BreakerState::Closed)
            .then(|| r.last_error.as_ref().map(|e| e.class.as_str().to_string()))
            .flatten();
        self.breakers
            .lock()
            .entry(r.provider.to_string())
            .or_default()
            .observe(at, r.breaker, cause);
    }

    /// Notes the fleet's mode record (from the watch).
    pub fn mode(&self, r: &FleetModeRecord) {
        self.mode
            .lock()
            .observe(r.since, r.mode, Some(r.reason.clone()));
    }

    /// `provider`'s breaker over `[start, end)`.
    pub fn breaker(&self, provider: &str, start: Timestamp, end: Timestamp) -> BreakerSpan {
        let closed = BreakerState::Closed;
        let line = self
            .breakers
            .lock()
            .get(provider)
            .cloned()
            .unwrap_or_default();
        let at_start = line.at(start, closed);
        let changes = line.changes(start, end, closed);
        let mut open_ms = 0;
        let (mut state, mut since) = (at_start, start);
        for (p, _) in &changes {
            if state != closed {
                open_ms += (p.at - since).num_milliseconds().max(0) as u64;
            }
            (state, since) = (p.state, p.at);
        }
        if state != closed {
            open_ms += (end - since).num_milliseconds().max(0) as u64;
        }
        BreakerSpan {
            at_start,
            at_end: state,
            changes: changes
                .into_iter()
                .map(|(p, from)| BreakerChange {
                    at: p.at,
                    from,
                    to: p.state,
                    cause: p.why,
                })
                .collect(),
            open_ms,
        }
    }

    /// The fleet's mode over `[start, end)`.
    pub fn modes(&self, start: Timestamp, end: Timestamp) -> ModeSpan {
        let line = self.mode.lock().clone();
        let at_start = line.at(start, Mode::Normal);
        let changes: Vec<ModeChange> = line
            .changes(start, end, Mode::Normal)
            .into_iter()
            .map(|(p, from)| ModeChange {
                at: p.at,
                from,
                to: p.state,
                reason: p.why.unwrap_or_default(),
            })
            .collect();
        ModeSpan {
            at_start,
            at_end: changes.last().map_or(at_start, |c| c.to),
            changes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        chrono::DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn record(breaker: BreakerState, changed: i64) -> ProviderHealthRecord {
        let mut r = ProviderHealthRecord::new("openai", "w");
        r.breaker = breaker;
        r.breaker_changed_at = Some(t(changed));
        r
    }

    #[test]
    fn open_time_and_changes_within_an_interval() {
        use BreakerState::*;
        let tl = Timeline::default();
        tl.provider(&record(Closed, 0));
        tl.provider(&record(Open, 70));
        tl.provider(&record(Open, 70)); // the same state again: not a change
        tl.provider(&record(HalfOpen, 80));
        tl.provider(&record(Closed, 95));
        let before = tl.breaker("openai", t(0), t(60));
        assert_eq!((before.open_ms, before.changes.len()), (0, 0));
        let during = tl.breaker("openai", t(60), t(120));
        assert_eq!(during.open_ms, 25_000);
        assert_eq!((during.at_start, during.at_end), (Closed, Closed));
        let to: Vec<_> = during.changes.iter().map(|c| (c.from, c.to)).collect();
        assert_eq!(to, [(Closed, Open), (Open, HalfOpen), (HalfOpen, Closed)]);
        // An interval inside the outage was open throughout.
        assert_eq!(tl.breaker("openai", t(71), t(79)).open_ms, 8_000);
        // A provider never seen was closed.
        assert_eq!(tl.breaker("grok", t(0), t(60)).at_end, Closed);
    }

    #[test]
    fn mode_changes_within_an_interval() {
        let tl = Timeline::default();
        let mut r = FleetModeRecord {
            mode: Mode::Normal,
            since: t(0),
            manual_suspend: false,
            reason: "start".into(),
            updated_by: "w".into(),
            manual: None,
        };
        tl.mode(&r);
        r.mode = Mode::Degraded;
        r.since = t(30);
        r.reason = "openai down".into();
        tl.mode(&r);
        let span = tl.modes(t(0), t(60));
        assert_eq!((span.at_start, span.at_end), (Mode::Normal, Mode::Degraded));
        assert_eq!(span.changes.len(), 1);
        assert_eq!(span.changes[0].reason, "openai down");
        assert_eq!(tl.modes(t(60), t(120)).at_start, Mode::Degraded);
    }
}
