//! The simulated world of one seed: the galaxy, one shard per open instance (its state, its
//! log, its acker, its departure pipeline, its queue of arrivals), the transition log, the
//! channels between shards, the players' clients, and the ledgers the invariants check against.
//!
//! Owns every piece of state of a run and the primitive steps on it (record an event, run an
//! acker entry, commit a batch, deliver a message, tick a shard), each mirroring what the real
//! driver (`mesh::shard`, `mesh::departures`) does, in the same order, through the same pure
//! rules (`sim`'s decide/apply) and protocol core (`mesh::protocol`). Which step runs next is
//! the scheduler's choice, never this module's.
//!
//! Never reads a clock, never touches a file, never draws from anything but the seed's RNG.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use mesh::codec::{encode_event, encode_jump, event_kind, xfer_text, Jump};
use mesh::protocol::invariants::{self as inv, must};
use sim::galaxy::Galaxy;
use sim::goods::GOOD_COUNT;
use sim::ids::{EscrowId, Tick, Version, Xfer};
use sim::instance::InstanceId;
use sim::market::Trade;
use sim::rng::Rng;
use sim::rules::Rules;
use sim::system::{EscrowRequest, Event, SystemState};
use store::backend::{system_log, TRANSITIONS_LOG};
use store::seq::Seq;

use crate::disk::SimLog;
use crate::trace::Trace;
use mesh::protocol::arrivals::{decide_landing, Arrivals};
use mesh::protocol::commit::{self, Commits, Handover, Prepared};

/// Most jumps the pipeline appends to the transition log at once (as `MAX_DEPARTURE_BATCH`).
pub const MAX_BATCH: usize = mesh::limits::MAX_DEPARTURE_BATCH;

/// What a shard's acker runs once a record is durable (or the log failed).
#[derive(Clone, Debug)]
pub enum After {
    /// Answer the player: their action is durable at `version`.
    Reply {
        player: String,
        version: Version,
        what: &'static str,
    },
    /// Nothing waits (a prepare, `depart.done`, an arrival, a settlement).
    Nothing,
    /// A `split` is durable: the instance's shard starts.
    Split { n: u16 },
    /// An escrow is durable: ask the primary's market.
    AskPrimary { req: EscrowRequest },
    /// Primary: an instance's trade is durable here: answer it was taken.
    AnswerTaken {
        instance: InstanceId,
        escrow: EscrowId,
        player: String,
        trade: Trade,
    },
    /// Instance: a settlement is durable: answer the player, tell the primary.
    Settled {
        player: String,
        version: Version,
        escrow: EscrowId,
        refused: bool,
    },
}

/// What a primary answers an instance's trade.
#[derive(Clone, Debug)]
pub enum Answer {
    Taken(Trade),
    Refused,
    Unknown,
}

/// A message between shards, on a FIFO channel per sender and receiver.
#[derive(Clone, Debug)]
pub enum Msg {
    /// From a departure pipeline: a committed jump towards the receiver.
    Landing(Jump),
    /// From a departure pipeline to its own shard: jump `xfer` is record `tseq`.
    Committed { xfer: Xfer, tseq: Seq },
    /// From an instance to its primary: the trade of an escrow.
    RemoteTrade { req: EscrowRequest },
    /// From a primary to an instance: the answer about an escrow.
    EscrowAnswered {
        escrow: EscrowId,
        player: String,
        answer: Answer,
    },
    /// From an instance to its primary: an escrow is settled.
    RemoteTradeDone { n: u16, escrow: EscrowId },
}

/// Who sends on a channel: a shard, or its departure pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Sender {
    Shard(InstanceId),
    Pipeline(InstanceId),
}

/// One shard: an open instance of a system.
pub struct Shard {
    pub id: InstanceId,
    pub state: SystemState,
    pub now: Tick,
    pub log: SimLog,
    pub arrivals: Arrivals,
    /// Waiting for their record to be durable, in log order.
    pub acker: VecDeque<(Seq, After)>,
    /// The acker has run every entry up to this record.
    pub acked: Seq,
    /// Prepared jumps for the pipeline, in order.
    pub queue: Commits,
    /// The batch the pipeline appended to the transition log, waiting for its commit point.
    pub batch: Vec<Prepared>,
    /// The log failed: the shard answers errors until a restart.
    pub failed: bool,
    /// An instance that moves every player back to its primary.
    pub merging: bool,
}

