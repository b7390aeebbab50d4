//! One star system's state, the events that change it, and the rules that decide them.
//!
//! Two steps, always: `decide_*` ([`decide`]) looks at the state and a request and returns the
//! [`Event`] to record (or a [`Reject`] that changes nothing); [`SystemState::apply`]
//! ([`apply`]) changes the state by an event. The shard logs the event and applies it; recovery
//! applies the logged events again. Because `apply` is a pure function of the state and the
//! event, replaying a log gives the same state, bit for bit ([`SystemState::state_hash`]).
//!
//! Never does I/O, never reads a clock (time is the tick number `t` the shard stamps on each
//! event), never draws an unseeded random number (combat draws from `Rng::for_tick(seed, t)`).

mod apply;
mod decide;
mod escrow;
mod event;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

pub use crate::apply_error::ApplyError;
pub use escrow::EscrowRequest;
pub use event::{Departing, Escrow, Event, Reject, RemoteOutcome, MAX_PLAYERS_PER_SYSTEM};

use super::combat::Wrecks;
use super::economy::{economy_of, EconomyKind};
use super::galaxy::{Galaxy, SystemId};
use super::goods::{Good, GOOD_COUNT};
use super::ids::{EscrowId, Tick, Xfer};
use super::instance::{InstanceId, PRIMARY_INSTANCE};
use super::market::Market;
use super::names::NameIndex;
use super::player::Player;
use super::rng::system_seed;
use super::shock::Shock;

/// The whole state of one star system. Deterministic iteration everywhere (B-trees), so the
/// hash and any rule that walks players give the same answer on replay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemState {
    pub id: SystemId,
    /// Which instance of the system this is: [`PRIMARY_INSTANCE`] for the system itself, 2..
    /// for an instance opened when it was crowded ([`super::instance`]). An instance has no
    /// market of its own (the system's one market is the primary's) and no accounts.
    pub instance: u16,
    /// The instances of this system that are open (primary only): opened by [`Event::Split`],
    /// closed by [`Event::Retire`].
    pub instances: BTreeSet<u16>,
    /// What the economy makes and uses here (a function of the galaxy).
    pub kind: EconomyKind,
    /// The system's random seed (a function of its slug): combat draws from it.
    pub seed: u64,
    /// Tick of the last event applied.
    pub tick: Tick,
    /// Players in the system, by name.
    pub players: BTreeMap<String, Player>,
    /// Jumps prepared here and not yet known committed or aborted, by transfer number.
    pub departing: BTreeMap<Xfer, Departing>,
    /// Transfer number of the next jump prepared here.
    pub next_xfer: Xfer,
    /// Transfers whose `jump` reached the transition log after their `depart` was lost in a
    /// crash ([`Event::DepartVoid`]): they never land. Empty unless a crash hit that window.
    pub voided: BTreeSet<Xfer>,
    /// For each origin (a system's instance), the highest transfer number that has landed
    /// here. Jumps from one origin land in the order of their numbers, so this is enough to
    /// make landing idempotent.
    pub landed_upto: BTreeMap<InstanceId, Xfer>,
    /// Every name ever taken, with its access key hash (home system only): names are unique
    /// in the galaxy, up to case and look-alikes for new joins ([`NameIndex`]).
    pub names: NameIndex,
    /// The local market: stocks, prices, till. Empty (and never used) in an instance other
    /// than the primary.
    pub market: Market,
    /// The tick the market's economy has been stepped to.
    pub market_tick: Tick,
    /// Market shocks running here (primary only; at most `shock::MAX_SHOCKS_PER_SYSTEM`),
    /// in the order they began: each bends rest levels until its `until`, and is dropped by
    /// the first economy step that reaches it.
    pub shocks: Vec<Shock>,
    /// Destroyed ships' cargo, waiting to be looted or to decay.
    pub wrecks: Wrecks,
    /// Standing attack orders: attacker -> target. Both are players here; an order whose
    /// target left is dropped at the next combat tick.
    pub engaged: BTreeMap<String, String>,
    /// Ships shot down (hull 0), with who gets the kill: each is destroyed by the next event
    /// the shard records ([`Event::Destroyed`]).
    pub downed: BTreeMap<String, String>,
    /// An instance's trades on their way to the primary's market, by escrow number
    /// ([`escrow`]): what each holds of its player's credits or goods.
    pub escrows: BTreeMap<EscrowId, Escrow>,
    /// Number of the next escrow opened here.
    pub next_escrow: EscrowId,
    /// A primary's: trades of instances taken by its market, not yet known settled there.
    pub remote_trades: BTreeMap<(u16, EscrowId), RemoteOutcome>,
}

