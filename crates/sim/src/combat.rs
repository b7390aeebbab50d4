//! Local combat: attacks queued during a tick, resolved at its end, and the wrecks they leave.
//!
//! Rules:
//!
//! - **Simultaneous fire.** Every attack queued in a tick fires in that tick, against hull as
//!   it was when the tick began; damage is summed per target and applied at once, so a ship
//!   destroyed in a tick still fires its own shot, and no name shoots "first".
//! - **One shot per attacker per tick.** If a pilot queued several attacks, the first in
//!   canonical order (smallest target name) whose target is here fires; the rest are refused.
//! - **Damage.** Each shot hits with [`HIT_CHANCE_PERCENT`] and then does a uniform
//!   [`MIN_DAMAGE_POINTS`]`..=`[`MAX_DAMAGE_POINTS`] of hull damage. Draws come from one
//!   generator seeded by (system, tick) (`rng::Rng::for_tick`), taken in canonical order:
//!   attacks sorted by (attacker, target) name. The order attacks arrived in does not matter.
//! - **Destruction.** A ship whose hull reaches 0 is destroyed: its cargo becomes a [`Wreck`]
//!   in the system, which anyone there may loot, first come first served. The kill goes to the
//!   attacker who did the most damage that tick (ties: the smallest name). The pilot respawns
//!   at home with a basic ship ([`Respawn`] says what the caller must do).
//! - **Wreck decay.** Wrecks older than [`WRECK_LIFETIME_TICKS`], and the oldest beyond
//!   [`MAX_WRECKS_PER_SYSTEM`], vanish with their cargo (the rule "wreck decay": goods
//!   destroyed, to be logged).
//!
//! Cost: resolving `a` attacks among `n` ships is O(a log a) for the sort plus O(a) ship
//! lookups (O(a log n) with a B-tree); nothing walks all players, so thousands of ships fight
//! within a tick budget. Both sides' presence (same system, not in a jump) is the caller's
//! lookup: a ship the lookup does not return cannot fight.
//!
//! Decide, then apply, as everywhere in `sim`: [`resolve`] reads ships and returns a
//! [`CombatReport`]; [`apply_outcome`] and [`apply_loot`] change state. Never does I/O, never
//! reads a clock, never draws from anything but the [`Rng`] it is given.

use std::collections::BTreeMap;

use super::apply_error::{ApplyError, RestoreError};
use super::goods::{Cargo, GOOD_COUNT};
use super::rng::Rng;

/// Hull of a basic (starter or respawned) ship, in hull points.
pub const BASIC_SHIP_HULL_POINTS: u32 = 100;

/// What a station charges to mend one hull point, in credits (the rule "hull repair", a
/// credit sink): a full repair of a basic ship from 1 point costs 495 cr, half the starting
/// credits.
pub const REPAIR_PRICE_CR_PER_HULL_POINT: u64 = 5;

/// Chance that a shot hits, in percent.
pub const HIT_CHANCE_PERCENT: u32 = 80;

/// Least hull damage of a hit, in hull points.
pub const MIN_DAMAGE_POINTS: u32 = 8;

/// Most hull damage of a hit, in hull points.
pub const MAX_DAMAGE_POINTS: u32 = 20;

/// The most attacks one system resolves in a tick; the rest (in canonical order) are refused.
/// The shard should refuse to queue more.
pub const MAX_ATTACKS_PER_TICK: usize = 200_000;

/// The most wrecks one system keeps; beyond it the oldest decays.
pub const MAX_WRECKS_PER_SYSTEM: usize = 100_000;

/// How long a wreck stays before it decays, in ticks (10 minutes at 10 Hz).
pub const WRECK_LIFETIME_TICKS: u64 = 6_000;

/// One pilot's attack on another, queued for the end of the tick.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Attack {
    pub attacker: String,
    pub target: String,
}

/// Where [`resolve`] reads ships from: the pilots present in the system and able to fight
/// (not in a jump), with their hull points. `None` for anyone else.
pub trait ShipLookup {
    /// Hull points of `pilot`'s ship, if they are here and can fight.
    fn hull_points(&self, pilot: &str) -> Option<u32>;
}

