//! One star system's state, the events that change it, and the rules that decide them.
//!
//! Two steps, always: `decide_*` looks at the state and a request and returns the [`Event`] to
//! record (or a [`Reject`] that changes nothing); [`SystemState::apply`] changes the state by
//! an event. The shard logs the event and applies it; recovery applies the logged events again.
//! Because `apply` is a pure function of the state and the event, replaying a log gives the
//! same state, bit for bit ([`SystemState::state_hash`]).
//!
//! Never does I/O, never reads a clock (time is the tick number `t` the shard stamps on each
//! event), never draws an unseeded random number.

use std::collections::BTreeMap;

use super::galaxy::{Galaxy, SystemId};
use super::player::{validate_name, Player};
use super::rules::Rules;

/// The most players one system holds (in it, or departing from it).
pub const MAX_PLAYERS_PER_SYSTEM: usize = 1_000_000;

/// An event, as recorded in a system's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A new player appears (home system only) with the starting ship. `key` is the hash of
    /// their access token, opaque to the rules (the network layer checks it).
    Join { player: Player, key: String },
    /// Fuel bought at the station: `cost` credits leave the game (the rule "fuel purchase").
    Refuel {
        player: String,
        units: u32,
        cost: u64,
    },
    /// A jump is prepared: the player leaves the system (fuel burnt) and waits for the
    /// transition log to take the jump, the commit point.
    Depart {
        xfer: u64,
        player: String,
        to: SystemId,
        fuel: u32,
    },
    /// The transition log holds jump `xfer`: the player is gone from here for good.
    DepartDone { xfer: u64 },
    /// Jump `xfer` of `player` never reached the transition log: the player is back, fuel
    /// refunded.
    DepartAbort { xfer: u64, player: String },
    /// Jump `xfer` from system `from` lands here, with the player's state as it left.
    Arrive {
        from: SystemId,
        xfer: u64,
        player: Player,
    },
}

impl Event {
    /// The player this event is about, if any: every such event is a step of their history
    /// (it raises their version by one).
    pub fn player(&self) -> Option<&str> {
        match self {
            Event::Join { player, .. } | Event::Arrive { player, .. } => Some(&player.name),
            Event::Refuel { player, .. }
            | Event::Depart { player, .. }
            | Event::DepartAbort { player, .. } => Some(player),
            Event::DepartDone { .. } => None,
        }
    }
}

/// A request refused by the rules. Nothing is recorded; the message says why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    #[error("no player '{player}' in {system}")]
    NotHere { player: String, system: String },
    #[error("the name '{0}' is taken")]
    NameTaken(String),
    #[error("bad name: {0}")]
    BadName(String),
    #[error("new players join at {home}, not {system}")]
    NotHome { home: String, system: String },
    #[error("no jump lane from {from} to {to}; jumps go to a neighbour (see `mltrader systems`)")]
    NoLane { from: String, to: String },
    #[error("you are already in {0}")]
    SameSystem(String),
    #[error("not enough fuel: the jump to {to} needs {need}, the tank has {have}; refuel first")]
    NoFuel { to: String, need: u32, have: u32 },
    #[error("the tank is full")]
    TankFull,
    #[error("not enough credits: {need} needed, {have} on hand")]
    NoCredits { need: u64, have: u64 },
    #[error("{0} is full ({MAX_PLAYERS_PER_SYSTEM} players)")]
    Full(String),
}

impl Reject {
    /// A stable, machine-readable code for each kind of refusal.
    pub fn code(&self) -> &'static str {
        match self {
            Reject::NotHere { .. } => "not_here",
            Reject::NameTaken(_) => "name_taken",
            Reject::BadName(_) => "bad_name",
            Reject::NotHome { .. } => "not_home",
            Reject::NoLane { .. } => "no_lane",
            Reject::SameSystem(_) => "same_system",
            Reject::NoFuel { .. } => "no_fuel",
            Reject::TankFull => "tank_full",
            Reject::NoCredits { .. } => "no_credits",
            Reject::Full(_) => "system_full",
        }
    }
}

