//! The auditor proven: a sound run audits clean, and each problem `check` can report is
//! caught on a data directory that has exactly that problem.

use super::*;
use crate::directory::SystemPlace;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_the_logs_gives_the_live_state_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let datadir = DataDir::at(dir.path());
    let galaxy = Galaxy::default_galaxy();
    let mesh = crate::test_support::start_quick(&datadir, &galaxy).await;
    for i in 0..12 {
        mesh.join(&format!("p {i}"), "k").await.unwrap();
    }
    for j in 0..60usize {
        let name = format!("p {}", j % 12);
        let Some(SystemPlace::In(here)) = mesh.locate(&name) else {
            panic!("{name} is not in a system");
        };
        if j % 5 == 0 {
            let _ = mesh.refuel(&name, None).await;
        }
        let options = mesh.galaxy().neighbours(here);
        mesh.jump(&name, options[j % options.len()]).await.unwrap();
        mesh.wait_landing(&name).await.unwrap();
    }
    let live = mesh.stop().await.unwrap();
    let replayed = audit(&datadir, &galaxy);
    assert!(replayed.ok(), "{:?}", replayed.problems);
    assert_eq!(live.len(), galaxy.len());
    for s in &live {
        assert_eq!(
            replayed.system_hashes.get(&s.slug),
            Some(&s.state_hash),
            "{} replays to another state",
            s.system
        );
    }
    let spent = replayed.credits_spent;
    assert!(spent > 0, "some fuel was bought");
    assert_eq!(replayed.credits_held, replayed.credits_granted - spent);
}

use super::forge::{
    crowded_copy, edit_log, find, last_tick, read_recs, remove, sound_copy, write_recs, Copy, Rec,
};

/// Audits `c` and asserts that it fails with a problem containing each of `expected`.
fn assert_problems(c: &Copy, expected: &[&str]) -> AuditReport {
    let r = audit(&c.datadir, &c.galaxy);
    assert!(!r.ok(), "no problem found; notes: {:#?}", r.notes);
    for e in expected {
        assert!(
            r.problems.iter().any(|p| p.contains(e)),
            "no problem contains {e:?}; problems: {:#?}",
            r.problems
        );
    }
    r
}

/// The transition log's `jump` of `player` to `to`.
fn jump_of(c: &Copy, player: &str, to: sim::galaxy::SystemId) -> Rec {
    let recs = read_recs(&c.datadir.transitions_log());
    let i = find(&recs, |r| {
        r.is("jump", "player", player) && r.get("to") == Some(c.galaxy.slug(to))
    });
    recs[i].clone()
}

#[test]
fn the_sound_directory_has_no_problem_and_no_note() {
    let c = sound_copy();
    let r = audit(&c.datadir, &c.galaxy);
    assert!(r.ok(), "{:#?}", r.problems);
    assert!(r.notes.is_empty(), "{:#?}", r.notes);
    assert_eq!((r.players, r.jumps, r.jumps_in_flight), (4, 4, 0));
    assert!(r.trades >= 1 && r.credits_spent > 0);
}

#[test]
fn a_player_in_two_systems_is_a_problem() {
    let c = sound_copy();
    // `bob` joins again in a third system, while the first `bob` is away: a second `bob`.
    let join = read_recs(&c.system_log(c.home))
        .into_iter()
        .find(|r| r.is("join", "player", "bob"))
        .unwrap();
    let elsewhere = c.galaxy.neighbours(c.home)[1];
    edit_log(&c.system_log(elsewhere), |recs| {
        let t = last_tick(recs);
        recs.push(join.unbatched().at_tick(&t));
    });
    assert_problems(
        &c,
        &[
            "player 'bob' is in 2 places",
            "player 'bob' history has a gap or repeat",
        ],
    );
}

#[test]
fn a_player_in_no_place_is_a_problem() {
    let c = sound_copy();
    // `cat`'s jump and landing are rewritten as another player's: `cat` left and is nowhere.
    let xfer = jump_of(&c, "cat", c.away).get("xfer").unwrap().to_string();
    edit_log(&c.datadir.transitions_log(), |recs| {
        let i = find(recs, |r| r.is("jump", "xfer", &xfer));
        recs[i].set("player", "ghost");
    });
    edit_log(&c.system_log(c.away), |recs| {
        let i = find(recs, |r| r.is("arrive", "xfer", &xfer));
        recs[i].set("player", "ghost");
    });
    assert_problems(&c, &["player 'cat' is in 0 places"]);
}

