//! A promotion's reconcile on the real records (issue 20, decision 5; docs/PROTOCOL.md "Across
//! regions", steps 2, 4 and 5): after the copy of a lost region's systems is written into the
//! surviving region's streams (crate::rehome::copy_systems) and before their new home is
//! recorded (crate::rehome::record_homes, after which the survivor's nodes claim them),
//! [`reconcile_promoted`]:
//!
//! 1. fences every pair subject from a promoted system with a `lease` record of its promoted
//!    epoch (an old owner's publish still on its way is refused from then on);
//! 2. replays each promoted system's log as copied (its primary; a departure from one of its
//!    instances is reconciled apart, step 4b);
//! 3. reads the jumps the survivor's pair subjects hold from promoted systems (`leaving`) and
//!    towards them (`arriving`, all copied from the lost region's stream), and every jump
//!    whose `depart` is in the log of a survivor system or of one of its instances towards a
//!    promoted system;
//! 4. asks `mesh::protocol::promote::to_republish` which of the survivor's jumps the copy
//!    lacks, and `mesh::protocol::promote::reconcile` what the promoted systems must record:
//!    a jump leaving a promoted system that its copy has no `depart` for is a committed
//!    departure (applied: the player is never served twice). `promote::reconcile` knows
//!    primaries only: a jump leaving an instance of a promoted system (`alpha-centauri.2`)
//!    that the copy of that instance's log has no `depart` for is applied to the instance by
//!    [`instance_departures`] (its own transfer numbers: the skipped ones voided, then
//!    `depart` and `depart.done` when the copy has the player there, else `depart.void` and
//!    the departure reported unresolved: the copy has them elsewhere, maybe served twice);
//! 5. appends those events to the promoted systems' logs under the promoted epoch, then
//!    publishes the jumps to republish again (with their transfer ids: a duplicate if stored).
//!
//! Idempotent: a second run replays logs that already hold the events (reconcile finds no
//! departure left) and republishes duplicates.
//!
//! Never writes to another region, never writes a promoted system's log under an epoch below
//! its promoted one, and never publishes a survivor's jump under an epoch above the last its
//! subject holds (that would fence the survivor's live owner of the origin).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use mesh::codec::{decode_event, encode_event, event_kind, xfer_text, Jump};
use mesh::links::Links;
use mesh::protocol::handover::{Pair, PairSeq};
use mesh::protocol::promote::{self, Departure};
use serde::Serialize;
use sim::galaxy::{Galaxy, SystemId};
use sim::ids::Xfer;
use sim::instance::InstanceId;
use sim::system::{Event, SystemState};
use store::backend::{system_log, LogStore, SYSTEMS_PREFIX};
use store::lease::LeaseRecord;
use store::log::Position;
use store::seq::Seq;

use crate::pairs::{decode_message, pair_ends_from, pair_ends_towards, JUMPS_STREAM};
use crate::{Nats, NatsError, NatsLinks, NatsLogs};

/// The node name a promotion writes under (fence marks, reconcile records, republished jumps).
pub const PROMOTE_NODE: &str = "promote";

/// What the reconcile did to one promoted system.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct SystemReconciled {
    /// Departures the copy lacked, applied: `player left by <transfer>`.
    pub departures_applied: Vec<String>,
    /// Records appended to its log.
    pub records_written: u64,
    /// Credits the lost records changed and the applied jumps carried (positive: the players
    /// had more in the copy than they left with).
    pub credits_changed_in_lost_records: i128,
    /// Jumps towards it that the copy lacked, published again: transfer ids.
    pub republished: Vec<String>,
    /// Departures that could not be applied (their player could not be moved out of where
    /// the copy has them): that player may be served twice.
    pub unresolved: Vec<String>,
}

