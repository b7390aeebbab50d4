//! The mesh on the in-memory store ([`store::backend::MemLogs`]): it runs, a write fails or
//! the machine crashes, and a restart on what the crash left loses nothing acknowledged.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sim::galaxy::{Galaxy, SystemId};
use store::backend::{system_log, MemLogs, MemSnapshots, Storage, TRANSITIONS_LOG};
use store::datadir::DataDir;
use store::disk::Fault;

use crate::directory::SystemPlace;
use crate::test_support::fast_config;
use crate::{Mesh, MeshError};

const PLAYERS: usize = 8;

/// A mesh's in-memory storage (the player logs, which stay files, in `dir`).
struct Machine {
    logs: Arc<MemLogs>,
    snapshots: Arc<MemSnapshots>,
    dir: tempfile::TempDir,
    galaxy: Galaxy,
}

impl Machine {
    fn new() -> Machine {
        Machine {
            logs: Arc::new(MemLogs::new()),
            snapshots: Arc::new(MemSnapshots::new()),
            dir: tempfile::tempdir().unwrap(),
            galaxy: Galaxy::default_galaxy(),
        }
    }

    async fn start(&self) -> (Mesh, crate::RecoveryReport) {
        let storage = Storage {
            logs: self.logs.clone(),
            snapshots: self.snapshots.clone(),
        };
        let datadir = DataDir::at(self.dir.path());
        Mesh::start_on(storage, datadir, self.galaxy.clone(), fast_config())
            .await
            .expect("start a mesh on memory")
    }

    /// The machine crashes (`tear`: half of each log's unsynced write stays): what a restart
    /// finds.
    fn crash(self, tear: bool) -> Machine {
        Machine {
            logs: Arc::new(self.logs.crash(tear)),
            snapshots: Arc::new(self.snapshots.crash()),
            dir: self.dir,
            galaxy: self.galaxy,
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Players join and each jumps once (acknowledged, landed): where each is.
async fn acknowledged_places(mesh: &Mesh) -> BTreeMap<String, SystemId> {
    let mut places = BTreeMap::new();
    for i in 0..PLAYERS {
        let name = format!("p {i}");
        mesh.join(&name, "k").await.unwrap();
        let home = mesh.galaxy().home();
        let neighbours = mesh.galaxy().neighbours(home);
        let to = neighbours[i % neighbours.len()];
        mesh.jump(&name, to).await.unwrap();
        assert_eq!(mesh.wait_landing(&name).await.unwrap().system, to);
        places.insert(name, to);
    }
    places
}

/// A jump of `name` that the injected fault keeps from being acknowledged: its error (or
/// none, if it never answered).
async fn unacknowledged_jump(mesh: &Mesh, name: &str, from: SystemId) -> Option<MeshError> {
    let to = mesh.galaxy().neighbours(from)[0];
    match tokio::time::timeout(Duration::from_secs(10), mesh.jump(name, to)).await {
        Ok(Ok(ack)) => panic!("a jump was acknowledged though its write failed: {ack:?}"),
        Ok(Err(e)) => Some(e),
        Err(_) => None,
    }
}

/// Restarts on `machine`: every acknowledged place holds (a landing the crash lost is landed
/// again from its committed jump); then a clean stop and a second
/// restart give the same state hashes (what was recovered is what is durable).
fn restart_and_check(
    machine: &Machine,
    acked: &BTreeMap<String, SystemId>,
) -> crate::RecoveryReport {
    let rt = runtime();
    let report = rt.block_on(async {
        let (mesh, report) = machine.start().await;
        for (name, system) in acked {
            // A landing is told before its record is durable (it is as durable as its
            // committed `jump`: recovery lands it again), so a crash may leave a player on the
            // way to where they landed: wait for the landing, which must be there.
            let landed = tokio::time::timeout(Duration::from_secs(10), mesh.wait_landing(name))
                .await
                .unwrap_or_else(|_| panic!("{name} never landed again: {}", report.summary()))
                .unwrap();
            assert_eq!(landed.system, *system, "{name} landed elsewhere");
            assert_eq!(
                mesh.locate(name),
                Some(SystemPlace::In(*system)),
                "{name}'s acknowledged jump was lost: {}",
                report.summary()
            );
        }
        assert_eq!(report.players, PLAYERS, "{}", report.summary());
        let first = hashes(mesh.stop().await.unwrap());
        let (again, _) = machine.start().await;
        let second = hashes(again.stop().await.unwrap());
        assert_eq!(
            first, second,
            "a restart on the same durable logs gives the same state"
        );
        report
    });
    rt.shutdown_timeout(Duration::from_secs(5));
    report
}

fn hashes(statuses: Vec<crate::ShardStatus>) -> BTreeMap<String, String> {
    statuses
        .into_iter()
        .map(|s| (s.shard, s.state_hash))
        .collect()
}

/// A crash while the transition log's last write was written but its sync failed: that jump
/// is never acknowledged, the restart finds half of it (torn) or none of it, and every
/// acknowledged jump is where it was.
#[test]
fn a_crash_with_a_torn_write_loses_nothing_acknowledged() {
    let machine = Machine::new();
    let rt = runtime();
    let acked = rt.block_on(async {
        let (mesh, _) = machine.start().await;
        let acked = acknowledged_places(&mesh).await;
        machine.logs.inject(TRANSITIONS_LOG, 1, Fault::Eio);
        let err = unacknowledged_jump(&mesh, "p 0", acked["p 0"]).await;
        if let Some(e) = err {
            let e = e.to_string();
            assert!(e.contains("memory:transitions") && e.contains("EIO"), "{e}");
        }
        acked
    });
    let unsynced = machine.logs.file(TRANSITIONS_LOG).lock().unsynced.len();
    assert!(unsynced > 0, "the failed write is in the log, not synced");
    let machine = machine.crash(true);
    rt.shutdown_timeout(Duration::from_secs(5));
    let report = restart_and_check(&machine, &acked);
    assert!(
        report
            .torn_tails_cut
            .iter()
            .any(|t| t.starts_with("memory:transitions")),
        "the torn write is cut: {}",
        report.summary()
    );
}

/// A full disk under a system's log: the jump that needed it fails with an error naming the
/// log and the cause, and a restart on what was durable loses nothing acknowledged.
#[test]
fn a_full_disk_fails_the_write_clearly_and_loses_nothing_acknowledged() {
    let machine = Machine::new();
    let rt = runtime();
    let acked = rt.block_on(async {
        let (mesh, _) = machine.start().await;
        let acked = acknowledged_places(&mesh).await;
        let here = acked["p 1"];
        let log = system_log(mesh.galaxy().slug(here));
        machine.logs.inject(&log, 0, Fault::Fail);
        let err = unacknowledged_jump(&mesh, "p 1", here).await;
        let err = err.expect("the failed append is answered").to_string();
        assert!(
            err.contains(&format!("memory:{log}")) && err.contains("no space left on device"),
            "{err}"
        );
        acked
    });
    let machine = machine.crash(false);
    rt.shutdown_timeout(Duration::from_secs(5));
    restart_and_check(&machine, &acked);
}
