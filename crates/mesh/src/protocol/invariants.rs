//! The invariants of the jump protocol (prepare, commit, handover, landing, void), each a small
//! named function that judges one step and says what is wrong, naming the jump.
//!
//! Each is checked twice: where its record is written (the shard and the departure pipeline:
//! a violation there is a bug, and [`must`] turns it into a crash with the message, before
//! anything wrong reaches a log) and where the record is read back (recovery, the audit: a
//! violation there is a damaged or forged log, reported as an error).
//!
//! Never does I/O, never changes what it is shown, never decides a rule of the game.

use sim::ids::Xfer;
use sim::instance::InstanceId;
use sim::player::Player;
use sim::system::SystemState;

use store::seq::Seq;

use crate::codec::Jump;

/// A broken invariant of the jump protocol: which one, and of which jump.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("jump protocol: transfer {xfer} of {from:?}: {what}")]
pub struct Violation {
    pub from: InstanceId,
    pub xfer: Xfer,
    pub what: String,
}

fn violation(from: InstanceId, xfer: Xfer, what: String) -> Result<(), Violation> {
    Err(Violation { from, xfer, what })
}

/// At a write site: a broken invariant is a bug, and going on would write it to a log.
#[track_caller]
pub fn must(checked: Result<(), Violation>) {
    if let Err(v) = checked {
        panic!("BUG: {v}");
    }
}

/// Prepare (`depart`, in the origin's log): the origin holds the jump as departing, towards the
/// jump's destination, with the player the jump carries, and its transfer number is one the
/// origin has given out (below its next).
pub fn prepared_by_origin(origin: &SystemState, jump: &Jump) -> Result<(), Violation> {
    let (from, xfer) = (jump.from, jump.xfer);
    if origin.instance_id() != from {
        let at = origin.instance_id();
        return violation(from, xfer, format!("prepared by {at:?}, not its origin"));
    }
    let Some(d) = origin.departing.get(&xfer) else {
        return violation(from, xfer, "its origin holds no such departure".into());
    };
    if d.to != jump.to {
        let what = format!("prepared towards {:?}, carried towards {:?}", d.to, jump.to);
        return violation(from, xfer, what);
    }
    if d.player != jump.player {
        return violation(from, xfer, "carries another player than it prepared".into());
    }
    if xfer >= origin.next_xfer {
        let what = format!(
            "numbered at or past the origin's next ({})",
            origin.next_xfer
        );
        return violation(from, xfer, what);
    }
    Ok(())
}

/// Transfer numbers grow per origin: jumps leave an origin (and reach a destination) in the
/// order of their numbers, which is what makes landing idempotent with one number per origin.
/// `previous` is the number of the origin's jump seen last at this place, if any.
pub fn transfer_grows(
    from: InstanceId,
    previous: Option<Xfer>,
    xfer: Xfer,
) -> Result<(), Violation> {
    match previous {
        Some(p) if xfer <= p => violation(from, xfer, format!("comes after transfer {p}")),
        _ => Ok(()),
    }
}

/// Commit (`jump`, in the transition log): the record is numbered (it has its sequence number
/// in the transition log), joins two different shards, and a batch's records follow each other.
/// `previous_tseq` is the sequence number of the jump committed just before in the same batch.
pub fn committed(jump: &Jump, previous_tseq: Option<Seq>) -> Result<(), Violation> {
    let (from, xfer) = (jump.from, jump.xfer);
    if jump.tseq == Seq(0) {
        return violation(
            from,
            xfer,
            "committed without a transition-log record".into(),
        );
    }
    if jump.from == jump.to {
        return violation(from, xfer, "jumps to where it is".into());
    }
    match previous_tseq {
        Some(p) if jump.tseq != p.next() => {
            let what = format!("record {} follows record {p} of its batch", jump.tseq);
            violation(from, xfer, what)
        }
        _ => Ok(()),
    }
}

/// Commit, read back by the origin (`depart.done` about to be written): a committed jump's
/// origin prepared it and still holds it.
pub fn commit_was_prepared(origin: &SystemState, xfer: Xfer, tseq: Seq) -> Result<(), Violation> {
    let from = origin.instance_id();
    if tseq == Seq(0) {
        return violation(
            from,
            xfer,
            "told committed without a transition-log record".into(),
        );
    }
    if !origin.departing.contains_key(&xfer) {
        return violation(
            from,
            xfer,
            format!("committed (record {tseq}) but not prepared here"),
        );
    }
    Ok(())
}

