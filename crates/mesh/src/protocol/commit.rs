//! An origin's side of the jump protocol after the prepare: the commit.
//!
//! A prepared jump (its `depart` appended to the origin's log) waits in [`Commits`], in the
//! order of its transfer number. A batch is taken ([`Commits::take_batch`]) and its `jump`
//! records appended to the transition log at once, without waiting for the `depart` records to
//! be durable ([`appended`] gives each its record's number). The batch is committed when both
//! are durable ([`is_committed`]): the two records durable together are the commit point (a
//! parallel commit). Only then may the player be told, the destination handed the jump
//! (first), and the origin told to record `depart.done` (after). A crash before leaves a
//! `jump` whose `depart` may be lost: recovery voids it ([`super::settle`]); nobody was told.
//!
//! Pure: the departure pipeline (tokio) and the simulator drive it. Never does I/O, never
//! waits: durability is told to it.

use std::collections::VecDeque;

use sim::ids::Xfer;
use sim::instance::InstanceId;
use sim::system::{Event, SystemState};
use store::seq::Seq;

use super::invariants::{self as inv, must};
use crate::codec::Jump;

/// A prepared jump waiting for its commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prepared {
    /// Sequence number of the `depart` record in the origin's log.
    pub prepare_seq: Seq,
    /// The jump (`tseq` is 0 until its record is appended: see [`appended`]).
    pub jump: Jump,
}

/// The prepared jumps of one origin not yet appended to the transition log, in the order of
/// their numbers.
#[derive(Clone, Debug, Default)]
pub struct Commits {
    waiting: VecDeque<Prepared>,
    /// The number of the last jump taken or queued: they leave in the order of their numbers.
    last_xfer: Option<Xfer>,
}

impl Commits {
    pub fn new() -> Commits {
        Commits::default()
    }

    /// Queues a prepared jump; its number must be above every number queued before.
    pub fn push(&mut self, p: Prepared) {
        must(inv::transfer_grows(
            p.jump.from,
            self.last_xfer,
            p.jump.xfer,
        ));
        self.last_xfer = Some(p.jump.xfer);
        self.waiting.push_back(p);
    }

    /// The next batch to append to the transition log: at most `max` jumps, oldest first.
    pub fn take_batch(&mut self, max: usize) -> Vec<Prepared> {
        let n = self.waiting.len().min(max);
        self.waiting.drain(..n).collect()
    }

    /// How many jumps wait to be appended.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// The jumps waiting, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Prepared> + '_ {
        self.waiting.iter()
    }
}

/// Numbers the `jump` records of `batch`, appended to the transition log as records
/// `first_tseq`, `first_tseq + 1`, ..., and checks each is a commit the protocol allows
/// (numbers of the transition log grow with the batch).
pub fn appended(batch: &mut [Prepared], first_tseq: Seq) {
    for (p, tseq) in batch.iter_mut().zip(first_tseq.0..) {
        p.jump.tseq = Seq(tseq);
    }
    let mut previous = None;
    for p in batch.iter() {
        must(inv::committed(&p.jump, previous));
        previous = Some(p.jump.tseq);
    }
}

/// Numbers the jumps of `batch` on a node of a spread galaxy, which has no transition log: by
/// their `depart` records (durable: the commit point), which grow with the batch.
pub fn at_prepare(batch: &mut [Prepared]) {
    let mut previous = Seq(0);
    for p in batch.iter_mut() {
        p.jump.tseq = p.prepare_seq;
        must(inv::committed(&p.jump, None));
        assert!(
            p.jump.tseq > previous,
            "BUG: jump protocol: departs {previous} and {} of one batch out of order",
            p.jump.tseq
        );
        previous = p.jump.tseq;
    }
}

/// The origin's record a batch waits for: its last `depart`.
pub fn last_prepare(batch: &[Prepared]) -> Seq {
    batch
        .iter()
        .map(|p| p.prepare_seq)
        .max()
        .unwrap_or_default()
}

/// The transition log's record a batch waits for: its last `jump` (0 before [`appended`]).
pub fn last_jump(batch: &[Prepared]) -> Seq {
    batch.iter().map(|p| p.jump.tseq).max().unwrap_or_default()
}

