//! The scheduler: at each step, every action the real system could take next is listed with a
//! weight, and the seed's RNG picks one. Requests, log writes and syncs, durability notices to
//! the ackers, pipeline batches and commits, message deliveries (FIFO per sender and receiver,
//! channels interleaving freely), ticks, instance steering, and faults (crash, disk error,
//! slow disk). A crash is always followed by a restart with recovery.
//!
//! Owns the choice of what happens next and nothing else: each action is carried out by the
//! world, the workload or recovery. Never reads a clock.

use mesh::protocol::invariants::{self as inv, must};
use sim::instance::InstanceId;

use crate::disk::DiskError;
use crate::world::{After, Answer, Msg, Sender, World};
use crate::{recovery, workload};

/// Which log an action is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogId {
    Shard(InstanceId),
    Transitions,
}

/// One thing that can happen next.
#[derive(Clone, Debug)]
pub enum Action {
    Request(String),
    Write(LogId),
    Sync(LogId),
    Ack(InstanceId),
    Append(InstanceId),
    Commit(InstanceId),
    Deliver(Sender, InstanceId),
    Tick(InstanceId),
    Split(InstanceId, u16),
    Move(InstanceId, String, u16),
    Retire(InstanceId, u16),
    DiskFault(LogId, DiskError),
    Slow(LogId),
    Crash,
    Restart,
    /// The stream world's nodes, lease, stream faults and zombie.
    Node(crate::nodes::NodeAction),
}

/// How often faults are drawn, as weights against the ordinary actions (about 100 each).
#[derive(Clone, Copy, Debug)]
pub struct Faults {
    pub crash: u64,
    pub disk: u64,
    pub slow: u64,
}

impl Default for Faults {
    fn default() -> Faults {
        Faults {
            crash: 2,
            disk: 1,
            slow: 1,
        }
    }
}

/// How many steps a slow disk stays slow.
const SLOW_SPELL_STEPS: u64 = 200;

/// Every enabled action with its weight.
pub fn enabled(w: &World, faults: Faults) -> Vec<(u64, Action)> {
    let mut all = Vec::new();
    if w.down.is_some() {
        all.push((1, Action::Restart));
        return all;
    }
    if w.js.is_some() {
        let any_failed = w.shards.values().any(|s| s.failed) || w.transitions.failed().is_some();
        // A node whose log is refused exits (it was replaced): soon.
        let crash = if any_failed { 200 } else { faults.crash };
        crate::nodes::enabled(w, crash, faults.disk, &mut all);
        if !w.serving() {
            return all;
        }
    }
    for (name, c) in &w.clients {
        if !c.waiting && (!c.joined || w.whereis(name).is_some()) {
            all.push((60, Action::Request(name.clone())));
        }
    }
    let mut any_failed = w.transitions.failed().is_some();
    let sync_weight = |w: &World, name: &str| match w.slow.get(name) {
        Some(&until) if until > w.step => 5,
        _ => 100,
    };
    let mut healthy = Vec::new();
    let logs = w
        .shards
        .iter()
        .map(|(at, s)| (LogId::Shard(*at), &s.log))
        .chain(std::iter::once((LogId::Transitions, &w.transitions)));
    for (id, log) in logs {
        if log.can_write() {
            all.push((sync_weight(w, &log.name), Action::Write(id.clone())));
        }
        if log.can_sync() {
            all.push((sync_weight(w, &log.name), Action::Sync(id.clone())));
        }
        if log.failed().is_none() {
            healthy.push(id);
        }
    }
    // Faults are drawn per world, then a log among the healthy ones (disks: the files' world).
    if !healthy.is_empty() && w.js.is_none() {
        let id = healthy[(w.step as usize) % healthy.len()].clone();
        let e = if w.step.is_multiple_of(2) {
            DiskError::Eio
        } else {
            DiskError::Enospc
        };
        all.push((faults.disk, Action::DiskFault(id.clone(), e)));
        all.push((faults.slow, Action::Slow(id)));
    }
    for (at, s) in &w.shards {
        any_failed |= s.failed;
        if let Some((seq, _)) = s.acker.front() {
            if s.log.durable_seq() >= *seq || s.log.failed().is_some() {
                all.push((100, Action::Ack(*at)));
            }
        }
        if s.batch.is_empty() && !s.queue.is_empty() {
            all.push((100, Action::Append(*at)));
        }
        if w.commit_ready(*at).is_some() {
            all.push((100, Action::Commit(*at)));
        }
        all.push((30, Action::Tick(*at)));
        if let Some(n) = workload::can_split(w, *at) {
            all.push((10, Action::Split(*at, n)));
        }
        let movable = workload::movable(w, *at);
        if !movable.is_empty() {
            let (p, to) = movable[(w.step as usize) % movable.len()].clone();
            all.push((40, Action::Move(*at, p, to)));
        }
        if at.is_primary() {
            for &n in &s.state.instances {
                if workload::can_retire(w, *at, n) {
                    all.push((30, Action::Retire(*at, n)));
                }
            }
        }
    }
    for ((from, to), q) in &w.channels {
        if !q.is_empty() {
            all.push((100, Action::Deliver(*from, *to)));
        }
    }
    // A failed shard is restarted by restarting the whole process, soon.
    if w.js.is_none() {
        let crash = if any_failed { 200 } else { faults.crash };
        all.push((crash, Action::Crash));
    }
    all
}

