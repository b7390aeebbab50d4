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
use sim::ids::{Version, Xfer};
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

/// What the promoted systems record before they serve ([`reconcile`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Events to append, each to its system's log, in this order, at that state's tick.
    pub events: Vec<(SystemId, Event)>,
    /// The committed departures they apply, in the order applied.
    pub departures: Vec<Departure>,
    /// Departures whose player the copy has in another promoted system that could not be moved
    /// out of it (its next transfer number belongs to a departure still to apply): the player
    /// may be served twice. promote must report them; the simulator would find them as a
    /// player in two places (none in 2,000 seeds of 4,000 steps since the gaps' numbers go to
    /// the moves first).
    pub unresolved: Vec<Departure>,
}

/// Reconciles the promoted systems' `states` (as replayed from the copy) with `leaving`:
/// every jump from one of them that the survivor's pair subjects hold (any order, duplicates
/// allowed), and `arriving`: the jumps towards them the promotion hands them (on the copy's
/// pair subjects, and the survivor's to publish again).
///
/// A jump whose number the copy has used (below its origin's next transfer number) has its
/// `depart` in the copy: nothing to do. Any other is a departure committed in the lost region
/// after the copy's last message: its player left, whatever the lost records did with them
/// before. Departures are taken in number order per origin and in version order per player
/// (the order they happened in). For each, the events: `depart.void` of the number before it
/// when numbers were skipped (used by lost records: never reused); then the player is found
/// where the copy has them: here; or in a jump towards here not landed (it landed in lost
/// records: landed now, after every earlier unlanded jump of its origin, as landings are in
/// order per origin); or in another promoted system, or a jump towards it (landed there, then
/// moved here by a jump of that system with no fuel, landed at once: the lost records' moves
/// are lost, the place they left him in is not); then `depart` (burning the fuel the copy's
/// player has above the jump's, at most all of it: the jump carries the player as they left)
/// and `depart.done` (the jump is on its pair subject), or `depart.void`
/// of its number when the copy has the player nowhere (their join was lost; the jump alone
/// carries them).
///
/// Panics if an event does not apply to its state (a bug of this function).
pub fn reconcile(
    states: &BTreeMap<SystemId, SystemState>,
    leaving: &[Jump],
    arriving: &[Jump],
) -> Reconciled {
    let mut out = Reconciled::default();
    if bugs::on(Bug::PromoteWithoutReconcile) {
        return out;
    }
    let mut w = Work {
        states: states.clone(),
        towards: BTreeMap::new(),
        pending: BTreeSet::new(),
        pending_jumps: BTreeMap::new(),
        out: &mut out,
    };
    for jump in arriving {
        assert!(
            w.states.contains_key(&jump.to.system),
            "a jump towards a system not promoted"
        );
        w.towards
            .entry((jump.from, jump.xfer))
            .or_insert_with(|| jump.clone());
    }
    // Jumps committed in the copy from a promoted system to another: its new owner publishes
    // them again, and they may have landed in lost records.
    for (&id, state) in states {
        for (&xfer, d) in &state.departing {
            if !states.contains_key(&d.to.system) || d.to.system == id {
                continue;
            }
            let from = InstanceId::primary(id);
            let jump = Jump {
                from,
                xfer,
                to: d.to,
                t: state.tick,
                travel_ticks: 0,
                player: d.player.clone(),
                tseq: store::seq::Seq(0),
            };
            w.towards.entry((from, xfer)).or_insert(jump);
        }
    }
    let mut pending: BTreeMap<(InstanceId, Xfer), &Jump> = BTreeMap::new();
    for jump in leaving {
        let next = w
            .states
            .get(&jump.from.system)
            .expect("a jump from a promoted system")
            .next_xfer;
        if jump.xfer >= next {
            pending.entry((jump.from, jump.xfer)).or_insert(jump);
        }
    }
    w.pending = pending.keys().copied().collect();
    w.pending_jumps = pending.iter().map(|(k, j)| (*k, (*j).clone())).collect();
    while let Some(key) = w.next_departure(&pending) {
        let jump = pending.remove(&key).expect("listed");
        w.pending.remove(&key);
        w.pending_jumps.remove(&key);
        w.depart(jump);
    }
    assert!(pending.is_empty());
    out
}