/// A player waiting for the transition log to take their jump.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Departing {
    pub player: Player,
    pub to: SystemId,
    pub fuel: u32,
}

/// The whole state of one star system. Deterministic iteration everywhere (B-trees), so the
/// hash and any rule that walks players give the same answer on replay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemState {
    pub id: SystemId,
    /// Tick of the last event applied.
    pub tick: u64,
    /// Players in the system, by name.
    pub players: BTreeMap<String, Player>,
    /// Jumps prepared here and not yet known committed or aborted, by transfer number.
    pub departing: BTreeMap<u64, Departing>,
    /// Transfer number of the next jump prepared here.
    pub next_xfer: u64,
    /// For each system of origin, the highest transfer number that has landed here. Jumps from
    /// one origin land in the order of their numbers, so this is enough to make landing
    /// idempotent.
    pub landed_upto: BTreeMap<SystemId, u64>,
    /// Every name ever taken, with its access key hash (home system only): names are unique
    /// in the galaxy.
    pub names: BTreeMap<String, String>,
}

/// A logged event that cannot apply to the state: the log and the state disagree.
pub type ApplyError = String;

impl SystemState {
    pub fn new(id: SystemId) -> SystemState {
        SystemState {
            id,
            tick: 0,
            players: BTreeMap::new(),
            departing: BTreeMap::new(),
            next_xfer: 1,
            landed_upto: BTreeMap::new(),
            names: BTreeMap::new(),
        }
    }

    /// Players in the system plus those departing from it.
    pub fn population(&self) -> usize {
        self.players.len() + self.departing.len()
    }

    fn here(&self, galaxy: &Galaxy, name: &str) -> Result<&Player, Reject> {
        self.players.get(name).ok_or_else(|| Reject::NotHere {
            player: name.to_string(),
            system: galaxy.name(self.id).to_string(),
        })
    }

    /// A new player at home with the starting ship.
    pub fn decide_join(
        &self,
        galaxy: &Galaxy,
        rules: &Rules,
        name: &str,
        key: &str,
    ) -> Result<Event, Reject> {
        if self.id != galaxy.home() {
            return Err(Reject::NotHome {
                home: galaxy.name(galaxy.home()).to_string(),
                system: galaxy.name(self.id).to_string(),
            });
        }
        validate_name(name).map_err(|e| Reject::BadName(e.to_string()))?;
        if self.names.contains_key(name) {
            return Err(Reject::NameTaken(name.to_string()));
        }
        if self.population() >= MAX_PLAYERS_PER_SYSTEM {
            return Err(Reject::Full(galaxy.name(self.id).to_string()));
        }
        Ok(Event::Join {
            player: Player {
                name: name.to_string(),
                credits: rules.starting_credits,
                fuel: rules.starting_fuel,
                fuel_capacity: rules.fuel_capacity,
                version: 1,
            },
            key: key.to_string(),
        })
    }

    /// Fills the tank (or buys `max_units`, whichever is less) at the station's price.
    pub fn decide_refuel(
        &self,
        galaxy: &Galaxy,
        rules: &Rules,
        name: &str,
        max_units: Option<u32>,
    ) -> Result<Event, Reject> {
        let p = self.here(galaxy, name)?;
        let room = p.fuel_capacity - p.fuel;
        let units = max_units.map_or(room, |m| m.min(room));
        if units == 0 {
            return Err(Reject::TankFull);
        }
        let cost = u64::from(units) * rules.fuel_price_cr;
        if cost > p.credits {
            return Err(Reject::NoCredits {
                need: cost,
                have: p.credits,
            });
        }
        Ok(Event::Refuel {
            player: name.to_string(),
            units,
            cost,
        })
    }