/// Picks one enabled action by weight.
pub fn pick(w: &mut World, faults: Faults) -> Action {
    let all = enabled(w, faults);
    let total: u64 = all.iter().map(|(weight, _)| weight).sum();
    let mut r = w.rng.below(total);
    for (weight, a) in all {
        if r < weight {
            return a;
        }
        r -= weight;
    }
    unreachable!("a pick below the total weight")
}

/// Carries out `action`.
pub fn run(w: &mut World, action: Action) -> Result<(), crate::invariants::Violation> {
    match action {
        Action::Request(p) => workload::request(w, &p),
        Action::Write(id) if w.js.is_some() => return crate::nodes::send_log(w, id),
        Action::Sync(id) if w.js.is_some() => return crate::nodes::receive_log(w, id),
        Action::Write(id) => write_or_sync(w, id, true),
        Action::Sync(id) => write_or_sync(w, id, false),
        Action::Ack(at) => ack(w, at),
        Action::Append(at) => w.pipeline_append(at),
        Action::Commit(at) => w.commit(at),
        Action::Deliver(from, to) => deliver(w, from, to),
        Action::Tick(at) => tick(w, at),
        Action::Split(at, n) => workload::split(w, at, n),
        Action::Move(at, p, to) => workload::move_player(w, at, &p, to),
        Action::Retire(at, n) => workload::retire(w, at, n),
        Action::DiskFault(id, e) => {
            let name = log_mut(w, &id).name.clone();
            log_mut(w, &id).arm(e);
            w.note(
                None,
                None,
                format!(
                    "FAULT armed: {} on the next write or sync of {name}",
                    e.text()
                ),
            );
        }
        Action::Slow(id) => {
            let name = log_mut(w, &id).name.clone();
            w.counts.slow_spells += 1;
            w.slow.insert(name.clone(), w.step + SLOW_SPELL_STEPS);
            w.note(
                None,
                None,
                format!("SLOW disk: {name} for {SLOW_SPELL_STEPS} steps"),
            );
        }
        Action::Crash if w.js.is_some() => {
            w.counts.crashes += 1;
            crate::nodes::stop_active(w, "crashes");
        }
        Action::Crash => recovery::crash(w),
        Action::Restart => return recovery::restart(w).map(|_| ()),
        Action::Node(a) => return crate::nodes::run(w, a),
    }
    Ok(())
}

fn log_mut<'a>(w: &'a mut World, id: &LogId) -> &'a mut crate::disk::SimLog {
    match id {
        LogId::Transitions => &mut w.transitions,
        LogId::Shard(at) => &mut w.shards.get_mut(at).expect("running").log,
    }
}

fn write_or_sync(w: &mut World, id: LogId, write: bool) {
    let log = log_mut(w, &id);
    let r = if write { log.write() } else { log.sync() };
    let name = log.name.clone();
    let durable = log.durable_seq();
    match r {
        Ok(()) if write => w.note(None, None, format!("{name}: batch written")),
        Ok(()) => w.note(
            None,
            None,
            format!("{name}: synced, durable up to {durable}"),
        ),
        Err(e) => {
            match e {
                DiskError::Eio => w.counts.eio += 1,
                DiskError::Enospc => w.counts.enospc += 1,
                DiskError::Fenced => unreachable!("a file is never fenced"),
            }
            if let LogId::Shard(at) = id {
                w.shards.get_mut(&at).expect("running").failed = true;
            }
            w.note(None, None, format!("DISK ERROR: {name}: {}", e.text()));
        }
    }
}

/// The acker of `at` runs its first entry: the record is durable, or the log failed.
fn ack(w: &mut World, at: InstanceId) {
    let s = w.shards.get_mut(&at).expect("running");
    let (seq, after) = s.acker.pop_front().expect("an entry");
    let ok = s.log.durable_seq() >= seq;
    if ok {
        s.acked = seq;
    }
    match after {
        After::Nothing => {}
        After::Reply {
            player,
            version,
            what,
        } => w.reply(&player, ok.then_some((version, what))),
        After::Split { n } => {
            if ok {
                workload::start_instance(w, at, n);
            }
        }
        After::AskPrimary { req } => {
            if ok {
                let primary = InstanceId::primary(at.system);
                w.send(Sender::Shard(at), primary, Msg::RemoteTrade { req });
            } else {
                w.reply(&req.player, None);
            }
        }
        After::AnswerTaken {
            instance,
            escrow,
            player,
            trade,
        } => {
            let answer = if ok {
                Answer::Taken(trade)
            } else {
                Answer::Unknown
            };
            let msg = Msg::EscrowAnswered {
                escrow,
                player,
                answer,
            };
            w.send(Sender::Shard(at), instance, msg);
        }
        After::Settled {
            player,
            version,
            escrow,
            refused,
        } => {
            if ok && !refused {
                w.reply(&player, Some((version, "trade")));
                let primary = InstanceId::primary(at.system);
                let msg = Msg::RemoteTradeDone { n: at.n, escrow };
                w.send(Sender::Shard(at), primary, msg);
            } else {
                w.reply(&player, None);
            }
        }
    }
}

