//! Learning from outcomes: judging a signal by what the market did next, folding judgements
//! into decayed quality records, and the `quality` strategy's scores (Thompson sampling on
//! each provider's hit record, priority as the prior, a floor of exploration). Pure: the bus
//! brings the records in and out.

use rand::Rng;
use rand_distr::{Beta, Distribution};

use crate::config::QualityConfig;
use crate::contract::{Action, QualityObservation, QualityRecord, Timestamp};

/// Pseudo-observations the priority prior is worth while a provider has no outcomes; it fades
/// linearly to nothing at `quality.min_samples`.
const PRIOR_WEIGHT: f64 = 4.0;
/// Prior hit rates of the best and the worst configured priority.
const PRIOR_BEST: f64 = 0.6;
const PRIOR_WORST: f64 = 0.4;

/// Whether `action` was right given the instrument's `ret` over the horizon, and its signed
/// return (+ret for buy, −ret for sell, 0 for hold).
pub fn judge(action: Action, ret: f64, band: f64) -> (bool, f64) {
    match action {
        Action::Buy => (ret > band, ret),
        Action::Sell => (ret < -band, -ret),
        Action::Hold => (ret.abs() <= band, 0.0),
    }
}

/// The weight left to something `age_s` seconds old.
fn decay(age_s: f64, half_life_s: u64) -> f64 {
    if age_s <= 0.0 {
        return 1.0;
    }
    (-age_s * std::f64::consts::LN_2 / half_life_s.max(1) as f64).exp()
}

fn seconds(from: Timestamp, to: Timestamp) -> f64 {
    (to - from).num_milliseconds() as f64 / 1000.0
}

/// A record with nothing in it yet, for `obs`'s source.
pub fn empty_record(obs: &QualityObservation) -> QualityRecord {
    // The cache's and the fallback's records are about the source, whoever answered first.
    let by_provider = obs.source == crate::contract::Source::Provider;
    QualityRecord {
        provider: obs.provider.clone().filter(|_| by_provider),
        model: obs.model.clone().filter(|_| by_provider),
        kind: obs.kind,
        source: obs.source,
        n: 0.0,
        hits: 0.0,
        hit_rate: 0.0,
        mean_signed_return: 0.0,
        brier: 0.0,
        labelled: 0,
        signed_return_sum: 0.0,
        brier_sum: 0.0,
        applied_seq: 0,
        updated_at: obs.at,
    }
}

/// Folds one observation, logged at sequence `seq`, into `record`: what is there decays to
/// the observation's time (never backwards: records only move forward), then it counts one.
pub fn fold(record: &mut QualityRecord, obs: &QualityObservation, seq: u64, half_life_s: u64) {
    let at = obs.at.max(record.updated_at);
    let w = decay(seconds(record.updated_at, at), half_life_s);
    let hit = if obs.hit { 1.0 } else { 0.0 };
    record.n = record.n * w + 1.0;
    record.hits = record.hits * w + hit;
    record.signed_return_sum = record.signed_return_sum * w + obs.signed_return;
    record.brier_sum = record.brier_sum * w + (obs.confidence.clamp(0.0, 1.0) - hit).powi(2);
    record.labelled += 1;
    record.applied_seq = record.applied_seq.max(seq);
    record.updated_at = at;
    record.hit_rate = record.hits / record.n;
    record.mean_signed_return = record.signed_return_sum / record.n;
    record.brier = record.brier_sum / record.n;
}

/// A record's decayed outcome count and hits as of `now`.
pub fn evidence_at(record: &QualityRecord, now: Timestamp, half_life_s: u64) -> Evidence {
    let w = decay(seconds(record.updated_at, now), half_life_s);
    Evidence {
        n: record.n * w,
        hits: record.hits * w,
    }
}

/// What the fleet knows of a provider's advice for one kind (decayed, summed over its models).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Evidence {
    pub n: f64,
    pub hits: f64,
}

impl std::ops::Add for Evidence {
    type Output = Evidence;
    fn add(self, o: Evidence) -> Evidence {
        Evidence {
            n: self.n + o.n,
            hits: self.hits + o.hits,
        }
    }
}