    /// Prepares a jump to a neighbouring system.
    pub fn decide_depart(
        &self,
        galaxy: &Galaxy,
        name: &str,
        to: SystemId,
    ) -> Result<Event, Reject> {
        let p = self.here(galaxy, name)?;
        if to == self.id {
            return Err(Reject::SameSystem(galaxy.name(to).to_string()));
        }
        if !galaxy.has_lane(self.id, to) {
            return Err(Reject::NoLane {
                from: galaxy.name(self.id).to_string(),
                to: galaxy.name(to).to_string(),
            });
        }
        let need = galaxy.fuel_cost(self.id, to);
        if p.fuel < need {
            return Err(Reject::NoFuel {
                to: galaxy.name(to).to_string(),
                need,
                have: p.fuel,
            });
        }
        Ok(Event::Depart {
            xfer: self.next_xfer,
            player: name.to_string(),
            to,
            fuel: need,
        })
    }

    /// Lands a jump, unless it already landed (then `None`: seeing a transfer twice changes
    /// nothing).
    pub fn decide_arrive(&self, from: SystemId, xfer: u64, player: &Player) -> Option<Event> {
        if self.landed_upto.get(&from).is_some_and(|&n| xfer <= n) {
            return None;
        }
        let mut player = player.clone();
        player.version += 1;
        Some(Event::Arrive { from, xfer, player })
    }

    /// Applies an event stamped with tick `t`. Events decided on this state always apply; an
    /// error means a log disagrees with the state it is replayed onto.
    pub fn apply(&mut self, t: u64, event: &Event) -> Result<(), ApplyError> {
        if t < self.tick {
            return Err(format!("tick {t} is before the state's tick {}", self.tick));
        }
        match event {
            Event::Join { player, key } => {
                if self
                    .names
                    .insert(player.name.clone(), key.clone())
                    .is_some()
                {
                    return Err(format!("name '{}' joined twice", player.name));
                }
                if self.players.contains_key(&player.name) {
                    return Err(format!("'{}' is already here", player.name));
                }
                self.players.insert(player.name.clone(), player.clone());
            }
            Event::Refuel {
                player,
                units,
                cost,
            } => {
                let p = self
                    .players
                    .get_mut(player)
                    .ok_or_else(|| format!("refuel for '{player}', who is not here"))?;
                if p.credits < *cost || p.fuel + units > p.fuel_capacity {
                    return Err(format!(
                        "refuel of {units} for {cost} impossible for '{player}'"
                    ));
                }
                p.credits -= cost;
                p.fuel += units;
                p.version += 1;
            }
            Event::Depart {
                xfer,
                player,
                to,
                fuel,
            } => {
                if *xfer != self.next_xfer {
                    return Err(format!("transfer {xfer} where {} was next", self.next_xfer));
                }
                let mut p = self
                    .players
                    .remove(player)
                    .ok_or_else(|| format!("departure of '{player}', who is not here"))?;
                if p.fuel < *fuel {
                    return Err(format!("'{player}' departs with too little fuel"));
                }
                p.fuel -= fuel;
                p.version += 1;
                self.next_xfer += 1;
                self.departing.insert(
                    *xfer,
                    Departing {
                        player: p,
                        to: *to,
                        fuel: *fuel,
                    },
                );
            }
            Event::DepartDone { xfer } => {
                self.departing
                    .remove(xfer)
                    .ok_or_else(|| format!("transfer {xfer} is not departing"))?;
            }
            Event::DepartAbort { xfer, player } => {
                match self.departing.get(xfer) {
                    Some(d) if d.player.name == *player => {}
                    Some(_) => return Err(format!("transfer {xfer} is not '{player}''s")),
                    None => return Err(format!("transfer {xfer} is not departing")),
                }
                let d = self
                    .departing
                    .remove(xfer)
                    .ok_or_else(|| format!("transfer {xfer} is not departing"))?;
                let mut p = d.player;
                p.fuel += d.fuel;
                p.version += 1;
                if self.players.insert(p.name.clone(), p).is_some() {
                    return Err(format!("aborted transfer {xfer}: player is here twice"));
                }
            }
            Event::Arrive { from, xfer, player } => {
                let upto = self.landed_upto.entry(*from).or_insert(0);
                if *xfer <= *upto {
                    return Err(format!(
                        "transfer {xfer} from system {} landed twice",
                        from.0
                    ));
                }
                *upto = *xfer;
                if self.players.contains_key(&player.name) {
                    return Err(format!("'{}' lands but is already here", player.name));
                }
                self.players.insert(player.name.clone(), player.clone());
            }
        }
        self.tick = t;
        Ok(())
    }

