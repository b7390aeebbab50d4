//! A crash, and the restart with recovery that always follows it.
//!
//! The crash: all volatile state is lost (shards, pipelines, channels, ackers, waiting
//! clients); each log keeps its durable bytes and, one time in two, a prefix of the batch it
//! had written but not synced (a torn last write).
//!
//! The restart mirrors `mesh::recovery::recover_on`, step by step, on the simulated files:
//! each system's primary and instances replayed from their logs with the store's scanner (a torn
//! tail cut) and the codec, then the transition log's jumps sorted by the protocol core (void,
//! committed, to land again), the voids, dones and aborts and the escrows' settlements recorded
//! and made durable, retired instances closed, and the landings handed to their destinations
//! again. The invariants of a recovery are checked on what it decided.
//!
//! Never reads a clock or a real file; never decides what the core decides.

use std::collections::{BTreeMap, BTreeSet};

use mesh::codec::{decode_event, decode_jump, encode_event, event_kind, Jump};
use mesh::protocol::settle::{self, JumpsRead};
use sim::ids::{Version, Xfer};
use sim::instance::InstanceId;
use sim::system::{Event, SystemState};
use store::backend::{system_log, SYSTEMS_PREFIX, TRANSITIONS_LOG};
use store::seq::Seq;

use crate::disk::SimLog;
use crate::invariants::{self, Violation};
use crate::world::{Ledger, Shard, World};
use store::lease::LeaseRecord;

/// The machine crashes now.
pub fn crash(w: &mut World) {
    w.counts.crashes += 1;
    let mut files = std::mem::take(&mut w.closed);
    let mut torn = Vec::new();
    let logs: Vec<&SimLog> = w
        .shards
        .values()
        .map(|s| &s.log)
        .chain(std::iter::once(&w.transitions))
        .collect();
    let mut draws = Vec::new();
    for log in &logs {
        let tear = log.written_len() > 0 && w.rng.chance_percent(50);
        draws.push(tear.then(|| w.rng.below(log.written_len() as u64 + 1) as usize));
    }
    for (log, draw) in logs.iter().zip(draws) {
        let (bytes, was_torn) = log.crash(draw);
        if was_torn {
            torn.push(log.name.clone());
        }
        files.insert(log.name.clone(), bytes);
    }
    w.counts.torn_writes += torn.len() as u64;
    w.shards.clear();
    forget_volatile(w);
    w.down = Some(files);
    w.note(
        None,
        None,
        format!("CRASH: volatile state lost; torn writes: {torn:?}"),
    );
}

/// What a process loses when it stops, beside its shards: the channels, the jumps it knew
/// committed, the slow-disk spells, and its clients' waits (their connections die).
pub fn forget_volatile(w: &mut World) {
    w.channels.clear();
    w.committed.clear();
    w.slow.clear();
    for c in w.clients.values_mut() {
        c.waiting = false;
    }
}

/// A fence refused during a stream world's takeover (not a violation: the takeover reads
/// again).
const FENCE_REFUSED: &str = "fence refused";

/// One instance as its log replays.
struct Replayed {
    state: SystemState,
    log: SimLog,
}

/// What the replay of every log says, for the invariants after the restart.
#[derive(Default)]
struct Seen {
    /// Versions of each player's events in the logs.
    versions: BTreeMap<String, BTreeSet<Version>>,
    /// Jumps whose `arrive` the logs hold.
    landed: BTreeSet<(InstanceId, Xfer)>,
    ledger: Ledger,
}

/// The restart: recovery, then the shards run again. In the stream world, every log reopened
/// gets the taking-over node's `lease` record first (`nodes::fence_reopened`); Ok(false): one
/// was refused, nothing was settled, and the takeover reads again.
pub fn restart(w: &mut World) -> Result<bool, Violation> {
    match recover(w) {
        Ok(()) => Ok(true),
        Err(v) if v.invariant == FENCE_REFUSED => {
            w.note(None, None, format!("recovery stops: {}", v.what));
            Ok(false)
        }
        Err(v) => Err(v),
    }
}

