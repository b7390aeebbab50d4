//! The rules' second step: change the state by an event, decided now or read from a log.
//!
//! An event decided on this state always applies. An error means a log disagrees with the
//! state it is replayed onto; the state is then left as it was (every arm checks before it
//! changes anything, or changes a copy). Never does I/O.

use std::collections::BTreeSet;

use super::decide::{combat_event, decayed_by};
use super::{ApplyError, Departing, Event, SystemState};
use crate::combat::{self, CombatOutcome, LootTake};
use crate::economy::EconomyModel;
use crate::galaxy::SystemId;
use crate::goods::{Cargo, GOOD_COUNT};
use crate::ids::{EscrowId, Tick, Version, Xfer};
use crate::instance::{InstanceId, MAX_INSTANCES_PER_SYSTEM, PRIMARY_INSTANCE};
use crate::market::{self, TickReport, Trade};
use crate::player::Player;
use crate::shock::{Shock, MAX_SHOCKS_PER_SYSTEM};

impl SystemState {
    /// Applies an event stamped with tick `t`: first what every event must respect (time
    /// runs forward, a ship shot down does nothing), then the event's own rules, one function
    /// for each kind. The state's tick moves to `t` only if the event applied.
    pub fn apply(&mut self, t: Tick, event: &Event) -> Result<(), ApplyError> {
        self.check_may_act(t, event)?;
        match event {
            Event::Join { player, key } => self.apply_join(player, key)?,
            Event::Refuel {
                player,
                units,
                cost,
            } => self.apply_refuel(player, *units, *cost)?,
            Event::Repair {
                player,
                points,
                cost,
            } => self.apply_repair(player, *points, *cost)?,
            Event::Depart {
                xfer,
                player,
                to,
                fuel,
            } => self.apply_depart(*xfer, player, *to, *fuel)?,
            Event::DepartDone { xfer } => self.apply_depart_done(*xfer)?,
            Event::DepartVoid { xfer } => self.apply_depart_void(*xfer)?,
            Event::DepartAbort { xfer, player } => self.apply_depart_abort(*xfer, player)?,
            Event::Arrive { from, xfer, player } => self.apply_arrive(*from, *xfer, player)?,
            Event::Trade { player, trade } => self.apply_local_trade(player, trade)?,
            Event::Economy {
                from,
                to,
                model,
                report,
                decayed,
            } => self.apply_economy(t, (*from, *to), *model, report, decayed)?,
            Event::Shock { shock } => self.apply_shock(t, shock)?,
            Event::Engage { player, target } => self.apply_engage(player, target.as_deref())?,
            Event::Combat { .. } => self.apply_combat(t, event)?,
            Event::Destroyed {
                player,
                by,
                wreck,
                jump_home,
                evicted,
            } => self.apply_destroyed(t, player, by, *wreck, *jump_home, evicted)?,
            Event::Loot { player, take } => self.apply_loot(player, take)?,
            Event::Split { instance } => self.apply_split(*instance)?,
            Event::Retire { instance } => self.apply_retire(*instance)?,
            Event::Escrow {
                escrow,
                player,
                order,
                held_cr,
                held_qty,
            } => {
                let e = super::Escrow {
                    player: player.clone(),
                    order: *order,
                    held_cr: *held_cr,
                    held_qty: *held_qty,
                };
                self.apply_escrow(*escrow, e)?;
            }
            Event::EscrowSettle {
                escrow,
                player,
                total_cr,
                fee_cr,
            } => self.apply_settle(*escrow, player, Some((*total_cr, *fee_cr)))?,
            Event::EscrowRefund { escrow, player } => self.apply_settle(*escrow, player, None)?,
            Event::RemoteTrade {
                instance,
                escrow,
                player,
                trade,
            } => {
                let outcome = super::RemoteOutcome {
                    player: player.clone(),
                    trade: *trade,
                };
                self.apply_remote_trade(*instance, *escrow, outcome)?;
            }
            Event::RemoteTradeDone { instance, escrow } => {
                self.apply_remote_trade_done(*instance, *escrow)?
            }
        }
        self.tick = t;
        Ok(())
    }

