//! Conversions from the rules' and the mesh's views into the wire types of the `api` crate,
//! which every answer of the server is built from.
//!
//! Copies fields only; never computes, rounds or renames a value (the JSON on the wire is
//! what the views hold), and never depends on the request.

use mesh::price_sync::{Best, GalaxyPriceView, GoodSummary, HeardPrices};
use mesh::trading::{GoodQuote, MarketView, Opponent, WreckView};
use mesh::ShardStatus;
use sim::player::Player;

/// A player as the API shows them, with the hold units their cargo takes.
pub fn player(p: Player) -> api::Player {
    api::Player {
        hold_used: p.cargo.hold_used(),
        cargo: p
            .cargo
            .iter()
            .map(|(good, units)| (good.name(), units))
            .collect(),
        name: p.name,
        credits: p.credits,
        fuel: p.fuel,
        fuel_capacity: p.fuel_capacity,
        hull: p.hull,
        hold: p.hold,
        version: p.version.0,
    }
}

pub fn opponent(o: Opponent) -> api::Opponent {
    api::Opponent {
        target: o.target,
        hull: o.hull,
    }
}

pub fn heard_prices(h: HeardPrices) -> api::HeardPrices {
    api::HeardPrices {
        system: h.system,
        slug: h.slug,
        age_ms: h.age_ms,
        prices: h
            .prices
            .into_iter()
            .map(|(good, price_cr)| (good.to_string(), price_cr))
            .collect(),
    }
}

fn quote(q: GoodQuote) -> api::Quote {
    api::Quote {
        good: q.good.to_string(),
        stock: q.stock,
        mid_cr: q.mid_cr,
        buy_cr: q.buy_cr,
        sell_cr: q.sell_cr,
    }
}

/// The player's own system's market, now.
pub fn live_market(m: MarketView) -> api::LiveMarket {
    api::LiveMarket {
        live: true,
        system: m.system,
        slug: m.slug,
        economy: m.economy.to_string(),
        tick: m.tick,
        till_cr: m.till_cr,
        goods: m.goods.into_iter().map(quote).collect(),
        heard: m.heard.into_iter().map(heard_prices).collect(),
        shocks: m
            .shocks
            .into_iter()
            .map(|s| api::MarketShock {
                kind: s.kind.to_string(),
                good: s.good.map(str::to_string),
                until_tick: s.until_tick,
                remaining_ticks: s.remaining_ticks,
            })
            .collect(),
    }
}

pub fn wreck(w: WreckView) -> api::Wreck {
    api::Wreck {
        id: w.id,
        pilot: w.pilot,
        cargo: goods(w.cargo),
        age_ms: w.age_ms,
    }
}

/// Units by good, the good's names owned.
pub fn goods(
    units: std::collections::BTreeMap<&'static str, u32>,
) -> std::collections::BTreeMap<String, u32> {
    units.into_iter().map(|(g, u)| (g.to_string(), u)).collect()
}

fn best(b: Best) -> api::BestPrice {
    api::BestPrice {
        system: b.system,
        price_cr: b.price_cr,
        age_ms: b.age_ms,
    }
}

fn good_summary(g: GoodSummary) -> api::GoodSummary {
    api::GoodSummary {
        good: g.good.to_string(),
        best_buy: g.best_buy.map(best),
        best_sell: g.best_sell.map(best),
        spread_cr: g.spread_cr,
    }
}

/// The galaxy-wide price view.
pub fn galaxy_prices(e: GalaxyPriceView) -> api::GalaxyPrices {
    api::GalaxyPrices {
        goods: e.goods.into_iter().map(good_summary).collect(),
        systems: e.systems.into_iter().map(heard_prices).collect(),
    }
}

/// A shard's figures, its instances inside.
pub fn shard_status(s: ShardStatus) -> api::ShardStatus {
    api::ShardStatus {
        system: s.system,
        slug: s.slug,
        instance: s.instance,
        shard: s.shard,
        instance_name: s.instance_name,
        merging: s.merging,
        instances: s.instances.into_iter().map(shard_status).collect(),
        population: s.population,
        departing: s.departing,
        in_transit_towards: s.in_transit_towards,
        tick: s.tick.0,
        tick_p50_us: s.tick_p50_us,
        tick_p99_us: s.tick_p99_us,
        tick_late_p50_us: s.tick_late_p50_us,
        tick_late_p99_us: s.tick_late_p99_us,
        dilation: s.dilation,
        tick_period_us: s.tick_period_us,
        log_durable_seq: s.log_durable_seq.0,
        log_next_seq: s.log_next_seq.0,
        state_hash: s.state_hash,
        failed: s.failed,
    }
}
