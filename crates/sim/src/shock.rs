//! Market shocks: seeded events that move a system's prices for a while (a shortage, a demand
//! boom, a bumper crop, a mining strike, a blockade after a battle), and how each bends the
//! economy's rest levels and rates while it lasts.
//!
//! A shock is drawn by [`draw`] from the system's own seeded generator
//! (`Rng::for_tick(seed ^ SHOCK_SEED_SALT, tick)`) inside the economy step, recorded in the
//! log like every event (`shock`), and applied by replay as logged. It changes no stock and no
//! credit by itself: it moves the level a market's stock rests at ([`rest_permille`]) and how
//! fast it gets there ([`rate_permille`]), so prices drift toward a new level and back when it
//! ends (`until`).
//!
//! Never does I/O, never reads a clock, never draws from anything but the generator it is
//! given.

use std::fmt;

use crate::economy::{EconomyKind, Role};
use crate::goods::Good;
use crate::rng::Rng;

/// Mixed into the system's seed for shock draws, so they are unrelated to combat's.
pub const SHOCK_SEED_SALT: u64 = 0x73686f_636b5f31; // "shock_1"
/// Expected shocks per system per 100,000 ticks by default (about one every 8 minutes at
/// 10 Hz; `Rules::shocks_per_100k_ticks`).
pub const SHOCKS_PER_100K_TICKS: u64 = 20;
/// ... and this many times more often while a wreck younger than [`BLOCKADE_AFTER_TICKS`] lies
/// in the system: a battle draws a blockade.
pub const BATTLE_SHOCK_FACTOR: u64 = 10;
/// How recent a wreck must be for the system to count as just fought over, in ticks.
pub const BLOCKADE_AFTER_TICKS: u64 = 600;
/// The fewest and most ticks a shock lasts (2 to 6 game hours of 600 ticks).
pub const SHOCK_MIN_TICKS: u64 = 1_200;
pub const SHOCK_MAX_TICKS: u64 = 3_600;
/// The most shocks a system has at once.
pub const MAX_SHOCKS_PER_SYSTEM: usize = 3;

/// What kind of shock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ShockKind {
    /// The good runs short: its stock rests at a quarter of the usual level (dear).
    Shortage,
    /// Demand booms: the stock rests at 40% and is used twice as fast (dear, and it drains).
    Boom,
    /// A bumper crop or a glut: the stock rests at two and a half times the usual (cheap).
    Glut,
    /// The miners strike: ore rests at a fifth of the usual level (dear ore, and dearer
    /// metals and fuel downstream).
    MiningStrike,
    /// A blockade after a battle: every good the system makes rests at half its level.
    Blockade,
}

impl ShockKind {
    /// Every kind, in a fixed order.
    pub const ALL: [ShockKind; 5] = [
        ShockKind::Shortage,
        ShockKind::Boom,
        ShockKind::Glut,
        ShockKind::MiningStrike,
        ShockKind::Blockade,
    ];

    /// The stable name, for logs and the API.
    pub fn name(self) -> &'static str {
        match self {
            ShockKind::Shortage => "shortage",
            ShockKind::Boom => "boom",
            ShockKind::Glut => "glut",
            ShockKind::MiningStrike => "mining_strike",
            ShockKind::Blockade => "blockade",
        }
    }

    /// The kind named `name`.
    pub fn parse(name: &str) -> Option<ShockKind> {
        ShockKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl fmt::Display for ShockKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One shock: `kind` on `good` (every good the system makes, for a blockade) until tick
/// `until` (exclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shock {
    pub kind: ShockKind,
    pub good: Option<Good>,
    pub until: u64,
}

impl Shock {
    /// Whether it bends `good` in a system of `kind` at tick `t`.
    pub fn covers(&self, kind: EconomyKind, good: Good, t: u64) -> bool {
        t < self.until
            && match self.good {
                Some(g) => g == good,
                None => matches!(kind.role(good), Role::Produces { .. }),
            }
    }

    /// What it multiplies a covered good's rest level by, in per-mille.
    pub fn rest_permille(&self) -> u64 {
        match self.kind {
            ShockKind::Shortage => 250,
            ShockKind::Boom => 400,
            ShockKind::Glut => 2_500,
            ShockKind::MiningStrike => 200,
            ShockKind::Blockade => 500,
        }
    }

    /// What it multiplies a covered good's rate of production or use by, in per-mille.
    pub fn rate_permille(&self) -> u64 {
        match self.kind {
            ShockKind::Boom => 2_000,
            _ => 1_000,
        }
    }
}

/// The product of the rest multipliers of `shocks` covering `good` at `t`, in per-mille.
pub fn rest_permille(shocks: &[Shock], kind: EconomyKind, good: Good, t: u64) -> u64 {
    shocks
        .iter()
        .filter(|s| s.covers(kind, good, t))
        .fold(1_000, |m, s| m * s.rest_permille() / 1_000)
}

/// The product of the rate multipliers of `shocks` covering `good` at `t`, in per-mille.
pub fn rate_permille(shocks: &[Shock], kind: EconomyKind, good: Good, t: u64) -> u64 {
    shocks
        .iter()
        .filter(|s| s.covers(kind, good, t))
        .fold(1_000, |m, s| m * s.rate_permille() / 1_000)
}

