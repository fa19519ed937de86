//! What a scenario run measured, per phase (before / during / after the fault) and about the
//! faulty provider, computed from the recording and the simulator's call log. No I/O.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::catalog::Plan;
use super::load::Recording;
use crate::contract::{AttemptOutcome, BreakerState, Mode, Source};
use crate::simulator::{CallOutcome, CallRecord};

/// A gap this long without live calls means the fleet stopped sending to a provider.
const STOPPED_GAP: Duration = Duration::from_secs(2);
/// "Normal again" is judged on requests sent this long after the fault ended.
const SETTLE: Duration = Duration::from_secs(5);

/// One phase of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseStats {
    pub sent: f64,
    /// Got a result (any status).
    pub answered: f64,
    /// Share of sent requests answered `ok` (by a provider).
    pub success_rate: f64,
    /// Share of sent requests that got any result.
    pub answered_rate: f64,
    /// Publish → result, over answered requests.
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Results by source: provider, cache, fallback, none.
    pub by_source: BTreeMap<String, f64>,
    /// Results answered by each provider.
    pub by_provider: BTreeMap<String, f64>,
    /// Generation calls the simulator received for these requests, per request.
    pub calls_per_request: f64,
    /// Publish → result of cache and fallback answers.
    pub fallback_p50_ms: Option<f64>,
    pub fallback_p99_ms: Option<f64>,
    /// Results that arrived after their request's deadline.
    pub late: f64,
    /// Results with status `expired`.
    pub expired: f64,
}

/// What happened to the faulty provider(s).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultStats {
    /// Generation calls that reached a faulty provider during the fault (simulator log).
    pub calls_during: f64,
    /// Attempts on a faulty provider that did not succeed, as the workers saw them (results
    /// of requests sent during the fault): counts connection attempts the simulator cannot
    /// see on a closed port.
    pub failed_attempts_during: f64,
    /// Calls paid for nothing: the larger of failed calls seen by the simulator and failed
    /// attempts seen by the workers.
    pub wasted_calls: f64,
    /// Probes (model listings) that reached a faulty provider during the fault.
    pub probes_during: f64,
    /// Probes the workers report having sent to a faulty provider over the whole run.
    pub probes_sent: Option<f64>,
    /// From the fault's start to the last live call before a quiet spell of 2 s.
    pub stopped_after_s: Option<f64>,
    /// From the fault's end to the first successful live call to a faulty provider.
    pub back_after_s: Option<f64>,
    /// Breaker openings of a faulty provider announced during the run.
    pub breaker_opens: f64,
    /// The shortest time a faulty provider's breaker stayed open.
    pub shortest_open_s: Option<f64>,
    /// From the fault's start to the fleet announcing `minimal` mode.
    pub minimal_after_s: Option<f64>,
    /// Publish → result of cache/fallback answers to requests sent while the fleet knew
    /// every provider was down.
    pub known_down_fallback_p99_ms: Option<f64>,
    /// p99 of requests sent from 5 s after the fault ended.
    pub settled_after_p99_ms: Option<f64>,
}

/// One scenario run, or the median of several.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioReport {
    pub scenario: String,
    pub before: PhaseStats,
    pub during: PhaseStats,
    pub after: PhaseStats,
    pub fault: FaultStats,
    /// Host CPU steal during the run, percent.
    pub steal_pct: f64,
    /// Fault changes the simulator refused; non-empty means the run is not valid.
    pub fault_errors: Vec<String>,
}

