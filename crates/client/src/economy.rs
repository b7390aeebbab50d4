//! `mltrader economy`: the galaxy view: for each good, where it is cheapest and dearest as far
//! as the galaxy has heard, the spread between the two, and how old each figure is.
//!
//! ```text
//! good         buy at                    sell at                   spread
//! food         61 Cygni 9 cr (1.1 s)     Sol 30 cr (1.1 s)          21 cr
//! ```

use std::process::ExitCode;

use ::api::{BestPrice, GalaxyPrices};
use clap::Args;

use super::{human_ms, json_of, ClientOpts, Output};

#[derive(Args, Debug)]
#[command(after_help = super::EXIT_CODES_HELP)]
pub struct EconomyArgs {
    /// Instead of the live prices: the economy report from the logs of a data directory
    /// (`--data`): credits created and destroyed by named source and sink, goods made and
    /// used, price history, the most profitable routes by game hour (`mltrader economy
    /// --report`, run by the binary: this crate only parses the flags).
    #[arg(long)]
    pub report: bool,
    /// With --report: the data directory whose logs to read (live or exported).
    #[arg(long, default_value = "mltrader-data", requires = "report")]
    pub data: std::path::PathBuf,
    /// With --report: the first tick of the window (each system's `t=`).
    #[arg(long, value_name = "TICK", requires = "report")]
    pub from: Option<u64>,
    /// With --report: the tick the window ends before (default: the end of the logs).
    #[arg(long, value_name = "TICK", requires = "report")]
    pub to: Option<u64>,
    /// With --report: the width of a bucket, in ticks (default: a game hour, 600 ticks).
    #[arg(long, value_name = "TICKS", requires = "report")]
    pub bucket_ticks: Option<u64>,
    #[command(flatten)]
    pub opts: ClientOpts,
}

pub fn run(args: EconomyArgs) -> anyhow::Result<ExitCode> {
    super::run(&args.opts, |api| async move {
        let e: GalaxyPrices = api.get_public("/v1/economy", &[]).await?;
        let best = |b: &Option<BestPrice>| match b {
            Some(b) => format!("{} {} cr ({})", b.system, b.price_cr, human_ms(b.age_ms)),
            None => "-".to_string(),
        };
        let rows: Vec<[String; 4]> = e
            .goods
            .iter()
            .map(|g| {
                [
                    g.good.clone(),
                    best(&g.best_buy),
                    best(&g.best_sell),
                    format!("{} cr", g.spread_cr),
                ]
            })
            .collect();
        let w = |i: usize, title: &str| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([title.chars().count()])
                .max()
                .unwrap_or(0)
        };
        let (w0, w1, w2) = (w(0, "good"), w(1, "buy at"), w(2, "sell at"));
        let mut text = format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  spread\n",
            "good", "buy at", "sell at"
        );
        for r in &rows {
            text.push_str(&format!(
                "{:<w0$}  {:<w1$}  {:<w2$}  {}\n",
                r[0], r[1], r[2], r[3]
            ));
        }
        let systems = e.systems.len();
        text.push_str(&format!(
            "(mid prices heard from {systems} systems, with their age; `mltrader market` shows \
             what trading costs here)\n"
        ));
        Ok(Output {
            human: Some(text),
            json: json_of(&e),
        })
    })
}