    /// What every event respects: ticks never go back, and a ship shot down does nothing but
    /// be destroyed, except that a trade under way settles even if its player was shot down
    /// meanwhile.
    fn check_may_act(&self, t: Tick, event: &Event) -> Result<(), ApplyError> {
        if t < self.tick {
            return Err(ApplyError::TickBefore {
                tick: t,
                state_tick: self.tick,
            });
        }
        let Some(name) = event.player() else {
            return Ok(());
        };
        let downed = self.players.get(name).is_some_and(|p| p.hull == 0);
        let allowed = matches!(
            event,
            Event::Destroyed { .. } | Event::EscrowSettle { .. } | Event::EscrowRefund { .. }
        );
        match downed && !allowed {
            true => Err(ApplyError::ActsWhileShotDown {
                player: name.to_string(),
            }),
            false => Ok(()),
        }
    }

    /// [`Event::Join`]: a new player, in a primary, under a name not taken.
    fn apply_join(&mut self, player: &Player, key: &str) -> Result<(), ApplyError> {
        if !self.is_primary() {
            return Err(ApplyError::JoinInInstance {
                player: player.name.clone(),
            });
        }
        if self.names.contains_name(&player.name) || self.players.contains_key(&player.name) {
            return Err(ApplyError::JoinedTwice {
                player: player.name.clone(),
            });
        }
        self.names.insert(player.name.clone(), key.to_string());
        self.players.insert(player.name.clone(), player.clone());
        Ok(())
    }

    /// [`Event::Refuel`]: `units` of fuel for `cost` credits, within the tank.
    fn apply_refuel(&mut self, player: &str, units: u32, cost: u64) -> Result<(), ApplyError> {
        let p = self.player_mut(player)?;
        if p.credits < cost || p.fuel + units > p.fuel_capacity {
            return Err(ApplyError::RefuelImpossible {
                player: player.to_string(),
                units,
                cost,
            });
        }
        p.credits -= cost;
        p.fuel += units;
        p.version = p.version.next();
        Ok(())
    }

    /// [`Event::Repair`]: `points` of hull for `cost` credits, up to the basic ship's hull.
    fn apply_repair(&mut self, player: &str, points: u32, cost: u64) -> Result<(), ApplyError> {
        let p = self.player_mut(player)?;
        let whole = crate::combat::BASIC_SHIP_HULL_POINTS;
        if points == 0 || p.credits < cost || p.hull.saturating_add(points) > whole {
            return Err(ApplyError::RepairImpossible {
                player: player.to_string(),
                points,
                cost,
            });
        }
        p.credits -= cost;
        p.hull += points;
        p.version = p.version.next();
        assert!(p.hull <= whole, "a repair past the hull of {whole}");
        Ok(())
    }

    /// [`Event::Depart`]: the player leaves on the next transfer, burning `fuel`.
    fn apply_depart(
        &mut self,
        xfer: Xfer,
        player: &str,
        to: InstanceId,
        fuel: u32,
    ) -> Result<(), ApplyError> {
        if xfer != self.next_xfer {
            return Err(ApplyError::TransferOutOfOrder {
                xfer,
                next: self.next_xfer,
            });
        }
        if self.player_mut(player)?.fuel < fuel {
            return Err(ApplyError::TooLittleFuel {
                player: player.to_string(),
            });
        }
        self.check_destination(to, fuel)?;
        let mut p = self.players.remove(player).expect("checked just above");
        p.fuel -= fuel;
        p.version = p.version.next();
        self.leave(p, xfer, to, fuel);
        Ok(())
    }

    /// [`Event::DepartDone`]: the transition log has the jump; it is no longer waiting here.
    fn apply_depart_done(&mut self, xfer: Xfer) -> Result<(), ApplyError> {
        self.departing
            .remove(&xfer)
            .map(|_| ())
            .ok_or(ApplyError::NotDeparting { xfer })
    }

