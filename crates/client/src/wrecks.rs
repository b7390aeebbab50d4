//! `mltrader wrecks`: the wrecks floating in the player's system, with their cargo
//! (`mltrader loot` takes it).

use std::process::ExitCode;

use ::api::Wrecks;
use clap::Args;

use super::{cargo_text, human_ms, json_of, units, ClientOpts, Output};

#[derive(Args, Debug)]
#[command(after_help = super::EXIT_CODES_HELP)]
pub struct WrecksArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
}

pub fn run(args: WrecksArgs) -> anyhow::Result<ExitCode> {
    super::run(&args.opts, |api| async move {
        let w: Wrecks = api.get("/v1/wrecks").await?;
        let system = &w.system;
        let wrecks = &w.wrecks;
        let mut text = if wrecks.is_empty() {
            format!("No wrecks in {system}\n")
        } else {
            format!("Wrecks in {system}:\n")
        };
        for x in wrecks {
            text.push_str(&format!(
                "  #{}  {}'s ship: {} ({} old)\n",
                x.id,
                x.pilot,
                cargo_text(units(&x.cargo)),
                human_ms(x.age_ms)
            ));
        }
        Ok(Output {
            human: Some(text),
            json: json_of(&w),
        })
    })
}
