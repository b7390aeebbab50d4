//! The rules' first step: look at the state and a request, and say which [`Event`] to record
//! or why not ([`Reject`]). Never changes the state.

use super::{Event, Reject, SystemState, MAX_PLAYERS_PER_SYSTEM};
use crate::combat::{self, Attack, Wrecks, MAX_WRECKS_PER_SYSTEM};
use crate::economy::EconomyModel;
use crate::galaxy::{Galaxy, SystemId};
use crate::goods::{Cargo, GOOD_COUNT};
use crate::ids::{Tick, Xfer};
use crate::instance::{InstanceId, MAX_INSTANCES_PER_SYSTEM, PRIMARY_INSTANCE};
use crate::market::{self, Order};
use crate::names;
use crate::player::Player;
use crate::rng::Rng;
use crate::rules::Rules;
use crate::shock;

impl SystemState {
    fn here(&self, galaxy: &Galaxy, name: &str) -> Result<&Player, Reject> {
        self.players.get(name).ok_or_else(|| Reject::NotHere {
            player: name.to_string(),
            system: galaxy.name(self.id).to_string(),
        })
    }

    /// A player here whose ship can act (not shot down, no trade under way).
    pub(super) fn able(&self, galaxy: &Galaxy, name: &str) -> Result<&Player, Reject> {
        let p = self.here(galaxy, name)?;
        if p.hull == 0 {
            return Err(Reject::Downed);
        }
        if self.has_escrow(name) {
            return Err(Reject::TradePending(galaxy.name(self.id).to_string()));
        }
        Ok(p)
    }

    /// Refuses what only the primary instance does (the market, the accounts).
    fn primary_only(&self, galaxy: &Galaxy, what: &'static str) -> Result<(), Reject> {
        if self.is_primary() {
            return Ok(());
        }
        Err(Reject::NotPrimary {
            instance: self.instance_id().name(galaxy),
            system: galaxy.name(self.id).to_string(),
            what,
        })
    }

    /// A new player at home with the starting ship, named the NFC form of `name` (the
    /// [`names`] rules: valid, and unlike every name taken).
    pub fn decide_join(
        &self,
        galaxy: &Galaxy,
        rules: &Rules,
        name: &str,
        key: &str,
    ) -> Result<Event, Reject> {
        self.primary_only(galaxy, "take new players")?;
        if self.id != galaxy.home() {
            return Err(Reject::NotHome {
                home: galaxy.name(galaxy.home()).to_string(),
                system: galaxy.name(self.id).to_string(),
            });
        }
        let name = names::canonical(name).map_err(|e| Reject::BadName(e.to_string()))?;
        if let Some(taken) = self.names.similar_to(&name) {
            return Err(Reject::NameTaken {
                taken: taken.to_string(),
                name,
            });
        }
        if self.population() >= MAX_PLAYERS_PER_SYSTEM {
            return Err(Reject::Full(galaxy.name(self.id).to_string()));
        }
        Ok(Event::Join {
            player: Player::starter(&name, rules),
            key: key.to_string(),
        })
    }

    /// Fills the tank (or buys `max_units`, whichever is less) at the station's price.
    pub fn decide_refuel(
        &self,
        galaxy: &Galaxy,
        rules: &Rules,
        name: &str,
        max_units: Option<u32>,
    ) -> Result<Event, Reject> {
        let p = self.able(galaxy, name)?;
        let room = p.fuel_capacity - p.fuel;
        let units = max_units.map_or(room, |m| m.min(room));
        if units == 0 {
            return Err(Reject::TankFull);
        }
        let cost = u64::from(units) * rules.fuel_price_cr;
        if cost > p.credits {
            return Err(Reject::NoCredits {
                need: cost,
                have: p.credits,
            });
        }
        Ok(Event::Refuel {
            player: name.to_string(),
            units,
            cost,
        })
    }

    /// Mends the hull to whole (or `max_points`, whichever is less) at the station's price
    /// ([`combat::REPAIR_PRICE_CR_PER_HULL_POINT`]), in any instance. A ship shot down is not
    /// repaired: it is destroyed, and its pilot gets a new one.
    pub fn decide_repair(
        &self,
        galaxy: &Galaxy,
        name: &str,
        max_points: Option<u32>,
    ) -> Result<Event, Reject> {
        let p = self.able(galaxy, name)?;
        let whole = combat::BASIC_SHIP_HULL_POINTS;
        let missing = whole.saturating_sub(p.hull);
        let points = max_points.map_or(missing, |m| m.min(missing));
        if points == 0 {
            return Err(Reject::HullWhole(p.hull));
        }
        let cost = u64::from(points) * combat::REPAIR_PRICE_CR_PER_HULL_POINT;
        if cost > p.credits {
            return Err(Reject::NoCredits {
                need: cost,
                have: p.credits,
            });
        }
        Ok(Event::Repair {
            player: name.to_string(),
            points,
            cost,
        })
    }

