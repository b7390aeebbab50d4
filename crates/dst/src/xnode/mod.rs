//! The cross-node world (issue 19; seeds 2 mod 4, or `--world xnode`): two or three nodes each
//! owning some units (star systems), players jumping between units, every jump between units
//! handed over through a pair subject of a simulated JetStream, whatever the nodes and the
//! stream do on the way. The decisions are the protocol core's (`mesh::protocol::handover`,
//! `arrivals`, `commit::done`, `lease::expected_last_seq`) and the rules' (`sim`'s decide and
//! apply); this module only drives them, step by step, in an order the seed picks:
//!
//! - a unit's owner decides and applies a request, appends its events as one group commit
//!   (one append in flight per unit, fenced by the expected last sequence), answers once the
//!   stream acknowledged it; a committed jump goes to the outbox, is published to its pair
//!   subject, and `depart.done` follows the publish's acknowledgement;
//! - a destination's consumer delivers its pair subjects' messages one at a time, the inbox
//!   keeps what is new, the arrivals queue waits for the travel, the landing is appended; a
//!   snapshot records the state and the consumed positions;
//! - faults: a node crash (at any step of a jump: the crash is counted by the stages its jumps
//!   were at), a pause (a zombie if its units are taken meanwhile), a lease lapsing under a
//!   running owner (a zombie that does not know), an answer lost or delivered twice, a request
//!   or answer delayed (any order), a consumer redelivering from an earlier position, the
//!   duplicate window passing for a jump's id (a republish is stored a second time);
//! - takeovers: a node claims a unit whose owner is silent (compare-and-set, a new epoch),
//!   loads its snapshot, replays its log after it, appends a `lease` record to its log and to
//!   each of its pair subjects, republishes every committed jump without `depart.done`
//!   (`handover::at_takeover`) and reads its pair subjects from the snapshot's positions.
//!
//! The invariants are judged on what the stream stored ([`checks`]). Files: this one (the
//! world's state, a seed's run), [`js`] (the simulated stream), `takeover.rs`, `owner.rs` (an
//! owner's steps), `faults.rs`, [`scheduler`] (what happens next), [`checks`], [`counts`].
//! Never reads a clock, never iterates a hash map, never draws from anything but the seed's RNG.

pub mod checks;
pub mod counts;
mod faults;
pub mod js;
mod owner;
pub mod regions;
pub mod scheduler;
mod takeover;

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;

use mesh::codec::{xfer_text, Jump};
use mesh::protocol::arrivals::Arrivals;
use mesh::protocol::handover::{
    self, AtTakeover, Inbox, Outbox, Pair, PairSeq, Publish, PublishAnswer, Refusal, Stage,
};
use mesh::protocol::invariants::{self as inv, must};
use sim::galaxy::{Galaxy, SystemId};
use sim::ids::{Tick, Version, Xfer};
use sim::instance::InstanceId;
use sim::rng::Rng;
use sim::rules::Rules;
use sim::system::{Event, Reject, SystemState};
use store::seq::Seq;

use crate::invariants::Violation;
use crate::trace::Trace;
use crate::{Failure, Options, SeedRun};
use checks::Truth;
pub use counts::XCounts;
use js::{Answer, Body, Msg, NodeId, Records, Region, Snapshot, Stream};
use regions::{Regions, Where};
pub use scheduler::{enabled, Action, Retry};

/// Nodes in a seed: two or three.
pub const NODES_MIN: u64 = 2;
pub const NODES_MAX: u64 = 3;

/// Steps a unit's owner must be silent (crashed, paused, or gone from it) before another node
/// may claim it: the lease, in steps.
pub const LEASE_STEPS: u64 = 25;

/// Most steps the quiet end of a seed may take to land everything in flight: past it, a jump
/// that never lands is reported.
pub const QUIET_STEPS_MAX: u64 = 6_000;

/// Seeds that run this world when every world runs: 2 mod 4 (the files keep 0 mod 4, the
/// stream world the odd seeds); of them, 6 mod 8 with two regions ([`is_regions_seed`]).
pub fn is_xnode_seed(seed: u64) -> bool {
    seed % 4 == 2
}

/// Seeds of this world that run with two regions when every world runs: 6 mod 8.
pub fn is_regions_seed(seed: u64) -> bool {
    seed % 8 == 6
}

/// What an owner does once a group commit is acknowledged.
#[derive(Clone, Debug)]
pub enum After {
    Reply {
        player: String,
        version: Version,
        what: &'static str,
    },
    Nothing,
}

/// A group commit sent and not yet acknowledged.
#[derive(Clone, Debug)]
pub struct Batch {
    pub id: String,
    pub records: Records,
    pub afters: Vec<After>,
    /// The record number of its last event in the unit's log.
    pub last_record: u64,
    pub expected: Option<u64>,
}

