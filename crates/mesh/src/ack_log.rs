//! Acknowledged actions and their proof in the logs: the ack-log line a client writes for each
//! action the server acknowledged ([`Ack`], one JSON object a line), and the check behind
//! `mltrader check --acks FILE` ([`check_acks`]): every acknowledged action must be in the
//! logs, with the version the server answered, also after the server was killed.
//!
//! An acknowledged action of player P that answered version v must show as P's event of
//! version v in the system logs, of the kind the action writes ([`Action::kinds`]), with what
//! the ack says was done ([`Ack::details`]: a trade's side, good, units and total; a refuel's
//! units and cost; an attack's target). A travel must also be committed: the transition log
//! holds its `jump` (same `xfer`, same version). In the export of a spread galaxy (`jumps.log`
//! present, [`Commits::Departs`]) a travel is committed by its durable `depart` itself (the
//! event of the answered version, with the ack's `xfer`); a jump it published (in `jumps.log`)
//! must then be of the same player and version.
//! The system logs are the truth (see docs/FORMAT.md); player logs are a projection and are not
//! read.
//!
//! Only reads. A torn last line of the ack log (the writer was killed mid-line) is a note.
//!
//! A file tool, like the audit and `compact`: it reads the data directory's files (archived
//! segments too) and names them in its findings, so it does not go through the storage traits
//! ([`store::backend`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::audit::{segments, Commits};
use sim::galaxy::Galaxy;
use store::datadir::DataDir;
use store::log::read_from;
use store::record::Record;
use store::scan::{scan, ScanStart};

/// An action the server can acknowledge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Join,
    Travel,
    Refuel,
    Repair,
    Trade,
    Attack,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Join => "join",
            Action::Travel => "travel",
            Action::Refuel => "refuel",
            Action::Repair => "repair",
            Action::Trade => "trade",
            Action::Attack => "attack",
        }
    }

    /// The kinds of system-log record the action writes (its player's event of the answered
    /// version).
    pub fn kinds(self) -> &'static [&'static str] {
        match self {
            Action::Join => &["join"],
            Action::Travel => &["depart"],
            Action::Refuel => &["refuel"],
            Action::Repair => &["repair"],
            // In an instance of a crowded system, a trade is acknowledged at the settlement
            // of its escrow at the system's one market (docs/PROTOCOL.md).
            Action::Trade => &["trade", "trade.settle"],
            // A standing attack order is an `engage` record (`target=` the ship fired at).
            Action::Attack => &["engage"],
        }
    }
}

/// One line of an ack log: `{"player":"bot-1-0","action":"travel","version":4,"xfer":"sol:9"}`,
/// `{"player":"bot-1-0","action":"trade","version":5,"side":"buy","good":"food","qty":3,
/// "total_cr":96}`. The details of what was acknowledged (all optional: ack logs written before
/// they existed stay readable, and prove only player, version and kind) are each compared with
/// the field of the logged record that holds them ([`Ack::details`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ack {
    pub player: String,
    pub action: Action,
    /// The player's version the server answered (after the action).
    pub version: u64,
    /// The jump's transfer id (travel only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xfer: Option<String>,
    /// A trade's side (`buy`, `sell`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub side: Option<String>,
    /// A trade's good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub good: Option<String>,
    /// A trade's units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qty: Option<u64>,
    /// What a trade paid or earned in all, in credits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_cr: Option<u64>,
    /// Fuel units a refuel bought.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub units: Option<u64>,
    /// What a refuel or a repair cost, in credits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_cr: Option<u64>,
    /// Hull points a repair mended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub points: Option<u64>,
    /// The ship an attack order is aimed at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

impl Ack {
    /// An ack of `action` answered at `version`, with no details.
    pub fn new(player: &str, action: Action, version: u64) -> Ack {
        Ack {
            player: player.to_string(),
            action,
            version,
            xfer: None,
            side: None,
            good: None,
            qty: None,
            total_cr: None,
            units: None,
            cost_cr: None,
            points: None,
            target: None,
        }
    }

