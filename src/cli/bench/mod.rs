//! `mltrader bench`: benchmarks that print figures (medians, percentiles, ratios against a
//! baseline measured in the same run). Run them on an optimized build (`cargo run --release`).

use std::process::ExitCode;

use clap::{Args, Subcommand};

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub which: Which,
}

#[derive(Subcommand, Debug)]
pub enum Which {}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    match args.which {}
}
