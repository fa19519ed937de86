//! Probes and health checks: calls that are not requests.

use std::time::Duration;

use crate::contract::{Attempt, AttemptOutcome, BreakerState, ErrorClass};
use crate::engine::policy::policy;
use crate::engine::ports::EngineEvent;
use crate::providers::ProviderError;

use super::Engine;

impl Engine {
    // ----- health checks ---------------------------------------------------------------

    /// Sends `provider` one cheap probe (its model listing) bounded by `timeout` and says how
    /// long it took; books nothing (the fleet's prober books it in the shared record).
    pub async fn probe(
        &self,
        provider: &str,
        timeout: Duration,
    ) -> Option<Result<Duration, ProviderError>> {
        let slot = self.slot(provider)?;
        let model = slot.cfg.models.first()?.clone();
        let started = self.clock.now();
        let res = match tokio::time::timeout(timeout, slot.provider.probe(&model, timeout)).await {
            Ok(r) => r,
            Err(_) => Err(ProviderError::new(
                ErrorClass::Timeout,
                format!("probe got no answer within {} ms", timeout.as_millis()),
            )),
        };
        Some(res.map(|()| self.clock.now().duration_since(started)))
    }

    /// Probes `provider` with its cheap health endpoint and books the outcome: a success
    /// after the open period closes the breaker (recovery), a failure counts.
    pub async fn health_check(&self, provider: &str) -> Option<Result<Duration, ProviderError>> {
        let slot = self.slot(provider)?;
        let timeout = Duration::from_millis(slot.cfg.timeout_ms.min(10_000));
        let started = self.clock.now();
        let res = self.probe(provider, timeout).await?.map(drop);
        let now = self.clock.now();
        let latency = now.duration_since(started);
        let transition = {
            let mut h = slot.health();
            let b = &mut h.breaker;
            b.tick(now);
            match &res {
                Ok(()) if b.state == BreakerState::HalfOpen => {
                    b.on_success(&slot.breaker_cfg, now, latency)
                }
                Ok(()) => None,
                Err(e) if policy(e.class).breaker_failure => {
                    b.on_failure(&slot.breaker_cfg, now, latency, e.class.as_str())
                }
                Err(_) => None,
            }
        };
        if let Some(transition) = transition {
            self.sink.emit(EngineEvent::Breaker {
                provider: provider.into(),
                transition,
            });
        }
        // Booked with the fleet like a real call.
        let class = res.as_ref().err().map(|e| e.class);
        self.sink.emit(EngineEvent::Attempt {
            request_id: "health-check".into(),
            attempt: Attempt {
                provider: provider.into(),
                model: slot.cfg.models.first().cloned().unwrap_or_default(),
                outcome: class.map_or(AttemptOutcome::Ok, AttemptOutcome::from),
                http_status: res.as_ref().err().and_then(|e| e.http_status),
                latency_ms: if res.is_ok() {
                    latency.as_millis() as u64
                } else {
                    0
                },
                hedge: false,
            },
            class,
            message: res.as_ref().err().map(|e| e.message.clone()),
            synthetic: false,
        });
        Some(res.map(|()| latency))
    }
}
