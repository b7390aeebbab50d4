//! The stream world: two or three nodes share one simulated JetStream ([`crate::stream`]) and
//! contend for the galaxy's lease. One node is active (the world's shards are its state); the
//! others stand by. The active node renews its lease; it may crash, be paused (SIGSTOP) past
//! its lease, or be slow to renew; the stream may hold an election. A standby polls the lease
//! key and counts its silence over the polls the store answered (`lease::Watch`); after a
//! lease of it, it takes the key (compare-and-set at the revision it watched), reads every log to its end, and recovers with the
//! real recovery, which fences every log with a `lease` record before anything else is written;
//! then it serves; a refused fence means someone appended after the read: it reads again, and
//! a read that finds a newer owner's `lease` records makes it stand by. Once its fence is
//! accepted, the old active node, if it still exists, becomes a zombie: it keeps what its logs
//! had not yet got acknowledged and, once awake, publishes it (each append must be refused)
//! and renews (it learns it lost the lease, and stops).
//!
//! Owns the nodes' roles, the takeover's steps and the zombie; the decisions (when a renewal
//! stops a node, what expected sequence an append carries, when a takeover may serve) are
//! `mesh::protocol::lease`'s. Never reads a clock: the store's clock is the step number.

use std::collections::{BTreeMap, VecDeque};

use mesh::protocol::lease::{AfterRenewal, Holding, Renewal, Takeover, Watch};

use crate::disk::SimLog;
use crate::invariants::Violation;
use crate::recovery;
use crate::scheduler::LogId;
use crate::stream::{
    self, encode_lease, node_name, Accepted, Received, Refused, Sent, SimStream, Writer,
    LEASE_KIND, LEASE_STEPS,
};
use crate::world::World;

/// How many nodes a stream world has, at least and at most.
const NODES_MIN: u64 = 2;
const NODES_MAX: u64 = 3;

/// Weights of the stream world's actions, against the ordinary actions (about 100 each).
const RENEW_WEIGHT: u64 = 60;
const CLAIM_WEIGHT: u64 = 50;
const TAKEOVER_STEP_WEIGHT: u64 = 100;
const NODE_BACK_WEIGHT: u64 = 20;
const IDLE_WEIGHT: u64 = 10;
/// A node taking over is paused (a long GC, SIGSTOP) more often than a fault's weight: its
/// takeover lasts a few steps, and a pause there is what lets a newer owner overtake it.
const TAKEOVER_PAUSE_WEIGHT: u64 = 5;

/// A pause (SIGSTOP) lasts this many steps, at least and at most: often past the lease.
const PAUSE_STEPS_MIN: u64 = 10;
const PAUSE_STEPS_MAX: u64 = 160;
/// An election lasts this many steps, at least and at most (JetStream: 4 to 9 s, about the
/// lease; here a little less than the lease, so that renewals fail and most leases survive).
const ELECTION_STEPS_MIN: u64 = 10;
const ELECTION_STEPS_MAX: u64 = 50;
/// How long a holder keeps serving past its lease while the store leaves its renewals
/// unanswered (the real one: `nats::limits::UNANSWERED_GRACE_MS`).
const GRACE_STEPS: u64 = 2 * LEASE_STEPS;
/// A stopped or crashed node comes back as a standby after this many steps at least.
const DOWN_STEPS_MIN: u64 = 20;
const DOWN_STEPS_MAX: u64 = 120;
/// Percent of acks the network loses, and delivers twice.
const LOST_ACK_PERCENT: u32 = 5;
const ACK_TWICE_PERCENT: u32 = 5;

/// What a node is doing.
#[derive(Clone, Debug)]
pub enum Role {
    /// Serving: the world's shards are its state ([`Js::active`]).
    Active,
    Standby,
    /// Taking the galaxy over: claimed at `revision` (the epoch), perhaps read.
    TakingOver {
        takeover: Takeover,
        revision: u64,
        /// Its own clock's view of its renewals.
        holding: Holding,
        read: Option<ReadLogs>,
        /// Paused (SIGSTOP, a long GC) until this step: it takes no step before.
        paused_until: u64,
    },
    /// Its old state is the [`Js::zombie`].
    Zombie,
    /// Crashed or stopped; back as a standby from step `until`.
    Down {
        until: u64,
    },
}

/// Every log as a taking-over node read it: bytes and the last stream sequence of each.
#[derive(Clone, Debug, Default)]
pub struct ReadLogs {
    pub files: BTreeMap<String, Vec<u8>>,
    pub last: BTreeMap<String, u64>,
}

/// The active node.
#[derive(Clone, Copy, Debug)]
pub struct Active {
    pub node: u8,
    pub epoch: u64,
    /// The revision of its last write of the lease key.
    pub revision: u64,
    /// Its own clock's view of its renewals.
    pub holding: Holding,
    /// Paused (SIGSTOP) until this step: it takes no step before.
    pub paused_until: u64,
}

