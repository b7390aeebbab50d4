//! The auditor behind `mltrader check` and `mltrader replay`: reads every log of a data
//! directory from its first record, verifies every checksum and sequence number, replays every
//! system from scratch, and proves the mesh's invariants across logs:
//!
//! - every committed jump (a `jump` in the transition log whose `depart` its origin holds) is
//!   never cancelled there, and lands at most once, at its destination, with the state it left
//!   with; a `jump` whose `depart` a crash lost is void (`depart.void`, or a note before the
//!   next start writes it) and never lands; a jump in flight can still land (its destination
//!   has landed no later jump of its origin: landing is idempotent by that number);
//! - every player who ever joined is in exactly one place (a system, a prepared jump, or a
//!   committed jump in flight), never two, never none;
//! - each player's history has no gap and no repeat (versions 1, 2, 3, ... across all logs);
//! - credits held (players, jumps in flight, market tills) = credits created - credits
//!   destroyed, by the named rules only (created: starting grants, the tills' first funds,
//!   subsidies; destroyed: fuel purchases, taxes);
//! - for each good, units held (holds, jumps in flight, market stocks, wrecks) = units made -
//!   units destroyed, by the named rules only (made: the markets' first stocks, production;
//!   destroyed: consumption, wreck decay);
//! - every snapshot's state hash equals the replayed state's at the same record;
//! - one market per system: a trade asked in an instance is in escrow (its credits or goods
//!   counted there) until its instance settles it; it is settled at the price the primary's
//!   market took it at (`trade.remote`), or refunded only if the market never took it;
//! - instances: every instance log belongs to an instance its primary opened (`split`), and an
//!   instance retired (`retire`) holds no one at the end. Jumps between instances (moves) are
//!   proved like any jump, so "exactly one place" holds across instances too.
//!
//! - the layout is whole: every start creates `transitions.log`, each system's log and
//!   `players/`, and each instance's log when it opens; one missing is a problem (a directory
//!   with no log at all, where no server ever started, is a note); no snapshot stops at a record
//!   its log does not hold;
//! - each player's log is their history, and holds at least every event a snapshot covers (the
//!   projector makes those lines durable before a shard snapshots).
//!
//! **A spread galaxy** (issue 19: systems spread over nodes, docs/PROTOCOL.md "Across nodes")
//! has no transition log: a jump commits at its origin's durable `depart`; a jump to another
//! system is then published to its pair subject and its origin logs `depart.done`; a move
//! between instances of one system lands (`arrive`) before its `depart.done` and is never
//! published. Its export is recognised by `jumps.log` (the pair subjects' jumps, one per
//! transfer id, written by `mltrader export`): then the committed jumps are the `depart`s,
//! gathered in a first pass over the system logs (the player as they left: the replayed
//! state's `departing` after the `depart`), and every invariant above is proved against them;
//! and also:
//!
//! - every jump of `jumps.log` is a committed jump between systems, of the same player in the
//!   same state and towards the same destination as its `depart`;
//! - a `depart.done` of a jump between systems has its jump in `jumps.log` (published before
//!   done), and a jump landed in another system was published; a `depart.done` of a move
//!   follows its landing (so a move marked done has landed);
//! - a committed jump is never cancelled: a `depart.abort` or `depart.void` is a problem;
//! - the transition log, created empty by the export, holds no record.
//!
//! Only reads. A torn tail (left by a crash, cut at the next start) and a prepared jump not yet
//! settled are notes, not problems: they are what a crash leaves, and recovery settles them.
//!
//! Never run [`audit`] on the directory of a running server: the logs are read one after the
//! other, so a record in one may answer a record another log got after it was read.
//! `mltrader check` refuses a locked directory; [`live::audit_live`] is what can be proved then.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

pub mod economy;
pub mod live;

use super::codec::{decode_event, decode_jump, decode_state_record, Jump};
use sim::galaxy::{Galaxy, SystemId};
use sim::goods::{Cargo, GOOD_COUNT};
use sim::ids::{EscrowId, Tick, Xfer};
use sim::instance::InstanceId;
use sim::system::{Event, SystemState};
use store::datadir::{archived_segments, DataDir};
use store::lease::LeaseRecord;
use store::log::read_from;
use store::scan::{scan, ScanStart, VisitError};
use store::seq::Seq;
use store::snapshot;

/// What an audit found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AuditReport {
    pub files: u64,
    pub records: u64,
    pub bytes: u64,
    /// Violations and corruption: any one makes the check fail.
    pub problems: Vec<String>,
    /// What a crash legitimately leaves (torn tails, unsettled jumps).
    pub notes: Vec<String>,
    pub players: u64,
    pub jumps: u64,
    pub jumps_in_flight: u64,
    /// Credits held at the end: players (in systems and in flight) and market tills.
    pub credits_held: u128,
    /// Credits created by the rules: starting grants, the tills' first funds, subsidies.
    pub credits_granted: u128,
    /// Credits destroyed by the rules: fuel purchases, taxes.
    pub credits_spent: u128,
    /// Units of goods held at the end (all goods): holds, jumps in flight, stocks, wrecks.
    pub goods_held: u128,
    /// Units made by the rules: the markets' first stocks, production.
    pub goods_made: u128,
    /// Units destroyed by the rules: consumption, wreck decay.
    pub goods_destroyed: u128,
    /// Credits created, by the rule that created them (`sim::ledger::CreditSource` names):
    /// their sum is `credits_granted`.
    pub credits_by_source: BTreeMap<String, u128>,
    /// Credits destroyed, by rule (`sim::ledger::CreditSink` names): their sum is
    /// `credits_spent`.
    pub credits_by_sink: BTreeMap<String, u128>,
    /// Units made, by rule and then by good (`sim::ledger::GoodsSource` names).
    pub goods_by_source: BTreeMap<String, BTreeMap<String, u128>>,
    /// Units destroyed, by rule and then by good (`sim::ledger::GoodsSink` names).
    pub goods_by_sink: BTreeMap<String, BTreeMap<String, u128>>,
    /// Trades replayed.
    pub trades: u64,
    /// Ships destroyed in combat.
    pub ships_destroyed: u64,
    /// Each system's (and instance's) replayed state hash, by log name (`sol`, `sol.2`).
    pub system_hashes: BTreeMap<String, String>,
    /// Instances ever opened, retired ones included.
    pub instances: u64,
    /// A hash over all system hashes (galaxy order).
    pub galaxy_hash: String,
    /// Seconds spent reading and replaying.
    pub seconds: f64,
}

impl AuditReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Credits and goods the rules created and destroyed, as the logs say, per good.
#[derive(Default)]
struct Ledger {
    /// Trades of instances' escrows the primaries' markets took, by escrow.
    remote: HashMap<(InstanceId, EscrowId), sim::market::Trade>,
    credits_made: u128,
    credits_destroyed: u128,
    goods_made: [u128; GOOD_COUNT],
    goods_destroyed: [u128; GOOD_COUNT],
    trades: u64,
    destroyed_ships: u64,
    /// The same flows by named rule (`sim::ledger`), counted apart from the totals above so
    /// that each checks the other.
    named: NamedLedger,
}

/// Credits and goods by the rule that created or destroyed them.
#[derive(Default)]
struct NamedLedger {
    credits_in: BTreeMap<&'static str, u128>,
    credits_out: BTreeMap<&'static str, u128>,
    goods_in: BTreeMap<&'static str, [u128; GOOD_COUNT]>,
    goods_out: BTreeMap<&'static str, [u128; GOOD_COUNT]>,
}