    /// The details this ack holds, each with the record field that must hold the same value.
    pub fn details(&self) -> Vec<(&'static str, String)> {
        let text = [
            ("side", self.side.clone()),
            ("good", self.good.clone()),
            ("target", self.target.clone()),
        ];
        let nums = [
            ("qty", self.qty),
            ("total", self.total_cr),
            ("units", self.units),
            ("cost", self.cost_cr),
            ("points", self.points),
        ];
        text.into_iter()
            .filter_map(|(k, v)| Some((k, v?)))
            .chain(
                nums.into_iter()
                    .filter_map(|(k, v)| Some((k, v?.to_string()))),
            )
            .collect()
    }

    /// The line, newline included.
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).expect("an ack is always JSON");
        line.push('\n');
        line
    }
}

/// Why the ack log cannot be checked at all.
#[derive(Debug, thiserror::Error)]
pub enum AckError {
    #[error("cannot read the ack log {path}: {error}")]
    Read { path: String, error: std::io::Error },
}

/// What the check found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AckReport {
    /// Ack lines read.
    pub acks: u64,
    /// Of which found in the logs as acknowledged.
    pub confirmed: u64,
    /// Acks per action.
    pub by_action: BTreeMap<String, u64>,
    /// Players the acks are about.
    pub players: u64,
    /// Log files and records read.
    pub files: u64,
    pub records: u64,
    /// Missing or mismatched actions, bad ack lines, unreadable logs: any one fails the check.
    pub problems: Vec<String>,
    /// A torn last ack line, torn log tails.
    pub notes: Vec<String>,
}

impl AckReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

pub use super::limits::MAX_LISTED_PROBLEMS;