/// The shock (if any) a system of `kind` with system seed `seed` draws in the economy step
/// over ticks `from..to` at `per_100k_ticks` shocks per 100,000 ticks, holding `active` (all it
/// holds, ended or not), and `fought`: a
/// wreck younger than [`BLOCKADE_AFTER_TICKS`] lies there. Deterministic: the same inputs
/// draw the same shock. At most one per step; none while [`MAX_SHOCKS_PER_SYSTEM`] run or
/// when the drawn good already has one.
pub fn draw(
    seed: u64,
    kind: EconomyKind,
    (from, to): (u64, u64),
    per_100k_ticks: u64,
    active: &[Shock],
    fought: bool,
) -> Option<Shock> {
    assert!(from <= to, "shock step {from}..{to} runs backwards");
    if active.len() >= MAX_SHOCKS_PER_SYSTEM || to == from {
        return None;
    }
    let mut rng = Rng::for_tick(seed ^ SHOCK_SEED_SALT, to);
    let factor = if fought { BATTLE_SHOCK_FACTOR } else { 1 };
    // The chance over the step's ticks, per 100,000 (capped at certainty).
    let chance = ((to - from) * per_100k_ticks * factor).min(100_000);
    if rng.below(100_000) >= chance {
        return None;
    }
    let produces_ore = matches!(kind.role(Good::Ore), Role::Produces { .. });
    let shock_kind = if fought {
        ShockKind::Blockade
    } else {
        match rng.below(4) {
            0 => ShockKind::Shortage,
            1 => ShockKind::Boom,
            2 => ShockKind::Glut,
            _ if produces_ore => ShockKind::MiningStrike,
            _ => ShockKind::Shortage,
        }
    };
    let good = match shock_kind {
        ShockKind::Blockade => None,
        ShockKind::MiningStrike => Some(Good::Ore),
        _ => Some(Good::ALL[rng.below(Good::ALL.len() as u64) as usize]),
    };
    let until = to + rng.range_inclusive(SHOCK_MIN_TICKS, SHOCK_MAX_TICKS);
    let drawn = Shock {
        kind: shock_kind,
        good,
        until,
    };
    (!clashes(active, &drawn)).then_some(drawn)
}

/// Whether `new` may not begin beside `active` (the shocks a system holds, ended or not
/// until its next economy step drops them): one on the same good, or a blockade (every good
/// the system makes) beside any other. `draw` and the state's apply both ask this, so a drawn
/// shock always applies.
pub fn clashes(active: &[Shock], new: &Shock) -> bool {
    active
        .iter()
        .any(|s| s.good == new.good || s.good.is_none() || new.good.is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_seeded_and_about_as_often_as_the_rate_says() {
        let kind = EconomyKind::Mining;
        let mut n = 0;
        let mut kinds = std::collections::BTreeSet::new();
        for step in 0..100_000u64 {
            let (from, to) = (step * 10, step * 10 + 10);
            let a = draw(7, kind, (from, to), SHOCKS_PER_100K_TICKS, &[], false);
            assert_eq!(
                a,
                draw(7, kind, (from, to), SHOCKS_PER_100K_TICKS, &[], false),
                "deterministic"
            );
            if let Some(s) = a {
                n += 1;
                kinds.insert(s.kind);
                assert!((to + SHOCK_MIN_TICKS..=to + SHOCK_MAX_TICKS).contains(&s.until));
            }
        }
        // 1,000,000 ticks at 20 per 100,000: about 200 (some draws clash with none: all run).
        assert!((140..=260).contains(&n), "{n} shocks");
        assert!(kinds.contains(&ShockKind::MiningStrike) && kinds.contains(&ShockKind::Glut));
        assert!(
            !kinds.contains(&ShockKind::Blockade),
            "a blockade needs a battle"
        );
    }

    #[test]
    fn a_battle_draws_blockades_and_a_full_system_draws_nothing() {
        let blockades = (0..10_000u64)
            .filter_map(|s| {
                draw(
                    3,
                    EconomyKind::Industrial,
                    (s * 10, s * 10 + 10),
                    SHOCKS_PER_100K_TICKS,
                    &[],
                    true,
                )
            })
            .filter(|s| s.kind == ShockKind::Blockade && s.good.is_none())
            .count();
        assert!(blockades > 100, "{blockades}");
        let full = [Shock {
            kind: ShockKind::Glut,
            good: Some(Good::Food),
            until: u64::MAX,
        }; MAX_SHOCKS_PER_SYSTEM];
        assert!((0..10_000u64).all(|s| draw(
            3,
            EconomyKind::Industrial,
            (s, s + 10),
            SHOCKS_PER_100K_TICKS,
            &full,
            true
        )
        .is_none()));
    }

    #[test]
    fn multipliers_cover_their_good_until_they_end() {
        let s = [Shock {
            kind: ShockKind::Blockade,
            good: None,
            until: 100,
        }];
        let k = EconomyKind::Mining;
        assert_eq!(rest_permille(&s, k, Good::Ore, 99), 500);
        assert_eq!(rest_permille(&s, k, Good::Ore, 100), 1_000, "ended");
        assert_eq!(
            rest_permille(&s, k, Good::Food, 0),
            1_000,
            "mining uses food"
        );
    }
}