impl NamedLedger {
    fn add(&mut self, flows: &sim::ledger::Flows) {
        for (rule, n) in &flows.credits_in {
            *self.credits_in.entry(rule.name()).or_default() += u128::from(*n);
        }
        for (rule, n) in &flows.credits_out {
            *self.credits_out.entry(rule.name()).or_default() += u128::from(*n);
        }
        let add_units = |sum: &mut [u128; GOOD_COUNT], units: &[u64; GOOD_COUNT]| {
            for (s, n) in sum.iter_mut().zip(units) {
                *s += u128::from(*n);
            }
        };
        for (rule, units) in &flows.goods_in {
            add_units(self.goods_in.entry(rule.name()).or_default(), units);
        }
        for (rule, units) in &flows.goods_out {
            add_units(self.goods_out.entry(rule.name()).or_default(), units);
        }
    }
}

impl Ledger {
    fn made(&mut self, units: &[u64; GOOD_COUNT]) {
        for (sum, n) in self.goods_made.iter_mut().zip(units) {
            *sum += u128::from(*n);
        }
    }

    fn destroyed(&mut self, units: &[u64; GOOD_COUNT]) {
        for (sum, n) in self.goods_destroyed.iter_mut().zip(units) {
            *sum += u128::from(*n);
        }
    }
}

/// Adds a hold's goods to per-good sums.
fn add_cargo(sum: &mut [u128; GOOD_COUNT], cargo: &Cargo) {
    for (good, qty) in cargo.iter() {
        sum[good.index()] += u128::from(qty);
    }
}

/// One event about a player, as the system logs hold it.
#[derive(Clone, Copy)]
struct Version {
    /// The player's version after the event.
    v: u64,
    kind: &'static str,
    /// The log that holds it, and its record there.
    log: InstanceId,
    seq: u64,
}

/// What the auditor remembers of each player.
#[derive(Default)]
struct Track {
    /// Events about the player in the system logs.
    versions: Vec<Version>,
    places: u32,
}

/// Where the newest snapshot of each log stops: the player-log lines of every event up to
/// there are durable (the projector's barrier before a snapshot).
type SnapshotUpto = HashMap<InstanceId, u64>;

struct JumpSeen {
    jump: Jump,
    landed: bool,
    /// A spread galaxy's: its jump is in `jumps.log` (published on its pair subject).
    published: bool,
    /// A spread galaxy's: its origin logged `depart.done`.
    done: bool,
    /// A spread galaxy's: its origin cancelled it (`depart.abort`, a problem there); the
    /// player is back in the origin, so the jump is not in flight.
    aborted: bool,
}

impl JumpSeen {
    fn new(jump: Jump) -> JumpSeen {
        JumpSeen {
            jump,
            landed: false,
            published: false,
            done: false,
            aborted: false,
        }
    }

    /// A jump to another system (not a move between instances of one).
    fn crosses_systems(&self) -> bool {
        self.jump.from.system != self.jump.to.system
    }
}

/// Where the galaxy's jumps are committed: what the audit judges them by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Commits {
    /// A galaxy served by one node: a jump is committed by its `jump` record in the transition
    /// log together with its origin's `depart`.
    #[default]
    TransitionLog,
    /// The export of a spread galaxy (`jumps.log` is there): a jump is committed at its
    /// origin's durable `depart`; `jumps.log` holds the jumps published on pair subjects.
    Departs,
}

impl Commits {
    /// How the galaxy of `datadir` commits its jumps: [`Commits::Departs`] when it holds
    /// `jumps.log`.
    pub fn of(datadir: &DataDir) -> Commits {
        if datadir.jumps_log().exists() {
            Commits::Departs
        } else {
            Commits::TransitionLog
        }
    }
}

/// What the audit gathers as it reads the logs, for the checks across them at the end.
#[derive(Default)]
struct Tally {
    commits: Commits,
    /// Every committed jump (of the transition log, or a spread galaxy's `depart`s), by origin
    /// and transfer id.
    jumps: HashMap<(InstanceId, Xfer), JumpSeen>,
    players: HashMap<String, Track>,
    ledger: Ledger,
    snapshot_upto: SnapshotUpto,
}

impl Tally {
    /// What the replay of one log reads from and feeds; `split` gathers the instances it opens.
    fn cross<'a>(
        &'a mut self,
        split: &'a mut BTreeSet<u16>,
        watch: &'a mut dyn Watch,
    ) -> CrossLog<'a> {
        CrossLog {
            watch,
            commits: self.commits,
            jumps: &mut self.jumps,
            players: &mut self.players,
            ledger: &mut self.ledger,
            split,
            snapshot_upto: &mut self.snapshot_upto,
        }
    }
}

/// What an audit shows as it replays the system logs: the economy report
/// ([`economy::EconomyBook`]) is one. It sees every system and instance log once, in galaxy
/// order, each from its first record.
pub trait Watch {
    /// Instance `at` as it begins, before its log's first record.
    fn begin(&mut self, at: InstanceId, state: &SystemState);
    /// `event`, recorded at tick `t` in `at`'s log and applied: `after` is the state it gave.
    fn event(&mut self, at: InstanceId, t: Tick, event: &Event, after: &SystemState);
}

/// A watcher that looks at nothing: a plain audit.
struct NoWatch;

impl Watch for NoWatch {
    fn begin(&mut self, _: InstanceId, _: &SystemState) {}
    fn event(&mut self, _: InstanceId, _: Tick, _: &Event, _: &SystemState) {}
}

/// Audits the data directory: the layout, the transition log, every system's logs replayed,
/// then where everything is at the end (players, goods, credits, jumps), each player's
/// history, and the player logs.
pub fn audit(datadir: &DataDir, galaxy: &Galaxy) -> AuditReport {
    audit_watched(datadir, galaxy, &mut NoWatch)
}

/// [`audit`], showing `watch` every system's replay.
pub fn audit_watched(datadir: &DataDir, galaxy: &Galaxy, watch: &mut dyn Watch) -> AuditReport {
    let started = Instant::now();
    let mut r = AuditReport::default();
    let commits = Commits::of(datadir);
    let mut tally = Tally {
        commits,
        ..Tally::default()
    };
    let layout = check_layout(datadir, galaxy, commits, &mut r);

    // The committed jumps first, so that systems can be checked against them.
    tally.jumps = match commits {
        Commits::TransitionLog => read_jumps(datadir, galaxy, &mut r),
        Commits::Departs => read_spread_jumps(datadir, galaxy, &mut r),
    };
    r.jumps = tally.jumps.len() as u64;

    let mut states = Vec::with_capacity(galaxy.len());
    for id in galaxy.ids() {
        states.extend(audit_star_system(
            datadir, galaxy, id, &mut r, &mut tally, watch,
        ));
    }

    // Places at the end.
    let mut goods_held = [0u128; GOOD_COUNT];
    count_places(galaxy, &states, &mut tally, &mut goods_held, &mut r);
    count_escrows(galaxy, &states, &tally.ledger, &mut goods_held, &mut r);
    count_jumps(galaxy, &states, &mut tally, &mut goods_held, &mut r);
    check_goods(&tally.ledger, &goods_held, &mut r);
    check_histories(&mut tally.players, &mut r);
    r.players = tally.players.len() as u64;
    if layout.players_dir {
        audit_player_logs(
            datadir,
            galaxy,
            &tally.players,
            &tally.snapshot_upto,
            &mut r,
        );
    }
    check_credits(&mut r);
    r.galaxy_hash = galaxy_hash(&r.system_hashes);
    r.seconds = started.elapsed().as_secs_f64();
    r
}

