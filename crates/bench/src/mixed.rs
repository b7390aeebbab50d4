//! The jump-and-trade workload on mltrader's embedded mesh, for `bench postgres`: each player
//! jumps to a neighbour, waits for the landing, trades once (sells what it holds, or buys 1 to
//! 10 units of a random good), and jumps again. The same loop the PostgreSQL side runs, so the
//! two can be compared trade for trade. Measures jumps/s, trades/s and the trade latency (from
//! the request to the acknowledgement, which comes once the `trade` record is durable).
//!
//! Prints nothing; never asserts.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::percentile;
use mesh::directory::SystemPlace;
use mesh::{Mesh, MeshConfig};
use sim::galaxy::Galaxy;
use sim::goods::{Good, GOOD_COUNT};
use sim::market::{Order, Side};
use sim::rng::Rng;
use store::datadir::DataDir;

/// What the mixed phase measured.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct MixedFigures {
    pub players: usize,
    pub seconds: f64,
    pub jumps_per_s: f64,
    pub trades: usize,
    pub trades_per_s: f64,
    pub trade_p50_ms: f64,
    pub trade_p99_ms: f64,
    /// Trades the market refused (out of stock, full, till empty): nothing recorded.
    pub trades_refused: u64,
}

#[derive(Default)]
struct Tally {
    jumps: usize,
    trade_ms: Vec<f64>,
    refused: u64,
}

/// Runs `players` through the loop for `seconds` (after a one-second warm-up) on a fresh
/// mesh in `dir`, with the settings of `bench jumps` (100 Hz ticks, no travel time).
pub async fn measure(
    dir: &std::path::Path,
    players: usize,
    seconds: f64,
    seed: u64,
) -> anyhow::Result<MixedFigures> {
    let mut config = MeshConfig {
        tick_hz: 100,
        ..MeshConfig::default()
    };
    config.rules.starting_fuel = u32::MAX / 2;
    config.rules.fuel_capacity = u32::MAX / 2;
    config.rules.starting_credits = 1_000_000_000;
    config.rules.ticks_per_ly = 0;
    let (mesh, _) = Mesh::start(DataDir::at(dir), Galaxy::default_galaxy(), config)
        .await
        .context("cannot start the mesh")?;
    for i in 0..players {
        mesh.join(&format!("m{i}"), "bench").await?;
    }
    let measuring = Arc::new(Mutex::new(None::<Instant>));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let deadline = Instant::now() + Duration::from_secs_f64(seconds + 1.0);
    let mut tasks = Vec::new();
    for i in 0..players {
        let (mesh, tally) = (mesh.clone(), tally.clone());
        let measuring = measuring.clone();
        tasks.push(tokio::spawn(async move {
            let name = format!("m{i}");
            let mut rng = Rng::from_seed(seed.wrapping_add(i as u64));
            let mut holding: Option<(Good, u32)> = None;
            while Instant::now() < deadline {
                let Some(SystemPlace::In(here)) = mesh.locate(&name) else {
                    mesh.wait_landing(&name).await?;
                    continue;
                };
                let options = mesh.galaxy().neighbours(here);
                let to = options[rng.below(options.len() as u64) as usize];
                mesh.jump(&name, to).await?;
                mesh.wait_landing(&name).await?;
                let order = match holding {
                    Some((good, qty)) => Order {
                        side: Side::Sell,
                        good,
                        qty,
                        price_limit_cr: None,
                    },
                    None => Order {
                        side: Side::Buy,
                        good: Good::ALL[rng.below(GOOD_COUNT as u64) as usize],
                        qty: rng.range_inclusive(1, 10) as u32,
                        price_limit_cr: None,
                    },
                };
                let started = Instant::now();
                let result = mesh.trade(&name, order).await;
                let ms = started.elapsed().as_secs_f64() * 1e3;
                let counting = measuring.lock().unwrap().is_some();
                let mut t = tally.lock().unwrap();
                match result {
                    Ok(_) => {
                        holding = match order.side {
                            Side::Buy => Some((order.good, order.qty)),
                            Side::Sell => None,
                        };
                        if counting {
                            t.trade_ms.push(ms);
                        }
                    }
                    Err(mesh::MeshError::Rejected(_)) => t.refused += u64::from(counting),
                    Err(e) => return Err(e),
                }
                if counting {
                    t.jumps += 1;
                }
            }
            Ok::<(), mesh::MeshError>(())
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    *measuring.lock().unwrap() = Some(Instant::now());
    for t in tasks {
        t.await??;
    }
    let elapsed = measuring
        .lock()
        .unwrap()
        .map_or(seconds, |s| s.elapsed().as_secs_f64());
    mesh.stop().await?;
    let mut t = std::mem::take(&mut *tally.lock().unwrap());
    t.trade_ms.sort_by(f64::total_cmp);
    Ok(MixedFigures {
        players,
        seconds: elapsed,
        jumps_per_s: t.jumps as f64 / elapsed,
        trades: t.trade_ms.len(),
        trades_per_s: t.trade_ms.len() as f64 / elapsed,
        trade_p50_ms: percentile(&t.trade_ms, 50.0),
        trade_p99_ms: percentile(&t.trade_ms, 99.0),
        trades_refused: t.refused,
    })
}
