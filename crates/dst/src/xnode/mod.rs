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
//! The invariants are judged on what the stream stored ([`checks`]). Never reads a clock, never
//! iterates a hash map, never draws from anything but the seed's RNG.

pub mod checks;
pub mod js;

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
use js::{Answer, Body, NodeId, Records, Snapshot, Stream};

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
/// stream world the odd seeds).
pub fn is_xnode_seed(seed: u64) -> bool {
    seed % 4 == 2
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
}

/// A player's client: one request at a time.
#[derive(Clone, Debug, Default)]
pub struct Client {
    pub joined: bool,
    /// Waiting for an answer from this node about this unit.
    pub waiting: Option<(NodeId, SystemId)>,
}

/// What a seed of this world did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct XCounts {
    pub seeds: u64,
    pub steps: u64,
    pub quiet_steps: u64,
    pub requests: u64,
    pub acks: u64,
    pub jumps_committed: u64,
    pub jumps_published: u64,
    pub publishes_duplicate: u64,
    pub duplicates_stored: u64,
    pub jumps_landed: u64,
    pub deliveries_dropped: u64,
    pub redeliveries: u64,
    pub ids_forgotten: u64,
    pub crashes: u64,
    /// Crashes of a node holding a jump at each step (a crash may count in several).
    pub crash_depart_not_durable: u64,
    pub crash_committed_unpublished: u64,
    pub crash_publish_unanswered: u64,
    pub crash_done_not_durable: u64,
    pub crash_dest_queued: u64,
    pub crash_arrive_not_durable: u64,
    pub crash_dest_before_snapshot: u64,
    pub pauses: u64,
    pub lapses: u64,
    pub takeovers: u64,
    pub takeovers_from_snapshot: u64,
    /// Lease records refused (a zombie wrote between the read and the fence): read again.
    pub fence_retries: u64,
    /// Claims given up at the fence: another node claimed the unit since.
    pub takeovers_outranked: u64,
    pub republished: u64,
    pub zombie_writes_refused: u64,
    /// Publishes refused because an ack was lost or answered duplicate (the writer's own).
    pub publishes_resynced: u64,
    /// Zombies stopped by a renewal, or by a landing their stale state refuses.
    pub zombies_stopped: u64,
    pub answers_lost: u64,
    pub answers_twice: u64,
    pub snapshots: u64,
    /// Snapshots put by a node that no longer held the unit's lease.
    pub zombie_snapshots: u64,
}

impl XCounts {
    /// Adds a seed's counts to a total.
    pub fn add(&mut self, c: &XCounts) {
        let pairs: [(&mut u64, u64); 35] = [
            (&mut self.seeds, c.seeds),
            (&mut self.steps, c.steps),
            (&mut self.quiet_steps, c.quiet_steps),
            (&mut self.requests, c.requests),
            (&mut self.acks, c.acks),
            (&mut self.jumps_committed, c.jumps_committed),
            (&mut self.jumps_published, c.jumps_published),
            (&mut self.publishes_duplicate, c.publishes_duplicate),
            (&mut self.duplicates_stored, c.duplicates_stored),
            (&mut self.jumps_landed, c.jumps_landed),
            (&mut self.deliveries_dropped, c.deliveries_dropped),
            (&mut self.redeliveries, c.redeliveries),
            (&mut self.ids_forgotten, c.ids_forgotten),
            (&mut self.crashes, c.crashes),
            (
                &mut self.crash_depart_not_durable,
                c.crash_depart_not_durable,
            ),
            (
                &mut self.crash_committed_unpublished,
                c.crash_committed_unpublished,
            ),
            (
                &mut self.crash_publish_unanswered,
                c.crash_publish_unanswered,
            ),
            (&mut self.crash_done_not_durable, c.crash_done_not_durable),
            (&mut self.crash_dest_queued, c.crash_dest_queued),
            (
                &mut self.crash_arrive_not_durable,
                c.crash_arrive_not_durable,
            ),
            (
                &mut self.crash_dest_before_snapshot,
                c.crash_dest_before_snapshot,
            ),
            (&mut self.pauses, c.pauses),
            (&mut self.lapses, c.lapses),
            (&mut self.takeovers, c.takeovers),
            (&mut self.takeovers_from_snapshot, c.takeovers_from_snapshot),
            (&mut self.fence_retries, c.fence_retries),
            (&mut self.takeovers_outranked, c.takeovers_outranked),
            (&mut self.republished, c.republished),
            (&mut self.zombie_writes_refused, c.zombie_writes_refused),
            (&mut self.publishes_resynced, c.publishes_resynced),
            (&mut self.zombies_stopped, c.zombies_stopped),
            (&mut self.answers_lost, c.answers_lost),
            (&mut self.answers_twice, c.answers_twice),
            (&mut self.snapshots, c.snapshots),
            (&mut self.zombie_snapshots, c.zombie_snapshots),
        ];
        for (t, v) in pairs {
            *t += v;
        }
    }

    /// One line for the summary.
    pub fn text(&self) -> String {
        format!(
            "cross-node world: {} seeds ({} quiet steps at the ends); jumps {} committed, {} published ({} answered duplicate, {} stored twice), {} landed, {} deliveries dropped, {} redeliveries, {} ids forgotten; {} crashes (with a jump: {} depart not durable, {} committed unpublished, {} publish unanswered, {} depart.done not durable, {} queued at the destination, {} arrive not durable, {} landed since the snapshot), {} pauses, {} lapses; {} takeovers ({} from a snapshot, {} lease records refused and read again, {} claims given up, {} jumps republished); zombies: {} writes refused, {} stopped; {} publishes resynced after a lost or duplicate ack; {} answers lost, {} twice; {} snapshots ({} by zombies); {} requests, {} acknowledged",
            self.seeds,
            self.quiet_steps,
            self.jumps_committed,
            self.jumps_published,
            self.publishes_duplicate,
            self.duplicates_stored,
            self.jumps_landed,
            self.deliveries_dropped,
            self.redeliveries,
            self.ids_forgotten,
            self.crashes,
            self.crash_depart_not_durable,
            self.crash_committed_unpublished,
            self.crash_publish_unanswered,
            self.crash_done_not_durable,
            self.crash_dest_queued,
            self.crash_arrive_not_durable,
            self.crash_dest_before_snapshot,
            self.pauses,
            self.lapses,
            self.takeovers,
            self.takeovers_from_snapshot,
            self.fence_retries,
            self.takeovers_outranked,
            self.republished,
            self.zombie_writes_refused,
            self.zombies_stopped,
            self.publishes_resynced,
            self.answers_lost,
            self.answers_twice,
            self.snapshots,
            self.zombie_snapshots,
            self.requests,
            self.acks,
        )
    }
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
}

