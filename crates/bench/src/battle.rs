//! The battle phase of `mltrader-bench tick`: thousands of ships fighting in one system at
//! 10 Hz. Every pilot holds a standing order to fire at another (a ring, so every ship is a
//! target) and renews it about once a second at a random pilot, as a player at the terminal
//! would when their target is destroyed; destroyed ships respawn at home, which is where the
//! battle is, so the fight never ends. Reports the shard's tick p50/p99 against the 100 ms
//! budget, how late its ticks started (p50/p99), the ticks it actually achieved per second,
//! its time dilation factor, and the combat's own figures from the log (shots, ships
//! destroyed). Prints figures; never asserts.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use mesh::{Mesh, MeshConfig};
use sim::galaxy::Galaxy;
use sim::rng::Rng;
use store::datadir::DataDir;

/// Runs the battle with `players` ships for `seconds` in a data directory under `dir`.
pub async fn measure(
    dir: &std::path::Path,
    players: usize,
    seconds: f64,
) -> anyhow::Result<serde_json::Value> {
    let datadir = DataDir::at(dir.join("battle"));
    let galaxy = Galaxy::default_galaxy();
    let home = galaxy.home();
    let config = MeshConfig {
        tick_hz: 10,
        // One shard per system, as this benchmark measures (`bench instances` measures them).
        instances: mesh::instances::InstancePolicy::never(),
        ..MeshConfig::default()
    };
    let (mesh, _) = Mesh::start(datadir.clone(), galaxy.clone(), config)
        .await
        .context("cannot start the mesh")?;
    eprintln!(
        "battle: joining {players} pilots at {}...",
        galaxy.name(home)
    );
    let name = |i: usize| format!("b{i}");
    let mut joins = Vec::new();
    for i in 0..players {
        let mesh = mesh.clone();
        joins.push(tokio::spawn(async move {
            mesh.join(&name(i), "bench").await.map(|_| ())
        }));
    }
    for j in joins {
        j.await??;
    }
    eprintln!("battle: every pilot opens fire; fighting for {seconds} s...");
    let stop = Arc::new(AtomicBool::new(false));
    let orders = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..players {
        let (mesh, stop, orders) = (mesh.clone(), stop.clone(), orders.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::from_seed(i as u64);
            let mut target = (i + 1) % players;
            // Spread the renewals over the second.
            tokio::time::sleep(Duration::from_millis(rng.below(1000))).await;
            while !stop.load(Ordering::Relaxed) {
                // A pilot shot down this tick is refused until destroyed: try again later.
                if mesh.engage(&name(i), Some(&name(target))).await.is_ok() {
                    orders.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(1000)).await;
                target = rng.below(players as u64) as usize;
                if target == i {
                    target = (i + 1) % players;
                }
            }
        }));
    }
    // Let the orders settle in, then measure over a fresh window of tick times.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = mesh.system_status(home).await?;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    let after = mesh.system_status(home).await?;
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await?;
    }
    mesh.stop().await?;
    let (shots, destroyed) = count_combat(&datadir, &galaxy)?;
    Ok(serde_json::json!({
        "players": players,
        "seconds": elapsed,
        "tick_p50_us": after.tick_p50_us,
        "tick_p99_us": after.tick_p99_us,
        "tick_late_p50_us": after.tick_late_p50_us,
        "tick_late_p99_us": after.tick_late_p99_us,
        "dilation": after.dilation,
        "ticks_per_s": after.tick.ticks_since(before.tick) as f64 / elapsed,
        "orders_per_s": orders.load(Ordering::Relaxed) as f64 / (elapsed + 2.0),
        "shots_total": shots,
        "ships_destroyed_total": destroyed,
    }))
}

/// Shots fired and ships destroyed, read back from the home system's log.
fn count_combat(datadir: &DataDir, galaxy: &Galaxy) -> anyhow::Result<(u64, u64)> {
    let path = datadir.system_log(galaxy.slug(galaxy.home()));
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let (mut shots, mut destroyed) = (0u64, 0u64);
    for line in text.lines() {
        let Ok(rec) = store::record::parse_line(line.as_bytes()) else {
            continue;
        };
        match rec.kind {
            "combat" => shots += rec.num::<u64>("shots").unwrap_or(0),
            "destroyed" => destroyed += 1,
            _ => {}
        }
    }
    Ok((shots, destroyed))
}

/// Prints the battle's lines of the table.
pub fn print(f: &serde_json::Value, budget_us: u32) {
    let p99 = f["tick_p99_us"].as_u64().unwrap_or(0);
    println!(
        "  battle: {} ships in one system, {:.0} s",
        f["players"],
        f["seconds"].as_f64().unwrap_or(0.0)
    );
    println!(
        "    tick p50 {} us, p99 {p99} us   budget {budget_us} us: {}",
        f["tick_p50_us"],
        if p99 < u64::from(budget_us) {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "    ticks started late by p50 {} us, p99 {} us; dilation {:.2} at the end",
        f["tick_late_p50_us"],
        f["tick_late_p99_us"],
        f["dilation"].as_f64().unwrap_or(0.0)
    );
    println!(
        "    ticks achieved {:.1} /s (10 asked); {} shots, {} ships destroyed in all; {:.0} orders/s",
        f["ticks_per_s"].as_f64().unwrap_or(0.0),
        f["shots_total"],
        f["ships_destroyed_total"],
        f["orders_per_s"].as_f64().unwrap_or(0.0)
    );
}
