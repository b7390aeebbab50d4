//! What can happen next in the cross-node world, by weight, and carrying it out; the per-step
//! checks and whether the quiet end is over.
//!
//! Never does a step itself: it calls the world's (`owner.rs`, `takeover.rs`, `faults.rs`).

use super::*;

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
    // The regions world's ([`super::regions`]).
    Partition,
    Heal,
    Copy(Region),
    KillRegion(Region),
    RegionBack(Region),
    Promote(Region),
    FencePair(NodeId, SystemId, Pair),
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
    for (i, r) in w.requests.iter().enumerate() {
        // A request across the link between regions arrives after its delay.
        if r.ready_at <= w.step {
            all.push((150, Action::Store(i)));
        }
    }
    for (i, a) in w.answers.iter().enumerate() {
        // A paused node's answers wait for it.
        if w.nodes[a.node as usize].paused || a.ready_at > w.step {
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
            if w.may_restart(n) {
                all.push((if quiet { 500 } else { 10 }, Action::Restart(n)));
            }
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
            if w.running(n as NodeId) && free && w.may_claim(n as NodeId, unit) {
                all.push((100, Action::Claim(n as NodeId, unit)));
            }
        }
    }
    if !quiet && !w.stream.pairs.is_empty() {
        all.push((3, Action::ForgetId));
    }
    regions::enabled(w, &mut all);
    all
}

impl XWorld {
    pub(super) fn in_network_append(&self, node: NodeId, unit: SystemId, id: &str) -> bool {
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

    pub(super) fn in_network_publish(
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
    pub(super) fn pick(&mut self) -> Option<Action> {
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

    pub(super) fn run(&mut self, action: Action) -> Result<(), Violation> {
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
            Action::Partition => self.partition(),
            Action::Heal => self.heal(),
            Action::Copy(r) => self.copy(r),
            Action::KillRegion(r) => self.kill_region(r),
            Action::RegionBack(r) => self.region_back(r)?,
            Action::Promote(r) => self.promote(r)?,
            Action::FencePair(n, u, p) => {
                self.fence_pair_later(n, u, p)?;
                self.counts.regions.pair_fences_written_later += 1;
            }
        }
        Ok(())
    }

    pub(super) fn check_step(&self) -> Result<(), Violation> {
        self.truth.one_place(&self.galaxy)?;
        self.truth.conservation()
    }

    /// Whether nothing moves any more: no jump in flight, nothing queued or sent.
    pub(super) fn settled(&self) -> bool {
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
