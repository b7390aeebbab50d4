//! The game's requests on the mesh (trade, attack, loot, markets, the economy view) and what
//! they answer.
//!
//! Each request goes to the shard that holds the player, like a jump or a refuel; answers are
//! given once the event is durable. Owns no state; never decides a rule.

use std::collections::BTreeMap;

use serde::Serialize;

use super::directory::{Place, SystemPlace};
use super::price_sync::{unix_ms, GalaxyPriceView, HeardPrices};
use super::shard::ShardMessage;
use super::{Mesh, MeshError};
use sim::galaxy::SystemId;
use sim::ids::Xfer;
use sim::instance::InstanceId;
use sim::market::Order;
use sim::player::Player;

/// A trade done: what moved, and the player after it.
#[derive(Clone, Debug, Serialize)]
pub struct TradeAck {
    pub side: &'static str,
    pub good: &'static str,
    pub qty: u32,
    /// Credits the market took (buy) or paid (sell), before the fee.
    pub total_cr: u64,
    /// The station's trade fee, paid on top (buy) or taken from the total (sell).
    pub fee_cr: u64,
    pub player: Player,
}

/// Goods taken from a wreck, and the player after it.
#[derive(Clone, Debug, Serialize)]
pub struct LootAck {
    pub wreck: u64,
    pub took: BTreeMap<&'static str, u32>,
    pub player: Player,
}

/// One good at a market, now.
#[derive(Clone, Debug, Serialize)]
pub struct GoodQuote {
    pub good: &'static str,
    pub stock: u64,
    /// The mid price (before the spread): what other systems hear.
    pub mid_cr: u64,
    /// What buying one unit costs now (`None`: out of stock).
    pub buy_cr: Option<u64>,
    /// What selling one unit pays now (`None`: the market cannot take or pay for more).
    pub sell_cr: Option<u64>,
}

/// A system's live market, and the prices it has heard from other systems.
#[derive(Clone, Debug, Serialize)]
pub struct MarketView {
    pub system: String,
    pub slug: String,
    pub economy: &'static str,
    pub tick: u64,
    pub till_cr: u64,
    pub goods: Vec<GoodQuote>,
    pub heard: Vec<HeardPrices>,
    /// The market shocks running here now (at most `sim::shock::MAX_SHOCKS_PER_SYSTEM`).
    pub shocks: Vec<ShockView>,
}

/// A market shock running in a system, as `market` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ShockView {
    /// `shortage`, `boom`, `glut`, `mining_strike` or `blockade`.
    pub kind: &'static str,
    /// The good it bends; `None` for a blockade (every good the system makes).
    pub good: Option<&'static str>,
    /// The system's tick it ends before.
    pub until_tick: u64,
    /// Ticks left from the system's tick now.
    pub remaining_ticks: u64,
}

/// A wreck floating in a system.
#[derive(Clone, Debug, Serialize)]
pub struct WreckView {
    pub id: u64,
    /// Whose ship it was.
    pub pilot: String,
    pub cargo: BTreeMap<&'static str, u32>,
    pub age_ms: u64,
}

/// The target of a player's standing order to fire, and its hull now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Opponent {
    pub target: String,
    /// The target's hull points now.
    pub hull: u32,
}

/// A committed jump not landed yet, as its destination holds it.
#[derive(Clone, Debug)]
pub struct InFlight {
    /// The player as they travel (as they left, fuel burnt).
    pub player: Player,
    /// Ticks of the destination until the landing is due.
    pub ticks_left: u64,
}

/// A player in a system and the standing order they fire by (none when they are not fighting,
/// and once their target is shot down or gone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ship {
    pub player: Player,
    pub attacking: Option<Opponent>,
}

