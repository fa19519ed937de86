//! Which transitions are worth telling people about, and how to say it. Pure: the desk
//! publishes what this decides.

use crate::contract::{
    AlertType, BreakerState, HealthStatus, Mode, ModeEvent, ProviderHealthRecord, Severity,
};

/// An alert to raise: its type, severity, subject, the state it is about, and the sentence.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub alert_type: AlertType,
    pub severity: Severity,
    pub provider: Option<String>,
    pub from: String,
    pub to: String,
    pub message: String,
    pub details: serde_json::Map<String, serde_json::Value>,
    /// Raise it only when the last alert of its type and subject was in this state (an
    /// all-clear follows the alarm it clears, never another all-clear or nothing).
    pub only_after: Option<&'static str>,
    /// The tenant it concerns, if one (a tenant's budget).
    pub tenant: Option<String>,
}

fn down(status: HealthStatus, breaker: BreakerState) -> bool {
    status == HealthStatus::Unhealthy || breaker == BreakerState::Open
}

/// The alert, if any, for a provider record written with a transition from `before`.
pub fn health(
    before: (HealthStatus, BreakerState),
    record: &ProviderHealthRecord,
    reason: &str,
) -> Option<Decision> {
    let (status, breaker) = (record.status, record.breaker);
    let p = record.provider.to_string();
    let decision = |alert_type, severity, message: String| Decision {
        alert_type,
        severity,
        provider: Some(p.clone()),
        from: before.0.as_str().into(),
        to: status.as_str().into(),
        message,
        details: Default::default(),
        only_after: None,
        tenant: None,
    };
    if record.quarantined && status == HealthStatus::Disabled && before.0 != HealthStatus::Disabled
    {
        return Some(decision(
            AlertType::ProviderQuarantined,
            Severity::Critical,
            format!("{p} rejected its API key and is off until an operator clears it ({reason})"),
        ));
    }
    let was_down = down(before.0, before.1) || before.0 == HealthStatus::Disabled;
    if down(status, breaker) && !was_down {
        return Some(decision(
            AlertType::ProviderDown,
            Severity::Critical,
            format!("{p} is down: breaker {}, {reason}", breaker.as_str()),
        ));
    }
    // Serving again: its breaker closed (the window may still say `degraded` for a while).
    if was_down
        && breaker == BreakerState::Closed
        && !down(status, breaker)
        && status != HealthStatus::Disabled
    {
        return Some(decision(
            AlertType::ProviderRecovered,
            Severity::Info,
            format!(
                "{p} has recovered and is serving again ({})",
                status.as_str()
            ),
        ));
    }
    None
}

/// The alert for a change of the fleet's mode.
pub fn mode(event: &ModeEvent) -> Option<Decision> {
    if event.mode == event.previous {
        return None;
    }
    let severity = if matches!(event.mode, Mode::Minimal | Mode::Suspended) {
        Severity::Critical
    } else {
        Severity::Warning
    };
    Some(Decision {
        alert_type: AlertType::ModeChanged,
        severity,
        provider: None,
        from: event.previous.as_str().into(),
        to: event.mode.as_str().into(),
        message: format!(
            "fleet mode {} → {}: {}",
            event.previous.as_str(),
            event.mode.as_str(),
            event.reason
        ),
        details: Default::default(),
        only_after: None,
        tenant: None,
    })
}