/// An old active node after a takeover: what its logs had not got acknowledged.
#[derive(Clone, Debug)]
pub struct Zombie {
    pub node: u8,
    pub epoch: u64,
    pub revision: u64,
    pub logs: Vec<SimLog>,
    /// It takes no step before (it was paused).
    pub wakes_at: u64,
}

/// A takeover's fencing, while the real recovery reopens the logs.
#[derive(Clone, Debug)]
pub struct Fencing {
    pub node: u8,
    pub epoch: u64,
    pub last: BTreeMap<String, u64>,
}

/// The stream world's part of a [`World`].
#[derive(Clone, Debug)]
pub struct Js {
    pub stream: SimStream,
    pub roles: Vec<Role>,
    /// Each node's watch of the lease key (a standby's count of the holder's silence).
    pub watches: Vec<Watch>,
    pub active: Option<Active>,
    pub zombie: Option<Zombie>,
    /// The epoch whose recovered state the world holds (its lease records written).
    pub serving_epoch: u64,
    pub fencing: Option<Fencing>,
}

/// One thing the stream world can do next.
#[derive(Clone, Debug)]
pub enum NodeAction {
    /// The active node (or a node taking over) renews its lease.
    Renew(u8),
    /// The active node, or a node taking over, is paused (SIGSTOP).
    Pause(u8),
    Election,
    /// A standby polls the lease key (and claims it, free or silent for a lease).
    Poll(u8),
    Read(u8),
    Fence(u8),
    NodeBack(u8),
    ZombieSend(usize),
    ZombieReceive(usize),
    ZombieRenew,
    /// Time passes (the store's clock runs while nobody acts: leases expire, elections end).
    Idle,
}

/// Whether seed `seed` runs the stream world (odd seeds; even seeds run the files, as before).
pub fn is_stream_seed(seed: u64) -> bool {
    seed % 2 == 1
}

/// Turns a fresh world into a stream world: node 0 claims the lease, reads the (empty) stream
/// and recovers, as any takeover does.
pub fn start(w: &mut World) -> Result<(), Violation> {
    let nodes = w.rng.range_inclusive(NODES_MIN, NODES_MAX) as usize;
    w.js = Some(Js {
        stream: SimStream::default(),
        roles: vec![Role::Standby; nodes],
        watches: vec![Watch::new(LEASE_STEPS); nodes],
        active: None,
        zombie: None,
        serving_epoch: 0,
        fencing: None,
    });
    recovery::forget_volatile(w);
    w.shards.clear();
    w.transitions = SimLog::create(store::backend::TRANSITIONS_LOG);
    take_over_now(w, 0)
}

fn js(w: &World) -> &Js {
    w.js.as_ref().expect("a stream world")
}

fn js_mut(w: &mut World) -> &mut Js {
    w.js.as_mut().expect("a stream world")
}

/// Whether the active node takes steps now (exists, not paused).
pub fn serving(w: &World) -> bool {
    js(w).active.is_some_and(|a| w.step >= a.paused_until)
}

/// The stream world's actions now, with their weights.
pub fn enabled(w: &World, crash: u64, faults: u64, all: &mut Vec<(u64, crate::scheduler::Action)>) {
    use crate::scheduler::Action;
    let js = js(w);
    let available = js.stream.available(w.step);
    all.push((IDLE_WEIGHT, Action::Node(NodeAction::Idle)));
    if let Some(a) = js.active {
        if w.step >= a.paused_until {
            all.push((RENEW_WEIGHT, Action::Node(NodeAction::Renew(a.node))));
            all.push((faults, Action::Node(NodeAction::Pause(a.node))));
            all.push((crash, Action::Crash));
        }
    }
    // An election is drawn against the serving world's actions (a step is then a few
    // milliseconds of a busy server; while nobody serves, steps are few and long).
    if available && js.active.is_some() {
        all.push((faults, Action::Node(NodeAction::Election)));
    }
    for (i, role) in js.roles.iter().enumerate() {
        let node = i as u8;
        match role {
            Role::Standby => {
                all.push((CLAIM_WEIGHT, Action::Node(NodeAction::Poll(node))));
            }
            Role::TakingOver {
                takeover,
                paused_until,
                ..
            } if w.step >= *paused_until => {
                all.push((RENEW_WEIGHT, Action::Node(NodeAction::Renew(node))));
                all.push((TAKEOVER_PAUSE_WEIGHT, Action::Node(NodeAction::Pause(node))));
                if available {
                    let next = match takeover {
                        Takeover::Claimed { .. } => NodeAction::Read(node),
                        _ => NodeAction::Fence(node),
                    };
                    all.push((TAKEOVER_STEP_WEIGHT, Action::Node(next)));
                }
            }
            Role::Down { until } if w.step >= *until => {
                all.push((NODE_BACK_WEIGHT, Action::Node(NodeAction::NodeBack(node))));
            }
            _ => {}
        }
    }
    if let Some(z) = js.zombie.as_ref().filter(|z| w.step >= z.wakes_at) {
        for (i, log) in z.logs.iter().enumerate() {
            if log.can_write() {
                all.push((100, Action::Node(NodeAction::ZombieSend(i))));
            }
            if log.can_sync() {
                all.push((100, Action::Node(NodeAction::ZombieReceive(i))));
            }
        }
        all.push((RENEW_WEIGHT, Action::Node(NodeAction::ZombieRenew)));
    }
}

