//! One star system's shard: it alone owns the system's state and log, runs its tick loop, and
//! takes requests from a bounded queue, one at a time.
//!
//! For every request: decide (pure, `sim`), apply to the state, append the event to the log, and
//! answer only once the event is durable (the acker task waits for that, in log order, so the
//! tick loop never waits on the disk), then publish it on the mesh's event feed
//! ([`super::feed`]). A jump goes on to the departure pipeline ([`super::departures`]), which
//! makes the transition log's `jump` record the commit point; its departure is published when
//! the origin logs that commit (`depart.done`).
//!
//! Never shares its state with another shard: the only ways in are its queue and, at recovery,
//! the logs. Never blocks its loop on I/O, except a final flush when stopping.

mod game;
mod instances;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::mpsc::OwnedPermit;
use tokio::sync::{mpsc, oneshot};

use super::checkpoint::{LANDED, ORIGIN_DONE};
use super::codec::{encode_event, encode_pair_reads, encode_state, event_kind, Jump, PlayerLine};
use super::departures::PendingDeparture;
use super::dilation::Dilation;
use super::directory::{Landed, Place};
use super::feed::{FeedEvent, FeedEventKind};
use super::instances::{InstanceLoad, InstanceTable};
use super::limits::DEPARTURE_QUEUE_LEN;
use super::price_sync::PriceView;
use super::projector::Projected;
use super::protocol::arrivals::{decide_landing, Arrivals};
use super::protocol::commit;
use super::protocol::handover::{Inbox, PairSeq};
use super::protocol::invariants::{self as inv, must};
use super::stats::TickTimes;
use super::trading::{InFlight, LootAck, MarketView, Ship, TradeAck, WreckView};
use super::{Context, JumpAck, MeshError, ShardStatus};
use sim::galaxy::Galaxy;
use sim::galaxy::SystemId;
use sim::ids::{EscrowId, Tick, Xfer};
use sim::instance::InstanceId;
use sim::market::Order;
use sim::market::Trade;
use sim::player::Player;
use sim::system::{EscrowRequest, Event, Reject, SystemState};
use store::log::{Log, LogError, Position};
use store::seq::Seq;
use store::snapshot::{self, SnapshotMeta};

pub type Reply<T> = oneshot::Sender<Result<T, MeshError>>;

/// What a shard can be asked.
pub enum ShardMessage {
    Join {
        name: String,
        key: String,
        reply: Reply<Player>,
    },
    Refuel {
        name: String,
        units: Option<u32>,
        reply: Reply<Player>,
    },
    /// Mend the hull (whole, or `points`) at the station.
    Repair {
        name: String,
        points: Option<u32>,
        reply: Reply<Player>,
    },
    Jump {
        name: String,
        to: SystemId,
        reply: Reply<JumpAck>,
    },
    Trade {
        name: String,
        order: Order,
        reply: Reply<TradeAck>,
    },
    /// A standing order to fire at `target` (`None`: cease fire).
    Engage {
        name: String,
        target: Option<String>,
        reply: Reply<Player>,
    },
    Loot {
        name: String,
        wreck: u64,
        reply: Reply<LootAck>,
    },
    /// The live market and the prices heard from elsewhere.
    Market { reply: oneshot::Sender<MarketView> },
    /// The wrecks floating here.
    Wrecks {
        reply: oneshot::Sender<Vec<WreckView>>,
    },
    /// A neighbour's price view (economy gossip).
    Gossip(Arc<PriceView>),
    /// From this shard's departure pipeline: jump `xfer` is record `tseq` of the transition
    /// log.
    Committed { xfer: Xfer, tseq: Seq },
    /// From another shard's departure pipeline: a committed jump towards this system.
    Landing(Jump),
    /// On a node of a spread galaxy, from a departure pipeline of the same unit (a move
    /// between instances, committed at its durable `depart` with no transition log): the jump
    /// to land, and who is told once its `arrive` is durable (or it had landed before), so
    /// that the origin records `depart.done` only then.
    LandingThen {
        jump: Jump,
        landed: oneshot::Sender<()>,
    },
    /// On a node of a spread galaxy, read from a pair subject towards this unit: a committed
    /// jump, or one that landed here before (read again from the start after a takeover, or
    /// stored twice past the duplicate window): dropped then.
    Read(Jump),
    /// A player's state, if they are here.
    Look {
        name: String,
        reply: oneshot::Sender<Option<Player>>,
    },
    /// A committed jump on its way here: jump `xfer` of instance `from`, with the player it
    /// carries and the ticks until its landing, if this shard holds it queued.
    Incoming {
        from: InstanceId,
        xfer: Xfer,
        reply: oneshot::Sender<Option<InFlight>>,
    },
    /// A player's state and the standing order they fire by, if they are here.
    Ship {
        name: String,
        reply: oneshot::Sender<Option<Ship>>,
    },
    /// Names of the players here (at most `limit`).
    Who {
        limit: usize,
        reply: oneshot::Sender<Vec<String>>,
    },
    /// Everything the operator sees of the shard (costly: it hashes the state).
    Status { reply: oneshot::Sender<ShardStatus> },
    /// Players here now (cheap: for whoever only wants the count).
    Population { reply: oneshot::Sender<usize> },
    /// Every account (name, key hash) this system registered (the home system holds them).
    Accounts {
        reply: oneshot::Sender<Vec<(String, String)>>,
    },
    /// Flush, snapshot and stop.
    Stop {
        reply: oneshot::Sender<Result<ShardStatus, MeshError>>,
    },
    /// To an instance, from its primary: move every player back to the primary.
    Merge,
    /// To an instance, from its primary: if empty and quiet, flush, snapshot and stop, and
    /// answer true; otherwise answer false and go on.
    Retire { reply: oneshot::Sender<bool> },
    /// To a primary, from its instance `n`: how loaded it is (every tick).
    InstanceLoad { n: u16, load: InstanceLoad },
    /// To a primary: instance `n` runs (or could not be started).
    InstanceReady { n: u16, ok: bool },
    /// To a primary: instance `n` answered the retire question (stopped, or not empty yet).
    InstanceRetired { n: u16, stopped: bool },
    /// To a primary, from an instance: the trade of an escrow, against the one market.
    RemoteTrade {
        req: EscrowRequest,
        reply: oneshot::Sender<RemoteAnswer>,
    },
    /// To an instance, from its own task: the primary's answer about escrow `escrow`.
    EscrowAnswered {
        escrow: EscrowId,
        answer: RemoteAnswer,
        reply: Reply<TradeAck>,
    },
    /// To a primary, from an instance: escrow `escrow` of instance `n` is settled (durable).
    RemoteTradeDone { n: u16, escrow: EscrowId },
}

