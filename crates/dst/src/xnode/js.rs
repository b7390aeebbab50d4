//! The cross-node world's JetStream: each unit's log (`sys.<slug>`, one message per group
//! commit) and the pair subjects (`mlt.jump.<from>.<to>`, one jump per message) as subjects of
//! one stream, the KV key of each unit's lease (owner and epoch), and the snapshots.
//!
//! The engine's rules, as checked on nats-server 2.15.1 (docs/NATS.md, DISTRIBUTED.md): a
//! publish's message id is checked first (a repeat of a stored id is answered `duplicate` with
//! its original sequence, nothing stored), then its expected last subject sequence (a stale one
//! is refused, error 10071). The duplicate window is the whole seed unless a fault forgets an
//! id ([`Stream::forget_id`]): a republish is then stored a second time. Every message carries
//! its writer's node and epoch (the `Mlt-Node`, `Mlt-Epoch` headers).
//!
//! Never decides anything of the protocol: it stores, refuses and answers.

use std::collections::BTreeMap;

use mesh::codec::Jump;
use mesh::protocol::handover::{Pair, PairSeq};
use sim::galaxy::SystemId;
use sim::ids::Tick;
use sim::system::{Event, SystemState};

/// A group commit of a unit's log: its events, each with the tick it was applied at.
pub type Records = Vec<(Tick, Event)>;

/// A node of the world (n0, n1, n2).
pub type NodeId = u8;

/// A region (the regions world: 0 and 1; the cross-node world has region 0 only). Each has
/// its own stream (sequences, duplicate window) and KV (lease revisions).
pub type Region = u8;

/// Regions in the regions world.
pub const REGIONS: usize = 2;

/// What a message holds.
#[derive(Clone, Debug)]
pub enum Body<T> {
    /// A new owner's `lease` record (its epoch is the message's).
    Lease,
    Data(T),
}

/// One stored message.
#[derive(Clone, Debug)]
pub struct Msg<T> {
    /// Its stream sequence (one counter for the whole stream).
    pub seq: u64,
    pub node: NodeId,
    pub epoch: u64,
    pub body: Body<T>,
    /// The world's step it was stored at (the copy of its region lags behind it).
    pub at_step: u64,
}

/// One subject's messages, in order.
#[derive(Clone, Debug)]
pub struct Subject<T> {
    pub msgs: Vec<Msg<T>>,
}

impl<T> Default for Subject<T> {
    fn default() -> Subject<T> {
        Subject { msgs: Vec::new() }
    }
}

impl<T> Subject<T> {
    pub fn last_seq(&self) -> u64 {
        self.msgs.last().map_or(0, |m| m.seq)
    }

    /// The epoch of the last `lease` record, if any.
    pub fn fenced_at(&self) -> Option<u64> {
        self.msgs
            .iter()
            .rev()
            .find(|m| matches!(m.body, Body::Lease))
            .map(|m| m.epoch)
    }

    /// The messages after stream sequence `after`.
    pub fn after(&self, after: u64) -> impl Iterator<Item = &Msg<T>> + '_ {
        let start = self.msgs.partition_point(|m| m.seq <= after);
        self.msgs[start..].iter()
    }
}

/// The stream's answer to a publish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    Stored(u64),
    /// The id was stored already, at this sequence.
    Duplicate(u64),
    /// 10071: the expected last subject sequence was stale (the subject's last is this).
    WrongLastSeq(u64),
}

/// A unit's snapshot (in the object store): its state at a log position, and what its
/// destination side had consumed of each pair subject (`handover::Inbox::positions`).
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// The last log message the state covers.
    pub log_seq: u64,
    /// Events the log held up to there (the record number of the next is one more).
    pub records: u64,
    pub state: SystemState,
    pub positions: BTreeMap<SystemId, PairSeq>,
    pub epoch: u64,
}