    /// The version of the player `event` is about, once it has applied to this state.
    pub fn version_after(&self, event: &Event) -> Option<u64> {
        match event {
            Event::Join { player, .. } | Event::Arrive { player, .. } => Some(player.version),
            Event::Refuel { player, .. } | Event::DepartAbort { player, .. } => {
                self.players.get(player).map(|p| p.version)
            }
            Event::Depart { xfer, .. } => self.departing.get(xfer).map(|d| d.player.version),
            Event::DepartDone { .. } => None,
        }
    }

    /// A hash of the whole state, stable across runs, machines and versions of this program as
    /// long as the state means the same. Two states with equal hashes are equal (up to xxh3).
    pub fn state_hash(&self) -> u64 {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        {
            let mut put = |bytes: &[u8]| {
                h.update(&(bytes.len() as u64).to_le_bytes());
                h.update(bytes);
            };
            put(&self.id.0.to_le_bytes());
            put(&self.tick.to_le_bytes());
            put(&self.next_xfer.to_le_bytes());
            let put_player = |put: &mut dyn FnMut(&[u8]), p: &Player| {
                put(p.name.as_bytes());
                put(&p.credits.to_le_bytes());
                put(&p.fuel.to_le_bytes());
                put(&p.fuel_capacity.to_le_bytes());
                put(&p.version.to_le_bytes());
            };
            put(&(self.players.len() as u64).to_le_bytes());
            for p in self.players.values() {
                put_player(&mut put, p);
            }
            put(&(self.departing.len() as u64).to_le_bytes());
            for (x, d) in &self.departing {
                put(&x.to_le_bytes());
                put(&d.to.0.to_le_bytes());
                put(&d.fuel.to_le_bytes());
                put_player(&mut put, &d.player);
            }
            for (s, n) in &self.landed_upto {
                put(&s.0.to_le_bytes());
                put(&n.to_le_bytes());
            }
            put(&(self.names.len() as u64).to_le_bytes());
            for (n, k) in &self.names {
                put(n.as_bytes());
                put(k.as_bytes());
            }
        }
        h.digest()
    }

