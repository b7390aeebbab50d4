//! `mltrader status`: the player's own state: where they are (their instance of a crowded
//! system, or their jump), fuel, credits, hull, hold and cargo, and whom they fire at.

use std::process::ExitCode;

use ::api::Me;
use clap::Args;

use super::{cargo_text, hold_text, human_ms, json_of, ClientOpts, Output};

#[derive(Args, Debug)]
#[command(after_help = super::EXIT_CODES_HELP)]
pub struct StatusArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
}

pub fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    super::run(&args.opts, |api| async move {
        let me: Me = api.get("/v1/me").await?;
        let name = &me.name;
        let mut text = match (&me.system, &me.jumping) {
            (Some(system), _) => {
                // A crowded system's other instances ("Sol #2") say why the player is there.
                let here = me.instance_name.as_deref().unwrap_or(system);
                match &me.notice {
                    Some(notice) => format!("{name} is in {here} ({notice})\n"),
                    None => format!("{name} is in {here}\n"),
                }
            }
            (None, Some(j)) => {
                let eta = j
                    .eta_ms
                    .map(|ms| format!(", lands in {}", human_ms(ms)))
                    .unwrap_or_default();
                format!("{name} is in a jump from {} to {}{eta}\n", j.from, j.to)
            }
            (None, None) => format!("{name}: location unknown\n"),
        };
        if let Some(p) = &me.player {
            text.push_str(&format!(
                "fuel {}/{}, credits {} cr\n",
                p.fuel, p.fuel_capacity, p.credits
            ));
            text.push_str(&format!(
                "hull {}, {}: {}\n",
                p.hull,
                hold_text(p),
                cargo_text(p.cargo.iter())
            ));
        }
        if let Some(a) = &me.attacking {
            text.push_str(&format!("attacking {} (hull {})\n", a.target, a.hull));
        }
        Ok(Output {
            human: Some(text),
            json: json_of(&me),
        })
    })
}
