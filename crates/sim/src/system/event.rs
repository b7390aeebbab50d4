//! What a system's log records ([`Event`]) and why a request is refused ([`Reject`]).
//!
//! Pure data: never does I/O. Every event is decided by a `decide_*` of [`super::SystemState`]
//! and applied by [`super::SystemState::apply`]; the names of the rules that create or destroy
//! credits and goods appear here, next to the event that carries them out.

use crate::combat::{LootError, LootTake};
use crate::economy::EconomyModel;
use crate::galaxy::SystemId;
use crate::goods::{Cargo, GOOD_COUNT};
use crate::ids::{EscrowId, Tick, Xfer};
use crate::instance::InstanceId;
use crate::market::{Order, TickReport, Trade, TradeError};
use crate::player::Player;
use crate::shock::Shock;

/// The most players one system holds (in it, or departing from it).
pub const MAX_PLAYERS_PER_SYSTEM: usize = 1_000_000;

/// An event, as recorded in a system's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A new player appears (home system only) with the starting ship (the rule "starting
    /// grant"). `key` is the hash of their access token, opaque to the rules.
    Join { player: Player, key: String },
    /// Fuel bought at the station: `cost` credits leave the game (the rule "fuel purchase").
    Refuel {
        player: String,
        units: u32,
        cost: u64,
    },
    /// Hull mended at the station: `points` hull points for `cost` credits, which leave the
    /// game (the rule "hull repair"), up to the basic ship's hull.
    Repair {
        player: String,
        points: u32,
        cost: u64,
    },
    /// A jump is prepared: the player leaves the system (fuel burnt) and waits for the
    /// transition log to take the jump, the commit point. A jump to another system goes to its
    /// primary instance; a move to another instance of the same system (a split or a merge)
    /// is a jump too, with no fuel and no travel time.
    Depart {
        xfer: Xfer,
        player: String,
        to: InstanceId,
        fuel: u32,
    },
    /// The transition log holds jump `xfer`: the player is gone from here for good.
    DepartDone { xfer: Xfer },
    /// Jump `xfer` of `player` never reached the transition log: the player is back, fuel
    /// refunded.
    DepartAbort { xfer: Xfer, player: String },
    /// Jump `xfer` reached the transition log but its `depart` (the prepare) was lost in a
    /// crash: the jump is void (it never lands) and its number is never used again. Written by
    /// recovery only; nobody was told the jump happened (see docs/PROTOCOL.md).
    DepartVoid { xfer: Xfer },
    /// Jump `xfer` from instance `from` lands here, with the player's state as it left.
    Arrive {
        from: InstanceId,
        xfer: Xfer,
        player: Player,
    },
    /// A trade with the local market: credits, cargo and stock change together.
    Trade { player: String, trade: Trade },
    /// One economy step over ticks `from..to`: stocks move toward their rest levels (the
    /// rules "production" and "consumption"), the till toward its target ("subsidy", "tax"),
    /// and wrecks older than their lifetime vanish with their cargo ("wreck decay").
    Economy {
        from: Tick,
        to: Tick,
        /// Which rules the step followed: replay steps by them (old logs: `Steady`).
        model: EconomyModel,
        report: TickReport,
        decayed: [u64; GOOD_COUNT],
    },
    /// A market shock begins (primary only), drawn from the system's seeded generator in the
    /// economy step (`shock::draw`): it bends rest levels and rates until `shock.until`.
    Shock { shock: Shock },
    /// A standing order: fire at `target` every tick while both are here (`None`: cease fire).
    Engage {
        player: String,
        target: Option<String>,
    },
    /// One tick of combat among the standing orders, with its totals (checked on replay).
    Combat {
        shots: u32,
        hits: u32,
        damage: u64,
        downed: u32,
    },
    /// A ship shot down is destroyed: its cargo becomes wreck `wreck` (if any) and the pilot
    /// gets a basic ship with a full tank ("respawn"). Away from home, the pilot leaves at
    /// once on `jump_home` (transfer number, home system), through the transition log like
    /// any jump. `evicted` is the cargo of the
    /// oldest wreck, gone to make room when the system was at its wreck limit ("wreck decay").
    Destroyed {
        player: String,
        by: String,
        wreck: Option<u64>,
        jump_home: Option<(Xfer, SystemId)>,
        evicted: Cargo,
    },
    /// Goods moved from a wreck into a looter's hold.
    Loot { player: String, take: LootTake },
    /// The system is crowded: instance `instance` opens (primary only). Recorded before any
    /// player is moved there.
    Split { instance: u16 },
    /// Instance `instance` is empty and closes (primary only). Recorded after its last player
    /// left it, for good; its log stays.
    Retire { instance: u16 },
    /// A trade asked in an instance (not the primary): what it needs is taken from the player
    /// into escrow `escrow` (credits for a buy, the goods for a sell) and the order goes to the
    /// primary's market ([`super::escrow`]).
    Escrow {
        escrow: EscrowId,
        player: String,
        order: Order,
        held_cr: u64,
        held_qty: u32,
    },
    /// The primary's market took escrow `escrow`'s trade (`trade.remote`) at `total_cr` with the
    /// station's fee `fee_cr` (destroyed by the primary's `trade.remote`; 0 in logs before
    /// fees through an escrow): the player gets the goods (buy) or the price less the fee
    /// (sell), and what the escrow held beyond the price and the fee back.
    EscrowSettle {
        escrow: EscrowId,
        player: String,
        total_cr: u64,
        fee_cr: u64,
    },
    /// The primary's market refused escrow `escrow`'s trade (or never saw it): everything held
    /// goes back to the player.
    EscrowRefund { escrow: EscrowId, player: String },
    /// The primary's half of a trade asked in instance `instance`: the market gives or takes
    /// the goods and the price; they are in escrow until the instance settles (primary only).
    /// The commit point of such a trade.
    RemoteTrade {
        instance: u16,
        escrow: EscrowId,
        player: String,
        trade: Trade,
    },
    /// Instance `instance` settled escrow `escrow`: the primary forgets its outcome.
    RemoteTradeDone { instance: u16, escrow: EscrowId },
}

