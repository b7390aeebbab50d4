//! One market per star system, whatever its instances: the primary instance holds the market,
//! and a trade asked in another instance reaches it through an escrow, in three recorded steps
//! (each one an event of a log, so a replay and a crash recovery see the same):
//!
//! 1. **Escrow** (the instance's log, `trade.escrow`): what the trade may need is taken from the
//!    player: for a buy, their credits (up to the price limit times the quantity, if they set
//!    one); for a sell, the goods. The player can do nothing else until step 3.
//! 2. **Remote trade** (the primary's log, `trade.remote`): the primary decides the order
//!    against the one market with what the escrow holds, and records it; **this is the commit
//!    point**. The goods (buy) or the price (sell) leave the market into the escrow's hands.
//!    The primary records nothing if it refuses.
//! 3. **Settle** (the instance's log): `trade.settle` gives the player the goods or the price
//!    and returns what the escrow held beyond it; `trade.refund` returns everything if the
//!    primary refused. Then the primary forgets the outcome (`trade.done`).
//!
//! The station's fee ([`market::fee_permille`], as on a local trade, from the primary's till)
//! is decided by the primary in step 2 and leaves the game there (`trade.remote ... fee=`, the
//! sink "trade_fee"): the escrow then holds the credits less the fee, and step 3 carries the
//! fee (`trade.settle ... fee=`) so that the instance pays the player what the escrow holds.
//!
//! An instance asks once per escrow (its requests may reach the primary in any order); the
//! primary refuses an escrow whose outcome it still holds, and the auditor proves that no
//! escrow was ever traded twice.
//!
//! Credits and goods are never in two places: between steps 2 and 3 they are in the escrow
//! (the auditor counts them there), and recovery settles an escrow left open by a crash from the
//! primary's state: committed (the primary kept the outcome) -> settle, otherwise -> refund.
//! The instance waits until the escrow is durable before it asks the primary, and the primary
//! forgets an outcome only once the settle is durable, so the two logs can never disagree.
//!
//! Pure rules, like the rest of `system`: never does I/O.

use super::{ApplyError, Escrow, Event, Reject, RemoteOutcome, SystemState};
use crate::galaxy::Galaxy;
use crate::goods::Cargo;
use crate::ids::EscrowId;
use crate::market::{self, Order, Side, Trade, TradeError, MAX_TRADE_UNITS};

/// What an instance sends the primary for escrow `escrow`: the order, what is held, and what
/// the market must know of the player to check it (their other credits, cargo and hold, which
/// cannot change while the escrow is open).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EscrowRequest {
    pub instance: u16,
    pub escrow: EscrowId,
    pub player: String,
    pub order: Order,
    pub held_cr: u64,
    pub held_qty: u32,
    /// The player's credits outside the escrow.
    pub credits: u64,
    /// The player's cargo outside the escrow.
    pub cargo: Cargo,
    pub hold: u32,
}

impl SystemState {
    /// Step 1, in an instance: the escrow for `order`.
    pub fn decide_escrow(
        &self,
        galaxy: &Galaxy,
        name: &str,
        order: &Order,
    ) -> Result<Event, Reject> {
        if self.is_primary() {
            return Err(Reject::NoInstance(galaxy.name(self.id).to_string()));
        }
        let p = self.able(galaxy, name)?;
        if order.qty == 0 || order.qty > MAX_TRADE_UNITS {
            let qty = u64::from(order.qty);
            return Err(TradeError::BadQuantity { qty }.into());
        }
        let (held_cr, held_qty) = match order.side {
            Side::Buy => {
                // The price limit bounds the market's total; the station's fee comes on top
                // (a buy's fee does not depend on the till).
                let most = order.price_limit_cr.map_or(u64::MAX, |l| {
                    let total = l.saturating_mul(u64::from(order.qty));
                    let fee_permille = market::fee_permille(Side::Buy, 0);
                    total.saturating_add(market::trade_fee_cr(total, fee_permille))
                });
                (p.credits.min(most), 0)
            }
            Side::Sell => {
                let have = p.cargo.get(order.good);
                if order.qty > have {
                    let (good, want) = (order.good, order.qty);
                    return Err(TradeError::NotCarried { good, want, have }.into());
                }
                (0, order.qty)
            }
        };
        Ok(Event::Escrow {
            escrow: self.next_escrow,
            player: name.to_string(),
            order: *order,
            held_cr,
            held_qty,
        })
    }

