//! Bringing a data directory back after any stop, clean or not.
//!
//! 1. Each system: the newest valid snapshot, then its log from there (torn tail cut); then
//!    each of its instances that has a log or is open (a retired instance is read too: jumps
//!    in the transition log may come from it, and it must be empty).
//! 2. The transition log: a `jump` whose prepare is durable in its origin's log is committed,
//!    and handed to its destination again if it has not landed (landing is idempotent). A
//!    `jump` whose prepare the crash lost (the departure pipeline writes the two at once) is
//!    void: the origin logs `depart.void` and the number is never used again; nobody was told
//!    the jump happened, since a jump is acknowledged only once both records are durable.
//! 3. Each jump still prepared in its origin: committed if the transition log holds it (the
//!    origin logs `depart.done`), otherwise aborted (`depart.abort`: the player is back, fuel
//!    refunded; nobody was told it had left).
//!
//! 4. Each trade of an instance left in escrow: settled if the primary's market took it (its
//!    state keeps the outcome until the settlement is known), otherwise refunded; then the
//!    primary forgets the outcomes (`trade.done`).
//!
//! What to complete, void, cancel or hand over again is the protocol core's decision
//! ([`crate::protocol::settle`]); this module reads the logs for it and records what it says.
//!
//! Never guesses: any disagreement between logs is an error naming the file and line. The jump
//! protocol's invariants ([`crate::protocol::invariants`]) are checked again here, where the
//! records are read back: a violation in the transition log is a [`BadJump`] that names the
//! jump, kept as the source of the store's error that names the log and line; a settling
//! record recovery is about to write that would break one is a bug ([`must`]).
//!
//! Logs and snapshots are read through the storage traits ([`store::backend`]): files by
//! default, memory in tests. The player logs (step 4) stay files ([`crate::projector`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use serde::Serialize;

use super::checkpoint::TRANSITIONS_CHECKPOINT;
use super::codec::{
    decode_event, decode_jump, decode_pair_read, decode_state_record, encode_event, event_kind,
    player_line, Jump, PAIR_READ_KIND,
};
use super::projector::{catch_up, line_from_record, Projected};
use super::protocol::handover::{self, AtTakeover, PairSeq};
pub use super::protocol::settle::BadJump;
use super::protocol::settle::{self, JumpsRead};
use super::MeshError;
use sim::galaxy::{Galaxy, SystemId};
use sim::ids::Xfer;
use sim::instance::{InstanceId, PRIMARY_INSTANCE};
use sim::system::{Event, SystemState};
use store::backend::{
    system_log, FileLogs, LogStore, SnapshotStore, Storage, SYSTEMS_PREFIX, TRANSITIONS_LOG,
};
use store::datadir::DataDir;
use store::lease::LeaseRecord;
use store::log::{Log, LogError, Position};
use store::scan::TornTail;
use store::seq::Seq;
use store::snapshot::SnapshotMeta;

/// One system, recovered.
pub struct RecoveredSystem {
    pub state: SystemState,
    pub log: Log,
    pub snapshot: Option<SnapshotMeta>,
    pub replayed: u64,
    pub cut: Option<TornTail>,
    /// Snapshots found unusable (and skipped for an older one), with the reason.
    pub bad_snapshots: Vec<String>,
    /// Player-log lines for every replayed record about a player.
    pub projections: Vec<Projected>,
    /// Where its snapshot says the unit's pair subjects were read to, by origin system (a
    /// spread unit's primary; empty otherwise): its readers start after them.
    pub pair_reads: BTreeMap<SystemId, PairSeq>,
}

/// What recovery did, for the operator.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RecoveryReport {
    pub systems: usize,
    pub snapshots_loaded: usize,
    pub records_replayed: u64,
    pub transition_records: u64,
    /// The transition log was read after this record (settled jumps before it were skipped).
    pub transitions_from_checkpoint: Option<u64>,
    pub torn_tails_cut: Vec<String>,
    pub bad_snapshots: Vec<String>,
    /// Jumps that had passed their commit point and were settled as done.
    pub jumps_completed: u64,
    /// Jumps prepared but never committed: cancelled, player back where they were.
    pub jumps_cancelled: u64,
    /// Committed jumps still to land (they land after their travel time).
    pub jumps_in_flight: u64,
    /// Jumps in the transition log whose prepare (`depart`) the crash lost: void, never
    /// landed, player still where they were (nobody was told they left).
    pub jumps_voided: u64,
    /// Trades of instances left open by the stop: taken by the primary's market (settled) or
    /// not (refunded).
    pub trades_settled: u64,
    pub trades_refunded: u64,
    pub players: usize,
    /// Lines added to player logs that were behind, and torn player logs cut.
    pub player_lines_added: u64,
    pub player_logs_cut: u64,
    /// Player logs that could not be completed (they stay behind; `check` reports them).
    pub player_log_problems: Vec<String>,
    pub duration_ms: u64,
}

impl RecoveryReport {
    /// One or two lines for a person.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "recovered {} systems, {} players in {} ms: {} records replayed ({} snapshots), {} transition records; jumps: {} completed, {} cancelled, {} voided, {} in flight; instance trades: {} settled, {} refunded",
            self.systems,
            self.players,
            self.duration_ms,
            self.records_replayed,
            self.snapshots_loaded,
            self.transition_records,
            self.jumps_completed,
            self.jumps_cancelled,
            self.jumps_voided,
            self.jumps_in_flight,
            self.trades_settled,
            self.trades_refunded
        );
        for t in &self.torn_tails_cut {
            s.push_str(&format!("\n  torn tail cut: {t}"));
        }
        for b in &self.bad_snapshots {
            s.push_str(&format!("\n  snapshot skipped: {b}"));
        }
        if self.player_lines_added + self.player_logs_cut > 0 {
            s.push_str(&format!(
                "\n  player logs caught up: {} lines added, {} torn tails cut",
                self.player_lines_added, self.player_logs_cut
            ));
        }
        for p in &self.player_log_problems {
            s.push_str(&format!("\n  player log left behind: {p}"));
        }
        s
    }
}