impl XWorld {
    pub fn new(seed: u64, keep_trace: bool) -> XWorld {
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
        };
        // Units dealt at random: some node may own none, one may own all.
        let units: Vec<SystemId> = w.galaxy.ids().collect();
        for unit in units {
            let node = w.rng.below(nodes as u64) as NodeId;
            w.takeover(node, unit).expect("a first takeover");
        }
        w
    }

    pub fn note(&mut self, who: Option<&str>, jump: Option<(InstanceId, Xfer)>, text: String) {
        self.trace.push(self.step, who, jump, text);
    }

    fn slug(&self, unit: SystemId) -> String {
        self.galaxy.slug(unit).to_string()
    }

    fn running(&self, node: NodeId) -> bool {
        let n = &self.nodes[node as usize];
        n.up && !n.paused
    }

    fn unit_mut(&mut self, node: NodeId, unit: SystemId) -> &mut Unit {
        self.nodes[node as usize]
            .units
            .get_mut(&unit)
            .expect("the node holds the unit")
    }

    /// The node that holds the unit's lease.
    fn owner(&self, unit: SystemId) -> NodeId {
        self.stream.lease(unit).0
    }

    // ----- takeover -----

    /// Node `node` claims `unit` and takes it over at once (the start of a seed).
    pub fn takeover(&mut self, node: NodeId, unit: SystemId) -> Result<(), Violation> {
        self.claim(node, unit);
        self.fence(node, unit)
    }

    /// Node `node` claims `unit` (compare-and-set at the epoch it read) and reads it: its
    /// snapshot, then its log after it. Its `lease` records come in a later step ([`Self::fence`]):
    /// a zombie may write in between, and then the fence is refused and the node reads again.
    fn claim(&mut self, node: NodeId, unit: SystemId) {
        let (_, epoch_now) = self.stream.lease(unit);
        let epoch = self
            .stream
            .claim(unit, node, epoch_now)
            .expect("a claim at the epoch just read");
        self.silent_since.remove(&unit);
        let claimed = self.read_unit(unit, epoch);
        self.nodes[node as usize].claims.insert(unit, claimed);
        let text = format!("CLAIM: n{node} claims {} at epoch {epoch}", self.slug(unit));
        self.note(None, None, text);
    }

    /// A unit's snapshot and its log after it, replayed.
    fn read_unit(&mut self, unit: SystemId, epoch: u64) -> Claimed {
        let snap = self.stream.snapshots.get(&unit).cloned();
        let (mut state, log_seq, mut records, positions) = match snap {
            Some(s) => {
                self.counts.takeovers_from_snapshot += 1;
                (s.state, s.log_seq, s.records, s.positions)
            }
            None => (SystemState::new(&self.galaxy, unit), 0, 0, BTreeMap::new()),
        };
        let subject = self.stream.units.entry(unit).or_default();
        for msg in subject.after(log_seq) {
            if let Body::Data(recs) = &msg.body {
                for (t, event) in recs {
                    state.apply(*t, event).unwrap_or_else(|e| {
                        panic!("BUG: a unit's log does not replay at {}: {e}", msg.seq)
                    });
                    records += 1;
                }
            }
        }
        Claimed {
            epoch,
            state,
            records,
            log_last: subject.last_seq(),
            positions,
        }
    }

    /// Node `node`, having claimed and read `unit`, appends its `lease` record to the unit's
    /// log (refused if anyone wrote since the read: read again) and to each of its pair
    /// subjects, republishes what is committed and serves the unit.
    fn fence(&mut self, node: NodeId, unit: SystemId) -> Result<(), Violation> {
        let claimed = self.nodes[node as usize]
            .claims
            .remove(&unit)
            .expect("a claim to fence");
        let epoch = claimed.epoch;
        if self.stream.lease(unit) != (node, epoch) {
            self.counts.takeovers_outranked += 1;
            let text = format!("n{node} gives {} up: its claim was taken", self.slug(unit));
            self.note(None, None, text);
            return Ok(());
        }
        let Claimed {
            mut state,
            mut records,
            positions,
            ..
        } = claimed.clone();
        let expected = mesh::protocol::lease::expected_last_seq(claimed.log_last);
        let id = format!("lease {} e{epoch}", self.slug(unit));
        let fenced_at = self.stream.units.entry(unit).or_default().fenced_at();
        let answer = self
            .stream
            .append_unit(unit, &id, expected, (node, epoch, Body::Lease));
        let known_last = match answer {
            Answer::Stored(seq) => seq,
            Answer::Duplicate(_) => panic!("BUG: a lease record's id stored twice"),
            Answer::WrongLastSeq(_) => {
                self.counts.fence_retries += 1;
                let again = self.read_unit(unit, epoch);
                self.nodes[node as usize].claims.insert(unit, again);
                let text = format!(
                    "n{node}: the lease record of {} refused: reads again",
                    self.slug(unit)
                );
                self.note(None, None, text);
                return Ok(());
            }
        };
        let msg = self.stream.units[&unit]
            .msgs
            .last()
            .cloned()
            .expect("stored");
        self.truth
            .stored_unit(&self.galaxy, unit, fenced_at, &msg)?;
        let mut outbox = Outbox::new();
        let others: Vec<SystemId> = self.galaxy.ids().filter(|&o| o != unit).collect();
        for &to in &others {
            let pair = Pair { from: unit, to };
            let subject = self.stream.pairs.entry(pair).or_default();
            let (last, fenced_at) = (subject.last_seq(), subject.fenced_at());
            let answer =
                self.stream
                    .publish_pair(pair, None, Some(last), (node, epoch, Body::Lease));
            let Answer::Stored(seq) = answer else {
                panic!("BUG: a pair's lease record refused in the step of its read: {answer:?}")
            };
            let msg = self.stream.pairs[&pair]
                .msgs
                .last()
                .cloned()
                .expect("stored");
            self.truth
                .stored_pair(&self.galaxy, pair, fenced_at, &msg)?;
            outbox.learn_last(pair, PairSeq(seq));
        }
        let mut queue = Vec::new();
        for step in handover::at_takeover(&self.galaxy, &self.rules, &state) {
            match step {
                AtTakeover::Republish(jump) => {
                    self.counts.republished += 1;
                    outbox.recovered(jump);
                }
                AtTakeover::Abort(event) => {
                    let t = state.tick;
                    state.apply(t, &event).expect("an abort applies");
                    records += 1;
                    queue.push((t, event, After::Nothing));
                }
            }
        }
        let inbox = Inbox::from_positions(&positions);
        let consumers = others
            .iter()
            .map(|&o| (o, inbox.start_after(o).0))
            .collect();
        let republished = outbox.len();
        let u = Unit {
            id: unit,
            epoch,
            now: state.tick,
            state,
            known_last,
            records,
            queue,
            in_flight: None,
            batches: 0,
            outbox,
            inbox,
            arrivals: Arrivals::new(),
            consumers,
        };
        self.nodes[node as usize].units.insert(unit, u);
        self.counts.takeovers += 1;
        let text = format!(
            "TAKEOVER: n{node} takes {} at epoch {epoch} ({records} records, {republished} jumps to republish)",
            self.slug(unit)
        );
        self.note(None, None, text);
        Ok(())
    }

    /// Node `node` forgets `unit` (fenced, its lease lost, or crashed): its waiting clients
    /// get no answer.
    fn drop_unit(&mut self, node: NodeId, unit: SystemId, why: &str) {
        self.nodes[node as usize].units.remove(&unit);
        for c in self.clients.values_mut() {
            if c.waiting == Some((node, unit)) {
                c.waiting = None;
            }
        }
        if self.owner(unit) == node {
            self.silent_since.entry(unit).or_insert(self.step);
        }
        let text = format!("n{node} drops {}: {why}", self.slug(unit));
        self.note(None, None, text);
    }

    // ----- an owner's steps -----

    /// Applies `event` at unit `unit` of `node` and queues it for the log.
    fn record(&mut self, node: NodeId, unit: SystemId, event: Event, after: After) -> Seq {
        let u = self.unit_mut(node, unit);
        let t = u.now;
        u.state
            .apply(t, &event)
            .unwrap_or_else(|e| panic!("BUG: a decided event does not apply: {event:?}: {e}"));
        u.records += 1;
        u.queue.push((t, event, after));
        Seq(u.records)
    }

    fn request(&mut self, player: &str) {
        self.counts.requests += 1;
        let joined = self.clients[player].joined;
        let holders: Vec<(NodeId, SystemId)> = self.holders(player);
        if !joined {
            let home = self.galaxy.home();
            let at: Vec<NodeId> = (0..self.nodes.len() as NodeId)
                .filter(|&n| self.running(n) && self.nodes[n as usize].units.contains_key(&home))
                .collect();
            let node = at[self.rng.below(at.len() as u64) as usize];
            let u = &self.nodes[node as usize].units[&home];
            match u
                .state
                .decide_join(&self.galaxy, &self.rules, player, "key")
            {
                Ok(event) => {
                    let version = Version(1);
                    let after = After::Reply {
                        player: player.to_string(),
                        version,
                        what: "join",
                    };
                    self.record(node, home, event, after);
                    self.clients.get_mut(player).expect("a client").waiting = Some((node, home));
                    self.note(Some(player), None, format!("{player} joins at n{node}"));
                }
                Err(Reject::NameTaken { .. }) => {
                    self.clients.get_mut(player).expect("a client").joined = true;
                }
                Err(e) => self.note(Some(player), None, format!("{player}: join refused: {e}")),
            }
            return;
        }
        let (node, unit) = holders[self.rng.below(holders.len() as u64) as usize];
        let u = &self.nodes[node as usize].units[&unit];
        let p = &u.state.players[player];
        let neighbours = self.galaxy.neighbours(unit).to_vec();
        if neighbours.is_empty() {
            return;
        }
        let to = neighbours[self.rng.below(neighbours.len() as u64) as usize];
        let need = self.galaxy.fuel_cost(unit, to);
        if p.fuel < need || self.rng.chance_percent(10) {
            match u
                .state
                .decide_refuel(&self.galaxy, &self.rules, player, None)
            {
                Ok(event) => {
                    let version = p.version.next();
                    let after = After::Reply {
                        player: player.to_string(),
                        version,
                        what: "refuel",
                    };
                    self.record(node, unit, event, after);
                    self.clients.get_mut(player).expect("a client").waiting = Some((node, unit));
                    self.note(
                        Some(player),
                        None,
                        format!("{player} refuels at {} (n{node})", self.slug(unit)),
                    );
                }
                Err(e) => self.note(Some(player), None, format!("{player}: refuel refused: {e}")),
            }
            return;
        }
        if !u.outbox.has_room() {
            return;
        }
        let event = match u.state.decide_depart(&self.galaxy, player, to) {
            Ok(e) => e,
            Err(e) => {
                return self.note(Some(player), None, format!("{player}: jump refused: {e}"));
            }
        };
        let xfer = event.prepared_xfer().expect("a depart");
        let prepare_seq = self.record(node, unit, event, After::Nothing);
        let u = self.unit_mut(node, unit);
        let d = &u.state.departing[&xfer];
        let from = InstanceId::primary(unit);
        let jump = Jump {
            from,
            xfer,
            to: d.to,
            t: u.now,
            travel_ticks: 0,
            player: d.player.clone(),
            tseq: Seq(0),
        };
        let travel = self.galaxy.travel_ticks(unit, to, self.rules.ticks_per_ly);
        let jump = Jump {
            travel_ticks: travel,
            ..jump
        };
        must(inv::prepared_by_origin(
            &self.unit_mut(node, unit).state,
            &jump,
        ));
        self.unit_mut(node, unit).outbox.prepared(prepare_seq, jump);
        self.clients.get_mut(player).expect("a client").waiting = Some((node, unit));
        let text = format!(
            "{player} prepares jump {} to {} at n{node} (travel {travel})",
            xfer_text(&self.galaxy, from, xfer),
            self.slug(to)
        );
        self.note(Some(player), Some((from, xfer)), text);
    }

    /// The running nodes holding `player` in a unit's state.
    fn holders(&self, player: &str) -> Vec<(NodeId, SystemId)> {
        let mut out = Vec::new();
        for (n, node) in self.nodes.iter().enumerate() {
            if !self.running(n as NodeId) {
                continue;
            }
            for (&id, u) in &node.units {
                if u.state.players.contains_key(player) {
                    out.push((n as NodeId, id));
                }
            }
        }
        out
    }

    /// Sends the unit's queued events as one group commit.
    fn send_batch(&mut self, node: NodeId, unit: SystemId) {
        let slug = self.slug(unit);
        let u = self.unit_mut(node, unit);
        assert!(u.in_flight.is_none(), "one group commit in flight per unit");
        u.batches += 1;
        let id = format!("{slug} n{node} e{} b{}", u.epoch, u.batches);
        let queue = std::mem::take(&mut u.queue);
        let (records, afters): (Records, Vec<After>) =
            queue.into_iter().map(|(t, e, a)| ((t, e), a)).unzip();
        let batch = Batch {
            id,
            records,
            afters,
            last_record: u.records,
            expected: mesh::protocol::lease::expected_last_seq(u.known_last),
        };
        u.in_flight = Some(batch.clone());
        let epoch = u.epoch;
        self.requests.push(Wire {
            node,
            epoch,
            what: Req::Append { unit, batch },
        });
    }

    /// Sends the outbox's publishes.
    fn send_publishes(&mut self, node: NodeId, unit: SystemId) {
        let u = self.unit_mut(node, unit);
        let epoch = u.epoch;
        let publishes = u.outbox.to_publish();
        for publish in publishes {
            let id = format!("jump {}", handover::msg_id(&self.galaxy, &publish.jump));
            let (from, xfer) = (publish.jump.from, publish.jump.xfer);
            let name = publish.jump.player.name.clone();
            self.note(
                Some(&name),
                Some((from, xfer)),
                format!("n{node} publishes {id}"),
            );
            self.requests.push(Wire {
                node,
                epoch,
                what: Req::Publish { unit, id, publish },
            });
        }
    }

    /// The stream takes request `i`.
    fn store(&mut self, i: usize) -> Result<(), Violation> {
        let wire = self.requests.remove(i);
        let (node, epoch) = (wire.node, wire.epoch);
        let reply = match wire.what {
            Req::Append { unit, batch } => {
                let fenced_at = self.stream.units.entry(unit).or_default().fenced_at();
                let body = Body::Data(batch.records.clone());
                let answer =
                    self.stream
                        .append_unit(unit, &batch.id, batch.expected, (node, epoch, body));
                if let Answer::Stored(_) = answer {
                    let msg = self.stream.units[&unit]
                        .msgs
                        .last()
                        .cloned()
                        .expect("stored");
                    self.truth
                        .stored_unit(&self.galaxy, unit, fenced_at, &msg)?;
                    self.count_landings(&batch.records);
                }
                if let Answer::WrongLastSeq(_) = answer {
                    self.counts.zombie_writes_refused += 1;
                }
                let text = format!("stream: {} from n{node} e{epoch}: {answer:?}", batch.id);
                self.note(None, None, text);
                Reply::Append {
                    unit,
                    id: batch.id,
                    answer,
                }
            }
            Req::Publish { unit, id, publish } => {
                let pair = publish.pair;
                let fenced_at = self.stream.pairs.entry(pair).or_default().fenced_at();
                let jump = publish.jump.clone();
                let expected = publish.expected_last.map(|p| p.0);
                let body = Body::Data(jump.clone());
                let answer =
                    self.stream
                        .publish_pair(pair, Some(&id), expected, (node, epoch, body));
                match answer {
                    Answer::Stored(_) => {
                        self.counts.jumps_published += 1;
                        let msg = self.stream.pairs[&pair]
                            .msgs
                            .last()
                            .cloned()
                            .expect("stored");
                        let before = self.truth.duplicates_stored;
                        self.truth
                            .stored_pair(&self.galaxy, pair, fenced_at, &msg)?;
                        self.counts.duplicates_stored += self.truth.duplicates_stored - before;
                    }
                    Answer::Duplicate(_) => self.counts.publishes_duplicate += 1,
                    Answer::WrongLastSeq(_) => self.counts.zombie_writes_refused += 1,
                }
                let key = Some((jump.from, jump.xfer));
                let text = format!("stream: {id} from n{node} e{epoch}: {answer:?}");
                self.note(Some(&jump.player.name), key, text);
                Reply::Publish {
                    unit,
                    from: jump.from,
                    xfer: jump.xfer,
                    answer,
                }
            }
        };
        self.answers.push(Wire {
            node,
            epoch,
            what: reply,
        });
        Ok(())
    }

    fn count_landings(&mut self, records: &Records) {
        let landed = records
            .iter()
            .filter(|(_, e)| matches!(e, Event::Arrive { .. }))
            .count();
        self.counts.jumps_landed += landed as u64;
    }

    /// Answer `i` reaches its node.
    fn answer(&mut self, i: usize) -> Result<(), Violation> {
        let wire = self.answers.remove(i);
        let node = wire.node;
        let unit = match &wire.what {
            Reply::Append { unit, .. } | Reply::Publish { unit, .. } => *unit,
        };
        let holds = self.nodes[node as usize]
            .units
            .get(&unit)
            .is_some_and(|u| u.epoch == wire.epoch);
        if !self.nodes[node as usize].up || !holds {
            return Ok(());
        }
        match wire.what {
            Reply::Append { id, answer, .. } => self.appended(node, unit, &id, answer),
            Reply::Publish {
                from, xfer, answer, ..
            } => {
                self.published(node, unit, from, xfer, answer);
                Ok(())
            }
        }
    }

    fn appended(
        &mut self,
        node: NodeId,
        unit: SystemId,
        id: &str,
        answer: Answer,
    ) -> Result<(), Violation> {
        let u = self.unit_mut(node, unit);
        if u.in_flight.as_ref().is_none_or(|b| b.id != id) {
            return Ok(());
        }
        let seq = match answer {
            Answer::Stored(seq) | Answer::Duplicate(seq) => seq,
            Answer::WrongLastSeq(_) => {
                self.drop_unit(node, unit, "its append was refused (fenced)");
                return Ok(());
            }
        };
        let batch = u.in_flight.take().expect("checked");
        u.known_last = u.known_last.max(seq);
        let committed = u
            .outbox
            .durable(InstanceId::primary(unit), Seq(batch.last_record));
        for after in batch.afters {
            if let After::Reply {
                player,
                version,
                what,
            } = after
            {
                self.reply(&player, version, what)?;
            }
        }
        for jump in committed {
            self.counts.jumps_committed += 1;
            let key = (jump.from, jump.xfer);
            self.truth.acked_jumps.insert(key);
            let name = jump.player.name.clone();
            let text = format!(
                "jump {} of {name} committed: told",
                xfer_text(&self.galaxy, key.0, key.1)
            );
            self.note(Some(&name), Some(key), text);
            self.reply(&name, jump.player.version, "jump")?;
        }
        Ok(())
    }

    fn reply(
        &mut self,
        player: &str,
        version: Version,
        what: &'static str,
    ) -> Result<(), Violation> {
        self.truth.ack_is_durable(player, version)?;
        self.counts.acks += 1;
        let c = self.clients.get_mut(player).expect("a client");
        c.waiting = None;
        if what == "join" {
            c.joined = true;
        }
        self.note(
            Some(player),
            None,
            format!("ack {player}: {what} at version {version}"),
        );
        Ok(())
    }

    fn published(
        &mut self,
        node: NodeId,
        unit: SystemId,
        from: InstanceId,
        xfer: Xfer,
        answer: Answer,
    ) {
        let answer = match answer {
            Answer::Stored(seq) => PublishAnswer::Stored(PairSeq(seq)),
            Answer::Duplicate(seq) => PublishAnswer::Duplicate(PairSeq(seq)),
            Answer::WrongLastSeq(_) => return self.publish_refused(node, unit, from, xfer),
        };
        let at = match answer {
            PublishAnswer::Stored(at) | PublishAnswer::Duplicate(at) => at,
        };
        let u = self.unit_mut(node, unit);
        let Some(done) = u.outbox.acked(from, xfer, answer) else {
            return;
        };
        let Event::DepartDone { xfer } = done else {
            unreachable!("an ack gives a depart.done")
        };
        let event = mesh::protocol::commit::done(&u.state, xfer, Seq(at.0));
        self.record(node, unit, event, After::Nothing);
    }

    /// A publish refused (10071): the writer reads its pair subject's last message (a direct
    /// get of the last message of the subject) and the core says whether it was fenced.
    fn publish_refused(&mut self, node: NodeId, unit: SystemId, from: InstanceId, xfer: Xfer) {
        let Some((jump, _)) = self.nodes[node as usize].units[&unit]
            .outbox
            .get(from, xfer)
        else {
            return;
        };
        let pair = Pair::of(jump).expect("a jump between units");
        let last = self.stream.pairs[&pair]
            .msgs
            .last()
            .expect("refused: not empty");
        let (last_seq, last_epoch) = (PairSeq(last.seq), last.epoch);
        let u = self.unit_mut(node, unit);
        let epoch = u.epoch;
        match u.outbox.refused(from, xfer, epoch, last_seq, last_epoch) {
            Refusal::Fenced => self.drop_unit(node, unit, "its publish was refused (fenced)"),
            Refusal::Resynced => {
                self.counts.publishes_resynced += 1;
                let text = format!("n{node}: publish refused, its own at {last_seq}: resynced");
                self.note(None, Some((from, xfer)), text);
            }
        }
    }

    /// A request or its answer was lost: the owner sends it again (same id).
    fn retry(&mut self, node: NodeId, unit: SystemId, what: Retry) {
        let u = self.unit_mut(node, unit);
        let epoch = u.epoch;
        match what {
            Retry::Append => {
                let batch = u.in_flight.clone().expect("a batch in flight");
                self.requests.push(Wire {
                    node,
                    epoch,
                    what: Req::Append { unit, batch },
                });
            }
            Retry::Publish(from, xfer) => u.outbox.unanswered(from, xfer),
        }
    }

    /// The consumer of `unit`'s pair subject from `origin` delivers its next message.
    fn deliver(&mut self, node: NodeId, unit: SystemId, origin: SystemId) {
        let pair = Pair {
            from: origin,
            to: unit,
        };
        let after = self.nodes[node as usize].units[&unit].consumers[&origin];
        let Some(msg) = self
            .stream
            .pairs
            .get(&pair)
            .and_then(|s| s.after(after).next())
        else {
            return;
        };
        let (seq, body) = (msg.seq, msg.body.clone());
        let slug = self.slug(unit);
        self.unit_mut(node, unit).consumers.insert(origin, seq);
        let Body::Data(jump) = body else {
            return;
        };
        let key = (jump.from, jump.xfer);
        let name = jump.player.name.clone();
        let text = xfer_text(&self.galaxy, key.0, key.1);
        let u = self.unit_mut(node, unit);
        let Some(jump) = u.inbox.delivered(&u.state, PairSeq(seq), jump) else {
            self.counts.deliveries_dropped += 1;
            let line =
                format!("{slug} reads jump {text} of {name} at {seq}: seen or landed, dropped");
            return self.note(Some(&name), Some(key), line);
        };
        let now = u.now;
        let line = format!("{slug} reads jump {text} of {name} at {seq}");
        self.note(Some(&name), Some(key), line);
        let u = self.unit_mut(node, unit);
        if let Some(jump) = u.arrivals.handed(now, jump) {
            self.land(node, unit, jump);
        }
    }

    fn land(&mut self, node: NodeId, unit: SystemId, jump: Jump) {
        let u = &self.nodes[node as usize].units[&unit];
        let key = (jump.from, jump.xfer);
        let name = jump.player.name.clone();
        let text = xfer_text(&self.galaxy, key.0, key.1);
        let Some(event) = Inbox::decide_landing(&u.state, &jump) else {
            self.counts.deliveries_dropped += 1;
            return self.note(
                Some(&name),
                Some(key),
                format!("jump {text} of {name}: landed already"),
            );
        };
        if let Event::Arrive { player, .. } = &event {
            must(inv::landing_follows_departure(&jump, player));
        }
        let t = u.now;
        if let Err(e) = u.state.clone().apply(t, &event) {
            // A landing the state refuses ("already here"): the state missed a departure that
            // another owner recorded. Only a zombie's can; the owner's is a bug.
            let owner = self.stream.lease(unit) == (node, u.epoch);
            assert!(
                !owner,
                "BUG: the owner of {} refuses a landing: {e}",
                self.slug(unit)
            );
            self.counts.zombies_stopped += 1;
            return self.drop_unit(node, unit, "its stale state refuses a landing");
        }
        self.record(node, unit, event, After::Nothing);
        let line = format!(
            "jump {text} of {name} lands at {} (n{node})",
            self.slug(unit)
        );
        self.note(Some(&name), Some(key), line);
    }

    fn tick(&mut self, node: NodeId, unit: SystemId) {
        let u = self.unit_mut(node, unit);
        u.now = u.now.next();
        let now = u.now;
        // A landing may stop a zombie (its stale state refuses it): then nothing more lands.
        while let Some(jump) = self.nodes[node as usize]
            .units
            .get_mut(&unit)
            .and_then(|u| u.arrivals.pop_due(now))
        {
            self.land(node, unit, jump);
        }
    }

    fn snapshot(&mut self, node: NodeId, unit: SystemId) {
        // Not fenced, as the object store's put is not (docs/NATS.md): a zombie's snapshot is
        // of a prefix of the log (all it applied is durable: nothing is pending), so a
        // takeover from it replays more of the log, and its positions match its state.
        if self.stream.lease(unit) != (node, self.nodes[node as usize].units[&unit].epoch) {
            self.counts.zombie_snapshots += 1;
        }
        let u = self.unit_mut(node, unit);
        let positions = u.inbox.positions(&u.state);
        let snap = Snapshot {
            log_seq: u.known_last,
            records: u.records,
            state: u.state.clone(),
            positions,
            epoch: u.epoch,
        };
        self.stream.snapshots.insert(unit, snap);
        self.counts.snapshots += 1;
        let text = format!("n{node} snapshots {}", self.slug(unit));
        self.note(None, None, text);
    }

    // ----- faults -----

    fn crash(&mut self, node: NodeId) {
        self.counts.crashes += 1;
        let units: Vec<SystemId> = self.nodes[node as usize].units.keys().copied().collect();
        for unit in &units {
            self.count_crash_stages(node, *unit);
        }
        for unit in units {
            self.drop_unit(node, unit, "crashed");
        }
        let claims = std::mem::take(&mut self.nodes[node as usize].claims);
        for unit in claims.keys() {
            if self.owner(*unit) == node {
                self.silent_since.entry(*unit).or_insert(self.step);
            }
        }
        let n = &mut self.nodes[node as usize];
        n.up = false;
        n.paused = false;
        self.note(None, None, format!("CRASH: n{node}"));
    }

    fn count_crash_stages(&mut self, node: NodeId, unit: SystemId) {
        let u = &self.nodes[node as usize].units[&unit];
        let c = &mut self.counts;
        let stages: Vec<Stage> = u.outbox.jumps().map(|(_, s)| s).collect();
        let pending = u.queue.iter().map(|(_, e, _)| e).chain(
            u.in_flight
                .iter()
                .flat_map(|b| b.records.iter().map(|(_, e)| e)),
        );
        let (mut done, mut arrive) = (false, false);
        for e in pending {
            done |= matches!(e, Event::DepartDone { .. });
            arrive |= matches!(e, Event::Arrive { .. });
        }
        c.crash_depart_not_durable +=
            u64::from(stages.iter().any(|s| matches!(s, Stage::Prepared { .. })));
        c.crash_committed_unpublished += u64::from(stages.contains(&Stage::Committed));
        c.crash_publish_unanswered += u64::from(stages.contains(&Stage::InFlight));
        c.crash_done_not_durable += u64::from(done);
        c.crash_dest_queued += u64::from(!u.arrivals.is_empty());
        c.crash_arrive_not_durable += u64::from(arrive);
        let snap_landed = self
            .stream
            .snapshots
            .get(&unit)
            .map(|s| &s.state.landed_upto);
        let landed_since = snap_landed.is_none_or(|l| *l != u.state.landed_upto)
            && !u.state.landed_upto.is_empty();
        self.counts.crash_dest_before_snapshot += u64::from(landed_since);
    }

    fn restart(&mut self, node: NodeId) {
        self.nodes[node as usize] = Node {
            up: true,
            ..Node::default()
        };
        self.note(None, None, format!("RESTART: n{node} (holds nothing)"));
    }

    fn pause(&mut self, node: NodeId) {
        self.counts.pauses += 1;
        self.nodes[node as usize].paused = true;
        let n = &self.nodes[node as usize];
        let units: Vec<SystemId> = n.units.keys().chain(n.claims.keys()).copied().collect();
        for unit in units {
            if self.owner(unit) == node {
                self.silent_since.entry(unit).or_insert(self.step);
            }
        }
        self.note(None, None, format!("PAUSE: n{node}"));
    }

    fn resume(&mut self, node: NodeId) {
        self.nodes[node as usize].paused = false;
        self.note(None, None, format!("RESUME: n{node}"));
    }

    /// A node renews its leases: a unit whose lease is another's (or another epoch) is
    /// dropped; its own units are no longer silent.
    fn renew(&mut self, node: NodeId) {
        let units: Vec<(SystemId, u64)> = self.nodes[node as usize]
            .units
            .iter()
            .map(|(&id, u)| (id, u.epoch))
            .collect();
        for (unit, epoch) in units {
            if self.stream.lease(unit) == (node, epoch) {
                self.silent_since.remove(&unit);
            } else {
                self.counts.zombies_stopped += 1;
                self.drop_unit(node, unit, "its lease is another's");
            }
        }
    }

    fn redeliver(&mut self, node: NodeId, unit: SystemId, origin: SystemId) {
        let pair = Pair {
            from: origin,
            to: unit,
        };
        let Some(subject) = self.stream.pairs.get(&pair) else {
            return;
        };
        let at = self.nodes[node as usize].units[&unit].consumers[&origin];
        let read = subject.msgs.partition_point(|m| m.seq <= at);
        if read == 0 {
            return;
        }
        let back = subject.msgs[self.rng.below(read as u64) as usize].seq - 1;
        self.unit_mut(node, unit).consumers.insert(origin, back);
        self.counts.redeliveries += 1;
        let text = format!(
            "{} redelivers from {back} of {}",
            self.slug(unit),
            self.slug(origin)
        );
        self.note(None, None, text);
    }

    fn forget_id(&mut self) {
        let ids: Vec<String> = self.stream.jump_ids().cloned().collect();
        if ids.is_empty() {
            return;
        }
        let id = ids[self.rng.below(ids.len() as u64) as usize].clone();
        self.stream.forget_id(&id);
        self.counts.ids_forgotten += 1;
        self.note(None, None, format!("the duplicate window passes for {id}"));
    }
}

