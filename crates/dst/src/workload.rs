//! What the players and the primaries ask, as the real shard takes it: a client's request
//! (join, refuel, jump, trade; a trade in an instance goes through an escrow to the primary's
//! market), and a primary crowding its players into an instance and back (split, move, retire).
//! Each goes through `sim`'s decide, then the world's record (apply, append), then waits in the
//! acker for its record to be durable before anyone is answered, like `mesh::shard`.
//!
//! Never decides a rule itself; never answers before durability; the seed's RNG picks what to
//! ask.

use mesh::protocol::invariants::{self as inv, must};
use sim::goods::Good;
use sim::instance::{InstanceId, PRIMARY_INSTANCE};
use sim::market::{Order, Side};
use sim::system::{Event, Reject};

use mesh::protocol::commit::Prepared;

use crate::world::{jump_of, After, World};

/// Instance numbers a primary may open (each at most once a seed).
const INSTANCE_NUMBERS: [u16; 2] = [2, 3];

/// A client asks something: join if it has not, otherwise one action where it is.
pub fn request(w: &mut World, player: &str) {
    w.counts.requests += 1;
    let joined = w.clients[player].joined;
    let Some(at) = w.whereis(player) else {
        if !joined {
            w.clients.get_mut(player).expect("a client").waiting = true;
            join(w, player);
        }
        return;
    };
    w.clients.get_mut(player).expect("a client").waiting = true;
    if w.shards[&at].failed {
        w.note(
            Some(player),
            None,
            format!("{player} asks {}: failed shard", w.name(at)),
        );
        return w.reply(player, None);
    }
    match w.rng.below(10) {
        0..=1 => refuel(w, player, at),
        2..=5 => jump(w, player, at),
        _ => trade(w, player, at),
    }
}

fn join(w: &mut World, player: &str) {
    let home = InstanceId::primary(w.galaxy.home());
    if w.shards[&home].failed {
        return w.reply(player, None);
    }
    let decided = w.shards[&home]
        .state
        .decide_join(&w.galaxy, &w.rules, player, "simulated-key");
    w.note(
        Some(player),
        None,
        format!("{player} asks to join: {}", outcome(&decided)),
    );
    match decided {
        Ok(event) => answer_when_durable(w, home, player, event, "join"),
        Err(Reject::NameTaken { .. }) => {
            // Its own earlier join, whose answer a crash lost: it knows now.
            w.clients.get_mut(player).expect("a client").joined = true;
            w.reply(player, None);
        }
        Err(_) => w.reply(player, None),
    }
}

fn refuel(w: &mut World, player: &str, at: InstanceId) {
    let units = w.rng.range_inclusive(1, 20) as u32;
    let decided = w.shards[&at]
        .state
        .decide_refuel(&w.galaxy, &w.rules, player, Some(units));
    w.note(
        Some(player),
        None,
        format!(
            "{player} asks to refuel {units} at {}: {}",
            w.name(at),
            outcome(&decided)
        ),
    );
    match decided {
        Ok(event) => answer_when_durable(w, at, player, event, "refuel"),
        Err(_) => w.reply(player, None),
    }
}

fn trade(w: &mut World, player: &str, at: InstanceId) {
    let good = Good::ALL[w.rng.below(Good::ALL.len() as u64) as usize];
    let side = if w.rng.chance_percent(50) {
        Side::Buy
    } else {
        Side::Sell
    };
    let order = Order {
        side,
        good,
        qty: w.rng.range_inclusive(1, 5) as u32,
        price_limit_cr: None,
    };
    let s = &w.shards[&at].state;
    let decided = match at.is_primary() {
        true => s.decide_trade(&w.galaxy, player, &order),
        false => s.decide_escrow(&w.galaxy, player, &order),
    };
    let escrow = s.next_escrow;
    w.note(
        Some(player),
        None,
        format!(
            "{player} asks to {side:?} {} {} at {}: {}",
            order.qty,
            good.name(),
            w.name(at),
            outcome(&decided)
        ),
    );
    let event = match decided {
        Ok(event) => event,
        Err(_) => return w.reply(player, None),
    };
    if at.is_primary() {
        return answer_when_durable(w, at, player, event, "trade");
    }
    if w.record(at, event).is_err() {
        return w.reply(player, None);
    }
    let req = w.shards[&at]
        .state
        .escrow_request(escrow)
        .expect("an escrow just opened");
    let seq = w.shards[&at].log.last_seq();
    let shard = w.shards.get_mut(&at).expect("running");
    shard.acker.push_back((seq, After::AskPrimary { req }));
}

/// Records `event` about `player` and answers them once it is durable.
fn answer_when_durable(
    w: &mut World,
    at: InstanceId,
    player: &str,
    event: Event,
    what: &'static str,
) {
    if w.record(at, event).is_err() {
        return w.reply(player, None);
    }
    let version = w.shards[&at].state.players[player].version;
    let seq = w.shards[&at].log.last_seq();
    let after = After::Reply {
        player: player.to_string(),
        version,
        what,
    };
    w.shards
        .get_mut(&at)
        .expect("running")
        .acker
        .push_back((seq, after));
}

fn jump(w: &mut World, player: &str, at: InstanceId) {
    let neighbours = w.galaxy.neighbours(at.system).to_vec();
    let to = neighbours[w.rng.below(neighbours.len() as u64) as usize];
    let decided = w.shards[&at].state.decide_depart(&w.galaxy, player, to);
    w.note(
        Some(player),
        None,
        format!(
            "{player} asks to jump from {} to {}: {}",
            w.name(at),
            w.galaxy.slug(to),
            outcome(&decided)
        ),
    );
    match decided {
        Ok(event) => {
            if prepare(w, at, event).is_err() {
                w.reply(player, None);
            }
        }
        Err(_) => w.reply(player, None),
    }
}

