//! One star system's market: stocks, prices, the till, trades, and the board of prices heard
//! from other systems.
//!
//! Rules, all in integers so a replay is bit-exact on every machine:
//!
//! - **Price curve.** The mid price of the unit that takes a good's stock from `x - 1` to `x`
//!   is `base * g(x) / (1000 * T)`, `T` the good's target stock, with `g` piecewise linear:
//!   4 x base at stock 0, base at `T`, a quarter of base at `4T` and above. So prices always
//!   stay within `[base/4, 4 base]` ([`min_price_cr`], [`max_price_cr`]).
//! - **Trades move the price unit by unit.** A trade of `q` units pays the exact sum of the
//!   curve over the units it moves (closed form, O(1)), so a large trade costs more per unit,
//!   and splitting a trade saves nothing: the cost of moving a stock from one level to another
//!   does not depend on the path. Buyers pay the sum plus [`SPREAD_PERMILLE`], rounded up;
//!   sellers get it minus the spread, rounded down: any round trip loses credits.
//! - **Credits are conserved in trade.** The market has a till: what a player pays goes into
//!   it, what a player is paid comes out of it ([`apply_trade`] asserts player + till is
//!   unchanged). The till reverts toward [`TILL_TARGET_CR`] each tick: a shortfall is refilled
//!   (the rule "subsidy", credits created) and an excess is skimmed (the rule "tax", credits
//!   destroyed), at most [`TILL_REVERSION_CR_PER_TICK`] a tick. Under economy model 3
//!   (`EconomyModel::SlowSubsidy`) the refill is only 1/[`TILL_SUBSIDY_REFILL_TICKS`] of the
//!   shortfall a tick, rounded up: a drained till (the system's population's purse) comes back
//!   over hours, so traders can no longer draw credits created at the full rate out of it.
//! - **The budget (economy model 4, what new steps follow).** Under `EconomyModel::Budgeted` the slow
//!   subsidy is also bounded by the market's budget ([`Market::budget_cr`]): a counter, not
//!   credits, that fills from what this market took out of the game (each tick's tax, each
//!   trade's fee) plus [`BUDGET_ALLOWANCE_CR_PER_TICK`], never above [`BUDGET_CAP_CR`], and
//!   that the subsidy spends. So a system never creates more than it destroyed plus its
//!   allowance since its first model-4 step (it starts at 0). A market that has never stepped
//!   under model 4 has no budget (`None`): trades then leave it alone, and it is neither
//!   hashed nor written to snapshots, so older logs and snapshots replay as they were.
//! - **Goods are conserved in trade** (player cargo + market stock unchanged) and made or
//!   destroyed only by the economy's tick: each stock moves toward its kind's rest level
//!   (`economy::EconomyKind::rest_stock_units`); rising is the rule "production", falling is
//!   the rule "consumption". Stocks never exceed [`max_stock_units`].
//!
//! Two steps, as in `system`: [`decide_trade`] checks a request against the market and the
//! player and returns a [`Trade`] (or a [`TradeError`] that changes nothing); [`apply_trade`]
//! changes market, credits and cargo together. Never does I/O, never reads a clock.

use std::collections::BTreeMap;

use super::apply_error::{ApplyError, RestoreError, TradeMismatch};
use super::economy::{
    chain_inputs, units_between, units_in_tick, EconomyKind, EconomyModel, Role,
    CHAIN_MAX_PERMILLE, CHAIN_MIN_PERMILLE, FAR_FROM_REST_BOOST_PERMILLE,
};
use super::galaxy::SystemId;
use super::goods::{Cargo, Good, UnknownGood, GOOD_COUNT};
use super::shock::{self, Shock};

/// The market's cut on every trade, in per-mille of the mid price (buyers pay this much more,
/// sellers get this much less).
pub const SPREAD_PERMILLE: u64 = 50;

/// The station's fee on every trade with its market, in per-mille of the trade's total
/// (rounded down): a buyer pays it on top, a seller gets the total less it. The fee leaves the
/// game (the credit sink "trade_fee", `ledger::CreditSink::TradeFee`), unlike the spread,
/// which goes to the till. Sized so that the credits players take out of the tills (which
/// the subsidy refills) go back out of the game: docs/ECONOMY.md, "Trade fee".
/// A trade in an instance pays it too, decided by the primary (`system::escrow`). A sale to
/// a till below its target pays more ([`fee_permille`]).
pub const TRADE_FEE_PERMILLE: u64 = 80;

/// The fee on a sale to a market whose till is empty, in per-mille of the sale's total: the
/// most a sale pays. Between a till at [`TILL_TARGET_CR`] (or above) and an empty one the
/// fee on a sale rises in a straight line from [`TRADE_FEE_PERMILLE`] to this (see
/// [`fee_permille`]). Set from measured runs: docs/ECONOMY.md, "The thin purse".
pub const SALE_FEE_AT_EMPTY_TILL_PERMILLE: u64 = 800;

const _: () = assert!(TRADE_FEE_PERMILLE <= SALE_FEE_AT_EMPTY_TILL_PERMILLE);
const _: () = assert!(SALE_FEE_AT_EMPTY_TILL_PERMILLE < 1_000);

/// The station's fee, in per-mille of the total, on a trade of `side` with a market whose
/// till holds `till_cr` before it: [`TRADE_FEE_PERMILLE`] on a buy and on a sale to a till at
/// or above its target; a sale to a till drained below its target pays more, in proportion to
/// the shortfall, up to [`SALE_FEE_AT_EMPTY_TILL_PERMILLE`] at an empty till (the station
/// pays less when its purse is thin). Why: the subsidy refills a drained till, so the credits
/// traders take out of a thin purse are credits created; the bigger the crowd selling into a
/// system, the thinner its purse and the more of that creation the fee takes back, with no
/// state and no global figure (each shard decides alone). The fee is decided here and logged
/// (`fee=`), and replay applies the logged fee: the rule can change without a model number.
pub fn fee_permille(side: Side, till_cr: u64) -> u64 {
    let permille = match side {
        Side::Buy => TRADE_FEE_PERMILLE,
        Side::Sell => {
            let shortfall_cr = TILL_TARGET_CR.saturating_sub(till_cr);
            let rise = u128::from(SALE_FEE_AT_EMPTY_TILL_PERMILLE - TRADE_FEE_PERMILLE)
                * u128::from(shortfall_cr)
                / u128::from(TILL_TARGET_CR);
            TRADE_FEE_PERMILLE + u64::try_from(rise).expect("at most the cap's rise")
        }
    };
    assert!(
        (TRADE_FEE_PERMILLE..=SALE_FEE_AT_EMPTY_TILL_PERMILLE).contains(&permille),
        "a fee of {permille} per-mille for a {side:?} at a till of {till_cr} cr"
    );
    permille
}

/// The fee on a trade of `total_cr` at `fee_permille`, rounded down: always below the total
/// (a seller is never left with nothing), 0 on a trade too small to bear one.
pub fn trade_fee_cr(total_cr: u64, fee_permille: u64) -> u64 {
    assert!(fee_permille < 1_000, "a fee of {fee_permille} per-mille");
    let fee = u128::from(total_cr) * u128::from(fee_permille) / 1_000;
    u64::try_from(fee).expect("a fee below the total fits in u64")
}

/// The most units one trade may move.
pub const MAX_TRADE_UNITS: u32 = 100_000;

/// A market holds at most this many times a good's target stock.
pub const MAX_STOCK_TARGETS: u64 = 8;

/// The till every market starts with and reverts to, in credits.
pub const TILL_TARGET_CR: u64 = 1_000_000;

/// How far the till moves toward [`TILL_TARGET_CR`] per tick, in credits (subsidy or tax).
pub const TILL_REVERSION_CR_PER_TICK: u64 = 1_000;

/// Under economy model 3 (`EconomyModel::SlowSubsidy`), a till below its target is refilled
/// by its shortfall divided by this many ticks, rounded up, a tick, and never more than
/// [`TILL_REVERSION_CR_PER_TICK`]: a till short of 300,000 cr or more still gets 1,000 cr a
/// tick (as under model 2), one short of less gets less, about 63% of it back in this many
/// ticks (half a game hour). A till that traders keep draining sits lower and is refilled at
/// the rate they drain it, no faster. Set from the measured run (200 bots, 4 game hours:
/// 14,400 ticks gave -19.4% circulation, 1,800 -12.8%, 300 0.0%, model 2 +3.7%):
/// docs/ECONOMY.md, "The slow subsidy".
pub const TILL_SUBSIDY_REFILL_TICKS: u64 = 300;

