//! `mltrader systems`: the map: every system, its population and its lanes, and the instances
//! of crowded systems with their populations and time dilation.

use std::process::ExitCode;

use ::api::System;
use clap::Args;

use super::{json_of, ClientOpts, Output};

#[derive(Args, Debug)]
#[command(after_help = super::EXIT_CODES_HELP)]
pub struct SystemsArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
}

pub fn run(args: SystemsArgs) -> anyhow::Result<ExitCode> {
    super::run(&args.opts, |api| async move {
        let list: Vec<System> = api.get_public("/v1/systems", &[]).await?;
        let width = list
            .iter()
            .map(|s| s.name.chars().count())
            .max()
            .unwrap_or(0)
            + 7;
        let mut text = String::new();
        for s in &list {
            let mut name = s.name.clone();
            if s.home {
                name.push_str(" (home)");
            }
            let lanes: Vec<String> = s
                .lanes
                .iter()
                .map(|lane| format!("{} {:.1} ly", lane.to, lane.distance_ly))
                .collect();
            let population = s.population;
            // Time dilation: the system's clock runs slower than real time when it is loaded.
            let dilation = dilation_text(s.dilation);
            text.push_str(&format!(
                "{name:<width$} {population:>6} players   lanes: {}{dilation}\n",
                lanes.join(", ")
            ));
            if s.instances.len() > 1 {
                for i in &s.instances {
                    text.push_str(&format!(
                        "  {:<w$} {:>6} players{}\n",
                        i.name,
                        i.population,
                        dilation_text(i.dilation),
                        w = width - 2
                    ));
                }
            }
        }
        text.push_str(&format!("{} systems\n", list.len()));
        Ok(Output {
            human: Some(text),
            json: json_of(&list),
        })
    })
}

/// "   time dilation 50%" when a clock runs slower than real time, else nothing.
fn dilation_text(dilation: f64) -> String {
    if dilation < 1.0 {
        format!("   time dilation {:.0}%", dilation * 100.0)
    } else {
        String::new()
    }
}
