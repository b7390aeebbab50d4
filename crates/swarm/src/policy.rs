//! The bots' learning policy: an epsilon-greedy bandit over trade routes, one arm per
//! (from-system, good, to-system), "no good" being an empty trip.
//!
//! Prices move (the economy, and every bot's trades), so an arm's past profits go stale. The
//! policy therefore learns, per arm, how far what the prices promise is off: a candidate comes
//! with a *prior* (the profit the prices the bot sees now promise: the local buy price against
//! the mid price last heard at the destination), and the arm's value is that prior plus the
//! arm's mean *error* (profit made minus profit promised, over its past trips). Heard prices are
//! stale, a purchase moves the price, other bots sell into the same market: the error learns
//! all of that, and the prior follows today's prices. The error starts at 0 and counts as
//! [`PRIOR_WEIGHT_TRIPS`] trips (trust the prices first). A galaxy has hundreds of routes, so
//! an arm not tried yet borrows the error of its good, learned over every route that carried it
//! (a good that moves its price a lot, like luxuries, promises more than it makes on every
//! route). An arm offered without a prior (no price heard) is valued by its mean profit. All
//! means weigh recent trips more ([`MIN_STEP`]).
//!
//! With probability epsilon the policy picks a uniformly random arm (explore), otherwise the
//! arm of highest value (exploit; ties go to the first offered). Epsilon starts at
//! [`EPSILON_START`] and shrinks with the trips made, down to [`EPSILON_MIN`].
//!
//! Pure and seeded: never does I/O, never reads a clock, draws only from the [`Rng`] it is
//! given; the same candidates, rewards and seed give the same choices.

use std::collections::HashMap;

use sim::rng::Rng;

/// Chance of a random arm at the first trip.
pub const EPSILON_START: f64 = 0.30;
/// Chance of a random arm, at the least (the market keeps changing: never stop looking).
pub const EPSILON_MIN: f64 = 0.03;
/// Epsilon is halved after this many trips (`EPSILON_START * H / (H + trips)`).
pub const EPSILON_HALF_LIFE_TRIPS: f64 = 20.0;
/// The smallest weight of a new reward in an arm's mean: past the first few trips the mean is
/// an exponential average over about the last `1 / MIN_STEP` trips.
pub const MIN_STEP: f64 = 0.2;
/// How many trips the prices' promise counts for before experience corrects it (an error of
/// 0 counted this many times).
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
    /// Recency-weighted mean profit of those trips, in credits.
    pub mean_cr: f64,
    /// Trips that came with a prior.
    pub priced_trips: u64,
    /// Recency-weighted mean of (profit - prior) over them, in credits (0 counted
    /// [`PRIOR_WEIGHT_TRIPS`] times first).
    pub error_cr: f64,
}

impl ArmStats {
    fn learn(&mut self, prior_cr: Option<f64>, profit_cr: f64) {
        self.trips += 1;
        let step = (1.0 / self.trips as f64).max(MIN_STEP);
        self.mean_cr += step * (profit_cr - self.mean_cr);
        if let Some(prior) = prior_cr {
            self.priced_trips += 1;
            let step = (1.0 / (self.priced_trips as f64 + PRIOR_WEIGHT_TRIPS)).max(MIN_STEP);
            self.error_cr += step * ((profit_cr - prior) - self.error_cr);
        }
    }
}

/// One bot's bandit.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    arms: HashMap<Arm, ArmStats>,
    /// The same, pooled by good (None: empty trips), for arms not tried yet.
    goods: HashMap<Option<String>, ArmStats>,
    /// Trips learned from, over all arms.
    trips: u64,
    /// Choices made at random, and in all (for the summary).
    explored: u64,
    chosen: u64,
    /// Always choose at random (a baseline to compare the learners with).
    random: bool,
}

impl Policy {
    pub fn new() -> Policy {
        Policy::default()
    }

    /// A policy that always chooses at random: the baseline.
    pub fn random() -> Policy {
        Policy {
            random: true,
            ..Policy::default()
        }
    }

