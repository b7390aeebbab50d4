//! A promotion's reconcile on the real records (issue 20, decision 5; docs/PROTOCOL.md "Across
//! regions", steps 2, 4 and 5): after the copy of a lost region's systems is written into the
//! surviving region's streams (crate::rehome::copy_systems) and before their new home is
//! recorded (crate::rehome::record_homes, after which the survivor's nodes claim them),
//! [`reconcile_promoted`]:
//!
//! 1. fences every pair subject from a promoted system with a `lease` record of its promoted
//!    epoch (an old owner's publish still on its way is refused from then on);
//! 2. replays each promoted system's log as copied (its primary; instances are not reconciled);
//! 3. reads the jumps the survivor's pair subjects hold from promoted systems (`leaving`) and
//!    towards them (`arriving`, all copied from the lost region's stream), and every jump
//!    whose `depart` is in a survivor system's log towards a promoted system;
//! 4. asks `mesh::protocol::promote::to_republish` which of the survivor's jumps the copy
//!    lacks, and `mesh::protocol::promote::reconcile` what the promoted systems must record:
//!    a jump leaving a promoted system that its copy has no `depart` for is a committed
//!    departure (applied: the player is never served twice);
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

/// Every jump whose `depart` is in the log of a system of this region that is not promoted
/// (and not aborted) towards a promoted system, as its origin's log says it left.
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
        if at != InstanceId::primary(at.system) || promoted.contains(&at.system) {
            continue;
        }
        let mut state = SystemState::new(galaxy, at.system);
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