fn fence(w: &mut World, log: &mut SimLog) -> Result<(), Violation> {
    match crate::nodes::fence_reopened(w, log)? {
        true => Ok(()),
        false => Err(Violation {
            invariant: FENCE_REFUSED,
            player: None,
            jump: None,
            what: format!("the lease record of {} is refused", log.name),
        }),
    }
}

fn recover(w: &mut World) -> Result<(), Violation> {
    let mut files = w.down.take().expect("a restart follows a crash");
    w.counts.recoveries += 1;
    change_travel_times(w);
    let mut seen = Seen::default();
    let mut all: BTreeMap<InstanceId, Replayed> = BTreeMap::new();
    let ids: Vec<_> = w.galaxy.ids().collect();
    for id in ids {
        let at = InstanceId::primary(id);
        seen.ledger.market(&SystemState::new(&w.galaxy, id));
        replay(w, &mut files, at, &mut all, &mut seen)?;
        let prefix = system_log(&format!("{}.", w.galaxy.slug(id)));
        let mut instances: BTreeSet<u16> = files
            .keys()
            .filter_map(|name| {
                let slug = name.strip_prefix(SYSTEMS_PREFIX)?;
                name.starts_with(&prefix).then_some(())?;
                InstanceId::parse(&w.galaxy, slug).map(|i| i.n)
            })
            .collect();
        instances.extend(all[&at].state.instances.iter().copied());
        for n in instances {
            replay(w, &mut files, InstanceId::new(id, n), &mut all, &mut seen)?;
        }
    }
    let tbytes = files.remove(TRANSITIONS_LOG).unwrap_or_default();
    let mut read = JumpsRead::default();
    let reopened = SimLog::reopen(TRANSITIONS_LOG, tbytes, |rec| {
        if LeaseRecord::decode(rec)?.is_some() {
            return Ok(()); // a new owner's mark, not a jump (as mesh::recovery)
        }
        let jump = decode_jump(&w.galaxy, rec)?;
        read.read(&w.galaxy, |id| all.get(&id).map(|r| &r.state), jump)?;
        Ok(())
    })
    .map_err(|e| refused(w, e))?;
    // In destination order (the core hands a hash map; a seed never iterates one).
    let landings: BTreeMap<InstanceId, Vec<Jump>> = std::mem::take(&mut read.landings);
    let mut tlog = reopened.log;
    fence(w, &mut tlog)?;
    w.transitions = tlog;
    if reopened.torn.is_some() {
        w.note(
            None,
            None,
            format!("recovery cut a torn tail off {TRANSITIONS_LOG}"),
        );
    }
    w.ledger = seen.ledger;
    void_lost_prepares(w, &mut all, read.voids)?;
    settle_prepared(w, &mut all, &read.committed)?;
    settle_escrows(w, &mut all)?;
    close_retired(w, &mut all, &landings)?;
    w.landed = seen.landed;
    for (at, r) in all {
        let mut shard = Shard::new(at, r.state, r.log);
        shard.acked = shard.log.durable_seq();
        w.shards.insert(at, shard);
    }
    w.note(
        None,
        None,
        format!(
            "RESTART: {} shards, {} landings handed again",
            w.shards.len(),
            landings.values().map(Vec::len).sum::<usize>()
        ),
    );
    for (to, jumps) in landings {
        for jump in jumps {
            w.committed.insert((jump.from, jump.xfer), jump.clone());
            w.counts.landings_rehanded += 1;
            let text = w.jump_text(jump.from, jump.xfer);
            let name = jump.player.name.clone();
            w.note(
                Some(&name),
                Some((jump.from, jump.xfer)),
                format!(
                    "recovery hands jump {text} of {name} to {} again",
                    w.name(to)
                ),
            );
            w.on_landing(to, jump);
        }
    }
    invariants::one_place(w)?;
    invariants::conservation(w)?;
    invariants::acks_survive(w, &seen.versions)?;
    Ok(())
}

/// One restart in four, the operator restarts with other travel times (`ticks_per_ly`): jumps
/// already committed keep the travel their record says, new ones take the new setting (so an
/// origin can have a jump queued with travel and a newer one with none, as in
/// `a_recovered_jump_lands_before_a_newer_instant_one_of_its_origin`).
fn change_travel_times(w: &mut World) {
    if !w.rng.chance_percent(25) {
        return;
    }
    let before = w.rules.ticks_per_ly;
    w.rules.ticks_per_ly = [0, 1, 2][w.rng.below(3) as usize];
    if w.rules.ticks_per_ly != before {
        w.counts.travel_changes += 1;
        let text = format!(
            "RESTART with ticks_per_ly {} (was {before})",
            w.rules.ticks_per_ly
        );
        w.note(None, None, text);
    }
}