    /// [`Event::DepartVoid`]: a transfer number that was never prepared here is used up.
    fn apply_depart_void(&mut self, xfer: Xfer) -> Result<(), ApplyError> {
        if xfer < self.next_xfer {
            return Err(ApplyError::VoidOfPrepared {
                xfer,
                next: self.next_xfer,
            });
        }
        self.next_xfer = xfer.next();
        self.voided.insert(xfer);
        Ok(())
    }

    /// [`Event::DepartAbort`]: a prepared jump did not happen; the player is back, fuel too.
    fn apply_depart_abort(&mut self, xfer: Xfer, player: &str) -> Result<(), ApplyError> {
        match self.departing.get(&xfer) {
            Some(d) if d.player.name == *player => {}
            Some(_) => {
                return Err(ApplyError::NotTheirTransfer {
                    xfer,
                    player: player.to_string(),
                })
            }
            None => return Err(ApplyError::NotDeparting { xfer }),
        }
        if self.players.contains_key(player) {
            return Err(ApplyError::AbortedWhileHere { xfer });
        }
        let d = self.departing.remove(&xfer).expect("checked just above");
        let mut p = d.player;
        p.fuel += d.fuel;
        p.version = p.version.next();
        self.players.insert(p.name.clone(), p);
        Ok(())
    }

    /// [`Event::Arrive`]: a player lands from transfer `xfer` of `from`, once.
    fn apply_arrive(
        &mut self,
        from: InstanceId,
        xfer: Xfer,
        player: &Player,
    ) -> Result<(), ApplyError> {
        if self.landed_upto.get(&from).is_some_and(|&n| xfer <= n) {
            return Err(ApplyError::LandedTwice {
                xfer,
                system: from.system.0,
                instance: from.n,
            });
        }
        if self.players.contains_key(&player.name) {
            return Err(ApplyError::LandsWhileHere {
                player: player.name.clone(),
            });
        }
        self.landed_upto.insert(from, xfer);
        self.players.insert(player.name.clone(), player.clone());
        Ok(())
    }

    /// [`Event::Trade`]: a trade with this primary's market, all or nothing.
    fn apply_local_trade(&mut self, player: &str, trade: &Trade) -> Result<(), ApplyError> {
        if !self.is_primary() {
            return Err(ApplyError::TradeInInstance {
                player: player.to_string(),
            });
        }
        let mut m = self.market.clone();
        let p = self
            .players
            .get_mut(player)
            .ok_or_else(|| ApplyError::ActorNotHere {
                action: "trade",
                player: player.to_string(),
            })?;
        let (mut credits, mut cargo) = (p.credits, p.cargo);
        market::apply_trade(&mut m, &mut credits, &mut cargo, trade)?;
        if cargo.hold_used() > u64::from(p.hold) {
            return Err(ApplyError::TradeOverfillsHold {
                player: player.to_string(),
            });
        }
        p.credits = credits;
        p.cargo = cargo;
        p.version = p.version.next();
        self.market = m;
        Ok(())
    }

    /// [`Event::Economy`]: the market's production and consumption over ticks `from..to`
    /// (an instance has no market: it makes nothing), and the wrecks that decayed by `to`.
    fn apply_economy(
        &mut self,
        t: Tick,
        (from, to): (Tick, Tick),
        model: EconomyModel,
        report: &TickReport,
        decayed: &[u64; GOOD_COUNT],
    ) -> Result<(), ApplyError> {
        if from < self.market_tick || to <= from || to > t {
            return Err(ApplyError::EconomyOutOfOrder {
                from,
                to,
                tick: t,
                market_tick: self.market_tick,
            });
        }
        let mut m = self.market.clone();
        let made = match (self.is_primary(), model) {
            (false, _) => Default::default(),
            (true, model) => m.advance_model(model, self.kind, &self.shocks, from.0, to.0),
        };
        if made != *report || decayed_by(&self.wrecks, to) != *decayed {
            return Err(ApplyError::EconomyMismatch { from, to });
        }
        self.wrecks.expire(to.0);
        self.market = m;
        self.market_tick = to;
        self.shocks.retain(|s| s.until > to.0);
        Ok(())
    }

