//! The economy report behind `mltrader economy --report` and the `/economy` page: where
//! credits come from and go, goods made and used, price history per good and system, the most
//! profitable routes and how they shift, each trader's profit per trip, over a window of ticks,
//! from the logs alone (so it works on any data directory, live or exported).
//!
//! An [`EconomyBook`] watches an audit's replay ([`super::audit_watched`]) and counts every
//! event's flows by named rule (`sim::ledger`); [`EconomyBook::report`] turns that into an
//! [`EconomyReport`]. Over the whole history, its credits created less destroyed equal the
//! credits `check` finds held (`tests/economy_report.rs` proves it on a real galaxy).
//!
//! Ticks are each system's own (`t=` of its records); systems tick at the same rate from the
//! same start, so a window of ticks is the same span of game time everywhere. Only reads;
//! never changes a log. Sizes are bounded: at most [`MAX_BUCKETS`] buckets and
//! [`PRICE_POINTS_PER_BUCKET`] price points per bucket and series.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use sim::galaxy::{Galaxy, SystemId};
use sim::goods::{Good, GOOD_COUNT};
use sim::ids::Tick;
use sim::instance::InstanceId;
use sim::ledger::{flows_at_start, flows_of, Flows};
use sim::market::{max_price_cr, min_price_cr, Side, SPREAD_PERMILLE};
use sim::system::{Event, SystemState};

/// A game hour, in ticks: one minute of wall time at the default 10 Hz. The report's buckets
/// are game hours unless told otherwise; a game day is 24 of them.
pub const TICKS_PER_GAME_HOUR: u64 = 600;
/// The most buckets one report holds (a longer window takes wider buckets).
pub const MAX_BUCKETS: u64 = 1_000;
/// Price points kept per bucket of each (system, good) series.
pub const PRICE_POINTS_PER_BUCKET: u64 = 6;
/// How many routes the report ranks in each bucket.
pub const BEST_ROUTES: usize = 10;

/// What the report covers: ticks `from..to` (either end open), in buckets of `bucket_ticks`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Window {
    pub from: u64,
    pub to: Option<u64>,
    pub bucket_ticks: u64,
}

impl Window {
    /// The whole history in game hours.
    pub fn all() -> Window {
        Window {
            from: 0,
            to: None,
            bucket_ticks: TICKS_PER_GAME_HOUR,
        }
    }

    fn contains(&self, t: u64) -> bool {
        t >= self.from && self.to.is_none_or(|to| t < to)
    }

    fn bucket(&self, t: u64) -> u64 {
        (t - self.from) / self.bucket_ticks
    }
}

/// Credits and goods by named rule, and the trades, over some ticks.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FlowTotals {
    /// Credits created, by source name.
    pub credits_created: BTreeMap<String, u128>,
    /// Credits destroyed, by sink name.
    pub credits_destroyed: BTreeMap<String, u128>,
    /// Units made, by source name, then good.
    pub goods_made: BTreeMap<String, BTreeMap<String, u128>>,
    /// Units destroyed, by sink name, then good.
    pub goods_destroyed: BTreeMap<String, BTreeMap<String, u128>>,
    /// Credits markets paid players (goods sold to systems' populations).
    pub sold_to_markets_cr: u128,
    /// Credits players paid markets (goods bought from systems' populations).
    pub bought_from_markets_cr: u128,
    pub trades: u64,
}

impl FlowTotals {
    fn add(&mut self, f: &Flows) {
        for (rule, n) in &f.credits_in {
            *self.credits_created.entry(rule.name().into()).or_default() += u128::from(*n);
        }
        for (rule, n) in &f.credits_out {
            *self
                .credits_destroyed
                .entry(rule.name().into())
                .or_default() += u128::from(*n);
        }
        let add_units = |to: &mut BTreeMap<String, BTreeMap<String, u128>>,
                         rule: &str,
                         units: &[u64; GOOD_COUNT]| {
            let per_good = to.entry(rule.into()).or_default();
            for good in Good::ALL {
                let n = units[good.index()];
                if n > 0 {
                    *per_good.entry(good.name().into()).or_default() += u128::from(n);
                }
            }
        };
        for (rule, units) in &f.goods_in {
            add_units(&mut self.goods_made, rule.name(), units);
        }
        for (rule, units) in &f.goods_out {
            add_units(&mut self.goods_destroyed, rule.name(), units);
        }
        let t = &f.transfers;
        self.sold_to_markets_cr += u128::from(t.sold_to_markets_cr);
        self.bought_from_markets_cr += u128::from(t.bought_from_markets_cr);
        if t.sold_to_markets_cr + t.bought_from_markets_cr > 0 {
            self.trades += 1;
        }
    }

