//! `mltrader-bench`: benchmarks that print figures (medians, percentiles, ratios against a
//! baseline measured in the same run). Run them on an optimized build
//! (`cargo run --release -p mltrader-bench -- jumps`). One file a benchmark. The product
//! binary links none of this; the benchmarks that run the game as processes use the `mltrader`
//! binary built next to this one.

pub mod all;
pub mod api;
pub mod battle;
pub mod economy;
pub mod instances;
pub mod jetstream;
pub mod jumps;
pub mod many_files;
pub mod map;
pub mod mixed;
pub mod postgres;
pub mod regions;
pub mod rounds;
pub mod spread;
pub mod storage;
pub mod swarm;
pub mod takeover;
pub mod tick;

use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// One benchmark; none runs them all and prints one table.
    #[command(subcommand)]
    pub which: Option<Which>,
    /// Run size for all benchmarks (when none is named).
    #[arg(long, value_enum, default_value_t = Size::Small)]
    pub size: Size,
    /// Every benchmark's whole JSON instead of the table (when none is named).
    #[arg(long)]
    pub json: bool,
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
    /// The game end to end: `serve` + `swarm` of trader bots + `check --acks`, as processes.
    Swarm(swarm::SwarmBenchArgs),
    /// HTTP API requests/s and p99 latency: status and travel calls, 64 clients, loopback.
    Api(api::ApiArgs),
    /// The peer: the same jump-and-trade workload on a PostgreSQL server (synchronous_commit
    /// on), measured in the same run as mltrader's jumps, as a ratio. By hand:
    /// scripts/bench-postgres.sh installs and starts a throwaway server and runs this.
    Postgres(postgres::PostgresArgs),
    /// Instances: time to split a system of 1,000 players and to merge it back, and jumps/s
    /// of the whole mesh while systems split and merge.
    Instances(instances::InstancesArgs),
    /// Durable jumps/s and commit latency with the logs in NATS JetStream (a three-node
    /// cluster on loopback that it starts) against the local files, in the same run. By hand:
    /// needs scripts/nats-install.sh.
    Jetstream(jetstream::JetStreamArgs),
    /// Takeover time with the logs in NATS JetStream: a standby's lease expiry to serving, kill
    /// to the first 200, records replayed, over several SIGKILLs of the active node. By hand:
    /// needs scripts/nats-install.sh and a release build of both binaries.
    Takeover(takeover::TakeoverArgs),
    /// A galaxy spread over 1, 2, 3 nodes (`serve --nats --spread`): durable jumps/s and commit
    /// latency, the share crossing nodes, requests forwarded a second, a node's takeover and a
    /// clean leave. By hand: needs scripts/nats-install.sh and a release build of both binaries.
    Spread(spread::SpreadArgs),
    /// Is the economy alive under a crowd of traders (issue 22)? `serve` sped up + `swarm`
    /// for some game hours, then from the logs: profit per sale of learning and random bots
    /// by hour, profitable routes and how the best shift, prices at floors and ceilings,
    /// credits in circulation against sources and sinks.
    Economy(economy::EconomyBenchArgs),
    /// The cost of the operator's map: API and jump throughput without and with open pages.
    Map(map::MapArgs),
    /// Two regions (`serve --nats --spread --region`): commit latency within a region and
    /// across the link against its delay, copy lag under load, jumps while the link is cut,
    /// a promotion's time and recovery point. By hand: needs scripts/nats-install.sh and a
    /// release build of both binaries.
    Regions(regions::RegionsArgs),
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    match args.which {
        None => all::run(args.size, args.json),
        Some(Which::Storage(a)) => storage::run(a),
        Some(Which::Jumps(a)) => jumps::run(a),
        Some(Which::Tick(a)) => tick::run(a),
        Some(Which::Api(a)) => api::run(a),
        Some(Which::Postgres(a)) => postgres::run(a),
        Some(Which::Swarm(a)) => swarm::run(a),
        Some(Which::Instances(a)) => instances::run(a),
        Some(Which::Jetstream(a)) => jetstream::run(a),
        Some(Which::Takeover(a)) => takeover::run(a),
        Some(Which::Spread(a)) => spread::run(a),
        Some(Which::Economy(a)) => economy::run(a),
        Some(Which::Map(a)) => map::run(a),
        Some(Which::Regions(a)) => regions::run(a),
    }
}