/// An event about a player, as a system log holds it.
struct Seen {
    kind: String,
    xfer: Option<String>,
    /// The fields an ack's details are compared with ([`DETAIL_FIELDS`]); a settlement's
    /// side, good and quantity come from its escrow's record.
    details: Vec<(&'static str, String)>,
    /// `slug:seq`, for messages.
    at: String,
}

/// The record fields that hold what an action did.
const DETAIL_FIELDS: [&str; 8] = [
    "side", "good", "qty", "total", "units", "cost", "points", "target",
];

/// The detail fields of `rec`.
fn details_of(rec: &Record<'_>) -> Vec<(&'static str, String)> {
    DETAIL_FIELDS
        .iter()
        .filter_map(|k| Some((*k, rec.get(k)?.to_string())))
        .collect()
}

/// Checks every ack of the ack log at `acks_path` against the data directory.
pub fn check_acks(
    datadir: &DataDir,
    galaxy: &Galaxy,
    acks_path: &Path,
) -> Result<AckReport, AckError> {
    let text = std::fs::read(acks_path).map_err(|error| AckError::Read {
        path: acks_path.display().to_string(),
        error,
    })?;
    let mut r = AckReport::default();
    let acks = parse_acks(&text, acks_path, &mut r);
    let names: HashSet<&str> = acks.iter().map(|(_, a)| a.player.as_str()).collect();
    r.players = names.len() as u64;

    // Every event of those players in the system logs, by (player, version).
    let mut events: HashMap<(String, u64), Seen> = HashMap::new();
    // Every log of every system: its primary's, and its instances' (retired ones included).
    let logs: Vec<String> = galaxy
        .ids()
        .flat_map(|id| {
            let instances = super::recovery::instance_logs(datadir, galaxy, id);
            std::iter::once(galaxy.slug(id).to_string()).chain(
                instances
                    .into_iter()
                    .filter(|&n| n > 1)
                    .map(move |n| format!("{}.{n}", galaxy.slug(id))),
            )
        })
        .collect();
    for slug in &logs {
        let slug = slug.as_str();
        // The orders of this log's escrows, by escrow id: a settlement's details.
        let mut escrows: HashMap<String, Vec<(&'static str, String)>> = HashMap::new();
        for path in segments(
            &datadir.archive_dir(),
            slug,
            datadir.system_log(slug),
            &mut r.notes,
        ) {
            read_log(&mut r, &path, |rec| {
                let (Some(player), Some(v)) = (rec.get("player"), rec.get("v")) else {
                    return;
                };
                if !names.contains(player) {
                    return;
                }
                let Ok(v) = v.parse::<u64>() else {
                    return;
                };
                let mut details = details_of(rec);
                match (rec.kind, rec.get("escrow")) {
                    ("trade.escrow", Some(e)) => {
                        details.retain(|(k, _)| *k != "total");
                        escrows.insert(e.to_string(), details.clone());
                    }
                    ("trade.settle", Some(e)) => {
                        details.extend(escrows.remove(e).unwrap_or_default());
                    }
                    _ => {}
                }
                events.entry((player.to_string(), v)).or_insert(Seen {
                    kind: rec.kind.to_string(),
                    xfer: rec.get("xfer").map(str::to_string),
                    details,
                    at: format!("{slug}:{}", rec.seq),
                });
            });
        }
    }
    // Committed jumps (of a spread galaxy: published ones): xfer -> (player, version).
    let mut committed: HashMap<String, (String, u64)> = HashMap::new();
    let commits = Commits::of(datadir);
    let jump_logs = match commits {
        Commits::TransitionLog => segments(
            &datadir.archive_root(),
            "transitions",
            datadir.transitions_log(),
            &mut r.notes,
        ),
        Commits::Departs => vec![datadir.jumps_log()],
    };
    for path in jump_logs {
        read_log(&mut r, &path, |rec| {
            if rec.kind != "jump" {
                return;
            }
            let (Some(xfer), Some(player), Some(v)) =
                (rec.get("xfer"), rec.get("player"), rec.get("v"))
            else {
                return;
            };
            if names.contains(player) {
                let v = v.parse().unwrap_or(0);
                committed.insert(xfer.to_string(), (player.to_string(), v));
            }
        });
    }

    let mut seen_acks: HashSet<(&str, u64)> = HashSet::new();
    let mut problems = Vec::new();
    for (line, ack) in &acks {
        *r.by_action
            .entry(ack.action.name().to_string())
            .or_default() += 1;
        if !seen_acks.insert((ack.player.as_str(), ack.version)) {
            problems.push(format!(
                "line {line}: a second ack of '{}' version {} (each version is one event)",
                ack.player, ack.version
            ));
            continue;
        }
        match verify(ack, &events, &committed, commits) {
            Ok(()) => r.confirmed += 1,
            Err(why) => problems.push(format!("line {line}: {why}")),
        }
    }
    let more = problems.len().saturating_sub(MAX_LISTED_PROBLEMS);
    problems.truncate(MAX_LISTED_PROBLEMS);
    if more > 0 {
        problems.push(format!("... and {more} more acks not in the logs"));
    }
    r.problems.extend(problems);
    Ok(r)
}

/// Whether the logs hold `ack`; if not, why (for people).
fn verify(
    ack: &Ack,
    events: &HashMap<(String, u64), Seen>,
    committed: &HashMap<String, (String, u64)>,
    commits: Commits,
) -> Result<(), String> {
    let what = format!(
        "{} of '{}' acknowledged at version {}",
        ack.action.name(),
        ack.player,
        ack.version
    );
    let Some(seen) = events.get(&(ack.player.clone(), ack.version)) else {
        return Err(format!(
            "{what} is not in the system logs (no event of that version)"
        ));
    };
    if !ack.action.kinds().contains(&seen.kind.as_str()) {
        return Err(format!(
            "{what}: the logs hold a '{}' at that version ({}), not {}",
            seen.kind,
            seen.at,
            ack.action.kinds().join("/")
        ));
    }
    for (key, acked) in ack.details() {
        let logged = seen.details.iter().find(|(k, _)| *k == key).map(|(_, v)| v);
        if logged != Some(&acked) {
            return Err(format!(
                "{what}: acknowledged {key}={acked}, but the logs hold {key}={} ({})",
                logged.map_or("(none)", String::as_str),
                seen.at
            ));
        }
    }
    if ack.action != Action::Travel {
        return Ok(());
    }
    let Some(xfer) = &ack.xfer else {
        return Err(format!("{what}: the ack has no xfer"));
    };
    if seen.xfer.as_ref() != Some(xfer) {
        return Err(format!(
            "{what}: the departure at that version ({}) is xfer {}, not {xfer}",
            seen.at,
            seen.xfer.as_deref().unwrap_or("-")
        ));
    }
    match (committed.get(xfer), commits) {
        (Some((p, v)), _) if *p == ack.player && *v == ack.version => Ok(()),
        (Some((p, v)), Commits::TransitionLog) => Err(format!(
            "{what}: the transition log's jump {xfer} is of '{p}' at version {v}"
        )),
        (Some((p, v)), Commits::Departs) => Err(format!(
            "{what}: jumps.log's jump {xfer} is of '{p}' at version {v}"
        )),
        (None, Commits::TransitionLog) => Err(format!(
            "{what}: jump {xfer} is prepared ({}) but not committed in the transition log",
            seen.at
        )),
        // Committed at its durable `depart` (found above); not published yet, or a move.
        (None, Commits::Departs) => Ok(()),
    }
}

/// The ack lines with their line numbers. A bad line is a problem, but a bad *last* line
/// without a newline is a note: the writer was stopped while writing it.
fn parse_acks(text: &[u8], path: &Path, r: &mut AckReport) -> Vec<(u64, Ack)> {
    let mut out = Vec::new();
    let mut rest = text;
    let mut line_no = 0u64;
    while !rest.is_empty() {
        line_no += 1;
        let (line, complete) = match memchr::memchr(b'\n', rest) {
            Some(i) => {
                let line = &rest[..i];
                rest = &rest[i + 1..];
                (line, true)
            }
            None => {
                let line = rest;
                rest = &[];
                (line, false)
            }
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Ack>(line) {
            // A whole ack without its newline was still acknowledged: check it.
            Ok(ack) => out.push((line_no, ack)),
            Err(_) if !complete => r.notes.push(format!(
                "{} line {line_no}: torn last line (the writer stopped mid-line); not checked",
                path.display()
            )),
            Err(e) => r.problems.push(format!(
                "{} line {line_no}: not an ack ({e})",
                path.display()
            )),
        }
    }
    r.acks = out.len() as u64;
    out
}

/// Reads one log file, every valid record to `visit`. Corruption is a problem, a torn tail a
/// note (what it cut was never acknowledged).
fn read_log(r: &mut AckReport, path: &Path, mut visit: impl FnMut(&Record<'_>)) {
    let bytes = match read_from(path, 0) {
        Ok(b) => b,
        Err(e) => {
            r.problems.push(e.to_string());
            return;
        }
    };
    if bytes.is_empty() {
        return;
    }
    r.files += 1;
    let outcome = scan(&bytes, ScanStart::BEGINNING, |rec| {
        visit(rec);
        Ok(())
    });
    match outcome {
        Ok(out) => {
            r.records += out.records;
            if let Some(t) = out.torn {
                r.notes.push(format!(
                    "{} line {}: torn tail of {} bytes ({})",
                    path.display(),
                    t.line,
                    t.bytes,
                    t.reason
                ));
            }
        }
        Err(c) => r.problems.push(format!("{}: {c}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    use crate::directory::SystemPlace;

    fn write_acks(dir: &Path, acks: &[Ack], tail: &str) -> PathBuf {
        let path = dir.join("acks.jsonl");
        let mut text: String = acks.iter().map(Ack::to_line).collect();
        text.push_str(tail);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn ack_lines_round_trip_and_omit_a_missing_xfer() {
        let a = Ack::new("bot-1-0", Action::Refuel, 3);
        assert_eq!(
            a.to_line(),
            "{\"player\":\"bot-1-0\",\"action\":\"refuel\",\"version\":3}\n"
        );
        let back: Ack = serde_json::from_str(a.to_line().trim()).unwrap();
        assert_eq!(back, a);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn acknowledged_actions_are_found_and_invented_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let datadir = DataDir::at(dir.path().join("data"));
        let galaxy = Galaxy::default_galaxy();
        let mesh = crate::test_support::start_quick(&datadir, &galaxy).await;
        let mut acks = Vec::new();
        let p = mesh.join("Ann", "k").await.unwrap();
        acks.push(Ack::new("Ann", Action::Join, p.version.0));
        let Some(SystemPlace::In(here)) = mesh.locate("Ann") else {
            panic!("Ann is not in a system");
        };
        let to = mesh.galaxy().neighbours(here)[0];
        let ack = mesh.jump("Ann", to).await.unwrap();
        acks.push(Ack {
            xfer: Some(ack.xfer.clone()),
            ..Ack::new("Ann", Action::Travel, ack.player.version.0)
        });
        mesh.wait_landing("Ann").await.unwrap();
        let after = mesh.refuel("Ann", None).await.unwrap();
        acks.push(Ack::new("Ann", Action::Refuel, after.version.0));
        mesh.stop().await.unwrap();

        let good = write_acks(dir.path(), &acks, "{\"player\":\"Ann\",\"act");
        let r = check_acks(&datadir, &galaxy, &good).unwrap();
        assert!(r.ok(), "{:?}", r.problems);
        assert_eq!((r.acks, r.confirmed, r.players), (3, 3, 1));
        assert_eq!(
            r.notes.len(),
            1,
            "the torn last line is a note: {:?}",
            r.notes
        );

        // A version never written, a wrong kind, a wrong xfer, and a repeated ack.
        let mut bad = acks.clone();
        bad.push(Ack::new("Ann", Action::Refuel, 99));
        bad.push(Ack::new("Ann", Action::Trade, 3));
        bad[1].xfer = Some("sol:77".into());
        bad.push(acks[2].clone());
        let path = write_acks(dir.path(), &bad, "");
        let r = check_acks(&datadir, &galaxy, &path).unwrap();
        assert_eq!(r.problems.len(), 4, "{:#?}", r.problems);
        assert_eq!(r.confirmed, 2);

        // A line that is not an ack (not the torn last one), and a travel without its xfer.
        let mut no_xfer = acks.clone();
        no_xfer[1].xfer = None;
        let path = write_acks(dir.path(), &no_xfer, "{\"player\":1}\n");
        let r2 = check_acks(&datadir, &galaxy, &path).unwrap();
        assert_eq!(r2.problems.len(), 2, "{:#?}", r2.problems);
        assert!(r2.problems.iter().any(|p| p.contains("line 4: not an ack")));
        assert!(r2
            .problems
            .iter()
            .any(|p| p.contains("the ack has no xfer")));

        // The travel's jump in the transition log at another version, then not there at all.
        use crate::audit::forge::{edit_log, find, remove};
        let good = write_acks(dir.path(), &acks, "");
        let xfer = acks[1].xfer.clone().unwrap();
        let v = acks[1].version;
        edit_log(&datadir.transitions_log(), |recs| {
            let i = find(recs, |r| r.is("jump", "xfer", &xfer));
            recs[i].set("v", &(v + 1).to_string());
        });
        let r3 = check_acks(&datadir, &galaxy, &good).unwrap();
        assert_eq!(r3.problems.len(), 1, "{:#?}", r3.problems);
        assert!(
            r3.problems[0].contains(&format!(
                "the transition log's jump {xfer} is of 'Ann' at version {}",
                v + 1
            )),
            "{:#?}",
            r3.problems
        );
        edit_log(&datadir.transitions_log(), |recs| {
            let i = find(recs, |r| r.is("jump", "xfer", &xfer));
            remove(recs, i);
        });
        let r4 = check_acks(&datadir, &galaxy, &good).unwrap();
        assert_eq!(r4.problems.len(), 1, "{:#?}", r4.problems);
        assert!(
            r4.problems[0].contains(&format!("jump {xfer} is prepared (")),
            "{:#?}",
            r4.problems
        );
        assert!(r4.problems[0].contains("but not committed in the transition log"));
        assert!(r.problems.iter().any(|p| p.contains("version 99")));
        assert!(r.problems.iter().any(|p| p.contains("not trade")));
        assert!(r.problems.iter().any(|p| p.contains("sol:77")));
        assert!(r.problems.iter().any(|p| p.contains("a second ack")));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_travel_is_committed_at_its_depart_in_a_spread_export() {
        use crate::audit::forge::{as_spread_export, edit_log, find, remove};
        let dir = tempfile::tempdir().unwrap();
        let datadir = DataDir::at(dir.path().join("data"));
        let galaxy = Galaxy::default_galaxy();
        let mesh = crate::test_support::start_quick(&datadir, &galaxy).await;
        let p = mesh.join("Ann", "k").await.unwrap();
        let Some(SystemPlace::In(here)) = mesh.locate("Ann") else {
            panic!("Ann is not in a system");
        };
        let ack = mesh
            .jump("Ann", mesh.galaxy().neighbours(here)[0])
            .await
            .unwrap();
        mesh.wait_landing("Ann").await.unwrap();
        mesh.stop().await.unwrap();
        as_spread_export(&datadir, &galaxy);
        let travel = Ack {
            xfer: Some(ack.xfer.clone()),
            ..Ack::new("Ann", Action::Travel, ack.player.version.0)
        };
        let acks = [Ack::new("Ann", Action::Join, p.version.0), travel.clone()];
        let path = write_acks(dir.path(), &acks, "");
        let r = check_acks(&datadir, &galaxy, &path).unwrap();
        assert!(r.ok(), "{:#?}", r.problems);
        assert_eq!(r.confirmed, 2);

        // The published jump at another version than the acknowledged depart.
        let v = travel.version;
        edit_log(&datadir.jumps_log(), |recs| {
            let i = find(recs, |r| r.is("jump", "xfer", &ack.xfer));
            recs[i].set("v", &(v + 1).to_string());
        });
        let r = check_acks(&datadir, &galaxy, &path).unwrap();
        assert_eq!(r.problems.len(), 1, "{:#?}", r.problems);
        assert!(
            r.problems[0].contains(&format!(
                "jumps.log's jump {} is of 'Ann' at version {}",
                ack.xfer,
                v + 1
            )),
            "{:#?}",
            r.problems
        );
        // Not published (yet): committed all the same, at its durable depart.
        edit_log(&datadir.jumps_log(), |recs| {
            let i = find(recs, |r| r.is("jump", "xfer", &ack.xfer));
            remove(recs, i);
        });
        let r = check_acks(&datadir, &galaxy, &path).unwrap();
        assert!(r.ok(), "{:#?}", r.problems);
        // An acknowledged travel whose depart the logs do not hold is not found.
        let other = Ack {
            xfer: Some(format!("{}:9", galaxy.slug(here))),
            ..travel.clone()
        };
        let path = write_acks(dir.path(), &[other], "");
        let r = check_acks(&datadir, &galaxy, &path).unwrap();
        assert_eq!(r.problems.len(), 1, "{:#?}", r.problems);
        assert!(r.problems[0].contains("is xfer"), "{:#?}", r.problems);
    }

    #[test]
    fn a_repairs_points_are_compared_with_its_record() {
        // Before `points` was a detail field, every repair ack failed the check ("the logs
        // hold points=(none)"): seen in a spread storm's `check --acks`.
        let rec = store::record::parse_content("9 repair t=5 player=Ann points=30 cost=150 v=7")
            .expect("a repair record");
        let details = details_of(&rec);
        assert!(
            details.contains(&("points", "30".to_string())),
            "{details:?}"
        );
        let seen = Seen {
            kind: "repair".into(),
            xfer: None,
            details,
            at: "sol:9".into(),
        };
        let events = HashMap::from([(("Ann".to_string(), 7), seen)]);
        let none = HashMap::new();
        let ack = Ack {
            points: Some(30),
            cost_cr: Some(150),
            ..Ack::new("Ann", Action::Repair, 7)
        };
        assert_eq!(verify(&ack, &events, &none, Commits::Departs), Ok(()));
        let wrong = Ack {
            points: Some(31),
            ..ack.clone()
        };
        let why = verify(&wrong, &events, &none, Commits::Departs).unwrap_err();
        assert!(
            why.contains("acknowledged points=31, but the logs hold points=30"),
            "{why}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_ack_whose_trade_or_refuel_differs_from_the_logs_is_a_problem() {
        let dir = tempfile::tempdir().unwrap();
        let datadir = DataDir::at(dir.path().join("data"));
        let galaxy = Galaxy::default_galaxy();
        let mesh = crate::test_support::start_quick(&datadir, &galaxy).await;
        let joined = mesh.join("Ann", "k").await.unwrap();
        let Some(SystemPlace::In(here)) = mesh.locate("Ann") else {
            panic!("Ann is not in a system");
        };
        let to = mesh.galaxy().neighbours(here)[0];
        mesh.jump("Ann", to).await.unwrap();
        mesh.wait_landing("Ann").await.unwrap();
        let (_, landed) = mesh.look("Ann").await.unwrap();
        let landed = landed.expect("Ann has landed");
        let refueled = mesh.refuel("Ann", None).await.unwrap();
        let mut traded = None;
        for good in sim::goods::Good::ALL {
            let order = sim::market::Order {
                side: sim::market::Side::Buy,
                good,
                qty: 2,
                price_limit_cr: None,
            };
            if let Ok(t) = mesh.trade("Ann", order).await {
                traded = Some(t);
                break;
            }
        }
        let traded = traded.expect("Ann could buy some good");
        mesh.stop().await.unwrap();

        let refuel = Ack {
            units: Some(u64::from(refueled.fuel - landed.fuel)),
            cost_cr: Some(landed.credits - refueled.credits),
            ..Ack::new("Ann", Action::Refuel, refueled.version.0)
        };
        let trade = Ack {
            side: Some(traded.side.into()),
            good: Some(traded.good.into()),
            qty: Some(u64::from(traded.qty)),
            total_cr: Some(traded.total_cr),
            ..Ack::new("Ann", Action::Trade, traded.player.version.0)
        };
        let join = Ack::new("Ann", Action::Join, joined.version.0);
        let path = write_acks(
            dir.path(),
            &[join.clone(), refuel.clone(), trade.clone()],
            "",
        );
        let r = check_acks(&datadir, &galaxy, &path).unwrap();
        assert!(r.ok(), "{:#?}", r.problems);
        assert_eq!(r.confirmed, 3);

        let units = refuel.units.unwrap();
        let cost = refuel.cost_cr.unwrap();
        let total = traded.total_cr;
        let variants = [
            (
                Ack {
                    qty: Some(3),
                    ..trade.clone()
                },
                "acknowledged qty=3, but the logs hold qty=2".to_string(),
            ),
            (
                Ack {
                    total_cr: Some(total + 1),
                    ..trade.clone()
                },
                format!(
                    "acknowledged total={}, but the logs hold total={total}",
                    total + 1
                ),
            ),
            (
                Ack {
                    side: Some("sell".into()),
                    ..trade.clone()
                },
                "acknowledged side=sell, but the logs hold side=buy".to_string(),
            ),
            (
                Ack {
                    units: Some(units + 1),
                    ..refuel.clone()
                },
                format!(
                    "acknowledged units={}, but the logs hold units={units}",
                    units + 1
                ),
            ),
            (
                Ack {
                    cost_cr: Some(cost + 1),
                    ..refuel.clone()
                },
                format!(
                    "acknowledged cost={}, but the logs hold cost={cost}",
                    cost + 1
                ),
            ),
        ];
        for (bad, why) in variants {
            let path = write_acks(dir.path(), &[join.clone(), bad], "");
            let r = check_acks(&datadir, &galaxy, &path).unwrap();
            assert_eq!(r.problems.len(), 1, "{why}: {:#?}", r.problems);
            assert!(r.problems[0].contains(&why), "{why}: {:#?}", r.problems);
        }
    }
}
