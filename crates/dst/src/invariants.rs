//! The invariants the simulator checks after every step and every recovery, each a named
//! function that says what is wrong, naming the player or the jump.
//!
//! - [`one_place`]: a player is in exactly one place (one system's instance, or one jump
//!   prepared or on its way); an acknowledged join is never nowhere.
//! - [`acks_survive`]: after a restart, every player's version is at least the one last
//!   acknowledged to them, and the logs hold that version's event.
//! - [`conservation`]: credits and goods everywhere (players, jumps, escrows, markets) equal
//!   what the rules created and destroyed by the events applied ([`crate::world::Ledger`]).
//! - jumps: a jump lands once, after the earlier ones of its origin ([`lands_in_order`]),
//!   never once void ([`dropped_only_if_landed`] for one taken for landed); an
//!   acknowledged jump is never voided or aborted (checked where it happens: `world`,
//!   `recovery`).
//!
//! Never changes the world; a violation is returned (or, where a step cannot go on, panics
//! with it, and the runner catches the panic as the seed's failure).

use std::collections::{BTreeMap, BTreeSet};

use mesh::codec::Jump;
use sim::goods::GOOD_COUNT;
use sim::ids::{Version, Xfer};
use sim::instance::InstanceId;

use crate::world::{Ledger, World};

/// A broken invariant: what, and about whom.
#[derive(Clone, Debug)]
pub struct Violation {
    pub invariant: &'static str,
    pub player: Option<String>,
    pub jump: Option<(InstanceId, Xfer)>,
    pub what: String,
}

/// The panic payload prefix of a violation found inside a step.
pub const VIOLATION_PANIC: &str = "VIOLATION";

impl Violation {
    pub fn player(invariant: &'static str, player: &str, what: String) -> Violation {
        Violation {
            invariant,
            player: Some(player.to_string()),
            jump: None,
            what,
        }
    }

    pub fn jump(player: &str, jump: (InstanceId, Xfer), what: String) -> Violation {
        Violation {
            invariant: "jumps",
            player: Some(player.to_string()),
            jump: Some(jump),
            what,
        }
    }

    /// Stops the step with this violation (the runner reports it).
    pub fn fail(self) -> ! {
        fail_now(self)
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.invariant, self.what)
    }
}

/// Panics with `v`, carried whole to the runner.
pub fn fail_now(v: Violation) -> ! {
    std::panic::panic_any(v)
}

/// Every invariant that holds between any two steps.
pub fn check_step(w: &World) -> Result<(), Violation> {
    one_place(w)?;
    conservation(w)?;
    Ok(())
}

/// The places of each player: (how many, and what they are; the names only built for a
/// violation's message).
fn places(w: &World, describe: bool) -> BTreeMap<&str, (u32, Vec<String>)> {
    let mut places: BTreeMap<&str, (u32, Vec<String>)> = BTreeMap::new();
    for (at, s) in &w.shards {
        for name in s.state.players.keys() {
            let e = places.entry(name).or_default();
            e.0 += 1;
            if describe {
                e.1.push(at.slug(&w.galaxy));
            }
        }
    }
    for ((from, xfer), (player, to)) in w.jumps() {
        if w.in_flight(from, xfer, to) {
            let e = places.entry(&player.name).or_default();
            e.0 += 1;
            if describe {
                e.1.push(format!("jump {}", w.jump_text(from, xfer)));
            }
        }
    }
    places
}

/// A player is in exactly one place: one instance's players, or one jump not yet landed
/// (prepared, in a pipeline, on a channel, queued at its destination, or committed in the
/// transition log, counted once). A player acknowledged anything is somewhere.
pub fn one_place(w: &World) -> Result<(), Violation> {
    let counted = places(w, false);
    if let Some((name, _)) = counted.iter().find(|(_, (n, _))| *n != 1) {
        let (n, at) = &places(w, true)[name];
        return Err(Violation::player(
            "one_place",
            name,
            format!("player {name} is in {n} places: {}", at.join(", ")),
        ));
    }
    for name in w.acks.keys() {
        if !counted.contains_key(name.as_str()) {
            return Err(Violation::player(
                "one_place",
                name,
                format!("player {name} was acknowledged an action and is nowhere"),
            ));
        }
    }
    Ok(())
}

