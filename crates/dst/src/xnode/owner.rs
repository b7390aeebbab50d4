//! An owner's steps on a unit it holds: a player's request (decided and applied by `sim`),
//! a group commit sent and answered, the outbox's publishes sent and answered, the stream
//! taking a request, a consumer's delivery, a tick, a landing, a snapshot.
//!
//! Each step does what the real driver would, in its order, through the protocol core
//! (`mesh::protocol::handover`, `arrivals`, `commit::done`). Never picks what happens next.

use super::*;

impl XWorld {
    /// Applies `event` at unit `unit` of `node` and queues it for the log.
    pub(super) fn record(
        &mut self,
        node: NodeId,
        unit: SystemId,
        event: Event,
        after: After,
    ) -> Seq {
        let u = self.unit_mut(node, unit);
        let t = u.now;
        u.state
            .apply(t, &event)
            .unwrap_or_else(|e| panic!("BUG: a decided event does not apply: {event:?}: {e}"));
        u.records += 1;
        u.queue.push((t, event, after));
        Seq(u.records)
    }

    pub(super) fn request(&mut self, player: &str) {
        self.counts.requests += 1;
        if !self.clients[player].joined {
            return self.join(player);
        }
        let holders: Vec<(NodeId, SystemId)> = self.holders(player);
        let (node, unit) = holders[self.rng.below(holders.len() as u64) as usize];
        let neighbours = self.galaxy.neighbours(unit).to_vec();
        if neighbours.is_empty() {
            return;
        }
        let to = neighbours[self.rng.below(neighbours.len() as u64) as usize];
        let fuel = self.nodes[node as usize].units[&unit].state.players[player].fuel;
        if fuel < self.galaxy.fuel_cost(unit, to) || self.rng.chance_percent(10) {
            return self.refuel(node, unit, player);
        }
        self.depart(node, unit, player, to);
    }

