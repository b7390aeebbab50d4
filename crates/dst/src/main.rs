//! `mltrader-dst`: runs the deterministic simulator over many seeds in parallel, or replays one
//! seed with its trace. Exit status 1 on any violation. docs/TESTING.md says how to use it.

use anyhow::Context;
use clap::Parser;

use dst::runner::{self, Plan};
use dst::Options;

#[derive(Parser, Debug)]
#[command(
    name = "mltrader-dst",
    about = "The deterministic simulator: the jump protocol under crashes and disk faults, one seed a run"
)]
struct Cli {
    /// How many seeds to run.
    #[arg(long, default_value_t = 1000)]
    seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// Run this one seed only (with --trace: print its whole trace).
    #[arg(long)]
    seed: Option<u64>,
    /// Threads (default: every core).
    #[arg(long)]
    jobs: Option<usize>,
    /// Steps per seed before its final crash, restart and audit.
    #[arg(long, default_value_t = 1000)]
    steps: u64,
    /// Run the real auditor at the end of every Nth seed (0: never).
    #[arg(long, default_value_t = 1)]
    audit_every: u64,
    /// Turn a re-introduced bug on in every seed (see `--bug list`).
    #[arg(long)]
    bug: Option<String>,
    /// Print the trace of the seed (with --seed).
    #[arg(long)]
    trace: bool,
    /// Stop at the first failing seed.
    #[arg(long)]
    stop_at_first: bool,
    /// Which world the seeds run: all (odd seeds the stream, seeds 2 mod 4 the cross-node
    /// world, the rest the files; "both" is its old name), files, stream, or xnode.
    #[arg(long, value_enum, default_value = "all")]
    world: dst::Worlds,
    /// The summary as JSON.
    #[arg(long)]
    json: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let bug = dst::bugs::parse(cli.bug.as_deref()).context("--bug")?;
    let opts = Options {
        steps: cli.steps,
        audit_every: cli.audit_every,
        keep_trace: cli.trace,
        worlds: cli.world,
        ..Options::default()
    };
    if let (Some(seed), true) = (cli.seed, cli.trace) {
        dst::bugs::set(bug);
        let run = dst::run_seed(seed, opts);
        for line in &run.trace {
            println!("{line}");
        }
        println!("digest {:016x}", run.digest);
        if let Some(f) = run.failure {
            println!("FAILED at step {}: {}", f.step, f.what);
            if let Some(p) = &f.player {
                println!("what happened to {p}:");
            }
            for line in &f.story {
                println!("  {line}");
            }
            println!(
                "replay: {}",
                runner::replay_command(seed, &opts, cli.bug.as_deref())
            );
            std::process::exit(1);
        }
        return Ok(());
    }
    let (from, seeds) = match cli.seed {
        Some(s) => (s, 1),
        None => (cli.from, cli.seeds),
    };
    let jobs = cli
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let plan = Plan {
        from,
        seeds,
        jobs,
        opts,
        bug: cli.bug.clone(),
        stop_at_first: cli.stop_at_first,
        progress: !cli.json,
    };
    dst::quiet_panics_in_seeds();
    let summary = runner::run(&plan, &|| dst::bugs::set(bug));
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!("{}", summary.text());
    }
    if summary.violations > 0 {
        std::process::exit(1);
    }
    Ok(())
}