impl Shard {
    pub fn new(id: InstanceId, state: SystemState, log: SimLog) -> Shard {
        let now = state.tick;
        Shard {
            id,
            state,
            now,
            log,
            arrivals: Arrivals::new(),
            acker: VecDeque::new(),
            acked: Seq(0),
            queue: Commits::new(),
            batch: Vec::new(),
            failed: false,
            merging: false,
        }
    }

    /// Nothing in flight inside the shard (an instance may stop).
    pub fn is_quiet(&self) -> bool {
        self.acker.is_empty()
            && self.queue.is_empty()
            && self.batch.is_empty()
            && self.arrivals.is_empty()
            && self.log.is_flushed()
    }
}

/// A shard's log failed: it records nothing and answers errors until the restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardFailed;

/// A player's client: asks one thing at a time and waits for the answer.
#[derive(Clone, Debug, Default)]
pub struct Client {
    /// Told that its join is durable (or that the name is taken by it).
    pub joined: bool,
    /// Waiting for an answer.
    pub waiting: bool,
}

/// Credits and goods as the events applied say they should be.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ledger {
    pub credits: i128,
    pub goods: [i128; GOOD_COUNT],
}

impl Ledger {
    /// What `event` creates or destroys by a named rule (everything else only moves).
    pub fn account(&mut self, event: &Event) {
        match event {
            Event::Join { player, .. } => self.credits += i128::from(player.credits),
            Event::Refuel { cost, .. } | Event::Repair { cost, .. } => {
                self.credits -= i128::from(*cost)
            }
            // The station's fee leaves the game (sim::ledger::CreditSink::TradeFee), through an
            // escrow at the primary's commit point.
            Event::Trade { trade, .. } | Event::RemoteTrade { trade, .. } => {
                self.credits -= i128::from(trade.fee_cr)
            }
            _ => {}
        }
    }

    /// What a new system's market holds (its first stocks and till).
    pub fn market(&mut self, state: &SystemState) {
        self.credits += i128::from(state.market.till_cr());
        for (sum, s) in self.goods.iter_mut().zip(state.market.stocks()) {
            *sum += i128::from(s);
        }
    }
}

/// What was acknowledged to a player, last.
#[derive(Clone, Debug)]
pub struct Ack {
    pub version: Version,
    pub what: &'static str,
    pub step: u64,
}

/// Counts of what a seed did, for the summary.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Counts {
    pub steps: u64,
    pub requests: u64,
    pub acks: u64,
    pub crashes: u64,
    pub torn_writes: u64,
    pub eio: u64,
    pub enospc: u64,
    pub slow_spells: u64,
    pub recoveries: u64,
    /// Restarts with other travel times (`ticks_per_ly`).
    pub travel_changes: u64,
    pub jumps_committed: u64,
    pub jumps_landed: u64,
    pub jumps_voided: u64,
    pub jumps_aborted: u64,
    pub jumps_completed_by_recovery: u64,
    pub landings_rehanded: u64,
    pub splits: u64,
    pub moves: u64,
    pub escrows_settled: u64,
    pub escrows_refunded: u64,
    pub audits: u64,
    /// Seeds that ran the stream world (JetStream and nodes).
    pub stream_seeds: u64,
    /// Takeovers served (the first claim of a seed included).
    pub takeovers: u64,
    pub claims: u64,
    /// Takeovers whose `lease` record was refused (an old owner appended after the read).
    pub fence_retries: u64,
    /// Takeovers given up because the logs held a newer owner's lease records.
    pub takeovers_outranked: u64,
    pub lease_records: u64,
    /// Records a taking-over node read (every log to its end: no snapshots here).
    pub records_read_at_takeover: u64,
    pub zombie_appends_refused: u64,
    pub zombies_stopped: u64,
    /// Appends of the active node refused (it was replaced without knowing).
    pub appends_fenced: u64,
    pub acks_lost: u64,
    /// Retries answered `duplicate` (the stream had the message).
    pub duplicate_acks: u64,
    /// Acks delivered a second time (ignored).
    pub acks_twice: u64,
    pub publishes_stalled: u64,
    pub elections: u64,
    pub pauses: u64,
    pub renewals: u64,
    pub renewals_unavailable: u64,
    pub leases_lost: u64,
    /// The cross-node world's own counts (seeds 2 mod 4).
    pub xnode: crate::xnode::XCounts,
}

