//! `mltrader economy`: the galaxy view: for each good, where it is cheapest and dearest as far
//! as the galaxy has heard, the spread between the two, and how old each figure is.
//!
//! ```text
//! good         buy at                    sell at                   spread
//! food         61 Cygni 9 cr (1.1 s)     Sol 30 cr (1.1 s)          21 cr
//! ```

use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

use super::{human_ms, ClientOpts, Output};

#[derive(Args, Debug)]
#[command(after_help = super::EXIT_CODES_HELP)]
pub struct EconomyArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
}

pub fn run(args: EconomyArgs) -> anyhow::Result<ExitCode> {
    super::run(&args.opts, |api| async move {
        let e: Value = api.get_public("/v1/economy", &[]).await?;
        let best = |b: &Value| match b.as_object() {
            Some(_) => format!(
                "{} {} cr ({})",
                b["system"].as_str().unwrap_or("?"),
                b["price_cr"],
                human_ms(b["age_ms"].as_u64().unwrap_or(0))
            ),
            None => "-".to_string(),
        };
        let rows: Vec<[String; 4]> = e["goods"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|g| {
                [
                    g["good"].as_str().unwrap_or("?").to_string(),
                    best(&g["best_buy"]),
                    best(&g["best_sell"]),
                    format!("{} cr", g["spread_cr"]),
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
        let systems = e["systems"].as_array().map_or(0, Vec::len);
        text.push_str(&format!(
            "(mid prices heard from {systems} systems, with their age; `mltrader market` shows \
             what trading costs here)\n"
        ));
        Ok(Output {
            human: Some(text),
            json: e,
        })
    })
}
