//! `mltrader-bench jetstream`: durable jumps/s and commit latency with the logs in NATS
//! JetStream against the local files, in the same run (issue 18's figure).
//!
//! Each round measures the files, then JetStream on a new three-node cluster on loopback
//! (`nats::testing::TestCluster`: scripts/nats-cluster.sh in the scratch directory, stopped after): the same
//! workload as `bench jumps` (`jumps::measure_on`), a latency phase of 64 players jumping, then
//! a loaded phase. Needs nats-server (scripts/nats-install.sh). Prints figures; never asserts.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use nats::testing::TestCluster;

use super::jumps::{measure_on, PhaseFigures, LATENCY_PLAYERS};
use super::scratch_dir;
use store::backend::{FileSnapshots, Storage};
use store::datadir::DataDir;

#[derive(Args, Debug)]
pub struct JetStreamArgs {
    /// Players jumping at once in the loaded phase.
    #[arg(long, default_value_t = 256)]
    pub players: usize,
    /// Seconds each phase measures.
    #[arg(long, default_value_t = 4.0)]
    pub seconds: f64,
    /// Rounds of (files, JetStream).
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// The cluster's base port (clients BASE..BASE+2, routes +100, monitoring +200).
    #[arg(long, default_value_t = 45_222)]
    pub base_port: u16,
    /// Copies of each log in the cluster.
    #[arg(long, default_value_t = 3)]
    pub replicas: usize,
    /// Where to put the scratch directory (removed at the end).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

pub fn run(args: JetStreamArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.players >= LATENCY_PLAYERS,
        "--players must be at least {LATENCY_PLAYERS}"
    );
    let dir = scratch_dir(args.dir.as_deref(), "jetstream")?;
    let result = rounds(&args, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    let rounds = result?;
    let phases = [LATENCY_PLAYERS, args.players];
    println!(
        "bench jetstream: {} s a phase, {} round(s); JetStream: 3 nodes on loopback, R{}, sync always",
        args.seconds, args.rounds, args.replicas
    );
    for (i, (files, js)) in rounds.iter().enumerate() {
        for (p, players) in phases.iter().enumerate() {
            let (f, j) = (&files[p], &js[p]);
            println!(
                "  round {} {players:>5} players: files {:>8.0} jumps/s (p50 {:.2} ms, p99 {:.2} ms)   JetStream {:>8.0} jumps/s (p50 {:.2} ms, p99 {:.2} ms)   ratio {:.3}",
                i + 1,
                f.jumps_per_s,
                f.commit_p50_ms,
                f.commit_p99_ms,
                j.jumps_per_s,
                j.commit_p50_ms,
                j.commit_p99_ms,
                j.jumps_per_s / f.jumps_per_s.max(f64::MIN_POSITIVE)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

type Round = (Vec<PhaseFigures>, Vec<PhaseFigures>);

/// The workspace (where scripts/nats-cluster.sh is).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rounds(args: &JetStreamArgs, dir: &Path) -> anyhow::Result<Vec<Round>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let phases = [LATENCY_PLAYERS, args.players];
    let mut all = Vec::new();
    for round in 0..args.rounds {
        let files_dir = dir.join(format!("round-{round}-files"));
        eprintln!("round {}: files", round + 1);
        let storage = Storage::files(&DataDir::at(files_dir.join("data")));
        let files = rt.block_on(measure_on(
            storage,
            &files_dir,
            args.players,
            &phases,
            args.seconds,
        ))?;
        eprintln!("round {}: JetStream", round + 1);
        let cluster = TestCluster::start_in(
            &workspace_root(),
            &dir.join(format!("round-{round}-cluster")),
            args.base_port,
            None,
        )?;
        let js_dir = dir.join(format!("round-{round}-jetstream"));
        let storage =
            jetstream_storage(&cluster, &DataDir::at(js_dir.join("data")), args.replicas)?;
        let js = rt.block_on(measure_on(
            storage,
            &js_dir,
            args.players,
            &phases,
            args.seconds,
        ));
        drop(cluster);
        all.push((files, js?));
    }
    Ok(all)
}

/// The logs in `cluster`'s stream, the snapshots in `datadir`.
fn jetstream_storage(
    cluster: &TestCluster,
    datadir: &DataDir,
    replicas: usize,
) -> anyhow::Result<Storage> {
    let nats = nats::Nats::connect(&cluster.config("bench"))?;
    let logs = nats::NatsLogs::open(&nats, replicas)?;
    Ok(Storage {
        logs: Arc::new(logs),
        snapshots: Arc::new(FileSnapshots::new(datadir)),
    })
}
