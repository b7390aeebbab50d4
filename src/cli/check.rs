//! `mltrader check`: verify a data directory and say in one line whether it is sound.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::common::{existing_datadir, galaxy_for};
use crate::mesh::audit::audit;

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Data directory to check.
    #[arg(long, default_value = crate::store::datadir::DEFAULT_DATA_DIR)]
    pub data: PathBuf,
    /// Print the whole report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also list the notes (torn tails, unsettled jumps) in human output.
    #[arg(long, short)]
    pub verbose: bool,
}

pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let datadir = existing_datadir(&args.data)?;
    let galaxy = galaxy_for(&datadir, None, false)?;
    let r = audit(&datadir, &galaxy);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        for p in &r.problems {
            println!("problem: {p}");
        }
        if args.verbose {
            for n in &r.notes {
                println!("note: {n}");
            }
        }
        println!(
            "{}: {} files, {} records, {} problems, {} notes ({} players, {} jumps, {} in flight; credits {} held = {} granted - {} spent)",
            if r.ok() { "ok" } else { "FAILED" },
            r.files,
            r.records,
            r.problems.len(),
            r.notes.len(),
            r.players,
            r.jumps,
            r.jumps_in_flight,
            r.credits_held,
            r.credits_granted,
            r.credits_spent
        );
    }
    Ok(if r.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
