//! `mltrader region` (issue 20) on two test regions (one server each, a `WanProxy` between):
//! `copy` makes `eu`'s copies of `us`'s streams, `status --json` shows each region's systems of
//! the default galaxy, the link and the copies' lag, and after `us` is killed `promote us
//! --into eu --json` re-homes `us`'s systems from the copy and prints a recovery point per
//! system; `status` then shows them in `eu`.
//!
//! Size: `MLT_REGIONS_CLI_RECORDS` records written in a `us` system (default 50).

mod common;

use std::path::Path;

use common::nats_nodes::region_cmd;
use nats::logs::NatsLogs;
use nats::testing::TestRegions;
use sim::galaxy::Galaxy;
use store::backend::{system_log, LogStore};
use store::log::Position;

fn workspace_root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn systems_of(status: &serde_json::Value, region: &str) -> Vec<String> {
    status
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["region"] == region)
        .unwrap_or_else(|| panic!("no region {region} in {status}"))["systems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn region_status_copy_and_promote_from_the_command_line() {
    let Some(exe) = nats::locate::nats_server_for_test(&workspace_root(), "regions") else {
        return;
    };
    let records: u64 = std::env::var("MLT_REGIONS_CLI_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let mut regions = TestRegions::start(exe, &["eu", "us"], 1, 10);
    let g = Galaxy::default_galaxy();
    let eu_systems: Vec<String> = g
        .ids()
        .filter(|&id| g.region_of(id) == Some("eu"))
        .map(|id| g.slug(id).to_string())
        .collect();
    let us_systems: Vec<String> = g
        .ids()
        .filter(|&id| g.region_of(id) == Some("us"))
        .map(|id| g.slug(id).to_string())
        .collect();
    let (mut eu_systems, mut us_systems) = (eu_systems, us_systems);
    eu_systems.sort();
    us_systems.sort();
    assert!(!eu_systems.is_empty() && !us_systems.is_empty());
    assert!(us_systems.contains(&"alpha-centauri".to_string()));

    // Each region's own streams, as its nodes make them; records in one us system.
    let eu = regions.connect("eu", "eu-1");
    let us = regions.connect("us", "us-1");
    NatsLogs::open(&eu, 1).unwrap();
    nats::NatsLinks::open(&eu, g.clone().into(), 1, "eu-1").unwrap();
    let us_logs = NatsLogs::open(&us, 1).unwrap();
    nats::NatsLinks::open(&us, g.clone().into(), 1, "us-1").unwrap();
    let (log, _) = us_logs
        .open(
            &system_log("alpha-centauri"),
            Position::BEGINNING,
            &mut |_| Ok(()),
        )
        .unwrap();
    // Records a promotion can replay: `depart.void` of each next transfer number (a system's
    // log holds game events only; promote replays them to reconcile).
    let ac = g.by_slug("alpha-centauri").unwrap();
    let at = sim::instance::InstanceId::primary(ac);
    let items: Vec<u64> = (1..=records).collect();
    for chunk in items.chunks(10) {
        let last = log
            .append_batch(
                chunk,
                |_| "depart.void",
                |&n, line| {
                    let event = sim::system::Event::DepartVoid {
                        xfer: sim::ids::Xfer(n),
                    };
                    mesh::codec::encode_event(
                        line,
                        &g,
                        at,
                        sim::ids::Tick(0),
                        &event,
                        Default::default(),
                    );
                },
            )
            .unwrap()
            .unwrap();
        log.wait_durable(last).unwrap();
    }
    let messages = records.div_ceil(10);

    region_cmd(&regions, "eu", &["copy", "--nats-replicas", "1"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        let status = region_cmd(&regions, "eu", &["status", "--json"]);
        let us_status = status
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["region"] == "us")
            .unwrap()
            .clone();
        let logs = us_status["copies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["stream"] == "MLT_LOGS")
            .cloned()
            .expect("a copy of us's logs");
        if logs["lag_messages"] == 0 && logs["copied_last_seq"].as_u64() >= Some(messages) {
            assert_eq!(us_status["reachable"], true);
            assert!(
                us_status["round_trip_ms"].as_f64().unwrap() >= 20.0,
                "10 ms each way"
            );
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "copy not current: {logs}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(systems_of(&status, "eu"), eu_systems);
    assert_eq!(systems_of(&status, "us"), us_systems);

    // us answers: promoting it is refused (it is not lost).
    let r = regions.region("eu");
    let refused = common::mltrader()
        .args(["region", "promote", "us", "--into", "eu", "--region", "eu"])
        .args(["--nats", &r.urls().join(",")])
        .args(["--creds", &regions.creds().display().to_string()])
        .args(["--nats-monitor", &r.monitors().join(",")])
        .args([
            "--galaxy",
            &workspace_root()
                .join("crates/sim/src/galaxy/stars.toml")
                .display()
                .to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        !refused.status.success(),
        "a reachable region is not promoted"
    );
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("it is not lost"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    regions.kill_region("us");
    let down = region_cmd(&regions, "eu", &["status", "--json"]);
    let us_down = down
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["region"] == "us")
        .unwrap();
    assert_eq!(us_down["reachable"], false, "{us_down}");

    let points = region_cmd(&regions, "eu", &["promote", "us", "--into", "eu", "--json"]);
    let points = points.as_array().unwrap();
    assert_eq!(
        points.len(),
        us_systems.len(),
        "a recovery point per system of us"
    );
    let ac = points
        .iter()
        .find(|p| p["system"] == "alpha-centauri")
        .unwrap();
    assert_eq!(ac["messages_written"].as_u64(), Some(messages), "{ac}");
    assert!(
        ac["lost_after"]["AsOfLastContact"].is_object(),
        "us is down: {ac}"
    );
    let after = region_cmd(&regions, "eu", &["status", "--json"]);
    let mut all: Vec<String> = eu_systems.iter().chain(&us_systems).cloned().collect();
    all.sort();
    assert_eq!(
        systems_of(&after, "eu"),
        all,
        "every system is homed in eu now"
    );
    assert!(systems_of(&after, "us").is_empty());
}
