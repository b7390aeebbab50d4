//! `mltrader buy GOOD QTY` and `mltrader sell GOOD QTY`: one trade at the market of the
//! player's system, atomic in the system's tick, optionally with a price limit.
//!
//! ```text
//! Bought 10 ore for 212 cr (21.2 cr/unit); 788 cr left, hold 20/60
//! ```

use std::process::ExitCode;

use clap::Args;

use super::{hold_text, json_of, ClientOpts, Output};
use ::api::{TradeRequest, TradeSide, Traded};

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
    trade(TradeSide::Buy, args)
}

pub fn sell(args: TradeArgs) -> anyhow::Result<ExitCode> {
    trade(TradeSide::Sell, args)
}

fn trade(side: TradeSide, args: TradeArgs) -> anyhow::Result<ExitCode> {
    super::run(&args.opts, |api| async move {
        let body = TradeRequest {
            side,
            good: args.good.clone(),
            qty: u64::from(args.qty),
            limit_cr: args.limit,
        };
        let r: Traded = api.post("/v1/trade", &body).await?;
        let qty = u64::from(r.qty);
        let total = r.total_cr;
        let per_unit = if qty == 0 {
            0.0
        } else {
            total as f64 / qty as f64
        };
        let human = format!(
            "{} {qty} {} for {total} cr ({per_unit:.1} cr/unit); {} cr left, {}\n",
            match side {
                TradeSide::Buy => "Bought",
                TradeSide::Sell => "Sold",
            },
            r.good,
            r.player.credits,
            hold_text(&r.player)
        );
        Ok(Output {
            human: Some(human),
            json: json_of(&r),
        })
    })
}
