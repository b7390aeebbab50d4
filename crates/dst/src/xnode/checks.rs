//! The cross-node world's invariants, judged on the truth: what the stream stored (each unit's
//! log replayed message by message as it is stored, and the pair subjects), never on what a
//! node holds in memory (a node may be a zombie).
//!
//! - at every message stored: no message of an epoch below its subject's last `lease` record
//!   (`no_zombie_write`: a zombie origin writes nothing more, to its log or a pair subject); a
//!   unit's log replays (`apply` accepts every event); a jump is on a pair subject only after
//!   its `depart` is in its origin's log (`published_after_commit`), and in number order per
//!   origin; an arrival lands a jump once and after every earlier jump of its origin towards
//!   the same unit (`lands_once_in_order`); no acknowledged jump is aborted;
//! - after every step: each player who joined is in exactly one place, a system or one jump in
//!   flight (`one_place`), and credits are conserved (`conservation`);
//! - at every acknowledgement: what is acknowledged is durable (`ack_is_durable`);
//! - at the end, once everything is quiet: every acknowledged jump landed (`acked_jumps_land`).
//!
//! Never changes the world but for the truth it keeps; a violation is returned.

use std::collections::{BTreeMap, BTreeSet};

use mesh::codec::Jump;
use mesh::protocol::handover::Pair;
use sim::galaxy::{Galaxy, SystemId};
use sim::ids::{Version, Xfer};
use sim::instance::InstanceId;
use sim::player::Player;
use sim::system::{Event, SystemState};

use super::js::{Body, Msg, Records};
use crate::invariants::Violation;

/// A jump, by origin and number.
pub type Key = (InstanceId, Xfer);

/// What the stream holds, replayed as it is stored.
#[derive(Clone, Debug)]
pub struct Truth {
    /// Each unit's state: its log replayed.
    pub mirror: BTreeMap<SystemId, SystemState>,
    /// Players whose join is durable.
    pub joined: BTreeSet<String>,
    /// Credits the rules created (joins) less those destroyed (fuel bought).
    pub credits: i128,
    /// Jumps whose `depart` is durable: the player as they left.
    pub departs: BTreeMap<Key, Player>,
    /// Jumps stored on a pair subject (the first copy).
    pub on_pair: BTreeMap<Key, Jump>,
    /// Jumps whose `depart.abort` is durable.
    pub aborted: BTreeSet<Key>,
    /// Jumps whose `arrive` is durable.
    pub arrived: BTreeSet<Key>,
    /// Jumps acknowledged to their player.
    pub acked_jumps: BTreeSet<Key>,
    /// Per pair and origin: the last number stored on the pair subject.
    last_on_pair: BTreeMap<(Pair, InstanceId), Xfer>,
    /// Copies of a jump stored again (a duplicate past the window).
    pub duplicates_stored: u64,
    /// The jumps in flight ([`Truth::in_flight`]), kept as records are stored, with their
    /// player as they left: the checks after every step read it instead of every jump ever.
    flying: BTreeMap<Key, Player>,
    /// Jumps whose `depart` was lost with a lost region (after its copy's last message): a
    /// copy of their jump on a survivor's pair subject is no publish before the commit.
    pub departs_lost: BTreeSet<Key>,
}

impl Truth {
    pub fn new(galaxy: &Galaxy) -> Truth {
        let mirror = galaxy
            .ids()
            .map(|id| (id, SystemState::new(galaxy, id)))
            .collect();
        Truth {
            mirror,
            joined: BTreeSet::new(),
            credits: 0,
            departs: BTreeMap::new(),
            on_pair: BTreeMap::new(),
            aborted: BTreeSet::new(),
            arrived: BTreeSet::new(),
            acked_jumps: BTreeSet::new(),
            last_on_pair: BTreeMap::new(),
            duplicates_stored: 0,
            flying: BTreeMap::new(),
            departs_lost: BTreeSet::new(),
        }
    }

    /// Departures a promotion's reconcile applied (their events stored already): the player
    /// left as the jump carries them (in flight, unless landed), and the credits the lost
    /// records changed and the jump carried are the rules' doing.
    pub fn reconciled(&mut self, departures: &[mesh::protocol::promote::Departure]) {
        for d in departures {
            let key = (d.jump.from, d.jump.xfer);
            if d.copy_player.is_some() {
                self.departs.insert(key, d.jump.player.clone());
            }
            if self.arrived.contains(&key) {
                self.flying.remove(&key);
            } else if self.on_pair.contains_key(&key) {
                self.flying.insert(key, d.jump.player.clone());
            }
            self.credits -= d.credits_changed_in_lost_records();
        }
    }

    /// Whether jump `key` is in flight: its `depart` durable and not aborted, or on a pair
    /// subject, and not landed.
    pub fn in_flight(&self, key: &Key) -> bool {
        !self.arrived.contains(key)
            && (self.on_pair.contains_key(key)
                || (self.departs.contains_key(key) && !self.aborted.contains(key)))
    }

