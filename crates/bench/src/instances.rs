//! `mltrader-bench instances`: what instances cost on the embedded mesh.
//!
//! 1. **Split**: 1,000 players in one system's primary (joined with instances off, so that no
//!    split happens while they come), then the mesh restarts with the default thresholds and no
//!    cool-down: the time from the restart until the system is split and settled (the primary
//!    under the threshold, every move landed).
//! 2. **Merge**: the same directory restarts with a merge threshold above the instances'
//!    populations (and a split threshold the whole crowd fits under): the time until every
//!    instance has moved its players back and retired.
//! 3. **Jumps while splitting and merging**: players jumping between neighbouring systems as in
//!    `bench jumps` (every jump lands at once), with instances on (systems split and merge as
//!    the crowds move; a short cool-down keeps it happening) and, as the baseline of the same
//!    run, off: durable jumps/s of the whole mesh, and how many splits, retirements and moves
//!    happened.
//!
//! Restart (recovery) time is not counted in 1 and 2. Prints figures; never asserts.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;

use super::{percentile, scratch_dir, Size};
use mesh::instances::InstancePolicy;
use mesh::{Mesh, MeshConfig, ShardStatus};
use sim::galaxy::Galaxy;
use sim::instance::InstanceId;
use store::datadir::DataDir;
use store::record::parse_line;

#[derive(Args, Debug)]
pub struct InstancesArgs {
    /// Run size: `small` takes seconds, `large` runs longer with more players jumping.
    #[arg(long, value_enum, default_value_t = Size::Small)]
    pub size: Size,
    /// Players in the system that splits and merges back (default 1,000).
    #[arg(long, default_value_t = 1_000)]
    pub crowd: usize,
    /// Players jumping in phase 3 (default: 5,000 small, 20,000 large).
    #[arg(long)]
    pub players: Option<usize>,
    /// Where to put the scratch data directories (removed at the end).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// One JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// The most instances a system opens in this benchmark (1,000 players need 40).
const BENCH_MAX_INSTANCES: u16 = 64;

/// The cool-down in phase 3: short, so that splits and merges keep happening.
const JUMPS_COOLDOWN_MS: u64 = 500;

pub fn run(args: InstancesArgs) -> anyhow::Result<ExitCode> {
    let (players, seconds) = match args.size {
        Size::Small => (args.players.unwrap_or(5_000), 4.0),
        Size::Large => (args.players.unwrap_or(20_000), 15.0),
    };
    let dir = scratch_dir(args.dir.as_deref(), "instances")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(measure(&dir, args.crowd, players, seconds));
    let _ = std::fs::remove_dir_all(&dir);
    let f = result?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&f)?);
        return Ok(ExitCode::SUCCESS);
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let num = |k: &str| f[k].as_f64().unwrap_or(0.0);
    println!("bench instances: {cores} cores, embedded mesh of 36 systems");
    println!(
        "  split {} players in one system  {:>8.0} ms   into {} instances (the primary keeps {})",
        args.crowd,
        num("split_ms"),
        num("split_instances"),
        num("split_primary_players")
    );
    println!(
        "  merge them back                 {:>8.0} ms   ({} instances retired)",
        num("merge_ms"),
        num("merge_retired")
    );
    println!("    (both wait for ticks: a step of the policy, the moves and the landings each take one, 100 ms at 10 Hz)");
    println!("  {players} players jumping for {seconds} s:");
    println!(
        "    instances on                  {:>8.0} jumps/s   commit p99 {:.2} ms   {} splits, {} retirements, {} moves, at most {} shards",
        num("jumps_per_s"),
        num("commit_p99_ms"),
        num("splits"),
        num("retirements"),
        num("moves"),
        num("most_shards")
    );
    println!(
        "    instances off (baseline)      {:>8.0} jumps/s   commit p99 {:.2} ms",
        num("baseline_jumps_per_s"),
        num("baseline_commit_p99_ms")
    );
    Ok(ExitCode::SUCCESS)
}

fn config(instances: InstancePolicy, tick_hz: u32) -> MeshConfig {
    let mut config = MeshConfig {
        tick_hz,
        snapshot_every_records: 1_000_000,
        instances,
        ..MeshConfig::default()
    };
    config.rules.starting_fuel = u32::MAX / 2;
    config.rules.fuel_capacity = u32::MAX / 2;
    // Every jump lands at once: the figure is the protocol's, not the travel time's.
    config.rules.ticks_per_ly = 0;
    config
}

