//! A request's entry: deadline and suspension checks, waiting for a provider when asked, the fallback.

use std::collections::HashMap;
use std::time::Duration;

use crate::contract::{
    AnalysisRequest, AnalysisResult, ErrorClass, ErrorInfo, Mode, ProviderId, Source, Status,
};
use crate::engine::clock::Instant;
use crate::engine::fallback;
use crate::engine::ports::EngineEvent;
use crate::providers::Answer;

use super::{Answered, Engine, Job, Pass, Trace, WAIT_POLL};

impl Engine {
    // ----- the request path -----------------------------------------------------------

    /// Runs one request to its result.
    pub async fn handle(&self, job: Job) -> Box<AnalysisResult> {
        self.handle_with(job, &HashMap::new()).await
    }

    /// [`handle`](Self::handle) with some providers made to fail with a given class without
    /// calling them and without touching fleet state (`test-failover`); the result is marked
    /// with the request's tenant.
    pub async fn handle_with(
        &self,
        job: Job,
        injected: &HashMap<ProviderId, ErrorClass>,
    ) -> Box<AnalysisResult> {
        let tenant = job.tenant.id.clone();
        let mut result = self.answer(job, injected).await;
        result.tenant = tenant;
        // A provider's real answer becomes the tenant's cached decision for its symbol.
        if injected.is_empty()
            && result.status == Status::Ok
            && result.source == Source::Provider
            && result.symbol.is_some()
        {
            self.sink.emit(EngineEvent::Cacheable(result.clone()));
        }
        result
    }

    /// The `rejected` answer to `request` of `tenant`, refused by policy before any call
    /// (a tenant's quota or budget).
    pub fn refuse(
        &self,
        request: &AnalysisRequest,
        tenant: Option<&str>,
        error: ErrorInfo,
    ) -> Box<AnalysisResult> {
        let now = self.clock.now();
        let mut result = self.finish(
            request,
            now,
            Trace::default(),
            None,
            Status::Rejected,
            Some(error),
        );
        result.tenant = tenant.map(str::to_string);
        result
    }