impl<F: Fn(&str) -> Option<u32>> ShipLookup for F {
    fn hull_points(&self, pilot: &str) -> Option<u32> {
        self(pilot)
    }
}

/// Why a queued attack did not fire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// A pilot cannot attack themselves.
    SelfAttack,
    /// The attacker is not here (or has no hull left).
    AttackerAbsent,
    /// The target is not here (jumped away, or has no hull left).
    TargetAbsent,
    /// The attacker already fired this tick.
    AlreadyFired,
    /// Over [`MAX_ATTACKS_PER_TICK`].
    TooManyAttacks,
}

impl Refusal {
    /// A stable, machine-readable code.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::SelfAttack => "self_attack",
            Refusal::AttackerAbsent => "attacker_absent",
            Refusal::TargetAbsent => "target_absent",
            Refusal::AlreadyFired => "already_fired",
            Refusal::TooManyAttacks => "too_many_attacks",
        }
    }
}

/// One shot fired: `damage_points` 0 is a miss.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shot {
    pub attacker: String,
    pub target: String,
    pub damage_points: u32,
}

/// What a tick of combat did to one ship that was shot at and hit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CombatOutcome {
    pub target: String,
    /// All damage taken this tick, in hull points.
    pub damage_points: u32,
    /// Hull left (0: destroyed).
    pub hull_after: u32,
    /// Who gets the kill, when destroyed.
    pub destroyed_by: Option<String>,
}

/// Everything a tick of combat decided, in canonical order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CombatReport {
    /// Shots fired, sorted by (attacker, target): for telling the pilots.
    pub shots: Vec<Shot>,
    /// Attacks that did not fire, with why, sorted like the shots.
    pub refused: Vec<(Attack, Refusal)>,
    /// Ships hit, sorted by name: what [`apply_outcome`] applies.
    pub outcomes: Vec<CombatOutcome>,
}

/// Damage summed for one target during resolution.
struct Tally<'a> {
    hull_before: u32,
    damage: u32,
    best_damage: u32,
    best_attacker: &'a str,
}

/// Resolves one tick's attacks. Deterministic: the same attacks (in any order), ships and
/// generator state give the same report. O(a log a) in the number of attacks.
pub fn resolve(attacks: &[Attack], ships: &impl ShipLookup, rng: &mut Rng) -> CombatReport {
    let mut order: Vec<&Attack> = attacks.iter().collect();
    order.sort_unstable();
    let mut report = CombatReport::default();
    let mut tallies: BTreeMap<&str, Tally> = BTreeMap::new();
    let mut fired_last: Option<&str> = None;
    for (i, attack) in order.into_iter().enumerate() {
        let (attacker, target) = (attack.attacker.as_str(), attack.target.as_str());
        let alive = |pilot: &str| ships.hull_points(pilot).filter(|&h| h > 0);
        let refusal = if i >= MAX_ATTACKS_PER_TICK {
            Some(Refusal::TooManyAttacks)
        } else if attacker == target {
            Some(Refusal::SelfAttack)
        } else if fired_last == Some(attacker) {
            Some(Refusal::AlreadyFired)
        } else if alive(attacker).is_none() {
            Some(Refusal::AttackerAbsent)
        } else {
            None
        };
        let target_hull = match refusal {
            None => alive(target),
            Some(_) => None,
        };
        let Some(hull_before) = target_hull else {
            let reason = refusal.unwrap_or(Refusal::TargetAbsent);
            report.refused.push((attack.clone(), reason));
            continue;
        };
        fired_last = Some(attacker);
        let damage = if rng.chance_percent(HIT_CHANCE_PERCENT) {
            let d = rng.range_inclusive(MIN_DAMAGE_POINTS.into(), MAX_DAMAGE_POINTS.into());
            d as u32 // at most MAX_DAMAGE_POINTS
        } else {
            0
        };
        report.shots.push(Shot {
            attacker: attacker.to_string(),
            target: target.to_string(),
            damage_points: damage,
        });
        let tally = tallies.entry(target).or_insert(Tally {
            hull_before,
            damage: 0,
            best_damage: 0,
            best_attacker: attacker,
        });
        tally.damage = tally.damage.saturating_add(damage);
        // Attackers come in name order, so `>` keeps the smallest name on ties.
        if damage > tally.best_damage {
            tally.best_damage = damage;
            tally.best_attacker = attacker;
        }
    }
    for (target, t) in tallies.into_iter().filter(|(_, t)| t.damage > 0) {
        let hull_after = t.hull_before.saturating_sub(t.damage);
        report.outcomes.push(CombatOutcome {
            target: target.to_string(),
            damage_points: t.damage,
            hull_after,
            destroyed_by: (hull_after == 0).then(|| t.best_attacker.to_string()),
        });
    }
    report
}