/// Records a `depart` and hands the jump to the pipeline (as `Shard::jump`/`send_departure`).
fn prepare(w: &mut World, at: InstanceId, event: Event) -> Result<(), crate::world::ShardFailed> {
    let Event::Depart {
        xfer, ref player, ..
    } = event
    else {
        unreachable!("a prepare is a depart")
    };
    let player = player.clone();
    let seq = w.record_then(at, event, After::Nothing)?;
    let s = &w.shards[&at];
    let jump = jump_of(&w.galaxy, &w.rules, &s.state, s.now, xfer);
    must(inv::prepared_by_origin(&s.state, &jump));
    let text = w.jump_text(at, xfer);
    w.note(
        Some(&player),
        Some((at, xfer)),
        format!(
            "{player} prepares jump {text} to {} (travel {})",
            w.name(jump.to),
            jump.travel_ticks
        ),
    );
    w.shards
        .get_mut(&at)
        .expect("running")
        .queue
        .push(Prepared {
            prepare_seq: seq,
            jump,
        });
    Ok(())
}

fn outcome<T>(decided: &Result<T, Reject>) -> String {
    match decided {
        Ok(_) => "ok".into(),
        Err(r) => format!("refused ({})", r.code()),
    }
}

/// A crowded primary opens an instance (once its `split` is durable, the instance starts).
pub fn can_split(w: &World, at: InstanceId) -> Option<u16> {
    let s = &w.shards[&at];
    if !at.is_primary() || s.failed || !s.state.instances.is_empty() || s.state.players.len() < 2 {
        return None;
    }
    INSTANCE_NUMBERS
        .into_iter()
        .find(|&n| !w.instances_used.contains(&InstanceId::new(at.system, n)))
}

pub fn split(w: &mut World, at: InstanceId, n: u16) {
    let Ok(event) = w.shards[&at].state.decide_split(&w.galaxy, n) else {
        return;
    };
    w.instances_used.insert(InstanceId::new(at.system, n));
    w.counts.splits += 1;
    w.note(None, None, format!("{} splits: instance {n}", w.name(at)));
    let _ = w.record_then(at, event, After::Split { n });
}

/// A move of `player` between a primary and its running instance `to` (a jump with no fuel
/// and no travel time, through the same pipeline).
pub fn move_player(w: &mut World, at: InstanceId, player: &str, to: u16) {
    let decided = w.shards[&at].state.decide_move(&w.galaxy, player, to);
    w.note(
        Some(player),
        None,
        format!(
            "{} moves {player} to #{to}: {}",
            w.name(at),
            outcome(&decided)
        ),
    );
    if let Ok(event) = decided {
        w.counts.moves += 1;
        let _ = prepare(w, at, event);
    }
}

/// Instance `n` of primary `at` may close: running, empty, quiet, nothing on its way to or
/// from it, no move towards it prepared.
pub fn can_retire(w: &World, at: InstanceId, n: u16) -> bool {
    let inst = InstanceId::new(at.system, n);
    let (Some(p), Some(i)) = (w.shards.get(&at), w.shards.get(&inst)) else {
        return false;
    };
    let busy_channel = w.channels.iter().any(|((from, to), q)| {
        !q.is_empty()
            && (*to == inst
                || matches!(from, crate::world::Sender::Shard(x) | crate::world::Sender::Pipeline(x) if *x == inst))
    });
    !p.failed
        && !i.failed
        && i.state.population() == 0
        && i.state.escrows.is_empty()
        && i.is_quiet()
        && !busy_channel
        && !p.state.remote_trades.keys().any(|(m, _)| *m == n)
        && p.state.decide_retire(&w.galaxy, n).is_ok()
}

/// The instance stops (its log flushed and closed), then the primary records `retire`.
pub fn retire(w: &mut World, at: InstanceId, n: u16) {
    let inst = InstanceId::new(at.system, n);
    let shard = w.shards.remove(&inst).expect("a running instance");
    w.closed
        .insert(shard.log.name.clone(), shard.log.durable.clone());
    w.note(None, None, format!("{} retires instance {n}", w.name(at)));
    let event = Event::Retire { instance: n };
    let _ = w.record_then(at, event, After::Nothing);
}

/// The instance's shard starts once its `split` is durable: its log is created.
pub fn start_instance(w: &mut World, primary: InstanceId, n: u16) {
    let inst = InstanceId::new(primary.system, n);
    if w.shards.contains_key(&inst) {
        return;
    }
    let state = sim::system::SystemState::new_instance(&w.galaxy, inst);
    let log = w.create_log(&crate::world::log_name(&w.galaxy, inst));
    let shard = crate::world::Shard::new(inst, state, log);
    w.shards.insert(inst, shard);
    w.note(None, None, format!("instance {} starts", w.name(inst)));
}

/// The players of `at` that a move may take: to an open running instance (primary) or back to
/// the primary (instance).
pub fn movable(w: &World, at: InstanceId) -> Vec<(String, u16)> {
    let s = &w.shards[&at];
    if s.failed {
        return Vec::new();
    }
    let to = if at.is_primary() {
        match s
            .state
            .instances
            .iter()
            .find(|&&n| w.shards.contains_key(&InstanceId::new(at.system, n)))
        {
            Some(&n) => n,
            None => return Vec::new(),
        }
    } else {
        PRIMARY_INSTANCE
    };
    s.state
        .players
        .keys()
        .filter(|p| !s.state.has_escrow(p))
        .map(|p| (p.clone(), to))
        .collect()
}
