//! What a finished call does: the attempt record, spend, statistics, breaker and events.

use std::time::Duration;

use crate::contract::{
    AnalysisRequest, Attempt, AttemptOutcome, BreakerState, ErrorClass, ErrorInfo, FailoverEvent,
    ProviderModel,
};
use crate::engine::policy::policy;
use crate::engine::ports::EngineEvent;

use super::{Booked, CallResult, Engine, Trace, one_from_opening};

impl Engine {
    /// Books a finished call: breaker, statistics, spend, attempt record and events.
    pub(super) fn book(
        &self,
        call: Booked<'_>,
        res: CallResult,
        trace: &mut Trace,
        request: &AnalysisRequest,
    ) -> CallResult {
        let Booked {
            slot,
            model,
            latency,
            hedge,
        } = call;
        let synthetic = trace.synthetic;
        let now = self.clock.now();
        let (outcome, http_status, usage, class, message) = match &res {
            Ok(c) => (
                AttemptOutcome::Ok,
                Some(c.http_status),
                Some(c.usage),
                None,
                None,
            ),
            Err(e) => (
                AttemptOutcome::from(e.class),
                e.http_status,
                e.usage,
                Some(e.class),
                Some(e.message.clone()),
            ),
        };
        let attempt = Attempt {
            provider: slot.id().into(),
            model: model.to_string(),
            outcome,
            http_status,
            latency_ms: latency.as_millis() as u64,
            hedge,
        };
        trace.attempts.push(attempt.clone());
        if let Some(u) = usage {
            trace.usage.input_tokens += u.input_tokens;
            trace.usage.output_tokens += u.output_tokens;
            let usd = slot.cfg.cost.of(u.input_tokens, u.output_tokens);
            trace.cost += usd;
            if !synthetic && usd > 0.0 {
                let own_key = trace
                    .tenant
                    .as_deref()
                    .is_some_and(|t| slot.provider.has_tenant_key(t));
                self.sink.emit(EngineEvent::Spend {
                    provider: slot.id().into(),
                    usd,
                    tenant: trace.tenant.clone(),
                    own_key,
                });
            }
        }
        if let Err(e) = &res {
            trace.last_error = Some(ErrorInfo {
                class: e.class,
                message: format!("{}: {}", slot.id(), e.message),
            });
        }
        self.sink.emit(EngineEvent::Attempt {
            request_id: request.request_id.clone(),
            attempt,
            class,
            message,
            synthetic,
        });
        if synthetic {
            // test-failover never touches health, breakers or budgets.
            let mut h = slot.health();
            if h.breaker.state == BreakerState::HalfOpen {
                h.breaker.release_probe();
            }
            return res;
        }
        let suspicion = self.suspicion(slot);
        let transition = {
            let mut h = slot.health();
            // A call the request itself cut short says nothing about the provider.
            let cut = res.as_ref().is_err_and(|e| {
                matches!(
                    e.class,
                    ErrorClass::DeadlineExceeded | ErrorClass::Cancelled
                )
            });
            if cut {
                h.stats.record_cut(latency);
            } else {
                h.stats.record(res.is_ok(), latency);
            }
            match &res {
                Ok(_) => {
                    slot.concurrency.on_success();
                    h.answered();
                    h.breaker.on_success(&slot.breaker_cfg, now, latency)
                }
                Err(e) => {
                    let p = policy(e.class);
                    if p.quarantine {
                        h.quarantined = true;
                    }
                    if e.class == ErrorClass::RateLimited {
                        // The provider is full: this worker's share of its concurrency
                        // shrinks. A long Retry-After is a rate window, kept by the whole
                        // fleet; a short one only holds this worker back briefly, so that
                        // under overload the provider stays busy instead of idle.
                        slot.concurrency.on_full(slot.concurrency.in_flight());
                        let wait = rate_wait(e.retry_after);
                        h.rate_limited_until = Some(now + wait.unwrap_or(FULL_BACKOFF));
                    }
                    if p.breaker_failure {
                        let tr =
                            h.breaker
                                .on_failure(&slot.breaker_cfg, now, latency, e.class.as_str());
                        if one_from_opening(&h.breaker, &slot.breaker_cfg) {
                            h.suspect_until = Some(now + suspicion);
                        }
                        tr
                    } else {
                        if h.breaker.state == BreakerState::HalfOpen {
                            h.breaker.release_probe();
                        }
                        None
                    }
                }
            }
        };
        if let Some(transition) = transition {
            self.sink.emit(EngineEvent::Breaker {
                provider: slot.id().into(),
                transition,
            });
        }
        if let Err(e) = &res {
            if policy(e.class).quarantine {
                self.sink.emit(EngineEvent::Quarantine {
                    provider: slot.id().into(),
                    reason: e.message.clone(),
                });
            }
            if e.class == ErrorClass::RateLimited
                && let Some(wait) = rate_wait(e.retry_after)
            {
                self.sink.emit(EngineEvent::RateLimited {
                    provider: slot.id().into(),
                    until: self.clock.utc() + chrono::Duration::from_std(wait).unwrap_or_default(),
                });
            }
        }
        res
    }

    pub(super) fn emit_failover(
        &self,
        request_id: &str,
        from: ProviderModel,
        to: Option<ProviderModel>,
        class: ErrorClass,
        hedge: bool,
        synthetic: bool,
    ) {
        if synthetic {
            return;
        }
        self.sink.emit(EngineEvent::Failover(FailoverEvent {
            request_id: request_id.to_string(),
            from,
            to,
            error_class: class,
            hedge,
            at: self.clock.utc(),
            worker_id: self.worker_id.clone(),
        }));
    }
}

/// Retry-After values up to this are a full provider (a concurrency limit), not a window.
const SHORT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// How long a worker holds back from a provider that said it is full.
const FULL_BACKOFF: Duration = Duration::from_millis(100);

/// The rate window a 429 announces, if it announces one (a Retry-After above a second).
fn rate_wait(retry_after: Option<Duration>) -> Option<Duration> {
    retry_after.filter(|w| *w > SHORT_RETRY_AFTER)
}
