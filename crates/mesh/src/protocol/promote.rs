//! A surviving region taking over a lost region's star systems from its copy (issue 20,
//! decision 5, docs/PROTOCOL.md "Across regions"), as pure decisions:
//!
//! - [`promoted_epoch`]: the epoch the promoted systems' new home starts at. Not "one above
//!   the highest epoch the copy shows": the lost region may have elected owners after the
//!   copy's last message (the simulator found this), and such an owner, coming back, would
//!   hold an epoch as high as the new one and pass the fence. An epoch is a generation (the
//!   home's, counted by promotions) above a lease revision: a promotion starts a new
//!   generation, above every epoch the lost region could ever have issued;
//! - [`reconcile`]: what the promoted system's state (read from the copy) must record before
//!   it serves, given the jumps from it that the survivor's own pair subjects hold: a jump the
//!   copy has no `depart` for is a committed departure (the player left: apply it, never serve
//!   him twice), and its transfer number is used up (never reused: the destination's
//!   `landed_upto` would drop a new jump of that number);
//! - [`to_republish`]: the survivor's committed jumps towards promoted systems that the copy's
//!   pair subjects lack (they were stored in the lost region after the copy's last message):
//!   published again, never lost;
//! - [`Loss`]: the recovery point and what was lost, per system: exact when the lost region's
//!   stream can be read ([`Loss::exact`]), otherwise a bound as of the last contact
//!   ([`Loss::as_of_contact`]).
//!
//! Pure: the simulator (`crates/dst`, the regions world) drives it, the serving code will.
//! Never does I/O, never reads a clock, never names a subject or a region's domain.

use std::collections::{BTreeMap, BTreeSet};

use sim::galaxy::SystemId;
use sim::ids::Xfer;
use sim::instance::InstanceId;
use sim::player::Player;
use sim::system::{Event, SystemState};

use super::bugs::{self, Bug};
use crate::codec::Jump;

/// Bits of an epoch below its generation: the lease revisions of one home generation. A
/// region's KV would need 2^40 (about 10^12) lease revisions to reach the next generation.
pub const EPOCH_GENERATION_SHIFT: u32 = 40;

/// The most promotions an epoch can count (generations above 0): 2^24.
pub const GENERATIONS_MAX: u64 = (u64::MAX >> EPOCH_GENERATION_SHIFT) - 1;

/// The home generation an epoch belongs to.
pub fn generation_of(epoch: u64) -> u64 {
    epoch >> EPOCH_GENERATION_SHIFT
}

/// The first epoch of the new home of a system promoted out of a region whose epochs for it
/// are of generation `lost_generation` (the highest generation the copy shows, or the
/// home's as `mlt_homes` records it) and whose copy shows at most `copy_max_epoch`.
///
/// Above every epoch of the lost generation, however many owners the lost region elected
/// after the copy's last message: an old owner coming back is fenced by any record of the new
/// home. Asserts that the copy's epochs are of the lost generation or an older one.
pub fn promoted_epoch(lost_generation: u64, copy_max_epoch: u64) -> u64 {
    assert!(
        generation_of(copy_max_epoch) <= lost_generation,
        "the copy shows epoch {copy_max_epoch} of generation {}, above the lost home's {lost_generation}",
        generation_of(copy_max_epoch)
    );
    if bugs::on(Bug::PromoteEpochAboveCopy) {
        return copy_max_epoch + 1;
    }
    assert!(
        lost_generation < GENERATIONS_MAX,
        "{GENERATIONS_MAX} promotions: no generation left"
    );
    let epoch = (lost_generation + 1) << EPOCH_GENERATION_SHIFT;
    assert!(epoch > copy_max_epoch);
    epoch
}

/// A departure [`reconcile`] applies: the jump the survivor holds, and the player as the copy
/// had them (None: the copy does not have them here; their join or arrival was lost).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Departure {
    pub jump: Jump,
    pub copy_player: Option<Player>,
}

impl Departure {
    /// Credits the copy's player held beyond the jump's: what records after the copy's last
    /// message changed (fuel bought, trades) and the jump carried. Negative when they gained.
    pub fn credits_changed_in_lost_records(&self) -> i128 {
        let copy = self
            .copy_player
            .as_ref()
            .map_or(0, |p| i128::from(p.credits));
        match &self.copy_player {
            Some(_) => copy - i128::from(self.jump.player.credits),
            None => -i128::from(self.jump.player.credits),
        }
    }
}