/// Replays the logs of star system `id`: its primary, then every instance it opened or that
/// has a log, each noted with its state hash. Answers their states, the primary first.
fn audit_star_system(
    datadir: &DataDir,
    galaxy: &Galaxy,
    id: SystemId,
    r: &mut AuditReport,
    tally: &mut Tally,
    watch: &mut dyn Watch,
) -> Vec<SystemState> {
    let mut split = BTreeSet::new();
    let primary = audit_system(
        datadir,
        galaxy,
        InstanceId::primary(id),
        r,
        &mut tally.cross(&mut split, watch),
    );
    let mut logs = super::recovery::instance_logs(datadir, galaxy, id);
    check_instance_logs(datadir, galaxy, id, (&logs, &split), &tally.jumps, r);
    logs.extend(split.iter().copied());
    let mut instances = Vec::new();
    for n in logs {
        let at = InstanceId::new(id, n);
        let state = audit_system(
            datadir,
            galaxy,
            at,
            r,
            &mut tally.cross(&mut BTreeSet::new(), watch),
        );
        if !primary.instances.contains(&n) && state.population() > 0 {
            r.problems.push(format!(
                "{} is retired but holds {} players",
                at.slug(galaxy),
                state.population()
            ));
        }
        r.instances += 1;
        instances.push(state);
    }
    let states: Vec<SystemState> = std::iter::once(primary).chain(instances).collect();
    for state in &states {
        r.system_hashes.insert(
            state.instance_id().slug(galaxy),
            format!("{:016x}", state.state_hash()),
        );
    }
    states
}

/// The instance logs of system `id` against the instances its primary opened (`split`): a log
/// of an instance never opened is a problem; an opened instance without a log is a note if
/// nothing refers to it, a problem if jumps or snapshots do.
fn check_instance_logs(
    datadir: &DataDir,
    galaxy: &Galaxy,
    id: SystemId,
    (logs, split): (&BTreeSet<u16>, &BTreeSet<u16>),
    jumps: &HashMap<(InstanceId, Xfer), JumpSeen>,
    r: &mut AuditReport,
) {
    for n in logs.difference(split) {
        r.problems.push(format!(
            "{}: a log of instance {n}, which {} never opened",
            datadir
                .system_log(&InstanceId::new(id, *n).slug(galaxy))
                .display(),
            galaxy.name(id)
        ));
    }
    for n in split.difference(logs) {
        let at = InstanceId::new(id, *n);
        let path = datadir.system_log(&at.slug(galaxy));
        // `split` is durable before the instance's shard starts and creates its log: a
        // crash in between leaves an opened instance without a log, legitimately, as long
        // as nothing ever happened there (no jump to or from it, no snapshot of it).
        let used = jumps.values().any(|j| j.jump.from == at || j.jump.to == at)
            || !snapshot::list(&datadir.snapshots_dir(), &at.slug(galaxy))
                .unwrap_or_default()
                .is_empty();
        if used {
            r.problems.push(format!(
                "{}: missing: {} opened instance {n}, and jumps or snapshots refer to it",
                path.display(),
                galaxy.name(id)
            ));
        } else {
            r.notes.push(format!(
                "{}: absent: {} opened instance {n} but stopped before its shard started \
                 (nothing happened there; the next start creates its log)",
                path.display(),
                galaxy.name(id)
            ));
        }
    }
}

/// Counts what every system holds at the end (market tills and stocks, wrecks, players and
/// their cargo), and the jumps prepared but not committed (a note each: the next start cancels
/// them), whose players are counted there.
fn count_places(
    galaxy: &Galaxy,
    states: &[SystemState],
    tally: &mut Tally,
    goods_held: &mut [u128; GOOD_COUNT],
    r: &mut AuditReport,
) {
    let players = &mut tally.players;
    for s in states {
        r.credits_held += u128::from(s.market.till_cr());
        for (good, n) in s.market.stocks().iter().enumerate() {
            goods_held[good] += u128::from(*n);
        }
        for (good, n) in s.wrecks.total_units().iter().enumerate() {
            goods_held[good] += u128::from(*n);
        }
        for p in s.players.values() {
            players.entry(p.name.clone()).or_default().places += 1;
            r.credits_held += u128::from(p.credits);
            add_cargo(goods_held, &p.cargo);
        }
        for (xfer, d) in &s.departing {
            if tally.jumps.contains_key(&(s.instance_id(), *xfer)) {
                // Committed: counted below as in flight (or landed).
                continue;
            }
            r.notes.push(format!(
                "jump {} of '{}' is prepared but not committed: the next start cancels it",
                crate::codec::xfer_text(galaxy, s.instance_id(), *xfer),
                d.player.name
            ));
            players.entry(d.player.name.clone()).or_default().places += 1;
            r.credits_held += u128::from(d.player.credits);
            add_cargo(goods_held, &d.player.cargo);
        }
    }
}

/// Counts what the instances' open escrows hold: what an escrow holds now depends on whether
/// the primary's market took the trade. An escrow whose trade its primary took and forgot is a
/// problem; each open escrow is a note (the next start settles it).
fn count_escrows(
    galaxy: &Galaxy,
    states: &[SystemState],
    ledger: &Ledger,
    goods_held: &mut [u128; GOOD_COUNT],
    r: &mut AuditReport,
) {
    let outcomes_kept: std::collections::HashSet<(InstanceId, EscrowId)> = states
        .iter()
        .filter(|s| s.is_primary())
        .flat_map(|s| {
            let system = s.id;
            s.remote_trades
                .keys()
                .map(move |(n, e)| (InstanceId::new(system, *n), *e))
        })
        .collect();
    for s in states {
        for (id, e) in &s.escrows {
            let at = s.instance_id();
            let good = e.order.good.index();
            let text = crate::codec::escrow_text(galaxy, at, *id);
            match ledger.remote.get(&(at, *id)) {
                Some(t) => {
                    if !outcomes_kept.contains(&(at, *id)) {
                        r.problems.push(format!(
                            "escrow {text} is open but its primary forgot the trade"
                        ));
                    }
                    match t.side {
                        sim::market::Side::Buy => {
                            let paid = t.total_cr + t.fee_cr;
                            r.credits_held += u128::from(e.held_cr.saturating_sub(paid));
                            goods_held[good] += u128::from(t.qty);
                        }
                        sim::market::Side::Sell => {
                            r.credits_held += u128::from(t.total_cr - t.fee_cr);
                            goods_held[good] += u128::from(e.held_qty.saturating_sub(t.qty));
                        }
                    }
                }
                None => {
                    r.credits_held += u128::from(e.held_cr);
                    goods_held[good] += u128::from(e.held_qty);
                }
            }
            r.notes.push(format!(
                "trade of escrow {text} ('{}') is not settled: the next start settles it",
                e.player
            ));
        }
    }
}