/// Reconciles the promoted systems `epochs` (system to its promoted epoch), whose logs and
/// pair subjects this node's region holds now, with the survivor's records; see the module's
/// comment. `ticks_per_ly` must be the game's (a republished jump's travel time). Blocks.
pub fn reconcile_promoted(
    nats: &Nats,
    galaxy: &Arc<Galaxy>,
    ticks_per_ly: u32,
    epochs: &BTreeMap<SystemId, u64>,
) -> Result<BTreeMap<SystemId, SystemReconciled>, NatsError> {
    let survivor = nats
        .region()
        .ok_or_else(|| NatsError::jetstream("a promotion's reconcile", "no region"))?
        .to_string();
    let logs = NatsLogs::open(nats, replicas_of(nats, crate::logs::LOGS_STREAM)?)?;
    let links = NatsLinks::open(
        nats,
        galaxy.clone(),
        replicas_of(nats, JUMPS_STREAM)?,
        PROMOTE_NODE,
    )?;
    // Every system is served here once the promotion is recorded: every pair subject the
    // reconcile touches lives in this region's stream.
    links.set_homes(
        galaxy
            .ids()
            .map(|id| (galaxy.slug(id).to_string(), survivor.clone()))
            .collect(),
    );
    let promoted: BTreeSet<SystemId> = epochs.keys().copied().collect();
    for (&system, &epoch) in epochs {
        wait(links.fence_outgoing(system, epoch))?.map_err(|e| {
            NatsError::jetstream(
                format!("fencing the pair subjects from {}", galaxy.slug(system)),
                e,
            )
        })?;
    }
    let mut states = BTreeMap::new();
    for &system in &promoted {
        states.insert(system, replay(&logs, galaxy, system)?);
    }
    let mut leaving = Vec::new();
    let mut arriving = Vec::new();
    for &system in &promoted {
        for to in pair_ends_from(galaxy, system) {
            if !promoted.contains(&to) {
                leaving.extend(jumps_on(&links, galaxy, Pair { from: system, to })?);
            }
        }
        for from in pair_ends_towards(galaxy, system) {
            arriving.extend(jumps_on(&links, galaxy, Pair { from, to: system })?);
        }
    }
    let copied: BTreeSet<(InstanceId, Xfer)> = arriving.iter().map(|j| (j.from, j.xfer)).collect();
    let departs = survivor_departs(&logs, galaxy, ticks_per_ly, &promoted)?;
    let landed: BTreeMap<SystemId, BTreeMap<InstanceId, Xfer>> = states
        .iter()
        .map(|(s, st)| (*s, st.landed_upto.clone()))
        .collect();
    let again = promote::to_republish(&departs, &copied, &landed);
    arriving.extend(again.iter().cloned());
    // Jumps from instances: `promote::reconcile` knows primaries only (their transfer numbers
    // are the primary's); an instance's departures are reconciled against its own log.
    let (from_instances, leaving): (Vec<Jump>, Vec<Jump>) =
        leaving.into_iter().partition(|j| !j.from.is_primary());
    let reconciled = promote::reconcile(&states, &leaving, &arriving);

    let mut out: BTreeMap<SystemId, SystemReconciled> = promoted
        .iter()
        .map(|s| (*s, SystemReconciled::default()))
        .collect();
    write_events(&logs, galaxy, epochs, &states, &reconciled.events, &mut out)?;
    for d in &reconciled.departures {
        let r = out.get_mut(&d.jump.from.system).expect("a promoted origin");
        r.departures_applied.push(departure_text(galaxy, d));
        r.credits_changed_in_lost_records += d.credits_changed_in_lost_records();
    }
    for d in &reconciled.unresolved {
        let r = out.get_mut(&d.jump.from.system).expect("a promoted origin");
        r.unresolved.push(departure_text(galaxy, d));
    }
    instance_departures(&logs, galaxy, epochs, &from_instances, &mut out)?;
    for jump in again {
        let pair = Pair::of(&jump).expect("a jump between two systems");
        let epoch = last_epoch(&links, pair)?;
        let id = xfer_text(galaxy, jump.from, jump.xfer);
        wait(links.publish(epoch.max(1), jump.clone()))?
            .map_err(|e| NatsError::jetstream(format!("publishing jump {id} again"), e))?;
        let r = out.get_mut(&pair.to).expect("towards a promoted system");
        r.republished.push(id);
    }
    Ok(out)
}

