//! Snapshots in the JetStream object store ([`NatsSnapshots`]) against a real three-node
//! cluster: put, list, get, keep the newest; a missing, torn or damaged object named in the
//! error; the galaxy's definition kept once; and puts and gets across the death of the
//! bucket's stream leader (the open question of /work/shared/DISTRIBUTED.md).
//!
//! Each test uses a bucket of its own on the shared cluster, except the leader's death, which
//! runs on a cluster of its own.

mod common;

use std::time::{Duration, Instant};

use mltrader_nats::snapshots::object_name;
use mltrader_nats::NatsSnapshots;
use store::backend::SnapshotStore;
use store::snapshot::{encode, SnapshotMeta};

fn meta(name: &str, upto: u64) -> SnapshotMeta {
    SnapshotMeta {
        name: name.into(),
        upto_seq: upto,
        log_offset: upto * 40,
        log_line: upto + 1,
        state_hash: 0xfeed_0000 + upto,
    }
}

/// A snapshot of `name` up to `upto` whose body is `players` records.
fn snapshot(name: &str, upto: u64, players: u64) -> Vec<u8> {
    encode(&meta(name, upto), |w| {
        for i in 0..players {
            w.record("snap.player", |l| {
                l.field("player", &format!("p{i}")).num("upto", upto);
            });
        }
    })
}

/// The players a snapshot's body names, read back through the store.
fn players(store: &dyn SnapshotStore, name: &str, upto: u64) -> Vec<String> {
    let mut seen = Vec::new();
    let m = store
        .get(name, upto, &mut |r| {
            seen.push(r.get("player").unwrap().to_string());
            Ok(())
        })
        .unwrap();
    assert_eq!(m, meta(name, upto));
    seen
}

#[test]
fn snapshots_are_put_listed_got_and_only_the_newest_two_kept() {
    let Some(cluster) = common::shared() else {
        return;
    };
    let nats = cluster.connect("a");
    let store = NatsSnapshots::open(&nats, "test_snaps_basic", 3).unwrap();
    assert_eq!(store.list("sol").unwrap(), Vec::<u64>::new());
    // Bigger than one chunk of the object store (128 KiB), so that it spans several.
    let big = snapshot("sol", 30, 12_000);
    assert!(big.len() > 3 * 128 * 1024, "{} bytes", big.len());
    for (upto, bytes) in [
        (10, snapshot("sol", 10, 3)),
        (20, snapshot("sol", 20, 4)),
        (30, big.clone()),
    ] {
        store.put(&meta("sol", upto), &bytes).unwrap();
    }
    store
        .put(&meta("sol.2", 5), &snapshot("sol.2", 5, 1))
        .unwrap();
    assert_eq!(
        store.list("sol").unwrap(),
        vec![20, 30],
        "the newest two are kept"
    );
    assert_eq!(
        store.list("sol.2").unwrap(),
        vec![5],
        "sol's prefix is not sol.2's"
    );
    assert_eq!(players(&store, "sol", 20), vec!["p0", "p1", "p2", "p3"]);
    assert_eq!(players(&store, "sol", 30).len(), 12_000);
    assert_eq!(store.bytes_of("sol", 30).unwrap(), big, "byte for byte");
    assert_eq!(
        store.all().unwrap(),
        vec![("sol".into(), 20), ("sol".into(), 30), ("sol.2".into(), 5)]
    );
    // Another node sees the same, at once (metadata is read from the stream leader).
    let other = NatsSnapshots::open(&cluster.connect("b"), "test_snaps_basic", 3).unwrap();
    assert_eq!(other.list("sol").unwrap(), vec![20, 30]);
    store.keep_newest("sol", 1).unwrap();
    assert_eq!(other.list("sol").unwrap(), vec![30]);
    assert_eq!(
        store.describe("sol", 30),
        "nats:test_snaps_basic/sol@30",
        "a message names the bucket and the object"
    );
}

#[test]
fn a_missing_torn_or_damaged_snapshot_is_refused_naming_the_object() {
    let Some(cluster) = common::shared() else {
        return;
    };
    let nats = cluster.connect("a");
    let store = NatsSnapshots::open(&nats, "test_snaps_bad", 3).unwrap();
    let mut visited = 0;
    let missing = store
        .get("sol", 7, &mut |_| {
            visited += 1;
            Ok(())
        })
        .unwrap_err()
        .to_string();
    assert!(
        missing.contains("test_snaps_bad/sol@7") && missing.contains("no such object"),
        "{missing}"
    );

    // Torn: the snapshot's last records never made it (the writer's bytes were cut).
    let whole = snapshot("sol", 9, 50);
    store
        .put(&meta("sol", 9), &whole[..whole.len() - 30])
        .unwrap();
    let torn = store.get("sol", 9, &mut |_| {
        visited += 1;
        Ok(())
    });
    let torn = torn.unwrap_err().to_string();
    assert!(
        torn.contains("sol@9") && torn.contains("not a complete snapshot"),
        "{torn}"
    );

    // Damaged: a chunk the object's digest does not cover.
    store
        .put(&meta("sol", 11), &snapshot("sol", 11, 50))
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let js = cluster.raw().await;
        let bucket = js.get_object_store("test_snaps_bad").await.unwrap();
        let info = bucket.info(object_name("sol", 11)).await.unwrap();
        js.publish(
            format!("$O.test_snaps_bad.C.{}", info.nuid),
            "1 x ~00000000\n".into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    });
    let damaged = store.get("sol", 11, &mut |_| {
        visited += 1;
        Ok(())
    });
    let damaged = damaged.unwrap_err().to_string();
    assert!(
        damaged.contains("sol@11") && damaged.contains("torn or damaged"),
        "{damaged}"
    );
    assert_eq!(visited, 0, "no record of a bad snapshot reaches the caller");

    // A snapshot stored under another's name.
    store
        .put(&meta("sol", 12), &snapshot("sol", 13, 1))
        .unwrap();
    let misnamed = store
        .get("sol", 12, &mut |_| Ok(()))
        .unwrap_err()
        .to_string();
    assert!(misnamed.contains("up to record 13"), "{misnamed}");
}