/// Carries out a stream world's action.
pub fn run(w: &mut World, action: NodeAction) -> Result<(), Violation> {
    match action {
        NodeAction::Idle => Ok(()),
        NodeAction::Renew(node) => renew(w, node),
        NodeAction::Pause(node) => {
            let steps = w.rng.range_inclusive(PAUSE_STEPS_MIN, PAUSE_STEPS_MAX);
            let until = w.step + steps;
            let js = js_mut(w);
            match (js.active.as_mut(), &mut js.roles[node as usize]) {
                (Some(a), _) if a.node == node => a.paused_until = until,
                (_, Role::TakingOver { paused_until, .. }) => *paused_until = until,
                (_, role) => unreachable!("node {node} paused as {role:?}"),
            }
            w.counts.pauses += 1;
            w.note(
                None,
                None,
                format!(
                    "PAUSE: node {} stopped (SIGSTOP) for {steps} steps",
                    node_name(node)
                ),
            );
            Ok(())
        }
        NodeAction::Election => {
            let steps = w
                .rng
                .range_inclusive(ELECTION_STEPS_MIN, ELECTION_STEPS_MAX);
            js_mut(w).stream.unavailable_until = w.step + steps;
            w.counts.elections += 1;
            w.note(
                None,
                None,
                format!("ELECTION: the stream answers nothing for {steps} steps"),
            );
            Ok(())
        }
        NodeAction::Poll(node) => {
            poll(w, node);
            Ok(())
        }
        NodeAction::Read(node) => {
            read(w, node);
            Ok(())
        }
        NodeAction::Fence(node) => fence(w, node),
        NodeAction::NodeBack(node) => {
            js_mut(w).roles[node as usize] = Role::Standby;
            js_mut(w).watches[node as usize] = Watch::new(LEASE_STEPS);
            w.note(
                None,
                None,
                format!("node {} is back, standing by", node_name(node)),
            );
            Ok(())
        }
        NodeAction::ZombieSend(i) => zombie_send(w, i),
        NodeAction::ZombieReceive(i) => zombie_receive(w, i),
        NodeAction::ZombieRenew => {
            let step = w.step;
            let js = js_mut(w);
            let revision = js.zombie.as_ref().expect("a zombie").revision;
            let (renewal, _) = js.stream.renew(step, revision);
            assert_ne!(
                renewal,
                Renewal::Renewed,
                "a zombie's lease was taken over: its renewal cannot succeed"
            );
            // The real node would also stop by its own clock (a whole lease without a
            // renewal); the zombie here does not look at it, so that only fencing and a
            // renewal that finds the lease lost stop it: the harder case.
            if renewal != Renewal::Lost {
                w.counts.renewals_unavailable += 1;
                return Ok(());
            }
            let z = js_mut(w).zombie.take().expect("a zombie");
            js_mut(w).roles[z.node as usize] = Role::Down {
                until: w.step + DOWN_STEPS_MIN,
            };
            w.counts.zombies_stopped += 1;
            w.note(
                None,
                None,
                format!(
                    "zombie {} renews, finds the lease lost, and stops",
                    node_name(z.node)
                ),
            );
            Ok(())
        }
    }
}

/// A renewal by the active node or by a node taking over.
fn renew(w: &mut World, node: u8) -> Result<(), Violation> {
    let step = w.step;
    let js = js_mut(w);
    let active = js.active.filter(|a| a.node == node);
    let (revision, mut holding) = match (&js.roles[node as usize], active) {
        (_, Some(a)) => (a.revision, a.holding),
        (
            Role::TakingOver {
                revision, holding, ..
            },
            None,
        ) => (*revision, *holding),
        (role, None) => unreachable!("node {node} renews as {role:?}"),
    };
    let (renewal, revision) = js.stream.renew(step, revision);
    let after = holding.renewal(renewal, step);
    match (js.active.as_mut(), &mut js.roles[node as usize]) {
        (Some(a), _) if a.node == node => (a.revision, a.holding) = (revision, holding),
        (
            _,
            Role::TakingOver {
                revision: r,
                holding: h,
                ..
            },
        ) => (*r, *h) = (revision, holding),
        _ => unreachable!("a renewal of the holder"),
    }
    match renewal {
        Renewal::Renewed => {
            w.counts.renewals += 1;
            return Ok(());
        }
        Renewal::Unavailable => w.counts.renewals_unavailable += 1,
        Renewal::Lost => w.counts.leases_lost += 1,
    }
    let text = format!("node {} renews: {renewal:?}", node_name(node));
    w.note(None, None, text);
    if after == AfterRenewal::KeepServing && !holding.expired(step) {
        return Ok(());
    }
    // The node stops. It must not while it still holds the lease and the store only failed to
    // answer within the grace: an election is not a death.
    let since = step - holding.renewed_at();
    let js = js_mut(w);
    if let Some(l) = js.stream.key().filter(|l| l.revision == revision) {
        if renewal == Renewal::Unavailable && since < LEASE_STEPS + GRACE_STEPS {
            return Err(Violation {
                invariant: "election_is_not_death",
                player: None,
                jump: None,
                what: format!(
                    "node {} stops serving while it holds the lease (epoch {}; its last renewal {since} steps ago): its renewal met an election ({renewal:?})",
                    node_name(node),
                    l.epoch,
                ),
            });
        }
    }
    if active.is_some() {
        stop_active(w, "lost its lease");
    } else {
        js_mut(w).roles[node as usize] = Role::Standby;
        js_mut(w).watches[node as usize] = Watch::new(LEASE_STEPS);
        w.note(
            None,
            None,
            format!("node {} gives its takeover up", node_name(node)),
        );
    }
    Ok(())
}

