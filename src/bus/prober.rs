//! The fleet's prober: one elected worker (a short lease, `_prober_lease`) probes every
//! provider whose shared breaker is open, about once a second, and closes the breaker for the
//! whole fleet on the first success after the open period. Meanwhile it holds the provider's
//! probe slot in `ai_provider_health`, so no worker sends a live request as a half-open trial:
//! a hung provider never holds a trader's request, and recovery is seen within a second or
//! two instead of after an open period that doubles while the provider is down.
//!
//! When the prober dies its lease and slot run out within seconds; another worker takes the
//! role, and until then workers fall back to hedged live trials.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{BreakerConfig, Config};
use crate::contract::{
    BreakerState, ErrorClass, PROBER_LEASE_KEY, ProviderHealthRecord, ProviderId,
};
use crate::engine::Engine;
use crate::engine::clock::Instant;
use crate::engine::probing::{MAX_GAP_INTERVALS, ProbeSchedule, ProbeVerdict};

use super::announce::HealthAnnouncer;
use super::fleet::FleetState;
use super::fleet_health::{apply_probe, claim_probe_slot, release_probe_slot, suspect};
use super::lease::Lease;
use crate::telemetry::metrics::name as metric;

/// How often the prober looks at the records and renews its lease.
const TICK: Duration = Duration::from_millis(100);
/// The lease is renewed every second and lasts three.
const LEASE_RENEW: Duration = Duration::from_secs(1);
const LEASE_TTL: Duration = Duration::from_secs(3);
/// The least time probes must have failed before one live trial is let through.
const VALVE_FLOOR: Duration = Duration::from_secs(60);

/// One probe's end.
struct Probed {
    provider: ProviderId,
    started: Instant,
    ended: Instant,
    outcome: Result<(), (ErrorClass, String)>,
}

/// What the prober does about one provider's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Nothing to do: closed and healthy, switched off, or another worker's trial is on.
    Leave,
    /// Its breaker is open and its open period (nearly) over: probe, holding its slot.
    Probe,
    /// It is one failure from opening: a probe gives the verdict (no slot: nothing
    /// half-opens while the breaker is closed).
    Verdict,
}

/// What to do about `r` now. An open provider is probed once its open period is over or
/// ends within `lead` (the prober takes the probe slot before any worker's breaker
/// half-opens, and a success before the period is over could not close it anyway); not
/// while an operator switched it off or quarantined it, nor while another worker's trial
/// holds its slot.
fn plan(
    r: &ProviderHealthRecord,
    cfg: &BreakerConfig,
    me: &str,
    now: crate::contract::Timestamp,
    lead: Duration,
) -> Plan {
    let lead = chrono::Duration::from_std(lead).unwrap_or_default();
    let forced = r
        .forced
        .as_ref()
        .is_some_and(|f| f.until.is_none_or(|u| now < u));
    let slot_taken = r
        .probe_owner
        .as_ref()
        .is_some_and(|o| o != me && r.probe_until.is_some_and(|u| now < u));
    if forced || r.quarantined || slot_taken {
        return Plan::Leave;
    }
    if suspect(r, cfg) {
        return Plan::Verdict;
    }
    let period_ending = r.open_until.is_none_or(|u| now + lead >= u);
    if r.breaker != BreakerState::Closed && period_ending {
        Plan::Probe
    } else {
        Plan::Leave
    }
}

/// The prober's memory of one provider.
struct Watched {
    schedule: ProbeSchedule,
    /// A probe is out.
    busy: bool,
    /// Probes have said "down" since then, without a break.
    down_since: Option<Instant>,
}

/// The fleet's prober, as it runs on one worker (probing only while it holds the lease).
pub struct Prober {
    pub cfg: Arc<Config>,
    pub engine: Arc<Engine>,
    pub fleet: Arc<FleetState>,
    pub announcer: Arc<HealthAnnouncer>,
    /// The health bucket, where the lease lives.
    pub kv: kv::Store,
    pub worker_id: String,
}