/// Waits for a future of the links (which borrow them, so they cannot go to the bridge's
/// runtime; their work runs there, this thread only waits for it).
fn wait<T>(future: impl std::future::Future<Output = T>) -> Result<T, NatsError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| NatsError::jetstream("a runtime to wait on the pair subjects", e))?;
    Ok(runtime.block_on(future))
}

fn departure_text(galaxy: &Galaxy, d: &Departure) -> String {
    format!(
        "{} left by {}",
        d.jump.player.name,
        xfer_text(galaxy, d.jump.from, d.jump.xfer)
    )
}

/// The replicas of this region's stream `name` (which must exist), so that it is opened as it
/// is.
fn replicas_of(nats: &Nats, name: &str) -> Result<usize, NatsError> {
    let js = nats.jetstream.clone();
    let name = name.to_string();
    nats.bridge.run(async move {
        let mut stream = js
            .get_stream(&name)
            .await
            .map_err(|e| NatsError::jetstream(format!("stream {name} of this region"), e))?;
        let info = stream
            .info()
            .await
            .map_err(|e| NatsError::jetstream(format!("stream {name} of this region"), e))?;
        Ok(info.config.num_replicas.max(1))
    })?
}

/// The state of `system`'s primary as its log (here) has it, from its start.
fn replay(logs: &NatsLogs, galaxy: &Galaxy, system: SystemId) -> Result<SystemState, NatsError> {
    let id = InstanceId::primary(system);
    let mut state = SystemState::new(galaxy, system);
    let name = system_log(galaxy.slug(system));
    logs.read(&name, Position::BEGINNING, &mut |rec| {
        if LeaseRecord::decode(rec)?.is_some() {
            return Ok(());
        }
        let (t, event) = decode_event(galaxy, id, rec)?;
        state.apply(t, &event)?;
        Ok(())
    })
    .map_err(|e| NatsError::jetstream(format!("replaying {name} for a promotion"), e))?;
    Ok(state)
}

/// The state of instance `at` as its log (here) has it, from its start (a new instance's if
/// its log has nothing).
fn replay_instance(
    logs: &NatsLogs,
    galaxy: &Galaxy,
    at: InstanceId,
) -> Result<SystemState, NatsError> {
    let mut state = SystemState::new_instance(galaxy, at);
    let name = system_log(&at.slug(galaxy));
    logs.read(&name, Position::BEGINNING, &mut |rec| {
        if LeaseRecord::decode(rec)?.is_some() {
            return Ok(());
        }
        let (t, event) = decode_event(galaxy, at, rec)?;
        state.apply(t, &event)?;
        Ok(())
    })
    .map_err(|e| NatsError::jetstream(format!("replaying {name} for a promotion"), e))?;
    Ok(state)
}