/// The whole simulated world of a seed.
pub struct World {
    pub seed: u64,
    pub rng: Rng,
    pub galaxy: Galaxy,
    pub rules: Rules,
    pub shards: BTreeMap<InstanceId, Shard>,
    pub transitions: SimLog,
    /// Logs of retired instances (closed, durable).
    pub closed: BTreeMap<String, Vec<u8>>,
    pub channels: BTreeMap<(Sender, InstanceId), VecDeque<Msg>>,
    pub clients: BTreeMap<String, Client>,
    pub ledger: Ledger,
    /// Last action acknowledged to each player.
    pub acks: BTreeMap<String, Ack>,
    /// Jumps acknowledged to their player (never voided or aborted after).
    pub acked_jumps: BTreeSet<(InstanceId, Xfer)>,
    /// Jumps past their commit point and not yet landed: the transition log holds them, so they
    /// are a place of their player even when no shard holds them (a landing a failed shard could
    /// not record: recovery lands it).
    pub committed: BTreeMap<(InstanceId, Xfer), Jump>,
    /// Jumps that landed (an `arrive` applied), since the last restart's replay.
    pub landed: BTreeSet<(InstanceId, Xfer)>,
    /// Jumps voided, ever (they never land).
    pub voided: BTreeSet<(InstanceId, Xfer)>,
    /// Instance numbers used (never opened twice).
    pub instances_used: BTreeSet<InstanceId>,
    /// Logs whose syncs are slow until this step.
    pub slow: BTreeMap<String, u64>,
    /// The world is down: crashed, waiting for its restart.
    pub down: Option<BTreeMap<String, Vec<u8>>>,
    pub step: u64,
    pub trace: Trace,
    pub counts: Counts,
    /// The stream world (odd seeds): the simulated JetStream and the nodes; None: files.
    pub js: Option<crate::nodes::Js>,
}

/// The galaxy of a seed: three to five systems a few light years apart.
pub fn galaxy_of(rng: &mut Rng) -> Galaxy {
    const NAMES: [&str; 5] = ["Ava", "Bel", "Cor", "Dun", "Eri"];
    let n = rng.range_inclusive(3, 5) as usize;
    let mut text = String::from("home = \"Ava\"\nlane_range_ly = 8.0\n");
    for name in &NAMES[..n] {
        let mut c = || rng.below(600) as f64 / 100.0;
        let (x, y, z) = (c(), c(), c());
        text.push_str(&format!(
            "[[system]]\nname = \"{name}\"\nposition_ly = [{x:.2}, {y:.2}, {z:.2}]\n"
        ));
    }
    Galaxy::from_toml_str(&text).expect("a generated galaxy parses")
}

/// The rules of a seed: instant travel one seed in four (every jump lands as it is handed
/// over), otherwise one or two ticks a light year.
pub fn rules_of(rng: &mut Rng) -> Rules {
    Rules {
        ticks_per_ly: [0, 1, 1, 2][rng.below(4) as usize],
        ..Rules::default()
    }
}

/// The log name of an instance.
pub fn log_name(galaxy: &Galaxy, at: InstanceId) -> String {
    system_log(&at.slug(galaxy))
}

impl World {
    /// A fresh world: every primary started with an empty log, and the transition log.
    pub fn new(seed: u64, keep_trace: bool) -> World {
        let mut rng = Rng::from_seed(seed);
        let galaxy = galaxy_of(&mut rng);
        let rules = rules_of(&mut rng);
        let players = rng.range_inclusive(2, 6);
        let mut ledger = Ledger::default();
        let mut shards = BTreeMap::new();
        for id in galaxy.ids() {
            let at = InstanceId::primary(id);
            let state = SystemState::new(&galaxy, id);
            ledger.market(&state);
            let log = SimLog::create(&log_name(&galaxy, at));
            shards.insert(at, Shard::new(at, state, log));
        }
        let clients = (0..players)
            .map(|i| (format!("pilot{i}"), Client::default()))
            .collect();
        World {
            seed,
            rng,
            galaxy,
            rules,
            shards,
            transitions: SimLog::create(TRANSITIONS_LOG),
            closed: BTreeMap::new(),
            channels: BTreeMap::new(),
            clients,
            ledger,
            acks: BTreeMap::new(),
            acked_jumps: BTreeSet::new(),
            committed: BTreeMap::new(),
            landed: BTreeSet::new(),
            voided: BTreeSet::new(),
            instances_used: BTreeSet::new(),
            slow: BTreeMap::new(),
            down: None,
            step: 0,
            trace: Trace::new(keep_trace),
            counts: Counts::default(),
            js: None,
        }
    }