impl Mesh {
    /// Buys or sells at the player's local market; answered once the trade is durable.
    pub async fn trade(&self, name: &str, order: Order) -> Result<TradeAck, MeshError> {
        let ack = self
            .routed(name, |reply| ShardMessage::Trade {
                name: name.to_string(),
                order,
                reply,
            })
            .await?;
        // Where the trade was made: a player acts one action at a time (the API's locks), so
        // they are still there.
        if let Some(crate::directory::Place::In(at)) = self.place(name) {
            self.metrics()
                .system(at.system)
                .trades
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(ack)
    }

    /// Sets a standing order to fire at `target` every tick (`None`: cease fire).
    pub async fn engage(&self, name: &str, target: Option<&str>) -> Result<Player, MeshError> {
        // `attack bob` means Bob when no other name looks like it; else the exact name is asked.
        let target = target.map(|t| {
            self.ctx
                .directory
                .resolve(t)
                .unwrap_or_else(|| t.to_string())
        });
        self.routed(name, |reply| ShardMessage::Engage {
            name: name.to_string(),
            target: target.clone(),
            reply,
        })
        .await
    }

    /// Takes what fits of wreck `wreck` in the player's system.
    pub async fn loot(&self, name: &str, wreck: u64) -> Result<LootAck, MeshError> {
        self.routed(name, |reply| ShardMessage::Loot {
            name: name.to_string(),
            wreck,
            reply,
        })
        .await
    }

    /// A player's ship and standing order, and where they are (by instance; a move between
    /// instances is waited for). No ship while in a jump between systems.
    pub async fn ship(&self, name: &str) -> Result<(Place, Option<Ship>), MeshError> {
        self.ask_where_player_is(name, |reply| ShardMessage::Ship {
            name: name.to_string(),
            reply,
        })
        .await
    }

    /// Jump `xfer` of instance `from` as its destination `to` holds it: the player it carries
    /// and the ticks until it lands. None once it landed, or in the instant between the jump's
    /// commit and its handover to the destination.
    pub async fn in_flight(
        &self,
        from: InstanceId,
        xfer: Xfer,
        to: InstanceId,
    ) -> Result<Option<InFlight>, MeshError> {
        self.ask_at(to, |reply| ShardMessage::Incoming { from, xfer, reply })
            .await
    }

    /// The system a player is in (an error while in a jump).
    pub fn system_of(&self, name: &str) -> Result<SystemId, MeshError> {
        match self.locate(name) {
            None => Err(MeshError::UnknownPlayer(name.to_string())),
            Some(SystemPlace::Jumping { .. }) => Err(MeshError::InJump(name.to_string())),
            Some(SystemPlace::In(s)) => Ok(s),
        }
    }

    /// A system's live market and what it has heard of others.
    pub async fn market(&self, system: SystemId) -> Result<MarketView, MeshError> {
        self.ask(system, |reply| ShardMessage::Market { reply })
            .await
    }

    /// The wrecks in a system's primary instance.
    pub async fn wrecks(&self, system: SystemId) -> Result<Vec<WreckView>, MeshError> {
        self.ask(system, |reply| ShardMessage::Wrecks { reply })
            .await
    }

    /// The wrecks `name` sees: those of the instance they are in (each instance has its own
    /// wrecks, its own fights; only the market is shared), and which instance that is.
    pub async fn wrecks_seen_by(
        &self,
        name: &str,
    ) -> Result<(InstanceId, Vec<WreckView>), MeshError> {
        let at = self.settled(name).await?;
        let wrecks = self
            .ask_at(at, |reply| ShardMessage::Wrecks { reply })
            .await?;
        Ok((at, wrecks))
    }

    /// The galaxy-wide economy view: every system's last prices heard, best places to buy and
    /// sell each good.
    pub fn economy(&self) -> GalaxyPriceView {
        let view = self.ctx.prices.lock().unwrap_or_else(|e| e.into_inner());
        GalaxyPriceView::of(&self.ctx.galaxy, &view, unix_ms())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::audit::audit;
    use crate::MeshConfig;
    use sim::galaxy::Galaxy;
    use sim::goods::Good;
    use sim::market::Side;
    use store::datadir::DataDir;

    fn order(side: Side, good: Good, qty: u32) -> Order {
        Order {
            side,
            good,
            qty,
            price_limit_cr: None,
        }
    }

    fn config() -> MeshConfig {
        let mut config = MeshConfig {
            tick_hz: 100,
            economy_delay_ms: 50,
            ..MeshConfig::default()
        };
        config.rules.ticks_per_ly = 1;
        config.rules.respawn_ticks = 5;
        // No market shocks: the price views must settle to converge.
        config.rules.shocks_per_100k_ticks = 0;
        config
    }

    async fn until<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
        for _ in 0..500 {
            if f().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("timed out waiting for {what}");
    }

    async fn player(mesh: &Mesh, name: &str) -> Player {
        mesh.look(name).await.unwrap().1.expect("in a system")
    }

    /// Every shard's heard prices and the galaxy view agree with each system's live prices.
    async fn views_agree(mesh: &Mesh) -> bool {
        let g = mesh.galaxy();
        let mut live = BTreeMap::new();
        let mut markets = Vec::new();
        for id in g.ids() {
            let m = mesh.market(id).await.unwrap();
            let prices: Vec<u64> = m.goods.iter().map(|q| q.mid_cr).collect();
            live.insert(m.system.clone(), prices);
            markets.push(m);
        }
        let same = |h: &HeardPrices| {
            let prices: Vec<u64> = Good::ALL.iter().map(|g| h.prices[g.name()]).collect();
            live[&h.system] == prices
        };
        let galaxy = mesh.economy();
        markets
            .iter()
            .all(|m| m.heard.len() == g.len() - 1 && m.heard.iter().all(same))
            && galaxy.systems.len() == g.len()
            && galaxy.systems.iter().all(same)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_standing_order_shows_with_the_targets_hull_until_ceased() {
        let dir = tempfile::tempdir().unwrap();
        // One tick a second: a ship takes at least five ticks to shoot down.
        let config = MeshConfig {
            tick_hz: 1,
            ..config()
        };
        let (mesh, _) = Mesh::start(DataDir::at(dir.path()), Galaxy::default_galaxy(), config)
            .await
            .unwrap();
        mesh.join("ann", "k").await.unwrap();
        mesh.join("bob", "k").await.unwrap();
        mesh.engage("ann", Some("bob")).await.unwrap();
        let (_, ship) = mesh.ship("ann").await.unwrap();
        let aim = ship.unwrap().attacking.expect("ann's order stands");
        assert_eq!(aim.target, "bob");
        assert!(aim.hull > 0 && aim.hull <= 100, "{aim:?}");
        let (_, bob) = mesh.ship("bob").await.unwrap();
        assert_eq!(bob.unwrap().attacking, None, "bob fires at no one");
        mesh.engage("ann", None).await.unwrap();
        assert_eq!(mesh.ship("ann").await.unwrap().1.unwrap().attacking, None);
        mesh.stop().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn trade_fight_loot_and_gossip_through_the_mesh_and_the_logs_prove_it() {
        let dir = tempfile::tempdir().unwrap();
        let datadir = DataDir::at(dir.path());
        let galaxy = Galaxy::default_galaxy();
        let (mesh, _) = Mesh::start(datadir.clone(), galaxy.clone(), config())
            .await
            .unwrap();
        for name in ["ann", "bob", "cid"] {
            mesh.join(name, "k").await.unwrap();
        }
        let sol = galaxy.home();
        let ac = galaxy.lookup("Alpha Centauri").unwrap();

        // A trade run: buy at home, jump, sell.
        let bought = mesh
            .trade("ann", order(Side::Buy, Good::Electronics, 5))
            .await
            .unwrap();
        assert_eq!(bought.player.cargo.get(Good::Electronics), 5);
        assert!(bought.fee_cr > 0, "the station's fee");
        assert_eq!(
            bought.player.credits,
            1_000 - bought.total_cr - bought.fee_cr
        );
        mesh.jump("ann", ac).await.unwrap();
        let in_jump = mesh.trade("ann", order(Side::Sell, Good::Electronics, 5));
        assert_eq!(
            in_jump.await.unwrap_err().code(),
            "in_jump",
            "no sale during a jump"
        );
        mesh.wait_landing("ann").await.unwrap();
        // Two sales of the same cargo at once: exactly one goes through.
        let (a, b) = tokio::join!(
            mesh.trade("ann", order(Side::Sell, Good::Electronics, 5)),
            mesh.trade("ann", order(Side::Sell, Good::Electronics, 5)),
        );
        assert!(a.is_ok() != b.is_ok(), "{a:?} {b:?}");
        let refused = a.err().or(b.err()).unwrap();
        assert_eq!(refused.code(), "not_carried");
        assert!(player(&mesh, "ann").await.cargo.is_empty());

        // A fight at home: bob carries ore, cid shoots him down, bob respawns in place.
        mesh.trade("bob", order(Side::Buy, Good::Ore, 10))
            .await
            .unwrap();
        assert_eq!(
            mesh.engage("cid", Some("nobody")).await.unwrap_err().code(),
            "not_here"
        );
        mesh.engage("cid", Some("bob")).await.unwrap();
        until("bob's ore in a wreck", || async {
            !mesh.wrecks(sol).await.unwrap().is_empty()
        })
        .await;
        let bob = player(&mesh, "bob").await;
        assert!(bob.cargo.is_empty() && bob.hull == 100, "{bob:?}");
        let wreck = mesh.wrecks(sol).await.unwrap()[0].clone();
        assert_eq!(wreck.cargo.get("ore"), Some(&10));
        let looted = mesh.loot("cid", wreck.id).await.unwrap();
        assert_eq!(looted.player.cargo.get(Good::Ore), 10);
        assert_eq!(
            mesh.loot("bob", wreck.id).await.unwrap_err().code(),
            "no_wreck"
        );

        // A fight away from home: the loser is sent home through the transition log.
        mesh.jump("cid", ac).await.unwrap();
        mesh.wait_landing("cid").await.unwrap();
        mesh.engage("ann", Some("cid")).await.unwrap();
        until("cid sent home", || async {
            mesh.locate("cid") != Some(SystemPlace::In(ac))
        })
        .await;
        let landed = mesh.wait_landing("cid").await.unwrap();
        assert_eq!(landed.system, sol);
        assert_eq!(player(&mesh, "cid").await.hull, 100);
        assert!(!mesh.wrecks(ac).await.unwrap().is_empty(), "cid's ore");

        // Economy sync: every view converges to every system's live prices.
        until("price views to converge", || views_agree(&mesh)).await;
        let e = mesh.economy();
        assert!(e.goods.iter().all(|g| g.best_buy.is_some()));

        let live = mesh.stop().await.unwrap();
        let report = audit(&datadir, &galaxy);
        assert!(report.ok(), "{:?}", report.problems);
        assert_eq!(report.trades, 3, "ann's buy and one sale, bob's buy");
        assert_eq!(report.ships_destroyed, 2);
        assert!(report.goods_made > 0 && report.goods_held > 0);
        for s in &live {
            assert_eq!(report.system_hashes.get(&s.slug), Some(&s.state_hash));
        }
        // A restart recovers the same galaxy.
        let (again, _) = Mesh::start(datadir.clone(), galaxy.clone(), config())
            .await
            .unwrap();
        assert!(player(&again, "cid").await.cargo.is_empty());
        assert_eq!(player(&again, "bob").await.credits, bob.credits);
        again.stop().await.unwrap();
    }
}
