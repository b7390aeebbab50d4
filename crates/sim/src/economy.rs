//! What each star system's economy makes and uses: the economy kinds, which kind each system
//! of a galaxy has, and each kind's rates of production and consumption.
//!
//! A system's kind is a pure function of the galaxy ([`economy_of`]), so every node of the
//! mesh agrees on it without being told. Rates are integers in units per 100 ticks, and
//! [`units_in_tick`] spreads them over ticks exactly, without fractions or floats, so replays
//! are bit-exact on every machine.
//!
//! Never does I/O, never reads a clock, never changes a market (the market applies the rates:
//! `market::Market::tick`).

use std::fmt;

use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::galaxy::{Galaxy, SystemId};
use super::goods::{Good, GOOD_COUNT};

/// xxh3 seed for choosing a system's economy from its slug. Changing it reshapes every galaxy's
/// economy (and what old logs replay to).
pub const ECONOMY_HASH_SEED: u64 = 0x6563_6f6e_6f6d_7931; // "economy1"

/// A produced good's resting stock, in per-mille of its target stock: at twice the target, its
/// price rests at 3/4 of base (cheap: buy here).
pub const PRODUCER_REST_PERMILLE: u64 = 2_000;

/// A consumed good's resting stock, in per-mille of its target stock: at half the target, its
/// price rests at 5/2 of base (dear: sell here).
pub const CONSUMER_REST_PERMILLE: u64 = 500;

/// A good a system neither makes nor uses rests at its target stock (base price).
pub const NEUTRAL_REST_PERMILLE: u64 = 1_000;

/// How fast a neutral good drifts back to its target after trades, in per-mille of the target
/// per 100 ticks.
pub const NEUTRAL_DRIFT_PERMILLE_PER_100_TICKS: u64 = 10;

/// The fewest and most a made good's rest level is bent by its inputs' stock, in per-mille
/// (the chains: a factory short of ore makes fewer metals, one with plenty makes more).
pub const CHAIN_MIN_PERMILLE: u64 = 500;
pub const CHAIN_MAX_PERMILLE: u64 = 1_500;

/// How much faster than its table rate a market moves toward rest when far from it, at most,
/// in per-mille: a drained market's production answers, a flooded one's use does.
pub const FAR_FROM_REST_BOOST_PERMILLE: u64 = 3_000;

/// Which rules a logged economy step followed: old logs replay by the rules they were
/// written with (`model=` in the `economy` record, absent for [`EconomyModel::Steady`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum EconomyModel {
    /// Before issue 22: every stock moves toward its fixed rest level at its table rate.
    #[default]
    Steady,
    /// Issue 22: rates grow with the distance from rest, made goods rest higher or lower
    /// with their inputs' stock (the chains), and shocks bend rest levels and rates.
    Living,
    /// Issue 22's inflation target: the living economy, but a till below its target is
    /// refilled in proportion to its shortfall (1/[`crate::market::TILL_SUBSIDY_REFILL_TICKS`]
    /// of it a tick, rounded up) instead of at the full
    /// [`crate::market::TILL_REVERSION_CR_PER_TICK`]: docs/ECONOMY.md, "The slow subsidy".
    SlowSubsidy,
    /// What new steps follow (issue 22): the slow subsidy, but bounded per system by the
    /// market's budget, which fills from what this market took out of the game (its tax and
    /// trade fees) plus [`crate::market::BUDGET_ALLOWANCE_CR_PER_TICK`], capped at
    /// [`crate::market::BUDGET_CAP_CR`]: docs/ECONOMY.md, "The budget".
    Budgeted,
}

impl EconomyModel {
    /// The number logged as `model=` (1 is never written: its absence means it).
    pub fn number(self) -> u64 {
        match self {
            EconomyModel::Steady => 1,
            EconomyModel::Living => 2,
            EconomyModel::SlowSubsidy => 3,
            EconomyModel::Budgeted => 4,
        }
    }

