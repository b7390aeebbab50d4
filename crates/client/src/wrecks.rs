//! `mltrader wrecks`: the wrecks floating in the player's system, with their cargo
//! (`mltrader loot` takes it).

use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

use super::{cargo_text, human_ms, ClientOpts, Output};

#[derive(Args, Debug)]
#[command(after_help = super::EXIT_CODES_HELP)]
pub struct WrecksArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
}

pub fn run(args: WrecksArgs) -> anyhow::Result<ExitCode> {
    super::run(&args.opts, |api| async move {
        let w: Value = api.get("/v1/wrecks").await?;
        let system = w["system"].as_str().unwrap_or("?");
        let wrecks = w["wrecks"].as_array().cloned().unwrap_or_default();
        let mut text = if wrecks.is_empty() {
            format!("No wrecks in {system}\n")
        } else {
            format!("Wrecks in {system}:\n")
        };
        for x in &wrecks {
            text.push_str(&format!(
                "  #{}  {}'s ship: {} ({} old)\n",
                x["id"],
                x["pilot"].as_str().unwrap_or("?"),
                cargo_text(&x["cargo"]),
                human_ms(x["age_ms"].as_u64().unwrap_or(0))
            ));
        }
        Ok(Output {
            human: Some(text),
            json: w,
        })
    })
}
