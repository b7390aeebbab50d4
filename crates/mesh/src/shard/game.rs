//! The game's requests and tick steps on a shard: trades, standing attack orders, loot, the
//! combat and economy steps of the tick, and price gossip.
//!
//! A trade in an instance other than the primary goes to the primary's market through an
//! escrow ([`sim::system`]'s `escrow` rules): the instance records the escrow and,
//! once it is durable, asks the primary from a task (never waiting in its loop); the primary
//! records the trade (the commit point) and answers once that is durable; the instance then
//! records the settlement (or the refund) and answers the player.
//!
//! Same discipline as the rest of the shard: decide (pure), record, answer once durable. A
//! combat or economy step is recorded like any event, so replay reproduces it; the gossip of
//! prices is advice, never recorded ([`crate::price_sync`]).

use std::sync::Arc;

use super::{RemoteAnswer, Reply, Shard, ShardMessage};
use crate::price_sync::{unix_ms, HeardPrices, Published};
use crate::trading::{
    GoodQuote, LootAck, MarketView, Opponent, Ship, ShockView, TradeAck, WreckView,
};
use crate::MeshError;
use sim::goods::Good;
use sim::ids::EscrowId;
use sim::instance::InstanceId;
use sim::market::{Order, PriceReport};
use sim::player::Player;
use sim::system::{EscrowRequest, Event};

impl Shard {
    pub(super) fn trade(&mut self, name: String, order: Order, reply: Reply<TradeAck>) {
        if !self.id.is_primary() {
            return self.escrow_trade(name, order, reply);
        }
        let decided = self.state.decide_trade(&self.ctx.galaxy, &name, &order);
        let (total_cr, fee_cr) = match &decided {
            Ok(Event::Trade { trade, .. }) => (trade.total_cr, trade.fee_cr),
            _ => (0, 0),
        };
        let Some((rec, reply)) = self.record_or_answer(decided, reply) else {
            return;
        };
        let player = self.state.players[&name].clone();
        let ack = TradeAck {
            side: order.side.name(),
            good: order.good.name(),
            qty: order.qty,
            total_cr,
            fee_cr,
            player,
        };
        self.on_durable(rec, move |r| {
            let _ = reply.send(r.map(|()| ack).map_err(MeshError::Storage));
        });
    }

    /// A trade in an instance: step 1, the escrow; once durable, a task asks the primary.
    fn escrow_trade(&mut self, name: String, order: Order, reply: Reply<TradeAck>) {
        let decided = self.state.decide_escrow(&self.ctx.galaxy, &name, &order);
        let escrow = self.state.next_escrow;
        let Some((rec, reply)) = self.record_or_answer(decided, reply) else {
            return;
        };
        let req = self
            .state
            .escrow_request(escrow)
            .expect("an escrow just opened");
        let (ctx, me) = (self.ctx.clone(), self.me.clone());
        let primary = InstanceId::primary(self.id.system);
        self.on_durable(rec, move |r| {
            if let Err(e) = r {
                // Perhaps on disk, never asked: recovery refunds it.
                let _ = reply.send(Err(MeshError::Storage(e)));
                return;
            }
            tokio::spawn(ask_primary(ctx, me, primary, req, reply));
        });
    }

    /// Primary: step 2, an instance's trade against the market; answered once durable.
    pub(super) fn remote_trade(
        &mut self,
        req: EscrowRequest,
        reply: tokio::sync::oneshot::Sender<RemoteAnswer>,
    ) {
        let event = match self.state.decide_remote_trade(&self.ctx.galaxy, &req) {
            Ok(event) => event,
            Err(r) => {
                let _ = reply.send(RemoteAnswer::Refused(MeshError::Rejected(r)));
                return;
            }
        };
        let Event::RemoteTrade { trade, .. } = event else {
            unreachable!("decide_remote_trade decides a remote trade")
        };
        match self.record(event) {
            Ok(rec) => self.on_durable(rec, move |r| {
                let _ = reply.send(match r {
                    Ok(()) => RemoteAnswer::Taken(trade),
                    Err(e) => RemoteAnswer::Unknown(MeshError::Storage(e)),
                });
            }),
            Err(e) => {
                let _ = reply.send(RemoteAnswer::Unknown(e));
            }
        }
    }

