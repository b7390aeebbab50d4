//! The bots' learning policy: an epsilon-greedy bandit over trade routes, one arm per
//! (from-system, good, to-system), "no good" being an empty trip.
//!
//! Each arm's value is a running mean of the profit its trips made (in credits, as the bot
//! counts it: see `bot`), started from a *prior*: what the prices
//! the bot saw promise (the local buy price against the mid price last heard at the
//! destination). Heard prices are stale and do not include what the bot's own trade does to
//! them, so experience takes over from the prior: after one trip the prior counts as one trip
//! among the others. The mean weighs recent trips more ([`MIN_STEP`]), because other bots move
//! the prices the arm's profit came from.
//!
//! With probability epsilon the policy picks a uniformly random arm (explore), otherwise the
//! arm of highest value (exploit; ties go to the first offered). Epsilon starts at
//! [`EPSILON_START`] and shrinks with the trips made, down to [`EPSILON_MIN`].
//!
//! Pure and seeded: never does I/O, never reads a clock, draws only from the [`Rng`] it is
//! given; the same candidates, rewards and seed give the same choices.

use std::collections::HashMap;

use crate::sim::rng::Rng;

/// Chance of a random arm at the first trip.
pub const EPSILON_START: f64 = 0.30;
/// Chance of a random arm, at the least (the market keeps changing: never stop looking).
pub const EPSILON_MIN: f64 = 0.05;
/// Epsilon is halved after this many trips (`EPSILON_START * H / (H + trips)`).
pub const EPSILON_HALF_LIFE_TRIPS: f64 = 20.0;
/// The smallest weight of a new reward in an arm's mean: past the first few trips the mean is
/// an exponential average over about the last `1 / MIN_STEP` trips.
pub const MIN_STEP: f64 = 0.2;
/// How many trips the prior (what the prices promise) counts for.
pub const PRIOR_WEIGHT_TRIPS: f64 = 1.0;
/// The value of an arm with neither a prior nor experience, in credits: neutral, so an unknown
/// trade is preferred to a known loss and tried after a known gain.
pub const UNKNOWN_VALUE_CR: f64 = 0.0;

/// A route: where the trip starts, the good bought there (None: travel empty), where it ends.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Arm {
    pub from: String,
    pub good: Option<String>,
    pub to: String,
}

/// An arm the bot can take now, with what the prices it saw promise.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub arm: Arm,
    /// Expected profit of the trip from the prices, in credits (None: no price heard).
    pub prior_cr: Option<f64>,
}

/// What the policy learned about one arm.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ArmStats {
    /// Trips taken on this arm.
    pub trips: u64,
    /// Recency-weighted mean profit of those trips, in credits (the prior counted in).
    pub value_cr: f64,
}

/// One bot's bandit.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    arms: HashMap<Arm, ArmStats>,
    /// Trips learned from, over all arms.
    trips: u64,
    /// Choices made at random, and in all (for the summary).
    explored: u64,
    chosen: u64,
}

impl Policy {
    pub fn new() -> Policy {
        Policy::default()
    }

    /// The chance of a random choice now.
    pub fn epsilon(&self) -> f64 {
        let e =
            EPSILON_START * EPSILON_HALF_LIFE_TRIPS / (EPSILON_HALF_LIFE_TRIPS + self.trips as f64);
        e.max(EPSILON_MIN)
    }

    /// What the policy thinks a candidate's trip makes, in credits.
    pub fn value_cr(&self, c: &Candidate) -> f64 {
        match (self.arms.get(&c.arm), c.prior_cr) {
            (Some(s), _) if s.trips > 0 => s.value_cr,
            (_, Some(prior)) => prior,
            _ => UNKNOWN_VALUE_CR,
        }
    }

    /// Picks one of `candidates` (its index). `candidates` must not be empty.
    pub fn choose(&mut self, rng: &mut Rng, candidates: &[Candidate]) -> usize {
        assert!(!candidates.is_empty(), "the policy needs an arm to choose");
        self.chosen += 1;
        let explore_permille = (self.epsilon() * 1000.0).round() as u64;
        if rng.below(1000) < explore_permille {
            self.explored += 1;
            return rng.below(candidates.len() as u64) as usize;
        }
        self.best(candidates)
    }

    /// The index of the candidate of highest value (the first of equals).
    pub fn best(&self, candidates: &[Candidate]) -> usize {
        let mut best = 0;
        let mut best_value = f64::NEG_INFINITY;
        for (i, c) in candidates.iter().enumerate() {
            let v = self.value_cr(c);
            if v > best_value {
                best = i;
                best_value = v;
            }
        }
        best
    }

