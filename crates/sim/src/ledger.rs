//! The named sources and sinks of credits and goods: which rule of the game creates or
//! destroys what, read off each event ([`flows_of`]).
//!
//! Credits and goods are conserved by every event except the ones named here, so the credits
//! (or units of a good) held anywhere in the galaxy are exactly the sum of the sources less the
//! sum of the sinks, each a rule with a name an operator can read (`mltrader check`,
//! `mltrader economy --report`). Trades between players and a market's till move credits and
//! goods without creating any: they are listed apart ([`Flows::transfers`]), as what players
//! sold to and bought from each system's population.
//!
//! Pure: never does I/O, never reads a clock. A new rule that creates or destroys credits or
//! goods must appear here, or `check` reports the galaxy out of balance.

use std::fmt;

use crate::goods::{Cargo, GOOD_COUNT};
use crate::market::Side;
use crate::system::Event;

/// A rule that creates credits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CreditSource {
    /// A new player's starting credits (the rule "starting grant").
    StartGrant,
    /// A market's till when its system began (`market::TILL_TARGET_CR`).
    MarketFunds,
    /// Credits put into a till below its target (the rule "subsidy").
    Subsidy,
}

/// A rule that destroys credits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CreditSink {
    /// Fuel bought at a station (the rule "fuel purchase").
    Fuel,
    /// Hull mended at a station (the rule "hull repair").
    Repair,
    /// Credits taken from a till above its target (the rule "tax").
    Tax,
    /// The station's fee on a trade (`market::TRADE_FEE_PERMILLE`, the rule "trade fee").
    TradeFee,
}

/// A rule that makes goods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GoodsSource {
    /// A market's stock when its system began.
    MarketStock,
    /// A new player's starting cargo.
    StartCargo,
    /// A market's production (the rule "production").
    Production,
}

/// A rule that destroys goods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GoodsSink {
    /// A market's population used them (the rule "consumption").
    Consumption,
    /// A wreck older than its lifetime vanished with its cargo (the rule "wreck decay").
    WreckDecay,
    /// The oldest wreck made room for a new one at the wreck limit (also "wreck decay").
    WreckEvicted,
}

