//! Turning a provider's faults into a decision for one call. Every random choice of a call
//! is drawn here, at arrival, in a fixed order, so a seeded run repeats exactly.

use std::time::{Duration, Instant};

use rand::Rng;
use rand::rngs::SmallRng;

use super::{FaultClass, Faults, Latency, Malformed, SlowDrip};

/// A provider's faults plus what is needed to apply them.
#[derive(Debug)]
pub(crate) struct FaultState {
    pub faults: Faults,
    /// Outage windows are relative to this.
    pub set_at: Instant,
    pub rng: SmallRng,
}

/// What to do with one call.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    pub refuse: bool,
    pub hang: bool,
    pub delay: Duration,
    pub outage: bool,
    pub class: Option<FaultClass>,
    pub malformed: Option<Malformed>,
    pub drip: Option<SlowDrip>,
    pub huge_body_bytes: Option<u64>,
    pub retry_after_s: u64,
    pub timeout_hold: Duration,
    pub max_concurrent: Option<u32>,
    pub wrong_advice: bool,
}

impl FaultState {
    /// Decides the fate of a call arriving `now`.
    pub(crate) fn plan(&mut self, now: Instant) -> Plan {
        let f = &self.faults;
        let delay = f.latency_ms.map_or(0, |l| sample_latency(&mut self.rng, l));
        let elapsed = now.saturating_duration_since(self.set_at).as_millis() as u64;
        let u: f64 = self.rng.random();
        Plan {
            refuse: f.refuse_connections,
            hang: f.hang,
            delay: Duration::from_millis(delay),
            outage: f.outage.is_some_and(|o| o.covers(elapsed)),
            class: f.error_rate.pick(u),
            malformed: f.malformed,
            drip: f.slow_drip,
            huge_body_bytes: f.huge_body_bytes,
            retry_after_s: f.retry_after_s.unwrap_or(1),
            max_concurrent: f.max_concurrent,
            wrong_advice: f.wrong_advice,
            timeout_hold: Duration::from_millis(f.timeout_hold_ms.unwrap_or(60_000)),
        }
    }
}

/// z-score of the 99th percentile of a standard normal.
const Z99: f64 = 2.326_347_874;

/// One latency draw in milliseconds.
pub(crate) fn sample_latency(rng: &mut SmallRng, l: Latency) -> u64 {
    match l {
        Latency::Fixed(ms) => ms,
        Latency::Uniform { min, max } => rng.random_range(min..=max),
        Latency::LogNormal { p50, p99 } => {
            let mu = (p50 as f64).ln();
            let sigma = ((p99 as f64).ln() - mu) / Z99;
            // Box–Muller; 1 - u keeps the logarithm's argument in (0, 1].
            let u1: f64 = 1.0 - rng.random::<f64>();
            let u2: f64 = rng.random();
            let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            // Cap the far tail so one draw cannot stall a test for minutes.
            (mu + sigma * z).exp().min(p99 as f64 * 4.0).round() as u64
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn log_normal_has_the_asked_median() {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut v: Vec<u64> = (0..4001)
            .map(|_| {
                sample_latency(
                    &mut rng,
                    Latency::LogNormal {
                        p50: 100,
                        p99: 1000,
                    },
                )
            })
            .collect();
        v.sort_unstable();
        let (p50, p99) = (v[2000], v[3960]);
        assert!((85..=115).contains(&p50), "p50 {p50}");
        assert!((700..=1400).contains(&p99), "p99 {p99}");
    }

    #[test]
    fn seeded_plans_repeat() {
        let faults: Faults = serde_json::from_str(
            r#"{"latency_ms":{"min":1,"max":50},"error_rate":{"timeout":0.5}}"#,
        )
        .unwrap();
        let run = || {
            let mut s = FaultState {
                faults: faults.clone(),
                set_at: Instant::now(),
                rng: SmallRng::seed_from_u64(42),
            };
            (0..20)
                .map(|_| {
                    let p = s.plan(Instant::now());
                    (p.delay, p.class)
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }
}