/// The active node stops or crashes: its in-memory state is gone, its lease is not released.
pub fn stop_active(w: &mut World, why: &str) {
    let a = js_mut(w).active.take().expect("an active node");
    recovery::forget_volatile(w);
    w.shards.clear();
    let until = w.step + w.rng.range_inclusive(DOWN_STEPS_MIN, DOWN_STEPS_MAX);
    js_mut(w).roles[a.node as usize] = Role::Down { until };
    w.note(
        None,
        None,
        format!(
            "CRASH: node {} {why}: volatile state lost",
            node_name(a.node)
        ),
    );
}

/// A standby polls the lease key: claims it if there is none, counts the holder's silence
/// while the store answers, and takes the key over at the revision it saw silent for a lease.
fn poll(w: &mut World, node: u8) {
    let step = w.step;
    let js = js_mut(w);
    let watch = &mut js.watches[node as usize];
    if !js.stream.available(step) {
        watch.unanswered();
        return;
    }
    let revision = js.stream.key().map_or(0, |l| l.revision);
    watch.answered(revision, step);
    if revision == 0 {
        claim(w, node, 0);
    } else if let Some(silent) = watch.silent(step) {
        claim(w, node, silent);
    }
}

/// A compare-and-set claim at `expected` (0: no key).
fn claim(w: &mut World, node: u8, expected: u64) {
    let step = w.step;
    let js = js_mut(w);
    let Some(l) = js.stream.claim(step, node, expected) else {
        return;
    };
    js.roles[node as usize] = Role::TakingOver {
        takeover: Takeover::Claimed { epoch: l.epoch },
        revision: l.revision,
        holding: Holding::new(step, LEASE_STEPS, GRACE_STEPS),
        read: None,
        paused_until: 0,
    };
    w.counts.claims += 1;
    w.note(
        None,
        None,
        format!(
            "node {} claims the lease: epoch {}",
            node_name(node),
            l.epoch
        ),
    );
}

fn read(w: &mut World, node: u8) {
    let js = js_mut(w);
    let mut logs = ReadLogs::default();
    for name in js.stream.subjects.keys() {
        logs.files.insert(name.clone(), js.stream.bytes_of(name));
        logs.last.insert(name.clone(), js.stream.last_of(name));
    }
    let records: usize = logs
        .files
        .values()
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .sum();
    // The highest epoch the logs were fenced with: a newer owner's means this claim is lost.
    let highest = js
        .stream
        .subjects
        .values()
        .flatten()
        .filter(|m| m.lease)
        .map(|m| m.epoch)
        .max()
        .unwrap_or(0);
    let Role::TakingOver { takeover, read, .. } = &mut js.roles[node as usize] else {
        unreachable!("a read by a node taking over")
    };
    let Some(next) = takeover.read_found(highest) else {
        let text = format!(
            "node {} reads epoch {highest}'s lease records, newer than its claim {}: standing by",
            node_name(node),
            takeover.epoch()
        );
        js.roles[node as usize] = Role::Standby;
        w.counts.takeovers_outranked += 1;
        w.note(None, None, text);
        return;
    };
    *takeover = next;
    *read = Some(logs);
    w.counts.records_read_at_takeover += records as u64;
    w.note(
        None,
        None,
        format!(
            "node {} reads every log to its end ({records} records)",
            node_name(node)
        ),
    );
}

