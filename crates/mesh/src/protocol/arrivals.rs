//! A destination's side of the jump protocol: the committed jumps handed to it, queued until
//! their landing tick ([`Arrivals`]), and the landing itself ([`decide_landing`]).
//!
//! Landing is made idempotent by one number per origin (the highest transfer landed from it,
//! the state's `landed_upto`; see docs/PROTOCOL.md), so the jumps of an origin must land in the
//! order of their numbers. They are handed over in that order, but their travel times differ
//! (a respawn's way home, a move with none, or a jump handed over again by recovery and queued
//! for the first tick while a new one from the same origin arrives with no travel time). So a
//! jump never lands before a jump of its origin queued earlier: it waits for that tick, and
//! within a tick the queue lands an origin's jumps by number.
//!
//! Pure: the shard (tokio) and the simulator (`crates/dst`) drive it. Never reads a clock
//! (ticks are given), never applies an event, never does I/O.

use std::collections::BTreeMap;

use sim::ids::{Tick, Xfer};
use sim::instance::InstanceId;
use sim::system::{Event, SystemState};

use super::bugs::{self, Bug};
use crate::codec::Jump;

/// Committed jumps towards one shard, queued by landing tick.
#[derive(Clone, Debug, Default)]
pub struct Arrivals {
    /// By landing tick, then origin and number (the order they land in).
    queue: BTreeMap<(Tick, InstanceId, Xfer), Jump>,
    /// For each origin, the latest landing tick queued: a jump never lands before an earlier
    /// jump of its origin.
    queued_until: BTreeMap<InstanceId, Tick>,
}

impl Arrivals {
    pub fn new() -> Arrivals {
        Arrivals::default()
    }

    /// A committed jump handed over at tick `now`: returned if it lands at once (no travel
    /// time and nothing of its origin still queued), queued for its tick otherwise.
    #[must_use = "a jump returned lands now"]
    pub fn handed(&mut self, now: Tick, jump: Jump) -> Option<Jump> {
        let mut queued = self.queued_until.get(&jump.from).copied();
        if bugs::on(Bug::LandBeforeEarlier) {
            queued = None;
        }
        match landing_tick(now, jump.travel_ticks, queued) {
            None => Some(jump),
            Some(at) => {
                self.queued_until.insert(jump.from, at);
                self.queue.insert((at, jump.from, jump.xfer), jump);
                None
            }
        }
    }

    /// The next jump due to land at tick `now` (its tick is `now` or earlier), in landing
    /// order; None when nothing more is due.
    pub fn pop_due(&mut self, now: Tick) -> Option<Jump> {
        let entry = self.queue.first_entry()?;
        (entry.key().0 <= now).then(|| entry.remove())
    }

    /// Jump `xfer` of `from` if it is queued here, with its landing tick.
    pub fn find(&self, from: InstanceId, xfer: Xfer) -> Option<(Tick, &Jump)> {
        self.queue
            .iter()
            .find(|((_, f, x), _)| *f == from && *x == xfer)
            .map(|(&(at, _, _), jump)| (at, jump))
    }

    /// How many jumps are queued.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The queued jumps, in landing order.
    pub fn jumps(&self) -> impl Iterator<Item = &Jump> + '_ {
        self.queue.values()
    }
}

/// The tick a jump handed over at `now` lands at (None: now), given its travel time and the
/// latest landing tick queued for its origin (see the module's comment).
pub fn landing_tick(now: Tick, travel_ticks: u64, queued: Option<Tick>) -> Option<Tick> {
    let after_earlier = queued.filter(|&at| at > now);
    match (travel_ticks, after_earlier) {
        (0, None) => None,
        (ticks, earlier) => Some(now.plus(ticks).max(earlier.unwrap_or_default())),
    }
}