/// Handover (a committed jump given to its destination): it lands in the instance it was
/// committed to, it is committed, and it is new to the destination (its number is above what
/// the destination landed from that origin).
pub fn handed_to_its_destination(dest: &SystemState, jump: &Jump) -> Result<(), Violation> {
    let (from, xfer) = (jump.from, jump.xfer);
    if jump.to != dest.instance_id() {
        let what = format!(
            "committed towards {:?}, handed to {:?}",
            jump.to,
            dest.instance_id()
        );
        return violation(from, xfer, what);
    }
    if jump.tseq == Seq(0) {
        return violation(from, xfer, "handed over before its commit".into());
    }
    if let Some(&landed) = dest.landed_upto.get(&from) {
        if xfer <= landed {
            let what = format!("handed over live, but transfer {landed} of its origin landed");
            return violation(from, xfer, what);
        }
    }
    Ok(())
}

/// Landing (`arrive`, in the destination's log): the player who lands is the one who left, one
/// version on (a landing's player version follows the departure's).
pub fn landing_follows_departure(jump: &Jump, landed: &Player) -> Result<(), Violation> {
    let (from, xfer) = (jump.from, jump.xfer);
    if landed.name != jump.player.name {
        let what = format!("{} left, {} landed", jump.player.name, landed.name);
        return violation(from, xfer, what);
    }
    if landed.version != jump.player.version.next() {
        let (left, now) = (jump.player.version, landed.version);
        return violation(
            from,
            xfer,
            format!("left at version {left}, landed at {now}"),
        );
    }
    Ok(())
}

/// Landing, read back from the destination's state: the landing is the highest transfer of its
/// origin landed here, and the player is here.
pub fn landed_here(dest: &SystemState, jump: &Jump) -> Result<(), Violation> {
    let (from, xfer) = (jump.from, jump.xfer);
    if dest.landed_upto.get(&from) != Some(&xfer) {
        let upto = dest.landed_upto.get(&from).map(|x| x.0);
        return violation(
            from,
            xfer,
            format!("landed, but the highest landed is {upto:?}"),
        );
    }
    if !dest.players.contains_key(&jump.player.name) {
        return violation(
            from,
            xfer,
            format!("landed, but {} is not here", jump.player.name),
        );
    }
    Ok(())
}