    /// Instance: step 3, settle (or refund) by the primary's answer, then answer the player and
    /// tell the primary it may forget the outcome.
    pub(super) fn escrow_answered(
        &mut self,
        escrow: EscrowId,
        answer: RemoteAnswer,
        reply: Reply<TradeAck>,
    ) {
        let (taken, refused) = match answer {
            RemoteAnswer::Taken(trade) => (Some(trade), None),
            RemoteAnswer::Refused(e) => (None, Some(e)),
            RemoteAnswer::Unknown(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let Some(event) = self.state.decide_settle(escrow, taken.as_ref()) else {
            let _ = reply.send(Err(MeshError::Internal(format!(
                "escrow {escrow} is not open"
            ))));
            return;
        };
        let name = event.player().unwrap_or_default().to_string();
        let order = self.state.escrows[&escrow].order;
        let rec = match self.record(event) {
            Ok(rec) => rec,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let player = self.state.players[&name].clone();
        let primary = self.ctx.shard(InstanceId::primary(self.id.system));
        let n = self.id.n;
        self.on_durable(rec, move |r| {
            let answer = match (r, refused) {
                (Err(e), _) => Err(MeshError::Storage(e)),
                (Ok(()), Some(refused)) => Err(refused),
                (Ok(()), None) => {
                    if let Some(q) = primary {
                        tokio::spawn(async move {
                            let _ = q.send(ShardMessage::RemoteTradeDone { n, escrow }).await;
                        });
                    }
                    Ok(TradeAck {
                        side: order.side.name(),
                        good: order.good.name(),
                        qty: order.qty,
                        total_cr: taken.map_or(0, |t| t.total_cr),
                        fee_cr: taken.map_or(0, |t| t.fee_cr),
                        player,
                    })
                }
            };
            let _ = reply.send(answer);
        });
    }

    /// Primary: instance `n` settled escrow `escrow`; the outcome is forgotten.
    pub(super) fn remote_trade_done(&mut self, n: u16, escrow: EscrowId) {
        if !self.state.remote_trades.contains_key(&(n, escrow)) {
            return;
        }
        let event = Event::RemoteTradeDone {
            instance: n,
            escrow,
        };
        if let Ok(rec) = self.record(event) {
            self.on_durable(rec, |_| {});
        }
    }

    pub(super) fn engage(&mut self, name: String, target: Option<String>, reply: Reply<Player>) {
        let decided = self
            .state
            .decide_engage(&self.ctx.galaxy, &name, target.as_deref());
        let ceases = matches!(decided, Ok(Event::Engage { target: None, .. }));
        if ceases && !self.state.engaged.contains_key(&name) {
            // Cease fire with no order standing: nothing changes, so nothing is recorded.
            let _ = reply.send(Ok(self.state.players[&name].clone()));
            return;
        }
        let Some((rec, reply)) = self.record_or_answer(decided, reply) else {
            return;
        };
        let player = self.state.players[&name].clone();
        self.on_durable(rec, move |r| {
            let _ = reply.send(r.map(|()| player).map_err(MeshError::Storage));
        });
    }

    pub(super) fn loot(&mut self, name: String, wreck: u64, reply: Reply<LootAck>) {
        let decided = self.state.decide_loot(&self.ctx.galaxy, &name, wreck);
        let took = match &decided {
            Ok(Event::Loot { take, .. }) => take.taken,
            _ => Default::default(),
        };
        let Some((rec, reply)) = self.record_or_answer(decided, reply) else {
            return;
        };
        let ack = LootAck {
            wreck,
            took: took.iter().map(|(g, q)| (g.name(), q)).collect(),
            player: self.state.players[&name].clone(),
        };
        self.on_durable(rec, move |r| {
            let _ = reply.send(r.map(|()| ack).map_err(MeshError::Storage));
        });
    }

    /// The tick's combat: one step of every standing order, then the destruction of every
    /// ship shot down (also those a crash left shot down but not yet destroyed). A pilot
    /// destroyed away from home leaves for home on a jump, committed like any other.
    pub(super) fn fight(&mut self) {
        if let Some(event) = self.state.decide_combat(self.now) {
            let Ok(rec) = self.record(event) else { return };
            self.on_durable(rec, |_| {});
        }
        let downed: Vec<String> = self.state.downed.keys().cloned().collect();
        for name in downed {
            let Some(event) = self.state.decide_destroyed(&self.ctx.galaxy, &name) else {
                continue;
            };
            let jump = event.prepared_xfer();
            // A full departure queue: the pilot stays shot down, destroyed at a later tick.
            let permit = match jump.map(|_| self.reserve_departure()) {
                Some(Err(_)) => continue,
                Some(Ok(permit)) => Some(permit),
                None => None,
            };
            let Ok(rec) = self.record(event) else { return };
            let seq = rec.seq;
            self.on_durable(rec, |_| {});
            if let (Some(xfer), Some(permit)) = (jump, permit) {
                let travel = self.ctx.config.rules.respawn_ticks;
                self.send_departure(permit, xfer, seq, travel, None);
            }
        }
    }

    /// The economy step since the last one, recorded if it changed anything.
    pub(super) fn economy_step(&mut self) {
        let from = self.economy_from;
        self.economy_from = self.now;
        // A shock drawn in this step is recorded (and applied) first: the step feels it.
        let rules = &self.ctx.config.rules;
        if let Some(event) = self.state.decide_shock(rules, from, self.now) {
            if let Ok(rec) = self.record(event) {
                self.on_durable(rec, |_| {});
            }
        }
        if let Some(event) = self.state.decide_economy(from, self.now) {
            if let Ok(rec) = self.record(event) {
                self.on_durable(rec, |_| {});
            }
        }
    }

    /// Publishes this system's prices: into its own view, to its lane neighbours (the whole
    /// view: gossip), and to the galaxy view. Never waits: a full queue skips a round.
    pub(super) fn gossip(&mut self) {
        let report = PriceReport {
            tick: self.now.0,
            prices_cr: self.state.market.prices_cr(),
        };
        let at = unix_ms();
        self.prices.record(self.id.system, report, at);
        let view = Arc::new(self.prices.clone());
        for &n in self.ctx.galaxy.neighbours(self.id.system) {
            match self.ctx.shard(InstanceId::primary(n)) {
                Some(q) => {
                    let _ = q.try_send(super::ShardMessage::Gossip(view.clone()));
                }
                // Run by another node (or by none, mid hand-over): told through the news.
                None => self.ctx.gossip_away(self.id.system, n, &view),
            }
        }
        let published = Published {
            system: self.id.system,
            report,
            published_ms: at,
        };
        self.ctx.report_away(&published);
        // A full queue drops this report (limits::GALAXY_VIEW_QUEUE_LEN): the next repairs it.
        let _ = self
            .ctx
            .published
            .try_send((tokio::time::Instant::now(), published));
    }

    pub(super) fn market_view(&self) -> MarketView {
        let galaxy = &self.ctx.galaxy;
        let m = &self.state.market;
        let now_ms = unix_ms();
        MarketView {
            system: galaxy.name(self.id.system).to_string(),
            slug: galaxy.slug(self.id.system).to_string(),
            economy: self.state.kind.name(),
            tick: self.now.0,
            till_cr: m.till_cr(),
            goods: Good::ALL
                .iter()
                .map(|&g| GoodQuote {
                    good: g.name(),
                    stock: m.stock(g),
                    mid_cr: m.price_cr(g),
                    buy_cr: m.quote_buy(g, 1).ok(),
                    sell_cr: m.quote_sell(g, 1).ok(),
                })
                .collect(),
            heard: self
                .prices
                .iter()
                .filter(|(s, _, _)| *s != self.id.system)
                .map(|(s, r, at)| {
                    HeardPrices::new(galaxy, s, &r.prices_cr, now_ms.saturating_sub(at))
                })
                .collect(),
            shocks: self
                .state
                .shocks
                .iter()
                .filter(|s| s.until > self.now.0)
                .map(|s| ShockView {
                    kind: s.kind.name(),
                    good: s.good.map(Good::name),
                    until_tick: s.until,
                    remaining_ticks: s.until - self.now.0,
                })
                .collect(),
        }
    }

    /// A player here and their standing order, with the target's hull (two lookups).
    pub(super) fn ship(&self, name: &str) -> Option<Ship> {
        let player = self.state.players.get(name)?.clone();
        let attacking = self.state.engaged.get(name).map(|target| Opponent {
            target: target.clone(),
            hull: self.state.players.get(target).map_or(0, |p| p.hull),
        });
        Some(Ship { player, attacking })
    }

    pub(super) fn wreck_views(&self) -> Vec<WreckView> {
        let tick_ms = 1000 / u64::from(self.ctx.config.tick_hz.max(1));
        self.state
            .wrecks
            .iter()
            .map(|(id, w)| WreckView {
                id,
                pilot: w.pilot.clone(),
                cargo: w.cargo.iter().map(|(g, q)| (g.name(), q)).collect(),
                age_ms: self.now.0.saturating_sub(w.tick) * tick_ms,
            })
            .collect()
    }
}

/// An instance's task: asks the primary about escrow `req` and brings the answer back to the
/// instance's queue. A request that never reached the primary is refused (refund); one whose
/// answer was lost is unknown (recovery settles it).
async fn ask_primary(
    ctx: Arc<crate::Context>,
    me: tokio::sync::mpsc::Sender<ShardMessage>,
    primary: InstanceId,
    req: EscrowRequest,
    reply: Reply<TradeAck>,
) {
    let escrow = req.escrow;
    let answer = match ctx.shard(primary) {
        None => RemoteAnswer::Refused(MeshError::ShuttingDown),
        Some(q) => {
            let (tx, rx) = tokio::sync::oneshot::channel();
            match q.send(ShardMessage::RemoteTrade { req, reply: tx }).await {
                Err(_) => RemoteAnswer::Refused(MeshError::ShuttingDown),
                Ok(()) => rx
                    .await
                    .unwrap_or(RemoteAnswer::Unknown(MeshError::ShuttingDown)),
            }
        }
    };
    let _ = me
        .send(ShardMessage::EscrowAnswered {
            escrow,
            answer,
            reply,
        })
        .await;
}