    /// Prepares a jump to a neighbouring system.
    pub fn decide_depart(
        &self,
        galaxy: &Galaxy,
        name: &str,
        to: SystemId,
    ) -> Result<Event, Reject> {
        let p = self.able(galaxy, name)?;
        if to == self.id {
            return Err(Reject::SameSystem(galaxy.name(to).to_string()));
        }
        if !galaxy.has_lane(self.id, to) {
            return Err(Reject::NoLane {
                from: galaxy.name(self.id).to_string(),
                to: galaxy.name(to).to_string(),
            });
        }
        let need = galaxy.fuel_cost(self.id, to);
        if p.fuel < need {
            return Err(Reject::NoFuel {
                to: galaxy.name(to).to_string(),
                need,
                have: p.fuel,
            });
        }
        Ok(Event::Depart {
            xfer: self.next_xfer,
            player: name.to_string(),
            to: InstanceId::primary(to),
            fuel: need,
        })
    }

    /// Prepares the move of a player to instance `to` of this system: a jump with no lane, no
    /// fuel and no travel time. The primary moves players to its open instances; an instance
    /// moves them back to the primary only.
    pub fn decide_move(&self, galaxy: &Galaxy, name: &str, to: u16) -> Result<Event, Reject> {
        self.able(galaxy, name)?;
        let open = if self.is_primary() {
            self.instances.contains(&to)
        } else {
            to == PRIMARY_INSTANCE
        };
        if !open || to == self.instance {
            return Err(Reject::NoInstance(format!(
                "{} #{to}",
                galaxy.name(self.id)
            )));
        }
        Ok(Event::Depart {
            xfer: self.next_xfer,
            player: name.to_string(),
            to: InstanceId::new(self.id, to),
            fuel: 0,
        })
    }

    /// Opens instance `n` (primary only; `n` not open already).
    pub fn decide_split(&self, galaxy: &Galaxy, n: u16) -> Result<Event, Reject> {
        self.primary_only(galaxy, "open instances")?;
        if n <= PRIMARY_INSTANCE || n > MAX_INSTANCES_PER_SYSTEM || self.instances.contains(&n) {
            return Err(Reject::NoInstance(format!("{} #{n}", galaxy.name(self.id))));
        }
        Ok(Event::Split { instance: n })
    }

    /// Closes instance `n` (primary only; open, and no move towards it still prepared here).
    /// That the instance itself is empty is for its shard to say: it holds its players.
    pub fn decide_retire(&self, galaxy: &Galaxy, n: u16) -> Result<Event, Reject> {
        self.primary_only(galaxy, "close instances")?;
        let towards = self
            .departing
            .values()
            .any(|d| d.to == InstanceId::new(self.id, n));
        if !self.instances.contains(&n) || towards {
            return Err(Reject::NoInstance(format!("{} #{n}", galaxy.name(self.id))));
        }
        Ok(Event::Retire { instance: n })
    }

    /// Lands a jump, unless it already landed (then `None`: seeing a transfer twice changes
    /// nothing).
    pub fn decide_arrive(&self, from: InstanceId, xfer: Xfer, player: &Player) -> Option<Event> {
        if self.landed_upto.get(&from).is_some_and(|&n| xfer <= n) {
            return None;
        }
        let mut player = player.clone();
        player.version = player.version.next();
        Some(Event::Arrive { from, xfer, player })
    }

    /// A trade with the local market, all or nothing, with the station's fee
    /// ([`market::fee_permille`]: 8%, more on a sale to a drained till).
    pub fn decide_trade(
        &self,
        galaxy: &Galaxy,
        name: &str,
        order: &Order,
    ) -> Result<Event, Reject> {
        self.primary_only(galaxy, "trade")?;
        let p = self.able(galaxy, name)?;
        let trade = market::decide_trade(
            &self.market,
            p.credits,
            &p.cargo,
            p.hold,
            order,
            market::fee_permille(order.side, self.market.till_cr()),
        )?;
        Ok(Event::Trade {
            player: name.to_string(),
            trade,
        })
    }

    /// A standing order to fire at `target` (another player here), or to cease fire.
    pub fn decide_engage(
        &self,
        galaxy: &Galaxy,
        name: &str,
        target: Option<&str>,
    ) -> Result<Event, Reject> {
        self.able(galaxy, name)?;
        if let Some(target) = target {
            if target == name {
                return Err(Reject::SelfAttack);
            }
            let t = self.here(galaxy, target)?;
            if t.hull == 0 {
                return Err(Reject::NotHere {
                    player: target.to_string(),
                    system: galaxy.name(self.id).to_string(),
                });
            }
        }
        Ok(Event::Engage {
            player: name.to_string(),
            target: target.map(str::to_string),
        })
    }

    /// Takes what fits of wreck `wreck` into the player's hold.
    pub fn decide_loot(&self, galaxy: &Galaxy, name: &str, wreck: u64) -> Result<Event, Reject> {
        let p = self.able(galaxy, name)?;
        let take = combat::decide_loot(&self.wrecks, wreck, &p.cargo, p.hold)?;
        Ok(Event::Loot {
            player: name.to_string(),
            take,
        })
    }