/// What the caller must do for a pilot whose ship was destroyed: take them out of this system
/// and bring them back at the galaxy's home system in a basic ship (hull
/// [`BASIC_SHIP_HULL_POINTS`], an empty hold of `goods::BASIC_SHIP_HOLD_UNITS`, the starting
/// fuel). Their credits stay theirs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Respawn {
    pub pilot: String,
    pub killed_by: String,
    /// The wreck their cargo went into (`None` when the hold was empty).
    pub wreck_id: Option<u64>,
}

/// A destroyed ship's cargo, floating in the system until looted or decayed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wreck {
    /// Whose ship it was.
    pub pilot: String,
    /// What is left in it; never empty (an emptied wreck is removed).
    pub cargo: Cargo,
    /// The tick it was made.
    pub tick: u64,
}

/// The wrecks of one system, by id. Ids rise with the tick a wreck was made, so the oldest
/// is always first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Wrecks {
    next_id: u64,
    by_id: BTreeMap<u64, Wreck>,
}

impl Wrecks {
    /// No wrecks.
    pub fn new() -> Wrecks {
        Wrecks::default()
    }

    /// Wrecks from saved values (a snapshot): `next_id` is the id the next wreck gets.
    /// Checked: ids rising and below `next_id`, ticks not falling, none empty, at most the
    /// limit.
    pub fn from_parts(next_id: u64, wrecks: Vec<(u64, Wreck)>) -> Result<Wrecks, RestoreError> {
        if wrecks.len() > MAX_WRECKS_PER_SYSTEM {
            return Err(RestoreError::TooManyWrecks {
                count: wrecks.len(),
                max: MAX_WRECKS_PER_SYSTEM,
            });
        }
        let mut by_id = BTreeMap::new();
        let mut last: Option<(u64, u64)> = None;
        for (id, w) in wrecks {
            let in_order =
                last.is_none_or(|(last_id, last_tick)| last_id < id && last_tick <= w.tick);
            if id >= next_id || w.cargo.is_empty() || !in_order {
                return Err(RestoreError::WreckOutOfPlace {
                    id,
                    tick: w.tick,
                    cargo: w.cargo,
                });
            }
            last = Some((id, w.tick));
            by_id.insert(id, w);
        }
        Ok(Wrecks { next_id, by_id })
    }

    /// Puts back wreck `id` read from a snapshot, after the ones already restored: checked
    /// like [`Wrecks::from_parts`] (ids rising and below the next id, ticks not falling, not
    /// empty, at most the limit).
    pub fn restore(&mut self, id: u64, wreck: Wreck) -> Result<(), RestoreError> {
        let in_order = self
            .by_id
            .last_key_value()
            .is_none_or(|(&last, w)| last < id && w.tick <= wreck.tick);
        if id >= self.next_id
            || wreck.cargo.is_empty()
            || !in_order
            || self.by_id.len() >= MAX_WRECKS_PER_SYSTEM
        {
            return Err(RestoreError::WreckOutOfPlace {
                id,
                tick: wreck.tick,
                cargo: wreck.cargo,
            });
        }
        self.by_id.insert(id, wreck);
        Ok(())
    }