    /// [`Event::Shock`]: a market shock begins (primary only), ending after `t`, with room
    /// for it and no other shock on its good.
    fn apply_shock(&mut self, t: Tick, shock: &Shock) -> Result<(), ApplyError> {
        let clash = crate::shock::clashes(&self.shocks, shock);
        if !self.is_primary()
            || shock.until <= t.0
            || self.shocks.len() >= MAX_SHOCKS_PER_SYSTEM
            || clash
        {
            return Err(ApplyError::ShockMismatch {
                kind: shock.kind.name(),
                until: shock.until,
            });
        }
        self.shocks.push(*shock);
        Ok(())
    }

    /// [`Event::Engage`]: a standing order to attack `target` (`None`: stop attacking).
    fn apply_engage(&mut self, player: &str, target: Option<&str>) -> Result<(), ApplyError> {
        if let Some(target) = target {
            if self.players.get(target).is_none_or(|p| p.hull == 0) || target == player {
                return Err(ApplyError::TargetNotHere {
                    player: player.to_string(),
                    target: target.to_string(),
                });
            }
        }
        let p = self.player_mut(player)?;
        p.version = p.version.next();
        match target {
            Some(target) => self.engaged.insert(player.to_string(), target.to_string()),
            None => self.engaged.remove(player),
        };
        Ok(())
    }

    /// [`Event::Combat`]: this tick's shots, which must be what this state resolves to.
    fn apply_combat(&mut self, t: Tick, event: &Event) -> Result<(), ApplyError> {
        let report = self.combat_report(t);
        if combat_event(&report) != *event {
            return Err(ApplyError::CombatMismatch { tick: t });
        }
        for (attack, _) in &report.refused {
            self.engaged.remove(&attack.attacker);
        }
        let mut shot_down = BTreeSet::new();
        for CombatOutcome {
            target,
            hull_after,
            destroyed_by,
            ..
        } in report.outcomes
        {
            let p = self
                .players
                .get_mut(&target)
                .expect("resolve reads players");
            p.hull = hull_after;
            if let Some(killer) = destroyed_by {
                self.engaged.remove(&target);
                shot_down.insert(target.clone());
                self.downed.insert(target, killer);
            }
        }
        // Orders against a ship shot down end with it (one pass a tick).
        if !shot_down.is_empty() {
            self.engaged.retain(|_, target| !shot_down.contains(target));
        }
        Ok(())
    }

    /// [`Event::Destroyed`]: a ship shot down by `by` leaves its cargo as a wreck and
    /// respawns, here or at home (`jump_home`: the transfer that takes it there).
    fn apply_destroyed(
        &mut self,
        t: Tick,
        player: &str,
        by: &str,
        wreck: Option<u64>,
        jump_home: Option<(Xfer, SystemId)>,
        evicted: &Cargo,
    ) -> Result<(), ApplyError> {
        if self.downed.get(player).map(String::as_str) != Some(by) {
            return Err(ApplyError::NotShotDown {
                player: player.to_string(),
                by: by.to_string(),
            });
        }
        let p = self.player_mut(player)?;
        let expected = (!p.cargo.is_empty()).then(|| self.wrecks.next_id());
        if wreck != expected {
            return Err(ApplyError::WrongWreck {
                player: player.to_string(),
                expected,
            });
        }
        if jump_home.is_some_and(|(x, _)| x != self.next_xfer) {
            return Err(ApplyError::RespawnOutOfOrder {
                next: self.next_xfer,
            });
        }
        let p = self.players.get_mut(player).expect("checked just above");
        let mut cargo = p.cargo;
        let outcome = CombatOutcome {
            target: player.to_string(),
            damage_points: 0,
            hull_after: 0,
            destroyed_by: Some(by.to_string()),
        };
        let (_, gone) = combat::apply_outcome(&outcome, &mut 0, &mut cargo, &mut self.wrecks, t.0)?;
        if gone.map_or(Default::default(), |w| w.cargo) != *evicted {
            return Err(ApplyError::WrongEviction {
                player: player.to_string(),
            });
        }
        let respawned = p.respawned();
        self.downed.remove(player);
        match jump_home {
            Some((xfer, home)) => {
                self.players.remove(player);
                self.leave(respawned, xfer, InstanceId::primary(home), 0);
            }
            None => {
                self.players.insert(player.to_string(), respawned);
            }
        }
        Ok(())
    }