impl SystemState {
    /// A system of `galaxy` before its first event: no players, its market at rest.
    pub fn new(galaxy: &Galaxy, id: SystemId) -> SystemState {
        let kind = economy_of(galaxy, id);
        SystemState {
            id,
            instance: PRIMARY_INSTANCE,
            instances: BTreeSet::new(),
            kind,
            seed: system_seed(galaxy.slug(id)),
            tick: Tick(0),
            players: BTreeMap::new(),
            departing: BTreeMap::new(),
            next_xfer: Xfer(1),
            voided: BTreeSet::new(),
            landed_upto: BTreeMap::new(),
            names: NameIndex::default(),
            market: Market::new(kind),
            market_tick: Tick(0),
            shocks: Vec::new(),
            wrecks: Wrecks::new(),
            engaged: BTreeMap::new(),
            downed: BTreeMap::new(),
            escrows: BTreeMap::new(),
            next_escrow: EscrowId(1),
            remote_trades: BTreeMap::new(),
        }
    }

    /// Instance `at` of a system before its first event. The primary is [`SystemState::new`];
    /// another instance starts with no market (its stock and till are zero and stay so: trades
    /// go to the primary's market) and a seed of its own.
    pub fn new_instance(galaxy: &Galaxy, at: InstanceId) -> SystemState {
        let mut state = SystemState::new(galaxy, at.system);
        if !at.is_primary() {
            state.instance = at.n;
            state.seed = system_seed(&at.slug(galaxy));
            state.market = Market::from_parts([0; GOOD_COUNT], 0).expect("an empty market");
        }
        state
    }

    /// Which instance this is.
    pub fn instance_id(&self) -> InstanceId {
        InstanceId {
            system: self.id,
            n: self.instance,
        }
    }

    /// Whether this is the system's primary instance (the one with the market and accounts).
    pub fn is_primary(&self) -> bool {
        self.instance == PRIMARY_INSTANCE
    }

    /// Players in the system plus those departing from it.
    pub fn population(&self) -> usize {
        self.players.len() + self.departing.len()
    }