/// The states as reconciled so far, and the events written.
struct Work<'a> {
    states: BTreeMap<SystemId, SystemState>,
    towards: BTreeMap<(InstanceId, Xfer), Jump>,
    /// The departures still to apply.
    pending: BTreeSet<(InstanceId, Xfer)>,
    pending_jumps: BTreeMap<(InstanceId, Xfer), Jump>,
    out: &'a mut Reconciled,
}

impl Work<'_> {
    /// The pending departure to apply next: first of its origin's (by number) and of its
    /// player's (by version), the order they happened in; and, if its player must be moved
    /// from another promoted system, one whose next number no pending departure holds (the
    /// move takes it).
    fn next_departure(
        &self,
        pending: &BTreeMap<(InstanceId, Xfer), &Jump>,
    ) -> Option<(InstanceId, Xfer)> {
        let first_of_player = |j: &Jump| {
            pending
                .values()
                .filter(|o| o.player.name == j.player.name)
                .all(|o| o.player.version >= j.player.version)
        };
        let first_of_origin = |from: InstanceId, xfer: Xfer| {
            pending.range((from, Xfer(0))..).next().map(|(k, _)| k.1) == Some(xfer)
        };
        let ready: Vec<(InstanceId, Xfer)> = pending
            .iter()
            .filter(|((from, xfer), j)| first_of_origin(*from, *xfer) && first_of_player(j))
            .map(|(k, _)| *k)
            .collect();
        let moves_from_busy = |k: &(InstanceId, Xfer)| {
            let here = k.0.system;
            let j = pending[k];
            match self.source_of(here, &j.player.name, j.player.version) {
                Some(there) if there != here => {
                    let next = self.states[&there].next_xfer;
                    pending.contains_key(&(InstanceId::primary(there), next))
                }
                _ => false,
            }
        };
        let free = ready.iter().find(|k| !moves_from_busy(k));
        if pending.is_empty() {
            return None;
        }
        let key = free.or(ready.first()).copied();
        Some(key.expect("the departures' orders (per origin, per player) have a cycle"))
    }

    /// Where the copy has player `name` for a departure from `here` at version `before`:
    /// here or on the way, or in another promoted system or on the way to it, at a version
    /// below `before`; None: nowhere.
    fn source_of(&self, here: SystemId, name: &str, before: Version) -> Option<SystemId> {
        let at = |s: SystemId| {
            self.states[&s]
                .players
                .get(name)
                .is_some_and(|p| s == here || p.version < before)
                || self.towards.values().any(|j| {
                    j.to.system == s
                        && j.player.name == name
                        && j.player.version < before
                        && unlanded(&self.states[&s], j)
                })
        };
        if at(here) {
            return Some(here);
        }
        self.states.keys().copied().find(|&s| s != here && at(s))
    }

    fn apply(&mut self, at: SystemId, event: Event) {
        let state = self.states.get_mut(&at).expect("a promoted system");
        let t = state.tick;
        state
            .apply(t, &event)
            .unwrap_or_else(|e| panic!("BUG: a reconcile event does not apply: {event:?}: {e}"));
        self.out.events.push((at, event));
    }

    fn depart(&mut self, jump: &Jump) {
        let here = jump.from.system;
        // The numbers below this departure that the copy has not used were used by lost
        // records: some by moves of players reconcile must still take elsewhere. Those moves
        // go first, by these numbers; the rest are voided.
        while self.states[&here].next_xfer < jump.xfer {
            let Some((name, to, before)) = self.waited_for_elsewhere(here) else {
                break;
            };
            if !self.states[&here].players.contains_key(&name) {
                self.land_on_the_way(here, &name, before);
            }
            self.move_out(here, to, &name);
        }
        let next = self.states[&here].next_xfer;
        if jump.xfer > next {
            self.apply(
                here,
                Event::DepartVoid {
                    xfer: Xfer(jump.xfer.0 - 1),
                },
            );
        }
        let name = &jump.player.name;
        let unresolved = !self.bring(here, name, jump.player.version);
        let copy_player = self.states[&here].players.get(name).cloned();
        if unresolved {
            self.out.unresolved.push(Departure {
                jump: jump.clone(),
                copy_player: None,
            });
        }
        match copy_player {
            Some(ref p) => {
                // The fuel the lost `depart` burnt (the rest of what lost records changed is
                // not redone: reported with the loss), so that the departure leaves with the
                // jump's state when the lost records did nothing else to the player (and
                // `mltrader check` of the promoted region's export finds them equal).
                let depart = Event::Depart {
                    xfer: jump.xfer,
                    player: name.clone(),
                    to: jump.to,
                    fuel: p.fuel.saturating_sub(jump.player.fuel),
                };
                self.apply(here, depart);
                self.apply(here, Event::DepartDone { xfer: jump.xfer });
            }
            None => self.apply(here, Event::DepartVoid { xfer: jump.xfer }),
        }
        self.out.departures.push(Departure {
            jump: jump.clone(),
            copy_player,
        });
    }

    /// Puts player `name` in system `here` if the copy has them in a promoted system or in a
    /// jump towards one, at a version below `before` (the departure's: a place the player was
    /// in before it, never one they reached after).
    /// False if the copy has them in another promoted system that cannot give them up now.
    fn bring(&mut self, here: SystemId, name: &str, before: Version) -> bool {
        if self.states[&here].players.contains_key(name) {
            return true;
        }
        if self.land_on_the_way(here, name, before) {
            return true;
        }
        let systems: Vec<SystemId> = self.states.keys().copied().filter(|&s| s != here).collect();
        let elsewhere = systems.into_iter().find(|s| {
            let in_it = self.states[s]
                .players
                .get(name)
                .is_some_and(|p| p.version < before);
            in_it || self.land_on_the_way(*s, name, before)
        });
        let Some(there) = elsewhere else {
            return true;
        };
        // Moved from there to here by a jump of no fuel, landed at once: by its next number,
        // unless a departure still to apply holds it.
        let xfer = self.states[&there].next_xfer;
        if self.pending.contains(&(InstanceId::primary(there), xfer)) {
            return false;
        }
        self.move_out(there, here, name);
        true
    }

    /// Player `name` moved from `there` to `here` by a jump of no fuel numbered `there`'s next,
    /// landed at once.
    fn move_out(&mut self, there: SystemId, here: SystemId, name: &str) {
        let xfer = self.states[&there].next_xfer;
        let to = InstanceId::primary(here);
        let depart = Event::Depart {
            xfer,
            player: name.to_string(),
            to,
            fuel: 0,
        };
        self.apply(there, depart);
        let player = self.states[&there].departing[&xfer].player.clone();
        self.apply(there, Event::DepartDone { xfer });
        let from = InstanceId::primary(there);
        self.land_earlier(here, from, xfer);
        self.apply(here, Event::Arrive { from, xfer, player });
    }

    /// A player the copy has in (or on the way to) `here` whom a departure still to apply
    /// from another promoted system needs there: the player, that system, the departure's
    /// version.
    fn waited_for_elsewhere(&self, here: SystemId) -> Option<(String, SystemId, Version)> {
        self.pending_jumps.values().find_map(|j| {
            let there = j.from.system;
            let name = &j.player.name;
            let wanted = there != here
                && !self.states[&there].players.contains_key(name)
                && self.source_of(there, name, j.player.version) == Some(here);
            wanted.then(|| (name.clone(), there, j.player.version))
        })
    }

    /// Lands the unlanded jump towards `at` that carries `name` at a version below `before`,
    /// if any, after every earlier unlanded jump of its origin. Whether it did.
    fn land_on_the_way(&mut self, at: SystemId, name: &str, before: Version) -> bool {
        let state = &self.states[&at];
        let carrying = self
            .towards
            .values()
            .find(|j| {
                j.to.system == at
                    && j.player.name == name
                    && j.player.version < before
                    && unlanded(state, j)
            })
            .map(|j| (j.from, j.xfer));
        let Some((from, xfer)) = carrying else {
            return false;
        };
        self.land_earlier(at, from, xfer);
        let jump = self.towards[&(from, xfer)].clone();
        let arrive = Event::Arrive {
            from,
            xfer,
            player: jump.player,
        };
        self.apply(at, arrive);
        true
    }

    /// Lands every unlanded jump of `from` towards `at` numbered below `below`.
    fn land_earlier(&mut self, at: SystemId, from: InstanceId, below: Xfer) {
        let earlier: Vec<Jump> = self
            .towards
            .range((from, Xfer(0))..(from, below))
            .map(|(_, j)| j)
            .filter(|j| j.to.system == at && unlanded(&self.states[&at], j))
            .cloned()
            .collect();
        for j in earlier {
            let arrive = Event::Arrive {
                from: j.from,
                xfer: j.xfer,
                player: j.player,
            };
            self.apply(at, arrive);
        }
    }
}