/// Step 4b: the jumps from instances of promoted systems (`jumps`, any order, duplicates
/// allowed) whose number the copy of their instance's log has not used are departures the
/// lost region committed after the copy's last message. Each is applied to its instance's log,
/// in number order, under its system's promoted epoch: the numbers before it that the copy has
/// not used are voided (used by lost records: never reused); then `depart` (burning the fuel
/// the copy's player has above the jump's) and `depart.done` when the copy has the player in
/// that instance; else `depart.void` of its number, and the departure is reported unresolved
/// (the copy has them elsewhere: in the primary or another instance, moved there by lost
/// records; they may be served twice there and where the jump lands).
fn instance_departures(
    logs: &NatsLogs,
    galaxy: &Galaxy,
    epochs: &BTreeMap<SystemId, u64>,
    jumps: &[Jump],
    out: &mut BTreeMap<SystemId, SystemReconciled>,
) -> Result<(), NatsError> {
    let mut by_instance: BTreeMap<InstanceId, BTreeMap<Xfer, &Jump>> = BTreeMap::new();
    for j in jumps {
        assert!(
            !j.from.is_primary(),
            "a primary's jump is promote::reconcile's"
        );
        by_instance
            .entry(j.from)
            .or_default()
            .entry(j.xfer)
            .or_insert(j);
    }
    for (at, jumps) in by_instance {
        let mut state = replay_instance(logs, galaxy, at)?;
        let copy_tick = state.tick;
        let mut events = Vec::new();
        let report = out
            .get_mut(&at.system)
            .expect("an instance of a promoted system");
        for (xfer, jump) in jumps.range(state.next_xfer..) {
            if *xfer > state.next_xfer {
                events.push(Event::DepartVoid {
                    xfer: Xfer(xfer.0 - 1),
                });
                apply_or_panic(&mut state, copy_tick, events.last().expect("pushed"));
            }
            let name = &jump.player.name;
            let text = format!("{name} left by {}", xfer_text(galaxy, at, *xfer));
            match state.players.get(name) {
                Some(p) => {
                    let depart = Event::Depart {
                        xfer: *xfer,
                        player: name.clone(),
                        to: jump.to,
                        fuel: p.fuel.saturating_sub(jump.player.fuel),
                    };
                    report.credits_changed_in_lost_records +=
                        i128::from(p.credits) - i128::from(jump.player.credits);
                    apply_or_panic(&mut state, copy_tick, &depart);
                    events.push(depart);
                    let done = Event::DepartDone { xfer: *xfer };
                    apply_or_panic(&mut state, copy_tick, &done);
                    events.push(done);
                    report.departures_applied.push(text);
                }
                None => {
                    let void = Event::DepartVoid { xfer: *xfer };
                    apply_or_panic(&mut state, copy_tick, &void);
                    events.push(void);
                    report.unresolved.push(text);
                }
            }
        }
        if events.is_empty() {
            continue;
        }
        let name = system_log(&at.slug(galaxy));
        let unit = logs.for_unit(epochs[&at.system]);
        let (log, _) = unit
            .open(&name, Position::BEGINNING, &mut |_| Ok(()))
            .map_err(|e| NatsError::jetstream(format!("opening {name} to reconcile"), e))?;
        // Applied again from the copy's state, as written: each record carries its version.
        let mut written = replay_instance(logs, galaxy, at)?;
        let mut last = None;
        for event in &events {
            apply_or_panic(&mut written, copy_tick, event);
            let version = written.version_after(event).unwrap_or_default();
            let seq = log
                .append(event_kind(event), |l| {
                    encode_event(l, galaxy, at, copy_tick, event, version)
                })
                .map_err(|e| NatsError::jetstream(format!("reconcile of {name}"), e))?;
            last = Some(seq);
            report.records_written += 1;
        }
        if let Some(seq) = last {
            log.wait_durable(seq)
                .map_err(|e| NatsError::jetstream(format!("reconcile of {name}"), e))?;
        }
    }
    Ok(())
}

/// Applies a reconcile's event to `state` at tick `t`: it must apply (else a bug here).
fn apply_or_panic(state: &mut SystemState, t: sim::ids::Tick, event: &Event) {
    state
        .apply(t, event)
        .unwrap_or_else(|e| panic!("BUG: a reconcile event does not apply: {e} ({event:?})"));
}

/// The jumps on `pair`'s subject (fence marks skipped), in order.
fn jumps_on(links: &NatsLinks, galaxy: &Galaxy, pair: Pair) -> Result<Vec<Jump>, NatsError> {
    let subject = links.subject(pair.from, pair.to);
    let mut out = Vec::new();
    for m in links.messages_of(pair.from, pair.to)? {
        let at = PairSeq(m.stream_seq);
        match decode_message(galaxy, &subject, pair, at, &m.payload) {
            Ok(Some(arrived)) => out.push(arrived.jump),
            Ok(None) => {}
            Err(e) => return Err(NatsError::jetstream(subject.clone(), e)),
        }
    }
    Ok(out)
}

/// The epoch of the last message on `pair`'s subject (0: none, or no epoch header).
fn last_epoch(links: &NatsLinks, pair: Pair) -> Result<u64, NatsError> {
    let messages = links.messages_of(pair.from, pair.to)?;
    Ok(messages
        .last()
        .and_then(|m| m.epoch.as_deref())
        .and_then(|e| e.parse().ok())
        .unwrap_or(0))
}