/// A unit as its owner (or a zombie that thinks it owns it) holds it in memory.
#[derive(Clone, Debug)]
pub struct Unit {
    pub id: SystemId,
    pub epoch: u64,
    pub state: SystemState,
    pub now: Tick,
    /// The last sequence of its log this owner knows (the fence of its next append).
    pub known_last: u64,
    /// Events in its log, counting the ones applied and not yet durable.
    pub records: u64,
    pub queue: Vec<(Tick, Event, After)>,
    pub in_flight: Option<Batch>,
    pub batches: u64,
    pub outbox: Outbox,
    pub inbox: Inbox,
    pub arrivals: Arrivals,
    /// Per origin unit: the last position its consumer delivered.
    pub consumers: BTreeMap<SystemId, u64>,
}

/// What a node taking a unit over read, before its `lease` records.
#[derive(Clone, Debug)]
pub struct Claimed {
    pub epoch: u64,
    pub state: SystemState,
    pub records: u64,
    /// The last sequence of the unit's log at the read: the fence's expected sequence.
    pub log_last: u64,
    pub positions: BTreeMap<SystemId, PairSeq>,
}

/// A node: up or crashed, paused or running, the units it holds in memory and those it
/// claimed and read but has not fenced yet.
#[derive(Clone, Debug, Default)]
pub struct Node {
    pub up: bool,
    pub paused: bool,
    pub units: BTreeMap<SystemId, Unit>,
    pub claims: BTreeMap<SystemId, Claimed>,
}

/// A request on its way to the stream.
#[derive(Clone, Debug)]
pub enum Req {
    Append {
        unit: SystemId,
        batch: Batch,
    },
    Publish {
        unit: SystemId,
        id: String,
        publish: Publish,
    },
}

/// An answer on its way back to a node.
#[derive(Clone, Debug)]
pub enum Reply {
    Append {
        unit: SystemId,
        id: String,
        answer: Answer,
    },
    Publish {
        unit: SystemId,
        from: InstanceId,
        xfer: Xfer,
        answer: Answer,
    },
}

/// A message between a node and the stream, with its sender's node and epoch.
#[derive(Clone, Debug)]
pub struct Wire<T> {
    pub node: NodeId,
    pub epoch: u64,
    pub what: T,
    /// The region whose stream it goes to (a request) or comes from (an answer).
    pub target: Region,
    /// The first step it may arrive at: later than sent when it crosses the link between
    /// regions (the link's delay).
    pub ready_at: u64,
}

/// A player's client: one request at a time.
#[derive(Clone, Debug, Default)]
pub struct Client {
    pub joined: bool,
    /// Waiting for an answer from this node about this unit.
    pub waiting: Option<(NodeId, SystemId)>,
}

/// The world of one seed.
pub struct XWorld {
    pub seed: u64,
    pub rng: Rng,
    pub galaxy: Galaxy,
    pub rules: Rules,
    pub nodes: Vec<Node>,
    pub stream: Stream,
    pub requests: Vec<Wire<Req>>,
    pub answers: Vec<Wire<Reply>>,
    pub clients: BTreeMap<String, Client>,
    /// Per unit: the step its owner went silent (crashed, paused, gave it up), if it did.
    pub silent_since: BTreeMap<SystemId, u64>,
    pub truth: Truth,
    pub step: u64,
    pub trace: Trace,
    pub counts: XCounts,
    /// Faults and new requests stop (the quiet end of a seed).
    pub quiet: bool,
    /// Two regions, their link and copies (the regions world), or None (one region).
    pub regions: Option<Regions>,
    /// Every message stored, in the order stored (a promotion rebuilds the truth from it).
    pub history: Vec<(Where, u64)>,
}

impl XWorld {
    pub fn new(seed: u64, keep_trace: bool, with_regions: bool) -> XWorld {
        let mut rng = Rng::from_seed(seed);
        let galaxy = crate::world::galaxy_of(&mut rng);
        let rules = crate::world::rules_of(&mut rng);
        let players = rng.range_inclusive(2, 6);
        let nodes = rng.range_inclusive(NODES_MIN, NODES_MAX) as usize;
        let clients = (0..players)
            .map(|i| (format!("pilot{i}"), Client::default()))
            .collect();
        let truth = Truth::new(&galaxy);
        let mut w = XWorld {
            seed,
            rng,
            galaxy,
            rules,
            nodes: vec![
                Node {
                    up: true,
                    ..Node::default()
                };
                nodes
            ],
            stream: Stream::default(),
            requests: Vec::new(),
            answers: Vec::new(),
            clients,
            silent_since: BTreeMap::new(),
            truth,
            step: 0,
            trace: Trace::new(keep_trace),
            counts: XCounts {
                seeds: 1,
                ..XCounts::default()
            },
            quiet: false,
            regions: None,
            history: Vec::new(),
        };
        if with_regions {
            regions::start(&mut w);
            return w;
        }
        // Units dealt at random: some node may own none, one may own all.
        let units: Vec<SystemId> = w.galaxy.ids().collect();
        for unit in units {
            let node = w.rng.below(nodes as u64) as NodeId;
            w.takeover(node, unit).expect("a first takeover");
        }
        w
    }

    /// A message from node `node` (at `epoch`) to or from region `target`'s stream: delayed
    /// by the link when it crosses it.
    pub(super) fn wire<T>(&self, node: NodeId, epoch: u64, target: Region, what: T) -> Wire<T> {
        let delay = match &self.regions {
            Some(r) if r.of_node[node as usize] != target => r.delay_steps,
            _ => 0,
        };
        Wire {
            node,
            epoch,
            what,
            target,
            ready_at: self.step + delay,
        }
    }