/// Everything recovery hands to the mesh.
pub struct Recovered {
    /// Every system's primary, in galaxy order, then every open instance.
    pub systems: Vec<RecoveredSystem>,
    pub transitions: Log,
    /// Where the transition log was read from (unsettled jumps are readable from there).
    pub transitions_start: Position,
    /// Committed jumps not yet landed, per destination.
    pub landings: BTreeMap<InstanceId, Vec<Jump>>,
    pub report: RecoveryReport,
}

/// Where to start reading a log, given the snapshot (or checkpoint) recovery starts from: the
/// position the snapshot names (the store reads from its beginning if it was compacted there).
fn start_after(snap: Option<&SnapshotMeta>) -> Position {
    match snap {
        None => Position::BEGINNING,
        Some(meta) => Position {
            next_seq: meta.upto_seq + 1,
            offset: meta.log_offset,
            line: meta.log_line,
        },
    }
}

/// The newest valid checkpoint of the transition log, if any.
pub fn load_checkpoint(
    snapshots: &dyn SnapshotStore,
    bad: &mut Vec<String>,
) -> Option<SnapshotMeta> {
    let list = snapshots.list(TRANSITIONS_CHECKPOINT).ok()?;
    for upto in list.into_iter().rev() {
        let no_body = &mut |_: &store::record::Record<'_>| Err("a checkpoint has no body".into());
        match snapshots.get(TRANSITIONS_CHECKPOINT, upto, no_body) {
            Ok(meta) => return Some(meta),
            Err(e) => bad.push(e.to_string()),
        }
    }
    None
}

/// Loads the newest valid snapshot of a system's instance, if any.
pub fn load_snapshot(
    snapshots: &dyn SnapshotStore,
    galaxy: &Galaxy,
    id: InstanceId,
    bad: &mut Vec<String>,
) -> Result<Option<(SystemState, SnapshotMeta)>, MeshError> {
    Ok(load_snapshot_with_reads(snapshots, galaxy, id, bad)?.map(|(state, meta, _)| (state, meta)))
}

/// A snapshot's state, header and pair subjects' read positions (by origin system).
pub type LoadedSnapshot = (SystemState, SnapshotMeta, BTreeMap<SystemId, PairSeq>);

/// [`load_snapshot`], with the pair subjects' read positions the snapshot records.
pub fn load_snapshot_with_reads(
    snapshots: &dyn SnapshotStore,
    galaxy: &Galaxy,
    id: InstanceId,
    bad: &mut Vec<String>,
) -> Result<Option<LoadedSnapshot>, MeshError> {
    let slug = id.slug(galaxy);
    let list = snapshots
        .list(&slug)
        .map_err(|e| MeshError::Internal(format!("cannot list snapshots: {e}")))?;
    for upto in list.into_iter().rev() {
        let mut state = SystemState::new_instance(galaxy, id);
        let mut reads = BTreeMap::new();
        match snapshots.get(&slug, upto, &mut |r| {
            if r.kind == PAIR_READ_KIND {
                let (from, at) = decode_pair_read(galaxy, r)?;
                reads.insert(from, at);
                return Ok(());
            }
            Ok(decode_state_record(galaxy, &mut state, r)?)
        }) {
            Ok(meta) if meta.state_hash == state.state_hash() && meta.name == slug => {
                return Ok(Some((state, meta, reads)));
            }
            Ok(_) => bad.push(format!(
                "{}: state hash does not match",
                snapshots.describe(&slug, upto)
            )),
            Err(e) => bad.push(e.to_string()),
        }
    }
    Ok(None)
}

/// The instances of `system` other than the primary that have a log in `datadir` (for the
/// file tools: audit, `check --acks`, compact).
pub fn instance_logs(datadir: &DataDir, galaxy: &Galaxy, system: SystemId) -> BTreeSet<u16> {
    instances_with_a_log(&FileLogs::new(datadir), galaxy, system)
}

/// The instances of `system` other than the primary that have a log in `logs`.
pub fn instances_with_a_log(
    logs: &dyn LogStore,
    galaxy: &Galaxy,
    system: SystemId,
) -> BTreeSet<u16> {
    let prefix = system_log(&format!("{}.", galaxy.slug(system)));
    logs.list(&prefix)
        .unwrap_or_default()
        .iter()
        .filter_map(|name| {
            let at = InstanceId::parse(galaxy, name.strip_prefix(SYSTEMS_PREFIX)?)?;
            (at.system == system).then_some(at.n)
        })
        .collect()
}

/// Step 1 for one system's instance (the system itself: its primary): its newest valid
/// snapshot, then its log from there (torn tail cut).
pub fn recover_system(
    storage: &Storage,
    galaxy: &Galaxy,
    id: InstanceId,
) -> Result<RecoveredSystem, MeshError> {
    let slug = id.slug(galaxy);
    let mut bad_snapshots = Vec::new();
    let loaded = load_snapshot_with_reads(&*storage.snapshots, galaxy, id, &mut bad_snapshots)?;
    let (mut state, snap, pair_reads) = match loaded {
        Some((state, meta, reads)) => (state, Some(meta), reads),
        None => (SystemState::new_instance(galaxy, id), None, BTreeMap::new()),
    };
    let from = start_after(snap.as_ref());
    let mut replayed = 0u64;
    let mut projections = Vec::new();
    let (log, opened) = storage
        .logs
        .open(&system_log(&slug), from, &mut |rec| {
            if LeaseRecord::decode(rec)?.is_some() {
                return Ok(()); // a new owner's mark (docs/NATS.md), not an event
            }
            let (t, event) = decode_event(galaxy, id, rec)?;
            state.apply(t, &event)?;
            if let (Some(name), Some(version)) = (event.player(), state.version_after(&event)) {
                projections.push(Projected {
                    player: name.to_string(),
                    version: version.0,
                    line: line_from_record(rec, version.0, &slug),
                });
            }
            replayed += 1;
            Ok(())
        })
        .map_err(MeshError::Storage)?;
    Ok(RecoveredSystem {
        state,
        log,
        snapshot: snap,
        replayed,
        cut: opened.cut,
        bad_snapshots,
        projections,
        pair_reads,
    })
}