    /// All credits created.
    pub fn created(&self) -> u128 {
        self.credits_created.values().sum()
    }

    /// All credits destroyed.
    pub fn destroyed(&self) -> u128 {
        self.credits_destroyed.values().sum()
    }
}

/// A trade route: buy `good` at `from`, jump one lane, sell at `to`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Route {
    pub from: String,
    pub to: String,
    pub good: String,
    /// What one unit earns at the mid prices less the spread both ways, in credits.
    pub margin_cr: i64,
}

/// One bucket of the window.
#[derive(Clone, Debug, Serialize)]
pub struct Bucket {
    pub from: u64,
    pub to: u64,
    pub flows: FlowTotals,
    /// Credits in circulation (players, jumps, escrows, tills) at the bucket's end.
    pub circulation_cr: i128,
    /// (system, good) pairs of one lane whose margin is above zero at the bucket's end.
    pub profitable_routes: u64,
    /// The best routes at the bucket's end.
    pub best: Vec<Route>,
    /// How many of `best` were among the bucket before's best.
    pub best_kept: u64,
    /// Traders' completed sales in the bucket: (player name, profit in credits) summed per
    /// player, with the number of sales ([`TraderHour`]).
    pub traders: BTreeMap<String, TraderHour>,
}

/// One trader's sales in one bucket: each sale's profit is its price less what the units
/// sold cost them (their average buying price of that good).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct TraderHour {
    pub sales: u64,
    pub profit_cr: i64,
}

/// One good over the window.
#[derive(Clone, Debug, Serialize)]
pub struct GoodSummary {
    pub good: String,
    /// Price samples (one per system economy step) in the window.
    pub samples: u64,
    /// Share of them at the lowest price (`market::min_price_cr`), in per-mille.
    pub at_floor_permille: u64,
    /// Share of them at the highest price, in per-mille.
    pub at_ceiling_permille: u64,
}

/// A price history: (tick, mid price in credits) of one good in one system.
#[derive(Clone, Debug, Serialize)]
pub struct PriceSeries {
    pub system: String,
    pub good: String,
    pub points: Vec<(u64, u64)>,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct EconomyReport {
    pub window: Window,
    /// The last tick any log holds in the window.
    pub last_tick: u64,
    /// Credits in circulation when the window starts (sources less sinks before it).
    pub circulation_at_start_cr: i128,
    /// ... and when it ends.
    pub circulation_at_end_cr: i128,
    /// Everything created and destroyed in the window, by rule.
    pub flows: FlowTotals,
    pub buckets: Vec<Bucket>,
    pub goods: Vec<GoodSummary>,
    pub prices: Vec<PriceSeries>,
}

/// Per player: units and credits of each good bought and not yet sold (average cost basis).
#[derive(Default)]
struct Basis {
    units: [u64; GOOD_COUNT],
    cost_cr: [u64; GOOD_COUNT],
}

/// What the book gathers per bucket before the routes are ranked.
#[derive(Default)]
struct BucketAcc {
    flows: FlowTotals,
    /// Each primary's mid prices at its last economy step in the bucket.
    prices: HashMap<SystemId, [u64; GOOD_COUNT]>,
    traders: BTreeMap<String, TraderHour>,
}

/// Watches an audit's replay and counts the economy ([`super::Watch`]).
pub struct EconomyBook {
    galaxy: Galaxy,
    window: Window,
    before: FlowTotals,
    during: FlowTotals,
    buckets: BTreeMap<u64, BucketAcc>,
    basis: HashMap<String, Basis>,
    /// Per good: (samples, at floor, at ceiling).
    extremes: [(u64, u64, u64); GOOD_COUNT],
    prices: BTreeMap<(SystemId, usize), Vec<(u64, u64)>>,
    last_tick: u64,
}

impl EconomyBook {
    /// A book over `window` of `galaxy`'s logs. Panics on a bucket of 0 ticks.
    pub fn new(galaxy: &Galaxy, window: Window) -> EconomyBook {
        assert!(window.bucket_ticks > 0, "a bucket of 0 ticks");
        let mut window = window;
        if let Some(to) = window.to {
            assert!(to > window.from, "window {}..{to} is empty", window.from);
            let min_bucket = (to - window.from).div_ceil(MAX_BUCKETS);
            window.bucket_ticks = window.bucket_ticks.max(min_bucket);
        }
        EconomyBook {
            galaxy: galaxy.clone(),
            window,
            before: FlowTotals::default(),
            during: FlowTotals::default(),
            buckets: BTreeMap::new(),
            basis: HashMap::new(),
            extremes: [(0, 0, 0); GOOD_COUNT],
            prices: BTreeMap::new(),
            last_tick: 0,
        }
    }

