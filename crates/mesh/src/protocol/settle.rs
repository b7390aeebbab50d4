//! What recovery completes, voids, cancels or hands over again, decided from what the logs
//! hold after any stop: the states replayed from the systems' logs and the transition log's
//! `jump` records, in order (docs/PROTOCOL.md, "Recovery").
//!
//! - A `jump` whose `depart` its origin holds is committed: handed to its destination again if
//!   it has not landed there (landing is idempotent), and `depart.done` if still prepared.
//! - A `jump` whose `depart` the crash lost (the two are written at once) is void: the origin
//!   records `depart.void` and never uses the number again; nobody was told it happened.
//! - A jump still prepared whose `jump` record the crash lost is aborted (`depart.abort`: the
//!   player is back, fuel refunded; nobody was told it had left).
//! - An instance's trade left in escrow is settled if the primary's market took it, refunded
//!   otherwise; the primary then forgets the outcome (`trade.done`).
//!
//! Pure: recovery (files or memory) and the simulator drive it; it reads what it is shown and
//! returns the events to record, in order. Never does I/O, never applies an event.

use std::collections::BTreeMap;

use sim::galaxy::{Galaxy, SystemId};
use sim::ids::{EscrowId, Xfer};
use sim::instance::InstanceId;
use sim::market::Trade;
use sim::system::{Event, SystemState};
use store::seq::Seq;

use super::bugs::{self, Bug};
use super::invariants::{
    commit_was_prepared, committed, handed_to_its_destination, must, prepared_by_origin,
    transfer_grows, void_was_never_prepared, Violation,
};
use crate::codec::{xfer_text, Jump};

/// Why a `jump` record of the transition log cannot be read as the other logs have it.
#[derive(Debug, thiserror::Error)]
pub enum BadJump {
    #[error("jump {jump} comes from an instance with no log")]
    NoOrigin { jump: String },
    #[error("jump {jump} goes to {to}, which was never opened")]
    NoDestination { jump: String, to: String },
    /// The record breaks an invariant of the jump protocol (a damaged or forged log).
    #[error("jump {jump}: {violation}")]
    Protocol {
        jump: String,
        #[source]
        violation: Violation,
    },
}

/// The transition log's jumps, sorted as they are read ([`JumpsRead::read`]).
#[derive(Debug, Default)]
pub struct JumpsRead {
    /// Jumps whose prepare is durable in their origin: committed, with their record's sequence
    /// number in the transition log.
    pub committed: BTreeMap<(InstanceId, Xfer), Seq>,
    /// Committed jumps not yet landed, per destination, in the order read (hand them over in
    /// that order).
    pub landings: BTreeMap<InstanceId, Vec<Jump>>,
    /// Jumps whose prepare the crash lost, per origin, in order: void.
    pub voids: BTreeMap<InstanceId, Vec<Xfer>>,
    /// The last jump number read per origin (they must grow).
    last_xfer: BTreeMap<InstanceId, Xfer>,
}

