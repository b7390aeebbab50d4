//! The auditor on the export of a spread galaxy (issue 19): a sound directory of the fixture,
//! rewritten as `mltrader export` writes a spread galaxy (the jumps between systems in
//! `jumps.log`, numbered from 1; the transition log empty), passes; and each problem a spread
//! galaxy adds is caught on a directory that has exactly that problem.
//!
//! The fixture's snapshots are removed from each copy: a forged log would otherwise also
//! disagree with its snapshot, and each test asserts the exact list of problems.

use super::forge::{
    as_spread_export, crowded_copy, edit_log, find, last_tick, read_recs, remove, sound_copy,
    write_recs, Copy, Rec,
};
use super::*;

/// `c` rewritten as the export of a spread galaxy ([`as_spread_export`]).
fn spread(c: &Copy) {
    as_spread_export(&c.datadir, &c.galaxy);
}

fn spread_copy() -> Copy {
    let c = sound_copy();
    spread(&c);
    c
}

/// Audits `c` and asserts that its problems are exactly one containing each of `expected`.
fn assert_exact_problems(c: &Copy, expected: &[&str]) -> AuditReport {
    let r = audit(&c.datadir, &c.galaxy);
    assert_eq!(
        r.problems.len(),
        expected.len(),
        "expected {expected:#?}, found {:#?}",
        r.problems
    );
    for e in expected {
        assert!(
            r.problems.iter().any(|p| p.contains(e)),
            "no problem contains {e:?}; problems: {:#?}",
            r.problems
        );
    }
    r
}

/// `jumps.log`'s jump of `player` to `to`.
fn published_jump(c: &Copy, player: &str, to: SystemId) -> Rec {
    let recs = read_recs(&c.datadir.jumps_log());
    let i = find(&recs, |r| {
        r.is("jump", "player", player) && r.get("to") == Some(c.galaxy.slug(to))
    });
    recs[i].clone()
}

#[test]
fn a_spread_export_of_clean_jumps_between_systems_has_no_problem() {
    let c = spread_copy();
    let r = audit(&c.datadir, &c.galaxy);
    assert!(r.ok(), "{:#?}", r.problems);
    assert!(r.notes.is_empty(), "{:#?}", r.notes);
    // ann out and back, bob and cat out: four departs, all committed, all landed.
    assert_eq!((r.players, r.jumps, r.jumps_in_flight), (4, 4, 0));
    assert_eq!(read_recs(&c.datadir.jumps_log()).len(), 4);
}

#[test]
fn a_spread_export_with_moves_between_instances_has_no_problem() {
    let (c, at, _) = crowded_copy();
    spread(&c);
    let moves = read_recs(&c.system_log(at.system))
        .iter()
        .filter(|r| r.kind == "depart")
        .count();
    assert!(
        moves > 0,
        "the crowded fixture moves players into instances"
    );
    assert!(
        read_recs(&c.datadir.jumps_log()).is_empty(),
        "moves are never published"
    );
    let r = audit(&c.datadir, &c.galaxy);
    assert!(r.ok(), "{:#?}", r.problems);
    assert!(r.jumps >= moves as u64, "every move is a committed jump");
}

#[test]
fn a_jump_landed_twice_in_a_spread_galaxy_is_a_problem() {
    let c = spread_copy();
    let xfer = published_jump(&c, "cat", c.away)
        .get("xfer")
        .unwrap()
        .to_string();
    edit_log(&c.system_log(c.away), |recs| {
        let i = find(recs, |r| r.is("arrive", "xfer", &xfer));
        let again = recs[i].unbatched();
        recs.push(again);
    });
    assert_exact_problems(&c, &[&format!("jump {xfer} lands twice")]);
}

#[test]
fn a_depart_done_without_its_published_jump_is_a_problem() {
    let c = spread_copy();
    let xfer = published_jump(&c, "cat", c.away)
        .get("xfer")
        .unwrap()
        .to_string();
    edit_log(&c.datadir.jumps_log(), |recs| {
        let i = find(recs, |r| r.is("jump", "xfer", &xfer));
        remove(recs, i);
    });
    // Both are true: done before published, and landed without being read from the pair.
    let r = assert_exact_problems(
        &c,
        &[
            &format!("jump {xfer} of 'cat' is marked done but jumps.log does not hold it"),
            &format!(
                "jump {xfer} of 'cat' lands in {}, but jumps.log does not hold it",
                c.galaxy.slug(c.away)
            ),
        ],
    );
    let origin = format!("{} record ", c.system_log(c.home).display());
    assert!(
        r.problems.iter().any(|p| p.starts_with(&origin)),
        "the problem names the origin's log and record: {:#?}",
        r.problems
    );
}

#[test]
fn a_published_jump_of_another_player_than_its_depart_is_a_problem() {
    let c = spread_copy();
    let xfer = published_jump(&c, "cat", c.away)
        .get("xfer")
        .unwrap()
        .to_string();
    edit_log(&c.datadir.jumps_log(), |recs| {
        let i = find(recs, |r| r.is("jump", "xfer", &xfer));
        recs[i].set("player", "ghost");
    });
    assert_exact_problems(
        &c,
        &[&format!(
            "jump {xfer} is published for 'ghost', but its depart is of 'cat'"
        )],
    );
}

