//! Economy sync: how the prices of each system reach the others and the galaxy-wide view,
//! with eventual consistency (the founding sketch's `rsync economy/*.txt central_economy/`,
//! done so that it converges).
//!
//! Every economy period each shard stamps its own mid prices ([`PriceReport`], its tick and
//! the wall-clock time of publication) into its [`PriceView`] and sends the whole view to its
//! lane neighbours, which merge it into theirs (gossip: news travels one lane a period). Each
//! shard also sends its own report to the galaxy view, which takes it in after a configurable
//! delay ([`run_galaxy_view`]). Merging keeps, per system, the newest report (the sim's
//! [`PriceBoard`] join: commutative, associative, idempotent), so once publishing stops every
//! view that keeps gossiping ends equal, whatever order messages came in.
//!
//! A view of other systems' prices is advice to players, never game state: nothing here is
//! logged or read by the simulation, so it may lag, and is rebuilt from nothing at restart.
//! Sending never blocks a shard's tick (full queues drop a round; the next one repairs it).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::mpsc;

use sim::galaxy::{Galaxy, SystemId};
use sim::goods::{Good, GOOD_COUNT};
use sim::market::{PriceBoard, PriceReport};

/// Milliseconds since the Unix epoch (for ages shown to people; never read by the sim).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Prices heard from systems, each with the wall-clock time its system published it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PriceView {
    board: PriceBoard,
    published_ms: BTreeMap<SystemId, u64>,
}

impl PriceView {
    pub fn new() -> PriceView {
        PriceView::default()
    }

    /// Takes in one report; true if it was news.
    pub fn record(&mut self, system: SystemId, report: PriceReport, published_ms: u64) -> bool {
        let news = self.board.record(system, report);
        if news {
            self.published_ms.insert(system, published_ms);
        }
        news
    }

    /// Takes in every report of `other` that is news here; returns how many.
    pub fn merge(&mut self, other: &PriceView) -> usize {
        let mut n = 0;
        for (system, report) in other.board.iter() {
            let at = other.published_ms.get(&system).copied().unwrap_or(0);
            n += usize::from(self.record(system, *report, at));
        }
        n
    }

    /// The last report from `system`, with its publication time.
    pub fn get(&self, system: SystemId) -> Option<(&PriceReport, u64)> {
        let r = self.board.get(system)?;
        Some((r, self.published_ms.get(&system).copied().unwrap_or(0)))
    }

    /// Every report, by system id.
    pub fn iter(&self) -> impl Iterator<Item = (SystemId, &PriceReport, u64)> + '_ {
        self.board
            .iter()
            .map(|(s, r)| (s, r, self.published_ms.get(&s).copied().unwrap_or(0)))
    }

    pub fn len(&self) -> usize {
        self.board.len()
    }

    pub fn is_empty(&self) -> bool {
        self.board.is_empty()
    }

    /// The board alone (prices and ticks, no wall-clock times): what convergence compares.
    pub fn board(&self) -> &PriceBoard {
        &self.board
    }
}

/// A system's prices as told to people and bots: mid price per good, and how old they are.
#[derive(Clone, Debug, Serialize)]
pub struct HeardPrices {
    pub system: String,
    pub slug: String,
    /// Milliseconds since the system published these prices.
    pub age_ms: u64,
    /// Mid price per good, in credits.
    pub prices: BTreeMap<&'static str, u64>,
}

impl HeardPrices {
    pub fn new(galaxy: &Galaxy, system: SystemId, prices: &[u64; GOOD_COUNT], age_ms: u64) -> Self {
        HeardPrices {
            system: galaxy.name(system).to_string(),
            slug: galaxy.slug(system).to_string(),
            age_ms,
            prices: Good::ALL
                .iter()
                .map(|g| (g.name(), prices[g.index()]))
                .collect(),
        }
    }
}

/// Where a good is cheapest or dearest, as far as the galaxy view has heard.
#[derive(Clone, Debug, Serialize)]
pub struct Best {
    pub system: String,
    pub price_cr: u64,
    pub age_ms: u64,
}

/// One good across the galaxy: where to buy it (lowest mid price), where to sell it (highest),
/// and the spread between the two.
#[derive(Clone, Debug, Serialize)]
pub struct GoodSummary {
    pub good: &'static str,
    pub best_buy: Option<Best>,
    pub best_sell: Option<Best>,
    pub spread_cr: u64,
}

/// The galaxy-wide economy view (`mltrader economy`, `GET /v1/economy`).
#[derive(Clone, Debug, Serialize)]
pub struct GalaxyPriceView {
    pub goods: Vec<GoodSummary>,
    pub systems: Vec<HeardPrices>,
}