/// What a primary answers an instance's trade.
#[derive(Debug)]
pub enum RemoteAnswer {
    /// Recorded (durable) in the primary's log at this price: settle.
    Taken(Trade),
    /// Not recorded, and never will be: refund.
    Refused(MeshError),
    /// Perhaps recorded (a storage failure, or the primary went away): the escrow stays open
    /// until recovery settles it from the primary's log.
    Unknown(MeshError),
}

/// Work that must wait until a record is durable, run by the acker in log order.
type AfterDurable = Box<dyn FnOnce(Result<(), LogError>) + Send>;

/// A record appended, and what to send once it is durable ([`Shard::on_durable`]).
#[must_use = "hand it to on_durable, or its player-log line and feed event are lost"]
struct Recorded {
    seq: Seq,
    line: Option<Projected>,
    feed: Option<FeedEvent>,
}

pub struct Shard {
    /// The system and instance this shard runs.
    id: InstanceId,
    ctx: Arc<Context>,
    state: SystemState,
    log: Log,
    /// The shard's clock, in ticks. Events are stamped with it.
    now: Tick,
    /// Committed jumps towards this system, queued until their landing tick (the protocol
    /// core's [`Arrivals`]).
    arrivals: Arrivals,
    /// To the acker, one entry a record. Unbounded, but within the shard (not between shards)
    /// and bounded by the log: an append waits while the log holds
    /// [`store::log::MAX_PENDING_BYTES`] not yet written, and the acker takes entries as fast
    /// as their records become durable. Bounding it here would mean refusing records that
    /// cannot be refused (a landing, `depart.done`).
    acks: mpsc::UnboundedSender<(Seq, Instant, AfterDurable)>,
    acks_task: tokio::task::JoinHandle<()>,
    /// To the departure pipeline, which commits jumps and hands them between shards; bounded by
    /// [`DEPARTURE_QUEUE_LEN`]. A place is reserved before a jump is prepared
    /// ([`Self::reserve_departure`]), so a full queue refuses the jump before anything is
    /// written, and the loop never waits for the pipeline (which waits on the shards' queues:
    /// the other way round could deadlock).
    departures: mpsc::Sender<PendingDeparture>,
    departures_task: tokio::task::JoinHandle<()>,
    records_since_snapshot: u64,
    tick_times: TickTimes,
    /// How late the last ticks started after they were due (the loop busy with requests, or
    /// the thread not scheduled): what a tick's own cost does not show.
    tick_late: TickTimes,
    /// Slows the clock when ticks overrun their budget ([`super::dilation`]).
    dilation: Dilation,
    /// Set when the log failed: the shard answers every request with it until restarted.
    failed: Option<LogError>,
    /// The tick the next economy step starts from.
    economy_from: Tick,
    /// Prices heard from other systems (gossip), and this system's own last report.
    prices: PriceView,
    /// This shard's own queue, for tasks that report back to it.
    me: mpsc::Sender<ShardMessage>,
    /// When the shard started: the instance policy's clock (wall time, never game time).
    started: tokio::time::Instant,
    /// A primary's instances and the policy's memory (None in an instance).
    instances: Option<InstanceTable>,
    /// An instance told to merge: it moves every player back to the primary.
    merging: bool,
    /// Who waits for a landing to be durable ([`ShardMessage::LandingThen`]), by origin and
    /// number.
    landing_acks: std::collections::HashMap<(InstanceId, Xfer), oneshot::Sender<()>>,
    /// A spread unit's primary: what its pair subjects delivered, and up to where every jump
    /// read has landed (its snapshots record that, so a takeover reads on from there).
    inbox: Inbox,
}