/// Percentile of `v` (sorted in place); NaN when empty.
fn percentile(v: &mut [f64], p: f64) -> f64 {
    super::super::percentile(v, p)
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// When a call arrived, relative to the run's start.
fn arrival(c: &CallRecord, rec: &Recording) -> Duration {
    let at = c.at - chrono::Duration::milliseconds(c.latency_ms as i64);
    (at - rec.t0).to_std().unwrap_or(Duration::ZERO)
}

/// Builds the report of one run.
pub fn analyse(
    scenario: &str,
    plan: &Plan,
    rec: &Recording,
    log: &[CallRecord],
    probes_sent: Option<f64>,
    steal_pct: f64,
) -> ScenarioReport {
    let (start, end) = plan.window;
    let mut calls_by_request: HashMap<&str, usize> = HashMap::new();
    for c in log.iter().filter(|c| !c.probe) {
        if let Some(id) = &c.request_id {
            *calls_by_request.entry(id.as_str()).or_default() += 1;
        }
    }
    let phase = |from: Duration, to: Duration| {
        phase_stats(rec, &calls_by_request, |at| at >= from && at < to)
    };
    ScenarioReport {
        scenario: scenario.to_string(),
        before: phase(Duration::ZERO, start),
        during: phase(start, end),
        after: phase(end, Duration::MAX),
        fault: fault_stats(plan, rec, log, probes_sent),
        steal_pct,
        fault_errors: rec.fault_errors.clone(),
    }
}

fn phase_stats(
    rec: &Recording,
    calls_by_request: &HashMap<&str, usize>,
    in_phase: impl Fn(Duration) -> bool,
) -> PhaseStats {
    let mut s = PhaseStats::default();
    let (mut lat, mut fallback) = (Vec::new(), Vec::new());
    let mut calls = 0usize;
    for sent in rec.sent.iter().filter(|r| in_phase(r.at)) {
        s.sent += 1.0;
        calls += calls_by_request.get(sent.id.as_str()).copied().unwrap_or(0);
        let Some(got) = rec.results.get(&sent.id) else {
            continue;
        };
        s.answered += 1.0;
        let ms = got.at.saturating_sub(sent.at).as_secs_f64() * 1e3;
        lat.push(ms);
        let r = &got.result;
        if r.status == crate::contract::Status::Ok {
            s.success_rate += 1.0;
        }
        if r.status == crate::contract::Status::Expired {
            s.expired += 1.0;
        }
        if sent.deadline_ms.is_some_and(|d| ms > d as f64) {
            s.late += 1.0;
        }
        *s.by_source.entry(r.source.as_str().into()).or_default() += 1.0;
        if let (Source::Provider, Some(p)) = (r.source, &r.provider) {
            *s.by_provider.entry(p.to_string()).or_default() += 1.0;
        }
        if matches!(r.source, Source::Cache | Source::Fallback) {
            fallback.push(ms);
        }
    }
    if s.sent > 0.0 {
        s.success_rate /= s.sent;
        s.answered_rate = s.answered / s.sent;
        s.calls_per_request = calls as f64 / s.sent;
    }
    s.p50_ms = percentile(&mut lat, 0.5);
    s.p95_ms = percentile(&mut lat, 0.95);
    s.p99_ms = percentile(&mut lat, 0.99);
    s.max_ms = percentile(&mut lat, 1.0);
    if !fallback.is_empty() {
        s.fallback_p50_ms = Some(percentile(&mut fallback, 0.5));
        s.fallback_p99_ms = Some(percentile(&mut fallback, 0.99));
    }
    s
}

fn fault_stats(
    plan: &Plan,
    rec: &Recording,
    log: &[CallRecord],
    probes_sent: Option<f64>,
) -> FaultStats {
    let (start, end) = plan.window;
    let faulty: HashSet<&str> = plan.faulty.iter().copied().collect();
    let during = |at: Duration| at >= start && at < end;
    let mut f = FaultStats {
        probes_sent,
        ..FaultStats::default()
    };
    // Live calls touching a faulty provider: the simulator's log, plus failed attempts the
    // workers saw (a closed port logs nothing), placed at their request's send time.
    let mut touches: Vec<Duration> = Vec::new();
    let mut failed_calls = 0.0_f64;
    for c in log.iter().filter(|c| faulty.contains(c.provider.as_str())) {
        let at = arrival(c, rec);
        if c.probe {
            if during(at) {
                f.probes_during += 1.0;
            }
            continue;
        }
        if during(at) {
            f.calls_during += 1.0;
            touches.push(at);
            if c.outcome != CallOutcome::Ok {
                failed_calls += 1.0;
            }
        }
        if at >= end && c.outcome == CallOutcome::Ok {
            let back = secs(at - end);
            f.back_after_s = Some(f.back_after_s.map_or(back, |b: f64| b.min(back)));
        }
    }
    for sent in rec.sent.iter().filter(|s| during(s.at)) {
        let Some(got) = rec.results.get(&sent.id) else {
            continue;
        };
        let failed =
            got.result.attempts.iter().filter(|a| {
                faulty.contains(a.provider.as_str()) && a.outcome != AttemptOutcome::Ok
            });
        let n = failed.count();
        if n > 0 {
            f.failed_attempts_during += n as f64;
            touches.push(sent.at);
        }
    }
    f.wasted_calls = failed_calls.max(f.failed_attempts_during);
    touches.sort();
    f.stopped_after_s = touches
        .iter()
        .enumerate()
        .find(|(i, at)| {
            let next = touches.get(i + 1).copied().unwrap_or(end).min(end);
            next.saturating_sub(**at) >= STOPPED_GAP
        })
        .map(|(_, at)| secs(at.saturating_sub(start)));

    // Breaker openings and how long each lasted, from the fleet's health events.
    let mut opened: HashMap<&str, Duration> = HashMap::new();
    for (at, e) in &rec.health {
        if !faulty.contains(e.provider.as_str()) {
            continue;
        }
        if e.breaker == BreakerState::Open && e.previous_breaker != BreakerState::Open {
            f.breaker_opens += 1.0;
            opened.insert(e.provider.as_str(), *at);
        } else if e.breaker == BreakerState::Closed
            && let Some(o) = opened.remove(e.provider.as_str())
        {
            let open = secs(at.saturating_sub(o));
            f.shortest_open_s = Some(f.shortest_open_s.map_or(open, |s: f64| s.min(open)));
        }
    }

    // All down: from the moment the fleet announced `minimal`, fallback answers should be
    // immediate.
    let minimal = rec
        .modes
        .iter()
        .find(|(at, m)| *at >= start && m.mode == Mode::Minimal)
        .map(|(at, _)| *at);
    f.minimal_after_s = minimal.map(|m| secs(m.saturating_sub(start)));
    if let Some(known) = minimal {
        let mut v: Vec<f64> = rec
            .sent
            .iter()
            .filter(|s| s.at >= known && s.at < end)
            .filter_map(|s| {
                let got = rec.results.get(&s.id)?;
                matches!(got.result.source, Source::Cache | Source::Fallback)
                    .then(|| got.at.saturating_sub(s.at).as_secs_f64() * 1e3)
            })
            .collect();
        if !v.is_empty() {
            f.known_down_fallback_p99_ms = Some(percentile(&mut v, 0.99));
        }
    }
    let mut settled: Vec<f64> = rec
        .sent
        .iter()
        .filter(|s| s.at >= end + SETTLE)
        .filter_map(|s| {
            let got = rec.results.get(&s.id)?;
            Some(got.at.saturating_sub(s.at).as_secs_f64() * 1e3)
        })
        .collect();
    if !settled.is_empty() {
        f.settled_after_p99_ms = Some(percentile(&mut settled, 0.99));
    }
    f
}

/// The median of several runs of one scenario, field by field.
pub fn median(reports: &[ScenarioReport]) -> anyhow::Result<ScenarioReport> {
    let values: Vec<serde_json::Value> = reports
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<_, _>>()?;
    Ok(serde_json::from_value(median_value(&values))?)
}

/// Numbers → their median (absent counts as absent); objects → key by key; anything else →
/// the first run's.
fn median_value(values: &[serde_json::Value]) -> serde_json::Value {
    use serde_json::Value;
    let Some(first) = values.first() else {
        return Value::Null;
    };
    let numbers: Vec<f64> = values.iter().filter_map(Value::as_f64).collect();
    if !numbers.is_empty() && values.iter().all(|v| v.is_number() || v.is_null()) {
        let mut n = numbers;
        return serde_json::json!(percentile(&mut n, 0.5));
    }
    if values.iter().all(Value::is_object) {
        let mut keys: Vec<&String> = values
            .iter()
            .flat_map(|v| v.as_object().into_iter().flat_map(|o| o.keys()))
            .collect();
        keys.sort();
        keys.dedup();
        let mut out = serde_json::Map::new();
        for k in keys {
            let col: Vec<Value> = values
                .iter()
                .map(|v| v.get(k).cloned().unwrap_or(Value::Null))
                .collect();
            out.insert(k.clone(), median_value(&col));
        }
        return Value::Object(out);
    }
    first.clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::AnalysisResult;

    fn plan() -> Plan {
        super::super::catalog::Scenario::Outage503.plan(Duration::from_secs(40))
    }

    fn result(id: &str, source: Source, provider: Option<&str>) -> AnalysisResult {
        let mut r: AnalysisResult = serde_json::from_value(serde_json::json!({
            "request_id": id, "kind": "signal", "status": "ok", "source": "provider",
            "mode": "normal", "risk": {"position_multiplier": 1.0, "min_confidence": 0.0,
            "trading_suspended": false}, "attempts": [], "latency_ms": 0,
            "usage": {"input_tokens": 0, "output_tokens": 0}, "cost_usd": 0.0,
            "worker_id": "w", "completed_at": "2026-11-27T00:00:00Z"
        }))
        .unwrap();
        r.source = source;
        r.provider = provider.map(Into::into);
        if source != Source::Provider {
            r.status = crate::contract::Status::Degraded;
        }
        r
    }

    fn call(rec: &Recording, provider: &str, at_s: f64, ok: bool, probe: bool) -> CallRecord {
        CallRecord {
            provider: provider.into(),
            model: "m".into(),
            request_id: None,
            probe,
            outcome: if ok {
                CallOutcome::Ok
            } else {
                CallOutcome::Outage
            },
            http_status: None,
            latency_ms: 0,
            at: rec.t0 + chrono::Duration::milliseconds((at_s * 1e3) as i64),
        }
    }

    #[test]
    fn phases_latencies_and_the_faulty_providers_story() {
        let mut rec = Recording {
            t0: chrono::Utc::now(),
            ..Recording::default()
        };
        // One request a second for 40 s; during the fault (10–30 s) they are answered by
        // the fallback in 20 ms, otherwise by openai in 60 ms.
        for i in 0..40u64 {
            let id = format!("r{i}");
            let at = Duration::from_secs(i);
            let down = (10..30).contains(&i);
            let (source, provider, ms) = if down {
                (Source::Fallback, None, 20)
            } else {
                (Source::Provider, Some("openai"), 60)
            };
            rec.sent.push(super::super::load::Sent {
                id: id.clone(),
                at,
                deadline_ms: None,
            });
            rec.results.insert(
                id.clone(),
                super::super::load::Received {
                    at: at + Duration::from_millis(ms),
                    result: result(&id, source, provider),
                },
            );
        }
        // Three failed calls at 10.0–10.2 s, then quiet; probes each second; back at 30.5 s.
        let mut log = vec![
            call(&rec, "openai", 10.0, false, false),
            call(&rec, "openai", 10.1, false, false),
            call(&rec, "openai", 10.2, false, false),
            call(&rec, "openai", 30.5, true, false),
        ];
        for s in 11..30 {
            log.push(call(&rec, "openai", s as f64, false, true));
        }
        let r = analyse("outage_503", &plan(), &rec, &log, Some(19.0), 0.0);
        assert_eq!(
            (r.before.sent, r.during.sent, r.after.sent),
            (10.0, 20.0, 10.0)
        );
        assert_eq!(r.during.success_rate, 0.0);
        assert_eq!(r.during.answered_rate, 1.0);
        assert!((r.during.p99_ms - 20.0).abs() < 1.0, "{}", r.during.p99_ms);
        assert!((r.before.p50_ms - 60.0).abs() < 1.0);
        assert_eq!(r.during.fallback_p99_ms.map(f64::round), Some(20.0));
        assert_eq!(r.fault.calls_during, 3.0);
        assert_eq!(r.fault.wasted_calls, 3.0);
        assert_eq!(r.fault.probes_during, 19.0);
        assert!((r.fault.stopped_after_s.unwrap() - 0.2).abs() < 0.01);
        assert!((r.fault.back_after_s.unwrap() - 0.5).abs() < 0.01);

        let again = median(&[r.clone(), r.clone(), r.clone()]).unwrap();
        assert_eq!(again, r);
    }

    #[test]
    fn medians_take_the_middle_run() {
        let v = |x: f64| serde_json::json!({"a": x, "b": {"c": x * 2.0}, "s": "keep"});
        let m = median_value(&[v(3.0), v(1.0), v(2.0)]);
        assert_eq!(m, v(2.0));
    }
}
