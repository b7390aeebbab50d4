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
//! Then `us` is lost (its node and servers killed once `eu`'s copy is current) and promoted
//! into `eu`: `eu`'s views follow the homes (Alpha Centauri homed and served in `eu`, with ann
//! counted; `us` homes nothing), on both of `eu`'s nodes: the one that runs Alpha Centauri
//! from its own figures, the other as heard from it (with its age). `us` comes back (its servers, then its node, the link up): its
//! node serves none of the systems re-homed away from it, and a write through its API for
//! ann (in Alpha Centauri) is forwarded to `eu` or refused, never acknowledged into `us`'s own
//! stream (read to prove it).
//!
//! Snapshots stay in their region (docs/REGIONS.md "Snapshots stay in their region"): `us1`
//! leaves and comes back before the loss (its units snapshotted into `us`'s bucket, none into
//! `eu`'s), and after `us` comes back the other `eu` node leaves (its handovers' snapshots of
//! re-homed systems stay out of `us`'s bucket).
//!
//! A second test keeps `us`'s node running behind a cut link while `us` is promoted, then heals
//! the link: the node stops its re-homed units (their writes revoked) and writes nothing more
//! into `us`'s stream for them.
//!
//! Size: small only (three nodes and two, one player each; about a minute in all).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::nats_nodes::{http, http_as, region_cmd, Node};
use nats::testing::TestRegions;
use serde_json::{json, Value};
use sim::galaxy::Galaxy;
use store::backend::system_log;