/// Under economy model 4 (`EconomyModel::Budgeted`), what a market's budget gains each tick
/// besides its own tax and fees, in credits: the most a system may create beyond what it
/// destroyed, per tick (4.3M cr a game day of 14,400 ticks at most). Set from measured runs,
/// not derived: the large bench run (1,000 bots, 24 game hours, release, broke bots starting
/// over) gave -4.6% circulation at 250 and -1.2% at 300; 200 bots x 4 hours -1.4% and -0.9%
/// (debug, without starting over: 150 -13.5% on the large run, 400 +5.5%). A tuned balance
/// between the drained systems' refill and the buying systems' lost tax, not a tight bound:
/// docs/ECONOMY.md, "The budget".
pub const BUDGET_ALLOWANCE_CR_PER_TICK: u64 = 300;

/// The most a market's budget holds, in credits: a system that destroyed more than this and
/// has not spent it loses the excess (it cannot bank a flood of subsidy for later).
pub const BUDGET_CAP_CR: u64 = TILL_TARGET_CR;

/// The subsidy one tick gives a till holding `till_cr` under `model` (0 at or above target),
/// before model 4's budget bounds it ([`Market::advance_model`]).
pub fn subsidy_in_tick(model: EconomyModel, till_cr: u64) -> u64 {
    let shortfall = TILL_TARGET_CR.saturating_sub(till_cr);
    let add = match model {
        EconomyModel::Steady | EconomyModel::Living => shortfall,
        EconomyModel::SlowSubsidy | EconomyModel::Budgeted => {
            shortfall.div_ceil(TILL_SUBSIDY_REFILL_TICKS)
        }
    };
    add.min(TILL_REVERSION_CR_PER_TICK)
}

/// Price at stock 0, in per-mille of base.
const PRICE_AT_EMPTY_PERMILLE: u128 = 4_000;
/// Price at and above [`PRICE_FLOOR_AT_TARGETS`] times the target stock, in per-mille of base.
const PRICE_FLOOR_PERMILLE: u128 = 250;
/// From this many targets of stock up, the price is at its floor.
const PRICE_FLOOR_AT_TARGETS: u64 = 4;

/// The most units of `good` a market holds.
pub fn max_stock_units(good: Good) -> u64 {
    good.target_stock_units() * MAX_STOCK_TARGETS
}

/// The lowest mid price of `good`, in credits (a quarter of base).
pub fn min_price_cr(good: Good) -> u64 {
    good.base_price_cr() * PRICE_FLOOR_PERMILLE as u64 / 1_000
}

/// The highest mid price of `good`, in credits (four times base).
pub fn max_price_cr(good: Good) -> u64 {
    good.base_price_cr() * PRICE_AT_EMPTY_PERMILLE as u64 / 1_000
}

/// `g(x)`: the mid price at stock `x` in per-mille of base, times the target `t`.
fn curve(t: u64, x: u64) -> u128 {
    let (t, x) = (u128::from(t), u128::from(x));
    if x <= t {
        PRICE_AT_EMPTY_PERMILLE * t - 3_000 * x
    } else if x <= u128::from(PRICE_FLOOR_AT_TARGETS) * t {
        1_250 * t - 250 * x
    } else {
        PRICE_FLOOR_PERMILLE * t
    }
}

/// The sum of [`curve`] over stocks `lo+1 ..= hi`, in O(1): an arithmetic series per piece.
fn curve_sum(t: u64, lo: u64, hi: u64) -> u128 {
    assert!(lo <= hi && t > 0, "curve_sum({t}, {lo}, {hi})");
    let floor_at = PRICE_FLOOR_AT_TARGETS * t;
    let pieces: [(u64, u64, u128, u128); 3] = [
        (1, t, PRICE_AT_EMPTY_PERMILLE * u128::from(t), 3_000),
        (t + 1, floor_at, 1_250 * u128::from(t), 250),
        (
            floor_at + 1,
            u64::MAX,
            PRICE_FLOOR_PERMILLE * u128::from(t),
            0,
        ),
    ];
    let mut sum = 0u128;
    for (start, end, intercept, slope) in pieces {
        let (a, b) = ((lo + 1).max(start), hi.min(end));
        if a > b {
            continue;
        }
        let n = u128::from(b - a + 1);
        let sum_x = (u128::from(a) + u128::from(b)) * n / 2;
        sum += intercept * n - slope * sum_x;
    }
    sum
}

/// Which way a trade goes, from the player's side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// The player buys from the market.
    Buy,
    /// The player sells to the market.
    Sell,
}

impl Side {
    /// `buy` or `sell`, for logs and the API.
    pub fn name(self) -> &'static str {
        match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
        }
    }
}

/// What a player asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Order {
    pub side: Side,
    pub good: Good,
    /// Units, 1 to [`MAX_TRADE_UNITS`].
    pub qty: u32,
    /// The worst average price per unit the player accepts, in credits: buying pays at most
    /// this times `qty`, selling gets at least that. `None`: any price.
    pub price_limit_cr: Option<u64>,
}

/// A trade decided by [`decide_trade`]: everything needed to apply it to market, credits and
/// cargo at once, and to log it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trade {
    pub side: Side,
    pub good: Good,
    pub qty: u32,
    /// Credits that move: from player to till on a buy, from till to player on a sell.
    pub total_cr: u64,
    /// Credits the player pays the station on top (a buy) or leaves of the total (a sell),
    /// destroyed (the sink "trade_fee"). Logged as `fee=`; 0 (not written) before the fee
    /// existed (and through an escrow before fees there). Always below `total_cr` or 0.
    pub fee_cr: u64,
}

impl Trade {
    /// Credits that leave the player (a buy) or reach them (a sell): the total and the fee.
    pub fn player_cr(&self) -> u64 {
        match self.side {
            Side::Buy => self.total_cr + self.fee_cr,
            Side::Sell => self.total_cr - self.fee_cr,
        }
    }
}

/// A trade refused. Nothing changed; the message says what to do instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TradeError {
    #[error(transparent)]
    UnknownGood(#[from] UnknownGood),
    #[error("trade between 1 and {MAX_TRADE_UNITS} units at a time, not {qty}")]
    BadQuantity { qty: u64 },
    #[error("the market has only {have} {good}; buy at most {have}, or buy elsewhere")]
    NoStock { good: Good, want: u32, have: u64 },
    #[error("the market takes at most {room} more {good}; sell fewer, or sell elsewhere")]
    MarketFull { good: Good, want: u32, room: u64 },
    #[error("the market's till holds {have} cr, {need} needed; sell fewer, or come back later")]
    MarketBroke { need: u64, have: u64 },
    #[error("{}", price_limit_message(.side, .good, .qty, .total, .limit))]
    PriceLimit {
        side: Side,
        good: Good,
        qty: u32,
        total: u64,
        limit: u64,
    },
    #[error("not enough credits: {need} cr needed, {have} on hand; buy fewer")]
    NoCredits { need: u64, have: u64 },
    #[error(
        "not enough hold space: {need} hold units needed, {free} free; buy fewer or sell first"
    )]
    NoCargoSpace { need: u64, free: u64 },
    #[error("you carry only {have} {good}; sell at most that")]
    NotCarried { good: Good, want: u32, have: u32 },
    #[error("the trade would overflow a credit balance; trade fewer units")]
    TooLarge,
}

impl TradeError {
    /// A stable, machine-readable code for each refusal.
    pub fn code(&self) -> &'static str {
        match self {
            TradeError::UnknownGood(_) => "unknown_good",
            TradeError::BadQuantity { .. } => "bad_quantity",
            TradeError::NoStock { .. } => "no_stock",
            TradeError::MarketFull { .. } => "market_full",
            TradeError::MarketBroke { .. } => "market_broke",
            TradeError::PriceLimit { .. } => "price_limit",
            TradeError::NoCredits { .. } => "no_credits",
            TradeError::NoCargoSpace { .. } => "no_cargo_space",
            TradeError::NotCarried { .. } => "not_carried",
            TradeError::TooLarge => "too_large",
        }
    }
}

/// What one economy step made and destroyed, for the log: goods by "production" and
/// "consumption", credits by "subsidy" and "tax".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Units made, per good (index order).
    pub produced: [u64; GOOD_COUNT],
    /// Units used up, per good (index order).
    pub consumed: [u64; GOOD_COUNT],
    /// Credits created into the till.
    pub subsidy_cr: u64,
    /// Credits removed from the till.
    pub tax_cr: u64,
}

impl TickReport {
    /// True when the step changed nothing.
    pub fn is_empty(&self) -> bool {
        *self == TickReport::default()
    }
}

