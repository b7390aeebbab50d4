//! Helpers for the mesh's own tests: a fast mesh, players joining, players jumping around.
//! Test code only; nothing here may be used by the running game.

use super::directory::SystemPlace;
use super::{Mesh, MeshConfig};

/// A fast mesh: 200 Hz ticks, one tick per light year, fuel that never runs out, a snapshot
/// every 40 records and a checkpoint every 20 ms.
pub fn fast_config() -> MeshConfig {
    let mut c = MeshConfig {
        tick_hz: 200,
        snapshot_every_records: 40,
        checkpoint_every_ms: 20,
        ..MeshConfig::default()
    };
    c.rules.ticks_per_ly = 1;
    c.rules.starting_fuel = 1_000_000;
    c.rules.fuel_capacity = 1_000_000;
    // No market shocks: at 200 Hz they would add economy records at random to tests that
    // count records (the shocks have tests of their own).
    c.rules.shocks_per_100k_ticks = 0;
    c
}

/// A mesh at 200 Hz and one tick per light year, otherwise the game's own rules (fuel runs
/// out), started on `datadir`.
pub async fn start_quick(datadir: &store::datadir::DataDir, galaxy: &sim::galaxy::Galaxy) -> Mesh {
    let mut config = MeshConfig {
        tick_hz: 200,
        ..MeshConfig::default()
    };
    config.rules.ticks_per_ly = 1;
    let (mesh, _) = Mesh::start(datadir.clone(), galaxy.clone(), config)
        .await
        .expect("start a mesh");
    mesh
}

/// Joins players `p 0` .. `p {players - 1}`.
pub async fn join(mesh: &Mesh, players: usize) {
    for i in 0..players {
        mesh.join(&format!("p {i}"), "k").await.unwrap();
    }
}

/// Makes `jumps` jumps, player after player, each to a neighbour, each waited for to land.
pub async fn jump(mesh: &Mesh, players: usize, jumps: usize) {
    for j in 0..jumps {
        let name = format!("p {}", j % players);
        let here = match mesh.locate(&name) {
            Some(SystemPlace::In(s)) => s,
            _ => mesh.wait_landing(&name).await.unwrap().system,
        };
        let to = mesh.galaxy().neighbours(here)[j % mesh.galaxy().neighbours(here).len()];
        mesh.jump(&name, to).await.unwrap();
        mesh.wait_landing(&name).await.unwrap();
    }
}

/// Waits until no file under `dir` has changed for `QUIET` (at most a minute). A mesh
/// "crashed" by dropping its runtime leaves the logs' committer threads alive (a real crash
/// kills them), still writing what was appended before the drop; a restart that read the logs
/// meanwhile would race them for the same sequence numbers. Once they are done, the directory
/// is what a crash a moment later would have left.
pub fn wait_until_quiet(dir: &std::path::Path) {
    const QUIET: std::time::Duration = std::time::Duration::from_millis(500);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut last = state_of(dir);
    let mut since = std::time::Instant::now();
    while since.elapsed() < QUIET {
        assert!(
            std::time::Instant::now() < deadline,
            "{} kept changing for a minute",
            dir.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
        let now = state_of(dir);
        if now != last {
            last = now;
            since = std::time::Instant::now();
        }
    }
}

/// Every file under `dir` with its length and modification time, sorted.
fn state_of(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                todo.push(e.path());
            } else {
                let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
                out.push((e.path(), meta.len(), modified));
            }
        }
    }
    out.sort();
    out
}