    /// What an instance sends the primary for its open escrow `escrow`.
    pub fn escrow_request(&self, escrow: EscrowId) -> Option<EscrowRequest> {
        let e = self.escrows.get(&escrow)?;
        let p = self.players.get(&e.player)?;
        Some(EscrowRequest {
            instance: self.instance,
            escrow,
            player: e.player.clone(),
            order: e.order,
            held_cr: e.held_cr,
            held_qty: e.held_qty,
            credits: p.credits,
            cargo: p.cargo,
            hold: p.hold,
        })
    }

    /// Step 2, in the primary: the trade of an instance's escrow against the market.
    pub fn decide_remote_trade(
        &self,
        galaxy: &Galaxy,
        req: &EscrowRequest,
    ) -> Result<Event, Reject> {
        let open = self.is_primary() && self.instances.contains(&req.instance);
        if !open || self.remote_trades.contains_key(&(req.instance, req.escrow)) {
            return Err(Reject::NoInstance(format!(
                "{} #{}",
                galaxy.name(self.id),
                req.instance
            )));
        }
        let fee_permille = market::fee_permille(req.order.side, self.market.till_cr());
        let trade = match req.order.side {
            // The escrow's credits pay; the player's hold must take the goods.
            Side::Buy => market::decide_trade(
                &self.market,
                req.held_cr,
                &req.cargo,
                req.hold,
                &req.order,
                fee_permille,
            )?,
            // The escrow's goods are sold; the player's credits must take the price.
            Side::Sell => {
                let mut cargo = req.cargo;
                cargo
                    .add(req.order.good, u64::from(req.held_qty))
                    .map_err(|_| TradeError::TooLarge)?;
                market::decide_trade(
                    &self.market,
                    req.credits,
                    &cargo,
                    req.hold,
                    &req.order,
                    fee_permille,
                )?
            }
        };
        assert!(
            trade.side == Side::Sell || trade.total_cr + trade.fee_cr <= req.held_cr,
            "a buy through escrow {} pays more than it holds",
            req.escrow
        );
        Ok(Event::RemoteTrade {
            instance: req.instance,
            escrow: req.escrow,
            player: req.player.clone(),
            trade,
        })
    }

    /// Step 3, in an instance: settle escrow `escrow` by the primary's answer (`Some(trade)`:
    /// the market took it at that price and fee; `None`: refused).
    pub fn decide_settle(&self, escrow: EscrowId, taken: Option<&Trade>) -> Option<Event> {
        let e = self.escrows.get(&escrow)?;
        let player = e.player.clone();
        Some(match taken {
            Some(trade) => {
                assert_eq!(
                    (trade.side, trade.good, trade.qty),
                    (e.order.side, e.order.good, e.order.qty),
                    "escrow {escrow} settles another trade than it holds"
                );
                Event::EscrowSettle {
                    escrow,
                    player,
                    total_cr: trade.total_cr,
                    fee_cr: trade.fee_cr,
                }
            }
            None => Event::EscrowRefund { escrow, player },
        })
    }

    /// Applies [`Event::Escrow`].
    pub(super) fn apply_escrow(&mut self, id: EscrowId, e: Escrow) -> Result<(), ApplyError> {
        if self.is_primary() || id != self.next_escrow || self.has_escrow(&e.player) {
            return Err(ApplyError::EscrowCannotOpen {
                escrow: id,
                player: e.player,
            });
        }
        let Some(p) = self.players.get_mut(&e.player) else {
            return Err(ApplyError::ActorNotHere {
                action: "escrow",
                player: e.player,
            });
        };
        let mut cargo = p.cargo;
        if let Err(why) = cargo.remove(e.order.good, u64::from(e.held_qty)) {
            return Err(ApplyError::EscrowCargo {
                player: e.player,
                why,
            });
        }
        let Some(credits) = p.credits.checked_sub(e.held_cr) else {
            return Err(ApplyError::EscrowHoldsTooMuch { player: e.player });
        };
        p.credits = credits;
        p.cargo = cargo;
        p.version = p.version.next();
        self.next_escrow = self.next_escrow.next();
        self.escrows.insert(id, e);
        Ok(())
    }