    /// The model new economy steps follow.
    pub const CURRENT: EconomyModel = EconomyModel::Budgeted;

    /// The model numbered `n`.
    pub fn from_number(n: u64) -> Option<EconomyModel> {
        match n {
            1 => Some(EconomyModel::Steady),
            2 => Some(EconomyModel::Living),
            3 => Some(EconomyModel::SlowSubsidy),
            4 => Some(EconomyModel::Budgeted),
            _ => None,
        }
    }
}

/// The goods a made good is made from: its stock rests higher when they are plentiful in the
/// same market, lower when they are short ([`CHAIN_MIN_PERMILLE`], [`CHAIN_MAX_PERMILLE`]).
pub fn chain_inputs(good: Good) -> &'static [Good] {
    match good {
        Metals => &[Ore],
        Fuel => &[Ore],
        Electronics => &[Metals],
        Medicine => &[Food, Water],
        Luxuries => &[Electronics],
        Food | Water | Ore => &[],
    }
}

/// The kind of a star system's economy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EconomyKind {
    /// Farms and ice: makes food and water, needs machines and comforts.
    Agricultural,
    /// Factories: makes metals and electronics from ore, feeds its workers.
    Industrial,
    /// Mines: makes ore and water, needs food, medicine and tools.
    Mining,
    /// Laboratories: makes electronics, medicine and luxuries, needs metals and supplies.
    HighTech,
    /// Refineries: makes fuel and metals from ore.
    Refinery,
    /// A frontier station: makes nothing, needs the basics.
    Outpost,
}

/// What a system does with one good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Makes it: the stock rises toward [`PRODUCER_REST_PERMILLE`] of target at this many
    /// units per 100 ticks (and falls back to it at the same rate after sales into it).
    Produces { units_per_100_ticks: u64 },
    /// Uses it: the stock falls toward [`CONSUMER_REST_PERMILLE`] of target at this many units
    /// per 100 ticks (and rises back to it at the same rate after purchases).
    Consumes { units_per_100_ticks: u64 },
    /// Neither: the stock drifts back to its target at
    /// [`NEUTRAL_DRIFT_PERMILLE_PER_100_TICKS`].
    Neutral,
}

use Good::*;

/// Goods with a rate in units per 100 ticks.
type Flows = &'static [(Good, u64)];

/// The goods each kind makes and uses, with their rates in units per 100 ticks (10 s at 10 Hz).
/// Every good is made by some kind and used by another, so every good has a trade route.
const TABLE: [(EconomyKind, Flows, Flows); 6] = [
    (
        EconomyKind::Agricultural,
        &[(Food, 400), (Water, 300)],
        &[
            (Electronics, 40),
            (Medicine, 40),
            (Luxuries, 20),
            (Fuel, 100),
        ],
    ),
    (
        EconomyKind::Industrial,
        &[(Metals, 200), (Electronics, 50)],
        &[(Ore, 300), (Food, 200), (Water, 200), (Fuel, 100)],
    ),
    (
        EconomyKind::Mining,
        &[(Ore, 400), (Water, 200)],
        &[(Food, 300), (Medicine, 40), (Metals, 100), (Luxuries, 10)],
    ),
    (
        EconomyKind::HighTech,
        &[(Electronics, 80), (Medicine, 60), (Luxuries, 30)],
        &[(Metals, 150), (Food, 200), (Water, 200), (Fuel, 100)],
    ),
    (
        EconomyKind::Refinery,
        &[(Fuel, 300), (Metals, 100)],
        &[(Ore, 300), (Food, 150), (Electronics, 30)],
    ),
    (
        EconomyKind::Outpost,
        &[],
        &[(Food, 150), (Water, 150), (Fuel, 150), (Medicine, 30)],
    ),
];

