//! `mltrader history`: the player's own past events, oldest first.

use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

use super::{ClientOpts, Output};

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
        let history: Value = api.get(&path).await?;
        let mut text = String::new();
        if history["truncated"].as_bool() == Some(true) {
            text.push_str("(older events not shown)\n");
        }
        for e in history["entries"].as_array().into_iter().flatten() {
            let fields: Vec<String> = e["fields"]
                .as_object()
                .map(|f| {
                    f.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("?")))
                        .collect()
                })
                .unwrap_or_default();
            text.push_str(&format!(
                "#{:<5} {:<12} {}\n",
                e["version"],
                e["kind"].as_str().unwrap_or("?"),
                fields.join(" ")
            ));
        }
        if text.is_empty() {
            text.push_str("no events yet\n");
        }
        Ok(Output {
            human: Some(text),
            json: history,
        })
    })
}
