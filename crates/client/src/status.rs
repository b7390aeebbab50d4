//! `mltrader status`: the player's own state: where they are (their instance of a crowded
//! system, or their jump), fuel, credits, hull, hold and cargo, and whom they fire at.

use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

use super::{cargo_text, hold_text, human_ms, ClientOpts, Output};

#[derive(Args, Debug)]
#[command(after_help = super::EXIT_CODES_HELP)]
pub struct StatusArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
}

pub fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    super::run(&args.opts, |api| async move {
        let me: Value = api.get("/v1/me").await?;
        let name = me["name"].as_str().unwrap_or("?");
        let mut text = match (me["system"].as_str(), me["jumping"].as_object()) {
            (Some(system), _) => {
                // A crowded system's other instances ("Sol #2") say why the player is there.
                let here = me["instance_name"].as_str().unwrap_or(system);
                match me["notice"].as_str() {
                    Some(notice) => format!("{name} is in {here} ({notice})\n"),
                    None => format!("{name} is in {here}\n"),
                }
            }
            (None, Some(j)) => {
                let eta = j
                    .get("eta_ms")
                    .and_then(Value::as_u64)
                    .map(|ms| format!(", lands in {}", human_ms(ms)))
                    .unwrap_or_default();
                format!(
                    "{name} is in a jump from {} to {}{eta}\n",
                    j["from"].as_str().unwrap_or("?"),
                    j["to"].as_str().unwrap_or("?")
                )
            }
            (None, None) => format!("{name}: location unknown\n"),
        };
        if let Some(p) = me["player"].as_object() {
            text.push_str(&format!(
                "fuel {}/{}, credits {} cr\n",
                p["fuel"], p["fuel_capacity"], p["credits"]
            ));
            let player = &me["player"];
            text.push_str(&format!(
                "hull {}, {}: {}\n",
                p["hull"],
                hold_text(player),
                cargo_text(&player["cargo"])
            ));
        }
        if let Some(a) = me["attacking"].as_object() {
            text.push_str(&format!(
                "attacking {} (hull {})\n",
                a["target"].as_str().unwrap_or("?"),
                a["hull"]
            ));
        }
        Ok(Output {
            human: Some(text),
            json: me,
        })
    })
}