/// The takeover's fence and recovery: the active node's memory is set aside, the real
/// recovery reopens every log read, appending this epoch's `lease` record to each first
/// (refused: an old owner appended after the read; the memory is given back and the node
/// reads again), then settles and serves, and the old active node is a zombie.
fn fence(w: &mut World, node: u8) -> Result<(), Violation> {
    let Role::TakingOver {
        takeover,
        revision,
        holding,
        read,
        ..
    } = js(w).roles[node as usize].clone()
    else {
        unreachable!("a fence by a node taking over")
    };
    // No check of the lease here: a real node's check is never atomic with its appends. What
    // stops a node whose claim expired meanwhile is the expected sequences (an owner that
    // appended since the read refuses the fence) and the read's rule (a newer owner's lease
    // records in the logs: stand by).
    let epoch = takeover.epoch();
    let read = read.expect("read before the fence");
    let memory = set_aside(w);
    js_mut(w).fencing = Some(Fencing {
        node,
        epoch,
        last: read.last.clone(),
    });
    w.down = Some(read.files);
    let served = recovery::restart(w);
    js_mut(w).fencing = None;
    match served {
        Ok(true) => {
            if let Some(m) = memory {
                make_zombie(w, m);
            }
        }
        Ok(false) => {
            w.counts.fence_retries += 1;
            w.shards.clear();
            recovery::forget_volatile(w);
            if let Some(m) = memory {
                give_back(w, m);
            }
            js_mut(w).roles[node as usize] = Role::TakingOver {
                takeover: takeover.fenced(false),
                revision,
                holding,
                read: None,
                paused_until: 0,
            };
            w.note(
                None,
                None,
                format!(
                    "node {}'s lease record is refused: an old owner appended after the read; reading again",
                    node_name(node)
                ),
            );
            return Ok(());
        }
        Err(v) => return Err(v),
    }
    let serving = takeover.fenced(true);
    assert!(serving.may_serve(), "a fenced takeover serves");
    let js = js_mut(w);
    js.roles[node as usize] = Role::Active;
    js.active = Some(Active {
        node,
        epoch,
        revision,
        holding,
        paused_until: 0,
    });
    js.serving_epoch = epoch;
    w.counts.takeovers += 1;
    w.note(
        None,
        None,
        format!("node {} serves at epoch {epoch}", node_name(node)),
    );
    Ok(())
}

/// The active node's memory, set aside while a takeover recovers in the world's place: given
/// back if the takeover's fence is refused (the active node goes on), made a zombie if not.
struct Memory {
    active: Active,
    shards: BTreeMap<sim::instance::InstanceId, crate::world::Shard>,
    transitions: SimLog,
    channels:
        BTreeMap<(crate::world::Sender, sim::instance::InstanceId), VecDeque<crate::world::Msg>>,
    committed: BTreeMap<(sim::instance::InstanceId, sim::ids::Xfer), mesh::codec::Jump>,
    slow: BTreeMap<String, u64>,
    closed: BTreeMap<String, Vec<u8>>,
    rules: sim::rules::Rules,
    waiting: BTreeMap<String, bool>,
}

fn set_aside(w: &mut World) -> Option<Memory> {
    let active = js_mut(w).active.take()?;
    let memory = Memory {
        active,
        shards: std::mem::take(&mut w.shards),
        transitions: std::mem::replace(
            &mut w.transitions,
            SimLog::create(store::backend::TRANSITIONS_LOG),
        ),
        channels: std::mem::take(&mut w.channels),
        committed: std::mem::take(&mut w.committed),
        slow: std::mem::take(&mut w.slow),
        closed: w.closed.clone(),
        rules: w.rules.clone(),
        waiting: w
            .clients
            .iter()
            .map(|(n, c)| (n.clone(), c.waiting))
            .collect(),
    };
    recovery::forget_volatile(w);
    Some(memory)
}

fn give_back(w: &mut World, m: Memory) {
    js_mut(w).active = Some(m.active);
    w.shards = m.shards;
    w.transitions = m.transitions;
    w.channels = m.channels;
    w.committed = m.committed;
    w.slow = m.slow;
    w.closed = m.closed;
    w.rules = m.rules;
    for (name, waiting) in m.waiting {
        w.clients.get_mut(&name).expect("a client").waiting = waiting;
    }
}

/// The old active node keeps what its logs still hold to send: a zombie.
fn make_zombie(w: &mut World, m: Memory) {
    let a = m.active;
    if let Some(old) = js_mut(w).zombie.take() {
        js_mut(w).roles[old.node as usize] = Role::Down {
            until: w.step + DOWN_STEPS_MIN,
        };
    }
    let mut logs: Vec<SimLog> = m.shards.into_values().map(|s| s.log).collect();
    logs.push(m.transitions);
    logs.retain(|l| l.failed().is_none() && (l.can_write() || l.can_sync()));
    let wakes_at = a.paused_until.max(w.step);
    let text = format!(
        "node {} is a zombie now (epoch {}; {} logs with records not acknowledged; awake at step {wakes_at})",
        node_name(a.node),
        a.epoch,
        logs.len()
    );
    let js = js_mut(w);
    js.roles[a.node as usize] = Role::Zombie;
    js.zombie = Some(Zombie {
        node: a.node,
        epoch: a.epoch,
        revision: a.revision,
        logs,
        wakes_at,
    });
    w.note(None, None, text);
}