    /// A join at home, at any running node that holds home (a zombie's is refused later).
    fn join(&mut self, player: &str) {
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
                let after = After::Reply {
                    player: player.to_string(),
                    version: Version(1),
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
    }

    fn refuel(&mut self, node: NodeId, unit: SystemId, player: &str) {
        let state = &self.nodes[node as usize].units[&unit].state;
        let version = state.players[player].version.next();
        match state.decide_refuel(&self.galaxy, &self.rules, player, None) {
            Ok(event) => {
                let after = After::Reply {
                    player: player.to_string(),
                    version,
                    what: "refuel",
                };
                self.record(node, unit, event, after);
                self.clients.get_mut(player).expect("a client").waiting = Some((node, unit));
                let text = format!("{player} refuels at {} (n{node})", self.slug(unit));
                self.note(Some(player), None, text);
            }
            Err(e) => self.note(Some(player), None, format!("{player}: refuel refused: {e}")),
        }
    }

    /// A jump to `to`: the `depart` decided, applied and queued; the jump into the outbox,
    /// prepared (published only once the `depart` is durable).
    fn depart(&mut self, node: NodeId, unit: SystemId, player: &str, to: SystemId) {
        let u = &self.nodes[node as usize].units[&unit];
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
        let travel_ticks = self.galaxy.travel_ticks(unit, to, self.rules.ticks_per_ly);
        let from = InstanceId::primary(unit);
        let u = self.unit_mut(node, unit);
        let d = &u.state.departing[&xfer];
        let jump = Jump {
            from,
            xfer,
            to: d.to,
            t: u.now,
            travel_ticks,
            player: d.player.clone(),
            tseq: Seq(0),
        };
        must(inv::prepared_by_origin(&u.state, &jump));
        u.outbox.prepared(prepare_seq, jump);
        self.clients.get_mut(player).expect("a client").waiting = Some((node, unit));
        let text = format!(
            "{player} prepares jump {} to {} at n{node} (travel {travel_ticks})",
            xfer_text(&self.galaxy, from, xfer),
            self.slug(to)
        );
        self.note(Some(player), Some((from, xfer)), text);
    }

    /// The running nodes holding `player` in a unit's state.
    pub(super) fn holders(&self, player: &str) -> Vec<(NodeId, SystemId)> {
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
    pub(super) fn send_batch(&mut self, node: NodeId, unit: SystemId) {
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
        let wire = self.wire(
            node,
            epoch,
            self.stream.region_of(unit),
            Req::Append { unit, batch },
        );
        self.requests.push(wire);
    }

    /// Sends the outbox's publishes.
    pub(super) fn send_publishes(&mut self, node: NodeId, unit: SystemId) {
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
            let target = self.stream.region_of_pair(publish.pair);
            let wire = self.wire(node, epoch, target, Req::Publish { unit, id, publish });
            self.requests.push(wire);
        }
    }

    /// The stream takes request `i`.
    pub(super) fn store(&mut self, i: usize) -> Result<(), Violation> {
        let wire = self.requests.remove(i);
        let now = match &wire.what {
            Req::Append { unit, .. } => self.stream.region_of(*unit),
            Req::Publish { publish, .. } => self.stream.region_of_pair(publish.pair),
        };
        if self.lost_on_the_way(&wire) || self.moved_since(wire.target, now) {
            if let Req::Publish { publish, .. } = &wire.what {
                self.dropped_on_link(publish.jump.from, publish.jump.xfer);
            }
            return Ok(());
        }
        let (node, epoch, target) = (wire.node, wire.epoch, wire.target);
        let reply = match wire.what {
            Req::Append { unit, batch } => {
                let fenced_at = self.stream.units.entry(unit).or_default().fenced_at();
                let body = Body::Data(batch.records.clone());
                let answer =
                    self.stream
                        .append_unit(unit, &batch.id, batch.expected, (node, epoch, body));
                if let Answer::Stored(_) = answer {
                    self.old_owner_fenced(node, epoch, &batch.id)?;
                    let msg = self.stream.units[&unit]
                        .msgs
                        .last()
                        .cloned()
                        .expect("stored");
                    self.stored_unit(unit, fenced_at, &msg)?;
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
                        self.old_owner_fenced(node, epoch, &id)?;
                        self.counts.jumps_published += 1;
                        self.count_across(node, target, (jump.from, jump.xfer));
                        let msg = self.stream.pairs[&pair]
                            .msgs
                            .last()
                            .cloned()
                            .expect("stored");
                        let before = self.truth.duplicates_stored;
                        self.stored_pair(pair, fenced_at, &msg)?;
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
        let wire = self.wire(node, epoch, target, reply);
        self.answers.push(wire);
        Ok(())
    }

    pub(super) fn count_landings(&mut self, records: &Records) {
        let landed = records
            .iter()
            .filter(|(_, e)| matches!(e, Event::Arrive { .. }))
            .count();
        self.counts.jumps_landed += landed as u64;
    }

    /// Answer `i` reaches its node.
    pub(super) fn answer(&mut self, i: usize) -> Result<(), Violation> {
        let wire = self.answers.remove(i);
        if self.lost_on_the_way(&wire) {
            return Ok(());
        }
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

    pub(super) fn appended(
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

    pub(super) fn reply(
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

    pub(super) fn published(
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
    pub(super) fn publish_refused(
        &mut self,
        node: NodeId,
        unit: SystemId,
        from: InstanceId,
        xfer: Xfer,
    ) {
        let Some((jump, _)) = self.nodes[node as usize].units[&unit]
            .outbox
            .get(from, xfer)
        else {
            return;
        };
        let pair = Pair::of(jump).expect("a jump between units");
        // Empty only when a promotion moved the subject to another region and its copy held
        // nothing of it.
        let last = self.stream.pairs.get(&pair).and_then(|s| s.msgs.last());
        let (last_seq, last_epoch) = last.map_or((PairSeq(0), 0), |m| (PairSeq(m.seq), m.epoch));
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
    pub(super) fn retry(&mut self, node: NodeId, unit: SystemId, what: Retry) {
        let u = self.unit_mut(node, unit);
        let epoch = u.epoch;
        match what {
            Retry::Append => {
                let batch = u.in_flight.clone().expect("a batch in flight");
                let target = self.stream.region_of(unit);
                let wire = self.wire(node, epoch, target, Req::Append { unit, batch });
                self.requests.push(wire);
            }
            Retry::Publish(from, xfer) => u.outbox.unanswered(from, xfer),
        }
    }

    /// The consumer of `unit`'s pair subject from `origin` delivers its next message.
    pub(super) fn deliver(&mut self, node: NodeId, unit: SystemId, origin: SystemId) {
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

    pub(super) fn land(&mut self, node: NodeId, unit: SystemId, jump: Jump) {
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

    pub(super) fn tick(&mut self, node: NodeId, unit: SystemId) {
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

    pub(super) fn snapshot(&mut self, node: NodeId, unit: SystemId) {
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
}
