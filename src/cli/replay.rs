//! `mltrader replay`: rebuild every system's state from its logs, from the first record, and
//! print the state hashes and how fast it went.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::common::{existing_datadir, galaxy_for};
use crate::mesh::audit::audit;

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// Data directory to replay.
    #[arg(long, default_value = crate::store::datadir::DEFAULT_DATA_DIR)]
    pub data: PathBuf,
    /// Print every system's hash and the figures as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let datadir = existing_datadir(&args.data)?;
    let galaxy = galaxy_for(&datadir, None, false)?;
    let r = audit(&datadir, &galaxy);
    let per_s = r.records as f64 / r.seconds.max(1e-9);
    if args.json {
        let out = serde_json::json!({
            "galaxy_hash": r.galaxy_hash,
            "system_hashes": r.system_hashes,
            "records": r.records,
            "bytes": r.bytes,
            "seconds": r.seconds,
            "records_per_s": per_s,
            "problems": r.problems,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "galaxy state hash {} ({} systems): {} records, {:.1} MB in {:.3} s = {:.0} records/s",
            r.galaxy_hash,
            r.system_hashes.len(),
            r.records,
            r.bytes as f64 / 1e6,
            r.seconds,
            per_s
        );
        for p in &r.problems {
            println!("problem: {p}");
        }
    }
    Ok(if r.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
