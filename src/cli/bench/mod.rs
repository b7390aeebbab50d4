//! `mltrader bench`: benchmarks that print figures (medians, percentiles, ratios against a
//! baseline measured in the same run). Run them on an optimized build (`cargo run --release`).
//! One file a benchmark.

pub mod jumps;
pub mod storage;
pub mod tick;

use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub which: Which,
}

/// How big a run: `small` finishes in seconds (CI), `large` is for figures by hand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Size {
    Small,
    Large,
}

#[derive(Subcommand, Debug)]
pub enum Which {
    /// The log layer: raw write+fdatasync floor, durable appends/s with 1, 16 and 256 writers,
    /// acknowledgement latency, replay records/s.
    Storage(storage::StorageArgs),
    /// Durable jumps/s through the whole handoff protocol on the embedded mesh.
    Jumps(jumps::JumpsArgs),
    /// Tick cost with many players spread over the galaxy, and memory per player.
    Tick(tick::TickArgs),
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    match args.which {
        Which::Storage(a) => storage::run(a),
        Which::Jumps(a) => jumps::run(a),
        Which::Tick(a) => tick::run(a),
    }
}

/// The `p`-th percentile (0..=100) of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}
