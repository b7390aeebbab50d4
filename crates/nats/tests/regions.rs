//! Two regions (issue 20) of one server each, joined by a leafnode through a `WanProxy` with a
//! delay: region subjects (logs `mlt.<region>.log.…`, pair subjects in the destination's home
//! `mlt.<home>.jump.…`), a jump across the link handed exactly once and read in order, the
//! copies (mirrors) of the other region's streams with their lag while the link is cut and
//! after it heals, and a promotion: the lost region killed, its systems re-homed from the copy
//! into the survivor (same bytes, idempotent on a rerun), the recovery point reported (at most
//! the copy's lag while the lost region is down, exactly once it can be read again).
//!
//! Small by default; by hand: `MLT_REGIONS_JUMPS=2000 MLT_REGIONS_RECORDS=5000
//! MLT_REGIONS_DELAY_MS=50 cargo test -p mltrader-nats --test regions -- --nocapture`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh::codec::Jump;
use mesh::links::{Arrived, LinkError, Links};
use mltrader_nats::copies::{copy_status, ensure_copies};
use mltrader_nats::logs::NatsLogs;
use mltrader_nats::rehome::{homes, rehome_from_copy, LostAfter};
use mltrader_nats::testing::TestRegions;
use mltrader_nats::NatsLinks;
use sim::galaxy::{Galaxy, SystemId};
use sim::ids::{Tick, Xfer};
use sim::instance::InstanceId;
use sim::player::Player;
use sim::rules::Rules;
use store::backend::LogStore;
use store::log::{Log, Position};
use store::seq::Seq;
use tokio::sync::mpsc;

fn workspace_root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn jump(from: InstanceId, to: SystemId, xfer: u64) -> Jump {
    Jump {
        from,
        xfer: Xfer(xfer),
        to: InstanceId::primary(to),
        t: Tick(100 + xfer),
        travel_ticks: 3,
        player: Player::starter(&format!("pilot{xfer}"), &Rules::default()),
        tseq: Seq(0),
    }
}

