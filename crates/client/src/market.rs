//! `mltrader market [SYSTEM]`: the market of the player's system, live (stock, what buying and
//! selling one unit pays now), then the prices it has heard from other systems and how old
//! they are; with SYSTEM, that system's prices as last heard here.
//!
//! ```text
//! Sol (high_tech), live    stock   buy  sell
//! food                      1000    32    28
//! ...
//! Heard: Alpha Centauri: food 30, water 6, ore 15, ... luxuries 700 cr (0.2 s ago)
//! ```

use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

use super::{human_ms, ClientOpts, Output};
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
        let m: Value = match &args.system {
            Some(s) => api.get_query("/v1/market", &[("system", s)]).await?,
            None => api.get("/v1/market").await?,
        };
        let human = if m["live"].as_bool() == Some(true) {
            live_text(&m, args.all)
        } else {
            format!(
                "{} (heard {} ago, mid prices): {}\n",
                m["system"].as_str().unwrap_or("?"),
                human_ms(m["age_ms"].as_u64().unwrap_or(0)),
                prices_text(&m["prices"])
            )
        };
        Ok(Output {
            human: Some(human),
            json: m,
        })
    })
}

fn live_text(m: &Value, all: bool) -> String {
    let price = |v: &Value| v.as_u64().map_or("-".to_string(), |p| p.to_string());
    let title = format!(
        "{} ({}), live",
        m["system"].as_str().unwrap_or("?"),
        m["economy"].as_str().unwrap_or("?")
    );
    let width = title.chars().count().max(12);
    let mut text = format!(
        "{title:<width$} {:>6} {:>5} {:>5}\n",
        "stock", "buy", "sell"
    );
    for q in m["goods"].as_array().into_iter().flatten() {
        text.push_str(&format!(
            "{:<width$} {:>6} {:>5} {:>5}\n",
            q["good"].as_str().unwrap_or("?"),
            price(&q["stock"]),
            price(&q["buy_cr"]),
            price(&q["sell_cr"]),
        ));
    }
    let mut heard: Vec<&Value> = m["heard"].as_array().into_iter().flatten().collect();
    heard.sort_by_key(|h| h["age_ms"].as_u64().unwrap_or(u64::MAX));
    let shown = if all { heard.len() } else { HEARD_SHOWN };
    for h in heard.iter().take(shown) {
        text.push_str(&format!(
            "Heard: {}: {} ({} ago)\n",
            h["system"].as_str().unwrap_or("?"),
            prices_text(&h["prices"]),
            human_ms(h["age_ms"].as_u64().unwrap_or(0))
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
fn prices_text(prices: &Value) -> String {
    let items: Vec<String> = Good::ALL
        .iter()
        .filter_map(|g| Some(format!("{} {}", g.name(), prices.get(g.name())?.as_u64()?)))
        .collect();
    format!("{} cr", items.join(", "))
}
