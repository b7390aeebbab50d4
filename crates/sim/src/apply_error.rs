//! Why a logged event does not apply to a state: [`ApplyError`], one variant for each thing a
//! log and the state it is replayed onto can disagree about.
//!
//! An event decided on a state always applies to it, so every one of these means a log that
//! does not belong to the state (corrupted, reordered, or from another data directory). The
//! messages are what an operator reads from `mltrader check` and recovery; they name the
//! player, the transfer, the escrow or the tick concerned. Never does I/O.

use crate::goods::{Cargo, CargoError, Good};
use crate::ids::{EscrowId, Tick, Xfer};
use crate::market::{Side, TradeError};

/// A logged event that cannot apply to the state: the log and the state disagree. Nothing
/// changed in the state.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    // Order and presence.
    #[error("tick {tick} is before the state's tick {state_tick}")]
    TickBefore { tick: Tick, state_tick: Tick },
    #[error("'{player}' acts while shot down")]
    ActsWhileShotDown { player: String },
    #[error("'{player}' is not here")]
    UnknownPlayer { player: String },
    /// A trade, a loot or an escrow by a player who is not in the system.
    #[error("{action} by '{player}', who is not here")]
    ActorNotHere {
        action: &'static str,
        player: String,
    },

    // Joins, refuels and landings.
    #[error("'{player}' joins an instance")]
    JoinInInstance { player: String },
    #[error("name '{player}' joined twice")]
    JoinedTwice { player: String },
    #[error("refuel of {units} for {cost} impossible for '{player}'")]
    RefuelImpossible {
        player: String,
        units: u32,
        cost: u64,
    },
    #[error("{player} cannot repair {points} hull points for {cost} cr (credits short, or past a whole hull)")]
    RepairImpossible {
        player: String,
        points: u32,
        cost: u64,
    },
    #[error("transfer {xfer} from system {system} (instance {instance}) landed twice")]
    LandedTwice {
        xfer: Xfer,
        system: u16,
        instance: u16,
    },
    #[error("'{player}' lands but is already here")]
    LandsWhileHere { player: String },

    // Transfers (jumps and moves between instances).
    #[error("transfer {xfer} where {next} was next")]
    TransferOutOfOrder { xfer: Xfer, next: Xfer },
    #[error("'{player}' departs with too little fuel")]
    TooLittleFuel { player: String },
    #[error("a jump lands in instance {instance} of another system")]
    JumpToForeignInstance { instance: u16 },
    #[error("no move to instance {to} from instance {from}")]
    NoMove { to: u16, from: u16 },
    #[error("transfer {xfer} is not departing")]
    NotDeparting { xfer: Xfer },
    #[error("transfer {xfer} cannot be void: it was prepared here ({next} is next)")]
    VoidOfPrepared { xfer: Xfer, next: Xfer },
    #[error("transfer {xfer} is not '{player}''s")]
    NotTheirTransfer { xfer: Xfer, player: String },
    #[error("aborted transfer {xfer}: player is here twice")]
    AbortedWhileHere { xfer: Xfer },

    // Trades and the economy.
    #[error("trade by '{player}' in an instance")]
    TradeInInstance { player: String },
    #[error("trade overfills '{player}''s hold")]
    TradeOverfillsHold { player: String },
    /// A logged trade the market or the hold cannot take (`buy 3 ore: ...`).
    #[error("{} {qty} {good}: {why}", side.name())]
    TradeRefused {
        side: Side,
        qty: u32,
        good: Good,
        why: TradeMismatch,
    },
    #[error("the trade was decided at {logged_cr} cr but comes to {actual_cr} cr on this state")]
    TradeTotal { logged_cr: u64, actual_cr: u64 },
    #[error("the trade's fee of {fee_cr} cr is not below its total of {total_cr} cr")]
    TradeFee { fee_cr: u64, total_cr: u64 },
    #[error("economy step {from}..{to} at tick {tick} (market at {market_tick})")]
    EconomyOutOfOrder {
        from: Tick,
        to: Tick,
        tick: Tick,
        market_tick: Tick,
    },
    #[error("economy step {from}..{to} does not match this market")]
    EconomyMismatch { from: Tick, to: Tick },
    #[error(
        "a {kind} shock until tick {until} cannot begin here now (an instance, over, or \
             clashing with a running shock)"
    )]
    ShockMismatch { kind: &'static str, until: u64 },

    // Combat, wrecks and loot.
    #[error("'{player}' engages '{target}', who is not here")]
    TargetNotHere { player: String, target: String },
    #[error("combat at tick {tick} does not match this state")]
    CombatMismatch { tick: Tick },
    #[error("'{target}' has {hull_points} hull; {damage_points} damage cannot leave {hull_after}")]
    HullMismatch {
        target: String,
        hull_points: u32,
        damage_points: u32,
        hull_after: u32,
    },
    #[error("'{player}' destroyed but not shot down by '{by}'")]
    NotShotDown { player: String, by: String },
    #[error("'{player}''s wreck should be {expected:?}")]
    WrongWreck {
        player: String,
        expected: Option<u64>,
    },
    #[error("respawn jump where {next} was next")]
    RespawnOutOfOrder { next: Xfer },
    #[error("'{player}''s wreck evicts another cargo")]
    WrongEviction { player: String },
    #[error("loot of wreck {wreck}, which is not here")]
    WreckNotHere { wreck: u64 },
    #[error("loot: {0}")]
    LootCargo(CargoError),

    // Instances.
    #[error("instance {instance} cannot open here")]
    CannotOpen { instance: u16 },
    #[error("instance {instance} is not open, or a move to it is prepared")]
    CannotRetire { instance: u16 },

    // Escrows (an instance's trades with its primary's market).
    #[error("escrow {escrow} of '{player}' cannot open here")]
    EscrowCannotOpen { escrow: EscrowId, player: String },
    #[error("escrow of '{player}': {why}")]
    EscrowCargo { player: String, why: CargoError },
    #[error("escrow of '{player}' holds more than they have")]
    EscrowHoldsTooMuch { player: String },
    #[error("escrow {escrow} of '{player}' is not open here")]
    EscrowNotOpen { escrow: EscrowId, player: String },
    #[error("escrow {escrow} settles for '{player}', who is not here")]
    EscrowSettlesAbsent { escrow: EscrowId, player: String },
    #[error("escrow {escrow} of '{player}' overflows")]
    EscrowOverflows { escrow: EscrowId, player: String },
    #[error("escrow {escrow} paid {total_cr}, more than it held")]
    EscrowOverpaid { escrow: EscrowId, total_cr: u64 },
    #[error("escrow {escrow} holds another quantity than it sold")]
    EscrowQuantity { escrow: EscrowId },
    #[error("escrow {escrow} overfills '{player}''s hold")]
    EscrowOverfillsHold { escrow: EscrowId, player: String },
    #[error("trade of escrow {instance}:{escrow} cannot apply here")]
    RemoteTradeCannotApply { instance: u16, escrow: EscrowId },
    #[error("trade of escrow {instance}:{escrow}: {why}")]
    RemoteTradeRefused {
        instance: u16,
        escrow: EscrowId,
        why: TradeError,
    },
    #[error("trade of escrow {instance}:{escrow} was decided at {logged_cr} cr but comes to {actual_cr}")]
    RemoteTradeTotal {
        instance: u16,
        escrow: EscrowId,
        logged_cr: u64,
        actual_cr: u64,
    },
    #[error("escrow {instance}:{escrow} was never traded here")]
    NeverTraded { instance: u16, escrow: EscrowId },
}

/// A saved state (a snapshot's market or wrecks) outside what the rules allow.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    #[error("stock of {good} is {stock}, over the most a market holds ({max})")]
    StockOverMax { good: Good, stock: u64, max: u64 },
    #[error("{count} wrecks, over {max}")]
    TooManyWrecks { count: usize, max: usize },
    #[error("wreck {id} (tick {tick}, '{cargo}') is out of place")]
    WreckOutOfPlace { id: u64, tick: u64, cargo: Cargo },
    #[error(
        "a shock in an instance, or more than {} shocks in one system",
        crate::shock::MAX_SHOCKS_PER_SYSTEM
    )]
    TooManyShocks,
    #[error("a market budget of {budget} cr, over its cap of {cap} cr")]
    BudgetOverCap { budget: u64, cap: u64 },
}

/// Why the market or the hold cannot take a logged trade (inside [`ApplyError::TradeRefused`],
/// whose message includes this one's: operators read one line).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TradeMismatch {
    #[error(transparent)]
    Cargo(#[from] CargoError),
    #[error(transparent)]
    Market(#[from] TradeError),
    #[error("not enough credits")]
    NoCredits,
    #[error("credits overflow")]
    CreditsOverflow,
}