    /// Applies [`Event::EscrowSettle`] (`Some((total, fee))`) or [`Event::EscrowRefund`]
    /// (`None`).
    pub(super) fn apply_settle(
        &mut self,
        id: EscrowId,
        player: &str,
        taken: Option<(u64, u64)>,
    ) -> Result<(), ApplyError> {
        let e = match self.escrows.get(&id) {
            Some(e) if e.player == player => e.clone(),
            _ => {
                return Err(ApplyError::EscrowNotOpen {
                    escrow: id,
                    player: player.to_string(),
                })
            }
        };
        let p = self
            .players
            .get_mut(player)
            .ok_or_else(|| ApplyError::EscrowSettlesAbsent {
                escrow: id,
                player: player.to_string(),
            })?;
        let (mut credits, mut cargo) = (p.credits, p.cargo);
        let good = e.order.good;
        let overflow = || ApplyError::EscrowOverflows {
            escrow: id,
            player: player.to_string(),
        };
        if let Some((total_cr, fee_cr)) = taken {
            if fee_cr >= total_cr && fee_cr > 0 {
                return Err(ApplyError::TradeFee { fee_cr, total_cr });
            }
        }
        match (taken, e.order.side) {
            (None, _) => {
                credits = credits.checked_add(e.held_cr).ok_or_else(overflow)?;
                cargo
                    .add(good, u64::from(e.held_qty))
                    .map_err(|_| overflow())?;
            }
            (Some((total, fee)), Side::Buy) => {
                let back =
                    e.held_cr
                        .checked_sub(total + fee)
                        .ok_or(ApplyError::EscrowOverpaid {
                            escrow: id,
                            total_cr: total + fee,
                        })?;
                credits = credits.checked_add(back).ok_or_else(overflow)?;
                cargo
                    .add(good, u64::from(e.order.qty))
                    .map_err(|_| overflow())?;
            }
            (Some((total, fee)), Side::Sell) => {
                if e.held_qty != e.order.qty {
                    return Err(ApplyError::EscrowQuantity { escrow: id });
                }
                credits = credits.checked_add(total - fee).ok_or_else(overflow)?;
            }
        }
        if cargo.hold_used() > u64::from(p.hold) {
            return Err(ApplyError::EscrowOverfillsHold {
                escrow: id,
                player: player.to_string(),
            });
        }
        p.credits = credits;
        p.cargo = cargo;
        p.version = p.version.next();
        self.escrows.remove(&id);
        Ok(())
    }