#[test]
fn a_jump_landed_twice_is_a_problem() {
    let c = sound_copy();
    let xfer = jump_of(&c, "cat", c.away).get("xfer").unwrap().to_string();
    edit_log(&c.system_log(c.away), |recs| {
        let i = find(recs, |r| r.is("arrive", "xfer", &xfer));
        let again = recs[i].unbatched();
        recs.push(again);
    });
    let r = assert_problems(&c, &[&format!("jump {xfer} lands twice")]);
    assert!(r.problems[0].contains(&c.system_log(c.away).display().to_string()));
}

#[test]
fn a_jump_that_can_never_land_is_a_problem() {
    let c = sound_copy();
    // `bob` left home before `cat`, both for `away`; `away` forgets `bob`'s landing but keeps
    // `cat`'s: `bob`'s jump is in flight behind a later landed jump of its origin.
    let xfer = jump_of(&c, "bob", c.away).get("xfer").unwrap().to_string();
    edit_log(&c.system_log(c.away), |recs| {
        let i = find(recs, |r| r.is("arrive", "xfer", &xfer));
        remove(recs, i);
    });
    assert_problems(
        &c,
        &[&format!(
            "jump {xfer} of 'bob' is in flight, but {} has landed a later jump of its origin",
            c.galaxy.slug(c.away)
        )],
    );
}

#[test]
fn a_void_jump_that_landed_is_a_problem() {
    let c = sound_copy();
    // `cat`'s departure (home's last) is lost from home's log, and home voids it as a start
    // after a crash would; `away` has landed it all the same.
    let xfer = jump_of(&c, "cat", c.away).get("xfer").unwrap().to_string();
    edit_log(&c.system_log(c.home), |recs| {
        let i = find(recs, |r| r.is("depart", "xfer", &xfer));
        let depart = remove(recs, i);
        let i = find(recs, |r| r.is("depart.done", "xfer", &xfer));
        remove(recs, i);
        let t = last_tick(recs);
        recs.push(Rec {
            seq: 0,
            kind: "depart.void".into(),
            fields: vec![
                ("t".into(), t),
                ("xfer".into(), depart.get("xfer").unwrap().into()),
            ],
        });
    });
    assert_problems(
        &c,
        &[&format!("jump {xfer} lands but its origin voided it")],
    );
}

#[test]
fn a_landing_of_a_jump_never_prepared_is_a_problem() {
    let c = sound_copy();
    // `ann`'s flight home was the only one to leave `away`: its prepare and commit vanish.
    let xfer = jump_of(&c, "ann", c.home).get("xfer").unwrap().to_string();
    edit_log(&c.system_log(c.away), |recs| {
        let i = find(recs, |r| r.is("depart", "xfer", &xfer));
        remove(recs, i);
        let i = find(recs, |r| r.is("depart.done", "xfer", &xfer));
        remove(recs, i);
    });
    assert_problems(
        &c,
        &[&format!(
            "jump {xfer} lands but was never prepared in its origin's log"
        )],
    );
}

#[test]
fn a_depart_marked_done_with_no_jump_is_a_problem() {
    let c = sound_copy();
    let xfer = jump_of(&c, "cat", c.away).get("xfer").unwrap().to_string();
    edit_log(&c.datadir.transitions_log(), |recs| {
        let i = find(recs, |r| r.is("jump", "xfer", &xfer));
        remove(recs, i);
    });
    assert_problems(
        &c,
        &[
            &format!("{}: line", c.system_log(c.home).display()),
            &format!("jump {xfer} is marked done but the transition log does not hold it"),
        ],
    );
}

#[test]
fn a_committed_jump_cancelled_in_its_origin_is_a_problem() {
    let c = sound_copy();
    let jump = jump_of(&c, "cat", c.away);
    let xfer = jump.get("xfer").unwrap().to_string();
    edit_log(&c.system_log(c.home), |recs| {
        let i = find(recs, |r| r.is("depart.done", "xfer", &xfer));
        recs[i].kind = "depart.abort".into();
        recs[i].fields.push(("player".into(), "cat".into()));
        let v: u64 = jump.get("v").unwrap().parse().unwrap();
        recs[i].fields.push(("v".into(), (v + 1).to_string()));
    });
    assert_problems(
        &c,
        &[&format!(
            "jump {xfer} was committed in the transition log but cancelled here"
        )],
    );
}