    /// The id the next wreck gets (for snapshots).
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// The wreck `id`, if it is still there.
    pub fn get(&self, id: u64) -> Option<&Wreck> {
        self.by_id.get(&id)
    }

    /// Every wreck, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &Wreck)> + '_ {
        self.by_id.iter().map(|(&id, w)| (id, w))
    }

    /// How many wrecks there are.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Adds a wreck and returns its id, and the oldest wreck if the system was at
    /// [`MAX_WRECKS_PER_SYSTEM`] (it decays: log its cargo as destroyed).
    fn add(&mut self, wreck: Wreck) -> (u64, Option<Wreck>) {
        assert!(!wreck.cargo.is_empty(), "an empty wreck");
        if let Some((_, newest)) = self.by_id.last_key_value() {
            assert!(newest.tick <= wreck.tick, "wrecks are made in tick order");
        }
        let evicted = if self.by_id.len() >= MAX_WRECKS_PER_SYSTEM {
            self.by_id.pop_first().map(|(_, w)| w)
        } else {
            None
        };
        let id = self.next_id;
        self.next_id += 1;
        self.by_id.insert(id, wreck);
        (id, evicted)
    }

    /// Removes the wrecks at least [`WRECK_LIFETIME_TICKS`] old at tick `now` (the rule
    /// "wreck decay"), oldest first, and returns them. O(decayed log wrecks).
    pub fn expire(&mut self, now: u64) -> Vec<(u64, Wreck)> {
        let mut gone = Vec::new();
        while let Some(entry) = self.by_id.first_entry() {
            if entry.get().tick.saturating_add(WRECK_LIFETIME_TICKS) > now {
                break;
            }
            let id = *entry.key();
            gone.push((id, entry.remove()));
        }
        gone
    }

    /// Units of each good in all the system's wrecks (index order). O(wrecks): for audits.
    pub fn total_units(&self) -> [u64; GOOD_COUNT] {
        let mut sum = [0u64; GOOD_COUNT];
        for w in self.by_id.values() {
            for (good, qty) in w.cargo.iter() {
                sum[good.index()] += u64::from(qty);
            }
        }
        sum
    }
}

/// Applies one [`CombatOutcome`] at tick `tick` to the target's hull and cargo. If the ship is
/// destroyed, its cargo goes into a wreck and the caller must carry out the returned
/// [`Respawn`] (and log any wreck that decayed to make room, returned second). An error means
/// the outcome does not fit the ship (a log disagreeing with its state); nothing changed.
pub fn apply_outcome(
    outcome: &CombatOutcome,
    hull_points: &mut u32,
    cargo: &mut Cargo,
    wrecks: &mut Wrecks,
    tick: u64,
) -> Result<(Option<Respawn>, Option<Wreck>), ApplyError> {
    let expected = hull_points.saturating_sub(outcome.damage_points);
    if expected != outcome.hull_after || (expected == 0) != outcome.destroyed_by.is_some() {
        return Err(ApplyError::HullMismatch {
            target: outcome.target.clone(),
            hull_points: *hull_points,
            damage_points: outcome.damage_points,
            hull_after: outcome.hull_after,
        });
    }
    *hull_points = expected;
    let Some(killer) = &outcome.destroyed_by else {
        return Ok((None, None));
    };
    let dropped = cargo.take_all();
    let (wreck_id, evicted) = if dropped.is_empty() {
        (None, None)
    } else {
        let (id, evicted) = wrecks.add(Wreck {
            pilot: outcome.target.clone(),
            cargo: dropped,
            tick,
        });
        (Some(id), evicted)
    };
    assert!(cargo.is_empty(), "a destroyed ship keeps no cargo");
    assert!(
        wreck_id.is_none_or(|id| wrecks.get(id).map(|w| w.cargo) == Some(dropped)),
        "the wreck holds exactly the dropped cargo"
    );
    let respawn = Respawn {
        pilot: outcome.target.clone(),
        killed_by: killer.clone(),
        wreck_id,
    };
    Ok((Some(respawn), evicted))
}

