//! Instances on a shard: a primary carries out the instance policy ([`crate::instances`])
//! at each tick (open an instance, move players there, tell an emptied one to merge back,
//! retire it), and an instance reports its load to its primary and, when told to merge, moves
//! everyone back.
//!
//! Every change goes through the log and the jump protocol, like anything else a shard does:
//! `split` is recorded (durable) before the instance's shard starts and before any player is
//! moved there; a move is a jump (prepare here, commit in the transition log, land there) with
//! no fuel and no travel time; `retire` is recorded only after the instance has answered that
//! it is empty and has stopped, its log flushed and snapshotted. A crash at any moment leaves
//! what recovery settles like any jump. Never blocks the loop: starting and stopping an
//! instance's shard happen in tasks that report back through the queue.

use super::{Shard, ShardMessage};
use crate::instances::{pick_movers, plan, InstanceLoad, PrimaryView, Step, RETIRE_RETRY_MS};
use sim::ids::Xfer;
use sim::instance::{InstanceId, PRIMARY_INSTANCE};

impl Shard {
    /// The instance policy's clock: milliseconds since this shard started.
    fn clock_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Primary, every tick: plan and take the policy's steps.
    pub(super) fn steer_instances(&mut self) {
        if self.failed.is_some() || self.ctx.is_stopping() {
            return;
        }
        let policy = self.ctx.config.instances.clone();
        let now_ms = self.clock_ms();
        let Some(table) = self.instances.as_mut() else {
            return;
        };
        table.watch_low(&policy, now_ms);
        let views = table.views();
        let view = PrimaryView {
            now_ms,
            players: self.state.players.len(),
            dilation: self.dilation.factor(),
            last_change_ms: table.last_change_ms,
            instances: &views,
        };
        for step in plan(&policy, &view) {
            match step {
                Step::Split(n) => self.split(n, now_ms),
                Step::Fill { n, players } => self.fill(n, players),
                Step::Merge(n) => self.merge(n, now_ms),
                Step::Retire(n) => self.retire(n, now_ms),
            }
        }
    }

    /// Records that instance `n` opens; once that is durable, starts its shard.
    fn split(&mut self, n: u16, now_ms: u64) {
        let Ok(event) = self.state.decide_split(&self.ctx.galaxy, n) else {
            return;
        };
        let Ok(rec) = self.record(event) else { return };
        if let Some(t) = self.instances.as_mut() {
            t.open.insert(n, Default::default());
            t.last_change_ms = Some(now_ms);
        }
        let at = InstanceId::new(self.id.system, n);
        tracing::info!(
            "{} is crowded: opening {}",
            self.name(),
            at.name(&self.ctx.galaxy)
        );
        let (ctx, me) = (self.ctx.clone(), self.me.clone());
        self.on_durable(rec, move |r| {
            if r.is_err() {
                return;
            }
            tokio::spawn(async move {
                let ok = match crate::open_instance(ctx.clone(), at).await {
                    Ok(()) => true,
                    // A split decided just before a stop: not an error (the split is in the
                    // log, and the next start recovers the instance with its primary).
                    Err(crate::MeshError::ShuttingDown) => {
                        tracing::info!("not opening {}: shutting down", at.slug(&ctx.galaxy));
                        false
                    }
                    Err(e) => {
                        tracing::error!("cannot open {}: {e}", at.slug(&ctx.galaxy));
                        false
                    }
                };
                let _ = me.send(ShardMessage::InstanceReady { n, ok }).await;
            });
        });
    }

    pub(super) fn on_instance_ready(&mut self, n: u16, ok: bool) {
        if let Some(i) = self.instances.as_mut().and_then(|t| t.open.get_mut(&n)) {
            // An instance that could not start is never filled; it stays open but unused.
            i.ready = ok;
            i.closing = !ok;
        }
    }

    /// Moves up to `count` players, whole groups only, from here to open instance `n`.
    fn fill(&mut self, n: u16, count: usize) {
        let movers = pick_movers(&self.state, count, |name| self.can_move(name));
        for name in movers {
            if let Some(xfer) = self.move_player(&name, n) {
                if let Some(i) = self.instances.as_mut().and_then(|t| t.open.get_mut(&n)) {
                    i.sent.insert(xfer);
                }
            }
        }
    }

    /// Whether a player here may be moved to another instance now (not shot down, no trade
    /// under way).
    fn can_move(&self, name: &str) -> bool {
        self.state.players.get(name).is_some_and(|p| p.hull > 0)
            && !self.state.downed.contains_key(name)
            && !self.state.has_escrow(name)
    }

    /// Prepares the move of `name` to instance `to` of this system and hands it to the
    /// departure pipeline. Returns its transfer number.
    fn move_player(&mut self, name: &str, to: u16) -> Option<Xfer> {
        let event = self.state.decide_move(&self.ctx.galaxy, name, to).ok()?;
        // A full departure queue: the player stays, and a later tick moves them.
        let permit = self.reserve_departure().ok()?;
        let xfer = self.state.next_xfer;
        let rec = self.record(event).ok()?;
        let seq = rec.seq;
        self.on_durable(rec, |_| {});
        self.send_departure(permit, xfer, seq, 0, None);
        Some(xfer)
    }