/// What a lost request's retry sends again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    Append,
    Publish(InstanceId, Xfer),
}

/// One step of the world.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Request(usize),
    SendBatch(NodeId, SystemId),
    SendPublishes(NodeId, SystemId),
    Store(usize),
    Answer(usize),
    Retry(NodeId, SystemId, Retry),
    Deliver(NodeId, SystemId, SystemId),
    Tick(NodeId, SystemId),
    Snapshot(NodeId, SystemId),
    Renew(NodeId),
    Claim(NodeId, SystemId),
    Fence(NodeId, SystemId),
    // Faults.
    Crash(NodeId),
    Restart(NodeId),
    Pause(NodeId),
    Resume(NodeId),
    Lapse(NodeId, SystemId),
    LoseAnswer(usize),
    AnswerTwice(usize),
    Redeliver(NodeId, SystemId, SystemId),
    ForgetId,
}

/// The actions possible now, with their weights.
pub fn enabled(w: &XWorld) -> Vec<(u64, Action)> {
    let mut all = Vec::new();
    let quiet = w.quiet;
    if !quiet {
        for (i, (name, c)) in w.clients.iter().enumerate() {
            if c.waiting.is_some() {
                continue;
            }
            let can = match c.joined {
                false => (0..w.nodes.len() as NodeId).any(|n| {
                    w.running(n) && w.nodes[n as usize].units.contains_key(&w.galaxy.home())
                }),
                true => !w.holders(name).is_empty(),
            };
            if can {
                all.push((300, Action::Request(i)));
            }
        }
    }
    for i in 0..w.requests.len() {
        all.push((150, Action::Store(i)));
    }
    for (i, a) in w.answers.iter().enumerate() {
        // A paused node's answers wait for it.
        if w.nodes[a.node as usize].paused {
            continue;
        }
        all.push((150, Action::Answer(i)));
        if !quiet {
            all.push((6, Action::LoseAnswer(i)));
            all.push((6, Action::AnswerTwice(i)));
        }
    }
    for (n, node) in w.nodes.iter().enumerate() {
        let n = n as NodeId;
        if !node.up {
            all.push((if quiet { 500 } else { 10 }, Action::Restart(n)));
            continue;
        }
        if node.paused {
            all.push((if quiet { 500 } else { 15 }, Action::Resume(n)));
            continue;
        }
        all.push((if quiet { 50 } else { 20 }, Action::Renew(n)));
        if !quiet {
            all.push((4, Action::Crash(n)));
            all.push((3, Action::Pause(n)));
        }
        for &id in node.claims.keys() {
            all.push((60, Action::Fence(n, id)));
        }
        for (&id, u) in &node.units {
            if !u.queue.is_empty() && u.in_flight.is_none() {
                all.push((200, Action::SendBatch(n, id)));
            }
            if u.outbox.jumps().any(|(_, s)| s != Stage::InFlight) {
                all.push((100, Action::SendPublishes(n, id)));
            }
            if let Some(b) = &u.in_flight {
                if !w.in_network_append(n, id, &b.id) {
                    all.push((25, Action::Retry(n, id, Retry::Append)));
                }
            }
            for (j, s) in u.outbox.jumps() {
                if s == Stage::InFlight && !w.in_network_publish(n, id, j.from, j.xfer) {
                    all.push((25, Action::Retry(n, id, Retry::Publish(j.from, j.xfer))));
                }
            }
            for (&origin, &at) in &u.consumers {
                let pair = Pair {
                    from: origin,
                    to: id,
                };
                let behind = w.stream.pairs.get(&pair).is_some_and(|s| s.last_seq() > at);
                if behind {
                    all.push((100, Action::Deliver(n, id, origin)));
                }
                if !quiet && at > 0 {
                    all.push((1, Action::Redeliver(n, id, origin)));
                }
            }
            all.push((
                if u.arrivals.is_empty() { 10 } else { 75 },
                Action::Tick(n, id),
            ));
            if u.queue.is_empty() && u.in_flight.is_none() {
                all.push((10, Action::Snapshot(n, id)));
            }
            if !quiet && w.owner(id) == n {
                all.push((1, Action::Lapse(n, id)));
            }
        }
    }
    // Takeovers of silent units, by any running node that does not hold them.
    for unit in w.galaxy.ids() {
        let silent = w
            .silent_since
            .get(&unit)
            .is_some_and(|&s| quiet || w.step >= s + LEASE_STEPS);
        if !silent {
            continue;
        }
        for (n, node) in w.nodes.iter().enumerate() {
            let free = !node.units.contains_key(&unit) && !node.claims.contains_key(&unit);
            if w.running(n as NodeId) && free {
                all.push((100, Action::Claim(n as NodeId, unit)));
            }
        }
    }
    if !quiet && !w.stream.pairs.is_empty() {
        all.push((3, Action::ForgetId));
    }
    all
}