/// Void (`depart.void`, written by recovery in the origin's log): only a jump whose prepare
/// the origin never made durably is void: its number is one the origin has not given out, and
/// it is not departing.
pub fn void_was_never_prepared(origin: &SystemState, xfer: Xfer) -> Result<(), Violation> {
    let from = origin.instance_id();
    if origin.departing.contains_key(&xfer) {
        return violation(from, xfer, "void, but its origin holds it prepared".into());
    }
    if xfer < origin.next_xfer {
        let what = format!(
            "void, but the origin gave its number out ({} next)",
            origin.next_xfer
        );
        return violation(from, xfer, what);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sim::galaxy::Galaxy;
    use sim::ids::Tick;
    use sim::rules::Rules;

    /// Ann joined at home and prepared a jump to the first neighbour: the origin's state, the
    /// destination's, and the jump as the transition log commits it (record 9).
    fn prepared() -> (SystemState, SystemState, Jump) {
        let g = Galaxy::default_galaxy();
        let rules = Rules::default();
        let mut home = SystemState::new(&g, g.home());
        let join = home.decide_join(&g, &rules, "ann", "k").unwrap();
        home.apply(Tick(1), &join).unwrap();
        let to = g.neighbours(g.home())[0];
        let depart = home.decide_depart(&g, "ann", to).unwrap();
        let xfer = depart.prepared_xfer().unwrap();
        home.apply(Tick(2), &depart).unwrap();
        let d = &home.departing[&xfer];
        let jump = Jump {
            from: home.instance_id(),
            xfer,
            to: d.to,
            t: Tick(2),
            travel_ticks: 3,
            player: d.player.clone(),
            tseq: Seq(9),
        };
        (home, SystemState::new(&g, to), jump)
    }

    #[test]
    fn a_prepared_jump_is_held_by_its_origin_as_it_leaves() {
        let (home, dest, jump) = prepared();
        assert_eq!(prepared_by_origin(&home, &jump), Ok(()));
        assert!(
            prepared_by_origin(&dest, &jump).is_err(),
            "prepared elsewhere"
        );
        let elsewhere = Jump {
            to: home.instance_id(),
            ..jump.clone()
        };
        let v = prepared_by_origin(&home, &elsewhere).unwrap_err();
        assert!(v.what.contains("prepared towards"), "{v}");
        let mut richer = jump.clone();
        richer.player.credits += 1;
        assert!(
            prepared_by_origin(&home, &richer).is_err(),
            "another player"
        );
        let unknown = Jump {
            xfer: jump.xfer.next(),
            ..jump
        };
        assert!(
            prepared_by_origin(&home, &unknown).is_err(),
            "never prepared"
        );
    }

    #[test]
    fn transfer_numbers_grow_per_origin() {
        let (_, _, jump) = prepared();
        assert_eq!(transfer_grows(jump.from, None, Xfer(1)), Ok(()));
        assert_eq!(transfer_grows(jump.from, Some(Xfer(1)), Xfer(2)), Ok(()));
        assert!(transfer_grows(jump.from, Some(Xfer(2)), Xfer(2)).is_err());
        let v = transfer_grows(jump.from, Some(Xfer(5)), Xfer(3)).unwrap_err();
        assert_eq!(v.what, "comes after transfer 5");
    }

    #[test]
    fn a_commit_is_a_numbered_record_of_a_prepared_jump() {
        let (home, dest, jump) = prepared();
        assert_eq!(committed(&jump, None), Ok(()));
        assert_eq!(committed(&jump, Some(Seq(8))), Ok(()));
        assert!(
            committed(&jump, Some(Seq(9))).is_err(),
            "records of a batch follow each other"
        );
        assert!(committed(
            &Jump {
                tseq: Seq(0),
                ..jump.clone()
            },
            None
        )
        .is_err());
        assert!(committed(
            &Jump {
                to: jump.from,
                ..jump.clone()
            },
            None
        )
        .is_err());
        assert_eq!(commit_was_prepared(&home, jump.xfer, jump.tseq), Ok(()));
        assert!(commit_was_prepared(&home, jump.xfer, Seq(0)).is_err());
        assert!(commit_was_prepared(&dest, jump.xfer, jump.tseq).is_err());
    }

    #[test]
    fn a_jump_is_handed_to_the_instance_it_was_committed_to_once() {
        let (home, mut dest, jump) = prepared();
        assert_eq!(handed_to_its_destination(&dest, &jump), Ok(()));
        let v = handed_to_its_destination(&home, &jump).unwrap_err();
        assert!(v.what.contains("handed to"), "{v}");
        assert!(handed_to_its_destination(
            &dest,
            &Jump {
                tseq: Seq(0),
                ..jump.clone()
            }
        )
        .is_err());
        dest.landed_upto.insert(jump.from, jump.xfer);
        assert!(
            handed_to_its_destination(&dest, &jump).is_err(),
            "landed already"
        );
    }

    #[test]
    fn a_landing_carries_the_player_who_left_one_version_on() {
        let (_, mut dest, jump) = prepared();
        let arrive = dest
            .decide_arrive(jump.from, jump.xfer, &jump.player)
            .unwrap();
        let sim::system::Event::Arrive { player, .. } = &arrive else {
            panic!("not an arrival: {arrive:?}")
        };
        assert_eq!(landing_follows_departure(&jump, player), Ok(()));
        let mut stale = player.clone();
        stale.version = jump.player.version;
        let v = landing_follows_departure(&jump, &stale).unwrap_err();
        assert!(v.what.contains("landed at"), "{v}");
        let mut other = player.clone();
        other.name = "bob".into();
        assert!(landing_follows_departure(&jump, &other).is_err());
        assert!(landed_here(&dest, &jump).is_err(), "not applied yet");
        dest.apply(Tick(5), &arrive).unwrap();
        assert_eq!(landed_here(&dest, &jump), Ok(()));
    }

    #[test]
    fn only_a_jump_never_prepared_is_void() {
        let (home, _, jump) = prepared();
        assert_eq!(void_was_never_prepared(&home, home.next_xfer), Ok(()));
        assert_eq!(
            void_was_never_prepared(&home, Xfer(home.next_xfer.0 + 5)),
            Ok(())
        );
        assert!(void_was_never_prepared(&home, jump.xfer).is_err());
    }

    #[test]
    #[should_panic(expected = "BUG: jump protocol: transfer 3")]
    fn a_broken_invariant_at_a_write_site_is_a_crash_naming_the_jump() {
        let (_, _, jump) = prepared();
        must(transfer_grows(jump.from, Some(Xfer(3)), Xfer(3)));
    }
}
