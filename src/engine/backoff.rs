//! Exponential backoff with full jitter (AWS architecture blog's "full jitter"): the n-th
//! retry waits a uniform random time in `[0, min(max, base·2ⁿ)]`. Hand-written in a few lines
//! rather than taken from `backon`, because the engine interleaves retries with failover and
//! the request deadline itself instead of handing a closure to a retry loop, and because the
//! delay must come from the engine's seeded RNG so tests are deterministic.

use std::time::Duration;

use rand::Rng;

/// The delay before retry number `attempt` (0-based).
pub fn full_jitter(rng: &mut impl Rng, base: Duration, max: Duration, attempt: u32) -> Duration {
    let cap = base
        .saturating_mul(2u32.saturating_pow(attempt.min(16)))
        .min(max);
    let ms = cap.as_millis() as u64;
    Duration::from_millis(if ms == 0 { 0 } else { rng.random_range(0..=ms) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn delays_stay_within_the_growing_cap() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let (base, max) = (Duration::from_millis(100), Duration::from_millis(1_000));
        for attempt in 0..10 {
            let cap = (100u64 << attempt).min(1_000);
            for _ in 0..200 {
                let d = full_jitter(&mut rng, base, max, attempt);
                assert!(
                    d <= Duration::from_millis(cap),
                    "{d:?} > {cap} at {attempt}"
                );
            }
        }
        // Full jitter spreads over the whole range, down to near zero.
        let small = (0..200)
            .filter(|_| full_jitter(&mut rng, base, max, 3) < Duration::from_millis(100))
            .count();
        assert!(small > 0);
    }
}