#[test]
fn a_published_jump_towards_another_system_than_its_depart_is_a_problem() {
    let c = spread_copy();
    let xfer = published_jump(&c, "cat", c.away)
        .get("xfer")
        .unwrap()
        .to_string();
    let elsewhere = c.galaxy.neighbours(c.home)[1];
    edit_log(&c.datadir.jumps_log(), |recs| {
        let i = find(recs, |r| r.is("jump", "xfer", &xfer));
        recs[i].set("to", c.galaxy.slug(elsewhere));
    });
    assert_exact_problems(
        &c,
        &[&format!(
            "jump {xfer} is published towards {}, but its depart goes to {}",
            c.galaxy.slug(elsewhere),
            c.galaxy.slug(c.away)
        )],
    );
}

#[test]
fn a_published_jump_never_departed_is_a_problem() {
    let c = spread_copy();
    let mut forged = published_jump(&c, "cat", c.away);
    let xfer = format!("{}:99", c.galaxy.slug(c.home));
    forged.set("xfer", &xfer);
    edit_log(&c.datadir.jumps_log(), |recs| recs.push(forged));
    assert_exact_problems(
        &c,
        &[&format!(
            "jump {xfer} of 'cat' is published, but its origin never departed it"
        )],
    );
}

#[test]
fn a_depart_abort_in_a_spread_galaxy_is_a_problem() {
    let c = spread_copy();
    let jump = published_jump(&c, "cat", c.away);
    let xfer = jump.get("xfer").unwrap().to_string();
    let v: u64 = jump.get("v").unwrap().parse().unwrap();
    // Home cancels cat's committed jump instead of marking it done, and away never lands it
    // (cat's log says the same): cat is back home, in one place, and the cancel is the problem.
    edit_log(&c.system_log(c.home), |recs| {
        let i = find(recs, |r| r.is("depart.done", "xfer", &xfer));
        recs[i].kind = "depart.abort".into();
        recs[i].fields.push(("player".into(), "cat".into()));
        recs[i].fields.push(("v".into(), (v + 1).to_string()));
    });
    edit_log(&c.system_log(c.away), |recs| {
        let i = find(recs, |r| r.is("arrive", "xfer", &xfer));
        remove(recs, i);
    });
    edit_log(&c.datadir.player_log("cat"), |recs| {
        let last = recs.last_mut().unwrap();
        assert_eq!((last.seq, last.kind.as_str()), (v + 1, "arrive"));
        last.kind = "depart.abort".into();
    });
    assert_exact_problems(
        &c,
        &[&format!(
            "jump {xfer} of 'cat' is cancelled (depart.abort), but in a spread galaxy a durable \
             depart is committed and never cancelled"
        )],
    );
}

#[test]
fn a_transition_log_with_records_in_a_spread_export_is_a_problem() {
    let c = spread_copy();
    let t = last_tick(&read_recs(&c.system_log(c.home)));
    write_recs(
        &c.datadir.transitions_log(),
        1,
        &[published_jump(&c, "cat", c.away).at_tick(&t)],
    );
    assert_exact_problems(
        &c,
        &["a spread galaxy, which has no transition log: its jumps would not be judged"],
    );
}

#[test]
fn a_move_marked_done_that_never_landed_is_a_problem() {
    let (c, at, trader) = crowded_copy();
    spread(&c);
    // The last move into an instance of a player who did nothing there after landing: its
    // landing (and the player's log line of it) is lost, its depart.done kept.
    let primary = read_recs(&c.system_log(at.system));
    let moved = primary
        .iter()
        .rev()
        .filter(|r| r.kind == "depart" && r.get("to").is_some_and(|to| to.contains('.')))
        .find(|r| r.get("player") != Some(trader.as_str()))
        .expect("a player moved into an instance")
        .clone();
    let (xfer, player) = (moved.get("xfer").unwrap(), moved.get("player").unwrap());
    let instance = moved.get("to").unwrap().to_string();
    let log = c.datadir.system_log(&instance);
    let mut version = 0;
    edit_log(&log, |recs| {
        let i = find(recs, |r| r.is("arrive", "xfer", xfer));
        version = recs[i].get("v").unwrap().parse::<u64>().unwrap();
        assert!(
            !recs[i + 1..]
                .iter()
                .any(|r| r.get("player") == Some(player)),
            "{player} did nothing after landing"
        );
        remove(recs, i);
    });
    edit_log(&c.datadir.player_log(player), |recs| {
        assert_eq!(
            recs.last().unwrap().seq,
            version,
            "the landing is its last line"
        );
        recs.pop();
    });
    assert_exact_problems(
        &c,
        &[&format!(
            "move {xfer} of '{player}' is marked done but never landed in {instance}"
        )],
    );
}