fn unlanded(state: &SystemState, j: &Jump) -> bool {
    state.landed_upto.get(&j.from).is_none_or(|&u| j.xfer > u)
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

    /// One promoted system.
    fn one(state: &SystemState) -> BTreeMap<SystemId, SystemState> {
        [(state.id, state.clone())].into()
    }

    /// The reconcile's events at system `at`.
    fn only(r: &Reconciled, at: SystemId) -> Vec<Event> {
        r.events
            .iter()
            .filter(|(s, _)| *s == at)
            .map(|(_, e)| e.clone())
            .collect()
    }

    #[test]
    fn a_player_the_copy_has_in_another_promoted_system_is_moved_then_leaves() {
        let g = galaxy();
        let (ava, bel) = ids(&g);
        // The copy has eve at Bel; lost records took her to Ava, and Ava's jump 1 (on the
        // survivor's pair subject) took her away.
        let mut bel_state = SystemState::new(&g, bel);
        let rules = Rules::default();
        // A join is for the home system only: give Bel eve by an arrival.
        let mut eve = Player::starter("eve", &rules);
        eve.version = Version(3);
        let from = InstanceId::primary(ava);
        let arrive = Event::Arrive {
            from,
            xfer: Xfer(9),
            player: eve,
        };
        bel_state.apply(Tick(0), &arrive).expect("applies");
        let states: BTreeMap<_, _> = [(ava, ava_with(&g, &[])), (bel, bel_state)].into();
        let mut leaves = jump(&g, 1, "eve", 100);
        leaves.to = InstanceId::primary(bel);
        let r = reconcile(&states, &[leaves.clone()], &[]);
        let kinds: Vec<(SystemId, &'static str)> = r
            .events
            .iter()
            .map(|(s, e)| (*s, crate::codec::event_kind(e)))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (bel, "depart"),
                (bel, "depart.done"),
                (ava, "arrive"),
                (ava, "depart"),
                (ava, "depart.done"),
            ]
        );
        let mut after = states.clone();
        for (s, e) in &r.events {
            let st = after.get_mut(s).expect("a state");
            st.apply(st.tick, e).expect("applies");
        }
        assert!(
            after.values().all(|s| !s.players.contains_key("eve")),
            "eve left: in no system"
        );
    }

    #[test]
    fn a_place_the_player_reached_after_the_departure_is_not_where_they_left_from() {
        let g = galaxy();
        let (ava, bel) = ids(&g);
        // The copy has neither ava's join of fay nor her jump 2 to Bel (both lost); the
        // survivor holds that jump, and a later one of hers (version 4) towards Bel, which the
        // promotion hands Bel. She left Ava at version 2: Bel, where she went afterwards, is
        // not where she left from (the simulator, seed 1267 of --world regions, moved her
        // from Bel to Ava to leave again, and she was nowhere).
        let states: BTreeMap<_, _> =
            [(ava, ava_with(&g, &[])), (bel, SystemState::new(&g, bel))].into();
        let mut left = jump(&g, 2, "fay", 500);
        left.player.version = Version(2);
        let mut later = jump(&g, 1, "fay", 500);
        later.from = InstanceId::primary(ava);
        later.player.version = Version(4);
        let mut later_from_elsewhere = later.clone();
        later_from_elsewhere.xfer = Xfer(7);
        let r = reconcile(&states, &[left], &[later_from_elsewhere]);
        assert_eq!(
            r.events,
            vec![
                (ava, Event::DepartVoid { xfer: Xfer(1) }),
                (ava, Event::DepartVoid { xfer: Xfer(2) }),
            ]
        );
    }

    #[test]
    fn a_number_the_lost_records_used_is_given_to_a_move_reconcile_rebuilds() {
        let g = galaxy();
        let (ava, bel) = ids(&g);
        // The copy has pat and quin at Ava, whose next number is 1. The survivor holds Ava's
        // jump 2 of quin and Bel's jump 1 of pat: Ava's number 1 was pat's move to Bel, lost.
        // It is given to that move, not voided (voided, the move would need Ava's next number
        // later, which a departure may hold: seeds 2,001,380 and 2,001,869).
        let states: BTreeMap<_, _> = [
            (ava, ava_with(&g, &["pat", "quin"])),
            (bel, SystemState::new(&g, bel)),
        ]
        .into();
        let away = InstanceId::primary(SystemId(9));
        let mut quin = jump(&g, 2, "quin", 1000);
        quin.to = away;
        quin.player.version = Version(2);
        let mut pat = jump(&g, 1, "pat", 1000);
        pat.from = InstanceId::primary(bel);
        pat.to = away;
        pat.player.version = Version(3);
        let r = reconcile(&states, &[quin, pat], &[]);
        let kinds: Vec<(SystemId, &'static str, u64)> = r
            .events
            .iter()
            .map(|(s, e)| {
                let x = match e {
                    Event::Depart { xfer, .. }
                    | Event::DepartDone { xfer }
                    | Event::Arrive { xfer, .. } => xfer.0,
                    _ => 0,
                };
                (*s, crate::codec::event_kind(e), x)
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                (ava, "depart", 1),
                (ava, "depart.done", 1),
                (bel, "arrive", 1),
                (ava, "depart", 2),
                (ava, "depart.done", 2),
                (bel, "depart", 1),
                (bel, "depart.done", 1),
            ]
        );
        assert!(r.unresolved.is_empty());
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
        let (ava, _) = ids(&g);
        let r = reconcile(&one(&state), &[j.clone(), j.clone()], &[]);
        assert_eq!(
            only(&r, ava),
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
        for e in only(&r, ava) {
            s.apply(s.tick, &e).expect("applies");
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
        let r = reconcile(&one(&state), &[jump(&g, 1, "ann", 1)], &[]);
        assert_eq!(r, Reconciled::default());
    }

    #[test]
    fn a_departure_of_a_player_the_copy_never_saw_only_uses_up_its_number() {
        let g = galaxy();
        let state = ava_with(&g, &[]);
        let r = reconcile(&one(&state), &[jump(&g, 1, "cid", 500)], &[]);
        let (ava, _) = ids(&g);
        assert_eq!(only(&r, ava), vec![Event::DepartVoid { xfer: Xfer(1) }]);
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
        // She left after she landed: a later version than the jump she came by.
        leaves.player.version = Version(8);
        let r = reconcile(&one(&state), &[leaves.clone()], &[eve.clone(), dan.clone()]);
        assert_eq!(
            only(&r, ava),
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