/// Whether `batch`, once [`appended`], is committed: the origin's log durable up to its last
/// `depart` (`own_durable`) and the transition log up to its last `jump`
/// (`transitions_durable`). An empty batch is never committed.
pub fn is_committed(batch: &[Prepared], own_durable: Seq, transitions_durable: Seq) -> bool {
    let appended = batch.iter().all(|p| p.jump.tseq > Seq(0));
    !batch.is_empty()
        && appended
        && own_durable >= last_prepare(batch)
        && transitions_durable >= last_jump(batch)
}

/// What a committed jump sets off, in the order the driver must carry it out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handover {
    /// Hand the jump to its destination (`jump.to`), first: once the origin has recorded
    /// `depart.done`, the jump must already be on its way (a primary closing an instance relies
    /// on it: a move it no longer holds as prepared is queued at the instance).
    Land(Jump),
    /// Tell the origin the jump is committed: it records [`done`].
    Done {
        origin: InstanceId,
        xfer: Xfer,
        tseq: Seq,
    },
    /// Tell the player the jump happened.
    Answer(Jump),
}

/// The handovers of a committed batch, jump by jump in the batch's order.
pub fn hand_over(batch: Vec<Prepared>) -> Vec<Handover> {
    assert!(
        batch.iter().all(|p| p.jump.tseq > Seq(0)),
        "BUG: a jump is handed over before its record is appended"
    );
    batch
        .into_iter()
        .flat_map(|p| {
            let done = Handover::Done {
                origin: p.jump.from,
                xfer: p.jump.xfer,
                tseq: p.jump.tseq,
            };
            [
                Handover::Land(p.jump.clone()),
                done,
                Handover::Answer(p.jump),
            ]
        })
        .collect()
}

/// The origin's record once told its jump `xfer` is committed (record `tseq` of the
/// transition log): `depart.done`, the departure dropped for good.
pub fn done(origin: &SystemState, xfer: Xfer, tseq: Seq) -> Event {
    must(inv::commit_was_prepared(origin, xfer, tseq));
    Event::DepartDone { xfer }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sim::galaxy::Galaxy;
    use sim::ids::Tick;
    use sim::instance::InstanceId;
    use sim::player::Player;

    fn prepared(xfer: u64, prepare_seq: u64) -> Prepared {
        let g = Galaxy::default_galaxy();
        Prepared {
            prepare_seq: Seq(prepare_seq),
            jump: Jump {
                from: InstanceId::primary(g.home()),
                xfer: Xfer(xfer),
                to: InstanceId::primary(g.neighbours(g.home())[0]),
                t: Tick(0),
                travel_ticks: 1,
                player: Player::starter("ann", &sim::rules::Rules::default()),
                tseq: Seq(0),
            },
        }
    }

    #[test]
    fn a_batch_commits_only_once_both_records_are_durable() {
        let mut c = Commits::new();
        c.push(prepared(1, 10));
        c.push(prepared(2, 12));
        let mut batch = c.take_batch(8);
        assert!(c.is_empty());
        assert!(!is_committed(&batch, Seq(99), Seq(99)), "not appended yet");
        appended(&mut batch, Seq(40));
        assert_eq!(last_jump(&batch), Seq(41));
        assert!(
            !is_committed(&batch, Seq(11), Seq(41)),
            "depart 12 not durable"
        );
        assert!(
            !is_committed(&batch, Seq(12), Seq(40)),
            "jump 41 not durable"
        );
        assert!(is_committed(&batch, Seq(12), Seq(41)));
        assert!(!is_committed(&[], Seq(12), Seq(41)), "nothing to commit");
        let kinds: Vec<&str> = hand_over(batch)
            .iter()
            .map(|h| match h {
                Handover::Land(_) => "land",
                Handover::Done { .. } => "done",
                Handover::Answer(_) => "answer",
            })
            .collect();
        let expected = ["land", "done", "answer"];
        assert_eq!(
            kinds,
            [expected, expected].concat(),
            "destination first, per jump"
        );
    }

    #[test]
    #[should_panic(expected = "BUG: jump protocol")]
    fn numbers_that_do_not_grow_are_a_bug() {
        let mut c = Commits::new();
        c.push(prepared(2, 10));
        c.push(prepared(2, 11));
    }

    #[test]
    fn batches_leave_oldest_first_and_at_most_max() {
        let mut c = Commits::new();
        for x in 1..=5 {
            c.push(prepared(x, x * 2));
        }
        let first: Vec<u64> = c.take_batch(3).iter().map(|p| p.jump.xfer.0).collect();
        assert_eq!(first, [1, 2, 3]);
        assert_eq!(c.len(), 2);
    }
}