impl XWorld {
    fn in_network_append(&self, node: NodeId, unit: SystemId, id: &str) -> bool {
        let req = self.requests.iter().any(|r| {
            r.node == node
                && matches!(&r.what, Req::Append { unit: u, batch } if *u == unit && batch.id == id)
        });
        let ans = self.answers.iter().any(|a| {
            a.node == node
                && matches!(&a.what, Reply::Append { unit: u, id: i, .. } if *u == unit && i == id)
        });
        req || ans
    }

    fn in_network_publish(
        &self,
        node: NodeId,
        unit: SystemId,
        from: InstanceId,
        xfer: Xfer,
    ) -> bool {
        let req = self.requests.iter().any(|r| {
            r.node == node
                && matches!(&r.what, Req::Publish { unit: u, publish, .. }
                    if *u == unit && publish.jump.from == from && publish.jump.xfer == xfer)
        });
        let ans = self.answers.iter().any(|a| {
            a.node == node
                && matches!(&a.what, Reply::Publish { unit: u, from: f, xfer: x, .. }
                    if *u == unit && *f == from && *x == xfer)
        });
        req || ans
    }

    /// Picks an action by weight (None: nothing can happen).
    fn pick(&mut self) -> Option<Action> {
        let all = enabled(self);
        let total: u64 = all.iter().map(|(weight, _)| weight).sum();
        if total == 0 {
            return None;
        }
        let mut r = self.rng.below(total);
        for (weight, a) in all {
            if r < weight {
                return Some(a);
            }
            r -= weight;
        }
        unreachable!("a pick below the total weight")
    }