/// Called by recovery on each log it reopens during a takeover: the log becomes this node's
/// writer on the stream and gets the epoch's `lease` record first. Ok(false): refused.
pub fn fence_reopened(w: &mut World, log: &mut SimLog) -> Result<bool, Violation> {
    let step = w.step;
    let Some(js) = w.js.as_mut() else {
        return Ok(true);
    };
    let f = js.fencing.as_ref().expect("a takeover fences");
    let (node, epoch) = (f.node, f.epoch);
    let last = f.last.get(&log.name).copied().unwrap_or(0);
    log.writer = Some(Writer::new(&mut js.stream, node, epoch, last));
    if !Takeover::fences_before_serving() {
        return Ok(true);
    }
    log.append(LEASE_KIND, |l| encode_lease(l, epoch, node))
        .expect("a reopened log takes records");
    match stream::publish_now(&mut js.stream, log, step, true) {
        Ok(accepted) => {
            w.counts.lease_records += 1;
            no_zombie_append(w, &accepted)?;
            Ok(true)
        }
        Err(Refused::WrongLastSequence { .. }) => Ok(false),
        Err(Refused::Unavailable) => unreachable!("a fence runs while the stream answers"),
    }
}

/// Recovery's own appends on the stream (its settling records), published at once.
pub fn flush_reopened(w: &mut World, log: &mut SimLog) -> Result<(), Violation> {
    let step = w.step;
    let js = js_mut(w);
    match stream::publish_now(&mut js.stream, log, step, false) {
        Ok(accepted) => no_zombie_append(w, &accepted),
        Err(e) => Err(Violation {
            invariant: "recovery",
            player: None,
            jump: None,
            what: format!("{}: recovery's own append is refused: {e:?}", log.name),
        }),
    }
}

/// No zombie message accepted: a message stored now carries an epoch no lower than the last
/// `lease` record of its subject, nor than the epoch of the node serving.
pub fn no_zombie_append(w: &World, a: &Accepted) -> Result<(), Violation> {
    let js = js(w);
    let fenced_at = js
        .stream
        .subjects
        .get(&a.subject)
        .into_iter()
        .flatten()
        .filter(|m| m.lease && m.seq < a.seq)
        .map(|m| m.epoch)
        .max()
        .unwrap_or(0);
    let serving = js.serving_epoch;
    if a.epoch >= fenced_at && a.epoch >= serving {
        return Ok(());
    }
    Err(Violation {
        invariant: "no_zombie_append",
        player: None,
        jump: None,
        what: format!(
            "{}: message {} of node {} at epoch {} accepted {} while epoch {serving} serves",
            a.subject,
            a.seq,
            node_name(a.node),
            a.epoch,
            match fenced_at {
                0 => "with no lease record before it".to_string(),
                e => format!("after the lease record of epoch {e}"),
            }
        ),
    })
}

fn active_log<'a>(w: &'a mut World, id: &LogId) -> &'a mut SimLog {
    match id {
        LogId::Transitions => &mut w.transitions,
        LogId::Shard(at) => &mut w.shards.get_mut(at).expect("running").log,
    }
}

/// The active node's committer publishes a log's pending batch (a `write` on the stream).
pub fn send_log(w: &mut World, id: LogId) -> Result<(), Violation> {
    let lose = w.rng.chance_percent(LOST_ACK_PERCENT);
    let step = w.step;
    let mut stream = std::mem::take(&mut js_mut(w).stream);
    let log = active_log(w, &id);
    let (sent, accepted) = stream::send(&mut stream, log, step, lose);
    let name = log.name.clone();
    js_mut(w).stream = stream;
    note_sent(w, &name, sent, false);
    if let (Sent::Fenced { .. }, LogId::Shard(at)) = (sent, &id) {
        w.shards.get_mut(at).expect("running").failed = true;
    }
    accepted.map_or(Ok(()), |a| no_zombie_append(w, &a))
}

/// The active node's committer takes its ack, or retries (a `sync` on the stream).
pub fn receive_log(w: &mut World, id: LogId) -> Result<(), Violation> {
    let twice = w.rng.chance_percent(ACK_TWICE_PERCENT);
    let lose = w.rng.chance_percent(LOST_ACK_PERCENT);
    let step = w.step;
    let mut stream = std::mem::take(&mut js_mut(w).stream);
    let log = active_log(w, &id);
    let (received, accepted) = stream::receive(&mut stream, log, step, twice, lose);
    let name = log.name.clone();
    js_mut(w).stream = stream;
    note_received(w, &name, received, false);
    if let (Received::Fenced { .. }, LogId::Shard(at)) = (received, &id) {
        w.shards.get_mut(at).expect("running").failed = true;
    }
    accepted.map_or(Ok(()), |a| no_zombie_append(w, &a))
}

fn zombie_send(w: &mut World, i: usize) -> Result<(), Violation> {
    let lose = w.rng.chance_percent(LOST_ACK_PERCENT);
    let step = w.step;
    let js = js_mut(w);
    let z = js.zombie.as_mut().expect("a zombie");
    let (sent, accepted) = stream::send(&mut js.stream, &mut z.logs[i], step, lose);
    let name = z.logs[i].name.clone();
    note_sent(w, &name, sent, true);
    accepted.map_or(Ok(()), |a| no_zombie_append(w, &a))
}

