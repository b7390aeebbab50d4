//! `mltrader loot [WRECK]`: takes what fits of a wreck in the player's system (without WRECK:
//! the oldest one there). First come, first served: what does not fit stays for others.

use std::process::ExitCode;

use ::api::{LootRequest, Looted, Wrecks};
use clap::Args;

use super::{cargo_text, hold_text, json_of, units, ClientOpts, Failure, Output};

#[derive(Args, Debug)]
#[command(after_help = super::EXIT_CODES_HELP)]
pub struct LootArgs {
    /// The wreck's id (`mltrader wrecks`); default: the oldest wreck here.
    pub wreck: Option<u64>,
    #[command(flatten)]
    pub opts: ClientOpts,
}

pub fn run(args: LootArgs) -> anyhow::Result<ExitCode> {
    super::run(&args.opts, |api| async move {
        let wreck = match args.wreck {
            Some(id) => id,
            None => {
                let w: Wrecks = api.get("/v1/wrecks").await?;
                w.wrecks.first().map(|x| x.id).ok_or_else(|| {
                    Failure::refused(
                        "no_wreck",
                        format!(
                            "no wrecks in {} to loot; `mltrader wrecks` lists them",
                            w.system
                        ),
                    )
                })?
            }
        };
        let r: Looted = api.post("/v1/loot", &LootRequest { wreck }).await?;
        let human = format!(
            "Took {} from wreck #{wreck}; {}\n",
            cargo_text(units(&r.took)),
            hold_text(&r.player)
        );
        Ok(Output {
            human: Some(human),
            json: json_of(&r),
        })
    })
}
