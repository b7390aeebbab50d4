//! A node taking a unit over: the claim (compare-and-set), the read (snapshot, then the log
//! after it), and later the fence (`lease` records on the unit's log and its pair subjects,
//! refused if a zombie wrote since the read), the republish of every committed jump
//! (`handover::at_takeover`) and the consumers from the snapshot's positions; and a node
//! dropping a unit.
//!
//! Never decides what the protocol decides: the core says what to republish.

use super::*;

impl XWorld {
    /// Node `node` claims `unit` and takes it over at once (the start of a seed).
    pub fn takeover(&mut self, node: NodeId, unit: SystemId) -> Result<(), Violation> {
        self.claim(node, unit);
        self.fence(node, unit)
    }

    /// Node `node` claims `unit` (compare-and-set at the epoch it read) and reads it: its
    /// snapshot, then its log after it. Its `lease` records come in a later step ([`Self::fence`]):
    /// a zombie may write in between, and then the fence is refused and the node reads again.
    pub(super) fn claim(&mut self, node: NodeId, unit: SystemId) {
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
    pub(super) fn read_unit(&mut self, unit: SystemId, epoch: u64) -> Claimed {
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
    pub(super) fn fence(&mut self, node: NodeId, unit: SystemId) -> Result<(), Violation> {
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
        self.stored_unit(unit, fenced_at, &msg)?;
        let others: Vec<SystemId> = self.galaxy.ids().filter(|&o| o != unit).collect();
        let mut outbox = self.fence_pairs(node, unit, epoch, &others)?;
        let queue = self.republish(&mut outbox, &mut state, &mut records);
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

    /// The `lease` records of a new owner (epoch `epoch`) on `unit`'s pair subjects towards
    /// `others`: its outbox, knowing each subject's last sequence.
    fn fence_pairs(
        &mut self,
        node: NodeId,
        unit: SystemId,
        epoch: u64,
        others: &[SystemId],
    ) -> Result<Outbox, Violation> {
        let mut outbox = Outbox::new();
        for &to in others {
            let pair = Pair { from: unit, to };
            // A pair subject across a cut link waits: the unit serves meanwhile.
            if !self.reaches(node, pair) {
                outbox.fence_later(pair);
                self.counts.regions.pair_fences_deferred += 1;
                continue;
            }
            let seq = self.fence_pair(node, epoch, pair)?;
            outbox.learn_last(pair, seq);
        }
        Ok(outbox)
    }

    /// The `lease` record of node `node`'s epoch `epoch` on `pair`'s subject: where stored.
    pub(super) fn fence_pair(
        &mut self,
        node: NodeId,
        epoch: u64,
        pair: Pair,
    ) -> Result<PairSeq, Violation> {
        let subject = self.stream.pairs.entry(pair).or_default();
        let (last, fenced_at) = (subject.last_seq(), subject.fenced_at());
        let lease = (node, epoch, Body::Lease);
        let answer = self.stream.publish_pair(pair, None, Some(last), lease);
        let Answer::Stored(seq) = answer else {
            panic!("BUG: a pair's lease record refused in the step of its read: {answer:?}")
        };
        let msg = self.stream.pairs[&pair].msgs.last().cloned();
        let msg = msg.expect("stored");
        self.stored_pair(pair, fenced_at, &msg)?;
        Ok(PairSeq(seq))
    }

    /// What the core says of each jump the replayed `state` holds as departing: republished
    /// (into `outbox`), or, only with a bug switch, aborted (applied, and returned to append).
    fn republish(
        &mut self,
        outbox: &mut Outbox,
        state: &mut SystemState,
        records: &mut u64,
    ) -> Vec<(Tick, Event, After)> {
        let mut queue = Vec::new();
        for step in handover::at_takeover(&self.galaxy, &self.rules, state) {
            match step {
                AtTakeover::Republish(jump) => {
                    self.counts.republished += 1;
                    outbox.recovered(jump);
                }
                AtTakeover::Abort(event) => {
                    let t = state.tick;
                    state.apply(t, &event).expect("an abort applies");
                    *records += 1;
                    queue.push((t, event, After::Nothing));
                }
            }
        }
        queue
    }

    /// Node `node` forgets `unit` (fenced, its lease lost, or crashed): its waiting clients
    /// get no answer.
    pub(super) fn drop_unit(&mut self, node: NodeId, unit: SystemId, why: &str) {
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
}