impl Shard {
    /// `replayed` is how many records recovery read after the last snapshot: they count
    /// towards the next one, so that a shard restarted often still snapshots.
    pub fn new(
        ctx: Arc<Context>,
        state: SystemState,
        log: Log,
        replayed: u64,
        landings: Vec<Jump>,
        self_tx: mpsc::Sender<ShardMessage>,
    ) -> Shard {
        let id = state.instance_id();
        let (acks, acks_rx) = mpsc::unbounded_channel();
        let (acked, acked_rx) = tokio::sync::watch::channel(Seq(0));
        let acks_task = tokio::spawn(acker(ctx.clone(), id.system, log.clone(), acks_rx, acked));
        let (departures, dep_rx) = mpsc::channel(DEPARTURE_QUEUE_LEN);
        let departures_task = tokio::spawn(super::departures::run(
            ctx.clone(),
            log.clone(),
            acked_rx,
            self_tx.clone(),
            dep_rx,
        ));
        let instances = state
            .is_primary()
            .then(|| InstanceTable::new(&state.instances));
        let now = state.tick;
        let mut shard = Shard {
            id,
            tick_times: TickTimes::new(ctx.config.tick_hz as usize * 60),
            tick_late: TickTimes::new(ctx.config.tick_hz as usize * 60),
            dilation: Dilation::new(tick_budget_us(ctx.config.tick_hz)),
            ctx,
            state,
            log,
            now,
            arrivals: Arrivals::new(),
            acks,
            acks_task,
            departures,
            departures_task,
            records_since_snapshot: replayed,
            failed: None,
            economy_from: now,
            prices: PriceView::new(),
            me: self_tx,
            started: tokio::time::Instant::now(),
            instances,
            merging: false,
            landing_acks: Default::default(),
            inbox: Inbox::default(),
        };
        for j in landings {
            shard.on_landing(j);
        }
        shard
    }