    /// Learns from a finished trip on `candidate`'s arm that made `profit_cr` (negative: a
    /// loss).
    pub fn learn(&mut self, candidate: &Candidate, profit_cr: f64) {
        self.trips += 1;
        let s = self.arms.entry(candidate.arm.clone()).or_default();
        if s.trips == 0 {
            // The prior counts as PRIOR_WEIGHT_TRIPS trips already taken.
            s.value_cr = candidate.prior_cr.unwrap_or(UNKNOWN_VALUE_CR);
        }
        s.trips += 1;
        let weight = match candidate.prior_cr {
            Some(_) => PRIOR_WEIGHT_TRIPS,
            None => 0.0,
        };
        let step = (1.0 / (s.trips as f64 + weight)).max(MIN_STEP);
        s.value_cr += step * (profit_cr - s.value_cr);
    }

    /// What was learned about `arm`.
    pub fn stats(&self, arm: &Arm) -> Option<ArmStats> {
        self.arms.get(arm).copied()
    }

    /// Trips learned from.
    pub fn trips(&self) -> u64 {
        self.trips
    }

    /// (random choices, all choices).
    pub fn exploration(&self) -> (u64, u64) {
        (self.explored, self.chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arm(to: &str) -> Arm {
        Arm {
            from: "Sol".into(),
            good: Some("ore".into()),
            to: to.into(),
        }
    }

    fn candidates(n: usize, prior: Option<f64>) -> Vec<Candidate> {
        (0..n)
            .map(|i| Candidate {
                arm: arm(&format!("S{i}")),
                prior_cr: prior,
            })
            .collect()
    }

    /// A noisy reward: `mean` plus a uniform draw in -spread..=spread.
    fn reward(rng: &mut Rng, mean: i64, spread: u64) -> f64 {
        (mean - spread as i64 + rng.range_inclusive(0, 2 * spread) as i64) as f64
    }

    #[test]
    fn converges_to_the_best_arm_of_a_noisy_reward_table() {
        // Mean profit of each arm; arm 3 is the best, by less than the noise.
        let table = [40, -10, 70, 95, 60, 0];
        let cands = candidates(table.len(), None);
        let mut policy = Policy::new();
        let mut rng = Rng::from_seed(7);
        let mut world = Rng::from_seed(99);
        let mut late_best = 0;
        for trip in 0..3000 {
            let i = policy.choose(&mut rng, &cands);
            if trip >= 2000 && i == 3 {
                late_best += 1;
            }
            let r = reward(&mut world, table[i], 60);
            policy.learn(&cands[i], r);
        }
        assert_eq!(policy.best(&cands), 3, "greedy choice is the best arm");
        assert!(
            late_best > 850,
            "the best arm was chosen {late_best} times of the last 1000"
        );
        assert!((policy.epsilon() - EPSILON_MIN).abs() < 1e-9);
        let s = policy.stats(&cands[3].arm).unwrap();
        assert!((s.value_cr - 95.0).abs() < 40.0, "value {}", s.value_cr);
    }

    #[test]
    fn experience_overrides_a_misleading_prior() {
        // Prices promise 500 on arm 0 (a stale heard price), 50 on arm 1; arm 0 loses.
        let cands = vec![
            Candidate {
                arm: arm("Vega"),
                prior_cr: Some(500.0),
            },
            Candidate {
                arm: arm("Sirius"),
                prior_cr: Some(50.0),
            },
        ];
        let mut policy = Policy::new();
        assert_eq!(policy.best(&cands), 0, "the prior decides first");
        for _ in 0..2 {
            policy.learn(&cands[0], -20.0);
        }
        assert_eq!(policy.best(&cands), 0, "the prior counts as a trip");
        for _ in 0..4 {
            policy.learn(&cands[0], -20.0);
        }
        assert_eq!(policy.best(&cands), 1, "six losing trips outweigh it");
    }

    #[test]
    fn the_same_seed_and_rewards_give_the_same_choices() {
        let cands = candidates(5, Some(10.0));
        let run = || {
            let mut policy = Policy::new();
            let mut rng = Rng::from_seed(42);
            (0..200)
                .map(|t| {
                    let i = policy.choose(&mut rng, &cands);
                    policy.learn(&cands[i], (i as f64) * 3.0 - (t % 7) as f64);
                    i
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn epsilon_shrinks_with_trips_down_to_its_floor() {
        let mut policy = Policy::new();
        assert!((policy.epsilon() - EPSILON_START).abs() < 1e-9);
        let c = &candidates(1, None)[0];
        for _ in 0..20 {
            policy.learn(c, 1.0);
        }
        assert!((policy.epsilon() - EPSILON_START / 2.0).abs() < 1e-9);
        for _ in 0..1000 {
            policy.learn(c, 1.0);
        }
        assert_eq!(policy.epsilon(), EPSILON_MIN);
    }

    #[test]
    fn unknown_arms_are_neutral() {
        let mut cands = candidates(2, None);
        cands[0].prior_cr = Some(-5.0);
        let policy = Policy::new();
        assert_eq!(
            policy.best(&cands),
            1,
            "an unknown trade beats a known loss"
        );
    }
}