/// Recovers the whole data directory from its files. Must run inside a tokio runtime only
/// because the logs' async waiters use tokio primitives; it blocks while it reads.
pub fn recover(datadir: &DataDir, galaxy: &Galaxy) -> Result<Recovered, MeshError> {
    recover_on(&Storage::files(datadir), datadir, galaxy)
}

/// Recovers the logs and snapshots of `storage`, and the player logs of `datadir` (they stay
/// files: see [`crate::projector`]): the steps of the module's comment, in order.
pub fn recover_on(
    storage: &Storage,
    datadir: &DataDir,
    galaxy: &Galaxy,
) -> Result<Recovered, MeshError> {
    let started = Instant::now();
    datadir.create().map_err(|e| {
        MeshError::Internal(format!("cannot create {}: {e}", datadir.root().display()))
    })?;
    let mut report = RecoveryReport {
        systems: galaxy.len(),
        ..RecoveryReport::default()
    };
    let mut all = recover_every_system(storage, galaxy, &mut report)?;
    let read = read_transitions(storage, galaxy, &all, &mut report)?;
    void_lost_prepares(galaxy, &mut all, read.voids, &mut report)?;
    settle_prepared_jumps(galaxy, &mut all, &read.committed, &mut report)?;
    settle_escrowed_trades(galaxy, &mut all, &mut report)?;
    let (mut systems, retired_lines) = close_retired(all, &read.landings)?;
    catch_up_player_logs(datadir, &mut systems, retired_lines, &mut report);

    report.jumps_in_flight = read.landings.values().map(|l| l.len() as u64).sum();
    report.players = systems.iter().map(|s| s.state.population()).sum::<usize>()
        + report.jumps_in_flight as usize;
    report.duration_ms = started.elapsed().as_millis() as u64;
    Ok(Recovered {
        systems,
        transitions: read.transitions,
        transitions_start: read.start,
        landings: read.landings,
        report,
    })
}

/// A unit (a system with its instances) recovered by a node of a spread galaxy
/// (docs/PROTOCOL.md "Across nodes"), before its shards run.
pub struct RecoveredUnit {
    /// The primary, then its open instances.
    pub systems: Vec<RecoveredSystem>,
    /// Jumps committed towards other units (a `depart` without `depart.done`: every one of
    /// them, since a `depart` read back was durable), in order per origin: to publish again,
    /// then [`finish_published`].
    pub republish: Vec<Jump>,
    pub report: RecoveryReport,
}

/// Recovers unit `system` for a node that holds its lease: step 1 for its primary and
/// instances; then each move between its instances still departing is committed (its
/// `depart` is durable, and no transition log exists across nodes): landed at its destination
/// if it has not landed (durably), then `depart.done`; each jump towards another unit still
/// departing is to publish again (never aborted); trades left in escrow are settled as in
/// [`recover_on`].
pub fn recover_unit(
    storage: &Storage,
    datadir: &DataDir,
    galaxy: &Galaxy,
    rules: &sim::rules::Rules,
    system: SystemId,
) -> Result<RecoveredUnit, MeshError> {
    let started = Instant::now();
    let mut report = RecoveryReport {
        systems: 1,
        ..RecoveryReport::default()
    };
    let mut all = Systems::new();
    recover_with_instances(storage, galaxy, system, &mut report, &mut all)?;
    let mut republish = Vec::new();
    let mut moves = Vec::new();
    for (&from, sys) in &all {
        for step in handover::at_takeover(galaxy, rules, &sys.state) {
            match step {
                AtTakeover::Republish(jump) => republish.push(jump),
                AtTakeover::Abort(e) => panic!("BUG: a committed jump aborted at takeover: {e:?}"),
            }
        }
        let within = sys.state.departing.iter();
        for (&xfer, d) in within.filter(|(_, d)| d.to.system == system) {
            moves.push(Jump {
                from,
                xfer,
                to: d.to,
                t: sys.state.tick,
                travel_ticks: 0,
                player: d.player.clone(),
                tseq: Seq(xfer.0),
            });
        }
    }
    for jump in moves {
        let dest = all.get_mut(&jump.to).ok_or_else(|| {
            MeshError::Internal(format!(
                "a move within {} goes to {}, which has no log",
                galaxy.slug(system),
                jump.to.slug(galaxy)
            ))
        })?;
        let landing = crate::protocol::arrivals::decide_landing(&dest.state, &jump);
        settle_all(galaxy, dest, landing)?;
        let origin = all.get_mut(&jump.from).expect("read above");
        settle_all(galaxy, origin, [Event::DepartDone { xfer: jump.xfer }])?;
        report.jumps_completed += 1;
    }
    settle_escrowed_trades(galaxy, &mut all, &mut report)?;
    let (mut systems, retired_lines) = close_retired(all, &BTreeMap::new())?;
    catch_up_player_logs(datadir, &mut systems, retired_lines, &mut report);
    report.jumps_in_flight = republish.len() as u64;
    report.players = systems.iter().map(|s| s.state.population()).sum::<usize>();
    report.duration_ms = started.elapsed().as_millis() as u64;
    Ok(RecoveredUnit {
        systems,
        republish,
        report,
    })
}

/// Records `depart.done` for the jumps of `unit` published again (origin, number), once the
/// stream holds each, and waits until the records are durable.
pub fn finish_published(
    galaxy: &Galaxy,
    unit: &mut RecoveredUnit,
    published: &[(InstanceId, Xfer)],
) -> Result<(), MeshError> {
    for sys in unit.systems.iter_mut() {
        let at = sys.state.instance_id();
        let done = published
            .iter()
            .filter(|(from, _)| *from == at)
            .map(|&(_, xfer)| Event::DepartDone { xfer });
        let done: Vec<Event> = done.collect();
        unit.report.jumps_completed += done.len() as u64;
        settle_all(galaxy, sys, done)?;
    }
    Ok(())
}

