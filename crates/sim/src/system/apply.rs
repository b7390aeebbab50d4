//! The rules' second step: change the state by an event, decided now or read from a log.
//!
//! An event decided on this state always applies. An error means a log disagrees with the
//! state it is replayed onto; the state is then left as it was (every arm checks before it
//! changes anything, or changes a copy). Never does I/O.

use std::collections::BTreeSet;

use super::decide::{combat_event, decayed_by};
use super::{ApplyError, Departing, Event, SystemState};
use crate::combat::{self, CombatOutcome};
use crate::instance::{InstanceId, MAX_INSTANCES_PER_SYSTEM, PRIMARY_INSTANCE};
use crate::market;

impl SystemState {
    /// Applies an event stamped with tick `t`.
    pub fn apply(&mut self, t: u64, event: &Event) -> Result<(), ApplyError> {
        if t < self.tick {
            return Err(format!("tick {t} is before the state's tick {}", self.tick));
        }
        if let Some(name) = event.player() {
            let downed = self.players.get(name).is_some_and(|p| p.hull == 0);
            // A trade under way settles even if its player was shot down meanwhile.
            let allowed = matches!(
                event,
                Event::Destroyed { .. } | Event::EscrowSettle { .. } | Event::EscrowRefund { .. }
            );
            if downed && !allowed {
                return Err(format!("'{name}' acts while shot down"));
            }
        }
        match event {
            Event::Join { player, key } => {
                if !self.is_primary() {
                    return Err(format!("'{}' joins an instance", player.name));
                }
                if self.names.contains_name(&player.name) || self.players.contains_key(&player.name)
                {
                    return Err(format!("name '{}' joined twice", player.name));
                }
                self.names.insert(player.name.clone(), key.clone());
                self.players.insert(player.name.clone(), player.clone());
            }
            Event::Refuel {
                player,
                units,
                cost,
            } => {
                let p = self.player_mut(player)?;
                if p.credits < *cost || p.fuel + units > p.fuel_capacity {
                    return Err(format!(
                        "refuel of {units} for {cost} impossible for '{player}'"
                    ));
                }
                p.credits -= cost;
                p.fuel += units;
                p.version += 1;
            }
            Event::Depart {
                xfer,
                player,
                to,
                fuel,
            } => {
                if *xfer != self.next_xfer {
                    return Err(format!("transfer {xfer} where {} was next", self.next_xfer));
                }
                if self.player_mut(player)?.fuel < *fuel {
                    return Err(format!("'{player}' departs with too little fuel"));
                }
                self.check_destination(*to, *fuel)?;
                let mut p = self.players.remove(player).expect("checked just above");
                p.fuel -= fuel;
                p.version += 1;
                self.leave(p, *xfer, *to, *fuel);
            }
            Event::DepartDone { xfer } => {
                self.departing
                    .remove(xfer)
                    .ok_or_else(|| format!("transfer {xfer} is not departing"))?;
            }
            Event::DepartVoid { xfer } => {
                if *xfer < self.next_xfer {
                    return Err(format!(
                        "transfer {xfer} cannot be void: it was prepared here ({} is next)",
                        self.next_xfer
                    ));
                }
                self.next_xfer = xfer + 1;
                self.voided.insert(*xfer);
            }
            Event::DepartAbort { xfer, player } => {
                match self.departing.get(xfer) {
                    Some(d) if d.player.name == *player => {}
                    Some(_) => return Err(format!("transfer {xfer} is not '{player}''s")),
                    None => return Err(format!("transfer {xfer} is not departing")),
                }
                if self.players.contains_key(player) {
                    return Err(format!("aborted transfer {xfer}: player is here twice"));
                }
                let d = self.departing.remove(xfer).expect("checked just above");
                let mut p = d.player;
                p.fuel += d.fuel;
                p.version += 1;
                self.players.insert(p.name.clone(), p);
            }
            Event::Arrive { from, xfer, player } => {
                if self.landed_upto.get(from).is_some_and(|&n| *xfer <= n) {
                    return Err(format!(
                        "transfer {xfer} from system {} (instance {}) landed twice",
                        from.system.0, from.n
                    ));
                }
                if self.players.contains_key(&player.name) {
                    return Err(format!("'{}' lands but is already here", player.name));
                }
                self.landed_upto.insert(*from, *xfer);
                self.players.insert(player.name.clone(), player.clone());
            }
            Event::Trade { player, trade } => {
                if !self.is_primary() {
                    return Err(format!("trade by '{player}' in an instance"));
                }
                let mut m = self.market.clone();
                let p = self
                    .players
                    .get_mut(player)
                    .ok_or_else(|| format!("trade by '{player}', who is not here"))?;
                let (mut credits, mut cargo) = (p.credits, p.cargo);
                market::apply_trade(&mut m, &mut credits, &mut cargo, trade)?;
                if cargo.hold_used() > u64::from(p.hold) {
                    return Err(format!("trade overfills '{player}''s hold"));
                }
                p.credits = credits;
                p.cargo = cargo;
                p.version += 1;
                self.market = m;
            }
            Event::Economy {
                from,
                to,
                report,
                decayed,
            } => {
                if *from < self.market_tick || to <= from || *to > t {
                    return Err(format!(
                        "economy step {from}..{to} at tick {t} (market at {})",
                        self.market_tick
                    ));
                }
                let mut m = self.market.clone();
                let made = if self.is_primary() {
                    m.advance(self.kind, *from, *to)
                } else {
                    Default::default()
                };
                if made != *report || decayed_by(&self.wrecks, *to) != *decayed {
                    return Err(format!(
                        "economy step {from}..{to} does not match this market"
                    ));
                }
                self.wrecks.expire(*to);
                self.market = m;
                self.market_tick = *to;
            }
            Event::Engage { player, target } => {
                if let Some(target) = target {
                    if self.players.get(target).is_none_or(|p| p.hull == 0) || target == player {
                        return Err(format!("'{player}' engages '{target}', who is not here"));
                    }
                }
                let p = self.player_mut(player)?;
                p.version += 1;
                match target {
                    Some(target) => self.engaged.insert(player.clone(), target.clone()),
                    None => self.engaged.remove(player),
                };
            }
            Event::Combat { .. } => {
                let report = self.combat_report(t);
                if combat_event(&report) != *event {
                    return Err(format!("combat at tick {t} does not match this state"));
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
            }
            Event::Destroyed {
                player,
                by,
                wreck,
                jump_home,
                evicted,
            } => {
                if self.downed.get(player) != Some(by) {
                    return Err(format!("'{player}' destroyed but not shot down by '{by}'"));
                }
                let p = self.player_mut(player)?;
                let expect_wreck = (!p.cargo.is_empty()).then(|| self.wrecks.next_id());
                if *wreck != expect_wreck {
                    return Err(format!("'{player}''s wreck should be {expect_wreck:?}"));
                }
                if jump_home.is_some_and(|(x, _)| x != self.next_xfer) {
                    return Err(format!("respawn jump where {} was next", self.next_xfer));
                }
                let p = self.players.get_mut(player).expect("checked just above");
                let mut cargo = p.cargo;
                let outcome = CombatOutcome {
                    target: player.clone(),
                    damage_points: 0,
                    hull_after: 0,
                    destroyed_by: Some(by.clone()),
                };
                let (_, gone) =
                    combat::apply_outcome(&outcome, &mut 0, &mut cargo, &mut self.wrecks, t)?;
                if gone.map_or(Default::default(), |w| w.cargo) != *evicted {
                    return Err(format!("'{player}''s wreck evicts another cargo"));
                }
                let respawned = p.respawned();
                self.downed.remove(player);
                match jump_home {
                    Some((xfer, home)) => {
                        self.players.remove(player);
                        self.leave(respawned, *xfer, InstanceId::primary(*home), 0);
                    }
                    None => {
                        self.players.insert(player.clone(), respawned);
                    }
                }
            }
            Event::Loot { player, take } => {
                let p = self
                    .players
                    .get_mut(player)
                    .ok_or_else(|| format!("loot by '{player}', who is not here"))?;
                let mut cargo = p.cargo;
                combat::apply_loot(&mut self.wrecks, &mut cargo, take)?;
                p.cargo = cargo;
                p.version += 1;
            }
            Event::Split { instance } => {
                let n = *instance;
                if !self.is_primary()
                    || n <= PRIMARY_INSTANCE
                    || n > MAX_INSTANCES_PER_SYSTEM
                    || self.instances.contains(&n)
                {
                    return Err(format!("instance {n} cannot open here"));
                }
                self.instances.insert(n);
            }
            Event::Retire { instance } => {
                let n = *instance;
                let at = InstanceId::new(self.id, n);
                if !self.instances.contains(&n) || self.departing.values().any(|d| d.to == at) {
                    return Err(format!(
                        "instance {n} is not open, or a move to it is prepared"
                    ));
                }
                self.instances.remove(&n);
            }
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
            } => self.apply_settle(*escrow, player, Some(*total_cr))?,
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
                self.remote_trades
                    .remove(&(*instance, *escrow))
                    .ok_or_else(|| format!("escrow {instance}:{escrow} was never traded here"))?;
            }
        }
        self.tick = t;
        Ok(())
    }

    /// Where a prepared jump may go: another system's primary; or, for a move (no fuel),
    /// another open instance of this system: from the primary to an open instance, from an
    /// instance back to the primary.
    fn check_destination(&self, to: InstanceId, fuel: u32) -> Result<(), ApplyError> {
        if to.system != self.id {
            return match to.is_primary() {
                true => Ok(()),
                false => Err(format!(
                    "a jump lands in instance {} of another system",
                    to.n
                )),
            };
        }
        let open = match self.is_primary() {
            true => self.instances.contains(&to.n),
            false => to.is_primary(),
        };
        if !open || fuel != 0 || to.n == self.instance {
            return Err(format!(
                "no move to instance {} from instance {}",
                to.n, self.instance
            ));
        }
        Ok(())
    }

    fn player_mut(&mut self, name: &str) -> Result<&mut crate::player::Player, ApplyError> {
        self.players
            .get_mut(name)
            .ok_or_else(|| format!("'{name}' is not here"))
    }

    /// A player leaves on transfer `xfer` (the next one): they wait for the transition log.
    fn leave(&mut self, player: crate::player::Player, xfer: u64, to: InstanceId, fuel: u32) {
        assert_eq!(xfer, self.next_xfer, "transfers are numbered in order");
        self.engaged.remove(&player.name);
        self.next_xfer += 1;
        self.departing.insert(xfer, Departing { player, to, fuel });
    }

    /// The version of the player `event` is about, once it has applied to this state.
    pub fn version_after(&self, event: &Event) -> Option<u64> {
        if let Some(x) = event.prepared_xfer() {
            return self.departing.get(&x).map(|d| d.player.version);
        }
        match event {
            Event::Join { player, .. } | Event::Arrive { player, .. } => Some(player.version),
            _ => self.players.get(event.player()?).map(|p| p.version),
        }
    }
}