fn refused(w: &World, e: String) -> Violation {
    Violation {
        invariant: "recovery",
        player: None,
        jump: None,
        what: format!("recovery refuses the logs of seed {}: {e}", w.seed),
    }
}

/// Step 1 for one instance: its log replayed from the beginning (no snapshots), torn tail cut.
fn replay(
    w: &mut World,
    files: &mut BTreeMap<String, Vec<u8>>,
    at: InstanceId,
    all: &mut BTreeMap<InstanceId, Replayed>,
    seen: &mut Seen,
) -> Result<(), Violation> {
    let name = crate::world::log_name(&w.galaxy, at);
    let bytes = files.remove(&name).unwrap_or_default();
    let mut state = SystemState::new_instance(&w.galaxy, at);
    let mut twice = None;
    let reopened = SimLog::reopen(&name, bytes, |rec| {
        if LeaseRecord::decode(rec)?.is_some() {
            return Ok(()); // a new owner's mark, not an event (as mesh::recovery)
        }
        let (t, event) = decode_event(&w.galaxy, at, rec)?;
        state.apply(t, &event)?;
        seen.ledger.account(&event);
        if let (Some(p), Some(v)) = (event.player(), state.version_after(&event)) {
            seen.versions.entry(p.to_string()).or_default().insert(v);
        }
        if let Event::Arrive { from, xfer, player } = &event {
            if !seen.landed.insert((*from, *xfer)) && twice.is_none() {
                twice = Some((player.name.clone(), (*from, *xfer)));
            }
        }
        Ok(())
    })
    .map_err(|e| refused(w, e))?;
    if let Some((player, key)) = twice {
        let text = w.jump_text(key.0, key.1);
        return Err(Violation::jump(
            &player,
            key,
            format!("the logs land jump {text} of {player} twice"),
        ));
    }
    if reopened.torn.is_some() {
        w.note(None, None, format!("recovery cut a torn tail off {name}"));
    }
    let mut log = reopened.log;
    fence(w, &mut log)?;
    all.insert(at, Replayed { state, log });
    Ok(())
}

/// Applies and appends a settling event, as recovery's `settle` does.
fn settle_event(w: &mut World, r: &mut Replayed, event: Event) {
    let t = r.state.tick;
    if let Err(e) = r.state.apply(t, &event) {
        panic!("BUG: settling what a crash left open does not apply: {e} ({event:?})");
    }
    w.ledger.account(&event);
    let version = r.state.version_after(&event).unwrap_or_default();
    let id = r.state.instance_id();
    r.log
        .append(event_kind(&event), |l| {
            encode_event(l, &w.galaxy, id, t, &event, version)
        })
        .expect("a reopened log takes records");
}

/// Makes everything recovery appended to `r`'s log durable (`settle_all` waits for it).
fn flush(w: &mut World, r: &mut Replayed) -> Result<(), Violation> {
    if r.log.writer.is_some() {
        if r.log.can_write() {
            crate::nodes::flush_reopened(w, &mut r.log)?;
        }
        return Ok(());
    }
    if r.log.can_write() {
        r.log.write().expect("no fault is armed on a reopened log");
        r.log.sync().expect("no fault is armed on a reopened log");
    }
    Ok(())
}

/// Step 2b: the jumps whose prepare the crash lost are void, in order (`settle::voids`).
fn void_lost_prepares(
    w: &mut World,
    all: &mut BTreeMap<InstanceId, Replayed>,
    voids: BTreeMap<InstanceId, Vec<Xfer>>,
) -> Result<(), Violation> {
    for (at, xfers) in voids {
        let r = all.get_mut(&at).expect("checked while reading");
        for event in settle::voids(&r.state, &xfers) {
            let Event::DepartVoid { xfer } = event else {
                unreachable!("voids are depart.void")
            };
            let key = (at, xfer);
            let text = w.jump_text(at, xfer);
            if w.acked_jumps.contains(&key) {
                let what = format!("acknowledged jump {text} is voided by recovery");
                return Err(Violation::jump("?", key, what));
            }
            w.counts.jumps_voided += 1;
            w.voided.insert(key);
            w.note(None, Some(key), format!("recovery voids jump {text}"));
            settle_event(w, r, event);
        }
        flush(w, r)?;
    }
    Ok(())
}