#[test]
fn a_landing_never_committed_is_a_problem() {
    let c = sound_copy();
    let xfer = jump_of(&c, "cat", c.away).get("xfer").unwrap().to_string();
    let forged = format!("{}:99", c.galaxy.slug(c.home));
    edit_log(&c.system_log(c.away), |recs| {
        let i = find(recs, |r| r.is("arrive", "xfer", &xfer));
        recs[i].set("xfer", &forged);
    });
    assert_problems(
        &c,
        &[&format!("jump {forged} lands but was never committed")],
    );
}

#[test]
fn a_landing_in_the_wrong_system_is_a_problem() {
    let c = sound_copy();
    let xfer = jump_of(&c, "cat", c.away).get("xfer").unwrap().to_string();
    let elsewhere = c.galaxy.neighbours(c.home)[1];
    let mut arrive = None;
    edit_log(&c.system_log(c.away), |recs| {
        let i = find(recs, |r| r.is("arrive", "xfer", &xfer));
        arrive = Some(remove(recs, i).unbatched());
    });
    edit_log(&c.system_log(elsewhere), |recs| {
        let t = last_tick(recs);
        recs.push(arrive.unwrap().at_tick(&t));
    });
    assert_problems(&c, &[&format!("jump {xfer} lands in the wrong system")]);
}

#[test]
fn a_landing_with_another_state_is_a_problem() {
    let c = sound_copy();
    let xfer = jump_of(&c, "cat", c.away).get("xfer").unwrap().to_string();
    edit_log(&c.system_log(c.away), |recs| {
        let i = find(recs, |r| r.is("arrive", "xfer", &xfer));
        let credits: u64 = recs[i].get("credits").unwrap().parse().unwrap();
        recs[i].set("credits", &(credits + 1).to_string());
    });
    assert_problems(
        &c,
        &[&format!(
            "jump {xfer} lands with another state than it left with"
        )],
    );
}

#[test]
fn a_jump_twice_in_the_transition_log_is_a_problem() {
    let c = sound_copy();
    let jump = jump_of(&c, "cat", c.away);
    edit_log(&c.datadir.transitions_log(), |recs| {
        recs.push(jump.unbatched())
    });
    assert_problems(
        &c,
        &[
            &format!("{}: line 5 (byte", c.datadir.transitions_log().display()),
            &format!("jump {} appears twice", jump.get("xfer").unwrap()),
        ],
    );
}

/// Raises credits (and `extra_cargo`) of `cat` in both the jump and its landing: the state
/// lands as it left, but with what nobody made.
fn enrich_cat(c: &Copy, credits: u64, cargo: Option<&str>) {
    let xfer = jump_of(c, "cat", c.away).get("xfer").unwrap().to_string();
    let enrich = |r: &mut Rec| {
        let had: u64 = r.get("credits").unwrap().parse().unwrap();
        r.set("credits", &(had + credits).to_string());
        if let Some(cargo) = cargo {
            r.set("cargo", cargo);
        }
    };
    edit_log(&c.datadir.transitions_log(), |recs| {
        let i = find(recs, |r| r.is("jump", "xfer", &xfer));
        enrich(&mut recs[i]);
    });
    edit_log(&c.system_log(c.away), |recs| {
        let i = find(recs, |r| r.is("arrive", "xfer", &xfer));
        enrich(&mut recs[i]);
    });
}

#[test]
fn credits_created_from_nothing_are_a_problem() {
    let c = sound_copy();
    enrich_cat(&c, 500, None);
    let r = assert_problems(&c, &["credits not conserved"]);
    let sound = audit(&sound_copy().datadir, &c.galaxy);
    assert_eq!(r.credits_held, sound.credits_held + 500);
}

#[test]
fn goods_created_from_nothing_are_a_problem() {
    let c = sound_copy();
    let good = sim::goods::Good::ALL[0];
    enrich_cat(&c, 0, Some(&format!("{good}:5")));
    assert_problems(&c, &[&format!("{good} not conserved")]);
}

#[test]
fn a_missing_system_log_is_a_problem() {
    let c = sound_copy();
    std::fs::remove_file(c.system_log(c.away)).unwrap();
    assert_problems(
        &c,
        &[&format!(
            "{}: missing: every start creates each system's log",
            c.system_log(c.away).display()
        )],
    );
}

