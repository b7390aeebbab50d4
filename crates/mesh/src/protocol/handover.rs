//! A jump between units (star systems) that may live on different nodes, as pure decisions
//! (issue 19, docs/PROTOCOL.md "Across nodes").
//!
//! The parallel commit of [`super::commit`] (the `depart` and the `jump` written at once, the
//! pair durable together) relies on one recovery seeing both logs; across nodes a destination
//! could land a jump whose `depart` its origin lost. So across units:
//!
//! - **origin** ([`Outbox`]): the commit point is the origin's durable, fenced `depart`
//!   ([`Outbox::durable`]); only then is the player told, and only then is the jump published
//!   ([`Outbox::to_publish`]) to the pair subject `mlt.jump.<from>.<to>` with the transfer id as
//!   its message id ([`msg_id`]: a republish is a duplicate), one publish in flight per pair so
//!   the subject holds an origin's jumps in number order whatever is lost and retried; the
//!   origin appends `depart.done` once the publish is acknowledged ([`Outbox::acked`]). A node
//!   taking the origin over republishes every committed jump without `depart.done`
//!   ([`at_takeover`]) and never aborts one. Every publish carries the expected last sequence
//!   of its pair subject as the writer knows it ([`publish_fence`]): a new owner of the origin
//!   appends a `lease` record to each of its pair subjects before it republishes, so a zombie
//!   origin hands over nothing more;
//! - **destination** ([`Inbox`]): reads its pair subjects from the positions its snapshot
//!   recorded, hands each jump to [`super::arrivals`] (land once, in order per origin, by the
//!   highest number landed per origin), and records in its snapshot, per pair subject, the last
//!   position whose jumps (and every one before) have landed in the state it snapshots
//!   ([`Inbox::positions`]): never past a jump read but still queued, so a takeover neither
//!   skips one (the position) nor lands one twice (the state's `landed_upto`).
//!
//! Pure: the simulator (`crates/dst`, the cross-node world) drives it; the server's wiring is a
//! later step. Never does I/O, never reads a clock, never names a NATS subject (the `nats`
//! crate escapes the slugs).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use sim::galaxy::{Galaxy, SystemId};
use sim::ids::Xfer;
use sim::instance::InstanceId;
use sim::rules::Rules;
use sim::system::{Event, SystemState};
use store::seq::Seq;

use super::bugs::{self, Bug};
use super::invariants::{handed_to_its_destination, must, transfer_grows, Violation};
use crate::codec::{xfer_text, Jump};
use crate::limits::{MAX_OUTBOX_JUMPS, MAX_PUBLISHES_IN_FLIGHT_PER_PAIR, MAX_UNLANDED_PER_PAIR};

/// A position on a pair subject: the stream sequence of one of its messages (0: before the
/// first).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PairSeq(pub u64);

