//! `mltrader scan`: who is in the player's system.

use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

use super::{others_line, ClientOpts, Output};

#[derive(Args, Debug)]
#[command(after_help = super::EXIT_CODES_HELP)]
pub struct ScanArgs {
    /// Names to list at most (the server allows up to 1000).
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    #[command(flatten)]
    pub opts: ClientOpts,
}

pub fn run(args: ScanArgs) -> anyhow::Result<ExitCode> {
    let path = format!("/v1/scan?limit={}", args.limit);
    super::run(&args.opts, |api| async move {
        let scan: Value = api.get(&path).await?;
        let names: Vec<&str> = scan["names"]
            .as_array()
            .map(|n| n.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let others = scan["others"].as_u64().unwrap_or(0) as usize;
        let mut text = format!(
            "{}: {}\n",
            scan["system"].as_str().unwrap_or("?"),
            others_line(others)
        );
        if !names.is_empty() {
            text.push_str(&names.join(", "));
            if scan["truncated"].as_bool() == Some(true) {
                let more =
                    (scan["population"].as_u64().unwrap_or(0) as usize).saturating_sub(names.len());
                text.push_str(&format!(" (and {more} more)"));
            }
            text.push('\n');
        }
        Ok(Output {
            human: Some(text),
            json: scan,
        })
    })
}