#[test]
fn a_missing_transition_log_is_a_problem() {
    let c = sound_copy();
    std::fs::remove_file(c.datadir.transitions_log()).unwrap();
    assert_problems(
        &c,
        &[&format!(
            "{}: missing: every start creates it",
            c.datadir.transitions_log().display()
        )],
    );
}

#[test]
fn a_missing_players_folder_is_a_problem() {
    let c = sound_copy();
    std::fs::remove_dir_all(c.datadir.players_dir()).unwrap();
    let r = assert_problems(
        &c,
        &[&format!(
            "{}: missing: every start creates it",
            c.datadir.players_dir().display()
        )],
    );
    assert_eq!(r.problems.len(), 1, "{:#?}", r.problems);
}

#[test]
fn a_missing_player_log_a_snapshot_covers_is_a_problem() {
    let c = sound_copy();
    let path = c.datadir.player_log("dan");
    std::fs::remove_file(&path).unwrap();
    let r = assert_problems(
        &c,
        &[&format!(
            "{}: missing, but event 1 ({} record",
            path.display(),
            c.galaxy.slug(c.home)
        )],
    );
    assert_eq!(r.problems.len(), 1, "{:#?}", r.problems);
}

#[test]
fn a_player_log_behind_only_past_the_snapshots_is_a_note() {
    let c = sound_copy();
    std::fs::remove_dir_all(c.datadir.snapshots_dir()).unwrap();
    std::fs::create_dir(c.datadir.snapshots_dir()).unwrap();
    std::fs::remove_file(c.datadir.player_log("dan")).unwrap();
    let r = audit(&c.datadir, &c.galaxy);
    assert!(r.ok(), "{:#?}", r.problems);
    assert!(
        r.notes.iter().any(|n| n.contains("missing (behind")),
        "{:#?}",
        r.notes
    );
}

#[test]
fn a_directory_no_server_started_in_is_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let datadir = DataDir::at(dir.path());
    let r = audit(&datadir, &Galaxy::default_galaxy());
    assert!(r.ok(), "{:#?}", r.problems);
    assert!(
        r.notes[0].contains("no record in any log"),
        "{:#?}",
        r.notes
    );
}

#[test]
fn a_snapshot_ahead_of_its_log_is_a_problem() {
    let c = sound_copy();
    // The last records of `away` vanish (with their player-log lines' source), the snapshot
    // taken at the stop stays.
    let path = c.system_log(c.away);
    let mut recs = read_recs(&path);
    let last = recs.last().unwrap().seq;
    recs.truncate(recs.len() - 2);
    write_recs(&path, 1, &recs);
    assert_problems(
        &c,
        &[&format!(
            "stops at record {last}, but {} ends at record {}",
            path.display(),
            last - 2
        )],
    );
}

#[test]
fn a_snapshot_that_does_not_match_the_replay_is_a_problem() {
    let c = sound_copy();
    // `cat` lands richer than the snapshot `away` took at the stop says.
    enrich_cat(&c, 7, None);
    assert_problems(
        &c,
        &[
            &format!("{}: line", c.system_log(c.away).display()),
            "does not match the replayed state at record",
        ],
    );
}