/// One candidate provider as the `quality` strategy sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arm {
    pub priority: u32,
    pub evidence: Evidence,
    /// Estimated cost of a call (USD) and observed latency (ms), for the optional weights.
    pub cost: f64,
    pub latency_ms: f64,
}

/// The Beta posterior of an arm's hit rate: its outcomes, plus a priority prior that fades
/// out as outcomes come in.
fn posterior(arm: &Arm, prior_mean: f64, cfg: &QualityConfig) -> (f64, f64) {
    let n = arm.evidence.n.max(0.0);
    let hits = arm.evidence.hits.clamp(0.0, n);
    let k = PRIOR_WEIGHT * (1.0 - n / cfg.min_samples.max(1) as f64).max(0.0);
    (
        1.0 + hits + k * prior_mean,
        1.0 + (n - hits) + k * (1.0 - prior_mean),
    )
}

/// Scores for `arms`, higher first: a Thompson draw from each posterior, less the cost and
/// latency penalties. On `tick`s reserved for exploration (each arm that is not the current
/// best gets one in every `⌊1 / explore⌋`), that arm goes first whatever it drew. Exploring
/// by turns rather than by chance gives every arm its share in any run of requests. Without
/// a tick (a view of the order) nothing is explored.
pub fn scores(
    arms: &[Arm],
    cfg: &QualityConfig,
    tick: Option<u64>,
    rng: &mut impl Rng,
) -> Vec<f64> {
    if arms.is_empty() {
        return vec![];
    }
    let best_p = arms.iter().map(|a| a.priority).min().unwrap_or(0);
    let worst_p = arms.iter().map(|a| a.priority).max().unwrap_or(0);
    let max_cost = arms.iter().map(|a| a.cost).fold(0.0, f64::max);
    let max_latency = arms.iter().map(|a| a.latency_ms).fold(0.0, f64::max);
    let penalty = |a: &Arm| {
        let part = |v: f64, max: f64| if max > 0.0 { v / max } else { 0.0 };
        cfg.cost_weight * part(a.cost, max_cost)
            + cfg.latency_weight * part(a.latency_ms, max_latency)
    };
    let prior = |a: &Arm| {
        if worst_p == best_p {
            0.5
        } else {
            let r = (a.priority - best_p) as f64 / (worst_p - best_p) as f64;
            PRIOR_BEST - (PRIOR_BEST - PRIOR_WORST) * r
        }
    };
    let mut drawn = Vec::with_capacity(arms.len());
    let mut expected = Vec::with_capacity(arms.len());
    for arm in arms {
        let (a, b) = posterior(arm, prior(arm), cfg);
        let theta = Beta::new(a, b).map_or(a / (a + b), |d| d.sample(rng));
        drawn.push(theta - penalty(arm));
        expected.push(a / (a + b) - penalty(arm));
    }
    let best = (0..arms.len())
        .max_by(|&i, &j| expected[i].total_cmp(&expected[j]))
        .unwrap_or(0);
    if let Some(tick) = tick.filter(|_| cfg.explore > 0.0 && arms.len() > 1) {
        // One turn in every `period` per other arm: at least `explore` each (the period is
        // rounded down). When the others' shares would add up to more than the traffic, every
        // request explores, the others in rotation.
        let period = (1.0 / cfg.explore).floor().max(1.0) as u64;
        let others: Vec<usize> = (0..arms.len()).filter(|&i| i != best).collect();
        let (turn, cycle) = ((tick % period) as usize, (tick / period) as usize);
        let chosen = if others.len() <= period as usize {
            others.get(turn)
        } else {
            others.get((turn + cycle * period as usize) % others.len())
        };
        if let Some(&chosen) = chosen {
            drawn[chosen] = f64::INFINITY;
        }
    }
    drawn
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::contract::{Kind, Source};

    fn obs(hit: bool, at: Timestamp) -> QualityObservation {
        QualityObservation {
            request_id: "r".into(),
            horizon_s: 60,
            provider: Some("p".into()),
            model: Some("m".into()),
            kind: Kind::Signal,
            source: Source::Provider,
            hit,
            signed_return: if hit { 0.01 } else { -0.01 },
            confidence: 0.8,
            return_: if hit { 0.01 } else { -0.01 },
            pnl_usd: None,
            reported_at: at,
            at,
        }
    }

    #[test]
    fn hits_follow_the_band() {
        assert_eq!(judge(Action::Buy, 0.012, 0.001), (true, 0.012));
        assert!(!judge(Action::Buy, 0.0005, 0.001).0);
        assert_eq!(judge(Action::Sell, -0.02, 0.001), (true, 0.02));
        assert_eq!(judge(Action::Hold, -0.0008, 0.001), (true, 0.0));
        assert!(!judge(Action::Hold, 0.05, 0.001).0);
    }

    #[test]
    fn folding_counts_and_decays() {
        let t0 = crate::contract::now();
        let first = obs(true, t0);
        let mut r = empty_record(&first);
        fold(&mut r, &first, 7, 3600);
        fold(&mut r, &obs(false, t0), 8, 3600);
        assert_eq!((r.n, r.hits, r.labelled, r.applied_seq), (2.0, 1.0, 2, 8));
        assert!((r.brier - (0.04 + 0.64) / 2.0).abs() < 1e-9);
        assert!(r.mean_signed_return.abs() < 1e-12);
        // One half-life later the old evidence weighs half.
        fold(&mut r, &obs(true, t0 + chrono::Duration::hours(1)), 9, 3600);
        assert!((r.n - 2.0).abs() < 1e-9, "{}", r.n);
        assert!((r.hits - 1.5).abs() < 1e-9, "{}", r.hits);
        let later = evidence_at(&r, t0 + chrono::Duration::hours(2), 3600);
        assert!((later.n - 1.0).abs() < 1e-9);
    }

    fn arm(priority: u32, n: f64, hits: f64) -> Arm {
        Arm {
            priority,
            evidence: Evidence { n, hits },
            cost: 0.0,
            latency_ms: 0.0,
        }
    }

    /// How often each arm goes first over `ticks` choices.
    fn firsts(arms: &[Arm], cfg: &QualityConfig, ticks: u64) -> Vec<u64> {
        let mut rng = StdRng::seed_from_u64(7);
        let mut counts = vec![0; arms.len()];
        for t in 0..ticks {
            let s = scores(arms, cfg, Some(t), &mut rng);
            let first = (0..arms.len())
                .max_by(|&i, &j| s[i].total_cmp(&s[j]))
                .unwrap();
            counts[first] += 1;
        }
        counts
    }

    #[test]
    fn without_outcomes_priority_leads_but_everyone_is_tried() {
        let cfg = QualityConfig::default();
        let c = firsts(
            &[arm(1, 0.0, 0.0), arm(2, 0.0, 0.0), arm(3, 0.0, 0.0)],
            &cfg,
            3000,
        );
        assert!(c[0] > c[1] && c[1] > c[2], "{c:?}");
        assert!(c[2] > 300, "the last priority is still explored: {c:?}");
    }

    #[test]
    fn evidence_wins_and_the_loser_keeps_its_exploration_share() {
        let cfg = QualityConfig::default();
        let c = firsts(
            &[
                arm(1, 100.0, 0.0),
                arm(2, 100.0, 100.0),
                arm(3, 100.0, 50.0),
            ],
            &cfg,
            2000,
        );
        assert!(c[1] >= 1700, "{c:?}");
        // explore = 0.05: each of the two others leads at least one choice in twenty.
        assert!(c[0] >= 100 && c[0] <= 130, "{c:?}");
        assert!(c[2] >= 100, "{c:?}");
        let none = QualityConfig {
            explore: 0.0,
            ..cfg
        };
        let c = firsts(&[arm(1, 100.0, 0.0), arm(2, 100.0, 100.0)], &none, 1000);
        assert_eq!(c, vec![0, 1000]);
    }

    #[test]
    fn a_cost_weight_trades_hit_rate_for_price() {
        let mut cheap = arm(1, 200.0, 120.0);
        let mut dear = arm(1, 200.0, 140.0);
        cheap.cost = 0.001;
        dear.cost = 0.01;
        let plain = QualityConfig {
            explore: 0.0,
            ..QualityConfig::default()
        };
        assert!(firsts(&[cheap, dear], &plain, 500)[1] > 450);
        let frugal = QualityConfig {
            cost_weight: 0.5,
            ..plain
        };
        assert!(firsts(&[cheap, dear], &frugal, 500)[0] > 450);
    }
}