async fn measure(
    dir: &Path,
    crowd: usize,
    players: usize,
    seconds: f64,
) -> anyhow::Result<serde_json::Value> {
    let galaxy = Galaxy::default_galaxy();
    let sol = galaxy.home();

    // 1. Split.
    let datadir = DataDir::at(dir.join("split"));
    eprintln!("joining {crowd} players in one system (instances off)...");
    let (mesh, _) = Mesh::start(
        datadir.clone(),
        galaxy.clone(),
        config(InstancePolicy::never(), 10),
    )
    .await
    .context("cannot start the mesh")?;
    join(&mesh, crowd).await?;
    mesh.stop().await?;
    let split = InstancePolicy {
        cooldown_ms: 0,
        max_instances: BENCH_MAX_INSTANCES,
        ..InstancePolicy::default()
    };
    eprintln!("splitting...");
    let (mesh, _) = Mesh::start(datadir.clone(), galaxy.clone(), config(split.clone(), 10)).await?;
    let started = Instant::now();
    let split_at = settle(&mesh, sol, |s, open| {
        s.population <= split.split_above_players && open > 0
    })
    .await?;
    let split_ms = started.elapsed().as_secs_f64() * 1e3;
    mesh.stop().await?;

    // 2. Merge.
    let merge = InstancePolicy {
        split_above_players: crowd.max(split.split_above_players) * 2,
        merge_below_players: split.fill() + 1,
        cooldown_ms: 0,
        max_instances: BENCH_MAX_INSTANCES,
    };
    eprintln!("merging...");
    let (mesh, _) = Mesh::start(datadir.clone(), galaxy.clone(), config(merge, 10)).await?;
    let started = Instant::now();
    settle(&mesh, sol, |s, open| open == 0 && s.population == crowd).await?;
    let merge_ms = started.elapsed().as_secs_f64() * 1e3;
    mesh.stop().await?;
    let merge_retired = count_kinds(&datadir, &galaxy)?.1;

    // 3. Jumps, instances on and off.
    let on = InstancePolicy {
        cooldown_ms: JUMPS_COOLDOWN_MS,
        ..InstancePolicy::default()
    };
    eprintln!("{players} players jumping for {seconds} s, instances on...");
    let (jumps, commit_p99, most_shards, counts) =
        jumping(&dir.join("on"), &galaxy, on, players, seconds).await?;
    eprintln!("{players} players jumping for {seconds} s, instances off...");
    let (base, base_p99, _, _) = jumping(
        &dir.join("off"),
        &galaxy,
        InstancePolicy::never(),
        players,
        seconds,
    )
    .await?;
    Ok(serde_json::json!({
        "crowd": crowd,
        "split_ms": split_ms,
        "split_instances": split_at.instances.len() + 1,
        "split_primary_players": split_at.population,
        "merge_ms": merge_ms,
        "merge_retired": merge_retired,
        "players": players,
        "seconds": seconds,
        "jumps_per_s": jumps,
        "commit_p99_ms": commit_p99,
        "most_shards": most_shards,
        "splits": counts.0,
        "retirements": counts.1,
        "moves": counts.2,
        "baseline_jumps_per_s": base,
        "baseline_commit_p99_ms": base_p99,
    }))
}

/// Joins players `bench 0..n` (at the home system).
async fn join(mesh: &Mesh, n: usize) -> anyhow::Result<()> {
    let mut joins = tokio::task::JoinSet::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let (mesh, chunk) = (mesh.clone(), chunk.to_vec());
        joins.spawn(async move {
            for i in chunk {
                mesh.join(&format!("bench {i}"), "bench").await?;
            }
            Ok::<(), mesh::MeshError>(())
        });
    }
    for r in joins.join_all().await {
        r?;
    }
    Ok(())
}

/// Waits until `system`'s figures and its number of open instances (retirements recorded)
/// pass `done` and nothing of it moves any more (no jump prepared or on its way in any of its
/// instances); returns the primary's figures then.
async fn settle(
    mesh: &Mesh,
    system: sim::galaxy::SystemId,
    done: impl Fn(&ShardStatus, usize) -> bool,
) -> anyhow::Result<ShardStatus> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = mesh.status().await?.swap_remove(system.index());
        let quiet = std::iter::once(&s)
            .chain(&s.instances)
            .all(|i| i.departing == 0 && i.in_transit_towards == 0);
        if quiet && done(&s, mesh.instances_of(system).len()) {
            return Ok(s);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the system did not settle: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Players jumping for `seconds` on a fresh mesh: jumps/s, commit p99 (ms), the most shards
/// seen running at once, and (splits, retirements, moves) over the run.
async fn jumping(
    dir: &Path,
    galaxy: &Galaxy,
    policy: InstancePolicy,
    players: usize,
    seconds: f64,
) -> anyhow::Result<(f64, f64, usize, (u64, u64, u64))> {
    let datadir = DataDir::at(dir);
    let (mesh, _) = Mesh::start(datadir.clone(), galaxy.clone(), config(policy, 100)).await?;
    join(&mesh, players).await?;
    let sampler = {
        let mesh = mesh.clone();
        tokio::spawn(async move {
            let mut most = 0;
            loop {
                let shards = mesh
                    .galaxy()
                    .ids()
                    .map(|id| 1 + mesh.instances_of(id).len())
                    .sum::<usize>();
                most = most.max(shards);
                if mesh.is_stopped() {
                    return most;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let (lat, _, elapsed) = super::jumps::phase(&mesh, players, seconds).await?;
    mesh.stop().await?;
    let most = sampler.await?;
    let counts = count_kinds(&datadir, galaxy)?;
    Ok((
        lat.len() as f64 / elapsed,
        percentile(&lat, 99.0),
        most,
        counts,
    ))
}

/// Splits and retirements in the systems' logs, and moves between instances in the transition
/// log.
fn count_kinds(datadir: &DataDir, galaxy: &Galaxy) -> anyhow::Result<(u64, u64, u64)> {
    let (mut splits, mut retires, mut moves) = (0, 0, 0);
    for entry in std::fs::read_dir(datadir.systems_dir())? {
        let bytes = std::fs::read(entry?.path())?;
        for line in bytes.split_inclusive(|b| *b == b'\n') {
            match parse_line(line).map(|r| r.kind) {
                Ok("split") => splits += 1,
                Ok("retire") => retires += 1,
                _ => {}
            }
        }
    }
    let bytes = std::fs::read(datadir.transitions_log())?;
    for line in bytes.split_inclusive(|b| *b == b'\n') {
        let Ok(rec) = parse_line(line) else { continue };
        let at = |k| rec.str(k).ok().and_then(|s| InstanceId::parse(galaxy, s));
        if let (Some(from), Some(to)) = (at("from"), at("to")) {
            moves += u64::from(from.system == to.system);
        }
    }
    Ok((splits, retires, moves))
}