    fn run(&mut self, action: Action) -> Result<(), Violation> {
        match action {
            Action::Request(i) => {
                let name = self.clients.keys().nth(i).expect("a client").clone();
                self.request(&name);
            }
            Action::SendBatch(n, u) => self.send_batch(n, u),
            Action::SendPublishes(n, u) => self.send_publishes(n, u),
            Action::Store(i) => self.store(i)?,
            Action::Answer(i) => self.answer(i)?,
            Action::Retry(n, u, what) => self.retry(n, u, what),
            Action::Deliver(n, u, o) => self.deliver(n, u, o),
            Action::Tick(n, u) => self.tick(n, u),
            Action::Snapshot(n, u) => self.snapshot(n, u),
            Action::Renew(n) => self.renew(n),
            Action::Claim(n, u) => self.claim(n, u),
            Action::Fence(n, u) => self.fence(n, u)?,
            Action::Crash(n) => self.crash(n),
            Action::Restart(n) => self.restart(n),
            Action::Pause(n) => self.pause(n),
            Action::Resume(n) => self.resume(n),
            Action::Lapse(n, u) => {
                // The lease lapses under a running owner: it does not know (a zombie) until a
                // renewal or a refused write tells it.
                self.counts.lapses += 1;
                self.silent_since
                    .insert(u, self.step.saturating_sub(LEASE_STEPS));
                let text = format!("LAPSE: n{n}'s lease of {} lapses", self.slug(u));
                self.note(None, None, text);
            }
            Action::LoseAnswer(i) => {
                self.answers.remove(i);
                self.counts.answers_lost += 1;
            }
            Action::AnswerTwice(i) => {
                let copy = self.answers[i].clone();
                self.answers.push(copy);
                self.counts.answers_twice += 1;
            }
            Action::Redeliver(n, u, o) => self.redeliver(n, u, o),
            Action::ForgetId => self.forget_id(),
        }
        Ok(())
    }

