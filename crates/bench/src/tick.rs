//! `mltrader-bench tick`: the cost of the shards' ticks with many players spread over the
//! galaxy at 10 Hz (a share of them always jumping, the rest idle), reported per shard as
//! p50/p99 tick time against the 100 ms budget, and resident memory per player.
//!
//! A tick's own cost is not what players feel: beside it, per shard, how late ticks started
//! after they were due (p50/p99 of the start delay), the ticks per second the shard actually
//! achieved during the run (against the 10 asked), and its time dilation factor at the end.
//!
//! Memory per player is the growth of the process's resident set from before the joins to
//! after them (the mesh, its logs' buffers and routing all included), divided by the players,
//! measured after the allocator gave its free pages back (glibc `malloc_trim`), and also
//! before that, both printed.
//! Prints figures; never asserts.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;

use super::{scratch_dir, Size};
use mesh::{Mesh, MeshConfig};
use sim::galaxy::Galaxy;
use sim::ids::Tick;
use store::datadir::DataDir;

#[derive(Args, Debug)]
pub struct TickArgs {
    /// Run size: `small` uses 20,000 players, `large` 100,000.
    #[arg(long, value_enum, default_value_t = Size::Small)]
    pub size: Size,
    /// Players (overrides the size's count).
    #[arg(long)]
    pub players: Option<usize>,
    /// Ships in the battle phase (one system, everyone fighting); 0 skips it.
    #[arg(long, default_value_t = 10_000)]
    pub battle: usize,
    /// Share of players jumping all the time, in percent.
    #[arg(long, default_value_t = 10)]
    pub moving_percent: u32,
    /// Where to put the scratch data directory (removed at the end).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// One JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// The tick budget at 10 Hz, and the memory target.
const TICK_BUDGET_US: u32 = 100_000;
const TARGET_BYTES_PER_PLAYER: f64 = 2048.0;

/// Gives the pages the allocator keeps after frees back to the OS (glibc's malloc_trim), so
/// that resident memory measures what is live, not what the joins' short-lived tasks and the
/// snapshots' buffers once used.
fn return_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator; it touches no live data.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Resident set size of this process, in bytes (Linux), if known.
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

pub fn run(args: TickArgs) -> anyhow::Result<ExitCode> {
    let (players, seconds) = match args.size {
        Size::Small => (args.players.unwrap_or(20_000), 5.0),
        Size::Large => (args.players.unwrap_or(100_000), 20.0),
    };
    let dir = scratch_dir(args.dir.as_deref(), "tick")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(async {
        let mut f = measure(&dir, players, args.moving_percent, seconds).await?;
        if args.battle > 0 {
            f["battle"] = super::battle::measure(&dir, args.battle, seconds).await?;
        }
        Ok::<_, anyhow::Error>(f)
    });
    let _ = std::fs::remove_dir_all(&dir);
    let f = result?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&f)?);
        return Ok(ExitCode::SUCCESS);
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "bench tick: {players} players ({}% moving) over 36 systems at 10 Hz, {seconds} s, {cores} cores",
        args.moving_percent
    );
    println!(
        "  {:<20} {:>8} {:>10} {:>10} {:>12} {:>12} {:>8} {:>9}",
        "system",
        "players",
        "p50 us",
        "p99 us",
        "late p50 us",
        "late p99 us",
        "ticks/s",
        "dilation"
    );
    if let Some(shards) = f["shards"].as_array() {
        for s in shards {
            println!(
                "  {:<20} {:>8} {:>10} {:>10} {:>12} {:>12} {:>8.1} {:>9.2}",
                s["system"].as_str().unwrap_or(""),
                // As numbers: a JSON value's Display ignores the width.
                s["population"].as_u64().unwrap_or(0),
                s["tick_p50_us"].as_u64().unwrap_or(0),
                s["tick_p99_us"].as_u64().unwrap_or(0),
                s["tick_late_p50_us"].as_u64().unwrap_or(0),
                s["tick_late_p99_us"].as_u64().unwrap_or(0),
                s["ticks_per_s"].as_f64().unwrap_or(0.0),
                s["dilation"].as_f64().unwrap_or(0.0)
            );
        }
    }
    let worst = f["worst_tick_p99_us"].as_u64().unwrap_or(0);
    println!(
        "  worst shard p99 tick          {worst} us   budget {TICK_BUDGET_US} us: {}",
        if worst < u64::from(TICK_BUDGET_US) {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "  worst shard start delay       p99 {} us; fewest ticks achieved {:.1} /s (10 asked); lowest dilation {:.2}",
        f["worst_tick_late_p99_us"],
        f["min_ticks_per_s"].as_f64().unwrap_or(0.0),
        f["min_dilation"].as_f64().unwrap_or(0.0)
    );
    let bpp = f["rss_bytes_per_player"].as_f64().unwrap_or(0.0);
    println!(
        "  resident memory per player    {bpp:.0} B   target < {TARGET_BYTES_PER_PLAYER} B: {}   (after malloc_trim; {:.0} B before it)",
        if bpp < TARGET_BYTES_PER_PLAYER {
            "met"
        } else {
            "NOT met"
        },
        f["rss_untrimmed_bytes_per_player"].as_f64().unwrap_or(0.0)
    );
    println!(
        "  jumps during the run          {:.0} /s",
        f["jumps_per_s"].as_f64().unwrap_or(0.0)
    );
    if f.get("battle").is_some() {
        super::battle::print(&f["battle"], TICK_BUDGET_US);
    }
    Ok(ExitCode::SUCCESS)
}