impl std::fmt::Display for PairSeq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The two units a jump goes between: its pair subject is `mlt.jump.<from>.<to>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pair {
    pub from: SystemId,
    pub to: SystemId,
}

impl Pair {
    /// The pair a jump travels on. A jump within a unit (an instance move) has none: it keeps
    /// the parallel commit.
    pub fn of(jump: &Jump) -> Option<Pair> {
        let (from, to) = (jump.from.system, jump.to.system);
        (from != to).then_some(Pair { from, to })
    }
}

/// The message id of a jump's publish: its transfer id (`ava:3`, `ava.2:3`), unique in the
/// galaxy, so that a retry or a new owner's republish is answered `duplicate`.
pub fn msg_id(galaxy: &Galaxy, jump: &Jump) -> String {
    xfer_text(galaxy, jump.from, jump.xfer)
}

/// The expected last sequence of its pair subject a publish carries, given the last sequence
/// its writer knows: always some, so that a publish after a new owner's `lease` record is
/// refused (10071).
pub fn publish_fence(known_last: PairSeq) -> Option<PairSeq> {
    if bugs::on(Bug::ZombiePublishUnfenced) {
        return None;
    }
    Some(known_last)
}

/// Where a jump stands in its origin's outbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Its `depart` is appended (record `prepare_seq` of the origin's log), not yet durable:
    /// nobody may hear of it.
    Prepared { prepare_seq: Seq },
    /// Its `depart` is durable and fenced: committed, to publish.
    Committed,
    /// Published, no answer yet: a retry sends the same message id.
    InFlight,
}

/// A publish to send: the jump to its pair subject, with its message id and fence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publish {
    pub pair: Pair,
    pub jump: Jump,
    /// The expected last sequence of the pair subject ([`publish_fence`]).
    pub expected_last: Option<PairSeq>,
}

/// What the stream answered a publish it took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishAnswer {
    /// Stored at this position: the subject's last, as this writer knows it.
    Stored(PairSeq),
    /// A copy was stored before, at this position (by this writer or another).
    Duplicate(PairSeq),
}

/// What a refused publish means for its writer ([`Outbox::refused`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A newer owner fenced the subject: stop serving the origin.
    Fenced,
    /// The writer's own last publish was after what it knew: it knows now, and publishes again.
    Resynced,
}

/// One origin unit's jumps towards other units, from the `depart` to its `depart.done`.
#[derive(Clone, Debug, Default)]
pub struct Outbox {
    /// By origin instance and number: the order a pair publishes them in.
    jumps: BTreeMap<(InstanceId, Xfer), (Jump, Stage)>,
    /// The last sequence known of each pair subject (learnt at the takeover's read and from
    /// each acknowledgement): the fence of the next publish.
    known_last: BTreeMap<Pair, PairSeq>,
    /// The last number queued per origin instance: they must grow.
    last_xfer: BTreeMap<InstanceId, Xfer>,
    /// Pair subjects this owner has not written its `lease` record on yet (in another region
    /// across a cut link, issue 20): nothing is published on them until it has
    /// ([`Outbox::fenced`]), so the unit serves meanwhile and its jumps there wait.
    unfenced: BTreeSet<Pair>,
}

impl Outbox {
    /// The owner could not write its `lease` record on `pair` at its takeover: its jumps on
    /// it wait for [`Outbox::fenced`].
    pub fn fence_later(&mut self, pair: Pair) {
        self.unfenced.insert(pair);
    }

    /// The owner's `lease` record on `pair` is stored at `at`: its jumps there may go.
    pub fn fenced(&mut self, pair: Pair, at: PairSeq) {
        self.unfenced.remove(&pair);
        self.learn_last(pair, at);
    }

    /// The pair subjects still waiting for this owner's `lease` record.
    pub fn unfenced(&self) -> impl Iterator<Item = Pair> + '_ {
        self.unfenced.iter().copied()
    }

    pub fn new() -> Outbox {
        Outbox::default()
    }

    /// The origin appended jump `jump`'s `depart` as record `prepare_seq`.
    pub fn prepared(&mut self, prepare_seq: Seq, jump: Jump) {
        assert!(
            Pair::of(&jump).is_some(),
            "BUG: an instance move ({:?} to {:?}) in the outbox",
            jump.from,
            jump.to
        );
        assert!(
            self.jumps.len() < MAX_OUTBOX_JUMPS,
            "BUG: the outbox is full (check has_room first)"
        );
        let previous = self.last_xfer.insert(jump.from, jump.xfer);
        must(transfer_grows(jump.from, previous, jump.xfer));
        must(unpublished(&jump));
        let stage = Stage::Prepared { prepare_seq };
        self.jumps.insert((jump.from, jump.xfer), (jump, stage));
    }

    /// A jump a node taking the origin over found departing ([`at_takeover`]): committed (its
    /// `depart` was read from the log), to publish again.
    pub fn recovered(&mut self, jump: Jump) {
        let previous = self.last_xfer.insert(jump.from, jump.xfer);
        must(transfer_grows(jump.from, previous, jump.xfer));
        must(unpublished(&jump));
        self.jumps
            .insert((jump.from, jump.xfer), (jump, Stage::Committed));
    }

    /// Whether a new departure fits.
    pub fn has_room(&self) -> bool {
        self.jumps.len() < MAX_OUTBOX_JUMPS
    }

    /// The origin's log is durable up to record `upto` (its appends were accepted, fenced):
    /// the jumps of `origin` whose `depart` is at or below it are committed. Returns them in
    /// number order: their players may be told now.
    pub fn durable(&mut self, origin: InstanceId, upto: Seq) -> Vec<Jump> {
        let mut committed = Vec::new();
        for ((from, _), (jump, stage)) in self.jumps.range_mut((origin, Xfer(0))..) {
            if *from != origin {
                break;
            }
            if let Stage::Prepared { prepare_seq } = *stage {
                if prepare_seq <= upto {
                    *stage = Stage::Committed;
                    committed.push(jump.clone());
                }
            }
        }
        committed
    }

    /// The publishes to send now: for each pair with nothing in flight, its lowest-numbered
    /// committed jump (only committed ones: a jump published before its `depart` is durable
    /// could land while a crash loses the `depart`, and the player be in two places).
    pub fn to_publish(&mut self) -> Vec<Publish> {
        let mut busy: BTreeMap<Pair, usize> = BTreeMap::new();
        for (jump, stage) in self.jumps.values() {
            if *stage == Stage::InFlight {
                *busy.entry(pair_of(jump)).or_default() += 1;
            }
        }
        let mut out = Vec::new();
        for (jump, stage) in self.jumps.values_mut() {
            let pair = pair_of(jump);
            if self.unfenced.contains(&pair) {
                continue;
            }
            let in_flight = busy.entry(pair).or_default();
            if *in_flight >= MAX_PUBLISHES_IN_FLIGHT_PER_PAIR {
                continue;
            }
            let publishable = match stage {
                Stage::Committed => true,
                Stage::Prepared { .. } => bugs::on(Bug::PublishBeforeDurable),
                Stage::InFlight => false,
            };
            if !publishable {
                // A later jump of this pair must not overtake it.
                *in_flight = MAX_PUBLISHES_IN_FLIGHT_PER_PAIR;
                continue;
            }
            *stage = Stage::InFlight;
            *in_flight += 1;
            let known = self.known_last.get(&pair).copied().unwrap_or_default();
            out.push(Publish {
                pair,
                jump: jump.clone(),
                expected_last: publish_fence(known),
            });
        }
        out
    }

    /// The publish of jump `xfer` of `from` was answered: stored, or a duplicate of a stored
    /// copy. Returns the `depart.done` to append (the outbox forgets the jump), or None for an
    /// answer to nothing in flight (a stale or repeated acknowledgement).
    ///
    /// Only `Stored` tells the writer the subject's last sequence. A duplicate's sequence is
    /// the stored copy's, which may be another writer's: a new owner's republish after its
    /// `lease` record. A zombie that took it for its last sequence would pass the fence with
    /// its next publish (the simulator found this: seed 5 of the cross-node world).
    pub fn acked(&mut self, from: InstanceId, xfer: Xfer, answer: PublishAnswer) -> Option<Event> {
        let (jump, stage) = self.jumps.get(&(from, xfer))?;
        if *stage != Stage::InFlight {
            return None;
        }
        let pair = pair_of(jump);
        if let PublishAnswer::Stored(at) = answer {
            self.learn_last(pair, at);
        }
        self.jumps.remove(&(from, xfer));
        Some(Event::DepartDone { xfer })
    }

    /// The publish of jump `xfer` of `from` (by a writer at epoch `epoch`) was refused: its
    /// expected last sequence was stale (10071). The writer read the subject's last message:
    /// sequence `last`, written at epoch `last_epoch`. Of a newer epoch: another node owns the
    /// origin now, and this one stops ([`Refusal::Fenced`]). Of its own: the writer's own
    /// earlier publish, whose acknowledgement was lost or answered `duplicate` (which says
    /// nothing of the last sequence): it learns `last` (even below what it knew: the subject may
    /// have been re-homed) and publishes the jump again.
    pub fn refused(
        &mut self,
        from: InstanceId,
        xfer: Xfer,
        epoch: u64,
        last: PairSeq,
        last_epoch: u64,
    ) -> Refusal {
        if last_epoch > epoch {
            return Refusal::Fenced;
        }
        let Some((jump, stage)) = self.jumps.get_mut(&(from, xfer)) else {
            return Refusal::Resynced;
        };
        let pair = pair_of(jump);
        if *stage == Stage::InFlight {
            *stage = Stage::Committed;
        }
        // The last sequence just read is the subject's, even below what the writer knew: a
        // promotion (issue 20) re-homes a pair subject into the survivor's stream, whose
        // sequences are its own. Keeping the higher one refused every publish after it for
        // ever (the simulator's regions world: a jump never landed).
        self.known_last.insert(pair, last);
        Refusal::Resynced
    }

    /// The publish of jump `xfer` of `from` got no answer (a timeout, an election): it goes
    /// again, with the same message id.
    pub fn unanswered(&mut self, from: InstanceId, xfer: Xfer) {
        if let Some((_, stage)) = self.jumps.get_mut(&(from, xfer)) {
            if *stage == Stage::InFlight {
                *stage = Stage::Committed;
            }
        }
    }

    /// The last sequence of `pair`'s subject, as read (a takeover) or after a fence of ours.
    pub fn learn_last(&mut self, pair: Pair, last: PairSeq) {
        let known = self.known_last.entry(pair).or_default();
        *known = (*known).max(last);
    }

    /// The jump `xfer` of `from`, with its stage, if the outbox holds it.
    pub fn get(&self, from: InstanceId, xfer: Xfer) -> Option<(&Jump, Stage)> {
        self.jumps.get(&(from, xfer)).map(|(j, s)| (j, *s))
    }

    pub fn len(&self) -> usize {
        self.jumps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.jumps.is_empty()
    }

    /// The jumps held, by origin and number.
    pub fn jumps(&self) -> impl Iterator<Item = (&Jump, Stage)> + '_ {
        self.jumps.values().map(|(j, s)| (j, *s))
    }
}

fn pair_of(jump: &Jump) -> Pair {
    Pair::of(jump).expect("only jumps between units enter the outbox")
}

/// What a node taking over an origin does with each jump its replayed state holds as
/// departing (every one of them committed: its `depart` is in the log, so it was durable).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AtTakeover {
    /// Publish it again (a duplicate if it was stored): the destination lands it once.
    Republish(Jump),
    /// Only [`Bug::AbortCommittedAtTakeover`]: the local recovery's rule for a prepared jump
    /// with no `jump` record (`depart.abort`), wrong across nodes.
    Abort(Event),
}

/// The jumps a node taking over origin `state` (replayed to the end of its log) publishes
/// again, in number order: every one still departing. Never an abort: the `depart` was
/// durable, so its player may have been told and its jump may be on the pair subject.
/// `now` is the origin's tick (the jump's `t`).
pub fn at_takeover(galaxy: &Galaxy, rules: &Rules, state: &SystemState) -> Vec<AtTakeover> {
    let from = state.instance_id();
    state
        .departing
        .iter()
        .filter(|(_, d)| d.to.system != from.system)
        .map(|(&xfer, d)| {
            if bugs::on(Bug::AbortCommittedAtTakeover) {
                let player = d.player.name.clone();
                return AtTakeover::Abort(Event::DepartAbort { xfer, player });
            }
            let jump = Jump {
                from,
                xfer,
                to: d.to,
                t: state.tick,
                travel_ticks: galaxy.travel_ticks(from.system, d.to.system, rules.ticks_per_ly),
                player: d.player.clone(),
                tseq: Seq(0),
            };
            must(never_aborted(state, xfer));
            AtTakeover::Republish(jump)
        })
        .collect()
}

/// One pair subject as a destination reads it.
#[derive(Clone, Debug, Default)]
struct PairRead {
    /// The last position delivered (a redelivery at or below it is ignored).
    read_upto: PairSeq,
    /// Jumps read and not yet landed here, in the order read: (position, origin, number).
    unlanded: VecDeque<(PairSeq, InstanceId, Xfer)>,
}

impl PairRead {
    /// Drops the jumps `state` has landed (so the list holds only what waits: bounded by the
    /// travel times, not by the time since the last snapshot).
    fn forget_landed(&mut self, state: &SystemState) {
        self.unlanded
            .retain(|&(_, origin, xfer)| state.landed_upto.get(&origin).is_none_or(|&l| xfer > l));
    }
}

/// A destination unit's pair subjects, from the positions its snapshot recorded.
#[derive(Clone, Debug, Default)]
pub struct Inbox {
    pairs: BTreeMap<SystemId, PairRead>,
}

impl Inbox {
    /// Reading from `positions` (by origin unit: the last position the snapshot covers; absent:
    /// from the start). The consumers start after each.
    pub fn from_positions(positions: &BTreeMap<SystemId, PairSeq>) -> Inbox {
        let pairs = positions
            .iter()
            .map(|(&from, &at)| {
                let read = PairRead {
                    read_upto: at,
                    unlanded: VecDeque::new(),
                };
                (from, read)
            })
            .collect();
        Inbox { pairs }
    }

    /// Where the consumer of the pair subject from `from` starts (or starts again after a
    /// redelivery): after this position.
    pub fn start_after(&self, from: SystemId) -> PairSeq {
        self.pairs
            .get(&from)
            .map(|p| p.read_upto)
            .unwrap_or_default()
    }

    /// The jump at position `at` of the pair subject from `jump.from`'s unit was delivered
    /// to destination `state`. Returns it (numbered with its position, its record's number) to
    /// hand to [`super::arrivals::Arrivals::handed`], or None: delivered before (a
    /// redelivery), or landed already here (a duplicate stored, a republish after the duplicate
    /// window, a takeover reading from an earlier position).
    pub fn delivered(&mut self, state: &SystemState, at: PairSeq, mut jump: Jump) -> Option<Jump> {
        assert!(
            jump.to == state.instance_id(),
            "BUG: a jump towards {:?} read by {:?}",
            jump.to,
            state.instance_id()
        );
        let read = self.pairs.entry(jump.from.system).or_default();
        let dedup = !bugs::on(Bug::LandWithoutDedup);
        if at <= read.read_upto && dedup {
            return None;
        }
        read.read_upto = read.read_upto.max(at);
        read.forget_landed(state);
        let landed = state.landed_upto.get(&jump.from).copied();
        let queued = read
            .unlanded
            .iter()
            .any(|&(_, f, x)| f == jump.from && x >= jump.xfer);
        if (landed.is_some_and(|l| jump.xfer <= l) || queued) && dedup {
            return None;
        }
        assert!(
            read.unlanded.len() < MAX_UNLANDED_PER_PAIR,
            "BUG: {MAX_UNLANDED_PER_PAIR} jumps read and not landed on one pair"
        );
        read.unlanded.push_back((at, jump.from, jump.xfer));
        jump.tseq = Seq(at.0);
        if dedup {
            must(handed_to_its_destination(state, &jump));
        }
        Some(jump)
    }

    /// The landing of `jump` here, decided: its `arrive` (the player one version on), or None
    /// if it landed already. The per-origin check of [`super::arrivals::decide_landing`],
    /// which the cross-node bug switch can turn off.
    pub fn decide_landing(state: &SystemState, jump: &Jump) -> Option<Event> {
        if bugs::on(Bug::LandWithoutDedup) {
            let mut player = jump.player.clone();
            player.version = player.version.next();
            let (from, xfer) = (jump.from, jump.xfer);
            return Some(Event::Arrive { from, xfer, player });
        }
        super::arrivals::decide_landing(state, jump)
    }

    /// The positions a snapshot of `state` records, per pair subject read: the last position
    /// such that it and every earlier one have landed in `state` (a jump read but still queued
    /// for its travel is not covered: a takeover reads it again). Forgets what landed.
    pub fn positions(&mut self, state: &SystemState) -> BTreeMap<SystemId, PairSeq> {
        let mut out = BTreeMap::new();
        for (&from, read) in self.pairs.iter_mut() {
            read.forget_landed(state);
            let covered = match read.unlanded.front() {
                Some(&(first, _, _)) if !bugs::on(Bug::SnapshotPastQueued) => PairSeq(first.0 - 1),
                _ => read.read_upto,
            };
            out.insert(from, covered);
        }
        out
    }

    /// How many jumps are read and not yet landed.
    pub fn unlanded(&self) -> usize {
        self.pairs.values().map(|p| p.unlanded.len()).sum()
    }
}

/// Publish: a jump goes to its pair subject numbered by nothing yet (its position is the
/// record's number, given when it is read).
pub fn unpublished(jump: &Jump) -> Result<(), Violation> {
    if jump.tseq != Seq(0) {
        let what = format!("enters the outbox numbered {}", jump.tseq);
        return Err(Violation {
            from: jump.from,
            xfer: jump.xfer,
            what,
        });
    }
    Ok(())
}

/// Takeover of an origin: a jump the replayed state holds as departing has a durable `depart`
/// and is published again, never aborted (the state must hold it, not voided).
pub fn never_aborted(state: &SystemState, xfer: Xfer) -> Result<(), Violation> {
    let from = state.instance_id();
    if !state.departing.contains_key(&xfer) || state.voided.contains(&xfer) {
        let what = "republished at takeover but not departing".to_string();
        return Err(Violation { from, xfer, what });
    }
    Ok(())
}

/// Publish, read back at the stream: the pair subject's messages are one origin's jumps in
/// number order (`previous` is the number of the same origin's jump stored last on it; a
/// duplicate stored again after the window is `previous` or lower and is no new jump).
pub fn stored_in_order(jump: &Jump, previous: Option<Xfer>) -> Result<(), Violation> {
    transfer_grows(jump.from, previous, jump.xfer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sim::ids::Tick;
    use sim::player::Player;

    fn galaxy() -> Galaxy {
        Galaxy::default_galaxy()
    }

    fn jump_to(to: SystemId, xfer: u64) -> Jump {
        let g = galaxy();
        Jump {
            from: InstanceId::primary(g.home()),
            xfer: Xfer(xfer),
            to: InstanceId::primary(to),
            t: Tick(0),
            travel_ticks: 2,
            player: Player::starter(&format!("p{xfer}"), &Rules::default()),
            tseq: Seq(0),
        }
    }

    fn neighbours() -> (SystemId, SystemId) {
        let g = galaxy();
        let n = g.neighbours(g.home());
        (n[0], n[1])
    }

    #[test]
    fn nothing_is_published_before_its_depart_is_durable() {
        let (a, _) = neighbours();
        let mut o = Outbox::new();
        o.prepared(Seq(10), jump_to(a, 1));
        o.prepared(Seq(11), jump_to(a, 2));
        assert!(o.to_publish().is_empty(), "nothing durable");
        let home = InstanceId::primary(galaxy().home());
        let told: Vec<u64> = o.durable(home, Seq(10)).iter().map(|j| j.xfer.0).collect();
        assert_eq!(told, [1], "depart 11 not durable yet");
        let p = o.to_publish();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].jump.xfer, Xfer(1));
        assert_eq!(p[0].expected_last, Some(PairSeq(0)));
        assert!(o.to_publish().is_empty(), "one in flight per pair");
    }

    #[test]
    fn a_pair_publishes_in_number_order_one_at_a_time_and_retries_with_the_same_jump() {
        let (a, b) = neighbours();
        let home = InstanceId::primary(galaxy().home());
        let mut o = Outbox::new();
        o.prepared(Seq(1), jump_to(a, 1));
        o.prepared(Seq(2), jump_to(b, 2));
        o.prepared(Seq(3), jump_to(a, 3));
        assert_eq!(o.durable(home, Seq(3)).len(), 3);
        let first: Vec<u64> = o.to_publish().iter().map(|p| p.jump.xfer.0).collect();
        assert_eq!(first, [1, 2], "one per pair, lowest first");
        o.unanswered(home, Xfer(1));
        let again: Vec<u64> = o.to_publish().iter().map(|p| p.jump.xfer.0).collect();
        assert_eq!(again, [1], "the retry, not jump 3");
        let stored = PublishAnswer::Stored(PairSeq(7));
        assert_eq!(
            o.acked(home, Xfer(1), stored),
            Some(Event::DepartDone { xfer: Xfer(1) })
        );
        assert_eq!(o.acked(home, Xfer(1), stored), None, "a repeated ack");
        let next = o.to_publish();
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].jump.xfer, Xfer(3));
        assert_eq!(
            next[0].expected_last,
            Some(PairSeq(7)),
            "fenced at what it knows"
        );
    }

    /// A zombie whose publish is answered `duplicate` of its successor's copy must not take
    /// that copy's position for its subject's last: its next publish would pass the fence.
    #[test]
    fn a_duplicate_answer_never_moves_the_fence_and_a_newer_epoch_stops_the_writer() {
        let (a, _) = neighbours();
        let home = InstanceId::primary(galaxy().home());
        let mut o = Outbox::new();
        o.learn_last(
            Pair {
                from: galaxy().home(),
                to: a,
            },
            PairSeq(3),
        );
        for x in 1..=3 {
            o.prepared(Seq(x), jump_to(a, x));
        }
        o.durable(home, Seq(3));
        assert_eq!(o.to_publish().len(), 1);
        // The successor (epoch 9) fenced at 10 and republished jump 1 at 11.
        let dup = PublishAnswer::Duplicate(PairSeq(11));
        assert!(o.acked(home, Xfer(1), dup).is_some(), "jump 1 is stored");
        let next = o.to_publish();
        assert_eq!(next[0].expected_last, Some(PairSeq(3)), "not 11: refused");
        let refusal = o.refused(home, Xfer(2), 5, PairSeq(11), 9);
        assert_eq!(refusal, Refusal::Fenced, "epoch 9 owns the origin");
        // Its own earlier publish (epoch 5) at 12, whose ack was lost: learn it, go again.
        let refusal = o.refused(home, Xfer(2), 5, PairSeq(12), 5);
        assert_eq!(refusal, Refusal::Resynced);
        let again = o.to_publish();
        assert_eq!(again[0].jump.xfer, Xfer(2));
        assert_eq!(again[0].expected_last, Some(PairSeq(12)));
    }

    #[test]
    fn nothing_is_published_on_a_pair_subject_before_the_owner_fenced_it() {
        let (a, b) = neighbours();
        let home = InstanceId::primary(galaxy().home());
        let far = Pair {
            from: galaxy().home(),
            to: a,
        };
        let mut o = Outbox::new();
        o.fence_later(far);
        o.prepared(Seq(1), jump_to(a, 1));
        o.prepared(Seq(2), jump_to(b, 2));
        o.durable(home, Seq(2));
        let now: Vec<u64> = o.to_publish().iter().map(|p| p.jump.xfer.0).collect();
        assert_eq!(
            now,
            vec![2],
            "the jump towards the unfenced pair waits, the other goes"
        );
        o.fenced(far, PairSeq(9));
        let later = o.to_publish();
        assert_eq!(later[0].jump.xfer, Xfer(1));
        assert_eq!(later[0].expected_last, Some(PairSeq(9)));
    }

    #[test]
    fn a_refused_publish_learns_a_last_sequence_below_what_it_knew() {
        // A promotion (issue 20) re-homed the pair subject into the survivor's stream: its
        // sequences are the survivor's, below the 40 this writer knew of the lost region's.
        let (a, _) = neighbours();
        let home = InstanceId::primary(galaxy().home());
        let pair = Pair {
            from: galaxy().home(),
            to: a,
        };
        let mut o = Outbox::new();
        o.learn_last(pair, PairSeq(40));
        o.prepared(Seq(1), jump_to(a, 1));
        o.durable(home, Seq(1));
        assert_eq!(o.to_publish()[0].expected_last, Some(PairSeq(40)));
        let refusal = o.refused(home, Xfer(1), 5, PairSeq(7), 5);
        assert_eq!(refusal, Refusal::Resynced);
        let again = o.to_publish();
        assert_eq!(
            again[0].expected_last,
            Some(PairSeq(7)),
            "refused for ever at 40"
        );
    }

    #[test]
    fn a_takeover_republishes_every_committed_jump_and_aborts_none() {
        let g = galaxy();
        let rules = Rules::default();
        let mut home = SystemState::new(&g, g.home());
        for name in ["ann", "bob"] {
            let join = home.decide_join(&g, &rules, name, "k").unwrap();
            home.apply(Tick(1), &join).unwrap();
        }
        let (a, b) = neighbours();
        for (name, to) in [("ann", a), ("bob", b)] {
            let depart = home.decide_depart(&g, name, to).unwrap();
            home.apply(Tick(2), &depart).unwrap();
        }
        home.apply(Tick(3), &Event::DepartDone { xfer: Xfer(1) })
            .unwrap();
        let plan = at_takeover(&g, &rules, &home);
        assert_eq!(plan.len(), 1, "ann's jump is done");
        let AtTakeover::Republish(j) = &plan[0] else {
            panic!("{plan:?}")
        };
        assert_eq!(
            (j.xfer, j.to, j.player.name.as_str()),
            (Xfer(2), InstanceId::primary(b), "bob")
        );
    }

    #[test]
    fn a_destination_lands_each_jump_once_and_its_snapshot_never_skips_a_queued_one() {
        let g = galaxy();
        let (a, _) = neighbours();
        let mut dest = SystemState::new(&g, a);
        let mut inbox = Inbox::from_positions(&BTreeMap::new());
        let j1 = inbox
            .delivered(&dest, PairSeq(5), jump_to(a, 1))
            .expect("new");
        assert_eq!(j1.tseq, Seq(5), "numbered by its position");
        assert!(
            inbox.delivered(&dest, PairSeq(5), jump_to(a, 1)).is_none(),
            "redelivered"
        );
        let j2 = inbox
            .delivered(&dest, PairSeq(9), jump_to(a, 2))
            .expect("new");
        assert!(
            inbox.delivered(&dest, PairSeq(12), jump_to(a, 1)).is_none(),
            "a duplicate stored again"
        );
        let home = g.home();
        assert_eq!(
            inbox.positions(&dest)[&home],
            PairSeq(4),
            "nothing landed: before 5"
        );
        let arrive = Inbox::decide_landing(&dest, &j1).expect("lands");
        dest.apply(Tick(3), &arrive).unwrap();
        assert_eq!(
            inbox.positions(&dest)[&home],
            PairSeq(8),
            "1 landed, 2 queued"
        );
        assert!(Inbox::decide_landing(&dest, &j1).is_none(), "once");
        let arrive = Inbox::decide_landing(&dest, &j2).expect("lands");
        dest.apply(Tick(4), &arrive).unwrap();
        assert_eq!(
            inbox.positions(&dest)[&home],
            PairSeq(12),
            "all landed: what was read"
        );
        // A takeover from those positions reads nothing again; from earlier ones, it drops
        // what landed.
        let positions = inbox.positions(&dest);
        let mut again = Inbox::from_positions(&positions);
        assert_eq!(again.start_after(home), PairSeq(12));
        let mut early = Inbox::from_positions(&BTreeMap::from([(home, PairSeq(0))]));
        assert!(
            early.delivered(&dest, PairSeq(5), jump_to(a, 1)).is_none(),
            "landed"
        );
        assert!(again.delivered(&dest, PairSeq(13), jump_to(a, 3)).is_some());
    }

    /// Without a snapshot for a long while, what a destination holds of its pair subjects is
    /// what waits to land, not everything read since.
    #[test]
    fn a_destination_forgets_what_landed_without_waiting_for_a_snapshot() {
        let g = galaxy();
        let (a, _) = neighbours();
        let mut dest = SystemState::new(&g, a);
        let mut inbox = Inbox::from_positions(&BTreeMap::new());
        for x in 1..=(MAX_UNLANDED_PER_PAIR as u64 + 10) {
            let j = inbox
                .delivered(&dest, PairSeq(x), jump_to(a, x))
                .expect("new");
            let arrive = Inbox::decide_landing(&dest, &j).expect("lands");
            dest.apply(Tick(x), &arrive).unwrap();
        }
        assert!(inbox.unlanded() <= 1, "{} held", inbox.unlanded());
    }

    #[test]
    fn every_publish_is_fenced() {
        assert_eq!(publish_fence(PairSeq(0)), Some(PairSeq(0)));
        assert_eq!(publish_fence(PairSeq(41)), Some(PairSeq(41)));
    }

    #[test]
    #[should_panic(expected = "BUG: jump protocol")]
    fn numbers_that_do_not_grow_in_an_outbox_are_a_bug() {
        let (a, _) = neighbours();
        let mut o = Outbox::new();
        o.prepared(Seq(1), jump_to(a, 2));
        o.prepared(Seq(2), jump_to(a, 2));
    }

    proptest::proptest! {
        /// Whatever is lost, delayed, reordered or retried between one origin and the stream
        /// (dedup by id first, then the expected last sequence, as JetStream), each pair
        /// subject ends with every committed jump once, in number order, and nothing that was
        /// not committed.
        #[test]
        fn a_pair_subject_holds_each_committed_jump_once_in_order(
            ops in proptest::collection::vec((0u8..6, 0u8..8), 1..200)
        ) {
            let g = galaxy();
            let home = InstanceId::primary(g.home());
            let (a, b) = neighbours();
            let mut o = Outbox::new();
            let mut prepared = 0u64;
            let mut committed: Vec<u64> = Vec::new();
            // The stream: per pair, (position, number); the ids stored.
            let mut subjects: BTreeMap<Pair, Vec<(u64, u64)>> = BTreeMap::new();
            let mut ids: BTreeMap<u64, u64> = BTreeMap::new();
            let mut next_seq = 0u64;
            let mut network: Vec<Publish> = Vec::new();
            let mut answers: Vec<(u64, PublishAnswer)> = Vec::new();
            let mut store = |p: &Publish, subjects: &mut BTreeMap<Pair, Vec<(u64, u64)>>| {
                if let Some(&at) = ids.get(&p.jump.xfer.0) {
                    return Some(PublishAnswer::Duplicate(PairSeq(at)));
                }
                let subject = subjects.entry(p.pair).or_default();
                let last = subject.last().map_or(0, |m| m.0);
                if p.expected_last.is_some_and(|e| e.0 != last) {
                    return None;
                }
                next_seq += 1;
                subject.push((next_seq, p.jump.xfer.0));
                ids.insert(p.jump.xfer.0, next_seq);
                Some(PublishAnswer::Stored(PairSeq(next_seq)))
            };
            let drain = ops.len();
            for (i, (op, arg)) in ops.into_iter().chain(std::iter::repeat_n((9, 0), 400)).enumerate() {
                let quiet = i >= drain;
                match (op, quiet) {
                    (0, false) => {
                        prepared += 1;
                        let to = if arg % 2 == 0 { a } else { b };
                        o.prepared(Seq(prepared), jump_to(to, prepared));
                    }
                    (1, false) => {
                        let upto = prepared.saturating_sub(u64::from(arg % 3));
                        committed.extend(o.durable(home, Seq(upto)).iter().map(|j| j.xfer.0));
                    }
                    (2, false) if !network.is_empty() => {
                        let p = network.remove(usize::from(arg) % network.len());
                        match store(&p, &mut subjects) {
                            Some(answer) if arg % 4 != 0 => answers.push((p.jump.xfer.0, answer)),
                            Some(_) => {} // the answer is lost
                            None => {
                                let last = subjects[&p.pair].last().expect("refused: not empty").0;
                                let r = o.refused(home, p.jump.xfer, 1, PairSeq(last), 1);
                                proptest::prop_assert_eq!(r, Refusal::Resynced, "one writer");
                            }
                        }
                    }
                    (3, false) if !answers.is_empty() => {
                        let (x, answer) = answers.remove(usize::from(arg) % answers.len());
                        let _ = o.acked(home, Xfer(x), answer);
                    }
                    (4, false) => network.extend(o.to_publish()),
                    (5, false) => {
                        // A timeout: what is in flight with nothing on its way goes again.
                        let on_way = |x: Xfer| {
                            network.iter().any(|p| p.jump.xfer == x)
                                || answers.iter().any(|(n, _)| *n == x.0)
                        };
                        let stuck: Vec<Xfer> = o
                            .jumps()
                            .filter(|(j, s)| *s == Stage::InFlight && !on_way(j.xfer))
                            .map(|(j, _)| j.xfer)
                            .collect();
                        for x in stuck {
                            o.unanswered(home, x);
                        }
                    }
                    (_, false) => {}
                    _ => {
                        // Send what may go, deliver and answer everything in order, and time
                        // out what is in flight with nothing on its way.
                        network.extend(o.to_publish());
                        while !network.is_empty() {
                            let p = network.remove(0);
                            match store(&p, &mut subjects) {
                                Some(answer) => answers.push((p.jump.xfer.0, answer)),
                                None => {
                                    let last = subjects[&p.pair].last().expect("refused").0;
                                    o.refused(home, p.jump.xfer, 1, PairSeq(last), 1);
                                }
                            }
                        }
                        for (x, answer) in std::mem::take(&mut answers) {
                            let _ = o.acked(home, Xfer(x), answer);
                        }
                        let stuck: Vec<Xfer> = o
                            .jumps()
                            .filter(|(_, s)| *s == Stage::InFlight)
                            .map(|(j, _)| j.xfer)
                            .collect();
                        for x in stuck {
                            o.unanswered(home, x);
                        }
                        if quiet && o.jumps().all(|(_, s)| matches!(s, Stage::Prepared { .. })) {
                            committed.extend(o.durable(home, Seq(prepared)).iter().map(|j| j.xfer.0));
                        }
                    }
                }
            }
            proptest::prop_assert!(o.is_empty(), "everything committed is acknowledged at the end");
            let mut stored: Vec<u64> = Vec::new();
            for subject in subjects.values() {
                let numbers: Vec<u64> = subject.iter().map(|m| m.1).collect();
                proptest::prop_assert!(numbers.windows(2).all(|w| w[0] < w[1]), "in order, once: {:?}", numbers);
                stored.extend(numbers);
            }
            stored.sort_unstable();
            committed.sort_unstable();
            proptest::prop_assert_eq!(stored, committed, "each committed jump, and only those");
        }
    }
}