/// The `mltrader` binary next to this one (cargo builds both into the same directory).
pub fn mltrader_exe() -> anyhow::Result<std::path::PathBuf> {
    use anyhow::Context as _;
    let me = std::env::current_exe().context("cannot find this program's path")?;
    let exe = me.with_file_name(format!("mltrader{}", std::env::consts::EXE_SUFFIX));
    anyhow::ensure!(
        exe.is_file(),
        "{} not found: build it first (cargo build --release --workspace)",
        exe.display()
    );
    Ok(exe)
}

/// A runtime of two workers and an HTTP client for `concurrency` requests in flight, each
/// waited for at most 70 s (a jump across a cut link waits for the heal): the load of the
/// benchmarks that drive `serve` nodes over HTTP.
pub fn load_runtime(
    concurrency: usize,
) -> anyhow::Result<(tokio::runtime::Runtime, reqwest::Client)> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(70))
        .pool_max_idle_per_host(concurrency)
        .build()?;
    Ok((rt, http))
}

/// The `p`-th percentile (0..=100) of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// A phase's clock, for workers that count only while `measuring` is up and quit once `stop`
/// is: lets them warm up for `warm_up`, measures for `seconds`, then stops them. Returns the
/// seconds actually measured.
pub async fn measure_window(
    warm_up: std::time::Duration,
    seconds: f64,
    measuring: &std::sync::atomic::AtomicBool,
    stop: &std::sync::atomic::AtomicBool,
) -> f64 {
    use std::sync::atomic::Ordering::Relaxed;
    tokio::time::sleep(warm_up).await;
    measuring.store(true, Relaxed);
    let started = std::time::Instant::now();
    tokio::time::sleep(std::time::Duration::from_secs_f64(seconds)).await;
    measuring.store(false, Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Relaxed);
    elapsed
}

/// The 1-minute load average (Linux), to tell a busy machine's figures apart.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `1234567.8` as `1,234,568`.
pub fn int(x: f64) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    let digits = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if x < 0.0 && digits != "0" {
        out.insert(0, '-');
    }
    out
}

/// A fresh scratch directory for a benchmark, under `base` (default: ./target if it exists,
/// else the system temp dir). The caller removes it.
pub fn scratch_dir(
    base: Option<&std::path::Path>,
    name: &str,
) -> anyhow::Result<std::path::PathBuf> {
    let base = match base {
        Some(b) => b.to_path_buf(),
        None if std::path::Path::new("target").is_dir() => std::path::PathBuf::from("target"),
        None => std::env::temp_dir(),
    };
    let dir = base.join(format!("mltrader-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}

/// Raw 100-byte write+fdatasync operations per second on a plain file in `dir`, for `span`:
/// the disk's floor, measured in the same run as the figure it is compared with.
pub fn raw_fsyncs_per_s(dir: &std::path::Path, span: std::time::Duration) -> anyhow::Result<f64> {
    use std::io::Write;
    let path = dir.join("raw-fsync.bin");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    let buf = [b'x'; 100];
    let started = std::time::Instant::now();
    let mut n = 0u64;
    while started.elapsed() < span {
        f.write_all(&buf)?;
        f.sync_data()?;
        n += 1;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    drop(f);
    let _ = std::fs::remove_file(&path);
    Ok(rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(int(0.0), "0");
        assert_eq!(int(999.4), "999");
        assert_eq!(int(1000.0), "1,000");
        assert_eq!(int(1_234_567.8), "1,234,568");
    }
}