async fn measure(
    dir: &std::path::Path,
    players: usize,
    moving_percent: u32,
    seconds: f64,
) -> anyhow::Result<serde_json::Value> {
    let datadir = DataDir::at(dir.join("data"));
    let galaxy = Galaxy::default_galaxy();
    let mut config = MeshConfig {
        tick_hz: 10,
        // One shard per system, as this benchmark measures (`bench instances` measures them).
        instances: mesh::instances::InstancePolicy::never(),
        ..MeshConfig::default()
    };
    config.rules.starting_fuel = u32::MAX / 2;
    config.rules.fuel_capacity = u32::MAX / 2;
    config.rules.ticks_per_ly = 2;
    let (mesh, _) = Mesh::start(datadir, galaxy, config)
        .await
        .context("cannot start the mesh")?;
    let rss_before = rss_bytes().unwrap_or(0);
    eprintln!("joining {players} players and spreading them over the galaxy...");
    let mut joins = Vec::new();
    for i in 0..players {
        let mesh = mesh.clone();
        joins.push(tokio::spawn(async move {
            let name = format!("p{i}");
            mesh.join(&name, "bench").await?;
            // One jump out of Sol, so that players spread over Sol's neighbours and beyond.
            let home = mesh.galaxy().home();
            let options = mesh.galaxy().neighbours(home);
            mesh.jump(&name, options[i % options.len()]).await?;
            mesh.wait_landing(&name).await?;
            Ok::<(), mesh::MeshError>(())
        }));
    }
    for j in joins {
        j.await??;
    }
    let rss_untrimmed = rss_bytes().unwrap_or(0);
    return_free_memory();
    let rss_after = rss_bytes().unwrap_or(0);
    eprintln!("ticking for {seconds} s...");
    let stop = Arc::new(AtomicBool::new(false));
    let jumps = Arc::new(AtomicU64::new(0));
    let movers = players * moving_percent as usize / 100;
    let mut tasks = Vec::new();
    for i in 0..movers {
        let (mesh, stop, jumps) = (mesh.clone(), stop.clone(), jumps.clone());
        tasks.push(tokio::spawn(async move {
            let name = format!("p{i}");
            let mut k = i;
            while !stop.load(Ordering::Relaxed) {
                let Some(mesh::directory::SystemPlace::In(here)) = mesh.locate(&name) else {
                    mesh.wait_landing(&name).await?;
                    continue;
                };
                let options = mesh.galaxy().neighbours(here);
                k = k.wrapping_mul(31).wrapping_add(7);
                mesh.jump(&name, options[k % options.len()]).await?;
                jumps.fetch_add(1, Ordering::Relaxed);
                mesh.wait_landing(&name).await?;
            }
            Ok::<(), mesh::MeshError>(())
        }));
    }
    let before = mesh.status().await?;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    let shards = mesh.status().await?;
    let elapsed = started.elapsed().as_secs_f64();
    let shards = with_ticks_per_s(&before, shards, elapsed)?;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await??;
    }
    mesh.stop().await?;
    let worst = max_of(&shards, "tick_p99_us");
    let worst_late = max_of(&shards, "tick_late_p99_us");
    let min_of = |key: &str| {
        shards
            .iter()
            .filter_map(|s| s[key].as_f64())
            .fold(f64::INFINITY, f64::min)
    };
    Ok(serde_json::json!({
        "players": players,
        "moving": movers,
        "seconds": elapsed,
        "jumps_per_s": jumps.load(Ordering::Relaxed) as f64 / elapsed,
        "worst_tick_p99_us": worst,
        "worst_tick_late_p99_us": worst_late,
        "min_ticks_per_s": min_of("ticks_per_s"),
        "min_dilation": min_of("dilation"),
        "rss_before_bytes": rss_before,
        "rss_after_bytes": rss_after,
        "rss_after_untrimmed_bytes": rss_untrimmed,
        "rss_untrimmed_bytes_per_player": rss_untrimmed.saturating_sub(rss_before) as f64 / players.max(1) as f64,
        "rss_bytes_per_player": rss_after.saturating_sub(rss_before) as f64 / players.max(1) as f64,
        "shards": shards,
    }))
}