impl EconomyKind {
    /// Every kind, in a fixed order (the order [`economy_of`] picks from).
    pub const ALL: [EconomyKind; 6] = [
        EconomyKind::Agricultural,
        EconomyKind::Industrial,
        EconomyKind::Mining,
        EconomyKind::HighTech,
        EconomyKind::Refinery,
        EconomyKind::Outpost,
    ];

    /// The stable lowercase name, for logs and the API.
    pub fn name(self) -> &'static str {
        match self {
            EconomyKind::Agricultural => "agricultural",
            EconomyKind::Industrial => "industrial",
            EconomyKind::Mining => "mining",
            EconomyKind::HighTech => "high_tech",
            EconomyKind::Refinery => "refinery",
            EconomyKind::Outpost => "outpost",
        }
    }

    /// What this kind does with `good`.
    pub fn role(self, good: Good) -> Role {
        let (_, makes, uses) = TABLE[self as usize];
        debug_assert_eq!(TABLE[self as usize].0, self, "TABLE is in ALL order");
        if let Some(&(_, rate)) = makes.iter().find(|(g, _)| *g == good) {
            return Role::Produces {
                units_per_100_ticks: rate,
            };
        }
        if let Some(&(_, rate)) = uses.iter().find(|(g, _)| *g == good) {
            return Role::Consumes {
                units_per_100_ticks: rate,
            };
        }
        Role::Neutral
    }

    /// Units of `good` made per 100 ticks while below rest (0 if not made here).
    pub fn production_per_100_ticks(self, good: Good) -> u64 {
        match self.role(good) {
            Role::Produces {
                units_per_100_ticks,
            } => units_per_100_ticks,
            _ => 0,
        }
    }

    /// Units of `good` used per 100 ticks while above rest (0 if not used here).
    pub fn consumption_per_100_ticks(self, good: Good) -> u64 {
        match self.role(good) {
            Role::Consumes {
                units_per_100_ticks,
            } => units_per_100_ticks,
            _ => 0,
        }
    }

    /// The stock of `good` a market of this kind rests at when nobody trades, in units.
    pub fn rest_stock_units(self, good: Good) -> u64 {
        let permille = match self.role(good) {
            Role::Produces { .. } => PRODUCER_REST_PERMILLE,
            Role::Consumes { .. } => CONSUMER_REST_PERMILLE,
            Role::Neutral => NEUTRAL_REST_PERMILLE,
        };
        good.target_stock_units() * permille / 1_000
    }

    /// How many units per 100 ticks the stock of `good` moves toward rest (production below
    /// rest, consumption above it). At least 1, so every stock comes back.
    pub fn recovery_per_100_ticks(self, good: Good) -> u64 {
        let rate = match self.role(good) {
            Role::Produces {
                units_per_100_ticks,
            }
            | Role::Consumes {
                units_per_100_ticks,
            } => units_per_100_ticks,
            Role::Neutral => {
                good.target_stock_units() * NEUTRAL_DRIFT_PERMILLE_PER_100_TICKS / 1_000
            }
        };
        rate.max(1)
    }

    /// [`EconomyKind::rest_stock_units`] for every good, in good index order.
    pub fn rest_stocks(self) -> [u64; GOOD_COUNT] {
        Good::ALL.map(|g| self.rest_stock_units(g))
    }
}

impl fmt::Display for EconomyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The economy of system `id` of `galaxy` (an id of this galaxy). The home system, where every
/// player starts, is always high-tech (it sells what new traders can carry off, and buys the
/// basics its neighbours make); every other system's kind comes from the xxh3 hash of its slug,
/// so it is the same on every node and survives reordering the galaxy file.
pub fn economy_of(galaxy: &Galaxy, id: SystemId) -> EconomyKind {
    if id == galaxy.home() {
        return EconomyKind::HighTech;
    }
    let hash = xxh3_64_with_seed(galaxy.slug(id).as_bytes(), ECONOMY_HASH_SEED);
    EconomyKind::ALL[(hash % EconomyKind::ALL.len() as u64) as usize]
}