/// Judges every committed jump against its origin and destination at the end: a void jump or
/// one never prepared never lands (a lost prepare not yet voided is a note), a jump in flight
/// can still land; counts the players, credits and goods of the jumps in flight.
fn count_jumps(
    galaxy: &Galaxy,
    states: &[SystemState],
    tally: &mut Tally,
    goods_held: &mut [u128; GOOD_COUNT],
    r: &mut AuditReport,
) {
    let players = &mut tally.players;
    let by_id: HashMap<InstanceId, &SystemState> =
        states.iter().map(|s| (s.instance_id(), s)).collect();
    for seen in tally.jumps.values() {
        let (from, xfer) = (seen.jump.from, seen.jump.xfer);
        let text = crate::codec::xfer_text(galaxy, from, xfer);
        if tally.commits == Commits::Departs && !judge_spread_jump(galaxy, seen, r) {
            continue;
        }
        let origin = by_id.get(&from);
        if origin.is_some_and(|o| o.voided.contains(&xfer)) {
            if seen.landed {
                r.problems
                    .push(format!("jump {text} lands but its origin voided it"));
            }
            continue;
        }
        if origin.is_some_and(|o| xfer >= o.next_xfer) {
            if seen.landed {
                r.problems.push(format!(
                    "jump {text} lands but was never prepared in its origin's log"
                ));
                continue;
            }
            r.notes.push(format!(
                "jump {text} of '{}' is in the transition log but its prepare was lost: the next \
                 start voids it",
                seen.jump.player.name
            ));
            continue;
        }
        if !seen.landed
            && by_id
                .get(&seen.jump.to)
                .and_then(|d| d.landed_upto.get(&from))
                .is_some_and(|&upto| upto >= xfer)
        {
            r.problems.push(format!(
                "jump {text} of '{}' is in flight, but {} has landed a later jump of its origin: \
                 it can never land",
                seen.jump.player.name,
                seen.jump.to.slug(galaxy)
            ));
        }
        if !seen.landed {
            r.jumps_in_flight += 1;
            let p = &seen.jump.player;
            players.entry(p.name.clone()).or_default().places += 1;
            r.credits_held += u128::from(p.credits);
            add_cargo(goods_held, &p.cargo);
        }
    }
}

/// The checks of a spread galaxy's committed jump at the end (the module's comment); false
/// when the jump is not in flight whatever else holds (its origin cancelled it: the player
/// is counted there).
fn judge_spread_jump(galaxy: &Galaxy, seen: &JumpSeen, r: &mut AuditReport) -> bool {
    let text = crate::codec::xfer_text(galaxy, seen.jump.from, seen.jump.xfer);
    if seen.aborted {
        if seen.landed {
            r.problems
                .push(format!("jump {text} lands but its origin cancelled it"));
        }
        return false;
    }
    if seen.crosses_systems() && seen.landed && !seen.published {
        r.problems.push(format!(
            "jump {text} of '{}' lands in {}, but jumps.log does not hold it: a destination \
             lands only what it read from its pair subject",
            seen.jump.player.name,
            seen.jump.to.slug(galaxy)
        ));
    }
    if !seen.crosses_systems() && seen.done && !seen.landed {
        r.problems.push(format!(
            "move {text} of '{}' is marked done but never landed in {}: a move lands before \
             its depart.done",
            seen.jump.player.name,
            seen.jump.to.slug(galaxy)
        ));
    }
    true
}

/// Copies the ledger's totals into the report and checks, for each good, that the units held
/// are the units made less the units destroyed.
fn check_goods(ledger: &Ledger, goods_held: &[u128; GOOD_COUNT], r: &mut AuditReport) {
    r.credits_granted = ledger.credits_made;
    r.credits_spent = ledger.credits_destroyed;
    r.trades = ledger.trades;
    r.ships_destroyed = ledger.destroyed_ships;
    copy_named(ledger, r);
    for good in sim::goods::Good::ALL {
        let i = good.index();
        let (held, made, gone) = (
            goods_held[i],
            ledger.goods_made[i],
            ledger.goods_destroyed[i],
        );
        r.goods_held += held;
        r.goods_made += made;
        r.goods_destroyed += gone;
        if held + gone != made {
            r.problems.push(format!(
                "{good} not conserved: {held} units held, but {made} made - {gone} destroyed = {}",
                made as i128 - gone as i128
            ));
        }
    }
}

/// Copies the flows by named rule into the report, and checks that they add up to the totals
/// counted apart: a rule that creates or destroys without a name in `sim::ledger` shows here.
fn copy_named(ledger: &Ledger, r: &mut AuditReport) {
    let named = &ledger.named;
    let goods = |by_rule: &BTreeMap<&'static str, [u128; GOOD_COUNT]>| {
        by_rule
            .iter()
            .map(|(rule, units)| {
                let per_good = sim::goods::Good::ALL
                    .iter()
                    .map(|g| (g.name().to_string(), units[g.index()]))
                    .collect();
                (rule.to_string(), per_good)
            })
            .collect()
    };
    let credits = |by_rule: &BTreeMap<&'static str, u128>| {
        by_rule
            .iter()
            .map(|(rule, n)| (rule.to_string(), *n))
            .collect()
    };
    r.credits_by_source = credits(&named.credits_in);
    r.credits_by_sink = credits(&named.credits_out);
    r.goods_by_source = goods(&named.goods_in);
    r.goods_by_sink = goods(&named.goods_out);
    let sources: u128 = named.credits_in.values().sum();
    let sinks: u128 = named.credits_out.values().sum();
    if sources != r.credits_granted || sinks != r.credits_spent {
        r.problems.push(format!(
            "the credits by named source and sink ({sources} created, {sinks} destroyed) differ \
             from the totals counted by the rules ({} granted, {} spent)",
            r.credits_granted, r.credits_spent
        ));
    }
    for good in sim::goods::Good::ALL {
        let i = good.index();
        let made: u128 = named.goods_in.values().map(|u| u[i]).sum();
        let gone: u128 = named.goods_out.values().map(|u| u[i]).sum();
        if made != ledger.goods_made[i] || gone != ledger.goods_destroyed[i] {
            r.problems.push(format!(
                "{good} by named source and sink ({made} made, {gone} destroyed) differs from \
                 the totals counted by the rules"
            ));
        }
    }
}

/// Every player is in exactly one place, and their history has no gap and no repeat.
fn check_histories(players: &mut HashMap<String, Track>, r: &mut AuditReport) {
    for (name, track) in players {
        if track.places != 1 {
            r.problems.push(format!(
                "player '{name}' is in {} places (must be exactly one)",
                track.places
            ));
        }
        track.versions.sort_unstable_by_key(|e| e.v);
        for (i, e) in track.versions.iter().enumerate() {
            if e.v != i as u64 + 1 {
                r.problems.push(format!(
                    "player '{name}' history has a gap or repeat at version {} (found {})",
                    i + 1,
                    e.v
                ));
                break;
            }
        }
    }
}

/// The credits held are the credits granted less the credits spent.
fn check_credits(r: &mut AuditReport) {
    if r.credits_held != r.credits_granted.saturating_sub(r.credits_spent)
        || r.credits_spent > r.credits_granted
    {
        r.problems.push(format!(
            "credits not conserved: {} held, but {} granted - {} spent = {}",
            r.credits_held,
            r.credits_granted,
            r.credits_spent,
            r.credits_granted as i128 - r.credits_spent as i128
        ));
    }
}

/// One hash of the galaxy: of every system's state hash, in the order of their names.
fn galaxy_hash(system_hashes: &BTreeMap<String, String>) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for hash in system_hashes.values() {
        h.update(hash.as_bytes());
    }
    format!("{:016x}", h.digest())
}