/// The link's one-way delay.
const DELAY_MS: u64 = 10;
/// How long the regions may take to serve every system, a jump to land, or a view to change.
const WAIT: Duration = Duration::from_secs(90);
/// How long the link stays cut before the views are read (several looks of the links task).
const CUT_FOR: Duration = Duration::from_secs(4);
/// How long the node of `us` runs after it came back before a write is sent through it: long
/// enough for it to take over its old leases (a lease of silence, `nats::limits::LEASE_MS`)
/// and start their units, had it not heard that their systems are homed in `eu` now.
const BACK_FOR: Duration = Duration::from_millis(nats::limits::LEASE_MS + 4_000);

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
    let mut regions = TestRegions::start(exe, &["eu", "us"], 1, DELAY_MS);
    let mut nodes = vec![
        Node::in_region(&regions, "eu", "eu1", dir.path()),
        Node::in_region(&regions, "us", "us1", dir.path()),
        // A second node of eu: after the promotion, one of the two runs Alpha Centauri and
        // the other shows its population as heard from it.
        Node::in_region(&regions, "eu", "eu2", dir.path()),
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

    // us1 leaves and comes back with the link up: each of its units is handed over with a
    // snapshot (positions in us's log and jumps stream), which must stay in us's bucket.
    nodes[1].stop();
    nodes[1].start();
    wait_for(
        "eu hears Alpha Centauri afresh from the restarted us1",
        &nodes,
        || centauri(&nodes[0]),
        |s| {
            s["served_in_reachable"] == true
                && s["population"] == 1
                && s["as_of_s_ago"].as_f64().is_some_and(|a| a < 3.0)
        },
    );

    // us lost once eu's copy has everything, and promoted into eu.
    let copy_current = Instant::now();
    loop {
        let status = region_cmd(&regions, "eu", &["status", "--json"]);
        let lag: u64 = status
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["region"] == "us")
            .flat_map(|r| r["copies"].as_array().cloned().unwrap_or_default())
            .filter_map(|c| c["lag_messages"].as_u64())
            .sum();
        if lag == 0 {
            break;
        }
        assert!(
            copy_current.elapsed() < WAIT,
            "eu's copy of us lags {lag}: {status}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Each region's snapshots stayed in its bucket (docs/REGIONS.md "Snapshots stay in their
    // region"): neither bucket holds one of a system the other region serves.
    let galaxy = Galaxy::default_galaxy();
    let homed_in = |region: &str| -> Vec<String> {
        galaxy
            .ids()
            .filter(|&id| galaxy.region_of(id) == Some(region))
            .map(|id| galaxy.slug(id).to_string())
            .collect()
    };
    let (eu_homed, us_homed) = (homed_in("eu"), homed_in("us"));
    let of_system = |name: &str| name.split('.').next().unwrap_or(name).to_string();
    let (eu_snaps, us_snaps) = (snapshots_in(&regions, "eu"), snapshots_in(&regions, "us"));
    eprintln!("views: snapshots before us is lost: eu's {eu_snaps:?}; us's {us_snaps:?}");
    let foreign = |snaps: &[(String, u64)], other: &[String]| -> Vec<(String, u64)> {
        snaps
            .iter()
            .filter(|(name, _)| other.contains(&of_system(name)))
            .cloned()
            .collect()
    };
    assert!(
        us_snaps
            .iter()
            .any(|(name, _)| of_system(name) == "alpha-centauri"),
        "us1's stop snapshotted Alpha Centauri into us's bucket: {us_snaps:?}"
    );
    assert_eq!(
        foreign(&eu_snaps, &us_homed),
        vec![],
        "eu's bucket holds snapshots of us's systems (a put crossed the link)"
    );
    assert_eq!(
        foreign(&us_snaps, &eu_homed),
        vec![],
        "us's bucket holds snapshots of eu's systems (a put crossed the link)"
    );
    nodes[1].kill();
    regions.kill_region("us");
    let points = region_cmd(&regions, "eu", &["promote", "us", "--into", "eu", "--json"]);
    for eu_node in [0, 2] {
        let seen = wait_for(
            "eu shows Alpha Centauri homed and served in eu, ann in it",
            &nodes,
            || centauri(&nodes[eu_node]),
            |s| s["home_region"] == "eu" && s.get("served_in").is_none() && s["population"] == 1,
        );
        eprintln!(
            "views: after the promotion, {}'s Alpha Centauri {seen}",
            nodes[eu_node].name
        );
        assert!(seen.get("served_in_reachable").is_none(), "{seen}");
        let link = link_to_us(&nodes[eu_node]);
        assert_eq!(
            link["systems"],
            json!([]),
            "us homes nothing after the promotion: {link}\npromote said {points}"
        );
    }
    let runs_centauri = |node: &Node| {
        get(node, "/v1/status")
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["slug"] == "alpha-centauri"))
    };
    let (runner, other) = match (runs_centauri(&nodes[0]), runs_centauri(&nodes[2])) {
        (true, false) => (0, 2),
        (false, true) => (2, 0),
        both => panic!("one eu node runs Alpha Centauri: (eu1, eu2) = {both:?}"),
    };
    let runner_view = centauri(&nodes[runner]);
    assert!(
        runner_view.get("as_of_s_ago").is_none(),
        "{} runs Alpha Centauri: its own figures, not heard: {runner_view}",
        nodes[runner].name
    );
    // The other eu node: ann counted as heard from the runner (the same region's other node).
    let heard = wait_for(
        "the other eu node hears Alpha Centauri's population from the one that runs it",
        &nodes,
        || centauri(&nodes[other]),
        |s| s["population"] == 1 && s["as_of_s_ago"].as_f64().is_some_and(|a| a < 3.0),
    );
    assert!(heard.get("served_in").is_none(), "{heard}");

    // us comes back with the link up: its node serves nothing re-homed away from it.
    regions.restart_region("us");
    // The other eu node leaves with us's servers up: it hands its units over, each with a
    // snapshot (of positions in eu's logs), some of them systems re-homed from us. They must
    // stay in eu's bucket: a `us` node that found one in its own bucket would recover from it
    // against us's shorter log ("shorter than the snapshot's offset").
    nodes[other].stop();
    eprintln!(
        "views: {} left; eu's snapshots: {:?}",
        nodes[other].name,
        snapshots_in(&regions, "eu")
    );
    let us_systems: Vec<String> = galaxy
        .ids()
        .filter(|&id| galaxy.region_of(id) == Some("us"))
        .map(|id| galaxy.slug(id).to_string())
        .collect();
    let us_logs = nats::NatsLogs::open(&regions.connect("us", "views-check"), 1).unwrap();
    let last_of = |logs: &nats::NatsLogs| -> Vec<(String, u64)> {
        us_systems
            .iter()
            .map(|slug| (slug.clone(), logs.bytes_of(&system_log(slug)).unwrap().1))
            .collect()
    };
    let before = last_of(&us_logs);
    let me_in_eu = |node: &Node| {
        http_as(&node.url(), "GET", "/v1/me", Some(&token), None)
            .map(|(_, me)| me)
            .unwrap_or(Value::Null)
    };
    let fuel_before = me_in_eu(&nodes[0])["player"]["fuel"].clone();
    assert!(fuel_before.is_u64(), "ann's fuel as eu says: {fuel_before}");
    nodes[1].start();
    std::thread::sleep(BACK_FOR);
    let (code, body) = http_as(
        &us,
        "POST",
        "/v1/refuel",
        Some(&token),
        Some(&json!({"units": 1})),
    )
    .unwrap_or((0, Value::Null));
    eprintln!("views: a refuel of ann through us after it came back: {code} {body}");
    let after = last_of(&us_logs);
    assert_eq!(
        after, before,
        "nothing written into us's logs of its re-homed systems after it came back (the refuel answered {code} {body})\n{}",
        nodes[1].tail(40)
    );
    // What eu wrote since (the promoted units' snapshots among it) stayed in eu's bucket.
    let us_snaps_after = snapshots_in(&regions, "us");
    eprintln!("views: us's snapshots after it came back: {us_snaps_after:?}");
    assert_eq!(
        us_snaps_after,
        us_snaps,
        "us's bucket unchanged after it came back (us1 runs nothing; eu's puts stay in eu)\n{}",
        nodes[1].tail(40)
    );
    let us_status = get(&nodes[1], "/v1/status");
    assert_eq!(
        us_status,
        json!([]),
        "us's node runs no unit: every us system is homed in eu\n{}",
        nodes[1].tail(40)
    );
    if code == 200 {
        // Forwarded: eu ran it.
        let fuel_after = me_in_eu(&nodes[0])["player"]["fuel"].clone();
        assert_ne!(
            fuel_after, fuel_before,
            "a refuel answered 200 through us ran in eu"
        );
    }
    for n in &mut nodes {
        n.stop();
    }
}