/// What a promoted system records before it serves ([`reconcile`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Events to append to its log, in order, at the state's tick.
    pub events: Vec<Event>,
    /// The committed departures they apply, in transfer order.
    pub departures: Vec<Departure>,
}

/// Reconciles system `state` (as replayed from the copy) with `jumps`: every jump from it the
/// survivor's pair subjects hold (any order, duplicates allowed), and `arriving`: the jumps
/// towards it that the promotion will hand it (on the copy's pair subjects, and the
/// survivor's to publish again).
///
/// A jump whose number the copy has used (below its next transfer number) has its `depart`
/// in the copy: nothing to do. Any other is a departure committed in the lost region after the
/// copy's last message: its player left. In number order, the events: `depart.void` of the
/// number before it when numbers were skipped (used by records lost with the lost region:
/// never reused); then, when the copy does not have the player here but one of `arriving`
/// carries them unlanded, their landing (lost with the region: the player came and left),
/// with every earlier unlanded jump of the same origin (landings are in order per origin);
/// then `depart` (no fuel: the jump carries the player as they left) and `depart.done` (the
/// jump is on its pair subject) when the player is here, or `depart.void` of its number when
/// they are not (their join was lost; the jump alone carries them).
///
/// Panics if an event does not apply to the state (a bug of this function).
pub fn reconcile(state: &SystemState, jumps: &[Jump], arriving: &[Jump]) -> Reconciled {
    let mut out = Reconciled::default();
    if bugs::on(Bug::PromoteWithoutReconcile) {
        return out;
    }
    let mut state = state.clone();
    let here = InstanceId::primary(state.id);
    let mut by_number: BTreeMap<Xfer, &Jump> = BTreeMap::new();
    for jump in jumps {
        assert_eq!(jump.from, here, "a jump from another system given to reconcile");
        by_number.entry(jump.xfer).or_insert(jump);
    }
    let mut towards: BTreeMap<(InstanceId, Xfer), &Jump> = BTreeMap::new();
    for jump in arriving {
        assert_eq!(jump.to.system, state.id, "a jump to another system given to reconcile");
        towards.entry((jump.from, jump.xfer)).or_insert(jump);
    }
    let t = state.tick;
    for (&xfer, &jump) in by_number.range(state.next_xfer..) {
        if xfer.0 > state.next_xfer.0 {
            apply(&mut state, t, &mut out, Event::DepartVoid { xfer: Xfer(xfer.0 - 1) });
        }
        let name = &jump.player.name;
        if !state.players.contains_key(name) {
            land_on_the_way(&mut state, t, &mut out, &towards, name);
        }
        let copy_player = state.players.get(name).cloned();
        if copy_player.is_some() {
            let depart = Event::Depart {
                xfer,
                player: name.clone(),
                to: jump.to,
                fuel: 0,
            };
            apply(&mut state, t, &mut out, depart);
            apply(&mut state, t, &mut out, Event::DepartDone { xfer });
        } else {
            apply(&mut state, t, &mut out, Event::DepartVoid { xfer });
        }
        out.departures.push(Departure {
            jump: jump.clone(),
            copy_player,
        });
    }
    assert!(by_number.keys().all(|&x| x < state.next_xfer));
    out
}

/// Lands the unlanded jump of `towards` that carries `name`, if any, after every earlier
/// unlanded jump of its origin.
fn land_on_the_way(
    state: &mut SystemState,
    t: sim::ids::Tick,
    out: &mut Reconciled,
    towards: &BTreeMap<(InstanceId, Xfer), &Jump>,
    name: &str,
) {
    let unlanded = |s: &SystemState, j: &Jump| s.landed_upto.get(&j.from).is_none_or(|&u| j.xfer > u);
    let Some(carrying) = towards
        .values()
        .find(|j| j.player.name == name && unlanded(state, j))
        .map(|j| (j.from, j.xfer))
    else {
        return;
    };
    let (from, upto) = carrying;
    let earlier: Vec<&Jump> = towards
        .range((from, Xfer(0))..=(from, upto))
        .map(|(_, j)| *j)
        .filter(|j| unlanded(state, j))
        .collect();
    for j in earlier {
        let arrive = Event::Arrive {
            from: j.from,
            xfer: j.xfer,
            player: j.player.clone(),
        };
        apply(state, t, out, arrive);
    }
}

