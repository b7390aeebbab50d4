//! `mltrader compact`: archive the log segments behind each snapshot (server stopped).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::common::{existing_datadir, galaxy_for};
use mesh::compact::compact;
use store::backend::{FileOwnership, Ownership, MESH_UNIT};

#[derive(Args, Debug)]
pub struct CompactArgs {
    /// Data directory to compact (no server may be running on it).
    #[arg(long, default_value = store::datadir::DEFAULT_DATA_DIR)]
    pub data: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: CompactArgs) -> anyhow::Result<ExitCode> {
    let datadir = existing_datadir(&args.data)?;
    // Owned (LOCK held, EPOCH counted up) until this returns: compaction rewrites the logs.
    let ownership = FileOwnership::new(&datadir);
    let _claim = ownership.claim(MESH_UNIT)?;
    let galaxy = galaxy_for(&datadir, None, false)?;
    let r = compact(&datadir, &galaxy)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        for a in &r.archived {
            println!("archived {a}");
        }
        println!(
            "compacted: {} records ({:.1} MB) moved to archive/, {} logs had nothing behind a snapshot",
            r.records,
            r.bytes as f64 / 1e6,
            r.skipped
        );
    }
    Ok(ExitCode::SUCCESS)
}
