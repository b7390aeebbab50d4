//! `mltrader buy GOOD QTY` and `mltrader sell GOOD QTY`: one trade at the market of the
//! player's system, atomic in the system's tick, optionally with a price limit.
//!
//! ```text
//! Bought 10 ore for 212 cr (21.2 cr/unit); 788 cr left, hold 20/60
//! ```

use std::process::ExitCode;

use clap::Args;
use serde_json::{json, Value};

use super::{hold_text, ClientOpts, Output};

#[derive(Args, Debug)]
#[command(after_help = super::EXIT_CODES_HELP)]
pub struct TradeArgs {
    /// The good: food, water, ore, fuel, metals, electronics, medicine, luxuries.
    pub good: String,
    /// Units (1 to 100,000).
    pub qty: u32,
    /// The worst average price per unit you accept, in credits (buying: at most this; selling:
    /// at least this). Refused otherwise, with nothing traded.
    #[arg(long, value_name = "CR")]
    pub limit: Option<u64>,
    #[command(flatten)]
    pub opts: ClientOpts,
}

pub fn buy(args: TradeArgs) -> anyhow::Result<ExitCode> {
    trade("buy", args)
}

pub fn sell(args: TradeArgs) -> anyhow::Result<ExitCode> {
    trade("sell", args)
}

fn trade(side: &'static str, args: TradeArgs) -> anyhow::Result<ExitCode> {
    super::run(&args.opts, |api| async move {
        let mut body = json!({"side": side, "good": args.good, "qty": args.qty});
        if let Some(limit) = args.limit {
            body["limit_cr"] = json!(limit);
        }
        let r: Value = api.post("/v1/trade", &body).await?;
        let qty = r["qty"].as_u64().unwrap_or(0);
        let total = r["total_cr"].as_u64().unwrap_or(0);
        let per_unit = if qty == 0 {
            0.0
        } else {
            total as f64 / qty as f64
        };
        let player = &r["player"];
        let human = format!(
            "{} {qty} {} for {total} cr ({per_unit:.1} cr/unit); {} cr left, {}\n",
            if side == "buy" { "Bought" } else { "Sold" },
            r["good"].as_str().unwrap_or("?"),
            player["credits"],
            hold_text(player)
        );
        Ok(Output {
            human: Some(human),
            json: r,
        })
    })
}