/// Every jump of the transition log (archived segments, then the active one), by origin and
/// transfer id; one held twice, or a record that is not a jump, is a problem.
fn read_jumps(
    datadir: &DataDir,
    galaxy: &Galaxy,
    r: &mut AuditReport,
) -> HashMap<(InstanceId, Xfer), JumpSeen> {
    let mut jumps: HashMap<(InstanceId, Xfer), JumpSeen> = HashMap::new();
    let tlog = datadir.transitions_log();
    let mut notes = Vec::new();
    let paths = segments(&datadir.archive_root(), "transitions", tlog, &mut notes);
    read_log(r, paths, |rec| {
        let jump = decode_jump(galaxy, rec)?;
        let key = (jump.from, jump.xfer);
        if jumps.contains_key(&key) {
            return Err(format!(
                "jump {} appears twice",
                crate::codec::xfer_text(galaxy, jump.from, jump.xfer)
            )
            .into());
        }
        jumps.insert(key, JumpSeen::new(jump));
        Ok(())
    });
    r.notes.extend(notes);
    jumps
}

/// A spread galaxy's committed jumps: every `depart` of the system logs (first pass), each
/// marked published when `jumps.log` holds it (checked against it).
fn read_spread_jumps(
    datadir: &DataDir,
    galaxy: &Galaxy,
    r: &mut AuditReport,
) -> HashMap<(InstanceId, Xfer), JumpSeen> {
    let mut jumps = HashMap::new();
    for id in galaxy.ids() {
        let mut split = BTreeSet::new();
        departs_of(
            datadir,
            galaxy,
            InstanceId::primary(id),
            &mut jumps,
            &mut split,
        );
        let mut logs = super::recovery::instance_logs(datadir, galaxy, id);
        logs.extend(split);
        for n in logs {
            let at = InstanceId::new(id, n);
            departs_of(datadir, galaxy, at, &mut jumps, &mut BTreeSet::new());
        }
    }
    read_published(datadir, galaxy, &mut jumps, r);
    jumps
}

/// The first pass over the log of instance `at`: replays it (nothing judged, nothing counted:
/// the second pass does) and adds each `depart` to `jumps` as the player left, from the
/// replayed state's `departing`; notes the instances it opens in `split`. A log that does not
/// replay stops there (the second pass reports it).
fn departs_of(
    datadir: &DataDir,
    galaxy: &Galaxy,
    at: InstanceId,
    jumps: &mut HashMap<(InstanceId, Xfer), JumpSeen>,
    split: &mut BTreeSet<u16>,
) {
    let slug = at.slug(galaxy);
    let mut unread = AuditReport::default();
    let paths = segments(
        &datadir.archive_dir(),
        &slug,
        datadir.system_log(&slug),
        &mut unread.notes,
    );
    let mut state = SystemState::new_instance(galaxy, at);
    read_log(&mut unread, paths, |rec| {
        let (t, event) = decode_event(galaxy, at, rec)?;
        state.apply(t, &event)?;
        match &event {
            // A ship destroyed away from home respawns there by a jump of its own.
            Event::Depart { xfer, .. }
            | Event::Destroyed {
                jump_home: Some((xfer, _)),
                ..
            } => {
                let d = state
                    .departing
                    .get(xfer)
                    .expect("a depart applied leaves its player departing");
                let jump = Jump {
                    from: at,
                    xfer: *xfer,
                    to: d.to,
                    t,
                    travel_ticks: 0,
                    player: d.player.clone(),
                    tseq: Seq(0),
                };
                let before = jumps.insert((at, *xfer), JumpSeen::new(jump));
                assert!(
                    before.is_none(),
                    "a log's transfer numbers grow (the replay refuses one out of order)"
                );
            }
            Event::Split { instance } => {
                split.insert(*instance);
            }
            _ => {}
        }
        Ok(())
    });
}

/// Reads `jumps.log`: each jump published once, a jump between systems, equal to the committed
/// jump of its `depart` (same player in the same state, same destination); marks those
/// published. The export writes only jumps whose `depart` it exported (it reads the pair
/// subjects after the logs), so a jump without its `depart` was published uncommitted.
fn read_published(
    datadir: &DataDir,
    galaxy: &Galaxy,
    jumps: &mut HashMap<(InstanceId, Xfer), JumpSeen>,
    r: &mut AuditReport,
) {
    let path = datadir.jumps_log();
    let mut problems = Vec::new();
    let mut seen_ids = std::collections::HashSet::new();
    read_log(r, vec![path.clone()], |rec| {
        let jump = decode_jump(galaxy, rec)?;
        let text = crate::codec::xfer_text(galaxy, jump.from, jump.xfer);
        if !seen_ids.insert((jump.from, jump.xfer)) {
            return Err(format!("jump {text} appears twice").into());
        }
        let at = format!("{} record {}", path.display(), rec.seq);
        if jump.from.system == jump.to.system {
            problems.push(format!(
                "{at}: jump {text} is a move between instances of {}, which is never published",
                galaxy.name(jump.from.system)
            ));
        }
        let Some(seen) = jumps.get_mut(&(jump.from, jump.xfer)) else {
            problems.push(format!(
                "{at}: jump {text} of '{}' is published, but its origin never departed it: a \
                 jump is published only once its depart is durable",
                jump.player.name
            ));
            return Ok(());
        };
        let departed = &seen.jump;
        if departed.player.name != jump.player.name {
            problems.push(format!(
                "{at}: jump {text} is published for '{}', but its depart is of '{}'",
                jump.player.name, departed.player.name
            ));
        } else if departed.player != jump.player {
            problems.push(format!(
                "{at}: jump {text} of '{}' is published with another state than its depart left \
                 with",
                jump.player.name
            ));
        }
        if departed.to != jump.to {
            problems.push(format!(
                "{at}: jump {text} is published towards {}, but its depart goes to {}",
                jump.to.slug(galaxy),
                departed.to.slug(galaxy)
            ));
        }
        seen.published = true;
        Ok(())
    });
    r.problems.extend(problems);
}

/// What of the layout [`check_layout`] found.
struct Layout {
    /// `players/` exists: the player logs are checked only then.
    players_dir: bool,
}

