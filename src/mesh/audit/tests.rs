//! The auditor proven: a sound run audits clean, and each problem `check` can report is
//! caught on a data directory that has exactly that problem.

use super::*;
use crate::mesh::directory::Location;
use crate::mesh::{Mesh, MeshConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_the_logs_gives_the_live_state_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let datadir = DataDir::at(dir.path());
    let galaxy = Galaxy::default_galaxy();
    let mut config = MeshConfig {
        tick_hz: 200,
        ..MeshConfig::default()
    };
    config.rules.ticks_per_ly = 1;
    let (mesh, _) = Mesh::start(datadir.clone(), galaxy.clone(), config)
        .await
        .unwrap();
    for i in 0..12 {
        mesh.join(&format!("p {i}"), "k").await.unwrap();
    }
    for j in 0..60usize {
        let name = format!("p {}", j % 12);
        let Some(Location::In(here)) = mesh.locate(&name) else {
            panic!("{name} is not in a system");
        };
        if j % 5 == 0 {
            let _ = mesh.refuel(&name, None).await;
        }
        let options = mesh.galaxy().neighbours(here);
        mesh.jump(&name, options[j % options.len()]).await.unwrap();
        mesh.wait_landing(&name).await.unwrap();
    }
    let live = mesh.stop().await.unwrap();
    let replayed = audit(&datadir, &galaxy);
    assert!(replayed.ok(), "{:?}", replayed.problems);
    assert_eq!(live.len(), galaxy.len());
    for s in &live {
        assert_eq!(
            replayed.system_hashes.get(&s.slug),
            Some(&s.state_hash),
            "{} replays to another state",
            s.system
        );
    }
    let spent = replayed.credits_spent;
    assert!(spent > 0, "some fuel was bought");
    assert_eq!(replayed.credits_held, replayed.credits_granted - spent);
}
