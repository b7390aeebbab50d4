//! Read-only views of another region (issue 20): `serve --nats --spread --region eu` and
//! `--region us` on two test regions (a NATS server each, the leafnode link through a
//! `WanProxy` that can cut it), the default galaxy homing Sol in `eu` and Alpha Centauri in
//! `us`.
//!
//! Checks: with the link up, `eu`'s node says in `GET /v1/regions` that `us` is reachable
//! (with a round trip) and lists Alpha Centauri in `GET /v1/systems` as served in `us` with the
//! population heard from there (a player who jumped there) and its age; with the link cut it
//! says `us` unreachable and still lists Alpha Centauri with that population, "as of" an age
//! that grows; healed, `us` is reachable again and the age is fresh.
//!
//! Size: small only (two nodes, one player; about half a minute).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::nats_nodes::{http, http_as, Node};
use nats::testing::TestRegions;
use serde_json::{json, Value};

/// The link's one-way delay.
const DELAY_MS: u64 = 10;
/// How long the regions may take to serve every system, a jump to land, or a view to change.
const WAIT: Duration = Duration::from_secs(90);
/// How long the link stays cut before the views are read (several looks of the links task).
const CUT_FOR: Duration = Duration::from_secs(4);

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn get(node: &Node, path: &str) -> Value {
    match http(&node.url(), "GET", path, None) {
        Some((200, v)) => v,
        other => Value::String(format!("{other:?}")),
    }
}

/// `eu`'s view of `us` in `/v1/regions`.
fn link_to_us(eu: &Node) -> Value {
    let view = get(eu, "/v1/regions");
    view["regions"]
        .as_array()
        .and_then(|r| r.iter().find(|l| l["region"] == "us").cloned())
        .unwrap_or(view)
}

/// Alpha Centauri as `eu`'s `/v1/systems` lists it.
fn centauri(eu: &Node) -> Value {
    let systems = get(eu, "/v1/systems");
    systems
        .as_array()
        .and_then(|s| s.iter().find(|s| s["slug"] == "alpha-centauri").cloned())
        .unwrap_or(systems)
}

/// Waits until `ok` holds of `what()`, or fails saying what was seen.
fn wait_for(
    what: &str,
    nodes: &[Node],
    mut seen: impl FnMut() -> Value,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let started = Instant::now();
    loop {
        let v = seen();
        if ok(&v) {
            return v;
        }
        assert!(
            started.elapsed() < WAIT,
            "after {WAIT:?}, {what}: {v}\n{}",
            nodes
                .iter()
                .map(|n| format!("{}:\n{}", n.name, n.tail(20)))
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn eu_shows_us_unreachable_with_the_age_of_what_it_heard() {
    let Some(exe) = nats::locate::nats_server_for_test(&workspace_root(), "region views") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let regions = TestRegions::start(exe, &["eu", "us"], 1, DELAY_MS);
    let mut nodes = vec![
        Node::in_region(&regions, "eu", "eu1", dir.path()),
        Node::in_region(&regions, "us", "us1", dir.path()),
    ];
    for n in &mut nodes {
        n.start();
    }
    let (eu, us) = (nodes[0].url(), nodes[1].url());

    // A player joins in Sol (eu) and jumps to Alpha Centauri (us): us's population is 1.
    let joined = wait_for(
        "a join through eu",
        &nodes,
        || {
            let (code, body) = http(&eu, "POST", "/v1/join", Some(&json!({"name": "ann"})))
                .unwrap_or((0, Value::Null));
            json!({"code": code, "body": body})
        },
        |v| v["code"] == 201,
    );
    let token = joined["body"]["token"]
        .as_str()
        .expect("a token")
        .to_string();
    wait_for(
        "the jump to Alpha Centauri",
        &nodes,
        || {
            let (code, body) = http_as(
                &eu,
                "POST",
                "/v1/travel",
                Some(&token),
                Some(&json!({"to": "Alpha Centauri"})),
            )
            .unwrap_or((0, Value::Null));
            json!({"code": code, "body": body})
        },
        |v| v["code"] == 200,
    );
    wait_for(
        "ann landed in Alpha Centauri (asked through us)",
        &nodes,
        || {
            http_as(&us, "GET", "/v1/me", Some(&token), None)
                .map(|(_, me)| me)
                .unwrap_or(Value::Null)
        },
        |me| me["system"] == "Alpha Centauri" && me["jumping"].is_null(),
    );

    // Link up: us reachable, Alpha Centauri served in us with ann counted, heard just now.
    let link = wait_for(
        "eu sees us reachable",
        &nodes,
        || link_to_us(&nodes[0]),
        |l| l["reachable"] == true && l["round_trip_ms"].as_f64().is_some(),
    );
    assert!(
        link["systems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "alpha-centauri"),
        "us's systems as eu lists them: {link}"
    );
    let seen = wait_for(
        "eu hears ann in Alpha Centauri",
        &nodes,
        || centauri(&nodes[0]),
        |s| s["population"] == 1 && s["as_of_s_ago"].as_f64().is_some_and(|a| a < 3.0),
    );
    assert_eq!(seen["home_region"], "us", "{seen}");
    assert_eq!(seen["served_in"], "us", "{seen}");
    assert_eq!(seen["served_in_reachable"], true, "{seen}");
    let sol = get(&nodes[0], "/v1/systems");
    let sol = sol
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["slug"] == "sol")
        .unwrap()
        .clone();
    assert_eq!(sol["home_region"], "eu", "{sol}");
    assert!(sol.get("served_in").is_none(), "Sol is served here: {sol}");

    // Link cut: us unreachable; Alpha Centauri still listed with ann, as of an older age.
    regions.cut();
    let cut_at = Instant::now();
    let link = wait_for(
        "eu sees us unreachable",
        &nodes,
        || link_to_us(&nodes[0]),
        |l| l["reachable"] == false,
    );
    assert!(link["round_trip_ms"].is_null(), "{link}");
    std::thread::sleep(CUT_FOR.saturating_sub(cut_at.elapsed()));
    let link = link_to_us(&nodes[0]);
    assert_eq!(link["reachable"], false, "{link}");
    assert!(
        link["last_contact_s_ago"]
            .as_f64()
            .is_some_and(|a| a >= 1.0),
        "last contact while cut for {CUT_FOR:?}: {link}"
    );
    let seen = centauri(&nodes[0]);
    eprintln!(
        "views: cut for {:?}: eu's us {link}\nAlpha Centauri {seen}",
        cut_at.elapsed()
    );
    assert_eq!(seen["served_in"], "us", "{seen}");
    assert_eq!(seen["served_in_reachable"], false, "{seen}");
    assert_eq!(
        seen["population"], 1,
        "the population heard before the cut: {seen}"
    );
    assert!(
        seen["as_of_s_ago"].as_f64().is_some_and(|a| a >= 1.0),
        "the age of what eu shows while cut for {CUT_FOR:?}: {seen}"
    );

    // Healed: reachable again, the population heard afresh.
    regions.heal();
    wait_for(
        "eu sees us reachable again",
        &nodes,
        || link_to_us(&nodes[0]),
        |l| l["reachable"] == true,
    );
    let seen = wait_for(
        "eu hears Alpha Centauri afresh",
        &nodes,
        || centauri(&nodes[0]),
        |s| s["served_in_reachable"] == true && s["as_of_s_ago"].as_f64().is_some_and(|a| a < 3.0),
    );
    assert_eq!(seen["population"], 1, "{seen}");
    for n in &mut nodes {
        n.stop();
    }
}
