//! The jumps this API committed and when they should land, so `GET /v1/me` and the event
//! stream can say "lands in 2.3 s" (the mesh knows where a player is going, not when they
//! left).
//!
//! A hint for people, never an authority: the landing itself is what the mesh reports.
//! Never grows past one entry per player, and forgets jumps that landed long ago.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sim::player::Player;

/// A jump due to land longer ago than this is forgotten at the next sweep.
pub const FORGET_AFTER_S: u64 = 60;
/// Entries kept before the first sweep (then: twice what the last sweep left).
const FIRST_SWEEP_AT: usize = 1024;

/// One committed jump, as the API saw it.
#[derive(Clone, Debug)]
pub struct Flight {
    /// `<origin slug>:<number>`, as in the logs.
    pub xfer: String,
    /// When the landing is due.
    pub lands_at: Instant,
    /// The player as they travel (fuel already burnt).
    pub player: Player,
}

impl Flight {
    /// Milliseconds until the landing is due (0 once due).
    pub fn remaining_ms(&self) -> u64 {
        let left = self.lands_at.saturating_duration_since(Instant::now());
        u64::try_from(left.as_millis()).unwrap_or(u64::MAX)
    }
}

/// The last jump of each player.
#[derive(Default)]
pub struct Flights {
    /// std mutex: held for a map operation only, never across an await.
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_player: HashMap<String, Flight>,
    /// Sweep when the map reaches this size (amortized: twice the size after a sweep).
    sweep_at: usize,
}

impl Flights {
    pub fn departed(&self, name: &str, xfer: String, travel_ms: u64, player: Player) {
        let flight = Flight {
            xfer,
            lands_at: Instant::now() + Duration::from_millis(travel_ms),
            player,
        };
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.by_player.insert(name.to_string(), flight);
        if inner.by_player.len() >= inner.sweep_at.max(FIRST_SWEEP_AT) {
            let now = Instant::now();
            let forget = Duration::from_secs(FORGET_AFTER_S);
            inner.by_player.retain(|_, f| f.lands_at + forget > now);
            inner.sweep_at = inner.by_player.len() * 2;
        }
    }

    /// The player's jump `xfer`, if this API committed it.
    pub fn get(&self, name: &str, xfer: &str) -> Option<Flight> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_player
            .get(name)
            .filter(|f| f.xfer == xfer)
            .cloned()
    }

    /// Forgets a player's jump (they landed).
    pub fn landed(&self, name: &str) {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_player
            .remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn player(name: &str) -> Player {
        Player::starter(name, &sim::rules::Rules::default())
    }

    #[test]
    fn a_flight_is_found_by_its_transfer_and_forgotten_at_landing() {
        let f = Flights::default();
        f.departed("ann", "sol:1".into(), 5_000, player("ann"));
        let got = f.get("ann", "sol:1").unwrap();
        assert!(got.remaining_ms() > 4_000 && got.remaining_ms() <= 5_000);
        assert!(f.get("ann", "sol:2").is_none(), "another jump of hers");
        f.landed("ann");
        assert!(f.get("ann", "sol:1").is_none());
    }

    #[test]
    fn old_flights_are_swept() {
        let f = Flights::default();
        for i in 0..FIRST_SWEEP_AT * 3 {
            // Landed long ago: in the past by more than FORGET_AFTER_S.
            let name = format!("p{i}");
            f.departed(&name, "sol:1".into(), 0, player(&name));
            let mut inner = f.inner.lock().unwrap();
            let long_ago = Instant::now().checked_sub(Duration::from_secs(FORGET_AFTER_S + 1));
            if let (Some(fl), Some(t)) = (inner.by_player.get_mut(&name), long_ago) {
                fl.lands_at = t;
            }
        }
        assert!(f.inner.lock().unwrap().by_player.len() < FIRST_SWEEP_AT);
    }
}