/// Every system's instance by id, as step 1 left it.
type Systems = BTreeMap<InstanceId, RecoveredSystem>;

/// Step 1: every primary, then its instances (open, or with a log: a retired instance is read
/// too, since jumps in the transition log may come from it, and it must be empty).
fn recover_every_system(
    storage: &Storage,
    galaxy: &Galaxy,
    report: &mut RecoveryReport,
) -> Result<Systems, MeshError> {
    let mut all = Systems::new();
    for id in galaxy.ids() {
        recover_with_instances(storage, galaxy, id, report, &mut all)?;
    }
    Ok(all)
}

/// Step 1 for one system: its primary, then its instances (open, or with a log).
fn recover_with_instances(
    storage: &Storage,
    galaxy: &Galaxy,
    id: SystemId,
    report: &mut RecoveryReport,
    all: &mut Systems,
) -> Result<(), MeshError> {
    recover_into(storage, galaxy, InstanceId::primary(id), report, all)?;
    let mut instances = instances_with_a_log(&*storage.logs, galaxy, id);
    instances.extend(
        all[&InstanceId::primary(id)]
            .state
            .instances
            .iter()
            .copied(),
    );
    for n in instances {
        recover_into(storage, galaxy, InstanceId::new(id, n), report, all)?;
    }
    Ok(())
}

/// Step 1 for one instance, counted in the report and added to `all`.
fn recover_into(
    storage: &Storage,
    galaxy: &Galaxy,
    at: InstanceId,
    report: &mut RecoveryReport,
    all: &mut Systems,
) -> Result<(), MeshError> {
    let r = recover_system(storage, galaxy, at)?;
    report.records_replayed += r.replayed;
    report.snapshots_loaded += usize::from(r.snapshot.is_some());
    if let Some(t) = &r.cut {
        report.torn_tails_cut.push(format!(
            "{} line {}: {} bytes, {} well-formed records after the bad line ({})",
            r.log.name(),
            t.line,
            t.bytes,
            t.valid_records_cut,
            t.reason
        ));
    }
    report.bad_snapshots.extend(r.bad_snapshots.iter().cloned());
    all.insert(at, r);
    Ok(())
}

/// What step 2 found in the transition log.
struct TransitionsRead {
    transitions: Log,
    /// Where it was read from (unsettled jumps are readable from there).
    start: Position,
    /// Jumps whose prepare is durable in their origin: committed, with their record's
    /// sequence number in the transition log.
    committed: BTreeMap<(InstanceId, Xfer), Seq>,
    /// Committed jumps not yet landed, per destination.
    landings: BTreeMap<InstanceId, Vec<Jump>>,
    /// Jumps whose prepare the crash lost, per origin, in order: void.
    voids: BTreeMap<InstanceId, Vec<Xfer>>,
}

/// Step 2: the transition log, from its newest checkpoint. A `jump` whose prepare is durable in
/// its origin's log is committed, and handed to its destination again if it has not landed; a
/// `jump` whose prepare the crash lost is void. Any disagreement is an error.
fn read_transitions(
    storage: &Storage,
    galaxy: &Galaxy,
    all: &Systems,
    report: &mut RecoveryReport,
) -> Result<TransitionsRead, MeshError> {
    let mut read = JumpsRead::default();
    let checkpoint = load_checkpoint(&*storage.snapshots, &mut report.bad_snapshots);
    let from = start_after(checkpoint.as_ref());
    report.transitions_from_checkpoint = checkpoint.map(|c| c.upto_seq);
    let (transitions, opened) = storage
        .logs
        .open(TRANSITIONS_LOG, from, &mut |rec| {
            if LeaseRecord::decode(rec)?.is_some() {
                return Ok(()); // a new owner's mark (docs/NATS.md), not a jump
            }
            let jump = decode_jump(galaxy, rec)?;
            Ok(read.read(galaxy, |id| all.get(&id).map(|r| &r.state), jump)?)
        })
        .map_err(MeshError::Storage)?;
    report.transition_records = opened.scan.records;
    if let Some(t) = &opened.cut {
        report.torn_tails_cut.push(format!(
            "{} line {}: {} bytes ({})",
            transitions.name(),
            t.line,
            t.bytes,
            t.reason
        ));
    }
    Ok(TransitionsRead {
        transitions,
        start: opened.from,
        committed: read.committed,
        landings: read.landings,
        voids: read.voids,
    })
}

/// Logs `events` for one instance in order, then waits until the last is durable.
fn settle_all(
    galaxy: &Galaxy,
    sys: &mut RecoveredSystem,
    events: impl IntoIterator<Item = Event>,
) -> Result<(), MeshError> {
    let mut last = None;
    for event in events {
        last = Some(settle(galaxy, sys, event).map_err(MeshError::Storage)?);
    }
    if let Some(seq) = last {
        sys.log.wait_durable(seq).map_err(MeshError::Storage)?;
    }
    Ok(())
}

/// Step 2b: void the jumps whose prepare was lost, in order, before the origin prepares
/// anything again (their numbers are never used again).
fn void_lost_prepares(
    galaxy: &Galaxy,
    all: &mut Systems,
    voids: BTreeMap<InstanceId, Vec<Xfer>>,
    report: &mut RecoveryReport,
) -> Result<(), MeshError> {
    for (at, xfers) in voids {
        let sys = all.get_mut(&at).expect("checked in step 2");
        report.jumps_voided += xfers.len() as u64;
        let events = settle::voids(&sys.state, &xfers);
        settle_all(galaxy, sys, events)?;
    }
    Ok(())
}

/// Step 3: each jump still prepared in its origin is committed if the transition log holds it
/// (`depart.done`), otherwise aborted (`depart.abort`: the player is back, fuel refunded;
/// nobody was told it had left).
fn settle_prepared_jumps(
    galaxy: &Galaxy,
    all: &mut Systems,
    committed: &BTreeMap<(InstanceId, Xfer), Seq>,
    report: &mut RecoveryReport,
) -> Result<(), MeshError> {
    for sys in all.values_mut() {
        let events = settle::prepared(&sys.state, committed);
        for e in &events {
            match e {
                Event::DepartDone { .. } => report.jumps_completed += 1,
                _ => report.jumps_cancelled += 1,
            }
        }
        settle_all(galaxy, sys, events)?;
    }
    Ok(())
}