    /// The shard's loop: requests as they come, a tick every period: the configured rate, or
    /// slower while the system is dilated. A tick that starts late moves the next one back
    /// (never a burst of ticks to catch up).
    pub async fn run(mut self, mut rx: mpsc::Receiver<ShardMessage>) {
        let first = tokio::time::Instant::now() + self.period();
        let next_tick = tokio::time::sleep_until(first);
        tokio::pin!(next_tick);
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(ShardMessage::Stop { reply }) => {
                        let result = self.stop(&mut rx).await;
                        let _ = reply.send(result);
                        return;
                    }
                    Some(ShardMessage::Retire { reply }) => {
                        if !self.can_retire() {
                            let _ = reply.send(false);
                            continue;
                        }
                        let name = self.name();
                        let result = self.stop_retired(&mut rx).await;
                        if let Err(e) = &result {
                            tracing::error!("{name} did not close cleanly: {e}");
                        }
                        let _ = reply.send(result.is_ok());
                        return;
                    }
                    Some(cmd) => self.handle(cmd),
                    None => return,
                },
                () = &mut next_tick => {
                    let due = next_tick.deadline();
                    self.tick_late
                        .push(tokio::time::Instant::now().saturating_duration_since(due));
                    self.tick();
                    let now = tokio::time::Instant::now();
                    let period = self.period();
                    let next = if due + period > now { due + period } else { now + period };
                    next_tick.as_mut().reset(next);
                }
            }
        }
    }

    /// The tick period now (the budget, stretched by dilation).
    fn period(&self) -> Duration {
        Duration::from_micros(self.dilation.period_us())
    }

    fn handle(&mut self, cmd: ShardMessage) {
        match cmd {
            ShardMessage::Join { name, key, reply } => self.join(name, key, reply),
            ShardMessage::Refuel { name, units, reply } => self.refuel(name, units, reply),
            ShardMessage::Repair {
                name,
                points,
                reply,
            } => self.repair(name, points, reply),
            ShardMessage::Jump { name, to, reply } => self.jump(name, to, reply),
            ShardMessage::Committed { xfer, tseq } => {
                // The player is gone for good: the feed tells of the departure with this
                // record; only the checkpoint waits for it. A player who left for a unit of
                // another node is no longer routed here (one landing here is newer: kept).
                let left = self.state.departing.get(&xfer).and_then(|d| {
                    let elsewhere = d.to.system != self.id.system
                        && matches!(self.ctx.handoff, super::Handoff::Units(_));
                    elsewhere.then(|| (d.player.name.clone(), d.player.version))
                });
                if let Ok(rec) = self.record(commit::done(&self.state, xfer, tseq)) {
                    let ctx = self.ctx.clone();
                    self.on_durable(rec, move |r| {
                        if r.is_ok() {
                            ctx.settle_checkpoint(tseq, ORIGIN_DONE);
                            if let Some((name, version)) = left {
                                ctx.directory.left(&name, version);
                            }
                        }
                    });
                }
            }
            ShardMessage::Landing(jump) => {
                must(inv::handed_to_its_destination(&self.state, &jump));
                self.on_landing(jump)
            }
            ShardMessage::Read(jump) => {
                // Drops a redelivery and what landed already; numbers the jump with its
                // position on the pair subject (its `tseq`).
                let at = PairSeq(jump.tseq.0);
                let Some(jump) = self.inbox.delivered(&self.state, at, jump) else {
                    return;
                };
                // Routing here knows the player from now on (arriving), so that this node
                // answers for them and their landing can be waited for here.
                let arriving = Place::Jumping {
                    from: jump.from,
                    xfer: jump.xfer,
                    to: jump.to,
                };
                self.ctx
                    .directory
                    .set(&jump.player.name, arriving, jump.player.version);
                self.on_landing(jump)
            }
            ShardMessage::LandingThen { jump, landed } => {
                must(inv::handed_to_its_destination(&self.state, &jump));
                self.landing_acks.insert((jump.from, jump.xfer), landed);
                self.on_landing(jump)
            }
            ShardMessage::Trade { name, order, reply } => self.trade(name, order, reply),
            ShardMessage::Engage {
                name,
                target,
                reply,
            } => self.engage(name, target, reply),
            ShardMessage::Loot { name, wreck, reply } => self.loot(name, wreck, reply),
            ShardMessage::Market { reply } => {
                let _ = reply.send(self.market_view());
            }
            ShardMessage::Wrecks { reply } => {
                let _ = reply.send(self.wreck_views());
            }
            ShardMessage::Gossip(view) => {
                self.prices.merge(&view);
            }
            ShardMessage::Look { name, reply } => {
                let _ = reply.send(self.state.players.get(&name).cloned());
            }
            ShardMessage::Ship { name, reply } => {
                let _ = reply.send(self.ship(&name));
            }
            ShardMessage::Incoming { from, xfer, reply } => {
                let _ = reply.send(self.in_flight(from, xfer));
            }
            ShardMessage::Who { limit, reply } => {
                let _ = reply.send(self.state.players.keys().take(limit).cloned().collect());
            }
            ShardMessage::Status { reply } => {
                let _ = reply.send(self.status());
            }
            ShardMessage::Population { reply } => {
                let _ = reply.send(self.state.players.len());
            }
            ShardMessage::Accounts { reply } => {
                let all = self.state.names.iter();
                let _ = reply.send(all.map(|(n, k)| (n.clone(), k.clone())).collect());
            }
            ShardMessage::Merge => self.merging = !self.id.is_primary(),
            ShardMessage::InstanceLoad { n, load } => self.on_instance_load(n, load),
            ShardMessage::InstanceReady { n, ok } => self.on_instance_ready(n, ok),
            ShardMessage::InstanceRetired { n, stopped } => self.on_instance_retired(n, stopped),
            ShardMessage::RemoteTrade { req, reply } => self.remote_trade(req, reply),
            ShardMessage::EscrowAnswered {
                escrow,
                answer,
                reply,
            } => self.escrow_answered(escrow, answer, reply),
            ShardMessage::RemoteTradeDone { n, escrow } => self.remote_trade_done(n, escrow),
            ShardMessage::Stop { .. } => unreachable!("handled by run"),
            // While stopping, a retire question is answered no: the next start settles it.
            ShardMessage::Retire { reply } => drop(reply.send(false)),
        }
    }

    /// The name players see: `Sol`, or `Sol #2`.
    fn name(&self) -> String {
        self.id.name(&self.ctx.galaxy)
    }

    /// Applies a decided event and appends it. What must follow once it is durable (its
    /// player-log line, its event on the feed) is in the answer: hand it to [`Self::on_durable`].
    fn record(&mut self, event: Event) -> Result<Recorded, MeshError> {
        if let Some(e) = &self.failed {
            return Err(MeshError::Storage(e.clone()));
        }
        // Before applying: a committed departure is still listed. Nothing to build if nobody
        // listens.
        let feed = self
            .ctx
            .feed_heard()
            .then(|| FeedEventKind::of(&self.ctx.galaxy, &self.state, &event))
            .flatten();
        if let Err(e) = self.state.apply(self.now, &event) {
            panic!(
                "BUG: an event decided on {}'s state does not apply to it: {e}",
                self.name()
            );
        }
        let version = self.state.version_after(&event).unwrap_or_default();
        let (galaxy, id, now) = (&self.ctx.galaxy, self.id, self.now);
        // An event about a player is encoded once, for its record and its player-log line.
        let projected = event
            .player()
            .map(|name| (name, PlayerLine::encode(galaxy, id, now, &event, version)));
        let appended = self.log.append(event_kind(&event), |l| match &projected {
            Some((_, p)) => {
                l.encoded(p.fields());
            }
            None => encode_event(l, galaxy, id, now, &event, version),
        });
        match appended {
            Ok(seq) => {
                self.records_since_snapshot += 1;
                let line = projected.map(|(name, p)| Projected {
                    player: name.to_string(),
                    version: version.0,
                    line: p.finish(galaxy, id, seq),
                });
                let feed = feed.map(|kind| FeedEvent {
                    system: id.system,
                    instance: id.n,
                    seq,
                    t: now,
                    kind,
                });
                Ok(Recorded { seq, line, feed })
            }
            Err(e) => {
                self.failed = Some(e.clone());
                Err(MeshError::Storage(e))
            }
        }
    }

    /// Once `rec` is durable: sends its player-log line, runs `then`, and publishes its event
    /// on the mesh's feed (last: whoever hears of it finds routing and waiters already told).
    fn on_durable(&self, rec: Recorded, then: impl FnOnce(Result<(), LogError>) + Send + 'static) {
        let Recorded { seq, line, feed } = rec;
        let ctx = self.ctx.clone();
        self.after_durable(seq, move |r| {
            let durable = r.is_ok();
            if let (true, Some(line)) = (durable, line) {
                ctx.projector.send(line);
            }
            then(r);
            if let (true, Some(event)) = (durable, feed) {
                ctx.publish(event);
            }
        });
    }

    /// Runs `then` once record `seq` is durable.
    fn after_durable(&self, seq: Seq, then: impl FnOnce(Result<(), LogError>) + Send + 'static) {
        if self
            .acks
            .send((seq, Instant::now(), Box::new(then)))
            .is_err()
        {
            tracing::error!("acker of {} is gone", self.name());
        }
    }

    /// Records a decided event; a refusal or a storage failure is answered at once (None).
    fn record_or_answer<T>(
        &mut self,
        decided: Result<Event, Reject>,
        reply: Reply<T>,
    ) -> Option<(Recorded, Reply<T>)> {
        match decided
            .map_err(MeshError::Rejected)
            .and_then(|event| self.record(event))
        {
            Ok(rec) => Some((rec, reply)),
            Err(e) => {
                let _ = reply.send(Err(e));
                None
            }
        }
    }

    fn join(&mut self, name: String, key: String, reply: Reply<Player>) {
        let decided = self
            .state
            .decide_join(&self.ctx.galaxy, &self.ctx.config.rules, &name, &key);
        // The rules name the player (the NFC form of what was asked).
        let name = match &decided {
            Ok(Event::Join { player, .. }) => player.name.clone(),
            _ => name,
        };
        let Some((rec, reply)) = self.record_or_answer(decided, reply) else {
            return;
        };
        let player = self.state.players[&name].clone();
        let ctx = self.ctx.clone();
        let home = self.id;
        self.on_durable(rec, move |r| {
            if r.is_ok() {
                ctx.directory
                    .set(&player.name, Place::In(home), player.version);
            }
            let _ = reply.send(r.map(|()| player).map_err(MeshError::Storage));
        });
    }

    fn refuel(&mut self, name: String, units: Option<u32>, reply: Reply<Player>) {
        let decided =
            self.state
                .decide_refuel(&self.ctx.galaxy, &self.ctx.config.rules, &name, units);
        let Some((rec, reply)) = self.record_or_answer(decided, reply) else {
            return;
        };
        let player = self.state.players[&name].clone();
        self.on_durable(rec, move |r| {
            let _ = reply.send(r.map(|()| player).map_err(MeshError::Storage));
        });
    }

    fn repair(&mut self, name: String, points: Option<u32>, reply: Reply<Player>) {
        let decided = self.state.decide_repair(&self.ctx.galaxy, &name, points);
        let Some((rec, reply)) = self.record_or_answer(decided, reply) else {
            return;
        };
        let player = self.state.players[&name].clone();
        self.on_durable(rec, move |r| {
            let _ = reply.send(r.map(|()| player).map_err(MeshError::Storage));
        });
    }

    fn jump(&mut self, name: String, to: SystemId, reply: Reply<JumpAck>) {
        let decided = self.state.decide_depart(&self.ctx.galaxy, &name, to);
        let xfer = self.state.next_xfer;
        assert!(
            matches!(&decided, Ok(Event::Depart { xfer: x, .. }) if *x == xfer) || decided.is_err(),
            "a departure takes the system's next transfer number"
        );
        // A refusal by the rules is answered as such, whatever the queue holds.
        let permit = match decided.is_ok().then(|| self.reserve_departure()) {
            Some(Err(e)) => return drop(reply.send(Err(e))),
            Some(Ok(permit)) => Some(permit),
            None => None,
        };
        let Some((rec, reply)) = self.record_or_answer(decided, reply) else {
            return;
        };
        let permit = permit.expect("a place is reserved for every decided jump");
        let seq = rec.seq;
        // The feed tells of the departure at the commit (`Committed`), not here.
        self.on_durable(rec, |_| {});
        let travel =
            self.ctx
                .galaxy
                .travel_ticks(self.id.system, to, self.ctx.config.rules.ticks_per_ly);
        self.send_departure(permit, xfer, seq, travel, Some(reply));
    }

    /// A place in the departure pipeline's queue, taken before a jump is prepared (the loop
    /// never waits for it). Refused with `busy` when the queue holds [`DEPARTURE_QUEUE_LEN`]
    /// jumps, with `shutting_down` when the pipeline is gone.
    fn reserve_departure(&self) -> Result<OwnedPermit<PendingDeparture>, MeshError> {
        reserve_departure_in(&self.departures, || self.name())
    }

    /// Hands prepared jump `xfer` (its prepare is record `seq`) to the departure pipeline,
    /// through the place `permit` reserved for it; the pipeline commits it in the transition
    /// log, answers `reply`, and hands it to its destination. Routing sees the player in the
    /// jump from now on.
    fn send_departure(
        &mut self,
        permit: OwnedPermit<PendingDeparture>,
        xfer: Xfer,
        seq: Seq,
        travel_ticks: u64,
        reply: Option<Reply<JumpAck>>,
    ) {
        let d = &self.state.departing[&xfer];
        let jump = Jump {
            from: self.id,
            xfer,
            to: d.to,
            t: self.now,
            travel_ticks,
            player: d.player.clone(),
            tseq: Seq(0),
        };
        must(inv::prepared_by_origin(&self.state, &jump));
        let jumping = Place::Jumping {
            from: self.id,
            xfer,
            to: d.to,
        };
        self.ctx
            .directory
            .set(&d.player.name, jumping, d.player.version);
        // The pipeline holds our sender, so it is there to take it (a place is reserved).
        permit.send(PendingDeparture { seq, jump, reply });
    }

    /// Lands a committed jump towards here, or queues it to land at its tick (see
    /// [`Arrivals::handed`]). A jump with no travel time (a move between instances, or instant
    /// travel) lands as soon as it is handed over, unless an earlier jump of its origin is
    /// still queued.
    fn on_landing(&mut self, jump: Jump) {
        if let Some(jump) = self.arrivals.handed(self.now, jump) {
            self.land(jump);
        }
    }

    /// Jump `xfer` of `from` if it is queued here to land: the player it carries and the
    /// ticks until its landing tick (after a restart too: recovery queues every committed jump
    /// that has not landed).
    fn in_flight(&self, from: InstanceId, xfer: Xfer) -> Option<InFlight> {
        self.arrivals.find(from, xfer).map(|(at, jump)| InFlight {
            player: jump.player.clone(),
            ticks_left: at.ticks_since(self.now),
        })
    }

    fn tick(&mut self) {
        let started = Instant::now();
        self.now = self.now.next();
        while let Some(jump) = self.arrivals.pop_due(self.now) {
            self.land(jump);
        }
        self.fight();
        let every = self.ctx.config.rules.economy_every_ticks.max(1);
        if self.now.0.is_multiple_of(every) {
            self.economy_step();
            if self.id.is_primary() {
                self.gossip();
            }
        }
        if self.id.is_primary() {
            self.steer_instances();
        } else {
            self.instance_tick();
        }
        if self.records_since_snapshot >= self.ctx.config.snapshot_every_records {
            self.snapshot_in_background();
        }
        let cost = started.elapsed();
        self.tick_times.push(cost);
        self.ctx.metrics.system(self.id.system).tick.observe(cost);
        self.dilation
            .observe(u64::try_from(cost.as_micros()).unwrap_or(u64::MAX));
    }

    fn land(&mut self, jump: Jump) {
        let Some(event) = decide_landing(&self.state, &jump) else {
            // Landed already (seen twice): changes nothing. It landed durably before recovery
            // handed it over again, so it is settled.
            self.ctx.settle_checkpoint(jump.tseq, LANDED);
            if let Some(ack) = self.landing_acks.remove(&(jump.from, jump.xfer)) {
                let _ = ack.send(());
            }
            return;
        };
        if let Event::Arrive { player, .. } = &event {
            must(inv::landing_follows_departure(&jump, player));
        }
        let Ok(rec) = self.record(event) else { return };
        must(inv::landed_here(&self.state, &jump));
        let ctx = self.ctx.clone();
        let tseq = jump.tseq;
        let landed = Landed {
            system: self.id.system,
            instance: self.id.n,
            population: self.state.players.len(),
        };
        // Whoever waits for the landing is told now, not after this log's next sync: the
        // landing is as durable as its `jump` record, which is (recovery lands every committed
        // jump, once), and the player's next actions here come after this record in the log,
        // so their acknowledgements wait for it. Only the checkpoint waits for the record.
        ctx.directory
            .landed(&jump.player.name, landed, jump.player.version.next());
        let ack = self.landing_acks.remove(&(jump.from, jump.xfer));
        self.on_durable(rec, move |r| {
            if r.is_ok() {
                ctx.settle_checkpoint(tseq, LANDED);
                if let Some(ack) = ack {
                    let _ = ack.send(());
                }
            }
        });
    }

    /// Encodes the state now and writes it once the log is durable up to here.
    ///
    /// The acker runs the write after every earlier action, which sent the player-log lines
    /// up to here; the projector's sync makes them durable first.
    ///
    /// The tick only clones the state; hashing and encoding it (tens of milliseconds for tens
    /// of thousands of players) happen on a blocking thread, off the tick.
    fn snapshot_in_background(&mut self) {
        let Some(pos) = self.snapshot_position() else {
            return;
        };
        self.records_since_snapshot = 0;
        let state = self.state.clone();
        let reads = self.inbox.positions(&self.state);
        let ctx = self.ctx.clone();
        self.after_durable(Seq(pos.next_seq - 1), move |r| {
            if let Err(e) = r {
                let slug = state.instance_id().slug(&ctx.galaxy);
                return tracing::warn!("snapshot of {slug} skipped: {e}");
            }
            tokio::task::spawn_blocking(move || {
                let (meta, bytes) = encode_snapshot(&ctx.galaxy, pos, &state, &reads);
                if let Err(e) = ctx.projector.sync() {
                    return tracing::warn!("snapshot of {} skipped: player logs: {e}", meta.name);
                }
                if let Err(e) = ctx.storage.snapshots.put(&meta, &bytes) {
                    ctx.metrics
                        .snapshot_failures
                        .fetch_add(1, Ordering::Relaxed);
                    return tracing::warn!("snapshot of {} failed: {e}", meta.name);
                }
                ctx.metrics.snapshots.fetch_add(1, Ordering::Relaxed);
            });
        });
    }

    /// Where the log stands for a snapshot of the state as it is now (None: nothing to
    /// snapshot, or the log failed).
    fn snapshot_position(&self) -> Option<Position> {
        let pos = self.log.position();
        (pos.next_seq > 1 && self.failed.is_none()).then_some(pos)
    }

    fn encode_snapshot(&mut self) -> Option<(SnapshotMeta, Vec<u8>)> {
        let pos = self.snapshot_position()?;
        let reads = self.inbox.positions(&self.state);
        Some(encode_snapshot(&self.ctx.galaxy, pos, &self.state, &reads))
    }

    /// A spread unit's primary reads its pair subjects after `positions` (its snapshot's).
    pub fn read_pairs_after(&mut self, positions: &BTreeMap<SystemId, PairSeq>) {
        self.inbox = Inbox::from_positions(positions);
    }

    /// Stops: lets the departure pipeline finish what it holds, logs what it committed, flushes
    /// the log and writes a snapshot.
    async fn stop(self, rx: &mut mpsc::Receiver<ShardMessage>) -> Result<ShardStatus, MeshError> {
        self.close(rx, Closing::Snapshot).await
    }

    /// Stops for good, as a retired instance: like [`Self::stop`], but without a snapshot. The
    /// instance is empty; a snapshot would first need every player's log synced (the lines of
    /// its moves: seconds of fsyncs when dozens of instances retire at once), and replaying its
    /// log since its last periodic snapshot at the next start is cheap.
    async fn stop_retired(
        self,
        rx: &mut mpsc::Receiver<ShardMessage>,
    ) -> Result<ShardStatus, MeshError> {
        self.close(rx, Closing::FlushOnly).await
    }

    async fn close(
        mut self,
        rx: &mut mpsc::Receiver<ShardMessage>,
        how: Closing,
    ) -> Result<ShardStatus, MeshError> {
        let (dummy, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.departures, dummy));
        // Keep reading the queue while the pipeline drains: it reports commits through it.
        let mut pipeline_done = false;
        loop {
            let cmd = if pipeline_done {
                match rx.try_recv() {
                    Ok(cmd) => cmd,
                    Err(_) => break,
                }
            } else {
                tokio::select! {
                    _ = &mut self.departures_task => { pipeline_done = true; continue }
                    cmd = rx.recv() => match cmd { Some(c) => c, None => { pipeline_done = true; continue } },
                }
            };
            match cmd {
                ShardMessage::Stop { reply } => drop(reply.send(Err(MeshError::ShuttingDown))),
                other => self.handle(other),
            }
        }
        let snap = match how {
            Closing::Snapshot => self.encode_snapshot(),
            Closing::FlushOnly => None,
        };
        let status = self.status();
        // Let the acker finish (it sends the last player-log lines), then flush everything.
        let (dummy, _) = mpsc::unbounded_channel();
        drop(std::mem::replace(&mut self.acks, dummy));
        let _ = (&mut self.acks_task).await;
        let log = self.log.clone();
        let ctx = self.ctx.clone();
        tokio::task::spawn_blocking(move || -> Result<(), MeshError> {
            log.close().map_err(MeshError::Storage)?;
            if let Some((meta, bytes)) = snap {
                ctx.projector
                    .sync()
                    .map_err(|e| MeshError::Internal(format!("player logs: {e}")))?;
                ctx.storage
                    .snapshots
                    .put(&meta, &bytes)
                    .map_err(|e| MeshError::Snapshot(e.to_string()))?;
            }
            Ok(())
        })
        .await
        .map_err(|e| MeshError::Internal(e.to_string()))??;
        Ok(status)
    }

    fn status(&self) -> ShardStatus {
        let pos = self.log.position();
        ShardStatus {
            system: self.ctx.galaxy.name(self.id.system).to_string(),
            slug: self.ctx.galaxy.slug(self.id.system).to_string(),
            instance: self.id.n,
            shard: self.id.slug(&self.ctx.galaxy),
            instance_name: self.name(),
            merging: self.merging,
            instances: Vec::new(),
            population: self.state.players.len(),
            departing: self.state.departing.len(),
            in_transit_towards: self.arrivals.len(),
            tick: self.now,
            tick_p50_us: self.tick_times.percentile_us(50.0),
            tick_p99_us: self.tick_times.percentile_us(99.0),
            tick_late_p50_us: self.tick_late.percentile_us(50.0),
            tick_late_p99_us: self.tick_late.percentile_us(99.0),
            dilation: self.dilation.factor(),
            tick_period_us: self.dilation.period_us(),
            log_durable_seq: self.log.durable_seq(),
            log_next_seq: Seq(pos.next_seq),
            state_hash: format!("{:016x}", self.state.state_hash()),
            failed: self.failed.as_ref().map(|e| e.to_string()),
        }
    }
}