/// The galaxy's streams and KVs, as the cross-node world sees them: one region's (the
/// cross-node world) or two (the regions world: a unit's log and lease live in its home
/// region's, a pair subject in its destination's home region's; each region numbers its own
/// messages and lease revisions and has its own duplicate window).
#[derive(Clone, Debug, Default)]
pub struct Stream {
    /// Per region: its stream's last sequence.
    pub next_seq: [u64; REGIONS],
    pub units: BTreeMap<SystemId, Subject<Records>>,
    pub pairs: BTreeMap<Pair, Subject<Jump>>,
    /// Per region, the duplicate window: message id -> sequence stored.
    pub ids: [BTreeMap<String, u64>; REGIONS],
    /// Each unit's lease: its owner and epoch (the KV key's revision).
    pub leases: BTreeMap<SystemId, (NodeId, u64)>,
    /// Per region: the KV's last revision (the epochs it gives).
    pub next_epoch: [u64; REGIONS],
    pub snapshots: BTreeMap<SystemId, Snapshot>,
    /// Each unit's home region (empty: every unit in region 0).
    pub home: BTreeMap<SystemId, Region>,
    /// The world's step now (stamped on each message stored).
    pub now: u64,
}

impl Stream {
    /// The home region of `unit`.
    pub fn region_of(&self, unit: SystemId) -> Region {
        self.home.get(&unit).copied().unwrap_or(0)
    }

    /// The region whose stream holds `pair`'s subject: its destination's home.
    pub fn region_of_pair(&self, pair: Pair) -> Region {
        self.region_of(pair.to)
    }

    fn publish<T>(
        next_seq: &mut u64,
        ids: &mut BTreeMap<String, u64>,
        subject: &mut Subject<T>,
        id: Option<&str>,
        expected: Option<u64>,
        msg: (NodeId, u64, Body<T>),
        at_step: u64,
    ) -> Answer {
        if let Some(&seq) = id.and_then(|id| ids.get(id)) {
            return Answer::Duplicate(seq);
        }
        let last = subject.last_seq();
        if expected.is_some_and(|e| e != last) {
            return Answer::WrongLastSeq(last);
        }
        *next_seq += 1;
        let seq = *next_seq;
        if let Some(id) = id {
            ids.insert(id.to_string(), seq);
        }
        let (node, epoch, body) = msg;
        subject.msgs.push(Msg {
            seq,
            node,
            epoch,
            body,
            at_step,
        });
        Answer::Stored(seq)
    }

    /// Appends a group commit of unit `unit`'s log.
    pub fn append_unit(
        &mut self,
        unit: SystemId,
        id: &str,
        expected: Option<u64>,
        msg: (NodeId, u64, Body<Records>),
    ) -> Answer {
        let r = self.region_of(unit) as usize;
        let subject = self.units.entry(unit).or_default();
        Stream::publish(
            &mut self.next_seq[r],
            &mut self.ids[r],
            subject,
            Some(id),
            expected,
            msg,
            self.now,
        )
    }

    /// Publishes to a pair subject (a jump, with its transfer id; or a `lease` record).
    pub fn publish_pair(
        &mut self,
        pair: Pair,
        id: Option<&str>,
        expected: Option<u64>,
        msg: (NodeId, u64, Body<Jump>),
    ) -> Answer {
        let r = self.region_of_pair(pair) as usize;
        let subject = self.pairs.entry(pair).or_default();
        Stream::publish(
            &mut self.next_seq[r],
            &mut self.ids[r],
            subject,
            id,
            expected,
            msg,
            self.now,
        )
    }

    /// The duplicate window passed for `id`: a publish of it is stored again.
    pub fn forget_id(&mut self, id: &str) -> bool {
        let mut any = false;
        for ids in &mut self.ids {
            any |= ids.remove(id).is_some();
        }
        any
    }

    /// The ids of the pair subjects' jumps still in a window.
    pub fn jump_ids(&self) -> impl Iterator<Item = &String> + '_ {
        self.ids
            .iter()
            .flat_map(|ids| ids.keys())
            .filter(|id| id.starts_with("jump "))
    }

    /// Compare-and-set of unit `unit`'s lease at `epoch` (0: absent): the new epoch.
    pub fn claim(&mut self, unit: SystemId, node: NodeId, epoch: u64) -> Option<u64> {
        let now = self.leases.get(&unit).map_or(0, |&(_, e)| e);
        if now != epoch {
            return None;
        }
        let r = self.region_of(unit) as usize;
        self.next_epoch[r] += 1;
        self.leases.insert(unit, (node, self.next_epoch[r]));
        Some(self.next_epoch[r])
    }

    /// The lease of `unit`: owner and epoch.
    pub fn lease(&self, unit: SystemId) -> (NodeId, u64) {
        self.leases.get(&unit).copied().unwrap_or((NodeId::MAX, 0))
    }
}