/// The shards' statuses at the end, each with `ticks_per_s`: the ticks it ran since `before`,
/// over `elapsed_s` seconds (what it achieved, not what was asked).
fn with_ticks_per_s(
    before: &[mesh::ShardStatus],
    after: Vec<mesh::ShardStatus>,
    elapsed_s: f64,
) -> anyhow::Result<Vec<serde_json::Value>> {
    after
        .into_iter()
        .map(|s| {
            let ticks_before = before
                .iter()
                .find(|b| b.shard == s.shard)
                .map_or(Tick(0), |b| b.tick);
            let ticks = s.tick.ticks_since(ticks_before);
            let mut v = serde_json::to_value(&s)?;
            v["ticks_per_s"] = serde_json::json!(ticks as f64 / elapsed_s.max(1e-9));
            Ok(v)
        })
        .collect()
}

/// The largest integer `key` over the shards.
fn max_of(shards: &[serde_json::Value], key: &str) -> u64 {
    shards
        .iter()
        .filter_map(|s| s[key].as_u64())
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::seq::Seq;

    fn status(shard: &str, tick: u64) -> mesh::ShardStatus {
        mesh::ShardStatus {
            system: shard.into(),
            slug: shard.into(),
            instance: 1,
            shard: shard.into(),
            instance_name: shard.into(),
            merging: false,
            instances: Vec::new(),
            population: 0,
            departing: 0,
            in_transit_towards: 0,
            tick: Tick(tick),
            tick_p50_us: 0,
            tick_p99_us: 0,
            tick_late_p50_us: 0,
            tick_late_p99_us: 0,
            dilation: 1.0,
            tick_period_us: 100_000,
            log_durable_seq: Seq(0),
            log_next_seq: Seq(1),
            state_hash: String::new(),
            failed: None,
        }
    }

    #[test]
    fn ticks_per_s_are_the_ticks_run_during_the_window() {
        let before = [status("sol", 100), status("vega", 7)];
        let after = vec![status("sol", 150), status("vega", 27)];
        let shards = with_ticks_per_s(&before, after, 5.0).unwrap();
        assert_eq!(shards[0]["ticks_per_s"], 10.0, "50 ticks in 5 s");
        assert_eq!(
            shards[1]["ticks_per_s"], 4.0,
            "a slowed shard: 20 ticks in 5 s"
        );
        assert_eq!(max_of(&shards, "tick"), 150);
    }
}