/// Credits and goods held everywhere equal the ledger of the rules applied.
pub fn conservation(w: &World) -> Result<(), Violation> {
    let held = holdings(w);
    if held.credits != w.ledger.credits {
        return Err(Violation {
            invariant: "conservation",
            player: None,
            jump: None,
            what: format!(
                "credits held {} but the rules applied say {} ({:+})",
                held.credits,
                w.ledger.credits,
                held.credits - w.ledger.credits
            ),
        });
    }
    for g in 0..GOOD_COUNT {
        if held.goods[g] != w.ledger.goods[g] {
            let good = sim::goods::Good::ALL[g].name();
            return Err(Violation {
                invariant: "conservation",
                player: None,
                jump: None,
                what: format!(
                    "{good}: {} units held but the rules applied say {}",
                    held.goods[g], w.ledger.goods[g]
                ),
            });
        }
    }
    Ok(())
}

/// What the world holds: players (in systems and in jumps, once each), escrows, markets; an
/// escrow whose trade the primary's market already took is counted as taken.
pub fn holdings(w: &World) -> Ledger {
    let mut h = Ledger::default();
    let add_player = |h: &mut Ledger, p: &sim::player::Player| {
        h.credits += i128::from(p.credits);
        for (good, qty) in p.cargo.iter() {
            h.goods[good.index()] += i128::from(qty);
        }
    };
    for s in w.shards.values() {
        for p in s.state.players.values() {
            add_player(&mut h, p);
        }
        h.credits += i128::from(s.state.market.till_cr());
        for (sum, n) in h.goods.iter_mut().zip(s.state.market.stocks()) {
            *sum += i128::from(n);
        }
        for (sum, n) in h.goods.iter_mut().zip(s.state.wrecks.total_units()) {
            *sum += i128::from(n);
        }
        for e in s.state.escrows.values() {
            h.credits += i128::from(e.held_cr);
            h.goods[e.order.good.index()] += i128::from(e.held_qty);
        }
    }
    for ((from, xfer), (player, to)) in w.jumps() {
        if w.in_flight(from, xfer, to) {
            add_player(&mut h, player);
        }
    }
    // A trade the primary's market took while its escrow is still open is in both places.
    for (at, s) in &w.shards {
        if !at.is_primary() {
            continue;
        }
        for ((n, escrow), o) in &s.state.remote_trades {
            let inst = InstanceId::new(at.system, *n);
            let open = w
                .shards
                .get(&inst)
                .is_some_and(|i| i.state.escrows.contains_key(escrow));
            if !open {
                continue;
            }
            let (cr, qty) = (i128::from(o.trade.total_cr), i128::from(o.trade.qty));
            let fee = i128::from(o.trade.fee_cr);
            let g = o.trade.good.index();
            // The fee left the game when the market took the trade.
            match o.trade.side {
                sim::market::Side::Buy => {
                    h.credits -= cr + fee;
                    h.goods[g] += qty;
                }
                sim::market::Side::Sell => {
                    h.credits += cr - fee;
                    h.goods[g] -= qty;
                }
            }
        }
    }
    h
}

/// After a restart: every acknowledged action is still there: the player's version is at least
/// the one acknowledged, and the logs hold the event of that version.
pub fn acks_survive(
    w: &World,
    log_versions: &BTreeMap<String, BTreeSet<Version>>,
) -> Result<(), Violation> {
    let mut now: BTreeMap<&str, Version> = BTreeMap::new();
    for s in w.shards.values() {
        for p in s.state.players.values() {
            now.insert(&p.name, p.version);
        }
    }
    for ((from, xfer), (player, to)) in w.jumps() {
        if w.in_flight(from, xfer, to) {
            now.insert(&player.name, player.version);
        }
    }
    for (name, ack) in &w.acks {
        let Some(&v) = now.get(name.as_str()) else {
            return Err(Violation::player(
                "acks_survive",
                name,
                format!("player {name} was acknowledged '{}' at version {} (step {}) and is gone after the restart", ack.what, ack.version, ack.step),
            ));
        };
        if v < ack.version {
            return Err(Violation::player(
                "acks_survive",
                name,
                format!("player {name} is at version {v} after the restart, but '{}' at version {} was acknowledged (step {})", ack.what, ack.version, ack.step),
            ));
        }
        if !log_versions
            .get(name)
            .is_some_and(|s| s.contains(&ack.version))
        {
            return Err(Violation::player(
                "acks_survive",
                name,
                format!("the logs hold no event of player {name} at version {}, acknowledged '{}' (step {})", ack.version, ack.what, ack.step),
            ));
        }
    }
    Ok(())
}

