//! The fleet's shared record of each provider (`ai_provider_health`), as pure functions of
//! the record and the time: call outcomes counted into it, the fleet prober's probes, its
//! probe slot. The same [`Breaker`] state machine the engine uses runs on the record; the
//! I/O (compare-and-set) is [`super::health_store`]'s.

use std::time::Duration;

use crate::config::BreakerConfig;
use crate::contract::{BreakerState, ErrorClass, LastError, ProviderHealthRecord, Timestamp};
use crate::engine::breaker::Breaker;
use crate::engine::clock::TimeMap;
use crate::engine::policy::policy;
use crate::engine::probing::ProbeVerdict;
use crate::engine::slot::status_of;

/// One finished call, as the record counts it.
#[derive(Debug, Clone)]
pub struct CallOutcome {
    pub ok: bool,
    /// Counts toward the breaker (a failure of a class that does).
    pub breaker_failure: bool,
    pub latency: Duration,
    pub error: Option<(ErrorClass, String)>,
    /// When the call ended. Workers write failures at once and successes in batches, so a
    /// success can reach the record after a later failure of another worker's: it must not
    /// reset the fleet's count of failures in a row.
    pub at: Timestamp,
}

fn breaker_of(r: &ProviderHealthRecord, t: TimeMap) -> Breaker {
    Breaker {
        state: r.breaker,
        open_until: r.open_until.map(|u| t.instant(u)),
        open_count: r.open_count,
        consecutive_failures: r.consecutive_failures,
        window: r.window,
        probes_in_flight: 0,
        opened_at: None,
    }
}

fn store_breaker(r: &mut ProviderHealthRecord, b: &Breaker, t: TimeMap) {
    // The probe slot goes with a close, and with a failed trial (half-open → open) so the
    // next trial can take it; an open breaker keeps the fleet prober's slot.
    let trial_over = b.state == BreakerState::Closed
        || (b.state == BreakerState::Open && r.breaker == BreakerState::HalfOpen);
    if trial_over {
        r.probe_owner = None;
        r.probe_until = None;
    }
    r.breaker = b.state;
    r.open_until = b.open_until.map(|i| t.utc_of(i));
    r.open_count = b.open_count;
    r.consecutive_failures = b.consecutive_failures;
    r.window = b.window;
}

/// Recomputes `status` from the other fields.
pub fn refresh_status(r: &mut ProviderHealthRecord, utc: Timestamp) {
    let forced = r
        .forced
        .as_ref()
        .filter(|f| f.until.is_none_or(|u| utc < u))
        .map(|f| f.status);
    r.status = status_of(forced, r.quarantined, r.breaker, r.success_rate);
}

/// Applies call outcomes, in order, to a record.
pub fn apply_outcomes(
    r: &mut ProviderHealthRecord,
    cfg: &BreakerConfig,
    outcomes: &[CallOutcome],
    p95_ms: f64,
    t: TimeMap,
) -> String {
    let mut b = breaker_of(r, t);
    let mut reason = String::new();
    // Half-open only to let a success close it (a live trial call that worked). A failure
    // of an open provider changes nothing: trial failures are each worker's own business,
    // and the fleet's prober decides when the shared breaker closes.
    if outcomes.iter().any(|o| o.ok)
        && let Some(tr) = b.tick(t.now)
    {
        reason = tr.reason;
    }
    for o in outcomes {
        let tr = if o.ok {
            let ms = o.latency.as_secs_f64() * 1_000.0;
            r.latency_ms_ewma = if r.latency_ms_ewma == 0.0 {
                ms
            } else {
                r.latency_ms_ewma + 0.2 * (ms - r.latency_ms_ewma)
            };
            let late = r
                .last_error
                .as_ref()
                .is_some_and(|e| e.at > o.at && policy(e.class).breaker_failure);
            if late {
                b.on_late_success(cfg, o.latency);
                None
            } else {
                b.on_success(cfg, t.now, o.latency)
            }
        } else if o.breaker_failure {
            let what = o.error.as_ref().map_or("failure", |(c, _)| c.as_str());
            b.on_failure(cfg, t.now, o.latency, what)
        } else {
            None
        };
        if let Some((class, message)) = &o.error {
            r.last_error = Some(LastError {
                class: *class,
                message: message.clone(),
                at: o.at,
            });
        }
        if let Some(tr) = tr {
            reason = tr.reason;
        }
    }
    store_breaker(r, &b, t);
    r.success_rate = if r.window.calls == 0 {
        1.0
    } else {
        1.0 - r.window.failures as f64 / r.window.calls as f64
    };
    if p95_ms > 0.0 {
        r.latency_ms_p95 = p95_ms;
    }
    if reason.is_empty() {
        let calls = match r.window.calls {
            1 => "call".to_string(),
            n => format!("{n} calls"),
        };
        reason = format!(
            "success rate {:.0}% over the last {calls}",
            r.success_rate * 100.0
        );
    }
    reason
}