/// Delivers the first message of the channel from `from` to `to`.
fn deliver(w: &mut World, from: Sender, to: InstanceId) {
    let msg = w
        .channels
        .get_mut(&(from, to))
        .and_then(|q| q.pop_front())
        .expect("a message");
    if !w.shards.contains_key(&to) {
        w.note(
            None,
            None,
            format!("message to {} dropped: not running", w.name(to)),
        );
        return;
    }
    let failed = w.shards[&to].failed;
    match msg {
        Msg::Landing(jump) => {
            let key = (jump.from, jump.xfer);
            let name = jump.player.name.clone();
            let text = w.jump_text(jump.from, jump.xfer);
            w.note(
                Some(&name),
                Some(key),
                format!("jump {text} of {name} handed to {}", w.name(to)),
            );
            must(inv::handed_to_its_destination(&w.shards[&to].state, &jump));
            w.on_landing(to, jump);
        }
        Msg::Committed { xfer, tseq } => {
            let done = mesh::protocol::commit::done(&w.shards[&to].state, xfer, tseq);
            let text = w.jump_text(to, xfer);
            let name = w.shards[&to].state.departing[&xfer].player.name.clone();
            w.note(
                Some(&name),
                Some((to, xfer)),
                format!("{} logs depart.done of {text}", w.name(to)),
            );
            let _ = w.record_then(to, done, After::Nothing);
        }
        Msg::RemoteTrade { req } => {
            let instance = InstanceId::new(to.system, req.instance);
            let decided = w.shards[&to].state.decide_remote_trade(&w.galaxy, &req);
            w.note(
                Some(&req.player),
                None,
                format!(
                    "{} takes escrow {} of {}: {}",
                    w.name(to),
                    req.escrow,
                    req.player,
                    if decided.is_ok() { "ok" } else { "refused" }
                ),
            );
            let (escrow, player) = (req.escrow, req.player.clone());
            let answer = |answer| Msg::EscrowAnswered {
                escrow,
                player: player.clone(),
                answer,
            };
            match decided {
                Err(_) => w.send(Sender::Shard(to), instance, answer(Answer::Refused)),
                Ok(event) => {
                    let sim::system::Event::RemoteTrade { trade, .. } = event else {
                        unreachable!("a remote trade")
                    };
                    let after = After::AnswerTaken {
                        instance,
                        escrow,
                        player: player.clone(),
                        trade,
                    };
                    if failed || w.record_then(to, event, after).is_err() {
                        w.send(Sender::Shard(to), instance, answer(Answer::Unknown));
                    }
                }
            }
        }
        Msg::EscrowAnswered {
            escrow,
            player,
            answer,
        } => {
            let taken = match answer {
                Answer::Taken(trade) => Some(trade),
                Answer::Refused => None,
                Answer::Unknown => return w.reply(&player, None),
            };
            let Some(event) = w.shards[&to].state.decide_settle(escrow, taken.as_ref()) else {
                return w.reply(&player, None);
            };
            w.note(
                Some(&player),
                None,
                format!(
                    "{} settles escrow {escrow} of {player}: {}",
                    w.name(to),
                    if taken.is_some() { "taken" } else { "refunded" }
                ),
            );
            if taken.is_some() {
                w.counts.escrows_settled += 1;
            } else {
                w.counts.escrows_refunded += 1;
            }
            if failed || w.record(to, event).is_err() {
                return w.reply(&player, None);
            }
            let version = w.shards[&to].state.players[&player].version;
            let seq = w.shards[&to].log.last_seq();
            let after = After::Settled {
                player,
                version,
                escrow,
                refused: taken.is_none(),
            };
            w.shards
                .get_mut(&to)
                .expect("running")
                .acker
                .push_back((seq, after));
        }
        Msg::RemoteTradeDone { n, escrow } => {
            if w.shards[&to].state.remote_trades.contains_key(&(n, escrow)) {
                let event = sim::system::Event::RemoteTradeDone {
                    instance: n,
                    escrow,
                };
                let _ = w.record_then(to, event, After::Nothing);
            }
        }
    }
}

/// A tick of shard `at`: the clock moves on and the jumps due land (as `Shard::tick`).
fn tick(w: &mut World, at: InstanceId) {
    let s = w.shards.get_mut(&at).expect("running");
    s.now = s.now.next();
    let now = s.now;
    while let Some(jump) = w
        .shards
        .get_mut(&at)
        .expect("running")
        .arrivals
        .pop_due(now)
    {
        w.land(at, jump);
    }
}