/// A snapshot of `state`, which includes the log's records before `pos`, and of where its
/// pair subjects were read to (`reads`: every jump up to there landed in `state`).
fn encode_snapshot(
    galaxy: &Galaxy,
    pos: Position,
    state: &SystemState,
    reads: &BTreeMap<SystemId, PairSeq>,
) -> (SnapshotMeta, Vec<u8>) {
    let meta = SnapshotMeta {
        name: state.instance_id().slug(galaxy),
        upto_seq: pos.next_seq - 1,
        log_offset: pos.offset,
        log_line: pos.line,
        state_hash: state.state_hash(),
    };
    let bytes = snapshot::encode(&meta, |w| {
        encode_state(w, galaxy, state);
        encode_pair_reads(w, galaxy, reads);
    });
    (meta, bytes)
}

/// How a shard closes: with a snapshot (a stop), or only flushed (a retirement).
enum Closing {
    Snapshot,
    FlushOnly,
}

/// A place in `queue` (a shard's departure queue) for one more prepared jump; `shard` names the
/// shard for the refusal.
fn reserve_departure_in(
    queue: &mpsc::Sender<PendingDeparture>,
    shard: impl FnOnce() -> String,
) -> Result<OwnedPermit<PendingDeparture>, MeshError> {
    match queue.clone().try_reserve_owned() {
        Ok(permit) => Ok(permit),
        Err(TrySendError::Full(_)) => Err(MeshError::Busy(format!(
            "{} has {DEPARTURE_QUEUE_LEN} jumps waiting for their commit",
            shard()
        ))),
        Err(TrySendError::Closed(_)) => Err(MeshError::ShuttingDown),
    }
}

