//! `mltrader loot [WRECK]`: takes what fits of a wreck in the player's system (without WRECK:
//! the oldest one there). First come, first served: what does not fit stays for others.

use std::process::ExitCode;

use clap::Args;
use serde_json::{json, Value};

use super::{cargo_text, hold_text, ClientOpts, Failure, Output};

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
                let w: Value = api.get("/v1/wrecks").await?;
                w["wrecks"][0]["id"].as_u64().ok_or_else(|| {
                    Failure::refused(
                        "no_wreck",
                        format!(
                            "no wrecks in {} to loot; `mltrader wrecks` lists them",
                            w["system"].as_str().unwrap_or("your system")
                        ),
                    )
                })?
            }
        };
        let r: Value = api.post("/v1/loot", &json!({"wreck": wreck})).await?;
        let human = format!(
            "Took {} from wreck #{wreck}; {}\n",
            cargo_text(&r["took"]),
            hold_text(&r["player"])
        );
        Ok(Output {
            human: Some(human),
            json: r,
        })
    })
}
