//! `mltrader check`: verify a data directory and say in one line whether it is sound. With
//! `--acks FILE` (an ack log written by `mltrader swarm --ack-log FILE`), also verify that every
//! action the server acknowledged is in the logs (`mesh::ack_log`).
//!
//! A directory a server is writing is refused (its `LOCK` is held): the logs are read one after
//! the other, so judging them together would report problems that are not there. The check
//! holds the lock shared while it reads, so no server can start meanwhile. `--live` checks
//! each log on its own instead (`mesh::audit::live`), and says what it did not prove.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::common::{existing_datadir, galaxy_for};
use mesh::ack_log::{check_acks, AckReport};
use mesh::audit::live::audit_live;
use mesh::audit::{audit, AuditReport};
use store::backend::{FileOwnership, Ownership, MESH_UNIT};

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Data directory to check.
    #[arg(long, default_value = store::datadir::DEFAULT_DATA_DIR)]
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
    /// Check the directory of a running server: each log on its own (checksums, sequence
    /// numbers, each system's replay and snapshots), nothing across logs.
    #[arg(long)]
    pub live: bool,
}

pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let datadir = existing_datadir(&args.data)?;
    let galaxy = galaxy_for(&datadir, None, false)?;
    // Held to the end: no server starts while the logs are read. `--live` reads beside a
    // running server on purpose, and claims nothing.
    let ownership = FileOwnership::new(&datadir);
    let _claim = if args.live {
        None
    } else {
        Some(ownership.claim_shared(MESH_UNIT).map_err(|e| {
            anyhow::anyhow!(
                "{e}: its logs change while they are read, so a check would report problems \
                 that are not there; stop it first, or use `mltrader check --live` (each log \
                 on its own, nothing across logs)"
            )
        })?)
    };
    let r = if args.live {
        audit_live(&datadir, &galaxy)
    } else {
        audit(&datadir, &galaxy)
    };
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
        print_report(&r, args.live, args.verbose);
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

fn print_report(r: &AuditReport, live: bool, verbose: bool) {
    for p in &r.problems {
        println!("problem: {p}");
    }
    if verbose {
        for n in &r.notes {
            println!("note: {n}");
        }
    }
    let verdict = if r.ok() { "ok" } else { "FAILED" };
    if live {
        if !verbose {
            println!("note: {}", mesh::audit::live::NOT_PROVED);
        }
        println!(
            "live {verdict}: {} files, {} records, {} problems, {} notes ({} jumps, {} instances; \
             each log on its own)",
            r.files,
            r.records,
            r.problems.len(),
            r.notes.len(),
            r.jumps,
            r.instances
        );
        return;
    }
    // One line, first when sound and last always (scripts and tests read it): the named
    // sources and sinks ride at its end.
    let named = |m: &std::collections::BTreeMap<String, u128>| {
        m.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "{verdict}: {} files, {} records, {} problems, {} notes ({} players, {} jumps, {} in flight; credits {} held = {} granted - {} spent; by source: {}; by sink: {})",
        r.files,
        r.records,
        r.problems.len(),
        r.notes.len(),
        r.players,
        r.jumps,
        r.jumps_in_flight,
        r.credits_held,
        r.credits_granted,
        r.credits_spent,
        named(&r.credits_by_source),
        named(&r.credits_by_sink)
    );
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