/// How many of `units_per_100_ticks` fall in tick `tick`: `floor(r*(t+1)/100) - floor(r*t/100)`.
/// Over any 100 consecutive ticks this gives exactly `units_per_100_ticks`, in integers.
pub fn units_in_tick(units_per_100_ticks: u64, tick: u64) -> u64 {
    units_between(units_per_100_ticks, tick, tick.saturating_add(1))
}

/// How many of `units_per_100_ticks` fall in ticks `from..to` (the sum of [`units_in_tick`]
/// over them), in O(1).
pub fn units_between(units_per_100_ticks: u64, from: u64, to: u64) -> u64 {
    assert!(from <= to, "tick range {from}..{to} runs backwards");
    let cumulative = |t: u64| u128::from(units_per_100_ticks) * u128::from(t) / 100;
    // At most rate * (to - from) / 100 + 1, which fits a u64 for any rate of this game.
    u64::try_from(cumulative(to) - cumulative(from)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_good_is_made_somewhere_and_used_somewhere_else() {
        for good in Good::ALL {
            let makers: Vec<_> = EconomyKind::ALL
                .into_iter()
                .filter(|k| k.production_per_100_ticks(good) > 0)
                .collect();
            let users: Vec<_> = EconomyKind::ALL
                .into_iter()
                .filter(|k| k.consumption_per_100_ticks(good) > 0)
                .collect();
            assert!(!makers.is_empty() && !users.is_empty(), "{good}");
            assert!(makers.iter().all(|m| !users.contains(m)), "{good}");
        }
        for (i, (kind, _, _)) in TABLE.iter().enumerate() {
            assert_eq!(EconomyKind::ALL[i], *kind, "TABLE follows ALL");
        }
    }

    #[test]
    fn rest_stocks_make_producers_cheap_and_consumers_dear() {
        let k = EconomyKind::Agricultural;
        assert_eq!(k.rest_stock_units(Good::Food), 4_000);
        assert_eq!(k.rest_stock_units(Good::Electronics), 250);
        assert_eq!(k.rest_stock_units(Good::Ore), 1_500);
        assert_eq!(k.recovery_per_100_ticks(Good::Ore), 15);
    }

    #[test]
    fn sol_is_high_tech_and_the_default_galaxy_has_every_kind_and_a_route_from_home() {
        let g = Galaxy::default_galaxy();
        assert_eq!(g.name(g.home()), "Sol");
        assert_eq!(economy_of(&g, g.home()), EconomyKind::HighTech);
        for kind in EconomyKind::ALL {
            assert!(g.ids().any(|id| economy_of(&g, id) == kind), "no {kind}");
        }
        // A new trader at home finds a neighbour that makes something home uses.
        let home = EconomyKind::HighTech;
        let route = g.neighbours(g.home()).iter().any(|&n| {
            Good::ALL.into_iter().any(|good| {
                economy_of(&g, n).production_per_100_ticks(good) > 0
                    && home.consumption_per_100_ticks(good) > 0
            })
        });
        assert!(route, "no trade route out of Sol");
    }

    #[test]
    fn rates_spread_over_ticks_in_integers() {
        assert_eq!((0..100).map(|t| units_in_tick(250, t)).sum::<u64>(), 250);
        assert_eq!((0..100).map(|t| units_in_tick(7, t)).sum::<u64>(), 7);
        assert_eq!(units_in_tick(7, u64::MAX), 0);
    }

    proptest! {
        #[test]
        fn any_100_ticks_get_exactly_the_rate(
            rate in 0u64..1_000_000, start in 0u64..u64::MAX / 2
        ) {
            let sum: u64 = (start..start + 100).map(|t| units_in_tick(rate, t)).sum();
            prop_assert_eq!(sum, rate);
            prop_assert_eq!(units_between(rate, start, start + 100), rate);
        }
    }
}