    /// Every player this system holds: here, or departing (not yet known committed).
    pub fn all_players(&self) -> impl Iterator<Item = &Player> + '_ {
        self.players
            .values()
            .chain(self.departing.values().map(|d| &d.player))
    }

    /// Whether `name` has a trade on its way to the primary's market (then they wait).
    pub fn has_escrow(&self, name: &str) -> bool {
        self.escrows.values().any(|e| e.player == name)
    }

    /// Credits held by everyone in this system, departing ones included (not the till).
    pub fn credits_total(&self) -> u128 {
        self.all_players().map(|p| u128::from(p.credits)).sum()
    }

    /// Units of each good in this system: holds (departing included), market stock, wrecks.
    pub fn goods_total(&self) -> [u64; GOOD_COUNT] {
        let mut sum = self.wrecks.total_units();
        for p in self.all_players() {
            for (good, qty) in p.cargo.iter() {
                sum[good.index()] += u64::from(qty);
            }
        }
        for good in Good::ALL {
            sum[good.index()] += self.market.stock(good);
        }
        sum
    }

    /// A hash of the whole state, stable across runs, machines and versions of this program as
    /// long as the state means the same. Two states with equal hashes are equal (up to xxh3).
    pub fn state_hash(&self) -> u64 {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        {
            let mut put = |bytes: &[u8]| {
                h.update(&(bytes.len() as u64).to_le_bytes());
                h.update(bytes);
            };
            put(&self.id.0.to_le_bytes());
            // Instances were added later: what a primary without instances hashes is unchanged.
            if !self.is_primary() {
                put(b"instance");
                put(&self.instance.to_le_bytes());
            }
            if !self.instances.is_empty() {
                put(b"instances");
                for n in &self.instances {
                    put(&n.to_le_bytes());
                }
            }
            put(&self.tick.0.to_le_bytes());
            put(&self.next_xfer.0.to_le_bytes());
            // Void transfers were added later: a state without any hashes as before.
            if !self.voided.is_empty() {
                put(b"voided");
                for x in &self.voided {
                    put(&x.0.to_le_bytes());
                }
            }
            let put_player = |put: &mut dyn FnMut(&[u8]), p: &Player| {
                put(p.name.as_bytes());
                put(&p.credits.to_le_bytes());
                put(&p.fuel.to_le_bytes());
                put(&p.fuel_capacity.to_le_bytes());
                put(&p.hull.to_le_bytes());
                put(&p.hold.to_le_bytes());
                for good in Good::ALL {
                    put(&p.cargo.get(good).to_le_bytes());
                }
                put(&p.version.0.to_le_bytes());
            };
            put(&(self.players.len() as u64).to_le_bytes());
            for p in self.players.values() {
                put_player(&mut put, p);
            }
            put(&(self.departing.len() as u64).to_le_bytes());
            let put_instance = |put: &mut dyn FnMut(&[u8]), at: &InstanceId| {
                put(&at.system.0.to_le_bytes());
                if !at.is_primary() {
                    put(&at.n.to_le_bytes());
                }
            };
            for (x, d) in &self.departing {
                put(&x.0.to_le_bytes());
                put_instance(&mut put, &d.to);
                put(&d.fuel.to_le_bytes());
                put_player(&mut put, &d.player);
            }
            for (s, n) in &self.landed_upto {
                put_instance(&mut put, s);
                put(&n.0.to_le_bytes());
            }
            put(&(self.names.len() as u64).to_le_bytes());
            for (n, k) in &self.names {
                put(n.as_bytes());
                put(k.as_bytes());
            }
            for s in self.market.stocks() {
                put(&s.to_le_bytes());
            }
            put(&self.market.till_cr().to_le_bytes());
            put(&self.market_tick.0.to_le_bytes());
            // The budget came with economy model 4: a market without one hashes as before.
            if let Some(b) = self.market.budget_cr() {
                put(b"budget");
                put(&b.to_le_bytes());
            }
            // Shocks were added later (issue 22): a state without any hashes as before.
            if !self.shocks.is_empty() {
                put(b"shocks");
                for s in &self.shocks {
                    put(s.kind.name().as_bytes());
                    put(s.good.map_or("all", |g| g.name()).as_bytes());
                    put(&s.until.to_le_bytes());
                }
            }
            put(&self.wrecks.next_id().to_le_bytes());
            put(&(self.wrecks.len() as u64).to_le_bytes());
            for (id, w) in self.wrecks.iter() {
                put(&id.to_le_bytes());
                put(w.pilot.as_bytes());
                put(&w.tick.to_le_bytes());
                put(w.cargo.to_string().as_bytes());
            }
            for map in [&self.engaged, &self.downed] {
                put(&(map.len() as u64).to_le_bytes());
                for (a, b) in map {
                    put(a.as_bytes());
                    put(b.as_bytes());
                }
            }
            // Escrows were added later: a state without them hashes as before.
            let put_order = |put: &mut dyn FnMut(&[u8]), o: &crate::market::Order| {
                put(o.side.name().as_bytes());
                put(o.good.name().as_bytes());
                put(&o.qty.to_le_bytes());
                put(&o.price_limit_cr.unwrap_or(u64::MAX).to_le_bytes());
            };
            if !self.escrows.is_empty() || self.next_escrow != EscrowId(1) {
                put(b"escrows");
                put(&self.next_escrow.0.to_le_bytes());
                for (id, e) in &self.escrows {
                    put(&id.0.to_le_bytes());
                    put(e.player.as_bytes());
                    put_order(&mut put, &e.order);
                    put(&e.held_cr.to_le_bytes());
                    put(&e.held_qty.to_le_bytes());
                }
            }
            if !self.remote_trades.is_empty() {
                put(b"remote");
                put(&(self.remote_trades.len() as u64).to_le_bytes());
                for ((n, id), o) in &self.remote_trades {
                    put(&n.to_le_bytes());
                    put(&id.0.to_le_bytes());
                    put(o.player.as_bytes());
                    put(o.trade.side.name().as_bytes());
                    put(o.trade.good.name().as_bytes());
                    put(&o.trade.qty.to_le_bytes());
                    put(&o.trade.total_cr.to_le_bytes());
                    // Fees through an escrow were added later: a trade without one hashes as
                    // before.
                    if o.trade.fee_cr > 0 {
                        put(b"fee");
                        put(&o.trade.fee_cr.to_le_bytes());
                    }
                }
            }
        }
        h.digest()
    }
}