/// One tick period at `tick_hz`, in microseconds: the budget a tick's work must fit in.
fn tick_budget_us(tick_hz: u32) -> u64 {
    1_000_000 / u64::from(tick_hz.max(1))
}

/// Runs each waiting action once its record is durable, in log order, and says in `acked` up
/// to which record it has (the departure pipeline waits for it: see there).
async fn acker(
    ctx: Arc<Context>,
    system: SystemId,
    log: Log,
    mut rx: mpsc::UnboundedReceiver<(Seq, Instant, AfterDurable)>,
    acked: tokio::sync::watch::Sender<Seq>,
) {
    let commits = &ctx.metrics.system(system).commit;
    while let Some((seq, appended, then)) = rx.recv().await {
        let r = log.durable(seq).await;
        // Append to durable, as the player waits for it (a failed log's records are not).
        if r.is_ok() {
            commits.observe(appended.elapsed());
        }
        then(r);
        acked.send_replace(seq);
    }
}

#[cfg(test)]
mod tests {
    use super::{reserve_departure_in, PendingDeparture, DEPARTURE_QUEUE_LEN};
    use crate::codec::Jump;
    use crate::MeshError;
    use sim::galaxy::Galaxy;
    use sim::ids::{Tick, Xfer};
    use sim::instance::InstanceId;
    use sim::player::Player;
    use store::seq::Seq;
    use tokio::sync::mpsc;

