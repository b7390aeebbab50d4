//! Helpers for the mesh's own tests: a fast mesh, players joining, players jumping around.
//! Test code only; nothing here may be used by the running game.

use super::directory::Location;
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
    c
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
            Some(Location::In(s)) => s,
            _ => mesh.wait_landing(&name).await.unwrap().system,
        };
        let to = mesh.galaxy().neighbours(here)[j % mesh.galaxy().neighbours(here).len()];
        mesh.jump(&name, to).await.unwrap();
        mesh.wait_landing(&name).await.unwrap();
    }
}