fn apply(state: &mut SystemState, t: sim::ids::Tick, out: &mut Reconciled, event: Event) {
    state
        .apply(t, &event)
        .unwrap_or_else(|e| panic!("BUG: a reconcile event does not apply: {event:?}: {e}"));
    out.events.push(event);
}

/// The survivor's committed jumps towards promoted systems to publish again: of `departs`
/// (every jump whose `depart` is in a survivor's log and not aborted, towards a promoted
/// system), those the copy's pair subjects lack (`copied`: the jumps on them, by origin and
/// number) and that the copy's destination state has not landed (`landed_upto`: the promoted
/// systems' highest number landed per origin, as the copy has them). In origin and number
/// order, so that each pair subject gets them in order.
pub fn to_republish(
    departs: &[Jump],
    copied: &BTreeSet<(InstanceId, Xfer)>,
    landed_upto: &BTreeMap<SystemId, BTreeMap<InstanceId, Xfer>>,
) -> Vec<Jump> {
    if bugs::on(Bug::PromoteWithoutReconcile) {
        return Vec::new();
    }
    let mut out: BTreeMap<(InstanceId, Xfer), Jump> = BTreeMap::new();
    for jump in departs {
        let key = (jump.from, jump.xfer);
        let landed = landed_upto
            .get(&jump.to.system)
            .and_then(|l| l.get(&jump.from))
            .is_some_and(|&upto| upto >= jump.xfer);
        if copied.contains(&key) || landed {
            continue;
        }
        out.entry(key).or_insert_with(|| jump.clone());
    }
    out.into_values().collect()
}

/// The recovery point of a promotion and what it lost: the lost region's messages after the
/// copy's last (`after_seq`, a sequence of the lost region's stream).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Loss<K: Ord> {
    /// The lost region's stream was read: exactly these messages were lost, per system.
    Exact {
        after_seq: u64,
        per_system: BTreeMap<K, Vec<u64>>,
    },
    /// The lost region's stream could not be read: at most `records` messages after
    /// `after_seq`, as of the last contact (`as_of`, in the caller's unit of time), which saw
    /// the stream's last at `last_seen`. Messages stored after that contact are not counted.
    AsOfContact {
        after_seq: u64,
        last_seen: u64,
        records: u64,
        as_of: u64,
    },
}

impl<K: Ord + Clone> Loss<K> {
    /// The loss known from the lost region's stream: `messages` are its messages (sequence,
    /// system), any order; those after `copy_last` were lost.
    pub fn exact(copy_last: u64, messages: impl IntoIterator<Item = (u64, K)>) -> Loss<K> {
        let mut per_system: BTreeMap<K, Vec<u64>> = BTreeMap::new();
        for (seq, system) in messages {
            if seq > copy_last {
                per_system.entry(system).or_default().push(seq);
            }
        }
        for seqs in per_system.values_mut() {
            seqs.sort_unstable();
            let before = seqs.len();
            seqs.dedup();
            assert_eq!(
                before,
                seqs.len(),
                "a sequence of the lost stream given twice"
            );
        }
        Loss::Exact {
            after_seq: copy_last,
            per_system,
        }
    }

    /// The loss bound when the lost region's stream cannot be read: its last sequence was
    /// `last_seen` at the last contact (`as_of`); the copy holds up to `copy_last`.
    pub fn as_of_contact(copy_last: u64, last_seen: u64, as_of: u64) -> Loss<K> {
        assert!(
            last_seen >= copy_last,
            "the copy holds {copy_last}, past the source's last seen {last_seen}"
        );
        Loss::AsOfContact {
            after_seq: copy_last,
            last_seen,
            records: last_seen - copy_last,
            as_of,
        }
    }

    /// The recovery point: the last sequence of the lost region's stream the survivor has.
    pub fn recovery_point(&self) -> u64 {
        match self {
            Loss::Exact { after_seq, .. } | Loss::AsOfContact { after_seq, .. } => *after_seq,
        }
    }