impl Prober {
    /// Holds the lease when it can and, while holding it, probes open providers; until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let lease = Lease::new(self.kv.clone(), PROBER_LEASE_KEY, self.worker_id.clone());
        let e = &self.cfg.engine;
        let interval = Duration::from_millis(e.probe_interval_ms);
        let timeout = Duration::from_millis(e.probe_timeout_ms);
        // Held from before a probe starts until after the next one could start (the longest
        // gap follows timeouts), with a margin: no worker's breaker half-opens in between.
        let hold = timeout + interval * (MAX_GAP_INTERVALS + 1);
        let mut watched: HashMap<ProviderId, Watched> = HashMap::new();
        let mut probing: JoinSet<Probed> = JoinSet::new();
        let mut leader = false;
        let mut renewed: Option<Instant> = None;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {
                    let now = Instant::now();
                    if renewed.is_none_or(|r| now.duration_since(r) >= LEASE_RENEW) {
                        leader = lease.hold(LEASE_TTL).await;
                        renewed = Some(now);
                    }
                    if !leader {
                        watched.retain(|_, w| w.busy);
                        continue;
                    }
                    let utc = crate::engine::clock::wall_now();
                    for record in self.fleet.records() {
                        let Some(pcfg) = self.cfg.provider(&record.provider) else { continue };
                        let bcfg = self.cfg.breaker_for(pcfg);
                        let id = record.provider.clone();
                        let w = watched.entry(id.clone()).or_insert_with(|| Watched {
                            schedule: ProbeSchedule::new(interval),
                            busy: false,
                            down_since: None,
                        });
                        let plan = plan(&record, &bcfg, &self.worker_id, utc, interval);
                        if plan == Plan::Leave {
                            w.schedule.reset();
                            w.down_since = None;
                            continue;
                        }
                        if w.busy || !w.schedule.due(now) {
                            continue;
                        }
                        // In case the probe endpoint is what is broken: once probes have said
                        // "down" for a whole max_open_ms (at least a minute: live trials stay
                        // rare), one live (hedged) trial may decide.
                        let max_open = Duration::from_millis(bcfg.max_open_ms).max(VALVE_FLOOR);
                        if plan == Plan::Probe && w.down_since.is_some_and(|d| now.duration_since(d) >= max_open) {
                            w.down_since = None;
                            w.schedule.record(now, now + hold, false);
                            let me = self.worker_id.clone();
                            let released = self.fleet.health()
                                .modify(&id, |r, _| release_probe_slot(r, &me)
                                    .then(|| "probes kept failing: a live trial may decide".to_string()))
                                .await;
                            self.announcer.report(released).await;
                            continue;
                        }
                        if plan == Plan::Probe && !self.claim(&id, timeout + interval).await {
                            continue;
                        }
                        w.busy = true;
                        let engine = self.engine.clone();
                        probing.spawn(async move {
                            let started = Instant::now();
                            let outcome = match engine.probe(&id, timeout).await {
                                Some(Ok(_)) => Ok(()),
                                Some(Err(e)) => Err((e.class, e.message)),
                                None => Err((ErrorClass::NoProvider, "not configured here".into())),
                            };
                            Probed { provider: id, started, ended: Instant::now(), outcome }
                        });
                    }
                }
                Some(done) = probing.join_next() => {
                    let Ok(p) = done else { continue };
                    let verdict = match &p.outcome {
                        Ok(()) => ProbeVerdict::Up,
                        Err((class, _)) => ProbeVerdict::of(Err(*class)),
                    };
                    if let Some(w) = watched.get_mut(&p.provider) {
                        w.busy = false;
                        let timed_out = matches!(p.outcome, Err((ErrorClass::Timeout, _)));
                        w.schedule.record(p.started, p.ended, timed_out);
                        match verdict {
                            ProbeVerdict::Down(_) => {
                                w.down_since.get_or_insert(p.started);
                            }
                            _ => w.down_since = None,
                        }
                    }
                    self.book(&p, verdict, hold).await;
                }
            }
        }
    }

    /// Takes the provider's probe slot for the probe about to go out (`for_` covers it and the
    /// booking after it); false when another worker holds it or the bucket cannot be written.
    async fn claim(&self, provider: &str, for_: Duration) -> bool {
        let me = self.worker_id.clone();
        let until =
            crate::engine::clock::wall_now() + chrono::Duration::from_std(for_).unwrap_or_default();
        let claimed = self
            .fleet
            .health()
            .modify(provider, |r, t| claim_probe_slot(r, &me, until, t))
            .await;
        match claimed {
            // Written, or ours already for long enough.
            Ok(Some(_)) => true,
            Ok(None) => self
                .fleet
                .health()
                .get(provider)
                .await
                .is_ok_and(|(r, _)| r.probe_owner.as_deref() == Some(me.as_str())),
            Err(e) => {
                let error = crate::telemetry::chain(&e);
                tracing::warn!(provider, %error, "probe slot not taken");
                false
            }
        }
    }

    /// Writes a probe's verdict into the provider's shared record (and announces what changed).
    async fn book(&self, p: &Probed, verdict: ProbeVerdict, hold: Duration) {
        let message = match &p.outcome {
            Ok(()) => String::new(),
            Err((_, message)) => message.clone(),
        };
        metrics::counter!(metric::PROBES_TOTAL,
        "provider" => p.provider.to_string(), "verdict" => verdict.as_str())
        .increment(1);
        tracing::debug!(provider = %p.provider, verdict = verdict.as_str(), %message, "fleet probe");
        let Some(pcfg) = self.cfg.provider(&p.provider) else {
            return;
        };
        let bcfg = self.cfg.breaker_for(pcfg);
        let me = self.worker_id.clone();
        let changed = self
            .fleet
            .health()
            .modify(&p.provider, |r, t| {
                apply_probe(r, verdict, &message, &me, hold, &bcfg, t)
            })
            .await;
        self.announcer.report(changed).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{ForcedStatus, Timestamp};

    fn record(breaker: BreakerState) -> ProviderHealthRecord {
        let mut r = ProviderHealthRecord::new("p", "w0");
        r.breaker = breaker;
        r
    }

    #[test]
    fn open_switched_on_providers_with_a_free_slot_are_probed() {
        let now: Timestamp = crate::engine::clock::wall_now();
        let later = now + chrono::Duration::seconds(5);
        let cfg = BreakerConfig::default();
        let plan = |r: &ProviderHealthRecord| plan(r, &cfg, "me", now, Duration::from_secs(1));
        assert_eq!(plan(&record(BreakerState::Closed)), Plan::Leave);
        assert_eq!(plan(&record(BreakerState::Open)), Plan::Probe);
        assert_eq!(plan(&record(BreakerState::HalfOpen)), Plan::Probe);
        let mut r = record(BreakerState::Open);
        r.quarantined = true;
        assert_eq!(plan(&r), Plan::Leave);
        let mut r = record(BreakerState::Open);
        r.forced = Some(crate::contract::Forced {
            status: ForcedStatus::Down,
            until: Some(later),
            reason: None,
        });
        assert_eq!(plan(&r), Plan::Leave);
        let mut r = record(BreakerState::Open);
        r.probe_owner = Some("other".into());
        r.probe_until = Some(later);
        assert_eq!(plan(&r), Plan::Leave);
        r.probe_owner = Some("me".into());
        assert_eq!(plan(&r), Plan::Probe);
        r.probe_owner = Some("other".into());
        r.probe_until = Some(now - chrono::Duration::seconds(1));
        assert_eq!(plan(&r), Plan::Probe);
        // Not while the open period has more than `lead` to run.
        r.open_until = Some(later);
        assert_eq!(plan(&r), Plan::Leave);
        r.open_until = Some(now + chrono::Duration::milliseconds(900));
        assert_eq!(plan(&r), Plan::Probe);
    }

    #[test]
    fn a_provider_one_failure_from_opening_gets_a_verdict_probe() {
        let cfg = BreakerConfig::default();
        let mut r = record(BreakerState::Closed);
        r.consecutive_failures = 2;
        let now = crate::engine::clock::wall_now();
        assert_eq!(plan(&r, &cfg, "me", now, Duration::ZERO), Plan::Verdict);
    }
}