    /// Tells instance `n` to move everyone back; no one is moved there any more.
    fn merge(&mut self, n: u16, now_ms: u64) {
        let at = InstanceId::new(self.id.system, n);
        let Some(q) = self.ctx.shard(at) else { return };
        if q.try_send(ShardMessage::Merge).is_err() {
            return;
        }
        if let Some(t) = self.instances.as_mut() {
            if let Some(i) = t.open.get_mut(&n) {
                i.closing = true;
            }
            t.last_change_ms = Some(now_ms);
        }
        tracing::info!("{} is quiet: merging it back", at.name(&self.ctx.galaxy));
    }

    /// Asks closing instance `n` to stop if it is empty; the answer comes back as
    /// [`ShardMessage::InstanceRetired`].
    fn retire(&mut self, n: u16, now_ms: u64) {
        let at = InstanceId::new(self.id.system, n);
        // No move towards it may still be prepared here (moves committed since are queued
        // there before this question: see the departure pipeline).
        if self.state.decide_retire(&self.ctx.galaxy, n).is_err() {
            return;
        }
        let Some(i) = self.instances.as_mut().and_then(|t| t.open.get_mut(&n)) else {
            return;
        };
        let asked_lately = i
            .retire_asked_ms
            .is_some_and(|t| now_ms < t.saturating_add(RETIRE_RETRY_MS));
        if i.retiring || asked_lately {
            return;
        }
        i.retiring = true;
        i.retire_asked_ms = Some(now_ms);
        let (ctx, me) = (self.ctx.clone(), self.me.clone());
        tokio::spawn(async move {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let stopped = match ctx.shard(at) {
                Some(q) => {
                    q.send(ShardMessage::Retire { reply: tx }).await.is_ok()
                        && matches!(rx.await, Ok(true))
                }
                None => false,
            };
            let _ = me.send(ShardMessage::InstanceRetired { n, stopped }).await;
        });
    }

    /// Instance `n` answered: once it has stopped, its retirement is recorded.
    pub(super) fn on_instance_retired(&mut self, n: u16, stopped: bool) {
        let Some(t) = self.instances.as_mut() else {
            return;
        };
        let Some(i) = t.open.get_mut(&n) else { return };
        i.retiring = false;
        if !stopped {
            return;
        }
        t.open.remove(&n);
        let at = InstanceId::new(self.id.system, n);
        // Its shard has stopped; its queue goes as its retirement is recorded.
        self.ctx.close_instance(at);
        match self.state.decide_retire(&self.ctx.galaxy, n) {
            Ok(event) => {
                if let Ok(rec) = self.record(event) {
                    self.on_durable(rec, |_| {});
                }
                tracing::info!("{} closed", at.name(&self.ctx.galaxy));
            }
            Err(e) => panic!("BUG: instance {n} stopped but cannot retire: {e}"),
        }
    }

    /// Primary, after a restart, before its first tick: the loads recovery found in its open
    /// instances.
    pub(crate) fn restore_instance_loads(&mut self, loads: &[(u16, InstanceLoad)]) {
        if let Some(t) = self.instances.as_mut() {
            t.restore(loads.iter().copied());
        }
    }

    pub(super) fn on_instance_load(&mut self, n: u16, load: InstanceLoad) {
        if let Some(t) = self.instances.as_mut() {
            t.report(n, load);
        }
    }

    /// Instance, every tick: tells the primary its load and, when merging, moves every player
    /// it can back to the primary.
    pub(super) fn instance_tick(&mut self) {
        if self.merging && self.failed.is_none() {
            let names: Vec<String> = self
                .state
                .players
                .keys()
                .filter(|n| self.can_move(n))
                .take(crate::instances::MAX_MOVES_PER_TICK)
                .cloned()
                .collect();
            for name in names {
                self.move_player(&name, PRIMARY_INSTANCE);
            }
        }
        let primary = InstanceId::primary(self.id.system);
        let load = InstanceLoad {
            players: self.state.players.len(),
            departing: self.state.departing.len(),
            incoming: self.arrivals.len(),
            landed_from_primary: self
                .state
                .landed_upto
                .get(&primary)
                .copied()
                .unwrap_or_default(),
        };
        if let Some(q) = self.ctx.shard(primary) {
            // Never waits: a full queue skips a report (the next tick sends another).
            let _ = q.try_send(ShardMessage::InstanceLoad { n: self.id.n, load });
        }
    }

    /// Instance: whether it is empty and quiet, so that it may stop for good.
    pub(super) fn can_retire(&self) -> bool {
        !self.id.is_primary()
            && self.failed.is_none()
            && self.state.players.is_empty()
            && self.state.departing.is_empty()
            && self.arrivals.is_empty()
            && self.state.escrows.is_empty()
    }
}