/// Every jump whose `depart` is in the log of a system of this region that is not promoted, or
/// of one of its instances (and not aborted), towards a promoted system, as its origin's log
/// says it left.
fn survivor_departs(
    logs: &NatsLogs,
    galaxy: &Galaxy,
    ticks_per_ly: u32,
    promoted: &BTreeSet<SystemId>,
) -> Result<Vec<Jump>, NatsError> {
    let names = logs
        .list(SYSTEMS_PREFIX)
        .map_err(|e| NatsError::jetstream("this region's logs", e))?;
    let mut out = Vec::new();
    for name in names {
        let slug = name.strip_prefix(SYSTEMS_PREFIX).unwrap_or(&name);
        let Some(at) = InstanceId::parse(galaxy, slug) else {
            continue;
        };
        if promoted.contains(&at.system) {
            continue;
        }
        // An instance's departures too: a jump from `sol.2` stored only in the lost region
        // after the copy's last message must be published again, as a primary's.
        let mut state = SystemState::new_instance(galaxy, at);
        let mut jumps: BTreeMap<Xfer, Jump> = BTreeMap::new();
        logs.read(&name, Position::BEGINNING, &mut |rec| {
            if LeaseRecord::decode(rec)?.is_some() {
                return Ok(());
            }
            let (t, event) = decode_event(galaxy, at, rec)?;
            state.apply(t, &event)?;
            match &event {
                Event::Depart { xfer, to, .. } if promoted.contains(&to.system) => {
                    let d = &state.departing[xfer];
                    jumps.insert(
                        *xfer,
                        Jump {
                            from: at,
                            xfer: *xfer,
                            to: d.to,
                            t,
                            travel_ticks: galaxy.travel_ticks(at.system, to.system, ticks_per_ly),
                            player: d.player.clone(),
                            tseq: Seq(0),
                        },
                    );
                }
                Event::DepartAbort { xfer, .. } => {
                    jumps.remove(xfer);
                }
                _ => {}
            }
            Ok(())
        })
        .map_err(|e| NatsError::jetstream(format!("reading {name} for a promotion"), e))?;
        out.extend(jumps.into_values());
    }
    Ok(out)
}

/// Appends the reconcile's events, in order, each to its system's log under that system's
/// promoted epoch, at the copy state's tick; waits until every log is durable.
fn write_events(
    logs: &NatsLogs,
    galaxy: &Galaxy,
    epochs: &BTreeMap<SystemId, u64>,
    copy_states: &BTreeMap<SystemId, SystemState>,
    events: &[(SystemId, Event)],
    out: &mut BTreeMap<SystemId, SystemReconciled>,
) -> Result<(), NatsError> {
    let mut open = BTreeMap::new();
    let mut states = copy_states.clone();
    let mut last_seq: BTreeMap<SystemId, Seq> = BTreeMap::new();
    for (system, event) in events {
        let system = *system;
        if let std::collections::btree_map::Entry::Vacant(slot) = open.entry(system) {
            let unit = logs.for_unit(epochs[&system]);
            let name = system_log(galaxy.slug(system));
            let (log, _) = unit
                .open(&name, Position::BEGINNING, &mut |_| Ok(()))
                .map_err(|e| NatsError::jetstream(format!("opening {name} to reconcile"), e))?;
            slot.insert(log);
        }
        let state = states.get_mut(&system).expect("a promoted system");
        let t = copy_states[&system].tick;
        state
            .apply(t, event)
            .unwrap_or_else(|e| panic!("BUG: a reconcile event does not apply: {e} ({event:?})"));
        let version = state.version_after(event).unwrap_or_default();
        let id = InstanceId::primary(system);
        let seq = open[&system]
            .append(event_kind(event), |l| {
                encode_event(l, galaxy, id, t, event, version)
            })
            .map_err(|e| {
                NatsError::jetstream(format!("reconcile of {}", galaxy.slug(system)), e)
            })?;
        last_seq.insert(system, seq);
        out.get_mut(&system).expect("listed").records_written += 1;
    }
    for (system, seq) in last_seq {
        open[&system].wait_durable(seq).map_err(|e| {
            NatsError::jetstream(format!("reconcile of {}", galaxy.slug(system)), e)
        })?;
    }
    Ok(())
}