    /// Whether the node holding the world's shards takes steps now (files: not crashed;
    /// stream: an active node, not paused).
    pub fn serving(&self) -> bool {
        match &self.js {
            None => self.down.is_none(),
            Some(_) => crate::nodes::serving(self),
        }
    }

    /// A new, empty log (an instance starting): in the stream, written by the active node.
    pub fn create_log(&mut self, name: &str) -> SimLog {
        let mut log = SimLog::create(name);
        if let Some(js) = self.js.as_mut() {
            let a = js.active.expect("an active node starts instances");
            log.writer = Some(crate::stream::Writer::new(
                &mut js.stream,
                a.node,
                a.epoch,
                0,
            ));
        }
        log
    }

    pub fn note(&mut self, who: Option<&str>, jump: Option<(InstanceId, Xfer)>, text: String) {
        self.trace.push(self.step, who, jump, text);
    }

    pub fn name(&self, at: InstanceId) -> String {
        at.slug(&self.galaxy)
    }

    pub fn jump_text(&self, from: InstanceId, xfer: Xfer) -> String {
        xfer_text(&self.galaxy, from, xfer)
    }

    /// Sends `msg` on the channel from `from` to `to`.
    pub fn send(&mut self, from: Sender, to: InstanceId, msg: Msg) {
        self.channels.entry((from, to)).or_default().push_back(msg);
    }