    /// Counts `flows` at tick `t`: before the window, in it (and its bucket), or after.
    fn count(&mut self, t: u64, flows: &Flows) {
        if t < self.window.from {
            self.before.add(flows);
        } else if self.window.contains(t) {
            self.during.add(flows);
            let b = self.window.bucket(t);
            self.buckets.entry(b).or_default().flows.add(flows);
        }
    }

    /// A trader's trade: a buy adds to their cost basis, a sale is a trip's end (its profit is
    /// the price less the average cost of the units sold), counted in the sale's bucket.
    /// `total` is the trader's side of it: the fee paid on top of a buy, taken from a sale.
    fn trade(&mut self, t: u64, player: &str, side: Side, good: Good, qty: u64, total: u64) {
        let basis = self.basis.entry(player.to_string()).or_default();
        let i = good.index();
        match side {
            Side::Buy => {
                basis.units[i] += qty;
                basis.cost_cr[i] += total;
            }
            Side::Sell => {
                let held = basis.units[i];
                let cost = if held == 0 {
                    0
                } else {
                    let sold = qty.min(held);
                    let cost = u128::from(basis.cost_cr[i]) * u128::from(sold) / u128::from(held);
                    basis.units[i] -= sold;
                    basis.cost_cr[i] -= cost as u64;
                    cost as u64
                };
                if self.window.contains(t) {
                    let b = self.window.bucket(t);
                    let hour = self.buckets.entry(b).or_default();
                    let entry = hour.traders.entry(player.to_string()).or_default();
                    entry.sales += 1;
                    entry.profit_cr += total as i64 - cost as i64;
                }
            }
        }
    }

    /// A primary's prices after an economy step at tick `t`.
    fn sample_prices(&mut self, t: u64, system: SystemId, prices: [u64; GOOD_COUNT]) {
        if !self.window.contains(t) {
            return;
        }
        for good in Good::ALL {
            let p = prices[good.index()];
            let e = &mut self.extremes[good.index()];
            e.0 += 1;
            e.1 += u64::from(p <= min_price_cr(good));
            e.2 += u64::from(p >= max_price_cr(good));
            let series = self.prices.entry((system, good.index())).or_default();
            let step = (self.window.bucket_ticks / PRICE_POINTS_PER_BUCKET).max(1);
            if series
                .last()
                .is_none_or(|(last, _)| t / step != last / step)
            {
                series.push((t, p));
            }
        }
        let b = self.window.bucket(t);
        self.buckets
            .entry(b)
            .or_default()
            .prices
            .insert(system, prices);
    }