fn zombie_receive(w: &mut World, i: usize) -> Result<(), Violation> {
    let twice = w.rng.chance_percent(ACK_TWICE_PERCENT);
    let lose = w.rng.chance_percent(LOST_ACK_PERCENT);
    let step = w.step;
    let js = js_mut(w);
    let z = js.zombie.as_mut().expect("a zombie");
    let (received, accepted) = stream::receive(&mut js.stream, &mut z.logs[i], step, twice, lose);
    let name = z.logs[i].name.clone();
    note_received(w, &name, received, true);
    accepted.map_or(Ok(()), |a| no_zombie_append(w, &a))
}

fn note_sent(w: &mut World, name: &str, sent: Sent, zombie: bool) {
    let who = if zombie { "zombie's " } else { "" };
    match sent {
        Sent::Stored => {}
        Sent::AckLost => w.counts.acks_lost += 1,
        Sent::Stalled => w.counts.publishes_stalled += 1,
        Sent::Fenced { .. } if zombie => w.counts.zombie_appends_refused += 1,
        Sent::Fenced { .. } => w.counts.appends_fenced += 1,
    }
    w.note(None, None, format!("{who}{name}: published: {sent:?}"));
}

fn note_received(w: &mut World, name: &str, received: Received, zombie: bool) {
    let who = if zombie { "zombie's " } else { "" };
    match received {
        Received::Durable {
            duplicate: true, ..
        } => w.counts.duplicate_acks += 1,
        Received::Durable { .. } => {}
        Received::StaleAck => w.counts.acks_twice += 1,
        Received::Stalled => w.counts.publishes_stalled += 1,
        Received::Fenced { .. } if zombie => w.counts.zombie_appends_refused += 1,
        Received::Fenced { .. } => w.counts.appends_fenced += 1,
    }
    w.note(None, None, format!("{who}{name}: {received:?}"));
}

/// A takeover from start to serving by `node`, with nobody else acting (the first claim, and
/// the end of a seed). It must succeed.
fn take_over_now(w: &mut World, node: u8) -> Result<(), Violation> {
    js_mut(w).roles[node as usize] = Role::Standby;
    let silent = js(w).stream.key().map_or(0, |l| l.revision);
    claim(w, node, silent);
    read(w, node);
    fence(w, node)?;
    assert!(
        js(w).active.is_some_and(|a| a.node == node),
        "a takeover with nobody else acting serves"
    );
    Ok(())
}

/// The end of a seed: the active node crashes, the zombie is gone, the election is over, the
/// lease expires, and a node takes over with the real recovery.
pub fn final_takeover(w: &mut World) -> Result<(), Violation> {
    if js(w).active.is_some() {
        stop_active(w, "crashes (end of the seed)");
    }
    if let Some(z) = js_mut(w).zombie.take() {
        js_mut(w).roles[z.node as usize] = Role::Down { until: 0 };
    }
    for role in &mut js_mut(w).roles {
        *role = Role::Standby;
    }
    // The election ends; the node taking over has watched the key for a lease.
    let stream = &js(w).stream;
    let clear = stream
        .unavailable_until
        .max(stream.key().map_or(0, |l| l.written_at + LEASE_STEPS));
    w.step = w.step.max(clear);
    let node = (w.rng.below(js(w).roles.len() as u64)) as u8;
    take_over_now(w, node)
}

/// The epochs of each subject as an export would check them: they never decrease, every
/// message after a `lease` record of epoch E carries epoch E until the next, and one epoch is
/// one node's.
pub fn epochs_in_order(w: &World) -> Result<(), Violation> {
    let mut holders: BTreeMap<u64, u8> = BTreeMap::new();
    for (subject, messages) in &js(w).stream.subjects {
        for m in messages {
            let holder = *holders.entry(m.epoch).or_insert(m.node);
            if holder != m.node {
                return Err(Violation {
                    invariant: "epochs_in_order",
                    player: None,
                    jump: None,
                    what: format!(
                        "{subject}: message {} of node {} carries epoch {}, which is node {}'s",
                        m.seq,
                        node_name(m.node),
                        m.epoch,
                        node_name(holder)
                    ),
                });
            }
        }
    }
    for (subject, messages) in &js(w).stream.subjects {
        let mut fenced: Option<u64> = None;
        let mut last = 0;
        for m in messages {
            let bad = m.epoch < last || fenced.is_some_and(|e| !m.lease && m.epoch != e);
            if bad {
                return Err(Violation {
                    invariant: "epochs_in_order",
                    player: None,
                    jump: None,
                    what: format!(
                        "{subject}: message {} of node {} carries epoch {} after epoch {last} (fenced at {fenced:?})",
                        m.seq,
                        node_name(m.node),
                        m.epoch
                    ),
                });
            }
            last = m.epoch;
            if m.lease {
                fenced = Some(m.epoch);
            }
        }
    }
    Ok(())
}