    /// Answers a waiting client: Ok (the ledger of acks learns it) or an error.
    pub fn reply(&mut self, player: &str, ok: Option<(Version, &'static str)>) {
        if let Some(c) = self.clients.get_mut(player) {
            c.waiting = false;
            if let Some((_, "join")) = ok {
                c.joined = true;
            }
        }
        match ok {
            Some((version, what)) => {
                self.counts.acks += 1;
                let ack = Ack {
                    version,
                    what,
                    step: self.step,
                };
                self.acks.insert(player.to_string(), ack);
                self.note(
                    Some(player),
                    None,
                    format!("ack {player}: {what} at version {version}"),
                );
            }
            None => self.note(Some(player), None, format!("error answered to {player}")),
        }
    }

    /// Applies a decided event to shard `at` and appends it to its log (as `Shard::record`).
    /// Err: the log failed (the shard answers errors from now on).
    pub fn record(&mut self, at: InstanceId, event: Event) -> Result<Seq, ShardFailed> {
        let galaxy = &self.galaxy;
        let shard = self.shards.get_mut(&at).expect("a running shard");
        if shard.failed {
            return Err(ShardFailed);
        }
        let now = shard.now;
        if let Err(e) = shard.state.apply(now, &event) {
            panic!(
                "BUG: an event decided on {}'s state does not apply to it: {e}",
                at.slug(galaxy)
            );
        }
        self.ledger.account(&event);
        let version = shard.state.version_after(&event).unwrap_or_default();
        let appended = shard.log.append(event_kind(&event), |l| {
            encode_event(l, galaxy, at, now, &event, version)
        });
        if let Event::Arrive { from, xfer, .. } = &event {
            self.landed.insert((*from, *xfer));
        }
        match appended {
            Ok(seq) => Ok(seq),
            Err(_) => {
                shard.failed = true;
                Err(ShardFailed)
            }
        }
    }

    /// Records `event` and queues `after` for when it is durable (`on_durable`).
    pub fn record_then(
        &mut self,
        at: InstanceId,
        event: Event,
        after: After,
    ) -> Result<Seq, ShardFailed> {
        let seq = self.record(at, event)?;
        self.shards
            .get_mut(&at)
            .expect("a running shard")
            .acker
            .push_back((seq, after));
        Ok(seq)
    }

    /// Where `player` is now: the shard holding them, if any.
    pub fn whereis(&self, player: &str) -> Option<InstanceId> {
        self.shards
            .iter()
            .find(|(_, s)| s.state.players.contains_key(player))
            .map(|(at, _)| *at)
    }

    /// Every jump the world holds, once each: prepared (departing), in a pipeline, on a
    /// channel, or queued to land; with the player it carries and whether it is still a place
    /// of its player (not landed, not void).
    pub fn jumps(&self) -> BTreeMap<(InstanceId, Xfer), (&sim::player::Player, InstanceId)> {
        let mut all = BTreeMap::new();
        for (at, s) in &self.shards {
            for (x, d) in &s.state.departing {
                all.entry((*at, *x)).or_insert((&d.player, d.to));
            }
            for p in s.queue.iter().chain(&s.batch) {
                all.entry((p.jump.from, p.jump.xfer))
                    .or_insert((&p.jump.player, p.jump.to));
            }
            for j in s.arrivals.jumps() {
                all.entry((j.from, j.xfer)).or_insert((&j.player, j.to));
            }
        }
        for j in self.committed.values() {
            all.entry((j.from, j.xfer)).or_insert((&j.player, j.to));
        }
        for q in self.channels.values() {
            for m in q {
                if let Msg::Landing(j) = m {
                    all.entry((j.from, j.xfer)).or_insert((&j.player, j.to));
                }
            }
        }
        all
    }

    /// Whether jump `xfer` of `from` towards `to` is still on its way (not landed, not void).
    pub fn in_flight(&self, from: InstanceId, xfer: Xfer, to: InstanceId) -> bool {
        if self.voided.contains(&(from, xfer)) {
            return false;
        }
        match self.shards.get(&to) {
            Some(dest) => dest.state.landed_upto.get(&from).is_none_or(|&n| xfer > n),
            None => true,
        }
    }

    /// Appends the first jumps of shard `at`'s pipeline queue to the transition log (as
    /// `departures::commit`, step 2).
    pub fn pipeline_append(&mut self, at: InstanceId) {
        let galaxy = &self.galaxy;
        let shard = self.shards.get_mut(&at).expect("a running shard");
        let mut batch = shard.queue.take_batch(MAX_BATCH);
        let mut first = None;
        let mut failed = false;
        for p in &batch {
            match self
                .transitions
                .append("jump", |l| encode_jump(l, galaxy, &p.jump))
            {
                Ok(seq) => {
                    first.get_or_insert(seq);
                }
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            // The transition log failed: the batch is answered with errors; recovery settles
            // what the disk holds.
            let players: Vec<String> = batch
                .iter()
                .filter(|p| p.jump.to.system != p.jump.from.system)
                .map(|p| p.jump.player.name.clone())
                .collect();
            for name in players {
                self.reply(&name, None);
            }
            let text = format!(
                "pipeline of {}: transition log failed",
                at.slug(&self.galaxy)
            );
            self.note(None, None, text);
            return;
        }
        commit::appended(&mut batch, first.expect("a batch is never empty"));
        let text = batch
            .iter()
            .map(|p| {
                format!(
                    "{}@t{}",
                    xfer_text(galaxy, p.jump.from, p.jump.xfer),
                    p.jump.tseq
                )
            })
            .collect::<Vec<_>>()
            .join(" ");
        shard.batch = batch;
        self.note(None, None, format!("pipeline appends jumps {text}"));
    }

    /// Whether shard `at`'s appended batch has reached its commit point (both records durable,
    /// the acker past the prepares), or failed (a log failed first).
    pub fn commit_ready(&self, at: InstanceId) -> Option<bool> {
        let s = &self.shards[&at];
        if s.batch.is_empty() {
            return None;
        }
        let last_prepare = commit::last_prepare(&s.batch);
        let (own, trans) = (s.log.durable_seq(), self.transitions.durable_seq());
        // The pipeline also waits for the acker past the prepares (their lines go first).
        if commit::is_committed(&s.batch, own, trans) && s.acked >= last_prepare {
            return Some(true);
        }
        let origin_lost = own < last_prepare && s.log.failed().is_some();
        let trans_lost = trans < commit::last_jump(&s.batch) && self.transitions.failed().is_some();
        (origin_lost || trans_lost).then_some(false)
    }

    /// The commit of shard `at`'s batch (`departures::run` after `commit`), in the core's
    /// order: the destination handed the jump, the origin told, the player answered.
    pub fn commit(&mut self, at: InstanceId) {
        let ok = self.commit_ready(at).expect("commit only when decided");
        let batch = std::mem::take(&mut self.shards.get_mut(&at).expect("running").batch);
        if !ok {
            for p in batch {
                let key = (p.jump.from, p.jump.xfer);
                let name = p.jump.player.name.clone();
                let text = self.jump_text(p.jump.from, p.jump.xfer);
                self.note(
                    Some(&name),
                    Some(key),
                    format!("jump {text} of {name} fails: a log failed"),
                );
                if p.jump.to.system != p.jump.from.system {
                    self.reply(&name, None);
                }
            }
            return;
        }
        for step in commit::hand_over(batch) {
            match step {
                Handover::Land(jump) => {
                    let key = (jump.from, jump.xfer);
                    let name = jump.player.name.clone();
                    let text = self.jump_text(jump.from, jump.xfer);
                    self.counts.jumps_committed += 1;
                    let line = format!("jump {text} of {name} committed (t{})", jump.tseq);
                    self.note(Some(&name), Some(key), line);
                    self.committed.insert(key, jump.clone());
                    self.send(Sender::Pipeline(at), jump.to, Msg::Landing(jump));
                }
                Handover::Done { origin, xfer, tseq } => {
                    self.send(Sender::Pipeline(at), origin, Msg::Committed { xfer, tseq });
                }
                Handover::Answer(jump) => {
                    // A move between instances answers nobody.
                    if jump.to.system != jump.from.system {
                        self.acked_jumps.insert((jump.from, jump.xfer));
                        let version = jump.player.version;
                        self.reply(&jump.player.name, Some((version, "jump")));
                    }
                }
            }
        }
    }

    /// Lands a jump handed to shard `at` now (as `Shard::land`).
    pub fn land(&mut self, at: InstanceId, jump: Jump) {
        let key = (jump.from, jump.xfer);
        let name = jump.player.name.clone();
        let text = self.jump_text(jump.from, jump.xfer);
        let dest = &self.shards[&at];
        let Some(event) = decide_landing(&dest.state, &jump) else {
            self.note(
                Some(&name),
                Some(key),
                format!(
                    "jump {text} of {name}: landed already, dropped at {}",
                    at.slug(&self.galaxy)
                ),
            );
            crate::invariants::dropped_only_if_landed(self, &jump)
                .map_err(|v| v.fail())
                .ok();
            return;
        };
        if self.shards[&at].failed {
            // Its record fails, as the real shard's would: recovery lands it (the transition
            // log holds it), and the jumps behind it wait for it there.
            let line = format!("jump {text} of {name}: arrive not recorded (log failed)");
            return self.note(Some(&name), Some(key), line);
        }
        if let Event::Arrive { player, .. } = &event {
            must(inv::landing_follows_departure(&jump, player));
        }
        if let Err(v) = crate::invariants::lands_in_order(self, &jump) {
            v.fail();
        }
        if self.landed.contains(&key) {
            crate::invariants::fail_now(crate::invariants::Violation::jump(
                &name,
                key,
                format!(
                    "jump {text} of {name} lands a second time, at {}",
                    at.slug(&self.galaxy)
                ),
            ));
        }
        if self.voided.contains(&key) {
            crate::invariants::fail_now(crate::invariants::Violation::jump(
                &name,
                key,
                format!(
                    "jump {text} of {name} was voided, and lands at {}",
                    at.slug(&self.galaxy)
                ),
            ));
        }
        if self.record_then(at, event, After::Nothing).is_err() {
            self.note(
                Some(&name),
                Some(key),
                format!("jump {text} of {name}: arrive not recorded (log failed)"),
            );
            return;
        }
        must(inv::landed_here(&self.shards[&at].state, &jump));
        self.committed.remove(&key);
        self.counts.jumps_landed += 1;
        self.note(
            Some(&name),
            Some(key),
            format!("jump {text} of {name} lands at {}", at.slug(&self.galaxy)),
        );
    }

    /// A jump handed to shard `at`: lands at once, or queued (as `Shard::on_landing`).
    pub fn on_landing(&mut self, at: InstanceId, jump: Jump) {
        let s = self.shards.get_mut(&at).expect("running");
        let now = s.now;
        if let Some(j) = s.arrivals.handed(now, jump) {
            self.land(at, j);
        }
    }
}

/// A `Depart` event's jump, as the shard builds it for the pipeline.
pub fn jump_of(galaxy: &Galaxy, rules: &Rules, state: &SystemState, now: Tick, xfer: Xfer) -> Jump {
    let d = &state.departing[&xfer];
    let from = state.instance_id();
    let travel_ticks = if d.to.system == from.system {
        0
    } else {
        galaxy.travel_ticks(from.system, d.to.system, rules.ticks_per_ly)
    };
    Jump {
        from,
        xfer,
        to: d.to,
        t: now,
        travel_ticks,
        player: d.player.clone(),
        tseq: Seq(0),
    }
}
