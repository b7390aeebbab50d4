//! `mltrader refuel [UNITS]`: buys fuel at the station of the player's system.

use std::process::ExitCode;

use clap::Args;

use super::{json_of, ClientOpts, Output};
use ::api::{RefuelRequest, Refueled};

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
        let body = RefuelRequest { units: args.units };
        let r: Refueled = api.post("/v1/refuel", &body).await?;
        Ok(Output {
            human: Some(format!(
                "Bought {} fuel for {} cr: tank {}/{}, {} cr left\n",
                r.bought_units, r.cost_cr, r.player.fuel, r.player.fuel_capacity, r.player.credits
            )),
            json: json_of(&r),
        })
    })
}