/// Every start creates `transitions.log`, each system's log and `players/` (recovery opens
/// each log, which creates it) before it writes any record: one missing is a problem. A
/// directory whose logs hold no record at all (none there, or a first start stopped while it
/// created them) has nothing to prove: a note.
fn check_layout(
    datadir: &DataDir,
    galaxy: &Galaxy,
    commits: Commits,
    r: &mut AuditReport,
) -> Layout {
    let held = |active: &Path, archive: &Path, name: &str| {
        active.exists() || !archived_segments(archive, name).is_empty()
    };
    let tlog = datadir.transitions_log();
    let transitions = held(&tlog, &datadir.archive_root(), "transitions");
    let missing_systems: Vec<PathBuf> = galaxy
        .ids()
        .map(|id| galaxy.slug(id))
        .filter(|slug| !held(&datadir.system_log(slug), &datadir.archive_dir(), slug))
        .map(|slug| datadir.system_log(slug))
        .collect();
    let players_dir = datadir.players_dir().is_dir();
    let holds_records = |path: PathBuf| std::fs::metadata(path).is_ok_and(|m| m.len() > 0);
    let archive_empty = std::fs::read_dir(datadir.archive_dir())
        .map_or(true, |mut entries| entries.next().is_none());
    let no_record = archive_empty
        && archived_segments(&datadir.archive_root(), "transitions").is_empty()
        && !holds_records(tlog.clone())
        && galaxy
            .ids()
            .all(|id| !holds_records(datadir.system_log(galaxy.slug(id))));
    if no_record {
        r.notes.push(format!(
            "{}: no record in any log: no server has written here, so there is nothing to \
             prove",
            datadir.root().display()
        ));
        return Layout { players_dir };
    }
    match commits {
        Commits::TransitionLog if !transitions => r.problems.push(format!(
            "{}: missing: every start creates it, and the jumps it held cannot be proved",
            tlog.display()
        )),
        Commits::Departs
            if holds_records(tlog.clone())
                || !archived_segments(&datadir.archive_root(), "transitions").is_empty() =>
        {
            r.problems.push(format!(
                "{}: holds records, but {} marks the export of a spread galaxy, which has no \
                 transition log: its jumps would not be judged",
                tlog.display(),
                datadir.jumps_log().display()
            ))
        }
        _ => {}
    }
    for path in missing_systems {
        r.problems.push(format!(
            "{}: missing: every start creates each system's log",
            path.display()
        ));
    }
    if !players_dir {
        r.problems.push(format!(
            "{}: missing: every start creates it, and the players' histories cannot be checked",
            datadir.players_dir().display()
        ));
    }
    Layout { players_dir }
}

/// Each player's log must be their history: line N is their N-th event, of the same kind as
/// the system logs say. A log behind (a crash before its lines were written) is a note, as long
/// as what it lacks is newer than its system's newest snapshot: the lines up to a snapshot are
/// made durable before the snapshot is written, so lacking one of those (or the whole file) is
/// a problem.
fn audit_player_logs(
    datadir: &DataDir,
    galaxy: &Galaxy,
    players: &HashMap<String, Track>,
    snapshot_upto: &SnapshotUpto,
    r: &mut AuditReport,
) {
    let entries = match std::fs::read_dir(datadir.players_dir()) {
        Ok(entries) => entries,
        Err(e) => {
            r.problems.push(format!(
                "{}: cannot list: {e}",
                datadir.players_dir().display()
            ));
            return;
        }
    };
    let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    files.sort();
    let mut with_log = std::collections::HashSet::new();
    for path in files {
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let Some(name) = store::datadir::player_name_from_stem(stem) else {
            r.problems
                .push(format!("{}: not a player log name", path.display()));
            continue;
        };
        let Some(track) = players.get(&name) else {
            r.problems.push(format!(
                "{}: no such player in the system logs",
                path.display()
            ));
            continue;
        };
        with_log.insert(name);
        let lines = audit_player_log(r, &path, track);
        judge_missing_lines(galaxy, &path, track, lines, snapshot_upto, r);
    }
    let mut without: Vec<(&String, &Track)> = players
        .iter()
        .filter(|(name, _)| !with_log.contains(*name))
        .collect();
    without.sort_by_key(|(name, _)| *name);
    for (name, track) in without {
        judge_missing_lines(
            galaxy,
            &datadir.player_log(name),
            track,
            0,
            snapshot_upto,
            r,
        );
    }
}

/// Reads one player's log against their events; returns how many lines match.
fn audit_player_log(r: &mut AuditReport, path: &Path, track: &Track) -> u64 {
    let mut lines = 0u64;
    let start = ScanStart {
        offset: 0,
        line: 1,
        expect_seq: Some(1),
    };
    read_segment(r, path, start, |rec| {
        let expected = track.versions.get(rec.seq as usize - 1);
        match expected {
            Some(e) if e.v == rec.seq && e.kind == rec.kind => {
                lines += 1;
                Ok(())
            }
            Some(e) => Err(format!(
                "event {} is '{}' here but '{}' in the system logs",
                rec.seq, rec.kind, e.kind
            )
            .into()),
            None => Err(format!("event {} is not in the system logs", rec.seq).into()),
        }
    });
    lines
}

/// A player log with `lines` of the player's events: a note if what it lacks is all newer
/// than the snapshots, a problem if a snapshot covers any of it.
fn judge_missing_lines(
    galaxy: &Galaxy,
    path: &Path,
    track: &Track,
    lines: u64,
    snapshot_upto: &SnapshotUpto,
    r: &mut AuditReport,
) {
    let events = track.versions.len() as u64;
    let lacking = track.versions.get(lines as usize..).unwrap_or_default();
    if lacking.is_empty() {
        return;
    }
    let covered = lacking
        .iter()
        .find(|e| snapshot_upto.get(&e.log).is_some_and(|&upto| e.seq <= upto));
    let what = if lines == 0 && !path.exists() {
        "missing".to_string()
    } else {
        format!("{lines} of {events} events")
    };
    match covered {
        Some(e) => r.problems.push(format!(
            "{}: {what}, but event {} ({} record {}) is behind a snapshot of its log, and the \
             lines up to a snapshot are durable before it is written: the player log lost it",
            path.display(),
            e.v,
            e.log.slug(galaxy),
            e.seq
        )),
        None => r.notes.push(format!(
            "{}: {what} (behind; the next start catches it up)",
            path.display()
        )),
    }
}

/// Reads one log segment, counting files, records and bytes, and turning corruption into a
/// problem and a torn tail into a note. Returns the next expected sequence number.
fn read_segment(
    r: &mut AuditReport,
    path: &Path,
    start: ScanStart,
    visit: impl FnMut(&store::record::Record<'_>) -> Result<(), VisitError>,
) -> Option<u64> {
    r.files += 1;
    let bytes = match read_from(path, 0) {
        Ok(b) => b,
        Err(e) => {
            r.problems.push(e.to_string());
            return None;
        }
    };
    r.bytes += bytes.len() as u64;
    match scan(&bytes, start, visit) {
        Ok(out) => {
            r.records += out.records;
            if let Some(t) = out.torn {
                r.notes.push(format!(
                    "{} line {}: torn tail of {} bytes ({}); the next start cuts it",
                    path.display(),
                    t.line,
                    t.bytes,
                    t.reason
                ));
            }
            Some(
                out.last_seq
                    .map_or(start.expect_seq.unwrap_or(1), |s| s + 1),
            )
        }
        Err(c) => {
            r.problems.push(format!("{}: {c}", path.display()));
            None
        }
    }
}

/// The segments of a log, oldest first: archived ones, then the active one. An archived
/// segment that overlaps the active log (left by an interrupted compaction, which writes the
/// archive before cutting the active log) is left out, with a note.
pub(crate) fn segments(
    archive_dir: &Path,
    name: &str,
    active: PathBuf,
    notes: &mut Vec<String>,
) -> Vec<PathBuf> {
    let active_first = store::log::first_seq(&active);
    let mut out = Vec::new();
    for (_, last, path) in archived_segments(archive_dir, name) {
        if active_first.is_some_and(|a| last >= a) {
            notes.push(format!(
                "{}: also in {} (an interrupted compaction); not read twice",
                path.display(),
                active.display()
            ));
            continue;
        }
        out.push(path);
    }
    out.push(active);
    out
}

/// What one system's replay reads from, and feeds, the other logs' audit.
struct CrossLog<'a> {
    commits: Commits,
    jumps: &'a mut HashMap<(InstanceId, Xfer), JumpSeen>,
    players: &'a mut HashMap<String, Track>,
    ledger: &'a mut Ledger,
    /// The instances the log opens (a primary's).
    split: &'a mut std::collections::BTreeSet<u16>,
    snapshot_upto: &'a mut SnapshotUpto,
    watch: &'a mut dyn Watch,
}

