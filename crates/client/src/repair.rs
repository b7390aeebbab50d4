//! `mltrader repair [POINTS]`: mends the ship's hull at the station of the player's system,
//! for credits (5 cr a hull point; they leave the game). Never repairs on credit: a purse too
//! short is refused (`no_credits`) and nothing changes.

use std::process::ExitCode;

use clap::Args;

use super::{json_of, ClientOpts, Output};
use ::api::{RepairRequest, Repaired};

#[derive(Args, Debug)]
#[command(after_help = super::EXIT_CODES_HELP)]
pub struct RepairArgs {
    /// Hull points to mend (default: the whole hull).
    pub points: Option<u32>,
    #[command(flatten)]
    pub opts: ClientOpts,
}

pub fn run(args: RepairArgs) -> anyhow::Result<ExitCode> {
    super::run(&args.opts, |api| async move {
        let body = RepairRequest {
            points: args.points,
        };
        let r: Repaired = api.post("/v1/repair", &body).await?;
        Ok(Output {
            human: Some(format!(
                "Repaired {} hull points for {} cr: hull {}, {} cr left\n",
                r.repaired_points, r.cost_cr, r.player.hull, r.player.credits
            )),
            json: json_of(&r),
        })
    })
}