/// Goods taken from a wreck, decided by [`decide_loot`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LootTake {
    pub wreck_id: u64,
    /// What moves from the wreck to the looter's hold; never empty.
    pub taken: Cargo,
}

/// A loot attempt refused. Nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LootError {
    #[error("no wreck {0} here: it was emptied or decayed; list the wrecks again")]
    NoWreck(u64),
    #[error("your hold is full; sell or jettison cargo first")]
    HoldFull,
}

impl LootError {
    /// A stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            LootError::NoWreck(_) => "no_wreck",
            LootError::HoldFull => "no_cargo_space",
        }
    }
}

/// What a looter with `cargo` and a hold of `hold_capacity_units` takes from wreck `wreck_id`:
/// everything that fits, good by good in index order; the rest stays for the next comer.
pub fn decide_loot(
    wrecks: &Wrecks,
    wreck_id: u64,
    cargo: &Cargo,
    hold_capacity_units: u32,
) -> Result<LootTake, LootError> {
    let wreck = wrecks.get(wreck_id).ok_or(LootError::NoWreck(wreck_id))?;
    let mut free = u64::from(hold_capacity_units).saturating_sub(cargo.hold_used());
    let mut taken = Cargo::new();
    for (good, qty) in wreck.cargo.iter() {
        let per_unit = u64::from(good.hold_units_per_unit());
        let n = u64::from(qty).min(free / per_unit);
        if n > 0 && cargo.get(good).checked_add(n as u32).is_some() {
            taken.add(good, n).map_err(|_| LootError::HoldFull)?;
            free -= n * per_unit;
        }
    }
    if taken.is_empty() {
        return Err(LootError::HoldFull);
    }
    Ok(LootTake { wreck_id, taken })
}

