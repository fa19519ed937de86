//! Fleet modes, derived from which providers can serve, and the risk adjustments of each.

use crate::config::{ModesConfig, Tier};
use crate::contract::{Mode, RiskAdjustment};

/// What mode derivation needs to know about one provider.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderView {
    pub id: String,
    pub priority: u32,
    pub tier: Tier,
    /// Can take calls now or soon (breaker not open, not forced down, not quarantined).
    pub available: bool,
}

/// The mode implied by provider availability (suspension is decided by the caller).
///
/// `normal`: a top-priority provider can serve; `degraded`: only lower remote ones;
/// `conservative`: only local ones; `minimal`: none.
pub fn derive(views: &[ProviderView]) -> Mode {
    let Some(top) = views.iter().map(|v| v.priority).min() else {
        return Mode::Minimal;
    };
    let up = || views.iter().filter(|v| v.available);
    if up().any(|v| v.priority == top) {
        Mode::Normal
    } else if up().any(|v| v.tier == Tier::Remote) {
        Mode::Degraded
    } else if up().next().is_some() {
        Mode::Conservative
    } else {
        Mode::Minimal
    }
}

/// The views of `providers` from the fleet's shared records (`ai_provider_health`): a
/// provider serves when an operator forced it up, or when it is switched on, not quarantined
/// and its breaker is closed. A provider with no record yet is innocent.
pub fn views_from_records(
    providers: &[crate::config::ProviderConfig],
    records: &[crate::contract::ProviderHealthRecord],
    now: crate::contract::Timestamp,
) -> Vec<ProviderView> {
    use crate::contract::{BreakerState, ForcedStatus};
    providers
        .iter()
        .map(|p| {
            let available = match records.iter().find(|r| r.provider == p.id) {
                None => true,
                Some(r) => match r
                    .forced
                    .as_ref()
                    .filter(|f| f.until.is_none_or(|u| now < u))
                    .map(|f| f.status)
                {
                    Some(ForcedStatus::Up) => true,
                    Some(ForcedStatus::Down | ForcedStatus::Disabled) => false,
                    None => !r.quarantined && r.breaker == BreakerState::Closed,
                },
            };
            ProviderView {
                id: p.id.to_string(),
                priority: p.priority,
                tier: p.tier,
                available,
            }
        })
        .collect()
}

/// The risk adjustments results carry in `mode`.
pub fn risk(mode: Mode, cfg: &ModesConfig) -> RiskAdjustment {
    let r = match mode {
        Mode::Normal => cfg.normal,
        Mode::Degraded => cfg.degraded,
        Mode::Conservative => cfg.conservative,
        Mode::Minimal => cfg.minimal,
        Mode::Suspended => {
            return RiskAdjustment {
                position_multiplier: 0.0,
                min_confidence: 1.0,
                trading_suspended: true,
            };
        }
    };
    RiskAdjustment {
        position_multiplier: r.position_multiplier,
        min_confidence: r.min_confidence,
        trading_suspended: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(id: &str, priority: u32, tier: Tier, available: bool) -> ProviderView {
        ProviderView {
            id: id.into(),
            priority,
            tier,
            available,
        }
    }

    #[test]
    fn modes_follow_availability() {
        let mut views = vec![
            v("openai", 1, Tier::Remote, true),
            v("anthropic", 2, Tier::Remote, true),
            v("local", 9, Tier::Local, true),
        ];
        assert_eq!(derive(&views), Mode::Normal);
        views[0].available = false;
        assert_eq!(derive(&views), Mode::Degraded);
        views[1].available = false;
        assert_eq!(derive(&views), Mode::Conservative);
        views[2].available = false;
        assert_eq!(derive(&views), Mode::Minimal);
        assert_eq!(derive(&[]), Mode::Minimal);
    }

    #[test]
    fn suspended_risk_stops_trading() {
        let r = risk(Mode::Suspended, &ModesConfig::default());
        assert!(r.trading_suspended);
        assert_eq!(r.position_multiplier, 0.0);
        let c = risk(Mode::Conservative, &ModesConfig::default());
        assert!(c.position_multiplier < 1.0 && c.min_confidence > 0.0);
    }
}