    /// Messages lost (exact), or at most lost as of the last contact.
    pub fn records(&self) -> u64 {
        match self {
            Loss::Exact { per_system, .. } => per_system.values().map(|s| s.len() as u64).sum(),
            Loss::AsOfContact { records, .. } => *records,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sim::galaxy::Galaxy;
    use sim::ids::{Tick, Version};
    use sim::rules::Rules;
    use store::seq::Seq;

    fn galaxy() -> Galaxy {
        Galaxy::from_toml_str(
            "home = \"Ava\"\nlane_range_ly = 8.0\n[[system]]\nname = \"Ava\"\nposition_ly = [0.0, 0.0, 0.0]\n[[system]]\nname = \"Bel\"\nposition_ly = [1.0, 0.0, 0.0]\n",
        )
        .expect("a galaxy")
    }

    fn ids(g: &Galaxy) -> (SystemId, SystemId) {
        let v: Vec<SystemId> = g.ids().collect();
        (v[0], v[1])
    }

    /// Ava with `names` joined, as a copy would replay it.
    fn ava_with(g: &Galaxy, names: &[&str]) -> SystemState {
        let rules = Rules::default();
        let (ava, _) = ids(g);
        let mut s = SystemState::new(g, ava);
        for name in names {
            let e = s.decide_join(g, &rules, name, "key").expect("a join");
            s.apply(Tick(0), &e).expect("applies");
        }
        s
    }

    fn jump(g: &Galaxy, xfer: u64, name: &str, credits: u64) -> Jump {
        let (ava, bel) = ids(g);
        let mut player = Player::starter(name, &Rules::default());
        player.credits = credits;
        player.version = Version(7);
        Jump {
            from: InstanceId::primary(ava),
            xfer: Xfer(xfer),
            to: InstanceId::primary(bel),
            t: Tick(0),
            travel_ticks: 1,
            player,
            tseq: Seq(0),
        }
    }

    #[test]
    fn the_promoted_epoch_is_above_every_epoch_of_the_lost_generation() {
        let e = promoted_epoch(0, 17);
        assert!(e > 17);
        // However many owners the lost region elected after the copy's last message.
        assert!(e > (1 << EPOCH_GENERATION_SHIFT) - 1);
        assert_eq!(generation_of(e), 1);
        // A second promotion of the same systems starts the generation after.
        let again = promoted_epoch(generation_of(e), e + 5);
        assert_eq!(generation_of(again), 2);
        assert!(again > e + 5);
    }

    #[test]
    #[should_panic(expected = "above the lost home's")]
    fn a_copy_of_a_newer_generation_than_the_lost_home_is_a_bug() {
        promoted_epoch(0, 3 << EPOCH_GENERATION_SHIFT);
    }

    #[test]
    fn a_departure_the_copy_lacks_is_applied_and_its_number_used_up() {
        let g = galaxy();
        let state = ava_with(&g, &["ann", "bob"]);
        assert_eq!(state.next_xfer, Xfer(1));
        // Jump 1 of ann was lost with the lost region (never published); jump 2 of bob is on
        // the survivor's pair subject, twice (a duplicate past the window).
        let j = jump(&g, 2, "bob", 900);
        let r = reconcile(&state, &[j.clone(), j.clone()], &[]);
        assert_eq!(
            r.events,
            vec![
                Event::DepartVoid { xfer: Xfer(1) },
                Event::Depart {
                    xfer: Xfer(2),
                    player: "bob".into(),
                    to: j.to,
                    fuel: 0
                },
                Event::DepartDone { xfer: Xfer(2) },
            ]
        );
        assert_eq!(r.departures.len(), 1);
        let starting = i128::from(Rules::default().starting_credits);
        assert_eq!(
            r.departures[0].credits_changed_in_lost_records(),
            starting - 900
        );
        let mut s = state.clone();
        for e in &r.events {
            s.apply(s.tick, e).expect("applies");
        }
        assert!(
            !s.players.contains_key("bob"),
            "bob left: never served twice"
        );
        assert!(s.players.contains_key("ann"));
        assert_eq!(s.next_xfer, Xfer(3), "numbers 1 and 2 are never reused");
    }

    #[test]
    fn a_departure_the_copy_has_needs_nothing() {
        let g = galaxy();
        let (_, bel) = ids(&g);
        let mut state = ava_with(&g, &["ann"]);
        let e = state.decide_depart(&g, "ann", bel).expect("a depart");
        state.apply(Tick(0), &e).expect("applies");
        let r = reconcile(&state, &[jump(&g, 1, "ann", 1)], &[]);
        assert_eq!(r, Reconciled::default());
    }

    #[test]
    fn a_departure_of_a_player_the_copy_never_saw_only_uses_up_its_number() {
        let g = galaxy();
        let state = ava_with(&g, &[]);
        let r = reconcile(&state, &[jump(&g, 1, "cid", 500)], &[]);
        assert_eq!(r.events, vec![Event::DepartVoid { xfer: Xfer(1) }]);
        assert_eq!(r.departures[0].copy_player, None);
        assert_eq!(r.departures[0].credits_changed_in_lost_records(), -500);
    }

    #[test]
    fn a_player_who_came_and_left_in_lost_records_lands_then_leaves() {
        let g = galaxy();
        let (ava, bel) = ids(&g);
        // Bel's jumps 1 (of dan) and 2 (of eve) towards Ava are in the copy, unlanded: both
        // landed in records lost with the region, and eve left again by Ava's jump 1, which
        // the survivor holds. Landing eve alone would put Bel's number 2 landed before 1.
        let state = ava_with(&g, &[]);
        let arriving = |xfer: u64, name: &str| {
            let mut j = jump(&g, xfer, name, 300);
            j.from = InstanceId::primary(bel);
            j.to = InstanceId::primary(ava);
            j
        };
        let (dan, eve) = (arriving(1, "dan"), arriving(2, "eve"));
        let mut leaves = jump(&g, 1, "eve", 250);
        leaves.to = InstanceId::primary(bel);
        let r = reconcile(&state, &[leaves.clone()], &[eve.clone(), dan.clone()]);
        assert_eq!(
            r.events,
            vec![
                Event::Arrive {
                    from: dan.from,
                    xfer: Xfer(1),
                    player: dan.player.clone()
                },
                Event::Arrive {
                    from: eve.from,
                    xfer: Xfer(2),
                    player: eve.player.clone()
                },
                Event::Depart {
                    xfer: Xfer(1),
                    player: "eve".into(),
                    to: leaves.to,
                    fuel: 0
                },
                Event::DepartDone { xfer: Xfer(1) },
            ]
        );
        assert_eq!(r.departures[0].credits_changed_in_lost_records(), 50);
    }

    #[test]
    fn jumps_the_copy_lacks_are_published_again_in_order() {
        let g = galaxy();
        let (_, bel) = ids(&g);
        let departs = vec![
            jump(&g, 3, "c", 1),
            jump(&g, 1, "a", 1),
            jump(&g, 2, "b", 1),
            jump(&g, 4, "d", 1),
        ];
        let copied: BTreeSet<_> = [(departs[1].from, Xfer(1))].into();
        let landed: BTreeMap<_, _> = [(bel, [(departs[1].from, Xfer(2))].into())].into();
        let again = to_republish(&departs, &copied, &BTreeMap::new());
        let numbers: Vec<u64> = again.iter().map(|j| j.xfer.0).collect();
        assert_eq!(numbers, vec![2, 3, 4]);
        let again = to_republish(&departs, &copied, &landed);
        let numbers: Vec<u64> = again.iter().map(|j| j.xfer.0).collect();
        assert_eq!(
            numbers,
            vec![3, 4],
            "a jump landed in the copy is not republished"
        );
    }

    #[test]
    fn the_loss_is_exact_when_the_lost_stream_is_read() {
        let msgs = [(4, "ava"), (5, "bel"), (6, "ava"), (3, "ava"), (7, "ava")];
        let loss = Loss::exact(4, msgs);
        assert_eq!(loss.recovery_point(), 4);
        assert_eq!(loss.records(), 3);
        let Loss::Exact { per_system, .. } = loss else {
            panic!("exact")
        };
        assert_eq!(per_system["ava"], vec![6, 7]);
        assert_eq!(per_system["bel"], vec![5]);
    }

    #[test]
    fn the_loss_is_a_bound_as_of_the_last_contact_otherwise() {
        let loss: Loss<&str> = Loss::as_of_contact(10, 14, 99);
        assert_eq!(loss.records(), 4);
        assert_eq!(loss.recovery_point(), 10);
    }
}
