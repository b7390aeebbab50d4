//! `mltrader scan`: who is in the player's system.

use std::process::ExitCode;

use ::api::Scan;
use clap::Args;

use super::{json_of, others_line, ClientOpts, Output};

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
        let scan: Scan = api.get(&path).await?;
        let names = &scan.names;
        let mut text = format!("{}: {}\n", scan.system, others_line(scan.others));
        if !names.is_empty() {
            text.push_str(&names.join(", "));
            if scan.truncated {
                let more = scan.population.saturating_sub(names.len());
                text.push_str(&format!(" (and {more} more)"));
            }
            text.push('\n');
        }
        Ok(Output {
            human: Some(text),
            json: json_of(&scan),
        })
    })
}