/// A provider one failure from opening its breaker (the fleet's count of failures in a row
/// is one short): the prober gives the verdict with a free probe instead of a paid call.
pub fn suspect(r: &ProviderHealthRecord, cfg: &BreakerConfig) -> bool {
    r.breaker == BreakerState::Closed
        && cfg.consecutive_failures >= 2
        && r.consecutive_failures + 1 >= cfg.consecutive_failures
}

/// Books a fleet probe of the provider whose record is `r`, made by worker `me`.
///
/// Open breaker: the first `Up` once the open period is over closes it for the fleet;
/// otherwise the prober keeps the provider's probe slot for `hold` more (so no worker sends
/// a live trial call) and notes what it saw; an inconclusive probe gives the slot up (live
/// trial calls decide). Failed probes neither extend nor lengthen the open period.
///
/// Closed breaker of a [`suspect`] provider: a `Down` is the failure that opens it.
///
/// `None` when there is nothing to write (another worker's live trial holds the slot, or a
/// closed breaker learnt nothing).
pub fn apply_probe(
    r: &mut ProviderHealthRecord,
    verdict: ProbeVerdict,
    message: &str,
    me: &str,
    hold: Duration,
    cfg: &BreakerConfig,
    t: TimeMap,
) -> Option<String> {
    let note = |r: &mut ProviderHealthRecord, class| {
        r.last_error = Some(LastError {
            class,
            message: message.to_string(),
            at: t.utc,
        });
    };
    if r.breaker == BreakerState::Closed {
        let ProbeVerdict::Down(class) = verdict else {
            return None;
        };
        let mut b = breaker_of(r, t);
        let opened = b.on_failure(cfg, t.now, Duration::ZERO, class.as_str());
        store_breaker(r, &b, t);
        note(r, class);
        return Some(opened.map_or(format!("probe failed ({class})"), |tr| {
            format!("{}, the last a probe", tr.reason)
        }));
    }
    let held_by_other = r
        .probe_owner
        .as_ref()
        .is_some_and(|o| o != me && r.probe_until.is_some_and(|u| t.utc < u));
    if held_by_other {
        return None;
    }
    let open_over = r.open_until.is_none_or(|u| t.utc >= u);
    let keep_slot = |r: &mut ProviderHealthRecord| {
        r.probe_owner = Some(me.to_string());
        r.probe_until = Some(t.utc + chrono::Duration::from_std(hold).unwrap_or_default());
    };
    match verdict {
        ProbeVerdict::Up if open_over => {
            let opened = r.breaker_changed_at.map_or(String::new(), |at| {
                format!(" after {:.1} s open", (t.utc - at).as_seconds_f64())
            });
            store_breaker(r, &Breaker::default(), t);
            Some(format!("probe succeeded{opened}"))
        }
        ProbeVerdict::Up => {
            keep_slot(r);
            Some("probe succeeded; the open period is not over yet".into())
        }
        ProbeVerdict::Down(class) => {
            keep_slot(r);
            note(r, class);
            Some(format!("probe failed ({class})"))
        }
        ProbeVerdict::Inconclusive(class) => release_probe_slot(r, me)
            .then(|| format!("probe inconclusive ({class}); live trial calls decide")),
    }
}

