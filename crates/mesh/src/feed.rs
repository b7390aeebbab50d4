//! The mesh's event feed: what happened in each system, told to whoever listens (the API's
//! event streams), once it is durable.
//!
//! Each shard publishes an event from its acker, after the record is durable and after what
//! else waited on it (routing, landing waiters): whoever hears of a landing finds routing up to
//! date. Departures are published at their commit (the origin's `depart.done`), never at the
//! prepare, so no one hears of a jump that recovery could still cancel. Recovery publishes
//! nothing (no one listens yet).
//!
//! One bounded broadcast for the whole mesh: publishing never blocks a shard; a listener that
//! falls more than [`FEED_LEN`] events behind misses the oldest (it is told how many). Events of
//! one system come in its log order; events of different systems in the order they became
//! durable. A view of the logs, never an authority: nothing here is read back by the mesh.

use serde::{Deserialize, Deserializer, Serialize};

use sim::galaxy::{Galaxy, SystemId};
use sim::goods::Good;
use sim::ids::{Tick, Xfer};
use sim::instance::InstanceId;
use sim::market::Side;
use sim::system::{Event, SystemState};
use store::seq::Seq;

pub use super::limits::FEED_LEN;

/// One durable event of one system. Serialized as JSON between the nodes of a spread galaxy
/// (`nats::news`), so it reads back as written ([`Deserialize`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedEvent {
    /// Where it happened.
    pub system: SystemId,
    /// In which instance of the system (1: the system itself).
    pub instance: u16,
    /// Its record in that system's log.
    pub seq: Seq,
    /// The system's tick it is stamped with.
    pub t: Tick,
    pub kind: FeedEventKind,
}

/// What happened. Transfer ids are `<origin slug>:<number>`, as in the logs and the API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FeedEventKind {
    /// A new player appeared (at the home system).
    Joined { player: String },
    /// The player's jump towards `to` is committed: they left for good.
    Departed {
        player: String,
        to: SystemId,
        xfer: String,
    },
    /// The player landed; `population` counts them too.
    Arrived {
        player: String,
        from: SystemId,
        xfer: String,
        population: usize,
    },
    /// The player bought `units` of fuel for `cost` credits.
    Refueled {
        player: String,
        units: u32,
        cost: u64,
    },
    /// The player mended `points` of hull for `cost` credits.
    Repaired {
        player: String,
        points: u32,
        cost: u64,
    },
    /// The player's jump never reached the transition log: they are back.
    Cancelled { player: String, xfer: String },
    /// The player traded with the local market.
    Traded {
        player: String,
        #[serde(deserialize_with = "side_name")]
        side: GameName,
        #[serde(deserialize_with = "good_name")]
        good: GameName,
        qty: u32,
        total_cr: u64,
    },
    /// The player set (or, with no target, dropped) a standing order to fire.
    Engaged {
        player: String,
        target: Option<String>,
    },
    /// The player's ship was destroyed; its cargo is wreck `wreck` (if any).
    Destroyed {
        player: String,
        by: String,
        wreck: Option<u64>,
    },
    /// The player took `took` from wreck `wreck`.
    Looted {
        player: String,
        wreck: u64,
        took: String,
    },
    /// The player was moved to another instance of the system they are in (it was crowded,
    /// or their instance closed); `notice` says so in words.
    Moved {
        player: String,
        from_instance: u16,
        instance: u16,
        notice: String,
    },
    /// A market shock began in the system (`sim::shock`): `good` (none: every good the system
    /// makes) tends toward a new price until tick `until`. About no player: told to everyone
    /// there.
    Shock {
        kind: String,
        good: Option<String>,
        until: u64,
        /// In words, for a player: "a mining strike in Sol: ore runs dear".
        notice: String,
    },
}

/// A name of the game's own (a good's, a side's): a static string, read back from JSON by
/// looking it up ([`good_name`], [`side_name`]). A type alias and not `&'static str` written
/// out: serde's derive borrows every `&str` field from its input, which would make
/// `FeedEvent` readable only from `'static` bytes.
pub type GameName = &'static str;

/// A side's name read back as the game's own (`buy`, `sell`); any other is an error.
fn side_name<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    let text = String::deserialize(d)?;
    [Side::Buy, Side::Sell]
        .into_iter()
        .map(Side::name)
        .find(|n| *n == text)
        .ok_or_else(|| serde::de::Error::custom(format!("no side {text:?} (buy or sell)")))
}