/// Step 3b: trades of instances left in escrow. The primary's state says which it took (and
/// at what price): those are settled, the others refunded. Once the instances' logs hold that
/// durably, the primaries forget the outcomes (`trade.done`).
fn settle_escrowed_trades(
    galaxy: &Galaxy,
    all: &mut Systems,
    report: &mut RecoveryReport,
) -> Result<(), MeshError> {
    let outcomes = settle::escrow_outcomes(all.values().map(|r| &r.state));
    for sys in all.values_mut().filter(|r| !r.state.is_primary()) {
        let (events, settled) = settle::escrows(&sys.state, &outcomes);
        report.trades_settled += settled as u64;
        report.trades_refunded += (events.len() - settled) as u64;
        settle_all(galaxy, sys, events)?;
    }
    for sys in all.values_mut().filter(|r| r.state.is_primary()) {
        let events = settle::forget_outcomes(&sys.state);
        settle_all(galaxy, sys, events)?;
    }
    Ok(())
}

/// Closes the logs of retired instances (a retired instance is empty for good: it is retired
/// only once empty and stopped) and returns the open ones (primaries in galaxy order, then the
/// open instances) and the player-log lines of the retired ones.
fn close_retired(
    mut all: Systems,
    landings: &BTreeMap<InstanceId, Vec<Jump>>,
) -> Result<(Vec<RecoveredSystem>, Vec<Projected>), MeshError> {
    let mut systems = Vec::with_capacity(all.len());
    let mut instances = Vec::new();
    let mut retired_lines = Vec::new();
    let open: BTreeSet<InstanceId> = all
        .values()
        .flat_map(|r| {
            let system = r.state.id;
            let others = r
                .state
                .instances
                .iter()
                .map(move |&n| InstanceId::new(system, n));
            std::iter::once(InstanceId::primary(system)).chain(others)
        })
        .collect();
    let keys: Vec<InstanceId> = all.keys().copied().collect();
    for at in keys {
        let is_open = open.contains(&at);
        let mut sys = all.remove(&at).expect("listed just above");
        if is_open {
            match at.n == PRIMARY_INSTANCE {
                true => systems.push(sys),
                false => instances.push(sys),
            }
            continue;
        }
        if sys.state.population() > 0 || landings.contains_key(&at) {
            return Err(MeshError::Internal(format!(
                "{} is retired but holds players or has jumps on their way to it",
                sys.log.name()
            )));
        }
        retired_lines.append(&mut sys.projections);
        sys.log.close().map_err(MeshError::Storage)?;
    }
    systems.extend(instances);
    Ok((systems, retired_lines))
}

/// Step 4: player logs that are behind get the lines they lack.
fn catch_up_player_logs(
    datadir: &DataDir,
    systems: &mut [RecoveredSystem],
    retired_lines: Vec<Projected>,
    report: &mut RecoveryReport,
) {
    let lines: Vec<Projected> = systems
        .iter_mut()
        .flat_map(|s| std::mem::take(&mut s.projections))
        .chain(retired_lines)
        .collect();
    let caught = catch_up(datadir, lines);
    report.player_lines_added = caught.lines_added;
    report.player_logs_cut = caught.torn_cut;
    report.player_log_problems = caught.problems;
}

