//! What the engine does after each error class. One table, so the rules are read in one place.

use crate::contract::ErrorClass;

/// The engine's reaction to one failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassPolicy {
    /// Another (provider, model) may answer.
    pub failover: bool,
    /// Retrying the same provider after a backoff may help (used only when no other candidate
    /// is left: moving on is faster than waiting).
    pub retry_same: bool,
    /// Counts as a failure toward the provider's circuit breaker.
    pub breaker_failure: bool,
    /// Stop calling this provider until an operator clears it (a bad key won't heal).
    pub quarantine: bool,
    /// Skip the rest of this provider's models in this request.
    pub skip_provider: bool,
}

/// The policy of `class`.
pub fn policy(class: ErrorClass) -> ClassPolicy {
    use ErrorClass::*;
    let p = |failover, retry_same, breaker_failure, quarantine, skip_provider| ClassPolicy {
        failover,
        retry_same,
        breaker_failure,
        quarantine,
        skip_provider,
    };
    match class {
        // The provider is slow or down: move on; it counts toward the breaker.
        Timeout => p(true, false, true, false, true),
        ServerError | Overloaded | Network => p(true, true, true, false, true),
        // Honour Retry-After by skipping the provider until then; not a health failure.
        RateLimited => p(true, false, false, false, true),
        Auth => p(true, false, false, true, true),
        // The request's own fault: it would fail everywhere.
        BadRequest => p(false, false, false, false, true),
        // Only a larger-context model helps (the engine narrows the candidates).
        ContextLength => p(true, false, false, false, false),
        // The model answered badly: another model or provider may not.
        InvalidResponse => p(true, false, true, false, false),
        ContentFiltered => p(true, false, false, false, true),
        // This worker's own key store is at fault, not the provider.
        KeyUnavailable => p(true, false, false, false, true),
        Cancelled | DeadlineExceeded | BudgetExceeded | QuotaExceeded | NoProvider | Suspended => {
            p(false, false, false, false, true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_classes_fail_over_and_count() {
        for c in [
            ErrorClass::Timeout,
            ErrorClass::ServerError,
            ErrorClass::Overloaded,
            ErrorClass::Network,
        ] {
            let p = policy(c);
            assert!(p.failover && p.breaker_failure, "{c}");
        }
    }

    #[test]
    fn bad_request_never_fails_over_and_auth_quarantines() {
        assert!(!policy(ErrorClass::BadRequest).failover);
        assert!(!policy(ErrorClass::BadRequest).breaker_failure);
        let auth = policy(ErrorClass::Auth);
        assert!(auth.quarantine && auth.failover && !auth.retry_same);
        assert!(!policy(ErrorClass::RateLimited).breaker_failure);
    }
}