/// A good's name read back as the game's own; an unknown good is an error naming it.
fn good_name<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    let text = String::deserialize(d)?;
    Good::ALL
        .into_iter()
        .map(Good::name)
        .find(|n| *n == text)
        .ok_or_else(|| serde::de::Error::custom(format!("no good {text:?}")))
}

impl FeedEventKind {
    /// The player it is about; empty for a market shock, which is about a system (no player
    /// has an empty name, so comparing with a name stays right). [`FeedEventKind::about`]
    /// says it with an `Option`.
    pub fn player(&self) -> &str {
        self.about().unwrap_or("")
    }

    /// The player it is about, if any (none for a market shock).
    pub fn about(&self) -> Option<&str> {
        Some(match self {
            FeedEventKind::Joined { player }
            | FeedEventKind::Departed { player, .. }
            | FeedEventKind::Arrived { player, .. }
            | FeedEventKind::Refueled { player, .. }
            | FeedEventKind::Repaired { player, .. }
            | FeedEventKind::Cancelled { player, .. }
            | FeedEventKind::Traded { player, .. }
            | FeedEventKind::Engaged { player, .. }
            | FeedEventKind::Destroyed { player, .. }
            | FeedEventKind::Looted { player, .. }
            | FeedEventKind::Moved { player, .. } => player,
            FeedEventKind::Shock { .. } => return None,
        })
    }

    /// What the feed says of `event`, a record of system `state.id` about to be applied to
    /// `state` (a committed departure is still listed then). None for the prepare of a jump:
    /// its departure is told at the commit.
    /// Moves between instances of a system are told as `Moved` at the landing (not as a
    /// departure and an arrival: the player never left the system).
    pub fn of(galaxy: &Galaxy, state: &SystemState, event: &Event) -> Option<FeedEventKind> {
        let xfer_id = |from: InstanceId, xfer: Xfer| crate::codec::xfer_text(galaxy, from, xfer);
        Some(match event {
            Event::Join { player, .. } => FeedEventKind::Joined {
                player: player.name.clone(),
            },
            Event::Refuel {
                player,
                units,
                cost,
            } => FeedEventKind::Refueled {
                player: player.clone(),
                units: *units,
                cost: *cost,
            },
            Event::Repair {
                player,
                points,
                cost,
            } => FeedEventKind::Repaired {
                player: player.clone(),
                points: *points,
                cost: *cost,
            },
            // A void jump was never told (recovery writes it, before anyone listens).
            Event::Depart { .. } | Event::DepartVoid { .. } => return None,
            Event::DepartDone { xfer } => {
                let d = state.departing.get(xfer)?;
                if d.to.system == state.id {
                    return None;
                }
                FeedEventKind::Departed {
                    player: d.player.name.clone(),
                    to: d.to.system,
                    xfer: xfer_id(state.instance_id(), *xfer),
                }
            }
            Event::DepartAbort { xfer, player } => FeedEventKind::Cancelled {
                player: player.clone(),
                xfer: xfer_id(state.instance_id(), *xfer),
            },
            Event::Arrive {
                from,
                xfer: _,
                player,
            } if from.system == state.id => {
                let here = state.instance_id();
                let notice = if here.is_primary() {
                    format!(
                        "{} has closed: you are back in {}",
                        from.name(galaxy),
                        here.name(galaxy)
                    )
                } else {
                    format!(
                        "{} is crowded: you are now in {}",
                        galaxy.name(state.id),
                        here.name(galaxy)
                    )
                };
                FeedEventKind::Moved {
                    player: player.name.clone(),
                    from_instance: from.n,
                    instance: here.n,
                    notice,
                }
            }
            Event::Arrive { from, xfer, player } => FeedEventKind::Arrived {
                player: player.name.clone(),
                from: from.system,
                xfer: xfer_id(*from, *xfer),
                // Arriving adds the player (a landing seen twice is never recorded).
                population: state.players.len() + 1,
            },
            Event::Trade { player, trade } => FeedEventKind::Traded {
                player: player.clone(),
                side: trade.side.name(),
                good: trade.good.name(),
                qty: trade.qty,
                total_cr: trade.total_cr,
            },
            Event::Engage { player, target } => FeedEventKind::Engaged {
                player: player.clone(),
                target: target.clone(),
            },
            Event::Destroyed {
                player, by, wreck, ..
            } => FeedEventKind::Destroyed {
                player: player.clone(),
                by: by.clone(),
                wreck: *wreck,
            },
            Event::Loot { player, take } => FeedEventKind::Looted {
                player: player.clone(),
                wreck: take.wreck_id,
                took: take.taken.to_string(),
            },
            // A trade in an instance is told when it is settled, as a trade.
            Event::EscrowSettle {
                escrow,
                player,
                total_cr,
                ..
            } => {
                let e = state.escrows.get(escrow)?;
                FeedEventKind::Traded {
                    player: player.clone(),
                    side: e.order.side.name(),
                    good: e.order.good.name(),
                    qty: e.order.qty,
                    total_cr: *total_cr,
                }
            }
            Event::Shock { shock } => FeedEventKind::Shock {
                kind: shock.kind.name().to_string(),
                good: shock.good.map(|g| g.name().to_string()),
                until: shock.until,
                notice: shock_notice(galaxy.name(state.id), shock),
            },
            Event::Economy { .. }
            | Event::Combat { .. }
            | Event::Split { .. }
            | Event::Retire { .. }
            | Event::Escrow { .. }
            | Event::EscrowRefund { .. }
            | Event::RemoteTrade { .. }
            | Event::RemoteTradeDone { .. } => return None,
        })
    }
}

