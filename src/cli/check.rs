//! `mltrader check`: verify a data directory and say in one line whether it is sound. With
//! `--acks FILE` (an ack log written by `mltrader swarm --ack-log FILE`), also verify that every
//! action the server acknowledged is in the logs (`mesh::acks`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::common::{existing_datadir, galaxy_for};
use crate::mesh::acks::{check_acks, AckReport};
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
    /// Also verify that every acknowledged action of this ack log (`mltrader swarm --ack-log`)
    /// is in the logs, with the version the server answered.
    #[arg(long, value_name = "FILE")]
    pub acks: Option<PathBuf>,
}

pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let datadir = existing_datadir(&args.data)?;
    let galaxy = galaxy_for(&datadir, None, false)?;
    let r = audit(&datadir, &galaxy);
    let acks = match &args.acks {
        Some(path) => Some(check_acks(&datadir, &galaxy, path)?),
        None => None,
    };
    let ok = r.ok() && acks.as_ref().is_none_or(AckReport::ok);
    if args.json {
        let out = match &acks {
            Some(a) => {
                let mut v = serde_json::to_value(&r)?;
                v["acks"] = serde_json::to_value(a)?;
                v
            }
            None => serde_json::to_value(&r)?,
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
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
        if let (Some(a), Some(path)) = (&acks, &args.acks) {
            print_acks(a, &path.display().to_string(), args.verbose);
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_acks(a: &AckReport, path: &str, verbose: bool) {
    for p in &a.problems {
        println!("problem: acks: {p}");
    }
    if verbose {
        for n in &a.notes {
            println!("note: acks: {n}");
        }
    }
    let by: Vec<String> = a
        .by_action
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    println!(
        "{}: {} acknowledged actions of {} players in {path}, {} found in the logs, {} problems ({})",
        if a.ok() { "acks ok" } else { "acks FAILED" },
        a.acks,
        a.players,
        a.confirmed,
        a.problems.len(),
        if by.is_empty() { "none".to_string() } else { by.join(", ") }
    );
}
