//! The cross-node world's faults: a node crash (counted by the step its jumps were at), a
//! restart, a pause and its end, a renewal that stops a zombie, a consumer redelivering, the
//! duplicate window passing for a jump's id.
//!
//! Never repairs anything: recovery is a takeover (`takeover.rs`).

use super::*;

impl XWorld {
    pub(super) fn crash(&mut self, node: NodeId) {
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

    pub(super) fn count_crash_stages(&mut self, node: NodeId, unit: SystemId) {
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
        // The same steps as the stream saw them: stored, and its writer not yet told.
        let truth = &self.truth;
        let told_late = |stage: fn(&Stage) -> bool,
                         stored: &dyn Fn(&(InstanceId, Xfer)) -> bool| {
            u.outbox
                .jumps()
                .any(|(j, s)| stage(&s) && stored(&(j.from, j.xfer)))
        };
        let prepared = |s: &Stage| matches!(s, Stage::Prepared { .. });
        let in_flight = |s: &Stage| *s == Stage::InFlight;
        c.crash_depart_stored_untold +=
            u64::from(told_late(prepared, &|k| truth.departs.contains_key(k)));
        c.crash_publish_stored_unacked +=
            u64::from(told_late(in_flight, &|k| truth.on_pair.contains_key(k)));
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

    pub(super) fn restart(&mut self, node: NodeId) {
        self.nodes[node as usize] = Node {
            up: true,
            ..Node::default()
        };
        self.note(None, None, format!("RESTART: n{node} (holds nothing)"));
    }

    pub(super) fn pause(&mut self, node: NodeId) {
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

    pub(super) fn resume(&mut self, node: NodeId) {
        self.nodes[node as usize].paused = false;
        self.note(None, None, format!("RESUME: n{node}"));
    }

    /// A node renews its leases: a unit whose lease is another's (or another epoch) is
    /// dropped; its own units are no longer silent.
    pub(super) fn renew(&mut self, node: NodeId) {
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

    pub(super) fn redeliver(&mut self, node: NodeId, unit: SystemId, origin: SystemId) {
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

    pub(super) fn forget_id(&mut self) {
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