/// The landing of a committed `jump` at its destination `state`: its `arrive` event (the
/// player as they left, one version on), or None if it landed already (a jump handed over
/// twice, by a restart: seeing it again changes nothing).
pub fn decide_landing(state: &SystemState, jump: &Jump) -> Option<Event> {
    if bugs::on(Bug::LandTwice) {
        let mut player = jump.player.clone();
        player.version = player.version.next();
        return Some(Event::Arrive {
            from: jump.from,
            xfer: jump.xfer,
            player,
        });
    }
    state.decide_arrive(jump.from, jump.xfer, &jump.player)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sim::galaxy::Galaxy;
    use sim::player::Player;
    use store::seq::Seq;

    fn jump(from: InstanceId, xfer: u64, travel_ticks: u64) -> Jump {
        let g = Galaxy::default_galaxy();
        Jump {
            from,
            xfer: Xfer(xfer),
            to: InstanceId::primary(g.neighbours(g.home())[0]),
            t: Tick(0),
            travel_ticks,
            player: Player::starter(&format!("p{xfer}"), &sim::rules::Rules::default()),
            tseq: Seq(xfer),
        }
    }

    #[test]
    fn a_jump_never_lands_before_an_earlier_one_of_its_origin() {
        // Nothing of its origin queued: no travel lands at once, travel waits.
        assert_eq!(landing_tick(Tick(10), 0, None), None);
        assert_eq!(landing_tick(Tick(10), 3, None), Some(Tick(13)));
        // Queued ticks already past (landed) do not hold anything back.
        assert_eq!(landing_tick(Tick(10), 0, Some(Tick(10))), None);
        assert_eq!(landing_tick(Tick(10), 3, Some(Tick(7))), Some(Tick(13)));
        // An earlier jump still queued: wait for its tick (or later).
        assert_eq!(landing_tick(Tick(10), 0, Some(Tick(12))), Some(Tick(12)));
        assert_eq!(landing_tick(Tick(10), 1, Some(Tick(15))), Some(Tick(15)));
        assert_eq!(landing_tick(Tick(10), 8, Some(Tick(15))), Some(Tick(18)));
    }

    /// A recovered jump queued for the next tick, then a newer instant one of the same origin:
    /// the instant one waits, and they come out in number order.
    #[test]
    fn the_queue_lands_an_origins_jumps_in_number_order() {
        let g = Galaxy::default_galaxy();
        let sol = InstanceId::primary(g.home());
        let mut a = Arrivals::new();
        assert!(a.handed(Tick(5), jump(sol, 1, 1)).is_none(), "travel waits");
        assert!(
            a.handed(Tick(5), jump(sol, 2, 0)).is_none(),
            "waits for jump 1"
        );
        assert_eq!(a.len(), 2);
        assert_eq!(a.find(sol, Xfer(2)).map(|(at, _)| at), Some(Tick(6)));
        assert!(a.pop_due(Tick(5)).is_none(), "nothing due before tick 6");
        let order: Vec<u64> = std::iter::from_fn(|| a.pop_due(Tick(6)))
            .map(|j| j.xfer.0)
            .collect();
        assert_eq!(order, [1, 2]);
        assert!(a.is_empty());
        // Nothing queued any more: an instant jump lands at once.
        assert!(a.handed(Tick(6), jump(sol, 3, 0)).is_some());
    }

    #[test]
    fn a_jump_lands_once() {
        let g = Galaxy::default_galaxy();
        let sol = InstanceId::primary(g.home());
        let mut state = SystemState::new(&g, g.neighbours(g.home())[0]);
        let j = jump(sol, 1, 0);
        let event = decide_landing(&state, &j).expect("lands the first time");
        state.apply(Tick(0), &event).expect("applies");
        assert_eq!(decide_landing(&state, &j), None, "seen twice: nothing");
    }

    proptest::proptest! {
        /// Whatever the travel times and the ticks jumps are handed over at (in number order
        /// per origin, as the pipelines hand them), each origin's jumps land in number order,
        /// each once, none before its travel time is over.
        #[test]
        fn every_origin_lands_in_number_order(
            handed in proptest::collection::vec((0u16..3, 0u64..4, 0u64..3), 1..60)
        ) {
            let g = Galaxy::default_galaxy();
            let origins: Vec<InstanceId> =
                g.ids().take(3).map(InstanceId::primary).collect();
            let mut a = Arrivals::new();
            let mut next = [0u64; 3];
            let mut landed: Vec<(InstanceId, u64, Tick)> = Vec::new();
            let mut due_at = BTreeMap::new();
            let mut now = Tick(0);
            for (origin, travel, wait) in handed {
                next[origin as usize] += 1;
                let j = jump(origins[origin as usize], next[origin as usize], travel);
                due_at.insert((j.from, j.xfer), now.plus(travel));
                if let Some(j) = a.handed(now, j) {
                    landed.push((j.from, j.xfer.0, now));
                }
                for _ in 0..wait {
                    now = now.next();
                    while let Some(j) = a.pop_due(now) {
                        landed.push((j.from, j.xfer.0, now));
                    }
                }
            }
            for _ in 0..10 {
                now = now.next();
                while let Some(j) = a.pop_due(now) {
                    landed.push((j.from, j.xfer.0, now));
                }
            }
            proptest::prop_assert!(a.is_empty(), "everything lands within 10 ticks");
            proptest::prop_assert_eq!(landed.len(), due_at.len(), "each jump lands once");
            let mut last = BTreeMap::new();
            for (from, xfer, at) in landed {
                let before = last.insert(from, xfer).unwrap_or(0);
                proptest::prop_assert!(xfer > before, "{from:?}: {xfer} landed after {before}");
                proptest::prop_assert!(at >= due_at[&(from, Xfer(xfer))], "landed early");
            }
        }
    }
}