    /// The chance of a random choice now.
    pub fn epsilon(&self) -> f64 {
        if self.random {
            return 1.0;
        }
        let e =
            EPSILON_START * EPSILON_HALF_LIFE_TRIPS / (EPSILON_HALF_LIFE_TRIPS + self.trips as f64);
        e.max(EPSILON_MIN)
    }

    /// What the policy thinks a candidate's trip makes, in credits.
    pub fn value_cr(&self, c: &Candidate) -> f64 {
        let stats = self.arms.get(&c.arm);
        let pooled = self.goods.get(&c.arm.good);
        match (c.prior_cr, stats) {
            (Some(prior), Some(s)) if s.priced_trips > 0 => prior + s.error_cr,
            (Some(prior), _) => prior + pooled.map_or(0.0, |g| g.error_cr),
            (None, Some(s)) if s.trips > 0 => s.mean_cr,
            (None, _) => UNKNOWN_VALUE_CR,
        }
    }

    /// Picks one of `candidates` (its index). `candidates` must not be empty.
    pub fn choose(&mut self, rng: &mut Rng, candidates: &[Candidate]) -> usize {
        assert!(!candidates.is_empty(), "the policy needs an arm to choose");
        self.chosen += 1;
        let explore_permille = (self.epsilon() * 1000.0).round() as u64;
        if self.random || rng.below(1000) < explore_permille {
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

    /// Learns from a finished trip on `candidate`'s arm (as it was offered when chosen) that
    /// made `profit_cr` (negative: a loss).
    pub fn learn(&mut self, candidate: &Candidate, profit_cr: f64) {
        self.trips += 1;
        let arm = self.arms.entry(candidate.arm.clone()).or_default();
        arm.learn(candidate.prior_cr, profit_cr);
        let good = self.goods.entry(candidate.arm.good.clone()).or_default();
        good.learn(candidate.prior_cr, profit_cr);
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
        assert!((s.mean_cr - 95.0).abs() < 40.0, "value {}", s.mean_cr);
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
                arm: Arm {
                    good: Some("food".into()),
                    ..arm("Sirius")
                },
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
    fn a_learned_route_follows_todays_prices() {
        let mut c = Candidate {
            arm: arm("Vega"),
            prior_cr: Some(100.0),
        };
        let mut policy = Policy::new();
        for _ in 0..50 {
            policy.learn(&c, 80.0);
        }
        assert!((policy.value_cr(&c) - 80.0).abs() < 0.01);
        // The prices now promise three times as much: so does the route, less its error.
        c.prior_cr = Some(300.0);
        assert!((policy.value_cr(&c) - 280.0).abs() < 0.01);
        // No price heard: what the route made.
        c.prior_cr = None;
        assert!((policy.value_cr(&c) - 80.0).abs() < 0.01);
    }

    #[test]
    fn an_untried_route_borrows_the_error_of_its_good() {
        let tried = Candidate {
            arm: arm("Vega"),
            prior_cr: Some(1000.0),
        };
        let mut policy = Policy::new();
        for _ in 0..50 {
            policy.learn(&tried, -200.0);
        }
        // Ore promised 1200 more than it made on the tried route; so it does on a new one.
        let new = Candidate {
            arm: arm("Sirius"),
            prior_cr: Some(1500.0),
        };
        assert!((policy.value_cr(&new) - 300.0).abs() < 0.01);
        let other_good = Candidate {
            arm: Arm {
                good: Some("food".into()),
                ..arm("Sirius")
            },
            prior_cr: Some(400.0),
        };
        assert_eq!(policy.value_cr(&other_good), 400.0);
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
    fn the_baseline_chooses_uniformly() {
        let cands = candidates(4, None);
        let mut policy = Policy::random();
        let mut rng = Rng::from_seed(3);
        let mut counts = [0u32; 4];
        for _ in 0..4000 {
            let i = policy.choose(&mut rng, &cands);
            counts[i] += 1;
            policy.learn(&cands[i], if i == 0 { 100.0 } else { 0.0 });
        }
        assert!(
            counts.iter().all(|&n| (850..1150).contains(&n)),
            "{counts:?}"
        );
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