/// One system's market. Stocks are at most [`max_stock_units`]; the till never goes negative.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Market {
    /// Units on sale, per good (index order).
    stock: [u64; GOOD_COUNT],
    /// Credits the market pays sellers from and takes buyers' payments into.
    till_cr: u64,
    /// Under economy model 4, the subsidy this market may still create, in credits (at most
    /// [`BUDGET_CAP_CR`]); `None` until its first model-4 step.
    budget_cr: Option<u64>,
}

impl Market {
    /// A market of `kind` at rest: each stock at its rest level, the till at its target.
    pub fn new(kind: EconomyKind) -> Market {
        Market {
            stock: kind.rest_stocks(),
            till_cr: TILL_TARGET_CR,
            budget_cr: None,
        }
    }

    /// A market from saved values (a snapshot), checked against the bounds.
    pub fn from_parts(stock: [u64; GOOD_COUNT], till_cr: u64) -> Result<Market, RestoreError> {
        for good in Good::ALL {
            if stock[good.index()] > max_stock_units(good) {
                return Err(RestoreError::StockOverMax {
                    good,
                    stock: stock[good.index()],
                    max: max_stock_units(good),
                });
            }
        }
        Ok(Market {
            stock,
            till_cr,
            budget_cr: None,
        })
    }

    /// The same market with a saved budget (a snapshot's `budget=`; `None` when it has none).
    pub fn with_budget(mut self, budget_cr: Option<u64>) -> Result<Market, RestoreError> {
        if let Some(b) = budget_cr {
            if b > BUDGET_CAP_CR {
                return Err(RestoreError::BudgetOverCap {
                    budget: b,
                    cap: BUDGET_CAP_CR,
                });
            }
        }
        self.budget_cr = budget_cr;
        Ok(self)
    }

    /// Under economy model 4, the subsidy this market may still create; `None` if it has
    /// never stepped under model 4.
    pub fn budget_cr(&self) -> Option<u64> {
        self.budget_cr
    }

    /// A trade's fee left the game here: under model 4 it fills the budget (capped).
    pub fn take_fee(&mut self, fee_cr: u64) {
        if self.budget_cr.is_some() {
            self.fill_budget(fee_cr);
        }
    }

    /// Adds `cr` to the budget (starting one at 0), never above [`BUDGET_CAP_CR`].
    fn fill_budget(&mut self, cr: u64) {
        let b = self.budget_cr.get_or_insert(0);
        *b = b.saturating_add(cr).min(BUDGET_CAP_CR);
    }

    /// Units of `good` on sale.
    pub fn stock(&self, good: Good) -> u64 {
        self.stock[good.index()]
    }

    /// Every stock, in good index order.
    pub fn stocks(&self) -> [u64; GOOD_COUNT] {
        self.stock
    }

    /// Credits in the till.
    pub fn till_cr(&self) -> u64 {
        self.till_cr
    }

    /// The mid price of `good` at the current stock, in credits (before the spread): what a
    /// price board shows.
    pub fn price_cr(&self, good: Good) -> u64 {
        let t = good.target_stock_units();
        let price =
            u128::from(good.base_price_cr()) * curve(t, self.stock(good)) / (1_000 * u128::from(t));
        // Between base/4 and 4 base by the shape of the curve.
        price as u64
    }

    /// Every mid price, in good index order.
    pub fn prices_cr(&self) -> [u64; GOOD_COUNT] {
        Good::ALL.map(|g| self.price_cr(g))
    }

    /// What buying `qty` units of `good` costs, in credits (rounded up), or why it cannot be.
    pub fn quote_buy(&self, good: Good, qty: u32) -> Result<u64, TradeError> {
        check_qty(qty)?;
        let have = self.stock(good);
        let lo = have
            .checked_sub(u64::from(qty))
            .ok_or(TradeError::NoStock {
                good,
                want: qty,
                have,
            })?;
        let raw = curve_sum(good.target_stock_units(), lo, have);
        Ok(to_credits(good, raw, 1_000 + SPREAD_PERMILLE, true))
    }

    /// What selling `qty` units of `good` pays, in credits (rounded down), or why it cannot be.
    pub fn quote_sell(&self, good: Good, qty: u32) -> Result<u64, TradeError> {
        check_qty(qty)?;
        let have = self.stock(good);
        let room = max_stock_units(good) - have;
        if u64::from(qty) > room {
            return Err(TradeError::MarketFull {
                good,
                want: qty,
                room,
            });
        }
        let raw = curve_sum(good.target_stock_units(), have, have + u64::from(qty));
        let total = to_credits(good, raw, 1_000 - SPREAD_PERMILLE, false);
        if total > self.till_cr {
            return Err(TradeError::MarketBroke {
                need: total,
                have: self.till_cr,
            });
        }
        Ok(total)
    }

    /// The market's half of a purchase by a player: the stock falls by `qty`, the till takes
    /// the price, which is returned.
    pub fn buy(&mut self, good: Good, qty: u32) -> Result<u64, TradeError> {
        let total = self.quote_buy(good, qty)?;
        let till = self
            .till_cr
            .checked_add(total)
            .ok_or(TradeError::TooLarge)?;
        self.stock[good.index()] -= u64::from(qty);
        self.till_cr = till;
        Ok(total)
    }

    /// The market's half of a sale by a player: the stock rises by `qty`, the till pays the
    /// price, which is returned.
    pub fn sell(&mut self, good: Good, qty: u32) -> Result<u64, TradeError> {
        let total = self.quote_sell(good, qty)?;
        self.stock[good.index()] += u64::from(qty);
        self.till_cr -= total;
        Ok(total)
    }

    /// One economy step, tick `tick`: see [`Market::advance`].
    pub fn tick(&mut self, kind: EconomyKind, tick: u64) -> TickReport {
        self.advance(kind, tick, tick.saturating_add(1))
    }

    /// The economy steps of ticks `from..to` at once, in O(goods): each stock moves toward its
    /// rest level by its rate (production below rest, consumption above), never past it, and
    /// the till toward its target. Gives exactly what ticking one by one gives, so a quiet
    /// system may catch up lazily.
    pub fn advance(&mut self, kind: EconomyKind, from: u64, to: u64) -> TickReport {
        let mut report = TickReport::default();
        for good in Good::ALL {
            let i = good.index();
            let rest = kind.rest_stock_units(good).min(max_stock_units(good));
            let step = units_between(kind.recovery_per_100_ticks(good), from, to);
            let s = self.stock[i];
            if s < rest {
                report.produced[i] = step.min(rest - s);
                self.stock[i] += report.produced[i];
            } else {
                report.consumed[i] = step.min(s - rest);
                self.stock[i] -= report.consumed[i];
            }
            assert!(
                self.stock[i] <= max_stock_units(good),
                "{good} over its max"
            );
        }
        let till_step = TILL_REVERSION_CR_PER_TICK.saturating_mul(to - from);
        if self.till_cr < TILL_TARGET_CR {
            report.subsidy_cr = till_step.min(TILL_TARGET_CR - self.till_cr);
            self.till_cr += report.subsidy_cr;
        } else {
            report.tax_cr = till_step.min(self.till_cr - TILL_TARGET_CR);
            self.till_cr -= report.tax_cr;
        }
        report
    }
}

impl Market {
    /// Where `good`'s stock rests at tick `t` under the living economy: its kind's rest level,
    /// bent for a made good by its inputs' stock here (the chains) and by the shocks running,
    /// never above [`max_stock_units`].
    pub fn living_rest_units(
        &self,
        kind: EconomyKind,
        shocks: &[Shock],
        good: Good,
        t: u64,
    ) -> u64 {
        let mut rest = u128::from(kind.rest_stock_units(good));
        if matches!(kind.role(good), Role::Produces { .. }) {
            let chain = chain_inputs(good)
                .iter()
                .map(|&input| {
                    let input_rest = kind.rest_stock_units(input).max(1);
                    self.stock(input) * 1_000 / input_rest
                })
                .min()
                .map_or(1_000, |p| p.clamp(CHAIN_MIN_PERMILLE, CHAIN_MAX_PERMILLE));
            rest = rest * u128::from(chain) / 1_000;
        }
        rest = rest * u128::from(shock::rest_permille(shocks, kind, good, t)) / 1_000;
        (rest as u64).min(max_stock_units(good))
    }