/// A log's snapshots that give their own state hash, by the record they stop at: (file, hash).
type Snapshots = BTreeMap<u64, (PathBuf, u64)>;

/// Replays the log of instance `id` from its first record, checking each event against the
/// other logs; notes the instances it opens, and where its newest snapshot stops.
fn audit_system(
    datadir: &DataDir,
    galaxy: &Galaxy,
    id: InstanceId,
    r: &mut AuditReport,
    cross: &mut CrossLog<'_>,
) -> SystemState {
    let mut state = SystemState::new_instance(galaxy, id);
    cross.watch.begin(id, &state);
    // The market's first stock and till: made by the rules when the system began.
    cross.ledger.credits_made += u128::from(state.market.till_cr());
    cross.ledger.made(&state.market.stocks());
    cross.ledger.named.add(&sim::ledger::flows_at_start(
        state.market.till_cr(),
        state.market.stocks(),
    ));
    let snapshots = load_snapshots(datadir, galaxy, id, r);
    if let Some(upto) = snapshots.keys().next_back() {
        cross.snapshot_upto.insert(id, *upto);
    }
    let log = datadir.system_log(&id.slug(galaxy));
    // Problems the replay goes on after (the event applies as the logs say).
    let mut problems = Vec::new();
    let last = replay_log(
        datadir,
        galaxy,
        id,
        r,
        &mut state,
        &snapshots,
        |state, seq, t, event| {
            if let Some(problem) =
                check_event(galaxy, id, event, cross.commits, cross.jumps, cross.ledger)?
            {
                problems.push(format!("{} record {seq}: {problem}", log.display()));
            }
            state.apply(t, event)?;
            cross.watch.event(id, t, event, state);
            if let Event::Split { instance } = event {
                cross.split.insert(*instance);
            }
            track_event(state, id, seq, event, cross.players);
            Ok(())
        },
    );
    r.problems.extend(problems);
    let Some(last) = last else {
        return state;
    };
    for (upto, (path, _)) in snapshots.range(last + 1..) {
        r.problems.push(format!(
            "{}: stops at record {upto}, but {} ends at record {last}: the log lost records \
             the snapshot holds",
            path.display(),
            log.display()
        ));
    }
    state
}

/// The snapshots of instance `id`; one whose records do not give its own hash is a problem,
/// one that cannot be read a note (recovery uses an older one).
fn load_snapshots(
    datadir: &DataDir,
    galaxy: &Galaxy,
    id: InstanceId,
    r: &mut AuditReport,
) -> Snapshots {
    let slug = id.slug(galaxy);
    let mut snapshots = Snapshots::new();
    for (_, path) in snapshot::list(&datadir.snapshots_dir(), &slug).unwrap_or_default() {
        r.files += 1;
        let mut snap_state = SystemState::new_instance(galaxy, id);
        match snapshot::load(&path, |rec| {
            Ok(decode_state_record(galaxy, &mut snap_state, rec)?)
        }) {
            Ok(meta) if meta.state_hash == snap_state.state_hash() => {
                snapshots.insert(meta.upto_seq, (path, meta.state_hash));
            }
            Ok(_) => r.problems.push(format!(
                "{}: its records do not give its own state hash",
                path.display()
            )),
            Err(e) => r
                .notes
                .push(format!("{e}; recovery uses an older snapshot")),
        }
    }
    snapshots
}

/// Reads the log of instance `id` (archived segments, then the active one) into `state`:
/// `visit` applies each event; every snapshot is compared with the state at its record.
/// Returns the last record's sequence number read (0 for none), or `None` if the log is
/// corrupt (the problem is reported).
fn replay_log(
    datadir: &DataDir,
    galaxy: &Galaxy,
    id: InstanceId,
    r: &mut AuditReport,
    state: &mut SystemState,
    snapshots: &Snapshots,
    mut visit: impl FnMut(&mut SystemState, u64, Tick, &Event) -> Result<(), VisitError>,
) -> Option<u64> {
    let slug = id.slug(galaxy);
    let paths = segments(
        &datadir.archive_dir(),
        &slug,
        datadir.system_log(&slug),
        &mut r.notes,
    );
    let next = read_log(r, paths, |rec| {
        let (t, event) = decode_event(galaxy, id, rec)?;
        visit(state, rec.seq, t, &event)?;
        if let Some((spath, hash)) = snapshots.get(&rec.seq) {
            if *hash != state.state_hash() {
                return Err(format!(
                    "snapshot {} does not match the replayed state at record {}",
                    spath.display(),
                    rec.seq
                )
                .into());
            }
        }
        Ok(())
    })?;
    Some(next - 1)
}

/// Reads the segments of one log in order (a segment not there is skipped), each record's
/// sequence number following the last one's across segments. Returns the next expected
/// sequence number, or `None` at the first corrupt segment (the problem is reported; what
/// follows it is not read).
///
/// `lease` records (a new owner's mark, docs/NATS.md) are not events: they are checked here
/// (their epochs never decrease within a log, across its segments) and not visited.
fn read_log(
    r: &mut AuditReport,
    paths: Vec<PathBuf>,
    mut visit: impl FnMut(&store::record::Record<'_>) -> Result<(), VisitError>,
) -> Option<u64> {
    let mut last_lease: Option<LeaseRecord> = None;
    let mut visit = |rec: &store::record::Record<'_>| -> Result<(), VisitError> {
        let Some(lease) = LeaseRecord::decode(rec)? else {
            return visit(rec);
        };
        if let Some(last) = last_lease.as_ref().filter(|last| lease.epoch < last.epoch) {
            return Err(format!(
                "lease epoch={} node={} after lease epoch={} node={}: a log's lease epochs never decrease",
                lease.epoch, lease.node, last.epoch, last.node
            )
            .into());
        }
        last_lease = Some(lease);
        Ok(())
    };
    let mut expect = 1u64;
    for path in paths.iter().filter(|p| p.exists()) {
        let start = ScanStart {
            offset: 0,
            line: 1,
            expect_seq: Some(expect),
        };
        expect = read_segment(r, path, start, &mut visit)?;
    }
    Some(expect)
}

/// Cross-log checks of one event, before it applies: an error stops the log's replay (the
/// event contradicts the other logs), `Ok(Some(problem))` is a problem the replay goes on
/// after (the event applies as the logs say).
fn check_event(
    galaxy: &Galaxy,
    id: InstanceId,
    event: &Event,
    commits: Commits,
    jumps: &mut HashMap<(InstanceId, Xfer), JumpSeen>,
    ledger: &mut Ledger,
) -> Result<Option<String>, String> {
    let problem = match commits {
        Commits::TransitionLog => {
            check_transition_log_commit(galaxy, id, event, jumps)?;
            None
        }
        Commits::Departs => check_depart_commit(galaxy, id, event, jumps)?,
    };
    check_landing(galaxy, id, event, jumps)?;
    count_by_the_rules(id, galaxy, event, ledger)?;
    Ok(problem)
}