impl JumpsRead {
    /// Sorts one `jump` record (read in the transition log's order): void, committed, to land,
    /// or an error saying why the logs disagree. `state_of` gives the replayed state of an
    /// instance (None: it has no log).
    pub fn read<'a>(
        &mut self,
        galaxy: &Galaxy,
        state_of: impl Fn(InstanceId) -> Option<&'a SystemState>,
        jump: Jump,
    ) -> Result<(), BadJump> {
        let text = || xfer_text(galaxy, jump.from, jump.xfer);
        let protocol = |violation| BadJump::Protocol {
            jump: text(),
            violation,
        };
        let Some(origin) = state_of(jump.from) else {
            return Err(BadJump::NoOrigin { jump: text() });
        };
        committed(&jump, None).map_err(protocol)?;
        // Numbers start at 1: a first jump numbered 0 comes after none, and is refused too.
        let previous = self
            .last_xfer
            .insert(jump.from, jump.xfer)
            .unwrap_or_default();
        transfer_grows(jump.from, Some(previous), jump.xfer).map_err(protocol)?;
        // A jump whose prepare was lost in the crash (the two were written at once) is void:
        // nobody was told it happened. One voided by an earlier start stays void.
        if jump.xfer >= origin.next_xfer && !bugs::on(Bug::LostPrepareLands) {
            self.voids.entry(jump.from).or_default().push(jump.xfer);
            return Ok(());
        }
        if origin.voided.contains(&jump.xfer) {
            return Ok(());
        }
        if origin.departing.contains_key(&jump.xfer) {
            prepared_by_origin(origin, &jump).map_err(protocol)?;
            self.committed.insert((jump.from, jump.xfer), jump.tseq);
        }
        let Some(dest) = state_of(jump.to) else {
            return Err(BadJump::NoDestination {
                jump: text(),
                to: jump.to.slug(galaxy),
            });
        };
        // Not landed yet: handed over again (one already landed is not: landing is
        // idempotent), and the handover's invariant is checked like a live one, not used as
        // the filter (a violation is refused, not taken for "landed").
        let landed = dest
            .landed_upto
            .get(&jump.from)
            .copied()
            .unwrap_or_default();
        if bugs::on(Bug::LandTwice) {
            // The bug: every committed jump is handed over again, landed or not, unchecked.
            self.landings.entry(jump.to).or_default().push(jump);
        } else if jump.xfer > landed {
            handed_to_its_destination(dest, &jump).map_err(protocol)?;
            self.landings.entry(jump.to).or_default().push(jump);
        }
        Ok(())
    }

    /// How many committed jumps are to be handed over again.
    pub fn in_flight(&self) -> usize {
        self.landings.values().map(Vec::len).sum()
    }
}

/// The `depart.void` events of origin `state` for the jumps `xfers` whose prepare was lost,
/// in order: recorded before the origin prepares anything again.
pub fn voids(state: &SystemState, xfers: &[Xfer]) -> Vec<Event> {
    xfers
        .iter()
        .map(|&xfer| {
            must(void_was_never_prepared(state, xfer));
            Event::DepartVoid { xfer }
        })
        .collect()
}

/// For each jump still prepared in `state`: `depart.done` if the transition log holds it
/// (`committed`), `depart.abort` otherwise, in the order of their numbers.
pub fn prepared(state: &SystemState, committed: &BTreeMap<(InstanceId, Xfer), Seq>) -> Vec<Event> {
    let at = state.instance_id();
    state
        .departing
        .iter()
        .map(|(&xfer, d)| match committed.get(&(at, xfer)) {
            Some(&tseq) => {
                must(commit_was_prepared(state, xfer, tseq));
                Event::DepartDone { xfer }
            }
            None => Event::DepartAbort {
                xfer,
                player: d.player.name.clone(),
            },
        })
        .collect()
}

/// What the primaries' markets took of their instances' escrowed trades: by (system,
/// instance, escrow), the trade as taken (its total and the station's fee).
pub type EscrowOutcomes = BTreeMap<(SystemId, u16, EscrowId), Trade>;

/// The outcomes the primaries among `states` hold.
pub fn escrow_outcomes<'a>(states: impl IntoIterator<Item = &'a SystemState>) -> EscrowOutcomes {
    states
        .into_iter()
        .filter(|s| s.is_primary())
        .flat_map(|s| {
            let system = s.id;
            let taken = s.remote_trades.iter();
            taken.map(move |((n, id), o)| ((system, *n, *id), o.trade))
        })
        .collect()
}

/// For each trade of instance `state` left in escrow: settled if its primary's market took it
/// (`outcomes`), refunded otherwise. Returns the events, and how many of them settle.
pub fn escrows(state: &SystemState, outcomes: &EscrowOutcomes) -> (Vec<Event>, usize) {
    let (system, n) = (state.id, state.instance);
    let mut settled = 0;
    let events = state
        .escrows
        .keys()
        .map(|&id| {
            let mut taken = outcomes.get(&(system, n, id));
            if bugs::on(Bug::SettleAndRefund) {
                taken = None;
            }
            settled += usize::from(taken.is_some());
            state.decide_settle(id, taken).expect("an open escrow")
        })
        .collect();
    (events, settled)
}

/// Once every instance's log holds its escrows' settlements durably: the `trade.done` events
/// by which primary `state` forgets the outcomes.
pub fn forget_outcomes(state: &SystemState) -> Vec<Event> {
    state
        .remote_trades
        .keys()
        .map(|&(instance, escrow)| Event::RemoteTradeDone { instance, escrow })
        .collect()
}
