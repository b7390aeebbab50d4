//! `mltrader refuel [UNITS]`: buys fuel at the station of the player's system.

use std::process::ExitCode;

use clap::Args;
use serde_json::{json, Value};

use super::{ClientOpts, Output};

#[derive(Args, Debug)]
#[command(after_help = super::EXIT_CODES_HELP)]
pub struct RefuelArgs {
    /// Units to buy (default: fill the tank).
    pub units: Option<u32>,
    #[command(flatten)]
    pub opts: ClientOpts,
}

pub fn run(args: RefuelArgs) -> anyhow::Result<ExitCode> {
    super::run(&args.opts, |api| async move {
        let body = match args.units {
            Some(u) => json!({"units": u}),
            None => json!({}),
        };
        let r: Value = api.post("/v1/refuel", &body).await?;
        Ok(Output {
            human: Some(format!(
                "Bought {} fuel for {} cr: tank {}/{}, {} cr left\n",
                r["bought_units"], r["cost_cr"], r["fuel"], r["fuel_capacity"], r["credits"]
            )),
            json: r,
        })
    })
}