#[test]
fn the_galaxy_is_kept_once_and_a_different_one_refused() {
    let Some(cluster) = common::shared() else {
        return;
    };
    let store = NatsSnapshots::open(&cluster.connect("a"), "test_snaps_galaxy", 3).unwrap();
    assert_eq!(store.galaxy().unwrap(), None);
    store
        .keep_galaxy(b"[galaxy]\nname = \"one\"\n", "a/galaxy.toml")
        .unwrap();
    store
        .keep_galaxy(b"[galaxy]\nname = \"one\"\n", "b/galaxy.toml")
        .unwrap();
    let refused = store
        .keep_galaxy(b"[galaxy]\nname = \"two\"\n", "c/galaxy.toml")
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("c/galaxy.toml") && refused.contains("differs"),
        "{refused}"
    );
    assert_eq!(
        store.galaxy().unwrap().unwrap(),
        b"[galaxy]\nname = \"one\"\n"
    );
}

/// A put cut short leaves chunks no object refers to; the sweep purges them once old enough,
/// and never the chunks of an object.
#[test]
fn chunks_of_a_put_cut_short_are_swept_and_objects_kept() {
    let Some(cluster) = common::shared() else {
        return;
    };
    let store = NatsSnapshots::open(&cluster.connect("a"), "test_snaps_orphans", 3).unwrap();
    let whole = snapshot("sol", 40, 3_000);
    store.put(&meta("sol", 40), &whole).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let chunk_subjects = || {
        rt.block_on(async {
            let js = cluster.raw().await;
            let stream = js.get_stream("OBJ_test_snaps_orphans").await.unwrap();
            let info = stream
                .info_with_subjects("$O.test_snaps_orphans.C.>")
                .await
                .unwrap();
            let subjects: Vec<(String, usize)> =
                futures_util::TryStreamExt::try_collect(info).await.unwrap();
            subjects.len()
        })
    };
    assert_eq!(chunk_subjects(), 1);
    // The chunks of a put that died before its metadata.
    rt.block_on(async {
        let js = cluster.raw().await;
        for _ in 0..3 {
            js.publish("$O.test_snaps_orphans.C.cutshort", vec![b'x'; 1000].into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
    });
    assert_eq!(chunk_subjects(), 2);
    assert_eq!(
        store
            .sweep_orphan_chunks(Duration::from_secs(3_600))
            .unwrap(),
        0,
        "young chunks may be a put in progress"
    );
    assert_eq!(store.sweep_orphan_chunks(Duration::ZERO).unwrap(), 1);
    assert_eq!(chunk_subjects(), 1);
    assert_eq!(
        store.bytes_of("sol", 40).unwrap(),
        whole,
        "the object's chunks stay"
    );
}

/// The open question: the object store after a leader change. The leader of the bucket's
/// stream is SIGKILLed; a put made at once must succeed (retried through the election) and be
/// read back whole, as must the snapshot put before, from another connection too.
#[test]
fn snapshots_survive_the_death_of_the_buckets_stream_leader() {
    let Some(cluster) = common::Cluster::start_own() else {
        return;
    };
    let nats = cluster.connect("a");
    let store = NatsSnapshots::open(&nats, "test_snaps_leader", 3).unwrap();
    let before = snapshot("sol", 100, 2_000);
    store.put(&meta("sol", 100), &before).unwrap();
    // Connected before the kill: the safety check reads every server's /varz.
    let other = NatsSnapshots::open(&cluster.connect("b"), "test_snaps_leader", 3).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let leader = rt.block_on(cluster.leader_of("OBJ_test_snaps_leader"));
    cluster.kill(&leader);
    let killed = Instant::now();
    let after = snapshot("sol", 200, 2_000);
    store.put(&meta("sol", 200), &after).unwrap();
    let put_ms = killed.elapsed().as_millis();
    let new_leader = rt.block_on(cluster.leader_of("OBJ_test_snaps_leader"));
    assert_ne!(new_leader, leader);
    let got = Instant::now();
    assert_eq!(store.bytes_of("sol", 100).unwrap(), before);
    assert_eq!(store.bytes_of("sol", 200).unwrap(), after);
    let get_ms = got.elapsed().as_millis();
    assert_eq!(other.list("sol").unwrap(), vec![100, 200]);
    eprintln!(
        "leader {leader} killed: the next put took {put_ms} ms (new leader {new_leader}), then both gets {get_ms} ms"
    );
    // The killed server comes back and catches up; the snapshots stay readable.
    cluster.restart_dead();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(other.bytes_of("sol", 200).unwrap(), after);
}
