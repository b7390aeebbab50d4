//! The protocol core's pure pieces the simulator drives, until `mesh::protocol` has them: a
//! destination's queue of arrivals, the landing decision, and what recovery settles. Each is
//! the real driver's rule, unchanged (`mesh::shard::landing_tick`, `decide_arrive`,
//! `mesh::recovery::sort_jump`).
//!
//! Pure: no I/O, no clock, no randomness.

use std::collections::BTreeMap;

use mesh::codec::Jump;
use sim::ids::{Tick, Xfer};
use sim::instance::InstanceId;
use sim::system::{Event, SystemState};

/// A destination's committed jumps waiting for their landing tick.
#[derive(Default)]
pub struct Arrivals {
    incoming: BTreeMap<(Tick, InstanceId, Xfer), Jump>,
    queued_until: BTreeMap<InstanceId, Tick>,
}

impl Arrivals {
    pub fn new() -> Arrivals {
        Arrivals::default()
    }

    /// A jump handed over at `now`: Some if it lands at once, else queued (never before an
    /// earlier jump of its origin).
    pub fn handed(&mut self, now: Tick, jump: Jump) -> Option<Jump> {
        let queued = self.queued_until.get(&jump.from).copied();
        let after_earlier = queued.filter(|&at| at > now);
        match (jump.travel_ticks, after_earlier) {
            (0, None) => Some(jump),
            (ticks, earlier) => {
                let at = now.plus(ticks).max(earlier.unwrap_or_default());
                self.queued_until.insert(jump.from, at);
                self.incoming.insert((at, jump.from, jump.xfer), jump);
                None
            }
        }
    }

    /// The next jump due at `now`, in landing order.
    pub fn pop_due(&mut self, now: Tick) -> Option<Jump> {
        let entry = self.incoming.first_entry()?;
        if entry.key().0 > now {
            return None;
        }
        Some(entry.remove())
    }

    pub fn len(&self) -> usize {
        self.incoming.len()
    }

    pub fn jumps(&self) -> impl Iterator<Item = &Jump> + '_ {
        self.incoming.values()
    }
}

/// The `arrive` event of a handed jump, or None if it landed already.
pub fn decide_landing(state: &SystemState, jump: &Jump) -> Option<Event> {
    state.decide_arrive(jump.from, jump.xfer, &jump.player)
}
