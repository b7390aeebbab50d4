//! `mltrader-bench`: every benchmark of mltrader, as its own binary (the product binary links
//! none of them). `cargo run --release -p mltrader-bench -- --help`.

use std::process::ExitCode;

use clap::Parser;

/// mltrader's benchmarks: figures, not pass/fail (except the targets `all` compares).
#[derive(Parser, Debug)]
#[command(name = "mltrader-bench", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    args: mltrader_bench::BenchArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("MLTRADER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match mltrader_bench::run(cli.args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
