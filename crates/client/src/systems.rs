//! `mltrader systems`: the map: every system, its population and its lanes, and the instances
//! of crowded systems with their populations and time dilation.

use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

use super::{ClientOpts, Output};

#[derive(Args, Debug)]
#[command(after_help = super::EXIT_CODES_HELP)]
pub struct SystemsArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
}

pub fn run(args: SystemsArgs) -> anyhow::Result<ExitCode> {
    super::run(&args.opts, |api| async move {
        let systems: Value = api.get_public("/v1/systems", &[]).await?;
        let list = systems.as_array().cloned().unwrap_or_default();
        let width = list
            .iter()
            .filter_map(|s| s["name"].as_str())
            .map(|n| n.chars().count())
            .max()
            .unwrap_or(0)
            + 7;
        let mut text = String::new();
        for s in &list {
            let mut name = s["name"].as_str().unwrap_or("?").to_string();
            if s["home"].as_bool() == Some(true) {
                name.push_str(" (home)");
            }
            let lanes: Vec<String> = s["lanes"]
                .as_array()
                .map(|l| {
                    l.iter()
                        .map(|lane| {
                            format!(
                                "{} {:.1} ly",
                                lane["to"].as_str().unwrap_or("?"),
                                lane["distance_ly"].as_f64().unwrap_or(0.0)
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let population = s["population"].as_u64().unwrap_or(0);
            // Time dilation: the system's clock runs slower than real time when it is loaded.
            let dilation = match s["dilation"].as_f64() {
                Some(d) if d < 1.0 => format!("   time dilation {:.0}%", d * 100.0),
                _ => String::new(),
            };
            text.push_str(&format!(
                "{name:<width$} {population:>6} players   lanes: {}{dilation}\n",
                lanes.join(", ")
            ));
            let instances = s["instances"].as_array().cloned().unwrap_or_default();
            if instances.len() > 1 {
                for i in &instances {
                    let dilation = match i["dilation"].as_f64() {
                        Some(d) if d < 1.0 => format!("   time dilation {:.0}%", d * 100.0),
                        _ => String::new(),
                    };
                    text.push_str(&format!(
                        "  {:<w$} {:>6} players{dilation}\n",
                        i["name"].as_str().unwrap_or("?"),
                        i["population"].as_u64().unwrap_or(0),
                        w = width - 2
                    ));
                }
            }
        }
        text.push_str(&format!("{} systems\n", list.len()));
        Ok(Output {
            human: Some(text),
            json: systems,
        })
    })
}