/// Every log of the stream as an export writes it for the auditor: its messages' bytes in
/// order, `lease` records included (the auditor skips them and checks their epochs).
pub fn logs_for_audit(w: &World) -> Vec<(String, Vec<u8>)> {
    let stream = &js(w).stream;
    stream
        .subjects
        .keys()
        .map(|name| (name.clone(), stream.bytes_of(name)))
        .collect()
}

/// Every message of the stream, for the seed's digest.
pub fn digest_into(w: &World, h: &mut xxhash_rust::xxh3::Xxh3) {
    for (subject, messages) in &js(w).stream.subjects {
        h.update(subject.as_bytes());
        for m in messages {
            h.update(&m.seq.to_le_bytes());
            h.update(&[m.node]);
            h.update(&m.epoch.to_le_bytes());
            h.update(&m.body);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bugs::{self, Bug};

    /// Node 0 serves, a player's join is appended and not yet published; node 0 is paused past
    /// its lease; node 1 claims, reads, fences and serves. The zombie wakes: its append is
    /// `refused` (no fencing: accepted, and `no_zombie_append` says so). Then it renews and
    /// stops.
    fn zombie_after_takeover(bug: Option<Bug>) -> Result<World, Violation> {
        bugs::set(bug);
        let mut w = World::new(1, true);
        start(&mut w).expect("node 0 takes the empty galaxy");
        assert_eq!(js(&w).active.map(|a| a.node), Some(0));
        crate::workload::request(&mut w, "pilot0");
        let home = crate::world::log_name(
            &w.galaxy,
            sim::instance::InstanceId::primary(w.galaxy.home()),
        );
        let pending = w.shards.values().filter(|s| s.log.can_write()).count();
        assert_eq!(pending, 1, "the join waits in the home log");
        js_mut(&mut w).active.as_mut().unwrap().paused_until = u64::MAX;
        w.step += LEASE_STEPS + 1;
        js_mut(&mut w).roles[1] = Role::Standby;
        let silent = js(&w).stream.key().expect("node 0's lease").revision;
        claim(&mut w, 1, silent);
        read(&mut w, 1);
        fence(&mut w, 1)?;
        assert_eq!(js(&w).active.map(|a| a.node), Some(1), "node 1 serves");
        let z = js(&w).zombie.clone().expect("node 0 is a zombie");
        assert_eq!(z.logs.len(), 1);
        assert_eq!(z.logs[0].name, home);
        js_mut(&mut w).zombie.as_mut().unwrap().wakes_at = w.step;
        let sent = zombie_send(&mut w, 0);
        bugs::set(None);
        sent?;
        run(&mut w, NodeAction::ZombieRenew)?;
        assert!(js(&w).zombie.is_none(), "the zombie stops");
        Ok(w)
    }

    /// Node 0 serves and renews; node 1 watches; the store elects for longer than the lease
    /// (both polls and renewals go unanswered); once it answers again node 1 polls before
    /// node 0 renews. Whether node 1 claimed the lease.
    fn election_longer_than_the_lease(bug: Option<Bug>) -> bool {
        bugs::set(bug);
        let mut w = World::new(1, true);
        start(&mut w).expect("node 0 takes the empty galaxy");
        js_mut(&mut w).roles.truncate(2);
        js_mut(&mut w).watches.truncate(2);
        let s = w.step;
        renew(&mut w, 0).expect("renewed");
        poll(&mut w, 1);
        js_mut(&mut w).stream.unavailable_until = s + LEASE_STEPS + 10;
        w.step = s + 10;
        poll(&mut w, 1);
        w.step = s + 20;
        renew(&mut w, 0).expect("an election is not a death");
        w.step = s + LEASE_STEPS + 11;
        poll(&mut w, 1);
        let claimed = matches!(js(&w).roles[1], Role::TakingOver { .. });
        bugs::set(None);
        if !claimed {
            renew(&mut w, 0).expect("renewed after the election");
            assert!(
                js(&w).active.is_some_and(|a| a.node == 0),
                "node 0 serves on"
            );
        }
        claimed
    }

    #[test]
    fn an_election_longer_than_the_lease_hands_nothing_over() {
        assert!(!election_longer_than_the_lease(None));
        assert!(
            election_longer_than_the_lease(Some(Bug::WatchCountsElections)),
            "a watch that counts the election as silence takes the lease of a live holder"
        );
    }

    #[test]
    fn a_zombie_woken_after_a_takeover_is_refused_and_stops() {
        let w = zombie_after_takeover(None).expect("no violation");
        assert_eq!(w.counts.zombie_appends_refused, 1);
        assert_eq!(w.counts.zombies_stopped, 1);
        epochs_in_order(&w).expect("epochs in order");
    }

    #[test]
    fn a_zombie_append_accepted_is_a_violation() {
        let v = zombie_after_takeover(Some(Bug::NoFencing))
            .err()
            .expect("caught");
        assert_eq!(v.invariant, "no_zombie_append", "{v}");
        assert!(v.what.contains("after the lease record of epoch"), "{v}");
    }
}