    /// Credits held by everyone in this system, departing ones included.
    pub fn credits_total(&self) -> u128 {
        self.players
            .values()
            .chain(self.departing.values().map(|d| &d.player))
            .map(|p| u128::from(p.credits))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn setup() -> (Galaxy, Rules, SystemState) {
        let g = Galaxy::default_galaxy();
        let s = SystemState::new(g.home());
        (g, Rules::default(), s)
    }

    fn join(g: &Galaxy, r: &Rules, s: &mut SystemState, name: &str) {
        let e = s.decide_join(g, r, name, "k").unwrap();
        s.apply(s.tick, &e).unwrap();
    }

    #[test]
    fn a_jump_moves_the_player_out_and_burns_fuel() {
        let (g, r, mut s) = setup();
        join(&g, &r, &mut s, "ann");
        let to = g.lookup("Alpha Centauri").unwrap();
        let e = s.decide_depart(&g, "ann", to).unwrap();
        s.apply(1, &e).unwrap();
        assert!(!s.players.contains_key("ann"));
        assert_eq!(s.population(), 1, "departing still counts here");
        s.apply(2, &Event::DepartDone { xfer: 1 }).unwrap();
        assert_eq!(s.population(), 0);
    }

    #[test]
    fn an_aborted_jump_gives_everything_back() {
        let (g, r, mut s) = setup();
        join(&g, &r, &mut s, "ann");
        let before = s.players["ann"].clone();
        let to = g.lookup("Barnard's Star").unwrap();
        let e = s.decide_depart(&g, "ann", to).unwrap();
        s.apply(1, &e).unwrap();
        let abort = Event::DepartAbort {
            xfer: 1,
            player: "ann".into(),
        };
        s.apply(1, &abort).unwrap();
        let after = &s.players["ann"];
        assert_eq!(after.fuel, before.fuel);
        assert_eq!(after.credits, before.credits);
        assert_eq!(after.version, before.version + 2);
    }

    #[test]
    fn refusals_change_nothing_and_say_why() {
        let (g, r, mut s) = setup();
        join(&g, &r, &mut s, "ann");
        let far = g
            .ids()
            .find(|&id| id != g.home() && !g.has_lane(g.home(), id))
            .unwrap();
        let err = s.decide_depart(&g, "ann", far).unwrap_err();
        assert_eq!(err.code(), "no_lane");
        assert_eq!(
            s.decide_join(&g, &r, "ann", "k").unwrap_err().code(),
            "name_taken"
        );
        assert_eq!(
            s.decide_depart(&g, "bob", far).unwrap_err().code(),
            "not_here"
        );
        s.players.get_mut("ann").unwrap().fuel = 0;
        let near = g.neighbours(g.home())[0];
        let err = s.decide_depart(&g, "ann", near).unwrap_err();
        assert!(err.to_string().contains("refuel"), "{err}");
    }

    #[test]
    fn landing_twice_is_a_no_op() {
        let (g, r, _) = setup();
        let ac = g.lookup("Alpha Centauri").unwrap();
        let mut b = SystemState::new(ac);
        let p = Player {
            name: "ann".into(),
            credits: r.starting_credits,
            fuel: 3,
            fuel_capacity: r.fuel_capacity,
            version: 2,
        };
        let e = b.decide_arrive(g.home(), 7, &p).unwrap();
        b.apply(5, &e).unwrap();
        assert_eq!(b.decide_arrive(g.home(), 7, &p), None);
        assert_eq!(b.decide_arrive(g.home(), 3, &p), None);
        assert!(
            b.apply(6, &e).is_err(),
            "replaying a landing twice is refused"
        );
    }

    proptest! {
        /// Any sequence of requests keeps credits and fuel accounted for, and replaying the
        /// decided events onto a fresh state gives the same hash.
        #[test]
        fn replay_reproduces_the_state_and_credits_are_conserved(
            ops in proptest::collection::vec((0u8..5, 0usize..6, 0usize..40), 1..200)
        ) {
            let (g, r, mut s) = setup();
            let names = ["a", "b", "c", "d", "e", "f"];
            let mut log = Vec::new();
            let mut spent = 0u64;
            let mut held = 0u64;
            for (t, (op, who, target)) in ops.into_iter().enumerate() {
                let name = names[who];
                let decided = match op {
                    0 => s.decide_join(&g, &r, name, "k"),
                    1 => s.decide_refuel(&g, &r, name, Some(target as u32)),
                    2 => s.decide_depart(&g, name, SystemId((target % g.len()) as u16)),
                    3 => match s.departing.keys().next() {
                        Some(&x) => Ok(Event::DepartDone { xfer: x }),
                        None => continue,
                    },
                    _ => match s.departing.keys().next() {
                        Some(&x) => Ok(Event::DepartAbort {
                            xfer: x,
                            player: s.departing[&x].player.name.clone(),
                        }),
                        None => continue,
                    },
                };
                if let Ok(e) = decided {
                    match &e {
                        Event::Join { player, .. } => held += player.credits,
                        Event::Refuel { cost, .. } => spent += cost,
                        _ => {}
                    }
                    let departed: u64 = match &e {
                        Event::DepartDone { xfer } => s.departing[xfer].player.credits,
                        _ => 0,
                    };
                    s.apply(t as u64, &e).unwrap();
                    held -= departed;
                    log.push((t as u64, e));
                }
            }
            prop_assert_eq!(s.credits_total(), u128::from(held - spent));
            let mut replayed = SystemState::new(g.home());
            for (t, e) in &log {
                replayed.apply(*t, e).unwrap();
            }
            prop_assert_eq!(replayed.state_hash(), s.state_hash());
            prop_assert_eq!(replayed, s);
        }
    }
}