impl Event {
    /// The player this event is about, if any: every such event is a step of their history
    /// (it raises their version by one).
    pub fn player(&self) -> Option<&str> {
        match self {
            Event::Join { player, .. } | Event::Arrive { player, .. } => Some(&player.name),
            Event::Refuel { player, .. }
            | Event::Repair { player, .. }
            | Event::Depart { player, .. }
            | Event::DepartAbort { player, .. }
            | Event::Trade { player, .. }
            | Event::Engage { player, .. }
            | Event::Destroyed { player, .. }
            | Event::Loot { player, .. }
            | Event::Escrow { player, .. }
            | Event::EscrowSettle { player, .. }
            | Event::EscrowRefund { player, .. } => Some(player),
            Event::DepartDone { .. }
            | Event::DepartVoid { .. }
            | Event::Economy { .. }
            | Event::Shock { .. }
            | Event::Combat { .. }
            | Event::Split { .. }
            | Event::Retire { .. }
            | Event::RemoteTrade { .. }
            | Event::RemoteTradeDone { .. } => None,
        }
    }

    /// The transfer this event prepares (a jump, or a respawn's way home), if any.
    pub fn prepared_xfer(&self) -> Option<Xfer> {
        match self {
            Event::Depart { xfer, .. } => Some(*xfer),
            Event::Destroyed { jump_home, .. } => jump_home.map(|(x, _)| x),
            _ => None,
        }
    }
}

/// A request refused by the rules. Nothing is recorded; the message says why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    #[error("no player '{player}' in {system}")]
    NotHere { player: String, system: String },
    /// `name` (in NFC) is taken by `taken`: the same name, or one that differs only in case or
    /// by look-alike characters ([`crate::names::key`]).
    #[error("{}", name_taken_text(.name, .taken))]
    NameTaken { name: String, taken: String },
    #[error("bad name: {0}")]
    BadName(String),
    #[error("new players join at {home}, not {system}")]
    NotHome { home: String, system: String },
    #[error("no jump lane from {from} to {to}; jumps go to a neighbour (see `mltrader systems`)")]
    NoLane { from: String, to: String },
    #[error("you are already in {0}")]
    SameSystem(String),
    #[error("not enough fuel: the jump to {to} needs {need}, the tank has {have}; refuel first")]
    NoFuel { to: String, need: u32, have: u32 },
    #[error("the tank is full")]
    TankFull,
    #[error("the hull is whole ({0} points): nothing to repair")]
    HullWhole(u32),
    #[error("not enough credits: {need} needed, {have} on hand")]
    NoCredits { need: u64, have: u64 },
    #[error("{0} is full ({MAX_PLAYERS_PER_SYSTEM} players)")]
    Full(String),
    #[error("{0}")]
    Trade(#[from] TradeError),
    #[error("{0}")]
    Loot(#[from] LootError),
    #[error("your ship is shot down; it is destroyed at the end of this tick")]
    Downed,
    #[error("you cannot attack yourself")]
    SelfAttack,
    #[error("{0} is not an open instance of this system")]
    NoInstance(String),
    #[error("your trade is on its way to {0}'s market; wait for its answer")]
    TradePending(String),
    #[error("{instance} cannot {what}; that is done in {system}'s primary instance")]
    NotPrimary {
        instance: String,
        system: String,
        what: &'static str,
    },
}

/// "the name 'Ann' is taken", or "'ann' is taken: too similar to 'Ann'".
fn name_taken_text(name: &str, taken: &str) -> String {
    match name == taken {
        true => format!("the name '{name}' is taken"),
        false => format!("'{name}' is taken: too similar to '{taken}'"),
    }
}

impl Reject {
    /// A stable, machine-readable code for each kind of refusal.
    pub fn code(&self) -> &'static str {
        match self {
            Reject::NotHere { .. } => "not_here",
            Reject::NameTaken { .. } => "name_taken",
            Reject::BadName(_) => "bad_name",
            Reject::NotHome { .. } => "not_home",
            Reject::NoLane { .. } => "no_lane",
            Reject::SameSystem(_) => "same_system",
            Reject::NoFuel { .. } => "no_fuel",
            Reject::TankFull => "tank_full",
            Reject::HullWhole(_) => "hull_whole",
            Reject::NoCredits { .. } => "no_credits",
            Reject::Full(_) => "system_full",
            Reject::Trade(e) => e.code(),
            Reject::Loot(e) => e.code(),
            Reject::Downed => "downed",
            Reject::SelfAttack => "self_attack",
            Reject::NoInstance(_) => "no_instance",
            Reject::TradePending(_) => "trade_pending",
            Reject::NotPrimary { .. } => "not_primary",
        }
    }
}

/// Goods or credits a player in an instance put in escrow for a trade with the primary's
/// market, until the primary's answer is settled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Escrow {
    pub player: String,
    pub order: Order,
    /// Credits held (a buy: what the player may pay).
    pub held_cr: u64,
    /// Units of `order.good` held (a sell: what the player sells).
    pub held_qty: u32,
}

/// The outcome of an instance's trade, kept by the primary until the instance has settled it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteOutcome {
    pub player: String,
    pub trade: Trade,
}

/// A player waiting for the transition log to take their jump.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Departing {
    pub player: Player,
    pub to: InstanceId,
    pub fuel: u32,
}