    /// The living economy's steps over ticks `from..to` (issue 22), tick by tick, so any split
    /// of a span gives the same stocks: each stock moves toward [`Market::living_rest_units`]
    /// at its table rate, times the shocks' rate, times up to
    /// 1 + [`FAR_FROM_REST_BOOST_PERMILLE`]/1000 as it lies far from rest (a drained market's
    /// production answers; a flooded one's use does), never past rest; the till as in
    /// [`Market::advance`]. A span where nothing moves skips to the next shock's end, so a
    /// quiet system catches up in O(goods x shocks).
    pub fn advance_living(
        &mut self,
        kind: EconomyKind,
        shocks: &[Shock],
        from: u64,
        to: u64,
    ) -> TickReport {
        self.advance_model(EconomyModel::Living, kind, shocks, from, to)
    }

    /// The economy steps of ticks `from..to` by the rules of `model`: [`Market::advance`] for
    /// the steady model (no shocks then), [`Market::advance_living`] for the living one, and
    /// the living one with the slow subsidy ([`subsidy_in_tick`]) for model 3.
    pub fn advance_model(
        &mut self,
        model: EconomyModel,
        kind: EconomyKind,
        shocks: &[Shock],
        from: u64,
        to: u64,
    ) -> TickReport {
        if model == EconomyModel::Steady {
            return self.advance(kind, from, to);
        }
        assert!(from <= to, "economy step {from}..{to} runs backwards");
        let mut report = TickReport::default();
        let mut t = from;
        while t < to {
            let before = self.clone();
            let mut at_rest = true;
            for good in Good::ALL {
                let i = good.index();
                let rest = before.living_rest_units(kind, shocks, good, t);
                let s = self.stock[i];
                let distance = s.abs_diff(rest);
                if distance == 0 {
                    continue;
                }
                at_rest = false;
                let base = kind.recovery_per_100_ticks(good)
                    * shock::rate_permille(shocks, kind, good, t)
                    / 1_000;
                let far = distance.min(rest.max(1)) * FAR_FROM_REST_BOOST_PERMILLE / rest.max(1);
                let rate = (base * (1_000 + far) / 1_000).max(1);
                let step = units_in_tick(rate, t).min(distance);
                if s < rest {
                    report.produced[i] += step;
                    self.stock[i] += step;
                } else {
                    report.consumed[i] += step;
                    self.stock[i] -= step;
                }
                assert!(
                    self.stock[i] <= max_stock_units(good),
                    "{good} over its max"
                );
            }
            if model == EconomyModel::Budgeted {
                // The allowance first, so a drained till with an empty budget still gets it.
                self.fill_budget(BUDGET_ALLOWANCE_CR_PER_TICK);
            }
            if self.till_cr < TILL_TARGET_CR {
                let mut add = subsidy_in_tick(model, self.till_cr);
                assert!(add > 0, "a till below its target gets some subsidy");
                if let (EconomyModel::Budgeted, Some(b)) = (model, self.budget_cr.as_mut()) {
                    add = add.min(*b);
                    *b -= add;
                }
                report.subsidy_cr += add;
                self.till_cr += add;
            } else {
                let take = TILL_REVERSION_CR_PER_TICK.min(self.till_cr - TILL_TARGET_CR);
                report.tax_cr += take;
                self.till_cr -= take;
                if model == EconomyModel::Budgeted {
                    self.fill_budget(take);
                }
            }
            assert!(
                self.budget_cr.is_none_or(|b| b <= BUDGET_CAP_CR),
                "a budget over its cap"
            );
            t += 1;
            if at_rest && self.till_cr == TILL_TARGET_CR {
                // Nothing moves until a shock ends and a rest level with it; under model 4
                // the budget gains its allowance for each tick skipped, as tick by tick.
                let next = shocks
                    .iter()
                    .map(|s| s.until)
                    .filter(|&u| u > t)
                    .min()
                    .unwrap_or(to)
                    .min(to);
                if model == EconomyModel::Budgeted {
                    self.fill_budget(BUDGET_ALLOWANCE_CR_PER_TICK.saturating_mul(next - t));
                }
                t = next;
            }
        }
        report
    }
}

fn price_limit_message(side: &Side, good: &Good, qty: &u32, total: &u64, limit: &u64) -> String {
    let (verb, beyond) = match side {
        Side::Buy => ("buying", "above"),
        Side::Sell => ("selling", "below"),
    };
    let average = total / u64::from(*qty).max(1);
    format!(
        "{verb} {qty} {good} comes to {total} cr ({average} cr/unit on average), {beyond} your \
         limit of {limit} cr/unit; trade fewer units or change the limit"
    )
}

fn check_qty(qty: u32) -> Result<(), TradeError> {
    if qty == 0 || qty > MAX_TRADE_UNITS {
        return Err(TradeError::BadQuantity {
            qty: u64::from(qty),
        });
    }
    Ok(())
}

/// Credits for a curve sum `raw` with the spread applied (`factor_permille`), rounded up for
/// what a player pays and down for what a player gets.
fn to_credits(good: Good, raw: u128, factor_permille: u64, round_up: bool) -> u64 {
    let num = u128::from(good.base_price_cr()) * raw * u128::from(factor_permille);
    let den = 1_000_000 * u128::from(good.target_stock_units());
    let credits = if round_up {
        num.div_ceil(den)
    } else {
        num / den
    };
    // At most MAX_TRADE_UNITS * 4.2 * the dearest base price: far below u64::MAX.
    u64::try_from(credits).unwrap_or(u64::MAX)
}

/// Checks `order` against the market and the player (credits, cargo, hold space), and returns
/// the trade to apply with its fee at `fee_permille` of the total, or why it cannot happen.
/// Changes nothing. The price limit bounds the market's total, not the fee.
pub fn decide_trade(
    market: &Market,
    credits: u64,
    cargo: &Cargo,
    hold_capacity_units: u32,
    order: &Order,
    fee_permille: u64,
) -> Result<Trade, TradeError> {
    let Order {
        side,
        good,
        qty,
        price_limit_cr,
    } = *order;
    let total_cr = match side {
        Side::Buy => market.quote_buy(good, qty)?,
        Side::Sell => market.quote_sell(good, qty)?,
    };
    if let Some(limit) = price_limit_cr {
        let bound = u128::from(limit) * u128::from(qty);
        let over = match side {
            Side::Buy => u128::from(total_cr) > bound,
            Side::Sell => u128::from(total_cr) < bound,
        };
        if over {
            let total = total_cr;
            return Err(TradeError::PriceLimit {
                side,
                good,
                qty,
                total,
                limit,
            });
        }
    }
    let fee_cr = trade_fee_cr(total_cr, fee_permille);
    match side {
        Side::Buy => {
            let need = total_cr.checked_add(fee_cr).ok_or(TradeError::TooLarge)?;
            if need > credits {
                return Err(TradeError::NoCredits {
                    need,
                    have: credits,
                });
            }
            let need = u64::from(qty) * u64::from(good.hold_units_per_unit());
            let free = u64::from(hold_capacity_units).saturating_sub(cargo.hold_used());
            if need > free {
                return Err(TradeError::NoCargoSpace { need, free });
            }
            market
                .till_cr()
                .checked_add(total_cr)
                .ok_or(TradeError::TooLarge)?;
            let mut after = *cargo;
            after
                .add(good, u64::from(qty))
                .map_err(|_| TradeError::TooLarge)?;
        }
        Side::Sell => {
            let have = cargo.get(good);
            if qty > have {
                return Err(TradeError::NotCarried {
                    good,
                    want: qty,
                    have,
                });
            }
            credits.checked_add(total_cr).ok_or(TradeError::TooLarge)?;
        }
    }
    Ok(Trade {
        side,
        good,
        qty,
        total_cr,
        fee_cr,
    })
}

