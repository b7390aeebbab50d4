//! The tunable numbers of the game, in one place, with their units.
//!
//! Pure data; never does I/O.

use serde::{Deserialize, Serialize};

/// Game-rule settings a galaxy runs with. Every shard of one galaxy must use the same rules,
/// or replay would differ.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rules {
    /// Credits a new player starts with (the rule "starting grant").
    pub starting_credits: u64,
    /// Fuel a new ship starts with.
    pub starting_fuel: u32,
    /// Tank size of the starter ship.
    pub fuel_capacity: u32,
    /// Price of one fuel unit at any station, in credits (the rule "fuel purchase").
    pub fuel_price_cr: u64,
    /// Jump travel time: ticks per light year (10 at 10 Hz is one second per light year).
    pub ticks_per_ly: u32,
    /// Travel time home of a pilot whose ship was destroyed, in ticks (the rule "respawn").
    pub respawn_ticks: u64,
    /// A shard takes an economy step (production, consumption, till reversion, wreck decay)
    /// every this many ticks, and logs what it made and used.
    pub economy_every_ticks: u64,
    /// Expected market shocks per system per 100,000 ticks (`shock::draw`; 0: none). Drawn
    /// by the shard and logged, so replay does not depend on it.
    #[serde(default = "default_shocks")]
    pub shocks_per_100k_ticks: u64,
}

fn default_shocks() -> u64 {
    crate::shock::SHOCKS_PER_100K_TICKS
}

impl Default for Rules {
    fn default() -> Rules {
        Rules {
            starting_credits: 1_000,
            starting_fuel: 40,
            fuel_capacity: 40,
            fuel_price_cr: 2,
            ticks_per_ly: 10,
            respawn_ticks: 30,
            economy_every_ticks: 10,
            shocks_per_100k_ticks: crate::shock::SHOCKS_PER_100K_TICKS,
        }
    }
}