    /// The report of what the book saw.
    pub fn report(mut self) -> EconomyReport {
        let w = self.window;
        let last_bucket = self.buckets.keys().next_back().copied();
        let mut buckets = Vec::new();
        let mut circulation = self.before.created() as i128 - self.before.destroyed() as i128;
        let circulation_at_start = circulation;
        let mut prices: HashMap<SystemId, [u64; GOOD_COUNT]> = HashMap::new();
        let mut best_before: Vec<Route> = Vec::new();
        for b in 0..=last_bucket.unwrap_or(0) {
            if last_bucket.is_none() {
                break;
            }
            let acc = self.buckets.remove(&b).unwrap_or_default();
            circulation += acc.flows.created() as i128 - acc.flows.destroyed() as i128;
            // Prices carry forward from the bucket before where a system took no step.
            prices.extend(acc.prices);
            let (profitable, best) = rank_routes(&self.galaxy, &prices);
            // The same route (lane, direction, good), whatever its margin now.
            let same =
                |a: &Route, b: &Route| (&a.from, &a.to, &a.good) == (&b.from, &b.to, &b.good);
            let best_kept = best
                .iter()
                .filter(|r| best_before.iter().any(|b| same(r, b)))
                .count() as u64;
            let from = w.from + b * w.bucket_ticks;
            buckets.push(Bucket {
                from,
                to: from + w.bucket_ticks,
                flows: acc.flows,
                circulation_cr: circulation,
                profitable_routes: profitable,
                best_kept,
                best: best.clone(),
                traders: acc.traders,
            });
            best_before = best;
        }
        let goods = Good::ALL
            .iter()
            .map(|g| {
                let (n, floor, ceiling) = self.extremes[g.index()];
                GoodSummary {
                    good: g.name().into(),
                    samples: n,
                    at_floor_permille: (floor * 1_000).checked_div(n).unwrap_or(0),
                    at_ceiling_permille: (ceiling * 1_000).checked_div(n).unwrap_or(0),
                }
            })
            .collect();
        let prices = self
            .prices
            .into_iter()
            .map(|((system, good), points)| PriceSeries {
                system: self.galaxy.slug(system).to_string(),
                good: Good::ALL[good].name().into(),
                points,
            })
            .collect();
        EconomyReport {
            window: w,
            last_tick: self.last_tick,
            circulation_at_start_cr: circulation_at_start,
            circulation_at_end_cr: circulation_at_start + self.during.created() as i128
                - self.during.destroyed() as i128,
            flows: self.during,
            buckets,
            goods,
            prices,
        }
    }
}

/// Every (lane, direction, good) with a margin above zero at `prices`, counted, and the best
/// [`BEST_ROUTES`] of them (ties by names, so the ranking is stable).
fn rank_routes(
    galaxy: &Galaxy,
    prices: &HashMap<SystemId, [u64; GOOD_COUNT]>,
) -> (u64, Vec<Route>) {
    let mut routes = Vec::new();
    for (a, b) in galaxy.lanes() {
        for (from, to) in [(a, b), (b, a)] {
            let (Some(buy), Some(sell)) = (prices.get(&from), prices.get(&to)) else {
                continue;
            };
            for good in Good::ALL {
                let i = good.index();
                let cost = buy[i] * (1_000 + SPREAD_PERMILLE);
                let gain = sell[i] * (1_000 - SPREAD_PERMILLE);
                let margin = (gain as i64 - cost as i64) / 1_000;
                if margin > 0 {
                    routes.push(Route {
                        from: galaxy.slug(from).into(),
                        to: galaxy.slug(to).into(),
                        good: good.name().into(),
                        margin_cr: margin,
                    });
                }
            }
        }
    }
    let profitable = routes.len() as u64;
    routes.sort_by(|x, y| {
        y.margin_cr
            .cmp(&x.margin_cr)
            .then_with(|| (&x.from, &x.to, &x.good).cmp(&(&y.from, &y.to, &y.good)))
    });
    routes.truncate(BEST_ROUTES);
    (profitable, routes)
}

impl super::Watch for EconomyBook {
    fn begin(&mut self, _at: InstanceId, state: &SystemState) {
        let flows = flows_at_start(state.market.till_cr(), state.market.stocks());
        self.count(0, &flows);
    }

    fn event(&mut self, at: InstanceId, t: Tick, event: &Event, after: &SystemState) {
        let t = t.0;
        if self.window.contains(t) {
            self.last_tick = self.last_tick.max(t);
        }
        self.count(t, &flows_of(event));
        match event {
            Event::Trade { player, trade } | Event::RemoteTrade { player, trade, .. } => {
                let qty = u64::from(trade.qty);
                // What the trader paid or got, the station's fee included.
                self.trade(t, player, trade.side, trade.good, qty, trade.player_cr());
            }
            Event::Economy { .. } if at.is_primary() => {
                self.sample_prices(t, at.system, after.market.prices_cr());
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_rank_by_margin_and_count_only_profitable_ones() {
        let g = Galaxy::default_galaxy();
        let (a, b) = g.lanes()[0];
        let mut prices = HashMap::new();
        let mut pa = [100; GOOD_COUNT];
        let pb = [100; GOOD_COUNT];
        pa[0] = 50; // food cheap at a, sold at b for 100: 95 - 52.5 = 42 cr a unit
        prices.insert(a, pa);
        prices.insert(b, pb);
        let (n, best) = rank_routes(&g, &prices);
        assert_eq!(n, 1, "equal prices lose the spread both ways");
        assert_eq!(best[0].good, "food");
        assert_eq!(best[0].margin_cr, 42);
        assert_eq!(best[0].from, g.slug(a));
    }

    #[test]
    fn a_window_sizes_its_buckets_within_the_limit() {
        let g = Galaxy::default_galaxy();
        let book = EconomyBook::new(
            &g,
            Window {
                from: 0,
                to: Some(10_000_000),
                bucket_ticks: 1,
            },
        );
        assert_eq!(book.window.bucket_ticks, 10_000);
    }
}