/// Gives the probe slot up if `me` holds it (a live trial may go); whether it did.
pub fn release_probe_slot(r: &mut ProviderHealthRecord, me: &str) -> bool {
    if r.probe_owner.as_deref() != Some(me) {
        return false;
    }
    r.probe_owner = None;
    r.probe_until = None;
    true
}

/// Takes (or extends) the probe slot of the provider whose record is `r` for worker `me`
/// until `until`, before a probe goes out, so that no worker's breaker half-opens into a
/// live trial while the probe runs. `None` when there is nothing to write: the breaker is
/// closed, another worker holds the slot, or ours already lasts that long.
pub fn claim_probe_slot(
    r: &mut ProviderHealthRecord,
    me: &str,
    until: Timestamp,
    t: TimeMap,
) -> Option<String> {
    if r.breaker == BreakerState::Closed {
        return None;
    }
    let held_until = r.probe_until.filter(|u| t.utc < *u);
    match (&r.probe_owner, held_until) {
        (Some(o), Some(_)) if o != me => None,
        (Some(_), Some(u)) if u >= until => None,
        _ => {
            r.probe_owner = Some(me.to_string());
            r.probe_until = Some(until);
            Some("probe slot taken by the fleet's prober".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOLD: Duration = Duration::from_secs(4);
    static CFG: std::sync::LazyLock<BreakerConfig> =
        std::sync::LazyLock::new(BreakerConfig::default);

    fn open_record(open_until: Timestamp) -> ProviderHealthRecord {
        let mut r = ProviderHealthRecord::new("p", "w1");
        r.breaker = BreakerState::Open;
        r.open_until = Some(open_until);
        r.open_count = 1;
        r.consecutive_failures = 3;
        r
    }

    #[test]
    fn a_probe_closes_the_breaker_only_after_the_open_period() {
        let t = TimeMap::now();
        let mut r = open_record(t.utc + chrono::Duration::seconds(2));
        let why = apply_probe(&mut r, ProbeVerdict::Up, "", "prober", HOLD, &CFG, t).unwrap();
        assert!(why.contains("not over"), "{why}");
        assert_eq!(r.breaker, BreakerState::Open);
        assert_eq!(r.probe_owner.as_deref(), Some("prober"));

        let later = TimeMap {
            now: t.now + Duration::from_secs(3),
            utc: t.utc + chrono::Duration::seconds(3),
        };
        let why = apply_probe(&mut r, ProbeVerdict::Up, "", "prober", HOLD, &CFG, later).unwrap();
        assert!(why.starts_with("probe succeeded"), "{why}");
        assert_eq!(
            (
                r.breaker,
                r.open_until,
                r.open_count,
                r.consecutive_failures
            ),
            (BreakerState::Closed, None, 0, 0)
        );
        assert_eq!((&r.probe_owner, r.probe_until), (&None, None));
        // Nothing more to do for a closed breaker.
        assert!(apply_probe(&mut r, ProbeVerdict::Up, "", "prober", HOLD, &CFG, later).is_none());
    }

    #[test]
    fn a_failed_probe_keeps_the_slot_and_never_extends_the_open_period() {
        let t = TimeMap::now();
        let until = t.utc - chrono::Duration::seconds(1);
        let mut r = open_record(until);
        let down = ProbeVerdict::Down(ErrorClass::Timeout);
        apply_probe(&mut r, down, "no answer", "prober", HOLD, &CFG, t).unwrap();
        assert_eq!(
            (r.breaker, r.open_until, r.open_count),
            (BreakerState::Open, Some(until), 1)
        );
        assert_eq!(r.probe_owner.as_deref(), Some("prober"));
        assert_eq!(r.last_error.as_ref().unwrap().class, ErrorClass::Timeout);
        // Another worker's live slot is left alone; an inconclusive probe gives ours up.
        assert!(apply_probe(&mut r, down, "", "other", HOLD, &CFG, t).is_none());
        let unsure = ProbeVerdict::Inconclusive(ErrorClass::BadRequest);
        apply_probe(&mut r, unsure, "404", "prober", HOLD, &CFG, t).unwrap();
        assert_eq!(r.probe_owner, None);
    }

    #[test]
    fn a_failed_probe_of_a_suspect_provider_opens_its_breaker() {
        let t = TimeMap::now();
        let mut r = ProviderHealthRecord::new("p", "w1");
        r.consecutive_failures = 1;
        assert!(!suspect(&r, &CFG), "two failures short of three");
        r.consecutive_failures = 2;
        assert!(suspect(&r, &CFG));
        let up = apply_probe(&mut r, ProbeVerdict::Up, "", "prober", HOLD, &CFG, t);
        assert!(
            up.is_none(),
            "a closed breaker learns nothing from a good probe"
        );
        let down = ProbeVerdict::Down(ErrorClass::Network);
        let why = apply_probe(&mut r, down, "refused", "prober", HOLD, &CFG, t).unwrap();
        assert!(why.contains("3 consecutive failures"), "{why}");
        assert_eq!(r.breaker, BreakerState::Open);
        assert_eq!(r.probe_owner, None, "no slot is held for a verdict probe");
    }

    #[test]
    fn the_prober_claims_a_free_slot_before_probing() {
        let t = TimeMap::now();
        let until = t.utc + chrono::Duration::seconds(3);
        let mut r = open_record(t.utc);
        assert!(claim_probe_slot(&mut r, "prober", until, t).is_some());
        assert_eq!(
            (r.probe_owner.as_deref(), r.probe_until),
            (Some("prober"), Some(until))
        );
        assert!(
            claim_probe_slot(&mut r, "prober", until, t).is_none(),
            "already ours"
        );
        assert!(
            claim_probe_slot(&mut r, "other", until, t).is_none(),
            "taken"
        );
        let mut closed = ProviderHealthRecord::new("p", "w1");
        assert!(claim_probe_slot(&mut closed, "prober", until, t).is_none());
    }

    #[test]
    fn failures_of_an_open_provider_change_nothing_and_a_success_after_its_period_closes_it() {
        let cfg = BreakerConfig::default();
        let t = TimeMap::now();
        let mut r = open_record(t.utc - chrono::Duration::seconds(1));
        r.probe_owner = Some("prober".into());
        let fail = CallOutcome {
            ok: false,
            breaker_failure: true,
            latency: Duration::from_millis(5),
            error: Some((ErrorClass::ServerError, "503".into())),
            at: t.utc,
        };
        apply_outcomes(&mut r, &cfg, &[fail], 0.0, t);
        assert_eq!(
            (r.breaker, r.open_count),
            (BreakerState::Open, 1),
            "no doubling"
        );
        assert_eq!(
            r.probe_owner.as_deref(),
            Some("prober"),
            "the prober keeps its slot"
        );
        let ok = CallOutcome {
            ok: true,
            breaker_failure: false,
            latency: Duration::from_millis(5),
            error: None,
            at: t.utc + chrono::Duration::milliseconds(1),
        };
        apply_outcomes(&mut r, &cfg, &[ok], 0.0, t);
        assert_eq!(r.breaker, BreakerState::Closed);
    }

    #[test]
    fn a_success_that_arrives_late_does_not_reset_the_failures_in_a_row() {
        let cfg = BreakerConfig::default();
        let t = TimeMap::now();
        let mut r = ProviderHealthRecord::new("p", "w1");
        let at = |ms: i64| t.utc + chrono::Duration::milliseconds(ms);
        let outcome = |ok: bool, ms: i64| CallOutcome {
            ok,
            breaker_failure: !ok,
            latency: Duration::from_millis(5),
            error: (!ok).then(|| (ErrorClass::Overloaded, "529".into())),
            at: at(ms),
        };
        // Worker A writes two failures at once; worker B's batched success from before them
        // arrives next; then A's third failure.
        apply_outcomes(
            &mut r,
            &cfg,
            &[outcome(false, 10), outcome(false, 20)],
            0.0,
            t,
        );
        apply_outcomes(&mut r, &cfg, &[outcome(true, 5)], 0.0, t);
        assert_eq!(r.consecutive_failures, 2);
        apply_outcomes(&mut r, &cfg, &[outcome(false, 30)], 0.0, t);
        assert_eq!(r.breaker, BreakerState::Open);
        assert_eq!(
            r.window.calls, 4,
            "the late success still counts in the window"
        );
    }
}
