//! A real shard dilates time: the home system of a real mesh (its own log, group commit,
//! shard loop, HTTP API) ticks at 1,000 Hz, a 1 ms budget, while hundreds of pilots fight there
//! and renew their orders. Its ticks cost more than the budget allows, so the clock slows: the
//! status and `GET /v1/systems` report a dilation factor below 1.0 (the factor is how fast the
//! system's clock runs, budget / period; `crates/mesh/src/dilation.rs`) and a period longer than the
//! budget. When the fighting stops, the factor comes back to 1.0 (real time). The status also
//! reports how late the shard's ticks started.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Http;
use mesh::instances::InstancePolicy;
use mesh::{Mesh, MeshConfig};
use net::{Api, NetConfig};
use sim::galaxy::Galaxy;
use store::datadir::DataDir;

/// Ticks per second: a 1,000 us budget, of which a tick may use 80% before the clock slows.
const TICK_HZ: u32 = 1_000;
const TICK_BUDGET_US: u64 = 1_000_000 / TICK_HZ as u64;
/// Pilots fighting in the home system.
const PILOTS: usize = 1_000;
/// How often each pilot renews its standing order (a fight lasts about ten ticks).
const RENEW_EVERY_MS: u64 = 50;
/// How long the fight may take to slow the clock, and the clock to recover after it.
const SLOWDOWN_TIMEOUT: Duration = Duration::from_secs(30);
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_that_overruns_its_budget_slows_its_clock_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let datadir = DataDir::at(dir.path().join("data"));
    datadir.create().unwrap();
    let galaxy = Galaxy::default_galaxy();
    let home = galaxy.home();
    let home_name = galaxy.name(home).to_string();
    let config = MeshConfig {
        tick_hz: TICK_HZ,
        // One shard holds the whole battle: the instance policy would spread it out.
        instances: InstancePolicy::never(),
        ..MeshConfig::default()
    };
    let (mesh, _) = Mesh::start(datadir.clone(), galaxy, config).await.unwrap();
    let api = Api::build(mesh.clone(), NetConfig::default())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = Http::new(&format!("http://{}", listener.local_addr().unwrap()));
    let app = api
        .router
        .clone()
        .into_make_service_with_connect_info::<SocketAddr>();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let before = mesh.system_status(home).await.unwrap();
    assert_eq!(before.dilation, 1.0, "an idle system runs in real time");
    assert_eq!(before.tick_period_us, TICK_BUDGET_US);

    let name = |i: usize| format!("pilot {i}");
    let mut joins = tokio::task::JoinSet::new();
    for i in 0..PILOTS {
        let mesh = mesh.clone();
        joins.spawn(async move { mesh.join(&name(i), "test").await.map(|_| ()) });
    }
    while let Some(joined) = joins.join_next().await {
        joined.unwrap().unwrap();
    }

    // Idle, the crowd costs the tick nothing to speak of: only the fight slows the clock.
    let settled = Instant::now();
    while mesh.system_status(home).await.unwrap().dilation < 1.0 {
        assert!(
            settled.elapsed() < RECOVERY_TIMEOUT,
            "{PILOTS} idle pilots keep the clock slow"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let idle = mesh.system_status(home).await.unwrap();
    assert_eq!(idle.dilation, 1.0, "{PILOTS} idle pilots: {idle:?}");

    // Every pilot fires at the next (a ring: every ship is a target), and again at another
    // whenever its order ended (a ship destroyed respawns at home, where the battle is).
    let fighting = Arc::new(AtomicBool::new(true));
    let mut pilots = tokio::task::JoinSet::new();
    for i in 0..PILOTS {
        let (mesh, fighting) = (mesh.clone(), fighting.clone());
        pilots.spawn(async move {
            let mut target = (i + 1) % PILOTS;
            let mut orders = 0u64;
            while fighting.load(Ordering::Relaxed) {
                // Refused while shot down (`downed`): the next round tries again.
                if mesh.engage(&name(i), Some(&name(target))).await.is_ok() {
                    orders += 1;
                }
                tokio::time::sleep(Duration::from_millis(RENEW_EVERY_MS)).await;
                target = (target + 7) % PILOTS;
                if target == i {
                    target = (i + 1) % PILOTS;
                }
            }
            orders
        });
    }

    let started = Instant::now();
    let slowest = loop {
        let status = mesh.system_status(home).await.unwrap();
        if status.dilation < 0.9 {
            break status;
        }
        assert!(
            started.elapsed() < SLOWDOWN_TIMEOUT,
            "{PILOTS} pilots fighting at {TICK_HZ} Hz never slowed the clock: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    eprintln!(
        "dilated after {:?}: factor {:.2}, period {} us, tick p99 {} us",
        started.elapsed(),
        slowest.dilation,
        slowest.tick_period_us,
        slowest.tick_p99_us
    );
    assert!(
        slowest.tick_period_us > TICK_BUDGET_US,
        "a slowed clock stretches the period: {slowest:?}"
    );
    // The map players read says so too (while the fight goes on).
    let reported = loop {
        let map = http.get("/v1/systems", None).await;
        assert_eq!(map.status, 200, "{map:?}");
        let sol = map
            .body
            .as_array()
            .expect("systems")
            .iter()
            .find(|s| s["name"] == home_name.as_str())
            .expect("the home system on the map")
            .clone();
        let dilation = sol["dilation"].as_f64().expect("dilation");
        if dilation < 1.0 {
            break dilation;
        }
        assert!(
            started.elapsed() < SLOWDOWN_TIMEOUT,
            "GET /v1/systems never reported the slowdown: {sol}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert!((0.1..1.0).contains(&reported), "{reported}");

    fighting.store(false, Ordering::Relaxed);
    let mut orders = 0;
    while let Some(n) = pilots.join_next().await {
        orders += n.unwrap();
    }
    assert!(
        orders >= PILOTS as u64 / 2,
        "the pilots fought: {orders} orders"
    );

    let stopped = Instant::now();
    loop {
        let status = mesh.system_status(home).await.unwrap();
        if status.dilation == 1.0 {
            assert_eq!(status.tick_period_us, TICK_BUDGET_US);
            eprintln!("back to real time {:?} after the fight", stopped.elapsed());
            break;
        }
        assert!(
            stopped.elapsed() < RECOVERY_TIMEOUT,
            "the clock did not recover after the fight: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Beside the tick's own cost, `GET /v1/status` reports how late ticks started: never
    // exactly on time on a real machine (timer granularity, a loop busy with requests).
    let status = http.get("/v1/status", None).await;
    assert_eq!(status.status, 200, "{status:?}");
    let sol = status
        .body
        .as_array()
        .expect("shards")
        .iter()
        .find(|s| s["system"] == home_name.as_str())
        .expect("the home shard")
        .clone();
    let late_p50 = sol["tick_late_p50_us"].as_u64().expect("tick_late_p50_us");
    let late_p99 = sol["tick_late_p99_us"].as_u64().expect("tick_late_p99_us");
    assert!(late_p99 >= late_p50 && late_p99 > 0, "{sol}");

    server.abort();
    mesh.stop().await.unwrap();
}
