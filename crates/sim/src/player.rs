//! A player and their ship: the state that lives in exactly one place at a time (a system, or a
//! jump in flight) and travels whole inside a transfer record.
//!
//! Never does I/O; never reads a clock.

use serde::Serialize;

use super::combat::BASIC_SHIP_HULL_POINTS;
use super::goods::{Cargo, BASIC_SHIP_HOLD_UNITS};
use super::ids::Version;
use super::rules::Rules;

pub use super::names::{validate_name, NameError, MAX_NAME_CHARS};

/// One player: pilot and ship. Cloned into a transfer record at departure; nothing of it is
/// looked up in the system of departure afterwards.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Player {
    pub name: String,
    /// Credits on hand. Never negative (asserted where it changes).
    pub credits: u64,
    /// Fuel units in the tank; a jump burns `Galaxy::fuel_cost` of them.
    pub fuel: u32,
    /// Tank size: refuelling stops here.
    pub fuel_capacity: u32,
    /// Hull points left; 0 is a ship shot down this tick, destroyed by the next event about
    /// it. Combat damage does not raise the version (it is not a step of custody: credits,
    /// cargo and place do not change); destruction does.
    pub hull: u32,
    /// Hold size, in hold units (`Good::hold_units_per_unit`).
    pub hold: u32,
    /// Goods on board.
    #[serde(serialize_with = "cargo_as_map")]
    pub cargo: Cargo,
    /// Player version: how many events have touched this player. It rises by one with every
    /// event about them, whichever log it is in, so the events of one player, gathered from all
    /// logs and sorted by it, are their history; a gap or a repeat is a lost or duplicated
    /// player, which `mltrader check` reports.
    pub version: Version,
}

impl Player {
    /// A new pilot in the starter ship (the rule "starting grant": `rules.starting_credits`).
    pub fn starter(name: &str, rules: &Rules) -> Player {
        Player {
            name: name.to_string(),
            credits: rules.starting_credits,
            fuel: rules.starting_fuel,
            fuel_capacity: rules.fuel_capacity,
            hull: BASIC_SHIP_HULL_POINTS,
            hold: BASIC_SHIP_HOLD_UNITS,
            cargo: Cargo::new(),
            version: Version(1),
        }
    }

    /// The pilot after their ship was destroyed: a basic ship with an empty hold and a full
    /// tank (the rule "respawn"), their credits kept.
    pub fn respawned(&self) -> Player {
        Player {
            name: self.name.clone(),
            credits: self.credits,
            fuel: self.fuel_capacity,
            fuel_capacity: self.fuel_capacity,
            hull: BASIC_SHIP_HULL_POINTS,
            hold: BASIC_SHIP_HOLD_UNITS,
            cargo: Cargo::new(),
            version: self.version.next(),
        }
    }

    /// Hold units free.
    pub fn hold_free(&self) -> u64 {
        u64::from(self.hold).saturating_sub(self.cargo.hold_used())
    }
}

/// A cargo as a JSON object of the goods on board: `{"ore": 10}`.
fn cargo_as_map<S: serde::Serializer>(cargo: &Cargo, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(None)?;
    for (good, qty) in cargo.iter() {
        m.serialize_entry(good.name(), &qty)?;
    }
    m.end()
}