impl GalaxyPriceView {
    /// Summarises `view` at wall-clock time `now_ms`.
    pub fn of(galaxy: &Galaxy, view: &PriceView, now_ms: u64) -> GalaxyPriceView {
        let systems: Vec<HeardPrices> = view
            .iter()
            .map(|(s, r, at)| HeardPrices::new(galaxy, s, &r.prices_cr, now_ms.saturating_sub(at)))
            .collect();
        let goods = Good::ALL
            .iter()
            .map(|g| {
                let best = |pick_max: bool| {
                    systems
                        .iter()
                        .map(|h| (h.prices[g.name()], h))
                        .reduce(|a, b| {
                            let better = if pick_max { b.0 > a.0 } else { b.0 < a.0 };
                            if better {
                                b
                            } else {
                                a
                            }
                        })
                        .map(|(price_cr, h)| Best {
                            system: h.system.clone(),
                            price_cr,
                            age_ms: h.age_ms,
                        })
                };
                let (buy, sell) = (best(false), best(true));
                let spread_cr = match (&buy, &sell) {
                    (Some(b), Some(s)) => s.price_cr - b.price_cr,
                    _ => 0,
                };
                GoodSummary {
                    good: g.name(),
                    best_buy: buy,
                    best_sell: sell,
                    spread_cr,
                }
            })
            .collect();
        GalaxyPriceView { goods, systems }
    }
}

/// One report on its way to the galaxy view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Published {
    pub system: SystemId,
    pub report: PriceReport,
    pub published_ms: u64,
}

/// Takes reports in, each `delay` after it was sent, into `view`. Runs until every sender is
/// gone.
pub async fn run_galaxy_view(
    view: Arc<Mutex<PriceView>>,
    mut rx: mpsc::Receiver<(tokio::time::Instant, Published)>,
    delay: Duration,
) {
    while let Some((sent, p)) = rx.recv().await {
        tokio::time::sleep_until(sent + delay).await;
        let mut v = view.lock().unwrap_or_else(|e| e.into_inner());
        v.record(p.system, p.report, p.published_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn report(tick: u64, price: u64) -> PriceReport {
        PriceReport {
            tick,
            prices_cr: [price; GOOD_COUNT],
        }
    }

    proptest! {
        /// Any publications, then gossip along the lanes of the default galaxy in any order:
        /// once publishing stops, every view ends equal (and holds every system's last report).
        #[test]
        fn gossip_along_lanes_converges(
            publications in proptest::collection::vec((0usize..37, 1u64..50, 1u64..500), 1..120),
            order_seed in any::<u64>(),
        ) {
            let g = Galaxy::default_galaxy();
            let n = g.len();
            let mut views = vec![PriceView::new(); n];
            let mut rng = sim::rng::Rng::from_seed(order_seed);
            // Publications interleaved with random gossip steps.
            for (who, tick, price) in publications {
                let s = SystemId((who % n) as u16);
                views[usize::from(s.0)].record(s, report(tick, price), tick);
                let from = rng.below(n as u64) as usize;
                for &to in g.neighbours(SystemId(from as u16)) {
                    let v = views[from].clone();
                    views[usize::from(to.0)].merge(&v);
                }
            }
            // Publishing stops; gossip rounds (each view to its neighbours) until nothing changes.
            let mut rounds = 0;
            loop {
                let before = views.clone();
                for (from, v) in before.iter().enumerate() {
                    for &to in g.neighbours(SystemId(from as u16)) {
                        views[usize::from(to.0)].merge(v);
                    }
                }
                rounds += 1;
                if views == before {
                    break;
                }
                prop_assert!(rounds <= n, "gossip does not settle");
            }
            for v in &views {
                prop_assert_eq!(v.board(), views[0].board());
            }
        }
    }

    #[test]
    fn the_galaxy_view_names_where_to_buy_and_sell() {
        let g = Galaxy::default_galaxy();
        let mut v = PriceView::new();
        let (a, b) = (SystemId(0), SystemId(1));
        v.record(a, report(1, 10), 1_000);
        v.record(b, report(1, 30), 2_000);
        let e = GalaxyPriceView::of(&g, &v, 5_000);
        let food = &e.goods[0];
        assert_eq!(food.best_buy.as_ref().unwrap().system, g.name(a));
        assert_eq!(food.best_sell.as_ref().unwrap().system, g.name(b));
        assert_eq!(food.spread_cr, 20);
        assert_eq!(e.systems[0].age_ms, 4_000);
    }
}
