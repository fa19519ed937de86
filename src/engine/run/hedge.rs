//! Racing a slow call against the next provider, and what a cancelled loser counts as.

use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Either, select};
use rand::Rng;
use tracing::Instrument;

use crate::contract::{AnalysisRequest, Attempt, AttemptOutcome, ErrorClass};
use crate::engine::clock::Instant;
use crate::engine::selection::Candidate;
use crate::engine::slot::Slot;
use crate::providers::{ProviderCall, ProviderError};

use super::{Booked, Engine, Pass, Race, STALL, Timed, Trace};

/// How close to its bound a call's timeout must come to count as the deadline's.
const DEADLINE_SLACK: Duration = Duration::from_millis(50);

impl Engine {
    /// How long a provider one failure from opening is tried after the others: about as
    /// long as a call in flight to it takes to end (its usual latency, once to twice, drawn
    /// per worker so that the workers of the fleet do not all try it again at the same
    /// moment: the first retry's verdict reaches the others before theirs is due).
    pub(super) fn suspicion(&self, slot: &Slot) -> Duration {
        let usual = slot.hedge_after(Duration::from_millis(self.cfg.engine.hedge_floor_ms));
        let spread: f64 = self.rng.lock().random();
        usual.mul_f64(1.0 + spread).min(STALL)
    }

    /// Whether a slow call on `slot` may be hedged now. Hedges of a provider that is failing
    /// (its last call here failed, or this call is its trial) are not rationed: that is
    /// exactly when they are needed, and they only move load that provider cannot serve.
    /// Otherwise they come out of the retry budget, so that a merely busy fleet does not
    /// double its load.
    pub(super) fn may_hedge(&self, slot: &Slot, probe: bool) -> bool {
        probe
            || slot.health().breaker.consecutive_failures > 0
            || self.retry_budget.lock().try_spend(self.clock.now())
    }

    /// Races a slow primary against its hedge: the first valid answer wins; a failure of one
    /// waits for the other; the loser is cancelled, and counts as a slow failure of its
    /// provider when it had run longer than that provider usually takes.
    pub(super) async fn race(
        &self,
        primary: BoxFuture<'_, Timed>,
        hedge: BoxFuture<'_, Timed>,
        race: Race<'_>,
        trace: &mut Trace,
        request: &AnalysisRequest,
    ) -> (Timed, Candidate) {
        // Whichever ends first: its candidate, whether it is the hedge, and the other side.
        let (done, rest, (first, second), first_is_hedge, second_started) =
            match select(primary, hedge).await {
                Either::Left((done, rest)) => (
                    done,
                    rest,
                    (race.primary, race.hedge),
                    false,
                    race.hedge_started,
                ),
                Either::Right((done, rest)) => (
                    done,
                    rest,
                    (race.hedge, race.primary),
                    true,
                    race.primary_started,
                ),
            };
        let (res, took) = done;
        if res.is_ok() {
            self.cancelled(second, second_started, !first_is_hedge, trace, request);
            return ((res, took), first.clone());
        }
        let call = Booked {
            slot: &self.slots[first.slot],
            model: &first.model,
            latency: took,
            hedge: first_is_hedge,
        };
        let _ = self.book(call, res, trace, request);
        (rest.await, second.clone())
    }

    /// Books a call dropped because the other side of a hedge won. One that had run longer
    /// than its provider usually takes is a slow failure toward that provider's breaker (a
    /// hung provider is found this way, without waiting for its timeout); a quicker one is
    /// only a cancelled attempt.
    pub(super) fn cancelled(
        &self,
        c: &Candidate,
        started: Instant,
        hedge: bool,
        trace: &mut Trace,
        request: &AnalysisRequest,
    ) {
        let slot = &self.slots[c.slot];
        let ran = self.clock.now().duration_since(started);
        let usual = slot.hedge_after(Duration::from_millis(self.cfg.engine.hedge_floor_ms));
        if ran >= usual {
            let err = ProviderError::new(
                ErrorClass::Timeout,
                format!(
                    "no answer after {} ms, slower than usual; the other call answered first",
                    ran.as_millis()
                ),
            );
            let call = Booked {
                slot,
                model: &c.model,
                latency: ran,
                hedge,
            };
            let _ = self.book(call, Err(err), trace, request);
            if let Some(a) = trace.attempts.last_mut() {
                a.outcome = AttemptOutcome::Failed(ErrorClass::Cancelled);
            }
        } else {
            slot.health().breaker.release_probe();
            trace.attempts.push(Attempt {
                provider: slot.id().into(),
                model: c.model.clone(),
                outcome: AttemptOutcome::Failed(ErrorClass::Cancelled),
                http_status: None,
                latency_ms: ran.as_millis() as u64,
                hedge,
            });
        }
    }

    pub(super) fn start_call<'a>(
        &'a self,
        pass: &Pass<'_>,
        cand: &Candidate,
        (attempt, hedge): (usize, bool),
    ) -> BoxFuture<'a, Timed> {
        let slot = &self.slots[cand.slot];
        let provider = slot.provider.clone();
        let injected = pass.injected.get(slot.id()).copied();
        let clock = self.clock.clone();
        let deadline = pass.deadline;
        let configured = Duration::from_millis(slot.cfg.timeout_ms);
        let call = ProviderCall {
            request_id: pass.request.request_id.clone(),
            model: cand.model.clone(),
            kind: pass.request.kind,
            system: pass.prompt.0.clone(),
            user: pass.prompt.1.clone(),
            max_output_tokens: self.cfg.engine.max_output_tokens,
            timeout: configured.min(deadline.saturating_duration_since(clock.now())),
            tenant: pass.tenant.map(str::to_string),
        };
        // Debug level, like the request span it sits in (see `bus::worker::request_span`).
        let span = tracing::debug_span!(
            "provider_call",
            provider = slot.id(),
            model = %call.model,
            attempt,
            hedge,
            error_class = tracing::field::Empty,
        );
        let record = span.clone();
        // Counted in flight from now until the call ends (the guard moves into the call).
        let in_flight = slot.concurrency.start();
        async move {
            let _in_flight = in_flight;
            if let Some(class) = injected {
                record.record("error_class", class.as_str());
                let err = ProviderError::new(class, "injected by test-failover");
                return (Err(err), Duration::ZERO);
            }
            let started = clock.now();
            let bound = deadline
                .saturating_duration_since(started)
                .min(call.timeout);
            let res = match tokio::time::timeout(bound, provider.complete(&call)).await {
                Ok(res) => res,
                Err(_) => {
                    // Cut short by the request's own deadline, not by the provider's
                    // timeout: not the provider's failure, whatever it took. Under overload
                    // every call runs long; counting these would open every breaker and
                    // leave the fleet on the fallback while the providers still answer.
                    let class = if bound < configured {
                        ErrorClass::DeadlineExceeded
                    } else {
                        ErrorClass::Timeout
                    };
                    Err(ProviderError::new(
                        class,
                        format!("no answer within {} ms", bound.as_millis()),
                    ))
                }
            };
            let took = clock.now().duration_since(started);
            // The adapter's HTTP client times out at the same bound and may fire first: a
            // timeout at the request's deadline is still the deadline's doing.
            let res = match res {
                Err(e)
                    if e.class == ErrorClass::Timeout
                        && bound < configured
                        && took + DEADLINE_SLACK >= bound =>
                {
                    Err(ProviderError::new(ErrorClass::DeadlineExceeded, e.message))
                }
                other => other,
            };
            if let Err(e) = &res {
                record.record("error_class", e.class.as_str());
            }
            (res, took)
        }
        .instrument(span)
        .boxed()
    }
}
