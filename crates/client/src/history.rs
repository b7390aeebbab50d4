//! `mltrader history`: the player's own past events, oldest first.

use std::process::ExitCode;

use ::api::History;
use clap::Args;

use super::{json_of, ClientOpts, Output};

#[derive(Args, Debug)]
#[command(after_help = super::EXIT_CODES_HELP)]
pub struct HistoryArgs {
    /// Newest events to show (1 to 1000).
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    #[command(flatten)]
    pub opts: ClientOpts,
}

pub fn run(args: HistoryArgs) -> anyhow::Result<ExitCode> {
    let path = format!("/v1/history?limit={}", args.limit);
    super::run(&args.opts, |api| async move {
        let history: History = api.get(&path).await?;
        let mut text = String::new();
        if history.truncated {
            text.push_str("(older events not shown)\n");
        }
        for e in &history.entries {
            let fields: Vec<String> = e.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
            // No padding after the version: the text printed before the wire types (a JSON
            // number's Display ignores the width).
            text.push_str(&format!(
                "#{} {:<12} {}\n",
                e.version,
                e.kind,
                fields.join(" ")
            ));
        }
        if text.is_empty() {
            text.push_str("no events yet\n");
        }
        Ok(Output {
            human: Some(text),
            json: json_of(&history),
        })
    })
}