/// Appends `n` records to `log`, `per_batch` a group commit; the last record's number.
fn append(log: &Log, n: u64, per_batch: u64) -> Seq {
    let mut last = Seq(0);
    let mut i = 0;
    while i < n {
        let items: Vec<u64> = (i..(i + per_batch).min(n)).collect();
        i += items.len() as u64;
        last = log
            .append_batch(
                &items,
                |_| "test",
                |k, line| {
                    line.num("n", k);
                },
            )
            .unwrap()
            .unwrap();
        log.wait_durable(last).unwrap();
    }
    last
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Every system homed in `us` but `a` (the lane's origin), which is in `eu`.
fn homes_for(g: &Galaxy, a: SystemId) -> HashMap<String, String> {
    g.ids()
        .map(|id| {
            let home = if id == a { "eu" } else { "us" };
            (g.slug(id).to_string(), home.to_string())
        })
        .collect()
}

#[test]
fn two_regions_hand_jumps_over_copy_each_other_and_promote() {
    let Some(exe) =
        mltrader_nats::locate::nats_server_for_test(&workspace_root(), "regions (issue 20)")
    else {
        return;
    };
    let jumps = env_or("MLT_REGIONS_JUMPS", 20);
    let records = env_or("MLT_REGIONS_RECORDS", 200);
    let delay_ms = env_or("MLT_REGIONS_DELAY_MS", 20);
    let mut regions = TestRegions::start(exe, &["eu", "us"], 1, delay_ms);
    let g = Arc::new(Galaxy::default_galaxy());
    let (a, b) = g.lanes()[0];
    let (slug_a, slug_b) = (g.slug(a).to_string(), g.slug(b).to_string());
    let eu = regions.connect("eu", "eu-1");
    let us = regions.connect("us", "us-1");

    // Region subjects: each region's logs capture only its own.
    let eu_logs = NatsLogs::open(&eu, 1).unwrap();
    let us_logs = NatsLogs::open(&us, 1).unwrap();
    assert_eq!(eu_logs.subject_of("systems/sol"), "mlt.eu.log.systems.sol");
    let log_b = mltrader_store_name(&slug_b);
    // us's owner of b writes under lease epoch 5: the copy's messages carry it.
    let us_unit = us_logs.for_unit(5);
    let (us_log, _) = us_unit
        .open(&log_b, Position::BEGINNING, &mut |_| Ok(()))
        .unwrap();
    append(&us_log, records, 10);

    // A jump from a (eu) to b (us): its pair subject lives in b's home; the publish crosses
    // the link and its ack comes back over it.
    let eu_links = NatsLinks::open(&eu, g.clone(), 1, "eu-1").unwrap();
    let us_links = NatsLinks::open(&us, g.clone(), 1, "us-1").unwrap();
    eu_links.set_homes(homes_for(&g, a));
    us_links.set_homes(homes_for(&g, a));
    assert_eq!(
        eu_links.subject(a, b),
        format!("mlt.us.jump.{slug_a}.{slug_b}")
    );
    assert_eq!(
        eu_links.subject(b, a),
        format!("mlt.eu.jump.{slug_b}.{slug_a}")
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let origin = InstanceId::primary(a);
    let (sink, mut arrivals) = mpsc::channel::<Result<Arrived, LinkError>>(4096);
    us_links.read_towards(b, BTreeMap::new(), sink).unwrap();
    let mut took = Vec::new();
    rt.block_on(async {
        eu_links.fence_outgoing(a, 7).await.unwrap();
        for x in 1..=jumps {
            let start = Instant::now();
            eu_links.publish(7, jump(origin, b, x)).await.unwrap();
            took.push(start.elapsed());
        }
        // A republish of a stored jump (a new owner's) is a duplicate, not a second jump.
        eu_links.publish(7, jump(origin, b, 1)).await.unwrap();
        let mut read = Vec::new();
        while read.len() < jumps as usize {
            let got = tokio::time::timeout(Duration::from_secs(30), arrivals.recv())
                .await
                .expect("jumps arrive within 30 s")
                .expect("the reader runs")
                .expect("a jump");
            read.push(got.jump.xfer.0);
        }
        assert_eq!(
            read,
            (1..=jumps).collect::<Vec<_>>(),
            "each jump once, in order"
        );
        let more = tokio::time::timeout(Duration::from_millis(500), arrivals.recv()).await;
        assert!(more.is_err(), "the republish is not read again: {more:?}");
    });
    took.sort();
    println!(
        "FIGURE cross-region jump publish (eu -> us pair subject), one-way delay {delay_ms} ms: p50 {:?} p99 {:?} ({jumps} jumps, one in flight)",
        percentile(&took, 0.5),
        percentile(&took, 0.99)
    );
    assert!(
        percentile(&took, 0.5) >= Duration::from_millis(2 * delay_ms),
        "the ack comes back over the link"
    );

    // The copies: eu mirrors every stream of us.
    let made = ensure_copies(&eu, "us", 1).unwrap();
    assert!(made.contains(&"MLT_LOGS_OF_us".to_string()), "{made:?}");
    let caught_up = wait_copy(&eu, "MLT_LOGS", Duration::from_secs(30));
    println!("FIGURE copy of us's logs caught up in {caught_up:?}");
    wait_copy(&eu, "MLT_JUMPS", Duration::from_secs(30));
    let copy = NatsLogs::open_copy(&eu, "us").unwrap();
    assert_eq!(
        copy.bytes_of(&log_b).unwrap().0,
        us_logs.bytes_of(&log_b).unwrap().0,
        "the copy holds the same bytes"
    );
    assert!(
        copy.open(&log_b, Position::BEGINNING, &mut |_| Ok(()))
            .is_err(),
        "a copy is never opened for writing"
    );

    // Copy lag under a write load: sampled while us writes.
    let mut lags = Vec::new();
    for _ in 0..10 {
        append(&us_log, records / 10, 10);
        let status = copy_status(&eu, "us").unwrap();
        let logs = status.iter().find(|s| s.stream == "MLT_LOGS").unwrap();
        lags.push((logs.lag_messages, logs.lag_s));
    }
    let mut by_s: Vec<f64> = lags.iter().map(|l| l.1).collect();
    by_s.sort_by(|x, y| x.partial_cmp(y).unwrap());
    println!(
        "FIGURE copy lag of MLT_LOGS sampled after each of 10 group-commit bursts: p50 {:.3} s p99 {:.3} s; messages {:?}",
        by_s[by_s.len() / 2],
        by_s[by_s.len() - 1],
        lags.iter().map(|l| l.0).collect::<Vec<_>>()
    );
    wait_copy(&eu, "MLT_LOGS", Duration::from_secs(30));

    // The link cut: us's own writes go on; the copy lags and says so; eu's own writes too.
    regions.cut();
    let cut_at = Instant::now();
    let before = us_logs.bytes_of(&log_b).unwrap().1;
    append(&us_log, 20, 5);
    let (eu_log, _) = eu_logs
        .open(
            &mltrader_store_name(&slug_a),
            Position::BEGINNING,
            &mut |_| Ok(()),
        )
        .unwrap();
    append(&eu_log, 20, 5);
    println!(
        "FACT with the link cut, each region wrote 4 group commits of its own in {:?}",
        cut_at.elapsed()
    );
    let status = copy_status(&eu, "us").unwrap();
    let logs = status
        .iter()
        .find(|s| s.stream == "MLT_LOGS")
        .unwrap()
        .clone();
    assert!(
        !logs.reachable,
        "us does not answer across a cut link: {logs:?}"
    );
    assert!(logs.copied_last_seq <= before, "{logs:?}");
    println!("FACT copy status of MLT_LOGS while cut: {logs:?}");
    // A takeover of a (a new epoch) while the link is cut: its pair subjects live in us, so
    // their fences are owed, not waited for.
    let fence_started = Instant::now();
    rt.block_on(eu_links.fence_outgoing(a, 8))
        .expect("fencing does not wait for a cut link");
    let fence_took = fence_started.elapsed();
    println!("FACT with the link cut, fence_outgoing of a unit whose lanes all cross the link took {fence_took:?}");
    assert!(fence_took < Duration::from_secs(2), "{fence_took:?}");
    regions.heal();
    // Its first jump after the heal stores the owed fence first, then the jump.
    rt.block_on(async {
        eu_links
            .publish(8, jump(origin, b, jumps + 1))
            .await
            .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(30), arrivals.recv())
            .await
            .expect("the jump arrives")
            .unwrap()
            .unwrap();
        assert_eq!(
            got.jump.xfer.0,
            jumps + 1,
            "the fence mark is skipped, the jump read"
        );
    });
    let stored = eu_links.messages_of(a, b).unwrap();
    let tail: Vec<(Option<String>, bool)> = stored[stored.len() - 2..]
        .iter()
        .map(|m| (m.epoch.clone(), m.payload.windows(5).any(|w| w == b"lease")))
        .collect();
    assert_eq!(
        tail,
        [
            (Some("8".to_string()), true),
            (Some("8".to_string()), false)
        ],
        "the owed fence mark of epoch 8, then the jump"
    );
    eu_links.check_fencing(a, b).unwrap();
    let healed = wait_copy(&eu, "MLT_LOGS", Duration::from_secs(60));
    println!("FIGURE after heal the copy of us's logs caught up in {healed:?}");

    // Writes us acknowledges with the link cut, then us is lost: they are what a promotion
    // cannot recover.
    regions.cut();
    append(&us_log, 10, 5);
    drop(us_log);
    regions.kill_region("us");
    let systems: Vec<String> = g
        .ids()
        .filter(|&id| id != a)
        .map(|id| g.slug(id).to_string())
        .collect();
    let promote_at = Instant::now();
    let points = rehome_from_copy(&eu, "us", &systems).unwrap();
    println!(
        "FIGURE promotion of {} systems took {:?}",
        systems.len(),
        promote_at.elapsed()
    );
    let point_b = points.iter().find(|p| p.system == slug_b).unwrap();
    println!("FACT recovery point of {slug_b} with us down: {point_b:?}");
    assert!(point_b.messages_written > 0);
    assert!(
        point_b.pair_messages_written > 0,
        "the jumps into b are re-homed"
    );
    assert!(
        matches!(point_b.lost_after, LostAfter::AsOfLastContact { .. }),
        "{point_b:?}"
    );
    // The survivor's own subjects hold the same bytes as the copy.
    let eu_logs_again = NatsLogs::open(&eu, 1).unwrap();
    assert_eq!(
        eu_logs_again.bytes_of(&log_b).unwrap().0,
        copy.bytes_of(&log_b).unwrap().0,
        "re-homed bytes are the copy's"
    );
    let home = homes(&eu).unwrap();
    assert_eq!(home[&slug_b].region, "eu");
    assert!(
        home[&slug_b].home_epoch > 7,
        "above every epoch the copy shows: {home:?}"
    );

    // A rerun (after a crash, say) writes nothing twice; once us can be read again, the loss
    // is known exactly: the 10 records written with the link cut (2 group commits).
    regions.link("eu", "us").heal();
    regions.restart_region("us");
    // The leafnode is up; us's JetStream API answers across it a moment later (interest
    // crosses the link after the connection: seen taking longer than one request at 50 ms).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !copy_status(&eu, "us").unwrap().iter().all(|s| s.reachable) {
        assert!(
            Instant::now() < deadline,
            "us's API does not answer 30 s after its restart"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let again = rehome_from_copy(&eu, "us", &systems).unwrap();
    let again_b = again.iter().find(|p| p.system == slug_b).unwrap();
    assert_eq!(again_b.messages_written, 0, "a rerun writes nothing twice");
    assert_eq!(again_b.pair_messages_written, 0);
    println!(
        "FACT recovery point of {slug_b} with us back: {:?}",
        again_b.lost_after
    );
    assert_eq!(again_b.lost_after, LostAfter::Exactly { messages: 2 });

    // The new owner in eu takes b above the home epoch: the re-homed messages keep their
    // writers' epochs, so an owner under an older epoch than theirs is refused (fenced).
    let home_epoch = home[&slug_b].home_epoch;
    assert!(
        eu_logs_again
            .for_unit(4)
            .open(&log_b, Position::BEGINNING, &mut |_| Ok(()))
            .is_err(),
        "an epoch below the copy's (5) is fenced"
    );
    let owner = eu_logs_again.for_unit(home_epoch);
    let (log, _) = owner
        .open(&log_b, Position::BEGINNING, &mut |_| Ok(()))
        .expect("the new owner opens the re-homed log above the home epoch");
    append(&log, 3, 3);
    drop(log);
    // From now on the survivor wrote the subject itself: a late rerun mixes nothing in (the
    // frozen copy has nothing after what was copied; it would be refused if it had).
    let late = rehome_from_copy(&eu, "us", &systems).expect("a late rerun runs");
    assert!(
        late.iter()
            .all(|p| p.messages_written == 0 && p.pair_messages_written == 0),
        "a late rerun writes nothing: {late:?}"
    );
}

/// The log name of system `slug` (`systems/<slug>`).
fn mltrader_store_name(slug: &str) -> String {
    store::backend::system_log(slug)
}

/// Waits until eu's copy of us's `stream` lacks nothing the source holds; how long it took.
fn wait_copy(eu: &mltrader_nats::Nats, stream: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let status = copy_status(eu, "us").unwrap();
        let s = status.iter().find(|s| s.stream == stream).cloned();
        if let Some(s) = &s {
            if s.reachable && s.lag_messages == 0 && s.source_last_seq.is_some() {
                return start.elapsed();
            }
        }
        assert!(
            start.elapsed() < within,
            "copy of {stream} not current after {within:?}: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