    /// The jumps kept as in flight are exactly those [`Truth::in_flight`] finds from every
    /// jump ever stored (checked at the end of a seed: it reads them all).
    pub fn flying_is_kept_right(&self) -> Result<(), Violation> {
        let keys = self.departs.keys().chain(self.on_pair.keys());
        let from_all: std::collections::BTreeSet<&Key> =
            keys.filter(|k| self.in_flight(k)).collect();
        let kept: std::collections::BTreeSet<&Key> = self.flying.keys().collect();
        if from_all != kept {
            return Err(Violation {
                invariant: "flying_kept_right",
                player: None,
                jump: None,
                what: format!("in flight by the logs {from_all:?}, kept {kept:?}"),
            });
        }
        Ok(())
    }

    /// The jumps in flight, with their player as they left.
    pub fn flying(&self) -> impl Iterator<Item = (&Key, &Player)> + '_ {
        self.flying.iter()
    }

    /// A message stored in unit `unit`'s log, whose last `lease` record before it was of epoch
    /// `fenced_at`.
    pub fn stored_unit(
        &mut self,
        galaxy: &Galaxy,
        unit: SystemId,
        fenced_at: Option<u64>,
        msg: &Msg<Records>,
    ) -> Result<(), Violation> {
        let slug = galaxy.slug(unit).to_string();
        no_zombie_write(&format!("sys.{slug}"), fenced_at, msg.epoch, msg.seq)?;
        let Body::Data(records) = &msg.body else {
            return Ok(());
        };
        for (t, event) in records {
            self.stored_event(galaxy, unit, *t, event)?;
        }
        Ok(())
    }

    fn stored_event(
        &mut self,
        galaxy: &Galaxy,
        unit: SystemId,
        t: sim::ids::Tick,
        event: &Event,
    ) -> Result<(), Violation> {
        let at = InstanceId::primary(unit);
        if let Event::Arrive { from, xfer, player } = event {
            self.lands_once_in_order(galaxy, at, (*from, *xfer), &player.name)?;
        }
        if let Event::DepartAbort { xfer, player } = event {
            if self.acked_jumps.contains(&(at, *xfer)) {
                let what = format!(
                    "{player}'s jump {} was acknowledged, and its origin aborts it",
                    mesh::codec::xfer_text(galaxy, at, *xfer)
                );
                return Err(Violation::jump(player, (at, *xfer), what));
            }
            self.aborted.insert((at, *xfer));
            if !self.on_pair.contains_key(&(at, *xfer)) {
                self.flying.remove(&(at, *xfer));
            }
        }
        let state = self.mirror.get_mut(&unit).expect("every unit is mirrored");
        state.apply(t, event).map_err(|e| Violation {
            invariant: "log_replays",
            player: None,
            jump: None,
            what: format!(
                "{}'s log does not replay: {event:?}: {e}",
                galaxy.slug(unit)
            ),
        })?;
        match event {
            Event::Join { player, .. } => {
                self.joined.insert(player.name.clone());
                self.credits += i128::from(player.credits);
            }
            Event::Refuel { cost, .. } | Event::Repair { cost, .. } => {
                self.credits -= i128::from(*cost)
            }
            Event::Trade { trade, .. } => self.credits -= i128::from(trade.fee_cr),
            Event::Depart { xfer, .. } => {
                let player = state.departing[xfer].player.clone();
                self.flying.insert((at, *xfer), player.clone());
                self.departs.insert((at, *xfer), player);
            }
            Event::Arrive { from, xfer, .. } => {
                self.arrived.insert((*from, *xfer));
                self.flying.remove(&(*from, *xfer));
            }
            _ => {}
        }
        Ok(())
    }

    fn lands_once_in_order(
        &self,
        galaxy: &Galaxy,
        at: InstanceId,
        key: Key,
        player: &str,
    ) -> Result<(), Violation> {
        let text = |k: &Key| mesh::codec::xfer_text(galaxy, k.0, k.1);
        if self.arrived.contains(&key) {
            let what = format!(
                "jump {} of {player} lands a second time, at {}",
                text(&key),
                galaxy.slug(at.system)
            );
            return Err(Violation::jump(player, key, what));
        }
        let earlier = self
            .on_pair
            .range((key.0, Xfer(0))..key)
            .filter(|(_, j)| j.to == at);
        for (k, j) in earlier {
            if !self.arrived.contains(k) {
                let what = format!(
                    "jump {} of {player} lands at {} before the earlier jump {} of {}",
                    text(&key),
                    galaxy.slug(at.system),
                    text(k),
                    j.player.name
                );
                return Err(Violation::jump(player, key, what));
            }
        }
        Ok(())
    }

    /// A message stored on `pair`'s subject, whose last `lease` record before it was of epoch
    /// `fenced_at`.
    pub fn stored_pair(
        &mut self,
        galaxy: &Galaxy,
        pair: Pair,
        fenced_at: Option<u64>,
        msg: &Msg<Jump>,
    ) -> Result<(), Violation> {
        let subject = format!(
            "mlt.jump.{}.{}",
            galaxy.slug(pair.from),
            galaxy.slug(pair.to)
        );
        no_zombie_write(&subject, fenced_at, msg.epoch, msg.seq)?;
        let Body::Data(jump) = &msg.body else {
            return Ok(());
        };
        let key = (jump.from, jump.xfer);
        let name = &jump.player.name;
        let text = mesh::codec::xfer_text(galaxy, jump.from, jump.xfer);
        if !self.departs.contains_key(&key) && !self.departs_lost.contains(&key) {
            let what = format!(
                "jump {text} of {name} is on {subject} but its depart is not in {}'s log",
                galaxy.slug(pair.from)
            );
            return Err(Violation {
                invariant: "published_after_commit",
                player: Some(name.clone()),
                jump: Some(key),
                what,
            });
        }
        if self.on_pair.contains_key(&key) {
            self.duplicates_stored += 1;
            return Ok(());
        }
        let previous = self.last_on_pair.insert((pair, jump.from), jump.xfer);
        mesh::protocol::handover::stored_in_order(jump, previous).map_err(|v| Violation {
            invariant: "pair_in_order",
            player: Some(name.clone()),
            jump: Some(key),
            what: format!("on {subject}: {v}"),
        })?;
        self.on_pair.insert(key, jump.clone());
        if !self.arrived.contains(&key) {
            self.flying.insert(key, jump.player.clone());
        }
        Ok(())
    }

    /// Every player who joined is in exactly one place: one system, or one jump in flight.
    pub fn one_place(&self, galaxy: &Galaxy) -> Result<(), Violation> {
        let mut places: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (id, state) in &self.mirror {
            for name in state.players.keys() {
                let at = galaxy.slug(*id).to_string();
                places.entry(name.as_str()).or_default().push(at);
            }
        }
        for (key, player) in self.flying() {
            let text = mesh::codec::xfer_text(galaxy, key.0, key.1);
            places
                .entry(player.name.as_str())
                .or_default()
                .push(format!("jump {text}"));
        }
        for name in &self.joined {
            let here = places.get(name.as_str()).map_or(&[][..], |p| &p[..]);
            if here.len() != 1 {
                let what = format!("{name} is in {} places: {here:?}", here.len());
                return Err(Violation::player("one_place", name, what));
            }
        }
        Ok(())
    }

    /// Credits held (players in systems and in flight) equal what joins created less what fuel
    /// destroyed.
    pub fn conservation(&self) -> Result<(), Violation> {
        let in_systems: i128 = self
            .mirror
            .values()
            .flat_map(|s| s.players.values())
            .map(|p| i128::from(p.credits))
            .sum();
        let flying: i128 = self.flying().map(|(_, p)| i128::from(p.credits)).sum();
        let held = in_systems + flying;
        if held != self.credits {
            return Err(Violation {
                invariant: "conservation",
                player: None,
                jump: None,
                what: format!(
                    "players hold {held} credits, the rules made {}",
                    self.credits
                ),
            });
        }
        Ok(())
    }

    /// `player` is told their action is durable at `version`: the stream must hold them at
    /// that version or later (in a system, or in flight).
    pub fn ack_is_durable(&self, player: &str, version: Version) -> Result<(), Violation> {
        let in_system = self
            .mirror
            .values()
            .filter_map(|s| s.players.get(player))
            .map(|p| p.version);
        let flying = self
            .flying()
            .filter(|(_, p)| p.name == player)
            .map(|(_, p)| p.version);
        let best = in_system.chain(flying).max();
        if best.is_none_or(|v| v < version) {
            let what = format!("{player} is told version {version}, the stream holds {best:?}");
            return Err(Violation::player("ack_is_durable", player, what));
        }
        Ok(())
    }

    /// Once nothing moves any more: every acknowledged jump landed, and nothing is in flight.
    pub fn acked_jumps_land(&self, galaxy: &Galaxy) -> Result<(), Violation> {
        self.flying_is_kept_right()?;
        for key in &self.acked_jumps {
            if !self.arrived.contains(key) {
                let name = self.departs.get(key).map_or("?", |p| p.name.as_str());
                let text = mesh::codec::xfer_text(galaxy, key.0, key.1);
                let what = format!("jump {text} of {name} was acknowledged and never landed");
                return Err(Violation::jump(name, *key, what));
            }
        }
        if let Some((key, p)) = self.flying().next() {
            let text = mesh::codec::xfer_text(galaxy, key.0, key.1);
            let what = format!("jump {text} of {} is still in flight at the end", p.name);
            return Err(Violation::jump(&p.name, *key, what));
        }
        Ok(())
    }
}

/// A message of epoch `epoch` stored at `seq` on `subject`, whose last `lease` record was of
/// epoch `fenced_at`: a lower epoch is a zombie's write accepted.
pub fn no_zombie_write(
    subject: &str,
    fenced_at: Option<u64>,
    epoch: u64,
    seq: u64,
) -> Result<(), Violation> {
    match fenced_at {
        Some(f) if epoch < f => Err(Violation {
            invariant: "no_zombie_write",
            player: None,
            jump: None,
            what: format!(
                "message {seq} of epoch {epoch} accepted on {subject} after the lease record of epoch {f}"
            ),
        }),
        _ => Ok(()),
    }
}
