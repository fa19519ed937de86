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
            }
        })
        .collect()
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
}