/// Applies and logs a settling event decided by recovery (and projects it).
fn settle(galaxy: &Galaxy, sys: &mut RecoveredSystem, event: Event) -> Result<Seq, LogError> {
    let t = sys.state.tick;
    if let Err(e) = sys.state.apply(t, &event) {
        panic!("BUG: settling what a crash left open does not apply: {e} ({event:?})");
    }
    let version = sys.state.version_after(&event).unwrap_or_default();
    let id = sys.state.instance_id();
    let seq = sys.log.append(event_kind(&event), |l| {
        encode_event(l, galaxy, id, t, &event, version)
    })?;
    if let Some(name) = event.player() {
        sys.projections.push(Projected {
            player: name.to_string(),
            version: version.0,
            line: player_line(galaxy, id, t, &event, version, seq),
        });
    }
    Ok(seq)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::audit;
    use crate::codec::encode_jump;
    use sim::goods::Good;
    use sim::ids::{Tick, Version};
    use sim::market::{Order, Side};
    use sim::player::Player;
    use sim::rules::Rules;
    use sim::system::Reject;
    use store::scan::ScanStart;
    use unicode_normalization::UnicodeNormalization;

    /// A log being written by hand, with the state it gives.
    struct Writing {
        at: InstanceId,
        state: SystemState,
        log: Log,
    }

    impl Writing {
        fn open(datadir: &DataDir, galaxy: &Galaxy, at: InstanceId) -> Writing {
            let start = ScanStart {
                offset: 0,
                line: 1,
                expect_seq: Some(1),
            };
            let path = datadir.system_log(&at.slug(galaxy));
            let (log, _) = Log::open(&path, start, |_| Ok(())).unwrap();
            let state = SystemState::new_instance(galaxy, at);
            Writing { at, state, log }
        }

        fn record(&mut self, galaxy: &Galaxy, t: Tick, event: Event) {
            self.state.apply(t, &event).unwrap();
            let v = self.state.version_after(&event).unwrap_or_default();
            let at = self.at;
            let seq = self
                .log
                .append(event_kind(&event), |l| {
                    encode_event(l, galaxy, at, t, &event, v)
                })
                .unwrap();
            self.log.wait_durable(seq).unwrap();
        }
    }

    /// A new transition log holding `jump`, durable: the jump is committed.
    fn committed(datadir: &DataDir, galaxy: &Galaxy, jump: &Jump) -> Log {
        let start = ScanStart {
            offset: 0,
            line: 1,
            expect_seq: Some(1),
        };
        let (transitions, _) = Log::open(&datadir.transitions_log(), start, |_| Ok(())).unwrap();
        let seq = transitions
            .append("jump", |l| encode_jump(l, galaxy, jump))
            .unwrap();
        transitions.wait_durable(seq).unwrap();
        transitions
    }

    /// What every start creates before it writes a record (the auditor checks they are all
    /// there): the folders, and each system's log.
    fn as_a_start_leaves_it(datadir: &DataDir, galaxy: &Galaxy) {
        datadir.create().unwrap();
        for id in galaxy.ids() {
            let path = datadir.system_log(galaxy.slug(id));
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap();
        }
    }

    /// The logs a crash leaves with Ann in Sol #2, her purchase of ore in escrow, and the
    /// primary's market having taken it (`taken`) or not yet.
    fn crashed_with_an_open_escrow(datadir: &DataDir, galaxy: &Galaxy, taken: bool) -> u64 {
        as_a_start_leaves_it(datadir, galaxy);
        let sol = InstanceId::primary(galaxy.home());
        let two = InstanceId::new(galaxy.home(), 2);
        let mut p = Writing::open(datadir, galaxy, sol);
        let ann = Player::starter("Ann", &Rules::default());
        let credits = ann.credits;
        let key = "k".to_string();
        p.record(galaxy, Tick(1), Event::Join { player: ann, key });
        p.record(galaxy, Tick(2), Event::Split { instance: 2 });
        p.record(
            galaxy,
            Tick(3),
            p.state.decide_move(galaxy, "Ann", 2).unwrap(),
        );
        let d = p.state.departing[&Xfer(1)].clone();
        let jump = Jump {
            from: sol,
            xfer: Xfer(1),
            to: two,
            t: Tick(3),
            travel_ticks: 0,
            player: d.player.clone(),
            tseq: Seq(0),
        };
        let transitions = committed(datadir, galaxy, &jump);
        p.record(galaxy, Tick(4), Event::DepartDone { xfer: Xfer(1) });
        let mut i = Writing::open(datadir, galaxy, two);
        i.record(
            galaxy,
            Tick(1),
            i.state.decide_arrive(sol, Xfer(1), &d.player).unwrap(),
        );
        let order = Order {
            side: Side::Buy,
            good: Good::Ore,
            qty: 2,
            price_limit_cr: None,
        };
        i.record(
            galaxy,
            Tick(2),
            i.state.decide_escrow(galaxy, "Ann", &order).unwrap(),
        );
        let mut paid = 0;
        if taken {
            let req = i.state.escrow_request(sim::ids::EscrowId(1)).unwrap();
            let remote = p.state.decide_remote_trade(galaxy, &req).unwrap();
            if let Event::RemoteTrade { trade, .. } = &remote {
                paid = trade.total_cr + trade.fee_cr;
            }
            p.record(galaxy, Tick(5), remote);
        }
        for log in [p.log, i.log, transitions] {
            log.close().unwrap();
        }
        credits - paid
    }

    /// The logs a crash leaves when Ann's `jump` reached the transition log but her `depart`
    /// did not reach Sol's log (the departure pipeline writes the two at once). Returns her
    /// destination.
    fn crashed_with_a_lost_prepare(datadir: &DataDir, galaxy: &Galaxy) -> InstanceId {
        as_a_start_leaves_it(datadir, galaxy);
        let sol = InstanceId::primary(galaxy.home());
        let mut p = Writing::open(datadir, galaxy, sol);
        let ann = Player::starter("Ann", &Rules::default());
        p.record(
            galaxy,
            Tick(1),
            Event::Join {
                player: ann,
                key: "k".into(),
            },
        );
        let to = galaxy.neighbours(galaxy.home())[0];
        let depart = p.state.decide_depart(galaxy, "Ann", to).unwrap();
        // Applied to a copy only: the crash lost the record.
        let mut lost = p.state.clone();
        lost.apply(Tick(2), &depart).unwrap();
        let jump = Jump {
            from: sol,
            xfer: Xfer(1),
            to: InstanceId::primary(to),
            t: Tick(2),
            travel_ticks: 0,
            player: lost.departing[&Xfer(1)].player.clone(),
            tseq: Seq(0),
        };
        let transitions = committed(datadir, galaxy, &jump);
        for log in [p.log, transitions] {
            log.close().unwrap();
        }
        InstanceId::primary(to)
    }

    fn close(r: Recovered) {
        for s in r.systems {
            s.log.close().unwrap();
        }
        r.transitions.close().unwrap();
    }

    /// A jump handed over again by recovery and queued for a later tick must land before a
    /// newer jump of the same origin that needs no travel time (landing is idempotent by the
    /// highest number landed per origin, so a newer one landing first would drop it).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_recovered_jump_lands_before_a_newer_instant_one_of_its_origin() {
        let galaxy = Galaxy::default_galaxy();
        let dir = tempfile::tempdir().unwrap();
        let datadir = DataDir::at(dir.path());
        datadir.create().unwrap();
        let sol = InstanceId::primary(galaxy.home());
        let to = galaxy.neighbours(galaxy.home())[0];
        let mut p = Writing::open(&datadir, &galaxy, sol);
        for name in ["Ann", "Bob"] {
            let player = Player::starter(name, &Rules::default());
            p.record(
                &galaxy,
                Tick(1),
                Event::Join {
                    player,
                    key: "k".into(),
                },
            );
        }
        p.record(
            &galaxy,
            Tick(2),
            p.state.decide_depart(&galaxy, "Ann", to).unwrap(),
        );
        // Ann's jump is committed and takes 2 ticks (the server ran with travel times then).
        let jump = Jump {
            from: sol,
            xfer: Xfer(1),
            to: InstanceId::primary(to),
            t: Tick(2),
            travel_ticks: 2,
            player: p.state.departing[&Xfer(1)].player.clone(),
            tseq: Seq(0),
        };
        let transitions = committed(&datadir, &galaxy, &jump);
        for log in [p.log, transitions] {
            log.close().unwrap();
        }

        // Restarted with instant travel and slow ticks: Bob's jump lands long before the tick
        // Ann's is queued for.
        let mut config = crate::MeshConfig {
            tick_hz: 5,
            ..crate::MeshConfig::default()
        };
        config.rules.ticks_per_ly = 0;
        let (mesh, report) = crate::Mesh::start(datadir.clone(), galaxy.clone(), config)
            .await
            .unwrap();
        assert_eq!(report.jumps_in_flight, 1);
        mesh.jump("Bob", to).await.unwrap();
        let wait = std::time::Duration::from_secs(10);
        for name in ["Bob", "Ann"] {
            let landed = tokio::time::timeout(wait, mesh.wait_landing(name))
                .await
                .unwrap_or_else(|_| panic!("{name} never landed"))
                .unwrap();
            assert_eq!(landed.system, to, "{name}");
        }
        mesh.stop().await.unwrap();
        let after = audit(&datadir, &galaxy);
        assert!(after.ok(), "{:?}", after.problems);
        assert_eq!(after.jumps_in_flight, 0);
    }

    /// A transition log forged (or damaged) so that its jump carries Ann one version on from
    /// the departure her origin prepared: recovery refuses to start, naming the jump, the
    /// protocol's invariant and the log, and keeps the violation as the error's source.
    #[test]
    fn a_jump_that_breaks_the_protocol_is_refused_naming_the_jump_and_the_log() {
        let galaxy = Galaxy::default_galaxy();
        let dir = tempfile::tempdir().unwrap();
        let datadir = DataDir::at(dir.path());
        as_a_start_leaves_it(&datadir, &galaxy);
        let sol = InstanceId::primary(galaxy.home());
        let to = galaxy.neighbours(galaxy.home())[0];
        let mut p = Writing::open(&datadir, &galaxy, sol);
        let ann = Player::starter("Ann", &Rules::default());
        let join = Event::Join {
            player: ann,
            key: "k".into(),
        };
        p.record(&galaxy, Tick(1), join);
        p.record(
            &galaxy,
            Tick(2),
            p.state.decide_depart(&galaxy, "Ann", to).unwrap(),
        );
        let mut player = p.state.departing[&Xfer(1)].player.clone();
        player.version = player.version.next();
        let forged = Jump {
            from: sol,
            xfer: Xfer(1),
            to: InstanceId::primary(to),
            t: Tick(2),
            travel_ticks: 0,
            player,
            tseq: Seq(0),
        };
        let transitions = committed(&datadir, &galaxy, &forged);
        for log in [p.log, transitions] {
            log.close().unwrap();
        }

        let Err(err) = recover(&datadir, &galaxy) else {
            panic!("recovery accepted a jump that is not the departure its origin prepared");
        };
        let text = err.to_string();
        let log = datadir.transitions_log().display().to_string();
        let jump = crate::codec::xfer_text(&galaxy, sol, Xfer(1));
        for part in [&log, "line 1", &format!("jump {jump}"), "another player"] {
            assert!(text.contains(part), "{part:?} not in: {text}");
        }
        let MeshError::Storage(LogError::Corrupt { corruption, .. }) = &err else {
            panic!("not the transition log's corruption: {err:?}");
        };
        let source = corruption.refused.as_deref().expect("the refusal is kept");
        let Some(BadJump::Protocol { violation, .. }) = source.downcast_ref::<BadJump>() else {
            panic!("the refusal is not a BadJump: {source:?}");
        };
        assert_eq!(violation.xfer, Xfer(1));
    }

    #[tokio::test]
    async fn a_jump_whose_prepare_was_lost_is_void_and_stays_void() {
        let galaxy = Galaxy::default_galaxy();
        let dir = tempfile::tempdir().unwrap();
        let datadir = DataDir::at(dir.path());
        let to = crashed_with_a_lost_prepare(&datadir, &galaxy);
        let home = galaxy.home().index();

        let before = audit(&datadir, &galaxy);
        assert!(before.ok(), "as the crash left it: {:?}", before.problems);
        assert!(
            before.notes.iter().any(|n| n.contains("prepare was lost")),
            "{:?}",
            before.notes
        );
        assert_eq!(before.jumps_in_flight, 0, "a void jump is not in flight");

        let r = recover(&datadir, &galaxy).unwrap();
        assert_eq!(r.report.jumps_voided, 1);
        assert_eq!(r.report.jumps_in_flight, 0);
        assert!(r.landings.is_empty(), "a void jump never lands");
        let sol = &r.systems[home].state;
        let ann = &sol.players["Ann"];
        assert_eq!(ann.fuel, Player::starter("Ann", &Rules::default()).fuel);
        assert_eq!(ann.version, Version(1), "her history goes on from her join");
        assert_eq!(
            sol.next_xfer,
            Xfer(2),
            "the void number is never used again"
        );
        assert!(sol.voided.contains(&Xfer(1)));
        close(r);
        let after = audit(&datadir, &galaxy);
        assert!(after.ok(), "after recovery: {:?}", after.problems);
        assert_eq!(after.players, 1);

        // A second start finds the jump void already: it voids nothing more, lands nothing.
        let again = recover(&datadir, &galaxy).unwrap();
        assert_eq!(again.report.jumps_voided, 0);
        assert!(again.landings.is_empty());
        assert!(again.systems[home].state.players.contains_key("Ann"));
        assert!(again.systems[to.system.index()].state.players.is_empty());
        close(again);
        assert!(audit(&datadir, &galaxy).ok());
    }

    #[tokio::test]
    async fn recovery_settles_a_trade_the_market_took_and_refunds_one_it_did_not() {
        let galaxy = Galaxy::default_galaxy();
        for taken in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let datadir = DataDir::at(dir.path());
            let credits = crashed_with_an_open_escrow(&datadir, &galaxy, taken);
            let before = audit(&datadir, &galaxy);
            assert!(before.ok(), "as the crash left it: {:?}", before.problems);
            assert_eq!(
                before.credits_held,
                before.credits_granted - before.credits_spent
            );
            let r = recover(&datadir, &galaxy).unwrap();
            assert_eq!(
                (r.report.trades_settled, r.report.trades_refunded),
                if taken { (1, 0) } else { (0, 1) }
            );
            let two = r.systems.iter().find(|s| !s.state.is_primary()).unwrap();
            let ann = &two.state.players["Ann"];
            assert!(two.state.escrows.is_empty());
            assert_eq!(ann.credits, credits);
            assert_eq!(ann.cargo.get(Good::Ore), if taken { 2 } else { 0 });
            assert!(r.systems[galaxy.home().index()]
                .state
                .remote_trades
                .is_empty());
            for s in r.systems {
                s.log.close().unwrap();
            }
            r.transitions.close().unwrap();
            let after = audit(&datadir, &galaxy);
            assert!(after.ok(), "after recovery: {:?}", after.problems);
            assert_eq!(after.trades, u64::from(taken));
        }
    }

    /// A shard crashed before it wrote `snapshot_every_records` records still snapshots: the
    /// records recovery replayed count towards its next snapshot. (They once did not, and a
    /// mesh killed every few seconds replayed its whole history at every start.)
    #[test]
    fn a_shard_that_crashes_often_still_snapshots() {
        use crate::test_support::{fast_config, join, jump};
        use crate::{Mesh, MeshConfig};

        let dir = tempfile::tempdir().unwrap();
        let datadir = DataDir::at(dir.path());
        let galaxy = Galaxy::default_galaxy();
        let config = MeshConfig {
            snapshot_every_records: 20,
            ..fast_config()
        };
        let mut reports = Vec::new();
        for round in 0..10 {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let report = rt.block_on(async {
                let (mesh, report) = Mesh::start(datadir.clone(), galaxy.clone(), config.clone())
                    .await
                    .unwrap();
                if round == 0 {
                    join(&mesh, 8).await;
                }
                // 6 jumps: 18 records, fewer than a snapshot's worth in any one system.
                jump(&mesh, 8, 6).await;
                report
            });
            // A crash: every task dropped where it stands, no clean stop, no last snapshot.
            rt.shutdown_timeout(std::time::Duration::from_secs(5));
            crate::test_support::wait_until_quiet(dir.path());
            reports.push(report);
        }
        let loaded: Vec<usize> = reports.iter().map(|r| r.snapshots_loaded).collect();
        let replayed: Vec<u64> = reports.iter().map(|r| r.records_replayed).collect();
        let last = reports.last().unwrap();
        assert_eq!(last.players, 8, "{last:?}");
        assert!(
            loaded.last() > loaded.get(1),
            "no shard snapshotted between crashes: snapshots loaded {loaded:?}, records replayed {replayed:?}"
        );
        let most = *replayed.iter().max().unwrap();
        assert!(
            *replayed.last().unwrap() < most,
            "replay only grows: {replayed:?}"
        );
        let audit = audit(&datadir, &galaxy);
        assert!(audit.ok(), "{:?}", audit.problems);
    }

    /// A data directory written before the rules on look-alike names: `Ann` and `ann` joined
    /// (the join records the rules then accepted), and `Zoë` decomposed. After a restart all
    /// three are there and play under their own names; only new look-alikes are refused, and
    /// the refusal names the player they look like. Again after a second restart (the names
    /// then come from the snapshot).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn names_taken_before_the_look_alike_rules_stay_their_owners() {
        use crate::{Mesh, MeshError};
        let galaxy = Galaxy::default_galaxy();
        let dir = tempfile::tempdir().unwrap();
        let datadir = DataDir::at(dir.path());
        datadir.create().unwrap();
        let sol = InstanceId::primary(galaxy.home());
        let old_names = ["Ann", "ann", "Zoe\u{0308}"];
        let mut p = Writing::open(&datadir, &galaxy, sol);
        for (t, name) in (1..).zip(old_names) {
            let player = Player::starter(name, &Rules::default());
            let key = format!("key of {name}");
            p.record(&galaxy, Tick(t), Event::Join { player, key });
        }
        p.log.close().unwrap();

        let config = crate::test_support::fast_config;
        let to = galaxy.neighbours(galaxy.home())[0];
        for (restart, newcomer) in [(1, "Bob"), (2, "Cy")] {
            let (mesh, _) = Mesh::start(datadir.clone(), galaxy.clone(), config())
                .await
                .unwrap();
            let accounts = mesh.accounts().await.unwrap();
            for name in old_names {
                assert!(
                    accounts.contains(&(name.to_string(), format!("key of {name}"))),
                    "restart {restart}: {name:?} kept their account: {accounts:?}"
                );
            }
            for (asked, like) in [
                ("ANN", "Ann"),
                ("Zo\u{00EB}", "Zoe\u{0308}"),
                ("\u{0410}nn", "Ann"),
            ] {
                match mesh.join(asked, "k").await {
                    Err(MeshError::Rejected(r @ Reject::NameTaken { .. })) => {
                        let nfc: String = asked.nfc().collect();
                        assert_eq!(
                            r.to_string(),
                            format!("'{nfc}' is taken: too similar to '{like}'"),
                            "restart {restart}"
                        );
                    }
                    other => panic!("restart {restart}: {asked:?} joined: {other:?}"),
                }
            }
            mesh.join(newcomer, "k").await.unwrap();
            // Each old player still plays under their own name: a jump there and back.
            for name in old_names {
                let home = mesh.locate(name);
                assert!(home.is_some(), "restart {restart}: {name:?} is routed");
                let back = match restart {
                    1 => to,
                    _ => galaxy.home(),
                };
                mesh.jump(name, back).await.unwrap();
                let landed = mesh.wait_landing(name).await.unwrap();
                assert_eq!(landed.system, back, "restart {restart}: {name:?}");
            }
            mesh.stop().await.unwrap();
        }
        let after = audit(&datadir, &galaxy);
        assert!(after.ok(), "{:?}", after.problems);
    }
}