    /// The standing orders as this tick's attacks, in canonical order.
    pub(super) fn attacks(&self) -> Vec<Attack> {
        self.engaged
            .iter()
            .map(|(a, t)| Attack {
                attacker: a.clone(),
                target: t.clone(),
            })
            .collect()
    }

    /// Resolves the standing orders at tick `t`: what [`Event::Combat`] at `t` will do.
    pub(super) fn combat_report(&self, t: Tick) -> combat::CombatReport {
        let ships = |pilot: &str| self.players.get(pilot).map(|p| p.hull);
        combat::resolve(&self.attacks(), &ships, &mut Rng::for_tick(self.seed, t.0))
    }

    /// A tick of combat at tick `t`, if any standing order is left.
    pub fn decide_combat(&self, t: Tick) -> Option<Event> {
        if self.engaged.is_empty() {
            return None;
        }
        let report = self.combat_report(t);
        Some(combat_event(&report))
    }

    /// The destruction of a ship shot down (`None` if `name` is not down here). Away from
    /// home the pilot leaves for home on the system's next transfer.
    /// A pilot with a trade under way is destroyed once it is settled.
    pub fn decide_destroyed(&self, galaxy: &Galaxy, name: &str) -> Option<Event> {
        let by = self.downed.get(name)?;
        if self.has_escrow(name) {
            return None;
        }
        let p = self.players.get(name)?;
        let wreck = (!p.cargo.is_empty()).then(|| self.wrecks.next_id());
        let evicted = match (wreck, self.wrecks.len() >= MAX_WRECKS_PER_SYSTEM) {
            (Some(_), true) => self
                .wrecks
                .iter()
                .next()
                .map_or(Cargo::new(), |(_, w)| w.cargo),
            _ => Cargo::new(),
        };
        Some(Event::Destroyed {
            player: name.to_string(),
            by: by.clone(),
            wreck,
            jump_home: (self.id != galaxy.home()).then_some((self.next_xfer, galaxy.home())),
            evicted,
        })
    }

    /// The economy step from tick `from` (at least the market's tick) to `to`, if it changes
    /// anything. An instance other than the primary has no market: its step only decays
    /// wrecks.
    pub fn decide_economy(&self, from: Tick, to: Tick) -> Option<Event> {
        let from = from.max(self.market_tick);
        if to <= from {
            return None;
        }
        let report = if self.is_primary() {
            self.market.clone().advance_model(
                EconomyModel::CURRENT,
                self.kind,
                &self.shocks,
                from.0,
                to.0,
            )
        } else {
            Default::default()
        };
        let decayed = decayed_by(&self.wrecks, to);
        if report.is_empty() && decayed == [0; GOOD_COUNT] {
            return None;
        }
        Some(Event::Economy {
            from,
            to,
            model: EconomyModel::CURRENT,
            report,
            decayed,
        })
    }

    /// The market shock the economy step from tick `from` to `to` draws, if any (primary
    /// only): from the system's seeded generator (`shock::draw`), a blockade likelier while a
    /// wreck younger than `shock::BLOCKADE_AFTER_TICKS` lies here. Recorded before the step,
    /// so the step already feels it.
    pub fn decide_shock(&self, rules: &Rules, from: Tick, to: Tick) -> Option<Event> {
        let from = from.max(self.market_tick);
        if !self.is_primary() || to <= from {
            return None;
        }
        let fought = self
            .wrecks
            .iter()
            .any(|(_, w)| to.0.saturating_sub(w.tick) < shock::BLOCKADE_AFTER_TICKS);
        let drawn = shock::draw(
            self.seed,
            self.kind,
            (from.0, to.0),
            rules.shocks_per_100k_ticks,
            &self.shocks,
            fought,
        )?;
        Some(Event::Shock { shock: drawn })
    }
}

/// The totals of a combat report, as the event records them.
pub(super) fn combat_event(report: &combat::CombatReport) -> Event {
    Event::Combat {
        shots: report.shots.len() as u32,
        hits: report.shots.iter().filter(|s| s.damage_points > 0).count() as u32,
        damage: report
            .shots
            .iter()
            .map(|s| u64::from(s.damage_points))
            .sum(),
        downed: report
            .outcomes
            .iter()
            .filter(|o| o.destroyed_by.is_some())
            .count() as u32,
    }
}

/// Units of each good in the wrecks that decay by tick `to`.
pub(super) fn decayed_by(wrecks: &Wrecks, to: Tick) -> [u64; GOOD_COUNT] {
    let mut gone = [0u64; GOOD_COUNT];
    for (_, w) in wrecks
        .iter()
        .take_while(|(_, w)| w.tick.saturating_add(combat::WRECK_LIFETIME_TICKS) <= to.0)
    {
        for (good, qty) in w.cargo.iter() {
            gone[good.index()] += u64::from(qty);
        }
    }
    gone
}