    /// Applies [`Event::RemoteTrade`]: the market's half of an instance's trade.
    pub(super) fn apply_remote_trade(
        &mut self,
        instance: u16,
        escrow: EscrowId,
        outcome: RemoteOutcome,
    ) -> Result<(), ApplyError> {
        let open = self.is_primary() && self.instances.contains(&instance);
        if !open || self.remote_trades.contains_key(&(instance, escrow)) {
            return Err(ApplyError::RemoteTradeCannotApply { instance, escrow });
        }
        let t = outcome.trade;
        if t.fee_cr >= t.total_cr && t.fee_cr > 0 {
            let (fee_cr, total_cr) = (t.fee_cr, t.total_cr);
            return Err(ApplyError::TradeFee { fee_cr, total_cr });
        }
        let mut m = self.market.clone();
        let total = match t.side {
            Side::Buy => m.buy(t.good, t.qty),
            Side::Sell => m.sell(t.good, t.qty),
        }
        .map_err(|why| ApplyError::RemoteTradeRefused {
            instance,
            escrow,
            why,
        })?;
        if total != t.total_cr {
            return Err(ApplyError::RemoteTradeTotal {
                instance,
                escrow,
                logged_cr: t.total_cr,
                actual_cr: total,
            });
        }
        m.take_fee(t.fee_cr);
        self.market = m;
        self.remote_trades.insert((instance, escrow), outcome);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::goods::Good;
    use crate::ids::{EscrowId, Tick, Version};
    use crate::instance::InstanceId;
    use crate::player::Player;
    use crate::rules::Rules;

    fn order(side: Side, qty: u32) -> Order {
        Order {
            side,
            good: Good::Ore,
            qty,
            price_limit_cr: None,
        }
    }

    /// A primary with instance 2 open, and instance 2 with Ann in it.
    fn states() -> (Galaxy, SystemState, SystemState) {
        let g = Galaxy::default_galaxy();
        let mut primary = SystemState::new(&g, g.home());
        primary
            .apply(Tick(1), &Event::Split { instance: 2 })
            .unwrap();
        let mut two = SystemState::new_instance(&g, InstanceId::new(g.home(), 2));
        let ann = Player::starter("Ann", &Rules::default());
        two.players.insert("Ann".into(), ann);
        (g, primary, two)
    }

    /// Credits and ore across both states, escrows included (as the auditor counts them).
    fn totals(primary: &SystemState, two: &SystemState) -> (u128, u128) {
        let mut cr = u128::from(primary.market.till_cr());
        let mut ore = u128::from(primary.market.stock(Good::Ore));
        for p in two.players.values() {
            cr += u128::from(p.credits);
            ore += u128::from(p.cargo.get(Good::Ore));
        }
        for (id, e) in &two.escrows {
            match primary.remote_trades.get(&(2, *id)) {
                Some(o) if o.trade.side == Side::Buy => {
                    cr += u128::from(e.held_cr - o.trade.total_cr - o.trade.fee_cr);
                    ore += u128::from(o.trade.qty);
                }
                Some(o) => cr += u128::from(o.trade.total_cr - o.trade.fee_cr),
                None => {
                    cr += u128::from(e.held_cr);
                    ore += u128::from(e.held_qty);
                }
            }
        }
        (cr, ore)
    }

    #[test]
    fn a_trade_in_an_instance_goes_through_the_primarys_market_and_conserves_everything() {
        let (g, mut primary, mut two) = states();
        // Under economy model 4 the fee fills the primary's subsidy budget, as a local one.
        primary.market = primary.market.clone().with_budget(Some(0)).unwrap();
        let (mut before_cr, before_ore) = totals(&primary, &two);
        let stock = primary.market.stock(Good::Ore);
        let credits0 = two.players["Ann"].credits;
        let mut fees_cr = 0;
        for (t, side) in [(2, Side::Buy), (5, Side::Sell)] {
            let escrow = two.decide_escrow(&g, "Ann", &order(side, 10)).unwrap();
            two.apply(Tick(t), &escrow).unwrap();
            assert_eq!(
                totals(&primary, &two),
                (before_cr, before_ore),
                "escrow open"
            );
            assert_eq!(
                two.decide_escrow(&g, "Ann", &order(side, 1)),
                Err(Reject::TradePending("Sol".into())),
                "one trade at a time"
            );
            let id = EscrowId(two.next_escrow.0 - 1);
            let req = two.escrow_request(id).unwrap();
            let remote = primary.decide_remote_trade(&g, &req).unwrap();
            let Event::RemoteTrade { trade, .. } = remote else {
                unreachable!()
            };
            assert_eq!(
                trade.fee_cr,
                market::trade_fee_cr(trade.total_cr, market::TRADE_FEE_PERMILLE),
                "the station's fee, as on a local trade at a full till"
            );
            assert!(trade.fee_cr > 0, "{trade:?}");
            fees_cr += trade.fee_cr;
            // The fee leaves the game at the commit point, nothing else does.
            before_cr -= u128::from(trade.fee_cr);
            primary.apply(Tick(t + 1), &remote).unwrap();
            assert_eq!(
                totals(&primary, &two),
                (before_cr, before_ore),
                "committed, not settled"
            );
            assert_eq!(
                primary.market.budget_cr(),
                Some(fees_cr),
                "the primary's budget took the fee"
            );
            assert!(primary.decide_remote_trade(&g, &req).is_err(), "taken once");
            let settle = two.decide_settle(id, Some(&trade)).unwrap();
            let Event::EscrowSettle { fee_cr, .. } = settle else {
                unreachable!()
            };
            assert_eq!(fee_cr, trade.fee_cr, "the settle carries the fee");
            two.apply(Tick(t + 2), &settle).unwrap();
            assert_eq!(totals(&primary, &two), (before_cr, before_ore), "settled");
            let done = Event::RemoteTradeDone {
                instance: 2,
                escrow: id,
            };
            primary.apply(Tick(t + 2), &done).unwrap();
            assert!(two.escrows.is_empty() && primary.remote_trades.is_empty());
        }
        assert_eq!(primary.market.stock(Good::Ore), stock, "bought 10, sold 10");
        let spread_cr = primary.market.till_cr() - market::TILL_TARGET_CR;
        assert_eq!(
            two.players["Ann"].credits,
            credits0 - spread_cr - fees_cr,
            "Ann paid the spread to the till and the fees to the station"
        );
        assert_eq!(
            two.players["Ann"].version,
            Version(5),
            "escrow and settle, twice"
        );
    }

    #[test]
    fn a_refused_trade_gives_everything_back() {
        let (g, primary, mut two) = states();
        let before = totals(&primary, &two);
        let ann = two.players["Ann"].clone();
        let mut o = order(Side::Buy, 10);
        o.price_limit_cr = Some(1);
        let escrow = two.decide_escrow(&g, "Ann", &o).unwrap();
        two.apply(Tick(2), &escrow).unwrap();
        assert_eq!(
            two.players["Ann"].credits,
            ann.credits - 10,
            "holds 10 x 1 cr"
        );
        let req = two.escrow_request(EscrowId(1)).unwrap();
        let refused = primary.decide_remote_trade(&g, &req).unwrap_err();
        assert_eq!(refused.code(), "price_limit");
        two.apply(Tick(3), &two.decide_settle(EscrowId(1), None).unwrap())
            .unwrap();
        assert_eq!(two.players["Ann"].credits, ann.credits);
        assert_eq!(totals(&primary, &two), before);
        assert!(
            two.decide_escrow(&g, "Ann", &order(Side::Sell, 1)).is_err(),
            "nothing to sell"
        );
    }
}