/// Applies a decided (or logged) trade to the market, the player's credits and cargo, all or
/// nothing. An error means the trade does not fit this state (a log disagreeing with the state
/// it is replayed onto, e.g. a different price); nothing changed then. Asserts that credits
/// (player + till) and goods (cargo + stock) are conserved.
pub fn apply_trade(
    market: &mut Market,
    credits: &mut u64,
    cargo: &mut Cargo,
    trade: &Trade,
) -> Result<(), ApplyError> {
    let Trade {
        side,
        good,
        qty,
        total_cr,
        fee_cr,
    } = *trade;
    if fee_cr >= total_cr && fee_cr > 0 {
        return Err(ApplyError::TradeFee { fee_cr, total_cr });
    }
    let credits_before = u128::from(*credits) + u128::from(market.till_cr());
    let goods_before = u64::from(cargo.get(good)) + market.stock(good);
    let mut new_market = market.clone();
    let mut new_cargo = *cargo;
    let refused = |why: TradeMismatch| ApplyError::TradeRefused {
        side,
        qty,
        good,
        why,
    };
    let new_credits = match side {
        Side::Buy => {
            new_cargo
                .add(good, u64::from(qty))
                .map_err(|e| refused(e.into()))?;
            let paid = new_market.buy(good, qty).map_err(|e| refused(e.into()))?;
            check_total(paid, total_cr)?;
            credits
                .checked_sub(paid + fee_cr)
                .ok_or_else(|| refused(TradeMismatch::NoCredits))?
        }
        Side::Sell => {
            new_cargo
                .remove(good, u64::from(qty))
                .map_err(|e| refused(e.into()))?;
            let got = new_market.sell(good, qty).map_err(|e| refused(e.into()))?;
            check_total(got, total_cr)?;
            credits
                .checked_add(got - fee_cr)
                .ok_or_else(|| refused(TradeMismatch::CreditsOverflow))?
        }
    };
    new_market.take_fee(fee_cr);
    *market = new_market;
    *cargo = new_cargo;
    *credits = new_credits;
    assert_eq!(
        u128::from(*credits) + u128::from(market.till_cr()) + u128::from(fee_cr),
        credits_before,
        "a trade created or destroyed credits other than its fee"
    );
    assert_eq!(
        u64::from(cargo.get(good)) + market.stock(good),
        goods_before,
        "a trade created or destroyed goods"
    );
    Ok(())
}

fn check_total(actual_cr: u64, logged_cr: u64) -> Result<(), ApplyError> {
    match actual_cr == logged_cr {
        true => Ok(()),
        false => Err(ApplyError::TradeTotal {
            logged_cr,
            actual_cr,
        }),
    }
}

/// Prices a system published, and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PriceReport {
    /// The tick of the publishing system when it took these prices.
    pub tick: u64,
    /// Mid prices, per good (index order), in credits.
    pub prices_cr: [u64; GOOD_COUNT],
}

/// The last prices heard from other systems: what economy gossip carries. At most one report
/// per system (so at most `galaxy::MAX_SYSTEMS` entries).
///
/// Merging keeps, per system, the greater report: the newer tick, and on equal ticks (only
/// possible if two replicas of one shard disagreed) the greater price list. That is a join
/// (commutative, associative, idempotent), so boards that have heard the same reports, in any
/// order and grouping, are equal: views converge once publishing stops.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PriceBoard {
    reports: BTreeMap<SystemId, PriceReport>,
}

impl PriceBoard {
    /// An empty board.
    pub fn new() -> PriceBoard {
        PriceBoard::default()
    }

    /// Takes in one report; true if the board changed.
    pub fn record(&mut self, system: SystemId, report: PriceReport) -> bool {
        match self.reports.get_mut(&system) {
            Some(known) if *known >= report => false,
            Some(known) => {
                *known = report;
                true
            }
            None => {
                self.reports.insert(system, report);
                true
            }
        }
    }

    /// Takes in every report of `other`; returns how many entries changed.
    pub fn merge(&mut self, other: &PriceBoard) -> usize {
        other
            .reports
            .iter()
            .filter(|(&s, &r)| self.record(s, r))
            .count()
    }

    /// The last report heard from `system`.
    pub fn get(&self, system: SystemId) -> Option<&PriceReport> {
        self.reports.get(&system)
    }

    /// How old the last report from `system` is at tick `now`, in ticks.
    pub fn age_ticks(&self, system: SystemId, now: u64) -> Option<u64> {
        self.get(system).map(|r| now.saturating_sub(r.tick))
    }