/// Step 3: each jump still prepared is done if the transition log holds it, aborted otherwise
/// (`settle::prepared`).
fn settle_prepared(
    w: &mut World,
    all: &mut BTreeMap<InstanceId, Replayed>,
    committed: &BTreeMap<(InstanceId, Xfer), Seq>,
) -> Result<(), Violation> {
    for (at, r) in all.iter_mut() {
        for event in settle::prepared(&r.state, committed) {
            let xfer = match &event {
                Event::DepartDone { xfer } | Event::DepartAbort { xfer, .. } => *xfer,
                other => unreachable!("settle::prepared decided {other:?}"),
            };
            let key = (*at, xfer);
            let text = w.jump_text(*at, xfer);
            let player = r.state.departing[&xfer].player.name.clone();
            if let Event::DepartAbort { .. } = event {
                if w.acked_jumps.contains(&key) {
                    let what =
                        format!("acknowledged jump {text} of {player} is aborted by recovery");
                    return Err(Violation::jump(&player, key, what));
                }
                w.counts.jumps_aborted += 1;
                w.note(
                    Some(&player),
                    Some(key),
                    format!("recovery aborts jump {text} of {player}"),
                );
            } else {
                w.counts.jumps_completed_by_recovery += 1;
                w.note(
                    Some(&player),
                    Some(key),
                    format!("recovery completes jump {text} of {player}"),
                );
            }
            settle_event(w, r, event);
        }
        flush(w, r)?;
    }
    Ok(())
}

/// Step 3b: escrows left open are settled if the primary's market took the trade, refunded
/// otherwise; then the primaries forget the outcomes (`settle::escrows`).
fn settle_escrows(
    w: &mut World,
    all: &mut BTreeMap<InstanceId, Replayed>,
) -> Result<(), Violation> {
    let outcomes = settle::escrow_outcomes(all.values().map(|r| &r.state));
    for (at, r) in all.iter_mut().filter(|(at, _)| !at.is_primary()) {
        let (events, settled) = settle::escrows(&r.state, &outcomes);
        w.counts.escrows_settled += settled as u64;
        w.counts.escrows_refunded += (events.len() - settled) as u64;
        for event in events {
            let player = event.player().unwrap_or_default().to_string();
            let how = match event {
                Event::EscrowSettle { .. } => "settles",
                _ => "refunds",
            };
            w.note(
                Some(&player),
                None,
                format!("recovery {how} an escrow of {player} in {}", w.name(*at)),
            );
            settle_event(w, r, event);
        }
        flush(w, r)?;
    }
    for r in all.values_mut().filter(|r| r.state.is_primary()) {
        for event in settle::forget_outcomes(&r.state) {
            settle_event(w, r, event);
        }
        flush(w, r)?;
    }
    Ok(())
}

/// Retired instances (not open in their primary) must be empty; their logs are closed.
fn close_retired(
    w: &mut World,
    all: &mut BTreeMap<InstanceId, Replayed>,
    landings: &BTreeMap<InstanceId, Vec<Jump>>,
) -> Result<(), Violation> {
    let retired: Vec<InstanceId> = all
        .iter()
        .filter(|(at, _)| {
            !at.is_primary()
                && !all[&InstanceId::primary(at.system)]
                    .state
                    .instances
                    .contains(&at.n)
        })
        .map(|(at, _)| *at)
        .collect();
    for at in retired {
        let r = all.remove(&at).expect("listed");
        if r.state.population() > 0 || landings.contains_key(&at) {
            return Err(refused(
                w,
                format!(
                    "{} is retired but holds players or has jumps on their way to it",
                    r.log.name
                ),
            ));
        }
        w.closed.insert(r.log.name.clone(), r.log.durable.clone());
    }
    Ok(())
}