/// The snapshots in `region`'s bucket `mlt_snapshots`, as (log name, upto).
fn snapshots_in(regions: &TestRegions, region: &str) -> Vec<(String, u64)> {
    let conn = regions.connect(region, "views-snapshots");
    nats::NatsSnapshots::open(&conn, nats::snapshots::SNAPSHOTS_BUCKET, 1)
        .unwrap()
        .all()
        .unwrap()
}

/// Whether `node` printed a line containing `text`.
fn said(node: &Node, text: &str) -> bool {
    node.lines.lock().unwrap().iter().any(|l| l.contains(text))
}

/// A node of `us` that keeps running behind a cut link while `us` is promoted into `eu` (the
/// split brain a manual promotion accepts: it goes on serving until the link heals), then the
/// link heals: it stops Alpha Centauri's unit (its writes revoked as soon as it hears the
/// survivor's homes) and from then on a write for a player there through `us`'s API is forwarded
/// to `eu`, never written into `us`'s stream. Prints the time from the heal to the stop (the
/// window docs/REGIONS.md names).
#[test]
fn a_node_behind_a_cut_link_stops_its_rehomed_units_when_the_link_heals() {
    let Some(exe) = nats::locate::nats_server_for_test(&workspace_root(), "region heal") else {
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
    let joined = wait_for(
        "a join through us",
        &nodes,
        || {
            let (code, body) = http(&us, "POST", "/v1/join", Some(&json!({"name": "bea"})))
                .unwrap_or((0, Value::Null));
            json!({"code": code, "body": body})
        },
        |v| v["code"] == 201,
    );
    let token = joined["body"]["token"].as_str().unwrap().to_string();
    wait_for(
        "bea's jump to Alpha Centauri",
        &nodes,
        || {
            let (code, body) = http_as(
                &us,
                "POST",
                "/v1/travel",
                Some(&token),
                Some(&json!({"to": "Alpha Centauri", "wait": true})),
            )
            .unwrap_or((0, Value::Null));
            json!({"code": code, "body": body})
        },
        |v| v["code"] == 200,
    );
    wait_for(
        "bea in Alpha Centauri",
        &nodes,
        || {
            http_as(&us, "GET", "/v1/me", Some(&token), None)
                .map(|(_, me)| me)
                .unwrap_or(Value::Null)
        },
        |me| me["system"] == "Alpha Centauri" && me["jumping"].is_null(),
    );
    // eu's copy current, then the link cut and us promoted into eu while us1 runs on.
    let copy_current = Instant::now();
    loop {
        let status = region_cmd(&regions, "eu", &["status", "--json"]);
        let lag: u64 = status
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["region"] == "us")
            .flat_map(|r| r["copies"].as_array().cloned().unwrap_or_default())
            .filter_map(|c| c["lag_messages"].as_u64())
            .sum();
        if lag == 0 {
            break;
        }
        assert!(copy_current.elapsed() < WAIT, "eu's copy lags: {status}");
        std::thread::sleep(Duration::from_millis(200));
    }
    regions.cut();
    region_cmd(&regions, "eu", &["promote", "us", "--into", "eu", "--json"]);
    wait_for(
        "eu serves Alpha Centauri",
        &nodes,
        || get(&nodes[0], "/v1/status"),
        |s| {
            s.as_array()
                .is_some_and(|s| s.iter().any(|s| s["slug"] == "alpha-centauri"))
        },
    );
    // Behind the cut, us1 still runs Alpha Centauri (it cannot know).
    let us_status = get(&nodes[1], "/v1/status");
    assert!(
        us_status
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["slug"] == "alpha-centauri")),
        "us1 still runs Alpha Centauri behind the cut: {us_status}"
    );
    let stopped =
        "unit sys.alpha-centauri: stopped here: its system is homed in another region now";
    assert!(!said(&nodes[1], stopped));

    regions.heal();
    let healed = Instant::now();
    wait_for(
        "us1 stops Alpha Centauri",
        &nodes,
        || json!(said(&nodes[1], stopped)),
        |v| v == &json!(true),
    );
    let window = healed.elapsed();
    eprintln!(
        "views: us1 stopped Alpha Centauri {window:?} after the link healed (heal() returns once the leafnode is up)"
    );
    let us_logs = nats::NatsLogs::open(&regions.connect("us", "heal-check"), 1).unwrap();
    let log = system_log("alpha-centauri");
    let before = us_logs.bytes_of(&log).unwrap().1;
    let (code, body) = http_as(
        &us,
        "POST",
        "/v1/refuel",
        Some(&token),
        Some(&json!({"units": 1})),
    )
    .unwrap_or((0, Value::Null));
    eprintln!("views: a refuel of bea through us after the heal: {code} {body}");
    assert_eq!(
        us_logs.bytes_of(&log).unwrap().1,
        before,
        "nothing written into us's Alpha Centauri log after its unit stopped (the refuel answered {code} {body})\n{}",
        nodes[1].tail(30)
    );
    if code == 200 {
        let me = http_as(&eu, "GET", "/v1/me", Some(&token), None)
            .map(|(_, me)| me)
            .unwrap_or(Value::Null);
        assert_eq!(me["system"], "Alpha Centauri", "{me}");
    }
    for n in &mut nodes {
        n.stop();
    }
}
