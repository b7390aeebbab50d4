//! A region's snapshots are its own (issue 20; the observation "us's snapshots point past the
//! end of its logs", docs/REGIONS.md "Snapshots stay in their region").
//!
//! Every region has an object store `mlt_snapshots` of the same name in its own JetStream
//! domain. A domain keeps the JetStream *API* apart, and nats-server 2.15.1 denies `$KV.>` and
//! `$OBJ.>` across a leafnode between domains, but an object store's subjects are
//! `$O.<bucket>.C.>` and `$O.<bucket>.M.>`: a put is a plain publish there, the bucket's
//! stream is interest that crosses the leafnode, and without a deny of `$O.>` on the link a
//! snapshot put in one region is stored in the other region's bucket too (seen: `us`'s bucket
//! held `eu`'s object 0.2 s after the put). Recovery takes the newest snapshot of a name in its
//! own bucket, so a unit would start from another region's snapshot: positions in another
//! region's log and jumps stream.
//!
//! This test puts a snapshot in each region with the link up (its stream subjects crossing it,
//! checked first) and asserts that each bucket holds only its own region's.

use std::path::Path;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use mltrader_nats::snapshots::SNAPSHOTS_BUCKET;
use mltrader_nats::testing::TestRegions;
use mltrader_nats::NatsSnapshots;
use store::backend::SnapshotStore;
use store::snapshot::{encode, SnapshotMeta};

fn workspace_root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// How long each bucket is watched after the puts for the other region's object, in
/// milliseconds (a crossing put was stored within 0.2 s when the link let it through).
const WATCH_MS: u64 = 2_000;

/// A snapshot of `name` up to `upto` whose one body record names the region that wrote it.
fn snapshot(name: &str, upto: u64, region: &str) -> (SnapshotMeta, Vec<u8>) {
    let meta = SnapshotMeta {
        name: name.into(),
        upto_seq: upto,
        log_offset: upto * 40,
        log_line: upto + 1,
        state_hash: upto,
    };
    let bytes = encode(&meta, |w| {
        w.record("snap.region", |l| {
            l.field("region", region);
        });
    });
    (meta, bytes)
}

#[test]
fn a_snapshot_put_in_one_region_is_not_stored_in_the_other() {
    let Some(exe) =
        mltrader_nats::locate::nats_server_for_test(&workspace_root(), "regions (issue 20)")
    else {
        return;
    };
    let regions = TestRegions::start(exe, &["eu", "us"], 1, 0);
    let eu = regions.connect("eu", "eu-1");
    let us = regions.connect("us", "us-1");
    let eu_snapshots = NatsSnapshots::open(&eu, SNAPSHOTS_BUCKET, 1).unwrap();
    let us_snapshots = NatsSnapshots::open(&us, SNAPSHOTS_BUCKET, 1).unwrap();

    // The link carries stream subjects both ways (else the test below could not fail): a
    // publish in each region to a stream of the other is acknowledged.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let creds = mltrader_nats::Credentials::load(&regions.creds()).unwrap();
        let mut contexts = Vec::new();
        for region in ["eu", "us"] {
            let client = async_nats::ConnectOptions::with_user_and_password(
                creds.user.clone(),
                creds.password.clone(),
            )
            .connect(regions.region(region).urls())
            .await
            .unwrap();
            let js = jetstream::with_domain(client, region);
            js.create_stream(stream::Config {
                name: "PROBE".into(),
                subjects: vec![format!("probe.{region}.>")],
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .unwrap();
            contexts.push(js);
        }
        for (js, other) in [(&contexts[0], "us"), (&contexts[1], "eu")] {
            let start = Instant::now();
            loop {
                let acked = match js.publish(format!("probe.{other}.x"), "x".into()).await {
                    Ok(ack) => ack.await.is_ok(),
                    Err(_) => false,
                };
                if acked {
                    break;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "no publish towards {other} acknowledged across the link in 30 s"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });

    let (eu_meta, eu_bytes) = snapshot("sol", 7, "eu");
    eu_snapshots.put(&eu_meta, &eu_bytes).unwrap();
    let (us_meta, us_bytes) = snapshot("alpha-centauri", 9, "us");
    us_snapshots.put(&us_meta, &us_bytes).unwrap();
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(WATCH_MS) {
        let in_eu = eu_snapshots.all().unwrap();
        let in_us = us_snapshots.all().unwrap();
        println!("eu's {SNAPSHOTS_BUCKET}: {in_eu:?}; us's: {in_us:?}");
        assert_eq!(
            in_eu,
            vec![("sol".to_string(), 7)],
            "eu's bucket holds only eu's snapshot (us's put crossed the link)"
        );
        assert_eq!(
            in_us,
            vec![("alpha-centauri".to_string(), 9)],
            "us's bucket holds only us's snapshot (eu's put crossed the link)"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
