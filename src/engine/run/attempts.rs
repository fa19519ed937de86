//! The walk through the candidates: admission, deadline room, hedge partner, retry or move on.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use futures::FutureExt;
use futures::future::{Either, select};

use crate::contract::{ErrorClass, ErrorInfo, ProviderModel, Source};
use crate::engine::backoff::full_jitter;
use crate::engine::breaker::Admission;
use crate::engine::policy::policy;
use crate::engine::selection::Candidate;

use super::{Answered, Booked, Engine, Pass, Race, STALL, Trace};

impl Engine {
    pub(super) async fn run_candidates(
        &self,
        pass: &Pass<'_>,
        candidates: Vec<Candidate>,
        trace: &mut Trace,
    ) -> Option<Answered> {
        let request = pass.request;
        let deadline = pass.deadline;
        let synthetic = trace.synthetic;
        let floor = Duration::from_millis(self.cfg.engine.min_call_ms);
        let mut queue: VecDeque<Candidate> = candidates.into();
        let mut dropped: HashSet<usize> = HashSet::new();
        let mut retries: HashMap<usize, u32> = HashMap::new();
        let mut first = true;

        while let Some(cand) = queue.pop_front() {
            if dropped.contains(&cand.slot) {
                continue;
            }
            let now = self.clock.now();
            if now >= deadline {
                trace.last_error = Some(ErrorInfo {
                    class: ErrorClass::DeadlineExceeded,
                    message: "deadline reached before a provider answered".into(),
                });
                break;
            }
            let slot = &self.slots[cand.slot];
            // Never start a call that cannot plausibly come back before the deadline.
            let left = deadline.saturating_duration_since(now);
            let needed = slot.likely_latency(floor);
            if left < needed {
                trace.last_error = Some(ErrorInfo {
                    class: ErrorClass::DeadlineExceeded,
                    message: format!(
                        "{} likely needs {} ms; only {} ms were left before the deadline",
                        slot.id(),
                        needed.as_millis(),
                        left.as_millis()
                    ),
                });
                continue;
            }
            if !slot.concurrency.has_room() {
                // This worker holds its share of the provider's concurrency (it said 429):
                // a candidate with room goes first; otherwise the request waits for a call
                // to end, while its deadline still leaves the call its time.
                let roomy = queue.iter().position(|c| {
                    let other = &self.slots[c.slot];
                    c.slot != cand.slot
                        && !dropped.contains(&c.slot)
                        && other.concurrency.has_room()
                        && other.health().blocked(&other.breaker_cfg, now).is_none()
                });
                if let Some(other) = roomy.and_then(|pos| queue.remove(pos)) {
                    queue.push_front(cand);
                    queue.push_front(other);
                    continue;
                }
                let until = deadline.checked_sub(needed).unwrap_or(now);
                if now >= until {
                    trace.last_error = Some(ErrorInfo {
                        class: ErrorClass::DeadlineExceeded,
                        message: format!(
                            "{} was at this worker's share of its concurrency until too late",
                            slot.id()
                        ),
                    });
                    continue;
                }
                let freed = self.freed.notified();
                tokio::pin!(freed);
                freed.as_mut().enable();
                if !slot.concurrency.has_room() {
                    let _ = tokio::time::timeout_at(until, freed).await;
                }
                queue.push_front(cand);
                continue;
            }
            let probe = match slot.admit(now) {
                Admission::Allowed => false,
                Admission::Probe => true,
                Admission::Rejected { .. } => continue,
            };
            if probe && !self.fleet.acquire_probe(slot.id()).await {
                slot.health().breaker.release_probe();
                continue;
            }
            if first {
                self.retry_budget.lock().record_call(now);
                first = false;
            }
            let here = ProviderModel {
                provider: slot.id().into(),
                model: cand.model.clone(),
            };
            if let Some((from, class)) = trace.pending_failover.take() {
                self.emit_failover(
                    &request.request_id,
                    from,
                    Some(here.clone()),
                    class,
                    false,
                    synthetic,
                );
            }

            // A hedge partner: the next candidate on another provider, admitted now, that can
            // still answer in time. A probe is hedged too: a trial call is never a live
            // request left to hang.
            let partner = if self.cfg.engine.hedging {
                queue.iter().position(|c| {
                    let other = &self.slots[c.slot];
                    c.slot != cand.slot
                        && !dropped.contains(&c.slot)
                        && other.health().blocked(&other.breaker_cfg, now).is_none()
                        && other.concurrency.has_room()
                        && other.likely_latency(floor) <= left
                })
            } else {
                None
            };
            trace.called = true;
            let n = trace.attempts.len() + 1;
            let primary = self.start_call(pass, &cand, (n, false));
            let ((res, latency), winner) = match partner {
                None => (primary.await, cand.clone()),
                Some(pos) => {
                    let partner_slot = &self.slots[queue[pos].slot];
                    // Ask the partner once this provider is slower than usual, or earlier if
                    // waiting that long would leave the partner too little time; but never
                    // so early that the primary would still be within its usual time while
                    // the partner is already unlikely to make it: under overload every
                    // request arrives late, and such hedges double the calls for nothing.
                    let usual =
                        slot.hedge_after(Duration::from_millis(self.cfg.engine.hedge_floor_ms));
                    let latest = deadline
                        .checked_sub(partner_slot.likely_latency(floor))
                        .unwrap_or(now);
                    let timer = if latest > now {
                        tokio::time::sleep_until((now + usual).min(latest)).boxed()
                    } else {
                        // No room for the partner at any point: the primary alone.
                        futures::future::pending().boxed()
                    };
                    match select(primary, timer).await {
                        Either::Left((res, _)) => (res, cand.clone()),
                        Either::Right(((), primary)) => {
                            slot.health().stalled_until = Some(self.clock.now() + STALL);
                            let other = if self.may_hedge(slot, probe) {
                                queue.remove(pos)
                            } else {
                                None
                            };
                            match other {
                                None => (primary.await, cand.clone()),
                                Some(other) => {
                                    let there = ProviderModel {
                                        provider: self.slots[other.slot].id().into(),
                                        model: other.model.clone(),
                                    };
                                    self.emit_failover(
                                        &request.request_id,
                                        here.clone(),
                                        Some(there),
                                        ErrorClass::Timeout,
                                        true,
                                        synthetic,
                                    );
                                    let hedge = self.start_call(pass, &other, (n + 1, true));
                                    let race = Race {
                                        primary: &cand,
                                        hedge: &other,
                                        primary_started: now,
                                        hedge_started: self.clock.now(),
                                    };
                                    self.race(primary, hedge, race, trace, request).await
                                }
                            }
                        }
                    }
                }
            };
            let winner_slot = &self.slots[winner.slot];
            let hedged = winner != cand;
            let call = Booked {
                slot: winner_slot,
                model: &winner.model,
                latency,
                hedge: hedged,
            };
            match self.book(call, res, trace, request) {
                Ok(completion) => {
                    return Some(Answered {
                        answer: completion.answer,
                        source: Source::Provider,
                        provider: Some(winner_slot.id().into()),
                        model: Some(completion.model),
                    });
                }
                // Cut short by the request's own deadline: nobody's fault, nothing left to
                // try; the move to the fallback is still a failover the dashboards see.
                Err(err) if err.class == ErrorClass::DeadlineExceeded => {
                    trace.pending_failover = Some((
                        ProviderModel {
                            provider: winner_slot.id().into(),
                            model: winner.model.clone(),
                        },
                        err.class,
                    ));
                    break;
                }
                Err(err) => {
                    let p = policy(err.class);
                    if !p.failover {
                        trace.terminal = true;
                        break;
                    }
                    if err.class == ErrorClass::ContextLength {
                        let larger: Vec<Candidate> = self
                            .slots
                            .iter()
                            .enumerate()
                            .flat_map(|(i, s)| {
                                s.cfg.large_context_models.iter().map(move |m| Candidate {
                                    slot: i,
                                    model: m.clone(),
                                })
                            })
                            .filter(|c| *c != winner)
                            .collect();
                        if larger.is_empty() {
                            trace.terminal = true;
                            break;
                        }
                        queue = larger.into();
                    }
                    let others_left = queue
                        .iter()
                        .any(|c| c.slot != winner.slot && !dropped.contains(&c.slot));
                    let tries = retries.entry(winner.slot).or_insert(0);
                    if p.retry_same
                        && !others_left
                        && *tries < self.cfg.engine.max_retries_per_provider
                        && self.retry_budget.lock().try_spend(self.clock.now())
                    {
                        let wait = full_jitter(
                            &mut *self.rng.lock(),
                            Duration::from_millis(self.cfg.engine.backoff_base_ms),
                            Duration::from_millis(self.cfg.engine.backoff_max_ms),
                            *tries,
                        );
                        *tries += 1;
                        if self.clock.now() + wait < deadline {
                            tokio::time::sleep(wait).await;
                            queue.push_front(winner.clone());
                            continue;
                        }
                    }
                    if p.skip_provider {
                        dropped.insert(winner.slot);
                    }
                    trace.pending_failover = Some((
                        ProviderModel {
                            provider: winner_slot.id().into(),
                            model: winner.model.clone(),
                        },
                        err.class,
                    ));
                }
            }
        }
        None
    }
}
