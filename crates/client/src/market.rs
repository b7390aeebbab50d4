//! `mltrader market [SYSTEM]`: the market of the player's system, live (stock, what buying and
//! selling one unit pays now), then the prices it has heard from other systems and how old
//! they are; with SYSTEM, that system's prices as last heard here.
//!
//! ```text
//! Sol (high_tech), live    stock   buy  sell
//! food                      1000    32    28
//! ...
//! Shock: mining strike of ore for 1840 more ticks (until tick 2570)
//! Heard: Alpha Centauri: food 30, water 6, ore 15, ... luxuries 700 cr (0.2 s ago)
//! ```

use std::process::ExitCode;

use std::collections::BTreeMap;

use clap::Args;

use ::api::{HeardMarket, HeardPrices, LiveMarket, Market};

use super::{human_ms, json_of, ClientOpts, Output};
use sim::goods::Good;

/// Systems heard shown without `--all` (the freshest, which are the nearest).
const HEARD_SHOWN: usize = 8;

#[derive(Args, Debug)]
#[command(after_help = super::EXIT_CODES_HELP)]
pub struct MarketArgs {
    /// Another system: its prices as your system last heard them.
    pub system: Option<String>,
    /// List every system heard (default: the 8 freshest).
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub opts: ClientOpts,
}

pub fn run(args: MarketArgs) -> anyhow::Result<ExitCode> {
    super::run(&args.opts, |api| async move {
        let m: Market = match &args.system {
            Some(s) => api.get_query("/v1/market", &[("system", s)]).await?,
            None => api.get("/v1/market").await?,
        };
        let human = match &m {
            Market::Live(live) => live_text(live, args.all),
            Market::Heard(HeardMarket { heard, .. }) => format!(
                "{} (heard {} ago, mid prices): {}\n",
                heard.system,
                human_ms(heard.age_ms),
                prices_text(&heard.prices)
            ),
        };
        Ok(Output {
            human: Some(human),
            json: json_of(&m),
        })
    })
}

fn live_text(m: &LiveMarket, all: bool) -> String {
    let price = |v: Option<u64>| v.map_or("-".to_string(), |p| p.to_string());
    let title = format!("{} ({}), live", m.system, m.economy);
    let width = title.chars().count().max(12);
    let mut text = format!(
        "{title:<width$} {:>6} {:>5} {:>5}\n",
        "stock", "buy", "sell"
    );
    for q in &m.goods {
        text.push_str(&format!(
            "{:<width$} {:>6} {:>5} {:>5}\n",
            q.good,
            price(Some(q.stock)),
            price(q.buy_cr),
            price(q.sell_cr),
        ));
    }
    for s in &m.shocks {
        text.push_str(&format!(
            "Shock: {} of {} for {} more ticks (until tick {})\n",
            s.kind.replace('_', " "),
            s.good.as_deref().unwrap_or("everything made here"),
            s.remaining_ticks,
            s.until_tick
        ));
    }
    let mut heard: Vec<&HeardPrices> = m.heard.iter().collect();
    heard.sort_by_key(|h| h.age_ms);
    let shown = if all { heard.len() } else { HEARD_SHOWN };
    for h in heard.iter().take(shown) {
        text.push_str(&format!(
            "Heard: {}: {} ({} ago)\n",
            h.system,
            prices_text(&h.prices),
            human_ms(h.age_ms)
        ));
    }
    if heard.is_empty() {
        text.push_str("Heard: nothing yet (prices spread along the lanes each second)\n");
    } else if heard.len() > shown {
        text.push_str(&format!(
            "(and {} more systems: `--all`, or `mltrader economy`)\n",
            heard.len() - shown
        ));
    }
    text
}

/// "food 30, water 6, ore 15 cr" in the goods' order.
fn prices_text(prices: &BTreeMap<String, u64>) -> String {
    let items: Vec<String> = Good::ALL
        .iter()
        .filter_map(|g| Some(format!("{} {}", g.name(), prices.get(g.name())?)))
        .collect();
    format!("{} cr", items.join(", "))
}