    /// Every report, by system id.
    pub fn iter(&self) -> impl Iterator<Item = (SystemId, &PriceReport)> + '_ {
        self.reports.iter().map(|(&s, r)| (s, r))
    }

    /// How many systems the board has heard from.
    pub fn len(&self) -> usize {
        self.reports.len()
    }

    /// True when the board has heard from no system.
    pub fn is_empty(&self) -> bool {
        self.reports.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn order(side: Side, good: Good, qty: u32) -> Order {
        Order {
            side,
            good,
            qty,
            price_limit_cr: None,
        }
    }

    /// The price curve summed unit by unit, the slow and obvious way.
    fn curve_sum_slow(t: u64, lo: u64, hi: u64) -> u128 {
        (lo + 1..=hi).map(|x| curve(t, x)).sum()
    }

    #[test]
    fn prices_rest_cheap_where_made_and_dear_where_used() {
        let m = Market::new(EconomyKind::Agricultural);
        assert_eq!(m.price_cr(Good::Food), 9, "3/4 of 12 at twice the target");
        assert_eq!(
            m.price_cr(Good::Electronics),
            400,
            "5/2 of 160 at half the target"
        );
        assert_eq!(m.price_cr(Good::Ore), 20, "neutral goods rest at base");
        assert_eq!(m.till_cr(), TILL_TARGET_CR);
    }

    #[test]
    fn big_trades_cost_more_per_unit_and_splitting_saves_nothing() {
        let m = Market::new(EconomyKind::HighTech);
        let one = m.quote_buy(Good::Food, 1).unwrap();
        let many = m.quote_buy(Good::Food, 500).unwrap();
        assert!(many > 500 * one - 500, "{many} vs {one}");
        let mut split = m.clone();
        let a = split.buy(Good::Food, 200).unwrap();
        let b = split.buy(Good::Food, 300).unwrap();
        assert!(a + b >= many && a + b <= many + 1, "only rounding differs");
        assert!(m.quote_buy(Good::Food, 1).unwrap() > m.quote_sell(Good::Food, 1).unwrap());
    }

    #[test]
    fn refusals_have_stable_codes_and_say_what_to_do() {
        let m = Market::new(EconomyKind::Mining);
        let mut cargo = Cargo::new();
        let code = |r: Result<Trade, TradeError>| r.unwrap_err().code();
        let buy = |qty| order(Side::Buy, Good::Ore, qty);
        assert_eq!(
            code(decide_trade(&m, 10_000, &cargo, 100, &buy(0), 0)),
            "bad_quantity"
        );
        assert_eq!(
            code(decide_trade(&m, 10, &cargo, 100, &buy(10), 0)),
            "no_credits"
        );
        assert_eq!(
            code(decide_trade(&m, 10_000, &cargo, 10, &buy(10), 0)),
            "no_cargo_space"
        );
        let stock = m.stock(Good::Ore) as u32;
        let err = m.quote_buy(Good::Ore, stock + 1).unwrap_err();
        assert_eq!(err.code(), "no_stock");
        assert!(err.to_string().contains("buy at most"), "{err}");
        let sell = order(Side::Sell, Good::Ore, 5);
        assert_eq!(
            code(decide_trade(&m, 0, &cargo, 100, &sell, 0)),
            "not_carried"
        );
        cargo.add(Good::Ore, 5).unwrap();
        let limited = Order {
            price_limit_cr: Some(1_000),
            ..sell
        };
        let err = decide_trade(&m, 0, &cargo, 100, &limited, 0).unwrap_err();
        assert_eq!(err.code(), "price_limit");
        assert!(
            err.to_string().contains("below your limit of 1000"),
            "{err}"
        );
        assert!(decide_trade(&m, 0, &cargo, 100, &sell, 0).is_ok());
        let full = Market::from_parts([0; GOOD_COUNT], 0).unwrap();
        assert_eq!(
            full.quote_sell(Good::Ore, 5).unwrap_err().code(),
            "market_broke"
        );
        let unknown: TradeError = Good::parse("gold").unwrap_err().into();
        assert_eq!(unknown.code(), "unknown_good");
    }

    #[test]
    fn a_logged_trade_that_no_longer_fits_changes_nothing() {
        let mut m = Market::new(EconomyKind::Refinery);
        let (mut credits, mut cargo) = (100_000, Cargo::new());
        let t = decide_trade(
            &m,
            credits,
            &cargo,
            1_000,
            &order(Side::Buy, Good::Fuel, 50),
            TRADE_FEE_PERMILLE,
        )
        .unwrap();
        let wrong = Trade {
            total_cr: t.total_cr - 1,
            ..t
        };
        let before = (m.clone(), credits, cargo);
        assert!(apply_trade(&mut m, &mut credits, &mut cargo, &wrong).is_err());
        assert_eq!((m.clone(), credits, cargo), before);
        apply_trade(&mut m, &mut credits, &mut cargo, &t).unwrap();
        assert_eq!(cargo.get(Good::Fuel), 50);
    }

    #[test]
    fn the_trade_fee_leaves_the_game_on_both_sides() {
        let mut m = Market::new(EconomyKind::Refinery);
        let (mut credits, mut cargo) = (100_000, Cargo::new());
        let buy = order(Side::Buy, Good::Fuel, 50);
        let t = decide_trade(&m, credits, &cargo, 1_000, &buy, TRADE_FEE_PERMILLE).unwrap();
        assert_eq!(t.fee_cr, t.total_cr * TRADE_FEE_PERMILLE / 1_000);
        assert!(t.fee_cr > 0, "{t:?}");
        let (till0, credits0) = (m.till_cr(), credits);
        apply_trade(&mut m, &mut credits, &mut cargo, &t).unwrap();
        assert_eq!(
            credits,
            credits0 - t.total_cr - t.fee_cr,
            "the buyer pays the fee on top"
        );
        assert_eq!(
            m.till_cr(),
            till0 + t.total_cr,
            "the till gets the total only"
        );
        let sell = order(Side::Sell, Good::Fuel, 50);
        let s = decide_trade(&m, credits, &cargo, 1_000, &sell, TRADE_FEE_PERMILLE).unwrap();
        let credits1 = credits;
        apply_trade(&mut m, &mut credits, &mut cargo, &s).unwrap();
        assert_eq!(
            credits,
            credits1 + s.total_cr - s.fee_cr,
            "the seller gets less the fee"
        );
        assert_eq!(s.player_cr(), s.total_cr - s.fee_cr);
        // A buyer who has the total but not the fee is refused, and told what it needs.
        let exact = m.quote_buy(Good::Fuel, 50).unwrap();
        let err = decide_trade(&m, exact, &cargo, 1_000, &buy, TRADE_FEE_PERMILLE).unwrap_err();
        assert_eq!(err.code(), "no_credits");
        // A logged fee at or above the total is refused and changes nothing.
        let bad = Trade {
            fee_cr: s.total_cr,
            ..s
        };
        let before = (m.clone(), credits, cargo);
        assert!(apply_trade(&mut m, &mut credits, &mut cargo, &bad).is_err());
        assert_eq!((m.clone(), credits, cargo), before);
        let smallest_with_fee = 1_000u64.div_ceil(TRADE_FEE_PERMILLE);
        assert_eq!(
            trade_fee_cr(smallest_with_fee - 1, TRADE_FEE_PERMILLE),
            0,
            "too small to bear a fee"
        );
        assert_eq!(trade_fee_cr(smallest_with_fee, TRADE_FEE_PERMILLE), 1);
    }

    #[test]
    fn a_sale_to_a_thin_purse_pays_a_higher_fee_and_a_buy_never_does() {
        assert_eq!(fee_permille(Side::Sell, TILL_TARGET_CR), TRADE_FEE_PERMILLE);
        assert_eq!(
            fee_permille(Side::Sell, 2 * TILL_TARGET_CR),
            TRADE_FEE_PERMILLE
        );
        assert_eq!(fee_permille(Side::Sell, 0), SALE_FEE_AT_EMPTY_TILL_PERMILLE);
        let half = (TRADE_FEE_PERMILLE + SALE_FEE_AT_EMPTY_TILL_PERMILLE) / 2;
        assert_eq!(fee_permille(Side::Sell, TILL_TARGET_CR / 2), half);
        let mut last = 0;
        for till_cr in (0..=TILL_TARGET_CR).rev().step_by(10_007) {
            assert_eq!(fee_permille(Side::Buy, till_cr), TRADE_FEE_PERMILLE);
            let sale = fee_permille(Side::Sell, till_cr);
            assert!(sale >= last, "the thinner the purse, the higher the fee");
            last = sale;
        }
        // A decided sale carries the fee of the till it was decided against.
        let mut m = Market::new(EconomyKind::Refinery);
        let mut cargo = Cargo::new();
        cargo.add(Good::Fuel, 50).unwrap();
        let sell = order(Side::Sell, Good::Fuel, 50);
        let full = decide_trade(
            &m,
            0,
            &cargo,
            1_000,
            &sell,
            fee_permille(Side::Sell, m.till_cr()),
        );
        m.till_cr = TILL_TARGET_CR / 4;
        let thin = decide_trade(
            &m,
            0,
            &cargo,
            1_000,
            &sell,
            fee_permille(Side::Sell, m.till_cr()),
        );
        let (full, thin) = (full.unwrap(), thin.unwrap());
        assert_eq!(
            full.total_cr, thin.total_cr,
            "the price does not depend on the till"
        );
        assert_eq!(full.fee_cr, full.total_cr * TRADE_FEE_PERMILLE / 1_000);
        assert!(thin.fee_cr > 2 * full.fee_cr, "{thin:?} against {full:?}");
    }

    #[test]
    fn a_market_at_rest_stays_at_rest_in_the_living_economy() {
        for kind in EconomyKind::ALL {
            let mut m = Market::new(kind);
            assert!(m.advance_living(kind, &[], 0, 10_000).is_empty(), "{kind}");
        }
    }

    #[test]
    fn a_drained_market_answers_faster_and_its_price_comes_back() {
        let kind = EconomyKind::Agricultural;
        let mut steady = Market::new(kind);
        let rest_price = steady.price_cr(Good::Food);
        let all = steady.stock(Good::Food) as u32;
        steady.buy(Good::Food, all).unwrap();
        let mut living = steady.clone();
        assert_eq!(
            living.price_cr(Good::Food),
            max_price_cr(Good::Food),
            "drained: ceiling"
        );
        let steady_made = steady.advance(kind, 0, 100).produced[Good::Food.index()];
        let living_made = living.advance_living(kind, &[], 0, 100).produced[Good::Food.index()];
        assert_eq!(steady_made, 400, "the table rate");
        assert!(
            living_made >= 3 * steady_made,
            "far from rest, production answers: {living_made} in 100 ticks"
        );
        living.advance_living(kind, &[], 100, 3_000);
        assert_eq!(living.price_cr(Good::Food), rest_price, "back at rest");
    }

    #[test]
    fn model_4_creates_no_more_than_the_market_destroyed_plus_its_allowance() {
        let kind = EconomyKind::Agricultural;
        let stock = Market::new(kind).stock;
        // A till drained by traders, no budget yet: only the allowance is created.
        let mut m = Market::from_parts(stock, TILL_TARGET_CR / 2).unwrap();
        let r = m.advance_model(EconomyModel::Budgeted, kind, &[], 0, 100);
        assert_eq!(r.subsidy_cr, 100 * BUDGET_ALLOWANCE_CR_PER_TICK);
        assert_eq!(m.budget_cr(), Some(0), "the allowance is spent as it comes");
        // A fee taken here fills the budget, and the subsidy spends it at the slow rate.
        m.take_fee(50_000);
        assert_eq!(m.budget_cr(), Some(50_000));
        let r = m.advance_model(EconomyModel::Budgeted, kind, &[], 100, 101);
        assert_eq!(
            r.subsidy_cr, TILL_REVERSION_CR_PER_TICK,
            "spent at the slow rate"
        );
        let r2 = m.advance_model(EconomyModel::Budgeted, kind, &[], 101, 1_000);
        assert!(m.till_cr() < TILL_TARGET_CR, "the budget ran out first");
        assert_eq!(m.budget_cr(), Some(0));
        assert_eq!(
            r.subsidy_cr + r2.subsidy_cr,
            50_000 + (1_000 - 100) * BUDGET_ALLOWANCE_CR_PER_TICK,
            "created = the fee + the allowance, no more"
        );
        // Tax fills the budget up to its cap; the excess is lost, not banked.
        let mut rich = Market::from_parts(stock, 3 * TILL_TARGET_CR).unwrap();
        let r = rich.advance_model(EconomyModel::Budgeted, kind, &[], 0, 2_000);
        assert_eq!(r.tax_cr, 2 * TILL_TARGET_CR);
        assert_eq!(rich.budget_cr(), Some(BUDGET_CAP_CR));
        // Model 3 ignores a budget and never starts one; fees leave a budgetless market alone.
        let mut slow = Market::from_parts(stock, TILL_TARGET_CR / 2).unwrap();
        slow.take_fee(1_000);
        let r = slow.advance_model(EconomyModel::SlowSubsidy, kind, &[], 0, 100);
        assert_eq!(
            r.subsidy_cr,
            100 * TILL_REVERSION_CR_PER_TICK,
            "model 3 unbounded"
        );
        assert_eq!(slow.budget_cr(), None);
        assert!(Market::new(kind)
            .with_budget(Some(BUDGET_CAP_CR + 1))
            .is_err());
    }

    #[test]
    fn a_flooded_market_recovers_and_a_shock_moves_the_price_then_ends() {
        let kind = EconomyKind::Industrial;
        let mut m = Market::new(kind);
        let room = (max_stock_units(Good::Food) - m.stock(Good::Food)) as u32;
        m.till_cr = u64::MAX / 4;
        m.sell(Good::Food, room).unwrap();
        assert_eq!(
            m.price_cr(Good::Food),
            min_price_cr(Good::Food),
            "flooded: floor"
        );
        m.advance_living(kind, &[], 0, 2_000);
        assert!(
            m.price_cr(Good::Food) > min_price_cr(Good::Food),
            "not pinned"
        );
        m.advance_living(kind, &[], 2_000, 20_000);
        let rest = Market::new(kind);
        assert_eq!(m.stocks(), rest.stocks(), "recovered to rest");
        // A glut of metals (made here) for 3,000 ticks: cheaper, then back.
        let glut = [Shock {
            kind: crate::shock::ShockKind::Glut,
            good: Some(Good::Metals),
            until: 23_000,
        }];
        let before = m.price_cr(Good::Metals);
        m.advance_living(kind, &glut, 20_000, 23_000);
        assert!(m.price_cr(Good::Metals) < before, "a glut makes it cheap");
        m.advance_living(kind, &glut, 23_000, 40_000);
        assert_eq!(m.price_cr(Good::Metals), before, "and ends");
    }

    #[test]
    fn ore_brought_to_a_factory_makes_its_metals_cheaper() {
        let kind = EconomyKind::Industrial;
        let mut m = Market::new(kind);
        let before = m.price_cr(Good::Metals);
        m.sell(Good::Ore, 1_500).unwrap();
        m.advance_living(kind, &[], 0, 100);
        assert!(
            m.price_cr(Good::Metals) < before,
            "more ore, more metals: cheaper"
        );
    }

    #[test]
    fn model_3_refills_a_drained_till_slowly_and_model_2_as_before() {
        let kind = EconomyKind::Mining;
        let drained = Market::from_parts(Market::new(kind).stock, 0).unwrap();
        // Model 2, as its logs were written: 1,000 cr a tick until the target.
        let mut living = drained.clone();
        let r = living.advance_model(EconomyModel::Living, kind, &[], 0, 100);
        assert_eq!(r.subsidy_cr, 100 * TILL_REVERSION_CR_PER_TICK);
        assert_eq!(
            living.advance_living(kind, &[], 100, 2_000).subsidy_cr,
            900_000
        );
        assert_eq!(living.till_cr(), TILL_TARGET_CR);
        // Model 3: the shortfall over TILL_SUBSIDY_REFILL_TICKS a tick, rounded up (a
        // shortfall of 500 refill times gets 500 cr a tick, half of model 2's).
        let shortfall = 500 * TILL_SUBSIDY_REFILL_TICKS;
        let till0 = TILL_TARGET_CR - shortfall;
        let mut slow = Market::from_parts(Market::new(kind).stock, till0).unwrap();
        let first = slow.advance_model(EconomyModel::SlowSubsidy, kind, &[], 0, 1);
        assert_eq!(first.subsidy_cr, 500);
        slow.advance_model(
            EconomyModel::SlowSubsidy,
            kind,
            &[],
            1,
            TILL_SUBSIDY_REFILL_TICKS,
        );
        let back_permille = (slow.till_cr() - till0) * 1_000 / shortfall;
        assert!(
            (600..700).contains(&back_permille),
            "about 1 - 1/e of the shortfall back in one refill time, got {back_permille}"
        );
        // A till emptied outright gets no more than model 2's 1,000 cr a tick.
        let r = drained
            .clone()
            .advance_model(EconomyModel::SlowSubsidy, kind, &[], 0, 1);
        assert_eq!(r.subsidy_cr, TILL_REVERSION_CR_PER_TICK);
        // Tax is unchanged: an excess is skimmed at the full rate under both.
        let full = Market::from_parts(Market::new(kind).stock, 3 * TILL_TARGET_CR).unwrap();
        for model in [EconomyModel::Living, EconomyModel::SlowSubsidy] {
            let r = full.clone().advance_model(model, kind, &[], 0, 10);
            assert_eq!(r.tax_cr, 10 * TILL_REVERSION_CR_PER_TICK, "{model:?}");
        }
        // And it does come all the way back (the rounding up ends the refill).
        slow.advance_model(EconomyModel::SlowSubsidy, kind, &[], 14_400, 100_000);
        assert_eq!(slow.till_cr(), TILL_TARGET_CR);
    }

    #[test]
    fn the_economy_brings_stocks_and_till_back_to_rest() {
        let kind = EconomyKind::Agricultural;
        let mut m = Market::new(kind);
        m.buy(Good::Food, 1_000).unwrap();
        let mut made = 0;
        for t in 0..300 {
            made += m.tick(kind, t).produced[Good::Food.index()];
        }
        assert_eq!(made, 1_000, "400 per 100 ticks, capped at rest");
        assert_eq!(m, Market::new(kind), "stocks and till are back at rest");
    }

    fn any_market() -> impl Strategy<Value = Market> {
        let stock =
            Good::ALL.map(|g| prop_oneof![0..=max_stock_units(g), Just(max_stock_units(g))]);
        (stock, 0u64..3 * TILL_TARGET_CR).prop_map(|(s, till)| Market::from_parts(s, till).unwrap())
    }

    fn any_good() -> impl Strategy<Value = Good> {
        (0..GOOD_COUNT).prop_map(|i| Good::ALL[i])
    }

    /// Cases each accept-counting property runs.
    const COUNTED_CASES: u32 = 256;

    /// Runs `check` on [`COUNTED_CASES`] inputs from `strategy`. `check` returns whether the
    /// input was accepted (and so checked) or rightly refused; fails unless at least
    /// `min_accepted` were accepted, so a generator that yields only refused inputs (a property
    /// that checks nothing) cannot pass.
    fn run_counting<S: Strategy>(
        name: &str,
        strategy: S,
        min_accepted: u32,
        check: impl Fn(S::Value) -> Result<bool, TestCaseError>,
    ) where
        S::Value: std::fmt::Debug,
    {
        let accepted = std::sync::atomic::AtomicU32::new(0);
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            cases: COUNTED_CASES,
            failure_persistence: None,
            ..ProptestConfig::default()
        });
        let result = runner.run(&strategy, |value| {
            if check(value)? {
                accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(())
        });
        if let Err(e) = result {
            panic!("{name}: {e}");
        }
        let accepted = accepted.into_inner();
        eprintln!("{name}: {accepted} of {COUNTED_CASES} inputs accepted");
        assert!(
            accepted >= min_accepted,
            "{name}: only {accepted} of {COUNTED_CASES} inputs were accepted (at least {min_accepted} wanted): the property checked almost nothing"
        );
    }

    #[test]
    fn prices_stay_within_bounds_for_any_stock() {
        // Buying needs the stock (any of 0..=max), selling needs room: with quantities below
        // 2,000 against stocks in the thousands, most inputs can do both.
        let inputs = || (any_market(), any_good(), 1u32..2_000);
        let check = |side: Side| {
            move |(m, good, qty): (Market, Good, u32)| {
                let p = m.price_cr(good);
                let in_bounds = min_price_cr(good) <= p && p <= max_price_cr(good);
                prop_assert!(in_bounds, "{} at {}", p, m.stock(good));
                let q = u64::from(qty);
                let quote = match side {
                    Side::Buy => m.quote_buy(good, qty),
                    Side::Sell => m.quote_sell(good, qty),
                };
                let Ok(total) = quote else { return Ok(false) };
                match side {
                    Side::Buy => {
                        let most = q * max_price_cr(good) * (1_000 + SPREAD_PERMILLE) / 1_000 + 1;
                        prop_assert!(total <= most);
                        prop_assert!(total >= q * min_price_cr(good));
                    }
                    Side::Sell => {
                        prop_assert!(total <= q * max_price_cr(good));
                        let least = q * min_price_cr(good) * (1_000 - SPREAD_PERMILLE) / 1_000;
                        prop_assert!(total + 1 >= least);
                    }
                }
                Ok(true)
            }
        };
        run_counting("buy quotes", inputs(), COUNTED_CASES / 4, check(Side::Buy));
        run_counting(
            "sell quotes",
            inputs(),
            COUNTED_CASES / 4,
            check(Side::Sell),
        );
    }

    #[test]
    fn buying_then_selling_never_creates_credits() {
        let inputs = (any_market(), any_good(), 1u32..5_000);
        run_counting(
            "buy then sell",
            inputs,
            COUNTED_CASES / 4,
            |(mut m, good, qty)| {
                let Ok(paid) = m.buy(good, qty) else {
                    return Ok(false);
                };
                let got = m.sell(good, qty).unwrap();
                prop_assert!(got < paid, "paid {} got {}", paid, got);
                Ok(true)
            },
        );
    }

    proptest! {
        #[test]
        fn the_closed_form_sum_is_the_sum_over_units(
            t in 1u64..3_000, lo in 0u64..20_000, n in 0u64..2_000
        ) {
            prop_assert_eq!(curve_sum(t, lo, lo + n), curve_sum_slow(t, lo, lo + n));
        }

        /// Any mix of trades and economy ticks: no panic, stocks within bounds, and every trade
        /// conserves credits (player + till) and goods (cargo + stock) exactly; only the tick's
        /// named rules create or destroy them, by the amounts it reports.
        #[test]
        fn trades_and_ticks_conserve_and_stay_in_bounds(
            kind in (0..EconomyKind::ALL.len()).prop_map(|i| EconomyKind::ALL[i]),
            ops in proptest::collection::vec((
                0u8..3,
                any_good(),
                prop_oneof![3 => 1u32..60, 1 => 0u32..3_000],
                proptest::option::weighted(0.3, 0u64..1_000),
            ), 1..120),
        ) {
            let mut m = Market::new(kind);
            let (mut credits, mut cargo) = (50_000u64, Cargo::new());
            let mut created_cr: i128 = 0;
            let mut made = [0i128; GOOD_COUNT];
            let total_cr = |m: &Market, c: u64| i128::from(m.till_cr()) + i128::from(c);
            let total_goods = |m: &Market, c: &Cargo| {
                Good::ALL.map(|g| i128::from(m.stock(g)) + i128::from(c.get(g)))
            };
            let (cr0, goods0) = (total_cr(&m, credits), total_goods(&m, &cargo));
            for (t, (op, good, qty, limit)) in ops.into_iter().enumerate() {
                if op == 2 {
                    let r = m.tick(kind, t as u64);
                    created_cr += i128::from(r.subsidy_cr) - i128::from(r.tax_cr);
                    for i in Good::ALL.map(Good::index) {
                        made[i] += i128::from(r.produced[i]) - i128::from(r.consumed[i]);
                    }
                } else {
                    let side = if op == 0 { Side::Buy } else { Side::Sell };
                    let o = Order { side, good, qty, price_limit_cr: limit };
                    let before = (m.clone(), credits, cargo);
                    match decide_trade(&m, credits, &cargo, 2_000, &o, TRADE_FEE_PERMILLE) {
                        Ok(trade) => {
                            apply_trade(&mut m, &mut credits, &mut cargo, &trade).unwrap();
                            prop_assert!(trade.fee_cr == 0 || trade.fee_cr < trade.total_cr);
                            created_cr -= i128::from(trade.fee_cr);
                            prop_assert!(cargo.hold_used() <= 2_000);
                            if let Some(l) = limit {
                                let bound = l * u64::from(qty);
                                let within = match side {
                                    Side::Buy => trade.total_cr <= bound,
                                    Side::Sell => trade.total_cr >= bound,
                                };
                                prop_assert!(within, "limit {} on {:?}", l, trade);
                            }
                        }
                        Err(_) => prop_assert_eq!((m.clone(), credits, cargo), before),
                    }
                }
                for g in Good::ALL {
                    prop_assert!(m.stock(g) <= max_stock_units(g));
                }
                prop_assert_eq!(total_cr(&m, credits), cr0 + created_cr);
                let now = total_goods(&m, &cargo);
                for i in Good::ALL.map(Good::index) {
                    prop_assert_eq!(now[i], goods0[i] + made[i]);
                }
            }
        }

        #[test]
        fn the_living_economy_gives_the_same_market_for_any_split_of_a_span(
            m in any_market(), kind_i in 0..6usize, start in 0u64..1_000_000,
            n in 0u64..400, cut in 0u64..400, until in 0u64..800, model_n in 2u64..=4,
            budget in proptest::option::of(0..=BUDGET_CAP_CR)
        ) {
            let kind = EconomyKind::ALL[kind_i];
            let model = EconomyModel::from_number(model_n).unwrap();
            let m = m.with_budget(budget).unwrap();
            let shocks = [Shock {
                kind: crate::shock::ShockKind::Shortage,
                good: Some(Good::Ore),
                until: start + until,
            }];
            let cut = start + cut.min(n);
            let (mut a, mut b) = (m.clone(), m);
            let whole = a.advance_model(model, kind, &shocks, start, start + n);
            let first = b.advance_model(model, kind, &shocks, start, cut);
            let second = b.advance_model(model, kind, &shocks, cut, start + n);
            prop_assert_eq!(&a, &b);
            for i in Good::ALL.map(Good::index) {
                prop_assert_eq!(whole.produced[i], first.produced[i] + second.produced[i]);
                prop_assert_eq!(whole.consumed[i], first.consumed[i] + second.consumed[i]);
            }
            prop_assert_eq!(whole.subsidy_cr, first.subsidy_cr + second.subsidy_cr);
            prop_assert_eq!(whole.tax_cr, first.tax_cr + second.tax_cr);
        }

        #[test]
        fn advancing_many_ticks_equals_ticking_one_by_one(
            m in any_market(), kind_i in 0..6usize, start in 0u64..1_000_000, n in 0u64..400
        ) {
            let kind = EconomyKind::ALL[kind_i];
            let (mut a, mut b) = (m.clone(), m);
            let mut sum = TickReport::default();
            for t in start..start + n {
                let r = a.tick(kind, t);
                for i in Good::ALL.map(Good::index) {
                    sum.produced[i] += r.produced[i];
                    sum.consumed[i] += r.consumed[i];
                }
                sum.subsidy_cr += r.subsidy_cr;
                sum.tax_cr += r.tax_cr;
            }
            prop_assert_eq!(b.advance(kind, start, start + n), sum);
            prop_assert_eq!(a, b);
        }

        /// Gossip: boards built from the same reports, merged in any order and grouping,
        /// are equal; merging is idempotent.
        #[test]
        fn merging_boards_in_any_order_converges(
            reports in proptest::collection::vec(
                (0u16..6, 0u64..8, proptest::array::uniform8(0u64..3)), 0..40),
            shuffle in any::<u64>(),
            cuts in proptest::collection::vec(0usize..40, 0..5),
        ) {
            // Spread the reports over several boards (the gossip views)...
            let mut boards = vec![PriceBoard::new(); cuts.len() + 1];
            for (i, &(s, tick, prices_cr)) in reports.iter().enumerate() {
                let b = cuts.iter().filter(|&&c| c <= i).count();
                boards[b].record(SystemId(s), PriceReport { tick, prices_cr });
            }
            // ...merge them in order, and in a shuffled order by pairs.
            let mut forward = PriceBoard::new();
            for b in &boards {
                forward.merge(b);
            }
            let mut order: Vec<usize> = (0..boards.len()).collect();
            let mut rng = crate::rng::Rng::from_seed(shuffle);
            for i in (1..order.len()).rev() {
                order.swap(i, rng.below(i as u64 + 1) as usize);
            }
            let mut pairs: Vec<PriceBoard> = order.chunks(2).map(|c| {
                let mut b = boards[c[0]].clone();
                for &j in &c[1..] { b.merge(&boards[j]); }
                b
            }).collect();
            pairs.reverse();
            let mut backward = PriceBoard::new();
            for b in &pairs {
                backward.merge(b);
            }
            prop_assert_eq!(&forward, &backward);
            prop_assert_eq!(forward.merge(&backward), 0, "merging again changes nothing");
            for (s, r) in forward.iter() {
                let newest = reports.iter().filter(|x| SystemId(x.0) == s).map(|x| x.1).max();
                prop_assert_eq!(Some(r.tick), newest, "newest report wins");
            }
        }
    }

    #[test]
    fn a_board_keeps_the_newest_report_and_tells_its_age() {
        let mut b = PriceBoard::new();
        let old = PriceReport {
            tick: 5,
            prices_cr: [1; GOOD_COUNT],
        };
        let new = PriceReport {
            tick: 9,
            prices_cr: [2; GOOD_COUNT],
        };
        assert!(b.record(SystemId(3), new));
        assert!(!b.record(SystemId(3), old));
        assert_eq!(b.get(SystemId(3)), Some(&new));
        assert_eq!(b.age_ticks(SystemId(3), 20), Some(11));
        assert_eq!(b.age_ticks(SystemId(4), 20), None);
    }
}