/// A jump dropped as "landed already" did land (its arrive was applied since the last
/// replay, or is in the logs replayed): otherwise its player is lost.
pub fn dropped_only_if_landed(w: &World, jump: &Jump) -> Result<(), Violation> {
    let key = (jump.from, jump.xfer);
    if w.landed.contains(&key) {
        return Ok(());
    }
    let text = w.jump_text(jump.from, jump.xfer);
    Err(Violation::jump(
        &jump.player.name,
        key,
        format!(
            "jump {text} of {} was dropped as landed already at {}, but it never landed (a later jump of its origin landed first)",
            jump.player.name,
            jump.to.slug(&w.galaxy)
        ),
    ))
}

/// A jump lands after every earlier committed jump of its origin towards the same
/// destination (landing is idempotent by the highest number landed per origin, so one landing
/// early would make the earlier ones look landed).
pub fn lands_in_order(w: &World, jump: &Jump) -> Result<(), Violation> {
    let earlier = w
        .committed
        .range((jump.from, Xfer(0))..(jump.from, jump.xfer))
        .find(|(_, j)| j.to == jump.to && w.in_flight(j.from, j.xfer, j.to));
    let Some((_, e)) = earlier else {
        return Ok(());
    };
    let (text, before) = (
        w.jump_text(jump.from, jump.xfer),
        w.jump_text(e.from, e.xfer),
    );
    Err(Violation::jump(
        &jump.player.name,
        (jump.from, jump.xfer),
        format!(
            "jump {text} of {} lands at {} before the earlier jump {before} of {}",
            jump.player.name,
            jump.to.slug(&w.galaxy),
            e.player.name
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sim::instance::InstanceId;
    use sim::player::Player;

    /// A world whose home holds `pilot0`, as its join left it.
    fn world_with_a_player() -> (World, InstanceId) {
        let mut w = World::new(1, true);
        let home = InstanceId::primary(w.galaxy.home());
        let event = w.shards[&home]
            .state
            .decide_join(&w.galaxy, &w.rules, "pilot0", "k")
            .expect("joins");
        w.record(home, event).expect("records");
        assert!(check_step(&w).is_ok(), "a join breaks nothing");
        (w, home)
    }

    #[test]
    fn a_player_in_two_systems_is_reported_by_name() {
        let (mut w, home) = world_with_a_player();
        let other = InstanceId::primary(w.galaxy.neighbours(home.system)[0]);
        let p = w.shards[&home].state.players["pilot0"].clone();
        w.shards
            .get_mut(&other)
            .unwrap()
            .state
            .players
            .insert(p.name.clone(), p);
        let v = one_place(&w).expect_err("two places");
        assert_eq!(v.player.as_deref(), Some("pilot0"));
        assert!(v.what.contains("is in 2 places"), "{}", v.what);
    }

    #[test]
    fn an_acknowledged_player_who_vanished_is_reported() {
        let (mut w, home) = world_with_a_player();
        w.reply("pilot0", Some((sim::ids::Version(1), "join")));
        w.shards.get_mut(&home).unwrap().state.players.clear();
        let v = one_place(&w).expect_err("nowhere");
        assert!(v.what.contains("is nowhere"), "{}", v.what);
    }

    #[test]
    fn credits_no_rule_made_are_reported() {
        let (mut w, home) = world_with_a_player();
        let p: &mut Player = w
            .shards
            .get_mut(&home)
            .unwrap()
            .state
            .players
            .get_mut("pilot0")
            .unwrap();
        p.credits += 5;
        let v = conservation(&w).expect_err("credits from nowhere");
        assert!(v.what.contains("(+5)"), "{}", v.what);
    }
}