    /// A message stored in `unit`'s log: judged by the truth, and kept in the history.
    pub(super) fn stored_unit(
        &mut self,
        unit: SystemId,
        fenced_at: Option<u64>,
        msg: &Msg<Records>,
    ) -> Result<(), Violation> {
        self.history.push((Where::Unit(unit), msg.seq));
        self.truth.stored_unit(&self.galaxy, unit, fenced_at, msg)
    }

    /// A message stored on `pair`'s subject: judged by the truth, and kept in the history.
    pub(super) fn stored_pair(
        &mut self,
        pair: Pair,
        fenced_at: Option<u64>,
        msg: &Msg<Jump>,
    ) -> Result<(), Violation> {
        self.history.push((Where::Pair(pair), msg.seq));
        self.truth.stored_pair(&self.galaxy, pair, fenced_at, msg)
    }

    pub fn note(&mut self, who: Option<&str>, jump: Option<(InstanceId, Xfer)>, text: String) {
        self.trace.push(self.step, who, jump, text);
    }

    pub(super) fn slug(&self, unit: SystemId) -> String {
        self.galaxy.slug(unit).to_string()
    }

    pub(super) fn running(&self, node: NodeId) -> bool {
        let n = &self.nodes[node as usize];
        n.up && !n.paused
    }

    pub(super) fn unit_mut(&mut self, node: NodeId, unit: SystemId) -> &mut Unit {
        self.nodes[node as usize]
            .units
            .get_mut(&unit)
            .expect("the node holds the unit")
    }

    /// The node that holds the unit's lease.
    pub(super) fn owner(&self, unit: SystemId) -> NodeId {
        self.stream.lease(unit).0
    }
}

/// The steps of a seed, then its quiet end and the final checks.
fn drive(w: &mut XWorld, opts: Options) -> Result<(), Violation> {
    while w.step < opts.steps {
        w.step += 1;
        w.stream.now = w.step;
        w.count_region_step();
        w.counts.steps += 1;
        if let Some(action) = w.pick() {
            w.run(action)?;
        }
        w.check_step()?;
    }
    w.quiet = true;
    w.note(None, None, "QUIET: no more faults nor requests".into());
    let end = w.step + QUIET_STEPS_MAX;
    while !w.settled() && w.step < end {
        w.step += 1;
        w.stream.now = w.step;
        w.count_region_step();
        w.counts.quiet_steps += 1;
        if let Some(action) = w.pick() {
            w.run(action)?;
        }
        w.check_step()?;
    }
    w.truth.acked_jumps_land(&w.galaxy)?;
    regions::at_end(w)
}

/// Runs seed `seed` in the cross-node world.
pub fn run_seed(seed: u64, opts: Options, with_regions: bool) -> SeedRun {
    let mut w = XWorld::new(seed, opts.keep_trace, with_regions);
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| drive(&mut w, opts)));
    let violation = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(v)) => Some(v),
        Err(payload) => Some(crate::violation_of_panic(payload)),
    };
    let failure = violation.map(|v| failure_of(&w, v));
    let trace = if opts.keep_trace {
        w.trace
            .all()
            .iter()
            .map(|e| format!("{:>6} {}", e.step, e.text))
            .collect()
    } else {
        Vec::new()
    };
    let counts = crate::world::Counts {
        steps: w.counts.steps,
        xnode: w.counts.clone(),
        ..crate::world::Counts::default()
    };
    SeedRun {
        seed,
        digest: digest(&w),
        counts,
        failure,
        trace,
    }
}

fn failure_of(w: &XWorld, v: Violation) -> Failure {
    let line = |e: &crate::trace::Entry| format!("{:>6} {}", e.step, e.text);
    let mut story: Vec<String> = match &v.player {
        Some(p) => w.trace.story(p).into_iter().map(line).collect(),
        None => Vec::new(),
    };
    story.push("  ... the last steps, whoever they touched:".into());
    story.extend(
        w.trace
            .last(crate::trace::CONTEXT_LINES)
            .into_iter()
            .map(line),
    );
    Failure {
        what: v.to_string(),
        step: w.step,
        player: v.player.clone(),
        story,
    }
}

/// The stream's messages (subject, sequence, node, epoch) and the trace, hashed.
fn digest(w: &XWorld) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for (unit, s) in &w.stream.units {
        h.update(w.galaxy.slug(*unit).as_bytes());
        for m in &s.msgs {
            h.update(&[m.seq.to_le_bytes(), m.epoch.to_le_bytes()].concat());
            h.update(&[m.node]);
        }
    }
    for (pair, s) in &w.stream.pairs {
        h.update(w.galaxy.slug(pair.from).as_bytes());
        h.update(w.galaxy.slug(pair.to).as_bytes());
        for m in &s.msgs {
            h.update(&[m.seq.to_le_bytes(), m.epoch.to_le_bytes()].concat());
        }
    }
    h.update(&w.trace.digest().to_le_bytes());
    h.digest()
}
