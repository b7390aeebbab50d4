//! `mltrader replay`: rebuild every system's state from its logs, from the first record, and
//! print the state hashes and how fast it went.
//!
//! Two figures, labelled, because they answer different questions: the **rebuild** (read every
//! log file, checksum, parse, apply every record to the game state and check the cross-log
//! invariants: `mesh::audit`, what a restart from the first record costs an operator), and,
//! for comparison, the **scan** alone (the same files read into memory, then checksummed,
//! parsed and sequence-checked from memory with no game state: the storage layer's ceiling).
//! The file reads are timed and printed on their own too. Never writes to the data directory;
//! refuses one a running server holds (its LOCK).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use clap::Args;

use super::common::{existing_datadir, galaxy_for};
use mesh::audit::audit;
use store::backend::{FileOwnership, Ownership, MESH_UNIT};
use store::scan::{scan, ScanStart};

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// Data directory to replay.
    #[arg(long, default_value = store::datadir::DEFAULT_DATA_DIR)]
    pub data: PathBuf,
    /// Print every system's hash and the figures as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The scan of every log file alone: reading them, then scanning them from memory.
struct ScanOnly {
    files: u64,
    bytes: u64,
    records: u64,
    read_seconds: f64,
    scan_seconds: f64,
}

pub fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let datadir = existing_datadir(&args.data)?;
    let galaxy = galaxy_for(&datadir, None, false)?;
    // Held to the end, as `check` holds it: the logs of a running server change while they are
    // read, and a replay would report problems that are not there (and a hash of no moment).
    let ownership = FileOwnership::new(&datadir);
    let _claim = ownership.claim_shared(MESH_UNIT).map_err(|e| {
        anyhow::anyhow!(
            "{e}: its logs change while they are read, so a replay would rebuild a state that              never was; stop it first (`mltrader check --live` reads a running server's logs)"
        )
    })?;
    let r = audit(&datadir, &galaxy);
    let rebuild_per_s = r.records as f64 / r.seconds.max(1e-9);
    let s = scan_only(datadir.root())?;
    let scan_per_s = s.records as f64 / s.scan_seconds.max(1e-9);
    let read_and_scan_per_s = s.records as f64 / (s.read_seconds + s.scan_seconds).max(1e-9);
    if args.json {
        let out = serde_json::json!({
            "galaxy_hash": r.galaxy_hash,
            "system_hashes": r.system_hashes,
            "records": r.records,
            "bytes": r.bytes,
            "seconds": r.seconds,
            "records_per_s": rebuild_per_s,
            "rebuild": {
                "what": "read every log file, checksum, parse, apply to the game state, check invariants",
                "records": r.records,
                "bytes": r.bytes,
                "seconds": r.seconds,
                "records_per_s": rebuild_per_s,
            },
            "scan_only": {
                "what": "the same log files read into memory, then checksum, parse and sequence check; no game state",
                "files": s.files,
                "records": s.records,
                "bytes": s.bytes,
                "read_seconds": s.read_seconds,
                "scan_seconds": s.scan_seconds,
                "records_per_s_from_memory": scan_per_s,
                "records_per_s_with_read": read_and_scan_per_s,
            },
            "problems": r.problems,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "galaxy state hash {} ({} systems): {} records, {:.1} MB",
            r.galaxy_hash,
            r.system_hashes.len(),
            r.records,
            r.bytes as f64 / 1e6,
        );
        println!(
            "  rebuild (read the files, checksum, parse, apply to the game state, check): {:.3} s = {:.0} records/s",
            r.seconds, rebuild_per_s
        );
        println!(
            "  for comparison, the scan alone ({} files, no game state): read {:.3} s, scan from memory {:.3} s = {:.0} records/s ({:.0} records/s with the read)",
            s.files, s.read_seconds, s.scan_seconds, scan_per_s, read_and_scan_per_s
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

/// Reads every `.log` file under `root` (archived segments included), then scans each from
/// memory, timing the two apart. A file the scan refuses is counted up to the refusal: the
/// rebuild reports the problem.
fn scan_only(root: &Path) -> anyhow::Result<ScanOnly> {
    let paths = log_files(root)?;
    let started = Instant::now();
    let mut contents = Vec::with_capacity(paths.len());
    for path in &paths {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        contents.push(bytes);
    }
    let read_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut records = 0;
    for bytes in &contents {
        if let Ok(out) = scan(bytes, ScanStart::BEGINNING, |rec| {
            std::hint::black_box(rec);
            Ok(())
        }) {
            records += out.records;
        }
    }
    let scan_seconds = started.elapsed().as_secs_f64();
    Ok(ScanOnly {
        files: paths.len() as u64,
        bytes: contents.iter().map(|b| b.len() as u64).sum(),
        records,
        read_seconds,
        scan_seconds,
    })
}

/// Every file named `*.log` under `root`, at any depth.
fn log_files(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?;
        for entry in entries {
            let path = entry
                .with_context(|| format!("cannot list {}", dir.display()))?
                .path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "log") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}