/// The alerts for a provider's spend today going from `before` to `after` USD against its
/// daily budget `limit`: one per threshold crossed by this very write.
pub fn budget(
    provider: &str,
    day: &str,
    before: f64,
    after: f64,
    limit: f64,
    thresholds: &[f64],
) -> Vec<Decision> {
    thresholds
        .iter()
        .filter(|&&t| before < t * limit && after >= t * limit)
        .map(|&t| {
            let mut details = serde_json::Map::new();
            details.insert("threshold".into(), t.into());
            details.insert("spend_usd".into(), after.into());
            details.insert("limit_usd".into(), limit.into());
            details.insert("day".into(), day.into());
            Decision {
                alert_type: AlertType::BudgetThreshold,
                severity: if t >= 1.0 {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                provider: Some(provider.into()),
                from: format!("below {t}"),
                // A different threshold, or another day, is not a repeat.
                to: format!("{t} on {day}"),
                message: format!(
                    "{provider} has spent ${after:.2} today: {:.0} % of its ${limit:.2} daily budget",
                    t * 100.0
                ),
                details,
                only_after: None,
                tenant: None,
            }
        })
        .collect()
}

/// The alerts for a write of a tenant's spend that took its total from `before` to `after`
/// (see [`budget`]).
pub fn tenant_budget(
    tenant: &str,
    day: &str,
    before: f64,
    after: f64,
    limit: f64,
    thresholds: &[f64],
) -> Vec<Decision> {
    budget(tenant, day, before, after, limit, thresholds)
        .into_iter()
        .map(|mut d| {
            d.provider = None;
            d.tenant = Some(tenant.to_string());
            d.details.insert("tenant".into(), tenant.into());
            d.message = format!("tenant {}", d.message);
            d
        })
        .collect()
}

fn details<const N: usize>(
    pairs: [(&str, serde_json::Value); N],
) -> serde_json::Map<String, serde_json::Value> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// The alert, if any, for `provider`'s p95 latency over an interval of `successes`
/// successful calls: `slow` above `threshold_ms`, `normal` again (after `slow`) at or below
/// it; too few calls say nothing.
pub fn slow(
    provider: &str,
    p95_ms: Option<f64>,
    successes: u64,
    threshold_ms: u64,
    min_calls: u64,
) -> Option<Decision> {
    let p95 = p95_ms.filter(|_| successes >= min_calls.max(1))?;
    let slow = p95 > threshold_ms as f64;
    let facts = details([
        ("p95_ms", p95.into()),
        ("threshold_ms", threshold_ms.into()),
        ("calls", successes.into()),
    ]);
    Some(Decision {
        alert_type: AlertType::SlowProvider,
        severity: if slow {
            Severity::Warning
        } else {
            Severity::Info
        },
        provider: Some(provider.into()),
        from: if slow { "normal" } else { "slow" }.into(),
        to: if slow { "slow" } else { "normal" }.into(),
        message: if slow {
            format!(
                "{provider} is slow: p95 {p95:.0} ms over {successes} calls (threshold {threshold_ms} ms)"
            )
        } else {
            format!("{provider} is fast again: p95 {p95:.0} ms (threshold {threshold_ms} ms)")
        },
        details: facts,
        only_after: (!slow).then_some("slow"),
        tenant: None,
    })
}

/// The alert, if any, for `count` dead letters written in an interval of `interval_ms`:
/// raised above `per_minute`.
pub fn dead_letters(count: u64, interval_ms: u64, per_minute: f64) -> Option<Decision> {
    let rate = count as f64 * 60_000.0 / interval_ms.max(1) as f64;
    (count > 0 && rate > per_minute).then(|| Decision {
        alert_type: AlertType::DeadLetters,
        severity: Severity::Warning,
        provider: None,
        from: "normal".into(),
        to: "above".into(),
        message: format!(
            "{count} dead letters in {} s ({rate:.1}/min, threshold {per_minute}/min): requests are being rejected",
            interval_ms / 1_000
        ),
        details: details([
            ("count", count.into()),
            ("per_minute", rate.into()),
            ("threshold_per_minute", per_minute.into()),
        ]),
        only_after: None,
        tenant: None,
    })
}

/// `fleet_stalled`: `waiting` requests and none finished for `for_ms` (`stalled`), or
/// moving again (`flowing`, after `stalled`).
pub fn stall(stalled: bool, waiting: u64, for_ms: u64) -> Decision {
    Decision {
        alert_type: AlertType::FleetStalled,
        severity: if stalled {
            Severity::Critical
        } else {
            Severity::Info
        },
        provider: None,
        from: if stalled { "flowing" } else { "stalled" }.into(),
        to: if stalled { "stalled" } else { "flowing" }.into(),
        message: if stalled {
            format!(
                "{waiting} requests are waiting and no worker has finished one for {} s",
                for_ms / 1_000
            )
        } else {
            format!("requests are being answered again ({waiting} waiting)")
        },
        details: details([("waiting", waiting.into()), ("for_ms", for_ms.into())]),
        only_after: (!stalled).then_some("stalled"),
        tenant: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: HealthStatus, breaker: BreakerState) -> ProviderHealthRecord {
        let mut r = ProviderHealthRecord::new("openai", "w");
        r.status = status;
        r.breaker = breaker;
        r
    }

    #[test]
    fn down_recovered_and_quarantined() {
        use BreakerState::*;
        use HealthStatus::*;
        let d = health((Healthy, Closed), &record(Unhealthy, Open), "3 failures").unwrap();
        assert_eq!(
            (d.alert_type, d.severity),
            (AlertType::ProviderDown, Severity::Critical)
        );
        assert!(d.message.contains("openai") && d.message.contains("3 failures"));
        // Re-opening after a failed probe is not a new outage.
        assert_eq!(
            health((Unhealthy, HalfOpen), &record(Unhealthy, Open), "probe"),
            None
        );
        let r = health((Unhealthy, HalfOpen), &record(Healthy, Closed), "probe ok").unwrap();
        assert_eq!(
            (r.alert_type, r.severity),
            (AlertType::ProviderRecovered, Severity::Info)
        );
        assert_eq!(
            health((Healthy, Closed), &record(Degraded, Closed), "slow"),
            None
        );
        let mut q = record(Disabled, Closed);
        q.quarantined = true;
        let d = health((Healthy, Closed), &q, "401").unwrap();
        assert_eq!(d.alert_type, AlertType::ProviderQuarantined);
    }

    #[test]
    fn slow_dead_letters_and_stalls() {
        let d = slow("p", Some(900.0), 10, 500, 5).unwrap();
        assert_eq!(
            (d.to.as_str(), d.severity, d.only_after),
            ("slow", Severity::Warning, None)
        );
        let ok = slow("p", Some(100.0), 10, 500, 5).unwrap();
        assert_eq!((ok.to.as_str(), ok.only_after), ("normal", Some("slow")));
        assert_eq!(slow("p", Some(900.0), 4, 500, 5), None);
        assert_eq!(slow("p", None, 0, 500, 5), None);
        // 3 in 2 s is 90/min.
        let dl = dead_letters(3, 2_000, 10.0).unwrap();
        assert_eq!(dl.details["per_minute"].as_f64(), Some(90.0));
        assert_eq!(dead_letters(3, 60_000, 10.0), None);
        assert_eq!(dead_letters(0, 60_000, 0.0), None);
        assert_eq!(stall(true, 7, 60_000).severity, Severity::Critical);
        assert_eq!(stall(false, 0, 0).only_after, Some("stalled"));
    }

    #[test]
    fn a_budget_write_raises_each_threshold_it_crosses_once() {
        let t = [0.5, 0.8, 1.0];
        assert!(budget("p", "2026-11-27", 0.0, 4.9, 10.0, &t).is_empty());
        let crossed = budget("p", "2026-11-27", 4.9, 8.5, 10.0, &t);
        let at: Vec<f64> = crossed
            .iter()
            .map(|d| d.details["threshold"].as_f64().unwrap())
            .collect();
        assert_eq!(at, [0.5, 0.8]);
        assert_eq!(crossed[1].severity, Severity::Warning);
        let full = budget("p", "2026-11-27", 8.5, 10.0, 10.0, &t);
        assert_eq!((full.len(), full[0].severity), (1, Severity::Critical));
        assert!(budget("p", "2026-11-27", 10.0, 12.0, 10.0, &t).is_empty());
    }

    #[test]
    fn a_tenants_budget_alert_names_the_tenant_not_a_provider() {
        let d = tenant_budget("acme", "2026-11-28", 30.0, 33.0, 40.0, &[0.5, 0.8, 1.0]);
        assert_eq!(d.len(), 1);
        assert_eq!(
            (d[0].provider.as_deref(), d[0].tenant.as_deref()),
            (None, Some("acme"))
        );
        assert_eq!(d[0].details["tenant"], "acme");
        assert!(
            d[0].message.starts_with("tenant acme has spent $33.00"),
            "{}",
            d[0].message
        );
    }
}