    fn check_step(&self) -> Result<(), Violation> {
        self.truth.one_place(&self.galaxy)?;
        self.truth.conservation()
    }

    /// Whether nothing moves any more: no jump in flight, nothing queued or sent.
    fn settled(&self) -> bool {
        let nodes_quiet = self.nodes.iter().all(|n| {
            n.up && !n.paused
                && n.units.values().all(|u| {
                    u.queue.is_empty()
                        && u.in_flight.is_none()
                        && u.outbox.is_empty()
                        && u.arrivals.is_empty()
                })
        });
        let all_owned = self.galaxy.ids().all(|id| {
            let (owner, epoch) = self.stream.lease(id);
            self.nodes
                .get(owner as usize)
                .and_then(|n| n.units.get(&id))
                .is_some_and(|u| u.epoch == epoch)
        });
        nodes_quiet && all_owned && self.truth.flying().next().is_none() && self.requests.is_empty()
    }
}

/// The steps of a seed, then its quiet end and the final checks.
fn drive(w: &mut XWorld, opts: Options) -> Result<(), Violation> {
    while w.step < opts.steps {
        w.step += 1;
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
        w.counts.quiet_steps += 1;
        if let Some(action) = w.pick() {
            w.run(action)?;
        }
        w.check_step()?;
    }
    w.truth.acked_jumps_land(&w.galaxy)
}

/// Runs seed `seed` in the cross-node world.
pub fn run_seed(seed: u64, opts: Options) -> SeedRun {
    let mut w = XWorld::new(seed, opts.keep_trace);
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