    fn departure(g: &Galaxy, xfer: Xfer) -> PendingDeparture {
        let home = g.home();
        let to = g.neighbours(home)[0];
        let jump = Jump {
            from: InstanceId::primary(home),
            xfer,
            to: InstanceId::primary(to),
            t: Tick(0),
            travel_ticks: 1,
            player: Player::starter("ann", &sim::rules::Rules::default()),
            tseq: Seq(0),
        };
        PendingDeparture {
            seq: Seq(xfer.0),
            jump,
            reply: None,
        }
    }

    /// The queue between a shard and its departure pipeline (which hands jumps over between
    /// shards) is bounded: once it holds DEPARTURE_QUEUE_LEN jumps the next is refused with
    /// `busy`, naming the shard, and a place freed by the pipeline takes the next again.
    #[test]
    fn a_full_departure_queue_refuses_the_next_jump_until_a_place_frees() {
        let g = Galaxy::default_galaxy();
        let (queue, mut pipeline) = mpsc::channel(DEPARTURE_QUEUE_LEN);
        let sol = || "Sol".to_string();
        for xfer in 1..=DEPARTURE_QUEUE_LEN as u64 {
            let place = reserve_departure_in(&queue, sol).expect("a place while not full");
            place.send(departure(&g, Xfer(xfer)));
        }
        match reserve_departure_in(&queue, sol) {
            Err(e @ MeshError::Busy(_)) => {
                assert_eq!(e.code(), "busy");
                let text = e.to_string();
                assert!(text.contains("Sol has 8192 jumps waiting"), "{text}");
            }
            Err(e) => panic!("a full queue refused with {e}, not busy"),
            Ok(_) => panic!("a full departure queue took one more jump"),
        }
        let first = pipeline.try_recv().expect("the first jump is queued");
        assert_eq!(first.jump.xfer, Xfer(1), "jumps leave in order");
        let place = reserve_departure_in(&queue, sol).expect("the freed place");
        drop(place);
        drop(pipeline);
        assert!(matches!(
            reserve_departure_in(&queue, sol),
            Err(MeshError::ShuttingDown)
        ));
    }
}