/// Moves a decided loot from the wreck to the looter's hold, all or nothing; an emptied wreck
/// is removed. Asserts that no goods are made or lost.
pub fn apply_loot(
    wrecks: &mut Wrecks,
    cargo: &mut Cargo,
    take: &LootTake,
) -> Result<(), ApplyError> {
    let wreck = wrecks
        .by_id
        .get_mut(&take.wreck_id)
        .ok_or(ApplyError::WreckNotHere {
            wreck: take.wreck_id,
        })?;
    let before = wreck.cargo.total_units() + cargo.total_units();
    let (mut left, mut hold) = (wreck.cargo, *cargo);
    for (good, qty) in take.taken.iter() {
        left.remove(good, qty.into())
            .map_err(ApplyError::LootCargo)?;
        hold.add(good, qty.into()).map_err(ApplyError::LootCargo)?;
    }
    assert_eq!(
        left.total_units() + hold.total_units(),
        before,
        "loot made or lost goods"
    );
    *cargo = hold;
    if left.is_empty() {
        wrecks.by_id.remove(&take.wreck_id);
    } else {
        wreck.cargo = left;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::goods::Good;
    // Explicit, so it wins over proptest's prelude (which exports rand's `Rng` trait).
    use crate::rng::system_seed;
    use crate::rng::Rng;
    use proptest::prelude::*;
    use std::cell::Cell;

    /// Ships of a test system: pilot → (hull, cargo).
    type Fleet = BTreeMap<String, (u32, Cargo)>;

    fn lookup(fleet: &Fleet) -> impl Fn(&str) -> Option<u32> + '_ {
        |p| fleet.get(p).map(|s| s.0)
    }

    fn attack(a: &str, t: &str) -> Attack {
        Attack {
            attacker: a.into(),
            target: t.into(),
        }
    }

    fn cargo_of(items: &[(Good, u64)]) -> Cargo {
        let mut c = Cargo::new();
        for &(g, q) in items {
            c.add(g, q).unwrap();
        }
        c
    }

    /// Applies every outcome; returns the respawns.
    fn apply_all(
        report: &CombatReport,
        fleet: &mut Fleet,
        wrecks: &mut Wrecks,
        t: u64,
    ) -> Vec<Respawn> {
        let mut respawns = Vec::new();
        for o in &report.outcomes {
            let (hull, cargo) = fleet.get_mut(&o.target).unwrap();
            let (r, evicted) = apply_outcome(o, hull, cargo, wrecks, t).unwrap();
            assert!(evicted.is_none());
            respawns.extend(r);
        }
        respawns
    }

    #[test]
    fn a_destroyed_ship_leaves_a_wreck_and_its_pilot_respawns() {
        let mut fleet: Fleet = BTreeMap::new();
        fleet.insert("ann".into(), (100, Cargo::new()));
        fleet.insert(
            "bob".into(),
            (1, cargo_of(&[(Good::Ore, 10), (Good::Food, 3)])),
        );
        let mut wrecks = Wrecks::new();
        let mut tick = 0;
        let respawn = loop {
            let mut rng = Rng::for_tick(system_seed("sol"), tick);
            let report = resolve(&[attack("ann", "bob")], &lookup(&fleet), &mut rng);
            let r = apply_all(&report, &mut fleet, &mut wrecks, tick);
            if let Some(r) = r.into_iter().next() {
                break r;
            }
            tick += 1;
            assert!(tick < 100, "ann never hits");
        };
        assert_eq!(respawn.killed_by, "ann");
        let id = respawn.wreck_id.unwrap();
        assert_eq!(wrecks.get(id).unwrap().cargo.to_string(), "food:3,ore:10");
        assert!(fleet["bob"].1.is_empty());
        // First come first served: a small hold takes what fits, the next looter the rest.
        let mut small = Cargo::new();
        let take = decide_loot(&wrecks, id, &small, 10).unwrap();
        assert_eq!(take.taken.to_string(), "food:3,ore:3");
        apply_loot(&mut wrecks, &mut small, &take).unwrap();
        assert_eq!(wrecks.get(id).unwrap().cargo.to_string(), "ore:7");
        assert_eq!(
            decide_loot(&wrecks, id, &small, 10).unwrap_err().code(),
            "no_cargo_space"
        );
        let mut big = Cargo::new();
        let take = decide_loot(&wrecks, id, &big, 100).unwrap();
        apply_loot(&mut wrecks, &mut big, &take).unwrap();
        assert!(wrecks.is_empty(), "an emptied wreck is gone");
        assert_eq!(
            apply_loot(&mut wrecks, &mut big, &take).map_err(|_| ()),
            Err(())
        );
        assert_eq!(
            decide_loot(&wrecks, id, &big, 100).unwrap_err().code(),
            "no_wreck"
        );
    }

    #[test]
    fn fire_is_simultaneous_and_one_shot_per_attacker() {
        let mut fleet: Fleet = BTreeMap::new();
        for p in ["a", "b", "c"] {
            fleet.insert(p.into(), (1, Cargo::new()));
        }
        let attacks = [
            attack("a", "b"),
            attack("b", "a"),
            attack("a", "c"),
            attack("c", "c"),
            attack("zed", "a"),
            attack("c", "gone"),
        ];
        let mut rng = Rng::from_seed(7);
        let report = resolve(&attacks, &lookup(&fleet), &mut rng);
        let refused: Vec<(&str, &str, &str)> = report
            .refused
            .iter()
            .map(|(a, r)| (a.attacker.as_str(), a.target.as_str(), r.code()))
            .collect();
        assert_eq!(
            refused,
            [
                ("a", "c", "already_fired"),
                ("c", "c", "self_attack"),
                ("c", "gone", "target_absent"),
                ("zed", "a", "attacker_absent"),
            ]
        );
        // b's shot counts even if a destroys b in the same tick.
        assert_eq!(report.shots.len(), 2);
        assert_eq!(report.shots[1].attacker, "b");
    }

    #[test]
    fn wrecks_decay_with_age_and_beyond_the_limit() {
        let mut w = Wrecks::new();
        let c = cargo_of(&[(Good::Water, 1)]);
        let wreck = |tick| Wreck {
            pilot: "x".into(),
            cargo: c,
            tick,
        };
        w.add(wreck(0));
        w.add(wreck(10));
        assert!(w.expire(WRECK_LIFETIME_TICKS - 1).is_empty());
        let gone = w.expire(WRECK_LIFETIME_TICKS);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].0, 0);
        assert_eq!(w.len(), 1);
        assert_eq!(w.total_units()[Good::Water.index()], 1);
        let saved: Vec<(u64, Wreck)> = w.iter().map(|(id, x)| (id, x.clone())).collect();
        assert_eq!(
            Wrecks::from_parts(w.next_id(), saved.clone()),
            Ok(w.clone())
        );
        assert!(
            Wrecks::from_parts(1, saved).is_err(),
            "ids must be below next_id"
        );
    }

    /// 10,000 ships, 10,000 attacks: two lookups per attack at most, nothing per ship pair.
    #[test]
    fn a_ten_thousand_ship_battle_costs_linear_lookups() {
        let n = 10_000;
        let names: Vec<String> = (0..n).map(|i| format!("pilot-{i:05}")).collect();
        let attacks: Vec<Attack> = (0..n)
            .map(|i| attack(&names[i], &names[(i * 7_919 + 1) % n]))
            .collect();
        let calls = Cell::new(0usize);
        let ships = |p: &str| {
            calls.set(calls.get() + 1);
            p.starts_with("pilot-").then_some(BASIC_SHIP_HULL_POINTS)
        };
        let mut rng = Rng::for_tick(system_seed("vega"), 1);
        let report = resolve(&attacks, &ships, &mut rng);
        assert_eq!(report.shots.len() + report.refused.len(), n);
        assert!(calls.get() <= 2 * n, "{} lookups", calls.get());
    }

    fn any_fleet() -> impl Strategy<Value = Fleet> {
        proptest::collection::btree_map(
            "[a-e]{1,2}",
            (0u32..60, proptest::array::uniform8(0u32..50)),
            0..12,
        )
        .prop_map(|m| {
            m.into_iter()
                .map(|(k, (hull, units))| {
                    let items: Vec<(Good, u64)> = Good::ALL
                        .iter()
                        .map(|&g| (g, u64::from(units[g.index()])))
                        .collect();
                    (k, (hull, cargo_of(&items)))
                })
                .collect()
        })
    }

    proptest! {
        /// Same ships, same attacks in any order, same seed: same report. And destruction
        /// moves cargo into wrecks without making or losing any.
        #[test]
        fn resolution_is_deterministic_and_conserves_cargo(
            fleet in any_fleet(),
            pairs in proptest::collection::vec(("[a-e]{1,2}", "[a-e]{1,2}"), 0..40),
            seed: u64,
            tick in 0u64..1_000,
        ) {
            let attacks: Vec<Attack> = pairs.iter().map(|(a, t)| attack(a, t)).collect();
            let mut reversed = attacks.clone();
            reversed.reverse();
            let first = resolve(&attacks, &lookup(&fleet), &mut Rng::for_tick(seed, tick));
            let again = resolve(&reversed, &lookup(&fleet), &mut Rng::for_tick(seed, tick));
            prop_assert_eq!(&first, &again);

            let units = |f: &Fleet, w: &Wrecks| {
                let mut sum = w.total_units();
                for (_, c) in f.values() {
                    for g in Good::ALL { sum[g.index()] += u64::from(c.get(g)); }
                }
                sum
            };
            let mut fleet = fleet;
            let mut wrecks = Wrecks::new();
            let before = units(&fleet, &wrecks);
            let respawns = apply_all(&first, &mut fleet, &mut wrecks, tick);
            prop_assert_eq!(units(&fleet, &wrecks), before);
            for o in &first.outcomes {
                prop_assert_eq!(fleet[&o.target].0, o.hull_after);
            }
            let destroyed: Vec<&str> = first
                .outcomes
                .iter()
                .filter(|o| o.hull_after == 0)
                .map(|o| o.target.as_str())
                .collect();
            let respawned: Vec<&str> = respawns.iter().map(|r| r.pilot.as_str()).collect();
            prop_assert_eq!(destroyed, respawned);
            for (_, w) in wrecks.iter() {
                prop_assert!(!w.cargo.is_empty());
            }
        }
    }
}