/// Bytes of the log at `path` with line `n` (1-based) replaced by `with`.
fn replace_line(path: &Path, n: usize, with: impl FnOnce(&[u8]) -> Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    let mut lines: Vec<Vec<u8>> = bytes
        .split_inclusive(|b| *b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    lines[n - 1] = with(&lines[n - 1]);
    std::fs::write(path, lines.concat()).unwrap();
}

#[test]
fn a_log_cut_in_the_middle_is_a_problem_not_a_torn_tail() {
    let c = sound_copy();
    let path = c.system_log(c.home);
    replace_line(&path, 3, |line| line[..line.len() / 2].to_vec());
    assert_problems(
        &c,
        &[
            &format!("{}: line 3 (byte", path.display()),
            "a later synced batch follows",
        ],
    );
}

#[test]
fn a_corrupted_checksum_is_a_problem() {
    let c = sound_copy();
    let path = c.system_log(c.home);
    replace_line(&path, 2, |line| {
        let mut l = line.to_vec();
        let i = l.len() - 2;
        l[i] = if l[i] == b'0' { b'1' } else { b'0' };
        l
    });
    assert_problems(
        &c,
        &[
            &format!("{}: line 2 (byte", path.display()),
            "checksum mismatch",
        ],
    );
}

#[test]
fn a_gap_in_sequence_numbers_is_a_problem() {
    let c = sound_copy();
    let path = c.system_log(c.home);
    let recs = read_recs(&path);
    // Records 1, 2, 4, ...: written one by one so that 3 is simply not there.
    let mut kept = recs.clone();
    kept.remove(2);
    let mut buf = String::new();
    for r in &kept {
        write_recs(&path, r.seq, std::slice::from_ref(r));
        buf.push_str(&std::fs::read_to_string(&path).unwrap());
    }
    std::fs::write(&path, buf).unwrap();
    assert_problems(
        &c,
        &[
            &format!("{}: line 3 (byte", path.display()),
            "sequence number 4 where 3 was expected",
        ],
    );
}

#[test]
fn a_player_history_gap_is_a_problem() {
    let c = sound_copy();
    // `ann` flies home and lands one version later than she left: version 5 is nowhere.
    let xfer = jump_of(&c, "ann", c.home).get("xfer").unwrap().to_string();
    let later = |r: &mut Rec| {
        let v: u64 = r.get("v").unwrap().parse().unwrap();
        r.set("v", &(v + 1).to_string());
    };
    edit_log(&c.datadir.transitions_log(), |recs| {
        let i = find(recs, |r| r.is("jump", "xfer", &xfer));
        later(&mut recs[i]);
    });
    edit_log(&c.system_log(c.home), |recs| {
        let i = find(recs, |r| r.is("arrive", "xfer", &xfer));
        later(&mut recs[i]);
    });
    assert_problems(
        &c,
        &["player 'ann' history has a gap or repeat at version 5 (found 6)"],
    );
}

#[test]
fn a_player_log_unlike_the_system_logs_is_a_problem() {
    let c = sound_copy();
    let path = c.datadir.player_log("dan");
    edit_log(&path, |recs| {
        let last = recs.len() - 1;
        recs[last].kind = "refuel".into();
    });
    assert_problems(
        &c,
        &[
            &format!("{}: line 2 (byte", path.display()),
            "event 2 is 'refuel' here but 'trade' in the system logs",
        ],
    );
    let c = sound_copy();
    let path = c.datadir.player_log("dan");
    edit_log(&path, |recs| {
        let extra = recs.last().unwrap().unbatched();
        recs.push(extra);
    });
    assert_problems(&c, &["event 3 is not in the system logs"]);
    let c = sound_copy();
    std::fs::write(c.datadir.player_log("zed"), "").unwrap();
    assert_problems(&c, &["zed.log: no such player in the system logs"]);
    let c = sound_copy();
    std::fs::write(c.datadir.players_dir().join("%zz.log"), "").unwrap();
    assert_problems(&c, &["%zz.log: not a player log name"]);
}

#[test]
fn an_instance_log_never_opened_is_a_problem() {
    let c = sound_copy();
    let slug = format!("{}.2", c.galaxy.slug(c.home));
    let path = c.datadir.system_log(&slug);
    std::fs::write(&path, "").unwrap();
    let r = assert_problems(
        &c,
        &[&format!(
            "{}: a log of instance 2, which {} never opened",
            path.display(),
            c.galaxy.name(c.home)
        )],
    );
    assert_eq!(r.problems.len(), 1, "{:#?}", r.problems);
}

#[test]
fn an_opened_instance_without_a_log_is_a_note_until_something_happened_there() {
    // A crash between the durable `split` and the start of the instance's shard: its log was
    // never created. Nothing happened there, so this is legitimate.
    let c = sound_copy();
    let slug = format!("{}.2", c.galaxy.slug(c.home));
    edit_log(&c.system_log(c.home), |recs| {
        let t = last_tick(recs);
        recs.push(Rec {
            seq: 0,
            kind: "split".into(),
            fields: vec![("t".into(), t), ("instance".into(), slug.clone())],
        });
    });
    let r = audit(&c.datadir, &c.galaxy);
    assert!(r.ok(), "{:#?}", r.problems);
    let path = c.datadir.system_log(&slug);
    assert!(
        r.notes.iter().any(|n| n.contains(&format!(
            "{}: absent: {} opened instance 2 but stopped before its shard started",
            path.display(),
            c.galaxy.name(c.home)
        ))),
        "{:#?}",
        r.notes
    );
    // An instance players jumped to, whose log is gone, is a problem.
    let (c, at, _) = crowded_copy();
    let path = instance_log(&c, at);
    std::fs::remove_file(&path).unwrap();
    assert_problems(
        &c,
        &[&format!(
            "{}: missing: {} opened instance {}, and jumps or snapshots refer to it",
            path.display(),
            c.galaxy.name(c.home),
            at.n
        )],
    );
}

#[test]
fn the_crowded_directory_has_no_problem() {
    let (c, at, _) = crowded_copy();
    let r = audit(&c.datadir, &c.galaxy);
    assert!(r.ok(), "{:#?}", r.problems);
    assert!(r.instances >= 1, "{at:?}");
    assert!(r.trades >= 1);
}

/// The instance `at`'s log.
fn instance_log(c: &Copy, at: sim::instance::InstanceId) -> std::path::PathBuf {
    c.datadir.system_log(&at.slug(&c.galaxy))
}

#[test]
fn a_retired_instance_holding_players_is_a_problem() {
    let (c, at, _) = crowded_copy();
    let slug = at.slug(&c.galaxy);
    edit_log(&c.system_log(c.home), |recs| {
        let t = last_tick(recs);
        recs.push(Rec {
            seq: 0,
            kind: "retire".into(),
            fields: vec![("t".into(), t), ("instance".into(), slug.clone())],
        });
    });
    assert_problems(&c, &[&format!("{slug} is retired but holds")]);
}

/// The escrow `trader` opened in `at`: its id text.
fn escrow_of(c: &Copy, at: sim::instance::InstanceId, trader: &str) -> String {
    let recs = read_recs(&instance_log(c, at));
    let i = find(&recs, |r| r.is("trade.escrow", "player", trader));
    recs[i].get("escrow").unwrap().to_string()
}

#[test]
fn a_settlement_at_another_price_is_a_problem() {
    let (c, at, trader) = crowded_copy();
    let escrow = escrow_of(&c, at, &trader);
    let mut total = 0;
    edit_log(&instance_log(&c, at), |recs| {
        let i = find(recs, |r| r.is("trade.settle", "escrow", &escrow));
        total = recs[i].get("total").unwrap().parse::<u64>().unwrap();
        recs[i].set("total", &(total + 1).to_string());
    });
    assert_problems(
        &c,
        &[&format!(
            "escrow {escrow} settles at {} cr with a fee of",
            total + 1
        )],
    );
}

#[test]
fn a_settlement_with_another_fee_is_a_problem() {
    let (c, at, trader) = crowded_copy();
    let escrow = escrow_of(&c, at, &trader);
    let mut fee = 0;
    edit_log(&instance_log(&c, at), |recs| {
        let i = find(recs, |r| r.is("trade.settle", "escrow", &escrow));
        fee = recs[i]
            .get("fee")
            .expect("a fee through the escrow")
            .parse::<u64>()
            .unwrap();
        recs[i].set("fee", &(fee + 1).to_string());
    });
    assert_problems(
        &c,
        &[&format!(
            "with a fee of {} cr but the market took it at",
            fee + 1
        )],
    );
}

#[test]
fn a_settlement_the_market_never_took_is_a_problem() {
    let (c, at, trader) = crowded_copy();
    let escrow = escrow_of(&c, at, &trader);
    edit_log(&c.system_log(c.home), |recs| {
        let i = find(recs, |r| r.is("trade.remote", "escrow", &escrow));
        remove(recs, i);
        if let Some(i) = recs
            .iter()
            .position(|r| r.is("trade.done", "escrow", &escrow))
        {
            remove(recs, i);
        }
    });
    assert_problems(
        &c,
        &[&format!(
            "escrow {escrow} settles but the primary's market never took it"
        )],
    );
}

#[test]
fn a_trade_the_market_took_twice_is_a_problem() {
    let (c, at, trader) = crowded_copy();
    let escrow = escrow_of(&c, at, &trader);
    edit_log(&c.system_log(c.home), |recs| {
        let i = find(recs, |r| r.is("trade.remote", "escrow", &escrow));
        let again = recs[i].unbatched();
        recs.insert(i + 1, again);
    });
    assert_problems(&c, &[&format!("escrow {escrow} traded twice")]);
}

#[test]
fn a_refund_of_a_trade_the_market_took_is_a_problem() {
    let (c, at, trader) = crowded_copy();
    let escrow = escrow_of(&c, at, &trader);
    edit_log(&instance_log(&c, at), |recs| {
        let i = find(recs, |r| r.is("trade.settle", "escrow", &escrow));
        recs[i].kind = "trade.refund".into();
        recs[i].fields.retain(|(k, _)| k != "total");
    });
    assert_problems(
        &c,
        &[&format!(
            "escrow {escrow} is refunded but the primary's market took it"
        )],
    );
}

#[test]
fn an_open_escrow_whose_primary_forgot_the_trade_is_a_problem() {
    let (c, at, trader) = crowded_copy();
    let escrow = escrow_of(&c, at, &trader);
    // The instance never settles, yet the primary marked the trade done (forgot it).
    edit_log(&instance_log(&c, at), |recs| {
        let i = find(recs, |r| r.is("trade.settle", "escrow", &escrow));
        remove(recs, i);
    });
    edit_log(&c.system_log(c.home), |recs| {
        if !recs.iter().any(|r| r.is("trade.done", "escrow", &escrow)) {
            let t = last_tick(recs);
            recs.push(Rec {
                seq: 0,
                kind: "trade.done".into(),
                fields: vec![("t".into(), t), ("escrow".into(), escrow.clone())],
            });
        }
    });
    assert_problems(
        &c,
        &[&format!(
            "escrow {escrow} is open but its primary forgot the trade"
        )],
    );
}

#[test]
fn a_departure_voided_with_no_jump_is_a_problem() {
    let c = sound_copy();
    let forged = format!("{}:99", c.galaxy.slug(c.home));
    edit_log(&c.system_log(c.home), |recs| {
        let t = last_tick(recs);
        recs.push(Rec {
            seq: 0,
            kind: "depart.void".into(),
            fields: vec![("t".into(), t), ("xfer".into(), forged.clone())],
        });
    });
    assert_problems(
        &c,
        &[&format!(
            "jump {forged} is voided but the transition log does not hold it"
        )],
    );
}

#[test]
fn a_snapshot_whose_records_do_not_give_its_hash_is_a_problem() {
    let c = sound_copy();
    let snap = std::fs::read_dir(c.datadir.snapshots_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with(&format!("{}.", c.galaxy.slug(c.away)))
        })
        .unwrap();
    // One player's credits in the snapshot, re-encoded with valid checksums.
    edit_log(&snap, |recs| {
        let i = recs
            .iter()
            .position(|r| r.get("player") == Some("cat") && r.get("credits").is_some())
            .expect("the snapshot holds cat");
        let credits: u64 = recs[i].get("credits").unwrap().parse().unwrap();
        recs[i].set("credits", &(credits + 1).to_string());
    });
    let r = assert_problems(
        &c,
        &[&format!(
            "{}: its records do not give its own state hash",
            snap.display()
        )],
    );
    assert_eq!(r.problems.len(), 1, "{:#?}", r.problems);
}

/// A `lease` record (a new owner's mark, docs/NATS.md) of epoch `epoch`.
fn lease_rec(epoch: u64) -> Rec {
    Rec {
        seq: 0,
        kind: store::lease::LEASE_KIND.into(),
        fields: vec![
            ("epoch".into(), epoch.to_string()),
            ("node".into(), format!("node-{epoch}")),
        ],
    }
}

#[test]
fn lease_records_are_not_events_but_their_epochs_never_decrease() {
    let c = sound_copy();
    let log = c.system_log(c.home);
    edit_log(&log, |recs| {
        recs.extend([lease_rec(4), lease_rec(4), lease_rec(7)])
    });
    edit_log(&c.datadir.transitions_log(), |recs| {
        recs.extend([lease_rec(4), lease_rec(7)])
    });
    let r = audit(&c.datadir, &c.galaxy);
    assert!(r.ok(), "{:#?}", r.problems);

    let c = sound_copy();
    edit_log(&c.datadir.transitions_log(), |recs| {
        recs.extend([lease_rec(7), lease_rec(4)])
    });
    assert_problems(
        &c,
        &["lease epoch=4 node=node-4 after lease epoch=7 node=node-7: a log's lease epochs never decrease"],
    );
}