    /// [`Event::Loot`]: goods from a wreck into the player's hold.
    fn apply_loot(&mut self, player: &str, take: &LootTake) -> Result<(), ApplyError> {
        let p = self
            .players
            .get_mut(player)
            .ok_or_else(|| ApplyError::ActorNotHere {
                action: "loot",
                player: player.to_string(),
            })?;
        let mut cargo = p.cargo;
        combat::apply_loot(&mut self.wrecks, &mut cargo, take)?;
        p.cargo = cargo;
        p.version = p.version.next();
        Ok(())
    }

    /// [`Event::Split`]: a primary opens instance `n` (2 to the limit, not open yet).
    fn apply_split(&mut self, n: u16) -> Result<(), ApplyError> {
        if !self.is_primary()
            || n <= PRIMARY_INSTANCE
            || n > MAX_INSTANCES_PER_SYSTEM
            || self.instances.contains(&n)
        {
            return Err(ApplyError::CannotOpen { instance: n });
        }
        self.instances.insert(n);
        Ok(())
    }

    /// [`Event::Retire`]: a primary closes instance `n`, to which no move is prepared.
    fn apply_retire(&mut self, n: u16) -> Result<(), ApplyError> {
        let at = InstanceId::new(self.id, n);
        if !self.instances.contains(&n) || self.departing.values().any(|d| d.to == at) {
            return Err(ApplyError::CannotRetire { instance: n });
        }
        self.instances.remove(&n);
        Ok(())
    }

    /// [`Event::RemoteTradeDone`]: the instance has settled the escrow this market traded.
    fn apply_remote_trade_done(
        &mut self,
        instance: u16,
        escrow: EscrowId,
    ) -> Result<(), ApplyError> {
        self.remote_trades
            .remove(&(instance, escrow))
            .map(|_| ())
            .ok_or(ApplyError::NeverTraded { instance, escrow })
    }

    /// Where a prepared jump may go: another system's primary; or, for a move (no fuel),
    /// another open instance of this system: from the primary to an open instance, from an
    /// instance back to the primary.
    fn check_destination(&self, to: InstanceId, fuel: u32) -> Result<(), ApplyError> {
        if to.system != self.id {
            return match to.is_primary() {
                true => Ok(()),
                false => Err(ApplyError::JumpToForeignInstance { instance: to.n }),
            };
        }
        let open = match self.is_primary() {
            true => self.instances.contains(&to.n),
            false => to.is_primary(),
        };
        if !open || fuel != 0 || to.n == self.instance {
            return Err(ApplyError::NoMove {
                to: to.n,
                from: self.instance,
            });
        }
        Ok(())
    }

    fn player_mut(&mut self, name: &str) -> Result<&mut crate::player::Player, ApplyError> {
        self.players
            .get_mut(name)
            .ok_or_else(|| ApplyError::UnknownPlayer {
                player: name.to_string(),
            })
    }

    /// A player leaves on transfer `xfer` (the next one): they wait for the transition log.
    fn leave(&mut self, player: crate::player::Player, xfer: Xfer, to: InstanceId, fuel: u32) {
        assert_eq!(xfer, self.next_xfer, "transfers are numbered in order");
        self.engaged.remove(&player.name);
        self.next_xfer = self.next_xfer.next();
        self.departing.insert(xfer, Departing { player, to, fuel });
    }

    /// The version of the player `event` is about, once it has applied to this state.
    pub fn version_after(&self, event: &Event) -> Option<Version> {
        if let Some(x) = event.prepared_xfer() {
            return self.departing.get(&x).map(|d| d.player.version);
        }
        match event {
            Event::Join { player, .. } | Event::Arrive { player, .. } => Some(player.version),
            _ => self.players.get(event.player()?).map(|p| p.version),
        }
    }
}