    async fn answer(
        &self,
        job: Job,
        injected: &HashMap<ProviderId, ErrorClass>,
    ) -> Box<AnalysisResult> {
        let started = self.clock.now();
        let utc = self.clock.utc();
        let request = &job.request;
        let budget_ms = request
            .deadline_ms
            .unwrap_or(self.cfg.worker.default_deadline_ms);
        let age = (utc - job.published_at).to_std().unwrap_or(Duration::ZERO);
        let budget = Duration::from_millis(budget_ms);
        if age >= budget {
            let error = ErrorInfo {
                class: ErrorClass::DeadlineExceeded,
                message: format!(
                    "request is {} ms old, past its {budget_ms} ms deadline",
                    age.as_millis()
                ),
            };
            return self.finish(
                request,
                started,
                Trace::default(),
                None,
                Status::Expired,
                Some(error),
            );
        }
        let deadline = started + (budget - age);

        if self.mode() == Mode::Suspended {
            let error = ErrorInfo {
                class: ErrorClass::Suspended,
                message: "trading is suspended; no provider was called".into(),
            };
            return self.finish(
                request,
                started,
                Trace::default(),
                None,
                Status::Rejected,
                Some(error),
            );
        }

        // Built once: its size prices the candidates, its text goes to every attempt.
        let prompt = crate::providers::prompt::build(request);
        let pass = Pass {
            request,
            prompt: &prompt,
            deadline,
            injected,
            tenant: job.tenant.id.as_deref(),
        };
        let mut trace = Trace {
            synthetic: !injected.is_empty(),
            tenant: job.tenant.id.clone(),
            ..Trace::default()
        };
        let wait_until = self.wait_until(&job, started, age, deadline);
        // An operator holding the fleet in `minimal` means: no provider calls at all.
        let held_minimal = self.fleet.manual_mode() == Some(Mode::Minimal);
        if held_minimal {
            trace.last_error = Some(ErrorInfo {
                class: ErrorClass::NoProvider,
                message: "an operator holds the fleet in minimal mode; no provider was called"
                    .into(),
            });
        }
        // One exploration turn per request, however often it is planned again while waiting.
        let tick = self.next_tick(request.kind);
        loop {
            if held_minimal {
                break;
            }
            let plan = self.plan(request, &job.tenant, &prompt, Some(tick));
            if plan.candidates.is_empty()
                && !plan.skipped.is_empty()
                && plan.skipped.iter().all(|s| s.cost_cap)
            {
                let error = ErrorInfo {
                    class: ErrorClass::BudgetExceeded,
                    message: "every provider's estimated cost is over max_cost_usd".into(),
                };
                return self.finish(request, started, trace, None, Status::Rejected, Some(error));
            }
            if let Some(answer) = self
                .run_candidates(&pass, plan.candidates, &mut trace)
                .await
            {
                return self.finish(request, started, trace, Some(answer), Status::Ok, None);
            }
            // Nothing answered. Wait for a provider to come back only when the request asked
            // to (`max_wait_ms`): otherwise the cached or rule-based answer goes out now,
            // which is what a trader needs while the fleet knows every provider is down.
            let now = self.clock.now();
            match wait_until {
                Some(until) if !trace.terminal && now + WAIT_POLL < until => {
                    tokio::time::sleep(WAIT_POLL).await;
                }
                _ => break,
            }
        }

        let error = trace.last_error.clone().unwrap_or(ErrorInfo {
            class: ErrorClass::NoProvider,
            message: "no provider was available".into(),
        });
        if request.allow_fallback && !trace.terminal {
            let from = trace.pending_failover.take();
            let fb = self.fallback(request, job.tenant.id.as_deref()).await;
            if let Some((from, class)) = from {
                let synthetic = trace.synthetic;
                self.emit_failover(&request.request_id, from, None, class, false, synthetic);
            }
            return self.finish(
                request,
                started,
                trace,
                Some(fb),
                Status::Degraded,
                Some(error),
            );
        }
        self.finish(request, started, trace, None, Status::Failed, Some(error))
    }

    /// Until when `job` may wait for a provider to come back: its `max_wait_ms` from the
    /// publish time, leaving room for a call before the deadline; `None` when it may not.
    pub(super) fn wait_until(
        &self,
        job: &Job,
        started: Instant,
        age: Duration,
        deadline: Instant,
    ) -> Option<Instant> {
        let max_wait = Duration::from_millis(job.request.max_wait_ms.filter(|w| *w > 0)?);
        let room = Duration::from_millis(self.cfg.engine.min_call_ms);
        let until = (started + max_wait.checked_sub(age)?).min(deadline.checked_sub(room)?);
        (until > started).then_some(until)
    }

    pub(super) async fn fallback(
        &self,
        request: &AnalysisRequest,
        tenant: Option<&str>,
    ) -> Answered {
        if let Some(symbol) = &request.symbol
            && let Some(cached) = self
                .fleet
                .cached_decision(tenant, request.kind, symbol)
                .await
        {
            let age = (self.clock.utc() - cached.cached_at)
                .to_std()
                .unwrap_or(Duration::MAX);
            if age <= Duration::from_millis(self.cfg.engine.cache_max_age_ms) {
                let r = cached.result;
                let answer = match (r.signal, r.analysis) {
                    (Some(s), _) => Some(Answer::Signal(s)),
                    (None, Some(a)) => Some(Answer::Analysis(a)),
                    _ => None,
                };
                if let Some(answer) = answer {
                    return Answered {
                        answer,
                        source: Source::Cache,
                        provider: r.provider,
                        model: r.model,
                    };
                }
            }
        }
        Answered {
            answer: fallback::rule_based(request, self.cfg.engine.fallback_max_confidence),
            source: Source::Fallback,
            provider: None,
            model: None,
        }
    }
}