/// A galaxy with a transition log: `depart.done` and `depart.void` follow a `jump` record, and
/// a committed jump is never cancelled.
fn check_transition_log_commit(
    galaxy: &Galaxy,
    id: InstanceId,
    event: &Event,
    jumps: &HashMap<(InstanceId, Xfer), JumpSeen>,
) -> Result<(), String> {
    let xfer_text = |from: InstanceId, xfer: Xfer| crate::codec::xfer_text(galaxy, from, xfer);
    match event {
        Event::DepartDone { xfer } if !jumps.contains_key(&(id, *xfer)) => Err(format!(
            "jump {} is marked done but the transition log does not hold it",
            xfer_text(id, *xfer)
        )),
        Event::DepartVoid { xfer } if !jumps.contains_key(&(id, *xfer)) => Err(format!(
            "jump {} is voided but the transition log does not hold it",
            xfer_text(id, *xfer)
        )),
        Event::DepartAbort { xfer, .. } if jumps.contains_key(&(id, *xfer)) => Err(format!(
            "jump {} was committed in the transition log but cancelled here",
            xfer_text(id, *xfer)
        )),
        _ => Ok(()),
    }
}

/// A spread galaxy (committed at the durable `depart`): a jump between systems is published
/// (in `jumps.log`) before its `depart.done`; nothing is ever cancelled or voided. Answers the
/// problem, if any, after which the event still applies.
fn check_depart_commit(
    galaxy: &Galaxy,
    id: InstanceId,
    event: &Event,
    jumps: &mut HashMap<(InstanceId, Xfer), JumpSeen>,
) -> Result<Option<String>, String> {
    let xfer_text = |xfer: Xfer| crate::codec::xfer_text(galaxy, id, xfer);
    match event {
        Event::DepartDone { xfer } => {
            let seen = jumps.get_mut(&(id, *xfer)).ok_or_else(|| {
                format!(
                    "jump {} is marked done but its origin never departed it",
                    xfer_text(*xfer)
                )
            })?;
            seen.done = true;
            Ok((seen.crosses_systems() && !seen.published).then(|| {
                format!(
                    "jump {} of '{}' is marked done but jumps.log does not hold it: a jump \
                     between systems is published before its depart.done",
                    xfer_text(*xfer),
                    seen.jump.player.name
                )
            }))
        }
        Event::DepartAbort { xfer, player } => {
            if let Some(seen) = jumps.get_mut(&(id, *xfer)) {
                seen.aborted = true;
            }
            Ok(Some(format!(
                "jump {} of '{player}' is cancelled (depart.abort), but in a spread galaxy a \
                 durable depart is committed and never cancelled",
                xfer_text(*xfer)
            )))
        }
        Event::DepartVoid { xfer } => Ok(Some(format!(
            "transfer {} is voided (depart.void), but a spread galaxy has no transition log \
             and never voids a transfer",
            xfer_text(*xfer)
        ))),
        _ => Ok(None),
    }
}

/// An `arrive` lands a committed jump towards here, with the state it left with, once.
fn check_landing(
    galaxy: &Galaxy,
    id: InstanceId,
    event: &Event,
    jumps: &mut HashMap<(InstanceId, Xfer), JumpSeen>,
) -> Result<(), String> {
    let Event::Arrive { from, xfer, player } = event else {
        return Ok(());
    };
    let text = crate::codec::xfer_text(galaxy, *from, *xfer);
    let seen = jumps
        .get_mut(&(*from, *xfer))
        .ok_or_else(|| format!("jump {text} lands but was never committed"))?;
    if seen.jump.to != id {
        return Err(format!("jump {text} lands in the wrong system"));
    }
    let mut expected = seen.jump.player.clone();
    expected.version = expected.version.next();
    if expected != *player {
        return Err(format!(
            "jump {text} lands with another state than it left with"
        ));
    }
    if seen.landed {
        return Err(format!("jump {text} lands twice"));
    }
    seen.landed = true;
    Ok(())
}

/// The credits and goods an event makes or destroys by the rules, and the escrows' trades.
fn count_by_the_rules(
    id: InstanceId,
    galaxy: &Galaxy,
    event: &Event,
    ledger: &mut Ledger,
) -> Result<(), String> {
    let escrow_text = |at: InstanceId, n: EscrowId| crate::codec::escrow_text(galaxy, at, n);
    ledger.named.add(&sim::ledger::flows_of(event));
    match event {
        Event::Join { player, .. } => {
            ledger.credits_made += u128::from(player.credits);
            let mut first = [0u128; GOOD_COUNT];
            add_cargo(&mut first, &player.cargo);
            ledger.made(&first.map(|n| n as u64));
            Ok(())
        }
        Event::Refuel { cost, .. } | Event::Repair { cost, .. } => {
            ledger.credits_destroyed += u128::from(*cost);
            Ok(())
        }
        Event::Economy {
            report, decayed, ..
        } => {
            ledger.made(&report.produced);
            ledger.destroyed(&report.consumed);
            ledger.destroyed(decayed);
            ledger.credits_made += u128::from(report.subsidy_cr);
            ledger.credits_destroyed += u128::from(report.tax_cr);
            Ok(())
        }
        Event::Destroyed { evicted, .. } => {
            let mut gone = [0u128; GOOD_COUNT];
            add_cargo(&mut gone, evicted);
            ledger.destroyed(&gone.map(|n| n as u64));
            ledger.destroyed_ships += 1;
            Ok(())
        }
        Event::Trade { trade, .. } => {
            ledger.trades += 1;
            // The station's fee leaves the game (the rule "trade fee").
            ledger.credits_destroyed += u128::from(trade.fee_cr);
            Ok(())
        }
        Event::RemoteTrade {
            instance,
            escrow,
            trade,
            ..
        } => {
            ledger.trades += 1;
            // The station's fee leaves the game at the commit point (the rule "trade fee").
            ledger.credits_destroyed += u128::from(trade.fee_cr);
            let at = InstanceId::new(id.system, *instance);
            if ledger.remote.insert((at, *escrow), *trade).is_some() {
                return Err(format!("escrow {} traded twice", escrow_text(at, *escrow)));
            }
            Ok(())
        }
        Event::EscrowSettle {
            escrow,
            total_cr,
            fee_cr,
            ..
        } => match ledger.remote.get(&(id, *escrow)) {
            Some(t) if (t.total_cr, t.fee_cr) == (*total_cr, *fee_cr) => Ok(()),
            Some(t) => Err(format!(
                "escrow {} settles at {total_cr} cr with a fee of {fee_cr} cr but the market \
                 took it at {} cr with a fee of {} cr",
                escrow_text(id, *escrow),
                t.total_cr,
                t.fee_cr
            )),
            None => Err(format!(
                "escrow {} settles but the primary's market never took it",
                escrow_text(id, *escrow)
            )),
        },
        Event::EscrowRefund { escrow, .. } if ledger.remote.contains_key(&(id, *escrow)) => {
            Err(format!(
                "escrow {} is refunded but the primary's market took it",
                escrow_text(id, *escrow)
            ))
        }
        _ => Ok(()),
    }
}

/// Notes the player version an applied event produced, and where.
fn track_event(
    state: &SystemState,
    log: InstanceId,
    seq: u64,
    event: &Event,
    players: &mut HashMap<String, Track>,
) {
    if let (Some(name), Some(v)) = (event.player(), state.version_after(event)) {
        players
            .entry(name.to_string())
            .or_default()
            .versions
            .push(Version {
                v: v.0,
                kind: crate::codec::event_kind(event),
                log,
                seq,
            });
    }
}

#[cfg(test)]
pub(crate) mod forge;
#[cfg(test)]
mod spread_tests;
#[cfg(test)]
mod tests;