macro_rules! named {
    ($t:ty { $($v:ident => $n:literal),* $(,)? }) => {
        impl $t {
            /// Every one, in report order.
            pub const ALL: &'static [$t] = &[$(<$t>::$v),*];
            /// The stable name, for logs, reports and JSON.
            pub fn name(self) -> &'static str {
                match self { $(<$t>::$v => $n),* }
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

named!(CreditSource { StartGrant => "start_grant", MarketFunds => "market_funds", Subsidy => "subsidy" });
named!(CreditSink { Fuel => "fuel", Repair => "repair", Tax => "tax", TradeFee => "trade_fee" });
named!(GoodsSource { MarketStock => "market_stock", StartCargo => "start_cargo", Production => "production" });
named!(GoodsSink { Consumption => "consumption", WreckDecay => "wreck_decay", WreckEvicted => "wreck_evicted" });

/// Credits moved between players and markets by trades: conserved, not a source or a sink.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Transfers {
    /// Credits markets paid players for goods sold to them.
    pub sold_to_markets_cr: u64,
    /// Credits players paid markets for goods bought from them.
    pub bought_from_markets_cr: u64,
    /// Units players sold to markets, per good.
    pub units_sold: [u64; GOOD_COUNT],
    /// Units players bought from markets, per good.
    pub units_bought: [u64; GOOD_COUNT],
}

/// What one event created and destroyed, by rule.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flows {
    pub credits_in: Vec<(CreditSource, u64)>,
    pub credits_out: Vec<(CreditSink, u64)>,
    pub goods_in: Vec<(GoodsSource, [u64; GOOD_COUNT])>,
    pub goods_out: Vec<(GoodsSink, [u64; GOOD_COUNT])>,
    pub transfers: Transfers,
}

impl Flows {
    /// Credits created less credits destroyed.
    pub fn net_credits(&self) -> i128 {
        let made: i128 = self.credits_in.iter().map(|(_, n)| i128::from(*n)).sum();
        let gone: i128 = self.credits_out.iter().map(|(_, n)| i128::from(*n)).sum();
        made - gone
    }
}

/// Units per good of a hold.
fn units_of(cargo: &Cargo) -> [u64; GOOD_COUNT] {
    let mut units = [0; GOOD_COUNT];
    for (good, qty) in cargo.iter() {
        units[good.index()] += u64::from(qty);
    }
    units
}

/// What a system that has just begun holds by the rules: its till and its stock (nothing for
/// an instance, whose market is empty).
pub fn flows_at_start(till_cr: u64, stock: [u64; GOOD_COUNT]) -> Flows {
    Flows {
        credits_in: vec![(CreditSource::MarketFunds, till_cr)],
        goods_in: vec![(GoodsSource::MarketStock, stock)],
        ..Flows::default()
    }
}

/// What `event` creates and destroys, by rule, and the trades it carries out. Zero amounts
/// are left out.
pub fn flows_of(event: &Event) -> Flows {
    let mut f = Flows::default();
    match event {
        Event::Join { player, .. } => {
            f.credits_in
                .push((CreditSource::StartGrant, player.credits));
            f.goods_in
                .push((GoodsSource::StartCargo, units_of(&player.cargo)));
        }
        Event::Refuel { cost, .. } => f.credits_out.push((CreditSink::Fuel, *cost)),
        Event::Repair { cost, .. } => f.credits_out.push((CreditSink::Repair, *cost)),
        Event::Economy {
            report, decayed, ..
        } => {
            f.credits_in
                .push((CreditSource::Subsidy, report.subsidy_cr));
            f.credits_out.push((CreditSink::Tax, report.tax_cr));
            f.goods_in.push((GoodsSource::Production, report.produced));
            f.goods_out.push((GoodsSink::Consumption, report.consumed));
            f.goods_out.push((GoodsSink::WreckDecay, *decayed));
        }
        Event::Destroyed { evicted, .. } => {
            f.goods_out
                .push((GoodsSink::WreckEvicted, units_of(evicted)));
        }
        Event::Trade { trade, .. } | Event::RemoteTrade { trade, .. } => {
            f.credits_out.push((CreditSink::TradeFee, trade.fee_cr));
            let t = &mut f.transfers;
            match trade.side {
                Side::Buy => {
                    t.bought_from_markets_cr = trade.total_cr;
                    t.units_bought[trade.good.index()] = u64::from(trade.qty);
                }
                Side::Sell => {
                    t.sold_to_markets_cr = trade.total_cr;
                    t.units_sold[trade.good.index()] = u64::from(trade.qty);
                }
            }
        }
        _ => {}
    }
    f.credits_in.retain(|(_, n)| *n > 0);
    f.credits_out.retain(|(_, n)| *n > 0);
    f.goods_in.retain(|(_, u)| u.iter().any(|n| *n > 0));
    f.goods_out.retain(|(_, u)| u.iter().any(|n| *n > 0));
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::TickReport;

    #[test]
    fn an_economy_step_names_each_rule_and_leaves_zeros_out() {
        let mut report = TickReport {
            subsidy_cr: 7,
            ..TickReport::default()
        };
        report.produced[2] = 4;
        let f = flows_of(&Event::Economy {
            from: crate::ids::Tick(0),
            to: crate::ids::Tick(10),
            model: crate::economy::EconomyModel::Living,
            report,
            decayed: [0; GOOD_COUNT],
        });
        assert_eq!(f.credits_in, vec![(CreditSource::Subsidy, 7)]);
        assert!(f.credits_out.is_empty());
        assert_eq!(f.goods_in.len(), 1);
        assert!(f.goods_out.is_empty());
        assert_eq!(f.net_credits(), 7);
    }

    #[test]
    fn a_trade_fee_is_a_sink_and_the_total_a_transfer() {
        let trade = crate::market::Trade {
            side: Side::Sell,
            good: crate::goods::Good::Ore,
            qty: 3,
            total_cr: 500,
            fee_cr: 10,
        };
        let f = flows_of(&Event::Trade {
            player: "ann".into(),
            trade,
        });
        assert_eq!(f.credits_out, vec![(CreditSink::TradeFee, 10)]);
        assert_eq!(f.transfers.sold_to_markets_cr, 500);
        assert_eq!(f.net_credits(), -10);
    }

    #[test]
    fn names_are_stable() {
        let names: Vec<_> = CreditSource::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(names, ["start_grant", "market_funds", "subsidy"]);
        assert_eq!(CreditSink::Fuel.to_string(), "fuel");
    }
}