/// A shock in words: what it is, where, and which way its prices go.
pub fn shock_notice(system: &str, shock: &sim::shock::Shock) -> String {
    use sim::shock::ShockKind;
    let good = shock.good.map_or("what it makes", |g| g.name());
    match shock.kind {
        ShockKind::Shortage => format!("a shortage of {good} in {system}: {good} runs dear"),
        ShockKind::Boom => format!("demand for {good} booms in {system}: {good} runs dear"),
        ShockKind::Glut => format!("a glut of {good} in {system}: {good} runs cheap"),
        ShockKind::MiningStrike => format!("a mining strike in {system}: {good} runs dear"),
        ShockKind::Blockade => {
            format!("a blockade after the battle in {system}: {good} runs dear")
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::sync::broadcast;

    use super::*;
    use crate::{Mesh, MeshConfig};
    use store::datadir::DataDir;

    /// The next event of `player` (others' are skipped), within 5 s.
    async fn next_of(rx: &mut broadcast::Receiver<Arc<FeedEvent>>, player: &str) -> FeedEvent {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let e = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .expect("an event within 5 s")
                .expect("the feed is open");
            if e.kind.player() == player {
                return (*e).clone();
            }
        }
    }

    /// With 0 ticks a light year a jump lands when its destination is handed it, not at the
    /// destination's next tick: at one tick a second, a landing with no tick between the
    /// jump and the landing is impossible unless it lands at once. (Three tries, in case one
    /// straddles a tick.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn instant_travel_lands_without_waiting_for_a_tick() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = MeshConfig {
            tick_hz: 1,
            ..MeshConfig::default()
        };
        config.rules.ticks_per_ly = 0;
        let (mesh, _) = Mesh::start(DataDir::at(dir.path()), Galaxy::default_galaxy(), config)
            .await
            .unwrap();
        let g = mesh.galaxy().clone();
        let (home, to) = (g.home(), g.lookup("Alpha Centauri").unwrap());
        mesh.join("Bob", "k").await.unwrap();
        let mut between_ticks = 0;
        for (from, dest) in [(home, to), (to, home), (home, to)] {
            let before = mesh.system_status(dest).await.unwrap().tick;
            let ack = mesh.jump("Bob", dest).await.unwrap();
            assert_eq!((ack.from, ack.to, ack.travel_ticks), (from, dest, 0));
            let landed = mesh.wait_landing("Bob").await.unwrap();
            let after = mesh.system_status(dest).await.unwrap().tick;
            assert_eq!(landed.system, dest);
            assert_eq!(
                mesh.locate("Bob"),
                Some(crate::directory::SystemPlace::In(dest))
            );
            between_ticks += usize::from(after == before);
        }
        assert!(between_ticks > 0, "every landing waited for a tick");
        mesh.stop().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn events_are_published_once_durable_in_order_with_systems_and_populations() {
        let dir = tempfile::tempdir().unwrap();
        let datadir = DataDir::at(dir.path());
        let galaxy = Galaxy::default_galaxy();
        let mesh = crate::test_support::start_quick(&datadir, &galaxy).await;
        let g = mesh.galaxy().clone();
        let (home, to) = (g.home(), g.lookup("Alpha Centauri").unwrap());
        let mut feed = mesh.events();
        mesh.join("Bob", "k").await.unwrap();
        mesh.jump("Bob", to).await.unwrap();
        mesh.wait_landing("Bob").await.unwrap();
        mesh.join("Ann", "k").await.unwrap();

        // Every event is durable in its system's log when it is heard of.
        let durable = |e: &FeedEvent, mesh: &Mesh| {
            let mesh = mesh.clone();
            let (system, seq) = (e.system, e.seq);
            async move {
                let s = mesh.system_status(system).await.unwrap();
                assert!(
                    s.log_durable_seq >= seq,
                    "{seq} heard before durable: {s:?}"
                );
            }
        };
        let joined = next_of(&mut feed, "Ann").await;
        durable(&joined, &mesh).await;
        assert_eq!(
            (joined.system, &joined.kind),
            (
                home,
                &FeedEventKind::Joined {
                    player: "Ann".into()
                }
            )
        );
        let ack = mesh.jump("Ann", to).await.unwrap();
        let departed = next_of(&mut feed, "Ann").await;
        durable(&departed, &mesh).await;
        assert_eq!(
            (departed.system, &departed.kind),
            (
                home,
                &FeedEventKind::Departed {
                    player: "Ann".into(),
                    to,
                    xfer: ack.xfer.clone()
                }
            )
        );
        assert!(departed.seq > joined.seq && departed.t >= joined.t);
        let arrived = next_of(&mut feed, "Ann").await;
        durable(&arrived, &mesh).await;
        assert_eq!(
            (arrived.system, &arrived.kind),
            (
                to,
                &FeedEventKind::Arrived {
                    player: "Ann".into(),
                    from: home,
                    xfer: ack.xfer,
                    population: 2,
                }
            ),
            "Bob landed there first"
        );
        // Whoever hears of a landing finds routing up to date.
        assert_eq!(
            mesh.locate("Ann"),
            Some(crate::directory::SystemPlace::In(to))
        );
        mesh.stop().await.unwrap();
    }

    /// An event reads back from its JSON as it was (the nodes of a spread galaxy send each
    /// other events so); a good or side the game does not have is refused, naming it.
    #[test]
    fn events_read_back_from_their_json() {
        let traded = FeedEvent {
            system: SystemId(3),
            instance: 2,
            seq: Seq(41),
            t: Tick(7),
            kind: FeedEventKind::Traded {
                player: "Ann".into(),
                side: "sell",
                good: sim::goods::Good::ALL[1].name(),
                qty: 5,
                total_cr: 120,
            },
        };
        let moved = FeedEvent {
            kind: FeedEventKind::Moved {
                player: "Bob".into(),
                from_instance: 2,
                instance: 1,
                notice: "Sol #2 has closed: you are back in Sol".into(),
            },
            ..traded.clone()
        };
        for e in [traded.clone(), moved] {
            let json = serde_json::to_string(&e).unwrap();
            let back: FeedEvent = serde_json::from_str(&json).unwrap();
            assert_eq!(back, e, "{json}");
        }
        let json = serde_json::to_string(&traded).unwrap();
        let good = sim::goods::Good::ALL[1].name();
        let bad = json.replace(&format!("\"{good}\""), "\"gold bars\"");
        let err = serde_json::from_str::<FeedEvent>(&bad).unwrap_err();
        assert!(err.to_string().contains("no good \"gold bars\""), "{err}");
        let bad = json.replace("\"sell\"", "\"steal\"");
        let err = serde_json::from_str::<FeedEvent>(&bad).unwrap_err();
        assert!(err.to_string().contains("no side \"steal\""), "{err}");
    }

    #[test]
    fn the_prepare_of_a_jump_is_not_published() {
        let g = Galaxy::default_galaxy();
        let state = SystemState::new(&g, g.home());
        let event = Event::Depart {
            xfer: Xfer(1),
            player: "Ann".into(),
            to: InstanceId::primary(g.lookup("Alpha Centauri").unwrap()),
            fuel: 1,
        };
        assert_eq!(FeedEventKind::of(&g, &state, &event), None);
    }
}
